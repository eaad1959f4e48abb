"""``close_app``: once an app stops serving (``serve`` calls it when uvicorn returns), its writer threads are
stopped and the twin runtime it opened is closed; a runtime passed in is left to its caller."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from citytwin.service.app import close_app, create_app, open_runtime


def _count_closes(rt, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = rt.close

    def close() -> None:
        calls.append(1)
        real()

    monkeypatch.setattr(rt, "close", close)
    return calls


def test_close_app_closes_the_runtime_it_opened_once(twin_ws, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(twin_ws.root)
    closes = _count_closes(app.state.twin, monkeypatch)
    for _ in range(2):  # the lifespan leaves the runtime open: a client may enter it again
        with TestClient(app, headers=twin_ws.headers("viewer")) as c:
            assert c.get("/ngsi-ld/v1/entities").status_code == 200
    assert closes == []
    close_app(app)
    close_app(app)
    assert closes == [1]


def test_close_app_leaves_a_runtime_passed_in_open(twin_ws, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = open_runtime(twin_ws.root)
    try:
        closes = _count_closes(rt, monkeypatch)
        app = create_app(runtime=rt)
        with TestClient(app, headers=twin_ws.headers("viewer")) as c:
            assert c.get("/ngsi-ld/v1/entities").status_code == 200
        close_app(app)
        assert closes == [] and rt.stores.state.count() == 0
    finally:
        rt.close()


def test_close_app_stops_the_writers_of_an_app_called_without_its_lifespan(twin_ws) -> None:
    """A client not entered runs no lifespan; the first requests start the audit and HTTP-commit writers."""
    before = set(threading.enumerate())  # writers other tests may have left
    app = create_app(twin_ws.root)
    c = TestClient(app, headers=twin_ws.headers("integrator"))
    body = {"id": "urn:ngsi-ld:AirQualityObserved:Dongsi", "type": "AirQualityObserved", "pm25": 1.0,
            "observedAt": "2015-12-01T00:00:00Z"}
    assert c.post("/ngsi-ld/v1/entityOperations/upsert", json=[{**body, "location": {
        "type": "Point", "coordinates": [116.417, 39.929]}}]).status_code == 201
    assert c.post("/twin/v1/observations", json={**body, "observedAt": "2015-12-01T01:00:00Z"}).status_code == 201
    writers = {t for t in set(threading.enumerate()) - before if t.name in ("citytwin-audit", "citytwin-http-commit")}
    assert {t.name for t in writers} == {"citytwin-audit", "citytwin-http-commit"}
    close_app(app)
    assert not any(t.is_alive() for t in writers)
