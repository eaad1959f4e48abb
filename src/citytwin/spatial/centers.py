"""D1 centers: activity density on H3 cells, hot spots, density peaks, center hierarchy, polycentricity.

Method
------
1. **Activity grid**: activity features (POIs, or buildings weighted by floor area, or population)
   are counted (or summed over ``weight_col``) per H3 cell; the study area is the cells covering the
   convex hull of the features, so empty cells count as zeros.
2. **Hot spots**: Getis-Ord Gi* (binary H3 ring-1 weights including the cell itself, analytical
   z-score; Getis & Ord 1995) and local Moran's I (row-standardised ring-1 weights, conditional
   permutation pseudo p-values; Anselin 1995): ``esda.G_Local(star=True, transform="B")`` and
   ``esda.Moran_Local`` through :mod:`citytwin.stats.autocorr`, the implementation (and island
   convention) shared with the economy package.
3. **Centers**: connected groups of hot cells. ``method="peaks"`` (default): density peaks, a
   cell at least as dense as every neighbour and at least ``peak_share`` of the densest cell,
   grown by its neighbours above the mean -- robust on the small grids of a district;
   ``"getis_ord"``: Gi* z above ``z_crit``; ``"local_moran"``: High-High with pseudo p below
   ``alpha`` (both need enough cells for the statistics to mean something). Centers are ranked by activity; level 1 is the main center,
   level 2 a sub-center with at least ``sub_share`` (25 %) of the main center's activity, level 3
   the rest.
4. **Polycentricity**: number of centers, UCI on the grid, rank-size exponent of the centers'
   activity, share of activity outside the main center, primacy (main / second).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from citytwin.foundation.errors import InputError
from citytwin.spatial.geo import InputReport, as_points, id_column, require_crs, valid_geometries
from citytwin.spatial.grid import cell_neighbours, cells_frame, point_cells
from citytwin.spatial.mix import NON_ACTIVITY
from citytwin.spatial.polycentricity import rank_size, share_outside_main, urban_centrality_index

Method = Literal["getis_ord", "local_moran", "peaks"]


def activity_grid(features: gpd.GeoDataFrame, *, resolution: int = 9, weight_col: str | None = None,
                  category_col: str | None = "category", exclude: tuple[str, ...] = NON_ACTIVITY,
                  area_cells: list[str] | None = None, area: Any = None,
                  report: InputReport | None = None) -> gpd.GeoDataFrame:
    """Activity per H3 cell over the study area (zeros included).

    Parameters
    ----------
    features
        POIs / buildings / population points (polygons at a representative point).
    resolution
        H3 resolution (9 by default, ~0.1 km2 cells).
    weight_col
        Sum this column instead of counting features (e.g. floor area, population, jobs).
    category_col, exclude
        Features whose category is in ``exclude`` are left out (when the column exists).
    area_cells
        The study area's cells; default: the cells covering the features' convex hull.
    area
        The study area as (Multi)Polygon(s): a GeoDataFrame/GeoSeries with a CRS, or a shapely
        geometry in lon/lat (EPSG:4326). Its cells (H3 cells whose centre lies inside) replace the
        convex hull; features outside it are left out (counted in the report).

    Returns
    -------
    GeoDataFrame ``cell``, ``activity``, ``area_km2``, ``density`` (activity per km2), EPSG:4326.
    """
    require_crs(features, "features")
    rep = report if report is not None else InputReport()
    features = valid_geometries(features, id_column(features), "features", rep)
    if category_col and category_col in features.columns and exclude:
        features = features[~features[category_col].isin(list(exclude))]
    if len(features) == 0:
        raise InputError("no activity features in the area (empty area)", field="features",
                         hint="check the extent and the categories kept")
    if area is not None:
        if area_cells is not None:
            raise InputError("give area or area_cells, not both", field="area")
        area_cells = area_to_cells(area, resolution)
    cells = point_cells(features, resolution)
    if area is not None:
        inside = np.isin(cells, np.asarray(area_cells, dtype=object))
        if not inside.all():
            rep.note(f"{int((~inside).sum())} feature(s) outside the study area left out")
        if not inside.any():
            raise InputError("no activity features inside the study area (empty area)", field="area")
        features, cells = features[inside], cells[inside]
    if weight_col and weight_col not in features.columns:
        raise InputError(f"no column {weight_col!r}", field=weight_col,
                         hint=f"columns: {', '.join(map(str, features.columns[:20]))}")
    w = (pd.to_numeric(features[weight_col], errors="coerce").fillna(0.0).to_numpy()
         if weight_col else np.ones(len(features)))
    act = pd.Series(w, index=cells).groupby(level=0).sum()
    if area_cells is None:
        pts = as_points(features.to_crs(4326))
        hull = shapely.MultiPoint(list(zip(pts.x, pts.y, strict=True))).convex_hull
        area_cells = []
        if hull.geom_type == "Polygon":
            area_cells = list(h3.geo_to_cells(hull.__geo_interface__, resolution))
    allc = sorted(set(area_cells) | set(act.index))
    out = cells_frame(allc)
    out["activity"] = act.reindex(allc).fillna(0.0).to_numpy()
    out["area_km2"] = [h3.cell_area(c, unit="km^2") for c in allc]
    out["density"] = out["activity"] / out["area_km2"]
    return out


def area_to_cells(area: Any, resolution: int) -> list[str]:
    """H3 cells (centre inside) of a study area: GeoDataFrame/GeoSeries with a CRS or a lon/lat geometry."""
    if isinstance(area, gpd.GeoDataFrame | gpd.GeoSeries):
        require_crs(area if isinstance(area, gpd.GeoDataFrame) else gpd.GeoDataFrame(geometry=area), "area")
        geom = area.to_crs(4326).geometry.union_all() if len(area) else None
    else:
        geom = area
    if not isinstance(geom, shapely.Geometry) or geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
        raise InputError("the study area must be a non-empty (Multi)Polygon", field="area")
    x0, y0, x1, y1 = geom.bounds
    if x0 < -180 or x1 > 180 or y0 < -90 or y1 > 90:
        raise InputError(f"study area bounds {geom.bounds} are not lon/lat", field="area",
                         hint="pass a GeoDataFrame with its CRS")
    cells = sorted(h3.geo_to_cells(geom.__geo_interface__, resolution))
    if not cells:
        raise InputError(f"the study area holds no H3 cell centre at resolution {resolution}", field="area",
                         hint="use a finer resolution")
    return cells


def ring_weights(cells: list[str]) -> sparse.csr_matrix:
    """Binary ring-1 H3 contiguity among ``cells`` (no self weight)."""
    pos = {c: i for i, c in enumerate(cells)}
    nb = cell_neighbours(cells)
    rows, cols = [], []
    for c, ns in nb.items():
        for other in ns:
            rows.append(pos[c])
            cols.append(pos[other])
    n = len(cells)
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))


def getis_ord_star(y: np.ndarray, w: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Getis-Ord Gi* statistic and z-score, binary weights with the cell itself included.

    :func:`citytwin.stats.autocorr.getis_ord` (``star=True, transform="b"``; esda's ``G_Local``),
    the one implementation shared with the economy package. Constant activity: NaN (undefined).

    Returns
    -------
    (G, z) where ``G = sum_j w_ij y_j / sum y`` and z is the analytical z-score.
    """
    y = np.asarray(y, dtype=float)
    if not y.std() > 0:
        nan = np.full(len(y), np.nan)
        return nan, nan.copy()
    from citytwin.stats import autocorr  # numba and esda load on first use only

    wb = sparse.csr_matrix(w, dtype=float, copy=True)
    wb.data[:] = 1.0
    r = autocorr.getis_ord(y, wb, star=True, transform="b", permutations=0)
    return r["G"].to_numpy(), r["z"].to_numpy()


class LocalMoran(NamedTuple):
    """Local Moran's I per cell: statistic, quadrant, pseudo p, and mean / variance of the permutations."""

    i: np.ndarray
    q: np.ndarray
    p_sim: np.ndarray
    ei_sim: np.ndarray
    vi_sim: np.ndarray


def local_moran(y: np.ndarray, w: sparse.csr_matrix, permutations: int = 999,
                seed: int | None = 12345) -> LocalMoran:
    """Local Moran's I with row-standardised weights, quadrant and conditional-permutation pseudo p.

    :func:`citytwin.stats.autocorr.local_moran_arrays` (esda's statistic, our permutation engine
    with ``draws="fast"``), the one implementation shared with the economy package, with its island
    convention: a cell without neighbours has ``I = 0``, its quadrant by esda's rule, and NaN
    inference. Quadrants: 1 High-High, 2 Low-High, 3 Low-Low, 4 High-Low. Constant activity: I = 0,
    NaN inference (undefined).

    Returns
    -------
    LocalMoran (I, quadrant, p_sim, and the permutation mean and variance of I)
    """
    y = np.asarray(y, dtype=float)
    n = len(y)
    nan = np.full(n, np.nan)
    if not y.std() > 0:
        return LocalMoran(np.zeros(n), np.full(n, 3, dtype=np.int64), nan, nan.copy(), nan.copy())
    from citytwin.stats import autocorr

    r = autocorr.local_moran_arrays(y, sparse.csr_matrix(w, dtype=float), permutations=permutations,
                                    seed=seed, transform="r")
    if r.p_sim is None or r.EI_sim is None or r.sd_sim is None:
        return LocalMoran(r.Is, r.q, nan, nan.copy(), nan.copy())
    return LocalMoran(r.Is, r.q, r.p_sim, r.EI_sim, r.sd_sim ** 2)


@dataclass
class CentersResult:
    """Centers found in an activity grid.

    Attributes
    ----------
    cells
        Grid cells: ``activity``, ``density``, ``gi_z``, ``lisa_i``, ``lisa_q``, ``lisa_p``, ``hot``,
        ``peak``, ``center_id`` (-1 outside centers).
    centers
        One row per center: ``center_id``, ``rank``, ``level``, ``n_cells``, ``area_km2``,
        ``activity``, ``share``, ``peak_cell``, ``lon``, ``lat`` and the dissolved cell polygon.
    indices
        Polycentricity indices (see :func:`polycentricity`).
    report
        Parameters and input handling.
    """

    cells: gpd.GeoDataFrame
    centers: gpd.GeoDataFrame
    indices: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def _components(mask: np.ndarray, w: sparse.csr_matrix) -> np.ndarray:
    """Label connected groups of masked cells (-1 elsewhere)."""
    idx = np.flatnonzero(mask)
    lab = np.full(len(mask), -1, dtype=np.int64)
    if len(idx) == 0:
        return lab
    sub = w[idx][:, idx]
    _, comp = connected_components(sub, directed=False)
    lab[idx] = comp
    return lab


def detect_centers(grid: gpd.GeoDataFrame, *, method: Method = "peaks", z_crit: float = 1.96,
                   alpha: float = 0.05, permutations: int = 999, seed: int | None = 12345,
                   peak_share: float = 0.25, sub_share: float = 0.25, min_activity: float = 0.0,
                   uci_distance: Literal["euclidean", "network"] = "euclidean") -> CentersResult:
    """Find centers in an :func:`activity_grid` and measure polycentricity.

    Parameters
    ----------
    grid
        Cells with ``cell`` and ``activity``.
    method
        ``peaks`` (default; robust on small grids), ``getis_ord`` or ``local_moran`` (module docstring).
    z_crit, alpha
        Gi* z threshold; pseudo p threshold of local Moran.
    permutations, seed
        Local Moran permutations (reproducible with ``seed``).
    peak_share
        A density peak must reach this share of the densest cell.
    sub_share
        Level-2 sub-centers have at least this share of the main center's activity.
    min_activity
        Centers with less total activity are dropped.
    uci_distance
        Distance of the UCI (``euclidean`` or ``network`` links between cells).
    """
    if "cell" not in grid.columns or "activity" not in grid.columns:
        raise InputError("the grid needs 'cell' and 'activity' columns", field="grid",
                         hint="build it with activity_grid()")
    if method not in ("getis_ord", "local_moran", "peaks"):
        raise InputError(f"unknown method {method!r}", field="method", hint="getis_ord, local_moran or peaks")
    if not (np.isfinite(min_activity) and min_activity >= 0):
        raise InputError(f"min_activity must be a number >= 0, got {min_activity}", field="min_activity")
    g = grid.reset_index(drop=True).copy()
    cells = g["cell"].tolist()
    y = g["activity"].to_numpy(dtype=float)
    if len(g) < 3 or y.sum() <= 0:
        raise InputError("too few cells or no activity to find centers (empty area)", field="grid")
    w = ring_weights(cells)
    _, gz = getis_ord_star(y, w)
    li, lq, lp, _, _ = local_moran(y, w, permutations, seed)
    g["gi_z"] = gz
    g["lisa_i"] = li
    g["lisa_q"] = lq
    g["lisa_p"] = lp
    dens = g["density"].to_numpy(dtype=float) if "density" in g.columns else y
    # density peaks: at least as dense as every neighbour
    wc = w.tocoo()
    nb_max = np.full(len(g), -np.inf)
    np.maximum.at(nb_max, wc.row, dens[wc.col])
    g["peak"] = (dens >= nb_max) & (dens > 0) & (dens >= peak_share * dens.max())
    if method == "getis_ord":
        hot = (gz > z_crit) & (y > 0)
    elif method == "local_moran":
        hot = (lq == 1) & (lp < alpha) & (y > 0)
    else:
        above = y > y.mean()
        near_peak = np.asarray((w @ g["peak"].to_numpy(dtype=float)) > 0).ravel()
        hot = g["peak"].to_numpy() | (above & near_peak)
    g["hot"] = hot
    lab = _components(hot, w)
    # rank the groups by activity, drop small ones
    groups = pd.DataFrame({"lab": lab, "activity": y})[lab >= 0].groupby("lab")["activity"].sum()
    groups = groups[groups >= min_activity].sort_values(ascending=False)
    new_id = {int(old): i + 1 for i, old in enumerate(groups.index)}
    g["center_id"] = [new_id.get(int(v), -1) for v in lab]
    rows = []
    total = float(y.sum())
    for cid in range(1, len(groups) + 1):
        sel = g["center_id"] == cid
        sub = g[sel]
        pk = sub.iloc[int(np.argmax(sub["activity"].to_numpy()))]
        lat, lon = h3.cell_to_latlng(pk["cell"])
        rows.append({"center_id": cid, "rank": cid, "n_cells": int(sel.sum()),
                     "area_km2": float(sub["area_km2"].sum()) if "area_km2" in sub else float("nan"),
                     "activity": float(sub["activity"].sum()), "share": float(sub["activity"].sum()) / total,
                     "peak_cell": pk["cell"], "lon": lon, "lat": lat,
                     "geometry": sub.geometry.union_all()})
    if rows:
        centers = gpd.GeoDataFrame(rows, geometry="geometry", crs=4326)
        main = centers["activity"].iloc[0]
        centers["level"] = np.where(centers["rank"] == 1, 1, np.where(centers["activity"] >= sub_share * main, 2, 3))
    else:
        centers = gpd.GeoDataFrame({c: pd.Series([], dtype=t) for c, t in (
            ("center_id", "int64"), ("rank", "int64"), ("n_cells", "int64"), ("area_km2", float),
            ("activity", float), ("share", float), ("peak_cell", object), ("lon", float), ("lat", float),
            ("level", "int64"))}, geometry=gpd.GeoSeries([], crs=4326), crs=4326)
    indices = polycentricity(g, centers, uci_distance=uci_distance)
    report = {"method": method, "z_crit": z_crit, "alpha": alpha, "permutations": permutations, "seed": seed,
              "peak_share": peak_share, "sub_share": sub_share, "min_activity": min_activity, "cells": len(g), "hot_cells": int(hot.sum())}
    return CentersResult(cells=g, centers=centers, indices=indices, report=report)


def polycentricity(cells: gpd.GeoDataFrame, centers: gpd.GeoDataFrame,
                   uci_distance: Literal["euclidean", "network"] = "euclidean") -> dict[str, Any]:
    """Polycentricity indices of a grid and its centers.

    ``n_centers``, ``n_subcenters`` (level 2), ``uci`` (+ parts), ``rank_size_exponent`` (+ ``slope``,
    ``se``; NaN with fewer than 3 centers), ``share_outside_main``, ``share_in_centers``, ``primacy``
    (main / second center activity).
    """
    total = float(cells["activity"].sum())
    act = centers["activity"].to_numpy(dtype=float) if len(centers) else np.array([])
    u = urban_centrality_index(cells, "activity", distance=uci_distance)
    rs = rank_size(act)
    return {
        "n_centers": len(centers),
        "n_subcenters": int((centers["level"] == 2).sum()) if len(centers) else 0,
        "uci": u.uci, "uci_location_coef": u.location_coef, "uci_proximity_index": u.proximity_index,
        "rank_size_exponent": rs.exponent, "rank_size_slope": rs.slope, "rank_size_se": rs.se,
        "share_outside_main": share_outside_main(act, total) if len(act) else 1.0,
        "share_in_centers": float(act.sum() / total) if total > 0 else float("nan"),
        "primacy": float(act[0] / act[1]) if len(act) >= 2 else float("nan"),
        "total_activity": total,
    }


def find_centers(features: gpd.GeoDataFrame, *, resolution: int = 9, weight_col: str | None = None,
                 method: Method = "peaks", area: Any = None, min_activity: float = 0.0,
                 **kwargs: Any) -> CentersResult:
    """:func:`activity_grid` then :func:`detect_centers` in one call.

    ``area`` (the study area, see :func:`activity_grid`) and ``min_activity`` (the least total
    activity of a center, see :func:`detect_centers`) are the user's choices; other keywords go to
    :func:`detect_centers`.
    """
    rep = InputReport()
    grid = activity_grid(features, resolution=resolution, weight_col=weight_col, area=area, report=rep)
    res = detect_centers(grid, method=method, min_activity=min_activity, **kwargs)
    res.report.update({"resolution": resolution, "weight_col": weight_col, "area": area is not None,
                       **rep.as_dict()})
    return res
