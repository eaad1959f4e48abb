"""File formats at their edges (issue 12): workbooks formatted to the last row, formulas without
cached values, empty sheets, JSON where a CSV header should be, very long lines, mixed encodings,
wide files; each is read to what it holds or refused with a clear error (exit 2 on the CLI)."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import duckdb
import openpyxl
import pytest
from openpyxl.styles import Font
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation import readers
from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest import ingest
from citytwin.foundation.workspace import Workspace


def _workbook(path: Path, rows: list[list[object]], *, bottom: bool = False, merge: str | None = None,
              empty_sheet: bool = False) -> Path:
    wb = openpyxl.Workbook()
    sh = wb.active
    assert sh is not None
    for r in rows:
        sh.append(r)
    if merge:
        sh.merge_cells(merge)
    if bottom:
        sh.cell(1_048_576, 1).font = Font(bold=True)  # the used range reaches the last row
    if empty_sheet:
        wb.create_sheet("空表")
    wb.save(path)
    return path


def test_xlsx_used_range_to_the_last_row_reads_only_the_data(workspace: Workspace, tmp_path: Path) -> None:
    # before: 218 s and 5.7 GB for these 2 rows (every row of the used range materialised)
    p = _workbook(tmp_path / "tall.xlsx", [["城市", "年份", "GDP_亿元"], ["北京市", 2020, 1.5], ["上海市", 2020, 2.5]],
                  bottom=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.process_time()
    r = ingest(workspace, p, dataset="t", schema="city_panel", h3=False)
    cpu = time.process_time() - t0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert r.rows_kept == 2
    assert workspace.read("t")["GDP"].tolist() == [1.5e8, 2.5e8]
    # generous bounds (a shared machine): the old reader needed minutes and gigabytes
    assert cpu < 60 and grown_mib < 1024, (cpu, grown_mib)
    assert any("used range reaches row 1048576" in n for n in r.notes), r.notes


def test_xlsx_formulas_without_cached_values_are_quarantined(workspace: Workspace, tmp_path: Path) -> None:
    # openpyxl writes formulas without computing them: data_only reads None. Before: NULL stored, then
    # a note; now each record with such a cell is quarantined (row, column, cell and formula), a row
    # holding nothing but a formula included, and the other records keep their values
    p = _workbook(tmp_path / "f.xlsx", [["城市", "年份", "v", "double"], ["北京市", 2020, 1, "=C2*2"],
                                        ["上海市", 2020, 2, 4], [None, None, None, '=IF(C3>1,"x&y",0)']])
    r = ingest(workspace, p, dataset="t", schema="city_panel", h3=False)
    assert (r.rows_kept, r.rows_quarantined) == (1, 2)
    note = next(n for n in r.notes if "formula" in n)
    assert "2 formula cell(s) have no cached value" in note and "D2, D4" in note
    assert workspace.read("t")["double"].tolist() == [4.0]
    q = workspace.quarantine("t")
    assert q[["row", "field"]].values.tolist() == [[1, "double"], [3, "double"]]
    assert q["reason"].iloc[0].startswith("double: formula =C2*2 in cell D2 has no cached value")
    assert 'formula =IF(C3>1,"x&y",0) in cell D4' in q["reason"].iloc[1]  # XML entities decoded
    assert "city" in q["reason"].iloc[1]  # the row's other reasons too


def test_xlsx_merged_title_and_header(workspace: Workspace, tmp_path: Path) -> None:
    p = _workbook(tmp_path / "m.xlsx", [["2020年城市统计", None, None], ["城市", "年份", "人口"], ["北京市", 2020, 5],
                                        ["上海市", 2020, 6]], merge="A1:C1")
    r = ingest(workspace, p, dataset="t", schema="city_panel", h3=False)
    assert r.rows_kept == 2 and any("skipped as titles" in n for n in r.notes)


def test_xlsx_merged_parent_header_filled(workspace: Workspace, tmp_path: Path) -> None:
    p = _workbook(tmp_path / "m.xlsx", [["城市", "年份", "人口", None], [None, None, "城镇", "乡村"],
                                        ["北京市", 2020, 5, 6]], merge="C1:D1")
    r = ingest(workspace, p, dataset="t", schema="city_panel", h3=False)
    df = workspace.read("t")
    assert r.rows_kept == 1 and df["人口_城镇"].tolist() == [5.0] and df["人口_乡村"].tolist() == [6.0]


def test_empty_sheet_names_file_and_sheet(workspace: Workspace, tmp_path: Path) -> None:
    p = _workbook(tmp_path / "e.xlsx", [["城市", "年份"], ["北京市", 2020]], empty_sheet=True)
    with pytest.raises(InputError) as ei:
        ingest(workspace, p, dataset="t", schema="city_panel", sheet="空表")
    assert "e.xlsx" in str(ei.value) and "sheet '空表' is empty" in str(ei.value)


def test_json_line_as_a_csv_header(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "records.csv"
    p.write_text('{"city": "北京市", "year": 2020}\n{"city": "上海市", "year": 2020}\n', encoding="utf-8")
    with pytest.raises(InputError, match="first line is a JSON record"):
        ingest(workspace, p, dataset="t", schema="table")


def test_a_very_long_line_is_reported_on_its_line(workspace: Workspace, tmp_path: Path) -> None:
    # before: "CSV Error on Line: 1" for a long 4th line
    p = tmp_path / "long.csv"
    p.write_bytes(b"a,b\n1,2\n3,4\n5," + b"x" * 3_000_000 + b"\n6,7\n")
    with pytest.raises(InputError) as ei:
        ingest(workspace, p, dataset="t", schema="table")
    assert "line 4 is 3,000,002 bytes long" in str(ei.value)


def test_mixed_encodings_name_the_line_and_do_not_hint_latin1(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "mixed.csv"
    p.write_bytes("city,v\n北京市,1\n上海市,2\n".encode() + "广州市,3\n".encode("gbk"))
    with pytest.raises(InputError) as ei:
        ingest(workspace, p, dataset="t", schema="table")
    text = str(ei.value)
    assert "mixes text encodings" in text and "line 4" in text and "广州市" in text
    assert "latin" not in text.lower()


def test_mixed_encodings_beyond_the_first_mebibyte(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "mixed.csv"
    head = "city,v\n" + "".join(f"城市{i},{i}\n" for i in range(60_000))
    p.write_bytes(head.encode() + "北京,1\n".encode("gbk"))
    with pytest.raises(InputError, match="UTF-8 up to line 60001, but line 60002 is not UTF-8"):
        ingest(workspace, p, dataset="t", schema="table")


def test_duckdb_errors_are_translated() -> None:
    assert readers.duck_message(duckdb.InvalidInputException("Invalid Input Error: bad thing\nmore")) == "bad thing"
    msg = readers.duck_message(duckdb.InternalException("INTERNAL Error: Attempted to access index 3"))
    assert "index" not in msg and "DuckDB" in msg
    oom = readers.duck_message(duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate data of size 32 KiB"))
    assert "memory limit" in oom and "allocate" not in oom


def test_errors_exit_2_with_json(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "records.csv"
    p.write_text('{"a": 1}\n', encoding="utf-8")
    res = CliRunner().invoke(app, ["ingest", str(p), "-d", "t", "-s", "table", "-w", str(workspace.root), "--json"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "JSON record" in res.output
    try:  # valid JSON once the CLI's --json error output lands (another branch); plain text before
        doc = json.loads(res.stdout)
    except json.JSONDecodeError:
        return
    assert "JSON record" in json.dumps(doc, ensure_ascii=False)


def test_wide_csv_type_inference_is_bounded(workspace: Workspace, tmp_path: Path) -> None:
    # 1,500 columns: before, inference alone ran one aggregate per value class per column over
    # 20,000 rows in one query (12 min and 11 GB for 2,976 columns); now a bounded sample in Python
    cols = 1500
    p = tmp_path / "wide.csv"
    with p.open("w", encoding="utf-8") as fh:
        fh.write(",".join(f"c{j}" for j in range(cols)) + "\n")
        for i in range(20):
            fh.write(",".join(str((i + j) % 97 / 4) for j in range(cols)) + "\n")
    con = duckdb.connect()
    src = readers.open_source(con, p, stream=True)
    t0 = time.process_time()
    types = src.types_of(src.columns)
    assert time.process_time() - t0 < 20
    assert set(types.values()) == {"DOUBLE"}
    r = ingest(workspace, p, dataset="w", schema="table", h3=False)
    assert r.rows_kept == 20 and len(r.columns) == cols


def test_cli_prints_notes_and_reasons_with_brackets_as_written(tmp_path: Path) -> None:
    # a note about a JSON object of [x, y] pairs lost "[x, y]" on the console: rich read it as markup

    from citytwin.cli.main import app

    ws = tmp_path / "ws"
    Workspace.init(ws, owner="admin")
    p = tmp_path / "coords.json"
    p.write_text('{"阿城": [126.58, 45.32], "北京": [116.46, 39.92]}', encoding="utf-8")
    res = CliRunner().invoke(app, ["ingest", str(p), "-d", "coords", "-s", "poi", "-w", str(ws), "--no-h3"])
    assert res.exit_code == 0, res.output
    assert "[x, y] pairs -> lon, lat" in res.output
