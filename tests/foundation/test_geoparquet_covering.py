"""Spatial datasets are written as GeoParquet 1.1 with a bbox covering, in Hilbert order, in small row groups.

(Ingested point layers: ``test_geoparquet_points.py``.)

Checks: the covering is in the ``geo`` metadata and the columns; GeoPandas (which ignores the
covering) reads the files; ``Workspace.read(bbox=)`` with the covering equals the same query without
it and GeoPandas' ``intersects`` on the frame that was written (points, polygons, lines, missing
geometry); a small box's row groups are few by the files' own statistics, where the same rows in
their original order would need every row group read, and DuckDB's plan pushes the covering
filter into the Parquet scan (where it prunes row groups by those statistics).
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
from shapely.geometry import box

from citytwin.foundation import geoparquet, readsql
from citytwin.foundation.workspace import Workspace

BOX = (116.40, 39.90, 116.45, 39.95)
FIELDS = ["xmin", "ymin", "xmax", "ymax"]


def _points(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(116.0, 117.0, n), rng.uniform(39.5, 40.5, n)
    return gpd.GeoDataFrame({"pid": np.arange(n), "kind": rng.integers(0, 20, n)},
                            geometry=gpd.points_from_xy(x, y), crs="EPSG:4326")


def _mixed(n: int, seed: int = 1) -> gpd.GeoDataFrame:
    """Points, boxes and lines (some crossing the box's edges), every 50th geometry missing."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(116.0, 117.0, n), rng.uniform(39.5, 40.5, n)
    d = rng.uniform(0.0005, 0.03, n)
    kind = np.arange(n) % 3
    geoms = np.where(kind == 0, shapely.points(x, y),
                     np.where(kind == 1, shapely.box(x, y, x + d, y + d / 2),
                              shapely.linestrings(np.stack([np.stack([x, y], 1), np.stack([x + d, y - d], 1)], 1))))
    geoms[np.arange(n) % 50 == 7] = None
    return gpd.GeoDataFrame({"fid0": np.arange(n)}, geometry=geoms, crs="EPSG:4326")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    w = Workspace.init(tmp_path_factory.mktemp("cov") / "ws", owner="admin")
    w.write_derived("pts", _points(300_000), inputs=[], parameters={})
    w.write_derived("mixed", _mixed(150_000), inputs=[], parameters={})
    w.write_derived("small", _points(1000), inputs=[], parameters={})
    return w


def _file(ws: Workspace, name: str) -> Path:
    return next((ws.root / ws.info(name).current.path).glob("*.parquet"))


def test_written_dataset_has_the_covering(ws: Workspace) -> None:
    for name in ("pts", "mixed", "small"):
        f = pq.ParquetFile(_file(ws, name))
        geo = json.loads(f.schema_arrow.metadata[b"geo"])
        assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
        assert geo["columns"]["geometry"]["covering"] == {"bbox": {k: ["bbox", k] for k in FIELDS}}
        typ = f.schema_arrow.field("bbox").type
        assert pa.types.is_struct(typ) and [typ.field(i).name for i in range(4)] == FIELDS
        assert all(pa.types.is_float64(typ.field(i).type) for i in range(4))
    # the covering holds each geometry's bounds (missing geometry: a null covering)
    t = pq.read_table(_file(ws, "mixed"))
    g = shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
    cov = t["bbox"].combine_chunks()
    b = np.column_stack([cov.field(k).to_numpy(zero_copy_only=False) for k in FIELDS])
    ok = ~shapely.is_missing(g)
    assert np.array_equal(b[ok], shapely.bounds(g[ok])) and cov.is_null().to_numpy(zero_copy_only=False)[~ok].all()
    # row groups of 64k rows, rows of more than one row group in spatial order; a small one as written
    assert [pq.ParquetFile(_file(ws, n)).metadata.num_rows for n in ("pts", "small")] == [300_000, 1000]
    assert pq.ParquetFile(_file(ws, "pts")).metadata.num_row_groups == 5
    assert ws.read("small")["pid"].tolist() == list(range(1000))
    assert ws.read("pts")["pid"].tolist() != list(range(300_000))


def test_readers_that_ignore_the_covering_read_the_file(ws: Workspace) -> None:
    f = _file(ws, "mixed")
    plain = pq.read_table(f)  # a plain Parquet reader: the covering is one more column
    assert plain.column_names == ["fid0", "geometry", "bbox"]
    gp = gpd.read_parquet(f)  # GeoPandas knows the covering (and leaves it out)
    ours = ws.read("mixed")
    assert list(ours.columns) == list(gp.columns) == ["fid0", "geometry"]  # citytwin's reads hide it too
    assert gp["fid0"].tolist() == ours["fid0"].tolist() == plain["fid0"].to_pylist()
    same = shapely.equals_exact(gp.geometry.values, ours.geometry.values, 0)
    assert same.sum() == ours.geometry.notna().sum()
    # GeoPandas' own bbox read (through the covering) keeps the records whose bounds meet the box:
    # those ours keeps, and those whose box only overlaps
    boxed = set(gpd.read_parquet(f, bbox=BOX)["fid0"])
    b = shapely.bounds(ours.geometry.values)
    overlap = (b[:, 2] >= BOX[0]) & (b[:, 3] >= BOX[1]) & (b[:, 0] <= BOX[2]) & (b[:, 1] <= BOX[3])
    assert boxed == set(ours["fid0"][overlap]) and set(ws.read("mixed", bbox=BOX)["fid0"]) < boxed


@pytest.mark.parametrize("name", ["pts", "mixed"])
@pytest.mark.parametrize("bb", [BOX, (116.0, 39.5, 116.001, 39.501), (115.0, 39.0, 118.0, 41.0), (10.0, 10.0, 11.0, 11.0)])
def test_bbox_read_equal_with_and_without_covering(ws: Workspace, name: str, bb: tuple[float, ...]) -> None:
    key = "pid" if name == "pts" else "fid0"
    written = _points(300_000) if name == "pts" else _mixed(150_000)
    want = sorted(written[key][written.geometry.intersects(box(*bb)).to_numpy()].tolist())
    got = ws.read(name, bbox=bb, position="pos")  # with the covering (the dataset's files have one)
    assert sorted(got[key].tolist()) == want
    glob = str(_file(ws, name).parent / "*.parquet")
    assert readsql.covering(glob, "geometry") is not None
    cur = readsql.cursor()
    try:
        ids = {}
        for label, cover in (("with", readsql.covering(glob, "geometry")), ("without", None)):
            sql, params = readsql.select_sql([key, "geometry"], [key], None, None, bbox=bb, cover=cover)
            ids[label] = sorted(r[0] for r in cur.execute(sql, [glob, *params]).fetchall())
    finally:
        cur.close()
    assert ids["with"] == ids["without"] == want
    # the position of each record is its row in a plain read
    full = ws.read(name, columns=[key])
    assert full[key].to_numpy()[got["pos"].to_numpy(dtype=np.int64)].tolist() == got[key].tolist()


def _groups_hit(path: Path, bb: tuple[float, ...]) -> tuple[int, int]:
    """Row groups whose covering statistics overlap ``bb`` (those DuckDB must read), and all row groups."""
    md = pq.ParquetFile(path).metadata
    cols = {md.row_group(0).column(j).path_in_schema: j for j in range(md.num_columns)}
    hit = 0
    for i in range(md.num_row_groups):
        st = {k: md.row_group(i).column(cols[f"bbox.{k}"]).statistics for k in FIELDS}
        assert all(s is not None and s.has_min_max for s in st.values())
        if st["xmax"].max >= bb[0] and st["ymax"].max >= bb[1] and st["xmin"].min <= bb[2] and st["ymin"].min <= bb[3]:
            hit += 1
    return hit, md.num_row_groups


def test_small_box_reads_few_row_groups(ws: Workspace, tmp_path: Path) -> None:
    f = _file(ws, "pts")
    hit, total = _groups_hit(f, BOX)
    assert total == 5 and hit <= 2
    # the same rows in their original (random) order: every row group overlaps the box
    gdf = _points(300_000)
    t = pa.table({"pid": gdf["pid"].to_numpy(), "geometry": shapely.to_wkb(gdf.geometry.values)})
    unordered = tmp_path / "unordered.parquet"
    b = shapely.bounds(gdf.geometry.values)
    cov = geoparquet.bbox_struct(b)
    pq.write_table(t.append_column("bbox", cov), unordered, row_group_size=geoparquet.ROW_GROUP_ROWS)
    assert _groups_hit(unordered, BOX) == (5, 5)
    # DuckDB pushes the covering's comparisons into the Parquet scan (min/max row-group pruning)
    glob = str(f.parent / "*.parquet")
    sql, params = readsql.select_sql(["pid", "geometry"], ["pid"], None, None, bbox=BOX,
                                     cover=readsql.covering(glob, "geometry"))
    cur = readsql.cursor()
    try:
        plan = "".join(r[1] for r in cur.execute("EXPLAIN " + sql, [glob, *params]).fetchall())
    finally:
        cur.close()
    scan = plan[plan.index("READ_PARQUET"):]
    assert "Filters:" in scan and "bbox.xmax>=116.4" in scan.replace("│", "").replace(" ", "").replace("\n", "")


def test_hilbert_curve_visits_neighbours() -> None:
    xs, ys = (a.ravel().astype(float) for a in np.meshgrid(np.arange(16), np.arange(16)))
    keys = geoparquet.hilbert_keys(xs, ys, (0.0, 0.0, 15.0, 15.0), bits=4)
    order = np.argsort(keys)
    assert sorted(keys.tolist()) == list(range(256))
    assert (np.abs(np.diff(xs[order])) + np.abs(np.diff(ys[order]))).max() == 1  # each step to a neighbour
    nan = geoparquet.hilbert_keys(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), (0.0, 0.0, 1.0, 1.0))
    assert nan[0] > nan[1]  # missing geometry sorts last


def _land_use(path: Path, n: int, bad: bool = False) -> gpd.GeoDataFrame:
    g = _mixed(n, seed=3)
    g = g[g.geometry.notna() & (g.geometry.geom_type != "Point")].reset_index(drop=True)
    out = gpd.GeoDataFrame({"parcel_id": [f"p{i}" for i in range(len(g))], "land_use": "R"}, geometry=g.geometry,
                           crs="EPSG:4326")
    feats = json.loads(out.to_json())
    if bad:  # one record outside the WGS84 range: the staged pipeline quarantines it
        feats["features"][5]["geometry"] = {"type": "Point", "coordinates": [200.0, 100.0]}
        out = out.drop(index=5).reset_index(drop=True)
    path.write_text(json.dumps(feats), encoding="utf-8")
    return out


@pytest.mark.parametrize("bad", [False, True])
def test_ingested_lines_and_polygons_are_covered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: bool) -> None:
    from citytwin.foundation.ingest import ingest

    monkeypatch.setattr(geoparquet, "ROW_GROUP_ROWS", 2048)  # several row groups from a small file
    w = Workspace.init(tmp_path / "ws", owner="admin")
    src = _land_use(tmp_path / "lu.geojson", 9000, bad)
    r = ingest(w, tmp_path / "lu.geojson", dataset="lu", schema="land_use")
    assert r.rows_kept == len(src) and r.rows_quarantined == int(bad)
    assert w.info("lu").current.params["pipeline"] == ("staged" if bad else "streamed")
    f = _file(w, "lu")
    geo = json.loads(pq.ParquetFile(f).schema_arrow.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["covering"]["bbox"]["ymax"] == ["bbox", "ymax"]
    assert sorted(geo["columns"]["geometry"]["geometry_types"]) == ["LineString", "Polygon"]
    assert pq.ParquetFile(f).metadata.num_row_groups >= 2
    full = w.read("lu")
    assert "bbox" not in full.columns and len(full) == len(src)
    assert full["parcel_id"].tolist() != src["parcel_id"].tolist()  # Hilbert order, not the file's
    assert w.info("lu").current.extent == pytest.approx(list(src.total_bounds))
    for bb in (BOX, (116.2, 39.6, 116.21, 39.61)):
        want = sorted(src["parcel_id"][src.geometry.intersects(box(*bb)).to_numpy()])
        assert sorted(w.read("lu", bbox=bb)["parcel_id"]) == want and want
        hit, total = _groups_hit(f, bb)
        assert hit < total / 2


def test_ingested_points_keep_their_order_without_covering(tmp_path: Path) -> None:
    from citytwin.foundation.ingest import ingest

    w = Workspace.init(tmp_path / "ws", owner="admin")
    p = tmp_path / "poi.csv"
    g = _points(3000)
    p.write_text("poi_id,name,category,lon,lat\n" + "".join(
        f"{i},n{i},shop,{x!r},{y!r}\n" for i, x, y in zip(g["pid"], g.geometry.x, g.geometry.y, strict=True)))
    ingest(w, p, dataset="poi", schema="poi")
    geo = json.loads(pq.ParquetFile(_file(w, "poi")).schema_arrow.metadata[b"geo"])
    # points: not by default (geoparquet.INGEST_POINTS; test_geoparquet_points.py turns it on)
    assert geoparquet.INGEST_POINTS is False and "covering" not in geo["columns"]["geometry"]
    assert w.read("poi")["poi_id"].astype(int).tolist() == list(range(3000))


def test_quality_report_leaves_the_covering_out(ws: Workspace) -> None:
    from citytwin.foundation.quality import quality_report

    rep = quality_report(ws, "mixed")
    assert set(rep.completeness) == {"fid0"} and rep.rows == 150_000


def test_a_data_column_named_bbox_stays_data(tmp_path: Path) -> None:
    w = Workspace.init(tmp_path / "ws", owner="admin")
    g = gpd.GeoDataFrame({"bbox": ["in", "out"]}, geometry=gpd.points_from_xy([0.5, 3.0], [0.5, 3.0]), crs="EPSG:4326")
    w.write_derived("b", g, inputs=[], parameters={})
    f = _file(w, "b")
    assert pq.read_schema(f).names == ["bbox", "geometry", "geometry_bbox"]
    geo = json.loads(pq.read_schema(f).metadata[b"geo"])
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["geometry_bbox", "xmin"]
    assert list(w.read("b").columns) == ["bbox", "geometry"]
    assert w.read("b", bbox=(0, 0, 1, 1))["bbox"].tolist() == ["in"]
