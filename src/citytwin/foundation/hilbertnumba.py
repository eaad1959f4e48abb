"""Hilbert-curve keys of points compiled with numba: the spatial order of ingested point layers.

The same keys as :func:`citytwin.foundation.geoparquet.hilbert_keys` (numpy: one pass of ~10 array
operations over the points per bit), computed in one compiled loop with the GIL released: at 16
bits ~80 CPU-ns per point against ~300 in numpy (512k points, 2 shared cores), so that the ingest's
Arrow path can put each chunk of point records in Hilbert order
(:func:`citytwin.foundation.geoparquet.point_order`) for a small share of its time.
``tests/foundation/test_geoparquet_points.py`` checks that the keys equal numpy's.

A plain serial loop (no ``prange``): the ingest calls it from one of its pipeline threads while
the others keep the cores busy, and a serial function needs no threading layer (see
:mod:`citytwin.foundation.h3numba` on the ``workqueue`` layer). Loading numba takes ~0.7 s once per
process; the ingest loads it anyway for H3 cells and text cleaning.

Examples
--------
>>> import numpy as np
>>> keys(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0, 0.0]), (0.0, 0.0, 1.0, 1.0), bits=1).tolist()
[0, 1, 2, 3]
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["keys"]

_LAST_KEY = np.uint64(np.iinfo(np.uint64).max)


@njit(cache=True, nogil=True)
def _keys(x: np.ndarray, y: np.ndarray, x0: float, y0: float, sx: float, sy: float, bits: int,
          out: np.ndarray) -> None:  # pragma: no cover - compiled
    n = np.uint64(1) << np.uint64(bits)
    last = n - np.uint64(1)
    top = float(last)
    one = np.uint64(1)
    three = np.uint64(3)
    for i in range(x.size):
        xv = x[i]
        yv = y[i]
        if np.isnan(xv) or np.isnan(yv):
            out[i] = _LAST_KEY
            continue
        # as numpy's hilbert_keys: nan_to_num (NaN 0, infinities huge), clip, truncate
        fx = (xv - x0) * sx
        fy = (yv - y0) * sy
        fx = 0.0 if np.isnan(fx) else min(max(fx, 0.0), top)
        fy = 0.0 if np.isnan(fy) else min(max(fy, 0.0), top)
        xi = np.uint64(fx)
        yi = np.uint64(fy)
        d = np.uint64(0)
        s = n >> one
        while s > np.uint64(0):
            rx = one if (xi & s) > np.uint64(0) else np.uint64(0)
            ry = one if (yi & s) > np.uint64(0) else np.uint64(0)
            d += s * s * ((three * rx) ^ ry)
            if ry == np.uint64(0):  # rotate the quadrant so that the sub-squares join end to end
                if rx == one:
                    xi = last - xi
                    yi = last - yi
                xi, yi = yi, xi
            s >>= one
        out[i] = d


def keys(x: np.ndarray, y: np.ndarray, extent: tuple[float, float, float, float], bits: int = 16) -> np.ndarray:
    """Distance along the Hilbert curve (uint64) of points ``x, y`` on a ``2**bits`` grid over ``extent``.

    Equal to :func:`citytwin.foundation.geoparquet.hilbert_keys` (NaN coordinates get the largest key).
    """
    xs = np.ascontiguousarray(x, dtype=np.float64)
    ys = np.ascontiguousarray(y, dtype=np.float64)
    n = (1 << bits) - 1
    x0, y0, x1, y1 = (float(v) for v in extent)
    sx = n / (x1 - x0) if x1 > x0 else 0.0
    sy = n / (y1 - y0) if y1 > y0 else 0.0
    out = np.empty(xs.size, dtype=np.uint64)
    _keys(xs, ys, x0, y0, sx, sy, int(bits), out)
    return out
