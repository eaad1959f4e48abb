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
import json
import math
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from citytwin.foundation.errors import InputError
from citytwin.foundation.excel import cell_text, open_xls, open_xlsx
from citytwin.foundation.source import Source
from citytwin.foundation.sql import ident, literal
from citytwin.foundation.textnum import detect_decimal_comma, infer_types

__all__ = ["Source", "csv_error", "detect_decimal_comma", "detect_encoding", "detect_format", "duck_message",
           "infer_types", "open_source"]

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm"}
GIS_SUFFIXES = {".geojson", ".json", ".gpkg", ".fgb", ".shp", ".gml", ".kml"}
PARQUET_SUFFIXES = {".parquet", ".geoparquet"}
OSM_SUFFIXES = {".pbf"}
OSM_LAYERS = ("streets", "pois", "buildings", "landuse")
SNIFF_BYTES = 1 << 20



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
        return open_xlsx(con, p, sheet=sheet)
    if fmt == "xls":
        return open_xls(con, p, sheet=sheet)
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
    """UTF-8 if the first MiB decodes as UTF-8, else GB18030 (a superset of GBK and GB2312).

    A file whose first bad UTF-8 byte follows valid non-ASCII UTF-8 text mixes encodings: an error
    names its line (read as GBK, the UTF-8 lines would be stored as mojibake).
    """
    ok, bad = _check_encoding(path, "utf-8", whole=False)
    if ok:
        return "utf-8"
    if bad is not None:
        mixed = mixed_encoding_error(path, bad)
        if mixed is not None:
            raise mixed
    ok, _ = _check_encoding(path, "gb18030", whole=False)
    if ok:
        return "gb18030"
    raise InputError("cannot tell the text encoding (neither UTF-8 nor GBK/GB18030)", file=str(path),
                     hint="pass --encoding with the file's encoding (e.g. utf-16, big5)")


def mixed_encoding_error(path: Path, bad: int) -> InputError | None:
    """The error for a file that is UTF-8 (with non-ASCII text) before byte ``bad`` and not after, or None
    when the text before ``bad`` is plain ASCII (then it is simply another encoding)."""
    with path.open("rb") as fh:
        head = fh.read(bad)
        rest = fh.read(4096)
    if head.isascii():
        return None
    line = head.count(b"\n") + 1
    start = head.rfind(b"\n") + 1
    raw = head[start:] + rest.split(b"\n", 1)[0]
    try:
        shown = f"; it reads as GBK: {raw.decode('gb18030').strip()[:60]!r}"
    except UnicodeDecodeError:
        shown = ""
    return InputError(f"file mixes text encodings: UTF-8 up to line {line - 1}, but line {line} is not UTF-8"
                      f"{shown}", file=str(path),
                      hint="save the whole file in one encoding (UTF-8); --encoding would misread the other lines")


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
    _refuse_json_lines(read_path, path)
    dc = detect_decimal_comma(read_path, delimiter or ("\t" if path.suffix.lower() == ".tsv" else ","))
    if dc:
        notes.append("decimal comma detected (values such as '1,5' in a file not separated by commas): "
                     "numbers read with ',' as the decimal mark and '.' as the thousands separator")
    opts = f"header={hdr}, all_varchar=true" + (", store_rejects=true, null_padding=false, quote='\"', escape='\"'" if rejects else "")
    if delimiter:
        opts += f", delim='{delimiter}'"
    elif path.suffix.lower() == ".tsv":
        opts += ", delim='\\t'"
    qpath = str(read_path).replace("'", "''")
    stats: dict[str, tuple[int, int]] = {}
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
                return infer_types(con.sql(f"SELECT {', '.join(ident(c) for c in cols)} FROM {scan}"), cols,
                                   decimal_comma=dc, stats=stats)
            except duckdb.Error as exc:
                raise csv_error(path, exc) from exc

        return Source(path=path, format="csv", relation=rel, columns=columns, text=True, encoding=enc,
                      notes=notes, type_sampler=sample, sql=sql, decimal_comma=dc, type_stats=stats)
    table = f"raw_{abs(hash((str(path), rejects))) % 10**12}"
    try:
        con.execute("DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans;")
        # Read into a table first: DuckDB parses in parallel, and rowid numbers the records in file
        # order (row_number() OVER () would make the whole ingest query single-threaded).
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_csv('{qpath}', {opts})")
        sql = f"SELECT rowid + 1 AS _row, * FROM {table}"
        rel = con.sql(sql)
        columns = [c for c in rel.columns if c != "_row"]
        sniffed = infer_types(con.sql(f"SELECT * FROM {table}"), columns, decimal_comma=dc, stats=stats)
    except duckdb.Error as exc:
        if not rejects and "unicode" not in str(exc).lower() and "maximum line size of" not in str(exc).lower():
            # malformed rows: read again keeping the rows that split, recording the others
            src = _open_csv(con, path, encoding=enc, staging=staging, delimiter=delimiter, rejects=True,
                            header=header)
            src.notes = notes + src.notes
            return src
        raise csv_error(path, exc) from exc
    if not columns:
        raise InputError("no columns found (is the header row empty?)", file=str(path))
    return Source(path=path, format="csv", relation=rel, columns=columns, text=True, encoding=enc, notes=notes,
                  csv_rejects=rejects, sniffed_types=sniffed, sql=sql, temp_table=table, decimal_comma=dc,
                  type_stats=stats)


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


def _refuse_json_lines(path: Path, shown: Path) -> None:
    """A clear error for a JSON document or JSON Lines file named ``.csv`` (its first line is JSON)."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        first = fh.readline(1 << 16).strip().lstrip("\ufeff")
    if not first.startswith(("{", "[")):
        return
    try:
        json.loads(first)
    except ValueError:
        return
    raise InputError("the first line is a JSON record, not a CSV header", file=str(shown),
                     hint="save the records as a .json file (a list of records) or give the CSV a header line")


def _sniff_delimiter(path: Path) -> str:
    """The delimiter of the first line (',', tab, ';' or '|'), so ragged rows later cannot mislead it."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        first = fh.readline()
    counts = {d: first.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


#: DuckDB's longest CSV line (its ``max_line_size`` default)
MAX_LINE = 2_000_000


def _long_line(path: Path, limit: int = MAX_LINE) -> tuple[int, int] | None:
    """(line number, length in bytes) of the first line of ``path`` longer than ``limit``, read in chunks."""
    line, length = 1, 0
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            parts = chunk.split(b"\n")
            for k, part in enumerate(parts):
                length += len(part)
                if k < len(parts) - 1:
                    if length > limit:
                        return line, length
                    line, length = line + 1, 0
    return (line, length) if length > limit else None


def duck_message(exc: Exception) -> str:
    """DuckDB's error text as a user reads it: its first line, without the error class
    ("Invalid Input Error: ..."); an internal error becomes a plain sentence."""
    first = (str(exc).strip().splitlines() or [str(exc)])[0]
    if first.startswith("Out of Memory Error"):
        return ("the file needs more memory than the ingest's DuckDB memory limit (a very wide file: "
                "thousands of columns); split its columns into several files or raise memory_limit")
    if "INTERNAL" in first.upper().split(":")[0]:
        return "the database engine (DuckDB) failed internally on this file; please report it with the file"
    return re.sub(r"^[A-Za-z ]*Error:\s*", "", first).strip() or first


def csv_error(path: Path, exc: Exception) -> InputError:
    """An :class:`InputError` naming the file and, where DuckDB says it, the line of a CSV read error."""
    text = str(exc)
    line = re.search(r"[Ll]ine:?\s*(\d+)", text)
    if "maximum line size of" in text.lower():
        found = _long_line(path)
        if found is not None:
            return InputError(f"line {found[0]} is {found[1]:,} bytes long; a CSV line may have at most "
                              f"{MAX_LINE:,} bytes", file=str(path),
                              hint="a quote left open joins the lines after it; check that line")
    if "unicode" in text.lower():
        ok, bad = _check_encoding(path, "utf-8", whole=True)
        if not ok and bad is not None:
            mixed = mixed_encoding_error(path, bad)
            if mixed is not None:
                return mixed
            return InputError(f"file is not valid UTF-8: bad bytes at offset {bad} (line {_line_of_offset(path, bad)})",
                              file=str(path), hint="pass --encoding gbk (or the file's encoding)")
        return InputError(f"file is not valid UTF-8 ({duck_message(exc)})", file=str(path),
                          hint="pass --encoding gbk (or the file's encoding)")
    return InputError(f"cannot read CSV: {duck_message(exc)}" + (f" (line {line.group(1)})" if line else ""),
                      file=str(path))


def csv_rejects(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Rows the CSV parser could not split into the header's columns (line numbers are file lines)."""
    try:
        rows = con.sql("SELECT line, column_name, error_type, csv_line, error_message FROM reject_errors "
                       "ORDER BY line").fetchall()
    except duckdb.Error:
        return []
    return [{"line": int(r[0]), "field": r[1], "type": r[2], "raw": r[3], "message": r[4]} for r in rows]


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
                rows.append({"name": k, "lon": cell_text(float(v[0])), "lat": cell_text(float(v[1]))})
            elif isinstance(v, dict):
                rows.append({"name": k, **{kk: cell_text(vv) for kk, vv in v.items()}})
            else:
                rows.append({"name": k, "value": cell_text(v) if not isinstance(v, list) else json.dumps(v)})
        notes.append("JSON object read as one record per key (key -> name; [x, y] pairs -> lon, lat)")
    elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
        rows = [{k: (cell_text(v) if not isinstance(v, list | dict) else json.dumps(v, ensure_ascii=False))
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
