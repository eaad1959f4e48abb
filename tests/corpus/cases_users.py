"""Corpus cases found by ingesting real files as a new user (issue 12, session 6): administrative
codes that name no unit, JSON objects of coordinates, wide files with a bad value (column blocks),
GIS layers in the streamed pass, workbooks whose formulas were never computed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import openpyxl
import shapely
from registry import case


def _write(folder: Path, name: str, text: str) -> list[Path]:
    p = folder / name
    p.write_text(text, encoding="utf-8")
    return [p]


def _note(text: str) -> Callable[[Any, Any], None]:
    def check(_ws: Any, r: Any) -> None:
        assert any(text in n for n in r.notes), r.notes

    return check


def _pipeline(name: str, want: str) -> Callable[[Any, Any], None]:
    def check(ws: Any, _r: Any) -> None:
        got = ws.catalog.get(name).current.params["pipeline"]
        assert got == want, got

    return check


# regioncode_r/china_urban_population.xlsx gives 茂名 the code 480900 (it is 440900): the code is kept
# as the file gives it, and a note names it with what the name resolves to
@case("csv_adcode_names_no_unit", "csv", "a panel whose code column has a typo (480900 for 茂名, 440900)",
      expect="kept", rows=3, ingest={"schema": "city_panel"},
      check=_note("480900 (茂名; its name resolves to 440900)"))
def _bad_code(folder: Path) -> list[Path]:
    return _write(folder, "pop.csv", "name,code,year,population\n北京市,110000,2020,1916.4\n茂名,480900,2020,269.2\n"
                                     "茂名,480900,2021,280.26\n")


# city_coords_pyecharts/city_coordinates.json: {name: [lon, lat]}; its note says "[x, y] pairs", which
# the CLI printed as " pairs" (rich markup ate the brackets; see test_ingest_formats)
@case("json_object_of_coordinates", "json", "a JSON object of name -> [lon, lat] (pyecharts' city coordinates)",
      expect="kept", rows=3, ingest={"schema": "poi", "h3": False}, check=_note("[x, y] pairs -> lon, lat"))
def _coords(folder: Path) -> list[Path]:
    return _write(folder, "coords.json", json.dumps({"阿城": [126.58, 45.32], "阿克苏": [80.19, 41.09],
                                                     "北京": [116.46, 39.92]}, ensure_ascii=False))


def _wide(folder: Path) -> list[Path]:
    cols = 600
    lines = ["city,year," + ",".join(f"指标{j}" for j in range(cols))]
    for i in range(4):
        vals = [f"{(i + 1) * (j + 1) / 4:g}" for j in range(cols)]
        if i == 2:
            vals[517] = "n/a?"
        lines.append(f"city {i},2020," + ",".join(vals))
    return _write(folder, "wide.csv", "\n".join(lines) + "\n")


@case("csv_wide_600_columns_one_bad_value", "csv", "600 indicator columns (3 column blocks), one value not a number",
      expect="quarantined", rows=3, quarantined=1, reason="指标517: not a number: n/a?", ingest={"schema": "table"})
def _wide_bad(folder: Path) -> list[Path]:
    return _wide(folder)


@case("gpkg_streamed", "gpkg", "a clean GeoPackage layer goes through the streamed pass", expect="kept", rows=3,
      ingest={"schema": "land_use", "h3": False}, check=_pipeline("gpkg_streamed", "streamed"))
def _gpkg(folder: Path) -> list[Path]:
    p = folder / "parcels.gpkg"
    gpd.GeoDataFrame({"parcel_id": ["1", "2", "3"], "land_use": ["R", "C", "G"]},
                     geometry=[shapely.box(116.4 + i / 100, 39.9, 116.405 + i / 100, 39.905) for i in range(3)],
                     crs=4326).to_file(p, driver="GPKG", engine="pyogrio")
    return [p]


@case("xlsx_formula_only_row", "xlsx", "a row holding nothing but an uncomputed formula: quarantined, not skipped",
      expect="quarantined", rows=1, quarantined=1, reason="formula =SUM(C2:C2) in cell C3 has no cached value",
      ingest={"schema": "city_panel", "h3": False})
def _formula_row(folder: Path) -> list[Path]:
    p = folder / "f.xlsx"
    wb = openpyxl.Workbook()
    sh = wb.active
    assert sh is not None
    for r in [["城市", "年份", "GDP_亿元"], ["北京市", 2020, 1.5], [None, None, "=SUM(C2:C2)"]]:
        sh.append(r)
    wb.save(p)
    return [p]


def _twelve_digit_points(ws: Any, r: Any) -> None:
    df = ws.read("csv_adcode_12_digits")
    assert df["adcode"].tolist() == ["110000000000", "420600000000"]  # kept as the file gives them
    assert df["geometry_source"].tolist() == ["admin_point", "admin_point"]
    assert df.geometry.notna().all()


# city_adcodes_areacity/ok_data_level3.csv gives 12-digit statistical codes: they name the unit of their
# first 6 digits (before: no record got its unit's point, and no note said so)
@case("csv_adcode_12_digits", "csv", "12-digit statistical division codes (110000000000) get their unit's point",
      expect="kept", rows=2, ingest={"schema": "admin_unit", "h3": False}, check=_twelve_digit_points)
def _twelve(folder: Path) -> list[Path]:
    return _write(folder, "units.csv", "name,ext_id\n北京,110000000000\n襄阳,420600000000\n")
