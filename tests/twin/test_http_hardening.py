"""Issue 13 on the HTTP side: poison bodies and bad query parameters get a 4xx (never a 500) and are
dead-lettered, non-JSON bodies get 415, implausible readings take the documented path (dead letter,
reason ``implausible`` / ``too_old``), a catastrophic ``idPattern`` returns within 1 s, and the
OpenAPI declares every request body and 4xx."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from citytwin.service.app import create_app, open_runtime
from citytwin.twin.entities import MessageParser

AQ = "urn:ngsi-ld:AirQualityObserved:"
GOOD = {"id": AQ + "Dongsi", "observedAt": "2015-12-01T00:00:00Z", "pm25": 10}
ENT = {"id": AQ + "Dongsi", "type": "AirQualityObserved", "location": {"type": "Point", "coordinates": [116.4, 39.9]}}
JSON = {"content-type": "application/json"}


@pytest.fixture()
def client(twin_ws):
    rt = open_runtime(twin_ws.root)
    app = create_app(runtime=rt)
    with TestClient(app, headers=twin_ws.headers("integrator"), raise_server_exceptions=False) as c:
        assert c.post("/ngsi-ld/v1/entities", json=ENT).status_code == 201
        yield c
    rt.close()


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _counts(c: TestClient) -> dict[str, int]:
    return c.get("/twin/v1/deadletters").json()["counts"]


POISON = [  # (body, dead-letter reason, status)
    (b'{"id": "' + AQ.encode() + b'Dongsi", "observedAt": "2015-12-01T00:00:00Z", "pm25": ' + b"9" * 401 + b"}",
     "implausible", 207),
    (_deep(100_000), "too_deep", 400),
    (json.dumps({**GOOD, "observedAt": "0001-01-01T00:00:00+14:00"}).encode(), "too_old", 207),
    (b'{"id": "' + AQ.encode() + b'\\ud800", "observedAt": "2015-12-01T00:00:00Z", "pm25": 5}', "bad_text", 400),
]


@pytest.mark.parametrize("body,reason,status", POISON, ids=["401-digits", "deep-100000", "year-1", "surrogate"])
def test_poison_bodies_are_4xx_and_dead_lettered(client, body, reason, status):
    r = client.post("/twin/v1/observations", content=body, headers=JSON)
    assert r.status_code == status, r.text
    assert _counts(client).get(reason) == 1
    # and the next good reading is stored
    assert client.post("/twin/v1/observations", json=GOOD).json()["accepted"] == 1


@pytest.mark.parametrize("method,path", [
    ("post", "/twin/v1/observations"), ("post", "/ngsi-ld/v1/entityOperations/upsert"),
    ("post", "/ngsi-ld/v1/entities"), ("patch", f"/ngsi-ld/v1/entities/{AQ}Dongsi/attrs"),
    ("post", f"/ngsi-ld/v1/entities/{AQ}Dongsi/attrs"), ("post", "/twin/v1/alerts")])
def test_nesting_5000_deep_is_400_on_every_body_route(client, method, path):
    r = client.request(method.upper(), path, content=_deep(5000), headers=JSON)
    assert r.status_code == 400, r.text
    assert "nested deeper" in r.json()["detail"]


def test_surrogate_in_an_upserted_or_created_entity_is_400(client):
    body = b'[{"id": "urn:ngsi-ld:AirQualityObserved:\\ud800", "type": "AirQualityObserved"}]'
    assert client.post("/ngsi-ld/v1/entityOperations/upsert", content=body, headers=JSON).status_code == 400
    assert client.post("/ngsi-ld/v1/entities", content=body[1:-1], headers=JSON).status_code == 400
    assert _counts(client)["bad_text"] == 2


@pytest.mark.parametrize("loc", [{"type": "Point"}, {"type": "Point", "coordinates": 5},
                                 {"type": "Point", "coordinates": [1]}, {"type": "Point", "coordinates": None}])
def test_a_point_without_usable_coordinates_is_a_400_not_a_500(client, loc):
    ent = {**ENT, "id": AQ + "Nowhere", "location": loc}
    r = client.post("/ngsi-ld/v1/entities", json=ent)
    assert r.status_code == 400 and "location" in r.json()["detail"], r.text
    r = client.post("/ngsi-ld/v1/entityOperations/upsert", json=[ent, ENT])
    assert r.status_code == 207, r.text
    assert r.json()["success"] == [ENT["id"]] and r.json()["errors"][0]["entityId"] == ent["id"]
    assert _counts(client)["invalid_entity"] == 2  # (both routes dead-letter it)


@pytest.mark.parametrize("path,params,field", [
    ("/ngsi-ld/v1/entities", {"georel": "near;maxDistance==abc", "geometry": "Point",
                              "coordinates": "[116.4,39.9]"}, "georel"),
    ("/ngsi-ld/v1/entities", {"georel": "within", "geometry": "bbox", "coordinates": '{"a":1}'}, "coordinates"),
    ("/ngsi-ld/v1/entities", {"georel": "within", "geometry": "Polygon",
                              "coordinates": '[[["a","b"],["c","d"],["e","f"]]]'}, "coordinates"),
    ("/ngsi-ld/v1/entities", {"georel": "within", "geometry": "Polygon", "coordinates": "[" * 5000}, "coordinates"),
    ("/ngsi-ld/v1/entities", {"q": "pm25>1.2.3"}, "q"),
    ("/ngsi-ld/v1/temporal/entities", {"type": "AirQualityObserved", "timerel": "after",
                                       "timeAt": "9999-01-01T00:00:00Z"}, None),
    (f"/ngsi-ld/v1/temporal/entities/{AQ}Dongsi", {"timerel": "before", "timeAt": "0001-01-01T00:00:00Z"}, None),
    ("/twin/v1/history", {"start": "3000-01-01"}, None),
    ("/twin/v1/history", {"start": "0001-01-01"}, None),
    ("/twin/v1/history", {"near": "116,40,nan"}, "near"),
])
def test_bad_query_parameters_are_400(client, path, params, field):
    r = client.get(path, params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["title"] == "BadRequestData" and body["detail"]
    if field:
        assert repr(field) in body["detail"]


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", "multipart/form-data; boundary=x",
                                   "application/x-www-form-urlencoded"])
def test_non_json_bodies_are_415(client, ctype):
    for path in ("/twin/v1/observations", "/ngsi-ld/v1/entityOperations/upsert", "/twin/v1/alerts"):
        r = client.post(path, content=json.dumps(GOOD), headers={"content-type": ctype})
        assert r.status_code == 415, (path, r.text)
    # JSON-LD is JSON
    r = client.post("/twin/v1/observations", content=json.dumps(GOOD), headers={"content-type": "application/ld+json"})
    assert r.status_code == 201


def test_one_exception_handler_maps_errors(client):
    assert client.get("/twin/v1/alerts/nope").status_code == 404
    r = client.post("/twin/v1/alerts", json={"rule": "r", "entity": AQ + "Dongsi", "bogus": 1})
    assert r.status_code == 400 and "bogus" in r.json()["detail"]
    assert client.post("/twin/v1/forecasts", params={"model": "crystal-ball"}).status_code == 400


def test_regex_attack_returns_within_a_second(client):
    for i in range(15):
        client.post("/ngsi-ld/v1/entities", json={**ENT, "id": f"{AQ}Station-{i:02d}-" + "a" * 40})
    t0 = time.perf_counter()
    r = client.get("/ngsi-ld/v1/entities", params={"idPattern": "(.*)(.*)(.*)(.*)(.*)X"})
    assert time.perf_counter() - t0 < 1.0
    assert r.status_code == 200 and r.json() == []
    r = client.get("/ngsi-ld/v1/entities", params={"idPattern": "Station-0[3-5]-"})
    assert [e["id"][len(AQ):len(AQ) + 10] for e in r.json()] == ["Station-03", "Station-04", "Station-05"]
    r = client.get("/ngsi-ld/v1/entities", params={"idPattern": "(a)\\1"})  # no backreferences in RE2
    assert r.status_code == 400 and "idPattern" in r.json()["detail"]


# -- implausible values: the documented path (docs/twin.md) -----------------------------------------

NOW_US = 1_764_979_200_000_000  # 2025-12-06T00:00:00Z, an injected clock


@pytest.mark.parametrize("attrs,reason", [
    ({"pm25": -50}, "implausible"), ({"pm25": 1e308}, "implausible"),
    ({"relativeHumidity": 5}, "implausible"), ({"windDirection": 720}, "implausible"),
    ({"pm25": {"value": 3, "unit": "mg/m³"}}, "implausible"),  # 3000 µg/m³ after conversion
    ({"observedAt": "0001-01-01T00:00:00Z", "pm25": 5}, "too_old"),
    ({"observedAt": "1800-01-01T00:00:00Z", "pm25": 5}, "too_old"),
    ({"observedAt": "2026-06-01T00:00:00Z", "pm25": 5}, "future_time"),
])
def test_implausible_readings_are_dead_lettered_with_a_reason(attrs, reason):
    reg = {AQ + "S1": __import__("citytwin.twin.entities", fromlist=["EntityRef"]).EntityRef("AirQualityObserved")}
    p = MessageParser(reg.get, now_us=lambda: NOW_US)
    doc = {"id": AQ + "S1", "observedAt": "2025-12-05T00:00:00Z", **attrs}
    res = p.parse(None, json.dumps(doc).encode())
    assert res.observations == []
    assert [r.reason for r in res.rejects] == [reason]
    assert res.rejects[0].detail  # says what and why
    # the edges of the ranges are plausible, and percent humidity is converted into range
    ok = p.parse(None, json.dumps({"id": AQ + "S1", "observedAt": "1996-01-01T00:00:00Z", "pm25": 0,
                                   "windDirection": 360, "relativeHumidity": {"value": 45, "unit": "percent"},
                                   "pm10": 3000}).encode())
    assert ok.rejects == [] and [o.value for o in ok.observations] == [0.0, 360.0, 0.45, 3000.0]


def test_openapi_declares_bodies_and_4xx(client):
    spec = client.get("/openapi.json").json()
    body_routes = {("post", "/ngsi-ld/v1/entities"), ("post", "/ngsi-ld/v1/entityOperations/upsert"),
                   ("patch", "/ngsi-ld/v1/entities/{entity_id}/attrs"),
                   ("post", "/ngsi-ld/v1/entities/{entity_id}/attrs"), ("post", "/twin/v1/observations"),
                   ("post", "/twin/v1/alerts"), ("post", "/twin/v1/alerts/{alert_id}/ack"),
                   ("post", "/twin/v1/alerts/{alert_id}/resolve")}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if path != "/health":
                assert {"400", "401", "403"} <= codes, (method, path)
            if (method, path) in body_routes:
                assert "application/json" in op["requestBody"]["content"], (method, path)
                assert {"413", "415"} <= codes, (method, path)


@pytest.mark.parametrize("unit", ["\u0000", "1/0", "(" * 3000, "m" * 65])
def test_odd_unit_labels_are_unknown_units_not_500(client, unit):
    r = client.post("/twin/v1/observations", json={**GOOD, "pm25": {"value": 5, "unit": unit}})
    assert r.status_code == 207, r.text
    assert [x["reason"] for x in r.json()["rejected"]] == ["unknown_unit"]


@pytest.mark.parametrize("body,field", [({"peak": "x"}, "peak"), ({"peak": True}, "peak"), ({"at": 5}, "at"),
                                        ({"message": [1]}, "message")])
def test_alert_bodies_of_the_wrong_type_are_400(client, body, field):
    r = client.post("/twin/v1/alerts", json={"rule": "r", "entity": AQ + "Dongsi", **body})
    assert r.status_code == 400 and f"field {field!r}" in r.json()["detail"], r.text


def test_store_failure_is_503_with_a_clear_error(client, twin_ws, monkeypatch):
    rt = client.app.state.twin

    def disk_full(*a, **kw):  # simulated
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rt.stores.history, "append", disk_full)
    r = client.post("/twin/v1/observations", json=GOOD)
    assert r.status_code == 503 and r.json()["title"] == "ServiceUnavailable"
    assert "No space left on device" in r.json()["detail"]
    last = twin_ws.ws.catalog.audit_log("twin", limit=1)[0]
    assert (last["outcome"], last["detail"]) == ("error 503", "POST /twin/v1/observations -> 503")
