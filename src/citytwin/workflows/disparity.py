"""Disparity decompositions and dynamics of a long panel, by period (B4).

Reads a long panel (file or catalog dataset), computes Gini/Theil (with the group
decomposition), the Dagum Gini decomposition, σ-convergence and kernel density peaks for every
period, β-convergence and a quintile Markov chain over the periods (with ``id_col``), and — with
boundaries — global Moran's I per period and local Moran (LISA) per unit and period; writes CSVs
and ``options.json`` to ``out``. Steps that do not apply (e.g. Markov on an unbalanced panel)
are skipped and named under ``skipped`` in ``options.json``.

``citytwin economy disparity`` is a thin command over :func:`run_disparity`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.workflows.common import WorkspaceLike, open_ws

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["GEO_SUFFIXES", "TABLE_SUFFIXES", "DisparityResult", "load_source", "run_disparity"]

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".xlsx": "excel", ".xls": "excel",
                  ".parquet": "parquet"}
GEO_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp", ".fgb", ".geoparquet"}
#: quantile classes of the Markov chain (markov.csv)
MARKOV_K = 5


@dataclass
class DisparityResult:
    """What :func:`run_disparity` computed and wrote.

    Attributes
    ----------
    out
        The folder written to.
    files
        The files written to ``out``, ``options.json`` last.
    tables
        Every table written, by name (file name without ``.csv``).
    summary
        The Dagum decomposition per period (``g``, ``g_w``, ``g_nb``, ``g_t``, ...).
    options
        The contents of ``options.json`` (parameters, conventions, ``skipped`` steps).
    rows_dropped
        Panel rows dropped for a missing value.
    datasets
        Catalog datasets stored (with ``save_as``).
    """

    out: Path
    files: list[str]
    tables: dict[str, pd.DataFrame]
    summary: pd.DataFrame
    options: dict[str, Any]
    rows_dropped: int
    datasets: list[str] = field(default_factory=list)


def load_source(source: str, workspace: WorkspaceLike | None, *, geo: bool = False, what: str = "PANEL",
                sheet: str | None = None) -> pd.DataFrame:
    """A file (by suffix) or, when no such file exists, a catalog dataset of the workspace.

    Parameters
    ----------
    source
        A path (CSV, TSV, XLSX/XLS, Parquet, or a GIS format) or a dataset name.
    workspace
        Where to look ``source`` up as a dataset when it is not a file.
    geo
        Read the file as a GIS layer (a GeoDataFrame).
    what
        What the source is, for error messages.
    sheet
        Sheet of an Excel file (default: the first).

    Raises
    ------
    InputError
        When the file cannot be read, its type is not supported, or it is neither a file nor a dataset.
    """
    import pandas as pd

    p = Path(source)
    if p.exists():
        suffix = p.suffix.lower()
        try:
            if geo or suffix in GEO_SUFFIXES:
                import geopandas as gpd

                layer: pd.DataFrame = (gpd.read_parquet(p) if suffix in {".parquet", ".geoparquet"}
                                       else gpd.read_file(p))
                return layer
            kind = TABLE_SUFFIXES.get(suffix)
            if kind == "csv":
                return pd.read_csv(p)
            if kind == "tsv":
                return pd.read_csv(p, sep="\t")
            if kind == "excel":
                return pd.read_excel(p, sheet_name=sheet or 0)
            if kind == "parquet":
                return pd.read_parquet(p)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read: {exc}", file=str(p)) from None
        raise InputError(f"unsupported file type {suffix!r}", file=str(p),
                         hint="use CSV, TSV, XLSX, Parquet, or a GIS format for boundaries")
    if workspace is None:
        raise InputError(f"{what} {source!r} is neither a file nor a dataset (no workspace given)",
                         hint="pass an existing file, or --workspace DIR to read a catalog dataset")
    return open_ws(workspace).read(source)


def _local_only(panel: str) -> None:
    """An ``s3://`` panel is read by Dask workers only: said before anything else."""
    from citytwin.foundation.objectstore import is_url

    if is_url(panel):
        raise InputError("an object-storage panel is read by the Dask workers: give --dask (and --time)", file=panel,
                         hint="e.g. --dask local:2; or copy the Parquet files to a local folder")


def _check_columns(columns: list[str], cols: list[str]) -> None:
    missing = [c for c in cols if c not in columns]
    if missing:
        raise InputError(f"column(s) {missing} not in the panel (has {list(columns)[:30]})", field=missing[0])


def _clean(panel: pd.DataFrame, cols: list[str], value: str) -> tuple[pd.DataFrame, int]:
    _check_columns(list(panel.columns), cols)
    from citytwin.stats.values import numeric_column

    df = panel[cols].copy()
    df[value] = numeric_column(df[value], name=value)  # text that is not a missing-value mark is an error
    bad = df[cols].isna().any(axis=1)
    return df.loc[~bad].reset_index(drop=True), int(bad.sum())


def run_disparity(
    panel: str,
    *,
    value: str,
    group: str,
    out: Path,
    time: str | None = None,
    weight: str | None = None,
    boundaries: str | None = None,
    id_col: str | None = None,
    boundary_id: str | None = None,
    weights: str = "queen",
    k: int = 6,
    threshold: float | None = None,
    islands: str = "nearest",
    permutations: int = 999,
    seed: int = 12345,
    sheet: str | None = None,
    save_as: str | None = None,
    workspace: WorkspaceLike | None = None,
    on_period: Callable[[int, int], None] | None = None,
    dask: str | None = None,
) -> DisparityResult:
    """Disparity decompositions by period: Gini, Theil (between/within), Dagum, σ, and Moran's I.

    Parameters
    ----------
    panel
        Long panel: a file (CSV/XLSX/Parquet) or a catalog dataset name.
    value, group
        Columns with the measured value and with the group (region) of each unit.
    out
        Folder to write the CSVs and ``options.json`` to (created).
    time
        Period column (``None``: one cross-section).
    weight
        Population weight column (weighted Gini/Theil/Dagum).
    boundaries
        Boundary polygons (file or dataset) for Moran's I, LISA, Getis-Ord and spatial Markov.
    id_col, boundary_id
        Unit id column in the panel, and in the boundaries if named differently.
    weights, k, threshold, islands
        Spatial weights: ``queen``, ``rook``, ``knn`` (``k`` neighbours) or ``distance`` (``threshold``,
        metres for lon/lat data); units without neighbours: ``nearest``, ``keep`` or ``raise``.
    permutations, seed
        Permutations for pseudo p-values and their random seed.
    sheet
        Sheet of an Excel panel (default: the first).
    save_as
        Also store the tables as catalog datasets ``SAVE_AS_<table>`` (needs ``workspace``).
    workspace
        Workspace (or its folder) for dataset inputs and ``save_as``.
    on_period
        Called as ``on_period(done, total)`` after each period of the spatial statistics.
    dask
        ``local:N`` or ``tcp://HOST:PORT``: Gini, Theil and the Dagum decomposition
        run one task per period on Dask (:func:`citytwin.workflows.scaleout_disparity.disparity_parts`,
        the same tables): each task reads its period's rows, the client only the period column, then
        each period's kernel density is a task too (on the common grid the client makes); the other
        cross-period statistics run on the clean rows the tasks send back. The panel must then be
        Parquet (a file, folder of parts, glob or dataset) and ``time`` given.

    Returns
    -------
    DisparityResult

    Raises
    ------
    InputError
        Missing columns, no complete rows, duplicate unit-period rows, bad boundaries or options.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import pandas as pd
    >>> d = Path(tempfile.mkdtemp())
    >>> pd.DataFrame({"v": [1.0, 2.0, 3.0, 6.0], "g": ["a", "a", "b", "b"]}).to_csv(d / "p.csv", index=False)
    >>> r = run_disparity(str(d / "p.csv"), value="v", group="g", out=d / "out")
    >>> round(float(r.summary["g"].iloc[0]), 4)
    0.3333
    """
    import pandas as pd

    from citytwin.economy import autocorr, dagum, dynamics, inequality

    tcol = time or "_period"
    cols = [c for c in dict.fromkeys([tcol, value, group, weight, id_col]) if c]
    per: dict[str, pd.DataFrame] = {}
    if dask:  # the workers read their periods of the Parquet files; the client the period column only
        from citytwin.foundation.scaleout import parse_dask
        from citytwin.workflows import scaleout_disparity
        from citytwin.workflows.common import maybe_ws
        from citytwin.workflows.scaleout_files import parquet_files

        parse_dask(dask)  # a bad value is said first
        if time is None:
            raise InputError("on Dask the panel is split by period: give the period column", field="time",
                             hint="add --time COLUMN, or run without --dask for one cross-section")
        # those the workers read (a CSV is refused; s3:// objects listed, not opened)
        files = parquet_files(panel, maybe_ws(workspace), "panel", objects=True)
        if boundaries and not id_col:
            raise InputError("--boundaries needs --id-col (the unit id shared by panel and boundaries)", field="id_col")
        # a value that is not a number, a unit twice: the tasks ran the one-process checks (the same error)
        split = scaleout_disparity.disparity_parts(panel, value=value, group=group, time=tcol, weight=weight,
                                                   id_col=id_col, dask=dask, files=files, kde=True,
                                                   markov_k=MARKOV_K if time else None,
                                                   check=lambda have: _check_columns(have, cols))  # the schemas
        assert split.frame is not None
        df, dropped, per = split.frame, split.dropped, split.tables
    else:
        _local_only(panel)
        frame = load_source(panel, workspace, sheet=sheet)
        if time is None:
            frame = frame.assign(_period="all")
        if boundaries and not id_col:
            raise InputError("--boundaries needs --id-col (the unit id shared by panel and boundaries)", field="id_col")
        df, dropped = _clean(frame, cols, value)
    if df.empty:
        raise InputError("no complete rows left (all values missing?)", field=value)
    if id_col and not dask and df.duplicated([id_col, tcol]).any():  # on Dask each period's task checked it
        d = df.loc[df.duplicated([id_col, tcol]), [id_col, tcol]].iloc[0].tolist()
        raise InputError(f"duplicate unit-period rows, e.g. {d}", field=id_col)
    if save_as and workspace is None:
        raise InputError("--save-as needs --workspace", field="save_as")
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    tables: dict[str, pd.DataFrame] = {}

    def save(name: str, table: pd.DataFrame) -> None:
        table.to_csv(out / name, index=False)
        written.append(name)
        tables[name.removesuffix(".csv")] = table

    if dask:  # the per-period tables, computed by the workers
        for name, table in per.items():
            save(f"{name}.csv", table)
        summary = per["dagum"]
    else:
        ineq = inequality.theil_by_year(df, value=value, time=tcol, group=group, weight=weight)
        save("inequality.csv", ineq)
        theil_groups = []
        for t, sub in df.groupby(tcol, sort=True):
            r = inequality.theil(sub[value].to_numpy(), sub[group].to_numpy(),
                                 None if weight is None else sub[weight].to_numpy())
            theil_groups.append(r.groups.assign(**{tcol: t}))
        tg = pd.concat(theil_groups, ignore_index=True)
        tg.insert(0, tcol, tg.pop(tcol))
        save("theil_groups.csv", tg)
        summary, dgroups, dpairs = dagum.dagum_by_year(df, value=value, group=group, time=tcol, weight=weight)
        save("dagum.csv", summary)
        save("dagum_groups.csv", dgroups)
        save("dagum_pairs.csv", dpairs)
    skipped: dict[str, str] = {}
    positive = bool((df[value] > 0).all())
    if positive:
        save("sigma.csv", dynamics.sigma_convergence(df, value=value, time=tcol))
    else:
        skipped["sigma, beta, kernel density (log)"] = "values must be positive"
    if positive and df[tcol].nunique() >= 1:
        try:
            kd = split.kde if dask else dynamics.kernel_density(df, value=value, time=tcol, log=True)
            if isinstance(kd, InputError):  # what kernel_density raised on the cluster's client
                raise kd
            assert kd is not None  # every value positive: computed on the cluster as here
            save("kde_summary.csv", kd.summary)
            save("kde_peaks.csv", kd.peaks)
        except InputError as exc:
            skipped["kernel density"] = exc.message
    if id_col and time and df[tcol].nunique() >= 2:
        if positive:
            try:
                b = dynamics.beta_convergence(df, value=value, time=tcol, id=id_col)
                save("beta.csv", b.coefficients.reset_index().assign(
                    model=b.model, n=b.n, periods=b.periods, speed=b.speed, half_life=b.half_life, r2=b.r2))
            except (InputError, TypeError) as exc:
                skipped["beta convergence"] = getattr(exc, "message", str(exc))
        try:
            mk = (split.markov if dask and split.markov is not None  # classed by the tasks
                  else dynamics.markov(df, value=value, time=tcol, id=id_col, k=MARKOV_K))
            save("markov.csv", mk.transitions.reset_index().merge(
                mk.p.add_prefix("p_").reset_index(), on="from").assign(steady_state=mk.steady_state.to_numpy()))
        except InputError as exc:
            skipped["markov"] = exc.message
    options: dict[str, Any] = {
        "panel": panel, "value": value, "group": group, "time": time, "weight": weight,
        "rows_used": len(df), "rows_dropped_missing": dropped,
        "gini": "relative mean absolute difference" + (", population-weighted" if weight else ""),
        "theil": "Theil T, 0*ln0 = 0" + (", population-weighted" if weight else ""),
        "dagum": "Dagum (1997): G = G_w + G_nb + G_t",
    }
    if dask:
        options["dask"] = {"cluster": str(dask), "tasks": "one per period: Gini, Theil, Dagum; "
                                                       "then one per period: kernel density"}
    if boundaries:
        assert id_col is not None
        geo = load_source(boundaries, workspace, geo=True, what="BOUNDARIES")
        bid = boundary_id or id_col
        if bid not in geo.columns:
            raise InputError(f"id column {bid!r} not in the boundaries (has {list(geo.columns)[:30]})", field=bid)
        geo = geo.assign(_key=geo[bid].astype(str))
        if geo["_key"].duplicated().any():
            raise InputError("duplicate ids in the boundaries", field=bid)
        df["_key"] = df[id_col].astype(str)
        no_geom = sorted(set(df["_key"]) - set(geo["_key"]))
        geo = geo[geo["_key"].isin(set(df["_key"]))].reset_index(drop=True)
        if len(geo) < 3:
            raise InputError(f"only {len(geo)} panel units have boundaries", field=id_col,
                             hint="check that --id-col / --boundary-id hold the same codes")
        if islands not in ("nearest", "keep", "raise"):
            raise InputError(f"unknown islands handling {islands!r}", field="islands", hint="nearest, keep or raise")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = autocorr.spatial_weights(geo, weights, k=k, threshold=threshold, ids="_key",  # type: ignore[arg-type]
                                         islands="raise" if islands == "raise" else "keep")
            island_ids = list(w.islands)
            if island_ids and islands == "nearest":
                w = autocorr.spatial_weights(geo, weights, k=k, threshold=threshold, ids="_key",  # type: ignore[arg-type]
                                             islands="nearest")
        from libpysal.weights import w_subset

        moran_rows: list[dict[str, Any]] = []
        lisa: list[pd.DataFrame] = []
        gstar: list[pd.DataFrame] = []
        periods = list(df.groupby(tcol, sort=True))
        for i, (t, sub) in enumerate(periods):
            sub = sub[sub["_key"].isin(set(w.id_order))]
            keys = [i for i in w.id_order if i in set(sub["_key"])]
            wt = w if len(keys) == w.n else w_subset(w, keys, silence_warnings=True)
            y = sub.set_index("_key").loc[keys, value].to_numpy()
            m = autocorr.moran(y, wt, permutations=permutations, seed=seed)
            moran_rows.append({tcol: t, **m.as_dict()})
            lm = autocorr.local_moran(y, wt, permutations=permutations, seed=seed)
            lisa.append(lm.reset_index().rename(columns={"id": id_col}).assign(**{tcol: t}))
            if (y >= 0).all():
                gs = autocorr.getis_ord(y, wt, star=True, permutations=permutations, seed=seed)
                gstar.append(gs.reset_index().rename(columns={"id": id_col}).assign(**{tcol: t}))
            if on_period is not None:
                on_period(i + 1, len(periods))
        save("moran.csv", pd.DataFrame(moran_rows))
        for name, parts in (("lisa.csv", lisa), ("getis_ord.csv", gstar)):
            if parts:
                lz = pd.concat(parts, ignore_index=True)
                lz.insert(0, tcol, lz.pop(tcol))
                save(name, lz)
        if not gstar:
            skipped["getis_ord"] = "values must be non-negative"
        if time and df[tcol].nunique() >= 2:
            try:
                sub = df[df["_key"].isin(set(w.id_order))]
                keys = [i for i in w.id_order if i in set(sub["_key"])]
                wt = w if len(keys) == w.n else w_subset(w, keys, silence_warnings=True)
                sm = dynamics.spatial_markov(sub, wt, value=value, time=tcol, id="_key", k=5, m=5)
                save("spatial_markov.csv", sm.long_table().assign(LR=sm.LR, LR_p=sm.LR_p_value, Q=sm.Q,
                                                                   Q_p=sm.Q_p_value, dof=sm.dof))
            except InputError as exc:
                skipped["spatial markov"] = exc.message
        options.update({
            "boundaries": boundaries, "id_col": id_col, "boundary_id": bid, "weights": weights,
            "k": k if weights == "knn" else None, "threshold": threshold, "islands": islands,
            "island_ids": island_ids,
            "transform": "row-standardised", "permutations": permutations, "seed": seed,
            "units_without_boundary": no_geom[:50], "n_units_without_boundary": len(no_geom),
            "p_sim": "esda folded pseudo p-value (min(larger, P-larger)+1)/(P+1)",
        })
    options["skipped"] = skipped
    options["files"] = [*written, "options.json"]
    (out / "options.json").write_text(json.dumps(options, ensure_ascii=False, indent=2, default=str))
    datasets: list[str] = []
    if save_as:
        ws = open_ws(workspace)
        inputs: list[str | tuple[str, int | None]] = [
            src for src in (panel, boundaries) if src and not Path(src).exists()]
        params = json.loads(json.dumps(options, default=str))
        for name, table in tables.items():
            ws.write_derived(f"{save_as}_{name}", table, inputs=inputs, parameters=params,
                             description=f"economy disparity: {name} of {value} by {group}")
        datasets = [f"{save_as}_{n}" for n in tables]
        options["datasets"] = datasets
    return DisparityResult(out=out, files=[*written, "options.json"], tables=tables, summary=summary,
                           options=options, rows_dropped=dropped, datasets=datasets)
