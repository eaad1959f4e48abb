"""The live parts of the one app: the observation SSE stream and the alert stream under the same app,
and that every API route needs a token."""

from __future__ import annotations

import json
import re
import threading
import time

from fastapi.testclient import TestClient
from tests.service.conftest import ServiceWorkspace

DONGSI = "urn:ngsi-ld:AirQualityObserved:Dongsi"
ENTITY = {"id": DONGSI, "type": "AirQualityObserved", "location": {"type": "Point", "coordinates": [116.417, 39.929]}}


def _events(lines: list[str]) -> list[tuple[str, dict]]:
    out, name = [], ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[6:])))
    return out


def test_observation_stream(client: TestClient, service_ws: ServiceWorkspace) -> None:
    h = service_ws.headers("integrator")
    assert client.post("/ngsi-ld/v1/entities", json=ENTITY, headers=h).status_code in (201, 409)

    def publish() -> None:
        time.sleep(0.5)
        r = client.post("/twin/v1/observations", json={"id": DONGSI, "observedAt": "2015-12-01T01:00:00Z",
                                                       "pm25": 123.0}, headers=h)
        assert r.status_code == 201

    t = threading.Thread(target=publish)
    lines: list[str] = []
    with client.stream("GET", "/twin/v1/observations/stream", params={"maxEvents": 1, "timeout": 20},
                       headers=service_ws.headers("viewer")) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        t.start()
        lines = list(r.iter_lines())
    t.join()
    (name, evt), = _events(lines)
    assert name == "observations" and evt["accepted"] == 1 and evt["entities"] == [DONGSI]
    assert evt["from"] == evt["to"] == "2015-12-01T01:00:00+00:00"
    assert evt["state"][0]["id"] == DONGSI and json.dumps(evt["state"]).count("123") >= 1
    # a role without clearance for the twin (public) is refused, audited
    assert client.get("/twin/v1/observations/stream", headers=service_ws.headers("public")).status_code == 403


def test_alert_stream_is_served(client: TestClient, service_ws: ServiceWorkspace) -> None:
    r = client.get("/twin/v1/alerts/stream", params={"timeout": 0.2}, headers=service_ws.headers("viewer"))
    assert r.status_code == 200 and r.text.startswith(": citytwin alert stream")


def test_every_route_needs_a_token(client: TestClient) -> None:
    """Walk the app's routes, so a route added later without the token check fails here."""
    # and Open311's public service list (GeoReport v2: anyone may read what can be reported)
    open_routes = {"/health", "/auth/login", "/open311/v2/services.json", "/open311/v2/services/{code}.json"}
    checked = 0
    for route, ops in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if route in open_routes:
            continue
        path = re.sub(r"\{[^}]+\}", "x", route).replace("x.mvt", "1.mvt")
        for method in ops:
            r = client.request(method, path, json={})
            assert r.status_code == 401, (method, route, r.status_code)
            checked += 1
    assert checked >= 40
