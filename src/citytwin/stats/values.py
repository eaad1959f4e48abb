"""Checks of numeric inputs shared by the statistics of the domain packages."""

from __future__ import annotations

from typing import Any

import numpy as np

from citytwin.foundation.errors import InputError

__all__ = ["check_values"]


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
