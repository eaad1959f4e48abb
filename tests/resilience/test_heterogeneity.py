"""Heterogeneity: per-group fits equal separate fits, the interaction Wald test against statsmodels,
and a permutation test that finds a planted difference and not an absent one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.resilience.heterogeneity import by_group
from citytwin.resilience.panel import fit_fe


def panel(slopes: dict[str, float], seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = pd.DataFrame([(u, t) for u in range(60) for t in range(2001, 2009)], columns=["city", "year"])
    f["region"] = np.array(list(slopes))[f["city"] % len(slopes)]
    f["x"] = rng.normal(size=len(f))
    f["y"] = f["region"].map(slopes) * f["x"] + 0.1 * f["city"] + rng.normal(size=len(f))
    return f


def test_groups_and_interaction_wald() -> None:
    import statsmodels.formula.api as smf

    f = panel({"east": 1.0, "central": 0.5, "west": 0.5})
    r = by_group(f, group="region", y="y", x="x", fe=["city", "year"], cluster="city", unit="city", time="year",
                 n_perm=99, seed=2)
    west = fit_fe(f[f.region == "west"], "y", "x", fe=["city", "year"], cluster="city", unit="city", time="year")
    t = r.table.set_index("group")
    assert t.loc["west", "estimate"] == west.estimate("x") and t.loc["west", "N"] == 160
    # the pooled interaction model against statsmodels OLS with dummies (same estimator: LSDV)
    ols = smf.ols("y ~ x:C(region) + C(city) + C(year)", data=f).fit()
    b = r.interaction.coefficients.set_index("term")["estimate"]
    assert b["x:region=east"] == pytest.approx(ols.params["x:C(region)[east]"], rel=1e-8)
    assert r.wald["p"] < 1e-4  # east differs
    pairs = r.pairs.set_index(["group_a", "group_b"])
    assert pairs.loc[("central", "east"), "p_permutation"] <= 0.02
    assert pairs.loc[("central", "west"), "p_permutation"] > 0.05
    assert pairs.loc[("central", "west"), "p_interaction"] > 0.05


def test_missing_group_counted_and_one_group_refused() -> None:
    f = panel({"a": 1.0, "b": 1.0})
    f.loc[f.city == 0, "region"] = None
    r = by_group(f, group="region", y="y", x="x", fe=["city", "year"], cluster="city", unit="city", time="year")
    assert r.info["dropped_no_group"] == 8
    with pytest.raises(InputError, match="at least two groups"):
        by_group(f[f.region == "a"], group="region", y="y", x="x", fe=["city", "year"], unit="city", time="year")
