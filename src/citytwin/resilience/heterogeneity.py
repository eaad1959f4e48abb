"""Heterogeneity by groups (C2): regressions per group and tests of coefficient differences.

:func:`by_group` fits the same panel model (:func:`citytwin.resilience.panel.fit_fe`) in every
group (region, administrative level, city size, smart-city pilot ... : any column of the panel) and
tests whether the coefficient of ``x`` differs between groups in two ways:

- **interaction** (pooled model): ``y ~ Σ_g x·1[g] + controls | FE`` with common controls and fixed
  effects, clustered as asked; Wald test that all group slopes are equal (χ² with G−1 degrees of
  freedom, and F = χ²/(G−1)), and each pairwise difference with its standard error;
- **permutation** (Fisher's permutation test, as Stata's ``bdiff``): for each pair of groups, the
  group labels of units are permuted (a unit keeps its whole series) ``n_perm`` times and the
  per-group slopes re-estimated; ``p = (1 + #{|d*| ≥ |d|}) / (1 + n_perm)``. Point estimates of the
  permuted samples use pyfixest's demeaning and numpy least squares (same estimates as ``fit_fe``).

Rows without a group are left out and counted (``info["dropped_no_group"]``); a group too small to
estimate raises :class:`InputError` naming it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from citytwin.foundation.errors import InputError
from citytwin.resilience.panel import check_columns, fit_fe
from citytwin.resilience.results import PanelResult


@dataclass
class HeterogeneityResult:
    """Per-group fits, the interaction model and the tests of differences."""

    groups: dict[str, PanelResult]
    table: pd.DataFrame
    interaction: PanelResult
    wald: dict[str, float]
    pairs: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def _fe_slope(V: np.ndarray, codes: np.ndarray | None) -> float:
    """Coefficient of column 1 in a regression of column 0 on columns 1.. with absorbed effects."""
    from pyfixest.estimation import demean

    if codes is not None:
        D, _ = demean(np.ascontiguousarray(V), codes.astype(np.uint64), np.ones(len(V)), tol=1e-10)
        Z = D[:, 1:]
        yv = D[:, 0]
    else:
        Z = np.hstack([V[:, 1:], np.ones((len(V), 1))])
        yv = V[:, 0]
    c = np.linalg.lstsq(Z, yv, rcond=None)[0]
    return float(c[0])


def by_group(
    frame: pd.DataFrame,
    *,
    group: str,
    y: str,
    x: str,
    controls: Sequence[str] = (),
    fe: Sequence[str] = (),
    cluster: str | Sequence[str] | None = None,
    vcov: str = "cluster",
    unit: str | None = None,
    time: str | None = None,
    n_perm: int = 0,
    seed: int = 0,
    source: str | None = None,
) -> HeterogeneityResult:
    """Fit the model per group and test the differences of the ``x`` coefficient.

    Parameters
    ----------
    frame
        The panel.
    group
        The column that defines the groups.
    y, x, controls, fe, cluster, vcov, unit, time
        As in :func:`citytwin.resilience.panel.fit_fe`.
    n_perm
        Permutations for Fisher's test of each pairwise difference (0: skip).
    seed
        Seed of the permutations.
    source
        Name of the input, for error messages.

    Returns
    -------
    HeterogeneityResult
        ``table``: group, estimate, std_error, t, p, N; ``wald``: chi2, df, p, F, p_F; ``pairs``:
        group_a, group_b, difference, std_error, p_interaction, p_permutation.
    """
    ctrl = list(controls)
    check_columns(frame, [group], source=source)
    has = frame[group].notna()
    data = frame.loc[has].reset_index(drop=True)
    labels = sorted(data[group].astype(str).unique())
    if len(labels) < 2:
        raise InputError(f"heterogeneity needs at least two groups in {group!r}; found {labels}", field=group,
                         file=source)
    data = data.assign(**{group: data[group].astype(str)})
    kw: dict[str, Any] = {"controls": ctrl, "fe": list(fe), "cluster": cluster, "vcov": vcov, "unit": unit,
                          "time": time, "source": source}
    fits: dict[str, PanelResult] = {}
    rows = []
    for g in labels:
        sub = data[data[group] == g]
        try:
            r = fit_fe(sub, y, x, **kw)
        except InputError as exc:
            raise InputError(f"group {g!r} of {group!r} cannot be estimated: {exc.message}", field=group,
                             file=source) from None
        fits[g] = r
        row = r.row(x)
        rows.append({"group": g, "estimate": row["estimate"], "std_error": row["std_error"], "t": row["t"],
                     "p": row["p"], "N": r.nobs})
    table = pd.DataFrame(rows)
    inter_cols = {g: f"{x}:{group}={g}" for g in labels}
    wide = data.copy()
    xv = pd.to_numeric(wide[x], errors="coerce")
    for g, c in inter_cols.items():
        wide[c] = xv * (wide[group] == g)
    inter = fit_fe(wide, y, list(inter_cols.values()), **kw)
    b = inter.coefficients.set_index("term")["estimate"]
    assert inter.vcov is not None
    terms = list(inter_cols.values())
    Vb = inter.vcov.loc[terms, terms].to_numpy()
    bb = b[terms].to_numpy()
    R = np.zeros((len(terms) - 1, len(terms)))
    for i in range(1, len(terms)):
        R[i - 1, 0], R[i - 1, i] = -1.0, 1.0
    d = R @ bb
    chi2 = float(d @ np.linalg.solve(R @ Vb @ R.T, d))
    q = len(terms) - 1
    n_cl = min(inter.info["clusters"].values()) if inter.info.get("clusters") else inter.nobs
    wald = {"chi2": chi2, "df": q, "p": float(stats.chi2.sf(chi2, q)), "F": chi2 / q,
            "p_F": float(stats.f.sf(chi2 / q, q, max(n_cl - 1, 1)))}
    pair_rows = []
    rng = np.random.default_rng(seed)
    for ga, gb in itertools.combinations(labels, 2):
        ia, ib = labels.index(ga), labels.index(gb)
        diff = float(bb[ib] - bb[ia])
        se = float(np.sqrt(Vb[ia, ia] + Vb[ib, ib] - 2 * Vb[ia, ib]))
        p_int = float(2 * stats.norm.sf(abs(diff / se))) if se > 0 else float("nan")
        p_perm = float("nan")
        if n_perm > 0:
            p_perm = _permutation(data, group=group, ga=ga, gb=gb, y=y, x=x, controls=ctrl, fe=list(fe),
                                  unit=unit, observed=fits[gb].estimate(x) - fits[ga].estimate(x), n_perm=n_perm,
                                  rng=rng)
        pair_rows.append({"group_a": ga, "group_b": gb, "difference": diff, "std_error": se,
                          "p_interaction": p_int, "difference_separate": fits[gb].estimate(x) - fits[ga].estimate(x),
                          "p_permutation": p_perm})
    info = {"group": group, "groups": labels, "dropped_no_group": int((~has).sum()), "n_perm": int(n_perm),
            "seed": int(seed), "x": x, "y": y}
    return HeterogeneityResult(groups=fits, table=table, interaction=inter, wald=wald,
                               pairs=pd.DataFrame(pair_rows), info=info)


def _permutation(data: pd.DataFrame, *, group: str, ga: str, gb: str, y: str, x: str, controls: list[str],
                 fe: list[str], unit: str | None, observed: float, n_perm: int, rng: np.random.Generator) -> float:
    sub = data[data[group].isin([ga, gb])].reset_index(drop=True)
    V = sub[[y, x, *controls]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    ok = ~np.isnan(V).any(axis=1)
    sub, V = sub.loc[ok].reset_index(drop=True), V[ok]
    codes = np.column_stack([pd.factorize(sub[f])[0] for f in fe]) if fe else None
    key = sub[unit] if unit is not None else pd.Series(np.arange(len(sub)))
    _ukeys, uidx = np.unique(key.astype(str), return_inverse=True)
    ulab = pd.Series(sub[group].to_numpy()).groupby(uidx).first().to_numpy()
    hits = 0
    for _ in range(n_perm):
        lab = rng.permutation(ulab)[uidx]
        est = []
        for g in (ga, gb):
            mask = lab == g
            est.append(_fe_slope(V[mask], codes[mask] if codes is not None else None))
        if abs(est[1] - est[0]) >= abs(observed) - 1e-12:
            hits += 1
    return (1 + hits) / (1 + n_perm)
