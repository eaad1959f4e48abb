"""B2 ranks and tiers; seed 000 Table 1 (digital-economy rank vs GDP rank) as printed."""

from __future__ import annotations

import mapclassify
import numpy as np
import pandas as pd
import pytest

from citytwin.economy.data import load, source_of
from citytwin.economy.ranking import SEED000_FIRST_TIER, ThresholdTable, assign_tiers, rank_by, rank_gap
from citytwin.foundation.errors import InputError


@pytest.fixture(scope="module")
def table1() -> pd.DataFrame:
    return load("seed000_table1_digital_economy_vs_gdp")


def test_table1_names_its_source(table1: pd.DataFrame) -> None:
    src = source_of("seed000_table1_digital_economy_vs_gdp")
    assert "中国城市数字经济指数白皮书" in src and "刘一丝" in src
    assert len(table1) == 9 and table1["city"].is_unique


def test_rank_gap_as_printed_in_seed_000(table1: pd.DataFrame) -> None:
    g = rank_gap(table1, "de_rank_2020", "gdp_rank_2020").set_index("city")["places_above"]
    # Seed 000, §2.1: 贵阳 27 places above its GDP rank, 珠海 42, 连云港 40, 成都 and 杭州 3 each.
    assert g["贵阳"] == 27 and g["珠海"] == 42 and g["连云港"] == 40
    assert g["成都"] == 3 and g["杭州"] == 3
    assert g["上海"] == 0 and g["深圳"] == 1 and g["北京"] == -1


def test_ranks_of_printed_scores_match_printed_ranks(table1: pd.DataFrame) -> None:
    # Among the 6 leading cities the 2020 scores give the printed ranks 1..6.
    top = table1[table1["de_rank_2020"] <= 6].copy()
    top["r"] = rank_by(top, "de_score_2020")
    assert (top["r"] == top["de_rank_2020"]).all()


def test_first_tier_threshold_against_the_text(table1: pd.DataFrame) -> None:
    # The text: 6 first-tier cities in 2020 averaging 90.3, in 2019 averaging 89.17, and 4 in 2018
    # (北京, 上海, 广州, 深圳) averaging 88.65.
    for year, n, mean in ((2020, 6, 90.3), (2019, 6, 89.17)):
        t = SEED000_FIRST_TIER.classify(table1[f"de_score_{year}"])
        first = table1[f"de_score_{year}"][[x.startswith("一线") for x in t]]
        assert len(first) == n and round(first.mean(), 2 if year == 2019 else 1) == mean
    # In 2018 the 85-point threshold alone would also admit 成都 (87) and 杭州 (86.9): the text says the
    # tier also asks for "comprehensive, leading development". The score rule alone is not the report's
    # rule, which is why tiers are a configurable table naming its source, flagged unconfirmed here.
    t18 = SEED000_FIRST_TIER.classify(table1["de_score_2018"])
    assert sum(x.startswith("一线") for x in t18) == 6
    four = table1[table1["city"].isin(["北京", "上海", "广州", "深圳"])]["de_score_2018"]
    assert round(four.mean(), 2) == 88.65
    assert "not confirmed" in SEED000_FIRST_TIER.edition


def test_rank_by_year_ties_share_the_best_rank() -> None:
    f = pd.DataFrame({"year": [1, 1, 1, 1, 2, 2], "score": [0.5, 0.9, 0.9, 0.1, 0.3, 0.4]})
    assert rank_by(f, "score", by="year").tolist() == [3, 1, 1, 4, 2, 1]
    assert rank_by(f, "score", by="year", ascending=True).tolist() == [2, 3, 3, 1, 1, 2]


def test_threshold_tiers_need_a_source() -> None:
    with pytest.raises(InputError, match="source"):
        ThresholdTable(source="", edition="2020", bounds=((1, "a"),))
    t = ThresholdTable(source="my table", edition="v1", bounds=((50, "mid"), (80, "high")), below="low")
    f = pd.DataFrame({"s": [90, 80, 79.9, 10, np.nan]})
    tiers, info = assign_tiers(f, "s", method="thresholds", table=t)
    assert tiers.tolist() == ["high", "high", "mid", "low", None]
    assert info["source"] == "my table" and info["edition"] == "v1"


def test_natural_breaks_and_quantiles_per_year_match_mapclassify() -> None:
    rng = np.random.default_rng(0)
    f = pd.DataFrame({"year": np.repeat([2019, 2020], 60), "s": np.r_[rng.gamma(2, size=60), rng.gamma(3, size=60)]})
    tiers, info = assign_tiers(f, "s", by="year", method="natural_breaks", k=4)
    for y in (2019, 2020):
        sub = f[f.year == y]
        fj = mapclassify.FisherJenks(sub["s"].to_numpy(), k=4)
        assert info["bins"][str(y)] == pytest.approx(list(fj.bins))
        # tier 1 = the highest class
        expected = [f"tier {4 - c}" for c in fj.yb]
        assert tiers[sub.index].tolist() == expected
    q, _ = assign_tiers(f, "s", by="year", method="quantiles", k=4)
    assert q[f.year == 2020].value_counts().tolist() == [15, 15, 15, 15]
    with pytest.raises(InputError, match="distinct"):
        assign_tiers(pd.DataFrame({"s": [1.0, 1.0, 2.0]}), "s", k=3)
