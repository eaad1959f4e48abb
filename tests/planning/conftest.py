"""Small synthetic plan layers in WGS84 near Helsinki (fakes of our own logic's input only)."""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import pytest
import shapely


def grid(x0: float, y0: float, nx: int, ny: int, d: float, **cols: Sequence[object]) -> gpd.GeoDataFrame:
    """``nx`` x ``ny`` touching squares of side ``d`` degrees from (x0, y0)."""
    boxes = [shapely.box(x0 + i * d, y0 + j * d, x0 + (i + 1) * d, y0 + (j + 1) * d)
             for j in range(ny) for i in range(nx)]
    return gpd.GeoDataFrame(dict(cols), geometry=boxes, crs=4326)


@pytest.fixture
def plan_layers() -> dict[str, gpd.GeoDataFrame]:
    landuse = grid(24.90, 60.15, 4, 3, 0.01, cls=["construction", "green", "farm"] * 4)
    redline = gpd.GeoDataFrame({"name": ["r1", "r2"]}, geometry=[
        shapely.Polygon([(24.905, 60.155), (24.925, 60.152), (24.93, 60.17), (24.91, 60.172)]),
        shapely.box(24.93, 60.16, 24.95, 60.175)], crs=4326)
    boundary = gpd.GeoDataFrame({"name": ["ub"]}, geometry=[shapely.box(24.9, 60.15, 24.925, 60.18)], crs=4326)
    return {"landuse": landuse, "redline": redline, "boundary": boundary}
