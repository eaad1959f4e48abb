"""A source file opened for ingest (:class:`Source`), shared by the readers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

__all__ = ["Source"]


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
    #: numbers are written with a decimal comma ("1,5"; see :func:`detect_decimal_comma`)
    decimal_comma: bool = False
    #: per sampled text column: (non-missing values, of which numbers); see :func:`infer_types`
    type_stats: dict[str, tuple[int, int]] = field(default_factory=dict)
    sql: str | None = None  # SQL text of the raw records, when they sit in a table (no view needed)
    temp_table: str | None = None  # dropped by ingest once the records are staged
    #: GIS layers: (xmin, ymin, xmax, ymax) of all features, in the layer's own coordinates
    bounds: tuple[float, float, float, float] | None = None
    #: GIS layers: features per geometry type (``{"Polygon": 3, "Point": 1}``)
    geometry_types: dict[str, int] = field(default_factory=dict)
    #: a column of ``relation`` (not in ``columns``) with a reason the reader found for a record, NULL
    #: elsewhere: the record is quarantined with it (an Excel formula cell without a cached value)
    reason_column: str | None = None

    def types_of(self, columns: Sequence[str]) -> dict[str, str]:
        """``DOUBLE`` or ``VARCHAR`` for each of ``columns`` (see :func:`infer_types`)."""
        missing = [c for c in columns if c not in self.sniffed_types]
        if missing and self.type_sampler is not None:
            self.sniffed_types.update(self.type_sampler(missing))
        return {c: self.sniffed_types.get(c, "VARCHAR") for c in columns}


