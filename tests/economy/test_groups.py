"""B3 groups: shipped membership tables (with their sources), city -> province, weighted group scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citytwin.economy.groups import (
    assign_groups,
    city_clusters,
    city_provinces,
    clusters_13th_fyp,
    group_scores,
    membership_table,
    north_south,
    province_short,
    regions_nbs2011,
)
from citytwin.foundation.errors import InputError


def test_nbs_2011_regions() -> None:
    reg = regions_nbs2011()
    assert "2011-06-13" in reg.source
    sizes = reg.members.groupby("group").size().to_dict()
    # NBS: east 10, central 6, west 12, northeast 3 provinces.
    assert sizes == {"east": 10, "central": 6, "west": 12, "northeast": 3}
    assert reg.lookup(["内蒙古自治区", "广西壮族自治区", "重庆市", "辽宁省", "台湾省"]) == [
        "west", "west", "west", "northeast", None]
    assert regions_nbs2011("zh").lookup(["江西省"]) == ["中部"]


def test_north_south_by_province() -> None:
    ns = north_south()
    assert ns.members.groupby("group").size().to_dict() == {"north": 15, "south": 16}
    assert ns.lookup(["河南省", "江苏省", "陕西省", "安徽省"]) == ["north", "south", "north", "south"]


def test_city_clusters_name_their_plans() -> None:
    cc = city_clusters()
    sizes = cc.members.groupby("group").size().to_dict()
    assert sizes["长三角"] == 26 and sizes["京津冀"] == 13 and sizes["珠三角"] == 9 and sizes["哈长"] == 11
    assert cc.members["document"].str.contains("《").all()
    assert "长江三角洲城市群发展规划" in cc.source
    assert cc.lookup(["苏州市", "温州市", "成都"]) == ["长三角", None, "成渝"]
    assert cc.members.set_index("member").loc["绵阳市", "partial"].startswith("except")
    fyp = clusters_13th_fyp()
    assert len(fyp) == 19 and fyp["cluster"].is_unique


def test_city_provinces_with_aliases_and_unknown_cities() -> None:
    lookup = pd.DataFrame({"name": ["贵阳市", "合肥市", "普洱市", "亳州市"],
                           "province": ["贵州省", "安徽省", "云南省", "安徽省"]})
    a = city_provinces(["贵阳", "思茅市", "毫州市", "巢湖市", "火星市"], lookup,
                       aliases={"思茅市": "普洱市", "毫州市": "亳州市", "巢湖市": "安徽省"})
    assert a.groups.tolist() == ["贵州省", "云南省", "安徽省", "安徽省", None]
    assert a.unknown == ["火星市"] and "火星市" in a.warnings[0]
    with pytest.raises(InputError, match="火星市"):
        city_provinces(["火星市"], lookup, on_unknown="error")


def test_assign_groups_reports_unknown_members() -> None:
    a = assign_groups(["北京市", "Atlantis", None], regions_nbs2011())
    assert a.groups.tolist() == ["east", None, None] and a.unknown == ["Atlantis"]
    with pytest.raises(InputError, match="Atlantis"):
        assign_groups(["Atlantis"], regions_nbs2011(), on_unknown="error")


def test_user_membership_table_needs_a_source() -> None:
    f = pd.DataFrame({"city": ["a", "b"], "club": ["x", "y"]})
    t = membership_table(f, member="city", group="club", source="our 2024 survey")
    assert t.lookup(["b"]) == ["y"]
    with pytest.raises(InputError, match="source"):
        membership_table(f, member="city", group="club", source="")


def test_weighted_group_scores_against_numpy() -> None:
    rng = np.random.default_rng(2)
    f = pd.DataFrame({"year": np.repeat([1, 2], 50), "g": rng.choice(list("abc"), 100),
                      "s": rng.uniform(size=100), "pop": rng.uniform(1, 10, size=100)})
    f.loc[7, "g"] = None
    out = group_scores(f, "s", "g", by="year", weight="pop")
    for (y, g), row in out.set_index(["year", "g"]).iterrows():
        sub = f[(f.year == y) & (f.g == g)]
        assert row["weighted_mean"] == pytest.approx(np.average(sub["s"], weights=sub["pop"]), rel=1e-12)
        assert row["mean"] == pytest.approx(sub["s"].mean(), rel=1e-12) and row["n"] == len(sub)
    assert out.attrs["n_ungrouped"] == 1
    with pytest.raises(InputError, match="weights"):
        group_scores(f.assign(pop=-1.0), "s", "g", weight="pop")


def test_province_short() -> None:
    assert [province_short(x) for x in ("新疆维吾尔自治区", "香港特别行政区", "上海市", "河北省")] == [
        "新疆", "香港", "上海", "河北"]
