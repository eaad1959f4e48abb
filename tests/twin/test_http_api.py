"""NGSI-LD-style HTTP API: entities, attributes, batch upsert, geo and attribute filters, temporal queries,
and bad input rejected into the dead-letter store while the rest goes through."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from citytwin.service.app import create_app, open_runtime

AQ = "urn:ngsi-ld:AirQualityObserved:"


def _ent(local: str, lon: float, lat: float, **attrs) -> dict:
    return {"id": AQ + local, "type": "AirQualityObserved", "location": {"type": "Point", "coordinates": [lon, lat]},
            "name": local, **attrs}


@pytest.fixture()
def client(twin_ws):
    rt = open_runtime(twin_ws.root, max_payload=64_000)
    app = create_app(runtime=rt, max_body=200_000)
    with TestClient(app, headers=twin_ws.headers("integrator")) as c:
        yield c
    rt.close()


def test_create_query_update_and_history(client):
    r = client.post("/ngsi-ld/v1/entities", json=_ent("Dongsi", 116.417, 39.929, observedAt="2015-12-01T00:00:00Z",
                                                      pm25=301, co={"value": 3100, "unitCode": "GQ"}))
    assert r.status_code == 201, r.text
    assert r.json()["accepted"] == 2
    assert client.post("/ngsi-ld/v1/entities", json=_ent("Dongsi", 116.4, 39.9)).status_code == 409
    batch = [_ent("Tiantan", 116.407, 39.886, observedAt="2015-12-01T00:00:00Z", pm25=250),
             _ent("Huairou", 116.628, 40.328, observedAt="2015-12-01T00:00:00Z", pm25=90)]
    r = client.post("/ngsi-ld/v1/entityOperations/upsert", json=batch)
    assert r.status_code == 201 and r.json() == [AQ + "Tiantan", AQ + "Huairou"]
    # attribute updates are observations: state moves on, history keeps both
    r = client.patch(f"/ngsi-ld/v1/entities/{AQ}Dongsi/attrs",
                     json={"observedAt": "2015-12-01T01:00:00Z", "pm25": {"value": 280, "unitCode": "GQ"}})
    assert r.status_code == 204, r.text
    e = client.get(f"/ngsi-ld/v1/entities/{AQ}Dongsi").json()
    assert e["pm25"] == {"type": "Property", "value": 280.0, "observedAt": "2015-12-01T01:00:00Z", "unitCode": "GQ"}
    assert e["co"]["value"] == pytest.approx(3.1) and e["co"]["unitCode"] == "GP"  # stored in mg/m³
    assert e["location"]["value"]["coordinates"] == [116.417, 39.929]
    kv = client.get(f"/ngsi-ld/v1/entities/{AQ}Dongsi", params={"options": "keyValues", "attrs": "pm25"}).json()
    assert kv["pm25"] == 280.0 and "co" not in kv

    # attribute filter and geo filters
    ids = lambda r: sorted(x["id"].split(":")[-1] for x in r.json())  # noqa: E731
    assert ids(client.get("/ngsi-ld/v1/entities", params={"type": "AirQualityObserved", "q": "pm25>200"})) == [
        "Dongsi", "Tiantan"]
    near = {"georel": "near;maxDistance==6000", "geometry": "Point", "coordinates": "[116.41,39.91]"}
    assert ids(client.get("/ngsi-ld/v1/entities", params=near)) == ["Dongsi", "Tiantan"]
    box = {"georel": "within", "geometry": "Polygon",
           "coordinates": json.dumps([[[116.5, 40.0], [116.7, 40.0], [116.7, 40.5], [116.5, 40.5], [116.5, 40.0]]])}
    assert ids(client.get("/ngsi-ld/v1/entities", params=box)) == ["Huairou"]
    assert client.get("/ngsi-ld/v1/entities", params={"q": "pm25 is big"}).status_code == 400

    # temporal: raw, aggregated
    t = client.get(f"/ngsi-ld/v1/temporal/entities/{AQ}Dongsi", params={
        "attrs": "pm25", "timerel": "between", "timeAt": "2015-12-01T00:00:00Z", "endTimeAt": "2015-12-02T00:00:00Z"})
    assert [(x["value"], x["observedAt"]) for x in t.json()["pm25"]] == [
        (301.0, "2015-12-01T00:00:00Z"), (280.0, "2015-12-01T01:00:00Z")]
    a = client.get(f"/ngsi-ld/v1/temporal/entities/{AQ}Dongsi", params={
        "attrs": "pm25", "aggrMethods": "avg,max,count", "aggrPeriodDuration": "P1D"}).json()
    assert a["pm25"]["avg"] == [[290.5, "2015-12-01T00:00:00Z", "2015-12-02T00:00:00Z"]]
    assert a["pm25"]["max"][0][0] == 301.0 and a["pm25"]["count"][0][0] == 2
    many = client.get("/ngsi-ld/v1/temporal/entities", params={"type": "AirQualityObserved", "attrs": "pm25", **near})
    assert sorted(x["id"] for x in many.json()) == [AQ + "Dongsi", AQ + "Tiantan"]
    flat = client.get("/twin/v1/history", params={"entity": AQ + "Dongsi", "property": "pm25", "interval": "1 hour"})
    assert [r["avg"] for r in flat.json()["data"]] == [301.0, 280.0]
    assert client.delete(f"/ngsi-ld/v1/entities/{AQ}Huairou").status_code == 204
    assert client.get(f"/ngsi-ld/v1/entities/{AQ}Huairou").status_code == 404


def test_bad_input_goes_to_dead_letters_and_the_rest_is_stored(client):
    client.post("/ngsi-ld/v1/entityOperations/upsert", json=[_ent("Dongsi", 116.417, 39.929)])
    good = {"id": AQ + "Dongsi", "observedAt": "2015-12-01T00:00:00Z", "pm25": 10}
    cases = [
        (b'{"id": "x", "pm25": ', "malformed_json", 400),
        (json.dumps({**good, "pm10": "lots"}), "wrong_type", 207),
        (json.dumps({**good, "no2": {"value": 1, "unit": "bananas"}}), "unknown_unit", 207),
        (json.dumps({**good, "observedAt": "2999-01-01T00:00:00Z"}), "future_time", 207),
        (json.dumps({**good, "id": AQ + "Atlantis"}), "unknown_entity", 207),
        (json.dumps({**good, "name": "x" * 300_000}), "oversized", 413),
    ]
    for body, reason, status in cases:
        r = client.post("/twin/v1/observations", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, (reason, r.text)
        if status == 207:
            assert [x["reason"] for x in r.json()["rejected"]] == [reason]
    # PATCH on an unknown entity is a 404 and a dead letter too
    r = client.patch(f"{'/ngsi-ld/v1/entities/'}{AQ}Nowhere/attrs", json={"observedAt": "2015-12-01T00:00:00Z", "pm25": 1})
    assert r.status_code == 404
    # a batch upsert with one bad entity keeps the good ones
    r = client.post("/ngsi-ld/v1/entityOperations/upsert", json=[
        {"id": "not-a-urn", "type": "AirQualityObserved"},
        {**good, "id": AQ + "Dongsi", "type": "AirQualityObserved", "pm25": 55, "observedAt": "2015-12-01T05:00:00Z"}])
    assert r.status_code == 207 and r.json()["success"] == [AQ + "Dongsi"] and r.json()["accepted"] == 1
    dl = client.get("/twin/v1/deadletters", params={"limit": 100}).json()
    assert dl["counts"] == {"future_time": 1, "invalid_entity": 1, "malformed_json": 1, "oversized": 1,
                            "unknown_entity": 2, "unknown_unit": 1, "wrong_type": 1}
    over = next(x for x in dl["items"] if x["reason"] == "oversized")
    assert over["payload_bytes"] > 300_000 and over["source"] == "http"
    # the good readings in the same requests were stored: pm25=10 from the 207 cases, and 55 later
    h = client.get("/twin/v1/history", params={"entity": AQ + "Dongsi", "property": "pm25"}).json()
    assert [(r["time"], r["value"]) for r in h["data"]] == [("2015-12-01T00:00:00Z", 10.0), ("2015-12-01T05:00:00Z", 55.0)]
    # ... once, although four requests carried the same (entity, pm25, time): the key is idempotent
