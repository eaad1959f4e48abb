"""Endogeneity: regressors lagged by unit and instrumental variables (2SLS).

:func:`lag_by_unit` lags columns within each unit by calendar step, so a gap in a unit's years
gives a missing lag instead of the value of an older year (``groupby().shift()`` would silently
take the previous *row*). :func:`iv_2sls` wraps ``linearmodels.iv.IV2SLS``; with fixed effects it
first sweeps them out of every variable (exact two-way demeaning on a balanced panel, alternating
projections otherwise) and then runs 2SLS on the transformed data. By Frisch–Waugh–Lovell this
gives the coefficients *and* the unadjusted, robust and clustered errors of 2SLS with unit/time
dummies (linearmodels' default, non-debiased, ``s² = e'e/n``); ``tests/resilience/test_iv.py``
checks both against ``IV2SLS`` with dummies to 1e-6.

First-stage strength: for each endogenous regressor, linearmodels' partial Wald statistic of the
excluded instruments (with the model's covariance type) divided by their number ``q`` is reported
as ``first_stage[...]["F"]``. With one endogenous regressor and a robust or clustered covariance
this is the Kleibergen–Paap rk Wald F (as ``ivreg2`` reports it, without ivreg2's small-sample
factor); with several endogenous regressors the KP statistic is not computed and ``info`` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.resilience.results import PanelResult

__all__ = ["check_numeric", "check_rank", "demean", "iv_2sls", "lag_by_unit"]

FE = Literal["none", "unit", "two-way"]
CovType = Literal["unadjusted", "robust", "clustered"]


def check_numeric(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise :class:`InputError` naming the first missing or non-numeric column.

    Parameters
    ----------
    df
        The data.
    columns
        Columns that must exist and be numeric.
    """
    for c in columns:
        if c not in df.columns:
            raise InputError("column not found in the panel", field=c,
                             hint=f"columns are: {', '.join(map(str, df.columns))}")
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            bad = pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 1 if bad.any() else None
            raise InputError(f"column is not numeric (dtype {df[c].dtype})", field=c, row=row)


def check_rank(x: np.ndarray, names: Sequence[str], what: str = "regressors") -> None:
    """Raise :class:`InputError` when the columns of ``x`` are (nearly) collinear.

    Parameters
    ----------
    x
        ``n × k`` matrix (already transformed, e.g. within-demeaned).
    names
        Column names, used in the message.
    what
        What the columns are ("regressors", "instruments").
    """
    if x.shape[1] == 0:
        return
    scale = np.sqrt((x ** 2).sum(axis=0))
    zero = [str(names[int(i)]) for i in np.flatnonzero(scale <= 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0))))]
    if zero:
        raise InputError(f"{what} {zero} have no variation left after the fixed effects",
                         hint="drop them: they are absorbed by the unit/time effects")
    xs = x / scale
    rank = np.linalg.matrix_rank(xs, tol=1e-10 * max(xs.shape))
    if rank < x.shape[1]:
        # name the first column that is a combination of the ones before it
        for j in range(1, x.shape[1] + 1):
            if np.linalg.matrix_rank(xs[:, :j], tol=1e-10 * max(xs.shape)) < j:
                raise InputError(f"{what} are collinear: {names[j - 1]!r} is a linear combination of "
                                 f"{list(names[: j - 1])}", field=str(names[j - 1]),
                                 hint="drop one of them")
        raise InputError(f"{what} {list(names)} are collinear")  # pragma: no cover


def lag_by_unit(df: pd.DataFrame, unit: str, time: str, columns: Sequence[str], lags: int = 1,
                step: int = 1) -> pd.DataFrame:
    """Add lagged copies of ``columns`` within each unit, gaps respected.

    Parameters
    ----------
    df
        Long panel, one row per unit and period.
    unit, time
        Unit and integer period columns (e.g. year).
    columns
        Columns to lag.
    lags
        Lag order ``k``: the new column ``L{k}.{col}`` holds the value at ``time - k*step``.
    step
        Spacing of consecutive periods (1 for yearly data given as years).

    Returns
    -------
    pandas.DataFrame
        ``df`` (same row order) with the lag columns added; missing where that period is absent.

    Raises
    ------
    InputError
        A missing column, a non-integer time, or a duplicate (unit, time).
    """
    if lags < 1 or step < 1:
        raise InputError("lags and step must be positive integers")
    check_numeric(df, [time, *columns])
    if unit not in df.columns:
        raise InputError("column not found in the panel", field=unit)
    t = df[time].to_numpy(dtype=float)
    if not np.all(np.isfinite(t)) or not np.all(t == np.round(t)):
        raise InputError("period must be an integer (e.g. a year)", field=time)
    dup = df.duplicated([unit, time])
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0]) + 1
        raise InputError("duplicate (unit, period)", row=row, field=time)
    src = df[[unit, time, *columns]].copy()
    src[time] = src[time] + lags * step
    src = src.rename(columns={c: f"L{lags}.{c}" for c in columns})
    out = df.merge(src, on=[unit, time], how="left", validate="one_to_one")
    out.index = df.index
    return out


def demean(values: np.ndarray, unit: np.ndarray, time: np.ndarray | None = None, *,
           tol: float = 1e-12, max_iter: int = 10_000) -> np.ndarray:
    """Sweep unit (and time) means out of each column.

    Parameters
    ----------
    values
        ``n × k`` array.
    unit
        Unit codes (any hashable values), length ``n``.
    time
        Period codes for two-way demeaning, or ``None`` for the unit (within) transform.
    tol, max_iter
        Convergence of the alternating projections used on unbalanced two-way panels.

    Returns
    -------
    numpy.ndarray
        The demeaned array.
    """
    v = np.asarray(values, dtype=float)
    v = v.reshape(len(v), -1)
    ui = pd.factorize(unit)[0]
    nu = ui.max() + 1 if len(ui) else 0

    def sweep(a: np.ndarray, codes: np.ndarray, m: int) -> np.ndarray:
        cnt = np.bincount(codes, minlength=m).astype(float)
        means = np.stack([np.bincount(codes, a[:, j], minlength=m) for j in range(a.shape[1])], 1)
        return a - (means / cnt[:, None])[codes]

    if time is None:
        return sweep(v, ui, nu)
    ti = pd.factorize(time)[0]
    nt = ti.max() + 1 if len(ti) else 0
    if len(v) == nu * nt:  # balanced: exact two-way transform
        return sweep(sweep(v, ui, nu), ti, nt)
    out = v.copy()
    for _ in range(max_iter):
        new = sweep(sweep(out, ui, nu), ti, nt)
        if np.max(np.abs(new - out), initial=0.0) <= tol * max(1.0, float(np.abs(v).max(initial=0.0))):
            return new
        out = new
    return out  # pragma: no cover


def iv_2sls(df: pd.DataFrame, y: str, endog: Sequence[str], instruments: Sequence[str],
            exog: Sequence[str] = (), *, unit: str | None = None, time: str | None = None,
            fe: FE = "none", cov: CovType = "robust", cluster: str | None = None) -> PanelResult:
    """Two-stage least squares, optionally with unit or two-way fixed effects.

    Parameters
    ----------
    df
        Long panel (or cross-section when ``fe="none"``).
    y
        Dependent variable.
    endog
        Endogenous regressors.
    instruments
        Excluded instruments (at least as many as ``endog``).
    exog
        Exogenous controls. A constant is added when ``fe="none"``.
    unit, time
        Unit and period columns (needed for fixed effects and unit clustering).
    fe
        ``"none"``, ``"unit"`` or ``"two-way"``: effects swept out before 2SLS.
    cov
        ``"unadjusted"``, ``"robust"`` (HC0) or ``"clustered"`` (by ``cluster``, default ``unit``).
    cluster
        Cluster column for ``cov="clustered"``.

    Returns
    -------
    PanelResult
        Coefficients of ``exog`` and ``endog``; ``info`` holds the first-stage F per endogenous
        regressor, the Kleibergen–Paap rk Wald F (one endogenous regressor), Sargan's
        over-identification test (when over-identified), rows dropped for missing values.

    Raises
    ------
    InputError
        Missing/non-numeric columns, under-identification, collinear regressors or instruments.
    """
    from linearmodels.iv import IV2SLS

    endog, instruments, exog = list(endog), list(instruments), list(exog)
    if not endog:
        raise InputError("at least one endogenous regressor is needed")
    if len(instruments) < len(endog):
        raise InputError(f"under-identified: {len(endog)} endogenous regressor(s) but "
                         f"{len(instruments)} instrument(s)", hint="add excluded instruments")
    overlap = set(instruments) & set(endog + exog + [y])
    if overlap:
        raise InputError(f"instruments {sorted(overlap)} also appear as regressors or outcome")
    cols = [y, *exog, *endog, *instruments]
    check_numeric(df, cols)
    if fe != "none" and unit is None:
        raise InputError("fixed effects need the unit column")
    if fe == "two-way" and time is None:
        raise InputError("two-way fixed effects need the time column")
    clus = cluster or unit
    if cov == "clustered" and clus is None:
        raise InputError("clustered errors need a cluster column")
    keys = [k for k in dict.fromkeys([unit, time, clus]) if k is not None]
    for k in keys:
        if k not in df.columns:
            raise InputError("column not found in the panel", field=k)
    d = df[keys + [c for c in dict.fromkeys(cols) if c not in keys]]
    keep = d[cols].notna().all(axis=1) & np.isfinite(d[cols].to_numpy(dtype=float)).all(axis=1)
    dropped = int((~keep).sum())
    d = d[keep]
    if len(d) == 0:
        raise InputError("no complete rows")
    data = d[cols].to_numpy(dtype=float)
    if fe == "unit":
        data = demean(data, d[unit].to_numpy())
    elif fe == "two-way":
        data = demean(data, d[unit].to_numpy(), d[time].to_numpy())
    t = pd.DataFrame(data, columns=cols, index=d.index)
    exog_names = list(exog)
    if fe == "none":
        t.insert(0, "const", 1.0)
        exog_names = ["const", *exog_names]
    check_rank(t[exog_names + endog].to_numpy(), exog_names + endog)
    check_rank(t[exog_names + instruments].to_numpy(), exog_names + instruments, "instruments")
    model = IV2SLS(t[y], t[exog_names] if exog_names else None, t[endog], t[instruments])
    kw: dict[str, Any] = {"cov_type": cov}
    if cov == "clustered":
        kw["clusters"] = pd.Series(pd.factorize(d[clus])[0], index=d.index)
    res: Any = model.fit(**kw)
    terms = exog_names + endog
    coef = pd.DataFrame({
        "term": terms,
        "estimate": res.params[terms].to_numpy(),
        "std_error": res.std_errors[terms].to_numpy(),
        "t": res.tstats[terms].to_numpy(),
        "p": res.pvalues[terms].to_numpy(),
    })
    diag = res.first_stage.diagnostics
    q = len(instruments)
    first = {e: {"F": float(diag.loc[e, "f.stat"]) / q, "wald": float(diag.loc[e, "f.stat"]),
                 "p": float(diag.loc[e, "f.pval"]), "partial_r2": float(diag.loc[e, "partial.rsquared"])}
             for e in endog}
    info: dict[str, Any] = {
        "method": "2SLS", "fe": fe, "cov": cov, "first_stage": first,
        "kp_rk_wald_F": first[endog[0]]["F"] if len(endog) == 1 and cov != "unadjusted" else None,
        "kp_note": None if len(endog) == 1 and cov != "unadjusted" else
        "Kleibergen-Paap rk Wald F is reported for one endogenous regressor with robust/clustered errors only",
        "dropped_missing": dropped, "r2": float(res.rsquared),
    }
    if cov == "clustered":
        info["clusters"] = int(d[clus].nunique())
    if q > len(endog):
        s = res.sargan
        info["sargan"] = {"stat": float(s.stat), "p": float(s.pval), "df": int(s.df)}
    return PanelResult(coefficients=coef, nobs=int(res.nobs), info=info)
