"""Which text columns of a Parquet version may hold personal data (a cheap screen before the
regular expressions of :func:`citytwin.foundation.workspace.detect_personal_columns`).

The screen is :func:`citytwin.foundation.cleannumba.may_hold_personal_data` (an ``@`` or 11 ASCII
digits in one value, ~1 ns per byte with numba); Parquet's dictionary pages (stations, units,
categories) are screened in Python instead (:func:`may_hold_personal_py`), which spares numba's
~0.4 CPU-s load for files whose text columns have few values (the Beijing air data: 0.46 -> 0.05
CPU-s at commit).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

__all__ = ["PY_SCREEN_VALUES", "may_hold_personal_py", "screen_personal"]


def screen_personal(parquet_glob: str, columns: list[str]) -> list[str]:
    """The text columns in which personal data may hide, by a byte scan of their values
    (:func:`citytwin.foundation.cleannumba.may_hold_personal_data`: an ``@`` or 11 digits in one
    value), so that the regular expressions run only on those. Columns are read as dictionaries
    (Parquet's dictionary pages: stations, units, categories): a small dictionary is screened in
    Python (:func:`may_hold_personal_py`, no numba load), the rest with numba. Where numba is
    needed and missing, the column is kept."""
    if not columns:
        return columns
    import glob as _glob

    import pyarrow.dataset as pads

    files = sorted(_glob.glob(parquet_glob))
    if not files:
        return columns
    left = list(columns)
    keep: list[str] = []
    fmt = pads.ParquetFileFormat(read_options=pads.ParquetReadOptions(dictionary_columns=left))
    for batch in pads.dataset(files, format=fmt).to_batches(columns=left, batch_size=1 << 20):
        for c in list(left):
            col = batch.column(c)
            if pa.types.is_dictionary(col.type):
                col = col.dictionary
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                continue
            if len(col) <= PY_SCREEN_VALUES:
                hit = may_hold_personal_py(col.to_pylist())
            else:
                try:
                    from citytwin.foundation.cleannumba import may_hold_personal_data
                except Exception:  # numba missing or its cache unwritable: the SQL scan looks at it
                    hit = True
                else:
                    hit = may_hold_personal_data(col)
            if hit:
                keep.append(c)
                left.remove(c)
        if not left:
            break
    return [c for c in columns if c in keep]


#: dictionaries up to this many values are screened in Python (numba's load costs ~0.4 CPU-s)
PY_SCREEN_VALUES = 20_000


def may_hold_personal_py(values: Sequence[str | None]) -> bool:
    """:func:`citytwin.foundation.cleannumba.may_hold_personal_data` in Python, for a few values."""
    return any(bool(v) and ("@" in v or sum(v.count(d) for d in "0123456789") >= 11) for v in values if v)
