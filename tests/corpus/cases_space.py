"""Corpus cases about SPACE and KEYS (issue 12): coordinate columns, CRS, geometry ranges, swapped
coordinates, zipped Shapefiles, admin points and administrative names."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer
from registry import case

LON = [116.397, 116.404, 116.420]
LAT = [39.908, 39.915, 39.930]
_TO_UTM = Transformer.from_crs(4326, 32650, always_xy=True)
UTM_X, UTM_Y = (list(v) for v in _TO_UTM.transform(LON, LAT))


def _csv(folder: Path, name: str, df: pd.DataFrame) -> list[Path]:
    p = folder / name
    df.to_csv(p, index=False)
    return [p]


def _pois(lon_name: str, lat_name: str, lon: list[float] = LON, lat: list[float] = LAT) -> pd.DataFrame:
    return pd.DataFrame({"poi_id": [1, 2, 3], "name": ["a", "b", "c"], "category": ["school", "park", "clinic"],
                         lon_name: lon, lat_name: lat})


def _xy(ws: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    g = ws.read(name).sort_values(ws.read(name).columns[0])
    return g.geometry.x.to_numpy(), g.geometry.y.to_numpy()


def _near(expect_lon: list[float] | np.ndarray, expect_lat: list[float] | np.ndarray, tol: float = 1e-8) -> Any:
    def check(ws: Any, r: Any) -> None:
        x, y = _xy(ws, r.dataset)
        np.testing.assert_allclose(x, expect_lon, atol=tol)
        np.testing.assert_allclose(y, expect_lat, atol=tol)
    return check


def _gcj_expected() -> tuple[np.ndarray, np.ndarray]:
    from citytwin.foundation.coords import gcj02_to_wgs84

    return gcj02_to_wgs84(np.array(LON), np.array(LAT))


def _bd_expected() -> tuple[np.ndarray, np.ndarray]:
    from citytwin.foundation.coords import bd09_to_wgs84

    return bd09_to_wgs84(np.array(LON), np.array(LAT))


def _check_gcj(ws: Any, r: Any) -> None:
    _near(*_gcj_expected())(ws, r)


def _check_bd(ws: Any, r: Any) -> None:
    _near(*_bd_expected())(ws, r)


def _noted(text: str) -> Any:
    def check(ws: Any, r: Any) -> None:
        assert any(text in n for n in r.notes), r.notes
    return check


# --------------------------------------------------------------------------- CSV coordinates
@case("csv_pois_lng_gcj02", "csv", "POIs with lng_gcj02/lat_gcj02 columns (AMap export): recognised, GCJ-02 → WGS84",
      expect="kept", rows=3, ingest={"schema": "poi"}, check=_check_gcj)
def _lng_gcj02(folder: Path) -> list[Path]:
    return _csv(folder, "pois.csv", _pois("lng_gcj02", "lat_gcj02"))


@case("csv_pois_bd09_chinese_headers", "csv", "POIs with 经度(BD09)/纬度(BD09) columns (Baidu): BD-09 → WGS84",
      expect="kept", rows=3, ingest={"schema": "poi"}, check=_check_bd)
def _bd09(folder: Path) -> list[Path]:
    return _csv(folder, "pois.csv", _pois("经度(BD09)", "纬度(BD09)"))


@case("csv_pois_longitude_wgs84", "csv", "POIs with longitude_wgs84/latitude_wgs84 columns", expect="kept", rows=3,
      ingest={"schema": "poi"}, check=_near(LON, LAT))
def _wgs84_names(folder: Path) -> list[Path]:
    return _csv(folder, "pois.csv", _pois("longitude_wgs84", "latitude_wgs84"))


@case("csv_pois_gcj_hint_with_adcode", "csv", "POIs with lng_gcj02/lat_gcj02 and an adcode: coordinates used, "
      "not the district's point", expect="kept", rows=3, ingest={"schema": "poi"}, check=_check_gcj)
def _gcj_adcode(folder: Path) -> list[Path]:
    return _csv(folder, "pois.csv", _pois("lng_gcj02", "lat_gcj02").assign(adcode="110101"))


@case("csv_pois_utm_with_crs", "csv", "POIs with x/y in UTM 50N metres and --crs EPSG:32650: transformed to WGS84",
      expect="kept", rows=3, ingest={"schema": "poi", "crs": "EPSG:32650"}, check=_near(LON, LAT))
def _utm_crs(folder: Path) -> list[Path]:
    return _csv(folder, "pois.csv", _pois("x", "y", UTM_X, UTM_Y))


@case("csv_pois_utm_without_crs", "csv", "POIs with x/y in metres and no --crs: every row quarantined (not degrees), "
      "so nothing is stored", expect="error", reason="outside [-180, 180]", ingest={"schema": "poi"})
def _utm_nocrs(folder: Path) -> list[Path]:
    return _csv(folder, "pois.csv", _pois("x", "y", UTM_X, UTM_Y))


@case("csv_pois_invalid_crs", "csv", "--crs EPSG:999999 (no such CRS)", expect="error", reason="unknown CRS",
      ingest={"schema": "poi", "crs": "EPSG:999999"})
def _bad_crs(folder: Path) -> list[Path]:
    return _csv(folder, "pois.csv", _pois("lon", "lat"))


@case("csv_pois_crs_garbage", "csv", "--crs 'beijing54ish' (not a CRS name)", expect="error", reason="unknown CRS",
      ingest={"schema": "poi", "crs": "beijing54ish"})
def _bad_crs2(folder: Path) -> list[Path]:
    return _csv(folder, "pois.csv", _pois("lon", "lat"))


def _county_of_code(ws: Any, r: Any) -> None:
    from citytwin.foundation.boundaries import admin_points

    df = ws.read(r.dataset)
    # the codes are kept as the file gives them
    assert df["adcode"].tolist() == ["110101001", "420602001001", "110101000", "420600000000"]
    # a township (9 digits with a non-zero tail in its 12-digit form) and a village get the point of
    # the county their first 6 digits name, and say so; a county's 9-digit code and a city's
    # 12-digit code are the unit itself
    assert df["geometry_source"].tolist() == ["admin_point:county_of_code", "admin_point:county_of_code",
                                              "admin_point", "admin_point"]
    pts = admin_points().drop_duplicates("adcode").set_index("adcode")
    want = pts.loc[["110101", "420602", "110101", "420600"]]
    np.testing.assert_allclose(df.geometry.x.to_numpy(), want["lon"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(df.geometry.y.to_numpy(), want["lat"].to_numpy(), atol=1e-12)
    assert any("2 of 4 record(s)" in n and "township" in n and "county_of_code" in n for n in r.notes), r.notes
    meta = {c["name"]: c for c in ws.catalog.get(r.dataset).current.columns}
    assert "county_of_code" in meta["geometry_source"]["description"]


# a 9-digit township or 12-digit village statistical code names a unit smaller than any whose point
# ships: it gets the point of its county (the first 6 digits), said in geometry_source and a note
@case("csv_adcode_township_village", "csv", "9-digit township and 12-digit village codes: placed at their "
      "county's point, geometry_source admin_point:county_of_code", expect="kept", rows=4,
      ingest={"schema": "admin_unit", "h3": False}, check=_county_of_code)
def _township(folder: Path) -> list[Path]:
    p = folder / "villages.csv"
    p.write_text("name,adcode\n东华门街道,110101001\n某村,420602001001\n东城区,110101000\n襄阳市,420600000000\n",
                 encoding="utf-8")
    return [p]


def _unknown_code_located(ws: Any, r: Any) -> None:
    df = ws.read(r.dataset)
    np.testing.assert_allclose(df.geometry.x.to_numpy(), LON[:2], atol=1e-12)
    np.testing.assert_allclose(df.geometry.y.to_numpy(), LAT[:2], atol=1e-12)
    note = next(n for n in r.notes if "names no known unit" in n)
    assert "each placed at its own coordinates" in note and "without a point" not in note, note


# city_coords_cpca/adcodes.csv (tried as a new user, `-s admin_unit`): 291 records carry codes of
# former districts (371401000000 市辖区) and their own coordinates. Before: the note said they were
# kept "without a point", though each had its coordinates and kept them
@case("csv_adcode_unknown_with_coordinates", "csv", "codes that name no known unit on records with coordinates: "
      "the note says they keep their own points", expect="kept", rows=2,
      ingest={"schema": "admin_unit", "h3": False}, check=_unknown_code_located)
def _unknown_code(folder: Path) -> list[Path]:
    p = folder / "codes.csv"
    p.write_text(f"adcode,name,longitude,latitude\n371401000000,市辖区,{LON[0]},{LAT[0]}\n"
                 f"441401000000,市辖区,{LON[1]},{LAT[1]}\n", encoding="utf-8")
    return [p]


@case("csv_pois_columns_swapped", "csv", "lon and lat columns swapped for Beijing (lat 116.4): all quarantined",
      expect="error", reason="look swapped (lon 39.908, lat 116.397)", ingest={"schema": "poi"})
def _swapped_cols(folder: Path) -> list[Path]:
    return _csv(folder, "pois.csv", _pois("lon", "lat", LAT, LON))


@case("csv_pois_one_swapped", "csv", "one POI of three with lon and lat swapped", expect="quarantined", rows=2,
      quarantined=1, reason="look swapped", ingest={"schema": "poi"})
def _one_swapped(folder: Path) -> list[Path]:
    return _csv(folder, "pois.csv", _pois("lon", "lat", [LON[0], LAT[1], LON[2]], [LAT[0], LON[1], LAT[2]]))


@case("csv_pois_lon_200", "csv", "one POI at longitude 200", expect="quarantined", rows=2, quarantined=1,
      reason="outside", ingest={"schema": "poi"})
def _lon200(folder: Path) -> list[Path]:
    return _csv(folder, "pois.csv", _pois("lon", "lat", [LON[0], 200.0, LON[2]]))


def _admin_fallback_check(ws: Any, r: Any) -> None:
    df = ws.read(r.dataset).sort_values("poi_id")
    assert df["geometry_source"].tolist() == ["coordinates", "admin_point", "coordinates"]
    assert any("1 of 3 record(s)" in n for n in r.notes), r.notes


@case("csv_pois_admin_point_fallback", "csv", "one POI without coordinates but with an adcode: placed at the "
      "district's point, said in geometry_source and a note", expect="kept", rows=3, ingest={"schema": "poi"},
      check=_admin_fallback_check)
def _admin_fallback(folder: Path) -> list[Path]:
    df = _pois("lon", "lat").assign(adcode="110101")
    df.loc[1, ["lon", "lat"]] = np.nan
    return _csv(folder, "pois.csv", df)


# --------------------------------------------------------------------------- keys
@case("csv_panel_two_spellings", "csv", "北京 and 北京市 in one year (one administrative unit)",
      expect="quarantined", rows=2, quarantined=1, reason="are one administrative unit (110100)",
      ingest={"schema": "city_panel"})
def _two_spellings(folder: Path) -> list[Path]:
    p = folder / "panel.csv"
    p.write_text("城市,年份,gdp\n北京市,2020,36102.6\n上海市,2020,38700.6\n北京,2020,36103\n", encoding="utf-8")
    return [p]


def _adcodes(expected: list[str]) -> Any:
    def check(ws: Any, r: Any) -> None:
        assert sorted(ws.read(r.dataset)["adcode"]) == sorted(expected)
    return check


@case("csv_panel_zero_width", "csv", "city names with zero-width spaces and a BOM inside (copied from a web page)",
      expect="kept", rows=2, ingest={"schema": "city_panel"}, check=_adcodes(["310100", "440100"]))
def _zero_width(folder: Path) -> list[Path]:
    p = folder / "panel.csv"
    p.write_text("城市,年份,gdp\n上\u200b海市,2020,1\n广\ufeff州\u200d,2020,2\n", encoding="utf-8")
    return [p]


@case("csv_panel_municipalities", "csv", "the four municipalities: prefecture-level codes (重庆 500100)",
      expect="kept", rows=4, ingest={"schema": "city_panel"},
      check=_adcodes(["110100", "120100", "310100", "500100"]))
def _municipalities(folder: Path) -> list[Path]:
    p = folder / "panel.csv"
    p.write_text("城市,年份,gdp\n北京,2020,1\n天津市,2020,2\n上海,2020,3\n重庆市,2020,4\n", encoding="utf-8")
    return [p]


# --------------------------------------------------------------------------- GeoJSON
def _fc(features: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": p, "geometry": g} for p, g in features]})


def _box(x0: float, y0: float, d: float = 0.01) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + d, y0], [x0 + d, y0 + d], [x0, y0 + d], [x0, y0]]]}


def _parcel(i: int) -> dict[str, Any]:
    return {"parcel_id": str(i), "land_use": "R"}


def _geojson(folder: Path, feats: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> list[Path]:
    p = folder / "layer.geojson"
    p.write_text(_fc(feats), encoding="utf-8")
    return [p]


@case("geojson_polygon_at_200_100", "geojson", "a parcel at (200, 100) beside a good one", expect="quarantined",
      rows=1, quarantined=1, reason="outside the WGS84 range", ingest={"schema": "land_use"})
def _poly200(folder: Path) -> list[Path]:
    return _geojson(folder, [(_parcel(1), _box(116.4, 39.9)), (_parcel(2), _box(200, 100))])


@case("geojson_point_swapped", "geojson", "a POI written (lat, lon): (39.9, 116.4)", expect="quarantined", rows=1,
      quarantined=1, reason="look swapped", ingest={"schema": "poi"})
def _swapped_point(folder: Path) -> list[Path]:
    return _geojson(folder, [({"poi_id": 1, "category": "park"}, {"type": "Point", "coordinates": [116.4, 39.9]}),
                             ({"poi_id": 2, "category": "park"}, {"type": "Point", "coordinates": [39.9, 116.4]})])


@case("geojson_mixed_types_land_use", "geojson", "polygons, a line and a point into land_use: kept with a note "
      "counting each type", expect="kept", rows=4, ingest={"schema": "land_use"},
      check=_noted("mixed geometry types: 2 Polygon, 1 LineString, 1 Point"))
def _mixed(folder: Path) -> list[Path]:
    return _geojson(folder, [(_parcel(1), _box(116.4, 39.9)), (_parcel(2), _box(116.5, 39.9)),
                             (_parcel(3), {"type": "LineString", "coordinates": [[116.4, 39.8], [116.5, 39.8]]}),
                             (_parcel(4), {"type": "Point", "coordinates": [116.45, 39.85]})])


@case("geojson_points_gcj02", "geojson", "AMap points in a GeoJSON with --crs gcj02", expect="kept", rows=3,
      ingest={"schema": "poi", "crs": "gcj02"}, check=_check_gcj)
def _geojson_gcj(folder: Path) -> list[Path]:
    return _geojson(folder, [({"poi_id": i + 1, "category": "park"}, {"type": "Point", "coordinates": [x, y]})
                             for i, (x, y) in enumerate(zip(LON, LAT, strict=True))])


@case("geojson_points_bd09", "geojson", "Baidu points in a GeoJSON with --crs bd09", expect="kept", rows=3,
      ingest={"schema": "poi", "crs": "bd09"}, check=_check_bd)
def _geojson_bd(folder: Path) -> list[Path]:
    return _geojson(folder, [({"poi_id": i + 1, "category": "park"}, {"type": "Point", "coordinates": [x, y]})
                             for i, (x, y) in enumerate(zip(LON, LAT, strict=True))])


@case("geojson_points_amap_alias", "geojson", "AMap points in a GeoJSON with --crs amap (a GCJ-02 alias)",
      expect="kept", rows=3, ingest={"schema": "poi", "crs": "amap"}, check=_check_gcj)
def _geojson_amap(folder: Path) -> list[Path]:
    return _geojson(folder, [({"poi_id": i + 1, "category": "park"}, {"type": "Point", "coordinates": [x, y]})
                             for i, (x, y) in enumerate(zip(LON, LAT, strict=True))])


@case("geojson_invalid_crs", "geojson", "a GeoJSON with --crs EPSG:0", expect="error", reason="unknown CRS",
      ingest={"schema": "land_use", "crs": "EPSG:0"})
def _geojson_badcrs(folder: Path) -> list[Path]:
    return _geojson(folder, [(_parcel(1), _box(116.4, 39.9))])


@case("geojson_all_out_of_range", "geojson", "every parcel in projected metres labelled as WGS84: all quarantined",
      expect="error", reason="outside the WGS84 range", ingest={"schema": "land_use"})
def _geojson_metres(folder: Path) -> list[Path]:
    return _geojson(folder, [(_parcel(1), _box(440000, 4417000, 100)), (_parcel(2), _box(440200, 4417000, 100))])


# --------------------------------------------------------------------------- GeoPackage
def _gdf(n: int = 2, crs: Any = 4326, geoms: list[Any] | None = None) -> gpd.GeoDataFrame:
    geoms = geoms or [shapely.box(116.40 + i * 0.01, 39.90, 116.405 + i * 0.01, 39.905) for i in range(n)]
    return gpd.GeoDataFrame({"parcel_id": [str(i + 1) for i in range(len(geoms))], "land_use": ["R"] * len(geoms)},
                            geometry=geoms, crs=crs)


def _gpkg(folder: Path, gdf: gpd.GeoDataFrame) -> list[Path]:
    p = folder / "layer.gpkg"
    gdf.to_file(p, driver="GPKG", engine="pyogrio")
    return [p]


def _extent_in_beijing(ws: Any, r: Any) -> None:
    ext = ws.info(r.dataset).versions[-1].extent
    assert ext is not None and 116.2 < ext[0] < ext[2] < 116.6 and 39.8 < ext[1] < ext[3] < 40.0, ext


@case("gpkg_clean_land_use", "gpkg", "a clean GeoPackage layer (EPSG:4326)", expect="kept", rows=2,
      ingest={"schema": "land_use"}, check=_extent_in_beijing)
def _gpkg_clean(folder: Path) -> list[Path]:
    return _gpkg(folder, _gdf())


@case("gpkg_projected", "gpkg", "a GeoPackage in UTM 50N (its CRS declared): transformed to WGS84", expect="kept",
      rows=2, ingest={"schema": "land_use"}, check=_extent_in_beijing)
def _gpkg_utm(folder: Path) -> list[Path]:
    return _gpkg(folder, _gdf().to_crs(32650))


@case("gpkg_out_of_range", "gpkg", "a GeoPackage (EPSG:4326) with one parcel at x = 250", expect="quarantined",
      rows=1, quarantined=1, reason="outside the WGS84 range", ingest={"schema": "land_use"})
def _gpkg_bad(folder: Path) -> list[Path]:
    return _gpkg(folder, _gdf(geoms=[shapely.box(116.4, 39.9, 116.41, 39.91), shapely.box(250, 39.9, 250.01, 39.91)]))


@case("gpkg_mixed_types", "gpkg", "polygons and points in one GeoPackage layer for land_use", expect="kept", rows=3,
      ingest={"schema": "land_use"}, check=_noted("mixed geometry types: 2 Polygon, 1 Point"))
def _gpkg_mixed(folder: Path) -> list[Path]:
    return _gpkg(folder, _gdf(geoms=[shapely.box(116.4, 39.9, 116.41, 39.91), shapely.box(116.5, 39.9, 116.51, 39.91),
                                     shapely.Point(116.45, 39.95)]))


@case("gpkg_invalid_crs", "gpkg", "a GeoPackage with --crs 'EPSG:abc'", expect="error", reason="unknown CRS",
      ingest={"schema": "land_use", "crs": "EPSG:abc"})
def _gpkg_badcrs(folder: Path) -> list[Path]:
    return _gpkg(folder, _gdf())


# --------------------------------------------------------------------------- zipped Shapefile
def _shp_zip(folder: Path, gdf: gpd.GeoDataFrame, *, drop: tuple[str, ...] = (),
             extra: dict[str, bytes] | None = None, encoding: str | None = None) -> list[Path]:
    d = folder / "parts"
    d.mkdir(exist_ok=True)
    gdf.to_file(d / "layer.shp", engine="pyogrio", **({"encoding": encoding} if encoding else {}))
    z = folder / "layer.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(d.iterdir()):
            if f.suffix.lower() not in drop:
                zf.write(f, f.name)
        for n, data in (extra or {}).items():
            zf.writestr(n, data)
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    return [z]


@case("shp_clean", "shapefile-zip", "a clean zipped Shapefile (.shp, .shx, .dbf, .prj, .cpg)", expect="kept",
      rows=2, ingest={"schema": "land_use"}, check=_extent_in_beijing)
def _shp_clean(folder: Path) -> list[Path]:
    return _shp_zip(folder, _gdf())


@case("shp_without_dbf", "shapefile-zip", "a zipped Shapefile without its .dbf", expect="error",
      reason="lacks its .dbf", ingest={"schema": "land_use"})
def _shp_nodbf(folder: Path) -> list[Path]:
    return _shp_zip(folder, _gdf(), drop=(".dbf",))


@case("shp_without_shx", "shapefile-zip", "a zipped Shapefile without its .shx", expect="error",
      reason="lacks its .shx", ingest={"schema": "land_use"})
def _shp_noshx(folder: Path) -> list[Path]:
    return _shp_zip(folder, _gdf(), drop=(".shx",))


@case("shp_empty_shp", "shapefile-zip", "a zipped Shapefile whose .shp is 0 bytes", expect="error",
      reason="is empty", ingest={"schema": "land_use"})
def _shp_empty(folder: Path) -> list[Path]:
    return _shp_zip(folder, _gdf(), drop=(".shp",), extra={"layer.shp": b""})


@case("shp_zero_filled_shp", "shapefile-zip", "a zipped Shapefile whose .shp is 4 KB of zero bytes", expect="error",
      reason="zero-filled", ingest={"schema": "land_use"})
def _shp_zero(folder: Path) -> list[Path]:
    return _shp_zip(folder, _gdf(), drop=(".shp",), extra={"layer.shp": b"\0" * 4096})


@case("shp_zip_slip", "shapefile-zip", "a zip with a '../../evil' entry (zip slip)", expect="error",
      reason="zip slip", ingest={"schema": "land_use"})
def _shp_slip(folder: Path) -> list[Path]:
    return _shp_zip(folder, _gdf(), extra={"../../evil.sh": b"echo owned\n"})


@case("shp_not_a_zip", "shapefile-zip", "a .zip that is not a zip archive", expect="error",
      reason="not a valid zip", ingest={"schema": "land_use"})
def _shp_notzip(folder: Path) -> list[Path]:
    p = folder / "layer.zip"
    p.write_bytes(b"PK\x03\x04 this is not really a zip" + b"\0" * 100)
    return [p]


_METRES = [shapely.box(440000, 4417000, 440100, 4417100), shapely.box(440200, 4417000, 440300, 4417100)]


@case("shp_no_prj_metres", "shapefile-zip", "a Shapefile without .prj whose coordinates are metres", expect="error",
      reason="no .prj", ingest={"schema": "land_use"})
def _shp_noprj(folder: Path) -> list[Path]:
    return _shp_zip(folder, _gdf(geoms=_METRES, crs=None), drop=(".prj",))


@case("shp_no_prj_metres_with_crs", "shapefile-zip", "the same Shapefile with --crs EPSG:32650", expect="kept",
      rows=2, ingest={"schema": "land_use", "crs": "EPSG:32650"}, check=_extent_in_beijing)
def _shp_noprj_crs(folder: Path) -> list[Path]:
    return _shp_zip(folder, _gdf(geoms=_METRES, crs=None), drop=(".prj",))


def _gbk_text(ws: Any, r: Any) -> None:
    assert sorted(ws.read(r.dataset)["land_use"]) == sorted(["居住用地", "商业服务业设施用地"])


@case("shp_gbk_dbf_encoding", "shapefile-zip", "a GBK .dbf without .cpg, read with --encoding gbk", expect="kept",
      rows=2, ingest={"schema": "land_use", "encoding": "gbk"}, check=_gbk_text)
def _shp_gbk(folder: Path) -> list[Path]:
    return _shp_zip(folder, _gdf().assign(land_use=["居住用地", "商业服务业设施用地"]), drop=(".cpg",), encoding="gbk")


@case("shp_gbk_dbf_detected", "shapefile-zip", "a GBK .dbf without .cpg and without --encoding: detected as GBK "
      "(it failed with 'string of size 18446744073709551613')", expect="kept", rows=2,
      ingest={"schema": "land_use"}, check=_gbk_text)
def _shp_gbk_sniffed(folder: Path) -> list[Path]:
    return _shp_zip(folder, _gdf().assign(land_use=["居住用地", "商业服务业设施用地"]), drop=(".cpg",), encoding="gbk")


# --------------------------------------------------------------------------- Parquet / GeoParquet
@case("parquet_pois_lng_gcj02", "parquet", "POIs as Parquet with lng_gcj02/lat_gcj02 columns", expect="kept", rows=3,
      ingest={"schema": "poi"}, check=_check_gcj)
def _pq_gcj(folder: Path) -> list[Path]:
    p = folder / "pois.parquet"
    _pois("lng_gcj02", "lat_gcj02").to_parquet(p)
    return [p]


@case("geoparquet_swapped_points", "parquet", "GeoParquet POIs with one point written (lat, lon)",
      expect="quarantined", rows=2, quarantined=1, reason="look swapped", ingest={"schema": "poi"})
def _gpq_swapped(folder: Path) -> list[Path]:
    p = folder / "pois.parquet"
    gpd.GeoDataFrame({"poi_id": [1, 2, 3], "category": ["park"] * 3},
                     geometry=[shapely.Point(LON[0], LAT[0]), shapely.Point(LAT[1], LON[1]),
                               shapely.Point(LON[2], LAT[2])], crs=4326).to_parquet(p)
    return [p]


@case("geoparquet_projected", "parquet", "GeoParquet POIs in UTM 50N (CRS in its metadata): transformed",
      expect="kept", rows=3, ingest={"schema": "poi"}, check=_near(LON, LAT, 1e-7))
def _gpq_utm(folder: Path) -> list[Path]:
    p = folder / "pois.parquet"
    gpd.GeoDataFrame({"poi_id": [1, 2, 3], "category": ["park"] * 3},
                     geometry=gpd.points_from_xy(UTM_X, UTM_Y), crs=32650).to_parquet(p)
    return [p]
