"""Composite indices from an indicator specification (B1).

:func:`composite_index` takes a city panel (one row per city, or per city-year) and a specification
(:mod:`citytwin.economy.spec`), weights the indicators with one of :data:`METHODS`, and returns an
:class:`IndexResult` holding the weights, the scores (with per-year ranks and, for additive methods,
the contribution of each dimension), every option used, the warnings raised on the way (constant
indicators, filled values ...) and method diagnostics (KMO, Bartlett for PCA).

Scores of the additive methods (``entropy``, ``critic``, ``pca``, ``equal``, ``expert``, ``combined``) are
``score_scale * sum_j w_j z_ij`` with ``z`` the min-max normalised indicator (direction applied, no
shift) over the same scope as the weights (the pooled panel by default, so that years are comparable).
``topsis`` scores are closeness coefficients (times ``score_scale``).

Examples
--------
>>> import pandas as pd
>>> panel = pd.DataFrame({"city": ["a", "b", "c"] * 2, "year": [2020] * 3 + [2021] * 3,
...                       "gdp": [1.0, 2, 4, 2, 3, 5], "so2": [5.0, 3, 1, 4, 3, 1]})
>>> spec = {"id": "city", "time": "year", "indicators": [{"column": "gdp"},
...         {"column": "so2", "direction": "negative"}]}
>>> r = composite_index(panel, spec, method="entropy")
>>> r.scores.query("year == 2021")[["city", "rank"]].values.tolist()
[['a', 3], ['b', 2], ['c', 1]]
>>> r.options["entropy_k"] == 1 / __import__("math").log(6)
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from citytwin.economy import sums as S
from citytwin.economy import weights as W
from citytwin.economy.ranking import rank_by
from citytwin.economy.spec import IndexSpec, Prepared, parse_spec, prepare
from citytwin.foundation.errors import InputError

METHODS: tuple[str, ...] = ("entropy", "topsis", "critic", "pca", "equal", "expert", "combined")
Method = Literal["entropy", "topsis", "critic", "pca", "equal", "expert", "combined"]
ADDITIVE = ("entropy", "critic", "pca", "equal", "expert", "combined")


@dataclass
class IndexResult:
    """The outcome of :func:`composite_index`.

    Attributes
    ----------
    weights
        One row per indicator (per year too when weights are computed year by year): ``indicator``,
        ``column``, ``dimension``, ``direction``, ``transform``, ``weight`` and method columns (``e``, ``d``
        for entropy; ``sigma``, ``conflict``, ``information`` for CRITIC; ``kmo`` for PCA).
    scores
        ``<id>``, ``<time>``, ``score``, ``rank`` (within year, 1 = best) and ``dim:<path>`` contributions.
    options
        Every option used (method, normalisation, shift, scale, scope, k, ...), JSON-serialisable.
    warnings
        What was handled rather than refused (constant indicators, filled or dropped values ...).
    diagnostics
        Method diagnostics (e.g. PCA eigenvalues, KMO, Bartlett).
    """

    weights: pd.DataFrame
    scores: pd.DataFrame
    options: dict[str, Any]
    warnings: list[str]
    diagnostics: dict[str, Any]
    spec: IndexSpec
    id_col: str
    time_col: str | None

    def weight_vector(self) -> pd.Series:
        """Pooled weights as a Series indexed by column (mean over years for per-year weights)."""
        return self.weights.groupby("column", sort=False)["weight"].mean()


@dataclass
class _Weighted:
    w: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    k: float | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _objective(method: str, X: np.ndarray, pos: np.ndarray, spec: IndexSpec, o: Mapping[str, Any],
               blocks: W.Blocks = None) -> _Weighted:
    m = X.shape[1]
    if method == "entropy":
        r = W.entropy_weights(X, pos, normalisation=o["normalisation"], scale=o["scale"], shift=o["shift"],
                              blocks=blocks)
        return _Weighted(r.w, {"e": r.e, "d": r.d}, k=float(r.k))
    if method == "critic":
        c = W.critic_weights(X, pos, blocks=blocks)
        return _Weighted(c.w, {"sigma": c.sigma, "conflict": c.conflict, "information": c.information})
    if method == "pca":
        return pca_objective(W.constant_columns(X), lambda keep: W.pca_weights(
            X[:, keep], pos[keep], min_eigenvalue=o["pca_min_eigenvalue"], min_cumulative=o["pca_min_cumulative"],
            blocks=blocks))
    if method == "equal":
        return _Weighted(np.full(m, 1.0 / m))
    if method == "expert":
        return _Weighted(spec.expert_weights())
    raise InputError(f"unknown weighting method {method!r}", hint=f"use one of {', '.join(METHODS)}")


def pca_objective(const: np.ndarray, pca: Callable[[np.ndarray], W.PCAResult]) -> _Weighted:
    """PCA weights over the indicators that are not constant (``const``; at least 2): ``pca(keep)`` is the
    PCA of the kept ones (from the data here, from pooled partial sums on Dask), then :func:`pca_weighted`."""
    keep = ~const
    if keep.sum() < 2:
        raise InputError("PCA needs at least 2 non-constant indicators")
    return pca_weighted(pca(keep), keep)


def pca_weighted(p: W.PCAResult, keep: np.ndarray) -> _Weighted:
    """The weights of all indicators (0 for those not in ``keep``: constant) from PCA over the kept ones,
    with the KMO per indicator and the diagnostics (shared with the pooled index on Dask)."""
    w = np.zeros(len(keep))
    w[keep] = p.w
    kmo_per = np.full(len(keep), np.nan)
    kmo_per[keep] = p.kmo_per_variable
    diag = {"eigenvalues": p.eigenvalues.round(6).tolist(), "explained": p.explained.round(6).tolist(),
            "n_components": p.n_components, "kmo": p.kmo, "bartlett_chi2": p.bartlett_chi2,
            "bartlett_dof": p.bartlett_dof, "bartlett_p": p.bartlett_p}
    return _Weighted(w, {"kmo": kmo_per}, diagnostics=diag)


def _weigh(method: str, X: np.ndarray, pos: np.ndarray, spec: IndexSpec, o: Mapping[str, Any],
           blocks: W.Blocks = None) -> _Weighted:
    if method == "combined":
        obj = _objective(o["combine_with"], X, pos, spec, o, blocks)
        w = W.combine_weights(spec.expert_weights(), obj.w, method=o["combine_method"], alpha=o["alpha"])
        extra = dict(obj.extra)
        extra["objective_weight"] = obj.w
        extra["expert_weight"] = spec.expert_weights()
        return _Weighted(w, extra, k=obj.k, diagnostics=obj.diagnostics)
    if method == "topsis":
        return _objective(o["topsis_weights"], X, pos, spec, o, blocks)
    return _objective(method, X, pos, spec, o, blocks)


def period_blocks(periods: pd.Series) -> list[np.ndarray]:
    """The positions of each period's rows (in row order), the periods sorted; rows without a period last.
    The pooled sums are taken per block and added in this order, as the pooled index on Dask adds them."""
    codes, uniques = pd.factorize(periods, sort=True)  # a missing period: -1, put last
    codes = np.where(codes < 0, len(uniques), codes)
    order = np.argsort(codes, kind="stable")
    return [b for b in np.split(order, np.cumsum(np.bincount(codes))[:-1]) if len(b)]


def composite_index(
    frame: pd.DataFrame,
    spec: Mapping[str, Any] | IndexSpec,
    method: Method | str = "entropy",
    *,
    normalisation: W.Normalisation = "minmax",
    shift: float = 0.0,
    scale: float = 1.0,
    scope: Literal["pooled", "per_year"] = "pooled",
    topsis_normalisation: Literal["vector", "minmax"] = "vector",
    topsis_weights: str = "entropy",
    combine_with: str = "entropy",
    combine_method: Literal["linear", "multiplicative"] = "linear",
    alpha: float = 0.5,
    pca_min_eigenvalue: float = 1.0,
    pca_min_cumulative: float | None = None,
    score_scale: float = 1.0,
    source: str | None = None,
) -> IndexResult:
    """Build a composite index.

    Parameters
    ----------
    frame
        The panel.
    spec
        Specification (dict or :class:`IndexSpec`); see :mod:`citytwin.economy.spec`.
    method
        One of :data:`METHODS`. ``expert`` uses the spec's weights; ``combined`` combines them with
        ``combine_with`` (an objective method) by ``combine_method`` (``alpha`` = expert share).
    normalisation, shift, scale
        Entropy: ``minmax`` (``scale * z + shift``) or ``sum`` normalisation.
    scope
        ``pooled`` (default): weights and normalisation over all city-years, entropy ``k = 1/ln(mT)``, so
        scores are comparable across years. ``per_year``: weights and normalisation within each year.
    topsis_normalisation, topsis_weights
        TOPSIS normalisation (``vector`` or ``minmax``) and the weights fed to it (any non-TOPSIS method).
    pca_min_eigenvalue, pca_min_cumulative
        PCA component retention (Kaiser rule, or a cumulative variance share).
    score_scale
        Multiply scores (e.g. 100 for a 0-100 scale).
    source
        File or dataset name for messages.

    Returns
    -------
    IndexResult
    """
    sp = parse_spec(spec)
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}", field="method", hint=f"use one of {', '.join(METHODS)}")
    if method == "topsis" and topsis_weights in ("topsis", "combined"):
        raise InputError(f"TOPSIS weights cannot come from {topsis_weights!r}", field="topsis_weights")
    if method == "combined" and combine_with in ("topsis", "combined", "expert"):
        raise InputError(f"combine_with must be an objective method, got {combine_with!r}", field="combine_with")
    if scope not in ("pooled", "per_year"):
        raise InputError(f"unknown scope {scope!r}", field="scope", hint="use pooled or per_year")
    if scope == "per_year" and not sp.time:
        raise InputError("scope per_year needs `time:` in the specification", field="scope")
    opts: dict[str, Any] = {
        "method": method, "scope": scope if sp.time else "cross_section", "normalisation": normalisation,
        "shift": shift, "scale": scale, "missing": sp.missing, "score_scale": score_scale,
        "score": ("TOPSIS closeness coefficient" if method == "topsis" else
                  "weighted sum of min-max normalised indicators (direction applied, no shift)"),
        "zero_log_zero": "0 * ln 0 = 0",
    }
    if method == "topsis":
        opts.update(topsis_normalisation=topsis_normalisation, topsis_weights=topsis_weights)
    if method == "combined":
        opts.update(combine_with=combine_with, combine_method=combine_method, alpha=alpha)
    if method == "pca" or (method in ("topsis", "combined") and "pca" in (topsis_weights, combine_with)):
        opts.update(pca_min_eigenvalue=pca_min_eigenvalue, pca_min_cumulative=pca_min_cumulative)
    prep: Prepared = prepare(frame, sp, source=source)
    warnings = list(prep.warnings)
    pos = np.array([i.positive for i in sp.indicators])
    cols = sp.columns
    X_all = prep.values[cols].to_numpy(dtype=float)
    if len(X_all) < 2:
        raise InputError("an index needs at least 2 rows (cities or city-years)", file=source)
    if normalisation == "sum" and (X_all < 0).any() and (method == "entropy" or "entropy" in (
            topsis_weights if method == "topsis" else "", combine_with if method == "combined" else "")):
        bad = [cols[j] for j in np.flatnonzero((X_all < 0).any(axis=0))]
        raise InputError(f"sum normalisation needs values >= 0; negative values in {bad}", file=source,
                         field=bad[0], hint="use normalisation minmax, or shift the indicator")
    o = dict(opts, normalisation=normalisation, scale=scale, shift=shift, topsis_weights=topsis_weights,
             combine_with=combine_with, combine_method=combine_method, alpha=alpha,
             pca_min_eigenvalue=pca_min_eigenvalue, pca_min_cumulative=pca_min_cumulative)

    blocks: W.Blocks = None
    if scope == "per_year" and sp.time:
        groups = list(prep.keys.groupby(sp.time, sort=True).groups.items())
    else:
        groups = [(None, prep.keys.index)]
        if sp.time:  # pooled: every sum per period, then over the periods in order, as on Dask (bit for bit)
            blocks = period_blocks(prep.keys[sp.time])
    weight_rows: list[pd.DataFrame] = []
    score = np.full(len(X_all), np.nan)
    contrib = np.full((len(X_all), len(cols)), np.nan)
    diagnostics: dict[str, Any] = {}
    ks: dict[str, float] = {}
    for year, idx in groups:
        ix = np.asarray(idx)
        X = X_all if year is None else X_all[ix]  # pooled: every row, in order (no copy: its columns stay contiguous)
        if len(X) < 2:
            raise InputError(f"year {year}: an index needs at least 2 cities", file=source)
        const = W.constant_columns(X)
        for c in [cols[j] for j in np.flatnonzero(const)]:
            warnings.append(f"indicator {c!r} is constant{'' if year is None else f' in {year}'}: "
                            "it carries no information and gets weight 0 in objective methods")
        res = _weigh(method, X, pos, sp, o, blocks)
        if res.k is not None:
            ks[str(year) if year is not None else "pooled"] = res.k
        if res.diagnostics:
            diagnostics[str(year) if year is not None else "pooled"] = res.diagnostics
        wf = pd.DataFrame({
            "indicator": [i.label for i in sp.indicators], "column": cols,
            "dimension": [i.dimension for i in sp.indicators], "direction": [i.direction for i in sp.indicators],
            "transform": [i.transform for i in sp.indicators], "weight": res.w,
        })
        for k, v in res.extra.items():
            wf[k] = v
        if year is not None:
            wf.insert(0, sp.time or "year", [year] * len(wf))
        weight_rows.append(wf)
        if method == "topsis":
            t = W.topsis(X, res.w, pos, normalisation=topsis_normalisation, blocks=blocks)
            score[ix] = t.closeness * score_scale
        else:
            Z = W.minmax(X, pos)
            Z[:, const] = 0.0  # a constant indicator adds nothing (its weight may be > 0 only for equal/expert)
            contrib[ix] = Z * res.w * score_scale
            score[ix] = S.rowsum(contrib[ix])
    if ks:
        opts["entropy_k"] = ks["pooled"] if list(ks) == ["pooled"] else ks
        opts["entropy_rows"] = len(X_all) if list(ks) == ["pooled"] else None
    scores = prep.keys.copy()
    scores["score"] = score
    scores["rank"] = rank_by(scores, "score", by=sp.time)
    if method != "topsis" and sp.dimensions:
        for d in sp.dimensions:
            mask = np.array([i.dimension == d for i in sp.indicators])
            scores[f"dim:{d}"] = S.rowsum(contrib[:, mask])
    weights = pd.concat(weight_rows, ignore_index=True)
    opts["n_rows"] = len(X_all)
    opts["n_indicators"] = len(cols)
    opts["spec"] = {"id": sp.id, "time": sp.time, "missing": sp.missing,
                    "indicators": [{k: v for k, v in asdict(i).items() if v is not None} for i in sp.indicators]}
    return IndexResult(weights=weights, scores=scores, options=opts, warnings=warnings,
                       diagnostics=diagnostics, spec=sp, id_col=sp.id, time_col=sp.time)
