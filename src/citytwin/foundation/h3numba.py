"""H3 ``latLngToCell`` compiled with numba: citytwin's one fast path for H3 cells.

Called through :func:`citytwin.foundation.spacelink.h3_cells_arrow`, which falls back to h3-py
where numba cannot be imported. The library this differs from is **h3-py** (``h3.latlng_to_cell``,
the h3 C library 4.5 behind a per-point Python call): this module runs the C library's
operations (the same float expressions in the same order, with its tables from
:mod:`citytwin.foundation.h3tables`) as one compiled loop over Arrow/numpy buffers, with the GIL
released, and builds the Arrow string column without a Python loop.

Why keep our own code: h3-py costs ~0.6–1.6 CPU-µs per point in its Python loop, this ~0.26–0.34
(resolution 9; Beijing points vs points all over the sphere), and the ingest's streamed pass adds
cells to every point record (``bench/h3_bench.py`` measures both, and h3ronpy where installed:
Rust, ~0.65 µs per point, one more dependency, while numba is already one via quantecon). A
former pure-SQL port (``h3sql``) cost ~2 µs per point and was removed (issue 11). Loading numba and
the cached machine code takes ~0.7 s once per process.

Exactness: the same strings as ``h3.latlng_to_cell`` (``tests/foundation/test_h3.py``: 200,000
random points at seven resolutions, ~14,000 special points — pentagons, icosahedron face edges,
poles, ±180° — at every resolution 0–15). numba compiles without ``fastmath`` (no reassociation,
no FMA contraction) and calls the C library's ``sin``/``cos``/``tan``/``acos``/``atan2``, as the
h3 C library does.

Calls are serialised by a lock: with the ``workqueue`` threading layer (numba's fallback where
neither libgomp nor TBB is installed) two Python threads entering a parallel function at once abort
the process. The ingest calls with ``threads=1``: its pipeline already keeps every core busy (DuckDB's
threads, the Parquet writer), and numba's OpenMP workers spin while they wait (~5 % of a 10M-point
ingest's CPU on 2 cores). Why not plain serial loops: numba compiles this loop body ~30 % slower
outside a ``prange`` (measured, 290 vs 385 ns per point on one thread; same cells).

Why not a DuckDB Python UDF for the streamed pass: DuckDB's arrow UDF glue costs ~0.7 CPU-µs per
row on its own (1.4 ms per 2048-row call, measured with an identity UDF on DuckDB 1.5.5), more than
the H3 work; the ingest adds cells to its Arrow chunks instead (the staged pipeline, which is not
about speed, uses such a UDF around :func:`citytwin.foundation.spacelink.h3_cells_arrow`).

Examples
--------
>>> import pyarrow as pa
>>> cells_array(pa.array([116.397, None]), pa.array([39.908, 1.0]), 9).to_pylist()
['8931aa42803ffff', None]
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np
import pyarrow as pa
from numba import njit, prange

from citytwin.foundation import h3tables as t
from citytwin.foundation.coords import as_lonlat

__all__ = ["cells_array", "cells_int"]

_FACE_CENTER = np.array(t.FACE_CENTER, dtype=np.float64)
_NORTH = np.array([b[0] for b in t.BASIS], dtype=np.float64)
_EAST = np.array([b[1] for b in t.BASIS], dtype=np.float64)
_AZ0 = np.array(t.FACE_AXIS_AZ0, dtype=np.float64)
_FIJK = np.array(t.FIJK_BC, dtype=np.int64)
#: candidate faces per 10° grid cell (:data:`~citytwin.foundation.h3tables.FACE_CANDIDATES`): ``count | f0 << 3 | f1 << 8 | ...``
_CANDS = np.array(t.FACE_CANDIDATES, dtype=np.int64)
_GRID = t.GRID_STEP
_KEY3 = np.array(t.KEY_CLASS3, dtype=np.int64)
_KEY2 = np.array(t.KEY_CLASS2, dtype=np.int64)
_PENT = np.array(t.PENT_KEYS, dtype=np.int64)
_ZERO_SHIFT = t.ZERO_SHIFT
_M_PI_180 = t.M_PI_180
_M_2PI = t.M_2PI
_AP7 = t.M_AP7_ROT_RADS
_INV_RES0 = t.INV_RES0_U_GNOMONIC
_SQRT7 = t.M_SQRT7
_RSIN60 = t.M_RSIN60
_EPS = t.EPSILON
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).copy()
_LOCK = threading.Lock()  # one parallel call at a time (see the module docstring)


@njit(nogil=True, cache=True, inline="always")
def _cell(lon_deg: float, lat_deg: float, res: int, base: int, face_center: np.ndarray, north: np.ndarray,  # pragma: no cover
          east: np.ndarray, az0: np.ndarray, fijk: np.ndarray, key3: np.ndarray, key2: np.ndarray,
          pent: np.ndarray, cands: np.ndarray) -> int:
    """One cell as int64; -1 for invalid input. Mirrors h3's C ``latLngToCell`` step by step."""
    if not (abs(lat_deg) <= 90.0 and abs(lon_deg) <= 180.0):  # also NaN
        return -1
    lo = lon_deg * _M_PI_180
    la = lat_deg * _M_PI_180
    cl = math.cos(la)
    z = math.sin(la)
    x = math.cos(lo) * cl
    y = math.sin(lo) * cl
    # _vec3ToClosestFace: first minimum of the squared distance wins; only the candidate faces of the
    # point's 10° grid cell (ascending), so the same face as comparing all 20
    g = min(math.floor((lat_deg + 90.0) / _GRID), 180 // _GRID - 1) * (360 // _GRID) + \
        min(math.floor((lon_deg + 180.0) / _GRID), 360 // _GRID - 1)
    cand = cands[g]
    face = (cand >> 3) & 31
    if cand & 7 > 1:
        best = 1e300
        for k in range(cand & 7):
            f = (cand >> (3 + 5 * k)) & 31
            dx = face_center[f, 0] - x
            dy = face_center[f, 1] - y
            dz = face_center[f, 2] - z
            d = (dx * dx + dy * dy) + dz * dz
            if d < best:
                best = d
                face = f
    cx, cy, cz = face_center[face, 0], face_center[face, 1], face_center[face, 2]
    sqd = ((cx - x) * (cx - x) + (cy - y) * (cy - y)) + (cz - z) * (cz - z)
    dot = x * cx + y * cy + z * cz
    r = math.acos(1 - sqd * 0.5)
    px = x - dot * cx
    py = y - dot * cy
    pz = z - dot * cz
    s = 1.0 / math.sqrt(px * px + py * py + pz * pz)
    az = math.atan2((px * s) * east[face, 0] + (py * s) * east[face, 1] + (pz * s) * east[face, 2],
                    (px * s) * north[face, 0] + (py * s) * north[face, 1] + (pz * s) * north[face, 2])
    rr = math.tan(r) * _INV_RES0
    for _ in range(res):
        rr = rr * _SQRT7
    t1 = az + (_M_2PI if az < 0 else 0.0)
    d2 = az0[face] - t1
    theta = d2 + (_M_2PI if d2 < 0 else 0.0)
    if res % 2 == 1:
        d3 = theta - _AP7
        theta = d3 + (_M_2PI if d3 < 0 else 0.0)
    if r < _EPS:
        hx = 0.0
        hy = 0.0
    else:
        hx = rr * math.cos(theta)
        hy = rr * math.sin(theta)
    # _hex2dToCoordIJK, kept in 2D ij form
    x2 = abs(hy) * _RSIN60
    x1 = abs(hx) + x2 / 2.0
    m2 = math.floor(x2)
    m1 = math.floor(x1)
    r2 = x2 - m2
    r1 = x1 - m1
    if r1 < 1.0 / 3.0:
        j_thr = (1.0 + r1) / 2.0
        i_inc = 0.0
    elif r1 < 0.5:
        j_thr = 1.0 - r1
        i_inc = 1.0 if ((1.0 - r1) <= r2 and r2 < (2.0 * r1)) else 0.0
    elif r1 < 2.0 / 3.0:
        j_thr = 1.0 - r1
        i_inc = 0.0 if ((2.0 * r1 - 1.0) < r2 and r2 < (1.0 - r1)) else 1.0
    else:
        j_thr = r1 / 2.0
        i_inc = 1.0
    i = m1 + i_inc
    j = m2 + (1.0 if r2 >= j_thr else 0.0)
    # integers from here on (exact: every value is a whole number below 2**53, as in the C code's doubles);
    # floor division by 7 compiles to a multiply and shift, where a float division chain is slow
    a = int((j - i if hx < 0 else i) - (j if hy < 0 else 0.0))
    b = int(-j if hy < 0 else j)
    # _faceIjkToH3: aperture-7 parents, finest first; the remainder at each resolution names the digit
    rems = 0  # remainder (0..6) at resolution r in bits 3r..3r+2
    for rr_ in range(res, 0, -1):
        if rr_ % 2 == 1:
            n1 = 3 * a - b + 3
            n2 = a + 2 * b + 3
        else:
            n1 = 2 * a + b + 3
            n2 = 3 * b - a + 3
        a = n1 // 7
        b = n2 // 7
        rems |= (n1 - 7 * a) << (3 * rr_)
    mn = min(a, b, 0)
    mx = max(a, b, 0)
    if mx - mn > 2:
        return -1
    pk = fijk[face * 27 + 9 * a + 3 * b - 13 * mn]
    rot = (pk >> 1) & 7
    if pk & 16:
        lead = 0
        for rr_ in range(1, res + 1):
            e = ((rems >> (3 * rr_)) & 7) * 3
            if e != _ZERO_SHIFT:
                k0 = key3[0] if rr_ % 2 == 1 else key2[0]
                lead = (k0 >> e) & 7
                break
        rot = (pent[pk & 15] >> (3 * lead)) & 7
    idx = base | ((pk >> 5) << 45)
    k3 = key3[rot]
    k2 = key2[rot]
    for rr_ in range(1, res + 1):
        k = k3 if rr_ % 2 == 1 else k2
        idx |= ((k >> (((rems >> (3 * rr_)) & 7) * 3)) & 7) << (3 * (15 - rr_))
    return int(idx)


@njit(nogil=True, cache=True, parallel=True)
def _cells(lon: np.ndarray, lat: np.ndarray, res: int, face_center: np.ndarray, north: np.ndarray,  # pragma: no cover
           east: np.ndarray, az0: np.ndarray, fijk: np.ndarray, key3: np.ndarray, key2: np.ndarray,
           pent: np.ndarray, cands: np.ndarray) -> np.ndarray:
    out = np.empty(lon.size, dtype=np.int64)
    base = (1 << 59) | (res << 52)  # mode 1 (cell), resolution, unused digits 7
    for r in range(res + 1, 16):
        base |= 7 << (3 * (15 - r))
    for n in prange(lon.size):
        out[n] = _cell(lon[n], lat[n], res, base, face_center, north, east, az0, fijk, key3, key2, pent, cands)
    return out


@njit(nogil=True, cache=True, parallel=True)
def _hex15(cells: np.ndarray, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """Arrow string buffers (offsets, data, validity bytes) of the cells' 15-digit hex strings.

    A valid cell has bit 59 set and bits 60-63 clear, so ``'{:x}'`` has exactly 15 digits. Every
    slot is 15 bytes wide, null ones too (Arrow leaves a null slot's bytes undefined), so the
    offsets are fixed and the loop runs in parallel.
    """
    n = cells.size
    offsets = np.arange(0, 15 * n + 1, 15).astype(np.int32)
    data = np.empty(n * 15, dtype=np.uint8)
    valid = np.zeros((n + 7) // 8, dtype=np.uint8)
    for k8 in prange((n + 7) // 8):
        bits = 0
        for k in range(k8 * 8, min(n, k8 * 8 + 8)):
            c = cells[k]
            if c >= 0:
                bits |= 1 << (k - k8 * 8)
            else:
                c = 0
            for d in range(15):
                data[15 * k + d] = digits[(c >> (4 * (14 - d))) & 15]
        valid[k8] = bits
    return offsets, data, valid


@contextmanager
def _parallel(threads: int | None) -> Iterator[None]:
    """Hold :data:`_LOCK` and use ``threads`` of numba's threads (all if None) in this thread."""
    with _LOCK:
        before = numba.get_num_threads()  # a per-thread setting: restored for the caller's thread
        if threads is not None:
            numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
        try:
            yield
        finally:
            numba.set_num_threads(before)


def cells_int(lon: pa.Array | np.ndarray, lat: pa.Array | np.ndarray, resolution: int,
              threads: int | None = None) -> np.ndarray:
    """H3 cells as int64 (``-1`` where lon/lat is null, NaN, infinite or out of range).

    ``threads``: how many of numba's threads the call may use (default: all of them).

    Examples
    --------
    >>> hex(int(cells_int([116.397], [39.908], 9)[0]))
    '0x8931aa42803ffff'
    """
    res = t.check_resolution(resolution)
    lo, la = as_lonlat(lon, lat)  # float64, NaN where missing; Arrow and numpy inputs alike
    with _parallel(threads):
        return _cells(lo, la, res, _FACE_CENTER, _NORTH, _EAST, _AZ0, _FIJK, _KEY3, _KEY2, _PENT, _CANDS)


def cells_array(lon: pa.Array | np.ndarray, lat: pa.Array | np.ndarray, resolution: int,
                threads: int | None = None) -> pa.StringArray:
    """H3 cells as an Arrow string array of lowercase hex (``h3.latlng_to_cell``'s strings), nulls
    where lon/lat is null, NaN, infinite or out of range (as ``spacelink.h3_cells(..., invalid="none")``)."""
    cells = cells_int(lon, lat, resolution, threads)
    with _parallel(threads):
        offsets, data, valid = _hex15(cells, _HEX)
    nulls = int(np.count_nonzero(cells < 0))
    return pa.StringArray.from_buffers(cells.size, pa.py_buffer(offsets), pa.py_buffer(data),
                                       pa.py_buffer(valid) if nulls else None, nulls)
