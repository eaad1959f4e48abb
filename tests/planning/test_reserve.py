"""E1 reserve land: GM(1,1) worked example, the Beijing 2020 case, forecasts, zoning."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from citytwin.foundation.errors import InputError
from citytwin.planning.reserve import ReserveParams, forecast_population, gm11, reserve_land, zone_reserve

from .conftest import grid


def test_gm11_worked_example_derived_from_the_formula() -> None:
    """GM(1,1) on x(0) = (2.874, 3.278, 3.337, 3.390, 3.679), a series often used to teach the model. The
    expected numbers are not copied from a book (no citation could be checked offline): they are derived
    here, in exact rational arithmetic, from the definition of GM(1,1) written out below (Deng Julong's
    model, 1982; only the formula as written here is relied on, not a number from any publication): 1-AGO x(1)(k) = sum_{i<=k} x(0)(i),
    mean sequence z(k) = (x(1)(k) + x(1)(k-1)) / 2 for k = 2..n, [a, b] the least-squares solution of
    x(0)(k) + a z(k) = b written out as the 2 x 2 normal equations, time response
    x̂(1)(k+1) = (x(0)(1) - b/a) e^{-ak} + b/a and restored x̂(0)(k+1) = x̂(1)(k+1) - x̂(1)(k).
    Rounded, they are a = -0.0372, b = 3.0654, x(0)(1) - b/a = 85.2665 and b/a = -82.3925."""
    from fractions import Fraction

    raw = ["2.874", "3.278", "3.337", "3.390", "3.679"]
    x0 = [Fraction(v) for v in raw]
    x1 = [sum(x0[: k + 1], Fraction(0)) for k in range(len(x0))]
    z = [(x1[k] + x1[k - 1]) / 2 for k in range(1, len(x0))]
    y = x0[1:]
    m_, sz, sy = len(z), sum(z, Fraction(0)), sum(y, Fraction(0))
    szz, szy = sum((v * v for v in z), Fraction(0)), sum((u * v for u, v in zip(z, y, strict=True)), Fraction(0))
    # regress y on (-z, 1): a = (sz sy - m szy) / (m szz - sz^2), b = (sy + a sz) / m
    a_exact = (sz * sy - m_ * szy) / (m_ * szz - sz * sz)
    b_exact = (sy + a_exact * sz) / m_
    a_f, b_f = float(a_exact), float(b_exact)

    m = gm11([float(v) for v in raw])
    assert m.a == pytest.approx(a_f, rel=1e-12) and m.b == pytest.approx(b_f, rel=1e-12)
    assert (round(a_f, 4), round(b_f, 4)) == (-0.0372, 3.0654)
    assert (round(2.874 - b_f / a_f, 4), round(b_f / a_f, 4)) == (85.2665, -82.3925)
    k = np.arange(7)
    x1_hat = (2.874 - b_f / a_f) * np.exp(-a_f * k) + b_f / a_f
    np.testing.assert_allclose(m.fitted[1:], np.diff(x1_hat[:5]), rtol=1e-12)
    np.testing.assert_allclose(m.predict(np.arange(5, 7)), np.diff(x1_hat)[4:6], rtol=1e-12)
    assert m.fitted[0] == 2.874
    # posterior error ratio C = S2 / S1 (population standard deviations of residuals and data)
    data = np.array([float(v) for v in x0])
    c_expected = (data - m.fitted).std() / data.std()
    c_got = m.C
    assert c_got == pytest.approx(c_expected, rel=1e-12)
    assert m.C < 0.35  # "good" by the usual grading (C < 0.35)


def test_gm11_recovers_exponential_growth() -> None:
    x = 100 * np.exp(0.03 * np.arange(8))
    m = gm11(x)
    assert -m.a == pytest.approx(0.03, rel=1e-3)
    np.testing.assert_allclose(m.predict(np.arange(8, 12)), 100 * np.exp(0.03 * np.arange(8, 12)), rtol=1e-3)


def test_beijing_2020_case() -> None:
    """Beijing 2020 (../shared/REFERENCES.md, E): 132 km² of 2,760 km² construction land reserved (4.78 %), not
    activated before 2035, and the total may only grow."""
    r = reserve_land(ReserveParams(planned_total_km2=2760, reserve_km2=132, activation_year=2035, may_only_grow=True),
                     years=[2020, 2025, 2030, 2035])
    t = r.table
    assert t["ratio_pct"].round(2).tolist() == [4.78] * 4
    assert t["activatable"].tolist() == [False, False, False, True]
    assert r.params["reserve_km2"] == 132 and r.params["activation_year"] == 2035
    # derived from a forecast, a reserve that may only grow never falls
    years = np.arange(2005, 2021)
    pop = 15e6 + 4e5 * (years - 2005) - 5e3 * (years - 2005) ** 2
    fc = forecast_population(years, pop, [2025, 2030, 2035], capacity=30e6)
    r2 = reserve_land(ReserveParams(planned_total_km2=2760, per_capita_m2=100), fc)
    assert (np.diff(r2.table["reserve_km2"]) >= 0).all()
    assert (r2.table["demand_high_km2"] >= r2.table["demand_low_km2"]).all()
    assert r2.params["method"].startswith("elastic interval")
    with pytest.raises(InputError, match="not both"):
        reserve_land(ReserveParams(planned_total_km2=2760, reserve_km2=1, reserve_ratio=0.1), years=[2020])


def test_forecast_methods_agree_on_a_line() -> None:
    years = np.arange(2010, 2021)
    pop = 1e6 + 2e4 * (years - 2010)
    fc = forecast_population(years, pop, [2021, 2025])
    np.testing.assert_allclose(fc["trend"], 1e6 + 2e4 * np.array([11, 15]), rtol=1e-9)
    assert (fc["spread"] >= 0).all()
    assert ((fc["low"] <= fc["central"]) & (fc["central"] <= fc["high"])).all()


def test_zoning_excludes_red_line_and_small_zones() -> None:
    cand = grid(24.90, 60.15, 4, 1, 0.01, slope=[1.0, 5.0, 2.0, 9.0], access=[3.0, 2.0, 1.0, 0.0])
    cand = cand.drop(index=2)  # a gap: zones {0, 1} and {3}
    red = gpd.GeoDataFrame(geometry=[shapely.box(24.905, 60.15, 24.91, 60.16)], crs=4326)
    z = zone_reserve(cand, {"slope": (0.5, "cost"), "access": (0.5, "benefit")}, exclude=red,
                     min_area_m2=700_000)
    assert len(z.zones) == 1  # zone {3} (one cell, ~619,000 m²) is below the minimum
    assert shapely.intersection(z.zones.geometry.iloc[0], red.geometry.iloc[0]).area == pytest.approx(0, abs=1e-12)
    full = float(gpd.GeoSeries(list(cand.geometry[:2]), crs=4326).to_crs(z.crs).area.sum())
    cut = float(gpd.GeoSeries([shapely.box(24.905, 60.15, 24.91, 60.16)], crs=4326).to_crs(z.crs).area.sum())
    assert z.zones["area_m2"].iloc[0] == pytest.approx(full - cut, rel=1e-5)
