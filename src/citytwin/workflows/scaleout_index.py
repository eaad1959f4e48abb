"""The economy index on Dask (issue 19): the periods in one shard per worker, pooled methods from exact partial sums.

:func:`index` gives the result of :func:`citytwin.economy.index.composite_index` for a Parquet panel
(re-exported as :func:`citytwin.workflows.scaleout.index`). The periods and the row groups that may
hold each come from the Parquet metadata (the row groups' statistics; the period column where they do
not tell), read by the client for local files and by a worker for ``s3://`` objects (the client then
only lists them). The periods are shared out by rows into one shard per worker; the worker reads its
periods' row groups (no other), prepares them and keeps them between the passes, each pass one task
per worker (not one per period: fewer rounds of small tasks for the scheduler and the client). The
workers score and rank their rows and give each row's position in the panel (files in order, then row
groups and rows), so the client puts the scores in the panel's order from those positions.

* ``scope="per_year"``: each period is a whole index of its own (any method): exact.
* ``scope="pooled"``: the method is global (one normalisation and one set of weights over all
  city-years). Every global quantity is reduced from per-period partial results at the start of the next
  pass's tasks on the workers (each task reduces every shard's results itself, in period order), in passes
  over the prepared periods; the whole job is submitted at once, each pass's tasks waiting on the previous
  pass's, and the client waits once, for the scores, which carry the pooled results
  (:mod:`citytwin.workflows.scaleout_index_passes`):

  1. column min/max and row count (every method: the min-max normalisation and the constant columns);
  2. the method's statistics —

     * ``entropy``: the column sums of the normalised values, then ``sum p ln p`` (minmax only);
     * ``critic``: the column sums of the normalised values (their means), then the sums of the
       centred cross-products: the covariance matrix, hence ``sigma`` and the correlations;
     * ``pca``: the same two passes over the direction-signed raw values: the correlation matrix, whose
       eigendecomposition (and sign convention, retention, KMO, Bartlett) is
       :func:`citytwin.economy.weights.pca_from_correlation`, the function one process uses;
     * ``equal``, ``expert``: nothing more; ``combined`` adds the spec's expert weights to its method's;
  3. scores per period: the additive methods' weighted sums with the global min/max; for ``topsis``
     (its weights from ``topsis_weights``, pooled as above) the column sums of squares (``vector``
     normalisation), then the per-period max/min of the weighted normalised values (the ideal and
     anti-ideal: a max is exact), then each row's closeness
     (:func:`citytwin.economy.weights.topsis_closeness`).

  Every sum is taken as one process takes it for a pooled panel (:mod:`citytwin.economy.sums`): per
  period, each column as one contiguous array, the periods' partial sums added in period order (by
  each pass's tasks), the centred cross-products entry by entry (no BLAS), each row's sum left to right. So the
  result is bit-identical to :func:`~citytwin.economy.index.composite_index` for any number of workers
  and any partition of the periods (tests/scaleout/test_scaleout_index_exact.py). Refused on Dask: ``sum`` normalisation of entropy weights (and ``missing: interpolate``, which runs
  along each city's years across the periods).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.foundation.objectstore import is_url
from citytwin.foundation.scaleout import Progress, cluster, parse_dask, run_futures, run_tasks, task_keys
from citytwin.workflows.common import WorkspaceLike, maybe_ws
from citytwin.workflows.scaleout_files import parquet_files, parquet_periods
from citytwin.workflows.scaleout_index_passes import (  # noqa: F401 (the worker's passes: bench and tests use them here)
    _colsum_part,
    _minmax_part,
    _norm_into,
    _normed,
    _over,
    _Period,
    _plogp_part,
    _rank_buffer,
    _rank_column,
    _run,
    _score_part,
    _Scored,
    _Shard,
    _weighted_rowsums,
    pooled,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from citytwin.economy.index import IndexResult
    from citytwin.economy.spec import IndexSpec

__all__ = ["POOLED_METHODS", "index"]

#: methods whose pooled weights and scores are computed from partial sums on Dask (all of them)
POOLED_METHODS = ("entropy", "topsis", "critic", "pca", "equal", "expert", "combined")


@dataclass(frozen=True)
class _Piece:
    """Where rows of a period are: row group ``group`` of file ``file`` (its first row at panel position
    ``base``); ``whole`` when its statistics say every row is of that period (min = max, no null)."""

    file: int
    group: int
    base: int
    rows: int
    whole: bool


def _may_hold(period: Any, st: Any) -> tuple[bool, bool]:
    """(whether a row group with statistics ``st`` may hold ``period``, whether it holds only that period)."""
    if st is None or not st.has_min_max:
        return True, False
    try:
        if period < st.min or period > st.max:
            return False, False
    except TypeError:  # statistics of another type than the period: the rows are read and compared
        return True, False
    whole = bool(st.min == st.max == period and st.has_null_count and st.null_count == 0)
    return True, whole


def _pieces(files: list[str], periods: list[Any], time: str) -> list[list[_Piece]]:
    """For each period, the row groups that may hold it (from the Parquet metadata only): the tasks read
    those and no other, and where a row group is all of one period its rows' positions need no reading."""
    from citytwin.workflows.scaleout_files import parquet_file

    out: list[list[_Piece]] = [[] for _ in periods]
    base = 0
    for i, f in enumerate(files):
        pf = parquet_file(f)
        col = pf.schema_arrow.get_field_index(time)
        for g in range(pf.metadata.num_row_groups):
            rg = pf.metadata.row_group(g)
            st = rg.column(col).statistics if col >= 0 else None
            for j, period in enumerate(periods):
                may, whole = _may_hold(period, st)
                if may:
                    out[j].append(_Piece(i, g, base, rg.num_rows, whole))
            base += rg.num_rows
    return out


def _plan(files: list[str], time: str) -> tuple[list[Any], list[list[_Piece]]]:
    """The periods of the panel (:func:`~citytwin.workflows.scaleout_files.parquet_periods`) and each one's
    row groups (:func:`_pieces`)."""
    periods = parquet_periods(files, time)[0]
    if not periods:
        raise InputError(f"the panel has no periods in column {time!r}", file=files[0], field=time)
    return periods, _pieces(files, periods, time)


def _read_period(period: Any, pieces: list[_Piece], *, files: list[str], spec: IndexSpec) -> tuple[pd.DataFrame,
                                                                                                   np.ndarray]:
    """The period's rows (the frame ``pandas.read_parquet(f, columns, filters=[(time, "==", period)])``
    gives per file, concatenated) and their panel positions, reading only the row groups of ``pieces``.

    Arrow reads into glibc's heap (:func:`~citytwin.workflows.scaleout_files.system_pool`) and the frame's
    number columns are the Arrow buffers themselves (``split_blocks``, ``self_destruct``: no copy into one
    2-D block): the same values, and a fresh worker takes less new memory from the kernel (docs/scaleout.md,
    session 14)."""
    from citytwin.workflows.scaleout_files import system_pool

    with system_pool():
        return _read_rows(period, pieces, files=files, spec=spec)


def _read_rows(period: Any, pieces: list[_Piece], *, files: list[str], spec: IndexSpec) -> tuple[pd.DataFrame,
                                                                                                 np.ndarray]:
    """:func:`_read_period` in Arrow's current pool."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from citytwin.workflows.scaleout_files import parquet_file

    assert spec.time is not None
    cols = list(dict.fromkeys([spec.id, spec.time, *spec.columns]))
    frames: list[pd.DataFrame] = []
    positions: list[np.ndarray] = []
    for i in sorted({p.file for p in pieces}):
        pf = parquet_file(files[i])
        have = [c for c in cols if c in pf.schema_arrow.names]  # prepare() names what is missing
        tables = []
        for p in (p for p in pieces if p.file == i):
            t = pf.read_row_group(p.group, columns=have)
            if p.whole:
                positions.append(p.base + np.arange(t.num_rows, dtype=np.int64))
            else:
                v = t.column(spec.time)
                value = pa.scalar(period)
                hit = pc.fill_null(pc.equal(v, value.cast(v.type) if value.type != v.type else value), False)
                t = t.filter(hit)
                positions.append(p.base + np.flatnonzero(hit.to_numpy(zero_copy_only=False)))
            tables.append(t)
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        del tables
        frames.append(table.to_pandas(split_blocks=True, self_destruct=True))
        del table
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    rows = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
    return frame, rows


def _kept_positions(frame: pd.DataFrame, rows: np.ndarray, keys: pd.DataFrame, spec: IndexSpec) -> np.ndarray:
    """The panel row positions of ``keys`` (the rows :func:`~citytwin.economy.spec.prepare` kept of
    ``frame``, whose rows are at ``rows``): the client puts the scores in the panel's order with them."""
    import numpy as np
    import pandas as pd

    if len(keys) != len(frame):  # rows dropped (missing: drop): the ids are unique within a period
        rows = rows[pd.Index(frame[spec.id].to_numpy()).get_indexer(keys[spec.id].to_numpy())]
    return np.asarray(rows, dtype=np.int64)


def _prepare_shard(todo: list[tuple[Any, list[_Piece]]], *, files: list[str], spec: IndexSpec,
                   source: str) -> _Shard:
    """The worker's periods read (their row groups only) and prepared, kept for the passes."""
    from citytwin.economy.spec import prepare

    out = []
    for period, pieces in todo:
        frame, rows = _read_period(period, pieces, files=files, spec=spec)
        if len(frame) == 0:
            raise InputError(f"period {period!r}: no rows found in the row groups (the Parquet files changed "
                             "while the job ran?)", file=files[0])
        prep = prepare(frame, spec, source=source)
        # a matrix the period owns (pandas gives a read-only view of its block): entropy's pass may then write
        # the normalised values over it (_normed). prepare's own matrix where the frame is that matrix (no
        # missing value filled or dropped: nothing else holds it once prep goes), else a copy
        X = prep.matrix
        if X is None or list(prep.values.columns) != list(spec.columns):
            X = prep.values[spec.columns].to_numpy(dtype=float, copy=True)
        out.append(_Period(prep.keys, X, prep.warnings, prep.dropped_rows,
                           _kept_positions(frame, rows, prep.keys, spec)))
        del prep, X
    return _Shard(out)


def _index_shard(todo: list[tuple[Any, list[_Piece]]], *, files: list[str], spec: IndexSpec, source: str,
                 method: str, options: dict[str, Any]) -> list[tuple[IndexResult, np.ndarray]]:
    """``scope="per_year"``: each of the worker's periods a whole index, and its rows' panel positions."""
    from citytwin.economy.index import composite_index

    out = []
    for period, pieces in todo:
        frame, rows = _read_period(period, pieces, files=files, spec=spec)
        r = composite_index(frame, spec, method, scope="per_year", source=source, **options)
        out.append((r, _kept_positions(frame, rows, r.scores[[spec.id]], spec)))
    return out


def _panel_order(frames: list[pd.DataFrame], rows: list[np.ndarray]) -> pd.DataFrame:
    """The concatenation of ``frames`` (the rows of each at panel positions ``rows``) in the panel's row
    order: pieces that follow one another (a file or row groups per period) are put in order as they are;
    else one argsort of the positions."""
    import pandas as pd

    order = _piece_order(rows)
    return _rows_in_order(pd.concat([frames[i] for i in order], ignore_index=True), [rows[i] for i in order])


def _piece_order(rows: list[np.ndarray]) -> list[int]:
    """The pieces ordered by their first row's panel position."""
    firsts = [int(r[0]) if len(r) else -1 for r in rows]
    return sorted(range(len(rows)), key=firsts.__getitem__)


def _rows_in_order(frame: pd.DataFrame, rows: list[np.ndarray]) -> pd.DataFrame:
    """``frame`` (the pieces' rows one after the other, at panel positions ``rows``) in the panel's order."""
    import numpy as np

    at = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    if len(at) > 1 and not bool(np.all(at[1:] > at[:-1])):
        frame = frame.take(np.argsort(at, kind="stable")).reset_index(drop=True)
    return frame


def _scores_frame(scored: list[_Scored], order: list[list[int]]) -> pd.DataFrame:
    """The workers' scores (each period's :class:`_Scored`, in period order; ``order``: each shard's periods)
    as one process's scores frame: the ids not sent again taken from the shard's previous period, each period's
    value repeated over its rows, the pieces in the panel's order (:func:`_panel_order`)."""
    import numpy as np
    import pandas as pd

    for idx in order:
        ids: pd.Series | None = None
        for j in idx:
            if scored[j].ids is None:
                scored[j].ids = ids
            ids = scored[j].ids
    spans = [s.span for s in scored]
    if all(sp is not None for sp in spans):  # every period a run of positions: ordered by the runs' starts
        firsts = [sp[0] for sp in spans if sp is not None]
        seq = sorted(range(len(scored)), key=firsts.__getitem__)
    else:
        seq = _piece_order([s.positions() for s in scored])
    parts = [scored[i] for i in seq]
    ids = pd.concat([s.ids for s in parts], ignore_index=True)
    period = pd.concat([s.period for s in parts], ignore_index=True).repeat([len(s) for s in parts])
    cols: dict[Any, Any] = {ids.name: ids, period.name: period.reset_index(drop=True)}
    for name in parts[0].values:  # the numeric buffers (score, rank, dimensions) put together
        pieces = [s.values[name] for s in parts]
        cols[name] = _rank_column(pieces) if name == "rank" else np.concatenate(pieces)
    frame = pd.DataFrame(cols)
    runs = [s.span for s in parts]
    if all(r is not None and (i == 0 or r[0] >= runs[i - 1][0] + runs[i - 1][1])  # type: ignore[index]
           for i, r in enumerate(runs)):
        return frame  # the runs one after the other: the panel's order already
    return _rows_in_order(frame, [s.positions() for s in parts])


def _shards(sizes: list[int], k: int) -> list[list[int]]:
    """The periods (their indices, in order) given to ``k`` workers so that each holds about as many rows
    (largest first, each to the worker with the fewest rows so far): one task per worker and pass."""
    load = [0] * max(1, min(k, len(sizes)))
    out: list[list[int]] = [[] for _ in load]
    for j in sorted(range(len(sizes)), key=lambda j: (-sizes[j], j)):
        i = min(range(len(load)), key=lambda i: (load[i], i))
        out[i].append(j)
        load[i] += sizes[j]
    return [sorted(o) for o in out if o]


def index(panel: str, spec: Mapping[str, Any] | IndexSpec, method: str = "entropy", *, dask: str,
          workspace: WorkspaceLike | None = None, scope: str = "pooled", normalisation: str = "minmax",
          shift: float = 0.0, scale: float = 1.0, score_scale: float = 1.0, topsis_normalisation: str = "vector",
          topsis_weights: str = "entropy", combine_with: str = "entropy", combine_method: str = "linear",
          alpha: float = 0.5, pca_min_eigenvalue: float = 1.0, pca_min_cumulative: float | None = None,
          progress: Progress | None = None) -> IndexResult:
    """:func:`citytwin.economy.index.composite_index` of a Parquet panel on Dask, the periods in one shard per worker.

    ``panel`` is a Parquet file, folder or glob, a dataset of ``workspace``, or an ``s3://`` object,
    prefix or glob (listed here, read by the workers); ``spec`` a mapping (as
    :func:`citytwin.workflows.economy.read_spec` reads it) or :class:`IndexSpec` with ``time:``. The other
    options are those of ``composite_index``; the result is the one process's, bit for bit (the module
    docstring says how).

    Each task checks its period as :func:`citytwin.economy.spec.prepare` checks a panel, so an
    indicator with no value at all in one period is an error naming it (one process checks the whole
    column). The scores come back in the panel's row order (each worker gives its rows' positions).

    Raises
    ------
    InputError
        A spec without ``time`` (nothing to partition), missing-value policy ``interpolate`` (it runs
        along each city's years, across the partitions), pooled entropy weights with ``sum``
        normalisation; and every error of the single-process index.
    """
    import numpy as np
    import pandas as pd

    from citytwin.economy.index import METHODS, IndexResult
    from citytwin.economy.spec import parse_spec

    parse_dask(dask)
    ws = maybe_ws(workspace)
    sp = parse_spec(spec)
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}", field="method", hint=f"use one of {', '.join(METHODS)}")
    if method == "topsis" and topsis_weights in ("topsis", "combined"):
        raise InputError(f"TOPSIS weights cannot come from {topsis_weights!r}", field="topsis_weights")
    if method == "combined" and combine_with in ("topsis", "combined", "expert"):
        raise InputError(f"combine_with must be an objective method, got {combine_with!r}", field="combine_with")
    if scope not in ("pooled", "per_year"):
        raise InputError(f"unknown scope {scope!r}", field="scope", hint="use pooled or per_year")
    if topsis_normalisation not in ("vector", "minmax"):
        raise InputError(f"unknown TOPSIS normalisation {topsis_normalisation!r}", field="topsis_normalisation",
                         hint="use vector or minmax")
    if not sp.time:
        raise InputError("the index on Dask is split by period: the specification needs `time:`", field="time",
                         hint="run without --dask for a cross-section")
    if sp.missing == "interpolate":
        raise InputError("missing-value policy 'interpolate' runs along each city's years, across the periods "
                         "the Dask tasks hold", field="missing", hint="run without --dask, or use drop/mean/median")
    objective = {"topsis": topsis_weights, "combined": combine_with}.get(method, method)
    if scope == "pooled" and objective == "entropy" and normalisation != "minmax":
        raise InputError(f"pooled entropy weights with {normalisation} normalisation are not split into partial "
                         "sums on Dask", field="normalisation",
                         hint="use normalisation minmax, or scope per_year, or run without --dask")
    files = parquet_files(panel, ws, "panel", objects=True)
    common = {"files": files, "spec": sp, "source": panel}
    opts_in: dict[str, Any] = {"normalisation": normalisation, "shift": shift, "scale": scale,
                               "score_scale": score_scale, "topsis_normalisation": topsis_normalisation,
                               "topsis_weights": topsis_weights, "combine_with": combine_with,
                               "combine_method": combine_method, "alpha": alpha,
                               "pca_min_eigenvalue": pca_min_eigenvalue, "pca_min_cumulative": pca_min_cumulative}
    with cluster(dask) as client:
        # the periods and the row groups of each (Parquet metadata; the period column where the statistics do
        # not tell): read here for local files, by a worker for objects (the client opens none)
        if is_url(files[0]):
            periods, pieces = run_tasks(client, _plan, [files], key="citytwin-plan", time=sp.time)[0]
        else:
            periods, pieces = _plan(files, sp.time)
        # the periods shared out by rows, one shard per worker: one task per worker and pass (a period a task
        # made 6 rounds of 12 small tasks, the scheduler's and the client's work growing with them)
        workers = sorted(client.scheduler_info(n_workers=-1).get("workers", {}))
        order = _shards([sum(p.rows for p in pc) for pc in pieces], len(workers) or 1)
        where = [{"workers": [workers[i % len(workers)]], "allow_other_workers": True} if workers else {}
                 for i in range(len(order))]
        todo = [[(periods[j], pieces[j]) for j in idx] for idx in order]
        keys = task_keys("citytwin-index" if scope == "per_year" else "citytwin-prep", len(order))
        if scope == "per_year":
            futs = [client.submit(_index_shard, t, pure=False, key=k_, method=method, options=opts_in, **w_, **common)
                    for t, k_, w_ in zip(todo, keys, where, strict=True)]
            parts: list[Any] = [None] * len(periods)
            for idx, res in zip(order, run_futures(client, futs, progress=progress), strict=True):
                for j, r in zip(idx, res, strict=True):
                    parts[j] = r
            scores = _panel_order([r.scores for r, _ in parts], [rows for _, rows in parts])
            parts_r = [r for r, _ in parts]
            first = parts_r[0]
            popts = dict(first.options, scope="per_year", n_rows=int(sum(r.options["n_rows"] for r in parts_r)),
                         dask=str(dask), partitions="one task per worker, its periods each a whole index")
            if "entropy_k" in popts:
                popts["entropy_k"] = {str(p): r.options["entropy_k"] for p, r in zip(periods, parts_r, strict=True)}
            return IndexResult(weights=pd.concat([r.weights for r in parts_r], ignore_index=True), scores=scores,
                               options=popts, warnings=[w for r in parts_r for w in r.warnings],
                               diagnostics={str(p): r.diagnostics.get(str(p)) for p, r in zip(periods, parts_r, strict=True)
                                            if r.diagnostics}, spec=sp, id_col=sp.id, time_col=sp.time)
        # pooled: each worker keeps its shard prepared between the passes (the scheduler computes it again
        # on another worker if one dies: allow_other_workers); the passes, each pooling the previous pass's
        # results are submitted at once, the client waits once (scaleout_index_passes.pooled)
        shards = [client.submit(_prepare_shard, t, pure=False, key=k_, **w_, **common)
                  for t, k_, w_ in zip(todo, keys, where, strict=True)]
        stats, (w, extra, k, diag), scored = pooled(
            client, shards, order, where, method=method, objective=objective, sp=sp, o=opts_in, panel=panel,
            # entropy's passes and the scores use one normalised matrix (min-max without scale or shift): the
            # prepared values are let go once it is made
            last_raw=method in ("entropy", "combined") and scale == 1 and shift == 0, progress=progress)
    s_n, lo, hi = int(stats["n"]), stats["lo"], stats["hi"]
    const = hi - lo == 0
    warnings = list(stats["warnings"])  # each period's, in period order (given with its min/max)
    for c in [sp.columns[j] for j in np.flatnonzero(const)]:
        warnings.append(f"indicator {c!r} is constant: it carries no information and gets weight 0 in objective methods")
    # the workers scored and ranked their rows: the pieces put in the panel's order by their rows' positions
    scores = _scores_frame(scored, order)
    wf = pd.DataFrame({"indicator": [i.label for i in sp.indicators], "column": sp.columns,
                       "dimension": [i.dimension for i in sp.indicators],
                       "direction": [i.direction for i in sp.indicators],
                       "transform": [i.transform for i in sp.indicators], "weight": w})
    for name, v in extra.items():
        wf[name] = v
    options: dict[str, Any] = {"method": method, "scope": "pooled", "normalisation": normalisation, "shift": shift,
                               "scale": scale, "missing": sp.missing, "score_scale": score_scale,
                               "score": ("TOPSIS closeness coefficient" if method == "topsis" else
                                         "weighted sum of min-max normalised indicators (direction applied, no shift)"),
                               "n_rows": s_n, "n_indicators": len(sp.columns), "dask": str(dask),
                               "partitions": "one task per worker and pass, its periods kept between the passes; pooled statistics added at the start of each pass's tasks"}
    if method == "topsis":
        options.update(topsis_normalisation=topsis_normalisation, topsis_weights=topsis_weights)
    if method == "combined":
        options.update(combine_with=combine_with, combine_method=combine_method, alpha=alpha)
    if objective == "pca":
        options.update(pca_min_eigenvalue=pca_min_eigenvalue, pca_min_cumulative=pca_min_cumulative)
    options["spec"] = {"id": sp.id, "time": sp.time, "missing": sp.missing,
                       "indicators": [{k_: v for k_, v in asdict(i).items() if v is not None} for i in sp.indicators]}
    if k is not None:
        options["entropy_k"] = k
        options["entropy_rows"] = s_n
    return IndexResult(weights=wf, scores=scores, options=options, warnings=warnings,
                       diagnostics={"pooled": diag} if diag else {}, spec=sp, id_col=sp.id, time_col=sp.time)
