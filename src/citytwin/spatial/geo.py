"""Small geometry helpers shared by the spatial modules: CRS checks, metric projection, points.

Pure functions over GeoDataFrames (no I/O).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import CRS

from citytwin.foundation.errors import InputError


@dataclass
class InputReport:
    """What was done to the inputs (reprojections, dropped rows), so that nothing is silent."""

    notes: list[str] = field(default_factory=list)
    dropped: dict[str, list[Any]] = field(default_factory=dict)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def drop(self, what: str, ids: list[Any]) -> None:
        if ids:
            self.dropped.setdefault(what, []).extend(ids)

    def as_dict(self) -> dict[str, Any]:
        return {"notes": list(self.notes), "dropped": {k: len(v) for k, v in self.dropped.items()},
                "dropped_ids": {k: [str(i) for i in v[:50]] for k, v in self.dropped.items()}}


def require_crs(gdf: gpd.GeoDataFrame, name: str) -> CRS:
    """The CRS of ``gdf``; an :class:`InputError` naming the layer when it has none."""
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise InputError(f"{name} is not a GeoDataFrame", field=name)
    if gdf.crs is None:
        raise InputError(f"{name} has no coordinate reference system", field=name,
                         hint="set one, e.g. gdf.set_crs('EPSG:4326')")
    return CRS.from_user_input(gdf.crs)


def align_crs(frames: dict[str, gpd.GeoDataFrame], target: Any, report: InputReport | None = None,
              strict: bool = False) -> dict[str, gpd.GeoDataFrame]:
    """Reproject every frame to ``target``; with ``strict`` a differing CRS is an :class:`InputError`.

    Examples
    --------
    >>> a = gpd.GeoDataFrame(geometry=gpd.points_from_xy([24.94], [60.17]), crs=4326)
    >>> b = a.to_crs(3067)
    >>> out = align_crs({"a": a, "b": b}, "EPSG:4326")
    >>> round(float(out["b"].geometry.x.iloc[0]), 6)
    24.94
    """
    tcrs = CRS.from_user_input(target)
    out = {}
    for name, gdf in frames.items():
        crs = require_crs(gdf, name)
        if crs != tcrs:
            if strict:
                raise InputError(f"{name} is in {crs.to_string()}, expected {tcrs.to_string()}", field=name,
                                 hint="reproject the layers to one CRS first")
            if report is not None:
                report.note(f"{name}: reprojected from {crs.to_string()} to {tcrs.to_string()}")
            gdf = gdf.to_crs(tcrs)
        out[name] = gdf
    return out


def metric_crs(gdf: gpd.GeoDataFrame) -> CRS:
    """A metric CRS for ``gdf``: its own when projected in metres, else the local UTM zone."""
    crs = require_crs(gdf, "layer")
    if crs.is_projected and crs.axis_info and crs.axis_info[0].unit_name in ("metre", "meter"):
        return crs
    if len(gdf) == 0 or gdf.geometry.is_empty.all():
        raise InputError("empty layer: no extent to choose a metric projection from", field="geometry")
    utm = gdf.estimate_utm_crs()
    return CRS.from_user_input(utm)


def valid_geometries(gdf: gpd.GeoDataFrame, id_col: str | None, what: str,
                     report: InputReport | None) -> gpd.GeoDataFrame:
    """Rows with a non-empty geometry; the others are dropped and named in ``report``."""
    bad = gdf.geometry.isna() | gdf.geometry.is_empty
    if bad.any():
        ids = (gdf.loc[bad, id_col].tolist() if id_col and id_col in gdf.columns
               else gdf.index[bad].tolist())
        if report is not None:
            report.drop(f"{what}_without_geometry", ids)
            report.note(f"{what}: {int(bad.sum())} row(s) without geometry dropped")
    return gdf.loc[~bad]


def as_points(gdf: gpd.GeoDataFrame) -> gpd.GeoSeries:
    """Points for any geometry: points stay, lines and polygons give a representative point."""
    geom = gdf.geometry
    is_pt = geom.geom_type == "Point"
    if is_pt.all():
        return geom
    out = geom.copy()
    out[~is_pt] = geom[~is_pt].representative_point()
    return out


def xy(points: gpd.GeoSeries) -> np.ndarray:
    """(n, 2) array of point coordinates."""
    return np.column_stack([points.x.to_numpy(), points.y.to_numpy()]) if len(points) else np.empty((0, 2))


def empty_like(columns: dict[str, str], crs: Any) -> gpd.GeoDataFrame:
    """An empty GeoDataFrame with typed columns (for empty areas)."""
    data = {c: pd.Series([], dtype=t) for c, t in columns.items()}
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


ID_COLUMNS: tuple[str, ...] = ("osm_id", "building_id", "poi_id", "parcel_id", "id")


def id_column(frame: pd.DataFrame, preferred: str = "osm_id") -> str | None:
    """The id column of a layer: ``preferred`` when present, else the first of :data:`ID_COLUMNS`.

    Layers ingested with the catalog schemas carry ``building_id`` / ``poi_id`` instead of ``osm_id``.
    """
    if preferred in frame.columns:
        return preferred
    return next((c for c in ID_COLUMNS if c in frame.columns), None)


def with_use(buildings: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Buildings with a ``use`` column (residential / nonresidential / unknown).

    Kept when present; else derived from ``building`` (OSM ``building=*``, as the catalog's
    ``building`` schema stores it) by :func:`citytwin.foundation.osm.building_use`, a footprint with
    an amenity / shop / office tag counting as non-residential.
    """
    from citytwin.foundation.osm import building_use

    if "use" in buildings.columns:
        return buildings
    if "building" not in buildings.columns:
        raise InputError("buildings have neither a 'use' nor a 'building' column", field="use",
                         hint="read them with citytwin.foundation.osm.read_osm_layer(path, 'buildings')")
    act = pd.Series(False, index=buildings.index)
    for k in ("amenity", "shop", "office"):
        if k in buildings.columns:
            act |= buildings[k].notna()
    out = buildings.copy()
    out["use"] = building_use(out["building"], act)
    return out
