"""History store (Parquet by day + DuckDB): range, aggregation, geo, dedupe, compaction, downsampling, replay.

Aggregates are checked against pandas computed independently on the same rows (tolerance 1e-9).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.foundation.timeseries import HistoryStore, Near, StateStore

H = 3_600_000_000


def _frame(seed: int = 0, days: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ents = {"e:a": (116.40, 39.90), "e:b": (116.42, 39.91), "e:far": (117.50, 40.50)}
    rows = []
    for e, (lon, lat) in ents.items():
        for prop in ("pm25", "no2"):
            t = np.arange(days * 24) * H + 1_420_070_400_000_000  # from 2015-01-01 UTC, hourly
            v = rng.gamma(2.0, 40.0, len(t))
            v[rng.random(len(t)) < 0.1] = np.nan  # real gaps
            rows.append(pd.DataFrame({"entity": e, "type": "AirQualityObserved", "property": prop, "time_us": t,
                                      "value": v, "unit": "µg/m³", "lon": lon, "lat": lat}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture()
def store(tmp_path):
    h = HistoryStore(tmp_path / "h")
    yield h
    h.close()


def _append(h, df):
    return h.append({c: df[c].tolist() if c != "value" else df[c].to_numpy() for c in df.columns})


def test_range_query_partitions_and_missing(store, tmp_path):
    df = _frame()
    assert _append(store, df) == len(df)
    assert store.days() == ["2015-01-01", "2015-01-02", "2015-01-03"]
    c = store.count()
    assert c == {"rows": len(df), "values": int(df.value.notna().sum()), "missing": int(df.value.isna().sum())}
    q = store.query(entities="e:a", properties="pm25", start="2015-01-02T00:00:00Z", end="2015-01-02T06:00:00Z")
    exp = df[(df.entity == "e:a") & (df.property == "pm25")].iloc[24:30]
    assert len(q) == 6
    np.testing.assert_array_equal(q["value"].isna().to_numpy(), exp["value"].isna().to_numpy())
    np.testing.assert_allclose(q["value"].fillna(-1).to_numpy(), exp["value"].fillna(-1).to_numpy())
    assert str(q["time"].dt.tz) == "UTC" and q["time"].iloc[0] == pd.Timestamp("2015-01-02T00:00:00Z")
    assert store.query(start="2016-01-01", end="2016-01-02").empty
    with pytest.raises(InputError):
        store.query(start="2015-01-02", end="2015-01-01")


def test_redelivery_is_stored_once_and_last_write_wins(store):
    df = _frame(days=1)
    _append(store, df)
    _append(store, df)  # a redelivered batch
    _append(store, df.iloc[:10])
    assert store.count()["rows"] == len(df)
    assert store.physical_rows() == 2 * len(df) + 10
    # a correction of one reading replaces it (same key, later write)
    fix = df.iloc[[3]].copy()
    fix["value"] = 999.0
    _append(store, fix)
    q = store.query(entities=fix.entity.iloc[0], properties=fix.property.iloc[0])
    assert q["value"].iloc[3] == 999.0 and len(q) == 24
    assert store.compact() == 1
    assert store.physical_rows() == store.count()["rows"] == len(df)
    assert store.query(entities=fix.entity.iloc[0], properties=fix.property.iloc[0])["value"].iloc[3] == 999.0
    # appends after compaction still win over compacted rows
    fix["value"] = 5.0
    _append(store, fix)
    assert store.query(entities=fix.entity.iloc[0], properties=fix.property.iloc[0])["value"].iloc[3] == 5.0


def test_auto_compaction(tmp_path):
    h = HistoryStore(tmp_path / "h", compact_threshold=4)
    df = _frame(days=1)
    for i in range(0, len(df), 20):
        _append(h, df.iloc[i:i + 20])
    assert h.wait_compactions(60)  # compaction runs in a background thread (issue 13)
    files = list((tmp_path / "h").glob("day=*/part-*.parquet"))
    small = [p for p in files if "-L" not in p.name]  # how many appends each merge took depends on timing
    assert len(small) < 4 and 1 <= len(files) - len(small) <= 2
    assert h.count()["rows"] == len(df)
    assert h.compaction_error is None and h.merges >= 1
    h.close()


def test_aggregate_matches_pandas(store):
    df = _frame()
    _append(store, df)
    agg = store.aggregate("6 hours", funcs=("avg", "min", "max", "count", "missing"), properties="pm25")
    d = df[df.property == "pm25"].copy()
    d["time"] = pd.to_datetime(d.time_us, unit="us", utc=True)
    g = d.groupby(["entity", pd.Grouper(key="time", freq="6h")])["value"]
    exp = pd.DataFrame({"avg": g.mean(), "min": g.min(), "max": g.max(), "count": g.count(),
                        "missing": g.size() - g.count()}).reset_index()
    got = agg.sort_values(["entity", "time"]).reset_index(drop=True)
    assert len(got) == len(exp) == 3 * 12
    for c in ("avg", "min", "max"):
        np.testing.assert_allclose(got[c].to_numpy(dtype=float), exp[c].to_numpy(dtype=float), rtol=1e-9)
    assert got["count"].tolist() == exp["count"].tolist()
    assert got["missing"].tolist() == exp["missing"].tolist()
    # ISO 8601 durations work as intervals; unknown functions are refused
    assert len(store.aggregate("P1D", properties="pm25", entities="e:a")) == 3
    with pytest.raises(InputError):
        store.aggregate("1 hour", funcs=("median",))
    with pytest.raises(InputError):
        store.aggregate("fortnightly")


def test_geo_filters(store):
    _append(store, _frame(days=1))
    near = store.query(near=Near(116.40, 39.90, 2_500))  # e:b is ~2.0 km away, e:far ~125 km
    assert sorted(near.entity.unique()) == ["e:a", "e:b"]
    assert sorted(store.query(near=Near(116.40, 39.90, 500)).entity.unique()) == ["e:a"]
    box = store.query(bbox=(117.0, 40.0, 118.0, 41.0))
    assert sorted(box.entity.unique()) == ["e:far"]
    assert store.count(bbox=(117.0, 40.0, 118.0, 41.0), properties="no2")["rows"] == 24
    with pytest.raises(InputError):
        store.query(bbox=(118.0, 40.0, 117.0, 41.0))


def test_downsample_long_range(store):
    _append(store, _frame(days=3))
    ds = store.downsample(entities="e:a", properties="pm25", max_points=10)
    # 72 hours into at most ~10 buckets: the smallest nice step >= 7.2 h is 12 h
    assert ds.attrs["interval_s"] == 43_200
    assert len(ds) == 6
    assert ds["count"].sum() == store.count(entities="e:a", properties="pm25")["values"]


def test_replay_paced(store):
    _append(store, _frame(days=1))
    slept: list[float] = []
    clock = [0.0]

    def fake_sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    parts = list(store.replay(start="2015-01-01T00:00:00Z", end="2015-01-01T05:00:00Z", speed=3600.0,
                              sleep=fake_sleep, clock=lambda: clock[0], entities="e:a"))
    assert len(parts) == 5 and all(len(p) == 2 for p in parts)  # pm25 + no2 per hour
    assert slept == pytest.approx([1.0, 1.0, 1.0, 1.0])  # one hour of data per second at 3600x


def test_latest_rebuilds_state(store, tmp_path):
    df = _frame(days=1)
    _append(store, df)
    latest = store.latest()
    assert len(latest) == 6 and (latest["time"] == pd.Timestamp("2015-01-01T23:00:00Z")).all()
    st = StateStore(tmp_path / "s.sqlite")
    st.put_entity("e:a", "AirQualityObserved", 116.4, 39.9)
    rows = [(r.entity, r.property, r.value, r.unit, int(r.time.value // 1000)) for r in latest.itertuples()]
    st.rebuild(rows)
    got = st.get("e:a")["attrs"]["pm25"]
    exp = df[(df.entity == "e:a") & (df.property == "pm25")].iloc[-1]["value"]
    assert (got["value"] is None and np.isnan(exp)) or got["value"] == pytest.approx(exp)


def test_state_never_moves_back_in_time(tmp_path):
    st = StateStore(tmp_path / "s.sqlite")
    st.put_entity("e:a", "T", 116.4, 39.9)
    st.upsert_latest([("e:a", "pm25", 10.0, "µg/m³", 200)])
    st.upsert_latest([("e:a", "pm25", 99.0, "µg/m³", 100)])  # older, arrives late
    assert st.get("e:a")["attrs"]["pm25"]["value"] == 10.0
    st.upsert_latest([("e:a", "pm25", float("nan"), "µg/m³", 300)])
    assert st.get("e:a")["attrs"]["pm25"]["value"] is None  # missing stays missing
    with pytest.raises(InputError):
        st.put_entity("e:a", "Other")


def test_crash_leftovers_are_ignored_and_recovered(store, tmp_path):
    _append(store, _frame(days=1))
    d = next((tmp_path / "h").glob("day=*"))
    (d / ".tmp-deadbeef.parquet").write_bytes(b"PAR1 half written")
    assert store.count()["rows"] == 144
    assert store.recover() == 1


def test_fast_path_equals_duckdb(store):
    """Narrow entity reads skip DuckDB (pyarrow scan + the same dedupe rule): identical answers."""
    df = _frame(days=3)
    _append(store, df)
    _append(store, df.iloc[::3])  # redelivered rows
    fix = df.iloc[[5, 77]].copy()
    fix["value"] = [1.5, np.nan]  # corrections, one to missing
    _append(store, fix)
    for kw in ({"entities": "e:a"}, {"entities": ["e:a", "e:far"], "properties": "no2"},
               {"entities": "e:b", "types": "AirQualityObserved", "limit": 7, "order": "entity"}):
        for s, e in (("2015-01-01", "2015-01-02"), ("2015-01-01T05:00:00Z", "2015-01-03T13:00:00Z")):
            fast = store.query(start=s, end=e, **kw)
            slow = store.query(start=s, end=e, fast=False, **kw)
            assert len(fast) > 0
            pd.testing.assert_frame_equal(fast, slow)
    # rows 5 and 77 of the frame are e:a pm25 and e:a no2 at 05:00: the corrections won
    q = dict(entities="e:a", start="2015-01-01", end="2015-01-04")
    assert store.query(properties="pm25", **q)["value"].iloc[5] == 1.5
    assert np.isnan(store.query(properties="no2", **q)["value"].iloc[5])
