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
  city-years). Every global quantity is reduced on the client from per-period partial results, in
  passes over the prepared periods:

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
  period, each column as one contiguous array, the periods' partial sums added in period order on the
  client, the centred cross-products entry by entry (no BLAS), each row's sum left to right. So the
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

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from distributed import Client, Future

    from citytwin.economy.index import IndexResult
    from citytwin.economy.spec import IndexSpec

__all__ = ["POOLED_METHODS", "index"]

#: methods whose pooled weights and scores are computed from partial sums on Dask (all of them)
POOLED_METHODS = ("entropy", "topsis", "critic", "pca", "equal", "expert", "combined")


@dataclass
class _Period:
    """One period of the panel, prepared on a worker (kept there between the stages)."""

    keys: pd.DataFrame
    X: np.ndarray | None
    """the prepared values; ``None`` once the last pass that needs them has its normalised matrix (:func:`_normed`)"""
    warnings: list[str]
    dropped: int
    rows: np.ndarray
    """each row's position in the panel (files in order, rows in file order)"""
    Z: np.ndarray | None = None
    """the normalised values of the last pass (:func:`_norm`), kept for the next pass with the same bounds"""
    Z_of: tuple[Any, ...] = ()

    def __sizeof__(self) -> int:  # what Dask weighs before moving it (a plain object weighs ~50 bytes)
        x, z = (0 if a is None else a.nbytes for a in (self.X, self.Z))
        return int(x + z + self.rows.nbytes + self.keys.memory_usage(deep=True).sum()) + 1024

    def raw(self) -> np.ndarray:
        """The prepared values (an error if a pass dropped them: the job's passes say when they may)."""
        if self.X is None:
            raise RuntimeError("the prepared values were dropped after the last pass that needed them")
        return self.X


@dataclass
class _Shard:
    """The periods one worker holds for the whole job (one task per worker and pass, not one per period)."""

    periods: list[_Period]

    def __sizeof__(self) -> int:
        return sum(p.__sizeof__() for p in self.periods) + 1024


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


def _over(shard: _Shard, fn: Any, **kw: Any) -> list[Any]:
    """A pass over a worker's shard: ``[fn(period, **kw) for period in shard]`` (one task per worker)."""
    return [fn(p, **kw) for p in shard.periods]


def _minmax_part(p: _Period) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    X = p.raw()
    return X.min(axis=0), X.max(axis=0), len(X), p.warnings


def _norm(X: np.ndarray, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """:func:`citytwin.economy.weights.minmax` with the panel's (global) min and max."""
    from citytwin.economy.weights import minmax_between

    return minmax_between(X, lo, hi, pos, scale=scale, shift=shift)


def _normed(p: _Period, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, scale: float, shift: float,
            last_raw: bool = False) -> np.ndarray:
    """:func:`_norm` of the period's values, kept for the next pass with the same bounds (entropy's two
    passes and its scores normalise alike: computed once). ``last_raw``: no later pass of the job needs the
    prepared values, which are then let go (the worker holds one matrix per period, not two: less memory
    to fault in, which on a fresh worker cost more kernel time than the passes' own code)."""
    key = (lo.tobytes(), hi.tobytes(), pos.tobytes(), scale, shift)
    if p.Z is None or p.Z_of != key:
        if last_raw and p.Z is None and p.raw().flags.writeable:  # nothing else holds the prepared values
            p.Z, p.Z_of, p.X = _norm_into(p.raw(), lo, hi, pos, scale, shift), key, None
        else:
            p.Z, p.Z_of = _norm(p.raw(), lo, hi, pos, scale, shift), key
            if last_raw:
                p.X = None
    return p.Z


def _norm_into(X: np.ndarray, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, scale: float,
               shift: float) -> np.ndarray:
    """:func:`_norm` written over ``X`` itself, a column at a time (``X`` is then the normalised matrix): the
    same operations on each value as :func:`citytwin.economy.weights.minmax_between`, so the same bits
    (tests/scaleout/test_scaleout_index_read.py), without a second matrix of new memory per period."""
    import numpy as np

    rng = hi - lo
    safe = np.where(rng == 0, 1.0, rng)
    for j in range(X.shape[1]):
        col = X[:, j]
        if rng[j] == 0:
            col[:] = 1.0
        elif pos[j]:
            col -= lo[j]
            col /= safe[j]
        else:
            np.subtract(hi[j], col, out=col)
            col /= safe[j]
        col *= scale  # always, as minmax_between (-0.0 + 0.0 is 0.0)
        col += shift
    return X


def _colsum_part(p: _Period, *, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, scale: float,
                 shift: float, last_raw: bool = False) -> np.ndarray:
    from citytwin.economy.sums import colsum

    return colsum(_normed(p, lo, hi, pos, scale, shift, last_raw))


def _plogp_part(p: _Period, *, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, scale: float, shift: float,
                col: np.ndarray) -> np.ndarray:
    from citytwin.economy.sums import plogp_colsum

    return plogp_colsum(_normed(p, lo, hi, pos, scale, shift), col)


def _moment_values(p: _Period, what: str, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The matrix whose covariance a method needs: CRITIC the normalised values (constant columns 0, as
    :func:`~citytwin.economy.weights.critic_weights`), PCA the direction-signed raw values."""
    import numpy as np

    if what == "critic":
        Z = _norm(p.raw(), lo, hi, pos, 1.0, 0.0)
        Z[:, hi - lo == 0] = 0.0
        return Z
    X = p.raw()
    return np.asarray(np.where(pos, X, -X))


def _moment_part(p: _Period, *, what: str, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray,
                 mean: np.ndarray | None = None) -> np.ndarray:
    """Column sums (``mean`` None), else the sums of the centred cross-products ``(M - mean)ᵀ(M - mean)``, as
    :func:`citytwin.economy.sums.covariance` takes them in one process."""
    from citytwin.economy.sums import colsum, cross

    M = _moment_values(p, what, lo, hi, pos)
    return colsum(M) if mean is None else cross(M - mean)


@dataclass
class _Scored:
    """One period's scores as its worker sends them: no period column (one value, put back by the client) and
    the ids only where they differ from the shard's previous period's (:func:`_over_scored`)."""

    values: pd.DataFrame
    """``score``, ``rank`` and the ``dim:NAME`` columns"""
    ids: pd.Series | None
    """the id column (``None``: the same as the previous period's in the shard)"""
    period: pd.Series
    """the period column's first row (its value and dtype)"""
    rows: np.ndarray | None
    """each row's position in the panel (``None``: the run ``span`` gives them)"""
    span: tuple[int, int] | None = None
    """``(first, count)`` where the rows are the panel positions ``first .. first + count - 1`` in order (a
    period's whole row groups, none dropped): not sent, the client needs only the run (:func:`_run`)"""

    def __len__(self) -> int:
        return self.span[1] if self.span is not None else len(self.rows) if self.rows is not None else 0

    def positions(self) -> np.ndarray:
        import numpy as np

        if self.rows is not None:
            return self.rows
        assert self.span is not None
        return np.arange(self.span[0], self.span[0] + self.span[1], dtype=np.int64)


def _run(rows: np.ndarray) -> tuple[int, int] | None:
    """``(first, count)`` if ``rows`` are consecutive ascending positions, else ``None``."""
    import numpy as np

    n = len(rows)
    if n == 0 or int(rows[-1]) - int(rows[0]) != n - 1 or (n > 1 and not bool(np.all(rows[1:] > rows[:-1]))):
        return None
    return int(rows[0]), n


def _scored(p: _Period, score: np.ndarray, dsums: dict[str, np.ndarray]) -> _Scored:
    """The period's ``score``, ``rank`` and ``dim:NAME`` columns (``dsums``), its keys and its rows' panel
    positions (the row sums one process takes: :func:`_weighted_rowsums`)."""
    import pandas as pd

    from citytwin.economy.ranking import rank_by

    frame = pd.DataFrame({"score": score})
    frame["rank"] = rank_by(frame, "score")  # the rows are one period: ranks within it
    for dname, v in dsums.items():
        frame[f"dim:{dname}"] = v
    span = _run(p.rows)  # consecutive positions (whole row groups): the client makes them, 8 bytes a row not sent
    return _Scored(frame, p.keys.iloc[:, 0], p.keys.iloc[:1, 1], None if span else p.rows, span)  # keys: id, period


def _weighted_rowsums(Z: np.ndarray, w: np.ndarray, score_scale: float, zero: np.ndarray,
                      dims: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The row sums of ``contrib = Z * w * score_scale`` (columns ``zero`` set to 0) and of each dimension's
    columns, as :func:`citytwin.economy.sums.rowsum` takes them (each row's columns added left to right), a
    column of ``contrib`` at a time: the same operations on each value, without the period's ``contrib``
    matrix (fresh memory the kernel faults in for each period: docs/scaleout.md, session 16)."""
    import numpy as np

    n, k = Z.shape
    score: np.ndarray | None = None
    dsums: dict[str, np.ndarray | None] = {d: None for d in dims}
    for j in range(k):
        c = Z[:, j] * w[j]
        c *= score_scale
        if zero[j]:
            c[:] = 0.0
        if score is None:
            score = c.copy()
        else:
            score += c
        for d, mask in dims.items():
            if mask[j]:
                acc = dsums[d]
                if acc is None:
                    dsums[d] = c.copy()
                else:
                    acc += c
    return (np.zeros(n) if score is None else score,
            {d: np.zeros(n) if v is None else v for d, v in dsums.items()})


def _over_scored(shard: _Shard, fn: Any, **kw: Any) -> list[_Scored]:
    """:func:`_over` for a scoring pass: a period's ids are not sent again where they equal the previous
    period's of the shard (a balanced panel: the same units every period)."""
    out: list[_Scored] = _over(shard, fn, **kw)
    for i in range(len(out) - 1, 0, -1):  # from the end: each compared with its predecessor's own ids
        a, b = out[i].ids, out[i - 1].ids
        if a is not None and b is not None and a.equals(b):
            out[i].ids = None
    return out


def _score_part(p: _Period, *, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, w: np.ndarray,
                score_scale: float, dims: dict[str, np.ndarray]) -> _Scored:
    # constant columns score 0 (their Z is 1: 1 * w is finite, so this is exact)
    return _scored(p, *_weighted_rowsums(_normed(p, lo, hi, pos, 1.0, 0.0), w, score_scale, hi - lo == 0, dims))


def _sumsq_part(p: _Period) -> np.ndarray:
    from citytwin.economy.sums import colsum

    return colsum(p.raw() ** 2)


def _topsis_values(p: _Period, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, w: np.ndarray,
                   norm: np.ndarray | None) -> np.ndarray:
    """The weighted normalised values of :func:`citytwin.economy.weights.topsis` (``norm`` given: vector)."""
    import numpy as np

    if norm is not None:
        return np.asarray(p.raw() / np.where(norm == 0, 1.0, norm) * w)
    return np.asarray(_norm(p.raw(), lo, hi, pos, 1.0, 0.0) * w)


def _topsis_bounds_part(p: _Period, *, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, w: np.ndarray,
                        norm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    V = _topsis_values(p, lo, hi, pos, w, norm)
    return V.max(axis=0), V.min(axis=0)


def _topsis_score_part(p: _Period, *, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, w: np.ndarray,
                       norm: np.ndarray | None, ideal: np.ndarray, anti: np.ndarray,
                       score_scale: float) -> _Scored:
    from citytwin.economy.weights import topsis_closeness

    V = _topsis_values(p, lo, hi, pos, w, norm)
    return _scored(p, topsis_closeness(V, ideal, anti).closeness * score_scale, {})


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
    frame = pd.concat([pd.concat([s.ids for s in parts], ignore_index=True),
                       pd.concat([s.period.iloc[np.zeros(len(s), dtype=np.intp)] for s in parts],
                                 ignore_index=True),
                       pd.concat([s.values for s in parts], ignore_index=True)], axis=1)
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


@dataclass
class _Job:
    """The shards of one pooled job: where each is kept, and a pass over them (one task per shard)."""

    client: Client
    shards: list[Future[Any]]
    order: list[list[int]]
    """each shard's periods (indices in period order)"""
    where: list[dict[str, Any]]

    def run(self, fn: Any, key: str, progress: Progress | None = None, over: Any = _over, **kw: Any) -> list[Any]:
        """``fn(period, **kw)`` for every period, on the worker that keeps it (``over(shard, fn, **kw)``: one task
        per shard); the results in period order."""
        keys = task_keys(key, len(self.shards))
        futs = [self.client.submit(over, sh, fn, pure=False, key=k_, **w, **kw)
                for sh, k_, w in zip(self.shards, keys, self.where, strict=True)]
        parts = run_futures(self.client, futs, progress=progress)
        out: list[Any] = [None] * sum(len(o) for o in self.order)
        for idx, res in zip(self.order, parts, strict=True):
            for j, r in zip(idx, res, strict=True):
                out[j] = r
        return out


@dataclass
class _Stats:
    """The pooled quantities every method starts from (pass 1)."""

    lo: np.ndarray
    hi: np.ndarray
    n: int
    pos: np.ndarray


def _covariance(job: _Job, what: str, s: _Stats) -> np.ndarray:
    """The pooled covariance (ddof 1) of :func:`_moment_values` in two passes: sums, then centred products,
    as :func:`citytwin.economy.sums.covariance` makes it in one process (the same bits)."""
    import numpy as np

    from citytwin.economy.sums import total

    kw: dict[str, Any] = {"what": what, "lo": s.lo, "hi": s.hi, "pos": s.pos}
    mean = total(job.run(_moment_part, f"citytwin-{what}-sum", **kw)) / s.n
    C = total(job.run(_moment_part, f"citytwin-{what}-cross", mean=mean, **kw))
    return np.asarray(C / (s.n - 1))


def _pooled_weights(job: _Job, method: str, sp: IndexSpec, s: _Stats, o: Mapping[str, Any],
                    last_raw: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray], float | None, dict[str, Any]]:
    """Weights, the method's columns, entropy k and diagnostics of an objective (or given) method, pooled.
    ``last_raw``: no pass after entropy's needs the prepared values (:func:`_normed`)."""
    import numpy as np

    from citytwin.economy import weights as W
    from citytwin.economy.index import pca_objective
    from citytwin.economy.sums import correlation, total

    const = s.hi - s.lo == 0
    if method == "entropy":
        kw: dict[str, Any] = {"lo": s.lo, "hi": s.hi, "pos": s.pos, "scale": o["scale"], "shift": o["shift"]}
        col = total(job.run(_colsum_part, "citytwin-colsum", last_raw=last_raw, **kw))
        if (col < 0).any():
            raise InputError("normalised values are negative (check scale and shift)")
        L = total(job.run(_plogp_part, "citytwin-plogp", col=col, **kw))
        e, d, w, k = W.entropy_from_sums(col, L, s.n, const=const)
        return w, {"e": e, "d": d}, float(k), {}
    if method == "critic":
        C = _covariance(job, "critic", s)
        c = W.critic_from_correlation(np.sqrt(np.diag(C)), correlation(C), const)
        return c.w, {"sigma": c.sigma, "conflict": c.conflict, "information": c.information}, None, {}
    if method == "pca":  # as one process weighs (economy.index.pca_objective), R from the pooled covariance
        r = pca_objective(const, lambda keep: W.pca_from_correlation(
            correlation(_covariance(job, "pca", s))[np.ix_(keep, keep)], s.n,
            min_eigenvalue=o["pca_min_eigenvalue"], min_cumulative=o["pca_min_cumulative"]))
        return r.w, r.extra, None, r.diagnostics
    if method == "equal":
        return np.full(len(sp.columns), 1.0 / len(sp.columns)), {}, None, {}
    if method == "expert":
        return sp.expert_weights(), {}, None, {}
    raise InputError(f"unknown weighting method {method!r}", field="method")


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

    from citytwin.economy import weights as W
    from citytwin.economy.index import METHODS, IndexResult
    from citytwin.economy.spec import parse_spec
    from citytwin.economy.sums import total

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
        # on another worker if one dies: allow_other_workers)
        pos = np.array([i.positive for i in sp.indicators])
        job = _Job(client, [client.submit(_prepare_shard, t, pure=False, key=k_, **w_, **common)
                            for t, k_, w_ in zip(todo, keys, where, strict=True)], order, where)
        mm = job.run(_minmax_part, "citytwin-minmax", progress=progress)
        s = _Stats(lo=np.min([m[0] for m in mm], axis=0), hi=np.max([m[1] for m in mm], axis=0),
                   n=int(sum(m[2] for m in mm)), pos=pos)
        if s.n < 2:
            raise InputError("an index needs at least 2 rows (cities or city-years)", file=panel)
        const = s.hi - s.lo == 0
        # entropy's passes and the scores use one normalised matrix (min-max without scale or shift): the
        # prepared values are let go once it is made
        w, extra, k, diag = _pooled_weights(job, objective, sp, s, opts_in,
                                            last_raw=method in ("entropy", "combined") and scale == 1 and shift == 0)
        if method == "combined":
            expert = sp.expert_weights()
            extra = dict(extra, objective_weight=w, expert_weight=expert)
            w = W.combine_weights(expert, w, method=combine_method, alpha=alpha)  # type: ignore[arg-type]
        sk: dict[str, Any] = {"lo": s.lo, "hi": s.hi, "pos": pos, "w": w}
        if method == "topsis":
            norm = (np.sqrt(total(job.run(_sumsq_part, "citytwin-sumsq")))
                    if topsis_normalisation == "vector" else None)
            bounds = job.run(_topsis_bounds_part, "citytwin-topsis-bounds", norm=norm, **sk)
            vmax, vmin = np.max([b[0] for b in bounds], axis=0), np.min([b[1] for b in bounds], axis=0)
            ideal, anti = ((np.where(pos, vmax, vmin), np.where(pos, vmin, vmax)) if norm is not None
                           else (vmax, vmin))
            scored = job.run(_topsis_score_part, "citytwin-score", over=_over_scored, norm=norm, ideal=ideal, anti=anti,
                             score_scale=score_scale, **sk)
        else:
            dims = ({d: np.array([i.dimension == d for i in sp.indicators]) for d in sp.dimensions}
                    if sp.dimensions else {})
            scored = job.run(_score_part, "citytwin-score", over=_over_scored, score_scale=score_scale, dims=dims, **sk)
    warnings = [w_ for m in mm for w_ in m[3]]  # each period's, in period order (given with its min/max)
    for c in [sp.columns[j] for j in np.flatnonzero(const)]:
        warnings.append(f"indicator {c!r} is constant: it carries no information and gets weight 0 in objective methods")
    # the workers scored and ranked their rows: the pieces put in the panel's order by their rows' positions
    scores = _scores_frame(scored, job.order)
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
                               "n_rows": s.n, "n_indicators": len(sp.columns), "dask": str(dask),
                               "partitions": "one task per worker and pass, its periods kept between the passes; pooled statistics added on the client"}
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
        options["entropy_rows"] = s.n
    return IndexResult(weights=wf, scores=scores, options=options, warnings=warnings,
                       diagnostics={"pooled": diag} if diag else {}, spec=sp, id_col=sp.id, time_col=sp.time)
