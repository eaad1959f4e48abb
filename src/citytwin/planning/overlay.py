"""Multi-plan coordination (E4): overlay plan layers and find conflicts by configurable rules.

The polygons are cut in one working CRS (the first layer's; the others are reprojected to it) and
every area is computed in one Lambert azimuthal equal-area projection centred on the layers' joint
extent (:func:`equal_area_crs`, stated in every result), so ``area_m2`` is a ground area. The
rules are records ``{name, layer, overlaps: OTHER}`` (the parts of LAYER's features inside OTHER's
features, one polygon per intersecting pair) or ``{name, layer, outside: OTHER | [OTHER, ...]}`` (the
part of each LAYER feature outside the union of the OTHER layers' features); an optional ``where:
{column: value | [values]}`` keeps only some of LAYER's features (e.g. construction land) and
``other_where`` some of OTHER's.

Pure functions over GeoDataFrames: no I/O (the workflow reads and writes).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numba import njit
from pyproj import CRS, Transformer

from citytwin.foundation.errors import InputError

#: Relative overlap (of the smaller polygon's area) above which two polygons of one layer overlap.
SELF_OVERLAP_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Rule:
    """A conflict rule: ``kind`` is ``"overlaps"`` or ``"outside"``; ``others`` the other layer(s)."""

    name: str
    layer: str
    kind: str
    others: tuple[str, ...]
    where: dict[str, list[Any]] = field(default_factory=dict)
    other_where: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class ConflictResult:
    """Conflicts of a set of rules.

    Attributes
    ----------
    conflicts
        One row per conflict polygon: ``rule, kind, layer, other, feature, other_feature, area_m2,
        geometry`` (geometry in WGS84, EPSG:4326; ``other_feature`` is -1 for ``outside`` rules).
    summary
        Per rule: ``rule, n, area_m2``.
    pairs
        Per rule and pair of layers: ``rule, layer, other, n, area_m2``.
    crs
        The equal-area CRS the areas were computed in (PROJ string).
    checks
        Per layer, what its check found (:func:`check_layer`'s ``attrs``): ``repaired`` features,
        ``accepted_overlaps`` and ``largest_overlap_share``.
    """

    conflicts: gpd.GeoDataFrame
    summary: pd.DataFrame
    pairs: pd.DataFrame
    crs: str
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)


def equal_area_crs(*frames: gpd.GeoDataFrame) -> CRS:
    """A Lambert azimuthal equal-area CRS centred on the joint WGS84 extent of ``frames``.

    Examples
    --------
    >>> g = gpd.GeoDataFrame(geometry=[shapely.box(24.9, 60.1, 25.0, 60.2)], crs=4326)
    >>> equal_area_crs(g).srs
    '+proj=laea +lat_0=60.15 +lon_0=24.95 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs +type=crs'
    """
    return equal_area_crs_of_bounds(np.array([_wgs84_bounds(f) for f in frames if len(f)]))


def equal_area_crs_of_bounds(bounds: np.ndarray) -> CRS:
    """:func:`equal_area_crs` from each layer's WGS84 bounds (rows ``xmin, ymin, xmax, ymax``; what the
    land-change stripes on Dask combine from their parts' bounds)."""
    bounds = np.asarray(bounds, dtype=float).reshape(-1, 4)
    if not len(bounds):
        raise InputError("no features to choose an equal-area projection from")
    x0, y0 = bounds[:, 0].min(), bounds[:, 1].min()
    x1, y1 = bounds[:, 2].max(), bounds[:, 3].max()
    lon, lat = round((x0 + x1) / 2, 6), round((y0 + y1) / 2, 6)
    return CRS.from_proj4(f"+proj=laea +lat_0={lat:g} +lon_0={lon:g} +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs")


_TRANSFORMERS: dict[tuple[int, int], tuple[Any, Any, Transformer]] = {}


def _transformer(src: Any, dst: Any) -> Transformer:
    """``Transformer.from_crs(src, dst, always_xy=True)``, kept for the same two CRS objects (PROJ takes
    10-30 ms to make one: once per call of :func:`ea_areas` before, a dozen times per land-change job on a
    Dask worker). Keyed by the objects themselves (not by CRS equality: two equivalent definitions may name
    different authority codes, from which PROJ may choose another operation); pyproj's transformers are
    thread-safe."""
    key = (id(src), id(dst))
    hit = _TRANSFORMERS.get(key)
    if hit is not None and hit[0] is src and hit[1] is dst:
        return hit[2]
    made = Transformer.from_crs(src, dst, always_xy=True)
    if len(_TRANSFORMERS) >= 16:
        _TRANSFORMERS.clear()
    _TRANSFORMERS[key] = (src, dst, made)  # the objects kept alive with it: their ids are not reused meanwhile
    return made


def _wgs84_bounds(frame: gpd.GeoDataFrame) -> np.ndarray:
    """``frame.to_crs(4326).total_bounds`` without building the reprojected geometries: the bounds of
    polygons are those of their vertices, so only the vertices are transformed (by the same PROJ
    transformation ``to_crs`` uses)."""
    if frame.crs is None:
        raise InputError("a layer has no CRS", hint="set the layer's CRS (e.g. EPSG:4326) in the source file")
    if CRS.from_user_input(frame.crs).equals(CRS.from_epsg(4326)):
        return np.asarray(frame.total_bounds)
    xy = shapely.get_coordinates(np.asarray(frame.geometry.values, dtype=object))
    x, y = _transformer(frame.crs, 4326).transform(xy[:, 0], xy[:, 1])
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return np.full(4, np.nan)
    return np.array([x[ok].min(), y[ok].min(), x[ok].max(), y[ok].max()])


#: the most threads :func:`pmap` runs (None: one per core); a Dask task sets its worker's (one thread a
#: worker process: threads beyond would oversubscribe the cores the other workers use)
PMAP_THREADS: int | None = None


def pmap(func: Any, *arrays: np.ndarray, chunk: int = 4_096, **kwargs: Any) -> np.ndarray:
    """``func(*arrays, **kwargs)`` (a vectorised shapely function) in chunks on all cores (at most
    :data:`PMAP_THREADS`): shapely releases the GIL inside GEOS, so threads run the chunks in parallel.
    The same result as one call."""
    n = len(arrays[0]) if arrays else 0
    workers = min(PMAP_THREADS or os.cpu_count() or 1, max(1, n // chunk))
    if workers <= 1:
        return np.asarray(func(*arrays, **kwargs))
    bounds = np.linspace(0, n, workers * 4 + 1).astype(int)
    with ThreadPoolExecutor(workers) as ex:
        parts = list(ex.map(lambda se: func(*[a[se[0]:se[1]] for a in arrays], **kwargs),
                            itertools.pairwise(bounds)))
    return np.concatenate(parts)


def subtract_all(geoms: np.ndarray, hit: np.ndarray, other_idx: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``geoms[k]`` minus every ``other[other_idx[m]]`` with ``hit[m] == k`` (for every ``k``), in
    vectorised rounds: round ``r`` subtracts the ``r``-th neighbour of every feature that has one."""
    left = np.empty(len(geoms), dtype=object)
    left[:] = list(geoms)
    if not len(hit):
        return left
    order = np.argsort(hit, kind="stable")
    h, o = hit[order], other_idx[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    rank = np.arange(len(h)) - np.repeat(starts, np.diff(np.r_[starts, len(h)]))
    for r in range(int(rank.max()) + 1):
        sel = rank == r
        left[h[sel]] = pmap(shapely.difference, left[h[sel]], other[o[sel]])
    return left


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Only the polygonal parts of each geometry (points and lines of a collection dropped; an empty
    polygon where nothing polygonal is left)."""
    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    tid = shapely.get_type_id(geoms)
    out[~np.isin(tid, (3, 6, 7))] = shapely.Polygon()  # points and lines (neighbours that only touch)
    for i in np.flatnonzero(tid == 7):
        parts = shapely.get_parts(geoms[i])
        parts = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
        out[i] = shapely.union_all(parts) if len(parts) else shapely.Polygon()
    return out


# --- convex fast path -------------------------------------------------------------------------------
# Two convex polygons intersect in one convex polygon, which Sutherland–Hodgman clipping computes exactly
# (up to floating-point rounding, like GEOS) in a few hundred nanoseconds. Pairs where either polygon is
# not convex (or has holes, or several parts) go to GEOS (``shapely.intersection``).


@njit(nogil=True, cache=True)
def _convex_rings(xs: np.ndarray, ys: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Per ring (closed, ``xs[off[k]:off[k+1]]``): 1 if it is strictly convex or convex with collinear
    points (every turn the same sign, none turning back, one full turn), else 0.

    A ring so marked is simple: its direction turns monotonically through exactly one full turn, which
    only a convex polygon's boundary does. Such a polygon (without holes) is therefore valid (OGC), which
    :func:`check_layer` relies on to ask GEOS ``is_valid`` only for the others. Conservative: a turn at a
    repeated vertex is not counted (that ring is then not marked), nor is a ring with NaN coordinates."""
    n = len(off) - 1
    out = np.zeros(n, np.bool_)
    for k in range(n):
        s, e = off[k], off[k + 1] - 1  # the last point repeats the first
        m = e - s
        if m < 3:
            continue
        sign = 0.0
        ok = True
        turn = 0.0
        for t in range(m):
            x0, y0 = xs[s + (t - 1) % m], ys[s + (t - 1) % m]
            x1, y1 = xs[s + t], ys[s + t]
            x2, y2 = xs[s + (t + 1) % m], ys[s + (t + 1) % m]
            ax, ay, bx, by = x1 - x0, y1 - y0, x2 - x1, y2 - y1
            cr = ax * by - ay * bx
            if cr == 0.0 and ax * bx + ay * by < 0.0:  # the ring turns back on itself (a spike)
                ok = False
                break
            if cr != 0.0:
                if sign == 0.0:
                    sign = 1.0 if cr > 0 else -1.0
                elif cr * sign < 0:
                    ok = False
                    break
            if (ax != 0.0 or ay != 0.0) and (bx != 0.0 or by != 0.0):
                turn += np.arctan2(cr, ax * bx + ay * by)
        out[k] = ok and sign != 0.0 and abs(abs(turn) - 2 * np.pi) < 1e-6
    return out


@njit(nogil=True, cache=True)
def _clip_convex(axs: np.ndarray, ays: np.ndarray, aoff: np.ndarray, bxs: np.ndarray, bys: np.ndarray,
                 boff: np.ndarray, ii: np.ndarray, jj: np.ndarray, rel_tol: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sutherland–Hodgman: ring ``ii[k]`` of A clipped by the convex ring ``jj[k]`` of B, for every ``k``.
    Returns the x and y of the result rings (closed) and their vertex counts (0 when the result's
    area is at most ``rel_tol`` times the smaller ring's: edges that two polygons share, where a rounding
    error leaves a sliver, are not an overlap)."""
    n = len(ii)
    start = np.empty(n + 1, np.int64)
    start[0] = 0
    mx = 0
    for k in range(n):
        c = (aoff[ii[k] + 1] - aoff[ii[k]]) + (boff[jj[k] + 1] - boff[jj[k]])
        start[k + 1] = start[k] + c + 1  # room for the closing point
        mx = max(mx, c)
    ox = np.empty(start[n])
    oy = np.empty(start[n])
    cnt = np.zeros(n, np.int64)
    bx1 = np.empty(mx)
    by1 = np.empty(mx)
    bx2 = np.empty(mx)
    by2 = np.empty(mx)
    for k in range(n):
        s0, s1 = aoff[ii[k]], aoff[ii[k] + 1] - 1
        m = s1 - s0
        for t in range(m):
            bx1[t] = axs[s0 + t]
            by1[t] = ays[s0 + t]
        c0, c1 = boff[jj[k]], boff[jj[k] + 1] - 1
        nc = c1 - c0
        area2 = 0.0  # orientation and area of the clip ring (relative to its first point)
        for e in range(nc):
            area2 += ((bxs[c0 + e] - bxs[c0]) * (bys[c0 + (e + 1) % nc] - bys[c0])
                      - (bxs[c0 + (e + 1) % nc] - bxs[c0]) * (bys[c0 + e] - bys[c0]))
        o = 1.0 if area2 > 0 else -1.0
        sub2 = 0.0
        for t in range(m):
            sub2 += ((bx1[t] - bx1[0]) * (by1[(t + 1) % m] - by1[0]) - (bx1[(t + 1) % m] - bx1[0]) * (by1[t] - by1[0]))
        small = min(abs(area2), abs(sub2))
        cx, cy, tx, ty = bx1, by1, bx2, by2
        for e in range(nc):
            if m == 0:
                break
            ex1, ey1 = bxs[c0 + e], bys[c0 + e]
            dx, dy = bxs[c0 + (e + 1) % nc] - ex1, bys[c0 + (e + 1) % nc] - ey1
            if dx == 0.0 and dy == 0.0:
                continue
            q = 0
            px, py = cx[m - 1], cy[m - 1]
            pin = o * (dx * (py - ey1) - dy * (px - ex1))
            for t in range(m):
                sx, sy = cx[t], cy[t]
                sin = o * (dx * (sy - ey1) - dy * (sx - ex1))
                if sin >= 0.0:
                    if pin < 0.0:
                        r = pin / (pin - sin)
                        tx[q] = px + r * (sx - px)
                        ty[q] = py + r * (sy - py)
                        q += 1
                    tx[q] = sx
                    ty[q] = sy
                    q += 1
                elif pin >= 0.0:
                    r = pin / (pin - sin)
                    tx[q] = px + r * (sx - px)
                    ty[q] = py + r * (sy - py)
                    q += 1
                px, py, pin = sx, sy, sin
            cx, cy, tx, ty = tx, ty, cx, cy
            m = q
        # drop repeated consecutive points; keep rings with an area
        w = start[k]
        q = 0
        for t in range(m):
            if q > 0 and cx[t] == ox[w + q - 1] and cy[t] == oy[w + q - 1]:
                continue
            ox[w + q] = cx[t]
            oy[w + q] = cy[t]
            q += 1
        while q > 1 and ox[w + q - 1] == ox[w] and oy[w + q - 1] == oy[w]:
            q -= 1
        a2 = 0.0
        for t in range(q):
            a2 += ((ox[w + t] - ox[w]) * (oy[w + (t + 1) % q] - oy[w])
                   - (ox[w + (t + 1) % q] - ox[w]) * (oy[w + t] - oy[w]))
        if q >= 3 and abs(a2) > rel_tol * small:
            ox[w + q] = ox[w]  # close the ring
            oy[w + q] = oy[w]
            cnt[k] = q + 1
    keep = np.empty(int(cnt.sum()), np.int64)
    p = 0
    for k in range(n):
        for t in range(cnt[k]):
            keep[p] = start[k] + t
            p += 1
    return ox[keep], oy[keep], cnt


def _ring_arrays(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, y, offsets of the exterior rings of ``geoms``, and a mask of the convex single polygons
    without holes (the others get an empty ring and ``False``)."""
    simple = (shapely.get_type_id(geoms) == 3) & (shapely.get_num_interior_rings(geoms) == 0)
    counts = np.zeros(len(geoms), np.int64)
    counts[simple] = shapely.get_num_coordinates(geoms[simple])  # without holes: the exterior ring's
    xy = shapely.get_coordinates(geoms[simple])
    off = np.zeros(len(geoms) + 1, np.int64)
    np.cumsum(counts, out=off[1:])
    xs, ys = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    convex = simple.copy()
    convex[simple] = _convex_rings(xs, ys, off)[simple]
    return xs, ys, off, convex


def _ring_areas(x: np.ndarray, y: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Areas of closed rings given as consecutive runs of ``cnt[k]`` vertices (shoelace relative to each
    ring's first vertex, as :func:`ea_areas` sums them)."""
    area = np.zeros(len(cnt))
    if not len(x):
        return area
    ring = np.repeat(np.arange(len(cnt)), cnt)
    start = np.repeat(np.r_[0, np.cumsum(cnt)[:-1]], cnt)
    dx, dy = x - x[start], y - y[start]
    same = np.r_[ring[1:] == ring[:-1], False]
    term = np.where(same, dx * np.roll(dy, -1) - np.roll(dx, -1) * dy, 0.0)
    area += np.abs(np.bincount(ring, weights=term, minlength=len(cnt))) / 2
    return area


def _clip_areas(ra: tuple[np.ndarray, ...], rb: tuple[np.ndarray, ...], ii: np.ndarray, jj: np.ndarray
                ) -> np.ndarray:
    """Planar areas of the intersections of convex ring pairs (``ra[3][ii] & rb[3][jj]`` must hold), without
    building their geometries."""
    x, y, cnt = _clip_convex(ra[0], ra[1], ra[2], rb[0], rb[1], rb[2], ii.astype(np.int64), jj.astype(np.int64),
                             SELF_OVERLAP_TOLERANCE)
    return _ring_areas(x, y, cnt)


def intersect_pairs(a: np.ndarray, b: np.ndarray, ii: np.ndarray, jj: np.ndarray,
                    rings: tuple[Any, Any] | None = None) -> np.ndarray:
    """``shapely.intersection(a[ii], b[jj])`` with the polygonal part kept (:func:`polygonal`): pairs of
    convex polygons are clipped with Sutherland–Hodgman (exact like GEOS, to rounding), the others by
    GEOS on all cores. ``rings`` may pass ``(_ring_arrays(a), _ring_arrays(b))`` computed before."""
    return _intersect_pairs(a, b, ii, jj, rings)[0]


def _intersect_pairs(a: np.ndarray, b: np.ndarray, ii: np.ndarray, jj: np.ndarray,
                     rings: tuple[Any, Any] | None = None, area_crs: tuple[Any, CRS] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`intersect_pairs`, and with ``area_crs=(src, ea)`` the pieces' areas in ``ea`` as
    :func:`ea_areas` computes them (those of the clipped convex pairs from the clipped vertices, without
    reading them back from the geometries); else an empty array."""
    out = np.empty(len(ii), dtype=object)
    area = np.zeros(len(ii) if area_crs is not None else 0)
    if not len(ii):
        return out, area
    ra, rb = rings or (_ring_arrays(a), _ring_arrays(b))
    fast = ra[3][ii] & rb[3][jj]
    if fast.any():
        fi = np.flatnonzero(fast)
        x, y, cnt = _clip_convex(ra[0], ra[1], ra[2], rb[0], rb[1], rb[2], ii[fi].astype(np.int64),
                                 jj[fi].astype(np.int64), SELF_OVERLAP_TOLERANCE)
        polys = np.empty(len(fi), dtype=object)
        polys[:] = shapely.Polygon()
        ok = cnt > 0
        if ok.any():
            ring_off = np.r_[0, np.cumsum(cnt[ok])]
            polys[ok] = shapely.from_ragged_array(shapely.GeometryType.POLYGON, np.column_stack([x, y]),
                                                  (ring_off, np.arange(len(ring_off))))
        out[fi] = polys
        if area_crs is not None:
            area[fi] = _ring_areas(*_to_crs_xy(x, y, *area_crs), cnt)
    slow = np.flatnonzero(~fast)
    if len(slow):
        slow = slow[pmap(shapely.intersects, a[ii[slow]], b[jj[slow]]).astype(bool)]
        out[~fast] = shapely.Polygon()
        if len(slow):
            out[slow] = polygonal(pmap(shapely.intersection, a[ii[slow]], b[jj[slow]]))
            if area_crs is not None:
                area[slow] = ea_areas(out[slow], *area_crs)
    return out, area


def _to_crs_xy(x: np.ndarray, y: np.ndarray, src: Any, ea: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates transformed from ``src`` to ``ea`` (always x, y order), as new float arrays."""
    if not CRS.from_user_input(src).equals(ea):
        x, y = _transformer(src, ea).transform(x, y)
    return np.array(x, dtype=float), np.array(y, dtype=float)


def outside_parts(a: np.ndarray, b: np.ndarray, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
    """``a[k]`` minus the union of its neighbours ``b[jj[ii == k]]`` for every ``k``, where the polygons of
    ``b`` do not overlap each other (one checked layer). A feature whose neighbours are all convex, like
    itself, is decided from the areas of the clipped pairs: covered (to 1e-9 of its area) -> empty,
    only touched -> itself; only the others are cut by GEOS (:func:`subtract_all`)."""
    out = np.empty(len(a), dtype=object)
    out[:] = list(a)
    if not len(ii):
        return out
    ra, rb = _ring_arrays(a), _ring_arrays(b)
    fast = ra[3][ii] & rb[3][jj]
    own = shapely.area(a)
    covered = np.bincount(ii[fast], weights=_clip_areas(ra, rb, ii[fast], jj[fast]), minlength=len(a))
    undecided = np.bincount(ii[~fast], minlength=len(a)) > 0
    empty = ~undecided & (own - covered <= SELF_OVERLAP_TOLERANCE * own)
    whole = ~undecided & (covered <= SELF_OVERLAP_TOLERANCE * own)
    out[empty] = shapely.Polygon()
    cut = np.flatnonzero(~empty & ~whole & (np.bincount(ii, minlength=len(a)) > 0))
    if len(cut):
        pos = np.full(len(a), -1)
        pos[cut] = np.arange(len(cut))
        sel = pos[ii] >= 0
        out[cut] = polygonal(subtract_all(a[cut], pos[ii[sel]], jj[sel], b))
    return out


def ea_areas(geoms: np.ndarray, src: Any, ea: CRS) -> np.ndarray:
    """Areas of ``geoms`` (in CRS ``src``) in the equal-area CRS ``ea``: the vertices transformed by
    PROJ and the shoelace sums per ring (holes subtracted), as ``GeoSeries.to_crs(ea).area`` computes
    them but without building the projected geometries."""
    geoms = np.asarray(geoms, dtype=object)
    area = np.zeros(len(geoms))
    if not len(geoms):
        return area
    simple = (shapely.get_type_id(geoms) == 3) & (shapely.get_num_interior_rings(geoms) == 0)
    if simple.all():  # polygons without holes: their coordinates are their exterior ring's
        rings, pidx = geoms, np.arange(len(geoms))
        ridx = pidx
    else:
        parts, pidx = shapely.get_parts(geoms, return_index=True)
        poly = shapely.get_type_id(parts) == 3
        parts, pidx = parts[poly], pidx[poly]
        rings, ridx = shapely.get_rings(parts, return_index=True)
    if not len(rings):
        return area
    first = np.r_[True, ridx[1:] != ridx[:-1]]  # the exterior comes first in each polygon
    xy, cidx = shapely.get_coordinates(rings, return_index=True)
    x, y = _to_crs_xy(xy[:, 0], xy[:, 1], src, ea)
    first_pt = np.flatnonzero(np.r_[True, cidx[1:] != cidx[:-1]])  # shoelace relative to each ring's start
    ref = np.repeat(first_pt, np.diff(np.r_[first_pt, len(cidx)]))
    x -= x[ref]
    y -= y[ref]
    same = np.r_[cidx[1:] == cidx[:-1], False]  # the edge to the next point is in the same ring
    term = np.where(same, x * np.roll(y, -1) - np.roll(x, -1) * y, 0.0)
    ring_area = np.abs(np.bincount(cidx, weights=term, minlength=len(rings))) / 2
    ring_area[~first] *= -1
    poly_area = np.bincount(ridx, weights=ring_area, minlength=len(pidx))
    area += np.bincount(pidx, weights=poly_area, minlength=len(geoms))
    return area


@dataclass
class _Prepared:
    """What checking a layer computed and the overlay needs again (so it is computed once per layer):
    the checked geometries (in the layer's CRS), their exterior rings and convexity
    (:func:`_ring_arrays`) and their spatial index (built by the overlap check; ``None`` without it)."""

    geoms: np.ndarray
    rings: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    tree: shapely.STRtree | None = None


def check_layer(name: str, frame: gpd.GeoDataFrame, *, source: str | None = None,
                check_overlaps: bool = True, overlap_tolerance: float = SELF_OVERLAP_TOLERANCE) -> gpd.GeoDataFrame:
    """A plan layer checked and made usable: polygons only, invalid geometries repaired
    (``shapely.make_valid``, polygonal part kept), a CRS required, no two features overlapping.

    ``overlap_tolerance`` is the share of the smaller polygon up to which two features of the layer may
    overlap (default 1e-9: rounding errors along shared edges). A larger value accepts e.g. the slivers of
    simplified boundaries; such overlaps are then counted in both features, and the result's
    ``attrs["accepted_overlaps"]`` (pairs) and ``attrs["largest_overlap_share"]`` say so.

    Validity is decided once per feature: a single polygon without holes whose exterior ring is convex
    (:func:`_convex_rings`) is valid by construction; every other feature is asked of GEOS
    (``shapely.is_valid``).

    Raises
    ------
    InputError
        The layer is empty, has no CRS, has a feature that is not a polygon, or two of its features
        overlap (both rows named).
    """
    return _check_layer(name, frame, source=source, check_overlaps=check_overlaps,
                        overlap_tolerance=overlap_tolerance)[0]


def _check_layer(name: str, frame: gpd.GeoDataFrame, *, source: str | None = None, check_overlaps: bool = True,
                 overlap_tolerance: float = SELF_OVERLAP_TOLERANCE) -> tuple[gpd.GeoDataFrame, _Prepared]:
    """:func:`check_layer`, and what it computed on the way (:class:`_Prepared`) for the overlay."""
    src = source or name
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry is None:
        raise InputError(f"layer {name!r} has no geometry column", file=src,
                         hint="plan layers are GIS files (GeoPackage, GeoJSON, Shapefile, GeoParquet) or datasets; "
                              "a table with WKT or coordinate columns must be ingested first (citytwin ingest "
                              "FILE -d NAME -s SCHEMA -w DIR) and then named by its dataset")
    if len(frame) == 0:
        raise InputError(f"layer {name!r} is empty", file=src, hint="a plan layer needs at least one polygon")
    if frame.crs is None:
        raise InputError(f"layer {name!r} has no CRS", file=src,
                         hint="set the layer's CRS (e.g. EPSG:4326) in the source file")
    if check_overlaps and not 0 < overlap_tolerance < 1:
        raise InputError(f"overlap tolerance must be in (0, 1), got {overlap_tolerance}",
                         field="overlap_tolerance")
    geoms = np.asarray(frame.geometry.values, dtype=object)
    missing = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if len(missing):
        raise InputError(f"layer {name!r}: feature has no geometry", file=src, row=int(missing[0]) + 1,
                         field="geometry")
    tid = shapely.get_type_id(geoms)
    bad = np.flatnonzero(~np.isin(tid, (3, 6)) & (tid != 7))
    if len(bad):
        raise InputError(f"layer {name!r}: feature is a {shapely.get_type_id(geoms[bad[0]])} geometry, "
                         f"not a polygon", file=src, row=int(bad[0]) + 1, field="geometry")
    rings = _ring_arrays(geoms)
    invalid = np.zeros(len(geoms), bool)
    ask = np.flatnonzero(~rings[3])  # convex single polygons without holes are valid (see _convex_rings)
    if len(ask):
        invalid[ask] = ~pmap(shapely.is_valid, geoms[ask]).astype(bool)
    if invalid.any():
        geoms = geoms.copy()
        geoms[invalid] = polygonal(shapely.make_valid(geoms[invalid]))
    if invalid.any() or tid.max() == 7:
        geoms = polygonal(geoms)
        rings = _ring_arrays(geoms)
    out = frame.set_geometry(gpd.GeoSeries(geoms, index=frame.index, crs=frame.crs))
    out.attrs["repaired"] = int(invalid.sum())
    prep = _Prepared(geoms=geoms, rings=rings)
    if check_overlaps:
        prep.tree = shapely.STRtree(geoms)
        accepted, largest = _check_self_overlap(name, prep, src, overlap_tolerance)
        out.attrs["accepted_overlaps"] = accepted
        out.attrs["largest_overlap_share"] = largest
    return out, prep


def _check_self_overlap(name: str, prep: _Prepared, src: str,
                        tolerance: float = SELF_OVERLAP_TOLERANCE) -> tuple[int, float]:
    """Raise when two features overlap by more than ``tolerance`` of the smaller one; else the number of
    pairs overlapping by more than the rounding tolerance, and the largest such share."""
    return overlap_verdict(name, src, *self_overlap_pairs(prep), tolerance)


def self_overlap_pairs(prep: _Prepared, first: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs ``(i, j, share)`` (``i < j``) of a checked layer's features that overlap by more than the
    rounding tolerance, in the order :func:`overlap_verdict` reads them; with ``first`` (ascending feature
    numbers) only the pairs whose ``i`` is one of them (the pairs of all parts, concatenated and stably
    sorted by ``i``, are those of the whole layer: the land-change stripes on Dask split the check so)."""
    geoms = prep.geoms
    tree = prep.tree if prep.tree is not None else shapely.STRtree(geoms)
    i, j = tree.query(geoms if first is None else geoms[first])  # pairs of overlapping bounding boxes
    if first is not None:
        i = first[i]
    keep = i < j
    i, j = i[keep], j[keep]
    if not len(i):
        return i, j, np.zeros(0)
    # the overlap of two polygons is at most the overlap of their bounding boxes: pairs whose boxes
    # overlap by no more than the tolerance (neighbours sharing an edge) need no geometry; of the
    # others, those whose interiors meet (DE-9IM) are measured. Overlaps below the tolerance (shared
    # edges off by a rounding error) are not overlaps.
    areas = shapely.area(geoms)
    bb = shapely.bounds(geoms)
    bw = np.clip(np.minimum(bb[i, 2], bb[j, 2]) - np.maximum(bb[i, 0], bb[j, 0]), 0, None)
    bh = np.clip(np.minimum(bb[i, 3], bb[j, 3]) - np.maximum(bb[i, 1], bb[j, 1]), 0, None)
    tol = SELF_OVERLAP_TOLERANCE * np.maximum(np.minimum(areas[i], areas[j]), 1e-300)
    keep = bw * bh > tol
    i, j, tol = i[keep], j[keep], tol[keep]
    rings = prep.rings
    fast = rings[3][i] & rings[3][j]  # two convex polygons: clipped directly (slivers below the tolerance dropped)
    inter = np.zeros(len(i))
    fi, si = np.flatnonzero(fast), np.flatnonzero(~fast)
    inter[fi] = _clip_areas(rings, rings, i[fi], j[fi])
    si = si[pmap(shapely.relate_pattern, geoms[i[si]], geoms[j[si]], pattern="T********").astype(bool)]
    inter[si] = shapely.area(pmap(shapely.intersection, geoms[i[si]], geoms[j[si]]))
    share = inter / np.maximum(np.minimum(areas[i], areas[j]), 1e-300)
    over = np.flatnonzero(inter > tol)
    return i[over], j[over], share[over]


def overlap_verdict(name: str, src: str, i: np.ndarray, j: np.ndarray, share: np.ndarray,
                    tolerance: float = SELF_OVERLAP_TOLERANCE) -> tuple[int, float]:
    """:func:`_check_self_overlap` from the pairs :func:`self_overlap_pairs` found: raise naming the first
    pair that overlaps by more than ``tolerance``; else the number of pairs and the largest share."""
    hit = np.flatnonzero(share > tolerance)
    if len(hit):
        a, b = int(i[hit[0]]) + 1, int(j[hit[0]]) + 1
        worst = float(share[hit].max())
        raise InputError(f"layer {name!r}: features {a} and {b} overlap by {share[hit[0]]:.3g} of the smaller "
                         f"one ({len(hit)} overlapping pair(s) in all, the largest {worst:.3g})",
                         file=src, row=a, field="geometry",
                         hint="a plan layer's polygons must not overlap; dissolve or clip them first, or accept "
                              f"overlaps up to a share of the smaller polygon with --overlap-tolerance (e.g. "
                              f"{min(0.5, float(f'{worst * 1.01:.2g}'))}; they are then counted in both)")
    return len(share), float(share.max()) if len(share) else 0.0


def parse_rules(records: Any, layers: Sequence[str] | None = None, *, source: str = "rules") -> list[Rule]:
    """Rules from their records (the parsed YAML list); every layer named must be in ``layers``."""
    if not isinstance(records, list) or not records:
        raise InputError("the rules file must be a non-empty list of rules", file=source,
                         hint="e.g. [{name: r1, layer: A, overlaps: B}, {name: r2, layer: A, outside: C}]")
    rules: list[Rule] = []
    seen: set[str] = set()
    for n, rec in enumerate(records, start=1):
        if not isinstance(rec, dict):
            raise InputError("a rule must be a mapping", file=source, row=n)
        unknown = set(rec) - {"name", "layer", "overlaps", "outside", "where", "other_where"}
        if unknown:
            raise InputError(f"unknown key(s) {sorted(unknown)}", file=source, row=n, field=sorted(unknown)[0])
        name = str(rec.get("name") or f"rule{n}")
        if name in seen:
            raise InputError(f"rule name {name!r} is used twice", file=source, row=n, field="name")
        seen.add(name)
        if "layer" not in rec:
            raise InputError("a rule needs a layer", file=source, row=n, field="layer")
        kinds = [k for k in ("overlaps", "outside") if k in rec]
        if len(kinds) != 1:
            raise InputError("a rule needs exactly one of overlaps or outside", file=source, row=n)
        kind = kinds[0]
        others_raw = rec[kind]
        others = tuple(str(o) for o in (others_raw if isinstance(others_raw, list) else [others_raw]))
        if not others:
            raise InputError(f"{kind} names no layer", file=source, row=n, field=kind)
        if kind == "overlaps" and len(others) != 1:
            raise InputError("overlaps names one layer (one rule per pair)", file=source, row=n, field=kind)
        layer = str(rec["layer"])
        if layers is not None:
            for ln, fld in [(layer, "layer"), *[(o, kind) for o in others]]:
                if ln not in layers:
                    raise InputError(f"rule {name!r} names layer {ln!r}, which was not given "
                                     f"(layers: {', '.join(layers)})", file=source, row=n, field=fld,
                                     hint=f"add --layer {ln}=DATASET_OR_FILE or fix the rule")
        rules.append(Rule(name=name, layer=layer, kind=kind, others=others,
                          where=_where(rec.get("where"), source, n, "where"),
                          other_where=_where(rec.get("other_where"), source, n, "other_where")))
    return rules


def _where(value: Any, source: str, row: int, fld: str) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{fld} must be a mapping column: value(s)", file=source, row=row, field=fld)
    return {str(k): (list(v) if isinstance(v, list | tuple) else [v]) for k, v in value.items()}


def _select(frame: gpd.GeoDataFrame, where: Mapping[str, list[Any]], layer: str, rule: str) -> np.ndarray:
    mask = np.ones(len(frame), bool)
    for col, values in where.items():
        if col not in frame.columns:
            raise InputError(f"rule {rule!r}: layer {layer!r} has no column {col!r}", field=col)
        mask &= frame[col].isin(values).to_numpy()
    return mask


def find_conflicts(layers: Mapping[str, gpd.GeoDataFrame], rules: Sequence[Rule], *,
                   crs: CRS | None = None, check: bool = True,
                   overlap_tolerance: float = SELF_OVERLAP_TOLERANCE,
                   sources: Mapping[str, str] | None = None) -> ConflictResult:
    """Conflict polygons of ``rules`` over ``layers`` with their areas in an equal-area CRS.

    Parameters
    ----------
    layers
        Plan layers by name (any CRS; each is checked with :func:`check_layer` unless ``check`` is
        false, and reprojected).
    rules
        From :func:`parse_rules`.
    crs
        The equal-area CRS (default: :func:`equal_area_crs` of all layers).
    check
        Check each layer (:func:`check_layer`); what the checks compute (rings, spatial index) is then
        reused by the overlay. ``False`` for layers checked before.
    overlap_tolerance
        Overlaps within a layer accepted up to this share of the smaller polygon (see :func:`check_layer`).
    sources
        Per layer, the file or dataset named in errors (default: the layer's name).
    """
    for r in rules:
        for ln in (r.layer, *r.others):
            if ln not in layers:
                raise InputError(f"rule {r.name!r} names layer {ln!r}, which was not given", field="layer")
    checked: dict[str, gpd.GeoDataFrame] = {}
    prepared: dict[str, _Prepared] = {}
    for n, f in layers.items():
        if check:
            checked[n], prepared[n] = _check_layer(n, f, source=(sources or {}).get(n),
                                                   overlap_tolerance=overlap_tolerance)
        else:
            checked[n] = f
    ea = crs or equal_area_crs(*checked.values())
    # topology in one working CRS (the first layer's: edges stay as drawn, no slivers where layers share a
    # CRS), areas in the equal-area CRS
    work = next(iter(checked.values())).crs
    proj = {n: f if f.crs == work else f.to_crs(work) for n, f in checked.items()}
    geo = {n: np.asarray(f.geometry.values, dtype=object) for n, f in proj.items()}
    # what the checks computed stays valid for the layers that were not reprojected
    reuse = {n: p for n, p in prepared.items() if proj[n] is checked[n]}
    rings: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {n: p.rings for n, p in reuse.items()}

    def rings_of(n: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if n not in rings:
            rings[n] = _ring_arrays(geo[n])
        return rings[n]

    parts: list[pd.DataFrame] = []
    for r in rules:
        a_mask = _select(proj[r.layer], r.where, r.layer, r.name)
        a_idx = np.flatnonzero(a_mask)
        a = geo[r.layer][a_idx]
        if r.kind == "overlaps":
            other = r.others[0]
            b_idx_all = np.flatnonzero(_select(proj[other], r.other_where, other, r.name))
            own = reuse[other].tree if other in reuse and len(b_idx_all) == len(geo[other]) else None
            # the checked layer's index (over all its features), else one over the selected ones
            tree = own if own is not None else shapely.STRtree(geo[other][b_idx_all])
            ii, jj = tree.query(a)  # bounding boxes; intersect_pairs drops the disjoint pairs
            fa, fb = a_idx[ii], b_idx_all[jj]
            g, area = _intersect_pairs(geo[r.layer], geo[other], fa, fb, rings=(rings_of(r.layer), rings_of(other)),
                                       area_crs=(work, ea))
            rows = pd.DataFrame({"rule": r.name, "kind": r.kind, "layer": r.layer, "other": other,
                                 "feature": fa, "other_feature": fb, "geometry": g, "area_m2": area})
        else:
            b_list = [geo[o][_select(proj[o], r.other_where, o, r.name)] for o in r.others]
            b = np.concatenate(b_list) if b_list else np.array([], dtype=object)
            ii, jj = shapely.STRtree(b).query(a, predicate="intersects")
            single = len(r.others) == 1 and not checked[r.others[0]].attrs.get("accepted_overlaps", 0)
            g = outside_parts(a, b, ii, jj) if single else polygonal(subtract_all(a, ii, jj, b))
            rows = pd.DataFrame({"rule": r.name, "kind": r.kind, "layer": r.layer, "other": "+".join(r.others),
                                 "feature": a_idx, "other_feature": -1, "geometry": g,
                                 "area_m2": ea_areas(g, work, ea)})
        parts.append(rows[rows["area_m2"] > 0])
    cols = ["rule", "kind", "layer", "other", "feature", "other_feature", "area_m2", "geometry"]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    frame = frame[cols]
    frame["feature"] = frame["feature"].astype("int64")
    frame["other_feature"] = frame["other_feature"].astype("int64")
    frame["area_m2"] = frame["area_m2"].astype("float64")
    conflicts = gpd.GeoDataFrame(frame, geometry="geometry", crs=work).to_crs(4326)
    rule_names = [r.name for r in rules]
    summary = (conflicts.groupby("rule", sort=False).agg(n=("area_m2", "size"), area_m2=("area_m2", "sum"))
               .reindex(rule_names).fillna({"n": 0, "area_m2": 0.0}).reset_index())
    summary["n"] = summary["n"].astype("int64")
    pairs = (pd.DataFrame(conflicts.drop(columns="geometry"))
             .groupby(["rule", "layer", "other"], sort=False)
             .agg(n=("area_m2", "size"), area_m2=("area_m2", "sum")).reset_index())
    checks = {n: {k: f.attrs[k] for k in ("repaired", "accepted_overlaps", "largest_overlap_share") if k in f.attrs}
              for n, f in checked.items()}
    return ConflictResult(conflicts=conflicts, summary=summary, pairs=pairs, crs=ea.srs, checks=checks)
