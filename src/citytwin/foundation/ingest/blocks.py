"""Wide files in column blocks: bounded memory and time for any number of columns (issue 12).

DuckDB binds and plans the validation query (:func:`~citytwin.foundation.ingest.query.build_sql`) in
time and memory that grow faster than its expressions: a 2,000-column CSV of 20 rows needed more than
the streamed pass's 512 MB, and 5,000 columns ran out of memory altogether. A plan of many plain
columns is therefore split (:func:`column_blocks`) into plans of at most :data:`COLUMN_BLOCK`
output columns, each with only the source columns it reads; each block's query writes its own
Parquet file in row order (``preserve_insertion_order``), and :func:`stitch` joins the files side
by side, row by row, into the version's file with pyarrow, in row groups sized to the width
(:func:`rows_per_group`), so that memory follows the block width, not the file's.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from citytwin.foundation.ingest.plan import Plan
from citytwin.foundation.sql import ident as q

__all__ = ["COLUMN_BLOCK", "GROUP_VALUES", "blockable", "column_blocks", "rows_per_group", "stitch"]

#: output columns per block query (DuckDB plans 256 columns of a numeric panel in ~0.3 s)
COLUMN_BLOCK = 256
#: values per Parquet row group of a wide file (rows × columns): ~30 MB of doubles in flight per group
GROUP_VALUES = 4_000_000

_RAW_REF = re.compile(r'"r:(?:[^"]|"")*"')


def blockable(plan: Plan) -> bool:
    """Whether the plan is wide enough to need blocks and simple enough to have them: plain long
    records (no melt, no geometry or points, no per-row units) of more than :data:`COLUMN_BLOCK` columns."""
    return (len(plan.columns) > COLUMN_BLOCK and plan.layout == "long" and not plan.melt and plan.geometry is None
            and plan.lonlat is None and plan.unit_column is None)


def column_blocks(plan: Plan, size: int = COLUMN_BLOCK) -> list[Plan]:
    """``plan`` as plans of at most ``size`` output columns, in column order, each with the source
    columns (``plan.raw``) its columns read. The first block also carries the reader's reason column."""
    blocks: list[Plan] = []
    for start in range(0, len(plan.columns), size):
        cols = plan.columns[start:start + size]
        refs = set(_RAW_REF.findall(" ".join(t for c in cols for t in (c.expr, *c.checks, c.guard or ""))))
        blocks.append(replace(plan, columns=cols, raw={n: e for n, e in plan.raw.items() if q("r:" + n) in refs},
                              notes=[], reason_column=plan.reason_column if start == 0 else None))
    return blocks


def rows_per_group(columns: int) -> int:
    """Rows per Parquet row group for a file ``columns`` wide (:data:`GROUP_VALUES` values, 1,024 to 122,880 rows)."""
    return max(1024, min(122_880, GROUP_VALUES // max(1, columns)))


def stitch(files: list[Path], path: Path, *, write_options: dict[str, object] | None = None) -> int:
    """Join Parquet files of the same rows (in the same order) side by side into ``path``; return the rows.

    Reads every file a row group's worth at a time (:func:`rows_per_group` of the joined width), so
    memory stays bounded by one row group of the whole width. Raises ``ValueError`` when the files do
    not hold the same number of rows.
    """
    import pyarrow.parquet as pq

    readers = [pq.ParquetFile(f) for f in files]
    counts = {r.metadata.num_rows for r in readers}
    if len(counts) != 1:
        raise ValueError(f"column blocks differ in rows: {sorted(counts)}")
    schema = pa.schema([f for r in readers for f in r.schema_arrow])
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
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=step)
            written += want
    return written
