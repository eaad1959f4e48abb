"""E2 renewal ranking: reasons add up to the score, weights from the economy module, sensitivity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citytwin.economy.weights import entropy_weights
from citytwin.foundation.errors import InputError
from citytwin.planning.renewal import rank_sensitivity, rank_sites

CRIT = {"age": "benefit", "vacancy": "benefit", "vitality": "cost", "complaints": "benefit"}


@pytest.fixture
def blocks() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 30
    return pd.DataFrame({"site": [f"b{i:02d}" for i in range(n)], "age": rng.uniform(5, 80, n),
                         "vacancy": rng.uniform(0, 0.3, n), "vitality": rng.poisson(20, n).astype(float),
                         "complaints": rng.poisson(5, n).astype(float)})


def test_contributions_add_up_to_score(blocks: pd.DataFrame) -> None:
    r = rank_sites(blocks, CRIT)
    contrib = r.table[[f"contrib_{c}" for c in CRIT]].sum(axis=1)
    np.testing.assert_allclose(contrib, r.table["score"], rtol=0, atol=1e-12)
    # the weights are the economy module's entropy weights
    X = blocks[list(CRIT)].to_numpy()
    w = entropy_weights(X, np.array([d == "benefit" for d in CRIT.values()])).w
    np.testing.assert_allclose(list(r.weights.values()), w)
    # by hand for the top site: sum_j w_j * minmax(x_ij) with direction
    top = r.table.iloc[0]
    row = blocks.set_index("site").loc[top["site"]]
    hand = 0.0
    for (c, d), wj in zip(CRIT.items(), w, strict=True):
        lo, hi = blocks[c].min(), blocks[c].max()
        z = (row[c] - lo) / (hi - lo)
        hand += wj * (z if d == "benefit" else 1 - z)
    assert top["score"] == pytest.approx(hand)
    assert top["rank"] == 1 and r.table["score"].is_monotonic_decreasing


def test_given_weights_and_sensitivity(blocks: pd.DataFrame) -> None:
    w = {"age": 2, "vacancy": 1, "vitality": 1, "complaints": 0}
    r = rank_sites(blocks, CRIT, weights=w)
    assert r.weights["age"] == pytest.approx(0.5) and r.method == "given"
    tab, stab = rank_sensitivity(blocks, CRIT, r.weights, delta=0.0, draws=20)
    assert stab["spearman_min"] == pytest.approx(1.0)  # no perturbation: the same ranking every draw
    assert (tab["rank_min"] == tab["rank"]).all() and (tab["rank_max"] == tab["rank"]).all()
    tab2, stab2 = rank_sensitivity(blocks, CRIT, r.weights, delta=0.5, draws=200)
    assert 0 < stab2["spearman_mean"] < 1
    assert (tab2["rank_min"] <= tab2["rank"]).all() and (tab2["rank"] <= tab2["rank_max"]).all()


def test_bad_input(blocks: pd.DataFrame) -> None:
    b = blocks.copy()
    b.loc[3, "age"] = np.nan
    with pytest.raises(InputError, match="row 4, field 'age'"):
        rank_sites(b, CRIT)
    with pytest.raises(InputError, match="no weight"):
        rank_sites(blocks, CRIT, weights={"age": 1})
