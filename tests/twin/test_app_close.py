"""``close_app``: the twin runtime an app opened is closed once it stops serving (``serve`` calls it when
uvicorn returns), a runtime passed in is left to its caller."""

from __future__ import annotations

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
