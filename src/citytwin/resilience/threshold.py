"""Hansen (1999) fixed-effects panel threshold models, single and double, with bootstrap p-values.

Model (single threshold): ``y_it = mu_i + b1' x_it 1(q_it <= g) + b2' x_it 1(q_it > g) + c' z_it + e_it``.
The unit effects are swept out by the within transform (``fe="two-way"`` also sweeps period
effects); for each candidate ``g`` the regime regressors are transformed and OLS gives the residual
sum of squares ``S1(g)``; ``g_hat`` minimises it. No peer Python library implements this model, so
it is computed here with numpy (a QR per grid point); the planted-threshold tests in
``tests/resilience/test_threshold.py`` check it.

**Grid rule** (:func:`threshold_grid`, fixed because Hansen's estimates depend on it): the
candidates are the empirical quantiles of ``q`` over all observations at the ``n_grid``
probabilities ``trim + (1 - 2 trim) k / (n_grid - 1)``, ``k = 0 … n_grid-1``, each taken as an
*observed* value: the ``ceil(p N)``-th smallest of the ``N`` observations (``p N`` rounded to 9
decimals first, so that float noise cannot shift a candidate by one; ``p = 0`` gives the smallest),
duplicates removed. Defaults ``trim = 0.05`` (5 % each tail), ``n_grid = 100``. For the
double threshold, a second candidate is admissible only if every regime keeps at least ``trim`` of
the observations.

**Double threshold**: sequential (Hansen 1999, section 3.2): ``g1`` from the single search, ``g2``
given ``g1``, then ``g1`` re-estimated given ``g2`` (refinement).

**Bootstrap** (Hansen 1999, section 3.1): ``F1 = (S0 - S1(g_hat)) / s2`` with ``s2 = S1 / (n (T-1))``
(``n (T-1) - (T-1)`` degrees of freedom for two-way effects); under the null (no threshold, resp.
one threshold for ``F2``) the residuals are grouped by unit, whole unit vectors are drawn with
replacement, added to the null fit, and the whole search is redone; the p-value is the share of
replications with ``F* >= F``. Needs a balanced panel. ``seed`` fixes the draws.

Coefficient errors are clustered by unit (``G/(G-1) · (N-1)/(N-K)`` small-sample factor, as Stata's
``xtreg, vce(cluster)``), taking the threshold as known (as ``xthreg`` does).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from citytwin.foundation.errors import InputError
from citytwin.resilience.iv import check_numeric, check_rank, demean
from citytwin.resilience.results import PanelResult

__all__ = ["ThresholdResult", "panel_threshold", "threshold_grid"]

LR_CRIT_95 = -2.0 * np.log(1.0 - np.sqrt(0.95))  # Hansen (2000) asymptotic 95 % critical value, 7.35


def threshold_grid(q: np.ndarray | pd.Series, trim: float = 0.05, n_grid: int = 100) -> np.ndarray:
    """The candidate thresholds searched (see the module's grid rule).

    Parameters
    ----------
    q
        Threshold variable, all observations.
    trim
        Share of observations cut from each tail, ``0 <= trim < 0.5``.
    n_grid
        Number of quantile probabilities (at least 2).

    Returns
    -------
    numpy.ndarray
        Sorted distinct observed values of ``q``.

    Raises
    ------
    InputError
        ``q`` constant or the arguments out of range.
    """
    qa = np.asarray(q, dtype=float)
    if not 0.0 <= trim < 0.5:
        raise InputError(f"trim must be in [0, 0.5), got {trim}")
    if n_grid < 2:
        raise InputError(f"n_grid must be at least 2, got {n_grid}")
    if qa.size == 0 or np.nanmin(qa) == np.nanmax(qa):
        raise InputError("the threshold variable is constant: there is no threshold to search",
                         hint="pick a threshold variable that varies across observations")
    probs = trim + (1.0 - 2.0 * trim) * np.arange(n_grid) / (n_grid - 1)
    qs = np.sort(qa[np.isfinite(qa)])
    # the ceil(p N)-th smallest observation; p rounded so 0.05 + 0.9/9 counts as 0.15, not 0.15000000000000002
    idx = np.clip(np.ceil(np.round(probs * qs.size, 9)).astype(int), 1, qs.size) - 1
    grid = np.unique(qs[idx])
    if grid.size < 2 and trim > 0:
        raise InputError("the threshold variable takes a single value inside the trimmed range",
                         hint="lower trim or use a threshold variable with more distinct values")
    return grid


@dataclass
class ThresholdResult:
    """A fitted panel threshold model.

    Attributes
    ----------
    thresholds
        Estimated thresholds, ascending (one or two).
    ci
        95 % confidence interval of each threshold (LR inversion, Hansen 2000), as ``(low, high)``.
    f_stats, p_values
        ``F1`` (0 vs 1 threshold) and, for double models, ``F2`` (1 vs 2), with bootstrap p-values
        (``None`` when ``bootstrap=0``).
    crit
        Bootstrap critical values at 10 %, 5 %, 1 % for each F.
    result
        Coefficients (regime terms named ``x@(-inf,g1]``, ``x@(g1,inf)`` …) and model facts.
    lr
        ``gamma, ssr, lr`` over the grid of the (last) threshold search.
    grid
        Candidates searched.
    """

    thresholds: list[float]
    ci: list[tuple[float, float]]
    f_stats: list[float]
    p_values: list[float | None]
    crit: list[dict[str, float]]
    result: PanelResult
    lr: pd.DataFrame
    grid: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


class _Design:
    """Everything needed to evaluate SSR(thresholds) quickly on a fixed panel."""

    def __init__(self, x: np.ndarray, z: np.ndarray, q: np.ndarray, unit: np.ndarray,
                 time: np.ndarray | None) -> None:
        self.x, self.z, self.q, self.unit, self.time = x, z, q, unit, time

    def dm(self, a: np.ndarray) -> np.ndarray:
        return demean(a, self.unit, self.time)

    def design(self, cuts: Sequence[float]) -> np.ndarray:
        edges = [-np.inf, *sorted(cuts), np.inf]
        blocks = [self.x * ((self.q > lo) & (self.q <= hi))[:, None] for lo, hi in itertools.pairwise(edges)]
        return self.dm(np.column_stack([*blocks, self.z]))

    def qbasis(self, cuts: Sequence[float]) -> np.ndarray:
        xd = self.design(cuts)
        qm, r = np.linalg.qr(xd)
        keep = np.abs(np.diag(r)) > 1e-10 * max(1.0, float(np.abs(np.diag(r)).max(initial=0.0)))
        return qm[:, keep]


def _ssr(qm: np.ndarray, yy: np.ndarray, y2: np.ndarray) -> np.ndarray:
    """SSR of each column of ``yy`` (n × B) projected off the basis ``qm``; ``y2`` = column sums of squares."""
    proj = qm.T @ yy
    return y2 - (proj ** 2).sum(axis=0)


def _search(des: _Design, yy: np.ndarray, fixed: Sequence[float], cand: np.ndarray,
            min_share: float) -> tuple[np.ndarray, np.ndarray]:
    """SSR for every admissible candidate given the thresholds in ``fixed``; returns (candidates, SSR n_cand × B)."""
    y2 = (yy ** 2).sum(axis=0)
    n = len(des.q)
    ok = []
    for g in cand:
        cuts = sorted([*fixed, g])
        edges = [-np.inf, *cuts, np.inf]
        if any(np.isclose(g, f) for f in fixed):
            continue
        shares = [((des.q > lo) & (des.q <= hi)).sum() / n for lo, hi in itertools.pairwise(edges)]
        if min(shares) + 1e-12 < min_share or min(shares) == 0:
            continue
        ok.append(g)
    if not ok:
        raise InputError("no admissible threshold candidate leaves every regime with enough observations",
                         hint="lower trim or n_thresholds")
    out = np.empty((len(ok), yy.shape[1]))
    for i, g in enumerate(ok):
        out[i] = _ssr(des.qbasis([*fixed, g]), yy, y2)
    return np.asarray(ok), out


def _fit_sequence(des: _Design, yy: np.ndarray, grid: np.ndarray, k: int, trim: float
                  ) -> tuple[list[float], list[float], float, pd.DataFrame]:
    """Sequential search for ``k`` thresholds on a single outcome column; returns (cuts, SSR_j per step, SSR0, lr frame)."""
    y2 = float((yy[:, 0] ** 2).sum())
    s0 = float(_ssr(des.qbasis([]), yy, np.array([y2]))[0])
    cand, s = _search(des, yy, [], grid, trim)
    g1 = float(cand[np.argmin(s[:, 0])])
    ssrs = [float(s[:, 0].min())]
    lr_c, lr_s = cand, s[:, 0]
    cuts = [g1]
    if k == 2:
        cand2, s2 = _search(des, yy, [g1], grid, trim)
        g2 = float(cand2[np.argmin(s2[:, 0])])
        cand1, s1r = _search(des, yy, [g2], grid, trim)  # refinement of g1 given g2
        g1r = float(cand1[np.argmin(s1r[:, 0])])
        cuts = sorted([g1r, g2])
        ssrs.append(float(s2[:, 0].min()))
        lr_c, lr_s = cand2, s2[:, 0]
    return cuts, ssrs, s0, pd.DataFrame({"gamma": lr_c, "ssr": lr_s})


def panel_threshold(df: pd.DataFrame, y: str, x: Sequence[str], q: str, unit: str, time: str,
                    controls: Sequence[str] = (), *, n_thresholds: Literal[1, 2] = 1,
                    trim: float = 0.05, n_grid: int = 100, bootstrap: int = 300, seed: int = 0,
                    fe: Literal["unit", "two-way"] = "unit") -> ThresholdResult:
    """Fit Hansen's (1999) fixed-effects threshold model with one or two thresholds.

    Parameters
    ----------
    df
        Long, balanced panel.
    y
        Outcome column.
    x
        Regressors whose slopes switch across regimes.
    q
        Threshold variable.
    unit, time
        Unit and period columns.
    controls
        Regressors with one slope in all regimes.
    n_thresholds
        1 or 2.
    trim, n_grid
        Grid rule (:func:`threshold_grid`).
    bootstrap
        Bootstrap replications for the p-values (0 = none).
    seed
        Seed of the bootstrap draws.
    fe
        ``"unit"`` (Hansen's model) or ``"two-way"``.

    Returns
    -------
    ThresholdResult

    Raises
    ------
    InputError
        Missing or non-numeric columns, missing values, duplicate (unit, period), an unbalanced panel,
        a constant threshold variable, collinear regressors.
    """
    x, controls = list(x), list(controls)
    if n_thresholds not in (1, 2):
        raise InputError(f"n_thresholds must be 1 or 2, got {n_thresholds}")
    if not x:
        raise InputError("at least one regime-dependent regressor x is needed")
    cols = list(dict.fromkeys([y, *x, q, *controls]))
    check_numeric(df, cols)
    for k in (unit, time):
        if k not in df.columns:
            raise InputError("column not found in the panel", field=k)
    miss = df[[*cols, unit, time]].isna()
    if miss.any().any():
        r, c = np.argwhere(miss.to_numpy())[0]
        raise InputError("missing value: the threshold model needs a complete balanced panel",
                         row=int(r) + 1, field=str(miss.columns[c]),
                         hint="fill or drop the unit/period explicitly before fitting")
    dup = df.duplicated([unit, time])
    if dup.any():
        raise InputError("duplicate (unit, period)", row=int(np.flatnonzero(dup.to_numpy())[0]) + 1, field=time)
    d = df.sort_values([unit, time], kind="stable")
    counts = d.groupby(unit, sort=False).size()
    n_units, t_len = len(counts), int(counts.max())
    if counts.min() != t_len or d[time].nunique() != t_len:
        raise InputError(f"unbalanced panel: units have {counts.min()}–{t_len} periods; Hansen's "
                         "threshold model and its unit bootstrap need every unit in every period",
                         field=time, hint="balance the panel first (and say how)")
    grid = threshold_grid(d[q].to_numpy(dtype=float), trim, n_grid)
    uarr, tarr = d[unit].to_numpy(), d[time].to_numpy()
    des = _Design(d[x].to_numpy(dtype=float), d[controls].to_numpy(dtype=float).reshape(len(d), -1),
                  d[q].to_numpy(dtype=float), uarr, tarr if fe == "two-way" else None)
    mid = float(np.median(grid))
    names_chk = [f"{c}@low" for c in x] + [f"{c}@high" for c in x] + controls
    check_rank(des.design([mid]), names_chk)
    yv = des.dm(d[[y]].to_numpy(dtype=float))
    cuts, ssrs, s0, lr = _fit_sequence(des, yv, grid, n_thresholds, trim)
    nobs = len(d)
    dof = n_units * (t_len - 1) - ((t_len - 1) if fe == "two-way" else 0)

    def fstat(s_null: np.ndarray | float, s_alt: np.ndarray | float) -> Any:
        return (np.asarray(s_null) - np.asarray(s_alt)) / (np.asarray(s_alt) / dof)

    f_stats = [float(fstat(s0, ssrs[0]))]
    if n_thresholds == 2:
        f_stats.append(float(fstat(ssrs[0], ssrs[1])))
    s_last = ssrs[-1]
    sig2 = s_last / dof
    lr["lr"] = (lr["ssr"] - lr["ssr"].min()) / sig2
    # 95 % CIs: LR inversion for each threshold given the other
    ci: list[tuple[float, float]] = []
    for j, g in enumerate(cuts):
        others = [c for i, c in enumerate(cuts) if i != j]
        cand, s = _search(des, yv, others, grid, trim)
        lrj = (s[:, 0] - s[:, 0].min()) / sig2
        inside = cand[lrj <= LR_CRIT_95]
        ci.append((float(inside.min()), float(inside.max())) if inside.size else (g, g))

    p_values: list[float | None] = [None] * len(f_stats)
    crit: list[dict[str, float]] = [{} for _ in f_stats]
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        for step in range(n_thresholds):
            null_cuts = [] if step == 0 else _fit_sequence(des, yv, grid, 1, trim)[0]
            qn = des.qbasis(null_cuts)
            fit = qn @ (qn.T @ yv)
            res = (yv - fit)[:, 0].reshape(n_units, t_len)
            draws = rng.integers(0, n_units, size=(bootstrap, n_units))
            ystar = fit + res[draws].reshape(bootstrap, -1).T  # n × B, units' residual vectors resampled
            ystar = des.dm(ystar)
            fb = np.empty(bootstrap)
            y2 = (ystar ** 2).sum(axis=0)
            s_null = _ssr(qn, ystar, y2)
            if step == 0:
                _, s1 = _search(des, ystar, [], grid, trim)
                fb = fstat(s_null, s1.min(axis=0))
            else:
                cand, s1 = _search(des, ystar, [], grid, trim)
                best = cand[np.argmin(s1, axis=0)]
                for b in range(bootstrap):  # each replication's own first threshold, then its second
                    _, s2 = _search(des, ystar[:, b:b + 1], [float(best[b])], grid, trim)
                    fb[b] = fstat(s1[:, b].min(), s2[:, 0].min())
            p_values[step] = float(np.mean(fb >= f_stats[step]))
            crit[step] = {f"{int(a * 100)}%": float(np.quantile(fb, 1 - a)) for a in (0.10, 0.05, 0.01)}

    # coefficients at the estimated thresholds, unit-clustered errors
    xd = des.design(cuts)
    edges = [-np.inf, *cuts, np.inf]
    labels = [f"({'-inf' if lo == -np.inf else f'{lo:g}'},{'inf' if hi == np.inf else f'{hi:g}'}]"
              for lo, hi in itertools.pairwise(edges)]
    terms = [f"{c}@{lab}" for lab in labels for c in x] + controls
    xtx_inv = np.linalg.inv(xd.T @ xd)
    beta = xtx_inv @ xd.T @ yv[:, 0]
    e = yv[:, 0] - xd @ beta
    codes = pd.factorize(uarr)[0]
    scores = np.zeros((n_units, xd.shape[1]))
    np.add.at(scores, codes, xd * e[:, None])
    kk = xd.shape[1]
    adj = n_units / (n_units - 1) * (nobs - 1) / (nobs - kk)
    vc = adj * xtx_inv @ (scores.T @ scores) @ xtx_inv
    se = np.sqrt(np.diag(vc))
    tt = beta / se
    coef = pd.DataFrame({"term": terms, "estimate": beta, "std_error": se, "t": tt,
                         "p": 2 * stats.t.sf(np.abs(tt), n_units - 1)})
    info = {"method": f"Hansen (1999) panel threshold, {n_thresholds} threshold(s)", "fe": fe,
            "thresholds": cuts, "ssr": s_last, "ssr_no_threshold": s0, "trim": trim,
            "n_grid": n_grid, "grid_size": int(grid.size), "bootstrap": bootstrap, "seed": seed,
            "f_stats": f_stats, "p_values": p_values, "units": n_units, "periods": t_len,
            "cov": "clustered by unit", "clusters": n_units,
            "r2_within": float(1 - s_last / float((yv ** 2).sum()))}
    return ThresholdResult(thresholds=cuts, ci=ci, f_stats=f_stats, p_values=p_values, crit=crit,
                           result=PanelResult(coefficients=coef, nobs=nobs, info=info), lr=lr,
                           grid=grid)
