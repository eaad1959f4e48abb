"""Corpus cases: numbers as real files write them (issue 12) — decimal commas, thousands separators,
full-width digits, 17-digit floats, NUL bytes, yearbook tokens, unit suffixes, ``--map``, missing keys.

Where a value is stored, ``check`` asserts it equals what the source meant (e.g. "1,5" -> 1.5).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
from registry import case


def _write(folder: Path, name: str, data: str | bytes) -> list[Path]:
    p = folder / name
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return [p]


def _col(ws: Any, name: str, col: str) -> list[Any]:
    vals = ws.read(name)[col].tolist()
    return [None if isinstance(v, float) and math.isnan(v) else v for v in vals]


def values(name: str, col: str, want: list[Any]) -> Callable[[Any, Any], None]:
    """A check: the stored column ``col`` of dataset ``name`` equals ``want`` (in file order)."""

    def check(ws: Any, _r: Any) -> None:
        got = _col(ws, name, col)
        assert got == want, (col, got, want)

    return check


def note(text: str) -> Callable[[Any, Any], None]:
    """A check: one of the ingest's notes contains ``text``."""

    def check(_ws: Any, r: Any) -> None:
        assert any(text in n for n in r.notes), r.notes

    return check




@case("csv_decimal_comma_semicolon", "csv", "a ';'-separated panel with decimal commas (1,5)", expect="kept",
      rows=2, ingest={"schema": "city_panel"}, check=values("csv_decimal_comma_semicolon", "GDP", [1.5e8, 2.75e8]))
def _dc(folder: Path) -> list[Path]:
    return _write(folder, "dc.csv", "城市;年份;GDP_亿元\n北京市;2020;1,5\n上海市;2020;2,75\n")


@case("csv_decimal_comma_grouped", "csv", "decimal commas with '.' grouping thousands (1.234,5)", expect="kept",
      rows=2, ingest={"schema": "city_panel"}, check=values("csv_decimal_comma_grouped", "v", [1234.5, 0.5]))
def _dc_grouped(folder: Path) -> list[Path]:
    return _write(folder, "dc.csv", "city;year;v\n北京市;2020;1.234,5\n上海市;2020;0,5\n")


@case("tsv_decimal_comma", "csv", "a tab-separated file with decimal commas", expect="kept", rows=2,
      ingest={"schema": "city_panel"}, check=values("tsv_decimal_comma", "v", [1.5, -0.25]))
def _tsv_dc(folder: Path) -> list[Path]:
    return _write(folder, "dc.tsv", "city\tyear\tv\n北京市\t2020\t1,5\n上海市\t2020\t-0,25\n")


@case("csv_decimal_comma_note", "csv", "the detected decimal comma is said in the notes", expect="kept", rows=1,
      ingest={"schema": "city_panel"}, check=note("decimal comma detected"))
def _dc_note(folder: Path) -> list[Path]:
    return _write(folder, "dc.csv", "city;year;v\n北京市;2020;3,25\n")


@case("csv_thousands_separators", "csv", "quoted thousands separators (\"1,234,567.8\")", expect="kept", rows=2,
      ingest={"schema": "city_panel"}, check=values("csv_thousands_separators", "v", [1234567.8, 1000.0]))
def _thousands(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", 'city,year,v\n北京市,2020,"1,234,567.8"\n上海市,2020,"1,000"\n')


@case("csv_comma_groups_nothing", "csv", "\"1,5\" in a comma-separated file: no grouping, not 15", expect="quarantined",
      rows=2, quarantined=1, reason="v: not a number: 1,5", ingest={"schema": "city_panel"},
      check=values("csv_comma_groups_nothing", "v", [2.5, 3.0]))
def _comma_nothing(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", 'city,year,v\n北京市,2020,"1,5"\n上海市,2020,2.5\n广州市,2020,3\n')


@case("csv_fullwidth_digits", "csv", "full-width digits typed with a Chinese input method (１２３)", expect="kept",
      rows=2, ingest={"schema": "city_panel"}, check=values("csv_fullwidth_digits", "v", [123.0, 45.5]))
def _fullwidth(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "city,year,v\n北京市,2020,１２３\n上海市,2020,４５．５\n")


@case("csv_17_digit_floats", "csv", "floats with 17 significant digits stay numbers, exact", expect="kept", rows=2,
      ingest={"schema": "city_panel"},
      check=values("csv_17_digit_floats", "v", [float("0.12345678901234567"), float("98765.432109876543")]))
def _digits17(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "city,year,v\n北京市,2020,0.12345678901234567\n上海市,2020,98765.432109876543\n")


@case("csv_nul_byte", "csv", "a NUL byte after a number", expect="kept", rows=2, ingest={"schema": "city_panel"},
      check=values("csv_nul_byte", "v", [1.5, 2.0]))
def _nul(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", b"city,year,v\nA,2020,1.5\x00\nB,2020,2\n")


@case("csv_yearbook_ellipsis", "csv", "yearbook '…' and '……' for missing figures", expect="kept", rows=3,
      ingest={"schema": "city_panel"}, check=values("csv_yearbook_ellipsis", "v", [None, 2.5, None]))
def _ellipsis(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "city,year,v\n北京市,2020,…\n上海市,2020,2.5\n广州市,2020,……\n")


@case("csv_yearbook_star", "csv", "yearbook '*' (figure withheld)", expect="kept", rows=2,
      ingest={"schema": "city_panel"}, check=values("csv_yearbook_star", "v", [None, 7.0]))
def _star(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "city,year,v\n北京市,2020,*\n上海市,2020,7\n")


@case("csv_yearbook_zanwu", "csv", "yearbook '暂无' (not yet available)", expect="kept", rows=2,
      ingest={"schema": "city_panel"}, check=values("csv_yearbook_zanwu", "v", [None, 8.5]))
def _zanwu(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "city,year,v\n北京市,2020,暂无\n上海市,2020,8.5\n")


@case("csv_yearbook_dashes", "csv", "'-' and '—' for missing figures", expect="kept", rows=3,
      ingest={"schema": "city_panel"}, check=values("csv_yearbook_dashes", "v", [None, None, -1.0]))
def _dashes(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "city,year,v\n北京市,2020,-\n上海市,2020,—\n广州市,2020,-1\n")


@case("csv_negative_exponents", "csv", "negative numbers and exponents", expect="kept", rows=3,
      ingest={"schema": "city_panel"}, check=values("csv_negative_exponents", "v", [-1.5e-3, 2e10, -7.0]))
def _exponents(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "city,year,v\n北京市,2020,-1.5e-3\n上海市,2020,2E+10\n广州市,2020,-7\n")


@case("csv_year_in_chinese_numerals", "csv", "a year written 二〇二〇: quarantined, raw text kept",
      expect="quarantined", rows=1, quarantined=1, reason="year: not a number", ingest={"schema": "city_panel"})
def _year_text(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "城市,年份,v\n北京市,二〇二〇,1\n上海市,2020,2\n")


@case("csv_year_not_whole", "csv", "a year 2020.5", expect="quarantined", rows=1, quarantined=1,
      reason="not a whole number", ingest={"schema": "city_panel"})
def _year_half(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "城市,年份,v\n北京市,2020.5,1\n上海市,2020,2\n")


@case("csv_unit_suffix_prefixed", "csv", "插值_常住人口（万人） converted like 常住人口（万人）", expect="kept", rows=1,
      ingest={"schema": "city_panel"}, check=values("csv_unit_suffix_prefixed", "插值_常住人口", [2.0e7]))
def _unit_prefixed(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "城市,年份,常住人口（万人）,插值_常住人口（万人）\n北京市,2020,2000,2000\n")


@case("csv_unit_value_with_decimal_comma", "csv", "a ';' file with 'GDP_万元' values such as 1,5", expect="kept",
      rows=1, ingest={"schema": "city_panel"}, check=values("csv_unit_value_with_decimal_comma", "GDP", [15000.0]))
def _unit_dc(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "城市;年份;GDP_万元\n北京市;2020;1,5\n")


@case("csv_unbalanced_parenthesis_header", "csv", "a header 人均GDP_(元/人 (no closing bracket)", expect="kept",
      rows=1, ingest={"schema": "city_panel"}, check=values("csv_unbalanced_parenthesis_header", "人均GDP_(元/人", [1.0]))
def _unbalanced(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "城市,年份,人均GDP_(元/人\n北京市,2020,1\n")


@case("csv_extra_column_mostly_text", "csv", "an extra column with text in 2 of 3 values: kept as text, said so",
      expect="kept", rows=3, ingest={"schema": "city_panel"}, check=note("'note' (2 of 3 sampled values not numbers)"))
def _mostly_text(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "city,year,note\nA,2020,1\nB,2020,n.a. (est.)\nC,2020,see text\n")


@case("csv_map_year_column", "csv", "year under a header no alias knows (年度标识), --map year=年度标识",
      expect="kept", rows=2, ingest={"schema": "city_panel", "column_map": {"year": "年度标识"}},
      check=values("csv_map_year_column", "year", [2019, 2020]))
def _map_year(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "城市,年度标识,v\n北京市,2019,1\n北京市,2020,2\n")


@case("csv_map_time_header", "csv", "year in a column named 'time', --map year=time", expect="kept", rows=1,
      ingest={"schema": "city_panel", "column_map": {"year": "time"}},
      check=values("csv_map_time_header", "year", [2021]))
def _map_time(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "城市,time,v\n北京市,2021,1\n")


@case("csv_year_header_unknown", "csv", "year under an unknown header: the error suggests the column",
      expect="error", reason="--map year=年度标识", ingest={"schema": "city_panel"})
def _year_unknown(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "城市,年度标识,v\n北京市,2019,1\n北京市,2020,2\n")


@case("parquet_missing_key", "parquet", "a POI without its id (Parquet null)", expect="quarantined", rows=2,
      quarantined=1, reason="poi_id: missing key", ingest={"schema": "poi", "h3": False})
def _pq_missing_key(folder: Path) -> list[Path]:
    p = folder / "pois.parquet"
    pd.DataFrame({"poi_id": ["1", None, "3"], "name": list("abc"), "category": ["school", "park", "bank"],
                  "lon": [116.40, 116.41, 116.42], "lat": [39.90, 39.91, 39.92]}).to_parquet(p)
    return [p]


@case("parquet_numbers_as_text", "parquet", "Parquet text coordinates with full-width digits and a grouping",
      expect="kept", rows=3, ingest={"schema": "poi", "h3": False},
      check=values("parquet_numbers_as_text", "lon", [116.4, 116.41, 116.42]))
def _pq_text(folder: Path) -> list[Path]:
    p = folder / "t.parquet"
    pd.DataFrame({"poi_id": ["1", "2", "3"], "lon": ["116.40", "１１６．４１", "116.42"],
                  "lat": ["39.9", "39.91", "39.92"]}).to_parquet(p)
    return [p]


@case("parquet_text_column_stays_text", "parquet", "a Parquet string column keeps its declared type",
      expect="kept", rows=2, ingest={"schema": "city_panel"},
      check=values("parquet_text_column_stays_text", "v", ["1,234.5", "7"]))
def _pq_text_declared(folder: Path) -> list[Path]:
    p = folder / "t.parquet"
    pd.DataFrame({"city": ["北京市", "上海市"], "year": [2020] * 2, "v": ["1,234.5", "7"]}).to_parquet(p)
    return [p]


@case("parquet_float64_exact", "parquet", "Parquet doubles with 17 significant digits", expect="kept", rows=2,
      ingest={"schema": "city_panel"},
      check=values("parquet_float64_exact", "v", [0.1 + 0.2, 1 / 3]))
def _pq_exact(folder: Path) -> list[Path]:
    p = folder / "t.parquet"
    pd.DataFrame({"city": ["北京市", "上海市"], "year": [2020, 2020], "v": [0.1 + 0.2, 1 / 3]}).to_parquet(p)
    return [p]


@case("json_fullwidth_and_tokens", "json", "JSON records with full-width digits and '暂无'", expect="kept", rows=3,
      ingest={"schema": "city_panel"}, check=values("json_fullwidth_and_tokens", "v", [123.0, None, 4.5]))
def _json_fw(folder: Path) -> list[Path]:
    p = folder / "t.json"
    p.write_text(json.dumps([{"city": "北京市", "year": 2020, "v": "１２３"}, {"city": "上海市", "year": 2020, "v": "暂无"},
                             {"city": "广州市", "year": 2020, "v": 4.5}], ensure_ascii=False), encoding="utf-8")
    return [p]


@case("json_lon_decimal_comma", "json", "a JSON longitude \"116,40\" (no file convention): quarantined",
      expect="quarantined", rows=1, quarantined=1, reason="lon: not a number", ingest={"schema": "poi", "h3": False})
def _json_dc(folder: Path) -> list[Path]:
    p = folder / "t.json"
    p.write_text(json.dumps([{"poi_id": "1", "lon": "116,40", "lat": 39.9}, {"poi_id": "2", "lon": 116.41, "lat": 39.91}]),
                 encoding="utf-8")
    return [p]


@case("xlsx_numbers_as_text", "xlsx", "Excel cells holding '1,234' and '…' as text", expect="kept", rows=3,
      ingest={"schema": "city_panel"}, check=values("xlsx_numbers_as_text", "v", [1234.0, None, 5.5]))
def _xlsx_text(folder: Path) -> list[Path]:
    p = folder / "t.xlsx"
    wb = openpyxl.Workbook()
    sh = wb.active
    assert sh is not None
    for r in (["城市", "年份", "v"], ["北京市", 2020, "1,234"], ["上海市", 2020, "…"], ["广州市", 2020, 5.5]):
        sh.append(r)
    wb.save(p)
    return [p]
