"""Issue 12: POI categories of Chinese map platforms mapped to the life circle's and mix's classes
with the shipped table; a life circle on AMap-style POIs in Beijing gives coverage, not 0 %."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer

from citytwin.foundation.errors import InputError
from citytwin.foundation.osm import POI_RULES
from citytwin.spatial.lifecircle import DAILY_SERVICES, life_circle
from citytwin.spatial.network import build_network
from citytwin.spatial.poi_categories import classify_cn, load_table

AMAP = {  # AMap `type` paths (大类;中类;小类) of one POI per daily service, in Beijing
    "科教文化服务;学校;小学": "school",
    "科教文化服务;学校;幼儿园": "kindergarten",
    "医疗保健服务;诊所;诊所": "clinic",
    "医疗保健服务;医药保健销售店;药房": "pharmacy",
    "购物服务;超级市场;超市": "grocery",
    "风景名胜;公园广场;公园": "park",
    "生活服务;养老院;养老院": "elderly_care",
    "交通设施服务;公交车站;公交车站": "transit_stop",
}


def test_shipped_table_uses_known_classes_only() -> None:
    t = load_table()
    known = set(DAILY_SERVICES) | {r.category for r in POI_RULES}
    assert set(t["class"]) <= known, set(t["class"]) - known
    assert set(t["platform"]) == {"amap", "baidu", "tencent"}
    assert not t.duplicated(["platform", "category"]).any()


def test_issue_examples_and_longest_path_wins() -> None:
    got = classify_cn(["运动健身:网球场", "医疗保健:综合医院", "餐饮服务:中餐厅", "购物服务:超市",
                       "科教文化服务:学校", "科教文化服务：学校：幼儿园", "购物服务;家电电子卖场", "未知:类别", None])
    assert got.tolist() == ["sport", "hospital", "restaurant", "grocery", "school", "kindergarten", "shop",
                            None, None]
    assert classify_cn(["美食:中餐厅", "医疗:药店"], platform="baidu").tolist() == ["restaurant", "pharmacy"]
    assert classify_cn(list(AMAP)).tolist() == list(AMAP.values())
    with pytest.raises(InputError, match="unknown platform"):
        classify_cn(["美食"], platform="google")


def test_user_table(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("platform,category,class\namap,餐饮服务,grocery\n", encoding="utf-8")
    assert classify_cn(["餐饮服务;快餐厅"], table=load_table(p)).tolist() == ["grocery"]
    p.write_text("platform,category\namap,餐饮服务\n", encoding="utf-8")
    with pytest.raises(InputError, match="'class'"):
        load_table(p)


def _beijing_grid() -> tuple[gpd.GeoDataFrame, pd.DataFrame, Transformer]:
    """A 5 × 5 street grid, 200 m apart, around Tiananmen (nodes in WGS84)."""
    to_ll = Transformer.from_crs(32650, 4326, always_xy=True)
    fwd = Transformer.from_crs(4326, 32650, always_xy=True)
    x0, y0 = fwd.transform(116.3975, 39.9087)
    ids, xs, ys = [], [], []
    for i in range(5):
        for j in range(5):
            ids.append(i * 5 + j)
            lon, lat = to_ll.transform(x0 + 200 * j, y0 + 200 * i)
            xs.append(lon)
            ys.append(lat)
    nodes = gpd.GeoDataFrame({"id": ids}, geometry=gpd.points_from_xy(xs, ys), crs=4326)
    u, v = [], []
    for i in range(5):
        for j in range(5):
            if j < 4:
                u.append(i * 5 + j)
                v.append(i * 5 + j + 1)
            if i < 4:
                u.append(i * 5 + j)
                v.append((i + 1) * 5 + j)
    return nodes, pd.DataFrame({"u": u, "v": v, "length": 200.0}), to_ll


def test_life_circle_on_amap_pois_in_beijing() -> None:
    nodes, edges, _ = _beijing_grid()
    net = build_network(nodes, edges)
    # one POI of each service at a node; homes at the four corners
    at = [0, 4, 6, 12, 18, 20, 24, 8]
    pois = gpd.GeoDataFrame({"osm_id": range(len(AMAP)), "category": list(AMAP)},
                            geometry=nodes.geometry.iloc[at].to_numpy(), crs=4326)
    homes = gpd.GeoDataFrame({"osm_id": [100, 101, 102, 103]},
                             geometry=nodes.geometry.iloc[[0, 4, 20, 24]].to_numpy(), crs=4326)
    lc = life_circle(homes, pois, net)
    cov = lc.coverage.set_index("category")
    assert cov["pois"].sum() == len(AMAP)
    assert (cov["share_covered"] > 0).all(), cov
    assert any("Chinese map-platform" in n and "8 of 8 POIs mapped" in n for n in lc.report["notes"]), lc.report
    # the same POIs with the classes written out give the same distances
    ref = life_circle(homes, pois.assign(category=list(AMAP.values())), net)
    for c in DAILY_SERVICES:
        np.testing.assert_allclose(lc.homes[f"dist_{c}"], ref.homes[f"dist_{c}"])
    # grid distances: home 0 (node 0) to the school at node 0 is 0 m, to the park at node 20 is 800 m
    assert lc.homes["dist_school"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert lc.homes["dist_park"].iloc[0] == pytest.approx(800.0, abs=0.5)
