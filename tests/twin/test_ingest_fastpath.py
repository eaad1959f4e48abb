"""The ingest pipeline's fast paths give what the general code gives: the parser's common-attribute path
(``MessageParser._fast_specs``), the columns of a commit and the latest rows handed to the live state."""

from __future__ import annotations

import json
import math
import random

import pytest

from citytwin.foundation.timeseries import ingest as I
from citytwin.foundation.timeseries.state import StateStore
from citytwin.twin import entities as E

NOW_US = E.parse_time_us("2026-01-01T00:00:00Z")
AQ = "urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi"
REG = {AQ: E.EntityRef("AirQualityObserved", 116.417, 39.929),
       "urn:ngsi-ld:EnergyMeter:m1": E.EntityRef("EnergyMeter", None, None)}

# attribute shapes: the common ones the fast path takes and the rare ones it must leave to _attribute
VALUES = [0.0, -0.0, 12.5, 1e-300, 499.9, 1000.0, 1e308, -50.0, 3, -7, 2**53, 2**53 + 1, 10**400, True, None, "12",
          [1], float("inf"), float("-inf"), float("nan")]
UNITS = [None, "µg/m³", "mg/m³", "GQ", "℃", "kWh", 5, "", "percent"]
PROPS = ["pm25", "pm10", "co", "no2", "temperature", "relativeHumidity", "windDirection", "nope", "energy"]


def _attr(rng: random.Random) -> object:
    v = rng.choice(VALUES)
    shape = rng.random()
    if shape < 0.3:
        return v
    a: dict[str, object] = {"value": v}
    u = rng.choice(UNITS)
    if u is not None:
        a["unitCode" if rng.random() < 0.3 else "unit"] = u
    if rng.random() < 0.1:
        a["observedAt"] = rng.choice(["2015-12-01T01:00:00Z", "1800-01-01T00:00:00Z", "bad"])
    if rng.random() < 0.1:
        a["type"] = "Property"
    return a


def _doc(rng: random.Random) -> bytes:
    items = []
    for _ in range(rng.randint(1, 4)):
        d: dict[str, object] = {"id": rng.choice([AQ, AQ, AQ, "urn:ngsi-ld:EnergyMeter:m1"])}
        if rng.random() < 0.9:
            d["observedAt"] = rng.choice(["2015-12-01T08:00:00+08:00", "2015-12-01T00:30:00Z"])
        for p in rng.sample(PROPS, rng.randint(1, 5)):
            d[p] = _attr(rng)
        items.append(d)
    # json.dumps writes inf/nan as Infinity/NaN, which Python's JSON reader accepts: they must be refused
    return json.dumps(items, ensure_ascii=False).encode()


class _Slow(E.MessageParser):
    def _fast_specs(self, type_, etype):  # type: ignore[no-untyped-def]
        return None


def _key(res: E.ParseResult) -> tuple:
    obs = [tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in o) for o in res.observations]
    return obs, [(r.reason, r.detail, r.entity, r.property, r.payload) for r in res.rejects], res.entities


def test_fast_parser_path_equals_the_general_one():
    fast = E.MessageParser(REG.get, now_us=lambda: NOW_US, max_payload=1 << 20)
    slow = _Slow(REG.get, now_us=lambda: NOW_US, max_payload=1 << 20)
    rng = random.Random(7)
    taken = 0
    for _ in range(3000):
        raw = _doc(rng)
        a, b = fast.parse("citytwin/batch", raw), slow.parse("citytwin/batch", raw)
        assert _key(a) == _key(b), raw
        taken += len(a.observations)
    assert taken > 2000  # the comparison covered accepted readings, not only rejects
    # the values that must never take the fast path are refused by both
    res = fast.parse("citytwin/batch", json.dumps({"id": AQ, "observedAt": "2015-12-01T00:00:00Z", "pm25": 1e308,
                                                   "pm10": float("inf"), "co": {"value": float("nan")}}).encode())
    assert res.observations == [] and sorted(r.reason for r in res.rejects) == ["implausible", "wrong_type",
                                                                                  "wrong_type"]


def test_commit_columns_from_observations_and_from_other_objects():
    obs = [E.Observation("e", "T", "p", 1, None, "u", 1.0, 2.0), E.Observation("f", "T", "q", 2, 3.5, "u", None, None)]
    cols = I._columns(obs)
    assert cols == {"entity": ["e", "f"], "type": ["T", "T"], "property": ["p", "q"], "time_us": [1, 2],
                    "value": [None, 3.5], "unit": ["u", "u"], "lon": [1.0, None], "lat": [2.0, None]}

    class Other:  # any object with the attributes (the pipeline's parser protocol)
        def __init__(self, o: E.Observation) -> None:
            self.entity, self.type, self.property, self.observed_at_us = o.entity, o.type, o.property, o.observed_at_us
            self.value, self.unit, self.lon, self.lat = o.value, o.unit, o.lon, o.lat

    assert I._columns([Other(o) for o in obs]) == cols
    assert I._columns([]) == {k: [] for k in I._COLUMNS}


@pytest.mark.parametrize("n", [10, 5000])
def test_latest_rows_leave_the_live_state_as_all_rows_do(tmp_path, n):
    rng = random.Random(n)
    cols: dict[str, list] = {k: [] for k in I._COLUMNS}
    for _ in range(n):
        cols["entity"].append(f"e{rng.randint(0, 7)}")
        cols["type"].append("T")
        cols["property"].append(rng.choice(["pm25", "pm10", "co"]))
        cols["time_us"].append(rng.randint(0, 20))  # many equal times: the last given of them wins
        cols["value"].append(rng.choice([None, float("nan"), float(rng.randint(0, 9))]))
        cols["unit"].append(rng.choice(["a", "b"]))
        cols["lon"].append(None)
        cols["lat"].append(None)
    rows = list(zip(cols["entity"], cols["property"], cols["value"], cols["unit"], cols["time_us"], strict=True))
    few = I._latest_rows(cols)
    assert len(few) <= 24 and len(few) == len({(r[0], r[1]) for r in rows})
    a, b = StateStore(tmp_path / "a.sqlite"), StateStore(tmp_path / "b.sqlite")
    for s in (a, b):
        for e in sorted(set(cols["entity"])):
            s.put_entity(e, "T")
    a.upsert_latest(rows)
    b.upsert_latest(few)
    assert a.query(limit=100) == b.query(limit=100)
    a.close()
    b.close()


@pytest.mark.shared_data
def test_rules_on_an_empty_history_skip_the_read_back_and_raise_the_same_alerts(tmp_path, shared_data):
    """On an empty history the rule engine knows every reading from its hook (``complete``): the first batch of
    an entity is not read back from history, and the alerts are those of the engine that reads it."""
    import pandas as pd

    from citytwin.service.app import open_runtime
    from citytwin.twin import feeds as F

    frames = []
    for st in ("Dongsi", "Tiantan"):
        w = pd.read_csv(shared_data / f"air_beijing_multisite/PRSA_Data_{st}_20130301-20170228.csv")
        t = pd.to_datetime(w[["year", "month", "day", "hour"]])
        frames.append(w[(t >= "2015-11-20") & (t < "2015-12-03")])
    msgs = [(topic, p) for _, topic, p in F.messages_from_long(F.beijing_long(pd.concat(frames)), per_message=1)]
    got = []
    for complete in (True, False):
        rt = open_runtime(tmp_path / f"twin-{complete}")
        rt.register([F.beijing_entity(s) for s in ("Dongsi", "Tiantan")])
        auto = rt.enable_auto_alerts()
        assert auto.engine.complete  # the history is empty
        auto.engine.complete = complete
        for lo, hi in [(0, 300), *((i, i + 2) for i in range(300, len(msgs), 2))]:  # one big batch, then hourly
            rt.ingestor.ingest(msgs[lo:hi], source="mqtt")
        assert not rt.ingestor.hook_errors
        got.append(([(a.rule, a.entity, a.start, a.end, a.peak, a.status) for a in rt.alerts.alerts()],
                     auto.engine.history_reads))
        rt.close()
    (fast, reads_fast), (slow, reads_slow) = got
    assert fast == slow and len(fast) >= 4
    assert reads_fast == 0 < reads_slow
