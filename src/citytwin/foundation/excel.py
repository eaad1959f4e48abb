"""Excel readers (A1): XLSX/XLSM in openpyxl's streaming mode up to the last row with data (header
rows found above the table, merged cells and uncached formulas read from the sheet XML), and XLS
through xlrd, into the DuckDB relation of raw text records :mod:`citytwin.foundation.readers` yields.

A formula cell without a cached value (a workbook saved by a program that does not compute
formulas, e.g. openpyxl) has no value to store: its record carries a reason in the column
:data:`CELL_PROBLEM` (cell, column and formula) and is quarantined, never stored with NULL there.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import re
import zipfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from citytwin.foundation.errors import InputError
from citytwin.foundation.source import Source
from citytwin.foundation.textnum import infer_types

#: the column of an Excel source's relation that holds a reason from the reader (uncached formula
#: cells of that record), NULL elsewhere; not a source column (see :attr:`Source.reason_column`)
CELL_PROBLEM = "_cell_problem"


def cell_text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return repr(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, bool):
        return "true" if v else "false"
    s = str(v).strip()
    return s or None


def _looks_numeric(s: str | None) -> bool:
    if s is None:
        return False
    try:
        float(s.replace(",", ""))
    except ValueError:
        return False
    return True


def find_header(rows: list[list[str | None]], max_scan: int = 30) -> int:
    """Index of the header row: the first row of mostly text cells as wide as the table below it.

    Title rows above a table (one merged cell with the table's name, a unit note, a blank line)
    are skipped.
    """
    scan = rows[:max_scan]
    width = max((sum(c is not None for c in r) for r in rows[: max_scan * 3]), default=0)
    if width == 0:
        raise InputError("sheet has no data")
    for i, r in enumerate(scan):
        filled = [c for c in r if c is not None]
        if len(filled) < max(2, math.ceil(0.6 * width)):
            continue
        texts = sum(not _looks_numeric(c) for c in filled)
        if len(set(filled)) < max(2, math.ceil(0.6 * len(filled))):
            continue  # a merged title spread over the columns
        if texts / len(filled) >= 0.6:
            return i
    # no text row: a header-less table
    for i, r in enumerate(scan):
        if sum(c is not None for c in r) >= max(1, math.ceil(0.6 * width)):
            return i
    return 0


def _table_from_rows(rows: list[list[str | None]], *, file: str, merged_header_rows: set[int],
                     sheet: str | None = None,
                     problems: dict[int, list[tuple[int, str, str]]] | None = None
                     ) -> tuple[pa.Table, int, list[str]]:
    """The table under the header row, with ``_row`` (data row, from 1) and, where ``problems``
    (``{sheet row index: [(column index, cell, formula)]}``) reach a data row, :data:`CELL_PROBLEM`."""
    notes: list[str] = []
    where = f"sheet {sheet!r}" if sheet is not None else "sheet"
    try:
        h = find_header(rows)
    except InputError as exc:
        raise InputError(f"{where} is empty (no cells with values)", file=file,
                         hint="pass --sheet to read another sheet") from exc
    header = list(rows[h])
    # a second header row under a merged parent header (e.g. 人口 / 城镇 | 乡村)
    sub = h + 1
    if h in merged_header_rows and sub < len(rows):
        nxt = rows[sub]
        filled = [c for c in nxt if c is not None]
        if filled and all(not _looks_numeric(c) for c in filled):
            header = [f"{a}_{b}" if (a and b and a != b) else (a or b) for a, b in zip(header, nxt, strict=False)]
            h = sub
            notes.append("two header rows combined (merged parent header)")
    if h > 0:
        notes.append(f"table starts at sheet row {h + 1}; {h} row(s) above it skipped as titles")
    # trim trailing empty columns; name empty headers
    last = max((i for i, c in enumerate(header) if c is not None), default=-1)
    data_width = max((max((i for i, c in enumerate(r) if c is not None), default=-1) for r in rows[h + 1:]),
                     default=-1)
    ncols = max(last, data_width) + 1
    names: list[str] = []
    for i in range(ncols):
        h_i = header[i] if i < len(header) else None
        n = h_i if h_i is not None else f"column_{i + 1}"
        base, k = n, 2
        while n in names:
            n = f"{base}_{k}"
            k += 1
        names.append(n)
    body = rows[h + 1:]
    problems = problems or {}
    # drop trailing empty rows (a row with a formula cell is not empty); blank rows inside are skipped and counted
    while body and all(c is None for c in body[-1]) and h + len(body) not in problems:
        body.pop()
    cols: list[list[str | None]] = [[] for _ in names]
    rownums: list[int] = []
    reasons: list[str | None] = []
    blank = 0
    for j, r in enumerate(body):
        cells = problems.get(h + 1 + j)
        if all(c is None for c in r) and not cells:
            blank += 1
            continue
        rownums.append(j + 1)
        for i in range(ncols):
            cols[i].append(r[i] if i < len(r) else None)
        reasons.append("; ".join(
            f"{names[ci] if ci < ncols else 'column ' + ref.rstrip('0123456789')}: formula ={formula} in cell {ref} "
            "has no cached value (the workbook was saved by a program that does not compute formulas; open and "
            "save it in Excel or LibreOffice)" for ci, ref, formula in cells) if cells else None)
    if blank:
        notes.append(f"{blank} blank row(s) inside the table skipped")
    if not rownums:
        raise InputError(f"{where} has a header but no data rows", file=file)
    arrays = {"_row": pa.array(rownums, pa.int64())}
    for n, c in zip(names, cols, strict=True):
        arrays[n] = pa.array(c, pa.string())
    if any(r is not None for r in reasons):
        arrays[CELL_PROBLEM] = pa.array(reasons, pa.string())
    return pa.table(arrays), h + 1, notes


#: a run of this many empty rows ends an XLSX table (a used range formatted down to row 1,048,576
#: would otherwise be read row by row)
EMPTY_RUN = 10_000


def open_xlsx(con: duckdb.DuckDBPyConnection, path: Path, *, sheet: str | None) -> Source:
    """Read one sheet in openpyxl's read-only (streaming) mode, up to the last row with data.

    Memory and time follow the cells with values, not the sheet's used range: a sheet whose used
    range reaches row 1,048,576 (one formatted cell at the bottom) reads its few rows, and reading
    stops after :data:`EMPTY_RUN` empty rows (said in a note). Merged ranges are filled from the
    sheet's XML; formula cells without a cached value (a file written by a program that does not
    compute formulas) have no value: their records are quarantined (a reason in :data:`CELL_PROBLEM`),
    and those above the table are listed in a note.
    """
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise InputError(f"cannot open as XLSX: {exc}", file=str(path)) from exc
    notes: list[str] = []
    try:
        ws = _pick_sheet(wb.sheetnames, sheet, path)
        sh = wb[ws]
        xml_path = getattr(sh, "_worksheet_path", None)
        used = getattr(sh, "max_row", None)
        rows: list[list[str | None]] = []
        run = 0
        stopped = None
        for i, r in enumerate(sh.iter_rows(values_only=True)):
            vals = [cell_text(v) for v in r] if any(v is not None for v in r) else []
            while vals and vals[-1] is None:
                vals.pop()
            rows.append(vals)
            run = 0 if vals else run + 1
            if run >= EMPTY_RUN:
                stopped = i + 1
                break
        while rows and not rows[-1]:
            rows.pop()
        merged: list[tuple[int, int, int, int]] = []
        formulas: list[tuple[str, str]] = []
        if xml_path:
            # formula cells up to where reading stopped (a row of formulas alone reads as empty)
            merged, formulas = _sheet_xml_facts(wb._archive, xml_path, stopped or 1 << 21)
    finally:
        wb.close()
    if stopped is not None:
        notes.append(f"reading stopped at sheet row {stopped} after {EMPTY_RUN:,} empty rows (the sheet's used "
                     f"range reaches row {used}: formatted but empty cells); rows below it were not read")
    horizontal: set[int] = set()
    for r0, r1, c0, c1 in merged:
        if r0 >= len(rows):
            continue
        v = rows[r0][c0] if c0 < len(rows[r0]) else None
        for rr in range(r0, min(r1, len(rows))):
            row = rows[rr]
            if len(row) < c1:
                row.extend([None] * (c1 - len(row)))
            for cc in range(c0, c1):
                row[cc] = v
        if c1 - c0 > 1:
            horizontal.update(range(r0, r1))
    from openpyxl.utils.cell import column_index_from_string, coordinate_from_string

    problems: dict[int, list[tuple[int, str, str]]] = {}
    for ref, formula in formulas:
        letters, row = coordinate_from_string(ref)
        problems.setdefault(row - 1, []).append((column_index_from_string(letters) - 1, ref, formula))
    if problems and max(problems) >= len(rows):
        rows.extend([] for _ in range(max(problems) + 1 - len(rows)))
    table, header_row, tnotes = _table_from_rows(rows, file=str(path), merged_header_rows=horizontal, sheet=ws,
                                                 problems=problems)
    if formulas:
        above = [ref for ref, _ in formulas if coordinate_from_string(ref)[1] <= header_row]
        notes.append(f"{len(formulas)} formula cell(s) have no cached value (the file was saved by a program "
                     f"that does not compute formulas): {', '.join(ref for ref, _ in formulas[:10])}"
                     f"{' …' if len(formulas) > 10 else ''}; "
                     + (f"{len(formulas) - len(above)} in data rows quarantine their records" if len(above) <
                        len(formulas) else "")
                     + (("; " if len(above) < len(formulas) else "") + f"{len(above)} in the header or title rows "
                        "read as empty" if above else "")
                     + "; open and save the file in Excel or LibreOffice to compute them")
    notes = [f"sheet {ws!r}", *tnotes, *notes]
    rel = con.from_arrow(table)
    cols = [c for c in table.column_names if c not in ("_row", CELL_PROBLEM)]
    stats: dict[str, tuple[int, int]] = {}
    return Source(path=path, format="xlsx", relation=rel, columns=cols, text=True, notes=notes,
                  header_row=header_row, sniffed_types=infer_types(rel, cols, stats=stats), type_stats=stats,
                  reason_column=CELL_PROBLEM if CELL_PROBLEM in table.column_names else None)


_MERGE = re.compile(rb'<mergeCell ref="([A-Z]+[0-9]+):([A-Z]+[0-9]+)"')
#: a formula cell without a cached value: <c r="B2" ...><f>...</f></c> (or <f .../>, or an empty <v/>)
_FORMULA_NO_VALUE = re.compile(
    rb'<c r="([A-Z]+[0-9]+)"[^>]*>\s*<f\b[^>]*(?:/>|>([^<]*)</f>)\s*(?:<v\s*/>|<v></v>)?\s*</c>')


def _sheet_xml_facts(archive: zipfile.ZipFile, xml_path: str,
                     nrows: int) -> tuple[list[tuple[int, int, int, int]], list[tuple[str, str]]]:
    """Merged ranges (0-based rows/cols, end-exclusive) and formula cells without a cached value
    (within the first ``nrows`` rows: cell and formula text, ``""`` for a shared formula's
    followers) of a sheet, read from its XML in chunks (memory stays flat)."""
    from openpyxl.utils.cell import coordinate_from_string, range_boundaries

    merged: list[tuple[int, int, int, int]] = []
    formulas: list[tuple[str, str]] = []
    seen: set[bytes] = set()
    tail = b""
    with archive.open(xml_path) as fh:
        while True:
            chunk = fh.read(8 << 20)
            data = tail + chunk
            for m in _FORMULA_NO_VALUE.finditer(data):
                ref = m.group(1)
                if ref not in seen:
                    seen.add(ref)
                    if coordinate_from_string(ref.decode())[1] <= nrows:
                        text = html.unescape((m.group(2) or b"").decode("utf-8", "replace"))
                        formulas.append((ref.decode(), text or "(shared formula)"))
            for m in _MERGE.finditer(data):
                key = m.group(0)
                if key not in seen:
                    seen.add(key)
                    c0, r0, c1, r1 = range_boundaries(f"{m.group(1).decode()}:{m.group(2).decode()}")
                    assert c0 is not None and r0 is not None and c1 is not None and r1 is not None
                    merged.append((r0 - 1, r1, c0 - 1, c1))
            if not chunk:
                break
            tail = data[-(1 << 16):]
    return merged, formulas


def _pick_sheet(names: list[str], sheet: str | None, path: Path) -> str:
    if sheet is None:
        return names[0]
    if sheet in names:
        return sheet
    if sheet.isdigit() and int(sheet) < len(names):
        return names[int(sheet)]
    raise InputError(f"no sheet {sheet!r}", file=str(path), hint=f"sheets: {', '.join(names)}")


def open_xls(con: duckdb.DuckDBPyConnection, path: Path, *, sheet: str | None) -> Source:
    import xlrd

    try:
        book = xlrd.open_workbook(str(path), formatting_info=True)
    except (xlrd.XLRDError, OSError, AssertionError) as exc:
        raise InputError(f"cannot open as XLS: {exc}", file=str(path)) from exc
    name = _pick_sheet(book.sheet_names(), sheet, path)
    sh = book.sheet_by_name(name)
    rows: list[list[str | None]] = []
    for i in range(sh.nrows):
        row: list[str | None] = []
        for j in range(sh.ncols):
            cell = sh.cell(i, j)
            v: Any = cell.value
            if cell.ctype == xlrd.XL_CELL_DATE:
                v = xlrd.xldate.xldate_as_datetime(v, book.datemode)
            elif cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                v = None
            row.append(cell_text(v))
        rows.append(row)
    horizontal: set[int] = set()
    for r0, r1, c0, c1 in sh.merged_cells:
        v = rows[r0][c0]
        for r in range(r0, r1):
            for c in range(c0, c1):
                rows[r][c] = v
        if c1 - c0 > 1:
            horizontal.update(range(r0, r1))
    table, header_row, notes = _table_from_rows(rows, file=str(path), merged_header_rows=horizontal)
    notes.insert(0, f"sheet {name!r}")
    rel = con.from_arrow(table)
    cols = [c for c in table.column_names if c != "_row"]
    return Source(path=path, format="xls", relation=rel, columns=cols, text=True, notes=notes,
                  header_row=header_row, sniffed_types=infer_types(rel, cols))


