"""Dagum Gini decomposition (B4): REFERENCES.md [C] case, identities and a brute-force check."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from libpysal.examples import get_path

from citytwin.economy.dagum import dagum_by_year, dagum_gini
from citytwin.economy.inequality import gini
from citytwin.foundation.errors import InputError

YEARS = list(range(1940, 2010, 10))


@pytest.fixture(scope="module")
def mexico() -> pd.DataFrame:
    return pd.read_csv(get_path("mexico.csv"))


def test_reference_mexico_1940(mexico: pd.DataFrame) -> None:
    # REFERENCES.md [C]: mexico.csv 1940, groups hanson98 (printed to 6 decimals)
    r = dagum_gini(mexico["pcgdp1940"], mexico["hanson98"])
    assert (r.g, r.g_w, r.g_nb, r.g_t) == pytest.approx((0.353724, 0.059706, 0.140661, 0.153357), abs=5e-7)
    rates = r.contribution_rates
    assert (rates["within"], rates["net_between"], rates["transvariation"]) == pytest.approx(
        (0.1688, 0.3977, 0.4336), abs=5e-5)
    within = r.groups.set_index("group")["gini_within"]
    assert within.loc[[1, 2, 3, 4, 5]].tolist() == pytest.approx(
        [0.225615, 0.240363, 0.206652, 0.339427, 0.483939], abs=5e-7)
    assert r.g_jh.loc[1, 3] == pytest.approx(0.345157, abs=5e-7)
    assert r.d_jh.loc[1, 3] == pytest.approx(0.902465, abs=5e-7)
    # tables are symmetric; D in [0, 1] (richer group first)
    assert np.allclose(r.g_jh.to_numpy(), r.g_jh.to_numpy().T)
    d = r.d_jh.to_numpy()[~np.eye(5, dtype=bool)]
    assert ((d >= 0) & (d <= 1)).all()


def test_identity_every_year_and_overall_gini_equals_pysal(mexico: pd.DataFrame) -> None:
    from inequality.gini import Gini

    long = mexico.melt(id_vars=["State", "hanson98"], value_vars=[f"pcgdp{y}" for y in YEARS],
                       var_name="year", value_name="pcgdp")
    summary, groups, pairs = dagum_by_year(long, value="pcgdp", group="hanson98", time="year")
    assert len(summary) == 7 and len(groups) == 7 * 5 and len(pairs) == 7 * 10
    # G_w + G_nb + G_t = G exactly (up to float rounding), every year
    np.testing.assert_allclose(summary[["g_w", "g_nb", "g_t"]].sum(axis=1), summary["g"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(summary[["rate_w", "rate_nb", "rate_t"]].sum(axis=1), 1.0, atol=1e-13)
    for y, g in zip(YEARS, summary["g"], strict=True):
        assert g == pytest.approx(Gini(mexico[f"pcgdp{y}"].to_numpy(dtype=float)).g, abs=1e-14)


def test_net_between_term_against_group_means_formula(mexico: pd.DataFrame) -> None:
    # REFERENCES.md warns about a copied snippet "G_nb = Σ λ_iλ_j|μ_i − μ_j|/μ". Written out, Dagum's
    # G_jh·D_jh = (μ_j − μ_h)/(μ_j + μ_h) and p_j s_h + p_h s_j = p_j p_h (μ_j + μ_h)/μ, so over
    # *unordered* pairs j < h with λ = population shares the formula is an identity with G_nb (an
    # independent check of our term). The snippet goes wrong as usually copied: a double loop over all
    # ordered pairs (2·G_nb), or λ taken as income shares; both break G = G_w + G_nb + G_t.
    r = dagum_gini(mexico["pcgdp1940"], mexico["hanson98"])
    tab = r.groups
    mu = float(mexico["pcgdp1940"].mean())
    p, s, m = tab["pop_share"].to_numpy(), tab["income_share"].to_numpy(), tab["mean"].to_numpy()
    unordered = sum(p[a] * p[b] * abs(m[a] - m[b]) / mu for a, b in itertools.combinations(range(5), 2))
    assert unordered == pytest.approx(r.g_nb, abs=1e-14)
    ordered = sum(p[a] * p[b] * abs(m[a] - m[b]) / mu for a in range(5) for b in range(5) if a != b)
    income_shares = sum(s[a] * s[b] * abs(m[a] - m[b]) / mu for a, b in itertools.combinations(range(5), 2))
    for wrong in (ordered, income_shares):
        assert abs(r.g_w + wrong + r.g_t - r.g) > 0.01  # the identity G = G_w + G_nb + G_t fails
    assert r.g_nb == pytest.approx(0.140661, abs=5e-7)


def _brute(y: np.ndarray, g: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float]:
    """Dagum's definitions written out over all pairs (O(n^2)), independent of the sorted algorithm."""
    labels = np.unique(g)
    W, mu = w.sum(), (w * y).sum() / w.sum()
    G = (w[:, None] * w[None, :] * np.abs(y[:, None] - y[None, :])).sum() / (2 * W * W * mu)
    stats = {}
    for lab in labels:
        m = g == lab
        stats[lab] = (y[m], w[m], w[m].sum(), (w[m] * y[m]).sum() / w[m].sum())
    gw = gnb = gt = 0.0
    for lab in labels:
        yy, ww, Wj, mj = stats[lab]
        gjj = (ww[:, None] * ww[None, :] * np.abs(yy[:, None] - yy[None, :])).sum() / (2 * Wj * Wj * mj)
        gw += gjj * (Wj / W) * (Wj * mj / (W * mu))
    for a, b in itertools.combinations(labels, 2):
        ya, wa, Wa, ma = stats[a]
        yb, wb, Wb, mb = stats[b]
        if ma < mb:
            ya, wa, Wa, ma, yb, wb, Wb, mb = yb, wb, Wb, mb, ya, wa, Wa, ma
        diff = ya[:, None] - yb[None, :]
        ww = wa[:, None] * wb[None, :]
        gjh = (ww * np.abs(diff)).sum() / (Wa * Wb * (ma + mb))
        d = (ww * np.clip(diff, 0, None)).sum()
        p = (ww * np.clip(-diff, 0, None)).sum()
        D = (d - p) / (d + p)
        pa, pb, sa, sb = Wa / W, Wb / W, Wa * ma / (W * mu), Wb * mb / (W * mu)
        gnb += gjh * (pa * sb + pb * sa) * D
        gt += gjh * (pa * sb + pb * sa) * (1 - D)
    return G, gw, gnb, gt


@pytest.mark.parametrize("weighted", [False, True])
def test_sorted_algorithm_equals_brute_force(weighted: bool) -> None:
    rng = np.random.default_rng(42)
    n = 300
    y = rng.lognormal(0, 0.7, n)
    y[:5] = y[5]  # ties
    g = rng.integers(0, 6, n)
    w = rng.integers(1, 50, n).astype(float) if weighted else np.ones(n)
    r = dagum_gini(y, g, weights=w if weighted else None)
    assert (r.g, r.g_w, r.g_nb, r.g_t) == pytest.approx(_brute(y, g, w), abs=1e-12)
    assert r.g_w + r.g_nb + r.g_t == pytest.approx(r.g, abs=1e-14)
    assert r.g == pytest.approx(gini(y, weights=w if weighted else None), abs=1e-14)


def test_bad_input_and_edge_cases() -> None:
    with pytest.raises(InputError, match="missing or infinite"):
        dagum_gini([1.0, np.nan, 2.0, 3.0], [1, 1, 2, 2])
    with pytest.raises(InputError, match="negative"):
        dagum_gini([1.0, -1.0, 2.0, 3.0], [1, 1, 2, 2])
    with pytest.raises(InputError, match="group 2 has mean 0"):
        dagum_gini([1.0, 2.0, 0.0, 0.0], [1, 1, 2, 2])
    with pytest.raises(InputError, match="missing group label"):
        dagum_gini([1.0, 2.0, 3.0], [1, None, 2])
    with pytest.raises(InputError, match="2 group labels for 3 values"):
        dagum_gini([1.0, 2.0, 3.0], [1, 2])
    # one-member groups are allowed: G_jj = 0; constant values give all zeros
    r = dagum_gini([1.0, 2.0, 3.0, 7.0], ["a", "a", "a", "b"])
    assert r.groups.set_index("group").loc["b", "gini_within"] == 0.0
    assert r.g_w + r.g_nb + r.g_t == pytest.approx(r.g, abs=1e-15)
    c = dagum_gini([4.0] * 6, [1, 1, 2, 2, 3, 3])
    assert (c.g, c.g_w, c.g_nb, c.g_t) == (0.0, 0.0, 0.0, 0.0)
    assert np.isnan(list(c.contribution_rates.values())).all()
