"""E1 reserve land: GM(1,1) worked example, the Beijing 2020 case, forecasts, zoning."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from citytwin.foundation.errors import InputError
from citytwin.planning.reserve import ReserveParams, forecast_population, gm11, reserve_land, zone_reserve

from .conftest import grid


def test_gm11_textbook_example() -> None:
    """The standard worked example of GM(1,1) in Chinese modelling textbooks (Si Shoukui & Sun Xijing,
    《数学建模算法与应用》, 国防工业出版社, chapter on grey prediction): x(0) = (2.874, 3.278, 3.337, 3.390,
    3.679) gives a = -0.0372, b = 3.0654 and the time response x̂(1)(k+1) = 85.2665 e^{0.0372 k} - 82.3925."""
    m = gm11([2.874, 3.278, 3.337, 3.390, 3.679])
    assert round(m.a, 4) == -0.0372
    assert round(m.b, 4) == 3.0654
    assert round(m.x0[0] - m.b / m.a, 4) == 85.2665
    assert round(m.b / m.a, 4) == -82.3925
    # the restored series: x̂(0)(k+1) = x̂(1)(k+1) - x̂(1)(k), and x̂(0)(1) = x(0)(1)
    k = np.arange(5)
    x1 = 85.2665 * np.exp(0.0372 * k) - 82.3925
    np.testing.assert_allclose(m.fitted[1:], np.diff(x1), rtol=2e-3)
    assert m.fitted[0] == 2.874
    assert m.C < 0.35  # "good" by the posterior error ratio


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
