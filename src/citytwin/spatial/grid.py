"""H3 grid helpers (h3 4.x): index points, cell polygons, cell neighbours.

Examples
--------
>>> import geopandas as gpd
>>> pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy([24.94, 24.95], [60.17, 60.17]), crs=4326)
>>> cells = point_cells(pts, 9)
>>> len(cells), len(cells[0])
(2, 15)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
from shapely.geometry import Polygon

from citytwin.foundation.errors import InputError
from citytwin.spatial.geo import as_points, require_crs


def point_cells(gdf: gpd.GeoDataFrame, resolution: int) -> np.ndarray:
    """H3 cell of every row (polygons by their representative point)."""
    require_crs(gdf, "layer")
    if not 0 <= resolution <= 15:
        raise InputError(f"H3 resolution {resolution} out of range 0..15", field="resolution")
    if len(gdf) == 0:
        return np.array([], dtype=object)
    pts = as_points(gdf.to_crs(4326))
    return np.array([h3.latlng_to_cell(y, x, resolution) for x, y in zip(pts.x, pts.y, strict=True)],
                    dtype=object)


def cells_frame(cells: Iterable[str], data: pd.DataFrame | None = None) -> gpd.GeoDataFrame:
    """GeoDataFrame of H3 cell polygons (EPSG:4326) indexed by ``cell``, joined with ``data``."""
    cells = list(cells)
    polys = [Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(c)]) for c in cells]
    g = gpd.GeoDataFrame({"cell": cells}, geometry=gpd.GeoSeries(polys, crs=4326), crs=4326)
    if data is not None:
        g = g.merge(data, left_on="cell", right_index=True, how="left")
    return g


def cell_neighbours(cells: Sequence[str], k: int = 1) -> dict[str, list[str]]:
    """Neighbours (ring distance 1..k) of each cell among ``cells``.

    Examples
    --------
    >>> c = h3.latlng_to_cell(60.17, 24.94, 9)
    >>> ring = list(h3.grid_ring(c, 1))
    >>> len(cell_neighbours([c] + ring)[c])
    6
    """
    present = set(cells)
    out = {}
    for c in cells:
        out[c] = sorted(n for n in h3.grid_disk(c, k) if n != c and n in present)
    return out


def fill_cells(cells: Iterable[str], k: int = 1) -> list[str]:
    """The cells plus every cell within ring distance ``k`` of them (to study a study area with zeros)."""
    out: set[str] = set()
    for c in cells:
        out.update(h3.grid_disk(c, k))
    return sorted(out)


def cell_xy(cells: Sequence[str]) -> np.ndarray:
    """(n, 2) lon/lat of cell centres."""
    ll = [h3.cell_to_latlng(c) for c in cells]
    return np.array([(lng, lat) for lat, lng in ll], dtype=float).reshape(-1, 2)
