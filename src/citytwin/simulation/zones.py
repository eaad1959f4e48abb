"""Zones of an OD matrix mapped to network edges: H3 cells or district polygons (pure; no I/O).

An edge belongs to a zone when its midpoint (half-way along its shape, in WGS84) lies in the zone: in the
H3 cell at the zone's own resolution, or inside (or on the boundary of) the district polygon. The caller
gives the edges' midpoints (:func:`citytwin.workflows.simulation_demand.edge_midpoints` reads them from a
geo-referenced SUMO network) and checks the OD matrix against the result
(:func:`citytwin.simulation.demand.od_trips` names the row of an unknown zone or of a zone without edges).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from citytwin.foundation.errors import InputError


def h3_zone_edges(edges: pd.DataFrame, zones: Iterable[str], *, file: str | None = None) -> dict[str, list[str]]:
    """``{cell: [edge, ...]}`` for H3 cells of any resolution (edges sorted; a cell without edges maps to []).

    Parameters
    ----------
    edges
        Columns ``edge``, ``lon``, ``lat`` (the edge's midpoint, WGS84).
    zones
        H3 cell ids (the OD matrix's zones).

    Raises
    ------
    InputError
        Naming the first zone that is not a valid H3 cell.

    Examples
    --------
    >>> e = pd.DataFrame({"edge": ["a", "b", "c"], "lon": [24.94, 24.9401, 25.5], "lat": [60.17, 60.1701, 60.5]})
    >>> h3_zone_edges(e, ["891126d338fffff", "891126d338bffff", "871126d33ffffff"])
    {'871126d33ffffff': ['a', 'b'], '891126d338bffff': [], '891126d338fffff': ['a', 'b']}
    """
    import h3

    from citytwin.foundation.spacelink import h3_cells_arrow

    cells = sorted({str(z) for z in zones})
    for z in cells:
        if not h3.is_valid_cell(z):
            raise InputError(f"zone {z!r} is not an H3 cell", file=file, field="origin/destination",
                             hint="give H3 cell ids (hex strings such as 891126d338fffff) or use district zones")
    out: dict[str, list[str]] = {z: [] for z in cells}
    for res in sorted({h3.get_resolution(z) for z in cells}):
        got = h3_cells_arrow(edges["lon"].to_numpy(float), edges["lat"].to_numpy(float), res).to_pylist()
        for edge, cell in zip(edges["edge"], got, strict=True):
            if cell in out:
                out[cell].append(str(edge))
    return {z: sorted(v) for z, v in out.items()}


def polygon_zone_edges(edges: pd.DataFrame, districts: object, field: str, *,
                       file: str | None = None) -> dict[str, list[str]]:
    """``{district: [edge, ...]}`` for district polygons: an edge whose midpoint lies inside or on the boundary
    of a district belongs to it (to the first one, in file order, where districts touch).

    Parameters
    ----------
    edges
        Columns ``edge``, ``lon``, ``lat`` (WGS84).
    districts
        A GeoDataFrame of polygons in WGS84 (EPSG:4326) with the district name in column ``field``.

    Raises
    ------
    InputError
        When ``field`` is missing, a name is empty or repeated, or a geometry is not a polygon.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import box
    >>> d = gpd.GeoDataFrame({"name": ["west", "east"]}, geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1)], crs=4326)
    >>> e = pd.DataFrame({"edge": ["a", "b", "c"], "lon": [0.5, 1.5, 3.0], "lat": [0.5, 0.5, 0.5]})
    >>> polygon_zone_edges(e, d, "name")
    {'west': ['a'], 'east': ['b']}
    """
    import geopandas as gpd
    import shapely

    if not isinstance(districts, gpd.GeoDataFrame):
        raise InputError("districts must be polygons with a name column", file=file)
    if field not in districts.columns:
        raise InputError(f"the districts have no column {field!r}", file=file, field=field,
                         hint=f"columns: {', '.join(str(c) for c in districts.columns if c != 'geometry')}")
    names = [None if pd.isna(v) else str(v) for v in districts[field]]
    for row, (name, geom) in enumerate(zip(names, districts.geometry, strict=True), start=1):
        if not name:
            raise InputError("a district has no name", file=file, row=row, field=field)
        if geom is None or geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise InputError(f"district {name!r} is not a polygon ({getattr(geom, 'geom_type', 'empty')})",
                             file=file, row=row, field="geometry")
    seen: set[str] = set()
    for row, name in enumerate(names, start=1):
        if name in seen:
            raise InputError(f"district {name!r} appears twice", file=file, row=row, field=field)
        seen.add(str(name))
    pts = shapely.points(edges["lon"].to_numpy(float), edges["lat"].to_numpy(float))
    out: dict[str, list[str]] = {str(n): [] for n in names}
    taken = pd.Series(False, index=range(len(edges)))
    for name, geom in zip(names, districts.geometry, strict=True):
        inside = shapely.intersects(geom, pts) & ~taken.to_numpy()
        out[str(name)] = sorted(str(e) for e in edges["edge"].to_numpy()[inside])
        taken |= inside
    return out
