"""Wide files (issue 12): a CSV thousands of columns wide is checked in column blocks
(``foundation.ingest.blocks``), with every value stored exactly, and the same records and
quarantine as one query over all columns gives."""

from __future__ import annotations

import glob
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from citytwin.foundation.ingest import blocks, ingest
from citytwin.foundation.workspace import Workspace


def _value(i: int, j: int) -> str:
    """Source text of row i, column j: decimals, whole numbers, grouped thousands, a missing token."""
    k = (i * 7919 + j * 104_729) % 10_007
    if j % 97 == 5 and i % 3 == 1:
        return "…"  # a yearbook's missing mark
    if j % 50 == 3:
        return f'"{k * 1000 + j:,}"'  # "1,234,567"
    return f"{k / 8:g}" if j % 2 else str(k - 5000)


def _expected(i: int, j: int) -> float | None:
    text = _value(i, j).strip('"')
    return None if text == "…" else float(text.replace(",", ""))


def _wide_csv(path: Path, rows: int, cols: int, bad: tuple[int, int] | None = None) -> Path:
    lines = ["city," + ",".join(f"indicator_{j}" for j in range(cols))]
    for i in range(rows):
        vals = [_value(i, j) for j in range(cols)]
        if bad is not None and bad[0] == i:
            vals[bad[1]] = "n.a.x"
        lines.append(f"city {i}," + ",".join(vals))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _stored(ws: Workspace, name: str) -> pd.DataFrame:
    from citytwin.foundation.readsql import covering

    files = sorted(glob.glob(ws.parquet_glob(name)))
    df = duckdb.connect().sql(f"SELECT * FROM read_parquet({files!r})").df()
    # the GeoParquet 1.1 bbox covering of lines and polygons is an index, not data (Workspace.read hides it)
    cover = covering(ws.parquet_glob(name), "geometry") if "geometry" in df.columns else None
    return df.drop(columns=sorted({p[0] for p in cover.values()})) if cover else df


def test_5000_columns_every_value_exact(workspace: Workspace, tmp_path: Path) -> None:
    rows, cols = 12, 5000
    path = _wide_csv(tmp_path / "wide.csv", rows, cols)
    r = ingest(workspace, path, dataset="wide", schema="table", h3=False)
    assert (r.rows_read, r.rows_kept, r.rows_quarantined) == (rows, rows, 0)
    assert workspace.catalog.get("wide").current.params["pipeline"] == "streamed"
    df = _stored(workspace, "wide")
    assert list(df.columns) == ["city", *[f"indicator_{j}" for j in range(cols)]]
    assert df["city"].tolist() == [f"city {i}" for i in range(rows)]
    want = pd.DataFrame({f"indicator_{j}": [_expected(i, j) for i in range(rows)] for j in range(cols)}, dtype="float64")
    pd.testing.assert_frame_equal(df.drop(columns="city"), want)
    assert {c["name"]: c.get("type") for c in r.columns}["indicator_3"] == "DOUBLE"


@pytest.mark.parametrize("stream", [True, False])
def test_blocks_give_what_one_query_gives(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          stream: bool) -> None:
    # 300 columns in blocks of 64 against one query of all 300 (the plan without blocks), on a file
    # with one value that is not a number (row 4, column indicator_211): the streamed pass hands over
    # to the staged pipeline, which quarantines that record with its row, field and reason either way
    path = _wide_csv(tmp_path / "wide.csv", 9, 300, bad=(3, 211))
    monkeypatch.setattr(blocks, "COLUMN_BLOCK", 64)
    a = ingest(workspace, path, dataset="blocked", schema="table", h3=False, stream=stream)
    monkeypatch.setattr(blocks, "COLUMN_BLOCK", 10_000)
    b = ingest(workspace, path, dataset="whole", schema="table", h3=False, stream=stream)
    assert (a.rows_kept, a.rows_quarantined) == (b.rows_kept, b.rows_quarantined) == (8, 1)
    pd.testing.assert_frame_equal(_stored(workspace, "blocked"), _stored(workspace, "whole"))
    qa, qb = workspace.quarantine("blocked"), workspace.quarantine("whole")
    pd.testing.assert_frame_equal(qa, qb)
    assert qa[["row", "field"]].values.tolist() == [[4, "indicator_211"]]
    assert "not a number: n.a.x" in qa["reason"].iloc[0]
    assert a.columns == b.columns


def test_column_blocks_split_the_plan() -> None:
    from citytwin.foundation.ingest.plan import Column, Plan

    plan = Plan(columns=[Column(name=f"c{i}", expr=f'"r:s{i}"') for i in range(5)],
                raw={f"s{i}": f"x{i}" for i in range(5)}, reason_column="_cell_problem")
    parts = blocks.column_blocks(plan, 2)
    assert [[c.name for c in p.columns] for p in parts] == [["c0", "c1"], ["c2", "c3"], ["c4"]]
    assert [sorted(p.raw) for p in parts] == [["s0", "s1"], ["s2", "s3"], ["s4"]]
    assert [p.reason_column for p in parts] == ["_cell_problem", None, None]
    assert blocks.rows_per_group(5000) == 1024 and blocks.rows_per_group(3) == 122_880


# ---------------------------------------------------------------- wide files with space or melted values
LON0, LAT0 = 116.30, 39.85


def _point_csv(path: Path, rows: int, cols: int, *, lon_first: bool = False, bad_row: int | None = None) -> Path:
    """POIs with ``cols`` indicator columns; lon/lat last (so the first block must fetch them) unless ``lon_first``."""
    coords = ["lon", "lat"]
    head = ["poi_id", "name", *(coords if lon_first else []), *[f"indicator_{j}" for j in range(cols)],
            *([] if lon_first else coords)]
    lines = [",".join(head)]
    for i in range(rows):
        xy = [f"{LON0 + i * 0.0137:.6f}", f"{LAT0 + i * 0.0091:.6f}"]
        if bad_row == i:
            xy = ["200.5", xy[1]]  # a longitude outside [-180, 180]: quarantined with its row
        vals = [_value(i, j) for j in range(cols)]
        lines.append(",".join([str(1000 + i), f"poi {i}", *(xy if lon_first else []), *vals, *([] if lon_first else xy)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_2000_columns_with_lon_lat_points_and_h3_exact(workspace: Workspace, tmp_path: Path) -> None:
    import h3

    rows, cols = 8, 2000
    path = _point_csv(tmp_path / "pois.csv", rows, cols)
    r = ingest(workspace, path, dataset="wide_pois", schema="poi")
    assert (r.rows_read, r.rows_kept, r.rows_quarantined) == (rows, rows, 0)
    assert workspace.catalog.get("wide_pois").current.params["pipeline"] == "streamed"
    df = _stored(workspace, "wide_pois")
    # the order one query gives: the schema's fields, the extra columns, then geometry and H3
    assert list(df.columns) == ["poi_id", "name", "lon", "lat", *[f"indicator_{j}" for j in range(cols)],
                                "geometry", "h3"]
    want = pd.DataFrame({f"indicator_{j}": [_expected(i, j) for i in range(rows)] for j in range(cols)}, dtype="float64")
    pd.testing.assert_frame_equal(df[want.columns], want)
    lon = [round(LON0 + i * 0.0137, 6) for i in range(rows)]
    lat = [round(LAT0 + i * 0.0091, 6) for i in range(rows)]
    assert df["lon"].tolist() == lon and df["lat"].tolist() == lat
    g = workspace.read("wide_pois")
    assert g.geometry.x.tolist() == lon and g.geometry.y.tolist() == lat
    res = int(workspace.settings.get("h3_resolution", 9))
    assert df["h3"].tolist() == [h3.latlng_to_cell(y, x, res) for x, y in zip(lon, lat, strict=True)]
    info = workspace.catalog.get("wide_pois").current
    assert info.extent == pytest.approx([min(lon), min(lat), max(lon), max(lat)])


def _wkt_csv(path: Path, rows: int, cols: int) -> Path:
    head = ["id", *[f"indicator_{j}" for j in range(cols)], "wkt"]
    lines = [",".join(head)]
    for i in range(rows):
        x, y = LON0 + i * 0.01, LAT0 + i * 0.01
        poly = f'"POLYGON (({x} {y}, {x + 0.004} {y}, {x + 0.004} {y + 0.003}, {x} {y + 0.003}, {x} {y}))"'
        lines.append(",".join([str(i), *[_value(i, j) for j in range(cols)], poly]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_2000_columns_with_wkt_geometry_exact(workspace: Workspace, tmp_path: Path) -> None:
    import h3
    import shapely

    rows, cols = 6, 2000
    path = _wkt_csv(tmp_path / "parcels.csv", rows, cols)
    r = ingest(workspace, path, dataset="wide_parcels", schema="table")
    assert (r.rows_kept, r.rows_quarantined) == (rows, 0)
    df = _stored(workspace, "wide_parcels")
    assert list(df.columns) == ["id", *[f"indicator_{j}" for j in range(cols)], "geometry", "h3"]
    want = pd.DataFrame({f"indicator_{j}": [_expected(i, j) for i in range(rows)] for j in range(cols)}, dtype="float64")
    pd.testing.assert_frame_equal(df[want.columns], want)
    g = workspace.read("wide_parcels")
    res = int(workspace.settings.get("h3_resolution", 9))
    for i in range(rows):
        x, y = LON0 + i * 0.01, LAT0 + i * 0.01
        expect = shapely.Polygon([(x, y), (x + 0.004, y), (x + 0.004, y + 0.003), (x, y + 0.003)])
        assert shapely.equals_exact(g.geometry.iloc[i], expect, tolerance=0)
        c = expect.centroid
        assert df["h3"].iloc[i] == h3.latlng_to_cell(c.y, c.x, res)


def _sensor_csv(path: Path, rows: int, cols: int, bad: tuple[int, int] | None = None) -> Path:
    lines = ["station,time,lon,lat," + ",".join(f"sensor_{j}" for j in range(cols))]
    for i in range(rows):
        vals = [f"{(i * 31 + j * 7) % 500 / 4:g}" for j in range(cols)]
        if bad is not None and bad[0] == i:
            vals[bad[1]] = "n.a.x"
        lines.append(f"S{i % 3},2024-01-0{1 + i // 3} 0{i % 3}:00,{LON0 + i % 3 * 0.01:.2f},{LAT0:.2f},"
                     + ",".join(vals))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _geojson(path: Path, rows: int, cols: int) -> Path:
    import json

    feats = []
    for i in range(rows):
        x, y = LON0 + i * 0.01, LAT0 + i * 0.01
        ring = [[x, y], [x + 0.004, y], [x + 0.004, y + 0.003], [x, y + 0.003], [x, y]]
        props = {"id": i, **{f"indicator_{j}": _expected(i, j) for j in range(cols)}}
        feats.append({"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": [ring]}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["points", "points_first", "wkt", "geojson", "melted"])
@pytest.mark.parametrize("stream", [True, False])
def test_space_and_melted_blocks_give_what_one_query_gives(workspace: Workspace, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, kind: str,
                                                           stream: bool) -> None:
    # blocks of 64 against one query over all 300 columns; with stream=False the staged pipeline
    # (which positional-joins or appends the blocks' tables) runs, with a record to quarantine
    schema = {"points": "poi", "points_first": "poi", "wkt": "table", "geojson": "table",
              "melted": "sensor_observation"}[kind]
    if kind == "melted":
        path = _sensor_csv(tmp_path / "s.csv", 9, 300, bad=(4, 200) if not stream else None)
    elif kind == "wkt":
        path = _wkt_csv(tmp_path / "w.csv", 7, 300)
    elif kind == "geojson":
        path = _geojson(tmp_path / "g.geojson", 7, 300)
    else:
        path = _point_csv(tmp_path / "p.csv", 9, 300, lon_first=kind == "points_first",
                          bad_row=None if stream else 5)
    monkeypatch.setattr(blocks, "COLUMN_BLOCK", 64)
    a = ingest(workspace, path, dataset="blocked", schema=schema, stream=stream)
    monkeypatch.setattr(blocks, "COLUMN_BLOCK", 10_000)
    b = ingest(workspace, path, dataset="whole", schema=schema, stream=stream)
    assert (a.rows_kept, a.rows_quarantined) == (b.rows_kept, b.rows_quarantined)
    assert a.rows_quarantined == (0 if stream or kind in ("wkt", "geojson") else 1)
    if stream:
        assert workspace.catalog.get("blocked").current.params["pipeline"] == "streamed"
    sa, sb = _stored(workspace, "blocked"), _stored(workspace, "whole")
    assert list(sa.columns) == list(sb.columns)
    if kind == "melted":  # the blocks' observations are appended: the same observations, block by block
        keys = ["entity", "time", "property"]
        sa, sb = (s.sort_values(keys).reset_index(drop=True) for s in (sa, sb))
        assert len(sa) == 9 * 300 - a.rows_quarantined
    pd.testing.assert_frame_equal(sa, sb)
    pd.testing.assert_frame_equal(workspace.quarantine("blocked"), workspace.quarantine("whole"))
    assert a.columns == b.columns
    assert workspace.catalog.get("blocked").current.extent == workspace.catalog.get("whole").current.extent


def test_column_blocks_carry_the_coordinates_in_the_first_block() -> None:
    from citytwin.foundation.ingest.plan import Column, Plan

    cols = [Column(name=f"c{i}", expr=f'"r:s{i}"') for i in range(5)]
    cols += [Column(name="lon", expr='"r:x"'), Column(name="lat", expr='"r:y"', checks=['abs("r:x")'])]
    plan = Plan(columns=cols, raw={**{f"s{i}": f"x{i}" for i in range(5)}, "x": "x", "y": "y"}, lonlat=("lon", "lat"))
    parts = blocks.column_blocks(plan, 3)
    assert [[c.name for c in p.columns] for p in parts] == [["c0", "lon", "lat"], ["c1", "c2", "c3"], ["c4"]]
    assert [p.lonlat for p in parts] == [("lon", "lat"), None, None]
    assert sorted(parts[0].raw) == ["s0", "x", "y"]
    assert blocks.output_order(plan, ["c0", "lon", "lat", "geometry", "h3"]) == \
        ["c0", "c1", "c2", "c3", "c4", "lon", "lat", "geometry", "h3"]
