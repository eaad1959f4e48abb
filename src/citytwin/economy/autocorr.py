"""Spatial weights from boundaries (B4); Moran's I, LISA and Getis-Ord from ``citytwin.stats.autocorr``.

:func:`spatial_weights` builds a libpysal ``W`` (Queen/Rook contiguity, KNN, distance band) from a
GeoDataFrame, with a choice for islands. The statistics (:func:`moran`, :func:`local_moran`,
:func:`getis_ord`, :class:`MoranResult`) live in :mod:`citytwin.stats.autocorr`, shared with the
spatial package (D1 centers), and are re-exported here; that module's docstring states what comes
from esda and the one island convention.

Examples
--------
>>> import numpy as np, libpysal
>>> w = libpysal.weights.lat2W(3, 3)
>>> r = moran(np.arange(9.0), w, permutations=0)
>>> round(r.I, 4)
0.5556
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np

from citytwin.foundation.errors import InputError
from citytwin.stats.autocorr import MoranResult, getis_ord, local_moran, moran

__all__ = ["MoranResult", "getis_ord", "local_moran", "moran", "spatial_weights"]

WeightsKind = Literal["queen", "rook", "knn", "distance"]


def _planar_points(gdf: Any) -> tuple[np.ndarray, str]:
    """Representative points of the geometries in a metric CRS (AEQD around the data when geographic)."""
    g = gdf.geometry
    unit = "CRS units"
    if g.crs is not None and g.crs.is_geographic:
        x0, y0, x1, y1 = g.total_bounds
        g = g.to_crs(f"+proj=aeqd +lat_0={(y0 + y1) / 2} +lon_0={(x0 + x1) / 2} +datum=WGS84 +units=m")
        unit = "metres"
    pts = g.representative_point() if not (g.geom_type == "Point").all() else g
    return np.column_stack([pts.x.to_numpy(), pts.y.to_numpy()]), unit


def spatial_weights(
    gdf: Any,
    kind: WeightsKind = "queen",
    *,
    k: int = 6,
    threshold: float | None = None,
    ids: str | None = None,
    islands: Literal["keep", "raise", "nearest"] = "keep",
) -> Any:
    """Build a libpysal ``W`` from boundaries (contiguity) or from point positions (distance).

    Parameters
    ----------
    gdf
        GeoDataFrame of polygons (contiguity) or any geometries (distance kinds use a
        representative point of each).
    kind
        ``"queen"`` (shared edge or vertex), ``"rook"`` (shared edge), ``"knn"`` (k nearest),
        ``"distance"`` (all within ``threshold``).
    k
        Neighbours for ``knn``.
    threshold
        Distance band. With a geographic CRS the points are projected to an azimuthal equidistant
        projection centred on the data and the threshold is in **metres**; otherwise in CRS units.
        ``None``: the smallest distance that gives every unit a neighbour.
    ids
        Column holding unit ids (default: positions 0..n-1). ``W.id_order`` follows the frame's row order.
    islands
        Units without neighbours: ``"keep"`` (default; reported by a warning and in ``W.islands``),
        ``"raise"`` (``InputError`` listing them) or ``"nearest"`` (join each to its nearest unit).

    Returns
    -------
    libpysal.weights.W
        Binary weights (transform ``"O"``); the statistics below row-standardise a copy.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import box
    >>> g = gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1), box(5, 5, 6, 6)])
    >>> w = spatial_weights(g, "queen", islands="nearest")
    >>> [int(j) for j in w.neighbors[2]]
    [1]
    """
    import libpysal.weights as lw

    if gdf is None or len(gdf) == 0:
        raise InputError("no geometries to build weights from", field="geometry")
    if gdf.geometry.isna().any() or gdf.geometry.is_empty.any():
        bad = np.flatnonzero((gdf.geometry.isna() | gdf.geometry.is_empty).to_numpy())
        raise InputError(f"{bad.size} missing/empty geometries, first at row {int(bad[0])}", field="geometry")
    if ids is not None:
        if ids not in gdf.columns:
            raise InputError(f"id column {ids!r} not in the frame", field=ids)
        id_list = list(gdf[ids])
        if len(set(id_list)) != len(id_list):
            raise InputError("duplicate ids", field=ids)
    else:
        id_list = list(range(len(gdf)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind in ("queen", "rook"):
            cls = lw.Queen if kind == "queen" else lw.Rook
            frame = gdf.reset_index(drop=True).assign(_ct_id=id_list)
            w = cls.from_dataframe(frame, ids="_ct_id", use_index=False, silence_warnings=True)
        elif kind in ("knn", "distance"):
            xy, _ = _planar_points(gdf)
            if kind == "knn":
                if not 1 <= k < len(gdf):
                    raise InputError(f"k={k} must be between 1 and n-1={len(gdf) - 1}", field="k")
                w = lw.KNN(xy, k=k, ids=id_list)
            else:
                thr = float(lw.min_threshold_distance(xy)) * (1 + 1e-9) if threshold is None else float(threshold)
                if thr <= 0:
                    raise InputError(f"threshold must be positive, got {thr}", field="threshold")
                w = lw.DistanceBand(xy, threshold=thr, binary=True, ids=id_list, silence_warnings=True)
        else:
            raise InputError(f"unknown weights kind {kind!r}", field="kind",
                             hint="use queen, rook, knn or distance")
    if w.islands:
        if islands == "raise":
            raise InputError(f"{len(w.islands)} unit(s) without neighbours: {w.islands[:10]}",
                             field="weights", hint="use islands='nearest', or kind='knn'/'distance'")
        if islands == "nearest":
            w = _attach_islands(w, gdf, id_list)
        else:
            warnings.warn(f"spatial weights: {len(w.islands)} island(s) without neighbours: {w.islands[:10]}",
                          UserWarning, stacklevel=2)
    return w


def _attach_islands(w: Any, gdf: Any, id_list: list[Any]) -> Any:
    """Join each island to its nearest unit, symmetrically, each link once with weight 1.

    ``libpysal.weights.attach_islands`` appends the nearest unit to the island's list and the
    island to the nearest unit's list; when two islands are each other's nearest unit (an
    offshore pair), the first island gets its partner twice (``B1: [B2, B2]``, weight 2, an
    asymmetric W), which distorts G* and LISA for the pair. Here the links form a set.
    """
    import libpysal.weights as lw

    xy, _ = _planar_points(gdf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nearest = lw.KNN(xy, k=1)  # positions 0..n-1
    pos = {u: i for i, u in enumerate(id_list)}
    nbrs: dict[Any, list[Any]] = {u: list(w.neighbors[u]) for u in id_list}
    for u in w.islands:
        v = id_list[int(nearest.neighbors[pos[u]][0])]
        for a, b in ((u, v), (v, u)):
            if b not in nbrs[a]:
                nbrs[a].append(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lw.W(nbrs, id_order=list(id_list), silence_warnings=True)
