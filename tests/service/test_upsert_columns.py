"""The batch upsert's readings validated as columns (``citytwin.service.upsert``, what ``POST
/ngsi-ld/v1/entityOperations/upsert`` runs) give what the per-item parse gives (``columns=False``, the reference):
the same answer (ids, errors in order, accepted count) and the same stored history, live state, dead letters and
alerts, on bodies that mix good updates with every kind of bad item, new and moved entities, static attributes and
entities whose registered type differs."""

from __future__ import annotations

import json
import random
import sqlite3

import pandas as pd
import pytest

from citytwin.service import upsert as U
from citytwin.twin import entities as E
from citytwin.twin import feeds as F
from citytwin.workflows.runtime import open_runtime

NOW_US = E.parse_time_us("2026-01-01T00:00:00Z")
AQ = "urn:ngsi-ld:AirQualityObserved:"
STATIONS = [F.beijing_entity(s) for s in sorted(F.BEIJING_STATIONS)[:4]]
IDS = [e.id for e in STATIONS]
PROPS = ["pm25", "pm10", "so2", "no2", "co", "o3", "temperature"]
ODD_VALUES = [1e308, -50.0, 2**70, True, "12", [1], None, 4000.0]
ODD_UNITS = ["mg/m³", "GQ", "furlong", "", 5]
TIMES = [f"2015-12-{d:02d}T{h:02d}:00:00Z" for d in range(1, 5) for h in range(24)]
BAD_TIMES = ["1800-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "2015-12-01T01:00:00", 5, "x"]


def _attr(rng: random.Random, odd: float) -> object:
    v: object = round(rng.uniform(0, 300), 1)
    if rng.random() < odd:
        v = rng.choice(ODD_VALUES)
    a: dict[str, object] = {"value": v, "unit": "µg/m³"}
    if rng.random() < odd:
        a["unit"] = rng.choice(ODD_UNITS)
    if rng.random() < odd / 3:
        a["observedAt"] = rng.choice([*TIMES, *BAD_TIMES])
    return a if rng.random() > odd / 2 else v


def _item(rng: random.Random, odd: float) -> object:
    r = rng.random()
    if r < odd / 10:
        return rng.choice([5, "x", None, [1], {"type": "AirQualityObserved"}, {"id": "nope", "type": "X"},
                           {"id": AQ + "S1", "type": "TrafficFlowObserved"}])
    eid = rng.choice(IDS) if r > odd / 4 else rng.choice([AQ + "New1", AQ + "New2", "urn:ngsi-ld:Foo:f1"])
    d: dict[str, object] = {"id": eid, "type": eid.split(":")[2]}
    t = rng.choice(TIMES) if rng.random() > odd / 3 else rng.choice([*BAD_TIMES, None])
    if t is not None:
        d["observedAt"] = t
    if rng.random() < odd / 3:
        d["location"] = rng.choice([{"type": "Point", "coordinates": [116.0 + rng.random(), 40.0]},
                                    {"type": "Point", "coordinates": [500, 0]}, {"type": "Point"}])
    if rng.random() < odd / 4:
        d["name"] = rng.choice(["a", "b"])
    props = PROPS if rng.random() > odd else rng.sample([*PROPS, "nope", "congested"], rng.randint(1, 4))
    for p in props:
        d[p] = _attr(rng, odd)
    return d


def _body(rng: random.Random) -> list[object]:
    odd = rng.choice([0.0, 0.0, 0.05, 0.3, 0.8])
    return [_item(rng, odd) for _ in range(rng.randint(1, 60))]


def _twin(path):
    rt = open_runtime(path)
    rt.register(STATIONS)
    rt.stores.state.put_entity("urn:ngsi-ld:Foo:f1", "Bar")  # registered under another type than its id says
    rt.enable_auto_verify()
    rt.enable_auto_alerts()
    rt.parser.now_us = lambda: NOW_US  # (both sides: one clock)
    events: list[str] = []
    rt.alerts.add_pusher(lambda rec: events.append(json.dumps(rec, sort_keys=True, ensure_ascii=False)))
    return rt, events


def _stored(rt, events) -> dict[str, object]:
    ids = sorted({e["id"] for e in rt.stores.state.query()})
    hist = rt.stores.history.query(entities=ids)
    letters = rt.stores.deadletters.frame(limit=10_000_000)
    letters = letters.drop(columns=[c for c in ("id", "received_us", "received_at") if c in letters.columns])
    state = rt.stores.state.query(ids=ids)
    for e in state:
        e.pop("modified_us", None)
        e.pop("created_us", None)
    path = rt.alerts.path
    rt.close()
    with sqlite3.connect(path) as con:
        alerts = [list(r) for r in con.execute("SELECT * FROM alerts ORDER BY id")]
    return {"history": hist, "letters": letters,
            "state": json.loads(json.dumps(state, sort_keys=True, default=str)), "events": events,
            "alerts": json.loads(json.dumps(alerts, default=str))}


def _assert_same(answers: dict[bool, object], stored: dict[bool, dict[str, object]]) -> None:
    """The columnar path (``True``) answered and stored exactly what the per-item reference (``False``) did."""
    assert answers[True] == answers[False]
    for part in ("history", "letters"):  # (NaN equal to NaN)
        pd.testing.assert_frame_equal(stored[True][part], stored[False][part], check_exact=True)
    for part in ("state", "events", "alerts"):
        assert stored[True][part] == stored[False][part], part


@pytest.mark.parametrize("seed", [1, 2])
def test_upsert_as_columns_stores_what_the_per_item_parse_stores(tmp_path, seed):
    rng = random.Random(seed)
    bodies = [_body(rng) for _ in range(40)]
    stored, answers = {}, {}
    for columns in (True, False):
        rt, events = _twin(tmp_path / f"{columns}")
        answers[columns] = [U.upsert(rt, json.loads(json.dumps(b)), "/ngsi-ld/v1/entityOperations/upsert",
                                     columns=columns) for b in bodies]
        stored[columns] = _stored(rt, events)
    _assert_same(answers, stored)
    accepted = sum(a[2] for a in answers[False])
    errors = [e["error"]["title"] for a in answers[False] for e in a[1]]
    # both sides exercised: readings stored, each kind of error met, alerts raised
    assert accepted > 2_000 and len(stored[False]["history"]) > 1_000  # (a later reading of a key replaces it)
    assert {"BadRequestData", "implausible", "unknown_unit", "wrong_type", "bad_time", "future_time",
            "too_old", "type_mismatch", "unknown_property", "missing_time"} <= set(errors)
    assert stored[False]["alerts"]


def test_an_item_sees_the_entity_as_registered_when_it_comes(tmp_path):
    """An entity created, then updated without a location, then moved, then updated again: each update's readings
    carry the location the entity had at that point of the body (the run of items before a move is added first)."""
    new = AQ + "Moving"
    body = [{"id": new, "type": "AirQualityObserved", "location": {"type": "Point", "coordinates": [116.0, 40.0]}},
            {"id": new, "type": "AirQualityObserved", "observedAt": TIMES[0], "pm25": 10.0, "pm10": 20.0},
            {"id": new, "type": "AirQualityObserved", "location": {"type": "Point", "coordinates": [117.0, 41.0]},
             "observedAt": TIMES[1], "pm25": 11.0},
            {"id": new, "type": "AirQualityObserved", "observedAt": TIMES[2], "pm25": 12.0}]
    got = {}
    for columns in (True, False):
        rt, _ = _twin(tmp_path / f"{columns}")
        assert U.upsert(rt, body, "/x", columns=columns) == ([new] * 4, [], 4)
        h = rt.stores.history.query(entities=[new])
        got[columns] = sorted(zip(h["time"].astype(str), h["property"], h["lon"], h["lat"], strict=True))
        rt.close()
    assert got[True] == got[False]
    assert [(lon, lat) for *_, lon, lat in got[True]] == [(116.0, 40.0), (116.0, 40.0), (117.0, 41.0), (117.0, 41.0)]


def test_observation_bodies_as_columns_store_what_parse_doc_stores(tmp_path):
    """``POST /twin/v1/observations`` with a large body (``parse_updates``) against ``MessageParser.parse_doc``: the
    same rejects in order, and through the ingest the same history, state, dead letters and alerts."""
    rng = random.Random(7)
    docs: list[object] = [_body(rng) for _ in range(40)] + [_item(rng, 0.3) for _ in range(10)]
    stored, answers = {}, {}
    for columns in (True, False):
        rt, events = _twin(tmp_path / f"{columns}")
        got = []
        for doc in docs:
            doc = json.loads(json.dumps(doc))
            res = U.parse_updates(rt.parser, doc) if columns else rt.parser.parse_doc(doc, E.ParseResult())
            rep = rt.ingestor.commit([res], source="http", topics=["/twin/v1/observations"])
            got.append((rep.accepted, [(r.reason, r.detail, r.entity, r.property, r.payload) for r in res.rejects]))
        answers[columns] = got
        stored[columns] = _stored(rt, events)
    _assert_same(answers, stored)
    reasons = {r[0] for _, rej in answers[False] for r in rej}
    assert sum(a for a, _ in answers[False]) > 2_000 and {"unknown_entity", "implausible", "not_an_object"} <= reasons


def _gateway_body(rng: random.Random, n: int) -> list[dict[str, object]]:
    """Updates of one shape for registered stations (what a gateway posts: the body checked at once)."""
    t0 = rng.randrange(len(TIMES) - 4)
    return [{"id": IDS[i % len(IDS)], "type": "AirQualityObserved", "observedAt": TIMES[t0 + i // len(IDS)],
             **{p: {"value": round(rng.uniform(0, 300), 1), "unit": "µg/m³"} for p in PROPS}} for i in range(n)]


#: one item of a gateway's body changed so that it is not checked at once (or fails a check when it is)
_SPOILERS = [
    lambda d: {**d, "id": AQ + "New9"},  # a new entity: registered by the item
    lambda d: {**d, "id": "nope"},  # not a URN
    lambda d: {**d, "id": 5},
    lambda d: {**d, "id": [1]},  # not hashable
    lambda d: {**d, "type": "TrafficFlowObserved"},  # the id says another type
    lambda d: {**d, "type": ""},
    lambda d: {**d, "location": {"type": "Point", "coordinates": [116.5, 40.1]}},  # a move
    lambda d: {**d, "name": "x"},  # a static attribute
    lambda d: {k: v for k, v in d.items() if k != "type"},
    lambda d: dict(reversed(list(d.items()))),  # other key order
    lambda d: "x",
    lambda d: {**d, "id": "urn:ngsi-ld:Foo:f1", "type": "Foo"},  # registered as a Bar: still at once (the parse refuses it)
]


def test_a_gateway_body_checked_at_once_gives_what_the_item_by_item_checks_give(tmp_path, monkeypatch):
    """Bodies of same-shaped updates of registered entities take ``_Upsert.known`` (each distinct (id, type) checked
    once); with one item spoiled anywhere they go item by item. Either way the answers and everything stored are
    the per-item parse's."""
    rng = random.Random(11)
    bodies = [_gateway_body(rng, rng.randint(1, 40)) for _ in range(6)]
    for spoil in _SPOILERS:
        b = _gateway_body(rng, rng.randint(1, 30))
        at = rng.randrange(len(b))
        b[at] = spoil(b[at])
        bodies.append(b)
    # every item with a static attribute, every item with a location (a move each time the station changes)
    bodies.append([{**d, "name": "x"} for d in _gateway_body(rng, 10)])
    bodies.append([{**d, "location": {"type": "Point", "coordinates": [116.0 + i % 3, 40.0]}}
                   for i, d in enumerate(_gateway_body(rng, 10))])
    at_once: list[bool] = []
    known = U._Upsert.known

    def spy(self, doc):
        at_once.append(known(self, doc))
        return at_once[-1]

    monkeypatch.setattr(U._Upsert, "known", spy)
    stored, answers = {}, {}
    for columns in (True, False):
        rt, events = _twin(tmp_path / f"{columns}")
        answers[columns] = [U.upsert(rt, json.loads(json.dumps(b)), "/x", columns=columns) for b in bodies]
        stored[columns] = _stored(rt, events)
    _assert_same(answers, stored)
    assert at_once == [True] * 6 + [False] * (len(_SPOILERS) - 1) + [True, False, False]
    assert sum(a[2] for a in answers[False][:6]) >= sum(len(b) for b in bodies[:6]) * (len(PROPS) - 1)  # readings stored
