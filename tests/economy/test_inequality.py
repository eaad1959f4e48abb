"""Gini and Theil (B4): REFERENCES.md cases and PySAL `inequality` side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from libpysal.examples import get_path

from citytwin.economy.inequality import gini, theil, theil_by_year
from citytwin.foundation.errors import InputError

YEARS = list(range(1940, 2010, 10))


@pytest.fixture(scope="module")
def mexico() -> pd.DataFrame:
    return pd.read_csv(get_path("mexico.csv"))  # ships in the libpysal wheel, read offline


def test_gini_mexico_reference(mexico: pd.DataFrame) -> None:
    # REFERENCES.md [P]: libpysal mexico.csv pcgdp1940 -> 0.35372371173452849
    assert gini(mexico["pcgdp1940"]) == pytest.approx(0.35372371173452849, abs=1e-15)


def test_gini_equals_pysal_every_year(mexico: pd.DataFrame) -> None:
    from inequality.gini import Gini

    for y in YEARS:
        x = mexico[f"pcgdp{y}"].to_numpy(dtype=float)
        assert gini(x) == pytest.approx(Gini(x).g, abs=1e-14)  # tolerance: float rounding only


def test_theil_series_and_between_reference(mexico: pd.DataFrame) -> None:
    # REFERENCES.md [P]: T and T_between with hanson98 groups
    t_ref = [0.20894344, 0.15222451, 0.10472941, 0.10194725, 0.09560113, 0.10511256, 0.10660832]
    b_ref = [0.0345889, 0.02816853, 0.05260921, 0.05931219, 0.03205257, 0.02963731, 0.03635872]
    for y, t, b in zip(YEARS, t_ref, b_ref, strict=True):
        r = theil(mexico[f"pcgdp{y}"], mexico["hanson98"])
        assert r.total == pytest.approx(t, abs=5e-9)  # references are printed to 8 decimals
        assert r.between == pytest.approx(b, abs=5e-9)
        assert r.between + r.within == pytest.approx(r.total, abs=1e-15)
        g = r.groups
        assert (g["within_contribution"].sum(), g["between_contribution"].sum()) == pytest.approx((r.within, r.between))
        assert g["share_of_total"].sum() == pytest.approx(1.0)


def test_theil_equals_pysal_theil_and_theild(mexico: pd.DataFrame) -> None:
    from inequality.theil import Theil, TheilD

    Y = mexico[[f"pcgdp{y}" for y in YEARS]].to_numpy(dtype=float)
    groups = mexico["hanson98"].to_numpy()
    pt, pd_ = Theil(Y), TheilD(Y, groups)
    for j, _ in enumerate(YEARS):
        r = theil(Y[:, j], groups)
        assert r.total == pytest.approx(pt.T[j], abs=1e-14)
        assert r.between == pytest.approx(pd_.bg[j], abs=1e-14)
        assert r.within == pytest.approx(pd_.wg[j], abs=1e-14)


def test_theil_zero_edge_case_and_pysal() -> None:
    # REFERENCES.md: y = [0,0,0,10,10,10], groups [0,0,0,1,1,1] -> T = T_between = ln 2, T_within = 0
    from inequality.theil import TheilD

    y = np.array([0, 0, 0, 10, 10, 10], dtype=float)
    g = np.array([0, 0, 0, 1, 1, 1])
    r = theil(y, g)
    assert r.total == pytest.approx(np.log(2), abs=1e-15)
    assert r.between == pytest.approx(np.log(2), abs=1e-15)
    assert r.within == 0.0
    # We differ from PySAL on purpose in *how*: we use the limit 0*ln0 = 0 exactly, PySAL adds
    # numpy.finfo(float).tiny to zeros. The difference is ~1e-305, invisible at any tolerance.
    p = TheilD(y, g)
    assert float(p.T) == pytest.approx(r.total, abs=1e-12)
    assert float(p.bg[0]) == pytest.approx(r.between, abs=1e-12)


def test_population_weights_equal_replicated_units() -> None:
    # A unit with weight 3 must count as three identical units (definition of population weighting).
    y = np.array([1.0, 4.0, 2.5, 9.0])
    w = np.array([3, 1, 2, 5])
    g = np.array(["a", "a", "b", "b"])
    rep_y, rep_g = np.repeat(y, w), np.repeat(g, w)
    assert gini(y, weights=w) == pytest.approx(gini(rep_y), abs=1e-14)
    rw, rr = theil(y, g, weights=w), theil(rep_y, rep_g)
    assert (rw.total, rw.between, rw.within) == pytest.approx((rr.total, rr.between, rr.within), abs=1e-14)
    assert rw.weighted and not rr.weighted


def test_bad_input() -> None:
    with pytest.raises(InputError, match=r"missing or infinite.*position 1") as e:
        gini([1.0, np.nan, 3.0])
    assert e.value.field == "y"
    with pytest.raises(InputError, match="negative value -2"):
        theil([1.0, -2.0, 3.0])
    with pytest.raises(InputError, match="all values are zero"):
        gini([0, 0, 0])
    with pytest.raises(InputError, match="missing group label"):
        theil([1, 2, 3], groups=["a", None, "b"])
    with pytest.raises(InputError, match="3 weights for 2 values"):
        gini([1, 2], weights=[1, 1, 1])
    with pytest.raises(InputError, match="negative"):
        gini([1, 2], weights=[1, -1])


def test_constant_values_and_one_member_groups_documented_handling() -> None:
    # Constant values: no inequality, 0 (documented, not an error).
    assert gini([5, 5, 5]) == 0.0
    assert theil([5, 5, 5]).total == pytest.approx(0.0, abs=1e-15)
    # A group with a single member is allowed: its own Theil is 0, it still enters T_between.
    r = theil([1.0, 2.0, 3.0, 10.0], groups=["a", "a", "a", "b"])
    solo = r.groups.set_index("group").loc["b"]
    assert solo["n"] == 1 and solo["theil"] == 0.0
    assert r.between + r.within == pytest.approx(r.total, abs=1e-15)


def test_theil_by_year_panel(mexico: pd.DataFrame) -> None:
    from inequality.theil import TheilD

    long = mexico.melt(id_vars=["State", "hanson98"], value_vars=[f"pcgdp{y}" for y in YEARS],
                       var_name="year", value_name="pcgdp")
    out = theil_by_year(long, value="pcgdp", time="year", group="hanson98")
    Y = mexico[[f"pcgdp{y}" for y in YEARS]].to_numpy(dtype=float)
    ref = TheilD(Y, mexico["hanson98"].to_numpy())
    np.testing.assert_allclose(out["theil_between"], ref.bg, atol=1e-14)
    assert out["gini"].iloc[0] == pytest.approx(0.35372371173452849, abs=1e-15)
    with pytest.raises(InputError, match=r"year=pcgdp1950.*missing"):
        theil_by_year(long.assign(pcgdp=lambda d: d["pcgdp"].where(d["year"] != "pcgdp1950")),
                      value="pcgdp", time="year", group="hanson98")
    with pytest.raises(InputError, match="not in the panel"):
        theil_by_year(long, value="gdp", time="year")
