"""The columnar batch payload (``citytwin.twin.columnar``) gives what the same readings give as entity updates:
the same accepted readings, the same reasons for what is refused (per reading, naming index and field), and
over a real Mosquitto broker a poisoned columnar message is dead-lettered while the next one is stored."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.mqtt import MqttPublisher
from citytwin.foundation.timeseries import TwinStores
from citytwin.foundation.timeseries import ingest as I
from citytwin.twin import entities as E
from citytwin.twin.columnar import BatchParser, columnar_messages_from_long, fast_decode
from citytwin.workflows.runtime import open_runtime

NOW_US = E.parse_time_us("2026-01-01T00:00:00Z")
A = "urn:ngsi-ld:AirQualityObserved:A"
B = "urn:ngsi-ld:AirQualityObserved:B"
T = "urn:ngsi-ld:TrafficFlowObserved:T"
M = "urn:ngsi-ld:EnergyMeter:m1"
REG = {A: E.EntityRef("AirQualityObserved", 116.4, 39.9), B: E.EntityRef("AirQualityObserved", 116.3, None),
       T: E.EntityRef("TrafficFlowObserved", 114.0, 22.5), M: E.EntityRef("EnergyMeter", None, None)}

VALUES = [0.0, 12.5, 3, -7, 499.9, 1e308, -50.0, 2**53 + 1, 10**25, 10**400, True, False, None, "12", [1],
          {"value": 1}]
PROPS = ["pm25", "co", "relativeHumidity", "windDirection", "congested", "intensity", "nope", "energy"]
UNITS = [None, None, None, "µg/m³", "mg/m³", "percent", "kWh", "furlong"]
TIMES = ["2015-12-01T08:00:00+08:00", "2015-12-01T01:00:00Z", "1800-01-01T00:00:00Z", "2099-01-01T00:00:00Z",
         "2015-12-01T01:00:00", 5, None]


def _columnar(rng: random.Random) -> dict:
    n = rng.randint(1, 5)
    ids = [rng.choice([A, A, B, T, M, "urn:ngsi-ld:AirQualityObserved:unknown"]) for _ in range(n)]
    doc: dict = {"ids": ids}
    if rng.random() < 0.5:
        doc["observedAt"] = rng.choice(TIMES[:2]) if rng.random() < 0.8 else rng.choice(TIMES)
    else:
        doc["observedAt"] = [rng.choice(TIMES[:2]) if rng.random() < 0.8 else rng.choice(TIMES) for _ in ids]
    units = {}
    for p in rng.sample(PROPS, rng.randint(1, 4)):
        doc[p] = [rng.choice(VALUES) for _ in ids]
        u = rng.choice(UNITS)
        if u is not None:
            units[p] = u
    if units:
        doc["units"] = units
    return doc


def _as_updates(doc: dict) -> list[dict]:
    """The same readings as NGSI-LD entity updates (one per id)."""
    out = []
    for i, eid in enumerate(doc["ids"]):
        t = doc["observedAt"][i] if isinstance(doc["observedAt"], list) else doc["observedAt"]
        item: dict = {"id": eid, "observedAt": t}
        for k, v in doc.items():
            if k in ("ids", "observedAt", "units", "type"):
                continue
            u = doc.get("units", {}).get(k)
            # a bare value, or an attribute object (always one for an object value: bare, it would be read as one)
            item[k] = v[i] if u is None and not isinstance(v[i], dict) else {"value": v[i], **({} if u is None else
                                                                                               {"unit": u})}
        out.append(item)
    return out


def _rows(columns: dict) -> list[tuple]:
    def norm(x):
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return None
        return x.item() if hasattr(x, "item") else x

    keys = ("entity", "type", "property", "time_us", "value", "unit", "lon", "lat")
    return sorted((tuple(norm(columns[k][i]) for k in keys) for i in range(len(columns["entity"]))), key=repr)


def test_columnar_equals_the_same_readings_as_entity_updates():
    col = BatchParser(REG.get, now_us=lambda: NOW_US)
    ref = E.MessageParser(REG.get, now_us=lambda: NOW_US)
    rng = random.Random(11)
    accepted = rejected = 0
    for _ in range(1500):
        doc = _columnar(rng)
        a = col.parse("citytwin/batch", json.dumps(doc, ensure_ascii=False).encode())
        b = ref.parse("citytwin/batch", json.dumps(_as_updates(doc), ensure_ascii=False).encode())
        assert isinstance(a, __import__("citytwin.twin.columnar", fromlist=["x"]).ColumnarResult), doc
        assert _rows(a.columns) == _rows(I._columns(b.observations)), doc
        # the same readings refused, for the same reasons (one reject per reading or per entity row)
        got = sorted((r.reason, r.entity, r.property) for r in a.rejects)
        want = sorted((r.reason, r.entity, r.property) for r in b.rejects)
        assert got == want, (doc, a.rejects, b.rejects)
        for r in a.rejects:  # each names the field and the index of the reading or row
            assert r.detail.split(":")[0].split("[")[0] in (r.property or "", "ids", "observedAt"), r.detail
            assert "[" in r.detail.split(":")[0] or r.detail.startswith("observedAt:"), r.detail
        accepted += len(a.columns["entity"])
        rejected += len(a.rejects)
    assert accepted > 500 and rejected > 1000  # both sides of the comparison were exercised


def test_the_kept_lookups_of_ids_give_what_fresh_lookups_give_and_follow_the_registry():
    """With ``registry_version`` the look-ups of a list of ids are kept between messages: the results (columns
    and rejects, details included) are those of a parser that looks every id up, also after entities are
    deleted, added or moved between the messages (the version changes)."""
    reg = dict(REG)
    version = [0]
    kept = BatchParser(reg.get, now_us=lambda: NOW_US, registry_version=lambda: version[0])
    fresh = BatchParser(reg.get, now_us=lambda: NOW_US)
    rng = random.Random(5)
    docs = [_columnar(rng) for _ in range(60)]
    hits = 0
    for step in range(600):
        doc = rng.choice(docs)  # the same lists of ids again and again, as a gateway sends them
        if step % 97 == 50:  # the registry changes: an entity leaves, comes back elsewhere
            if A in reg:
                del reg[A]
            else:
                reg[A] = E.EntityRef("AirQualityObserved", 117.0 + step, 40.0)
            version[0] += 1
        payload = json.dumps(doc, ensure_ascii=False).encode()
        batch = [("citytwin/batch", payload), ("citytwin/batch", payload)]
        before = len(kept._ids_cache)
        a, b = kept.parse_many(batch), fresh.parse_many(batch)
        hits += before > 0 and len(kept._ids_cache) == before
        for x, y in zip(a, b, strict=True):
            assert _rows(x.columns) == _rows(y.columns), doc
            assert [(r.reason, r.detail, r.entity, r.property, r.payload) for r in x.rejects] == \
                [(r.reason, r.detail, r.entity, r.property, r.payload) for r in y.rejects], doc
    assert hits > 100 and kept._ids_cache  # the kept look-ups were used
    # a deleted entity is refused in the very next batch
    eid = next(iter(reg))
    doc = {"ids": [eid], "observedAt": TIMES[0], "pm25": [1.0]}
    kept.parse_many([("citytwin/batch", json.dumps(doc).encode())])
    del reg[eid]
    version[0] += 1
    res = kept.parse_many([("citytwin/batch", json.dumps(doc).encode())])[0]
    assert [r.reason for r in res.rejects] == ["unknown_entity"] and not len(res.columns["entity"])


def test_the_runtime_parser_sees_an_entity_deleted_between_batches(tmp_path):
    rt = open_runtime(tmp_path / "twin")
    rt.register([E.Entity(A, "AirQualityObserved", 116.4, 39.9)])
    doc = {"ids": [A], "observedAt": "2015-12-01T00:00:00Z", "pm25": [10.0]}
    msg = [("citytwin/batch", json.dumps(doc).encode())]
    assert rt.ingestor.ingest(msg, source="mqtt").accepted == 1
    assert rt.ingestor.ingest(msg, source="mqtt").accepted == 1
    assert rt.stores.state.delete_entity(A)
    rep = rt.ingestor.ingest(msg, source="mqtt")
    assert (rep.accepted, rep.reasons) == (0, {"unknown_entity": 1})
    rt.close()


def test_dead_letters_name_index_and_field_and_keep_the_rest():
    p = BatchParser(REG.get, now_us=lambda: NOW_US)
    doc = {"ids": [A, B, "urn:ngsi-ld:AirQualityObserved:nope"], "observedAt": "2015-12-01T00:00:00Z",
           "pm25": [10, -50, 5], "windDirection": [720, 90, 1], "co": [1.5, None, 2]}
    res = p.parse("citytwin/batch", json.dumps(doc).encode())
    details = sorted((r.reason, r.detail) for r in res.rejects)
    assert details == [
        ("implausible", "pm25[1]: pm25 -50 µg/m³ is outside the physical range 0..2000 µg/m³"),
        ("implausible", "windDirection[0]: windDirection 720 degree is outside the physical range 0..360 degree"),
        ("unknown_entity", "ids[2]: entity 'urn:ngsi-ld:AirQualityObserved:nope' is not registered"),
    ]
    nt = p.parse("citytwin/batch", json.dumps({"ids": [A, B], "observedAt": [None, "2015-12-01T00:00:00Z"],
                                                "pm25": [1, 2]}).encode())
    assert [(r.reason, r.detail) for r in nt.rejects] == [("missing_time", "pm25[0]: no observedAt (or dateObserved) "
                                                                           "for the value")]
    assert nt.columns["entity"].tolist() == [B]
    bad = next(r for r in res.rejects if r.property == "pm25")
    assert json.loads(bad.payload) == {"index": 1, "id": B, "observedAt": "2015-12-01T00:00:00Z", "pm25": -50}
    stored = {(e, p_, None if math.isnan(v) else v) for e, p_, v in
              zip(res.columns["entity"], res.columns["property"], res.columns["value"], strict=True)}
    assert stored == {(A, "pm25", 10.0), (A, "co", 1.5), (B, "co", None), (B, "windDirection", 90.0)}
    assert res.entities == 2


@pytest.mark.parametrize("doc, detail", [
    ({"ids": "x", "observedAt": "2015-12-01T00:00:00Z"}, "ids: expected a list"),
    ({"ids": [A, 5], "observedAt": "2015-12-01T00:00:00Z"}, "ids: expected a list"),
    ({"ids": [A], "observedAt": "2015-12-01T00:00:00Z", "pm25": [1, 2]}, "pm25: expected a list of 1 values"),
    ({"ids": [A], "observedAt": "2015-12-01T00:00:00Z", "pm25": 1}, "pm25: expected a list of 1 values"),
    ({"ids": [A], "observedAt": ["2015-12-01T00:00:00Z"] * 2}, "observedAt: 2 times for 1 ids"),
    ({"ids": [A], "observedAt": "2015-12-01T00:00:00Z", "units": {"pm25": 3}}, "units: expected an object"),
    ({"ids": [A], "observedAt": "2015-12-01T00:00:00Z", "pm25": [1],
      "location": {"type": "Point", "coordinates": [1, 2]}}, "location: the columnar payload has none"),
])
def test_a_message_of_the_wrong_shape_is_refused_whole(doc, detail):
    res = BatchParser(REG.get, now_us=lambda: NOW_US).parse("citytwin/batch", json.dumps(doc).encode())
    assert len(res.columns["entity"]) == 0
    assert len(res.rejects) == 1 and res.rejects[0].detail.startswith(detail), res.rejects
    assert res.rejects[0].payload == json.dumps(doc).encode()  # the whole message is kept


def test_only_the_batch_topic_takes_columns_and_decoding_agrees_with_the_stdlib():
    p = BatchParser(REG.get, now_us=lambda: NOW_US)
    doc = json.dumps({"ids": [A], "observedAt": "2015-12-01T00:00:00Z", "pm25": [1]}).encode()
    assert p.parse(None, doc).rejects[0].reason == "unknown_entity" or p.parse(None, doc).rejects  # HTTP: an update
    assert p.parse("citytwin/AirQualityObserved/A/attrs", doc).rejects[0].reason == "unknown_property"
    # what orjson refuses or reads differently is decided by decode_json, as before
    for raw in [b'{"a": ' + b"9" * 401 + b"}", b'{"a": 123456789012345678901234}', b'{"a": NaN}',
                b'{"a": "\\ud800"}', b"[" * 5000 + b"]" * 5000, b'{"a": "\\ud83d\\ude00"}', b"\xff"]:
        try:
            want = ("ok", E.decode_json(raw))
        except E.PayloadError as exc:
            want = (exc.reason, None)
        try:
            got = ("ok", fast_decode(raw))
        except E.PayloadError as exc:
            got = (exc.reason, None)
        assert got[0] == want[0] and (got[0] != "ok" or repr(got[1]) == repr(want[1])), raw[:40]
    big = p.parse("citytwin/batch", b'{"ids": ["' + A.encode() + b'"], "observedAt": "2015-12-01T00:00:00Z", '
                  b'"pm25": [' + b"9" * 401 + b"]}")
    assert [r.reason for r in big.rejects] == ["implausible"] and "401 digits" in big.rejects[0].detail


def test_a_batch_of_columnar_and_entity_updates_commits_in_message_order(tmp_path):
    stores = TwinStores.open(tmp_path / "twin")
    for eid, ref in REG.items():
        stores.state.put_entity(eid, ref.type, ref.lon, ref.lat, {})
    ing = I.Ingestor(stores, BatchParser(REG.get, now_us=lambda: NOW_US))
    t = "2015-12-01T00:00:00Z"
    msgs = [("citytwin/batch", json.dumps({"ids": [A, B], "observedAt": t, "pm25": [1, 2]}).encode()),
            ("citytwin/batch", json.dumps([{"id": A, "observedAt": t, "pm25": 3}]).encode()),
            ("citytwin/batch", json.dumps({"ids": [A], "observedAt": t, "pm25": [-4]}).encode()),
            ("citytwin/batch", json.dumps({"ids": [B], "observedAt": t, "pm25": [5], "co": [None]}).encode())]
    rep = ing.ingest(msgs, source="test")
    assert (rep.messages, rep.accepted, rep.rejected, rep.entities) == (4, 5, 1, [A, B])
    df = stores.history.query(entities=[A, B])
    got = {(r.entity, r.property): (None if pd.isna(r.value) else r.value) for r in df.itertuples()}
    assert got == {(A, "pm25"): 3.0, (B, "pm25"): 5.0, (B, "co"): None}  # a later reading of a key wins
    latest = stores.state.get(B)["attrs"]
    assert latest["pm25"]["value"] == 5.0 and latest["co"]["value"] is None
    letters = stores.deadletters.frame()
    assert letters[["reason", "topic", "property"]].values.tolist() == [["implausible", "citytwin/batch", "pm25"]]
    stores.close()


def test_the_columnar_feed_of_a_month_stores_what_the_entity_updates_store(tmp_path):
    rng = np.random.default_rng(3)
    times = pd.date_range("2015-12-01", periods=48, freq="h", tz="UTC")
    ents = [A, B]
    long = pd.DataFrame([(e, "AirQualityObserved", p, t, float(rng.integers(0, 300)) / s if rng.random() > 0.1
                          else np.nan, u) for t in times for e in ents
                         for p, u, s in (("pm25", "µg/m³", 1), ("co", "mg/m³", 100))],
                        columns=["entity", "type", "property", "time", "value", "unit"])
    from citytwin.twin import feeds as F
    out, alerts, state, entities = {}, {}, {}, {}
    for name, gen in (("col", columnar_messages_from_long), ("nocodes", columnar_messages_from_long),
                      ("ngsi", F.messages_from_long)):
        rt = open_runtime(tmp_path / name)
        rt.register([E.Entity(e, "AirQualityObserved", REG[e].lon, REG[e].lat) for e in ents])
        rt.enable_auto_alerts()
        if name == "nocodes":  # the same columns without the string codes (ingest.CODES): every step hashes strings
            many = rt.parser.parse_many

            def strip(msgs, many=many):
                res = many(msgs)
                for r in res:
                    if isinstance(getattr(r, "whole", None), dict):
                        r.whole.pop(I.CODES, None)
                assert not any(I.CODES in getattr(r, "columns", {}) for r in res)
                return res

            rt.parser.parse_many = strip  # type: ignore[method-assign]
        msgs = [(tp, p) for _, tp, p in gen(long, per_message=2)]
        reps = [rt.ingest_messages(msgs[i:i + 10]) for i in range(0, len(msgs), 10)]
        assert sum(r.rejected for r in reps) == 0
        entities[name] = [r.entities for r in reps]
        df = rt.stores.history.query(entities=ents).sort_values(["entity", "property", "time"])
        out[name] = df[["entity", "property", "time", "value", "unit", "lon", "lat"]].reset_index(drop=True)
        alerts[name] = [a.to_record() for a in rt.alerts.alerts()]
        state[name] = rt.stores.state.query(ids=ents)
        rt.close()
    for name in ("nocodes", "ngsi"):
        pd.testing.assert_frame_equal(out["col"], out[name])
        assert alerts[name] == alerts["col"], name
        assert entities[name] == entities["col"], name
        assert state[name] == state["col"], (name, state[name], state["col"])
    assert len(out["col"]) == len(long) and alerts["col"] and len(state["col"]) == 2


# -- over a real broker ------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "mosquitto.sh"


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                    reason="Mosquitto not installed (scripts/setup.sh --test installs it)")
def test_poisoned_columnar_messages_over_mosquitto_are_dead_lettered_and_the_next_is_stored(tmp_path):
    d = tmp_path / "broker"
    port = int(subprocess.run([str(SCRIPT), "start", str(d)], check=True, capture_output=True, text=True)
               .stdout.strip())
    rt = open_runtime(tmp_path / "twin")
    rt.register([E.Entity(A, "AirQualityObserved", 116.4, 39.9), E.Entity(B, "AirQualityObserved", 116.3, 39.8)])
    try:
        ing = rt.start_mqtt("127.0.0.1", port, client_id="col-ingest", publish_alerts=False, max_delay=0.02)
        pub = MqttPublisher("127.0.0.1", port, client_id="col-pub")
        poison = [b'{"ids": ["' + A.encode() + b'"], "observedAt": "2015-12-01T00:00:00Z", "pm25": [' + b"9" * 401
                  + b"]}",
                  b'{"ids": ["' + A.encode() + b'"], "observedAt": "0001-01-01T00:00:00+14:00", "pm25": [5]}',
                  b'{"ids": ["\\ud800"], "observedAt": "2015-12-01T00:00:00Z", "pm25": [5]}',
                  b'{"ids": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                  json.dumps({"ids": [A, B], "observedAt": "2015-12-01T00:00:00Z", "pm25": [-50, 7]}).encode()]
        for h, payload in enumerate(poison):
            pub.publish("citytwin/batch", payload)
            pub.publish("citytwin/batch", json.dumps({"ids": [A, B], "observedAt": f"2015-12-02T{h:02d}:00:00Z",
                                                      "pm25": [100 + h, 200 + h]}).encode())
        assert pub.wait_all(30)
        deadline = time.monotonic() + 30
        while ing.stats.acked < 2 * len(poison) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ing.stats.acked == 2 * len(poison), ing.stats
        assert rt.stores.deadletters.counts() == {"implausible": 2, "too_old": 1, "bad_text": 1, "too_deep": 1}
        c = rt.stores.history.count()
        assert c == {"rows": 2 * len(poison) + 1, "values": 2 * len(poison) + 1, "missing": 0}  # + B's 7 of the last
        pub.close()
    finally:
        rt.close()
        subprocess.run([str(SCRIPT), "stop", str(d)], check=False)
