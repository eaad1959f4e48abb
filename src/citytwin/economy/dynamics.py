"""Distribution dynamics: kernel density by year, σ- and β-convergence, classic and spatial Markov chains.

All functions take a long panel (one row per unit and period) and column names.

* :func:`kernel_density` — Gaussian KDE per period on one common grid, with its peaks (number,
  positions, heights): the usual "kernel density by year" figure of the Chinese literature.
* :func:`sigma_convergence` — dispersion per period: standard deviation of ln y (ddof 0) and the
  coefficient of variation.
* :func:`beta_convergence` — cross-section growth regression from ``start`` to ``end``; absolute,
  conditional (controls measured in the start period) or spatial (ML spatial lag or error model
  with a W);
  convergence speed λ = −ln(1 + βT)/T and half-life ln 2/λ.
* :func:`markov` — classic Markov chain over quantile classes (per period, as in Rey's giddy
  examples, or pooled) or fixed cut-offs; transition counts, probabilities, steady state.
* :func:`spatial_markov` — transition matrices conditioned on the class of the spatial lag, with
  Bickenbach–Bode homogeneity tests (LR and Q, as ``giddy.markov.Spatial_Markov``).

Peers: β-convergence wraps ``statsmodels.OLS`` (classical or robust ``cov_type``) and
``spreg.ML_Lag`` / ``spreg.ML_Error``. The Markov chains are our own (counting transitions and a
least-squares steady state, ~60 lines) instead of ``giddy.markov.Markov`` / ``Spatial_Markov``:
importing ``giddy.markov`` costs about 3.5 CPU-s (it imports mapclassify, which compiles numba
code) for a computation of milliseconds (``bench/economy_disparity.py``: 500 units x 20 periods,
Markov 11 ms from the long panel vs giddy 2.4 ms from given classes, spatial Markov 13 vs 22 ms,
import 3.46 CPU-s), and the CLI would pay that on every run (issue 11 asks that no command pay
for imports it does not use). ``tests/economy/test_dynamics.py`` checks
counts, probabilities, steady states, LR/Q tests and cut-offs against giddy to 1e-12.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"id": [1, 2, 1, 2], "t": [0, 0, 1, 1], "y": [1.0, 4.0, 2.0, 4.0]})
>>> sigma_convergence(df, value="y", time="t")["sigma"].round(4).tolist()
[0.6931, 0.3466]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import signal, stats

from citytwin.economy.inequality import check_values
from citytwin.foundation.errors import InputError

__all__ = [
    "BetaResult", "KernelDensityResult", "MarkovResult", "SpatialMarkovResult", "beta_convergence",
    "kde_grid", "kde_period", "kde_result", "kernel_density", "markov", "sigma_convergence", "spatial_markov",
    "steady_state",
]


def _need(panel: pd.DataFrame, *cols: str | None) -> None:
    missing = [c for c in cols if c and c not in panel.columns]
    if missing:
        raise InputError(f"column(s) {missing} not in the panel (has {list(panel.columns)})", field=missing[0])


def _wide(panel: pd.DataFrame, value: str, time: str, id: str) -> pd.DataFrame:
    """units × periods matrix; refuses duplicates, NaN and unbalanced panels."""
    _need(panel, value, time, id)
    if panel.duplicated([id, time]).any():
        d = panel.loc[panel.duplicated([id, time]), [id, time]].iloc[0].tolist()
        raise InputError(f"duplicate unit-period rows, e.g. {d}", field=id)
    wide = panel.pivot(index=id, columns=time, values=value).sort_index(axis=1)
    if wide.isna().any().any():
        bad = wide.index[wide.isna().any(axis=1)].tolist()
        raise InputError(f"{len(bad)} unit(s) with missing periods or values, e.g. {bad[:5]}", field=value,
                         hint="this method needs a balanced panel: drop or impute these units first")
    check_values(wide.to_numpy(), name=value, nonnegative=False)
    return wide


# ------------------------------------------------------------------------------ kernel density
@dataclass(frozen=True)
class KernelDensityResult:
    """Densities per period on a common grid and their peaks.

    Attributes
    ----------
    grid
        Evaluation points (shared by all periods).
    density
        DataFrame, one row per period, one column per grid point.
    peaks
        Long table ``time, x, density, prominence, rank`` (rank 1 = highest peak).
    summary
        Per period: ``n, bandwidth, n_peaks, main_peak_x, main_peak_density``.
    """

    grid: np.ndarray = field(repr=False)
    density: pd.DataFrame = field(repr=False)
    peaks: pd.DataFrame
    summary: pd.DataFrame


def _bandwidth(x: np.ndarray, rule: str | float) -> float:
    n = x.size
    sd = x.std(ddof=1)
    if isinstance(rule, int | float) and not isinstance(rule, bool):
        if rule <= 0:
            raise InputError(f"bandwidth must be positive, got {rule}", field="bandwidth")
        return float(rule)
    if rule == "scott":
        return float(sd * n ** (-1 / 5))
    if rule == "silverman":
        return float(sd * (n * 3 / 4) ** (-1 / 5))
    raise InputError(f"unknown bandwidth rule {rule!r}", field="bandwidth", hint="scott, silverman or a number")


def kernel_density(
    panel: pd.DataFrame, *, value: str, time: str, bandwidth: str | float = "scott", grid_size: int = 256,
    log: bool = False, min_prominence: float = 0.01,
) -> KernelDensityResult:
    """Gaussian kernel density of ``value`` for each period, with peaks.

    Parameters
    ----------
    bandwidth
        ``"scott"`` (σ n^-1/5) or ``"silverman"`` (σ (3n/4)^-1/5), both with σ the sample standard
        deviation (ddof 1) as ``scipy.stats.gaussian_kde``; or a fixed number.
    grid_size
        Points of the common grid (from the pooled minimum − 3 h to maximum + 3 h).
    log
        Use ln(value) (values must be positive).
    min_prominence
        A local maximum counts as a peak when its prominence is at least this share of the
        period's highest density.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"t": [0] * 6, "y": [0.0, 0.1, 0.2, 5.0, 5.1, 5.2]})
    >>> kernel_density(df, value="y", time="t", bandwidth=0.3).summary["n_peaks"].tolist()
    [2]
    """
    data, bws, grid = kde_grid(panel, value=value, time=time, bandwidth=bandwidth, grid_size=grid_size, log=log)
    return kde_result([kde_period(t, x, bws[t], grid, time=time, min_prominence=min_prominence)
                       for t, x in data.items()], grid, time=time)


def kde_grid(panel: pd.DataFrame, *, value: str, time: str, bandwidth: str | float = "scott", grid_size: int = 256,
             log: bool = False) -> tuple[dict[Any, np.ndarray], dict[Any, float], np.ndarray]:
    """The first part of :func:`kernel_density`: each period's checked values (ln with ``log``), bandwidths,
    and the common grid. :func:`kde_period` then evaluates each period (independently: a task each on Dask),
    :func:`kde_result` puts the periods together."""
    _need(panel, value, time)
    data = {}
    for t, sub in panel.groupby(time, sort=True):
        x = check_values(sub[value].to_numpy(), name=value, nonnegative=False, positive=log, min_n=2)
        x = np.log(x) if log else x
        if not x.std() > 0:
            raise InputError(f"{time}={t}: values are constant; a kernel density needs spread", field=value)
        data[t] = x
    if not data:
        raise InputError("empty panel", field=value)
    bws = {t: _bandwidth(x, bandwidth) for t, x in data.items()}
    lo = min(x.min() - 3 * bws[t] for t, x in data.items())
    hi = max(x.max() + 3 * bws[t] for t, x in data.items())
    return data, bws, np.linspace(lo, hi, grid_size)


def kde_period(t: Any, x: np.ndarray, h: float, grid: np.ndarray, *, time: str,
               min_prominence: float = 0.01) -> tuple[Any, np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """One period of :func:`kernel_density`: (``t``, its density on ``grid``, its peaks, its summary row)."""
    d = np.zeros(grid.size)
    for chunk in np.array_split(x, max(1, x.size // 2048)):
        u = (grid[:, None] - chunk[None, :]) / h
        d += np.exp(-0.5 * u * u).sum(axis=1)
    d /= x.size * h * np.sqrt(2 * np.pi)
    peaks = []
    idx, props = signal.find_peaks(d, prominence=min_prominence * d.max())
    order = np.argsort(-d[idx])
    for rank, j in enumerate(order, start=1):
        peaks.append({time: t, "x": grid[idx[j]], "density": d[idx[j]],
                      "prominence": props["prominences"][j], "rank": rank})
    top = idx[order[0]] if idx.size else int(np.argmax(d))
    return t, d, peaks, {time: t, "n": x.size, "bandwidth": h, "n_peaks": int(idx.size),
                         "main_peak_x": grid[top], "main_peak_density": d[top]}


def kde_result(periods: list[tuple[Any, np.ndarray, list[dict[str, Any]], dict[str, Any]]], grid: np.ndarray, *,
               time: str) -> KernelDensityResult:
    """:func:`kernel_density`'s result from its periods (:func:`kde_period`, in period order)."""
    density = pd.DataFrame.from_dict({t: d for t, d, _, _ in periods}, orient="index", columns=grid)
    density.index.name = time
    peaks = [row for _, _, rows, _ in periods for row in rows]
    return KernelDensityResult(grid, density, pd.DataFrame(peaks, columns=[time, "x", "density", "prominence", "rank"]),
                               pd.DataFrame([summary for _, _, _, summary in periods]))


# ------------------------------------------------------------------------------ σ convergence
def sigma_convergence(panel: pd.DataFrame, *, value: str, time: str, log: bool = True) -> pd.DataFrame:
    """σ-convergence: per period ``n, mean, sigma`` (std of ln y, ddof 0; of y when ``log=False``) and ``cv``.

    Examples
    --------
    >>> df = pd.DataFrame({"t": [0, 0, 1, 1], "y": [1.0, 3.0, 2.0, 2.0]})
    >>> sigma_convergence(df, value="y", time="t")["cv"].tolist()
    [0.5, 0.0]
    """
    _need(panel, value, time)
    rows = []
    for t, sub in panel.groupby(time, sort=True):
        x = check_values(sub[value].to_numpy(), name=value, nonnegative=not log, positive=log, min_n=2)
        lx = np.log(x) if log else x
        rows.append({time: t, "n": x.size, "mean": x.mean(), "sigma": lx.std(ddof=0),
                     "cv": x.std(ddof=0) / x.mean() if x.mean() != 0 else np.nan})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ β convergence
@dataclass(frozen=True)
class BetaResult:
    """Growth regression (ln y_T − ln y_0)/T = α + β ln y_0 (+ γ'controls) (+ ρ W g).

    ``beta < 0`` means convergence; ``speed`` λ = −ln(1 + βT)/T (NaN when 1 + βT ≤ 0) and
    ``half_life`` = ln 2 / λ. ``coefficients`` holds every term with ``coef, se, t, p``.
    ``rho`` is the spatial parameter (ρ of the lag model, λ of the error model), else NaN.
    """

    model: str
    beta: float
    se: float
    t: float
    p: float
    speed: float
    half_life: float
    periods: float
    n: int
    r2: float
    rho: float
    coefficients: pd.DataFrame = field(repr=False)
    log_likelihood: float = float("nan")


def _ols(X: np.ndarray, yv: np.ndarray, cov_type: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """OLS by ``statsmodels.OLS(...).fit(cov_type=...)``: coef, se, t (or z), p, R²."""
    import statsmodels.api as sm

    n, k = X.shape
    if n <= k:
        raise InputError(f"{n} units for {k} coefficients: too few to estimate", field="value")
    if np.linalg.matrix_rank(X.T @ X) < k:
        raise InputError("regressors are collinear (a control is constant or duplicates another)", field="controls")
    try:
        res = sm.OLS(yv, X).fit(cov_type=cov_type)
    except ValueError as exc:
        raise InputError(f"cov_type {cov_type!r}: {exc}", field="cov_type",
                         hint="nonrobust, HC0, HC1, HC2 or HC3") from None
    return (np.asarray(res.params), np.asarray(res.bse), np.asarray(res.tvalues), np.asarray(res.pvalues),
            float(res.rsquared))


def _ml_spatial(X: np.ndarray, yv: np.ndarray, W: sp.csr_matrix, model: str, method: str) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """ML spatial lag / error model by ``spreg.ML_Lag`` / ``spreg.ML_Error``.

    ``X`` holds the constant first (spreg adds its own); ``W`` is row-standardised. Returns coef,
    se, z, p for the terms then ρ/λ, the spatial parameter and the log-likelihood.
    """
    import libpysal.weights as lw
    import spreg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wl = lw.WSP(W).to_W(silence_warnings=True)
        wl.transform = "r"
        if model == "lag":
            ml = spreg.ML_Lag(yv[:, None], X[:, 1:], w=wl, method=method, spat_diag=False, spat_impacts=None)
            par = float(ml.rho)
        else:
            ml = spreg.ML_Error(yv[:, None], X[:, 1:], w=wl, method=method)
            par = float(ml.lam)
    coef = np.asarray(ml.betas, dtype=float).ravel()
    se = np.asarray(ml.std_err, dtype=float).ravel()
    zp = np.asarray(ml.z_stat, dtype=float)
    return coef, se, zp[:, 0], zp[:, 1], par, float(ml.logll)


def beta_convergence(
    panel: pd.DataFrame, *, value: str, time: str, id: str, start: Any = None, end: Any = None,
    controls: list[str] | None = None, w: Any = None, spatial: Literal["lag", "error"] = "lag",
    periods: float | None = None, cov_type: str = "nonrobust",
    ml_method: Literal["auto", "full", "ord", "LU"] = "auto",
) -> BetaResult:
    """β-convergence between ``start`` and ``end`` (default: first and last period).

    Parameters
    ----------
    controls
        Columns for conditional convergence, taken in the ``start`` period.
    w
        libpysal W with ids equal to the unit ids: fits an ML spatial model (spatial
        β-convergence); row-standardised on a copy.
    spatial
        With ``w``: ``"lag"`` (ρ W g on the right-hand side, ``rho``) or ``"error"`` (spatially
        autocorrelated errors, λ reported as ``rho`` and as the ``lambda`` row).
    periods
        Length T of the interval (default ``end - start`` for numeric periods).
    cov_type
        Standard errors of the OLS models (without ``w``), as ``statsmodels`` ``fit(cov_type=...)``:
        ``"nonrobust"`` (classical, default; t tests) or ``"HC0"``..``"HC3"`` (heteroskedasticity
        robust; z tests).
    ml_method
        Log-determinant method of the ML spatial models (``spreg``): ``"full"`` (dense, exact),
        ``"ord"`` (eigenvalues), ``"LU"`` (sparse LU, memory linear in the links); ``"auto"``:
        ``"full"`` up to 1,000 units, ``"LU"`` beyond.

    Notes
    -----
    OLS is ``statsmodels.OLS``, the spatial models ``spreg.ML_Lag`` / ``spreg.ML_Error``: we wrap
    them (tests/economy/test_dynamics.py compares every number with them).

    Examples
    --------
    >>> df = pd.DataFrame({"id": [1, 2, 3] * 2, "t": [0] * 3 + [10] * 3, "y": [1.0, 2.0, 4.0, 2.0, 3.0, 4.5]})
    >>> r = beta_convergence(df, value="y", time="t", id="id")
    >>> r.beta < 0
    True
    """
    _need(panel, value, time, id, *(controls or []))
    times = sorted(panel[time].dropna().unique())
    if len(times) < 2:
        raise InputError("needs at least two periods", field=time)
    t0 = times[0] if start is None else start
    t1 = times[-1] if end is None else end
    a = panel[panel[time] == t0].set_index(id)
    b = panel[panel[time] == t1].set_index(id)
    if a.empty or b.empty:
        raise InputError(f"no rows for period {t0 if a.empty else t1}", field=time)
    common = a.index.intersection(b.index)
    if w is not None:
        wid = list(w.id_order)
        lookup = {str(i): i for i in common}
        missing = [i for i in wid if str(i) not in lookup]
        if missing:
            raise InputError(f"{len(missing)} weights id(s) without data in both periods, e.g. {missing[:5]}",
                             field=id, hint="build the W from the same units (spatial_weights(..., ids=ID))")
        common = pd.Index([lookup[str(i)] for i in wid])
    y0 = check_values(a.loc[common, value].to_numpy(), name=value, positive=True, min_n=3)
    y1 = check_values(b.loc[common, value].to_numpy(), name=value, positive=True, min_n=3)
    T = float(periods if periods is not None else (t1 - t0))
    if not T > 0:
        raise InputError(f"interval length {T} must be positive", field=time)
    g = (np.log(y1) - np.log(y0)) / T
    if np.ptp(np.log(y0)) == 0:
        raise InputError(f"{value} is the same for every unit in period {t0}: β-convergence is undefined",
                         field=value)
    if np.ptp(g) == 0:
        raise InputError(f"{value} grows alike for every unit from {t0} to {t1} (e.g. constant over time): "
                         "β-convergence is undefined (nothing to explain)", field=value)
    names = ["const", f"ln_{value}_{t0}", *(controls or [])]
    cols = [np.ones(common.size), np.log(y0)]
    for c in controls or []:
        cols.append(check_values(a.loc[common, c].to_numpy(), name=c, nonnegative=False))
    X = np.column_stack(cols)
    rho, ll = float("nan"), float("nan")
    if w is None:
        coef, se, tv, pv, r2 = _ols(X, g, cov_type)
        model = "conditional" if controls else "absolute"
        table = pd.DataFrame({"coef": coef, "se": se, "t": tv, "p": pv}, index=pd.Index(names, name="term"))
    else:
        Wm = sp.csr_matrix(w.sparse, dtype=float)
        rs = np.asarray(Wm.sum(axis=1)).ravel()
        if (rs == 0).any():
            raise InputError(f"{int((rs == 0).sum())} island(s) in the weights", field="w",
                             hint="use spatial_weights(..., islands='nearest')")
        Wm = sp.csr_matrix(sp.diags(1.0 / rs) @ Wm)
        if spatial not in ("lag", "error"):
            raise InputError(f"unknown spatial model {spatial!r}", field="spatial", hint="lag or error")
        if ml_method not in ("auto", "full", "ord", "LU"):
            raise InputError(f"unknown ml_method {ml_method!r}", field="ml_method", hint="auto, full, ord or LU")
        method = ml_method if ml_method != "auto" else ("full" if common.size <= 1000 else "LU")
        coef_all, se, tv, pv, rho, ll = _ml_spatial(X, g, Wm, spatial, method)
        coef = coef_all[: X.shape[1]]
        names_r = [*names, "rho" if spatial == "lag" else "lambda"]
        pred = rho * (Wm @ g) + X @ coef if spatial == "lag" else X @ coef
        r2 = 1 - float(((g - pred) ** 2).sum()) / float(((g - g.mean()) ** 2).sum())
        model = f"spatial_{spatial}"
        table = pd.DataFrame({"coef": [*coef, rho], "se": se, "t": tv, "p": pv},
                             index=pd.Index(names_r, name="term"))
    beta = float(coef[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        speed = float(-np.log(1 + beta * T) / T) if 1 + beta * T > 0 else float("nan")
        half = float(np.log(2) / speed) if speed > 0 else float("nan")
    return BetaResult(model=model, beta=beta, se=float(se[1]), t=float(tv[1]), p=float(pv[1]), speed=speed,
                      half_life=half, periods=T, n=int(common.size), r2=float(r2), rho=rho,
                      coefficients=table, log_likelihood=ll)


# ------------------------------------------------------------------------------ Markov chains
def steady_state(p: np.ndarray) -> np.ndarray:
    """Stationary distribution π of a row-stochastic matrix (π P = π, Σ π = 1).

    Examples
    --------
    >>> steady_state(np.array([[0.9, 0.1], [0.5, 0.5]])).round(4).tolist()
    [0.8333, 0.1667]
    """
    p = np.asarray(p, dtype=float)
    k = p.shape[0]
    A = np.vstack([p.T - np.eye(k), np.ones((1, k))])
    rhs = np.zeros(k + 1)
    rhs[-1] = 1.0
    pi, *_ = np.linalg.lstsq(A, rhs, rcond=None)
    return pi


def _quantile_bins(x: np.ndarray, k: int) -> np.ndarray:
    """Upper bounds of k quantile classes (mapclassify.Quantiles: linear percentiles, ties collapsed)."""
    pct = np.arange(100.0 / k, 100.0 + 100.0 / k, 100.0 / k)[:k]
    pct[-1] = 100.0
    return np.unique(np.percentile(x, pct))


def _classify(x: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Class j where bins[j-1] < x <= bins[j] (values above the last bin go to the last class)."""
    return np.minimum(np.searchsorted(bins, x, side="left"), bins.size - 1)


@dataclass(frozen=True)
class MarkovResult:
    """Classic Markov chain: ``transitions`` (counts), ``p`` (row probabilities), ``steady_state``,
    ``classes`` (unit × period class ids) and the ``bins`` used (per period or pooled)."""

    transitions: pd.DataFrame
    p: pd.DataFrame
    steady_state: pd.Series
    classes: pd.DataFrame = field(repr=False)
    bins: Any = field(repr=False, default=None)

    @property
    def sojourn_time(self) -> pd.Series:
        """Expected periods spent in a class before leaving it: 1/(1 − p_ii)."""
        d = np.diag(self.p.to_numpy())
        with np.errstate(divide="ignore"):
            return pd.Series(1.0 / (1.0 - d), index=self.p.index, name="sojourn_time")


def _class_matrix(
    Y: np.ndarray, k: int, classes: Literal["quantile", "pooled"] | list[float]
) -> tuple[np.ndarray, Any]:
    if isinstance(classes, str):
        if k < 2:
            raise InputError(f"k must be at least 2, got {k}", field="k")
        if classes == "quantile":
            bins = [_quantile_bins(Y[:, j], k) for j in range(Y.shape[1])]
            if any(b.size < k for b in bins):
                raise InputError(f"too many ties to form {k} quantile classes in some period", field="k")
            return np.column_stack([_classify(Y[:, j], bins[j]) for j in range(Y.shape[1])]), bins
        if classes == "pooled":
            b = _quantile_bins(Y.ravel(), k)
            if b.size < k:
                raise InputError(f"too many ties to form {k} pooled quantile classes", field="k")
            return _classify(Y, b), b
        raise InputError(f"unknown classes {classes!r}", field="classes", hint="quantile, pooled or a list of cut-offs")
    cuts = np.asarray(sorted(classes), dtype=float)
    b = np.append(cuts, np.inf)
    return _classify(Y, b), b


def _transitions(C: np.ndarray, k: int) -> np.ndarray:
    T = np.zeros((k, k))
    np.add.at(T, (C[:, :-1].ravel(), C[:, 1:].ravel()), 1)
    return T


def _row_p(T: np.ndarray) -> np.ndarray:
    rs = T.sum(axis=-1, keepdims=True)
    return T / np.where(rs == 0, 1, rs)


def markov(
    panel: pd.DataFrame, *, value: str, time: str, id: str, k: int = 5,
    classes: Literal["quantile", "pooled"] | list[float] = "quantile", relative: bool = False,
) -> MarkovResult:
    """Classic Markov chain of the class of each unit from one period to the next.

    Parameters
    ----------
    k
        Number of quantile classes.
    classes
        ``"quantile"``: quantiles of each period (relative position, as
        ``Markov(np.array([mapclassify.Quantiles(y, k).yb for y in pci]).T)``); ``"pooled"``:
        quantiles of all unit-periods; or a list of cut-offs (k = len + 1 classes).
    relative
        Divide values by the period mean first.

    Examples
    --------
    >>> df = pd.DataFrame({"id": [1, 2] * 3, "t": [0, 0, 1, 1, 2, 2], "y": [1.0, 2, 2, 1, 1, 2]})
    >>> markov(df, value="y", time="t", id="id", k=2).transitions.to_numpy().tolist()
    [[0.0, 2.0], [2.0, 0.0]]
    """
    wide = _wide(panel, value, time, id)
    Y = wide.to_numpy(dtype=float)
    if relative:
        Y = Y / Y.mean(axis=0, keepdims=True)
    C, bins = _class_matrix(Y, k, classes)
    kk = int(C.max()) + 1 if not isinstance(classes, str) else k
    T = _transitions(C, kk)
    P = _row_p(T)
    labels = pd.Index(range(kk), name="from")
    to = pd.Index(range(kk), name="to")
    return MarkovResult(
        transitions=pd.DataFrame(T, index=labels, columns=to), p=pd.DataFrame(P, index=labels, columns=to),
        steady_state=pd.Series(steady_state(P), index=to, name="steady_state"),
        classes=pd.DataFrame(C, index=wide.index, columns=wide.columns), bins=bins,
    )


@dataclass(frozen=True)
class SpatialMarkovResult:
    """Spatial Markov chain: transition counts/probabilities conditioned on the neighbours' class.

    ``T``/``P`` have shape (m lag classes, k, k); ``transitions``/``p`` are the classic (pooled)
    ones; ``steady_states`` has one row per lag class. ``LR``, ``Q`` (with p-values) and ``dof``
    test that the conditional matrices equal the pooled one (Bickenbach & Bode 2003).
    """

    T: np.ndarray = field(repr=False)
    P: np.ndarray = field(repr=False)
    transitions: np.ndarray = field(repr=False)
    p: np.ndarray = field(repr=False)
    steady_states: pd.DataFrame = field(repr=False)
    LR: float = float("nan")
    LR_p_value: float = float("nan")
    Q: float = float("nan")
    Q_p_value: float = float("nan")
    dof: int = 0
    cutoffs: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    lag_cutoffs: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    def long_table(self) -> pd.DataFrame:
        """``lag_class, from, to, count, p`` rows."""
        m, k, _ = self.T.shape
        i, a, b = np.meshgrid(range(m), range(k), range(k), indexing="ij")
        return pd.DataFrame({"lag_class": i.ravel(), "from": a.ravel(), "to": b.ravel(),
                             "count": self.T.ravel(), "p": self.P.ravel()})


def _homogeneity(M: np.ndarray) -> tuple[float, float, int]:
    """Bickenbach–Bode LR and Q statistics and dof for regime matrices M (m × k × k)."""
    T = M.sum(axis=0)
    n_i = T.sum(axis=1)
    A_i = (T > 0).sum(axis=1)
    p_ij = T / np.where(n_i == 0, 1.0, n_i)[:, None]
    den = np.where(p_ij == 0, 1.0, p_ij)
    b_i = np.zeros(T.shape[0])
    Q = LR = 0.0
    for nijm in M:
        nim = nijm.sum(axis=1)
        b_i += nim > 0
        p_ijm = nijm / np.where(nim == 0, 1.0, nim)[:, None]
        Q += float((nim[:, None] * (p_ijm - p_ij) ** 2 / den).sum())
        mask = (nijm > 0) & (p_ij > 0)
        ratio = np.where(mask, p_ijm, 1.0) / np.where(mask, p_ij, 1.0)
        LR += float((nijm * np.log(ratio)).sum())
    dof = int(((b_i - 1) * (A_i - 1)).sum())
    return 2.0 * LR, Q, dof


def spatial_markov(
    panel: pd.DataFrame, w: Any, *, value: str, time: str, id: str, k: int = 5, m: int = 5,
    relative: bool = True, classes: Literal["pooled", "quantile"] = "pooled",
) -> SpatialMarkovResult:
    """Spatial Markov chain (Rey 2001) with homogeneity tests.

    Parameters
    ----------
    w
        libpysal W whose ids are the unit ids (compared as strings); row-standardised on a copy.
        Islands get a lag of 0 (as giddy).
    k, m
        Classes of the unit's own value and of its spatial lag.
    relative
        Divide by the period mean first (relative income; giddy's usual set-up).
    classes
        ``"pooled"`` quantiles over all periods (giddy's ``fixed=True``) or ``"quantile"`` per period.

    Examples
    --------
    >>> import libpysal
    >>> w = libpysal.weights.lat2W(3, 3)
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"id": list(range(9)) * 4, "t": np.repeat(range(4), 9), "y": rng.random(36) + 1})
    >>> spatial_markov(df, w, value="y", time="t", id="id", k=2, m=2).T.shape
    (2, 2, 2)
    """
    wide = _wide(panel, value, time, id)
    wid = list(w.id_order)
    lookup = {str(i): i for i in wide.index}
    missing = [i for i in wid if str(i) not in lookup]
    if missing or len(wid) != len(wide):
        raise InputError(
            f"weights ids do not match the panel's units ({len(wid)} vs {len(wide)}; e.g. {missing[:5]})",
            field=id, hint="build the W with ids=ID from the same units")
    wide = wide.loc[[lookup[str(i)] for i in wid]]
    Y = wide.to_numpy(dtype=float)
    if relative:
        Y = Y / Y.mean(axis=0, keepdims=True)
    A = sp.csr_matrix(w.sparse, dtype=float)
    rs = np.asarray(A.sum(axis=1)).ravel()
    A = sp.csr_matrix(sp.diags(np.where(rs > 0, 1.0 / np.where(rs > 0, rs, 1), 0.0)) @ A)
    L = A @ Y
    C, bins = _class_matrix(Y, k, classes)
    LC, lbins = _class_matrix(L, m, classes)
    kk = k
    T = np.zeros((m, kk, kk))
    np.add.at(T, (LC[:, :-1].ravel(), C[:, :-1].ravel(), C[:, 1:].ravel()), 1)
    P = _row_p(T)
    classic = _transitions(C, kk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = [steady_state(P[i]) if (T[i].sum(axis=1) > 0).all() else np.full(kk, np.nan) for i in range(m)]
    LR, Q, dof = _homogeneity(T)
    return SpatialMarkovResult(
        T=T, P=P, transitions=classic, p=_row_p(classic),
        steady_states=pd.DataFrame(ss, index=pd.Index(range(m), name="lag_class")),
        LR=LR, LR_p_value=float(stats.chi2.sf(LR, dof)) if dof > 0 else float("nan"),
        Q=Q, Q_p_value=float(stats.chi2.sf(Q, dof)) if dof > 0 else float("nan"), dof=dof,
        cutoffs=np.asarray(bins[:-1]) if classes == "pooled" else np.empty(0),
        lag_cutoffs=np.asarray(lbins[:-1]) if classes == "pooled" else np.empty(0),
    )
