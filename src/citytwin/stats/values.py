"""Checks of numeric inputs shared by the statistics of the domain packages."""

from __future__ import annotations

from typing import Any

import numpy as np

from citytwin.foundation.errors import InputError

__all__ = ["MISSING_TEXT", "check_values", "not_a_number", "not_numbers", "numeric_column"]

#: Text that means "no value" in an analysis column (lower-cased, trimmed): the ingest's missing-value
#: tokens and the yearbooks' "not available" marks. Any other text that is not a number is an error.
MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "--", "—", "－", "/", "#n/a", "nil", "无",
                          "…", "...", "*", "暂无", "缺失"})


def check_values(
    y: Any, *, name: str = "y", nonnegative: bool = True, positive: bool = False, min_n: int = 1
) -> np.ndarray:
    """Return ``y`` as a 1-d float array, refusing NaN/inf, negatives (or non-positives) and too few values.

    Examples
    --------
    >>> check_values([1, 2, 3]).tolist()
    [1.0, 2.0, 3.0]
    """
    try:
        arr = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(f"values are not numeric: {exc}", field=name) from None
    if arr.size < min_n:
        raise InputError(f"needs at least {min_n} values, got {arr.size}", field=name)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{int(bad.sum())} missing or infinite value(s), first at position {i}",
            field=name,
            hint="drop or impute missing values before measuring inequality",
        )
    if positive and (arr <= 0).any():
        i = int(np.flatnonzero(arr <= 0)[0])
        raise InputError(
            f"value {float(arr[i])!r} at position {i} is not positive; this measure needs positive values",
            field=name,
        )
    if nonnegative and (arr < 0).any():
        i = int(np.flatnonzero(arr < 0)[0])
        raise InputError(
            f"negative value {float(arr[i])!r} at position {i}; income-type inequality measures need values >= 0",
            field=name,
        )
    return arr


def numeric_column(values: Any, *, name: str, source: str | None = None) -> np.ndarray:
    """The one rule for a value column of an analysis (index, disparity, models): numbers are kept,
    missing values and the tokens of :data:`MISSING_TEXT` become NaN (the caller's missing-value
    policy then applies and is reported), and any other text is an error naming its row and value —
    never silently "missing".

    Examples
    --------
    >>> numeric_column(["1.5", "暂无", None, 3], name="gdp").tolist()
    [1.5, nan, nan, 3.0]
    >>> numeric_column(["1.5", "n.a."], name="gdp")
    Traceback (most recent call last):
    ...
    citytwin.foundation.errors.InputError: row 2, field 'gdp': column 'gdp': value 'n.a.' (row 2) is not a number
      hint: 1 such value(s); fix them, or write a missing-value mark (empty, NA, -, …, 暂无) where there is no value
    """
    raw, num, bad = _parse(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise not_a_number(raw.iloc[row - 1], row, int(bad.sum()), name=name, source=source)
    res: np.ndarray = num.to_numpy(dtype=float, na_value=np.nan)
    return res


def _parse(values: Any) -> tuple[Any, Any, np.ndarray]:
    """(the values as a Series, as numbers (missing marks and refused text NaN), which are refused)."""
    import pandas as pd

    raw = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw, raw, np.zeros(len(raw), dtype=bool)
    text = raw.astype("string").str.strip().str.lower()
    token = text.isin(MISSING_TEXT).fillna(False).to_numpy(dtype=bool)
    num = pd.to_numeric(raw.where(~token), errors="coerce")
    return raw, num, (num.isna() & raw.notna()).to_numpy() & ~token


def not_numbers(values: Any) -> np.ndarray:
    """Which of ``values`` :func:`numeric_column` refuses (text neither a number nor a missing-value mark).

    Examples
    --------
    >>> not_numbers(["1.5", "暂无", "n.a.", None]).tolist()
    [False, False, True, False]
    """
    return _parse(values)[2]


def not_a_number(value: Any, row: int, count: int, *, name: str, source: str | None = None) -> InputError:
    """The error of :func:`numeric_column`: ``value`` at 1-based ``row`` (the first), ``count`` such values.

    A caller that checks a column in parts (disparity on Dask: a period a task) gives the row and count of
    the whole column, and so the message one check of the whole column gives.
    """
    return InputError(f"column {name!r}: value {value!r} (row {row}) is not a number", file=source, row=row,
                      field=name, hint=f"{count} such value(s); fix them, or write a missing-value mark "
                                       "(empty, NA, -, …, 暂无) where there is no value")
