"""Demand maps (G3) on the Baltimore 311 sample: counts per H3 cell and district (checked against
h3-py + pandas directly), Getis-Ord G* hot spots (checked against esda.G_Local on the same weights),
and emerging hot topics with the stated heat formula (values worked out by hand)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.participation.demand import counts_by_cell, counts_by_district, hot_spots, hot_topics

BALT = "complaints_311/baltimore_311_sample.csv"


@pytest.fixture(scope="module")
def balt(shared_data: Path) -> pd.DataFrame:
    d = pd.read_csv(shared_data / BALT)
    # the sample's placeholder coordinates (39, -77: outside the city) are not places
    return d[(d["Latitude"] > 39.1) & (d["Longitude"] > -76.8)].reset_index(drop=True)


def test_counts_match_h3_and_pandas(balt: pd.DataFrame) -> None:
    import h3

    got = counts_by_cell(balt, lat="Latitude", lon="Longitude", res=8)
    ref = pd.Series([h3.latlng_to_cell(a, b, 8) for a, b in zip(balt["Latitude"], balt["Longitude"], strict=True)])
    ref = ref.value_counts()
    assert got["count"].sum() == len(balt) and len(got) == len(ref)
    assert dict(zip(got["h3"], got["count"], strict=True)) == ref.to_dict()
    by = counts_by_cell(balt, lat="Latitude", lon="Longitude", res=8, by=["Agency"], time="CreatedDate", freq="Y")
    years = pd.to_datetime(balt["CreatedDate"], format="%m/%d/%Y %I:%M:%S %p").dt.year.astype(str)
    per_year = by.groupby("period")["count"].sum()
    assert per_year.to_dict() == years.value_counts().to_dict()
    dist = counts_by_district(balt, "CouncilDistrict")
    ref_d = balt["CouncilDistrict"].fillna(-1).value_counts().to_dict()
    assert dict(zip(dist["CouncilDistrict"].fillna(-1), dist["count"], strict=True)) == ref_d


def test_hot_spots_equal_esda(balt: pd.DataFrame) -> None:
    import esda
    import h3
    import libpysal

    per = counts_by_cell(balt, lat="Latitude", lon="Longitude", res=8)
    g = hot_spots(per, permutations=99, seed=1)
    ids = g["h3"].tolist()
    assert set(per["h3"]) <= set(ids)
    pos = set(ids)
    neigh = {h: [n for n in h3.grid_disk(h, 1) if n != h and n in pos] for h in ids}
    w = libpysal.weights.W(neigh, id_order=ids, silence_warnings=True)
    ref = esda.G_Local(g["count"].to_numpy(), w, transform="R", star=True, permutations=0)
    np.testing.assert_allclose(g["z"].to_numpy(), ref.Zs, rtol=1e-9, atol=1e-12)
    assert (g["hotspot"] == "hot").sum() > 0
    top = g.sort_values("z", ascending=False).iloc[0]
    assert top["count"] > per["count"].median()


def test_hot_topics_heat_by_hand() -> None:
    now = datetime(2026, 3, 10, tzinfo=UTC)
    rows = []
    # 工地噪音 near one place: 4 this week, 1 the week before -> heat 4 * 5 / 2 = 10
    for d in (1, 2, 3, 4):
        rows.append(("工地夜间施工噪音扰民", now - timedelta(days=d), 39.90, 116.40))
    rows.append(("工地噪音", now - timedelta(days=9), 39.90, 116.40))
    # 路灯 elsewhere: 3 this week, 3 before -> heat 3 * 4 / 4 = 3
    for d in (1, 2, 3, 8, 9, 10):
        rows.append(("小区路灯坏了", now - timedelta(days=d), 40.00, 116.30))
    rows.append(("too old 噪音", now - timedelta(days=30), 39.90, 116.40))
    rows.append(("future 噪音", now + timedelta(days=1), 39.90, 116.40))
    df = pd.DataFrame(rows, columns=["text", "time", "lat", "lon"])
    t = hot_topics(df, text="text", time="time", now=now, min_count=3)
    got = {(r.topic, r.n_recent, r.n_previous): r.heat for r in t.itertuples()}
    assert got[("噪音", 4, 1)] == pytest.approx(10.0)
    assert got[("工地", 4, 1)] == pytest.approx(10.0)
    assert got[("路灯", 3, 3)] == pytest.approx(3.0)
    # words only in this week's messages are the most emerging: 4 * 5 / 1 = 20
    assert got[("施工", 4, 0)] == pytest.approx(20.0) and t.iloc[0]["heat"] == pytest.approx(20.0)
    assert t[t["topic"] == "路灯"]["example"].iloc[0] == "小区路灯坏了"
    assert hot_topics(df, text="text", time="time", now=now, min_count=99).empty
