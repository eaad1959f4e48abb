"""Renewal site selection (E2): rank candidate sites with reasons and a sensitivity analysis.

Each criterion is min-max normalised with its direction (``benefit``: more means more need of renewal,
e.g. building age, vacancy, complaints; ``cost``: more means less need, e.g. POI vitality). The
score is ``sum_j w_j z_ij`` and each criterion's contribution ``w_j z_ij`` is reported, so the
contributions add up to the score. Weights are given or computed by the economy module's methods
(:mod:`citytwin.economy.weights`: entropy, CRITIC). The sensitivity analysis perturbs the weights
(each multiplied by ``1 + U(-delta, delta)``, renormalised) and reports rank stability.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError


@dataclass
class RankingResult:
    """``table``: one row per site (``site, score, rank`` and ``contrib_<criterion>`` columns);
    ``weights``: criterion -> weight; ``method``: how the weights were obtained."""

    table: pd.DataFrame
    weights: dict[str, float]
    method: str


def rank_sites(frame: pd.DataFrame, criteria: Mapping[str, str], *, site: str = "site",
               weights: Mapping[str, float] | str = "entropy") -> RankingResult:
    """Rank sites by the weighted sum of normalised criteria.

    Parameters
    ----------
    frame
        One row per candidate site.
    criteria
        ``{column: "benefit" | "cost"}``.
    site
        The site id column.
    weights
        ``{column: weight}`` (normalised to sum 1), or ``"entropy"`` / ``"critic"`` / ``"equal"``.
    """
    from citytwin.economy.weights import critic_weights, entropy_weights, minmax

    if site not in frame.columns:
        raise InputError(f"no site column {site!r}", field=site)
    if not criteria:
        raise InputError("give at least one criterion", field="criteria")
    cols = list(criteria)
    for c in cols:
        if c not in frame.columns:
            raise InputError(f"no criterion column {c!r}", field=c)
        if criteria[c] not in ("benefit", "cost"):
            raise InputError(f"criterion {c!r}: direction must be benefit or cost", field=c)
    X = frame[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if np.isnan(X).any():
        r, j = np.argwhere(np.isnan(X))[0]
        raise InputError("missing or non-numeric criterion value", row=int(r) + 1, field=cols[int(j)])
    if len(X) < 2:
        raise InputError("need at least two sites to rank", field=site)
    pos = np.array([criteria[c] == "benefit" for c in cols])
    if isinstance(weights, str):
        if weights == "entropy":
            w = entropy_weights(X, pos).w
        elif weights == "critic":
            w = critic_weights(X, pos).w
        elif weights == "equal":
            w = np.full(len(cols), 1.0 / len(cols))
        else:
            raise InputError(f"unknown weight method {weights!r}", field="weights",
                             hint="entropy, critic, equal, or column=weight pairs")
        method = weights
    else:
        missing = [c for c in cols if c not in weights]
        if missing:
            raise InputError(f"no weight for criterion {missing[0]!r}", field="weights")
        w = np.array([float(weights[c]) for c in cols])
        if (w < 0).any() or w.sum() <= 0:
            raise InputError("weights must be non-negative and not all zero", field="weights")
        w = w / w.sum()
        method = "given"
    Z = minmax(X, pos)
    contrib = Z * w
    out = pd.DataFrame({site: frame[site].to_numpy()})
    for k, c in enumerate(cols):
        out[f"contrib_{c}"] = contrib[:, k]
    out["score"] = contrib.sum(axis=1)
    out["rank"] = out["score"].rank(ascending=False, method="min").astype(int)
    out = out.sort_values(["rank", site]).reset_index(drop=True)
    return RankingResult(table=out, weights=dict(zip(cols, map(float, w), strict=True)), method=method)


def rank_sensitivity(frame: pd.DataFrame, criteria: Mapping[str, str], weights: Mapping[str, float], *,
                     site: str = "site", delta: float = 0.2, draws: int = 500, seed: int = 0,
                     top: int = 10) -> tuple[pd.DataFrame, dict[str, float]]:
    """Rank stability when the weights move by up to ``±delta`` (relative).

    Returns per site ``rank, rank_min, rank_max, rank_p05, rank_p95, top_share`` (share of draws in
    the top ``top``) and overall ``spearman_mean`` / ``spearman_min`` against the base ranking.
    """
    from scipy.stats import spearmanr

    if not 0 <= delta < 1:
        raise InputError("delta must be in [0, 1)", field="delta")
    base = rank_sites(frame, criteria, site=site, weights=weights)
    cols = list(criteria)
    w0 = np.array([base.weights[c] for c in cols])
    rng = np.random.default_rng(seed)
    from citytwin.economy.weights import minmax

    X = frame[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    Z = minmax(X, np.array([criteria[c] == "benefit" for c in cols]))
    W = w0 * (1 + rng.uniform(-delta, delta, size=(draws, len(cols))))
    W = W / W.sum(axis=1, keepdims=True)
    S = Z @ W.T  # sites x draws
    R = pd.DataFrame(S).rank(ascending=False, method="min").to_numpy()
    base_rank = (Z @ w0)
    br = pd.Series(base_rank).rank(ascending=False, method="min").to_numpy()
    rhos = np.array([spearmanr(br, R[:, d]).statistic for d in range(draws)]) if len(br) > 2 else np.ones(draws)
    tab = pd.DataFrame({site: frame[site].to_numpy(), "rank": br.astype(int), "rank_min": R.min(axis=1).astype(int),
                        "rank_max": R.max(axis=1).astype(int), "rank_p05": np.percentile(R, 5, axis=1),
                        "rank_p95": np.percentile(R, 95, axis=1), "top_share": (top >= R).mean(axis=1)})
    return tab.sort_values(["rank", site]).reset_index(drop=True), {
        "spearman_mean": float(np.nanmean(rhos)), "spearman_min": float(np.nanmin(rhos)), "delta": delta,
        "draws": draws, "seed": seed}
