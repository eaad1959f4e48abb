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
