"""Bad input: each case gets a clear error naming file/row/field, or is quarantined; nothing is lost."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest import ingest
from citytwin.foundation.workspace import Workspace


def _nothing_written(ws: Workspace, name: str) -> None:
    assert not ws.catalog.exists(name)
    assert not (ws.root / "data" / name).exists()
    assert not any((ws.root / "tmp").iterdir()), "staging left behind"


def _polygons(tmp_path: Path) -> Path:
    feats = [
        {"type": "Feature", "properties": {"adcode": "110100", "name": "good square"},
         "geometry": {"type": "Polygon", "coordinates": [[[116, 39], [117, 39], [117, 40], [116, 40], [116, 39]]]}},
        {"type": "Feature", "properties": {"adcode": "120100", "name": "bowtie"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
        {"type": "Feature", "properties": {"adcode": "130100", "name": "no geometry"}, "geometry": None},
    ]
    p = tmp_path / "polys.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")
    return p


def test_truncated_geojson(workspace: Workspace, tmp_path: Path) -> None:
    full = _polygons(tmp_path).read_text(encoding="utf-8")
    p = tmp_path / "cut.geojson"
    p.write_text(full[: len(full) // 2], encoding="utf-8")
    with pytest.raises(InputError, match=r"cut\.geojson.*truncated"):
        ingest(workspace, p, dataset="cut", schema="admin_boundary")
    _nothing_written(workspace, "cut")


def test_invalid_geometries_quarantined_or_repaired(workspace: Workspace, tmp_path: Path) -> None:
    p = _polygons(tmp_path)
    r = ingest(workspace, p, dataset="polys", schema="admin_boundary")
    assert (r.rows_read, r.rows_kept, r.rows_quarantined) == (3, 1, 2)
    q = workspace.quarantine("polys").set_index("row")
    assert q.loc[2, "field"] == "geometry" and "invalid" in q.loc[2, "reason"]
    assert "missing" in q.loc[3, "reason"]
    assert "bowtie" in q.loc[2, "record"]  # the raw record is kept
    r2 = ingest(workspace, p, dataset="polys", schema="admin_boundary", repair_geometry=True)
    assert r2.version == 2 and r2.rows_kept == 2 and r2.rows_quarantined == 1
    g = workspace.read("polys")
    assert g.is_valid.all()


def test_gbk_file_read_as_utf8(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "gbk.csv"
    p.write_bytes("城市,年份,地区生产总值_万元\n北京市,2020,3610260\n安康市,2020,11829800\n".encode("gbk"))
    with pytest.raises(InputError, match=r"gbk\.csv.*not valid UTF-8.*line 1.*GBK") as exc:
        ingest(workspace, p, dataset="gbk", schema="city_panel", encoding="utf-8")
    assert "--encoding" in (exc.value.hint or "")
    _nothing_written(workspace, "gbk")
    # detected without --encoding: read correctly
    r = ingest(workspace, p, dataset="gbk", schema="city_panel")
    assert r.rows_kept == 2 and any("gb18030" in n for n in r.notes)
    df = workspace.read("gbk")
    assert df["city"].tolist() == ["北京市", "安康市"]
    assert df["地区生产总值"].tolist() == [3610260e4, 11829800e4]


def test_duplicate_keys_first_kept(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "dups.csv"
    p.write_text("city,year,gdp\n北京市,2020,1\n北京市,2021,2\n北京市,2020,3\n上海市,2020,4\n", encoding="utf-8")
    r = ingest(workspace, p, dataset="dups", schema="city_panel")
    assert (r.rows_read, r.rows_kept, r.rows_quarantined) == (4, 3, 1)
    q = workspace.quarantine("dups")
    assert q["row"].tolist() == [3]
    assert "duplicate key (city, year) = 北京市, 2020 (first at row 1)" in q["reason"].iloc[0]
    assert workspace.read("dups").set_index(["city", "year"]).loc[("北京市", 2020), "gdp"] == 1


def test_wrong_units(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "obs.csv"
    p.write_text(
        "station,pollutant,time,value,unit\n"
        "A,pm25,2020-01-01 00:00,35,µg/m³\n"
        "A,pm25,2020-01-01 01:00,0.04,mg/m3\n"          # converted: 40 µg/m³
        "A,pm25,2020-01-01 02:00,12,bananas\n"          # unknown unit
        "A,pm25,2020-01-01 03:00,3,km\n"                # wrong dimension
        "A,co,2020-01-01 00:00,800,µg/m³\n",            # 0.8 mg/m³
        encoding="utf-8")
    r = ingest(workspace, p, dataset="obs", schema="sensor_observation")
    assert (r.rows_kept, r.rows_quarantined) == (3, 2)
    df = workspace.read("obs").sort_values(["property", "time"])
    assert df["value"].tolist() == pytest.approx([0.8, 35, 40])
    assert df["unit"].tolist() == ["mg/m³", "µg/m³", "µg/m³"]
    q = workspace.quarantine("obs").set_index("row")
    assert "unknown unit 'bananas'" in q.loc[3, "reason"]
    assert "cannot be converted" in q.loc[4, "reason"]
    # a unit that pint does not know, given for a whole column, is a file-level error
    with pytest.raises(InputError, match="unknown unit 'bananas'"):
        ingest(workspace, p, dataset="obs2", schema="sensor_observation", units_map={"value": "bananas"})


def test_xlsx_header_rows_above_table_and_merged_cells(workspace: Workspace, tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A1"] = "2020年城市统计表"
    ws.merge_cells("A1:D1")
    ws["A2"] = "单位：万元"
    ws.append([])
    ws.append(["城市", "年份", "指标", None])
    ws.merge_cells("C4:D4")  # a merged parent header over two sub-columns
    ws.append([None, None, "地区生产总值_万元", "年末总人口_万人"])
    ws.append(["北京市", 2020, 36102.6, 2189.3])
    ws.append([None, 2021, 40269.6, 2188.6])  # the city cell merged downwards
    ws.merge_cells("A6:A7")
    ws.append([])
    ws.append(["上海市", 2020, 38700.6, 2487.1])
    p = tmp_path / "table.xlsx"
    wb.save(p)
    r = ingest(workspace, p, dataset="xl", schema="city_panel")
    assert (r.rows_read, r.rows_kept) == (3, 3)
    assert any("skipped as titles" in n for n in r.notes) and any("blank row" in n for n in r.notes)
    df = workspace.read("xl").sort_values(["city", "year"])
    assert df["city"].tolist() == ["上海市", "北京市", "北京市"]
    gdp = [c for c in df.columns if "地区生产总值" in c]
    assert len(gdp) == 1 and df[gdp[0]].tolist() == pytest.approx([38700.6e4, 36102.6e4, 40269.6e4])


def test_empty_files(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.csv.*empty"):
        ingest(workspace, p, dataset="empty", schema="table")
    h = tmp_path / "header_only.csv"
    h.write_text("city,year\n", encoding="utf-8")
    with pytest.raises(InputError, match="no records"):
        ingest(workspace, h, dataset="empty", schema="city_panel")
    _nothing_written(workspace, "empty")


def test_missing_values_stay_missing_and_bad_values_quarantined(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "panel.csv"
    p.write_text("city,year,gdp,pop\nA,2020,,1\nB,2020,NA,2\nC,2020,abc,3\nD,20x0,4,4\nE,2020,5,—\n",
                 encoding="utf-8")
    r = ingest(workspace, p, dataset="p", schema="city_panel")
    assert (r.rows_kept, r.rows_quarantined) == (3, 2)
    df = workspace.read("p").set_index("city")
    assert pd.isna(df.loc["A", "gdp"]) and pd.isna(df.loc["B", "gdp"]) and pd.isna(df.loc["E", "pop"])
    q = workspace.quarantine("p").set_index("row")
    assert q.loc[3, "field"] == "gdp" and "not a number: abc" in q.loc[3, "reason"]
    assert q.loc[4, "field"] == "year" and "20x0" in q.loc[4, "reason"]


def test_malformed_csv_rows_quarantined_with_line(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "ragged.csv"
    p.write_text("city,year,gdp\nA,2020,1\nB,2020,2,EXTRA\nC,2020,3\nD,2020,x\n", encoding="utf-8")
    r = ingest(workspace, p, dataset="rag", schema="city_panel")
    assert (r.rows_read, r.rows_kept, r.rows_quarantined) == (4, 2, 2)
    q = workspace.quarantine("rag").set_index("row")
    assert set(q.index) == {2, 4}  # data rows, counted as in the file even after a rejected row
    assert "EXTRA" in q.loc[2, "record"]


def test_missing_required_column_and_unknown_schema(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("label,value\na,1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"required field 'city'.*not found") as exc:
        ingest(workspace, p, dataset="x", schema="city_panel")
    assert "城市" in (exc.value.hint or "")
    from citytwin.foundation.errors import NotFoundError

    with pytest.raises(NotFoundError, match="unknown schema"):
        ingest(workspace, p, dataset="x", schema="nope")
    with pytest.raises(InputError, match="invalid dataset name"):
        ingest(workspace, p, dataset="Bad Name", schema="table")
    _nothing_written(workspace, "x")


def test_future_timestamps_and_gcj02(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_text("id,created,lon,lat\n1,2020-01-01 10:00,116.397,39.909\n2,2999-01-01 00:00,116.4,39.9\n",
                 encoding="utf-8")
    r = ingest(workspace, p, dataset="c", schema="complaint", crs="gcj02")
    assert (r.rows_kept, r.rows_quarantined) == (1, 1)
    assert "in the future" in workspace.quarantine("c")["reason"].iloc[0]
    g = workspace.read("c")
    # GCJ-02 -> WGS84 moves Beijing by a few hundred metres (about -0.006° in lon, -0.0014° in lat)
    assert g["lon"].iloc[0] == pytest.approx(116.397 - 0.00624, abs=5e-4)
    assert g["lat"].iloc[0] == pytest.approx(39.909 - 0.00140, abs=5e-4)
    assert g["h3"].iloc[0].startswith("89")
