"""Disparity by period on Dask (issue 19): the workers read their periods of a Parquet panel themselves.

:func:`disparity_parts` is what ``run_disparity(dask=...)`` (``citytwin economy disparity --dask``) runs:
one task per period reads that period's rows of the panel's columns it needs (a row-group filter on the
period), cleans them as :func:`citytwin.workflows.disparity.run_disparity` cleans the panel (values
through ``numeric_column``, rows missing a value dropped), computes Gini, Theil with its groups and the
Dagum decomposition (each pair of groups by sorting and searching: n log n per period), and sends back
those tables, its count of dropped rows and its clean rows' period, value and unit id — what the
cross-period statistics read — and, for the Markov chain, its units' order by id and their quantile
classes (the client counts the transitions between consecutive periods once every period holds the same
units). Then each period's kernel density is a task (the client checks the clean rows and makes the common
grid); σ/β-convergence and the spatial statistics stay on the client. The client reads only the files'
metadata (schemas; the periods from the row groups' statistics where each holds one period) or else the
period column.

Where a task finds what the one-process run refuses (a value that is not a number, a unit twice in a
period) it ran the one-process checks on its rows: it reads the period column of the files to place
them in the panel and gives the row one process names (and how many values are not numbers); the client
raises the error one process raises, from what the tasks found, and reads nothing of the panel. Rows
without a period are checked by one more task (one process refuses their text values too).
:func:`disparity` (re-exported as :func:`citytwin.workflows.scaleout.disparity`) gives the tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.foundation.objectstore import is_url
from citytwin.foundation.scaleout import Progress, cluster, parse_dask, run_tasks
from citytwin.workflows.common import WorkspaceLike, maybe_ws
from citytwin.workflows.scaleout_files import parquet_file, parquet_files, parquet_periods, read_parquet

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from citytwin.economy.dynamics import KernelDensityResult, MarkovResult

__all__ = ["DISPARITY_TABLES", "DisparityParts", "disparity", "disparity_parts", "panel_columns"]

#: the per-period tables of :func:`citytwin.workflows.disparity.run_disparity` that the tasks compute
DISPARITY_TABLES = ("inequality", "theil_groups", "dagum", "dagum_groups", "dagum_pairs")


@dataclass
class DisparityParts:
    """What the tasks of :func:`disparity_parts` gave, put together on the client.

    Attributes
    ----------
    files
        The panel's Parquet files (those the workers read).
    tables
        :data:`DISPARITY_TABLES` by name, periods in order.
    frame
        The clean rows' period, value and unit id (``id_col``), periods in order, each period's rows in the
        panel's order: the rows one process keeps, for the cross-period statistics.
    dropped
        Rows dropped for a missing period, value, group, weight or unit id.
    kde
        With ``kde``: the kernel densities of ln(value) by period (:func:`citytwin.economy.dynamics.
        kernel_density`, a task per period), the ``InputError`` it raises instead (``run_disparity`` says the
        step skipped), or ``None`` where a value is not positive (``run_disparity`` skips it then).
    markov
        With ``markov_k``: :func:`citytwin.economy.dynamics.markov` of the clean rows (quantile classes), its
        classes computed by the tasks; ``None`` where the panel is not one it takes as it is (a unit missing in
        a period, too many ties, a value not finite, fewer than two periods): the caller then runs ``markov``
        on :attr:`frame`, which says what is wrong.
    """

    files: list[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    frame: pd.DataFrame | None = None
    dropped: int = 0
    kde: KernelDensityResult | InputError | None = None
    markov: MarkovResult | None = None


def panel_columns(files: list[str]) -> list[str]:
    """The columns of the panel the Parquet ``files`` hold, as ``pandas.concat`` of their frames has
    them (each file's pandas columns, index columns restored as the index, in order of first appearance),
    from the files' schemas only (``s3://`` objects' footers read through s3fs by this process)."""
    cols: dict[str, None] = {}
    for f in files:
        cols.update(dict.fromkeys(str(c) for c in parquet_file(f).schema_arrow.empty_table().to_pandas().columns))
    return list(cols)


def _panel_facts(files: list[str], time: str) -> tuple[list[str], tuple[list[Any], list[int], int]]:
    """The panel's columns and its periods (:func:`panel_columns`, ``parquet_periods``): the metadata a job
    starts from, read on a worker when the files are objects (the client opens none)."""
    columns = panel_columns(files)
    if time not in columns:  # said by the caller's check of the columns, naming them
        return columns, ([], [], 0)
    return columns, parquet_periods(files, time)


def _positions(files: list[str], time: str, period: Any) -> np.ndarray:
    """The panel positions (0-based: files in order, rows in file order) of the rows of ``period`` (``None``:
    the rows without a period), read from the period column by this process (a worker)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    out: list[np.ndarray] = []
    base = 0
    for f in files:
        pf = parquet_file(f)
        v = pf.read(columns=[time]).column(time)
        if period is None:
            hit = pc.is_null(v, nan_is_null=True)
        else:  # as the index's workers place a period's rows (scaleout_index._read_period)
            s = pa.scalar(period)
            hit = pc.fill_null(pc.equal(v, s.cast(v.type) if s.type != v.type else s), False)
        out.append(base + np.flatnonzero(hit.to_numpy(zero_copy_only=False)))
        base += pf.metadata.num_rows
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def _read_rows(files: list[str], cols: list[str], time: str, period: Any) -> pd.DataFrame:
    """The rows of ``period`` (``None``: those without a period) of the panel's ``cols``, in the panel's order."""
    import pandas as pd
    import pyarrow.compute as pc

    where: Any = [(time, "==", period)] if period is not None else pc.field(time).is_null(nan_is_null=True)
    return pd.concat([read_parquet(f, columns=cols, filters=where) for f in files], ignore_index=True)


def _checked(df: pd.DataFrame, *, files: list[str], value: str, time: str, period: Any,
             id_col: str | None, cols: list[str]) -> tuple[pd.DataFrame, int, dict[str, Any]]:
    """The one-process checks (``run_disparity``'s) on one period's rows: (clean rows, dropped rows, what
    was found). Found: ``not_a_number`` = (row in the panel, 1-based, of the first value that is not a
    number, that value, how many of the period's values are not) or ``twice`` = (panel position of the
    first row of a unit already seen in the period, the error one process raises for it). The rows'
    panel positions are read only then (this worker reads the period column of the files)."""
    from citytwin.stats.values import not_numbers, numeric_column

    try:
        df[value] = numeric_column(df[value], name=value)
    except InputError:
        bad = not_numbers(df[value])
        first = int(bad.argmax())
        rows = _placed(files, time, period, len(df))
        return df, 0, {"not_a_number": (int(rows[first]) + 1, df[value].iloc[first], int(bad.sum()))}
    missing = df[cols].isna().any(axis=1).to_numpy()
    clean = df.loc[~missing].reset_index(drop=True)  # as run_disparity drops rows missing a value
    if id_col:
        twice = clean.duplicated([id_col, time])
        if twice.any():
            d = clean.loc[twice, [id_col, time]].iloc[0].tolist()  # run_disparity's error, the same row
            first = int(twice.to_numpy().argmax())
            rows = _placed(files, time, period, len(df))[~missing]
            return clean, 0, {"twice": (int(rows[first]), InputError(f"duplicate unit-period rows, e.g. {d}",
                                                                      field=id_col))}
    return clean, int(missing.sum()), {}


def _placed(files: list[str], time: str, period: Any, n: int) -> np.ndarray:
    """:func:`_positions` of the ``n`` rows a task read (an error if the period column places another count)."""
    rows = _positions(files, time, period)
    if len(rows) != n:
        raise InputError(f"period {period!r}: {n} rows read but {len(rows)} placed in the panel", field=time)
    return rows


def _markov_part(ids: pd.Series, values: pd.Series, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One period's part of :func:`citytwin.economy.dynamics.markov` (quantile classes): the order of its units
    by id (the rows of ``markov``'s units × periods table), their classes in that order and the period's class
    bounds; ``None`` where ``markov`` would refuse the period (a value not finite, too many ties) or the ids
    do not sort (the client then runs ``markov`` itself, which says why)."""
    import numpy as np

    from citytwin.economy.dynamics import _classify, _quantile_bins

    y = values.to_numpy(dtype=float)
    if k < 2 or not bool(np.isfinite(y).all()):
        return None
    try:  # the order of the pivot's index (its unique ids sorted; a period has each unit once)
        order = np.argsort(ids.to_numpy(), kind="stable")
    except TypeError:
        return None
    ys = y[order]
    bins = _quantile_bins(ys, k)  # percentiles: the same bounds in any order of the values
    if bins.size < k:
        return None
    return (order.astype(np.int32 if len(order) < 2**31 else np.int64),
            _classify(ys, bins).astype(np.int8 if k < 128 else np.int64), bins)


def _markov(parts: list[dict[str, Any]], *, id_col: str, time: str, k: int) -> MarkovResult | None:
    """:func:`citytwin.economy.dynamics.markov` (quantile classes, ``k``) from the periods' classes
    (:func:`_markov_part`), when every period holds the same units (the client compares their sorted ids as
    Arrow arrays): the transitions counted between consecutive periods (whole numbers: the same sums in any
    order), then ``markov``'s probabilities and steady state. ``None`` otherwise (see
    :attr:`DisparityParts.markov`)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from citytwin.economy.dynamics import MarkovResult, _row_p, steady_state

    maybe = [p.get("markov") for p in parts]
    got: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [g for g in maybe if g is not None]
    if len(got) < 2 or len(got) < len(maybe):
        return None
    try:
        ids = [pa.array(p["frame"][id_col], from_pandas=True).take(pa.array(g[0])) for p, g in zip(parts, got,
                                                                                                  strict=True)]
    except (pa.ArrowException, TypeError):
        return None
    if any(len(a) != len(ids[0]) or not a.equals(ids[0]) for a in ids[1:]):
        return None  # a unit missing in a period: markov's error names it
    C = [g[1].astype(np.int64) for g in got]
    T = np.sum([np.bincount(a * k + b, minlength=k * k) for a, b in pairwise(C)],
               axis=0).reshape(k, k).astype(float)
    P = _row_p(T)
    labels, to = pd.Index(range(k), name="from"), pd.Index(range(k), name="to")
    periods = pd.Index([p["frame"][time].iloc[0] for p in parts], name=time)
    classes = pd.DataFrame(np.column_stack(C), index=pd.Index(ids[0].to_pandas(), name=id_col), columns=periods)
    return MarkovResult(transitions=pd.DataFrame(T, index=labels, columns=to),
                        p=pd.DataFrame(P, index=labels, columns=to),
                        steady_state=pd.Series(steady_state(P), index=to, name="steady_state"), classes=classes,
                        bins=[g[2] for g in got])


def _disparity_period(period: Any, *, files: list[str], value: str, group: str, time: str,
                      weight: str | None, id_col: str | None = None, markov_k: int | None = None) -> dict[str, Any]:
    """One period, read by the worker: its tables, its dropped rows and its clean (time, value, id) rows
    (with ``markov_k`` and ``id_col``: its part of the Markov chain, :func:`_markov_part`); or what the
    one-process checks found (:func:`_checked`: the tables are not computed then), or ``error`` (what a
    statistic raised). ``period`` ``None``: the rows without a period, checked only (one process checks
    their values before dropping them)."""
    from citytwin.economy import dagum, inequality

    cols = list(dict.fromkeys(c for c in (time, value, group, weight, id_col) if c))
    df, dropped, found = _checked(_read_rows(files, cols, time, period), files=files, value=value, time=time,
                                  period=period, id_col=id_col, cols=cols)
    if found or period is None:
        return found
    out: dict[str, Any] = {"dropped": dropped, "frame": df[[c for c in (time, value, id_col) if c]]}
    if df.empty:
        return out
    if markov_k is not None and id_col:
        out["markov"] = _markov_part(df[id_col], df[value], markov_k)
    try:
        r = inequality.theil(df[value].to_numpy(), df[group].to_numpy(),
                             None if weight is None else df[weight].to_numpy())
        tg = r.groups.assign(**{time: period})
        tg.insert(0, time, tg.pop(time))
        summary, dgroups, dpairs = dagum.dagum_by_year(df, value=value, group=group, time=time, weight=weight)
        out["tables"] = {"inequality": inequality.theil_by_year(df, value=value, time=time, group=group, weight=weight),
                         "theil_groups": tg, "dagum": summary, "dagum_groups": dgroups, "dagum_pairs": dpairs}
    except InputError as exc:  # raised on the client in period order, after the checks of every period
        out["error"] = exc
    return out


def _found(parts: list[dict[str, Any]], value: str) -> InputError | None:
    """The error one process raises for what the tasks found (its checks in its order: a value that is not a
    number anywhere in the panel first, then a unit twice in a period), naming the panel's first such row."""
    from citytwin.stats.values import not_a_number

    bad = [p["not_a_number"] for p in parts if "not_a_number" in p]
    if bad:
        row, first, _ = min(bad, key=lambda b: b[0])
        return not_a_number(first, row, sum(b[2] for b in bad), name=value)
    twice = [p["twice"] for p in parts if "twice" in p]
    return min(twice, key=lambda t: t[0])[1] if twice else None


def disparity_parts(panel: str, *, value: str, group: str, time: str, dask: str, weight: str | None = None,
                    id_col: str | None = None, workspace: WorkspaceLike | None = None,
                    progress: Progress | None = None, files: list[str] | None = None,
                    check: Callable[[list[str]], None] | None = None, kde: bool = False,
                    markov_k: int | None = None) -> DisparityParts:
    """The per-period part of ``run_disparity`` on Dask: one task per period reads its rows (see the module).

    The client reads the Parquet panel's metadata (file, folder, glob or dataset; the period column where
    the row groups' statistics do not tell the periods) and nothing else of it; for ``s3://`` objects it
    only lists them, and a worker reads that metadata. ``files`` (the panel's, when the caller found them)
    saves looking them up again; ``check(columns)`` is called with the panel's columns before any period
    is read (``run_disparity`` checks the columns it needs). ``kde``: also ``run_disparity``'s kernel
    densities (:attr:`DisparityParts.kde`): the client checks the clean rows and makes the common grid
    (``dynamics.kde_grid``), one task per period evaluates its density (``dynamics.kde_period``; its values
    sent with it). ``markov_k`` (with ``id_col``): also ``run_disparity``'s Markov chain of ``markov_k``
    quantile classes (:attr:`DisparityParts.markov`): each task classes its period's units, the client counts
    the transitions.

    Raises
    ------
    InputError
        The panel has no period; what ``run_disparity``'s one-process checks raise, naming the same row
        (a value that is not a number, then a unit twice in a period); a statistic's error for a period
        (the first period's, in order).
    """
    import pandas as pd

    parse_dask(dask)
    files = files or parquet_files(panel, maybe_ws(workspace), "panel", objects=True)

    def facts_checked(facts: tuple[list[str], tuple[list[Any], list[int], int]]) -> tuple[list[Any], int]:
        if check is not None:
            check(facts[0])
        periods, _, missing = facts[1]  # from the row groups' statistics where they tell
        if not periods:
            raise InputError("the panel has no periods", field=time)
        return periods, missing

    # local files: the metadata read here, before a cluster is started; objects: by a worker
    known = None if is_url(files[0]) else facts_checked(_panel_facts(files, time))
    with cluster(dask) as client:
        periods, missing = known or facts_checked(
            run_tasks(client, _panel_facts, [files], key="citytwin-disparity-plan", time=time)[0])
        # rows without a period: one more task checks their values (one process checks them, then drops them)
        parts = run_tasks(client, _disparity_period, [*periods, *([None] if missing else [])], progress=progress,
                          key="citytwin-disparity", files=files, value=value, group=group, time=time,
                          weight=weight, id_col=id_col, markov_k=markov_k)
        found = _found(parts, value)
        if found is not None:
            raise found
        parts = parts[:len(periods)]
        error = next((p["error"] for p in parts if "error" in p), None)
        if error is not None:
            raise error
        full = [p["tables"] for p in parts if "tables" in p]
        frame = pd.concat([p["frame"] for p in parts], ignore_index=True)
        density = _kde(client, frame, value=value, time=time) if kde else None
    return DisparityParts(files=files, tables={name: pd.concat([t[name] for t in full], ignore_index=True)
                                               for name in DISPARITY_TABLES} if full else {},
                          frame=frame, dropped=missing + sum(p["dropped"] for p in parts), kde=density,
                          markov=_markov(parts, id_col=id_col, time=time, k=markov_k) if markov_k and id_col else None)


def _kde_task(item: tuple[Any, np.ndarray, float], *, grid: np.ndarray, time: str) -> tuple[Any, ...]:
    from citytwin.economy.dynamics import kde_period

    return kde_period(*item, grid, time=time)


def _kde(client: Any, frame: pd.DataFrame, *, value: str, time: str) -> KernelDensityResult | InputError | None:
    """``run_disparity``'s kernel densities of ln(value) on the cluster (see :func:`disparity_parts`)."""
    from citytwin.economy import dynamics

    if frame.empty or not bool((frame[value] > 0).all()):  # run_disparity skips them then
        return None
    try:
        data, bws, grid = dynamics.kde_grid(frame, value=value, time=time, log=True)
    except InputError as exc:  # said as a step skipped, as one process says it
        return exc
    done = run_tasks(client, _kde_task, [(t, x, bws[t]) for t, x in data.items()], key="citytwin-disparity-kde",
                     grid=grid, time=time)
    return dynamics.kde_result(done, grid, time=time)


def disparity(panel: str, *, value: str, group: str, time: str, dask: str, weight: str | None = None,
              id_col: str | None = None, workspace: WorkspaceLike | None = None,
              progress: Progress | None = None) -> dict[str, pd.DataFrame]:
    """The per-period disparity tables of :func:`citytwin.workflows.disparity.run_disparity` on Dask.

    One task per period reads its rows of the Parquet panel (file, folder, glob or dataset) and computes
    Gini, Theil with its between/within split and groups, and the Dagum decomposition; the tables are concatenated in period order: :data:`DISPARITY_TABLES`,
    equal to the one-process tables. ``run_disparity(dask=...)`` runs the cross-period statistics on the
    clean rows the tasks send back (:func:`disparity_parts`). A row missing ``id_col`` (when given) is
    dropped, as ``run_disparity`` drops it.

    Raises
    ------
    InputError
        For a value that is not a number or a unit twice in a period: one process's error, naming the row.
    """
    return disparity_parts(panel, value=value, group=group, time=time, dask=dask, weight=weight, id_col=id_col,
                           workspace=workspace, progress=progress).tables
