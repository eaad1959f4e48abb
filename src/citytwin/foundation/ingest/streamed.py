"""The streamed pass: clean files from source to Parquet in one scan per file, no staged table.

The fast path of an ingest (:func:`run_streamed`): DuckDB reads, maps and checks every record with
the validation query (:func:`~citytwin.foundation.ingest.query.build_sql`, without raw records)
and writes the kept ones; a record that needs quarantine stops the pass (an ``error()`` in the
query), as do a duplicate key and a read problem, and the staged pipeline takes over. Point records
leave DuckDB as Arrow chunks (:func:`copy_arrow`): their WKB geometry from numpy, their H3 cells from
:func:`citytwin.foundation.spacelink.h3_cells_arrow`, text cleaned where :mod:`~citytwin.foundation.cleannumba`
finds it needed, and a pyarrow writer (:mod:`.parquet`); other records go through DuckDB's ``COPY``.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from citytwin.foundation import duck, geoparquet, readers
from citytwin.foundation.coords import as_lonlat
from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest import blocks
from citytwin.foundation.ingest.connection import connect
from citytwin.foundation.ingest.exprs import MISSING_TOKENS, WHITESPACE, clean_text
from citytwin.foundation.ingest.options import Outcome, PipelineOptions
from citytwin.foundation.ingest.parquet import (
    DICTIONARY_MAX_VALUES,
    PARQUET_WRITE,
    arrow_writable,
    arrow_write_options,
)
from citytwin.foundation.ingest.plan import Plan, lazy_text, note_columns, plan_columns
from citytwin.foundation.ingest.query import build_sql
from citytwin.foundation.schemas import Schema
from citytwin.foundation.sql import ident as q
from citytwin.foundation.sql import literal as lit

__all__ = ["ORDER_POINTS", "PIPE_BATCH", "PIPE_DEPTH", "POINT_CHUNK", "Fallback", "copy_arrow", "run_streamed"]

_QUARANTINE_NEEDED = "citytwin: a record needs quarantine"


class Fallback(Exception):
    """The streamed pass cannot finish cleanly: the staged pipeline takes over."""


def _csv_groups(files: list[Path], opts: PipelineOptions) -> list[list[Path]]:
    """Files read in one scan: UTF-8 CSVs with the same first line (header) as the first of the group."""
    groups: list[list[Path]] = []
    head: bytes | None = None
    for f in files:
        line = None
        if readers.detect_format(f) == "csv" and f.exists() and f.stat().st_size and opts.encoding is None:
            with f.open("rb") as fh:
                line = fh.readline()
            if readers.detect_encoding(f) != "utf-8" or line.startswith(b"\xef\xbb\xbf"):
                line = None
        if groups and line is not None and line == head:
            groups[-1].append(f)
        else:
            groups.append([f])
            head = line
    return groups


def run_streamed(files: list[Path], sch: Schema, opts: PipelineOptions, staging: Path,
                 say: Callable[[str], None]) -> tuple[Outcome | None, str | None]:
    """One pass per file (or per group of same-header CSVs): read, check and write the kept records.

    The fast path for clean files: no staged table, no row numbers, DuckDB streams from the
    source straight into the version's Parquet on all cores, in file order (point records through
    Arrow, see :func:`copy_arrow`). The first record
    that would need quarantine aborts the pass (``error()`` in the query), as does a duplicate key
    found afterwards in the written files; the staged pipeline (:mod:`.staged`) then redoes the
    ingest and reports every record with its file and row. Returns ``(None, why)`` then.
    """
    # the spatial extension takes ~0.3 s to load: only when a source or the output has geometry
    con = connect(staging, opts, spatial=False, streamed=True)
    spatial = False
    # numba serves point records with H3 cells twice: their cells (spacelink.h3_cells_arrow, which
    # uses h3numba where numba can be imported) and the text values that need cleaning (cleannumba,
    # see lazy_text); without numba the cells come from h3-py and all text is cleaned in SQL
    # (and the personal-data screen of every text value, which the commit would otherwise do: numba
    # is loaded there anyway, after the pass instead of beside it), with or without H3 cells
    numba_ok = sch.geometry == "point" and importlib.util.find_spec("numba") is not None
    # a one-column key whose values arrive strictly ascending (ids exported in order) has no duplicates:
    # the Arrow path watches for that, and the hash aggregate over the written files is then skipped
    key_order = _KeyOrder(sch.key[0]) if len(sch.key) == 1 else None
    if numba_ok and any(readers.detect_format(f) in ("csv", "parquet", "xlsx", "xls", "json") for f in files):
        # load numba (~0.7 s) in a thread while DuckDB sniffs and reads
        threading.Thread(target=_warm_numba, args=(opts.h3_res is not None,), name="citytwin-numba",
                         daemon=True).start()

    def need_spatial() -> None:
        nonlocal spatial
        if not spatial:
            con.execute(f"LOAD '{duck.spatial_extension_path()}'")
            spatial = True

    out_dir = staging / "data"
    out_dir.mkdir(exist_ok=True)
    notes: list[str] = []
    columns_meta: dict[str, dict[str, Any]] = {}
    parts: list[Path] = []
    # text columns that may hold personal data, from the Arrow path's scan; None once a part was
    # written another way (the commit then screens every text column)
    personal: set[str] | None = set() if numba_ok else None
    kept = 0
    layout = "long"
    plans: list[Plan] = []
    covers: set[str] = set()  # covering columns written (not data columns of the version)
    try:
        for gi, group in enumerate(_csv_groups(files, opts)):
            path = group[0]
            say(f"reading {path.name}" + (f" and {len(group) - 1} more" if len(group) > 1 else ""))
            if readers.detect_format(path) not in ("csv", "xlsx", "xls", "json") and not _plain_parquet(group):
                need_spatial()
            src = readers.open_source(con, path, sheet=opts.sheet, layer=opts.layer, encoding=opts.encoding,
                                      staging=staging, delimiter=None, header=opts.header, stream=True,
                                      more=group[1:])
            plan = plan_columns(src, sch, user_units=opts.units_map, crs=opts.crs,
                                geometry_policy=opts.geometry_policy, column_map=opts.column_map)
            if any(c.name == "adcode" for c in plan.columns):
                raise Fallback("administrative codes are resolved on the staged table")
            # point records go through Arrow (see copy_arrow): geometry and H3 cells added outside SQL.
            # Other records stay in DuckDB's COPY, which writes them as fast (Beijing air, 5M
            # observations: 2.1-2.4 s either way) without the round trip.
            points = plan.lonlat is not None and not plan.geometry
            if plan.geometry:
                need_spatial()
            for f in group:
                notes += [f"{f.name}: {n}" for n in src.notes + plan.notes]
            layout = plan.layout
            plans.append(plan)
            view = f"({src.sql})" if src.sql else f"src_{gi}"
            if not src.sql:
                con.register(view, src.relation)
            # text cleaned after the query (numba finds the values that need it) where numba is in use
            lazy_src, lazy_out = lazy_text(plan) if points and numba_ok else (set(), {})
            # zero-padded: the dataset's files are read in name order
            part = out_dir / f"part-{gi:05d}.parquet"
            written = None
            if blocks.blockable(plan):  # a wide file: one query per block of columns
                say(f"writing {part.name} in blocks of {blocks.COLUMN_BLOCK} columns")
                written, block_parts = _copy_blocks(con, plan, view, gi, part, opts, need_spatial)
                if ((spatial and not points) or (points and geoparquet.INGEST_POINTS)) and written \
                        and block_parts == [part]:  # covered as one query's file is
                    need_spatial()
                    covers.add(geoparquet.cover_file(con, part, PARQUET_WRITE, points=geoparquet.INGEST_POINTS) or "")
                if key_order is not None:
                    key_order.ascending = False
                personal = None
                kept += written
                parts += block_parts
                note_columns(columns_meta, plan, opts.h3_res)
                continue
            sql = build_sql(plan, view, gi, h3_resolution=None if points else opts.h3_res,
                            geometry_policy=opts.geometry_policy, records=False, point_geometry=not points,
                            lazy=lazy_src)
            guarded = (f"SELECT * EXCLUDE (_file, _row, _reason, _record, _column) FROM ({sql}) "
                       f"WHERE CASE WHEN _reason IS NULL THEN TRUE ELSE error({lit(_QUARANTINE_NEEDED)}) END")
            say(f"writing {part.name}")
            if points:
                written = copy_arrow(con, guarded, part, lonlat=plan.lonlat, h3_res=opts.h3_res,
                                     key_order=key_order, lazy_text=lazy_out, personal=personal,
                                     covers=covers if geoparquet.INGEST_POINTS else None)
            if written is None:  # not points, or column types pyarrow cannot write as DuckDB does
                personal = None
                if key_order is not None:
                    key_order.ascending = False
                if points:
                    need_spatial()
                    sql = build_sql(plan, view, gi, h3_resolution=opts.h3_res, geometry_policy=opts.geometry_policy,
                                    records=False)
                    guarded = (f"SELECT * EXCLUDE (_file, _row, _reason, _record, _column) FROM ({sql}) WHERE "
                               f"CASE WHEN _reason IS NULL THEN TRUE ELSE error({lit(_QUARANTINE_NEEDED)}) END")
                res = con.execute(f"COPY ({guarded}) TO '{part}' ({PARQUET_WRITE})").fetchone()
                written = int(res[0]) if res else 0
                if spatial and written:  # GeoParquet 1.1, covering, Hilbert order (points: geoparquet.INGEST_POINTS)
                    covers.add(geoparquet.cover_file(con, part, PARQUET_WRITE, points=geoparquet.INGEST_POINTS) or "")
            kept += written
            parts.append(part)
            note_columns(columns_meta, plan, opts.h3_res)
        files_sql = "[" + ", ".join(lit(str(p)) for p in parts) + "]"
        keep_cols = [c for c in con.sql(f"SELECT * FROM read_parquet({files_sql}) LIMIT 0").columns if c not in covers]
        scan = f"read_parquet({files_sql})"
        say("checking keys")
        key = [k for k in sch.key if k in keep_cols]
        where = ""
        if layout == "wide" and sch.name == "sensor_observation":
            key = ["entity", "time"]
            props = {tuple(m[1] for m in p.melt) for p in plans}
            if len(props) != 1:
                key = ["entity", "property", "time"]
            else:  # every source row gave one observation of each property: check source rows
                where = f" AND property = {lit(next(iter(props))[0])}"
        if key_order is not None and key_order.ascending and key == [key_order.column] and kept:
            key = []  # every part went through the Arrow path with the key strictly ascending
        if key:
            notnull = " AND ".join(f"{q(k)} IS NOT NULL" for k in key)
            # grouping by a 64-bit hash of the key is cheaper than by the key; a collision (p ~ n²/2^65)
            # only sends the ingest to the staged pipeline, which compares the keys themselves
            dup = con.sql(f"SELECT count(*) FROM (SELECT 1 FROM {scan} WHERE {notnull}{where} GROUP BY "
                          f"hash({', '.join(q(k) for k in key)}) HAVING count(*) > 1)").fetchone()
            if dup and dup[0]:
                raise Fallback(f"duplicate keys ({', '.join(key)})")
        extent = None
        if "geometry" in keep_cols:
            boxes = []
            for p in parts:
                meta = con.sql("SELECT value FROM parquet_kv_metadata(?) WHERE key = 'geo'",
                               params=[str(p)]).fetchone()
                bbox = json.loads(meta[0]).get("columns", {}).get("geometry", {}).get("bbox") if meta else None
                if bbox and len(bbox) == 4:
                    boxes.append([float(x) for x in bbox])
            if boxes:
                extent = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                          max(b[3] for b in boxes)]
        tmin = tmax = None
        tcol = next((c for c in ("time", "created", "year") if c in keep_cols), None)
        if tcol and kept:
            r = con.sql(f"SELECT CAST(min({q(tcol)}) AS VARCHAR), CAST(max({q(tcol)}) AS VARCHAR) "
                        f"FROM {scan}").fetchone()
            tmin, tmax = (r[0], r[1]) if r else (None, None)
        qfile = staging / "quarantine.parquet"
        con.execute(f"COPY (SELECT CAST(NULL AS VARCHAR) AS file, CAST(NULL AS BIGINT) AS row, "
                    f"CAST(NULL AS VARCHAR) AS field, CAST(NULL AS VARCHAR) AS reason, "
                    f"CAST(NULL AS VARCHAR) AS record WHERE FALSE) TO '{qfile}' (FORMAT parquet)")
    except Fallback as exc:
        return None, f"streamed pass stopped ({exc}); records checked and numbered in the staged pipeline"
    except (duckdb.Error, InputError) as exc:
        # a record to quarantine (the guard's error), or a read problem (ragged rows, bad bytes...):
        # the staged pipeline numbers the records and reports each one, or raises the full error
        why = ("a record needs quarantine" if _QUARANTINE_NEEDED in str(exc) else
               (exc.message if isinstance(exc, InputError) else readers.duck_message(exc))[:200])
        return None, f"streamed pass stopped ({why}); records checked and numbered in the staged pipeline"
    finally:
        con.close()
    return Outcome(out_dir=out_dir, qfile=qfile, kept=kept, quarantined=0, reasons={}, extent=extent,
                    tmin=tmin, tmax=tmax, keep_cols=keep_cols, columns_meta=columns_meta, notes=notes,
                    layout=layout, pipeline="streamed",
                    personal_candidates=sorted(personal) if personal is not None else None), None


#: with :data:`geoparquet.INGEST_POINTS` (the covering of point records, off by default), whether the
#: Arrow path also puts each chunk of more than one row group in Hilbert order, in row groups of
#: :data:`geoparquet.ROW_GROUP_ROWS`, so that a small bbox read skips most row groups (2M random
#: points: 4 of 31 read, the read ~10x faster). Without the order the covering gains a bbox read
#: little (every row group still overlaps the box) and makes the file ~70 % larger (random doubles),
#: with it ~55 %; the order costs ~20 % more CPU on 2M POIs (keys, sort and above all reordering
#: every column). ``bench/point_covering.py`` measures the three ways (off, covering, covering and order)
ORDER_POINTS = True
#: rows per chunk of records written in one go through Arrow (~35 MB for POIs): large enough that
#: the per-chunk overheads vanish, small enough to keep memory flat
POINT_CHUNK = 1 << 19
#: rows per Arrow batch read from the checked records
PIPE_BATCH = 1 << 16
#: chunks of the Arrow path handed on and not yet written (see :func:`copy_arrow`)
PIPE_DEPTH = 2


def _plain_parquet(files: list[Path]) -> bool:
    """Parquet files without GeoParquet metadata (no spatial extension needed to read them)."""
    import pyarrow.parquet as pq

    try:
        return all(readers.detect_format(f) == "parquet" and b"geo" not in (pq.read_metadata(f).metadata or {})
                   for f in files)
    except Exception:  # unreadable here: the reader reports it properly
        return False


def _copy_blocks(con: duckdb.DuckDBPyConnection, plan: Plan, view: str, file_index: int, path: Path,
                 opts: PipelineOptions, need_spatial: Callable[[], None]) -> tuple[int, list[Path]]:
    """Write the checked records of a wide plan in column blocks (:mod:`.blocks`), one guarded query
    per block, in row order. Returns the rows written and the part files.

    Long records: the blocks are joined side by side into ``path``; the first block carries the
    coordinates or geometry (and gets its point geometry and H3 cells as a narrow file would,
    :func:`copy_arrow`). Melted sensor files: each block of value columns is a part file of its own
    (``path``'s name with the block number), its observations after the previous block's."""
    import pyarrow.parquet as pq

    rows = blocks.by_rows(plan)
    group = blocks.rows_per_group(min(len(plan.columns), blocks.COLUMN_BLOCK))
    write = PARQUET_WRITE.replace("ROW_GROUP_SIZE 122880", f"ROW_GROUP_SIZE {group}")
    files: list[Path] = []
    written = 0
    first: list[str] = []

    def guard(sql: str) -> str:
        return (f"SELECT * EXCLUDE (_file, _row, _reason, _record, _column) FROM ({sql}) "
                f"WHERE CASE WHEN _reason IS NULL THEN TRUE ELSE error({lit(_QUARANTINE_NEEDED)}) END")

    try:
        for k, sub in enumerate(blocks.column_blocks(plan)):
            f = (path.with_name(f"{path.stem}-{k:05d}.parquet") if rows
                 else path.with_name(f"{path.stem}.block{k:05d}.parquet"))
            files.append(f)
            n: int | None = None
            if sub.lonlat and not sub.geometry:
                # points: geometry and H3 cells added to the Arrow chunks, as for a narrow file
                n = copy_arrow(con, guard(build_sql(sub, view, file_index, h3_resolution=None,
                                                    geometry_policy=opts.geometry_policy, records=False,
                                                    point_geometry=False)), f, lonlat=sub.lonlat, h3_res=opts.h3_res)
                if n is None:
                    need_spatial()
            if n is None:
                sql = build_sql(sub, view, file_index, h3_resolution=opts.h3_res if (sub.lonlat or sub.geometry)
                                else None, geometry_policy=opts.geometry_policy, records=False)
                res = con.execute(f"COPY ({guard(sql)}) TO '{f}' ({write})").fetchone()
                n = int(res[0]) if res else 0
            if k == 0:
                first = pq.ParquetFile(f).schema_arrow.names
            written = written + n if rows else n
        if rows:
            return written, files
        schema = pa.schema([fld for f in files for fld in pq.ParquetFile(f).schema_arrow])
        text = [fld.name for fld in schema if fld.name != "h3" and (pa.types.is_string(fld.type)
                                                                   or pa.types.is_large_string(fld.type))]
        written = blocks.stitch(files, path, write_options={"compression": "zstd", "compression_level": 1,
                                                             "use_dictionary": text or False},
                                order=blocks.output_order(plan, first))
        return written, [path]
    finally:
        if not rows:
            for f in files:
                f.unlink(missing_ok=True)


def _clean_lazy(table: pa.Table, name: str, required: bool) -> pa.Table:
    """``table`` with the values of text column ``name`` cleaned as :func:`clean_text` would have."""
    import pyarrow.compute as pc

    from citytwin.foundation import cleannumba

    column = table.column(name)
    mask = cleannumba.dirty_mask(column, whitespace=WHITESPACE, tokens=MISSING_TOKENS)
    if not mask.any():
        return table
    con = duckdb.connect()
    try:
        con.register("dirty", pa.table({"v": column.take(pa.array(np.flatnonzero(mask)))}))
        cleaned = con.sql(f"SELECT {clean_text('v')} AS v FROM dirty").to_arrow_table().column(0).combine_chunks()
    finally:
        con.close()
    if required and cleaned.null_count:
        raise Fallback("a record needs quarantine")
    fixed = pc.replace_with_mask(column.combine_chunks(), pa.array(mask), cleaned)
    return table.set_column(table.schema.get_field_index(name), name, fixed)


def _warm_numba(h3: bool = True) -> None:
    """Import numba and load the compiled cleaning (and, with ``h3``, H3) functions (~0.7 s, from numba's cache)."""
    try:
        from citytwin.foundation import cleannumba

        cleannumba.may_hold_personal_data(pa.array(["a"]))
        if h3:
            from citytwin.foundation import spacelink

            spacelink.h3_cells_arrow(np.array([116.4]), np.array([39.9]), 9)
        if geoparquet.INGEST_POINTS and ORDER_POINTS:  # the Hilbert keys of a large point file's chunks
            from citytwin.foundation import hilbertnumba

            hilbertnumba.keys(np.array([116.4]), np.array([39.9]), (116.0, 39.0, 117.0, 40.0))
    except Exception:  # a warm-up only: the real call reports any problem
        pass


@dataclass
class _KeyOrder:
    """Whether the values of a one-column key seen so far are strictly ascending (so all distinct)."""

    column: str
    ascending: bool = True
    last: Any = None

    def see(self, values: pa.ChunkedArray) -> None:
        """Take the next values of the key column, in row order."""
        import pyarrow.compute as pc

        if not self.ascending or len(values) == 0:
            return
        v = values.combine_chunks()
        if v.null_count or (self.last is not None and not pc.greater(v[0], self.last).as_py()) or \
                (len(v) > 1 and not pc.all(pc.greater(v.slice(1), v.slice(0, len(v) - 1))).as_py()):
            self.ascending = False
            return
        self.last = v[len(v) - 1]


def copy_arrow(con: duckdb.DuckDBPyConnection, checked_sql: str, path: Path, *,
                lonlat: tuple[str, str] | None = None, h3_res: int | None = None,
               key_order: _KeyOrder | None = None, lazy_text: dict[str, bool] | None = None,
               personal: set[str] | None = None, covers: set[str] | None = None) -> int | None:
    """Write the checked records of ``checked_sql`` to ``path`` with pyarrow; for points, add geometry and H3.

    The records stream out of DuckDB as Arrow (the query runs on all threads, ahead of the reader
    by the streaming buffer) in chunks of :data:`POINT_CHUNK` rows. With ``lonlat``, each chunk
    gets its point geometry (:func:`spacelink.points_wkb`) and, with ``h3_res``, its H3 cells
    (:func:`spacelink.h3_cells_arrow`: h3numba, GIL released; h3-py without numba) in a thread of its own, and a pyarrow
    ``ParquetWriter`` writes it in another, while the next chunks are read; for points the
    GeoParquet ``geo`` metadata (bbox of the whole file) is added at the end. Row order is kept;
    memory stays bounded by :data:`PIPE_DEPTH` chunks in flight.
    Returns the number of rows written, or None (nothing written) when a column has a type that
    pyarrow would write differently from DuckDB (:func:`arrow_writable`): the caller then uses ``COPY``.
    ``key_order`` sees the key column of every chunk (see :func:`run_streamed`'s duplicate check).
    ``lazy_text`` names text columns the query left uncleaned (:func:`.plan.lazy_text`; True where the
    value is required): their values that need cleaning are found by :func:`cleannumba.dirty_mask`
    and cleaned by :func:`clean_text` in DuckDB; a required one that becomes missing raises
    :class:`Fallback` (the staged pipeline quarantines it); where cleannumba cannot be imported
    nothing is written and None returned (the caller then cleans in SQL, with ``COPY``).
    ``personal`` (a set) receives the text columns in which personal data may hide
    (:func:`cleannumba.may_hold_personal_data` on every value, in the chunk's thread), so that the
    commit's regular-expression scan (:func:`~citytwin.foundation.workspace.detect_personal_columns`)
    reads only those; where cleannumba cannot be imported nothing is written and None returned.
    An error raised by ``checked_sql`` (the quarantine guard) propagates.
    ``covers`` (a set, with ``lonlat``): the file is GeoParquet 1.1 with a bbox covering
    (:func:`geoparquet.point_covering`: the coordinates themselves, no bounds computed) whose name is
    added to the set. With :data:`ORDER_POINTS`, in row groups of :data:`geoparquet.ROW_GROUP_ROWS`, a
    chunk of more rows than that first put in Hilbert order (:func:`geoparquet.point_order`), so each of
    its row groups covers a compact part of the chunk's extent and a small bbox read skips most of them
    (row order then kept only within files of one row group; the records are the same).

    Each step replaces a slower one, measured on 3M POIs (2 cores, DuckDB 1.5.5, pyarrow 26):

    * H3 in SQL arithmetic (the former ``h3sql``, ~150 vectorised operations per point) cost ~2.1
      CPU-µs per point, h3numba ~0.3 (same cells, tests). The DuckDB UDF ``h3_cell`` (the staged
      pipeline's) adds DuckDB's arrow UDF glue, ~0.7 CPU-µs per row.
    * DuckDB's point → WKB serialisation costs ~0.35 CPU-µs per row, numpy's ~0.02.
    * DuckDB's Parquet writer spends 3.5 CPU-s on these 3M rows (7 columns, zstd level 1), pyarrow's
      1.4 for the same encodings and size: dictionary pages for the text columns with few values
      (:data:`DICTIONARY_MAX_VALUES`). Per-column settings (:func:`arrow_write_options`) take
      another ~1 CPU-s off 10M points at the same file size.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if lazy_text or personal is not None:
        try:  # numba is imported when needed; see _warm_numba
            from citytwin.foundation import cleannumba
        except Exception:  # numba unusable here (e.g. no writable cache folder): text cleaned in SQL instead
            return None
    # DuckDB runs a streamed query ahead of its reader only as far as this buffer (default ~1 MB,
    # which leaves it nearly single-threaded); 64 MB keeps all threads busy at bounded memory
    con.execute("SET streaming_buffer_size = '64MB'")
    reader = con.execute(checked_sql).to_arrow_reader(PIPE_BATCH)
    if not all(arrow_writable(t) for t in reader.schema.types):
        reader.close()
        return None
    names = reader.schema.names
    boxes: list[list[float]] = []
    if lonlat:
        from citytwin.foundation import spacelink
    # the covering column (GeoParquet 1.1) of point records, and the rows per row group
    cover = geoparquet.covering_name("geometry", [*names, "geometry", "h3"]) \
        if lonlat and covers is not None else None
    order_chunks = bool(cover) and ORDER_POINTS
    group_rows = geoparquet.ROW_GROUP_ROWS if order_chunks else 122_880

    def complete(batches: list[pa.RecordBatch]) -> pa.Table:
        """The chunk, with its lazy text cleaned, its point geometry (WKB) and H3 cells for points."""
        table = pa.Table.from_batches(batches, schema=reader.schema)
        batches.clear()  # the table holds them; reordered below, the originals are then freed
        for name, required in (lazy_text or {}).items():
            table = _clean_lazy(table, name, required)
        if personal is not None:
            for name, typ in zip(table.column_names, table.schema.types, strict=True):
                if name not in personal and (pa.types.is_string(typ) or pa.types.is_large_string(typ)) \
                        and cleannumba.may_hold_personal_data(table.column(name)):
                    personal.add(name)
        if key_order is not None:
            if key_order.column in table.column_names:
                key_order.see(table.column(key_order.column))
            else:
                key_order.ascending = False
        if not lonlat:
            return table
        x, y = as_lonlat(table.column(lonlat[0]).to_numpy(), table.column(lonlat[1]).to_numpy())
        if order_chunks and table.num_rows > geoparquet.ROW_GROUP_ROWS:  # several row groups: Hilbert order
            order = geoparquet.point_order(x, y)
            table, x, y = table.take(pa.array(order)), x[order], y[order]
        wkb, bbox = spacelink.points_wkb(x, y)
        if bbox:
            boxes.append(bbox)
        table = table.append_column("geometry", wkb)
        extra = [cover] if cover else []
        if cover:
            table = table.append_column(cover, geoparquet.point_covering(x, y))
        if h3_res is None:  # no cells (or an "h3" column of the source, kept last as DuckDB would)
            return table.select([*[c for c in names if c != "h3"], "geometry", *(["h3"] if "h3" in names else []),
                                 *extra])
        # one thread: the pipeline's other stages keep the other cores busy
        table = table.append_column("h3", spacelink.h3_cells_arrow(x, y, h3_res, threads=1))
        return table.select([*names, "geometry", "h3", *extra])

    writer: pq.ParquetWriter | None = None
    # three stages in three threads, each in chunk order: this thread reads DuckDB's Arrow batches,
    # one thread completes chunks (geometry, H3), one writes them; at most PIPE_DEPTH chunks are
    # between reader and file, so memory stays flat. The reader alone is DuckDB's critical path
    # (its export to Arrow runs in the fetching thread), so it does nothing else.
    completer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citytwin-points")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citytwin-writer")
    inflight: deque[Future[int]] = deque()
    written = 0

    def write(done: Future[pa.Table]) -> int:
        nonlocal writer
        table = done.result()
        if writer is None:
            # dictionary pages for text columns with few distinct values in the first chunk (categories,
            # stations, units); trying a dictionary on every column and giving it up costs 25 % more CPU
            text = [c for c, t in zip(table.column_names, table.schema.types, strict=True)
                    if c != "h3" and (pa.types.is_string(t) or pa.types.is_large_string(t))]
            few = [c for c in text if pc.count_distinct(table.column(c)).as_py() <= DICTIONARY_MAX_VALUES]
            floats = [c for c, t in zip(table.column_names, table.schema.types, strict=True)
                      if pa.types.is_floating(t)]
            # the covering's options by its fields' paths (doubles, min/max statistics: what a bbox read prunes by)
            leaves = [c for c in table.column_names if c != cover]
            if cover:
                floats += geoparquet.covering_paths(cover)
                leaves += geoparquet.covering_paths(cover)
            writer = pq.ParquetWriter(path, table.schema, store_schema=False, use_dictionary=few,
                                      **arrow_write_options(leaves, floats))
        writer.write_table(table, row_group_size=group_rows)
        return int(table.num_rows)

    def put(batches: list[pa.RecordBatch]) -> None:
        nonlocal written
        inflight.append(pool.submit(write, completer.submit(complete, batches)))
        while len(inflight) > PIPE_DEPTH:
            written += inflight.popleft().result()

    try:
        chunk: list[pa.RecordBatch] = []
        size = 0
        for batch in reader:
            chunk.append(batch)
            size += batch.num_rows
            if size >= POINT_CHUNK:
                put(chunk)
                chunk, size = [], 0
        if chunk or not (inflight or written):
            put(chunk)
        while inflight:
            written += inflight.popleft().result()
        assert writer is not None
        if lonlat:
            # the GeoParquet metadata DuckDB's spatial writer gives a GEOMETRY column of points (1.0.0),
            # or 1.1.0 with the covering
            extent = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                      max(b[3] for b in boxes)] if boxes else None
            writer.add_key_value_metadata({"geo": json.dumps(geoparquet.geo_metadata(
                "geometry", ["Point"] if boxes else [], extent, covering=cover), separators=(",", ":"))})
            if cover and covers is not None:
                covers.add(cover)
    finally:
        completer.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)
        if writer is not None:
            writer.close()
        reader.close()
        pa.default_memory_pool().release_unused()
    return written
