"""D1 polycentricity indices: Urban Centrality Index, rank-size slope, share outside the main center.

Urban Centrality Index (Pereira, Nadalin, Monasterio & Albuquerque 2013, *Geographical Analysis*
45(1)), as in the authors' R package ``uci``: ``UCI = LC x PI`` with the location coefficient
``LC = 1/2 sum |s_i - 1/N|`` (s = activity shares of the N units) and the proximity index
``PI = 1 - V / V_max``, where ``V = s' D s`` is Venables' spatial separation with self-distance
``sqrt(area_i / pi)`` on the diagonal of D, and ``V_max`` is V with the activity spread evenly over
the units on the border of the study area (the package's default heuristic). Distances are either
Euclidean between centroids (only units with activity enter V), or along the links between
contiguous units (queen: units that touch; shortest path over centroid-to-centroid links).

Memory is linear in the units: no units x units matrix is built. Euclidean ``V`` and ``V_max`` are
exact sums over the pairs computed by a compiled loop (O(n^2) time, O(n) memory); network
distances come from Dijkstra runs over blocks of ``block`` source units (O(block x n) memory).
``tests/spatial/test_centers.py::test_uci_blocked_equals_dense`` checks both against the dense
matrices on small grids; ``bench/spatial_uci.py`` measures 20,000 and 200,000 cells. No
approximation is used.

Rank-size: ``ln(rank - 1/2) = a - b ln(size)`` by OLS, with the rank - 1/2 correction and the
standard error ``b sqrt(2/n)`` of Gabaix & Ibragimov (2011, *J. Business & Economic Statistics*).
``b`` is the Pareto (Zipf) exponent: larger ``b`` = centers closer in size (a flatter hierarchy);
the reported ``slope`` is the regression slope ``-b``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import geopandas as gpd
import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components, shortest_path

from citytwin.foundation.errors import InputError
from citytwin.spatial.geo import metric_crs, require_crs


def location_coefficient(values: np.ndarray) -> float:
    """``1/2 sum |s_i - 1/N|`` of the shares of ``values``.

    Examples
    --------
    >>> round(location_coefficient(np.array([0.1, 0.4, 0.3, 0.2])), 12)
    0.2
    """
    v = np.asarray(values, dtype=float)
    s = v / v.sum()
    return float(np.abs(s - 1.0 / len(s)).sum() / 2.0)


@dataclass(frozen=True)
class UCIResult:
    """Urban Centrality Index and its parts (0 = polycentric, 1 = monocentric)."""

    uci: float
    location_coef: float
    proximity_index: float
    spatial_separation: float
    spatial_separation_max: float
    distance: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _link_graph(geoms: gpd.GeoSeries, centroids: np.ndarray) -> sparse.csr_matrix:
    """Links between touching units, weighted by centroid-to-centroid distance (sparse)."""
    n = len(geoms)
    left, right = geoms.sindex.query(geoms, predicate="intersects")
    m = left != right
    left, right = left[m], right[m]
    w = np.hypot(*(centroids[left] - centroids[right]).T)
    return sparse.csr_matrix((w, (left, right)), shape=(n, n))


_SEP_KERNEL: Any = None


def _euclid_kernel() -> Any:
    """``sum_ij s_i s_j |c_i - c_j| + sum_i s_i^2 d_ii`` compiled with numba (loaded on first use)."""
    global _SEP_KERNEL
    if _SEP_KERNEL is None:
        from numba import njit

        @njit(cache=True)
        def sep(x: np.ndarray, y: np.ndarray, s: np.ndarray, self_d: np.ndarray) -> float:  # pragma: no cover
            n = x.shape[0]
            tot = 0.0
            for i in range(n):
                acc = 0.0
                xi = x[i]
                yi = y[i]
                for j in range(i + 1, n):
                    dx = xi - x[j]
                    dy = yi - y[j]
                    acc += s[j] * np.sqrt(dx * dx + dy * dy)
                tot += s[i] * (2.0 * acc + s[i] * self_d[i])
            return tot

        _SEP_KERNEL = sep
    return _SEP_KERNEL


def _separation_euclidean(xy: np.ndarray, s: np.ndarray, self_d: np.ndarray) -> float:
    """Venables' ``s' D s`` with Euclidean D and ``self_d`` on its diagonal, without building D."""
    nz = s > 0
    if not nz.any():
        return 0.0
    sep = _euclid_kernel()
    return float(sep(np.ascontiguousarray(xy[nz, 0], dtype=float), np.ascontiguousarray(xy[nz, 1], dtype=float),
                     np.ascontiguousarray(s[nz], dtype=float), np.ascontiguousarray(self_d[nz], dtype=float)))


def _separation_network(graph: sparse.csr_matrix, units: np.ndarray, s: np.ndarray, self_d: np.ndarray,
                        block: int) -> float:
    """``s' D s`` with D the shortest paths over ``graph`` among ``units`` (weights ``s`` > 0 only enter).

    Dijkstra runs from ``block`` units at a time: memory ``block x n`` floats.
    """
    keep = s > 0
    units, s, self_d = units[keep], s[keep], self_d[keep]
    tot = float((s * s * self_d).sum())
    for start in range(0, units.size, block):
        d = shortest_path(graph, method="D", directed=False, indices=units[start:start + block])[:, units]
        tot += float(s[start:start + block] @ (d @ s))
    return tot


def urban_centrality_index(units: gpd.GeoDataFrame, column: str,
                           distance: Literal["euclidean", "network"] = "euclidean",
                           crs: Any = None, *, block: int = 256) -> UCIResult:
    """Urban Centrality Index of activity ``column`` over polygon ``units`` (grid cells, zones).

    Parameters
    ----------
    units
        Polygons covering the study area (empty units included: they shape the border).
    column
        Activity per unit (NaN = 0).
    distance
        ``euclidean`` (centroid distances) or ``network`` (shortest paths along links between
        touching units, the ``spatial_link`` option of the R package).
    crs
        Metric CRS for distances and areas; default the local UTM zone (the R package and its
        Python port use EPSG:3857).
    block
        Source units per Dijkstra run under ``network`` (memory ``block x n`` floats).

    Returns
    -------
    UCIResult; ``uci`` is NaN when units are not all linked (islands) under ``network``.

    Examples
    --------
    >>> from shapely.geometry import box
    >>> g = gpd.GeoDataFrame({"a": [20, 100, 20, 100, 500, 0, 20, 0, 20]},
    ...     geometry=[box(i % 3, i // 3, i % 3 + 1, i // 3 + 1) for i in range(9)], crs=4326)
    >>> round(urban_centrality_index(g, "a", crs=3857).uci, 5)
    0.24276
    """
    require_crs(units, "units")
    if column not in units.columns:
        raise InputError(f"no column {column!r}", field=column)
    if len(units) < 2:
        raise InputError("the UCI needs at least 2 spatial units", field="units")
    if distance not in ("euclidean", "network"):
        raise InputError(f"unknown distance {distance!r}", field="distance", hint="euclidean or network")
    g = units.to_crs(crs if crs is not None else metric_crs(units)).reset_index(drop=True)
    x = g[column].astype(float).fillna(0.0).to_numpy()
    if (x < 0).any():
        raise InputError("negative activity", field=column)
    if x.sum() <= 0:
        raise InputError("no activity at all (sum is 0)", field=column)
    s = x / x.sum()
    lc = location_coefficient(x)
    cen = np.column_stack([g.geometry.centroid.x, g.geometry.centroid.y])
    self_d = np.sqrt(g.geometry.area.to_numpy() / np.pi)
    if block < 1:
        raise InputError(f"block must be >= 1, got {block}", field="block")
    boundary = g.geometry.union_all().boundary
    border = g.geometry.intersects(boundary).to_numpy()
    nb = int(border.sum())
    b = np.full(nb, 1.0 / nb)
    if distance == "euclidean":
        v = _separation_euclidean(cen, s, self_d)
        vmax = _separation_euclidean(cen[border], b, self_d[border])
    else:
        graph = _link_graph(g.geometry, cen)
        n_comp = connected_components(graph, directed=False)[0]
        if n_comp > 1:  # some units are not linked: distances are infinite
            v = vmax = float("nan")
        else:
            v = _separation_network(graph, np.arange(len(g)), s, self_d, block)
            vmax = _separation_network(graph, np.flatnonzero(border), b, self_d[border], block)
    if not np.isfinite(v) or not np.isfinite(vmax):
        return UCIResult(float("nan"), lc, float("nan"), v, vmax, distance)
    pi = 1.0 - v / max(v, vmax)
    return UCIResult(lc * pi, lc, pi, v, vmax, distance)


@dataclass(frozen=True)
class RankSize:
    """Rank-size fit ``ln(rank - 1/2) = a - b ln(size)``."""

    exponent: float  #: b (Pareto / Zipf exponent)
    slope: float  #: the OLS slope, -b
    se: float  #: Gabaix-Ibragimov standard error b * sqrt(2/n)
    intercept: float
    n: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank_size(sizes: np.ndarray | list[float]) -> RankSize:
    """Rank-size (Zipf) exponent with the rank - 1/2 correction (Gabaix & Ibragimov 2011).

    Needs at least 3 positive sizes, else NaN.

    Examples
    --------
    >>> r = rank_size([1000, 500, 333.3, 250, 200])
    >>> round(r.exponent, 3), round(r.se, 3)
    (1.364, 0.863)
    """
    x = np.sort(np.asarray([s for s in sizes if s is not None and np.isfinite(s) and s > 0], dtype=float))[::-1]
    n = len(x)
    if n < 3:
        return RankSize(float("nan"), float("nan"), float("nan"), float("nan"), n)
    ranks = np.arange(1, n + 1) - 0.5
    lx, ly = np.log(x), np.log(ranks)
    slope, intercept = np.polyfit(lx, ly, 1)
    b = -float(slope)
    return RankSize(b, float(slope), abs(b) * float(np.sqrt(2.0 / n)), float(intercept), n)


def share_outside_main(center_activity: np.ndarray | list[float], total_activity: float) -> float:
    """Share of all activity that lies outside the largest center.

    Examples
    --------
    >>> share_outside_main([60, 20], 100)
    0.4
    """
    a = np.asarray(center_activity, dtype=float)
    if total_activity <= 0:
        return float("nan")
    return float(1.0 - (a.max() if len(a) else 0.0) / total_activity)
