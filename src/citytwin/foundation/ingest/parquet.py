"""How the ingest writes Parquet: DuckDB's ``COPY`` options and the pyarrow writer settings of the Arrow path."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

__all__ = ["DICTIONARY_MAX_VALUES", "GEOMETRY_ZSTD_LEVEL", "PARQUET_WRITE", "arrow_writable", "arrow_write_options"]

#: how every dataset version is written. zstd level 1 rather than DuckDB's default 3, and dictionary
#: encoding only for columns whose dictionary stays under 4 KB (categories, units, station ids):
#: DuckDB otherwise builds a dictionary for every high-cardinality column (ids, names, geometry, H3)
#: before giving it up. Measured on 3M POIs with geometry and H3 (2 cores): writing takes 35 % less
#: CPU, files are ~10 % larger (bench/ingest_bench.py reports both DuckDB baselines).
PARQUET_WRITE = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, DICTIONARY_SIZE_LIMIT 4096, ROW_GROUP_SIZE 122880"


#: a text column is dictionary-encoded when its first chunk has at most this many distinct values
DICTIONARY_MAX_VALUES = 1000
#: zstd level of the WKB point column in the Arrow path. Its bytes are a repeated 9-byte header and
#: random coordinate bits: level -3 writes it in ~40 % of level 1's CPU for 1 byte more per point
#: (measured on 2M Beijing POIs: 1.33 -> 0.53 CPU-s per 10M points, 14.0 -> 15.0 bytes per point).
GEOMETRY_ZSTD_LEVEL = -3


def arrow_write_options(columns: list[str], floats: list[str]) -> dict[str, Any]:
    """pyarrow ``ParquetWriter`` options of the Arrow path (:func:`citytwin.foundation.ingest.streamed.copy_arrow`).

    zstd level 1 as :data:`PARQUET_WRITE`, the geometry at :data:`GEOMETRY_ZSTD_LEVEL`;
    ``BYTE_STREAM_SPLIT`` for floating-point columns (coordinates, measurements): zstd then sees the
    exponent bytes of all values together and the noisy mantissa bytes apart, so it compresses them
    smaller (6.8 -> 6.2 bytes per coordinate) in ~60 % of the CPU (DuckDB, pyarrow and GeoPandas
    read it); min/max statistics for every column but the geometry and the H3 cell (neither is
    sorted, so their row-group ranges prune nothing; string statistics cost ~0.1 CPU-s per 10M values).
    """
    return {
        "compression": "zstd",
        "compression_level": {c: GEOMETRY_ZSTD_LEVEL if c == "geometry" else 1 for c in columns},
        "column_encoding": {c: "BYTE_STREAM_SPLIT" for c in floats} or None,
        "write_statistics": [c for c in columns if c not in ("geometry", "h3")],
    }


def arrow_writable(t: pa.DataType) -> bool:
    """Whether pyarrow writes Arrow type ``t`` to Parquet as DuckDB reads it back (same SQL type)."""
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_date32(t):
        return True
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return True
    return bool(pa.types.is_timestamp(t) and t.unit == "us")
