"""The streamed ingest pass writes exactly what the staged pipeline writes, or hands over to it.

``ingest(..., stream=True)`` (the default) COPYs a clean file from source to Parquet in one
parallel scan; the first record that needs quarantine (or a duplicate key found afterwards)
sends the ingest to the staged pipeline, which numbers every record and reports each bad one.
These tests run both pipelines on the same files and compare what they store, record for record.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from citytwin.foundation.ingest import ingest
from citytwin.foundation.workspace import Workspace


def _stored(ws: Workspace, name: str) -> pd.DataFrame:
    files = sorted(glob.glob(ws.parquet_glob(name)))
    con = duckdb.connect()
    return con.sql(f"SELECT * FROM read_parquet({files!r})").df()


def _pipeline(ws: Workspace, name: str) -> str:
    return ws.catalog.get(name).current.params["pipeline"]


def _compare(ws: Workspace, paths: list[Path] | Path, **kw: object) -> tuple[object, object]:
    fast = ingest(ws, paths, dataset="fast", stream=True, **kw)  # type: ignore[arg-type]
    slow = ingest(ws, paths, dataset="slow", stream=False, **kw)  # type: ignore[arg-type]
    assert _pipeline(ws, "slow") == "staged"
    assert (fast.rows_read, fast.rows_kept, fast.rows_quarantined) == \
        (slow.rows_read, slow.rows_kept, slow.rows_quarantined)
    a, b = _stored(ws, "fast"), _stored(ws, "slow")
    pd.testing.assert_frame_equal(a, b)
    va, vb = ws.catalog.get("fast").current, ws.catalog.get("slow").current
    assert va.columns == vb.columns
    assert (va.time_min, va.time_max) == (vb.time_min, vb.time_max)
    if vb.extent is None:
        assert va.extent is None
    else:
        assert va.extent == pytest.approx(vb.extent, abs=1e-9)
    return fast, slow


def _spy_copy_arrow(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, object], object]]:
    """Record the keyword arguments and the answer of every call of the ingest's Arrow path."""
    from citytwin.foundation.ingest import streamed as ingest_mod

    calls: list[tuple[dict[str, object], object]] = []
    real = ingest_mod.copy_arrow

    def spy(*a: object, **k: object) -> object:
        calls.append((k, None))  # recorded before the call: a call may raise
        calls[-1] = (k, real(*a, **k))  # type: ignore[arg-type]
        return calls[-1][1]

    monkeypatch.setattr(ingest_mod, "copy_arrow", spy)
    return calls


def _poi_csv(tmp_path: Path, n: int = 3000, bad: dict[int, str] | None = None,
             dup: int | None = None) -> Path:
    """POIs with the text quirks the cleaning handles: padding, tokens, thousands separators."""
    lines = ["poi_id,name,category,lon,lat,floor_area"]
    for i in range(n):
        name = {0: "  Padded name  ", 1: "NA", 2: "\u3000全角空格\u3000", 3: "无"}.get(i % 50, f"POI {i}")
        area = f'"{1000 + i:,}"' if i % 7 == 0 else str(10 + i)
        pid = f"P{i:06d}" if i != dup else "P000000"
        lon = bad.get(i, f"{116.0 + (i % 997) / 1000:.6f}") if bad else f"{116.0 + (i % 997) / 1000:.6f}"
        lines.append(f"{pid},{name},shop,{lon},{39.5 + (i % 991) / 1000:.6f},{area}")
    p = tmp_path / "poi.csv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_clean_csv_streamed_equals_staged(workspace: Workspace, tmp_path: Path) -> None:
    fast, _ = _compare(workspace, _poi_csv(tmp_path), schema="poi")
    assert _pipeline(workspace, "fast") == "streamed"
    assert fast.rows_quarantined == 0
    df = _stored(workspace, "fast")
    # the cleaning happened in the streamed pass too: trimmed, tokens missing, separators read
    assert df.loc[0, "name"] == "Padded name"
    assert pd.isna(df.loc[1, "name"]) and pd.isna(df.loc[3, "name"])
    assert df.loc[2, "name"] == "全角空格"
    assert df.loc[0, "floor_area"] == 1000.0 and df.loc[7, "floor_area"] == 1007.0
    # H3 cells (spacelink.h3_cells_arrow: h3numba) are h3-py's, row for row
    import h3

    assert df["h3"].tolist() == [h3.latlng_to_cell(la, lo, 9) for lo, la in zip(df["lon"], df["lat"], strict=True)]


def test_bad_value_hands_over_to_staged(workspace: Workspace, tmp_path: Path) -> None:
    path = _poi_csv(tmp_path, bad={1234: "east", 2500: "190.5"})
    fast, _ = _compare(workspace, path, schema="poi")
    assert _pipeline(workspace, "fast") == "staged"
    assert fast.rows_quarantined == 2 and fast.rows_kept == 2998
    assert any("streamed pass stopped (a record needs quarantine)" in n for n in fast.notes)
    q = pd.read_parquet(workspace.root / workspace.catalog.get("fast").current.quarantine_path)
    assert sorted(q["row"]) == [1235, 2501]  # 1-based data rows, named although the first pass never numbered them
    assert q["reason"].str.contains("lon: not a number: east").any()


def test_duplicate_key_hands_over_to_staged(workspace: Workspace, tmp_path: Path) -> None:
    fast, _ = _compare(workspace, _poi_csv(tmp_path, dup=2999), schema="poi")
    assert _pipeline(workspace, "fast") == "staged"
    assert fast.rows_quarantined == 1
    assert any("duplicate keys (poi_id)" in n for n in fast.notes)


def test_wide_sensor_files_in_one_scan(workspace: Workspace, shared_data: Path) -> None:
    files = sorted((shared_data / "air_beijing_multisite").glob("*.csv"))[:2]
    fast, _ = _compare(workspace, files, schema="sensor_observation", units_map={"CO": "µg/m³"})
    assert _pipeline(workspace, "fast") == "streamed"
    # two files with one header: read in one scan into one part
    assert len(glob.glob(workspace.parquet_glob("fast"))) == 1
    raw = sum(len(pd.read_csv(f)) for f in files)
    assert fast.rows_read == raw * 12


def test_wide_file_with_unitless_property_same_either_way(workspace: Workspace, tmp_path: Path) -> None:
    """The streamed melt types property and unit as ENUMs (cheaper to write); a property without a
    unit leaves NULL units, and the stored strings are the staged pipeline's."""
    rows = [f"S{i % 3},2024-01-{1 + i // 24:02d} {i % 24:02d}:00,116.{i:03d},39.9,{i % 50},NW,{i}" for i in range(300)]
    path = tmp_path / "wide.csv"
    path.write_text("\n".join(["station,time,lon,lat,PM2.5,wd,humidity_x", *rows]) + "\n", encoding="utf-8")
    fast, _ = _compare(workspace, path, schema="sensor_observation")
    assert _pipeline(workspace, "fast") == "streamed" and fast.rows_kept == 900
    df = _stored(workspace, "fast")
    assert df["property"].tolist()[:3] == ["pm25", "windDirection", "humidity_x"]
    assert df["unit"].tolist()[:2] == ["µg/m³", "°"] and df["unit"].iloc[2::3].isna().all()


@pytest.mark.parametrize(("rel", "schema", "opts", "pipeline"), [
    ("city_crosswalk_fiersity/china_city_entity_master_V4.0.csv", "table", {}, "streamed"),
    ("traffic_shenzhen_tppgcn/sz_adj.csv", "table", {"header": False}, "streamed"),
    ("complaints_311/baltimore_311_sample.csv", "complaint", {}, "streamed"),
    # administrative codes are linked on the staged table
    ("city_coords_cpca/adcodes.csv", "admin_unit", {}, "staged"),
], ids=["crosswalk", "sz_adj", "baltimore_311", "cpca_adcodes"])
def test_real_files_same_either_way(workspace: Workspace, shared_data: Path, rel: str, schema: str,
                                    opts: dict[str, object], pipeline: str) -> None:
    _compare(workspace, shared_data / rel, schema=schema, **opts)
    assert _pipeline(workspace, "fast") == pipeline


def test_parquet_source_streamed(workspace: Workspace, tmp_path: Path) -> None:
    csv = _poi_csv(tmp_path)
    pq = tmp_path / "poi.parquet"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{csv}', all_varchar=true)) TO '{pq}' (FORMAT parquet)")
    _compare(workspace, pq, schema="poi")
    assert _pipeline(workspace, "fast") == "streamed"


def _without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make numba and citytwin's numba modules impossible to import (as where numba is not installed)."""
    import sys

    import citytwin.foundation

    for name in ("numba", "citytwin.foundation.h3numba", "citytwin.foundation.cleannumba"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError; find_spec gives None
    for name in ("h3numba", "cleannumba"):
        monkeypatch.delattr(citytwin.foundation, name, raising=False)


@pytest.mark.parametrize("cells", ["h3numba", "h3-py"])
def test_points_in_chunks_keep_row_order(workspace: Workspace, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, cells: str) -> None:
    # point records get their geometry (numpy WKB) and H3 cells outside DuckDB's COPY, chunk by chunk,
    # into one GeoParquet file: small chunks here so that the 3,000 rows span several row groups.
    # The cells come from spacelink.h3_cells_arrow: h3numba, or h3-py where numba cannot be imported.
    import pyarrow.parquet as pq

    from citytwin.foundation import spacelink
    from citytwin.foundation.ingest import streamed as ingest_mod

    if cells == "h3-py":
        _without_numba(monkeypatch)
    assert spacelink.h3_engine() == cells
    calls = _spy_copy_arrow(monkeypatch)
    monkeypatch.setattr(ingest_mod, "POINT_CHUNK", 1000)
    monkeypatch.setattr(ingest_mod, "PIPE_BATCH", 256)
    _compare(workspace, _poi_csv(tmp_path), schema="poi")
    assert _pipeline(workspace, "fast") == "streamed"
    assert [(k["h3_res"], answer) for k, answer in calls] == [(9, 3000)]  # cells added to the Arrow chunks
    files = sorted(glob.glob(workspace.parquet_glob("fast")))
    assert len(files) == 1 and pq.ParquetFile(files[0]).num_row_groups >= 3
    df = _stored(workspace, "fast")
    assert df["poi_id"].tolist() == [f"P{i:06d}" for i in range(3000)]
    # GeoParquet metadata as DuckDB's spatial writer gives it, with the bbox of every chunk
    geo = json.loads(pq.ParquetFile(files[0]).metadata.metadata[b"geo"])
    assert geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["geometry_types"] == ["Point"]
    assert geo["columns"]["geometry"]["bbox"] == [df["lon"].min(), df["lat"].min(), df["lon"].max(), df["lat"].max()]
    import h3

    assert df["h3"].tolist() == [h3.latlng_to_cell(la, lo, 9) for lo, la in zip(df["lon"], df["lat"], strict=True)]


def test_bad_point_record_in_a_later_chunk_hands_over(workspace: Workspace, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # the quarantine guard fires while earlier chunks are already written: nothing of them is kept
    from citytwin.foundation.ingest import streamed as ingest_mod

    monkeypatch.setattr(ingest_mod, "POINT_CHUNK", 500)
    monkeypatch.setattr(ingest_mod, "PIPE_BATCH", 128)
    res = ingest(workspace, _poi_csv(tmp_path, bad={2700: "east"}), dataset="p", schema="poi")
    assert _pipeline(workspace, "p") == "staged"
    assert (res.rows_kept, res.rows_quarantined) == (2999, 1)
    q = workspace.quarantine("p")
    assert q["row"].tolist() == [2701] and "lon" in q["reason"].iloc[0]
    assert len(_stored(workspace, "p")) == 2999


def test_error_in_a_later_chunk_stops_the_pipeline(workspace: Workspace, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # an error in the thread that adds geometry reaches the caller; nothing is committed, the
    # pipeline's threads end (a second ingest then works)
    import threading

    from citytwin.foundation import spacelink
    from citytwin.foundation.ingest import streamed as ingest_mod

    monkeypatch.setattr(ingest_mod, "POINT_CHUNK", 500)
    monkeypatch.setattr(ingest_mod, "PIPE_BATCH", 128)
    real, seen = spacelink.points_wkb, []

    def flaky(x: object, y: object) -> object:
        seen.append(1)
        if len(seen) == 4:
            raise RuntimeError("disk on fire")
        return real(x, y)  # type: ignore[arg-type]

    monkeypatch.setattr(spacelink, "points_wkb", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        ingest(workspace, _poi_csv(tmp_path), dataset="p", schema="poi")
    assert "p" not in [d.name for d in workspace.datasets()]
    assert not [t for t in threading.enumerate() if t.name.startswith(("citytwin-points", "citytwin-writer"))]
    monkeypatch.setattr(spacelink, "points_wkb", real)
    assert ingest(workspace, _poi_csv(tmp_path), dataset="p", schema="poi").rows_kept == 3000


def test_text_cleaned_after_the_query_equals_staged(workspace: Workspace, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # with numba in use, plain text columns leave the query uncleaned and the values that need it
    # (padding, tokens, ideographic spaces) are cleaned per chunk: the same records as the staged
    # pipeline's SQL cleaning, in chunks that have such values and chunks that have none
    from citytwin.foundation.ingest import streamed as ingest_mod

    monkeypatch.setattr(ingest_mod, "POINT_CHUNK", 20)
    monkeypatch.setattr(ingest_mod, "PIPE_BATCH", 8)
    calls = _spy_copy_arrow(monkeypatch)
    path = _poi_csv(tmp_path, n=400)
    text = path.read_text(encoding="utf-8").replace(",shop,", ",\u00a0shop ,", 3).replace(",shop,", ",NULL,", 2)
    path.write_text(text.replace(",shop,", ",Shop\t,", 1), encoding="utf-8")
    _compare(workspace, path, schema="poi")
    assert _pipeline(workspace, "fast") == "streamed"
    # poi_id is the key: a missing one is quarantined ("missing key", issue 12), so it is checked (True)
    assert calls[0][0]["lazy_text"] == {"poi_id": True, "name": False, "category": False}
    df = _stored(workspace, "fast")
    assert df.loc[0, "name"] == "Padded name" and pd.isna(df.loc[1, "name"]) and df.loc[2, "name"] == "全角空格"
    assert [None if pd.isna(v) else v for v in df["category"][:6]] == ["shop", "shop", "shop", None, None, "Shop"]


def _required_name_schema(ws: Workspace) -> None:
    ws.schemas_dir.mkdir(exist_ok=True)
    (ws.schemas_dir / "place.yaml").write_text(
        "name: place\ngeometry: point\nkey: [poi_id]\nfields:\n"
        "  - {name: poi_id, type: string}\n"
        "  - {name: name, type: string, required: true}\n"
        "  - {name: category, type: string, choices: [shop, bank]}\n"
        "  - {name: lon, type: float, min: -180, max: 180}\n"
        "  - {name: lat, type: float, min: -90, max: 90}\n"
        "  - {name: geometry, type: geometry}\n", encoding="utf-8")


def test_required_text_missing_after_cleaning_hands_over(workspace: Workspace, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # "NA" is not NULL to the query, but is missing once cleaned: a required value, so the record
    # is quarantined (by the staged pipeline); a column with choices keeps its cleaning in SQL
    from citytwin.foundation.ingest import streamed as ingest_mod

    monkeypatch.setattr(ingest_mod, "POINT_CHUNK", 500)
    calls = _spy_copy_arrow(monkeypatch)
    _required_name_schema(workspace)
    res = ingest(workspace, _poi_csv(tmp_path), dataset="p", schema="place")
    assert calls[0][0]["lazy_text"] == {"poi_id": True, "name": True}  # the key is checked too (issue 12)
    assert _pipeline(workspace, "p") == "staged"
    q = workspace.quarantine("p")
    assert (res.rows_kept, res.rows_quarantined) == (2880, 120)  # rows 1 and 3 of every 50: "NA", "无"
    assert set(q["reason"]) == {"name: required value missing"}
    # without such values the same schema streams, the choices checked in SQL
    calls.clear()
    clean = tmp_path / "clean.csv"
    lines = _poi_csv(tmp_path).read_text(encoding="utf-8").splitlines()
    clean.write_text("\n".join(ln for i, ln in enumerate(lines) if i == 0 or (i - 1) % 50 not in (1, 3)) + "\n",
                     encoding="utf-8")
    fast, _ = _compare(workspace, clean, schema="place")
    assert _pipeline(workspace, "fast") == "streamed" and fast.rows_kept == 2880
    assert _stored(workspace, "fast").loc[0, "name"] == "Padded name"


def test_points_without_h3_streamed_equals_staged(workspace: Workspace, tmp_path: Path) -> None:
    # points without H3 cells take the Arrow path too (numpy WKB geometry, pyarrow writer)
    _compare(workspace, _poi_csv(tmp_path), schema="poi", h3=False)
    assert _pipeline(workspace, "fast") == "streamed"
    assert "h3" not in _stored(workspace, "fast").columns


def test_point_records_of_other_types_fall_back_to_duckdb_writer(workspace: Workspace, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # a column type pyarrow would not write back as DuckDB reads it (an INTERVAL, a list) keeps the
    # records in DuckDB's COPY, with the geometry and H3 cells in SQL: the same records either way
    calls = _spy_copy_arrow(monkeypatch)
    src = tmp_path / "poi.parquet"
    duckdb.sql(f"""COPY (SELECT 'P' || i AS poi_id, 'n' || i AS name, 'shop' AS category, 116 + i / 1000 AS lon,
                   39.5 + i / 2000 AS lat, INTERVAL (i) MINUTE AS open_for, [i, i + 1] AS floors
                   FROM range(500) t(i)) TO '{src}' (FORMAT parquet)""")
    _compare(workspace, src, schema="poi")
    assert _pipeline(workspace, "fast") == "streamed"
    assert [answer for _, answer in calls] == [None]  # the Arrow path declined, DuckDB wrote
    df = _stored(workspace, "fast")
    assert {"open_for", "floors", "geometry", "h3"} <= set(df.columns)


@pytest.mark.parametrize("order", ["ascending", "shuffled"])
def test_duplicate_key_found_whether_ids_arrive_in_order_or_not(workspace: Workspace, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    # ids that arrive strictly ascending need no hash aggregate (all distinct); a duplicate breaks the
    # order and the aggregate runs. Small chunks, so the order is followed across chunk boundaries.
    from citytwin.foundation.ingest import streamed as ingest_mod

    monkeypatch.setattr(ingest_mod, "POINT_CHUNK", 700)
    monkeypatch.setattr(ingest_mod, "PIPE_BATCH", 128)
    calls = _spy_copy_arrow(monkeypatch)

    def seen() -> list[bool]:
        return [k["key_order"].ascending for k, _ in calls]  # type: ignore[attr-defined]
    p = _poi_csv(tmp_path)
    if order == "shuffled":
        lines = p.read_text(encoding="utf-8").splitlines()
        lines[1:] = lines[1:][::-1]
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ingest(workspace, p, dataset="clean", schema="poi")
    assert _pipeline(workspace, "clean") == "streamed"
    assert seen() == [order == "ascending"]
    # a duplicate id in the last chunk, where an ascending run would reach it only at the end
    calls.clear()
    res = ingest(workspace, _poi_csv(tmp_path, dup=2999), dataset="dup", schema="poi")
    assert seen() == [False] and _pipeline(workspace, "dup") == "staged"
    assert res.rows_quarantined == 1
    q = workspace.quarantine("dup")
    assert q["row"].tolist() == [3000] and "duplicate" in q["reason"].iloc[0]


def test_points_without_usable_numba_get_cells_from_h3py(workspace: Workspace, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # numba that cannot be imported here (e.g. not installed, no writable cache folder) costs speed, not
    # the ingest: the Arrow path still writes the points, with cells from h3-py and text cleaned in SQL
    from citytwin.foundation import spacelink

    _without_numba(monkeypatch)
    assert spacelink.h3_engine() == "h3-py"
    calls = _spy_copy_arrow(monkeypatch)
    _compare(workspace, _poi_csv(tmp_path), schema="poi")
    assert _pipeline(workspace, "fast") == "streamed"
    assert [(k["lazy_text"], answer) for k, answer in calls] == [({}, 3000)]
    import h3

    df = _stored(workspace, "fast")
    assert df["h3"].tolist() == [h3.latlng_to_cell(la, lo, 9) for lo, la in zip(df["lon"], df["lat"], strict=True)]


def test_copy_arrow_declines_when_cleannumba_cannot_be_imported(workspace: Workspace, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # numba found but citytwin's cleaning kernel unusable: the Arrow path declines before writing and
    # DuckDB's COPY writes the records (text cleaned in SQL, cells by the h3_cell UDF)
    import sys

    import citytwin.foundation

    monkeypatch.setitem(sys.modules, "citytwin.foundation.cleannumba", None)
    monkeypatch.delattr(citytwin.foundation, "cleannumba", raising=False)
    calls = _spy_copy_arrow(monkeypatch)
    _compare(workspace, _poi_csv(tmp_path), schema="poi")
    assert _pipeline(workspace, "fast") == "streamed"
    assert [answer for _, answer in calls] == [None]
    import h3

    df = _stored(workspace, "fast")
    assert df["h3"].tolist() == [h3.latlng_to_cell(la, lo, 9) for lo, la in zip(df["lon"], df["lat"], strict=True)]


def test_range_guard_keeps_every_reason(workspace: Workspace, tmp_path: Path) -> None:
    # a float field with a range (poi lon/lat) has its checks behind one guard (in range: no check
    # runs); outside it every reason is still given. Int fields keep all their checks: their value is
    # rounded, and the whole-number check looks at the number before that (2025.5 rounds into range).
    poi = tmp_path / "poi.csv"
    poi.write_text("poi_id,lon,lat\nA,116.4,39.9\nB,190.5,30.3\nC,east,30.6\nD,118.8,-91\nE,nan,34.3\n"
                   "F,-180,90\nG,inf,1\n", encoding="utf-8")
    res = ingest(workspace, poi, dataset="p", schema="poi")
    q = workspace.quarantine("p")
    assert dict(zip(q["row"], q["reason"], strict=True)) == {
        2: "lon: 190.5 outside [-180, 180]", 3: "lon: not a number: east", 4: "lat: -91.0 outside [-90, 90]",
        7: "lon: inf outside [-180, 180]"}
    assert (res.rows_kept, res.rows_quarantined) == (3, 4)
    assert _stored(workspace, "p")["lon"].isna().tolist() == [False, True, False]  # "nan": a missing-value token

    panel = tmp_path / "panel.csv"
    rows = ["city,year", "Beijing,2020", "Shanghai,2025.5", "Tianjin,1800", "Chongqing,abc", "Shenzhen,",
            "Guangzhou,20.5", "Hangzhou,2021"]
    panel.write_text("\n".join(rows) + "\n", encoding="utf-8")
    res = ingest(workspace, panel, dataset="y", schema="city_panel")
    q = workspace.quarantine("y")
    assert dict(zip(q["row"], q["reason"], strict=True)) == {
        2: "year: not a whole number: 2025.5",
        3: "year: 1800 outside [1900, 2100]",
        4: "year: not a number: abc",
        5: "year: required value missing",
        6: "year: not a whole number: 20.5; year: 21 outside [1900, 2100]",
    }
    assert (res.rows_kept, res.rows_quarantined) == (2, 5)


@pytest.mark.parametrize("h3", [True, False])
def test_personal_data_screened_in_the_streamed_pass(workspace: Workspace, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, h3: bool) -> None:
    # the Arrow path screens every text value for personal data as it writes (cleannumba), in small
    # chunks here so that the one phone number (row 2,500) sits in a later chunk; the commit then runs
    # its regular expressions on the flagged columns only, and marks the same columns as the staged
    # pipeline (whose commit screens every text column)
    from citytwin.foundation import workspace as ws_mod
    from citytwin.foundation.ingest import streamed as ingest_mod

    lines = ["poi_id,name,category,lon,lat,contact,note"]
    for i in range(3000):
        contact = "客服 13812345678" if i == 2500 else f"窗口 {i % 9}"
        lines.append(f"P{i:06d},POI {i},shop,{116.0 + (i % 997) / 1000:.6f},{39.5 + (i % 991) / 1000:.6f},"
                     f"{contact},room {i}")
    path = tmp_path / "poi.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(ingest_mod, "POINT_CHUNK", 1000)
    monkeypatch.setattr(ingest_mod, "PIPE_BATCH", 256)
    asked: list[object] = []
    real = ws_mod.detect_personal_columns

    def spy(glob_: str, skip: set[str] | None = None, candidates: object = None) -> dict[str, str]:
        asked.append(candidates)
        return real(glob_, skip, candidates)  # type: ignore[arg-type]

    monkeypatch.setattr(ws_mod, "detect_personal_columns", spy)
    _compare(workspace, path, schema="poi", h3=h3)
    assert _pipeline(workspace, "fast") == "streamed"
    assert asked == [["contact"], None]  # streamed: the flagged column only; staged: all screened in the commit
    cols = {c["name"]: c for c in workspace.catalog.get("fast").current.columns}
    assert cols["contact"]["pii"] == "text" and cols["contact"]["pii_detected"] is True
    assert not any(cols[c].get("pii") for c in ("poi_id", "name", "note"))


@pytest.mark.shared_data
@pytest.mark.parametrize("fmt", ["gpkg", "parquet", "geojson"])
def test_gis_layers_streamed_equal_staged(workspace: Workspace, shared_data: Path, tmp_path: Path, fmt: str) -> None:
    # GIS layers (and GeoParquet) take the streamed pass too: its query carries the source's geometry
    # column alone (the staged one carries the whole raw record for the quarantine). The 370 city
    # polygons of cnmaps (Polygon and MultiPolygon) as GeoPackage, GeoParquet and GeoJSON, without their
    # admin codes (admin codes are linked on the staged table), with H3 cells of their centroids
    import geopandas as gpd

    g = gpd.read_file(shared_data / "city_boundaries_cnmaps" / "china_cities_amap_simplified_0.01deg.geojson")
    g = g.drop(columns=["adcode"])
    path = tmp_path / f"cities.{fmt}"
    if fmt == "parquet":
        g.to_parquet(path)
    else:
        g.to_file(path, driver={"gpkg": "GPKG", "geojson": "GeoJSON"}[fmt])
    fast, _ = _compare(workspace, path, schema="table")
    assert _pipeline(workspace, "fast") == "streamed"
    assert fast.rows_kept == 370  # type: ignore[attr-defined]
    df = workspace.read("fast")
    src = gpd.read_parquet(path) if fmt == "parquet" else gpd.read_file(path)  # GPKG makes all MultiPolygon
    assert df["name"].tolist() == g["name"].tolist() == src["name"].tolist()
    assert df.geometry.geom_type.tolist() == src.geometry.geom_type.tolist()
    assert (df.geometry.normalize().to_wkb() == src.geometry.normalize().to_wkb()).all()
