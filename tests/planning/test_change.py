"""E5 land change: transition matrix sums to the total area, areas equal shapely, rates, rule flags."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import CRS, Transformer

from citytwin.foundation.errors import InputError
from citytwin.planning.change import NONE_CLASS, flag_changes, land_change
from citytwin.planning.overlay import parse_rules

from .conftest import grid


def _ea_area(geom: shapely.Geometry, crs: CRS) -> float:
    t = Transformer.from_crs(4326, crs, always_xy=True)
    return float(shapely.transform(geom, lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1]))).area)


@pytest.fixture
def snapshots() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    before = grid(24.90, 60.15, 4, 4, 0.01, landuse=["farm", "forest", "farm", "construction"] * 4)
    # the later snapshot is cut differently (a coarser, shifted grid) and extends further east
    after = grid(24.905, 60.15, 3, 2, 0.015, landuse=["construction", "farm", "construction", "forest", "farm",
                                                      "construction"])
    return before, after


def test_matrix_sums_to_total_area(snapshots: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    before, after = snapshots
    r = land_change(before, after, years=5)
    ea = CRS.from_user_input(r.crs)
    union = shapely.union_all([*before.geometry, *after.geometry])
    total = _ea_area(union, ea)
    assert r.matrix.to_numpy().sum() == pytest.approx(total, rel=1e-4)
    # each from -> to cell against an independent shapely computation
    for f in ["farm", "forest", "construction"]:
        for t in ["farm", "forest", "construction"]:
            a = shapely.union_all(list(before[before["landuse"] == f].geometry))
            b = shapely.union_all(list(after[after["landuse"] == t].geometry))
            expect = _ea_area(shapely.intersection(a, b), ea)
            got = r.matrix.loc[f, t] if (f in r.matrix.index and t in r.matrix.columns) else 0.0
            assert got == pytest.approx(expect, rel=1e-4, abs=1e-6)
    # land only in the later snapshot is "(none)" -> class
    only_after = _ea_area(shapely.difference(shapely.union_all(list(after.geometry)),
                                             shapely.union_all(list(before.geometry))), ea)
    assert r.matrix.loc[NONE_CLASS].sum() == pytest.approx(only_after, rel=1e-4)
    # rates: dynamic degree K = (after - before) / before / years
    rt = r.rates.set_index("class")
    k = rt.loc["construction"]
    assert k["dynamic_degree"] == pytest.approx((k["area_after_m2"] - k["area_before_m2"]) / k["area_before_m2"] / 5)
    assert (r.changes["from_class"] != r.changes["to_class"]).all()


def test_changes_breaking_a_rule_are_flagged(snapshots: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    before, after = snapshots
    red = gpd.GeoDataFrame(geometry=[shapely.box(24.90, 60.15, 24.92, 60.17)], crs=4326)
    r = land_change(before, after, years=5)
    rules = parse_rules([{"name": "new_build_in_red", "layer": "change", "overlaps": "red",
                          "where": {"to_class": "construction"}}], ["change", "red"])
    flags = flag_changes(r, {"red": red}, rules)
    ea = CRS.from_user_input(r.crs)
    new = r.changes[r.changes["to_class"] == "construction"]
    expect = _ea_area(shapely.intersection(shapely.union_all(list(new.geometry)), red.geometry.iloc[0]), ea)
    assert flags.summary["area_m2"].iloc[0] == pytest.approx(expect, rel=1e-4)
    assert expect > 0


def test_unknown_class(snapshots: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    before, after = snapshots
    with pytest.raises(InputError, match="unknown land-use class 'construction'") as e:
        land_change(before, after, classes=["farm", "forest"])
    assert e.value.row == 4


def test_hotspots_find_the_planted_cluster() -> None:
    """A 12 x 12 grid of ~250 m cells where only a 4 x 4 block changes class: that block is hot."""
    from citytwin.planning.change import change_hotspots

    n, d = 12, 0.0045
    before = grid(24.90, 60.15, n, n, d, landuse=["farm"] * n * n)
    after_cls = ["farm"] * n * n
    for j in range(4, 8):
        for i in range(4, 8):
            after_cls[j * n + i] = "construction"
    after = grid(24.90, 60.15, n, n, d, landuse=after_cls)
    r = land_change(before, after, years=1)
    hs = change_hotspots(r, resolution=8, permutations=199, seed=1)
    assert hs["changed_m2"].sum() == pytest.approx(r.changes["area_m2"].sum())
    assert np.isclose(hs["total_m2"].sum(), r.matrix.to_numpy().sum())
    hot = hs[hs["hotspot"] == "hot"]
    # G* judges a cell with its ring: the most changed cell is hot, hot cells changed more than the rest
    assert hs["hotspot"].iloc[int(np.argmax(hs["share"].to_numpy()))] == "hot"
    assert hot["share"].mean() > hs.loc[hs["hotspot"] != "hot", "share"].mean()
    assert not (hs.loc[hs["share"] == 0, "hotspot"] == "hot").all()
