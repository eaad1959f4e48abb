"""``Workspace.read(bbox=...)``: the box filtered inside DuckDB equals GeoPandas' ``intersects`` on the same data.

Data: random points, polygons and lines around Helsinki (some crossing the box's edge, some only
touching it, some with a bounding box that overlaps the box while the shape does not), plus missing
geometry; versions of one file, of several files, and files with a GeoParquet 1.1 bbox covering.
The reference is GeoPandas run side by side on the full read; ``cx[]`` (bounding boxes only) is a
superset of both.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon, box

from citytwin.foundation import readsql
from citytwin.foundation.errors import InputError
from citytwin.foundation.workspace import Workspace

BOX = (24.93, 60.16, 24.95, 60.17)


def _layer(n: int = 3000, seed: int = 1) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(24.90, 24.98, n)
    y = rng.uniform(60.15, 60.18, n)
    geoms: list[object] = []
    for i in range(n):
        k = i % 4
        if k == 0:
            geoms.append(Point(x[i], y[i]))
        elif k == 1:
            d = rng.uniform(0.0005, 0.01)
            geoms.append(box(x[i], y[i], x[i] + d, y[i] + d / 2))
        elif k == 2:
            geoms.append(LineString([(x[i], y[i]), (x[i] + 0.02, y[i] - 0.005)]))
        else:
            geoms.append(None if i % 40 == 3 else Point(x[i], y[i]))
    special = [Point(BOX[0], BOX[1]),                                      # on the corner
               Point(BOX[2], 60.165),                                      # on the east edge
               box(24.90, 60.10, BOX[0], BOX[1]),                          # touches a corner of the box only
               # a triangle whose bounding box overlaps the box, the shape itself not
               Polygon([(24.951, 60.14), (24.99, 60.14), (24.99, 60.19)]),
               LineString([(24.90, 60.165), (25.00, 60.165)])]              # crosses it
    geoms[:len(special)] = special
    return gpd.GeoDataFrame({"fid0": np.arange(n), "name": [f"f{i}" for i in range(n)]}, geometry=geoms,
                            crs="EPSG:4326")


def _want(full: gpd.GeoDataFrame, bb: tuple[float, float, float, float]) -> list[int]:
    hit = full.geometry.intersects(box(*bb)).to_numpy()
    return full["fid0"][hit].tolist()


@pytest.fixture()
def ws(tmp_path: Path) -> Workspace:
    w = Workspace.init(tmp_path / "ws", owner="admin")
    w.write_derived("layer", _layer(), inputs=[], parameters={})
    return w


@pytest.mark.parametrize("bb", [BOX, (24.0, 60.0, 26.0, 61.0), (24.9401, 60.1601, 24.9402, 60.1602),
                                (10.0, 10.0, 11.0, 11.0)])
def test_bbox_equals_geopandas_intersects(ws: Workspace, bb: tuple[float, float, float, float]) -> None:
    full = ws.read("layer")
    got = ws.read("layer", bbox=bb, position="pos")
    want = _want(full, bb)
    assert got["fid0"].tolist() == want
    assert got["pos"].tolist() == want  # the position is the record's row in the version
    assert set(want) <= set(full.cx[bb[0]:bb[2], bb[1]:bb[3]]["fid0"])  # cx[] (boxes only) is a superset
    if bb == BOX:
        assert {0, 1, 2, 4} <= set(want) and 3 not in want  # edges and corners count; a bbox overlap alone not
        assert got.geometry.geom_equals_exact(full.geometry.iloc[want].reset_index(drop=True), 0).all()


def test_bbox_with_columns_where_and_limit(ws: Workspace) -> None:
    full = ws.read("layer")
    want = [i for i in _want(full, BOX) if i >= 1000]
    got = ws.read("layer", columns=["name"], where=[("fid0", ">=", 1000)], bbox=BOX, position="pos")
    assert list(got.columns) == ["pos", "name"] and got["pos"].tolist() == want
    assert ws.read("layer", bbox=BOX, limit=3)["fid0"].tolist() == _want(full, BOX)[:3]


def _split(ws: Workspace, parts: int) -> Path:
    """Rewrite the version's one file as ``parts`` files (part-0 … part-N, in order)."""
    d = ws.root / ws.info("layer").current.path
    src = next(d.glob("*.parquet"))
    table = pq.read_table(src)
    src.unlink()
    step = -(-table.num_rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), d / f"part-{i}.parquet")
    return d


def test_bbox_positions_over_several_files(ws: Workspace) -> None:
    full = ws.read("layer")
    _split(ws, 3)
    assert ws.read("layer")["fid0"].tolist() == full["fid0"].tolist()
    got = ws.read("layer", bbox=BOX, position="pos")
    assert got["pos"].tolist() == got["fid0"].tolist() == _want(full, BOX)


def test_bbox_uses_a_geoparquet_covering(ws: Workspace) -> None:
    full = ws.read("layer")
    d = _split(ws, 2)
    for f in sorted(d.glob("*.parquet")):  # add a GeoParquet 1.1 bbox covering column, in small row groups
        t = pq.read_table(f)
        t = t.drop_columns([c for c in t.column_names if c == "bbox"])  # write_derived's own covering: made anew
        b = shapely.bounds(shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False)))
        cover = pa.StructArray.from_arrays([pa.array(b[:, k]) for k in range(4)], ["xmin", "ymin", "xmax", "ymax"],
                                           mask=pa.array(np.isnan(b[:, 0])))
        t = t.append_column("bbox", cover)
        geo = json.loads(t.schema.metadata[b"geo"])
        geo["version"] = "1.1.0"
        geo["columns"]["geometry"]["covering"] = {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}
        pq.write_table(t.replace_schema_metadata({**t.schema.metadata, b"geo": json.dumps(geo).encode()}), f,
                       row_group_size=100)
    glob = str(d / "*.parquet")
    assert readsql.covering(glob, "geometry") == {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}
    for bb in (BOX, (24.0, 60.0, 26.0, 61.0), (10.0, 10.0, 11.0, 11.0)):
        got = ws.read("layer", bbox=bb, position="pos")
        assert got["pos"].tolist() == got["fid0"].tolist() == _want(full, bb)


def test_bad_bbox_is_a_clear_error(ws: Workspace) -> None:
    for bad in [(1, 2, 3), (3, 0, 1, 1), (0, 0, float("nan"), 1), "0,0,1,1"]:
        with pytest.raises(InputError, match="bbox"):
            ws.read("layer", bbox=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="position"):
        ws.read("layer", bbox=BOX, position="name")
    ws.write_derived("plain", gpd.pd.DataFrame({"a": [1]}), inputs=[], parameters={})
    with pytest.raises(InputError, match="bbox"):
        ws.read("plain", bbox=BOX)


def test_layer_whose_geometries_are_all_missing_reads_back(tmp_path: Path) -> None:
    """A spatial dataset with only missing geometries reads back as missing geometries (it raised a
    TypeError: the all-null WKB column came back as float NaN)."""
    ws = Workspace.init(tmp_path / "ws")
    frame = gpd.GeoDataFrame({"a": [1, 2]}, geometry=[None, None], crs="EPSG:4326")
    ws.write_derived("empty_geoms", frame, inputs=[], parameters={})
    back = ws.read("empty_geoms")
    assert list(back["a"]) == [1, 2]
    assert back.geometry.isna().all()
    assert len(ws.read("empty_geoms", bbox=(0, 0, 1, 1))) == 0
