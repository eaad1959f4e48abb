"""Wide files in column blocks: bounded memory and time for any number of columns (issue 12).

DuckDB binds and plans the validation query (:func:`~citytwin.foundation.ingest.query.build_sql`) in
time and memory that grow faster than its expressions: a 2,000-column CSV of 20 rows needed more than
the streamed pass's 512 MB, and 5,000 columns ran out of memory altogether. A plan of many plain
columns is therefore split (:func:`column_blocks`) into plans of at most :data:`COLUMN_BLOCK`
output columns, each with only the source columns it reads; each block's query writes its own
Parquet file in row order (``preserve_insertion_order``), and :func:`stitch` joins the files side
by side, row by row, into the version's file with pyarrow, in row groups sized to the width
(:func:`rows_per_group`), so that memory follows the block width, not the file's.

Records with space block too: the coordinates (:func:`anchors`) travel with the first block, the
only one with the plan's geometry or points (and so its H3 cells); :func:`output_order` puts the
joined columns in the order one query gives. Melted sensor files are split by value columns,
every block with the per-row columns, and their observations appended (:func:`by_rows`).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from citytwin.foundation.ingest.plan import Plan
from citytwin.foundation.sql import ident as q

__all__ = ["COLUMN_BLOCK", "GROUP_VALUES", "anchors", "blockable", "by_rows", "column_blocks", "output_order",
           "rows_per_group", "stitch"]

#: output columns (or melted value columns) per block query (DuckDB plans 256 columns of a numeric
#: panel in ~0.3 s)
COLUMN_BLOCK = 256
#: values per Parquet row group of a wide file (rows × columns): ~30 MB of doubles in flight per group
GROUP_VALUES = 4_000_000

_RAW_REF = re.compile(r'"r:(?:[^"]|"")*"')


def blockable(plan: Plan) -> bool:
    """Whether the plan is wide enough to need blocks: more than :data:`COLUMN_BLOCK` output columns
    (long records, with or without coordinates, geometry or a per-row unit) or melted value columns
    (a wide sensor file)."""
    return len(plan.columns) > COLUMN_BLOCK or len(plan.melt) > COLUMN_BLOCK


def by_rows(plan: Plan) -> bool:
    """Whether the blocks of ``plan`` hold different records (melted value columns: the blocks'
    observations are appended) rather than different columns of the same records (joined side by side)."""
    return plan.layout == "wide" and bool(plan.melt)


def anchors(plan: Plan) -> list[str]:
    """Output columns that travel with the first block of long records: the coordinates (with a
    source ``h3`` column, which the point records put after their geometry) and a long sensor file's
    property, value and unit (converted together, row by row)."""
    names: set[str] = set()
    if plan.lonlat:
        names |= {*plan.lonlat, "h3"}
    if plan.unit_column:
        names |= {"property", "value", "unit"}
    return [c.name for c in plan.columns if c.name in names]


def _refs(texts: list[str], raw: dict[str, str]) -> dict[str, str]:
    """The entries of ``raw`` (source column -> cleaned expression) that ``texts`` read as ``"r:col"``."""
    refs = set(_RAW_REF.findall(" ".join(texts)))
    return {n: e for n, e in raw.items() if q("r:" + n) in refs}


def column_blocks(plan: Plan, size: int | None = None) -> list[Plan]:
    """``plan`` as plans of at most ``size`` (default :data:`COLUMN_BLOCK`) output columns, each with
    the source columns (``plan.raw``) its columns read.

    Long records: in column order, except that the :func:`anchors` (coordinates, a sensor file's
    property/value/unit) travel with the first block, which alone keeps the plan's geometry, points,
    per-row unit and the reader's reason column; the other blocks are plain columns, joined to it
    side by side (:func:`stitch`, in :func:`output_order`). Melted sensor files
    (:func:`by_rows`): every block carries all the per-row columns (station, time, coordinates,
    geometry, reader's reason) and at most ``size`` of the melted value columns; the blocks'
    observations are appended.
    """
    size = size or COLUMN_BLOCK
    if by_rows(plan):
        out = []
        for start in range(0, len(plan.melt), size):
            melt = plan.melt[start:start + size]
            texts = [t for c in plan.columns for t in (c.expr, *c.checks, c.guard or "")] + \
                [q("r:" + m[0]) for m in melt]
            out.append(replace(plan, melt=melt, raw=_refs(texts, plan.raw), notes=[]))
        return out
    first = set(anchors(plan))
    rest = [c for c in plan.columns if c.name not in first]
    room = max(1, size - len(first))
    head = {c.name for c in rest[:room]} | first
    groups = [[c for c in plan.columns if c.name in head]] + \
        [rest[i:i + size] for i in range(room, len(rest), size)]
    blocks: list[Plan] = []
    for k, cols in enumerate(groups):
        raw = _refs([t for c in cols for t in (c.expr, *c.checks, c.guard or "")], plan.raw)
        if k == 0:
            blocks.append(replace(plan, columns=cols, raw=raw, notes=[]))
        else:
            blocks.append(replace(plan, columns=cols, raw=raw, notes=[], geometry=None, lonlat=None,
                                  unit_column=None, reason_column=None))
    return blocks


def output_order(plan: Plan, first: list[str]) -> list[str]:
    """The columns of long records joined from blocks, in the order one query over the whole plan
    gives them: the plan's columns, then what the first block (output columns ``first``) adds after
    its own (geometry, H3 cells), in its order."""
    mine = {c.name for c in plan.columns}
    tail = next((i for i, n in enumerate(first) if n not in mine), len(first))
    trailing = first[tail:]
    return [c.name for c in plan.columns if c.name not in trailing] + trailing


def rows_per_group(columns: int) -> int:
    """Rows per Parquet row group for a file ``columns`` wide (:data:`GROUP_VALUES` values, 1,024 to 122,880 rows)."""
    return max(1024, min(122_880, GROUP_VALUES // max(1, columns)))


def stitch(files: list[Path], path: Path, *, write_options: dict[str, object] | None = None,
           order: list[str] | None = None) -> int:
    """Join Parquet files of the same rows (in the same order) side by side into ``path``; return the rows.

    Reads every file a row group's worth at a time (:func:`rows_per_group` of the joined width), so
    memory stays bounded by one row group of the whole width. ``order`` gives the joined columns'
    order (default: file by file). The files' key-value metadata (GeoParquet's ``geo`` of a block
    with geometry) is kept. Raises ``ValueError`` when the files do not hold the same number of rows.
    """
    import pyarrow.parquet as pq

    readers = [pq.ParquetFile(f) for f in files]
    counts = {r.metadata.num_rows for r in readers}
    if len(counts) != 1:
        raise ValueError(f"column blocks differ in rows: {sorted(counts)}")
    fields = [f for r in readers for f in r.schema_arrow]
    where = {f.name: i for i, f in enumerate(fields)}
    pick = [where[n] for n in order] if order is not None else list(range(len(fields)))
    if sorted(pick) != list(range(len(fields))):
        raise ValueError("the column order does not name every column of the blocks once")
    schema = pa.schema([fields[i] for i in pick])
    meta: dict[bytes, bytes] = {}
    for r in readers:
        meta.update({k: v for k, v in (r.metadata.metadata or {}).items() if k != b"ARROW:schema"})
    step = rows_per_group(len(schema))
    iters = [r.iter_batches(batch_size=step) for r in readers]
    pending: list[list[pa.RecordBatch]] = [[] for _ in readers]
    have = [0] * len(readers)
    total = counts.pop()
    written = 0
    with pq.ParquetWriter(path, schema, store_schema=False, **(write_options or {})) as writer:
        while written < total:
            want = min(step, total - written)
            arrays: list[pa.Array] = []
            for i, it in enumerate(iters):
                while have[i] < want:
                    b = next(it)
                    pending[i].append(b)
                    have[i] += b.num_rows
                table = pa.Table.from_batches(pending[i]).combine_chunks()
                head, rest = table.slice(0, want), table.slice(want)
                arrays += [head.column(j).combine_chunks() for j in range(head.num_columns)]
                pending[i] = rest.to_batches()
                have[i] = rest.num_rows
            writer.write_table(pa.Table.from_arrays([arrays[i] for i in pick], schema=schema), row_group_size=step)
            written += want
        if meta:
            writer.add_key_value_metadata({k.decode(): v.decode() for k, v in meta.items()})
    return written
