"""Two-way fixed-effects panel regressions (C2), wrapping pyfixest.

:func:`fit_fe` checks and prepares the panel itself (every dropped row is counted, nothing is
dropped silently), then estimates with ``pyfixest.feols`` (which matches R's fixest to ~1e-8). The
estimator is pyfixest's own: the peer is therefore the implementation, and the tests compare it side
by side with linearmodels' ``PanelOLS`` (tests/resilience/test_panel.py) and with Stata output for
Grunfeld. ``bench/resilience_fe.py`` measures this wrapper's overhead over calling pyfixest directly.

Handling of bad input (documented, each tested):

- a missing column, or a non-numeric model column: :class:`InputError` naming the field and the first
  offending row (1-based data row);
- duplicate (unit, time) pairs: :class:`InputError` naming the first one;
- rows with a missing value in a model column: dropped and counted (``info["dropped_missing"]``);
- singletons (a fixed-effect level with one observation, e.g. a unit with one period): dropped
  iteratively and counted (``info["dropped_singletons"]``), as fixest/reghdfe do; they would not
  change the estimates but would bias the standard errors;
- unbalanced panels and gaps in years: estimated as they are, reported in ``info["balanced"]`` and
  ``info["units_with_gaps"]`` (Driscoll–Kraay treats consecutive observed periods as one step apart:
  a warning says so);
- collinear regressors (with each other or with the fixed effects): :class:`InputError` naming them;
- fewer than two clusters, or no observations left: :class:`InputError`.

Small-sample corrections (pyfixest's defaults, those of R fixest and Stata): clustered errors are
scaled by ``G/(G-1) * (N-1)/(N-K)`` where K counts the regressors and the fixed effects not nested
in the cluster; two-way clustering uses ``min(G)``; Driscoll–Kraay uses a Bartlett kernel with
``lag`` (default ``floor(4 (T/100)^(2/9))``) and no correction. ``ssc="none"`` removes them (the
form that equals linearmodels' ``debiased=False, auto_df=False, count_effects=False``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.resilience.results import PanelResult, coef_frame

Vcov = Literal["cluster", "twoway", "dk", "hetero", "iid"]
VCOVS: tuple[str, ...] = ("cluster", "twoway", "dk", "hetero", "iid")


def check_columns(frame: pd.DataFrame, columns: Sequence[str], *, numeric: Sequence[str] = (),
                  source: str | None = None) -> None:
    """Raise :class:`InputError` for a missing column or a non-numeric value in a ``numeric`` column."""
    for c in columns:
        if c not in frame.columns:
            raise InputError(f"the panel has no column {c!r}", file=source, field=c,
                             hint=f"columns: {list(frame.columns)[:30]}")
    for c in numeric:
        s = frame[c]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            continue
        conv = pd.to_numeric(s, errors="coerce")
        bad = conv.isna() & s.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"non-numeric value {s.iloc[i]!r} in a model column", file=source, row=i + 1,
                             field=c, hint=f"{int(bad.sum())} such value(s); fix or remove them")


def drop_singletons(codes: Sequence[np.ndarray]) -> np.ndarray:
    """Mask of observations kept after iteratively removing fixed-effect levels seen once."""
    n = len(codes[0]) if codes else 0
    keep = np.ones(n, dtype=bool)
    changed = True
    while changed and codes:
        changed = False
        for c in codes:
            cnt = np.bincount(c[keep], minlength=int(c.max()) + 1 if len(c) else 0)
            single = keep & (cnt[c] == 1)
            if single.any():
                keep &= ~single
                changed = True
    return keep


def _panel_facts(frame: pd.DataFrame, unit: str | None, time: str | None) -> dict[str, Any]:
    if unit is None or time is None:
        return {}
    per_unit = frame.groupby(unit, sort=False)[time].agg(["count", "min", "max"])
    n_t = frame[time].nunique()
    span = per_unit["max"] - per_unit["min"] + 1 if pd.api.types.is_numeric_dtype(frame[time]) else None
    gaps = int((span != per_unit["count"]).sum()) if span is not None else 0
    return {"units": len(per_unit), "periods": int(n_t),
            "balanced": bool((per_unit["count"] == n_t).all()), "units_with_gaps": gaps}


def fit_fe(
    frame: pd.DataFrame,
    y: str,
    x: str | Sequence[str],
    *,
    controls: Sequence[str] = (),
    fe: Sequence[str] = (),
    cluster: str | Sequence[str] | None = None,
    vcov: Vcov | str = "cluster",
    unit: str | None = None,
    time: str | None = None,
    dk_lag: int | None = None,
    ssc: Literal["default", "none"] = "default",
    fixef_tol: float = 1e-10,
    source: str | None = None,
) -> PanelResult:
    """Linear regression with absorbed fixed effects (two-way FE with ``fe=[unit, time]``).

    Parameters
    ----------
    frame
        The panel, one row per unit and period.
    y, x, controls
        Outcome, regressor(s) of interest and control columns (numeric).
    fe
        Fixed-effect columns to absorb (``[]`` gives pooled OLS with an intercept).
    cluster
        Cluster column(s): one for ``vcov="cluster"``, two for ``"twoway"`` (default: ``unit`` and
        ``time``).
    vcov
        ``cluster`` | ``twoway`` | ``dk`` (Driscoll–Kraay, needs ``unit`` and ``time``) | ``hetero`` | ``iid``.
    unit, time
        Panel identifiers (for the panel facts, duplicate checks and Driscoll–Kraay).
    dk_lag
        Bartlett lag for Driscoll–Kraay (default ``floor(4 (T/100)^(2/9))``).
    ssc
        ``default`` (pyfixest/fixest/Stata small-sample corrections, see the module docstring) or
        ``none``.
    fixef_tol
        Convergence tolerance of pyfixest's demeaning (its default, 1e-6, leaves estimates ~1e-6
        relative apart on unbalanced panels; 1e-10 here).
    source
        Name of the input, for error messages.

    Returns
    -------
    PanelResult
        ``info``: ``N``, ``N_input``, ``dropped_missing``, ``dropped_singletons``, ``r2``,
        ``r2_within``, ``clusters``, ``fe``, ``vcov``, ``ssc``, panel facts, ``warnings``.
    """
    import pyfixest as pf

    xs = [x] if isinstance(x, str) else list(x)
    ctrl = list(controls)
    fes = list(fe)
    if vcov not in VCOVS:
        raise InputError(f"unknown covariance type {vcov!r}", hint=f"one of {', '.join(VCOVS)}")
    cl: list[str]
    if vcov == "cluster":
        cl = [cluster] if isinstance(cluster, str) else list(cluster or ([unit] if unit else []))
        if len(cl) != 1:
            raise InputError("clustered errors need one cluster column", hint="pass --cluster COL")
    elif vcov == "twoway":
        cl = [cluster] if isinstance(cluster, str) else list(cluster or [c for c in (unit, time) if c])
        if len(cl) != 2:
            raise InputError("two-way clustered errors need two cluster columns", hint="e.g. unit and time")
    else:
        cl = []
    if vcov == "dk" and (unit is None or time is None):
        raise InputError("Driscoll–Kraay errors need the unit and time columns")
    ids = list(dict.fromkeys([c for c in (unit, time) if c] + fes + cl))
    terms = xs + ctrl
    if len(set(terms)) != len(terms) or y in terms:
        raise InputError(f"a column appears twice in the model: y={y!r}, x={xs}, controls={ctrl}")
    check_columns(frame, [y, *terms, *ids], numeric=[y, *terms], source=source)
    if unit and time:
        dup = frame.duplicated([unit, time])
        if dup.any():
            i = int(np.flatnonzero(dup.to_numpy())[0])
            raise InputError(f"duplicate ({unit}, {time}) = ({frame[unit].iloc[i]!r}, {frame[time].iloc[i]!r})",
                             file=source, row=i + 1, field=unit, hint="one row per unit and period")
    n_input = len(frame)
    data = frame[list(dict.fromkeys([y, *terms, *ids]))].copy()
    for c in [y, *terms]:
        data[c] = pd.to_numeric(data[c], errors="coerce").astype(float)
    miss = data.isna().any(axis=1).to_numpy()
    miss_by_col = {c: int(data[c].isna().sum()) for c in data.columns if data[c].isna().any()}
    data = data.loc[~miss]
    n_single = 0
    if fes and len(data):
        codes = [pd.factorize(data[f])[0] for f in fes]
        keep = drop_singletons(codes)
        n_single = int((~keep).sum())
        data = data.loc[keep]
    if len(data) <= len(terms):
        raise InputError(f"too few observations left ({len(data)}) for {len(terms)} regressor(s)", file=source,
                         hint=f"{int(miss.sum())} row(s) with missing values and {n_single} singleton(s) dropped")
    facts = _panel_facts(data, unit, time)
    warn: list[str] = []
    if int(miss.sum()):
        warn.append(f"{int(miss.sum())} row(s) with a missing value dropped ({miss_by_col})")
    if n_single:
        warn.append(f"{n_single} singleton observation(s) dropped (a fixed-effect level seen once)")
    # pyfixest needs plain column names; rename to safe aliases
    alias = {c: f"v{i}" for i, c in enumerate(data.columns)}
    back = {v: k for k, v in alias.items()}
    d = data.rename(columns=alias).reset_index(drop=True)
    for f in fes + cl + [c for c in (unit, time) if c and vcov == "dk"]:
        a = alias[f]
        if not pd.api.types.is_integer_dtype(d[a]):
            d[a] = pd.factorize(d[a], sort=True)[0]  # sorted: Driscoll–Kraay lags follow time order
    fml = f"{alias[y]} ~ {' + '.join(alias[t] for t in terms)}" + (f" | {' + '.join(alias[f] for f in fes)}"
                                                                   if fes else "")
    vk: dict[str, str | int] | None = None
    vc: Any
    if vcov == "cluster":
        vc = {"CRV1": alias[cl[0]]}
    elif vcov == "twoway":
        vc = {"CRV1": f"{alias[cl[0]]}+{alias[cl[1]]}"}
    elif vcov == "dk":
        assert time is not None and unit is not None
        n_t = int(d[alias[time]].nunique())
        lag = dk_lag if dk_lag is not None else math.floor(4 * (n_t / 100) ** (2 / 9))
        vc, vk = "DK", {"lag": lag, "time_id": alias[time], "panel_id": alias[unit]}
        if facts.get("units_with_gaps"):
            warn.append("Driscoll–Kraay: periods are taken as consecutive; units with gaps in years are "
                        f"{facts['units_with_gaps']}")
    else:
        vc = vcov
    ss = pf.ssc(k_adj=False, G_adj=False) if ssc == "none" else pf.ssc()
    for c in cl:
        if data[c].nunique() < 2:
            raise InputError(f"fewer than two clusters in {c!r}", field=c, file=source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            m = pf.feols(fml, data=d, vcov=vc, vcov_kwargs=vk, ssc=ss, fixef_rm="none", copy_data=False,
                         store_data=False, fixef_tol=fixef_tol)
        except Exception as exc:  # pyfixest raises several types for degenerate designs
            msg = " ".join(str(exc).split())
            if "all variables are collinear" in msg.lower():
                raise InputError(f"collinear regressor(s) {terms}: all of them are perfectly explained by the "
                                 f"fixed effects {fes} (e.g. constant within each unit) or by each other",
                                 file=source, field=terms[0],
                                 hint="use regressors that vary within units and periods, or drop the fixed "
                                      "effect that absorbs them") from exc
            raise InputError(f"the model cannot be estimated: {msg}", file=source) from exc
    names = [back.get(n, n) for n in m._coefnames]
    lost = [t for t in terms if t not in names]
    if lost:
        raise InputError(f"collinear regressor(s) {lost}: perfectly explained by the other regressors or the "
                         f"fixed effects {fes}", file=source, field=lost[0],
                         hint="remove them, or drop the fixed effect that absorbs them")
    warn += [str(w.message) for w in caught if "singleton" not in str(w.message).lower()
             and issubclass(w.category, UserWarning)][:5]
    tid = m.tidy()
    coef = coef_frame(names, tid["Estimate"], tid["Std. Error"], tid["t value"], tid["Pr(>|t|)"])
    V = pd.DataFrame(np.asarray(m._vcov), index=names, columns=names)
    r2w = getattr(m, "_r2_within", None)
    info: dict[str, Any] = {
        "N": int(m._N), "N_input": int(n_input), "dropped_missing": int(miss.sum()),
        "dropped_missing_by_column": miss_by_col, "dropped_singletons": n_single,
        "dropped_rows": int(n_input - m._N), "r2": float(m._r2),
        "r2_within": None if r2w is None or not fes else float(r2w),
        "fe": fes, "vcov": vcov, "cluster": cl, "clusters": {c: int(data[c].nunique()) for c in cl},
        "ssc": "fixest defaults (adj, cluster_adj, fixef_k=nested)" if ssc == "default" else "none",
        "y": y, "x": xs, "controls": ctrl, **facts, "warnings": warn,
    }
    if vcov == "dk" and vk is not None:
        info["dk_lag"] = int(vk["lag"])
    return PanelResult(coefficients=coef, nobs=int(m._N), info=info, vcov=V, model="twoway_fe" if len(fes) == 2
                       else ("fe" if fes else "ols"))
