"""Gini coefficient and Theil index (unweighted and population-weighted, with a group decomposition).

Conventions
-----------
* ``y`` is a per-unit value (e.g. GDP per capita of a city); ``weights`` are population (or any
  non-negative size) weights. Unweighted measures treat every unit alike.
* Values must be finite and non-negative, with a positive total. NaN is refused (``InputError``
  naming the position); drop or impute missing values before calling.
* Theil uses ``0 · ln 0 = 0`` exactly (the limit). PySAL's ``inequality.theil`` instead adds
  ``numpy.finfo(float).tiny`` to zeros; the two agree to ~1e-300 (see tests).
* Constant values give Gini = Theil = 0 (no inequality): this is a result, not an error.

Peers: PySAL ``inequality`` (``Gini``, ``Theil``, ``TheilD``) computes the unweighted measures; we
keep our own (a few lines each) because we need population weights, which ``inequality`` lacks,
and the exact ``0 · ln 0 = 0``. ``tests/economy/test_inequality.py`` checks every year of the
Mexico panel against ``inequality`` (Gini, Theil, TheilD).

Examples
--------
>>> round(gini([1, 2, 3, 4]), 6)
0.25
>>> r = theil([0, 0, 0, 10, 10, 10], groups=[0, 0, 0, 1, 1, 1])
>>> round(r.total, 6), round(r.between, 6), round(r.within, 6)
(0.693147, 0.693147, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.stats.values import check_values

__all__ = ["TheilResult", "check_values", "check_weights", "gini", "theil", "theil_by_year"]


def check_weights(weights: Any, n: int, *, name: str = "weights") -> np.ndarray:
    """Return weights as a float array of length ``n`` (all ones when ``None``); refuse NaN/negative/zero-sum."""
    if weights is None:
        return np.ones(n)
    w = check_values(weights, name=name)
    if w.size != n:
        raise InputError(f"{w.size} weights for {n} values", field=name)
    if w.sum() <= 0:
        raise InputError("weights sum to zero", field=name)
    return w


def check_groups(groups: Any, n: int) -> tuple[np.ndarray, pd.Index]:
    """Group labels as integer codes (sorted labels) for ``n`` values; refuse a length mismatch or missing labels."""
    g = np.asarray(groups, dtype=object).ravel()
    if g.size != n:
        raise InputError(f"{g.size} group labels for {n} values", field="groups")
    if pd.isna(g).any():
        raise InputError("missing group label(s)", field="groups", hint="assign every unit to a group")
    codes, labels = pd.factorize(pd.Series(g), sort=True)
    return codes, labels


def _total_positive(y: np.ndarray, w: np.ndarray, name: str = "y") -> float:
    tot = float((w * y).sum())
    if tot <= 0:
        raise InputError("all values are zero: the mean is 0 and relative inequality is undefined", field=name)
    return tot


def gini(y: Any, weights: Any = None) -> float:
    r"""Gini coefficient (relative mean absolute difference).

    .. math:: G = \frac{\sum_i \sum_j w_i w_j |y_i - y_j|}{2 W^2 \mu}, \quad \mu = \sum_i w_i y_i / W

    Unweighted (``weights=None``) this is the form of ``inequality.gini.Gini``. Computed in
    O(n log n) by sorting.

    Parameters
    ----------
    y
        Non-negative values with a positive total.
    weights
        Optional non-negative population weights (same length).

    Returns
    -------
    float

    Examples
    --------
    >>> round(gini([1, 1, 1, 1]), 6)
    0.0
    >>> round(gini([1, 3], weights=[3, 1]), 6)  # same as gini([1, 1, 1, 3])
    0.25
    """
    arr = check_values(y)
    w = check_weights(weights, arr.size)
    tot = _total_positive(arr, w)
    order = np.argsort(arr, kind="mergesort")
    ys, ws = arr[order], w[order]
    cw = np.cumsum(ws)  # weight of units <= current
    cwy = np.cumsum(ws * ys)
    W = cw[-1]
    # sum_{i} w_i * sum_{j < i} w_j (y_i - y_j) counts each unordered pair once
    below_w = cw - ws
    below_wy = cwy - ws * ys
    half = float((ws * (ys * below_w - below_wy)).sum())
    mu = tot / W
    return float(2.0 * half / (2.0 * W * W * mu))


@dataclass(frozen=True)
class TheilResult:
    """Theil's T with its between/within-group decomposition.

    Attributes
    ----------
    total, between, within
        T, T_between, T_within (``total = between + within``). ``between``/``within`` are NaN
        when no groups were given.
    groups
        One row per group: ``group, n, pop_share, income_share, mean, theil`` (the group's own
        Theil), ``within_contribution`` (income_share × theil), ``between_contribution``
        (income_share × ln(income_share / pop_share)) and ``share_of_total``.
    weighted
        Whether population weights were used.
    """

    total: float
    between: float
    within: float
    groups: pd.DataFrame = field(repr=False)
    weighted: bool = False

    def as_dict(self) -> dict[str, float]:
        return {"theil": self.total, "theil_between": self.between, "theil_within": self.within}


def _xlogx_ratio(s: np.ndarray, p: np.ndarray) -> np.ndarray:
    """s * ln(s / p) with 0 · ln 0 = 0."""
    out = np.zeros_like(s)
    pos = s > 0
    out[pos] = s[pos] * np.log(s[pos] / p[pos])
    return out


def theil(y: Any, groups: Sequence[Any] | np.ndarray | pd.Series | None = None, weights: Any = None) -> TheilResult:
    r"""Theil's T index, optionally decomposed into between- and within-group parts.

    With income shares :math:`s_i = w_i y_i / \sum w y` and population shares
    :math:`p_i = w_i / W`: :math:`T = \sum_i s_i \ln(s_i / p_i)`; unweighted :math:`p_i = 1/n`.
    With groups g: :math:`T_b = \sum_g S_g \ln(S_g/P_g)` and :math:`T_w = \sum_g S_g T_g`.

    Parameters
    ----------
    y
        Non-negative values with a positive total (0 · ln 0 is taken as 0).
    groups
        Optional group label per unit (e.g. region). Groups with one member are allowed (their own
        Theil is 0).
    weights
        Optional population weights.

    Returns
    -------
    TheilResult

    Examples
    --------
    >>> round(theil([1, 1, 4, 4], groups=["a", "a", "b", "b"]).between, 6)
    0.192745
    """
    arr = check_values(y)
    w = check_weights(weights, arr.size)
    tot = _total_positive(arr, w)
    s = w * arr / tot
    p = w / w.sum()
    total = float(_xlogx_ratio(s, p).sum())
    if groups is None:
        return TheilResult(total, float("nan"), float("nan"), pd.DataFrame(), weights is not None)
    codes, labels = check_groups(groups, arr.size)
    k = len(labels)
    S = np.bincount(codes, weights=s, minlength=k)
    P = np.bincount(codes, weights=p, minlength=k)
    Wg = np.bincount(codes, weights=w, minlength=k)
    n_g = np.bincount(codes, minlength=k)
    between_c = _xlogx_ratio(S, P)
    # own Theil of each group: sum_{i in g} (s_i/S_g) ln((s_i/S_g)/(p_i/P_g))
    S_i, P_i = S[codes], P[codes]
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.where(S_i > 0, _xlogx_ratio(np.where(S_i > 0, s / S_i, 0.0), p / P_i), 0.0)
    T_g = np.bincount(codes, weights=own, minlength=k)
    within_c = S * T_g
    between, within = float(between_c.sum()), float(within_c.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_g = np.bincount(codes, weights=w * arr, minlength=k) / Wg
    table = pd.DataFrame(
        {
            "group": list(labels),
            "n": n_g,
            "pop_share": P,
            "income_share": S,
            "mean": mean_g,
            "theil": T_g,
            "within_contribution": within_c,
            "between_contribution": between_c,
        }
    )
    table["share_of_total"] = (within_c + between_c) / total if total > 0 else np.nan
    return TheilResult(total, between, within, table, weights is not None)


def theil_by_year(
    panel: pd.DataFrame, *, value: str, time: str, group: str | None = None, weight: str | None = None
) -> pd.DataFrame:
    """Theil (and Gini) per period of a long panel: one row per ``time`` value.

    Columns: ``time, n, gini, theil, theil_between, theil_within, between_share``.

    Examples
    --------
    >>> df = pd.DataFrame({"t": [1, 1, 2, 2], "v": [1.0, 3.0, 2.0, 2.0], "g": ["a", "b", "a", "b"]})
    >>> theil_by_year(df, value="v", time="t", group="g")["gini"].round(3).tolist()
    [0.25, 0.0]
    """
    need = [c for c in (value, time, group, weight) if c]
    missing = [c for c in need if c not in panel.columns]
    if missing:
        raise InputError(f"column(s) {missing} not in the panel (has {list(panel.columns)})", field=missing[0])
    rows = []
    for t, sub in panel.groupby(time, sort=True):
        where = f"{time}={t}"
        try:
            r = theil(sub[value].to_numpy(), None if group is None else sub[group].to_numpy(),
                      None if weight is None else sub[weight].to_numpy())
            g = gini(sub[value].to_numpy(), None if weight is None else sub[weight].to_numpy())
        except InputError as exc:
            raise InputError(f"{where}: {exc.message}", field=exc.field or value, hint=exc.hint) from None
        rows.append({time: t, "n": len(sub), "gini": g, "theil": r.total, "theil_between": r.between,
                     "theil_within": r.within,
                     "between_share": r.between / r.total if r.total > 0 else np.nan})
    return pd.DataFrame(rows)
