"""Corpus cases: file formats at their edges (issue 12) — workbooks formatted to the last row,
formulas without cached values, empty sheets, JSON where a CSV header belongs, very long lines,
mixed encodings, wide files, bad ``--map`` parameters."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
from openpyxl.styles import Font
from registry import case


def _write(folder: Path, name: str, data: str | bytes) -> list[Path]:
    p = folder / name
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return [p]


def _book(path: Path, rows: list[list[Any]], *, bottom: bool = False, merge: tuple[str, ...] = (),
          empty_sheet: str | None = None) -> list[Path]:
    wb = openpyxl.Workbook()
    sh = wb.active
    assert sh is not None
    for r in rows:
        sh.append(r)
    for m in merge:
        sh.merge_cells(m)
    if bottom:
        sh.cell(1_048_576, 1).font = Font(bold=True)
    if empty_sheet:
        wb.create_sheet(empty_sheet)
    wb.save(path)
    return [path]


def note(text: str) -> Callable[[Any, Any], None]:
    def check(_ws: Any, r: Any) -> None:
        assert any(text in n for n in r.notes), r.notes

    return check


def stored(name: str, col: str, want: list[Any]) -> Callable[[Any, Any], None]:
    def check(ws: Any, _r: Any) -> None:
        got = ws.read(name)[col].tolist()
        assert got == want, (got, want)

    return check


def _columns(r: Any, n: int) -> None:
    assert len(r.columns) == n, len(r.columns)


PANEL = [["城市", "年份", "GDP_亿元"], ["北京市", 2020, 1.5], ["上海市", 2020, 2.5]]


@case("xlsx_used_range_last_row", "xlsx", "a formatted cell at row 1,048,576 below a 2-row table", expect="kept",
      rows=2, ingest={"schema": "city_panel", "h3": False}, check=note("used range reaches row 1048576"))
def _tall(folder: Path) -> list[Path]:
    return _book(folder / "tall.xlsx", PANEL, bottom=True)


def _formula_stored(ws: Any, r: Any) -> None:
    """The record with an uncached formula is quarantined (row, column, reason); the other one keeps
    its own value; nothing is stored as NULL for the formula."""
    note("2 formula cell(s) have no cached value")(ws, r)
    got = ws.read("xlsx_formula_no_cached_value")
    assert got["double"].tolist() == [4.0], got
    q = ws.quarantine("xlsx_formula_no_cached_value")
    assert q[["row", "field"]].values.tolist() == [[1, "double"], [3, "double"]], q
    assert "=C2*2 in cell D2" in q["reason"].iloc[0], q["reason"].iloc[0]
    assert "in cell D4" in q["reason"].iloc[1], q["reason"].iloc[1]


@case("xlsx_formula_no_cached_value", "xlsx", "formulas saved without values (written by a script): "
      "their records quarantined with cell and formula, not stored as empty", expect="quarantined", rows=1,
      quarantined=2, reason="has no cached value", ingest={"schema": "city_panel", "h3": False},
      check=_formula_stored)
def _formula(folder: Path) -> list[Path]:
    return _book(folder / "f.xlsx", [["城市", "年份", "v", "double"], ["北京市", 2020, 1, "=C2*2"],
                                     ["上海市", 2020, 2, 4], ["天津市", 2020, None, "=C3*2"]])


@case("xlsx_empty_sheet", "xlsx", "the chosen sheet is empty: file and sheet named", expect="error",
      reason="sheet '空表' is empty", ingest={"schema": "city_panel", "sheet": "空表"})
def _empty_sheet(folder: Path) -> list[Path]:
    return _book(folder / "e.xlsx", PANEL, empty_sheet="空表")


@case("xlsx_header_only", "xlsx", "a sheet with a header and no rows", expect="error", reason="no data rows",
      ingest={"schema": "city_panel"})
def _header_only(folder: Path) -> list[Path]:
    return _book(folder / "h.xlsx", [["城市", "年份", "v"]])


@case("xlsx_merged_title", "xlsx", "a merged title row above the table", expect="kept", rows=2,
      ingest={"schema": "city_panel", "h3": False}, check=note("skipped as titles"))
def _merged_title(folder: Path) -> list[Path]:
    return _book(folder / "m.xlsx", [["2020年主要城市GDP", None, None], *PANEL], merge=("A1:C1",))


@case("xlsx_merged_parent_header", "xlsx", "a merged parent header (人口 over 城镇 | 乡村)", expect="kept", rows=1,
      ingest={"schema": "city_panel", "h3": False}, check=stored("xlsx_merged_parent_header", "人口_乡村", [6.0]))
def _merged_parent(folder: Path) -> list[Path]:
    return _book(folder / "m.xlsx", [["城市", "年份", "人口", None], [None, None, "城镇", "乡村"], ["北京市", 2020, 5, 6]],
                 merge=("C1:D1",))


@case("xlsx_vertical_merge", "xlsx", "a city name merged down over two years", expect="kept", rows=2,
      ingest={"schema": "city_panel", "h3": False}, check=stored("xlsx_vertical_merge", "city", ["北京市", "北京市"]))
def _vertical(folder: Path) -> list[Path]:
    return _book(folder / "v.xlsx", [["城市", "年份", "v"], ["北京市", 2019, 1], [None, 2020, 2]], merge=("A2:A3",))


@case("csv_json_line_header", "csv", "JSON Lines saved as .csv (a JSON record where the header belongs)",
      expect="error", reason="first line is a JSON record", ingest={"schema": "table"})
def _json_header(folder: Path) -> list[Path]:
    return _write(folder, "records.csv", '{"city": "北京市", "year": 2020}\n{"city": "上海市", "year": 2020}\n')


@case("csv_long_line", "csv", "a 3 MB line (an unclosed quote): reported on its own line", expect="error",
      reason="line 4 is 3,000,002 bytes long", ingest={"schema": "table"})
def _long(folder: Path) -> list[Path]:
    return _write(folder, "long.csv", b"a,b\n1,2\n3,4\n5," + b"x" * 3_000_000 + b"\n6,7\n")


@case("csv_mixed_encodings", "csv", "UTF-8 lines, then a GBK line: the line named, no latin-1 hint",
      expect="error", reason="line 4 is not UTF-8", ingest={"schema": "table"})
def _mixed(folder: Path) -> list[Path]:
    return _write(folder, "mixed.csv", "city,v\n北京市,1\n上海市,2\n".encode() + "广州市,3\n".encode("gbk"))


@case("csv_wide_800_columns", "csv", "800 indicator columns (a wide panel)", expect="kept", rows=5,
      ingest={"schema": "table", "h3": False}, check=lambda _ws, r: _columns(r, 800))
def _wide(folder: Path) -> list[Path]:
    head = ",".join(f"指标{j}" for j in range(800))
    body = "".join(",".join(str((i * 3 + j) % 50 / 2) for j in range(800)) + "\n" for i in range(5))
    return _write(folder, "wide.csv", head + "\n" + body)


@case("csv_map_unknown_column", "csv", "--map names a column the file lacks", expect="error",
      reason="no column '年度'", ingest={"schema": "city_panel", "column_map": {"year": "年度"}})
def _map_missing(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "城市,年度标识,v\n北京市,2019,1\n")


@case("csv_map_unknown_field", "csv", "--map names a field the schema lacks", expect="error",
      reason="does not have", ingest={"schema": "city_panel", "column_map": {"yaer": "年度标识"}})
def _map_field(folder: Path) -> list[Path]:
    return _write(folder, "t.csv", "城市,年度标识,v\n北京市,2019,1\n")


@case("json_records", "json", "a plain JSON list of records", expect="kept", rows=2, ingest={"schema": "city_panel"},
      check=stored("json_records", "year", [2019, 2020]))
def _json_ok(folder: Path) -> list[Path]:
    p = folder / "t.json"
    p.write_text(json.dumps([{"城市": "北京市", "年份": 2019}, {"城市": "北京市", "年份": 2020}], ensure_ascii=False),
                 encoding="utf-8")
    return [p]


@case("json_not_records", "json", "a JSON list of numbers", expect="error", reason="list of records",
      ingest={"schema": "table"})
def _json_numbers(folder: Path) -> list[Path]:
    return _write(folder, "t.json", "[1, 2, 3]")


@case("json_invalid", "json", "a JSON file cut off", expect="error", reason="not valid JSON",
      ingest={"schema": "table"})
def _json_cut(folder: Path) -> list[Path]:
    return _write(folder, "t.json", '[{"a": 1}, {"a": ')


@case("parquet_typed_columns", "parquet", "Parquet with int, float, text and date columns", expect="kept", rows=2,
      ingest={"schema": "city_panel"}, check=stored("parquet_typed_columns", "share", [0.25, 0.5]))
def _pq_types(folder: Path) -> list[Path]:
    p = folder / "t.parquet"
    pd.DataFrame({"city": ["北京市", "上海市"], "year": [2020, 2020], "share": [0.25, 0.5],
                  "note": ["a", "b"], "day": pd.to_datetime(["2020-01-01", "2020-06-30"])}).to_parquet(p)
    return [p]


@case("parquet_year_as_text", "parquet", "a Parquet year column stored as text, one value not a year",
      expect="quarantined", rows=1, quarantined=1, reason="year: not a number", ingest={"schema": "city_panel"})
def _pq_year_text(folder: Path) -> list[Path]:
    p = folder / "t.parquet"
    pd.DataFrame({"city": ["北京市", "上海市"], "year": ["2020", "去年"]}).to_parquet(p)
    return [p]
