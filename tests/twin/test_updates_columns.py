"""Entity updates validated column by column over a whole batch (``citytwin.twin.updates``, used by the runtime's
``BatchParser.parse_many``) give exactly what ``MessageParser`` gives message by message: the same readings in the
same order, the same rejects (reason, detail, entity, property, payload) in the same order, and, through the
ingest, the same stored history, live state, alerts and dead letters."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.timeseries import TwinStores
from citytwin.foundation.timeseries import ingest as I
from citytwin.twin import entities as E
from citytwin.twin.columnar import BatchParser
from citytwin.twin.updates import UpdateBatch
from citytwin.workflows.runtime import open_runtime

NOW_US = E.parse_time_us("2026-01-01T00:00:00Z")
A = "urn:ngsi-ld:AirQualityObserved:A"
B = "urn:ngsi-ld:AirQualityObserved:B"
T = "urn:ngsi-ld:TrafficFlowObserved:T"
M = "urn:ngsi-ld:EnergyMeter:m1"
REG = {A: E.EntityRef("AirQualityObserved", 116.4, 39.9), B: E.EntityRef("AirQualityObserved", 116.3, None),
       T: E.EntityRef("TrafficFlowObserved", 114.0, 22.5), M: E.EntityRef("EnergyMeter", None, None)}

# mostly the common readings (numbers in range, in a unit the type knows), with every rarer form mixed in
GOOD = [0.0, -0.0, 12.5, 3, 80, 499.9, None, 1e-300]
ODD = [1e308, -50.0, 2**53 + 1, 2**70, 10**400, True, False, "12", [1], {"value": 1}, float("nan"), float("inf")]
UNITS = ["µg/m³", "µg/m³", "mg/m³", "GQ", "percent", "furlong", "kWh", "", 5, None, ["x"]]
PROPS = ["pm25", "pm10", "co", "no2", "relativeHumidity", "windDirection", "temperature", "congested", "intensity",
         "nope", "energy"]
TIMES = ["2015-12-01T08:00:00+08:00", "2015-12-01T01:00:00Z", "2015-12-01T02:00:00Z"]
BAD_TIMES = ["1800-01-01T00:00:00Z", "2099-01-01T00:00:00Z", "2015-12-01T01:00:00", 5, None, "x"]


def _attr(rng: random.Random, odd: float) -> object:
    v = rng.choice(ODD) if rng.random() < odd else rng.choice(GOOD)
    shape = rng.random()
    if shape < 0.3:
        return v
    if shape < 0.8:  # the form devices send: value and unit
        return {"value": v, "unit": "µg/m³" if rng.random() > odd else rng.choice(UNITS)}
    a: dict[str, object] = {"value": v}
    u = rng.choice(UNITS)
    if u is not None:
        a["unitCode" if rng.random() < 0.4 else "unit"] = u
    if rng.random() < 0.2:
        a["observedAt"] = rng.choice(TIMES + BAD_TIMES)
    if rng.random() < 0.2:
        a["type"] = "Property"
    if rng.random() < 0.1:
        a = dict(reversed(list(a.items())))  # the key order shows in a dead letter's payload
    return a


def _message(rng: random.Random, shapes: list[list[str]]) -> bytes:
    """A JSON array of updates; most share a few attribute lists (as devices do), some are anything."""
    odd = rng.choice([0.0, 0.0, 0.05, 0.3])
    items: list[object] = []
    for _ in range(rng.randint(1, 14)):
        r = rng.random()
        if r < 0.02:
            items.append(rng.choice([5, "x", None, [1]]))
            continue
        eid = rng.choice([A, A, B, B, T, M, "urn:ngsi-ld:AirQualityObserved:nope"]) if r < 0.2 else rng.choice([A, B])
        d: dict[str, object] = {"id": eid}
        if rng.random() < 0.03:
            del d["id"]
        if rng.random() < 0.05:
            d["type"] = rng.choice(["AirQualityObserved", "TrafficFlowObserved"])
        t = rng.choice(TIMES) if rng.random() > odd / 2 else rng.choice(BAD_TIMES)
        if t is not None:
            d["dateObserved" if rng.random() < 0.05 else "observedAt"] = t
        if rng.random() < 0.03:
            d["location"] = rng.choice([{"type": "Point", "coordinates": [116.0, 40.0]}, {"type": "Point"}])
        if rng.random() < 0.03:
            d["name"] = "station"
        props = rng.choice(shapes) if rng.random() < 0.85 else rng.sample(PROPS, rng.randint(1, 5))
        for p in props:
            d[p] = _attr(rng, odd)
        items.append(d)
    return json.dumps(items, ensure_ascii=False).encode()


def _rows(cols: dict) -> list[tuple]:
    def norm(x: object) -> object:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return None
        return x.item() if hasattr(x, "item") else x

    keys = ("entity", "type", "property", "time_us", "value", "unit", "lon", "lat")
    return [tuple(norm(cols[k][i]) for k in keys) for i in range(len(cols["entity"]))]


def _rejects(res: object) -> list[tuple]:
    return [(r.reason, r.detail, r.entity, r.property, r.payload) for r in res.rejects]  # type: ignore[attr-defined]


def test_a_batch_of_entity_updates_gives_what_each_message_gives_alone():
    rng = random.Random(13)
    shapes = [["pm25", "pm10", "co", "no2"], ["pm25", "co"], ["temperature", "relativeHumidity", "windDirection"]]
    version = [0]
    reg = dict(REG)
    batch = BatchParser(reg.get, now_us=lambda: NOW_US, registry_version=lambda: version[0])
    plain = BatchParser(reg.get, now_us=lambda: NOW_US)  # no kept look-ups
    ref = E.MessageParser(reg.get, now_us=lambda: NOW_US)
    topics = ["citytwin/batch"] * 8 + [f"citytwin/AirQualityObserved/{x}/attrs" for x in "AB"]
    taken = refused = columns = 0
    for step in range(60):
        if step % 13 == 7:  # the registry changes between batches: the kept look-ups must follow
            if B in reg:
                del reg[B]
            else:
                reg[B] = E.EntityRef("AirQualityObserved", 117.0 + step, 40.0)
            version[0] += 1
        msgs = []
        for _ in range(rng.randint(1, 90)):
            topic = rng.choice(topics)
            raw = _message(rng, shapes)
            if topic != "citytwin/batch":  # one update on an entity's topic
                doc = json.loads(raw)
                one = next((x for x in doc if isinstance(x, dict)), {"pm25": 1})
                raw = json.dumps(one, ensure_ascii=False).encode()
            msgs.append((topic, raw))
        for parser in (batch, plain):
            got = parser.parse_many(msgs)
            for (topic, raw), res in zip(msgs, got, strict=True):
                want = ref.parse(topic, raw)
                assert _rows(res.columns) == _rows(I._columns(want.observations)), raw
                assert _rejects(res) == _rejects(want), raw
                assert res.entities == want.entities, raw
                taken += len(want.observations)
                refused += len(want.rejects)
                columns += I.CODES in res.columns
    assert taken > 20_000 and refused > 2_000 and columns > 500  # both sides, and the codes, were exercised


def test_the_common_readings_are_taken_as_columns_and_the_rest_one_at_a_time():
    p = E.MessageParser(REG.get, now_us=lambda: NOW_US)
    doc = [{"id": e, "observedAt": TIMES[0], "pm25": {"value": 12 + i, "unit": "µg/m³"},
            "co": {"value": -1 if i == 5 else 900, "unit": "µg/m³"}} for i, e in enumerate([A, B] * 4)]
    b = UpdateBatch(p, NOW_US)
    res = E.ParseResult()
    b.add(doc, res, None, None)
    b._flush()
    # pm25 is one column (8 readings); co has a value out of range: its 8 readings go one at a time
    assert set(b.parts) == {("AirQualityObserved", "pm25", 2, "µg/m³")} and not b.few
    assert [(s, q, n) for s, q, n, _ in b.one] == [(i, 3, "co") for i in range(8)]
    cols, msg = b.finish()
    want = p.parse("citytwin/batch", json.dumps(doc).encode())
    assert _rows(cols) == _rows(I._columns(want.observations)) and len(cols["entity"]) == 15
    assert msg.tolist() == [0] * 15
    assert _rejects(res) == _rejects(want) and [(r.reason, r.entity, r.property) for r in res.rejects] == [
        ("implausible", B, "co")]
    assert json.loads(res.rejects[0].payload) == {"value": -1, "unit": "µg/m³"}
    # a shape with few updates in the queue is read one reading at a time, by the common path where it can
    b = UpdateBatch(p, NOW_US)
    res = E.ParseResult()
    b.add(doc[:2], res, None, None)
    b._flush()
    assert not b.parts and len(b.few) == 2 and len(b.one) == 2  # (co in µg/m³ is converted by _attribute)
    cols, _ = b.finish()
    assert _rows(cols) == _rows(I._columns(p.parse("citytwin/batch", json.dumps(doc[:2]).encode()).observations))


def _poisoned(msgs: list[tuple[str, bytes]], rng: random.Random) -> list[tuple[str, bytes]]:
    out = []
    for i, (topic, raw) in enumerate(msgs):
        if i % 3 == 1:
            doc = json.loads(raw)
            item = doc[rng.randrange(len(doc))]
            key = rng.choice([k for k in item if k not in ("id", "observedAt")])
            item[key] = rng.choice([-50.0, "12", {"value": 1.0, "unit": "furlong"}, {"value": 3, "unit": "mg/m³"},
                                    {"value": 1.0, "observedAt": "1800-01-01T00:00:00Z"}, None, 7])
            if rng.random() < 0.2:
                doc.append(rng.choice([{"id": "urn:ngsi-ld:AirQualityObserved:nope", "pm25": 1}, 5,
                                       {"id": A, "observedAt": "2099-01-01T00:00:00Z", "pm25": 1}]))
            raw = json.dumps(doc, ensure_ascii=False).encode()
            if rng.random() < 0.1:
                raw = raw[:-2]
        out.append((topic, raw))
    return out


def test_the_stores_hold_what_the_message_by_message_parser_stores(tmp_path):
    rng = np.random.default_rng(3)
    times = pd.date_range("2015-12-01", periods=240, freq="h", tz="UTC")
    long = pd.DataFrame([(e, "AirQualityObserved", p, t, float(rng.integers(0, 300)) / s if rng.random() > 0.1
                          else np.nan, u) for t in times for e in (A, B)
                         for p, u, s in (("pm25", "µg/m³", 1), ("pm10", "µg/m³", 1), ("co", "µg/m³", 0.1))],
                        columns=["entity", "type", "property", "time", "value", "unit"])
    from citytwin.twin import feeds as F
    msgs = _poisoned([(tp, p) for _, tp, p in F.messages_from_long(long, per_message=4)], random.Random(2))
    got = {}
    for name in ("columns", "messages"):
        rt = open_runtime(tmp_path / name)
        rt.register([E.Entity(e, "AirQualityObserved", REG[e].lon, REG[e].lat) for e in (A, B)])
        rt.enable_auto_alerts()
        if name == "messages":  # the same runtime with a parser that reads message by message
            rt.ingestor.parser = E.MessageParser(rt.parser.lookup, max_payload=rt.parser.max_payload)
        reps = [rt.ingest_messages(msgs[i:i + 25]) for i in range(0, len(msgs), 25)]
        hist = rt.stores.history.query(entities=[A, B])
        letters = rt.stores.deadletters.frame(limit=10_000).drop(columns=["id", "received_us", "received_at"])
        got[name] = (
            [(r.accepted, r.rejected, r.reasons, r.entities) for r in reps],
            hist.drop(columns=[c for c in hist.columns if "received" in c]).reset_index(drop=True),
            rt.stores.state.query(ids=[A, B]),
            [a.to_record() for a in rt.alerts.alerts()],
            letters.iloc[::-1].reset_index(drop=True),
        )
        rt.close()
    a, b = got["columns"], got["messages"]
    assert a[0] == b[0]
    pd.testing.assert_frame_equal(a[1], b[1])
    assert a[2] == b[2] and a[3] == b[3]
    pd.testing.assert_frame_equal(a[4], b[4])
    assert sum(r[1] for r in a[0]) > 20 and len(a[1]) > 1000 and a[3]  # rejects, readings and alerts were there


def test_a_store_with_one_parser_answers_like_the_other(tmp_path):
    """Through ``Ingestor.ingest`` (the MQTT path): one batch of updates on an entity's topic and on the batch
    topic, committed, gives the history and dead letters of the message-by-message parser."""
    stores = {}
    msgs = [("citytwin/AirQualityObserved/A/attrs", json.dumps({"observedAt": TIMES[1], "pm25": 3}).encode()),
            ("citytwin/batch", json.dumps([{"id": B, "observedAt": TIMES[1], "pm25": {"value": 5, "unit": "µg/m³"}},
                                           {"id": A, "observedAt": TIMES[1], "pm25": {"value": 4, "unit": "µg/m³"},
                                            "co": {"value": 1e9, "unit": "µg/m³"}}]).encode())]
    for name, parser in (("batch", BatchParser(REG.get, now_us=lambda: NOW_US)),
                         ("plain", E.MessageParser(REG.get, now_us=lambda: NOW_US))):
        s = stores[name] = TwinStores.open(tmp_path / name)
        for eid, r in REG.items():
            s.state.put_entity(eid, r.type, r.lon, r.lat, {})
        rep = I.Ingestor(s, parser).ingest(msgs, source="test")
        assert (rep.accepted, rep.rejected, rep.entities) == (3, 1, [A, B])
    h = {n: s.history.query(entities=[A, B]).drop(columns=["received_at"], errors="ignore") for n, s in stores.items()}
    pd.testing.assert_frame_equal(h["batch"], h["plain"])
    assert stores["batch"].state.get(A) == stores["plain"].state.get(A)
    d = {n: s.deadletters.frame()[["reason", "detail", "topic", "entity", "property", "payload"]]
         for n, s in stores.items()}
    pd.testing.assert_frame_equal(d["batch"], d["plain"])
    for s in stores.values():
        s.close()


def _depth(doc: object) -> int:
    if isinstance(doc, dict):
        return 1 + max((_depth(v) for v in doc.values()), default=0)
    if isinstance(doc, list):
        return 1 + max((_depth(v) for v in doc), default=0)
    return 0


def _random_doc(rng: random.Random, budget: int, text: str) -> object:
    """A random JSON value whose strings are drawn from ``text``."""
    kind = rng.random()
    if budget <= 0 or kind < 0.35:
        return rng.choice([1, -2.5, None, True, "".join(rng.choice(text) for _ in range(rng.randint(0, 12)))])
    n = rng.randint(0, 4)
    if kind < 0.7:
        return [_random_doc(rng, budget - 1, text) for _ in range(n)]
    return {"".join(rng.choice(text) for _ in range(rng.randint(0, 6))): _random_doc(rng, budget - 1, text)
            for _ in range(n)}


def test_the_bracket_depth_is_the_json_depth_with_brackets_in_strings_not_counted():
    """``_bracket_depth`` (run on every entity-update message with more than 32 brackets) must give the nesting
    depth of valid JSON, whatever its strings hold: it once counted the brackets inside strings, so a string of
    ``]`` lowered the count and a payload nested 41 deep was not refused as ``too_deep``."""
    import orjson

    rng = random.Random(4)
    for i in range(4000):  # strings with escapes (quotes, backslashes, a newline), and without (the short way)
        doc = _random_doc(rng, rng.randint(0, 9), '[]{}"\\ab,:\u00e9\u6c14\n' if i % 2 else "[]{}ab,:\u00e9")
        want = _depth(doc)
        for raw in (json.dumps(doc).encode(), json.dumps(doc, ensure_ascii=False).encode(), orjson.dumps(doc)):
            assert E._bracket_depth(raw) == want, raw
    assert E._bracket_depth(b"[" * 70_000 + b"]" * 70_000) == 70_000
    assert E._bracket_depth(b'{"s": "\\\\\\"]]]]", "d": [[[1]]]}') == 4  # an escaped quote after an escaped backslash


def test_closing_brackets_in_a_string_do_not_hide_a_deep_payload():
    """A string of ``]`` before a list nested 41 deep: refused as ``too_deep`` by both decoders; the same
    brackets in a string of a shallow payload are not."""
    from citytwin.twin.columnar import fast_decode

    deep = b'{"s": "' + b"]" * 100 + b'", "d": ' + b"[" * 40 + b"]" * 40 + b"}"
    shallow = b'{"s": "' + b"[" * 100 + b'", "d": ' + b"[" * 30 + b"]" * 30 + b"}"
    for decode in (fast_decode, E.decode_json):
        with pytest.raises(E.PayloadError) as err:
            decode(deep)
        assert err.value.reason == "too_deep"
        assert _depth(decode(shallow)) == 31


def test_the_quick_depth_check_refuses_what_the_bracket_depth_refuses():
    """``columnar._too_deep`` (the bracket pairs stripped pass by pass, on every message ``fast_decode`` reads) must
    say ``_bracket_depth(raw) > max_depth`` for any valid JSON: brackets in strings, escapes, every limit around the
    depth, and the long payloads that go to the exact count."""
    import orjson

    from citytwin.twin.columnar import _too_deep

    rng = random.Random(13)
    for i in range(3000):
        doc = _random_doc(rng, rng.randint(0, 9), '[]{}"\\ab,:\u00e9\n' if i % 3 == 0 else "[]{}ab,:\u00e9")
        for raw in (json.dumps(doc).encode(), orjson.dumps(doc)):
            depth = E._bracket_depth(raw)
            for limit in {0, 1, max(0, depth - 1), depth, depth + 1, 32}:
                assert _too_deep(raw, limit) == (depth > limit), (raw, limit)
    for depth in (31, 32, 33, 40):
        raw = b"[" * depth + b"]" * depth
        assert _too_deep(raw, 32) == (depth > 32)
        wide = b"[" + b",".join([b'{"a": {"v": 1}}'] * 20_000) + b"," + raw + b"]"  # > 64 KiB of brackets
        assert _too_deep(wide, 32) == (depth + 1 > 32) == (E._bracket_depth(wide) > 32)


def test_messages_of_one_shape_are_queued_at_once_with_the_outcome_of_the_loop(monkeypatch):
    """``UpdateBatch._add_known`` (a message whose updates all have the same keys, entities and times already known
    or parseable) must give what the loop over the updates gives: each variation below either takes it, with the
    same readings, or is left to the loop; both sides are exercised."""
    rng = random.Random(21)
    taken = [0, 0]
    real = UpdateBatch._add_known

    def counting(self, *a):  # type: ignore[no-untyped-def]
        ok = real(self, *a)
        taken[ok] += 1
        return ok

    monkeypatch.setattr(UpdateBatch, "_add_known", counting)
    batch = BatchParser(dict(REG).get, now_us=lambda: NOW_US, registry_version=lambda: 0)
    ref = E.MessageParser(dict(REG).get, now_us=lambda: NOW_US)
    variants = [None, None, None, ("type", "AirQualityObserved"), ("type", "TrafficFlowObserved"), ("type", None),
                ("location", {"type": "Point", "coordinates": [116.0, 40.0]}), ("id", "urn:ngsi-ld:X:nope"),
                ("id", 5), ("id", [A]), ("observedAt", rng.choice(BAD_TIMES)), ("observedAt", None),
                ("observedAt", "1970-01-01T00:00:00Z"), ("dateObserved", TIMES[1])]
    for _ in range(40):
        msgs = []
        for _ in range(rng.randint(1, 30)):
            t = rng.choice([*TIMES, f"2015-12-01T0{rng.randint(3, 9)}:00:00Z"])
            props = rng.choice([["pm25", "co"], ["pm25", "pm10", "no2"]])
            items = [{"id": rng.choice([A, B]), "observedAt": t,
                      **{p: {"value": rng.choice(GOOD), "unit": "µg/m³"} for p in props}}
                     for _ in range(rng.randint(1, 12))]
            change = rng.choice(variants)
            if change is not None:
                who = items if rng.random() < 0.5 else [rng.choice(items)]
                for d in who:
                    if change[0] == "dateObserved":
                        del d["observedAt"]
                    d[change[0]] = change[1]
            topic = "citytwin/batch"
            if len(items) == 1 and rng.random() < 0.5:  # one update on its entity's topic, with or without an id
                topic = f"citytwin/AirQualityObserved/{str(items[0].get('id', 'A')).rsplit(':', 1)[-1]}/attrs"
                if rng.random() < 0.5:
                    items[0].pop("id", None)
            msgs.append((topic, json.dumps(items if topic.endswith("batch") else items[0]).encode()))
        for (topic, raw), res in zip(msgs, batch.parse_many(msgs), strict=True):
            want = ref.parse(topic, raw)
            assert _rows(res.columns) == _rows(I._columns(want.observations)), raw
            assert _rejects(res) == _rejects(want) and res.entities == want.entities, raw
    assert taken[1] > 100 and taken[0] > 300, taken


def test_tables_of_one_shape_in_other_units_are_converted_by_their_own_units():
    """``UpdateBatch._take_all`` works out a shape's columns and each row of units' factors once per batch: a later
    table of the same shape in other units (or in a unit not understood) must be converted, or left to the general
    path, by its own units."""
    p = E.MessageParser(REG.get, now_us=lambda: NOW_US)
    units = [("µg/m³", 2000), ("mg/m³", 2), ("GQ", 1500), ("furlong", 2), ("µg/m³", 2500), (None, 3)]
    b = UpdateBatch(p, NOW_US, {})
    docs, results = [], []
    for unit, co in units:
        doc = [{"id": e, "observedAt": TIMES[0], "pm25": {"value": 10 + i, "unit": "µg/m³"},
                "co": co if unit is None else {"value": co, "unit": unit}} for i, e in enumerate([A, B] * 5)]
        if unit is None:
            for d in doc:
                d["pm25"] = 10
        res = E.ParseResult()
        b.add(doc, res, None, None)
        b._flush()  # one table per unit
        docs.append(doc)
        results.append(res)
    cols, msg = b.finish()
    want = [p.parse("citytwin/batch", json.dumps(doc).encode()) for doc in docs]
    assert msg.tolist() == [k for k, w in enumerate(want) for _ in w.observations]
    assert _rows(cols) == _rows(I._columns([o for w in want for o in w.observations]))
    assert [_rejects(r) for r in results] == [_rejects(w) for w in want]
    assert sorted(set(cols["value"][cols["property"] == "co"].tolist())) == [1.5, 2.0, 2.5, 3.0]
    assert [r.reason for r in results[3].rejects] == ["unknown_unit"] * 10
