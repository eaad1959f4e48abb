"""Issue 12, space edges of ingest: coordinate columns recognised, the admin-point fallback said,
CRS applied or refused, out-of-range and swapped geometry quarantined, zipped Shapefiles checked."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from citytwin.foundation import coords
from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest import ingest
from citytwin.foundation.quality import quality_report
from citytwin.foundation.workspace import Workspace

LON = [116.397, 116.404, 116.420]
LAT = [39.908, 39.915, 39.930]


def _pois(tmp_path: Path, lon_name: str, lat_name: str, lon: list[float] = LON, lat: list[float] = LAT,
          adcode: bool = True) -> Path:
    df = pd.DataFrame({"poi_id": [1, 2, 3], "name": ["a", "b", "c"], "category": ["school", "park", "hospital"],
                       lon_name: lon, lat_name: lat})
    if adcode:
        df["adcode"] = "110105"
    p = tmp_path / "pois.csv"
    df.to_csv(p, index=False)
    return p


def _read(ws: Workspace, name: str) -> gpd.GeoDataFrame:
    return ws.read(name)


@pytest.mark.parametrize("lon_name,lat_name", [("lng_gcj02", "lat_gcj02"), ("经度", "纬度"), ("x", "y"),
                                               ("longitude_wgs84", "latitude_wgs84"), ("经度(百度)", "纬度(百度)")])
def test_coordinate_columns_recognised(workspace: Workspace, tmp_path: Path, lon_name: str, lat_name: str) -> None:
    """Before issue 12 a POI file with an adcode and unrecognised coordinate columns put every POI at
    its district's representative point, quality 1.0, no note."""
    r = ingest(workspace, _pois(tmp_path, lon_name, lat_name), dataset="p", schema="poi")
    df = _read(workspace, "p")
    # no record fell back to its district's point (the column appears only when one does)
    assert "geometry_source" not in df.columns or (df["geometry_source"] == "coordinates").all(), df
    if lon_name not in ("经度", "x"):  # those two are the schema's aliases; the others are recognised by pattern
        assert any("recognised by name and values" in n for n in r.notes), r.notes
    x, y = df.geometry.x.to_numpy(), df.geometry.y.to_numpy()
    if "gcj" in lon_name:
        ex, ey = coords.gcj02_to_wgs84(np.array(LON), np.array(LAT))
        np.testing.assert_allclose(x, ex, atol=1e-9)
        np.testing.assert_allclose(y, ey, atol=1e-9)
        assert any("GCJ-02 taken from the column names" in n for n in r.notes), r.notes
    elif "百度" in lon_name:
        ex, ey = coords.bd09_to_wgs84(np.array(LON), np.array(LAT))
        np.testing.assert_allclose(x, ex, atol=1e-9)
        np.testing.assert_allclose(y, ey, atol=1e-9)
    else:
        np.testing.assert_allclose(x, LON)
        np.testing.assert_allclose(y, LAT)
    assert quality_report(workspace, "p").score == 1.0


def test_admin_point_fallback_is_said(workspace: Workspace, tmp_path: Path) -> None:
    """Records without coordinates but with an adcode fall back to the admin point: a column, a note
    with counts and a lower quality score say so."""
    p = tmp_path / "pois.csv"
    p.write_text("poi_id,name,lon,lat,adcode\n1,a,116.40,39.90,110105\n2,b,,,110105\n3,c,116.42,39.92,110105\n"
                 "4,d,,,110108\n", encoding="utf-8")
    r = ingest(workspace, p, dataset="p", schema="poi")
    df = _read(workspace, "p").sort_values("poi_id")
    assert df["geometry_source"].tolist() == ["coordinates", "admin_point", "coordinates", "admin_point"]
    assert any("2 of 4 record(s)" in n and "admin_point" in n for n in r.notes), r.notes
    assert df.geometry.notna().all()
    assert df.iloc[0].geometry.x == pytest.approx(116.40)
    # completeness (poi_id, name 1.0; lon, lat 0.5) = 0.75, times 1 - 0.5 * 2/4 (half located for half)
    assert quality_report(workspace, "p").score == pytest.approx(0.75 * 0.75)


def test_projected_csv_xy_transformed(workspace: Workspace, tmp_path: Path) -> None:
    """--crs EPSG:xxxx applies to CSV x/y (it was ignored): the stored points are the WGS84 ones."""
    from pyproj import Transformer

    t = Transformer.from_crs("EPSG:4326", "EPSG:32650", always_xy=True)
    x, y = t.transform(LON, LAT)
    p = _pois(tmp_path, "x", "y", list(x), list(y), adcode=False)
    with pytest.raises(InputError):  # metres are not degrees without --crs: quarantined, not stored
        r0 = ingest(workspace, p, dataset="p0", schema="poi")
        assert r0.rows_kept == 3
    ingest(workspace, p, dataset="p", schema="poi", crs="EPSG:32650")
    df = _read(workspace, "p")
    np.testing.assert_allclose(df.geometry.x, LON, atol=1e-8)
    np.testing.assert_allclose(df.geometry.y, LAT, atol=1e-8)


def test_invalid_crs_is_an_error(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown CRS 'EPSG:999999'"):
        ingest(workspace, _pois(tmp_path, "lon", "lat"), dataset="p", schema="poi", crs="EPSG:999999")
    assert not workspace.catalog.exists("p")


def _fc(geoms: list[dict]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"parcel_id": str(i), "land_use": "R"}, "geometry": g}
        for i, g in enumerate(geoms)]})


def test_out_of_range_and_swapped_geometry_quarantined(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "lu.geojson"
    p.write_text(_fc([
        {"type": "Polygon", "coordinates": [[[116, 39], [117, 39], [117, 40], [116, 39]]]},
        {"type": "Polygon", "coordinates": [[[200, 100], [201, 100], [201, 101], [200, 100]]]},
        {"type": "Point", "coordinates": [39.9, 116.4]},
    ]), encoding="utf-8")
    r = ingest(workspace, p, dataset="lu", schema="land_use")
    assert r.rows_kept == 1 and r.rows_quarantined == 2
    q = workspace.quarantine("lu").sort_values("row")
    reasons = q["reason"].tolist()
    assert "outside the WGS84 range (x 200.0 to 201.0, y 100.0 to 101.0)" in reasons[0]
    assert "look swapped" in reasons[1], reasons
    assert workspace.info("lu").versions[-1].extent == [116.0, 39.0, 117.0, 40.0]
    assert any("mixed geometry types: 2 Polygon, 1 Point" in n for n in r.notes), r.notes


def _shapefile_zip(tmp_path: Path, gdf: gpd.GeoDataFrame, *, drop: tuple[str, ...] = (), encoding: str | None = None,
                   name: str = "shp.zip", extra: dict[str, bytes] | None = None) -> Path:
    d = tmp_path / "shp"
    d.mkdir(exist_ok=True)
    gdf.to_file(d / "a.shp", engine="pyogrio", **({"encoding": encoding} if encoding else {}))
    z = tmp_path / name
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(d.iterdir()):
            if f.suffix.lower() not in drop:
                zf.write(f, f.name)
        for n, data in (extra or {}).items():
            zf.writestr(n, data)
    return z


def test_shapefile_without_prj_in_metres_refused(workspace: Workspace, tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({"parcel_id": ["1", "2"], "land_use": ["R", "C"]},
                           geometry=[shapely.box(440000, 4417000, 440100, 4417100),
                                     shapely.box(440200, 4417000, 440300, 4417100)], crs=None)
    z = _shapefile_zip(tmp_path, gdf, drop=(".prj",))
    with pytest.raises(InputError, match=r"no \.prj") as ei:
        ingest(workspace, z, dataset="lu", schema="land_use")
    assert "--crs" in (ei.value.hint or "")
    r = ingest(workspace, z, dataset="lu", schema="land_use", crs="EPSG:32650")
    assert r.rows_kept == 2
    ext = workspace.info("lu").versions[-1].extent
    assert ext is not None and 116.2 < ext[0] < 116.4 and 39.8 < ext[1] < 40.0


@pytest.mark.parametrize("fault,match", [("no_dbf", "lacks its .dbf"), ("no_shx", "lacks its .shx"),
                                         ("empty_shp", "is empty"), ("zero_shp", "zero-filled"),
                                         ("slip", "zip slip")])
def test_broken_shapefile_zip(workspace: Workspace, tmp_path: Path, fault: str, match: str) -> None:
    gdf = gpd.GeoDataFrame({"parcel_id": ["1"], "land_use": ["R"]}, geometry=[shapely.box(116, 39, 117, 40)],
                           crs=4326)
    if fault == "no_dbf":
        z = _shapefile_zip(tmp_path, gdf, drop=(".dbf",))
    elif fault == "no_shx":
        z = _shapefile_zip(tmp_path, gdf, drop=(".shx",))
    elif fault == "slip":
        z = _shapefile_zip(tmp_path, gdf, extra={"../../evil.txt": b"x"})
    else:
        z = _shapefile_zip(tmp_path, gdf, drop=(".shp",),
                           extra={"a.shp": b"" if fault == "empty_shp" else b"\0" * 1000})
    with pytest.raises(InputError, match=match):
        ingest(workspace, z, dataset="lu", schema="land_use")
    assert not (tmp_path.parent / "evil.txt").exists()
    assert not workspace.catalog.exists("lu")


def test_gbk_dbf_read_with_encoding(workspace: Workspace, tmp_path: Path) -> None:
    """A GBK .dbf without .cpg: --encoding gbk gives the right text (it was passed nowhere)."""
    gdf = gpd.GeoDataFrame({"parcel_id": ["1", "2"], "land_use": ["居住用地", "商业服务业设施用地"]},
                           geometry=[shapely.box(116, 39, 117, 40), shapely.box(117, 39, 118, 40)], crs=4326)
    z = _shapefile_zip(tmp_path, gdf, encoding="gbk", drop=(".cpg",))
    ingest(workspace, z, dataset="lu", schema="land_use", encoding="gbk")
    df = _read(workspace, "lu").sort_values("parcel_id")
    assert df["land_use"].tolist() == ["居住用地", "商业服务业设施用地"]


def test_gbk_dbf_detected_without_encoding(workspace: Workspace, tmp_path: Path) -> None:
    """The same file without --encoding failed with DuckDB's "string of size 18446744073709551613"."""
    gdf = gpd.GeoDataFrame({"parcel_id": ["1", "2"], "land_use": ["居住用地", "商业服务业设施用地"]},
                           geometry=[shapely.box(116, 39, 117, 40), shapely.box(117, 39, 118, 40)], crs=4326)
    z = _shapefile_zip(tmp_path, gdf, encoding="gbk", drop=(".cpg",))
    r = ingest(workspace, z, dataset="lu", schema="land_use")
    assert any("valid GBK and was read as GBK" in n for n in r.notes), r.notes
    assert sorted(_read(workspace, "lu")["land_use"]) == sorted(["居住用地", "商业服务业设施用地"])
