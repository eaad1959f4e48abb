"""Composite digital-economy index and its HTML report (B1-B3); the catalog's openness facts (A6).

``citytwin economy index`` / ``report`` are thin commands over :func:`build_index` and
:func:`build_report`; notebooks call the same functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.foundation.objectstore import is_url
from citytwin.workflows.common import WorkspaceLike, maybe_ws

if TYPE_CHECKING:
    import pandas as pd

    from citytwin.economy.index import IndexResult
    from citytwin.foundation.workspace import Workspace

__all__ = ["IndexOutput", "IndexRun", "ReportOutput", "build_index", "build_report", "catalog_facts",
           "compute_index", "read_spec", "read_table", "scores_table"]


def read_table(source: str, ws: Workspace | None, sheet: str | None = None) -> tuple[pd.DataFrame, str | None]:
    """A file (CSV, XLSX/XLS, Parquet) or, failing that, a dataset of the workspace.

    Returns the frame and the dataset name (``None`` when it came from a file).

    Raises
    ------
    InputError
        When the file cannot be read or is of an unsupported type, or ``source`` is not a file and
        no workspace was given.
    """
    import pandas as pd

    p = Path(source)
    if p.exists():
        suf = p.suffix.lower()
        try:
            if suf in (".xlsx", ".xls"):
                return pd.read_excel(p, sheet_name=sheet or 0), None
            if suf == ".parquet":
                return pd.read_parquet(p), None
            if suf in (".csv", ".txt", ".tsv"):
                return pd.read_csv(p, sep="\t" if suf == ".tsv" else ","), None
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read {p}: {exc}", file=str(p)) from exc
        raise InputError(f"unsupported panel file type {suf!r}", file=str(p), hint="use CSV, XLSX or Parquet")
    if ws is None:
        raise InputError(f"{source!r} is not a file, and no workspace was given to look it up as a dataset",
                         hint="pass a file path, or --workspace DIR with a dataset name")
    return ws.read(source), source


def read_spec(path: Path) -> dict[str, Any]:
    """The indicator specification (a YAML mapping) in ``path``.

    Raises
    ------
    InputError
        When the file is not YAML or not a mapping.
    """
    import yaml

    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"cannot parse the specification: {exc}", file=str(path)) from exc
    if not isinstance(obj, dict):
        raise InputError("the specification must be a YAML mapping", file=str(path))
    return obj


@dataclass
class IndexRun:
    """A composite index computed from a panel: the result, the panel, and where it came from."""

    result: IndexResult
    frame: pd.DataFrame
    dataset: str | None
    ws: Workspace | None


def compute_index(panel: str, spec: Path, method: str = "entropy", *, workspace: WorkspaceLike | None = None,
                  sheet: str | None = None, normalisation: str = "minmax", shift: float = 0.0, scale: float = 1.0,
                  scope: str = "pooled", topsis_normalisation: str = "vector", topsis_weights: str = "entropy",
                  score_scale: float = 1.0) -> IndexRun:
    """Read a panel (file or dataset) and a YAML specification and compute the composite index.

    The options are those of :func:`citytwin.economy.index.composite_index`.
    """
    from citytwin.economy.index import composite_index

    ws = maybe_ws(workspace)
    frame, dataset = read_table(panel, ws, sheet)
    result = composite_index(frame, read_spec(spec), method, normalisation=normalisation,  # type: ignore[arg-type]
                             shift=shift, scale=scale, scope=scope,  # type: ignore[arg-type]
                             topsis_normalisation=topsis_normalisation,  # type: ignore[arg-type]
                             topsis_weights=topsis_weights, score_scale=score_scale, source=panel)
    result.options["panel"] = panel
    result.options["spec_file"] = str(spec)
    if ws is not None and dataset and any("unit-period cells have no row" in w for w in result.warnings):
        cur = ws.info(dataset).current
        if cur is not None and cur.rows_quarantined:
            result.warnings.append(f"dataset {dataset!r} (version {cur.version}) had {cur.rows_quarantined:,} "
                                   f"row(s) quarantined at ingest: see `citytwin quarantine {dataset}`")
    return IndexRun(result, frame, dataset, ws)


def scores_table(result: IndexResult) -> pd.DataFrame:
    """The scores with the id column named ``city`` and the time column ``year``."""
    s = result.scores.rename(columns={result.id_col: "city"})
    if result.time_col:
        s = s.rename(columns={result.time_col: "year"})
    return s


@dataclass
class IndexOutput:
    """What :func:`build_index` wrote: ``weights.csv``, ``scores.csv``, ``options.json`` in ``out``, and
    (with a workspace) the datasets ``name`` (version ``version``) and ``name_weights``."""

    result: IndexResult
    scores: pd.DataFrame
    out: Path
    name: str
    version: int | None = None
    ws: Workspace | None = None


def build_index(panel: str, spec: Path, out: Path, method: str = "entropy", *,
                workspace: WorkspaceLike | None = None, name: str = "economy_index", sheet: str | None = None,
                normalisation: str = "minmax", shift: float = 0.0, scale: float = 1.0, scope: str = "pooled",
                topsis_normalisation: str = "vector", topsis_weights: str = "entropy",
                score_scale: float = 1.0, dask: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> IndexOutput:
    """Build a composite index: writes ``out/weights.csv``, ``out/scores.csv`` and ``out/options.json``.

    With a workspace the scores (and weights, as ``NAME_weights``) are also stored as catalog
    datasets with lineage. With ``dask`` (``local:N`` or ``tcp://HOST:PORT``) the panel (Parquet or a
    dataset) is split by period on Dask (:func:`citytwin.workflows.scaleout.index`; ``progress(done,
    total)`` as its tasks finish).
    """
    if dask:
        from citytwin.foundation.scaleout import parse_dask
        from citytwin.workflows import scaleout

        parse_dask(dask)  # a bad value is said first
        ws = maybe_ws(workspace)
        result = scaleout.index(panel, read_spec(spec), method, dask=dask, workspace=ws, scope=scope,
                                normalisation=normalisation, shift=shift, scale=scale, score_scale=score_scale,
                                topsis_normalisation=topsis_normalisation, topsis_weights=topsis_weights,
                                progress=progress)
        result.options["panel"] = panel
        result.options["spec_file"] = str(spec)
        dataset = None if is_url(panel) or Path(panel).exists() or ws is None else panel
    else:
        if is_url(panel):
            raise InputError("an object-storage panel is read by the Dask workers: give --dask", file=panel,
                             hint="e.g. --dask local:2 (the panel as Parquet with `time:` in the spec); or copy it here")
        run = compute_index(panel, spec, method, workspace=workspace, sheet=sheet, normalisation=normalisation,
                            shift=shift, scale=scale, scope=scope, topsis_normalisation=topsis_normalisation,
                            topsis_weights=topsis_weights, score_scale=score_scale)
        result, ws, dataset = run.result, run.ws, run.dataset
    out.mkdir(parents=True, exist_ok=True)
    wcols = ["indicator", "weight"] + [c for c in result.weights.columns if c not in ("indicator", "weight")]
    result.weights[wcols].to_csv(out / "weights.csv", index=False)
    scores = scores_table(result)
    scores.to_csv(out / "scores.csv", index=False)
    record = {"options": result.options, "warnings": result.warnings, "diagnostics": result.diagnostics}
    (out / "options.json").write_text(json.dumps(record, ensure_ascii=False, indent=2, default=str),
                                      encoding="utf-8")
    version = None
    if ws is not None:
        inputs: list[str | tuple[str, int | None]] = [dataset] if dataset else []
        params = {k: v for k, v in result.options.items() if k != "spec"} | {"spec": result.options["spec"]}
        version = ws.write_derived(name, scores, inputs=inputs,
                                   parameters=json.loads(json.dumps(params, default=str)),
                                   description=f"composite index ({result.options['method']}) of {panel}",
                                   code="citytwin.economy.index.composite_index")
        ws.write_derived(f"{name}_weights", result.weights, inputs=inputs,
                         parameters={"method": result.options["method"]},
                         description=f"indicator weights of {name}", code="citytwin.economy.index.composite_index")
    return IndexOutput(result, scores, out, name, version, ws)


@dataclass
class ReportOutput:
    """The HTML report :func:`build_report` wrote, and the warnings of the run."""

    out: Path
    size: int
    warnings: list[str] = field(default_factory=list)


def build_report(panel: str, spec: Path, out: Path, method: str = "entropy", *,
                 workspace: WorkspaceLike | None = None, sheet: str | None = None, normalisation: str = "minmax",
                 shift: float = 0.0, scale: float = 1.0, scope: str = "pooled", topsis_normalisation: str = "vector",
                 topsis_weights: str = "entropy", score_scale: float = 1.0, boundaries: Path | None = None,
                 boundary_key: str = "name", tiers: str = "natural_breaks", k: int = 4,
                 aliases: dict[str, str] | None = None, group_weight: str | None = None,
                 title: str = "Digital-economy index report") -> ReportOutput:
    """Write a self-contained HTML report (weights, ranks, tiers, regions, map; no external assets).

    Parameters
    ----------
    boundaries
        City boundaries (GeoJSON/GPKG) for the map; a ``province`` column enables NBS regions.
    boundary_key
        Boundary column with city names.
    tiers, k
        ``natural_breaks`` | ``quantiles`` | ``none``, and the number of tiers.
    aliases
        ``OLD -> NEW`` city names (renamed/merged; NEW may be a province).
    group_weight
        Panel column weighting group scores (e.g. population).

    Raises
    ------
    InputError
        When the boundaries cannot be read or lack ``boundary_key``.
    """
    import pandas as pd

    from citytwin.economy.groups import assign_groups, city_provinces, group_scores, regions_nbs2011
    from citytwin.economy.ranking import assign_tiers
    from citytwin.economy.report import render_report

    run = compute_index(panel, spec, method, workspace=workspace, sheet=sheet, normalisation=normalisation,
                        shift=shift, scale=scale, scope=scope, topsis_normalisation=topsis_normalisation,
                        topsis_weights=topsis_weights, score_scale=score_scale)
    result, frame = run.result, run.frame
    tier_s, tier_info = (None, None)
    if tiers != "none":
        tier_s, tier_info = assign_tiers(result.scores, "score", by=result.time_col, method=tiers,  # type: ignore[arg-type]
                                         k=k)
    geo = None
    groups = None
    warnings: list[str] = []
    if boundaries is not None:
        import geopandas as gpd

        try:
            geo = gpd.read_file(boundaries)
        except Exception as exc:  # pyogrio raises several types
            raise InputError(f"cannot read boundaries: {exc}", file=str(boundaries)) from exc
        if boundary_key not in geo.columns:
            raise InputError(f"the boundaries have no column {boundary_key!r}", file=str(boundaries),
                             field=boundary_key, hint=f"columns: {list(geo.columns)}")
        if "province" in geo.columns:
            prov = city_provinces(result.scores[result.id_col], pd.DataFrame(geo.drop(columns="geometry")),
                                  name=boundary_key, aliases=aliases or {})
            warnings += prov.warnings
            reg = assign_groups(prov.groups, regions_nbs2011())
            sc = result.scores.assign(region=reg.groups.to_numpy())
            if group_weight:
                keys = [result.id_col] + ([result.time_col] if result.time_col else [])
                sc = sc.join(frame.set_index(keys)[group_weight], on=keys)
            groups = group_scores(sc, "score", "region", by=result.time_col, weight=group_weight)
    result.warnings.extend(warnings)
    attribution = [f"Panel: {panel}"] + ([f"Boundaries: {boundaries}"] if boundaries else [])
    html = render_report(result, title=title, tiers=tier_s, tier_info=tier_info, groups=groups,
                         group_col="region", boundaries=geo, boundary_key=boundary_key, attribution=attribution,
                         notes=["Regions: NBS 2011 east/central/west/northeast, by province."] if groups is not None
                         else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return ReportOutput(out, len(html), list(result.warnings))


def catalog_facts(ws: Workspace) -> list[dict[str, Any]]:
    """Facts about the datasets this user may see, for :func:`citytwin.economy.openness.catalog_profile`."""
    infos = ws.datasets()
    facts = []
    for d in infos:
        used_by = len(ws.catalog.outputs_of(d.name))
        facts.append({"name": d.name, "classification": d.classification, "licence": d.licence,
                      "description": d.description, "source": d.source, "department": d.department,
                      "owner": d.owner, "updated": d.updated,
                      # every version is stored as (Geo)Parquet, an open format
                      "formats": ["parquet"], "used_by": used_by})
    return facts
