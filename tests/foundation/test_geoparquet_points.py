"""Ingested point layers as GeoParquet 1.1 with a bbox covering and row groups in spatial order (issue 14).

Off by default (``geoparquet.INGEST_POINTS``: its cost to the ingest's speed goal); these tests turn it on.

The covering of a point is its coordinates (``xmin = xmax = lon``, ``ymin = ymax = lat``); with
``streamed.ORDER_POINTS`` a chunk of the streamed Arrow path that spans several row groups is put in
Hilbert order (``geoparquet.point_order``; keys from ``hilbertnumba``, checked here against numpy's
``geoparquet.hilbert_keys``); WKT points and the staged pipeline's file are rewritten in Hilbert order. Checks: the records read back equal the source in any order (values
and row count), with and without quarantine (the staged pipeline), from CSV lon/lat, Parquet lon/lat
and WKT points; the covering columns exist and equal the coordinates (null where the point is);
a small box overlaps few row groups by the files' own statistics, where the source's order overlaps
them all; a bbox read equals shapely's ``intersects`` on the source.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from citytwin.foundation import geoparquet, hilbertnumba
from citytwin.foundation.ingest import ingest
from citytwin.foundation.ingest import streamed as streamed_mod
from citytwin.foundation.workspace import Workspace

FIELDS = ["xmin", "ymin", "xmax", "ymax"]
N = 40_000
SMALL = (116.40, 39.90, 116.43, 39.93)


@pytest.mark.parametrize("bits", [1, 2, 5, 16, 31])
def test_numba_hilbert_keys_equal_numpy(bits: int) -> None:
    rng = np.random.default_rng(bits)
    x, y = rng.uniform(-10.0, 30.0, 50_000), rng.uniform(5.0, 6.0, 50_000)
    x[::97], y[3::101], x[7::131], y[11::151] = np.nan, np.nan, np.inf, -np.inf
    x[:5] = [-10.0, 30.0, -1e300, 1e300, 12.5]  # the extent's edges and far outside it
    for extent in ((-10.0, 5.0, 30.0, 6.0), (0.0, 5.5, 10.0, 5.5), (3.0, 3.0, 3.0, 3.0)):  # flat extents too
        with np.errstate(invalid="ignore", over="ignore"):  # numpy's own inf * 0 and overflow, made 0 and clipped
            want = geoparquet.hilbert_keys(x, y, extent, bits=bits)
        assert np.array_equal(hilbertnumba.keys(x, y, extent, bits=bits), want)


def test_point_order_puts_neighbours_together() -> None:
    side = 1 << geoparquet.POINT_ORDER_BITS  # one point in each cell of the key's grid
    xs, ys = (a.ravel().astype(float) for a in np.meshgrid(np.arange(side), np.arange(side)))
    order = geoparquet.point_order(xs, ys)
    assert sorted(order.tolist()) == list(range(side * side))
    assert (np.abs(np.diff(xs[order])) + np.abs(np.diff(ys[order]))).max() == 1  # each step to a neighbour
    # missing coordinates last; all missing: the given order
    assert geoparquet.point_order(np.array([np.nan, 1.0, 0.0]), np.array([0.0, 1.0, 0.0])).tolist()[-1] == 0
    assert geoparquet.point_order(np.full(3, np.nan), np.full(3, np.nan)).tolist() == [0, 1, 2]
    # the points of one cell keep their order (a stable sort)
    assert geoparquet.point_order(np.array([0.0, 5.0, 0.001, 0.002]), np.array([0.0, 5.0, 0.0, 0.0])).tolist() == \
        [0, 2, 3, 1]


def _source(n: int = N, seed: int = 7) -> pd.DataFrame:
    """POIs in random order over ~1° around Beijing; every 997th without coordinates."""
    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(116.0, 117.0, n).round(7), rng.uniform(39.5, 40.5, n).round(7)
    df = pd.DataFrame({"poi_id": [f"P{i:06d}" for i in rng.permutation(n)], "name": [f"poi {i}" for i in range(n)],
                       "category": rng.choice(["shop", "bank", "school"], n), "lon": lon, "lat": lat})
    df.loc[df.index % 997 == 5, ["lon", "lat"]] = np.nan
    return df


def _write(df: pd.DataFrame, path: Path, kind: str) -> Path:
    if kind == "parquet":
        df.to_parquet(path.with_suffix(".parquet"), index=False)
        return path.with_suffix(".parquet")
    if kind == "wkt":
        wkt = [f"POINT ({x!r} {y!r})" if np.isfinite(x) else "" for x, y in zip(df["lon"], df["lat"], strict=True)]
        df = df.drop(columns=["lon", "lat"]).assign(wkt=wkt)
    df.to_csv(path.with_suffix(".csv"), index=False)
    return path.with_suffix(".csv")


def _groups_hit(path: Path, bb: tuple[float, ...]) -> tuple[int, int]:
    """Row groups whose covering statistics overlap ``bb`` (those a bbox read must read), and all row groups."""
    md = pq.ParquetFile(path).metadata
    cols = {md.row_group(0).column(j).path_in_schema: j for j in range(md.num_columns)}
    hit = 0
    for i in range(md.num_row_groups):
        st = {k: md.row_group(i).column(cols[f"bbox.{k}"]).statistics for k in FIELDS}
        assert all(s is not None and s.has_min_max for s in st.values())
        if st["xmax"].max >= bb[0] and st["ymax"].max >= bb[1] and st["xmin"].min <= bb[2] and st["ymin"].min <= bb[3]:
            hit += 1
    return hit, md.num_row_groups


@pytest.mark.parametrize(("kind", "bad", "order"), [("csv", False, True), ("parquet", False, True), ("csv", True, False),
                                                    ("wkt", False, False), ("csv", False, False)])
def test_ingested_points_are_covered_in_spatial_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      kind: str, bad: bool, order: bool) -> None:
    # small row groups and chunks, so that 40,000 points make several chunks of several row groups;
    # the streamed Arrow path orders chunks with ORDER_POINTS (off: the covering only),
    # the rewrite of WKT points and of the staged pipeline's file always orders
    monkeypatch.setattr(geoparquet, "INGEST_POINTS", True)  # off by default (its cost; see the module)
    monkeypatch.setattr(geoparquet, "ROW_GROUP_ROWS", 1024)
    monkeypatch.setattr(streamed_mod, "POINT_CHUNK", 16_384)
    monkeypatch.setattr(streamed_mod, "ORDER_POINTS", order)
    ordered = order or bad or kind == "wkt"
    src = _source()
    if kind == "wkt":  # an empty WKT is quarantined (a record without coordinates is kept)
        src = src.dropna(subset=["lon"]).reset_index(drop=True)
    path = _write(src, tmp_path / "poi", kind)
    if bad:  # one record outside the WGS84 range: the staged pipeline quarantines it, the rest is kept
        text = path.read_text(encoding="utf-8").splitlines()
        row = text[101].split(",")
        text[101] = ",".join([*row[:3], "200.0", row[4]])
        path.write_text("\n".join(text) + "\n", encoding="utf-8")
        src = src.drop(index=100).reset_index(drop=True)
    w = Workspace.init(tmp_path / "ws", owner="admin")
    r = ingest(w, path, dataset="poi", schema="poi")
    assert (r.rows_kept, r.rows_quarantined) == (len(src), int(bad))
    pipeline = w.info("poi").current.params["pipeline"]
    assert pipeline == ("staged" if bad else "streamed")

    # the records: the source's, in some order (values and count unchanged)
    got = w.read("poi")
    assert "bbox" not in got.columns and len(got) == len(src)
    key = ["poi_id", "name", "category"]
    mine = got.assign(lon=got.geometry.x, lat=got.geometry.y)[[*key, "lon", "lat"]].sort_values("poi_id")
    want = src[[*key, "lon", "lat"]].sort_values("poi_id")
    pd.testing.assert_frame_equal(mine.reset_index(drop=True), want.reset_index(drop=True), check_exact=True)
    if kind != "wkt":
        assert got.sort_values("poi_id")["lon"].tolist() == pytest.approx(want["lon"].tolist(), nan_ok=True)
    if ordered:
        assert got["poi_id"].tolist() != src["poi_id"].tolist()  # spatial order, not the file's
    else:
        assert got["poi_id"].tolist() == src["poi_id"].tolist()

    # GeoParquet 1.1: the covering in the metadata and the file; a point's covering is its coordinates
    files = sorted((w.root / w.info("poi").current.path).glob("*.parquet"))
    assert len(files) == 1
    f = files[0]
    geo = json.loads(pq.ParquetFile(f).schema_arrow.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["geometry_types"] == ["Point"]
    assert geo["columns"]["geometry"]["covering"] == {"bbox": {k: ["bbox", k] for k in FIELDS}}
    t = pq.read_table(f)
    pts = shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
    cov = t["bbox"].combine_chunks()
    b = np.column_stack([cov.field(k).to_numpy(zero_copy_only=False) for k in FIELDS])
    ok = ~shapely.is_missing(pts)
    assert (~ok).sum() == src["lon"].isna().sum()
    assert np.array_equal(b[ok], shapely.bounds(pts[ok]))
    assert cov.is_null().to_numpy(zero_copy_only=False).tolist() == (~ok).tolist()
    assert w.info("poi").current.extent == pytest.approx(
        [src["lon"].min(), src["lat"].min(), src["lon"].max(), src["lat"].max()])

    # row groups spatially compact: a small box overlaps few; the source's order would overlap them all
    hit, total = _groups_hit(f, SMALL)
    # (DuckDB, which writes the staged pipeline's file, makes row groups of at least 2,048 rows)
    if ordered:
        assert total >= N // 2048 and hit <= total // 4, (hit, total)
    else:
        assert hit == total
    unordered = tmp_path / "unordered.parquet"
    pq.write_table(pa.table({"bbox": geoparquet.point_covering(src["lon"].to_numpy(), src["lat"].to_numpy())}),
                   unordered, row_group_size=1024)
    assert _groups_hit(unordered, SMALL)[0] == _groups_hit(unordered, SMALL)[1]

    # bbox reads (pushed down on the covering) equal shapely's intersects on the source
    for bb in (SMALL, (116.0, 39.5, 116.01, 39.51), (100.0, 10.0, 101.0, 11.0)):
        inside = shapely.intersects(shapely.points(src["lon"], src["lat"]), shapely.box(*bb))
        assert sorted(w.read("poi", bbox=bb)["poi_id"]) == sorted(src["poi_id"][inside])


def test_small_point_files_keep_their_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # one row group: nothing to skip, so the rows stay in the file's order (with the covering)
    monkeypatch.setattr(geoparquet, "INGEST_POINTS", True)
    src = _source(3000)
    path = _write(src, tmp_path / "poi", "csv")
    w = Workspace.init(tmp_path / "ws", owner="admin")
    ingest(w, path, dataset="poi", schema="poi")
    f = next((w.root / w.info("poi").current.path).glob("*.parquet"))
    assert pq.ParquetFile(f).metadata.num_row_groups == 1
    assert "covering" in json.loads(pq.ParquetFile(f).schema_arrow.metadata[b"geo"])["columns"]["geometry"]
    assert w.read("poi")["poi_id"].tolist() == src["poi_id"].tolist()
