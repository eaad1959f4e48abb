"""The overlay's fast paths against shapely/GEOS computed independently: convex pairs clipped without
GEOS (Sutherland–Hodgman), areas from projected vertices without projected geometries, leftovers of
fully covered features skipped in land change."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import CRS

from citytwin.planning.change import land_change
from citytwin.planning.overlay import _ring_arrays, ea_areas, find_conflicts, intersect_pairs, parse_rules

LAEA = CRS.from_proj4("+proj=laea +lat_0=60.2 +lon_0=24.9 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs")


def _mixed(n: int, seed: int) -> np.ndarray:
    """Convex polygons (random triangles to octagons, either orientation, some with collinear or repeated
    vertices) and non-convex ones (L shapes, polygons with holes, multipolygons) near Helsinki."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cx, cy = 24.9 + rng.uniform(0, 0.02), 60.2 + rng.uniform(0, 0.01)
        r = rng.uniform(0.0005, 0.003)
        kind = rng.integers(0, 6)
        if kind <= 2:  # convex: points on an ellipse
            k = int(rng.integers(3, 9))
            th = np.sort(rng.uniform(0, 2 * np.pi, k))
            ring = np.column_stack([cx + r * np.cos(th), cy + 0.5 * r * np.sin(th)])
            if kind == 1:
                ring = ring[::-1]  # clockwise
            if kind == 2:  # a collinear midpoint and a repeated vertex
                ring = np.vstack([ring[:1], (ring[0] + ring[1]) / 2, ring[1:], ring[-1:]])
            g = shapely.Polygon(ring)
        elif kind == 3:  # L shape (not convex)
            g = shapely.difference(shapely.box(cx, cy, cx + r, cy + r), shapely.box(cx + r / 2, cy + r / 2, cx + r, cy + r))
        elif kind == 4:  # with a hole
            g = shapely.Polygon(shapely.box(cx, cy, cx + r, cy + r).exterior,
                                [shapely.box(cx + r / 4, cy + r / 4, cx + r / 2, cy + r / 2).exterior])
        else:  # two parts
            g = shapely.MultiPolygon([shapely.box(cx, cy, cx + r / 3, cy + r / 3),
                                      shapely.box(cx + r / 2, cy + r / 2, cx + r, cy + r)])
        out.append(g)
    return np.array(out, dtype=object)


def test_intersect_pairs_equals_geos() -> None:
    a, b = _mixed(300, 1), _mixed(300, 2)
    assert shapely.is_valid(a).all() and shapely.is_valid(b).all()
    ii, jj = shapely.STRtree(b).query(a)
    ra, rb = _ring_arrays(a), _ring_arrays(b)
    assert (ra[3][ii] & rb[3][jj]).sum() > 100 and (~(ra[3][ii] & rb[3][jj])).sum() > 100  # both paths used
    got = intersect_pairs(a, b, ii, jj)
    want = shapely.intersection(a[ii], b[jj])
    np.testing.assert_allclose(shapely.area(got), shapely.area(want), rtol=1e-9, atol=1e-18)
    nonempty = shapely.area(got) > 0
    assert shapely.is_valid(got[nonempty]).all()
    # the same region, not only the same area
    sym = shapely.area(shapely.symmetric_difference(got[nonempty], want[nonempty]))
    assert (sym <= 1e-9 * shapely.area(want[nonempty])).all()


def test_convexity_detection() -> None:
    square = shapely.box(0, 0, 1, 1)
    arrow = shapely.Polygon([(0, 0), (2, 1), (0, 2), (1, 1)])  # one reflex vertex
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])  # invalid, self-crossing
    holed = shapely.Polygon(square.exterior, [shapely.box(0.2, 0.2, 0.4, 0.4).exterior])
    flags = _ring_arrays(np.array([square, arrow, bowtie, holed, square.reverse()], dtype=object))[3]
    assert flags.tolist() == [True, False, False, False, True]


def test_shared_slanted_edge_is_no_conflict() -> None:
    """Neighbours in two layers that share a slanted edge touch: no conflict polygon (GEOS gives a line);
    the clipped sliver that rounding leaves is below the tolerance."""
    p = [(24.9, 60.2), (24.9137, 60.2071), (24.9031, 60.2113)]
    q = [(24.9, 60.2), (24.9137, 60.2071), (24.9213, 60.1989)]
    a = gpd.GeoDataFrame(geometry=[shapely.Polygon(p)], crs=4326)
    b = gpd.GeoDataFrame(geometry=[shapely.Polygon(q)], crs=4326)
    r = find_conflicts({"A": a, "B": b}, parse_rules([{"name": "r", "layer": "A", "overlaps": "B"}], ["A", "B"]))
    assert len(r.conflicts) == 0


def test_ea_areas_equal_to_crs_area() -> None:
    g = _mixed(200, 3)
    got = ea_areas(g, 4326, LAEA)
    want = gpd.GeoSeries(g, crs=4326).to_crs(LAEA).area.to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert ea_areas(np.array([shapely.Polygon()], dtype=object), 4326, LAEA).tolist() == [0.0]


def test_land_change_with_covered_features_equals_geopandas_union() -> None:
    """Snapshots that tile the same area (most features fully covered) and a partial one; the transition
    matrix equals GeoPandas' union overlay measured in the same equal-area CRS."""
    xs, ys = np.meshgrid(np.arange(12) * 0.001, np.arange(10) * 0.0005)
    cells = shapely.box(24.9 + xs.ravel(), 60.2 + ys.ravel(), 24.901 + xs.ravel(), 60.2005 + ys.ravel())
    rng = np.random.default_rng(4)
    before = gpd.GeoDataFrame({"landuse": rng.choice(["a", "b", "c"], len(cells))}, geometry=cells, crs=4326)
    # after: the same extent cut into 2 x 2 blocks, minus a corner (land covered by one snapshot only)
    blocks = [shapely.box(24.9 + i * 0.002, 60.2 + j * 0.001, 24.902 + i * 0.002, 60.201 + j * 0.001)
              for i in range(6) for j in range(5) if (i, j) != (5, 4)]
    after = gpd.GeoDataFrame({"landuse": rng.choice(["a", "b", "d"], len(blocks))}, geometry=blocks, crs=4326)
    r = land_change(before, after, years=2, crs=LAEA)
    o = gpd.overlay(before, after, how="union", keep_geom_type=True)
    o["area"] = o.to_crs(LAEA).area
    o = o.fillna({"landuse_1": "(none)", "landuse_2": "(none)"})
    want = o.pivot_table(index="landuse_1", columns="landuse_2", values="area", aggfunc="sum", fill_value=0.0)
    got = r.matrix.reindex(index=want.index, columns=want.columns, fill_value=0.0)
    # atol 1e-3 m²: GeoPandas keeps rounding slivers of ~4e-6 m² where the grids' edges differ in the last
    # bit (24.9 + 0.001 * 2i vs 24.9 + 0.002 * i); our leftovers of fully covered features are empty
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-4, atol=1e-3)
    assert r.matrix.to_numpy().sum() == pytest.approx(o["area"].sum(), rel=1e-9)
    assert "(none)" not in r.matrix.index  # the after snapshot adds no land (no rounding slivers either)
    assert r.matrix["(none)"].sum() == pytest.approx(float(o[o["landuse_2"] == "(none)"]["area"].sum()), rel=1e-6)


def test_clip_areas_equal_geos_areas() -> None:
    from citytwin.planning.overlay import _clip_areas

    a = _mixed(300, 5)
    ra = _ring_arrays(a)
    ii, jj = shapely.STRtree(a).query(a)
    keep = (ii < jj) & ra[3][ii] & ra[3][jj]
    ii, jj = ii[keep], jj[keep]
    assert len(ii) > 50
    np.testing.assert_allclose(_clip_areas(ra, ra, ii, jj), shapely.area(shapely.intersection(a[ii], a[jj])),
                               rtol=1e-9, atol=1e-18)


def test_outside_parts_equal_difference_with_the_union() -> None:
    """`outside` rules: features inside the boundary (no GEOS call), outside it, across it, and non-convex
    ones, against shapely's difference with the boundary's union, by hand."""
    from citytwin.planning.overlay import outside_parts

    xs, ys = np.meshgrid(np.arange(8) * 0.001, np.arange(6) * 0.001)
    cells = list(shapely.box(24.9 + xs.ravel(), 60.2 + ys.ravel(), 24.901 + xs.ravel(), 60.201 + ys.ravel()))
    cells += list(_mixed(40, 7))  # convex and not, some across the boundary
    a = np.array(cells, dtype=object)
    # the boundary: two convex tiles (not overlapping) covering part of the grid, and a concave one
    b = np.array([shapely.box(24.9, 60.2, 24.903, 60.204), shapely.box(24.903, 60.2, 24.9055, 60.204),
                  shapely.Polygon([(24.91, 60.2), (24.93, 60.2), (24.93, 60.21), (24.92, 60.205), (24.91, 60.21)])],
                 dtype=object)
    ii, jj = shapely.STRtree(b).query(a, predicate="intersects")
    got = outside_parts(a, b, ii, jj)
    want = shapely.difference(a, shapely.union_all(b))
    np.testing.assert_allclose(shapely.area(got), shapely.area(want), rtol=1e-9, atol=1e-18)
    inside = shapely.covers(shapely.union_all(b), a)
    assert inside.sum() >= 10 and (shapely.area(got[inside]) == 0).all()
    untouched = ~np.isin(np.arange(len(a)), ii)
    assert untouched.sum() >= 5 and all(got[k] is a[k] for k in np.flatnonzero(untouched))


def test_convex_rings_are_valid() -> None:
    """check_layer asks GEOS ``is_valid`` only for the features not marked convex: every ring marked
    convex must be valid by GEOS, among rings built to be tricky (spikes turning back along an edge in
    either direction, repeated and collinear vertices, a pentagram, a bow-tie, NaN) and random ones."""
    tricky = [
        [(0, 0), (2, 0), (2, 1), (2, 3), (2, 1), (2, 2), (0, 2)],  # spike along a vertical edge (-0.0 cross)
        [(0, 0), (2, 0), (2, 2), (2, 1), (2, 2), (0, 2)],
        [(0, 0), (2, 0), (3, 0), (2, 0), (2, 2), (0, 2)],  # spike along a horizontal edge
        [(0, 0), (2, 0), (2, 2), (1, 2), (1, 3), (1, 2), (0, 2)],  # spike out of an edge
        [(0, 0), (1, 0), (1, 0), (1, 1), (0, 1)],  # a repeated vertex
        [(0, 0), (0.5, 0), (1, 0), (1, 1), (0, 1)],  # a collinear vertex
        [(0, 1), (0.588, -0.809), (-0.951, 0.309), (0.951, 0.309), (-0.588, -0.809)],  # pentagram
        [(0, 0), (1, 1), (1, 0), (0, 1)],  # bow-tie
        [(0, 0), (1, 0), (np.nan, 1), (0, 1)],
    ]
    rng = np.random.default_rng(11)
    rings = [np.array(t, dtype=float) for t in tricky]
    for _ in range(3000):  # random small rings, often self-crossing; some snapped to a coarse grid
        pts = rng.uniform(0, 4, (int(rng.integers(3, 8)), 2))
        rings.append(np.round(pts) if rng.random() < 0.5 else pts)
    for _ in range(500):  # convex ones: points on a circle, some repeated or turned back
        th = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 9))))
        pts = np.column_stack([np.cos(th), np.sin(th)])
        k = int(rng.integers(0, len(pts)))
        if rng.random() < 0.3:
            pts = np.insert(pts, k, pts[k], axis=0)
        elif rng.random() < 0.3:
            pts = np.insert(pts, k + 1, [pts[k] + (pts[k] - pts[k - 1]) * 0.5, pts[k]], axis=0)
        rings.append(pts)
    with np.errstate(invalid="ignore"):  # the NaN ring
        geoms = np.array([shapely.Polygon(r) for r in rings], dtype=object)
    convex = _ring_arrays(geoms)[3]
    valid = shapely.is_valid(geoms)
    assert convex.sum() > 300 and (~convex & valid).sum() > 100 and (~valid).sum() > 1000
    assert not (convex & ~valid).any(), [shapely.to_wkt(g) for g in geoms[convex & ~valid][:3]]
    # the spikes, the pentagram, the bow-tie and NaN are not convex; nor (conservatively) the corner given
    # twice, whose turn is not counted; the collinear vertex is
    assert convex[:len(tricky)].tolist() == [False] * 5 + [True] + [False] * 3


def test_within_layer_check_on_a_large_grid() -> None:
    """The within-layer check (the index reused by the overlay): on a 60 x 50 grid of touching cells no
    pair is flagged; one cell moved so that it overlaps its neighbour by 5 % is found and named; accepted
    with a tolerance above 5 % (and said), refused below it; the conflicts equal those without the checks."""
    from citytwin.foundation.errors import InputError
    from citytwin.planning.overlay import check_layer

    xs, ys = np.meshgrid(np.arange(60) * 0.001, np.arange(50) * 0.0005)
    x, y = 24.9 + xs.ravel(), 60.2 + ys.ravel()
    grid = gpd.GeoDataFrame({"c": np.arange(len(x))}, geometry=shapely.box(x, y, x + 0.001, y + 0.0005), crs=4326)
    ok = check_layer("grid", grid)
    assert ok.attrs["accepted_overlaps"] == 0 and ok.attrs["repaired"] == 0
    planted = grid.copy()
    k = 1234  # moved right by 5 % of a cell: it overlaps cell k + 1 by 5 % of either
    planted.loc[k, "geometry"] = shapely.box(x[k] + 0.00005, y[k], x[k] + 0.00105, y[k] + 0.0005)
    with pytest.raises(InputError, match=rf"features {k + 1} and {k + 2} overlap by 0\.05 .*1 overlapping pair"):
        check_layer("grid", planted)
    with pytest.raises(InputError, match=r"overlap by 0\.05"):
        check_layer("grid", planted, overlap_tolerance=0.04)
    accepted = check_layer("grid", planted, overlap_tolerance=0.06)
    assert accepted.attrs["accepted_overlaps"] == 1
    assert accepted.attrs["largest_overlap_share"] == pytest.approx(0.05, rel=1e-6)
    other = gpd.GeoDataFrame(geometry=shapely.box(x + 0.0003, y + 0.0001, x + 0.0011, y + 0.0004), crs=4326)
    rules = parse_rules([{"name": "r", "layer": "A", "overlaps": "B"}], ["A", "B"])
    got = find_conflicts({"A": grid, "B": other}, rules, crs=LAEA)
    want = find_conflicts({"A": grid, "B": other}, rules, crs=LAEA, check=False)
    assert len(got.conflicts) == len(want.conflicts) > len(grid)
    np.testing.assert_array_equal(got.conflicts["area_m2"], want.conflicts["area_m2"])
    assert got.checks == {"A": {"repaired": 0, "accepted_overlaps": 0, "largest_overlap_share": 0.0},
                          "B": {"repaired": 0, "accepted_overlaps": 0, "largest_overlap_share": 0.0}}


def test_equal_area_crs_of_projected_layers() -> None:
    """The centre is chosen from the WGS84 bounds of the vertices (no reprojected geometries): the same
    bounds as ``to_crs(4326).total_bounds``, for a layer in EPSG:3067 and one in WGS84."""
    from citytwin.foundation.errors import InputError
    from citytwin.planning.overlay import _wgs84_bounds, equal_area_crs

    g = gpd.GeoDataFrame(geometry=list(_mixed(200, 9)), crs=4326)
    g3 = g.to_crs(3067)
    np.testing.assert_array_equal(_wgs84_bounds(g3), g3.to_crs(4326).total_bounds)
    np.testing.assert_array_equal(_wgs84_bounds(g), g.total_bounds)
    assert equal_area_crs(g3).srs == equal_area_crs(g).srs  # centres rounded to 1e-6 degree
    with pytest.raises(InputError, match="no CRS"):
        equal_area_crs(g.set_crs(None, allow_override=True))


def test_piece_areas_from_clipped_vertices() -> None:
    """The overlay's areas of the clipped convex pieces come from the clipped vertices, not from the
    geometries built from them: equal to ``ea_areas`` of those geometries and to GeoPandas'
    ``to_crs(laea).area``, on both paths (convex pairs and GEOS)."""
    from citytwin.planning.overlay import _intersect_pairs

    a, b = _mixed(300, 12), _mixed(300, 13)
    ii, jj = shapely.STRtree(b).query(a)
    g, area = _intersect_pairs(a, b, ii, jj, area_crs=(4326, LAEA))
    fast = _ring_arrays(a)[3][ii] & _ring_arrays(b)[3][jj]
    assert (fast & (area > 0)).sum() > 50 and (~fast & (area > 0)).sum() > 50
    np.testing.assert_allclose(area, ea_areas(g, 4326, LAEA), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(area, gpd.GeoSeries(g, crs=4326).to_crs(LAEA).area.to_numpy(), rtol=1e-9, atol=1e-6)
    assert all(shapely.equals_exact(g, intersect_pairs(a, b, ii, jj)) | (shapely.is_empty(g)))


def test_selected_features_with_reused_index() -> None:
    """``where`` / ``other_where`` select features of checked layers (the overlay then maps the selected
    features to the checked layer's rings, and builds an index over the selected other features): every
    conflict is the intersection of the features it names, measured independently, and no pair is missed."""
    xs, ys = np.meshgrid(np.arange(20) * 0.001, np.arange(16) * 0.0005)
    x, y = 24.9 + xs.ravel(), 60.2 + ys.ravel()
    rng = np.random.default_rng(21)
    a = gpd.GeoDataFrame({"c": rng.choice(["x", "y"], len(x))}, geometry=shapely.box(x, y, x + 0.001, y + 0.0005),
                         crs=4326)
    b = gpd.GeoDataFrame({"c": rng.choice(["x", "y"], len(x))},
                         geometry=shapely.box(x + 0.0003, y + 0.0001, x + 0.0011, y + 0.0004), crs=4326)
    rules = parse_rules([{"name": "r", "layer": "A", "overlaps": "B", "where": {"c": "x"}, "other_where": {"c": "y"}},
                         {"name": "all", "layer": "A", "overlaps": "B"}], ["A", "B"])
    res = find_conflicts({"A": a, "B": b}, rules, crs=LAEA)
    ga, gb = a.geometry.to_numpy(), b.geometry.to_numpy()
    for rule, sa, sb in (("r", a["c"] == "x", b["c"] == "y"), ("all", a["c"].notna(), b["c"].notna())):
        c = res.conflicts[res.conflicts["rule"] == rule]
        ia, ib = np.meshgrid(np.flatnonzero(sa), np.flatnonzero(sb), indexing="ij")
        ia, ib = ia.ravel(), ib.ravel()
        want = gpd.GeoSeries(shapely.intersection(ga[ia], gb[ib]), crs=4326).to_crs(LAEA).area.to_numpy()
        hit = want > 1e-6
        got = dict(zip(zip(c["feature"], c["other_feature"], strict=True), c["area_m2"], strict=True))
        assert set(got) == set(zip(ia[hit].tolist(), ib[hit].tolist(), strict=True)) and len(got) > 50
        np.testing.assert_allclose([got[k] for k in zip(ia[hit].tolist(), ib[hit].tolist(), strict=True)],
                                   want[hit], rtol=1e-9)
