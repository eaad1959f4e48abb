"""The street network's parts for life circles at scale: node coordinates decoded from GeoParquet WKB
(:func:`citytwin.spatial.network.read_network_nodes`) equal :func:`~citytwin.spatial.network.network_nodes`
on the GeoDataFrame, on the fast path and on every fallback."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Polygon

from citytwin.spatial.network import network_nodes, read_network_nodes


def _same(path: Path, fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        if fast:  # no GeoDataFrame read on the fast path
            m.setattr("citytwin.spatial.network.gpd.read_parquet", lambda *a, **k: pytest.fail("not decoded"))
        ids, xy, crs = read_network_nodes(path)
    ids2, xy2, crs2 = network_nodes(gpd.read_parquet(path))
    assert np.array_equal(ids, ids2) and ids.dtype == ids2.dtype
    assert np.array_equal(xy, xy2) and xy.dtype == xy2.dtype  # the same doubles, not close ones
    assert crs.equals(crs2)


@pytest.mark.parametrize("case", ["metric", "duplicates", "geographic", "string_ids", "polygon", "row_groups"])
def test_nodes_decoded_from_wkb_equal_the_geodataframe_path(tmp_path: Path, case: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n = 500
    x, y = 385_000 + rng.uniform(0, 5000, n), 6_670_000 + rng.uniform(0, 5000, n)
    ids: np.ndarray = np.arange(n) * 7
    if case == "duplicates":
        ids[10], ids[20] = ids[5], ids[6]  # first occurrence kept, in table order
    if case == "string_ids":
        ids = np.array([f"n{i}" for i in range(n)], dtype=object)
    g = gpd.GeoDataFrame({"id": ids}, geometry=gpd.points_from_xy(x, y), crs=3067)
    if case == "geographic":
        g = g.to_crs(4326)  # reprojected to UTM by network_nodes: the general path
    if case == "polygon":
        g.loc[3, "geometry"] = Polygon([(385_000, 6_670_000), (385_010, 6_670_000), (385_010, 6_670_010)])
    f = tmp_path / "nodes.parquet"
    g.to_parquet(f, row_group_size=64 if case == "row_groups" else None)
    _same(f, case not in ("geographic", "polygon"), monkeypatch)
    if case == "metric":
        assert read_network_nodes(f)[1][0].tolist() == [x[0], y[0]]
