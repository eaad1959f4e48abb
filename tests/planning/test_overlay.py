"""E4 conflicts: areas against an independent shapely/pyproj computation, rules, bad input."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import CRS, Transformer

from citytwin.foundation.errors import InputError
from citytwin.planning.overlay import check_layer, equal_area_crs, find_conflicts, parse_rules

RULES = [{"name": "build_in_redline", "layer": "landuse", "overlaps": "redline", "where": {"cls": "construction"}},
         {"name": "outside_boundary", "layer": "landuse", "outside": "boundary"}]


def _ea_area(geom: shapely.Geometry, crs: CRS) -> float:
    """Area of a WGS84 geometry in ``crs``, by pyproj's Transformer and shapely alone."""
    t = Transformer.from_crs(4326, crs, always_xy=True)
    return float(shapely.transform(geom, lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1]))).area)


def test_areas_equal_independent_shapely(plan_layers: dict[str, gpd.GeoDataFrame]) -> None:
    r = find_conflicts(plan_layers, parse_rules(RULES, list(plan_layers)))
    ea = CRS.from_user_input(r.crs)
    assert r.crs.startswith("+proj=laea")
    lu, red, ub = plan_layers["landuse"], plan_layers["redline"], plan_layers["boundary"]
    # rule 1, by hand: every construction cell x every red-line polygon
    expect1 = 0.0
    n1 = 0
    for g in lu[lu["cls"] == "construction"].geometry:
        for h in red.geometry:
            piece = shapely.intersection(g, h)
            if piece.area > 0:
                expect1 += _ea_area(piece, ea)
                n1 += 1
    # rule 2, by hand: every land-use cell minus the boundary's union
    u = shapely.union_all(list(ub.geometry))
    pieces2 = [shapely.difference(g, u) for g in lu.geometry]
    expect2 = sum(_ea_area(p, ea) for p in pieces2 if p.area > 0)
    s = r.summary.set_index("rule")
    assert s.loc["build_in_redline", "n"] == n1 > 0
    assert s.loc["build_in_redline", "area_m2"] == pytest.approx(expect1, rel=1e-4)
    assert s.loc["outside_boundary", "area_m2"] == pytest.approx(expect2, rel=1e-4)
    assert s.loc["outside_boundary", "n"] == sum(p.area > 0 for p in pieces2)
    # per polygon too
    for _, row in r.conflicts.iterrows():
        assert row["area_m2"] == pytest.approx(_ea_area(row.geometry, ea), rel=1e-4)
    assert set(r.pairs["other"]) == {"redline", "boundary"}


def test_equal_area_crs_is_equal_area() -> None:
    """A 1°x1° cell's area in the chosen LAEA equals the geodesic area on the ellipsoid (pyproj.Geod)."""
    from pyproj import Geod

    cell = shapely.segmentize(shapely.box(24.0, 60.0, 25.0, 61.0), 0.01)
    g = gpd.GeoDataFrame(geometry=[cell], crs=4326)
    area = float(g.to_crs(equal_area_crs(g)).area.iloc[0])
    geod = abs(Geod(ellps="WGS84").geometry_area_perimeter(cell)[0])
    assert area == pytest.approx(geod, rel=1e-4)


def test_layer_in_another_crs_is_reprojected(plan_layers: dict[str, gpd.GeoDataFrame]) -> None:
    base = find_conflicts(plan_layers, parse_rules(RULES, list(plan_layers))).summary
    other = dict(plan_layers, redline=plan_layers["redline"].to_crs(3067))
    moved = find_conflicts(other, parse_rules(RULES, list(other))).summary
    # straight edges in EPSG:3067 are not straight in WGS84: equal to 0.1 %, not exactly
    np.testing.assert_allclose(moved["area_m2"], base["area_m2"], rtol=1e-3)


def test_bad_input(plan_layers: dict[str, gpd.GeoDataFrame]) -> None:
    lu = plan_layers["landuse"]
    overlapping = gpd.GeoDataFrame({"cls": ["a", "b"]}, geometry=[shapely.box(0, 0, 2, 2), shapely.box(1, 1, 3, 3)],
                                   crs=4326)
    with pytest.raises(InputError, match="features 1 and 2 overlap"):
        check_layer("plan", overlapping)
    with pytest.raises(InputError, match="no CRS"):
        check_layer("plan", lu.set_crs(None, allow_override=True))
    with pytest.raises(InputError, match="is empty"):
        check_layer("plan", lu.iloc[:0])
    with pytest.raises(InputError, match="names layer 'farmland'"):
        parse_rules([{"name": "x", "layer": "landuse", "overlaps": "farmland"}], list(plan_layers))
    with pytest.raises(InputError, match="exactly one of"):
        parse_rules([{"name": "x", "layer": "landuse"}], list(plan_layers))
    # touching squares do not overlap; a bow-tie is repaired
    check_layer("grid", lu)
    bowtie = gpd.GeoDataFrame(geometry=[shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])], crs=4326)
    fixed = check_layer("bowtie", bowtie)
    assert fixed.geometry.is_valid.all() and fixed.attrs["repaired"] == 1
