"""D1 centers and polycentricity: REFERENCES.md UCI case, esda side by side, Helsinki centers."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from citytwin.foundation.errors import InputError
from citytwin.spatial.centers import (
    activity_grid,
    detect_centers,
    find_centers,
    getis_ord_star,
    local_moran,
    ring_weights,
)
from citytwin.spatial.grid import cell_neighbours
from citytwin.spatial.polycentricity import (
    location_coefficient,
    rank_size,
    share_outside_main,
    urban_centrality_index,
)

ACT = [20, 100, 20, 100, 500, 0, 20, 0, 20]


def _grid(crs: int = 4326) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"a": ACT}, geometry=[box(i % 3, i // 3, i % 3 + 1, i // 3 + 1) for i in range(9)],
                            crs=crs)


def test_uci_reference_case():
    # REFERENCES.md [P]: the peer (ai4up/urban-centrality-index, a port of the R package uci) builds the
    # 3x3 unit grid in EPSG:4326 and measures it in Web Mercator (EPSG:3857); we do the same here.
    g = _grid()
    assert urban_centrality_index(g, "a", crs=3857).uci == pytest.approx(0.24276, abs=5e-6)
    assert urban_centrality_index(g, "a", distance="network", crs=3857).uci == pytest.approx(0.249821, abs=5e-6)
    assert location_coefficient(np.array([0.1, 0.4, 0.3, 0.2])) == pytest.approx(0.2, abs=1e-15)


def test_uci_exact_unit_grid_by_hand():
    # On a true unit grid (metric CRS, no projection distortion) the index is computed by hand:
    # LC = 0.564103; V = s'Ds over the 7 busy cells with self-distance sqrt(1/pi) = 0.916104;
    # V_max = the 8 border cells with 1/8 each = 1.608094 -> UCI = 0.564103 * (1 - V/V_max) = 0.242743
    r = urban_centrality_index(_grid(3067), "a")
    assert r.location_coef == pytest.approx(0.5641025641, abs=1e-9)
    assert r.spatial_separation == pytest.approx(0.9161042376, abs=1e-9)
    assert r.spatial_separation_max == pytest.approx(1.6080940829, abs=1e-9)
    assert r.uci == pytest.approx(0.2427428, abs=1e-6)


def test_uci_bad_input():
    g = _grid()
    with pytest.raises(InputError, match="no activity"):
        urban_centrality_index(g.assign(a=0), "a")
    with pytest.raises(InputError, match="column"):
        urban_centrality_index(g, "b")
    # islands: no link path between all units -> NaN (reported), not a number
    isl = g.drop([4, 5, 7])
    assert np.isnan(urban_centrality_index(isl, "a", distance="network", crs=3857).uci)


def test_rank_size_gabaix_ibragimov():
    # sizes exactly 1/(rank - 1/2): the corrected regression gives exponent 1 with se = sqrt(2/n)
    n = 10
    sizes = 1.0 / (np.arange(1, n + 1) - 0.5)
    r = rank_size(sizes)
    assert r.exponent == pytest.approx(1.0, abs=1e-12)
    assert r.slope == pytest.approx(-1.0, abs=1e-12)
    assert r.se == pytest.approx(np.sqrt(2 / n), abs=1e-12)
    assert np.isnan(rank_size([5, 3]).exponent)
    assert share_outside_main([60, 20], 100) == pytest.approx(0.4)


def test_hot_spots_against_esda(helsinki):
    import esda
    from libpysal.weights import W

    grid = activity_grid(helsinki["pois"], resolution=10)
    cells = grid["cell"].tolist()
    y = grid["activity"].to_numpy()
    nb = cell_neighbours(cells)
    w = W({c: nb[c] for c in cells}, id_order=cells, silence_warnings=True)
    sw = ring_weights(cells)
    _, z = getis_ord_star(y, sw)
    g = esda.G_Local(y, w, transform="B", star=True, permutations=0)
    np.testing.assert_allclose(z, g.Zs, atol=1e-10)
    w.transform = "r"
    # esda's permutation engine needs a ~40 s numba compile: we compare the statistic and quadrants
    # exactly, and our conditional permutations against esda's analytical moments of the
    # conditional randomization null (Sokal et al. 1998, eqs. A7-A8: EIc, VIc)
    m = esda.Moran_Local(y, w, permutations=0)
    r = local_moran(y, sw, permutations=9999, seed=7)
    np.testing.assert_allclose(r.i, m.Is, atol=1e-10)
    assert np.array_equal(r.q, m.q)
    # permutation mean within 4 Monte Carlo standard errors of EIc; variance within 10 %
    se = np.sqrt(m.VIc / 9999)
    assert np.all(np.abs(r.ei_sim - m.EIc) <= 4 * se)
    assert np.all(np.abs(r.vi_sim / m.VIc - 1) < 0.10)
    assert np.all((r.p_sim > 0) & (r.p_sim <= 0.5))


def test_helsinki_main_center(helsinki):
    res = find_centers(helsinki["pois"], resolution=9)
    c = res.centers.iloc[0]
    # the main center is the Kluuvi / Esplanadi core around 24.94 E, 60.17 N (station to market square)
    assert 24.930 < c["lon"] < 24.950 and 60.165 < c["lat"] < 60.175
    assert c["level"] == 1 and c["share"] > 0.5
    assert res.indices["n_centers"] >= 1
    assert 0 < res.indices["uci"] < 1
    for method in ("getis_ord", "local_moran"):
        other = find_centers(helsinki["pois"], resolution=9, method=method)
        top = other.centers.iloc[0]
        assert abs(top["lon"] - c["lon"]) < 0.01 and abs(top["lat"] - c["lat"]) < 0.005


def test_empty_area():
    pts = gpd.GeoDataFrame({"category": ["street_furniture"]}, geometry=gpd.points_from_xy([24.9], [60.1]),
                           crs=4326)
    with pytest.raises(InputError, match="empty area"):
        activity_grid(pts)
    with pytest.raises(InputError, match="grid"):
        detect_centers(gpd.GeoDataFrame({"x": [1]}, geometry=gpd.points_from_xy([0], [0]), crs=4326))


def _dense_uci(units: gpd.GeoDataFrame, column: str, distance: str, crs: int) -> tuple[float, float]:
    """The dense formulas (units x units matrices), as the module computed them before issue 12."""
    from scipy import sparse
    from scipy.sparse.csgraph import shortest_path
    from scipy.spatial.distance import cdist

    g = units.to_crs(crs).reset_index(drop=True)
    x = g[column].astype(float).fillna(0.0).to_numpy()
    s = x / x.sum()
    cen = np.column_stack([g.geometry.centroid.x, g.geometry.centroid.y])
    self_d = np.sqrt(g.geometry.area.to_numpy() / np.pi)
    if distance == "euclidean":
        d = cdist(cen, cen) + np.diag(self_d)
    else:
        left, right = g.geometry.sindex.query(g.geometry, predicate="intersects")
        m = left != right
        wl = np.hypot(*(cen[left[m]] - cen[right[m]]).T)
        graph = sparse.csr_matrix((wl, (left[m], right[m])), shape=(len(g), len(g)))
        d = np.asarray(shortest_path(graph, directed=False)) + np.diag(self_d)
    border = g.geometry.intersects(g.geometry.union_all().boundary).to_numpy()
    b = np.full(int(border.sum()), 1.0 / border.sum())
    return float(s @ d @ s), float(b @ d[np.ix_(border, border)] @ b)


@pytest.mark.parametrize("distance", ["euclidean", "network"])
def test_uci_blocked_equals_dense(distance):
    # a 14 x 11 grid with skewed activity and empty cells: the blocked sums equal the dense matrices
    rng = np.random.default_rng(5)
    n_x, n_y = 14, 11
    act = rng.pareto(1.5, n_x * n_y) * (rng.random(n_x * n_y) > 0.3)
    g = gpd.GeoDataFrame({"a": act}, geometry=[box(i % n_x, i // n_x, i % n_x + 1, i // n_x + 1)
                                               for i in range(n_x * n_y)], crs=3067)
    v, vmax = _dense_uci(g, "a", distance, 3067)
    for block in (1, 7, 1000):
        r = urban_centrality_index(g, "a", distance=distance, block=block)  # type: ignore[arg-type]
        assert r.spatial_separation == pytest.approx(v, rel=1e-12)
        assert r.spatial_separation_max == pytest.approx(vmax, rel=1e-12)
        assert r.uci == pytest.approx(r.location_coef * (1 - v / max(v, vmax)), rel=1e-12)
    with pytest.raises(InputError, match="block"):
        urban_centrality_index(g, "a", block=0)


def test_area_and_min_activity_are_parameters():
    from shapely.geometry import Polygon

    from citytwin.spatial.centers import area_to_cells

    rng = np.random.default_rng(3)
    lon = np.r_[24.94 + rng.normal(0, 0.002, 300), 24.99 + rng.normal(0, 0.002, 60)]
    lat = np.r_[60.17 + rng.normal(0, 0.001, 300), 60.17 + rng.normal(0, 0.001, 60)]
    pts = gpd.GeoDataFrame({"category": ["shop"] * lon.size}, geometry=gpd.points_from_xy(lon, lat), crs=4326)
    west = Polygon([(24.90, 60.15), (24.97, 60.15), (24.97, 60.19), (24.90, 60.19)])
    cells = area_to_cells(west, 9)
    grid = activity_grid(pts, resolution=9, area=west)
    assert set(grid["cell"]) == set(cells)  # the study area's cells, the eastern cluster left out
    assert grid["activity"].sum() == 300
    res = find_centers(pts, resolution=9, area=gpd.GeoDataFrame(geometry=[west], crs=4326))
    assert res.report["notes"] and "60 feature(s) outside" in " ".join(res.report["notes"])
    both = find_centers(pts, resolution=9, peak_share=0.02)
    big = float(both.centers["activity"].max())
    only_big = find_centers(pts, resolution=9, peak_share=0.02, min_activity=big)
    assert len(only_big.centers) == 1 and len(both.centers) >= 2
    assert only_big.report["min_activity"] == big
    with pytest.raises(InputError, match="min_activity"):
        find_centers(pts, resolution=9, min_activity=-1)
    with pytest.raises(InputError, match="not lon/lat"):
        area_to_cells(box(300000, 6600000, 400000, 6700000), 9)
    with pytest.raises(InputError, match="no column 'floor'"):
        activity_grid(pts, weight_col="floor")


def test_one_lisa_and_gstar_with_one_island_convention():
    # issue 11: centers (H3 ring weights) and economy (libpysal W) share one implementation; an
    # isolated cell is an island in both: I = 0, NaN pseudo p, G* of the cell alone
    import h3
    from libpysal.weights import W

    from citytwin.economy.autocorr import getis_ord
    from citytwin.economy.autocorr import local_moran as lisa_df

    c0 = h3.latlng_to_cell(60.17, 24.94, 9)
    far = h3.latlng_to_cell(60.30, 25.30, 9)
    cells = [*sorted(h3.grid_disk(c0, 2)), far]
    y = np.arange(len(cells), dtype=float) % 7 + 1.0
    sw = ring_weights(cells)
    nb = cell_neighbours(cells)
    w = W({c: nb[c] for c in cells}, id_order=cells, silence_warnings=True)
    ours = local_moran(y, sw, permutations=199, seed=3)
    df = lisa_df(y, w, permutations=199, seed=3)
    np.testing.assert_allclose(ours.i, df["Ii"], rtol=0, atol=0)
    np.testing.assert_allclose(ours.p_sim, df["p_sim"], rtol=0, atol=0)  # same draws, same engine
    assert ours.i[-1] == 0 and np.isnan(ours.p_sim[-1]) and df["quadrant"].iloc[-1] == "island"
    assert np.isfinite(ours.p_sim[:-1]).all()
    g, z = getis_ord_star(y, sw)
    gs = getis_ord(y, w, star=True, transform="b", permutations=0)
    np.testing.assert_allclose(g, gs["G"], rtol=1e-15)
    np.testing.assert_allclose(z, gs["z"], rtol=1e-15)
    assert g[-1] == pytest.approx(y[-1] / y.sum(), rel=1e-15)  # the island counts itself only
