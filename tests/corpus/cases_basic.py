"""Corpus cases: ordinary files and the classic faults (empty, truncated, duplicates, ranges)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from registry import case


def _write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> list[Path]:
    p = folder / name
    p.write_bytes(text.encode(encoding))
    return [p]


PANEL = "城市,年份,地区生产总值_亿元\n北京市,2020,36102.6\n上海市,2020,38700.6\n广州市,2020,25019.1\n"
POIS = "poi_id,name,category,lon,lat\n1,a,school,116.40,39.90\n2,b,park,116.41,39.91\n3,c,hospital,116.42,39.92\n"


@case("csv_clean_panel", "csv", "a clean city panel (UTF-8)", expect="kept", rows=3,
      ingest={"schema": "city_panel"})
def _clean_panel(folder: Path) -> list[Path]:
    return _write(folder, "panel.csv", PANEL)


@case("csv_gbk_panel", "csv", "the same panel saved as GBK (Excel on Chinese Windows)", expect="kept", rows=3,
      ingest={"schema": "city_panel"})
def _gbk_panel(folder: Path) -> list[Path]:
    return _write(folder, "panel_gbk.csv", PANEL, "gbk")


@case("csv_utf8_bom_panel", "csv", "the panel with a UTF-8 byte-order mark", expect="kept", rows=3,
      ingest={"schema": "city_panel"})
def _bom_panel(folder: Path) -> list[Path]:
    return _write(folder, "panel_bom.csv", "\ufeff" + PANEL)


@case("csv_clean_pois", "csv", "clean POIs with lon/lat", expect="kept", rows=3, ingest={"schema": "poi"})
def _clean_pois(folder: Path) -> list[Path]:
    return _write(folder, "pois.csv", POIS)


@case("csv_lat_out_of_range", "csv", "a POI at latitude 95", expect="quarantined", rows=2, quarantined=1,
      reason="outside", ingest={"schema": "poi"})
def _lat_range(folder: Path) -> list[Path]:
    return _write(folder, "pois.csv", POIS.replace("39.92", "95.0"))


@case("csv_duplicate_key", "csv", "two POIs with one id", expect="quarantined", rows=2, quarantined=1,
      reason="duplicate", ingest={"schema": "poi"})
def _dup_key(folder: Path) -> list[Path]:
    return _write(folder, "pois.csv", POIS.replace("\n3,c", "\n2,c"))


@case("csv_missing_key", "csv", "a POI without its id", expect="quarantined", rows=2, quarantined=1,
      reason="missing", ingest={"schema": "poi"})
def _missing_key(folder: Path) -> list[Path]:
    return _write(folder, "pois.csv", POIS.replace("\n3,c", "\n,c"))


@case("csv_lon_not_a_number", "csv", "a longitude that is text", expect="quarantined", rows=2, quarantined=1,
      reason="number", ingest={"schema": "poi"})
def _lon_text(folder: Path) -> list[Path]:
    return _write(folder, "pois.csv", POIS.replace("116.42", "east"))


@case("csv_empty_file", "csv", "an empty file (0 bytes)", expect="error", reason="empty",
      ingest={"schema": "city_panel"})
def _empty(folder: Path) -> list[Path]:
    return _write(folder, "empty.csv", "")


@case("csv_missing_required_column", "csv", "a panel without its year column", expect="error", reason="year",
      ingest={"schema": "city_panel"})
def _no_year(folder: Path) -> list[Path]:
    return _write(folder, "noyear.csv", "城市,地区生产总值_亿元\n北京市,36102.6\n")


@case("xlsx_clean_panel", "xlsx", "the panel as an Excel workbook", expect="kept", rows=3,
      ingest={"schema": "city_panel"})
def _xlsx_panel(folder: Path) -> list[Path]:
    p = folder / "panel.xlsx"
    df = pd.DataFrame({"城市": ["北京市", "上海市", "广州市"], "年份": [2020] * 3,
                       "地区生产总值_亿元": [36102.6, 38700.6, 25019.1]})
    df.to_excel(p, index=False)
    return [p]


@case("parquet_clean_pois", "parquet", "clean POIs as Parquet", expect="kept", rows=3, ingest={"schema": "poi"})
def _parquet_pois(folder: Path) -> list[Path]:
    p = folder / "pois.parquet"
    pd.DataFrame({"poi_id": [1, 2, 3], "name": list("abc"), "category": ["school", "park", "hospital"],
                  "lon": [116.40, 116.41, 116.42], "lat": [39.90, 39.91, 39.92]}).to_parquet(p)
    return [p]


def _fc(features: list[dict]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": features})


SQUARE = {"type": "Polygon", "coordinates": [[[116, 39], [117, 39], [117, 40], [116, 40], [116, 39]]]}


@case("geojson_clean_polygons", "geojson", "one valid boundary polygon", expect="kept", rows=1,
      ingest={"schema": "admin_boundary"})
def _geojson_ok(folder: Path) -> list[Path]:
    p = folder / "b.geojson"
    p.write_text(_fc([{"type": "Feature", "properties": {"adcode": "110100", "name": "北京市"},
                       "geometry": SQUARE}]), encoding="utf-8")
    return [p]


@case("geojson_truncated", "geojson", "a GeoJSON file cut in half", expect="error", reason="truncated",
      ingest={"schema": "admin_boundary"})
def _geojson_cut(folder: Path) -> list[Path]:
    p = folder / "cut.geojson"
    full = _fc([{"type": "Feature", "properties": {"adcode": "110100", "name": "北京市"}, "geometry": SQUARE}] * 3)
    p.write_text(full[: len(full) // 2], encoding="utf-8")
    return [p]


@case("geojson_bowtie", "geojson", "a self-intersecting polygon beside a valid one", expect="quarantined",
      rows=1, quarantined=1, reason="invalid", ingest={"schema": "admin_boundary"})
def _bowtie(folder: Path) -> list[Path]:
    p = folder / "bow.geojson"
    p.write_text(_fc([
        {"type": "Feature", "properties": {"adcode": "110100", "name": "ok"}, "geometry": SQUARE},
        {"type": "Feature", "properties": {"adcode": "120100", "name": "bowtie"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
    ]), encoding="utf-8")
    return [p]


# traffic_shenzhen_tppgcn/sz_speed.csv (tried as a new user, `-s table`): a sensor matrix without a
# header line. Before: its first record became the header (columns "2", "2_1", "1", "0" …), one record
# lost and the columns named after its values, exit 0 and no note
@case("csv_no_header_numbers", "csv", "a numeric matrix without a header line (first line is data): clear error "
      "naming --no-header", expect="error", reason="first line looks like data, not a header")
def _no_header(folder: Path) -> list[Path]:
    return _write(folder, "speed.csv", "2,2,1,0,15\n0,1,0,0,4\n2,0,2,0,4\n")


def _no_header_kept(ws: object, r: object) -> None:
    df = ws.read(r.dataset)  # type: ignore[attr-defined]
    assert list(df.columns) == ["column0", "column1", "column2", "column3", "column4"]
    assert df.iloc[0].tolist() == [2, 2, 1, 0, 15]  # the first line is a record, not lost


@case("csv_no_header_numbers_flag", "csv", "the same matrix with --no-header: three records, the first kept",
      expect="kept", rows=3, ingest={"header": False}, check=_no_header_kept)
def _no_header_flag(folder: Path) -> list[Path]:
    return _no_header(folder)


@case("csv_year_headers", "csv", "a header of years only (2018,2019,2020): a header, not data (no name repeats)",
      expect="kept", rows=2)
def _year_headers(folder: Path) -> list[Path]:
    return _write(folder, "years.csv", "2018,2019,2020\n1.5,2.5,3.5\n4,5,6\n")
