"""D5 life circles: side by side with pandana on the real Helsinki walking network, and bad input."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point

from citytwin.foundation.errors import InputError
from citytwin.spatial.lifecircle import (
    count_within,
    life_circle,
    nearest_distance,
    residential_buildings,
    walk_threshold_m,
)
from citytwin.spatial.network import build_network

# pandana stores distances rounded to the millimetre-ish (float CH weights): we allow 0.01 m
TOL_M = 0.01


@pytest.fixture(scope="module")
def pandana_net(helsinki):
    import pandana
    net, edges = helsinki["net"], helsinki["edges"]
    pos = pd.Series(np.arange(net.n_nodes), index=net.node_ids)
    return pandana.Network(pd.Series(net.coords[:, 0]), pd.Series(net.coords[:, 1]),
                           pd.Series(pos[edges["u"]].to_numpy()), pd.Series(pos[edges["v"]].to_numpy()),
                           pd.DataFrame({"length": edges["length"].to_numpy()}), twoway=True)


@pytest.mark.parametrize("category", ["grocery", "transit_stop", "park", "pharmacy"])
def test_nearest_equals_pandana(helsinki, pandana_net, category):
    net, pois = helsinki["net"], helsinki["pois"]
    sel = pois[pois["category"] == category]
    pts = sel.geometry.to_crs(net.crs).representative_point()
    pandana_net.set_pois(category, 3000, 1, pts.x, pts.y)
    theirs = pandana_net.nearest_pois(3000, category, num_pois=1, max_distance=np.nan)[1].to_numpy()
    node, _ = net.snap(sel)
    ours = nearest_distance(net.graph, node, None, max_distance=3000)
    ours = np.where(np.isfinite(ours), ours, np.nan)
    # both leave the same nodes without a POI within 3 km (other components of the network)
    assert np.array_equal(np.isnan(ours), np.isnan(theirs))
    ok = ~np.isnan(ours)
    assert ok.sum() > 5000
    assert np.max(np.abs(ours[ok] - theirs[ok])) < TOL_M


def test_count_within_equals_pandana_aggregate(helsinki, pandana_net):
    net, pois = helsinki["net"], helsinki["pois"]
    node, _ = net.snap(pois[pois["category"] == "restaurant"])
    w = np.bincount(node, minlength=net.n_nodes).astype(float)
    pandana_net.set(pd.Series(np.arange(net.n_nodes)), pd.Series(w), name="restaurants")
    theirs = pandana_net.aggregate(500, type="sum", decay="flat", name="restaurants").to_numpy()
    origins = np.arange(0, net.n_nodes, 7)  # every 7th node keeps the test fast
    ours = count_within(net.graph, origins, w, 500)
    # pandana's range query and ours agree except where a node sits within rounding of the radius
    assert np.mean(ours == theirs[origins]) > 0.999


def test_life_circle_on_helsinki_matches_pandana_at_home_nodes(helsinki, pandana_net):
    net, pois = helsinki["net"], helsinki["pois"]
    homes = residential_buildings(helsinki["buildings"], include_unknown=True)
    lc = life_circle(homes, pois, net, categories=["grocery"], include_snap=False)
    pts = pois[pois["category"] == "grocery"].geometry.to_crs(net.crs).representative_point()
    pandana_net.set_pois("grocery_h", 5000, 1, pts.x, pts.y)
    theirs = pandana_net.nearest_pois(5000, "grocery_h", num_pois=1, max_distance=np.nan)[1]
    pos = pd.Series(np.arange(net.n_nodes), index=net.node_ids)
    t = theirs.to_numpy()[pos[lc.homes["node"]].to_numpy()]
    ours = lc.homes["dist_grocery"].to_numpy()
    assert np.array_equal(np.isnan(ours), np.isnan(t))
    assert np.nanmax(np.abs(ours - t)) < TOL_M
    # coverage = share of homes within 1,200 m (15 min at 4.8 km/h)
    cov = lc.coverage.set_index("category").loc["grocery"]
    assert cov["homes_covered"] == int((ours <= 1200).sum())


def test_life_circle_report_and_gaps(helsinki):
    homes = residential_buildings(helsinki["buildings"], include_unknown=True)
    lc = life_circle(homes, helsinki["pois"], helsinki["net"])
    assert lc.threshold_m == 1200.0
    assert lc.report["network"]["components"] == helsinki["net"].n_components > 1
    cov = lc.coverage.set_index("category")
    # no kindergarten is mapped in this extract: every home is unreachable, never "0 m"
    assert cov.loc["kindergarten", "pois"] == 0
    assert lc.homes["dist_kindergarten"].isna().all()
    assert cov.loc["kindergarten", "share_covered"] == 0.0
    # homes on small disconnected pieces of the network are missing, not zero
    off_main = lc.homes["component"] > 0
    assert lc.homes.loc[off_main, "dist_grocery"].isna().any()
    assert (lc.homes["dist_grocery"].dropna() > 0).all()
    g = lc.gaps()
    assert g["gap_rank"].is_monotonic_increasing
    assert g["n_missing"].is_monotonic_decreasing
    # 3-km circle covers at least as many homes as the 15-minute one
    lc3 = life_circle(homes, helsinki["pois"], helsinki["net"], threshold_m=3000)
    assert (lc3.coverage["homes_covered"] >= lc.coverage["homes_covered"]).all()


def _toy():
    """Two components: a line 0-1-2 (100 m + 200 m) and an island 3-4 (50 m)."""
    nodes = gpd.GeoDataFrame({"id": [10, 11, 12, 13, 14]},
                             geometry=gpd.points_from_xy([0, 100, 300, 1000, 1050], [0, 0, 0, 0, 0]), crs=3067)
    edges = pd.DataFrame({"u": [10, 11, 13], "v": [11, 12, 14], "length": [100.0, 200.0, 50.0]})
    return nodes, edges


def test_toy_distances_exact():
    nodes, edges = _toy()
    net = build_network(nodes, edges)
    assert net.n_components == 2
    pois = gpd.GeoDataFrame({"osm_id": [1], "category": ["grocery"]}, geometry=[Point(310, 0)], crs=3067)
    homes = gpd.GeoDataFrame({"osm_id": [7, 8, 9]}, geometry=[Point(0, 5), Point(100, 0), Point(1000, 0)],
                             crs=3067)
    lc = life_circle(homes, pois, net, categories=["grocery"], threshold_m=250)
    d = lc.homes["dist_grocery"].to_numpy()
    # 5 m snap + 300 m network + 10 m POI snap; 200 + 10; the island cannot reach it
    assert d[0] == pytest.approx(315.0)
    assert d[1] == pytest.approx(210.0)
    assert np.isnan(d[2])
    assert lc.homes["ok_grocery"].tolist() == [False, True, False]
    assert lc.coverage.loc[0, "homes_unreachable"] == 1


def test_pois_far_off_network_flagged():
    nodes, edges = _toy()
    net = build_network(nodes, edges)
    pois = gpd.GeoDataFrame({"osm_id": [1, 2], "category": ["park", "park"]},
                            geometry=[Point(100, 10), Point(100, 5000)], crs=3067)
    homes = gpd.GeoDataFrame({"osm_id": [7]}, geometry=[Point(0, 0)], crs=3067)
    lc = life_circle(homes, pois, net, categories=["park"], max_snap_m=250)
    assert lc.report["pois"]["off_network"] == 1
    assert lc.report["pois"]["snap_m_max"] == pytest.approx(5000.0)
    assert lc.report["dropped_ids"]["pois_off_network"] == ["2"]
    assert lc.homes["dist_park"].iloc[0] == pytest.approx(110.0)


def test_buildings_without_geometry_and_empty_area():
    nodes, edges = _toy()
    net = build_network(nodes, edges)
    pois = gpd.GeoDataFrame({"osm_id": [1], "category": ["school"]}, geometry=[Point(0, 0)], crs=3067)
    homes = gpd.GeoDataFrame({"osm_id": [7, 8]}, geometry=[Point(100, 0), None], crs=3067)
    lc = life_circle(homes, pois, net, categories=["school"])
    assert len(lc.homes) == 1
    assert lc.report["dropped"] == {"homes_without_geometry": 1}
    empty = life_circle(homes.iloc[0:0], pois, net, categories=["school"])
    assert len(empty.homes) == 0 and empty.coverage.loc[0, "homes"] == 0
    with pytest.raises(InputError, match="empty street network"):
        build_network(nodes, edges.iloc[0:0])


def test_mixed_crs_is_reprojected(helsinki):
    homes = residential_buildings(helsinki["buildings"], include_unknown=True).head(40)
    pois = helsinki["pois"]
    a = life_circle(homes, pois, helsinki["net"], categories=["grocery", "park"])
    b = life_circle(homes.to_crs(3067), pois.to_crs(3857), helsinki["net"], categories=["grocery", "park"])
    np.testing.assert_allclose(a.homes["dist_grocery"], b.homes["dist_grocery"], rtol=1e-9)
    no_crs = homes.set_crs(None, allow_override=True)
    with pytest.raises(InputError, match="coordinate reference system"):
        life_circle(no_crs, pois, helsinki["net"])


def test_threshold_and_bad_network_input():
    assert walk_threshold_m(15, 4.8) == 1200.0
    with pytest.raises(InputError):
        walk_threshold_m(0, 4.8)
    nodes, _ = _toy()
    with pytest.raises(InputError, match="not in the node table"):
        build_network(nodes, pd.DataFrame({"u": [10], "v": [99], "length": [1.0]}))
    with pytest.raises(InputError, match="negative"):
        build_network(nodes, pd.DataFrame({"u": [10], "v": [11], "length": [-1.0]}))


def test_population_weights():
    nodes, edges = _toy()
    net = build_network(nodes, edges)
    pois = gpd.GeoDataFrame({"osm_id": [1], "category": ["clinic"]}, geometry=[Point(0, 0)], crs=3067)
    cells = gpd.GeoDataFrame({"osm_id": [1, 2], "pop": [300, 100]}, geometry=[Point(100, 0), Point(300, 0)],
                             crs=3067)
    lc = life_circle(cells, pois, net, categories=["clinic"], threshold_m=150, population_col="pop")
    # 300 of 400 people live within 150 m of the clinic
    assert lc.coverage.loc[0, "share_covered"] == pytest.approx(0.75)
    assert lc.coverage.loc[0, "homes_covered"] == 1
