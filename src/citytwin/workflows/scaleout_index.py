"""The economy index on Dask (issue 19): one task per period, pooled methods from exact partial sums.

:func:`index` gives the result of :func:`citytwin.economy.index.composite_index` for a Parquet panel
(re-exported as :func:`citytwin.workflows.scaleout.index`). The workers read their periods themselves
and keep them prepared between the stages; the client finds the periods (from the row groups'
statistics where each holds one period, else the period column) and holds small partial results. The
workers score and rank their rows and give each row's position in the panel (files in order, then row groups and rows, from the Parquet metadata and the
period column), so the client puts the scores in the panel's order with one concatenation and one
argsort. The periods are spread round robin over the workers; every pass runs where its period is kept.

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

  Sums added in another order (and a mean subtracted before the products rather than after) differ
  from one process in the last bits: weights and scores agree to 1e-12 on the real panel (the tests
  assert 1e-10), ranks exactly. Min/max, the ideal points and the min-max TOPSIS scores are exact.
  Refused on Dask: ``sum`` normalisation of entropy weights (and ``missing: interpolate``, which runs
  along each city's years across the periods).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.foundation.scaleout import Progress, cluster, parse_dask, run_tasks, task_keys
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
    X: np.ndarray
    warnings: list[str]
    dropped: int
    rows: np.ndarray
    """each row's position in the panel (files in order, rows in file order)"""


def _row_positions(period: Any, *, files: list[str], bases: list[int], time: str) -> np.ndarray:
    """The panel row positions (file order, then row order) of ``period``'s rows: the rows
    ``pandas.read_parquet(f, filters=[(time, "==", period)])`` gives, found from the time column of the
    row groups whose statistics may hold ``period``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out: list[np.ndarray] = []
    for f, base in zip(files, bases, strict=True):
        pf = pq.ParquetFile(f)
        col = pf.schema_arrow.get_field_index(time)
        value = pa.scalar(period)
        start = base
        for g in range(pf.metadata.num_row_groups):
            rg = pf.metadata.row_group(g)
            st = rg.column(col).statistics if col >= 0 else None
            skip = False
            if st is not None and st.has_min_max:
                try:
                    skip = bool(period < st.min or period > st.max)
                except TypeError:  # statistics of another type than the period: read the column
                    skip = False
            if not skip:
                t = pf.read_row_group(g, columns=[time]).column(0)
                hit = pc.fill_null(pc.equal(t, value.cast(t.type) if value.type != t.type else value), False)
                out.append(start + np.flatnonzero(hit.to_numpy(zero_copy_only=False)))
            start += rg.num_rows
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def _read_period(period: Any, *, files: list[str], spec: IndexSpec, source: str) -> pd.DataFrame:
    import pandas as pd

    assert spec.time is not None
    cols = list(dict.fromkeys([spec.id, spec.time, *spec.columns]))
    frames = [pd.read_parquet(f, columns=cols, filters=[(spec.time, "==", period)]) for f in files]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _kept_positions(period: Any, frame: pd.DataFrame, keys: pd.DataFrame, *, files: list[str], bases: list[int],
                    spec: IndexSpec) -> np.ndarray:
    """The panel row positions of ``keys`` (the rows :func:`~citytwin.economy.spec.prepare` kept of
    ``frame``, period ``period``): the client puts the scores in the panel's order with one argsort."""
    import numpy as np
    import pandas as pd

    assert spec.time is not None
    pos = _row_positions(period, files=files, bases=bases, time=spec.time)
    if len(pos) != len(frame):
        raise InputError(f"period {period!r}: {len(frame)} rows read but {len(pos)} found in the row groups "
                            "(the Parquet files changed while the job ran?)", file=files[0])
    if len(keys) != len(frame):  # rows dropped (missing: drop): the ids are unique within a period
        pos = pos[pd.Index(frame[spec.id].to_numpy()).get_indexer(keys[spec.id].to_numpy())]
    return np.asarray(pos, dtype=np.int64)


def _prepare_period(period: Any, *, files: list[str], bases: list[int], spec: IndexSpec, source: str) -> _Period:
    from citytwin.economy.spec import prepare

    frame = _read_period(period, files=files, spec=spec, source=source)
    prep = prepare(frame, spec, source=source)
    return _Period(prep.keys, prep.values[spec.columns].to_numpy(dtype=float), prep.warnings, prep.dropped_rows,
                   _kept_positions(period, frame, prep.keys, files=files, bases=bases, spec=spec))


def _index_period(period: Any, *, files: list[str], bases: list[int], spec: IndexSpec, source: str, method: str,
                  options: dict[str, Any]) -> tuple[IndexResult, np.ndarray]:
    from citytwin.economy.index import composite_index

    frame = _read_period(period, files=files, spec=spec, source=source)
    r = composite_index(frame, spec, method, scope="per_year", source=source, **options)
    return r, _kept_positions(period, frame, r.scores[[spec.id]], files=files, bases=bases, spec=spec)


def _minmax_part(p: _Period) -> tuple[np.ndarray, np.ndarray, int]:
    return p.X.min(axis=0), p.X.max(axis=0), len(p.X)


def _norm(X: np.ndarray, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """:func:`citytwin.economy.weights.minmax` with the panel's (global) min and max."""
    import numpy as np

    rng = hi - lo
    safe = np.where(rng == 0, 1.0, rng)
    Z = np.where(pos, (X - lo) / safe, (hi - X) / safe)
    Z[:, rng == 0] = 1.0
    return np.asarray(scale * Z + shift)


def _colsum_part(p: _Period, *, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, scale: float,
                 shift: float) -> np.ndarray:
    import numpy as np

    return np.asarray(_norm(p.X, lo, hi, pos, scale, shift).sum(axis=0))


def _plogp_part(p: _Period, *, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, scale: float, shift: float,
                col: np.ndarray) -> np.ndarray:
    import numpy as np

    P = _norm(p.X, lo, hi, pos, scale, shift) / np.where(col == 0, 1.0, col)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(P > 0, P * np.log(P), 0.0).sum(axis=0))


def _moment_values(p: _Period, what: str, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The matrix whose covariance a method needs: CRITIC the normalised values (constant columns 0, as
    :func:`~citytwin.economy.weights.critic_weights`), PCA the direction-signed raw values."""
    import numpy as np

    if what == "critic":
        Z = _norm(p.X, lo, hi, pos, 1.0, 0.0)
        Z[:, hi - lo == 0] = 0.0
        return Z
    return np.asarray(np.where(pos, p.X, -p.X))


def _moment_part(p: _Period, *, what: str, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray,
                 mean: np.ndarray | None = None) -> np.ndarray:
    """Column sums (``mean`` None), else the sums of the centred cross-products ``(M - mean)ᵀ(M - mean)``."""
    import numpy as np

    M = _moment_values(p, what, lo, hi, pos)
    if mean is None:
        return np.asarray(M.sum(axis=0))
    D = M - mean
    return np.asarray(D.T @ D)


def _scored(p: _Period, contrib: np.ndarray, dims: dict[str, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray]:
    """The period's keys with ``score`` (the row sums of ``contrib``) and ``dim:NAME`` columns, and its rows'
    panel positions: summed on the worker, the row sums one process takes (each row's own sum)."""
    from citytwin.economy.ranking import rank_by

    frame = p.keys.copy()
    frame["score"] = contrib.sum(axis=1)
    frame["rank"] = rank_by(frame, "score", by=str(p.keys.columns[1]))  # keys: id, period; ranks within it
    for dname, mask in dims.items():
        frame[f"dim:{dname}"] = contrib[:, mask].sum(axis=1)
    return frame, p.rows


def _warnings_part(p: _Period) -> list[str]:
    return p.warnings


def _score_part(p: _Period, *, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, w: np.ndarray,
                score_scale: float, dims: dict[str, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray]:
    Z = _norm(p.X, lo, hi, pos, 1.0, 0.0)
    Z[:, hi - lo == 0] = 0.0
    return _scored(p, Z * w * score_scale, dims)


def _sumsq_part(p: _Period) -> np.ndarray:
    import numpy as np

    return np.asarray((p.X ** 2).sum(axis=0))


def _topsis_values(p: _Period, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, w: np.ndarray,
                   norm: np.ndarray | None) -> np.ndarray:
    """The weighted normalised values of :func:`citytwin.economy.weights.topsis` (``norm`` given: vector)."""
    import numpy as np

    if norm is not None:
        return np.asarray(p.X / np.where(norm == 0, 1.0, norm) * w)
    return np.asarray(_norm(p.X, lo, hi, pos, 1.0, 0.0) * w)


def _topsis_bounds_part(p: _Period, *, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, w: np.ndarray,
                        norm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    V = _topsis_values(p, lo, hi, pos, w, norm)
    return V.max(axis=0), V.min(axis=0)


def _topsis_score_part(p: _Period, *, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray, w: np.ndarray,
                       norm: np.ndarray | None, ideal: np.ndarray, anti: np.ndarray,
                       score_scale: float) -> tuple[pd.DataFrame, np.ndarray]:
    from citytwin.economy.weights import topsis_closeness

    V = _topsis_values(p, lo, hi, pos, w, norm)
    return _scored(p, topsis_closeness(V, ideal, anti).closeness[:, None] * score_scale, {})


def _panel_order(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``frame`` (its rows at panel positions ``rows``) in the panel's row order."""
    import numpy as np

    return frame.take(np.argsort(rows, kind="stable")).reset_index(drop=True)


@dataclass
class _Stats:
    """The pooled quantities every method starts from (pass 1)."""

    lo: np.ndarray
    hi: np.ndarray
    n: int
    pos: np.ndarray


def _covariance(client: Client, prepped: list[Future[Any]], what: str, s: _Stats) -> np.ndarray:
    """The pooled covariance (ddof 1) of :func:`_moment_values` in two passes: sums, then centred products."""
    import numpy as np

    kw: dict[str, Any] = {"what": what, "lo": s.lo, "hi": s.hi, "pos": s.pos}
    mean = np.sum(run_tasks(client, _moment_part, prepped, key=f"citytwin-{what}-sum", **kw), axis=0) / s.n
    C = np.sum(run_tasks(client, _moment_part, prepped, key=f"citytwin-{what}-cross", mean=mean, **kw), axis=0)
    return np.asarray(C / (s.n - 1))


def _correlation(C: np.ndarray) -> np.ndarray:
    """``numpy.corrcoef`` from a covariance matrix (NaN where a column has no spread, clipped to [-1, 1])."""
    import numpy as np

    d = np.sqrt(np.diag(C))
    with np.errstate(divide="ignore", invalid="ignore"):
        R = C / d[:, None] / d[None, :]
    return np.asarray(np.clip(R, -1, 1))


def _pooled_weights(client: Client, prepped: list[Future[Any]], method: str, sp: IndexSpec, s: _Stats,
                    o: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray], float | None, dict[str, Any]]:
    """Weights, the method's columns, entropy k and diagnostics of an objective (or given) method, pooled."""
    import numpy as np

    from citytwin.economy import weights as W
    from citytwin.economy.index import pca_objective

    const = s.hi - s.lo == 0
    if method == "entropy":
        kw: dict[str, Any] = {"lo": s.lo, "hi": s.hi, "pos": s.pos, "scale": o["scale"], "shift": o["shift"]}
        col = np.sum(run_tasks(client, _colsum_part, prepped, key="citytwin-colsum", **kw), axis=0)
        if (col < 0).any():
            raise InputError("normalised values are negative (check scale and shift)")
        L = np.sum(run_tasks(client, _plogp_part, prepped, key="citytwin-plogp", col=col, **kw), axis=0)
        L = np.where(col == 0, np.log(1.0 / s.n), L)  # P = 1/n in every row of a column that sums to 0
        k = 1.0 / np.log(s.n)
        e = np.clip(-k * L, 0.0, 1.0)
        d = 1.0 - e
        w = d / d.sum() if d.sum() > 0 else np.full(len(d), 1.0 / len(d))
        return w, {"e": e, "d": d}, float(k), {}
    if method == "critic":
        C = _covariance(client, prepped, "critic", s)
        c = W.critic_from_correlation(np.sqrt(np.diag(C)), _correlation(C), const)
        return c.w, {"sigma": c.sigma, "conflict": c.conflict, "information": c.information}, None, {}
    if method == "pca":  # as one process weighs (economy.index.pca_objective), R from the pooled covariance
        r = pca_objective(const, lambda keep: W.pca_from_correlation(
            _correlation(_covariance(client, prepped, "pca", s))[np.ix_(keep, keep)], s.n,
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
    """:func:`citytwin.economy.index.composite_index` of a Parquet panel on Dask, one task per period.

    ``panel`` is a Parquet file, folder or glob, or a dataset of ``workspace``; ``spec`` a mapping (as
    :func:`citytwin.workflows.economy.read_spec` reads it) or :class:`IndexSpec` with ``time:``. The other
    options are those of ``composite_index``. See the module docstring for what is exact and what agrees
    to 1e-12.

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
    files = parquet_files(panel, ws, "panel")
    # the periods (from the row groups' statistics where they tell), and each file's first row in the
    # panel: the workers give their rows' panel positions from these
    periods, bases, _ = parquet_periods(files, sp.time)
    common = {"files": files, "bases": bases, "spec": sp, "source": panel}
    opts_in: dict[str, Any] = {"normalisation": normalisation, "shift": shift, "scale": scale,
                               "score_scale": score_scale, "topsis_normalisation": topsis_normalisation,
                               "topsis_weights": topsis_weights, "combine_with": combine_with,
                               "combine_method": combine_method, "alpha": alpha,
                               "pca_min_eigenvalue": pca_min_eigenvalue, "pca_min_cumulative": pca_min_cumulative}
    with cluster(dask) as client:
        if scope == "per_year":
            parts = run_tasks(client, _index_period, periods, progress=progress, key="citytwin-index", method=method,
                              options=opts_in, **common)
            scores = _panel_order(pd.concat([r.scores for r, _ in parts], ignore_index=True),
                                  np.concatenate([rows for _, rows in parts]))
            parts_r = [r for r, _ in parts]
            first = parts_r[0]
            popts = dict(first.options, scope="per_year", n_rows=int(sum(r.options["n_rows"] for r in parts_r)),
                         dask=str(dask), partitions="one task per period")
            if "entropy_k" in popts:
                popts["entropy_k"] = {str(p): r.options["entropy_k"] for p, r in zip(periods, parts_r, strict=True)}
            return IndexResult(weights=pd.concat([r.weights for r in parts_r], ignore_index=True), scores=scores,
                               options=popts, warnings=[w for r in parts_r for w in r.warnings],
                               diagnostics={str(p): r.diagnostics.get(str(p)) for p, r in zip(periods, parts_r, strict=True)
                                            if r.diagnostics}, spec=sp, id_col=sp.id, time_col=sp.time)
        # pooled: the periods stay prepared on the workers (recomputed by the scheduler if a worker dies)
        pos = np.array([i.positive for i in sp.indicators])
        # the periods spread evenly over the workers (round robin): every later pass runs where its period
        # is kept, so an uneven first assignment would stay for the whole job (another worker takes over
        # if one dies)
        workers = sorted(client.scheduler_info(n_workers=-1).get("workers", {}))
        prepped = [client.submit(_prepare_period, period, pure=False, key=k, **common,
                                 workers=[workers[i % len(workers)]] if workers else None,
                                 allow_other_workers=True)
                   for i, (period, k) in enumerate(zip(periods, task_keys("citytwin-prep", len(periods)),
                                                       strict=True))]
        mm = run_tasks(client, _minmax_part, prepped, progress=progress, key="citytwin-minmax")
        s = _Stats(lo=np.min([m[0] for m in mm], axis=0), hi=np.max([m[1] for m in mm], axis=0),
                   n=int(sum(m[2] for m in mm)), pos=pos)
        if s.n < 2:
            raise InputError("an index needs at least 2 rows (cities or city-years)", file=panel)
        const = s.hi - s.lo == 0
        w, extra, k, diag = _pooled_weights(client, prepped, objective, sp, s, opts_in)
        if method == "combined":
            expert = sp.expert_weights()
            extra = dict(extra, objective_weight=w, expert_weight=expert)
            w = W.combine_weights(expert, w, method=combine_method, alpha=alpha)  # type: ignore[arg-type]
        sk: dict[str, Any] = {"lo": s.lo, "hi": s.hi, "pos": pos, "w": w}
        if method == "topsis":
            norm = (np.sqrt(np.sum(run_tasks(client, _sumsq_part, prepped, key="citytwin-sumsq"), axis=0))
                    if topsis_normalisation == "vector" else None)
            bounds = run_tasks(client, _topsis_bounds_part, prepped, key="citytwin-topsis-bounds", norm=norm, **sk)
            vmax, vmin = np.max([b[0] for b in bounds], axis=0), np.min([b[1] for b in bounds], axis=0)
            ideal, anti = ((np.where(pos, vmax, vmin), np.where(pos, vmin, vmax)) if norm is not None
                           else (vmax, vmin))
            scored = run_tasks(client, _topsis_score_part, prepped, key="citytwin-score", norm=norm, ideal=ideal,
                               anti=anti, score_scale=score_scale, **sk)
        else:
            dims = ({d: np.array([i.dimension == d for i in sp.indicators]) for d in sp.dimensions}
                    if sp.dimensions else {})
            scored = run_tasks(client, _score_part, prepped, key="citytwin-score", score_scale=score_scale,
                               dims=dims, **sk)
        warned = run_tasks(client, _warnings_part, prepped, key="citytwin-warnings")
    warnings = [w_ for ws_ in warned for w_ in ws_]
    for c in [sp.columns[j] for j in np.flatnonzero(const)]:
        warnings.append(f"indicator {c!r} is constant: it carries no information and gets weight 0 in objective methods")
    # one concatenation in task order, one argsort of the rows' panel positions (the workers summed and ranked)
    scores = _panel_order(pd.concat([s_[0] for s_ in scored], ignore_index=True),
                          np.concatenate([s_[1] for s_ in scored]))
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
                               "partitions": "one task per period; pooled statistics added on the client"}
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
