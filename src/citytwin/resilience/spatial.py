"""Spatial spillovers: SAR and spatial Durbin (SDM) panels with fixed effects, LeSage–Pace impacts.

Model: ``y_t = rho W y_t + X_t beta + W X_t theta + mu + alpha_t iota + e_t`` (``theta = 0`` for SAR),
``t = 1 … T`` on a balanced panel of ``n`` units and a row-standardised ``W``.

Estimation is Elhorst's (2003, 2014) concentrated maximum likelihood after the within transform
(unit, or unit and period means swept out), the same estimator as ``spreg.ML_LagFE`` (which offers
unit effects only; its ``slx_lags=1`` is the SDM). It is implemented here because spreg has no
period effects and its impacts are not the exact LeSage–Pace ones by default. ``W y`` and ``W X``
are formed from the raw data and then demeaned like every other column (as Elhorst's MATLAB
code does): with period effects ``W`` does not commute with the cross-sectional demeaning unless
its columns also sum to one, so feeding period-demeaned data to spreg is *not* the two-way model.
``tests/resilience/test_spatial_panel.py`` checks the unit-FE model against ``spreg.ML_LagFE``
(coefficients, errors, log-likelihood, SAR and SDM), the two-way model against maximum likelihood
with explicit unit and period dummies computed with dense matrices, and the impacts against the
dense-inverse definition and spreg's ``"full"`` multipliers.

* ``rho`` maximises ``-NT/2 ln(e(rho)'e(rho)/NT) + T ln|I - rho W|`` on ``[-0.99, 0.99]``
  (bounded Brent, ``xatol = 1e-10``; spreg uses the same bounds with ``xatol = 1e-7``);
  ``ln|I - rho W|`` from a sparse LU, as spreg.
* Errors from the inverse of the information matrix of ``(beta, theta, rho, sigma²)`` (Elhorst),
  ``sigma² = e'e / NT``. The Lee & Yu (2010) bias correction of ``sigma²`` for the fixed effects
  is **not** applied (as in spreg), so results compare with spreg and Elhorst's MATLAB code.
* Impacts (LeSage & Pace 2009): ``S_k(W) = (I - rho W)^{-1} (beta_k I + theta_k W)``; direct = mean
  of the diagonal of ``S_k``, total = mean of its row sums, indirect = total − direct. spreg's
  default (``spat_impacts="simple"``) instead reports direct = ``beta_k`` and total =
  ``beta_k / (1 - rho)``, which ignores the feedback through neighbours in the direct effect; our
  numbers equal spreg's ``spat_impacts="full"``.

Weights (:func:`weights_from_boundaries`): Queen contiguity, inverse great-circle distance between
representative points, or economic distance ``w_ij = 1 / |g_i - g_j|`` (``g`` a unit's mean of an
economic variable, e.g. GDP per capita, over the sample period), all row-standardised.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sps
from scipy import stats
from scipy.optimize import minimize_scalar
from scipy.sparse.linalg import splu

from citytwin.foundation.errors import InputError
from citytwin.resilience.iv import check_numeric, check_rank, demean
from citytwin.resilience.results import PanelResult

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    import libpysal

__all__ = ["SpatialPanelResult", "impacts", "spatial_panel", "weights_from_boundaries"]

EARTH_RADIUS_KM = 6371.0088


def _haversine_km(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    dlo = lo[:, None] - lo[None, :]
    dla = la[:, None] - la[None, :]
    a = np.sin(dla / 2) ** 2 + np.cos(la)[:, None] * np.cos(la)[None, :] * np.sin(dlo / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def weights_from_boundaries(gdf: gpd.GeoDataFrame, id_col: str,
                            kind: Literal["queen", "inverse_distance", "economic"] = "queen", *,
                            values: pd.Series | None = None, power: float = 1.0,
                            cutoff_km: float | None = None, row_standardize: bool = True
                            ) -> libpysal.weights.W:
    """Spatial weights between the units of a boundary layer.

    Parameters
    ----------
    gdf
        Boundaries (e.g. :func:`citytwin.foundation.boundaries.prefecture_boundaries`), one row per unit.
    id_col
        Unit identifier column; the weights' ids are its values as strings.
    kind
        ``"queen"`` (shared vertex or edge), ``"inverse_distance"`` (``1 / d_ij^power``, great-circle
        km between representative points in WGS84, optionally 0 beyond ``cutoff_km``) or
        ``"economic"`` (``1 / |g_i - g_j|`` with ``g = values``).
    values
        For ``"economic"``: one value per unit (indexed by id), typically the unit's mean GDP per capita
        over the sample period.
    power, cutoff_km
        For ``"inverse_distance"``.
    row_standardize
        Divide each row by its sum (the spatial models need it).

    Returns
    -------
    libpysal.weights.W
        Ids in the order of ``gdf``; ``w.islands`` lists units without neighbours.

    Raises
    ------
    InputError
        Duplicate ids, missing geometry, missing or tied economic values.
    """
    import libpysal

    if id_col not in gdf.columns:
        raise InputError("column not found in the boundaries", field=id_col)
    ids = gdf[id_col].astype(str).tolist()
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise InputError(f"duplicate unit id {dup!r} in the boundaries", field=id_col)
    if gdf.geometry.isna().any() or gdf.geometry.is_empty.any():
        bad = ids[int(np.flatnonzero((gdf.geometry.isna() | gdf.geometry.is_empty).to_numpy())[0])]
        raise InputError(f"unit {bad!r} has no geometry", field="geometry")
    if kind == "queen":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # islands/components are reported on the W itself
            w = libpysal.weights.Queen.from_dataframe(gdf, ids=ids, use_index=False)
    else:
        n = len(ids)
        if kind == "inverse_distance":
            g = gdf.to_crs(4326) if gdf.crs is not None and gdf.crs.to_epsg() != 4326 else gdf
            pts = g.geometry.representative_point()
            d = _haversine_km(pts.x.to_numpy(), pts.y.to_numpy())
            np.fill_diagonal(d, np.inf)
            if np.any(d == 0):
                i, j = np.argwhere(d == 0)[0]
                raise InputError(f"units {ids[i]!r} and {ids[j]!r} share a representative point")
            m = 1.0 / d ** power
            if cutoff_km is not None:
                m[d > cutoff_km] = 0.0
        elif kind == "economic":
            if values is None:
                raise InputError("economic distance weights need one value per unit (values=)")
            v = pd.Series(values).rename(index=str).reindex(ids)
            if v.isna().any():
                raise InputError(f"no economic value for unit {v.index[v.isna().to_numpy()][0]!r}")
            a = v.to_numpy(dtype=float)
            diff = np.abs(a[:, None] - a[None, :])
            np.fill_diagonal(diff, np.inf)
            if np.any(diff == 0):
                i, j = np.argwhere(diff == 0)[0]
                raise InputError(f"units {ids[i]!r} and {ids[j]!r} have the same economic value: "
                                 "1/|g_i - g_j| is infinite", hint="use a finer variable or another weight")
            m = 1.0 / diff
        else:
            raise InputError(f"unknown weights kind {kind!r}: use queen, inverse_distance or economic")
        np.fill_diagonal(m, 0.0)
        neighbors = {ids[i]: [ids[j] for j in np.flatnonzero(m[i])] for i in range(n)}
        wts = {ids[i]: m[i, np.flatnonzero(m[i])].tolist() for i in range(n)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = libpysal.weights.W(neighbors, wts, id_order=ids, silence_warnings=True)
    if row_standardize:
        w.transform = "r"
    return w


def impacts(rho: float, beta: np.ndarray | Sequence[float], w: Any,
            theta: np.ndarray | Sequence[float] | None = None,
            names: Sequence[str] | None = None) -> pd.DataFrame:
    """LeSage–Pace direct, indirect and total effects of a SAR or SDM model.

    Parameters
    ----------
    rho
        Spatial autoregressive coefficient.
    beta
        Coefficients of the regressors.
    w
        ``libpysal.weights.W`` or an ``n × n`` (sparse) matrix, as used in the model.
    theta
        Coefficients of the lagged regressors ``W X`` (SDM), same order as ``beta``; ``None`` for SAR.
    names
        Regressor names.

    Returns
    -------
    pandas.DataFrame
        ``variable, direct, indirect, total``.
    """
    wm = w.sparse if hasattr(w, "sparse") else w
    wd = wm.toarray() if sps.issparse(wm) else np.asarray(wm, dtype=float)
    n = wd.shape[0]
    ai = np.linalg.inv(np.eye(n) - rho * wd)
    aiw = ai @ wd
    b = np.asarray(beta, dtype=float)
    th = np.zeros_like(b) if theta is None else np.asarray(theta, dtype=float)
    direct = b * np.trace(ai) / n + th * np.trace(aiw) / n
    total = b * ai.sum() / n + th * aiw.sum() / n
    return pd.DataFrame({"variable": list(names) if names is not None else [f"x{i}" for i in range(len(b))],
                         "direct": direct, "indirect": total - direct, "total": total})


def _impact_se(imp: pd.DataFrame, est: np.ndarray, vm: np.ndarray, x: list[str], lag: list[str],
               wd: np.ndarray, draws: int, seed: int) -> pd.DataFrame:
    """Standard errors of the impacts from ``draws`` normal parameter draws (LeSage & Pace 2009).

    Uses the eigenvalues ``l`` of ``W``: mean diag of ``(I - rho W)^{-1}`` is ``mean(1/(1 - rho l))``, of
    ``(I - rho W)^{-1} W`` it is ``mean(l/(1 - rho l))``; row sums are ``1/(1 - rho)`` (row-standardised).
    """
    lam = np.linalg.eigvals(wd)
    rng = np.random.default_rng(seed)
    par = rng.multivariate_normal(est, vm, size=draws, method="cholesky")
    r = par[:, -1]
    r = r[np.abs(r) < 1]
    par = par[np.abs(par[:, -1]) < 1]
    m1 = np.real((1.0 / (1.0 - r[:, None] * lam[None, :])).mean(axis=1))
    m2 = np.real((lam[None, :] / (1.0 - r[:, None] * lam[None, :])).mean(axis=1))
    tot = 1.0 / (1.0 - r)
    out = imp.copy()
    for kind in ("direct", "indirect", "total"):
        out[f"{kind}_se"] = np.nan
    for i, v in enumerate(x):
        b = par[:, i]
        th = par[:, len(x) + lag.index(v)] if v in lag else np.zeros_like(b)
        direct = b * m1 + th * m2
        total = (b + th) * tot
        out.loc[i, ["direct_se", "indirect_se", "total_se"]] = [
            float(np.std(direct, ddof=1)), float(np.std(total - direct, ddof=1)), float(np.std(total, ddof=1))]
    for kind in ("direct", "indirect", "total"):
        zz = out[kind] / out[f"{kind}_se"]
        out[f"{kind}_p"] = 2 * stats.norm.sf(np.abs(zz))
    return out


@dataclass
class SpatialPanelResult:
    """A fitted SAR/SDM panel.

    Attributes
    ----------
    result
        Coefficients (``x``, ``W.x`` for SDM, ``rho``) with ML errors, ``nobs`` and facts in ``info``
        (log-likelihood, sigma², fixed effects, n, T).
    rho
        Spatial autoregressive coefficient.
    impacts
        LeSage–Pace ``variable, direct, indirect, total`` and, with ``draws > 0``, their simulated
        standard errors ``*_se`` and normal p-values ``*_p``.
    """

    result: PanelResult
    rho: float
    impacts: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def _wide(d: pd.DataFrame, unit: str, time: str, cols: Sequence[str], ids: list[str], periods: np.ndarray
          ) -> np.ndarray:
    """Stack ``cols`` as an (n T) × k array ordered period-major, units in ``ids`` order."""
    idx = pd.MultiIndex.from_product([periods, ids], names=[time, unit])
    s = d.assign(**{unit: d[unit].astype(str)}).set_index([time, unit])[list(cols)]
    return s.reindex(idx).to_numpy(dtype=float)


def spatial_panel(df: pd.DataFrame, y: str, x: Sequence[str], unit: str, time: str, w: Any, *,
                  model: Literal["sar", "sdm"] = "sar", fe: Literal["unit", "two-way"] = "two-way",
                  durbin: Sequence[str] | None = None, draws: int = 1000, seed: int = 0
                  ) -> SpatialPanelResult:
    """Fit a spatial lag (SAR) or spatial Durbin (SDM) panel with fixed effects by ML.

    Parameters
    ----------
    df
        Long, balanced panel.
    y, x
        Outcome and regressors.
    unit, time
        Unit and period columns; units are matched to ``w.id_order`` as strings.
    w
        ``libpysal.weights.W`` (row-standardised; see :func:`weights_from_boundaries`).
    model
        ``"sar"`` or ``"sdm"``.
    fe
        ``"two-way"`` (unit and period effects) or ``"unit"``.
    durbin
        For SDM, the regressors whose spatial lag enters (default all of ``x``).
    draws, seed
        Simulated parameter draws for the impacts' standard errors (LeSage & Pace 2009, §4.2:
        ``(beta, theta, rho)`` drawn from the normal with the ML covariance; 0 = none) and their seed.

    Returns
    -------
    SpatialPanelResult

    Raises
    ------
    InputError
        Missing/non-numeric columns, missing values, an unbalanced panel, units without weights or
        weights without units, islands or a non-row-standardised ``W``, collinear regressors.
    """
    x = list(x)
    if not x:
        raise InputError("at least one regressor is needed")
    check_numeric(df, [y, *x])
    for k in (unit, time):
        if k not in df.columns:
            raise InputError("column not found in the panel", field=k)
    miss = df[[y, *x, unit, time]].isna()
    if miss.any().any():
        r, c = np.argwhere(miss.to_numpy())[0]
        raise InputError("missing value: spatial panels need a complete balanced panel",
                         row=int(r) + 1, field=str(miss.columns[c]))
    ids = [str(i) for i in w.id_order]
    units = df[unit].astype(str)
    extra = sorted(set(units) - set(ids))
    absent = sorted(set(ids) - set(units))
    if extra or absent:
        raise InputError(f"weights and panel units differ: {len(extra)} panel unit(s) not in the weights "
                         f"{extra[:5]}, {len(absent)} weights unit(s) not in the panel {absent[:5]}",
                         field=unit, hint="build the weights from exactly the panel's units")
    dup = df.assign(_u=units).duplicated(["_u", time])
    if dup.any():
        raise InputError("duplicate (unit, period)", row=int(np.flatnonzero(dup.to_numpy())[0]) + 1, field=time)
    periods = np.sort(df[time].unique())
    n, t_len = len(ids), len(periods)
    if len(df) != n * t_len:
        counts = df.groupby(unit).size()
        raise InputError(f"unbalanced panel: {len(df)} rows for {n} units × {t_len} periods (units have "
                         f"{counts.min()}–{counts.max()} periods); spatial panels need balance, because "
                         "W links the same units in every period", field=time,
                         hint="balance the panel first (and say how), or use a cross-section")
    if getattr(w, "islands", []):
        raise InputError(f"the weights have islands (units without neighbours): {list(w.islands)[:5]}",
                         hint="drop those units or use inverse-distance weights")
    wsp = sps.csr_matrix(w.sparse, dtype=float)
    rs = np.asarray(wsp.sum(axis=1)).ravel()
    if not np.allclose(rs, 1.0):
        raise InputError("the weights are not row-standardised", hint="set w.transform = 'r'")
    lag = list(durbin) if durbin is not None else (x if model == "sdm" else [])
    if model == "sar" and durbin:
        raise InputError("durbin terms belong to the spatial Durbin model (model='sdm')")
    if set(lag) - set(x):
        raise InputError(f"durbin terms {sorted(set(lag) - set(x))} are not among the regressors")
    yv = _wide(df, unit, time, [y], ids, periods)
    xv = _wide(df, unit, time, x, ids, periods)
    w_nt = sps.kron(sps.identity(t_len), wsp, format="csr")
    names = list(x)
    if lag:
        wx = w_nt @ _wide(df, unit, time, lag, ids, periods)
        xv = np.column_stack([xv, wx])
        names += [f"W.{c}" for c in lag]
    uc = np.tile(np.arange(n), t_len)
    tc = np.repeat(np.arange(t_len), n)
    tcodes = tc if fe == "two-way" else None
    yd = demean(yv, uc, tcodes)
    xd = demean(xv, uc, tcodes)
    check_rank(xd, names)
    nt = n * t_len
    ylag = demean(w_nt @ yv, uc, tcodes)  # (W y)*: lag first, then sweep the effects (Elhorst's code)
    xtx = xd.T @ xd
    xtxi = np.linalg.inv(xtx)
    b0 = xtxi @ (xd.T @ yd)
    b1 = xtxi @ (xd.T @ ylag)
    e0 = yd - xd @ b0
    e1 = ylag - xd @ b1
    eye = sps.identity(n, format="csc")
    wcsc = wsp.tocsc()

    def negll(r: float) -> float:
        e = e0 - r * e1
        lu = splu((eye - r * wcsc).tocsc())
        logdet = float(np.sum(np.log(np.abs(lu.U.diagonal()))))
        return nt / 2.0 * float(np.log((e ** 2).sum() / nt)) - t_len * logdet

    opt = minimize_scalar(negll, bounds=(-0.99, 0.99), method="bounded", options={"xatol": 1e-10})
    rho = float(opt.x)
    if abs(rho) > 0.989:
        raise InputError(f"rho reached the bound of its search interval ({rho:.3f}): the model is not "
                         "identified or W does not suit these data")
    b = (b0 - rho * b1)[:, 0]
    u = (e0 - rho * e1)[:, 0]
    sig2 = float(u @ u / nt)
    logll = -float(opt.fun) - nt / 2.0 * np.log(2 * np.pi) - nt / 2.0
    # information matrix of (b, rho, sig2), Elhorst (2014) eq. 3.xx / spreg.BaseML_LagFE
    wd = wsp.toarray()
    ai = np.linalg.inv(np.eye(n) - rho * wd)
    wai = wd @ ai
    tr1 = np.trace(wai)
    tr2 = np.trace(wai @ wai)
    tr3 = np.trace(wai.T @ wai)
    xb = (xd @ b).reshape(t_len, n)
    wxb = (xb @ wai.T).reshape(-1)  # (I_T ⊗ WA^{-1}) X b
    k = xd.shape[1]
    info_m = np.zeros((k + 2, k + 2))
    info_m[:k, :k] = xtx / sig2
    info_m[:k, k] = info_m[k, :k] = xd.T @ wxb / sig2
    info_m[k, k] = t_len * (tr2 + tr3) + wxb @ wxb / sig2
    info_m[k, k + 1] = info_m[k + 1, k] = t_len * tr1 / sig2
    info_m[k + 1, k + 1] = nt / (2 * sig2 ** 2)
    vm = np.linalg.inv(info_m)[: k + 1, : k + 1]
    est = np.append(b, rho)
    se = np.sqrt(np.diag(vm))
    z = est / se
    coef = pd.DataFrame({"term": [*names, "rho"], "estimate": est, "std_error": se, "t": z,
                         "p": 2 * stats.norm.sf(np.abs(z))})
    beta = b[: len(x)]
    theta = np.zeros(len(x))
    for i, c in enumerate(lag):
        theta[x.index(c)] = b[len(x) + i]
    imp = impacts(rho, beta, wsp, theta if lag else None, names=x)
    if draws > 0:
        imp = _impact_se(imp, est, vm, x, lag, wd, draws, seed)
    info = {"method": f"ML spatial {'Durbin' if model == 'sdm' else 'lag'} panel (Elhorst)", "model": model,
            "fe": fe, "units": n, "periods": t_len, "logll": float(logll), "sigma2": sig2,
            "rho_bounds": [-0.99, 0.99], "sigma2_bias_correction": "none (as spreg)",
            "impacts": "LeSage-Pace exact (dense inverse)", "impact_draws": draws, "impact_seed": seed}
    return SpatialPanelResult(result=PanelResult(coefficients=coef, nobs=nt, info=info), rho=rho,
                              impacts=imp, info=info)
