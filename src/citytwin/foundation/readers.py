"""Readers (A1): turn a file into a DuckDB relation of raw records, streamed.

Every reader yields the same shape: a DuckDB relation with a ``_row`` column (1-based
data row in the source, header excluded) and the source's own columns, plus the CRS
and notes. Text formats are read as text (``VARCHAR``) so that validation, not the
parser, decides what a bad value is; GIS formats keep their types and carry geometry
as WKB in a column named ``geometry``.

Formats: CSV/TSV/TXT (UTF-8, GBK/GB18030, detected), XLSX/XLSM (header rows above the
table, merged cells), XLS, GeoJSON, GeoPackage, zipped Shapefile, FlatGeobuf,
GeoParquet/Parquet, OSM PBF (streets, POIs, buildings, land use).
"""

from __future__ import annotations

import codecs
import datetime as dt
import json
import math
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from citytwin.foundation.errors import InputError
from citytwin.foundation.sql import ident, literal

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm"}
GIS_SUFFIXES = {".geojson", ".json", ".gpkg", ".fgb", ".shp", ".gml", ".kml"}
PARQUET_SUFFIXES = {".parquet", ".geoparquet"}
OSM_SUFFIXES = {".pbf"}
OSM_LAYERS = ("streets", "pois", "buildings", "landuse")
SNIFF_BYTES = 1 << 20



@dataclass
class Source:
    """A source file opened for ingest.

    ``relation`` has ``_row`` plus the source columns; ``text`` says whether the columns are
    raw text (CSV, Excel) or typed (GIS, Parquet).
    """

    path: Path
    format: str
    relation: duckdb.DuckDBPyRelation
    columns: list[str]
    text: bool
    crs: str | None = None
    encoding: str | None = None
    notes: list[str] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    csv_rejects: bool = False
    sniffed_types: dict[str, str] = field(default_factory=dict)
    #: computes the types of further text columns on demand (the streamed CSV read samples only the
    #: columns the plan asks about: each sampled column costs ~10 ms)
    type_sampler: Callable[[list[str]], dict[str, str]] | None = None
    header_row: int | None = None
    sql: str | None = None  # SQL text of the raw records, when they sit in a table (no view needed)
    temp_table: str | None = None  # dropped by ingest once the records are staged
    #: GIS layers: (xmin, ymin, xmax, ymax) of all features, in the layer's own coordinates
    bounds: tuple[float, float, float, float] | None = None
    #: GIS layers: features per geometry type (``{"Polygon": 3, "Point": 1}``)
    geometry_types: dict[str, int] = field(default_factory=dict)

    def types_of(self, columns: Sequence[str]) -> dict[str, str]:
        """``DOUBLE`` or ``VARCHAR`` for each of ``columns`` (see :func:`infer_types`)."""
        missing = [c for c in columns if c not in self.sniffed_types]
        if missing and self.type_sampler is not None:
            self.sniffed_types.update(self.type_sampler(missing))
        return {c: self.sniffed_types.get(c, "VARCHAR") for c in columns}


def detect_format(path: Path) -> str:
    name = path.name.lower()
    suffix = path.suffix.lower()
    if name.endswith(".osm.pbf") or suffix in OSM_SUFFIXES:
        return "osm_pbf"
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as z:
                names = [n.lower() for n in z.namelist()]
        except zipfile.BadZipFile as exc:
            raise InputError("not a valid zip archive", file=str(path)) from exc
        if any(n.endswith(".shp") for n in names):
            return "shapefile_zip"
        if any(n.endswith((".geojson", ".gpkg")) for n in names):
            return "gis"
        raise InputError("zip archive holds no Shapefile, GeoJSON or GeoPackage", file=str(path))
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in EXCEL_SUFFIXES:
        return "xlsx"
    if suffix == ".xls":
        return "xls"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix == ".json" and not _is_geojson(path):
        return "json"
    if suffix in GIS_SUFFIXES:
        return "gis"
    raise InputError(f"unsupported file type {suffix or '(none)'!r}", file=str(path),
                     hint="supported: CSV, XLSX, XLS, GeoJSON, GeoPackage, zipped Shapefile, FlatGeobuf, "
                          "(Geo)Parquet, OSM PBF")


def _is_geojson(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096)
    return b'"FeatureCollection"' in head or b'"Feature"' in head or b'"features"' in head


def open_source(con: duckdb.DuckDBPyConnection, path: str | Path, *, sheet: str | None = None,
                layer: str | None = None, encoding: str | None = None, staging: Path | None = None,
                delimiter: str | None = None, csv_rejects: bool = False, header: bool = True,
                stream: bool = False, more: Sequence[Path] = ()) -> Source:
    """Open ``path`` as a :class:`Source` on connection ``con``.

    ``stream`` and ``more`` apply to CSV only (see :func:`_open_csv`).
    """
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", file=str(p))
    if p.is_dir():
        raise InputError("is a folder, not a file", file=str(p))
    if p.stat().st_size == 0:
        raise InputError("file is empty (0 bytes)", file=str(p))
    fmt = detect_format(p)
    if fmt == "csv":
        return _open_csv(con, p, encoding=encoding, staging=staging, delimiter=delimiter, rejects=csv_rejects,
                         header=header, stream=stream, more=more)
    if fmt == "xlsx":
        return _open_xlsx(con, p, sheet=sheet)
    if fmt == "xls":
        return _open_xls(con, p, sheet=sheet)
    if fmt == "parquet":
        return _open_parquet(con, p)
    if fmt == "json":
        return _open_json(con, p)
    if fmt == "osm_pbf":
        return _open_osm(con, p, layer=layer)
    return _open_gis(con, p, layer=layer, zipped=fmt == "shapefile_zip" or p.suffix.lower() == ".zip",
                     encoding=encoding)


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------
def _line_of_offset(path: Path, offset: int) -> int:
    with path.open("rb") as fh:
        return fh.read(offset).count(b"\n") + 1


def _check_encoding(path: Path, encoding: str, whole: bool) -> tuple[bool, int | None]:
    """Decode the file (or its first MiB) strictly; return (ok, byte offset of the first error)."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(SNIFF_BYTES)
            final = not chunk or (not whole and offset + len(chunk) >= SNIFF_BYTES)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                return False, offset + exc.start
            offset += len(chunk)
            if not chunk or final:
                return True, None


def detect_encoding(path: Path) -> str:
    """UTF-8 if the first MiB decodes as UTF-8, else GB18030 (a superset of GBK and GB2312)."""
    ok, _ = _check_encoding(path, "utf-8", whole=False)
    if ok:
        return "utf-8"
    ok, _ = _check_encoding(path, "gb18030", whole=False)
    if ok:
        return "gb18030"
    raise InputError("cannot tell the text encoding (neither UTF-8 nor GBK/GB18030)", file=str(path),
                     hint="pass --encoding (e.g. utf-16, big5, latin-1)")


def _transcode(path: Path, encoding: str, staging: Path) -> Path:
    """Stream ``path`` from ``encoding`` to a UTF-8 file in ``staging`` (memory stays flat)."""
    out = staging / (path.stem + ".utf8.csv")
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    with path.open("rb") as src, out.open("w", encoding="utf-8", newline="") as dst:
        while True:
            chunk = src.read(4 << 20)
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                line = _line_of_offset(path, offset + exc.start)
                raise InputError(
                    f"bytes at offset {offset + exc.start} are not valid {encoding} (line {line})",
                    file=str(path), hint="the file mixes encodings; fix that line or pass --encoding") from exc
            dst.write(text)
            offset += len(chunk)
            if not chunk:
                break
    return out


def _open_csv(con: duckdb.DuckDBPyConnection, path: Path, *, encoding: str | None, staging: Path | None,
              delimiter: str | None, rejects: bool = False, header: bool = True, stream: bool = False,
              more: Sequence[Path] = ()) -> Source:
    """Open a CSV as text columns.

    The first read is strict. When it fails on malformed rows, ingest reopens the file with
    ``rejects=True``: DuckDB then keeps the rows it can split and records the others with their
    line numbers (not by default: DuckDB 1.5's reject store hangs on very long lines).

    ``stream=True`` reads nothing up front: the relation is a lazy ``read_csv`` (``_row`` is 0, as
    rows are not numbered) for ingest's streamed pass, which only ever writes clean files.
    ``more`` are further files with the same header and encoding, read in the same scan.
    """
    notes: list[str] = []
    given = encoding
    enc = (encoding or detect_encoding(path)).lower().replace("_", "-")
    if enc in ("utf8", "utf-8-sig"):
        enc = "utf-8"
    if enc in ("gbk", "gb2312", "cp936"):
        enc = "gb18030"
    if given and enc == "utf-8":
        ok, bad = _check_encoding(path, "utf-8", whole=True)
        if not ok and bad is not None:
            guess = "GBK/GB18030" if _check_encoding(path, "gb18030", whole=False)[0] else "another encoding"
            raise InputError(
                f"file is not valid UTF-8: bad bytes at offset {bad} (line {_line_of_offset(path, bad)}); "
                f"it looks like {guess}", file=str(path),
                hint="omit --encoding to detect it, or pass --encoding gbk")
    read_path = path
    if enc != "utf-8":
        if staging is None:
            raise InputError(f"{enc} files need a staging folder", file=str(path))
        read_path = _transcode(path, enc, staging)
        notes.append(f"transcoded from {enc} to UTF-8")
    hdr = "true" if header else "false"
    if not delimiter and path.suffix.lower() != ".tsv":
        delimiter = _sniff_delimiter(read_path)
    opts = f"header={hdr}, all_varchar=true" + (", store_rejects=true, null_padding=false, quote='\"', escape='\"'" if rejects else "")
    if delimiter:
        opts += f", delim='{delimiter}'"
    elif path.suffix.lower() == ".tsv":
        opts += ", delim='\\t'"
    qpath = str(read_path).replace("'", "''")
    if stream:
        # no up-front read, no row numbers: ingest's streamed pass COPYs straight from the file
        # and falls back to the numbered (staged) read when any record needs quarantine
        files = "[" + ", ".join(literal(str(f)) for f in [read_path, *more]) + "]"
        try:
            scan = f"read_csv({files}, {_sniffed_options(con, qpath, opts)})"
            sql = f"SELECT CAST(0 AS BIGINT) AS _row, * FROM {scan}"
            rel = con.sql(sql)
            columns = [c for c in rel.columns if c != "_row"]
        except duckdb.Error as exc:
            raise csv_error(path, exc) from exc
        if not columns:
            raise InputError("no columns found (is the header row empty?)", file=str(path))

        def sample(cols: list[str]) -> dict[str, str]:
            try:
                return infer_types(con.sql(f"SELECT {', '.join(ident(c) for c in cols)} FROM {scan}"), cols)
            except duckdb.Error as exc:
                raise csv_error(path, exc) from exc

        return Source(path=path, format="csv", relation=rel, columns=columns, text=True, encoding=enc,
                      notes=notes, type_sampler=sample, sql=sql)
    table = f"raw_{abs(hash((str(path), rejects))) % 10**12}"
    try:
        con.execute("DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans;")
        # Read into a table first: DuckDB parses in parallel, and rowid numbers the records in file
        # order (row_number() OVER () would make the whole ingest query single-threaded).
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_csv('{qpath}', {opts})")
        sql = f"SELECT rowid + 1 AS _row, * FROM {table}"
        rel = con.sql(sql)
        columns = [c for c in rel.columns if c != "_row"]
        sniffed = infer_types(con.sql(f"SELECT * FROM {table}"), columns)
    except duckdb.Error as exc:
        if not rejects and "unicode" not in str(exc).lower():
            # malformed rows: read again keeping the rows that split, recording the others
            src = _open_csv(con, path, encoding=enc, staging=staging, delimiter=delimiter, rejects=True,
                            header=header)
            src.notes = notes + src.notes
            return src
        raise csv_error(path, exc) from exc
    if not columns:
        raise InputError("no columns found (is the header row empty?)", file=str(path))
    return Source(path=path, format="csv", relation=rel, columns=columns, text=True, encoding=enc, notes=notes,
                  csv_rejects=rejects, sniffed_types=sniffed, sql=sql, temp_table=table)


def _sniffed_options(con: duckdb.DuckDBPyConnection, qpath: str, opts: str) -> str:
    """``read_csv`` options that fix what DuckDB's sniffer finds in the first file, sniffing off.

    DuckDB sniffs the dialect again each time a ``read_csv`` is bound and run (~0.1 s for the 12
    Beijing files, twice per ingest); sniffing once with ``sniff_csv`` and passing its dialect and
    all-text columns explicitly (``auto_detect=false``) reads the same records without that cost.
    """
    r = con.execute(f"SELECT Delimiter, Quote, Escape, NewLineDelimiter, SkipRows, HasHeader, Columns "
                    f"FROM sniff_csv('{qpath}', {opts})").fetchone()
    if r is None:  # pragma: no cover - sniff_csv always answers or raises
        return opts
    delim, quote, escape, newline, skip, has_header, cols = r
    quote, escape = ("" if v == "(empty)" else v for v in (quote, escape))  # sniff_csv's word for none
    if len(quote.encode()) > 1 or len(escape.encode()) > 1 or not cols:  # not something read_csv takes back
        return opts

    colspec = "{" + ", ".join(f"{literal(c['name'])}: 'VARCHAR'" for c in cols) + "}"
    nl = newline if newline in ("\\r\\n", "\\n", "\\r") else None  # DuckDB's escaped spelling
    fixed = (f"auto_detect=false, header={'true' if has_header else 'false'}, delim={literal(delim)}, "
             f"quote={literal(quote)}, escape={literal(escape)}, skip={int(skip)}, columns={colspec}")
    return fixed + (f", new_line={literal(nl)}" if nl else "")


def _sniff_delimiter(path: Path) -> str:
    """The delimiter of the first line (',', tab, ';' or '|'), so ragged rows later cannot mislead it."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        first = fh.readline()
    counts = {d: first.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def csv_error(path: Path, exc: Exception) -> InputError:
    """An :class:`InputError` naming the file and, where DuckDB says it, the line of a CSV read error."""
    msg = str(exc).strip().splitlines()
    first = msg[0] if msg else str(exc)
    line = re.search(r"[Ll]ine:?\s*(\d+)", str(exc))
    if "unicode" in str(exc).lower():
        return InputError(f"file is not valid UTF-8 ({first})", file=str(path),
                          hint="pass --encoding gbk (or the file's encoding)")
    return InputError(f"cannot read CSV: {first}" + (f" (line {line.group(1)})" if line else ""), file=str(path))


def csv_rejects(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Rows the CSV parser could not split into the header's columns (line numbers are file lines)."""
    try:
        rows = con.sql("SELECT line, column_name, error_type, csv_line, error_message FROM reject_errors "
                       "ORDER BY line").fetchall()
    except duckdb.Error:
        return []
    return [{"line": int(r[0]), "field": r[1], "type": r[2], "raw": r[3], "message": r[4]} for r in rows]


# ---------------------------------------------------------------------------
# Excel
# ---------------------------------------------------------------------------
def _cell_text(v: Any) -> str | None:
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


def _table_from_rows(rows: list[list[str | None]], *, file: str, merged_header_rows: set[int]) -> tuple[
        pa.Table, int, list[str]]:
    notes: list[str] = []
    h = find_header(rows)
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
    # drop trailing empty rows; blank rows inside are skipped and counted
    while body and all(c is None for c in body[-1]):
        body.pop()
    cols: list[list[str | None]] = [[] for _ in names]
    rownums: list[int] = []
    blank = 0
    for j, r in enumerate(body):
        if all(c is None for c in r):
            blank += 1
            continue
        rownums.append(j + 1)
        for i in range(ncols):
            cols[i].append(r[i] if i < len(r) else None)
    if blank:
        notes.append(f"{blank} blank row(s) inside the table skipped")
    if not rownums:
        raise InputError("sheet has a header but no data rows", file=file)
    arrays = {"_row": pa.array(rownums, pa.int64())}
    for n, c in zip(names, cols, strict=True):
        arrays[n] = pa.array(c, pa.string())
    return pa.table(arrays), h + 1, notes


def _fill_merged(ws: Any) -> set[int]:
    """Copy each merged range's value into all its cells; return 0-based rows with horizontal merges."""
    horizontal: set[int] = set()
    for rng in list(ws.merged_cells.ranges):
        v = ws.cell(rng.min_row, rng.min_col).value
        ws.unmerge_cells(str(rng))
        for r in range(rng.min_row, rng.max_row + 1):
            for c in range(rng.min_col, rng.max_col + 1):
                ws.cell(r, c).value = v
        if rng.max_col > rng.min_col:
            horizontal.update(range(rng.min_row - 1, rng.max_row))
    return horizontal


def _open_xlsx(con: duckdb.DuckDBPyConnection, path: Path, *, sheet: str | None) -> Source:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    big = path.stat().st_size > 40 << 20
    try:
        wb = openpyxl.load_workbook(path, read_only=big, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise InputError(f"cannot open as XLSX: {exc}", file=str(path)) from exc
    ws = _pick_sheet(wb.sheetnames, sheet, path)
    sh = wb[ws]
    merged = set() if big else _fill_merged(sh)
    rows = [[_cell_text(v) for v in r] for r in sh.iter_rows(values_only=True)]
    wb.close()
    table, header_row, notes = _table_from_rows(rows, file=str(path), merged_header_rows=merged)
    if big:
        notes.append("large workbook read in streaming mode: merged cells are not filled")
    notes.insert(0, f"sheet {ws!r}")
    rel = con.from_arrow(table)
    cols = [c for c in table.column_names if c != "_row"]
    return Source(path=path, format="xlsx", relation=rel, columns=cols, text=True, notes=notes,
                  header_row=header_row, sniffed_types=infer_types(rel, cols))


ID_LIKE = ("id", "code", "编号", "代码", "编码", "zip", "zipcode", "postcode", "邮编", "phone", "电话", "手机", "身份证",
           "证件号", "号码", "idcard")


def infer_types(rel: duckdb.DuckDBPyRelation, columns: list[str], *, sample: int = 20_000) -> dict[str, str]:
    """Type of each text column from (a sample of) its values: ``DOUBLE`` or ``VARCHAR``.

    A column is numeric when most of its non-missing values are numbers; the values that are not
    are then quarantined by validation as "not a number" (a typo does not turn a numeric column
    into text). Identifier-like columns stay text: names ending in id/code/编号/代码/zip, or values
    with leading zeros ("0123") or 16+ digits (ID numbers, which a double cannot hold exactly).
    """
    cols = [c for c in columns if not any(c.lower().replace("_", "").endswith(k) for k in ID_LIKE)
            and "身份证" not in c]
    out = dict.fromkeys(columns, "VARCHAR")
    if not cols:
        return out
    tokens = "('', 'na', 'n/a', 'nan', 'null', 'none', '-', '--', '—', '/', '#n/a', '无')"
    parts = []
    for c in cols:
        qc = ident(c)
        v = f"CASE WHEN lower(trim(CAST({qc} AS VARCHAR))) IN {tokens} THEN NULL ELSE trim(CAST({qc} AS VARCHAR)) END"
        parts += [f"count({v})", f"count(TRY_CAST(replace({v}, ',', '') AS DOUBLE))",
                  f"count(*) FILTER (WHERE regexp_matches({v}, '^0[0-9]|[0-9]{{16,}}'))"]
    counts = rel.limit(sample).aggregate(", ".join(parts)).fetchone()
    assert counts is not None
    for i, c in enumerate(cols):
        n, k, zeros = counts[3 * i], counts[3 * i + 1], counts[3 * i + 2]
        out[c] = "DOUBLE" if n and k / n > 0.5 and not zeros else "VARCHAR"
    return out


def _pick_sheet(names: list[str], sheet: str | None, path: Path) -> str:
    if sheet is None:
        return names[0]
    if sheet in names:
        return sheet
    if sheet.isdigit() and int(sheet) < len(names):
        return names[int(sheet)]
    raise InputError(f"no sheet {sheet!r}", file=str(path), hint=f"sheets: {', '.join(names)}")


def _open_xls(con: duckdb.DuckDBPyConnection, path: Path, *, sheet: str | None) -> Source:
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
            row.append(_cell_text(v))
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


# ---------------------------------------------------------------------------
# GIS
# ---------------------------------------------------------------------------
def _crs_name(crs: Any) -> str | None:
    if not crs:
        return None
    return str(crs)


def _open_gis(con: duckdb.DuckDBPyConnection, path: Path, *, layer: str | None, zipped: bool,
              encoding: str | None = None) -> Source:
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    from citytwin.foundation.shapezip import check_shapefile_zip, dbf_encoding

    if zipped:
        check_shapefile_zip(path)
    sniffed_note = None
    if encoding is None:
        encoding, sniffed_note = dbf_encoding(path, zipped)
    target = f"/vsizip/{path}" if zipped else str(path)
    if path.suffix.lower() in (".geojson", ".json"):
        _check_json_complete(path)
    try:
        layers = [row[0] for row in pyogrio.list_layers(target)]
        if layer is not None and layer not in layers:
            raise InputError(f"no layer {layer!r}", file=str(path), hint=f"layers: {', '.join(layers)}")
        if layer is None and len(layers) > 1 and not zipped:
            chosen = layers[0]
            note = f"layer {chosen!r} of {layers} (pass --layer to choose)"
        else:
            chosen = layer or (layers[0] if layers else None)
            note = f"layer {chosen!r}" if chosen else ""
        info = pyogrio.read_info(target, layer=chosen, encoding=encoding, force_total_bounds=True)
        meta, reader_table = _read_gis_arrow(target, chosen, encoding)
    except InputError:
        raise
    except (DataSourceError, DataLayerError, RuntimeError, OSError, ValueError, pa.ArrowException,
            MemoryError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = None
        if "string of size" in first or "decode" in first.lower() or "encoding" in first.lower():
            # GDAL's text of a .dbf in another code page (GBK) than it assumed breaks Arrow's strings
            hint = ("the attribute table's text is in another encoding than "
                    f"{encoding or 'the one declared (.cpg) or assumed'}: pass --encoding (e.g. gbk, "
                    "gb18030, utf-8), or add a .cpg file naming it")
            first = "cannot decode the attribute table (.dbf) text"
        raise InputError(f"cannot read GIS file: {first}", file=str(path), hint=hint) from exc
    crs = _crs_name(info.get("crs") or meta.get("crs"))
    table = reader_table
    n = table.num_rows
    if n == 0:
        raise InputError("layer has no features", file=str(path))
    gcol = meta.get("geometry_name") or "wkb_geometry"
    if gcol in table.column_names and gcol != "geometry":
        idx = table.column_names.index(gcol)
        table = table.set_column(idx, "geometry", table.column(gcol))
    table = table.add_column(0, "_row", pa.array(range(1, n + 1), pa.int64()))
    rel = con.from_arrow(table)
    cols = [c for c in table.column_names if c != "_row"]
    tb = info.get("total_bounds")
    bounds = None
    if tb is not None and len(tb) == 4 and all(math.isfinite(float(v)) for v in tb):
        bounds = (float(tb[0]), float(tb[1]), float(tb[2]), float(tb[3]))
    gtypes: dict[str, int] = {}
    if "geometry" in table.column_names:
        import numpy as np
        import shapely

        kinds = shapely.get_type_id(shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False)))
        names = {0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint",
                 5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection", -1: "missing"}
        ids, counts = np.unique(kinds, return_counts=True)
        gtypes = {names.get(int(i), str(i)): int(k) for i, k in zip(ids, counts, strict=True)}
    if encoding:
        note = (note + "; " if note else "") + (sniffed_note or f"attribute text read as {encoding}")
    return Source(path=path, format="gis", relation=rel, columns=cols, text=False, crs=crs,
                  notes=[x for x in [note] if x], bounds=bounds,
                  geometry_types=gtypes)


def _read_gis_arrow(target: str, layer: str | None, encoding: str | None = None) -> tuple[dict[str, Any], pa.Table]:
    import pyogrio

    meta, table = pyogrio.read_arrow(target, layer=layer, encoding=encoding)
    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    return meta, table


def _check_json_complete(path: Path) -> None:
    """Reject truncated JSON before GDAL half-reads it (GDAL may return the features before the cut)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(0, size - 64))
        tail = fh.read().rstrip()
    if not tail.endswith((b"}", b"]")):
        raise InputError(f"GeoJSON is truncated: the file ends in {tail[-20:].decode('utf-8', 'replace')!r} "
                         "instead of closing the FeatureCollection", file=str(path),
                         hint="the download or copy was cut off; fetch the file again")
    if size <= 64 << 20:
        try:
            json.loads(path.read_bytes())
        except json.JSONDecodeError as exc:
            raise InputError(f"GeoJSON is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             file=str(path)) from exc


def _open_json(con: duckdb.DuckDBPyConnection, path: Path) -> Source:
    """Plain JSON: a list of records, or a mapping of keys to values (``{"北京": [116.4, 39.9]}``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}", file=str(path)) from exc
    notes: list[str] = []
    if isinstance(data, dict) and data and all(isinstance(v, list | dict | str | int | float) for v in data.values()):
        rows = []
        for k, v in data.items():
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int | float) for x in v):
                rows.append({"name": k, "lon": _cell_text(float(v[0])), "lat": _cell_text(float(v[1]))})
            elif isinstance(v, dict):
                rows.append({"name": k, **{kk: _cell_text(vv) for kk, vv in v.items()}})
            else:
                rows.append({"name": k, "value": _cell_text(v) if not isinstance(v, list) else json.dumps(v)})
        notes.append("JSON object read as one record per key (key -> name; [x, y] pairs -> lon, lat)")
    elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
        rows = [{k: (_cell_text(v) if not isinstance(v, list | dict) else json.dumps(v, ensure_ascii=False))
                 for k, v in r.items()} for r in data]
    else:
        raise InputError("JSON must be a list of records or an object of records", file=str(path))
    if not rows:
        raise InputError("JSON holds no records", file=str(path))
    names: list[str] = []
    for r in rows:
        for k in r:
            if k not in names:
                names.append(k)
    arrays = {"_row": pa.array(range(1, len(rows) + 1), pa.int64())}
    for n in names:
        arrays[n] = pa.array([r.get(n) for r in rows], pa.string())
    table = pa.table(arrays)
    rel = con.from_arrow(table)
    return Source(path=path, format="json", relation=rel, columns=names, text=True, notes=notes,
                  sniffed_types=infer_types(rel, names))


def _open_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> Source:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read Parquet: {exc}", file=str(path)) from exc
    crs = None
    geo = (schema.metadata or {}).get(b"geo")
    gcol = None
    if geo:
        g = json.loads(geo)
        gcol = g.get("primary_column")
        colmeta = g.get("columns", {}).get(gcol, {})
        c = colmeta.get("crs")
        if c is None:
            crs = "OGC:CRS84"
        elif isinstance(c, dict):
            ident = c.get("id") or {}
            crs = f"{ident.get('authority')}:{ident.get('code')}" if ident else json.dumps(c)
        else:
            crs = str(c)
    qpath = str(path).replace("'", "''")
    rel = con.sql(f"SELECT file_row_number + 1 AS _row, * EXCLUDE (file_row_number) "
                  f"FROM read_parquet('{qpath}', file_row_number=true)")
    types = dict(zip(rel.columns, [str(t) for t in rel.types], strict=True))
    if gcol and gcol in types:
        exprs = []
        for c in rel.columns:
            if c == gcol:
                e = f'ST_AsWKB("{c}")' if types[c].startswith("GEOMETRY") else f'"{c}"'
                exprs.append(f'{e} AS geometry')
            else:
                exprs.append(f'"{c}"')
        rel = rel.project(", ".join(exprs))
    cols = [c for c in rel.columns if c != "_row"]
    return Source(path=path, format="parquet", relation=rel, columns=cols, text=False, crs=crs)


def _open_osm(con: duckdb.DuckDBPyConnection, path: Path, *, layer: str | None) -> Source:
    if layer not in OSM_LAYERS:
        raise InputError(f"OSM PBF needs --layer, one of {', '.join(OSM_LAYERS)}", file=str(path))
    from citytwin.foundation import osm

    gdf = osm.read_osm_layer(path, layer)  # type: ignore[arg-type]  # checked against OSM_LAYERS above
    if gdf is None or len(gdf) == 0:
        raise InputError(f"no {layer} in this OSM extract", file=str(path))
    import shapely

    df = gdf.drop(columns=[gdf.geometry.name])
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v, default=str))
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.append_column("geometry", pa.array(shapely.to_wkb(gdf.geometry.values), pa.binary()))
    table = table.add_column(0, "_row", pa.array(range(1, len(gdf) + 1), pa.int64()))
    return Source(path=path, format="osm_pbf", relation=con.from_arrow(table),
                  columns=[c for c in table.column_names if c != "_row"], text=False, crs="EPSG:4326",
                  notes=[f"OSM layer {layer!r}: {len(gdf)} features"])
