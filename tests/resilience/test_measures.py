"""C1 measures: the REFERENCES.md toy (Martin), the growth-deviation form, shock detection, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.resilience.measures import detect_shock, multidimensional_index, resilience_measures


def toy() -> pd.DataFrame:
    # nation 10,000 -> 9,700 (-3 %): A 1,000 -> 950, B 500 -> 490, the rest 8,500 -> 8,260
    return pd.DataFrame({"region": ["A", "A", "B", "B", "rest", "rest"], "year": [2008, 2009] * 3,
                         "emp": [1000, 950, 500, 490, 8500, 8260]})


def test_martin_toy_reference() -> None:
    r = resilience_measures(toy(), unit="region", time="year", value="emp", shock=(2008, 2009))
    t = r.table.set_index("region")
    assert r.reference.tolist() == [10_000, 9_700]
    assert t.loc["A", "sensitivity"] == pytest.approx(1.6667, abs=5e-5)
    assert t.loc["A", "resistance"] == pytest.approx(-0.6667, abs=5e-5)
    assert t.loc["B", "sensitivity"] == pytest.approx(0.6667, abs=5e-5)
    assert t.loc["B", "resistance"] == pytest.approx(0.3333, abs=5e-5)
    assert np.isnan(t.loc["A", "recovery"]) and "no recovery window" in r.warnings[0]


def test_reference_column_and_recovery() -> None:
    f = toy()[lambda d: d.region != "rest"]
    f = pd.concat([f, pd.DataFrame({"region": ["A", "B"], "year": [2010, 2010], "emp": [1000, 500]})])
    f["nation"] = f["year"].map({2008: 10_000, 2009: 9_700, 2010: 9_894})  # +2 % after the trough
    r = resilience_measures(f, unit="region", time="year", value="emp", reference="nation", shock=(2008, 2009))
    t = r.table.set_index("region")
    assert t.loc["A", "resistance"] == pytest.approx(-2 / 3)
    # A: 950 -> 1000 (+50) against 950 * 0.02 = 19 expected: (50 - 19) / 19
    assert t.loc["A", "recovery"] == pytest.approx(31 / 19)
    assert t.loc["B", "recovery"] == pytest.approx((10 - 9.8) / 9.8)


def test_shock_detection_rule() -> None:
    ref = pd.Series([100, 104, 103, 99, 101, 98, 105], index=range(2000, 2007))
    assert detect_shock(ref)[:2] == (2001, 2003)  # 104 -> 99 is the largest run of declines
    grow = pd.Series([100, 110, 121, 124, 127, 140], index=range(2000, 2006))
    s, e, rule = detect_shock(grow)
    assert (s, e) == (2002, 2004) and "mean growth" in rule


def test_growth_deviation_form_and_gaps() -> None:
    f = pd.DataFrame({"city": ["a"] * 4 + ["b"] * 3, "year": [2000, 2001, 2002, 2003, 2000, 2001, 2003],
                      "gdp": [100, 110, 115, 120, 50, 60, 70]})
    r = resilience_measures(f, unit="city", time="year", value="gdp", shock=(2001, 2002),
                            method="growth-deviation")
    t = r.table.set_index(["city", "period"])
    g_ref_01 = (170 / 150) - 1
    assert t.loc[("a", 2001), "resilience"] == pytest.approx((0.10 - g_ref_01) / g_ref_01)
    assert t.loc[("a", 2002), "phase"] == "resistance" and t.loc[("a", 2003), "phase"] == "recovery"
    assert np.isnan(t.loc[("b", 2003), "growth"]) and t.loc[("b", 2003), "note"] == "previous period missing"
    assert len(r.table) == len(f)  # nothing dropped
    assert any("previous year is missing" in w for w in r.warnings)


def test_bad_input() -> None:
    with pytest.raises(InputError, match="shock period 2015 is outside the data"):
        resilience_measures(toy(), unit="region", time="year", value="emp", shock=(2008, 2015))
    with pytest.raises(InputError, match="must start before"):
        resilience_measures(toy(), unit="region", time="year", value="emp", shock=(2009, 2008))
    bad = toy().astype({"emp": object})
    bad.loc[3, "emp"] = "x"
    with pytest.raises(InputError, match=r"row 4, field 'emp': non-numeric"):
        resilience_measures(bad, unit="region", time="year", value="emp", shock=(2008, 2009))
    f = toy()
    f = f[~((f.region == "B") & (f.year == 2009))]  # unit B misses the trough year
    r = resilience_measures(f, unit="region", time="year", value="emp", shock=(2008, 2009))
    t = r.table.set_index("region")
    assert np.isnan(t.loc["B", "resistance"]) and t.loc["B", "note"] == "no value in 2009"
    # the national total is taken over the units present in both years
    assert t.loc["A", "resistance"] == pytest.approx(((950 - 1000) - 1000 * (9210 / 9500 - 1)) /
                                                     abs(1000 * (9210 / 9500 - 1)))


def test_multidimensional_index_uses_economy_entropy() -> None:
    from citytwin.economy.index import composite_index

    rng = np.random.default_rng(1)
    f = pd.DataFrame({"city": np.repeat(list("abcdef"), 2), "year": [1, 2] * 6})
    for c in ("res", "adj", "inn", "pat"):
        f[c] = rng.uniform(1, 10, len(f))
    r = multidimensional_index(f, {"resistance_recovery": ["res"], "adaptation_adjustment": ["adj"],
                                   "innovation_transformation": ["inn", "pat"]}, id="city", time="year")
    direct = composite_index(f, {"id": "city", "time": "year", "indicators": [
        {"column": c} for c in ("res", "adj", "inn", "pat")]}, "entropy")
    np.testing.assert_allclose(r.scores["score"], direct.scores["score"], rtol=1e-12)
    assert {"dim:resistance_recovery", "dim:innovation_transformation"} <= set(r.scores.columns)
