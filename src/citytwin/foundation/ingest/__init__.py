"""Ingest (A1, A2, A4, A7): read a file, map it to a schema, validate, link to space, store a version.

The whole pipeline is one DuckDB query per file, streamed and spilled to disk, so memory
stays flat as files grow:

1. a reader (:mod:`citytwin.foundation.readers`) gives raw records with their source row;
2. headers are mapped to schema fields (aliases, unit suffixes such as ``_万元``): :mod:`.plan`;
3. each field is cast, unit-converted and checked (type, range, required, choices, future
   time, geometry validity); every failed check writes a reason ``field: what is wrong``:
   :mod:`.exprs` (SQL fragments) and :mod:`.query` (the validation query);
4. records with a reason go to quarantine with file, row, field, reason and the raw record;
   the others are kept; duplicate keys are quarantined after the first occurrence;
5. coordinates become point geometry (GCJ-02 converted when asked) and H3 cells
   (:func:`citytwin.foundation.spacelink.h3_cells_arrow`);
6. the kept records are written as (Geo)Parquet (:mod:`.parquet`) into a staging folder that
   becomes the next version only when complete; the catalog records counts, units, extent and
   time range (:mod:`.run`).

Two pipelines run that query: the streamed pass (:mod:`.streamed`, first; no row numbers) keeps
clean files, and the staged pipeline (:mod:`.staged`) numbers every record and quarantines each bad
one. Nothing is half-written: a file that cannot be read at all raises
:class:`~citytwin.foundation.errors.InputError` and leaves no version behind.

Options: :class:`IngestOptions`, passed as ``options=`` or as keyword arguments of :func:`ingest`.
"""

from __future__ import annotations

from citytwin.foundation.ingest.exprs import MISSING_TOKENS, WHITESPACE
from citytwin.foundation.ingest.options import STAGED_MEMORY, STREAM_MEMORY, IngestOptions, IngestResult
from citytwin.foundation.ingest.parquet import PARQUET_WRITE
from citytwin.foundation.ingest.run import ingest

__all__ = [
    "MISSING_TOKENS",
    "PARQUET_WRITE",
    "STAGED_MEMORY",
    "STREAM_MEMORY",
    "WHITESPACE",
    "IngestOptions",
    "IngestResult",
    "ingest",
]
