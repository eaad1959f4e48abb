"""Issue 12, keys: names resolved to administrative codes before the duplicate-key check, invisible
characters ignored, one municipality convention, one resolver for ingest and economy groups."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from citytwin.economy.groups import MembershipTable, city_provinces, unit_keys
from citytwin.foundation.admin import AdminResolver, code_to_name, normalise_name
from citytwin.foundation.ingest import ingest
from citytwin.foundation.workspace import Workspace


def test_two_spellings_of_one_city_are_one_key(workspace: Workspace, tmp_path: Path) -> None:
    """北京 and 北京市 in one year were kept as two rows (the key check compared the names)."""
    p = tmp_path / "panel.csv"
    p.write_text("城市,年份,gdp\n北京市,2020,36102.6\n上海市,2020,38700.6\n北京,2020,36103\n北京,2021,40269.6\n",
                 encoding="utf-8")
    r = ingest(workspace, p, dataset="panel", schema="city_panel")
    assert (r.rows_kept, r.rows_quarantined) == (3, 1)
    q = workspace.quarantine("panel")
    assert q["row"].tolist() == [3]
    reason = q["reason"].iloc[0]
    assert "duplicate key (city, year)" in reason and "北京 and 北京市 are one administrative unit (110100)" in reason
    assert "first at row 1" in reason
    df = workspace.read("panel")
    assert sorted(df["adcode"]) == ["110100", "110100", "310100"]


def test_zero_width_characters_in_names(workspace: Workspace, tmp_path: Path) -> None:
    assert normalise_name("上\u200b海\u200d市\ufeff") == "上海市"
    res = AdminResolver.default().resolve(["上\u200b海市", "\u2060广州"])
    assert res["adcode"].tolist() == ["310100", "440100"]
    p = tmp_path / "panel.csv"
    p.write_text("城市,年份,gdp\n上\u200b海市,2020,1\n广州市,2020,2\n", encoding="utf-8")
    r = ingest(workspace, p, dataset="panel", schema="city_panel")
    assert r.rows_kept == 2 and not any("not resolved" in n for n in r.notes), r.notes
    assert sorted(workspace.read("panel")["adcode"]) == ["310100", "440100"]


def test_one_municipality_convention(workspace: Workspace, tmp_path: Path) -> None:
    """Prefecture-level codes for all four municipalities (重庆 was 500000, 北京 110100)."""
    res = AdminResolver.default().resolve(["北京", "天津市", "上海", "重庆市", "500000", "500200"])
    assert res["adcode"].tolist() == ["110100", "120100", "310100", "500100", "500100", "500100"]
    assert AdminResolver.default().resolve(["重庆"], level="province")["adcode"].tolist() == ["500000"]
    assert code_to_name(["500100"])["canonical_name"].tolist() == ["重庆市"]
    p = tmp_path / "panel.csv"
    p.write_text("城市,年份,gdp\n重庆,2020,1\n北京,2020,2\n", encoding="utf-8")
    ingest(workspace, p, dataset="panel", schema="city_panel")
    df = workspace.read("panel").sort_values("city")
    # one record each (the admin points hold 500000 twice: it was joined twice) with its point
    assert df["adcode"].tolist() == ["110100", "500100"]
    assert df.geometry.notna().all()
    assert df["geometry_source"].tolist() == ["admin_point", "admin_point"]


def test_groups_use_the_admin_resolver() -> None:
    """economy.groups matched on a name with 市/地区/盟 cut off: 恩施州, 襄樊市 and 北京\u200b市 failed."""
    t = MembershipTable(name="t", source="a test", members=pd.DataFrame(
        {"member": ["恩施土家族苗族自治州", "襄阳市", "北京市", "重庆市"], "group": ["a", "b", "c", "d"]}))
    assert t.lookup(["恩施州", "襄樊市", "北京\u200b市", "北京", "500100", "火星市"]) == ["a", "b", "c", "c", "d", None]
    lookup = pd.DataFrame({"name": ["恩施土家族苗族自治州", "北京市"], "province": ["湖北省", "北京市"]})
    got = city_provinces(["恩施州", "北京\u200b"], lookup)
    assert got.groups.tolist() == ["湖北省", "北京市"] and got.unknown == []
    assert unit_keys(["北京", "北京市", "110100"]) == ["110100"] * 3


@pytest.mark.parametrize("name", ["北京\u200b", "\ufeff北京市", "北京\u00ad市", "　北京市 "])
def test_invisible_characters_resolve(name: str) -> None:
    assert AdminResolver.default().resolve([name])["adcode"].tolist() == ["110100"]
