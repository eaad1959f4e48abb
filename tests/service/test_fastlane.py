"""The fast lane (service.fastlane) answers entity reads, vector tiles and single observations exactly as the
FastAPI routes do: the same statuses, bodies, headers and audit rows, request by request, for good and bad
requests alike; what it cannot answer goes to FastAPI. Also: the pooled catalog connections of the
service still see a revoked token or a changed role at the next request (no cache)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import served

from citytwin.foundation.workspace import Workspace
from citytwin.service.app import close_app

DONGSI = "urn:ngsi-ld:AirQualityObserved:Dongsi"
ENTITY = {"id": DONGSI, "type": "AirQualityObserved", "location": {"type": "Point", "coordinates": [116.417, 39.929]},
          "pm25": {"type": "Property", "value": 35.0, "observedAt": "2016-01-01T00:00:00Z"},
          "no2": {"type": "Property", "value": 20.0, "observedAt": "2016-01-01T00:00:00Z"}}
USERS = {"admin": "admin", "integrator": "ops", "viewer": "vera", "public": "resident"}


@pytest.fixture(scope="module")
def lane_ws(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, dict[str, str]]:
    import geopandas as gpd
    from shapely.geometry import Point

    from citytwin.foundation import osm
    from citytwin.foundation.ingest import ingest

    ws = Workspace.init(tmp_path_factory.mktemp("lane") / "ws", owner="admin")
    for role, name in USERS.items():
        if name != "admin":
            ws.add_user(name, role)
    ingest(ws, osm.bundled_pbf(), dataset="helsinki_buildings", schema="building", layer="buildings",
           classification="public", department="planning")
    sites = gpd.GeoDataFrame({"site": ["a", "b"]}, geometry=[Point(24.94, 60.17), Point(24.95, 60.171)],
                             crs="EPSG:4326")
    ws.write_derived("secret_sites", sites, inputs=[], parameters={}, classification="sensitive",
                     department="security")
    return ws, {role: ws.catalog.issue_token(name, label="test")[1] for role, name in USERS.items()}


def _requests(tok: dict[str, str], run: int, max_body: int) -> list[tuple[str, str, dict[str, str], bytes | None]]:
    def h(role: str | None, **more: str) -> dict[str, str]:
        return ({"Authorization": f"Bearer {tok[role]}"} if role else {}) | more

    e = f"/ngsi-ld/v1/entities/{DONGSI}"
    t = "/tiles/helsinki_buildings/15/18654/9484.mvt"
    j = {"content-type": "application/json"}

    def obs(pm25: Any, ident: str = DONGSI) -> bytes:
        return json.dumps({"id": ident, "type": "AirQualityObserved", "pm25": pm25,
                           "observedAt": f"2015-12-0{run + 2}T00:00:00Z"}).encode()  # older: the latest stays

    u = "/ngsi-ld/v1/entityOperations/upsert"

    def upd(pm25: Any) -> dict[str, Any]:
        return {"id": DONGSI, "type": "AirQualityObserved", "observedAt": f"2015-11-0{run + 2}T00:00:00Z",
                "pm25": {"value": pm25, "unit": "µg/m³"}, "no2": {"value": pm25 / 2}}

    def ups(pm25: Any, more: list[Any] | None = None) -> bytes:
        return json.dumps([upd(pm25), *(more or [])]).encode()

    return [
        ("GET", e, h("admin"), None),
        ("GET", e + "?attrs=pm25", h("viewer"), None),
        ("GET", e + "?options=keyValues&unknown=1", h("viewer"), None),
        ("GET", e + "?attrs=", h("viewer"), None),
        ("GET", e + "?attrs=pm25&attrs=no2", h("viewer"), None),          # a repeated parameter: FastAPI
        ("GET", e + "?scenario=nope", h("viewer"), None),                 # a scenario: FastAPI
        ("GET", "/ngsi-ld/v1/entities/urn:nothing", h("viewer"), None),   # 404
        ("GET", "/ngsi-ld/v1/entities/a%20b", h("viewer"), None),
        ("GET", e, h(None), None),                                        # no token: 401
        ("GET", e, h(None, Authorization="Bearer nope"), None),
        ("GET", e, h(None, Authorization=f"Basic {tok['admin']}"), None),
        ("GET", e, h("public"), None),                                    # the twin is internal: 403
        ("GET", t, h("admin"), None),                                     # made
        ("GET", t, h("admin"), None),                                     # cached
        ("GET", t + "?n=1", h("public"), None),                           # personal columns left out
        ("GET", t, h("admin", **{"If-None-Match": '"helsinki_buildings-v1-all-15-18654-9484"'}), None),
        ("GET", "/tiles/helsinki_buildings/23/0/0.mvt", h("admin"), None),  # 422
        ("GET", "/tiles/helsinki_buildings/2/9/0.mvt", h("admin"), None),   # 400
        ("GET", "/tiles/helsinki_buildings/a/0/0.mvt", h("admin"), None),   # 422
        ("GET", "/tiles/nothing/1/0/0.mvt", h("admin"), None),              # 404
        ("GET", "/tiles/secret_sites/15/18654/9484.mvt", h("viewer"), None),  # 403, audited as read.tile
        ("GET", t, h(None, Authorization="Bearer nope"), None),
        ("POST", "/twin/v1/observations", h("integrator", **j), obs(40.0)),
        ("POST", "/twin/v1/observations", h("integrator", **j), obs(41.0, "urn:ngsi-ld:X:unknown")),  # 207
        ("POST", "/twin/v1/observations", h("integrator", **j), b"{not json"),                          # 400
        ("POST", "/twin/v1/observations", h("integrator", **{"content-type": "text/plain"}), obs(42.0)),  # 415
        ("POST", "/twin/v1/observations", h("integrator", **j), b"x" * (max_body + 1)),               # 413
        ("POST", "/twin/v1/observations", h("viewer", **j), obs(43.0)),                                # 403
        ("POST", "/twin/v1/observations", h(None, **j), obs(44.0)),                                    # 401
        ("POST", u, h("integrator", **j), ups(45.0)),                                                   # 201
        ("POST", u, h("integrator", **j), ups(46.0, more=[{"id": "bad id"}, {**upd(47.0), "nope": 1}])),  # 207
        ("POST", u, h("integrator", **j), json.dumps(upd(48.0)).encode()),         # an object, not an array: 400
        ("POST", u, h("integrator", **j), b"[{not json"),                                              # 400
        ("POST", u, h("integrator", **{"content-type": "text/plain"}), ups(49.0)),                     # 415
        ("POST", u, h("integrator", **j), b"[" + b" " * max_body + b"]"),                              # 413
        ("POST", u, h("viewer", **j), ups(50.0)),                                                      # 403
        ("POST", u, h(None, **j), ups(51.0)),                                                          # 401
    ]


_HEADERS = ("content-type", "content-length", "etag", "cache-control", "www-authenticate")


def _run(ws: Workspace, tok: dict[str, str], fast: bool, run: int) -> tuple[list[Any], list[Any], dict[str, int]]:
    from citytwin.service.server import create_server_app

    before = max((r["id"] for r in ws.catalog.audit_log(limit=1)), default=0)
    app = create_server_app(ws, fast_lane=fast)
    out = []
    with served(app) as c:
        c.post("/ngsi-ld/v1/entityOperations/upsert", json=[ENTITY], headers={"Authorization": f"Bearer {tok['admin']}"})
        for method, url, headers, body in _requests(tok, run, app.state.twin.max_body):
            r = c.request(method, url, headers=headers, content=body)
            body_out: Any = r.content
            if r.headers.get("content-type", "").startswith("application/json"):
                body_out = r.json()
            out.append((method, url, r.status_code, body_out, {k: r.headers.get(k) for k in _HEADERS}))
    rows = [(r["user"], r["role"], r["action"], r["dataset"], r["outcome"], r["detail"])
            for r in reversed(ws.catalog.audit_log(limit=1000)) if r["id"] > before]
    return out, rows, dict(app.state.fast_lane)


def test_fast_lane_answers_as_fastapi_does(lane_ws: tuple[Workspace, dict[str, str]]) -> None:
    ws, tok = lane_ws
    slow, slow_rows, slow_stats = _run(ws, tok, False, 0)
    fast, fast_rows, fast_stats = _run(ws, tok, True, 1)
    assert slow_stats["served"] == 0
    # each answer the same (the posted readings differ only in their day, which no answer names)
    for a, b in zip(slow, fast, strict=True):
        assert a == b, (a[:3], b[:3])
    statuses = [s for _, _, s, _, _ in fast]
    assert statuses == [200, 200, 200, 200, 200, 404, 404, 404, 401, 401, 401, 403, 200, 200, 200, 304, 422, 400,
                        422, 404, 403, 401, 201, 207, 400, 415, 413, 403, 401,
                        201, 207, 400, 400, 415, 413, 403, 401]
    # the good requests went through the lane; the others reached FastAPI. An entity the twin's state does not
    # hold (the two 404s of entity reads) passes too: the served app lists cases and comments as entities
    # (``app.state.entity_provider``), which FastAPI's route asks before it answers 404
    # (and the batch upserts: the first one of _run, and each of _requests' with a valid token and role)
    assert fast_stats["served"] == 20 and fast_stats["passed"] == 18, fast_stats
    # the same audit rows, one per request (and a tile made adds read.stats, a refused tile read.tile)
    assert slow_rows == fast_rows
    assert sum(1 for r in fast_rows if r[2] in ("twin.read", "twin.write", "api.read")) == len(fast) + 1  # + upsert
    assert ("vera", "viewer", "read.tile", "secret_sites", "denied") in [r[:5] for r in fast_rows]
    # a tile for the public role leaves the personal column out, for the admin keeps it
    admin_tile, public_tile = fast[12][3], fast[14][3]
    assert len(public_tile) < len(admin_tile) and fast[12][4]["etag"] != fast[14][4]["etag"]


def test_revocation_and_role_change_apply_at_the_next_request(lane_ws: tuple[Workspace, dict[str, str]]) -> None:
    """The service's catalog keeps connections open (service.auditbatch) but reads the token at each request:
    a token revoked, or a role changed, by another process (here another Catalog object) applies at once."""
    from citytwin.service.server import create_server_app

    ws, _ = lane_ws
    ws.add_user("temp", "viewer")
    tid, token = ws.catalog.issue_token("temp", label="test")
    other = Workspace.open(ws.root, user="admin")  # as the CLI would, in its own process
    h = {"Authorization": f"Bearer {token}"}
    url = f"/ngsi-ld/v1/entities/{DONGSI}"
    with served(create_server_app(ws)) as c:
        c.post("/ngsi-ld/v1/entityOperations/upsert", json=[ENTITY], headers={"Authorization": f"Bearer {token}"})
        assert c.get(url, headers=h).status_code == 200
        other.add_user("temp", "public")  # a role change
        assert c.get(url, headers=h).status_code == 403  # public may not read the internal twin
        assert c.get("/tiles/helsinki_buildings/15/18654/9484.mvt", headers=h).status_code == 200
        other.catalog.revoke_token(tid)
        assert c.get(url, headers=h).status_code == 401
        assert c.get("/tiles/helsinki_buildings/15/18654/9484.mvt", headers=h).status_code == 401
        assert c.post("/twin/v1/observations", headers=h, json={"id": DONGSI, "pm25": 1}).status_code == 401


def test_server_error_format_keeps_the_twin_statuses(lane_ws: tuple[Workspace, dict[str, str]], tmp_path: Path) -> None:
    """In ``citytwin serve`` the twin routes' 415 (and 413, 409, 503) were answered as 400 by the dataset API's
    error handler; they keep their status (and the API's error format)."""
    from citytwin.service.server import create_server_app

    ws, tok = lane_ws
    with served(create_server_app(ws, fast_lane=False)) as c:
        r = c.post("/twin/v1/observations", content=b"x", headers={"Authorization": f"Bearer {tok['integrator']}",
                                                                  "content-type": "text/plain"})
        assert r.status_code == 415 and r.json()["title"] == "UnsupportedMediaType"
        assert r.json()["type"] == "https://citytwin.dev/errors/UnsupportedMediaType"
        r = c.get("/collections/nothing/items", headers={"Authorization": f"Bearer {tok['admin']}"})
        assert r.status_code == 404 and r.json()["title"] == "NotFound"


def test_concurrent_single_observations_share_commits(lane_ws: tuple[Workspace, dict[str, str]]) -> None:
    """200 single readings posted at once to a real uvicorn: each answered 201 once stored, every reading in the
    history, one audit row each, and the writer thread stored them in fewer commits than requests."""
    import asyncio
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from citytwin.foundation.timeseries import HistoryStore
    from citytwin.service.server import create_server_app

    ws, tok = lane_ws
    app = create_server_app(ws)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    httpx.post(f"http://127.0.0.1:{port}/ngsi-ld/v1/entityOperations/upsert", json=[ENTITY],
               headers={"Authorization": f"Bearer {tok['admin']}"}, timeout=60)
    history = HistoryStore(ws.root / "twin" / "history")
    before = history.count()["rows"]
    last_row = max(r["id"] for r in ws.catalog.audit_log(limit=1))
    n = 200
    h = {"Authorization": f"Bearer {tok['integrator']}"}

    async def load() -> list[tuple[int, dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=h, timeout=60,
                                     limits=httpx.Limits(max_connections=64)) as c:
            async def one(i: int) -> tuple[int, dict[str, Any]]:
                r = await c.post("/twin/v1/observations", json={"id": DONGSI, "type": "AirQualityObserved",
                                                                "pm25": float(i), "observedAt":
                                                                f"2015-11-01T00:{i // 60:02d}:{i % 60:02d}Z"})
                return r.status_code, r.json()
            return await asyncio.gather(*(one(i) for i in range(n)))

    try:
        answers = asyncio.run(load())
        stored = history.count()["rows"] - before
    finally:
        server.should_exit = True
        th.join(30)
        history.close()
        close_app(app)
    assert answers == [(201, {"accepted": 1, "rejected": []})] * n
    assert stored == n
    rows = [r for r in ws.catalog.audit_log(limit=5000) if r["id"] > last_row]
    assert sum(1 for r in rows if r["detail"] == "POST /twin/v1/observations -> 201" and r["user"] == "ops") == n
    q = app.state.commits
    assert q.items == n and q.commits < n, (q.items, q.commits)


def test_a_store_failure_is_every_request_s_503(lane_ws: tuple[Workspace, dict[str, str]]) -> None:
    from citytwin.foundation.timeseries import StoreError
    from citytwin.service.server import create_server_app

    ws, tok = lane_ws
    app = create_server_app(ws)

    def broken(items: list[Any]) -> None:
        raise StoreError("disk full (test)")

    app.state.commits._commit = broken
    with served(app) as c:
        r = c.post("/twin/v1/observations", json={"id": DONGSI, "pm25": 1.0, "observedAt": "2015-10-01T00:00:00Z"},
                   headers={"Authorization": f"Bearer {tok['integrator']}"})
    assert r.status_code == 503 and "disk full" in r.json()["detail"]
