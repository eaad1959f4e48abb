"""The pooled index's passes on Dask (issue 19): what each worker does with its shard of periods, how the passes'
partial results are pooled, and the graph of one job (:func:`pooled`).

A job is submitted whole: every pass is one task per shard that depends on every shard's task of the previous pass
and first makes the pooled quantities (min/max, column sums, Σ p ln p, covariances, weights, TOPSIS' norms and ideal
points) from their results, then runs over its shard (:func:`_step`); so the scheduler starts each pass as soon as
the previous one ends, without a round trip through the client (docs/scaleout.md, session 17) and without a reduce task
between the passes (session 18: one transfer a pass between two workers instead of two). The client waits once, for
the scores (one piece per shard), which carry the pooled results it reports. Every task makes them with the code the
client ran before (the same sums in the same order: :mod:`citytwin.economy.sums`), so the result is the same, bit for
bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.foundation.scaleout import Progress, run_futures, task_keys

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from distributed import Client, Future

    from citytwin.economy.spec import IndexSpec


@dataclass
class Reduced:
    """A pooled result (:class:`_Reduce`): ``kw``, the keyword arguments it gives the passes that use it
    (:func:`_over`), and ``info``, what the client takes from it for the index's result."""

    kw: dict[str, Any]
    info: Any = None


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
    minmax: tuple[np.ndarray, np.ndarray, int, list[str]] | None = None
    """the first pass's result, kept: a pass the scheduler runs again (a result lost with a worker) after the
    prepared values were let go (:func:`_normed`) gives it again, the same bits"""

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


def _over(shard: _Shard, fn: Any, *given: Reduced, **kw: Any) -> list[Any]:
    """A pass over a worker's shard: ``[fn(period, **kw) for period in shard]`` (one task per worker), ``kw`` with
    the keyword arguments of the pooled results ``given`` (made at the start of this task: :class:`Reduced`)."""
    for g in given:
        kw = {**kw, **g.kw}
    return [fn(p, **kw) for p in shard.periods]


def _minmax_part(p: _Period) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    if p.minmax is None:
        X = p.raw()
        p.minmax = X.min(axis=0), X.max(axis=0), len(X), p.warnings
    return p.minmax


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

    values: dict[str, Any]
    """``score``, ``rank`` and the ``dim:NAME`` columns as NumPy arrays (numeric buffers only: no frame to pickle); the
    rank as 32-bit integers where it has no missing value (else its ``Int64`` array), made ``Int64`` by the client"""
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

    rank = rank_by(pd.DataFrame({"score": score}), "score")  # the rows are one period: ranks within it
    values: dict[str, Any] = {"score": score, "rank": _rank_buffer(rank)}
    for dname, v in dsums.items():
        values[f"dim:{dname}"] = v
    span = _run(p.rows)  # consecutive positions (whole row groups): the client makes them, 8 bytes a row not sent
    return _Scored(values, p.keys.iloc[:, 0], p.keys.iloc[:1, 1], None if span else p.rows, span)  # keys: id, period


def _rank_buffer(rank: pd.Series) -> Any:
    """A period's ``Int64`` ranks as they travel: 32-bit integers (4 bytes a row, not 8 and a mask byte) where none is
    missing, else the ``Int64`` array itself (:func:`_rank_column` makes the column of either)."""
    import numpy as np

    if len(rank) < 2**31 - 1 and not bool(rank.isna().any()):
        return rank.to_numpy(dtype=np.int32)
    return rank.array


def _rank_column(pieces: list[Any]) -> Any:
    """The ``Int64`` rank column of the pieces :func:`_rank_buffer` made, one after the other."""
    import numpy as np
    import pandas as pd

    if all(isinstance(a, np.ndarray) for a in pieces):
        a = np.concatenate(pieces).astype(np.int64) if pieces else np.empty(0, dtype=np.int64)
        return pd.arrays.IntegerArray(a, np.zeros(len(a), dtype=bool))
    return pd.concat([pd.Series(pd.array(a, dtype="Int64")) for a in pieces], ignore_index=True).array


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


def _over_scored(shard: _Shard, fn: Any, *given: Reduced, **kw: Any) -> list[_Scored]:
    """:func:`_over` for a scoring pass: a period's ids are not sent again where they equal the previous
    period's of the shard (a balanced panel: the same units every period)."""
    out: list[_Scored] = _over(shard, fn, *given, **kw)
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


def _in_order(parts: list[list[Any]], order: list[list[int]]) -> list[Any]:
    """The shards' results (each a list over its periods, ``order``: each shard's periods) in period order."""
    out: list[Any] = [None] * sum(len(o) for o in order)
    for idx, res in zip(order, parts, strict=True):
        for j, r in zip(idx, res, strict=True):
            out[j] = r
    return out


def _weights(w: np.ndarray, extra: dict[str, np.ndarray], k: float | None, diag: dict[str, Any]) -> Reduced:
    """Weights as the scoring passes take them (``w``) and as the client reports them (``info``)."""
    return Reduced({"w": w}, (w, extra, k, diag))


def _reduce_stats(parts: list[list[Any]], order: list[list[int]], pos: np.ndarray, panel: str) -> Reduced:
    """Pass 1 pooled: the column min/max (``lo``, ``hi``) and the rows (``info``: ``n`` and each period's warnings,
    in period order)."""
    import numpy as np

    mm = _in_order(parts, order)
    lo, hi = np.min([m[0] for m in mm], axis=0), np.max([m[1] for m in mm], axis=0)
    n = int(sum(m[2] for m in mm))
    if n < 2:
        raise InputError("an index needs at least 2 rows (cities or city-years)", file=panel)
    return Reduced({"lo": lo, "hi": hi, "pos": pos}, {"n": n, "lo": lo, "hi": hi, "warnings": [w for m in mm for w in m[3]]})


def _reduce_colsum(parts: list[list[Any]], order: list[list[int]]) -> Reduced:
    from citytwin.economy.sums import total

    col = total(_in_order(parts, order))
    if (col < 0).any():
        raise InputError("normalised values are negative (check scale and shift)")
    return Reduced({"col": col})


def _reduce_entropy(parts: list[list[Any]], order: list[list[int]], col: Reduced, stats: Reduced) -> Reduced:
    from citytwin.economy import weights as W
    from citytwin.economy.sums import total

    L = total(_in_order(parts, order))
    const = stats.kw["hi"] - stats.kw["lo"] == 0
    e, d, w, k = W.entropy_from_sums(col.kw["col"], L, stats.info["n"], const=const)
    return _weights(w, {"e": e, "d": d}, float(k), {})


def _reduce_mean(parts: list[list[Any]], order: list[list[int]], stats: Reduced) -> Reduced:
    from citytwin.economy.sums import total

    return Reduced({"mean": total(_in_order(parts, order)) / stats.info["n"]})


def _reduce_covariance(parts: list[list[Any]], order: list[list[int]], stats: Reduced) -> np.ndarray:
    """The pooled covariance (ddof 1), as :func:`citytwin.economy.sums.covariance` makes it in one process."""
    import numpy as np

    from citytwin.economy.sums import total

    return np.asarray(total(_in_order(parts, order)) / (stats.info["n"] - 1))


def _critic(C: np.ndarray, stats: Reduced) -> Reduced:
    import numpy as np

    from citytwin.economy import weights as W
    from citytwin.economy.sums import correlation

    c = W.critic_from_correlation(np.sqrt(np.diag(C)), correlation(C), stats.kw["hi"] - stats.kw["lo"] == 0)
    return _weights(c.w, {"sigma": c.sigma, "conflict": c.conflict, "information": c.information}, None, {})


def _pca(C: np.ndarray, stats: Reduced, min_eigenvalue: float, min_cumulative: float | None) -> Reduced:
    """As one process weighs (:func:`citytwin.economy.index.pca_objective`), R from the pooled covariance."""
    import numpy as np

    from citytwin.economy import weights as W
    from citytwin.economy.index import pca_objective
    from citytwin.economy.sums import correlation

    r = pca_objective(stats.kw["hi"] - stats.kw["lo"] == 0, lambda keep: W.pca_from_correlation(
        correlation(C)[np.ix_(keep, keep)], stats.info["n"], min_eigenvalue=min_eigenvalue,
        min_cumulative=min_cumulative))
    return _weights(r.w, r.extra, None, r.diagnostics)


def _combined(obj: Reduced, expert: np.ndarray, combine_method: str, alpha: float) -> Reduced:
    """The objective weights with the spec's expert weights (``combined``)."""
    from citytwin.economy import weights as W

    w, extra, k, diag = obj.info
    extra = dict(extra, objective_weight=w, expert_weight=expert)
    return _weights(W.combine_weights(expert, w, method=combine_method, alpha=alpha),  # type: ignore[arg-type]
                    extra, k, diag)


def _reduce_norm(parts: list[list[Any]], order: list[list[int]]) -> Reduced:
    import numpy as np

    from citytwin.economy.sums import total

    return Reduced({"norm": np.sqrt(total(_in_order(parts, order)))})


def _reduce_ideal(parts: list[list[Any]], order: list[list[int]], pos: np.ndarray, vector: bool) -> Reduced:
    """TOPSIS' ideal and anti-ideal points from the per-period max/min of the weighted values (a max is exact)."""
    import numpy as np

    bounds = _in_order(parts, order)
    vmax, vmin = np.max([b[0] for b in bounds], axis=0), np.min([b[1] for b in bounds], axis=0)
    ideal, anti = (np.where(pos, vmax, vmin), np.where(pos, vmin, vmax)) if vector else (vmax, vmin)
    return Reduced({"ideal": ideal, "anti": anti})


@dataclass(frozen=True)
class _Ref:
    """In a pending reduce's arguments: the pooled result of that name (made by an earlier pass's task)."""

    name: str


@dataclass(frozen=True)
class _Reduce:
    """A pooled result ``name`` = ``fn(*args)``, made at the start of the pass after the one whose partial results it
    takes (``parts``: ``fn(those results, order, *args)``), in every task of that pass (:func:`_step`)."""

    name: str
    fn: Any
    args: tuple[Any, ...]
    parts: bool = True


@dataclass
class _Part:
    """What a pass's task gives: its shard's results (one per period) and every pooled result made so far (the
    same in every shard's task: the same reduces of the same results), which the next pass carries on."""

    values: list[Any]
    pooled: dict[str, Any]


def _const(value: Any) -> Any:
    return value


def _step(shard: _Shard, fn: Any, prev: list[_Part], order: list[list[int]], todo: tuple[_Reduce, ...],
          use: tuple[str, ...], over: Any, kw: dict[str, Any]) -> _Part:
    """A pass over a worker's shard. First the pooled results ``todo`` from the previous pass's results ``prev`` (every
    shard's, in shard order: the task depends on them all), as the reduce tasks of session 17 made them (the same code,
    the same order: the same bits in every task); then ``over(shard, fn, **kw)`` with the keyword arguments of the pooled
    results ``use`` (:class:`Reduced`). One transfer a pass between the workers (each fetches the other's results), where a
    reduce task made two: its inputs fetched, its result sent on (docs/scaleout.md, session 18)."""
    pooled: dict[str, Any] = dict(prev[0].pooled) if prev else {}
    for r in todo:
        args = tuple(pooled[a.name] if isinstance(a, _Ref) else a for a in r.args)
        pooled[r.name] = r.fn([p.values for p in prev], order, *args) if r.parts else r.fn(*args)
    return _Part(over(shard, fn, *(pooled[u] for u in use), **kw), pooled)


@dataclass
class _Graph:
    """The shards of one pooled job, where each is kept, and the passes submitted over them: each pass one task per
    shard, depending on the previous pass's tasks; the reduces pending (:meth:`reduce`) are made in the next pass's
    tasks."""

    client: Client
    shards: list[Future[Any]]
    order: list[list[int]]
    """each shard's periods (indices in period order)"""
    where: list[dict[str, Any]]
    prev: list[Future[Any]] | None = None
    todo: list[_Reduce] | None = None

    def reduce(self, name: str, fn: Any, *args: Any, parts: bool = True) -> _Ref:
        """A pooled result made at the start of the next pass (``parts``: from the last pass's results)."""
        if self.todo is None:
            self.todo = []
        self.todo.append(_Reduce(name, fn, args, parts))
        return _Ref(name)

    def each(self, fn: Any, key: str, *use: _Ref, over: Any = _over, **kw: Any) -> list[Future[Any]]:
        """A pass: ``over(shard, fn, *use, **kw)``, one task per shard on the worker that keeps it, after the pending
        reduces."""
        todo, prev = tuple(self.todo or ()), self.prev or []
        self.prev = [self.client.submit(_step, sh, fn, prev, self.order, todo, tuple(u.name for u in use), over, kw,
                                        pure=False, key=k_, **w)
                     for sh, k_, w in zip(self.shards, task_keys(key, len(self.shards)), self.where, strict=True)]
        self.todo = None
        return self.prev


def _weights_graph(g: _Graph, method: str, sp: IndexSpec, stats: _Ref, o: Mapping[str, Any],
                   last_raw: bool) -> _Ref:
    """The passes of an objective (or given) method's weights: the pooled result (pending: made in the next pass's
    tasks) whose ``kw`` is ``{"w": weights}``. ``last_raw``: no pass after entropy's needs the prepared values
    (:func:`_normed`)."""
    import numpy as np

    if method == "entropy":
        sc = {"scale": o["scale"], "shift": o["shift"]}
        g.each(_colsum_part, "citytwin-colsum", stats, last_raw=last_raw, **sc)
        col = g.reduce("col", _reduce_colsum)
        g.each(_plogp_part, "citytwin-plogp", stats, col, **sc)
        return g.reduce("w", _reduce_entropy, col, stats)
    if method in ("critic", "pca"):  # the pooled covariance in two passes: sums, then centred products
        g.each(_moment_part, f"citytwin-{method}-sum", stats, what=method)
        mean = g.reduce("mean", _reduce_mean, stats)
        g.each(_moment_part, f"citytwin-{method}-cross", stats, mean, what=method)
        C = g.reduce("C", _reduce_covariance, stats)
        if method == "critic":
            return g.reduce("w", _critic, C, stats, parts=False)
        return g.reduce("w", _pca, C, stats, o["pca_min_eigenvalue"], o["pca_min_cumulative"], parts=False)
    if method == "equal":
        return g.reduce("w", _const, _weights(np.full(len(sp.columns), 1.0 / len(sp.columns)), {}, None, {}),
                        parts=False)
    if method == "expert":
        return g.reduce("w", _const, _weights(sp.expert_weights(), {}, None, {}), parts=False)
    raise InputError(f"unknown weighting method {method!r}", field="method")


def pooled(client: Client, shards: list[Future[Any]], order: list[list[int]], where: list[dict[str, Any]], *,
           method: str, objective: str, sp: IndexSpec, o: Mapping[str, Any], panel: str, last_raw: bool,
           progress: Progress | None = None) -> tuple[dict[str, Any], tuple[Any, ...], list[_Scored]]:
    """A pooled job's passes over ``shards`` (their periods ``order``), submitted whole. Gives the first pass
    pooled (``n``, the periods' warnings), the weights (weights, the method's columns, entropy k, diagnostics)
    and each period's scores in period order. ``progress`` follows the first pass's tasks (as before)."""
    import numpy as np

    from citytwin.foundation.scaleout import _distributed

    g = _Graph(client, shards, order, where)
    pos = np.array([i.positive for i in sp.indicators])
    mm = g.each(_minmax_part, "citytwin-minmax")
    stats = g.reduce("stats", _reduce_stats, pos, panel)
    w = _weights_graph(g, objective, sp, stats, o, last_raw)
    if method == "combined":
        w = g.reduce("w", _combined, w, sp.expert_weights(), o["combine_method"], o["alpha"], parts=False)
    if method == "topsis":
        vector = o["topsis_normalisation"] == "vector"
        if vector:
            g.each(_sumsq_part, "citytwin-sumsq")
            norm = g.reduce("norm", _reduce_norm)
        else:
            norm = g.reduce("norm", _const, Reduced({"norm": None}), parts=False)
        g.each(_topsis_bounds_part, "citytwin-topsis-bounds", stats, w, norm)
        ideal = g.reduce("ideal", _reduce_ideal, pos, vector)
        scored = g.each(_topsis_score_part, "citytwin-score", stats, w, norm, ideal, over=_over_scored,
                        score_scale=o["score_scale"])
    else:
        dims = ({d: np.array([i.dimension == d for i in sp.indicators]) for d in sp.dimensions}
                if sp.dimensions else {})
        scored = g.each(_score_part, "citytwin-score", stats, w, over=_over_scored, score_scale=o["score_scale"],
                        dims=dims)
    if progress:  # the first pass's tasks as they finish (the rest of the job is queued already)
        progress(0, len(mm))
        for i, _ in enumerate(_distributed().as_completed(mm, loop=client.loop)):
            progress(i + 1, len(mm))
    del mm
    # each shard's scores fetched as soon as its task ends (``each``), while the other shard's still runs: the
    # client's gather after the last task was for every shard at once, the first worker's core idle meanwhile
    got: list[_Part] = run_futures(client, scored, each=lambda i, part: part)
    return (got[0].pooled["stats"].info, got[0].pooled["w"].info,
            _in_order([p.values for p in got], order))
