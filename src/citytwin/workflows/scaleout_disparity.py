"""Disparity by period on Dask (issue 19): the workers read their periods of a Parquet panel themselves.

:func:`disparity_parts` is what ``run_disparity(dask=...)`` (``citytwin economy disparity --dask``) runs:
one task per period reads that period's rows of the panel's columns it needs (a row-group filter on the
period), cleans them as :func:`citytwin.workflows.disparity.run_disparity` cleans the panel (values
through ``numeric_column``, rows missing a value dropped), computes Gini, Theil with its groups and the
Dagum decomposition (O(n²) per period), and sends back those tables, its count of dropped rows and its
clean rows' period, value and unit id — what the cross-period statistics (σ/β-convergence, kernel
densities, Markov chains, the spatial statistics), which stay on the client, read. The client reads
only the files' metadata (schemas; the periods from the row groups' statistics where each holds one
period) or else the period column.

Where a task finds what the one-process run refuses (a value that is not a number, a unit twice in a
period) it says so instead of computing; the caller then reads the panel and runs the one-process
checks, which raise the error naming the row (never a result that one process would not give).
:func:`disparity` (re-exported as :func:`citytwin.workflows.scaleout.disparity`) gives the tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.foundation.objectstore import is_url
from citytwin.foundation.scaleout import Progress, cluster, parse_dask, run_tasks
from citytwin.workflows.common import WorkspaceLike, maybe_ws
from citytwin.workflows.scaleout_files import parquet_file, parquet_files, parquet_periods, read_parquet

if TYPE_CHECKING:
    import pandas as pd

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
    recheck
        Why the one-process checks must run on the whole panel (a task found a value that is not a number
        or a unit twice in a period; the tables and ``frame`` are then incomplete), else ``None``.
    """

    files: list[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    frame: pd.DataFrame | None = None
    dropped: int = 0
    recheck: str | None = None


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


def _disparity_period(period: Any, *, files: list[str], value: str, group: str, time: str,
                      weight: str | None, id_col: str | None = None) -> dict[str, Any]:
    """One period, read by the worker: its tables, its dropped rows and its clean (time, value, id) rows;
    or ``recheck`` (a value that is not a number, a unit twice) or ``error`` (what a statistic raised)."""
    import pandas as pd

    from citytwin.economy import dagum, inequality
    from citytwin.stats.values import numeric_column

    cols = list(dict.fromkeys(c for c in (time, value, group, weight, id_col) if c))
    df = pd.concat([read_parquet(f, columns=cols, filters=[(time, "==", period)]) for f in files],
                   ignore_index=True)
    try:
        df[value] = numeric_column(df[value], name=value)
    except InputError:  # named with its row in the whole panel by the one-process check
        return {"recheck": f"period {period!r}: a value of {value!r} is not a number"}
    bad = df[cols].isna().any(axis=1)
    df = df.loc[~bad].reset_index(drop=True)  # as run_disparity drops rows missing a value
    if id_col and df.duplicated([id_col]).any():
        return {"recheck": f"period {period!r}: a unit has two rows"}
    out: dict[str, Any] = {"dropped": int(bad.sum()), "frame": df[[c for c in (time, value, id_col) if c]]}
    if df.empty:
        return out
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


def disparity_parts(panel: str, *, value: str, group: str, time: str, dask: str, weight: str | None = None,
                    id_col: str | None = None, workspace: WorkspaceLike | None = None,
                    progress: Progress | None = None, files: list[str] | None = None,
                    check: Callable[[list[str]], None] | None = None) -> DisparityParts:
    """The per-period part of ``run_disparity`` on Dask: one task per period reads its rows (see the module).

    The client reads the Parquet panel's metadata (file, folder, glob or dataset; the period column where
    the row groups' statistics do not tell the periods) and nothing else of it; for ``s3://`` objects it
    only lists them, and a worker reads that metadata. ``files`` (the panel's, when the caller found them)
    saves looking them up again; ``check(columns)`` is called with the panel's columns before any period
    is read (``run_disparity`` checks the columns it needs).

    Raises
    ------
    InputError
        The panel has no period; a statistic's error for a period (the first period's, in order).
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
        parts = run_tasks(client, _disparity_period, periods, progress=progress, key="citytwin-disparity",
                          files=files, value=value, group=group, time=time, weight=weight, id_col=id_col)
    recheck = next((p["recheck"] for p in parts if "recheck" in p), None)
    if recheck:
        return DisparityParts(files=files, recheck=recheck)
    error = next((p["error"] for p in parts if "error" in p), None)
    if error is not None:
        raise error
    full = [p["tables"] for p in parts if "tables" in p]
    return DisparityParts(files=files, tables={name: pd.concat([t[name] for t in full], ignore_index=True)
                                               for name in DISPARITY_TABLES} if full else {},
                          frame=pd.concat([p["frame"] for p in parts], ignore_index=True),
                          dropped=missing + sum(p["dropped"] for p in parts))


def disparity(panel: str, *, value: str, group: str, time: str, dask: str, weight: str | None = None,
              id_col: str | None = None, workspace: WorkspaceLike | None = None,
              progress: Progress | None = None) -> dict[str, pd.DataFrame]:
    """The per-period disparity tables of :func:`citytwin.workflows.disparity.run_disparity` on Dask.

    One task per period reads its rows of the Parquet panel (file, folder, glob or dataset) and computes
    Gini, Theil with its between/within split and groups, and the Dagum decomposition (O(n²) per period:
    the part worth splitting); the tables are concatenated in period order: :data:`DISPARITY_TABLES`,
    equal to the one-process tables. ``run_disparity(dask=...)`` runs the cross-period statistics on the
    clean rows the tasks send back (:func:`disparity_parts`). A row missing ``id_col`` (when given) is
    dropped, as ``run_disparity`` drops it.

    Raises
    ------
    InputError
        For a value that is not a number or a unit twice in a period (naming the period; ``run_disparity``
        names the row, as one process does).
    """
    parts = disparity_parts(panel, value=value, group=group, time=time, dask=dask, weight=weight, id_col=id_col,
                            workspace=workspace, progress=progress)
    if parts.recheck:  # run_disparity(dask=...) reads the panel then and names the row, as one process
        raise InputError(parts.recheck, field=value, hint="run_disparity (citytwin economy disparity) names the row")
    return parts.tables
