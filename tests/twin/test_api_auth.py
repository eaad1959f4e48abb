"""The twin's HTTP API is secured: bearer tokens (stored hashed), roles per read/write, classification,
audit of every request (allowed or refused), and the CLI that issues, lists and revokes tokens."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from citytwin.cli.main import app as cli
from citytwin.foundation.errors import CitytwinError
from citytwin.foundation.workspace import MARKER
from citytwin.service.app import create_app, open_runtime

#: one suite, two backends: each test runs on SQLite (the embedded default) and PostgreSQL (tests/pg.py)
pytestmark = pytest.mark.usefixtures("backend")

DONGSI = "urn:ngsi-ld:AirQualityObserved:Dongsi"
ENTITY = {"id": DONGSI, "type": "AirQualityObserved",
          "location": {"type": "Point", "coordinates": [116.417, 39.929]}}
OBS = {"id": DONGSI, "observedAt": "2015-12-01T00:00:00Z", "pm25": 301}


@pytest.fixture()
def api(twin_ws):
    rt = open_runtime(twin_ws.root)
    with TestClient(create_app(runtime=rt)) as c:  # no default headers: each request says who it is
        yield c
    rt.close()


def _twin_audit(ws) -> list[tuple]:
    """The twin's audit rows, oldest first: (user, role, action, outcome, detail)."""
    return [(r["user"], r["role"], r["action"], r["outcome"], r["detail"])
            for r in reversed(ws.catalog.audit_log("twin"))]


def _set_classification(ws, value: str) -> None:
    # the workspace setting the service reads at start-up (Workspace has no setter yet: edit the marker file)
    marker = ws.root / MARKER
    settings = json.loads(marker.read_text(encoding="utf-8"))
    marker.write_text(json.dumps({**settings, "twin_classification": value}), encoding="utf-8")


def test_no_bad_or_revoked_token_is_401(api, twin_ws):
    assert api.get("/health").status_code == 200  # the one open endpoint
    r = api.get("/ngsi-ld/v1/entities")
    assert r.status_code == 401
    assert r.json()["title"] == "Unauthorized" and "no bearer token" in r.json()["detail"]
    assert r.json()["type"].endswith("/Unauthorized") and r.headers["www-authenticate"].startswith("Bearer")
    assert api.get("/ngsi-ld/v1/entities", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert api.get("/ngsi-ld/v1/entities", headers={"Authorization": f"Basic {twin_ws.tokens['admin']}"}
                   ).status_code == 401  # only the Bearer scheme
    ok = twin_ws.headers("viewer")
    assert api.get("/ngsi-ld/v1/entities", headers=ok).status_code == 200
    tid = next(t["id"] for t in twin_ws.ws.catalog.tokens("vera"))
    twin_ws.ws.catalog.revoke_token(tid)
    r = api.get("/ngsi-ld/v1/entities", headers=ok)  # refused at once: no cache between catalog and API
    assert r.status_code == 401 and "unknown or revoked token" in r.json()["detail"]


def test_every_route_but_health_needs_a_token(twin_ws):
    """Walk the app's routes, so an endpoint added later without the token check fails here."""
    rt = open_runtime(twin_ws.root)
    app = create_app(runtime=rt)
    checked = 0
    with TestClient(app) as c:
        for route, ops in app.openapi()["paths"].items():
            if route == "/health":
                assert "security" not in ops["get"]
                continue
            path = re.sub(r"\{[^}]+\}", "x", route)
            for method, op in ops.items():
                assert op["security"] == [{"HTTPBearer": []}]  # documented: /docs has an Authorize button
                r = c.request(method, path, json={})
                assert r.status_code == 401, (method, route, r.status_code)
                checked += 1
    rt.close()
    assert checked >= 20  # ngsi (12), forecasts (4), alerts (6) endpoints at the time of writing


def test_roles_read_and_write(api, twin_ws):
    h = twin_ws.headers
    # integrator: writes go through
    assert api.post("/ngsi-ld/v1/entities", json=ENTITY, headers=h("integrator")).status_code == 201
    r = api.post("/twin/v1/observations", json=OBS, headers=h("integrator"))
    assert r.status_code == 201 and r.json()["accepted"] == 1
    # viewer: reads yes, writes no, with the roles needed named
    assert api.get(f"/ngsi-ld/v1/entities/{DONGSI}", headers=h("viewer")).json()["pm25"]["value"] == 301.0
    assert api.get("/twin/v1/history", params={"entity": DONGSI}, headers=h("viewer")).json()["rows"] == 1
    r = api.post("/twin/v1/observations", json={**OBS, "pm25": 5}, headers=h("viewer"))
    assert r.status_code == 403
    assert r.json()["title"] == "Forbidden"
    assert "role viewer" in r.json()["detail"] and "needs role integrator or steward or admin" in r.json()["detail"]
    # the refused write changed nothing
    assert api.get(f"/ngsi-ld/v1/entities/{DONGSI}", headers=h("viewer")).json()["pm25"]["value"] == 301.0
    # an analyst may write derived datasets in the Python API, but not feed the live twin
    assert api.delete(f"/ngsi-ld/v1/entities/{DONGSI}", headers=h("analyst")).status_code == 403
    for role in ("viewer", "analyst", "public"):
        for method, path in (("POST", "/twin/v1/forecasts/verify"), ("POST", "/twin/v1/alerts"),
                             ("PATCH", f"/ngsi-ld/v1/entities/{DONGSI}/attrs"),
                             ("POST", "/ngsi-ld/v1/entityOperations/upsert")):
            assert api.request(method, path, json={}, headers=h(role)).status_code == 403, (role, method, path)
    assert api.post("/twin/v1/forecasts/verify", headers=h("steward")).status_code == 200
    # the role is looked up at each request: promoting vera lets her token write
    twin_ws.ws.add_user("vera", "integrator")
    assert api.post("/twin/v1/observations", json={**OBS, "pm25": 5}, headers=h("viewer")).status_code == 201


def test_public_role_and_classification(twin_ws):
    h = twin_ws.headers
    for classification, public_status, viewer_status in (("internal", 403, 200), ("public", 200, 200),
                                                         ("sensitive", 403, 403)):
        _set_classification(twin_ws.ws, classification)
        rt = open_runtime(twin_ws.root)
        with TestClient(create_app(runtime=rt)) as c:
            r = c.get("/ngsi-ld/v1/entities", headers=h("public"))
            assert r.status_code == public_status, classification
            if public_status == 403:
                assert f"may not read {classification} dataset 'twin'" in r.json()["detail"]
            assert c.get("/twin/v1/alerts", headers=h("viewer")).status_code == viewer_status
            assert c.get("/twin/v1/alerts", headers=h("steward")).status_code == 200
            # a public twin is still not writable by the public role
            assert c.post("/twin/v1/observations", json=OBS, headers=h("public")).status_code == 403
        rt.close()
    _set_classification(twin_ws.ws, "secret")
    with pytest.raises(CitytwinError, match="invalid classification 'secret'"):
        create_app(twin_ws.root)


def test_audit_has_reads_writes_and_denials(api, twin_ws):
    h = twin_ws.headers
    api.post("/ngsi-ld/v1/entities", json=ENTITY, headers=h("integrator"))
    # one request of 48 observations: one audit row, not one per observation
    batch = [{**OBS, "observedAt": f"2015-12-0{1 + i // 24}T{i % 24:02d}:00:00Z", "pm25": i} for i in range(48)]
    assert api.post("/twin/v1/observations", json=batch, headers=h("integrator")).json()["accepted"] == 48
    api.get("/twin/v1/history", headers=h("viewer"))
    api.post("/twin/v1/observations", json=OBS, headers=h("viewer"))
    api.get("/twin/v1/alerts")
    api.get("/twin/v1/alerts", headers={"Authorization": "Bearer forged"})
    api.get("/ngsi-ld/v1/entities", headers=h("public"))
    api.get("/health")  # not audited: carries no data
    # the audit row is written as the response starts, so it records the status (issue 13)
    assert _twin_audit(twin_ws.ws) == [
        ("ops", "integrator", "twin.write", "ok", "POST /ngsi-ld/v1/entities -> 201"),
        ("ops", "integrator", "twin.write", "ok", "POST /twin/v1/observations -> 201"),
        ("vera", "viewer", "twin.read", "ok", "GET /twin/v1/history -> 200"),
        ("vera", "viewer", "twin.write", "denied", "POST /twin/v1/observations -> 403"),
        (None, None, "twin.read", "unauthenticated", "GET /twin/v1/alerts -> 401: no bearer token"),
        (None, None, "twin.read", "unauthenticated", "GET /twin/v1/alerts -> 401: unknown or revoked token"),
        ("resident", "public", "twin.read", "denied", "GET /ngsi-ld/v1/entities -> 403"),
    ]


def test_audit_has_unrouted_requests_status_and_query(api, twin_ws):
    """Issue 13: unknown paths, 405, HEAD and OPTIONS are audited; a 4xx is not "ok"; the query is kept."""
    h = twin_ws.headers("viewer")
    n0 = len(_twin_audit(twin_ws.ws))
    assert api.get("/no/such/path?x=1", headers=h).status_code == 404
    assert api.put("/twin/v1/history", headers=h).status_code == 405
    api.head("/twin/v1/history", headers=h)
    api.options("/ngsi-ld/v1/entities")
    assert api.get("/twin/v1/history?start=3000-01-01&property=pm25", headers=h).status_code == 400
    assert api.get("/twin/v1/history?property=pm25", headers=h).status_code == 200
    api.get("/health")
    rows = _twin_audit(twin_ws.ws)[n0:]
    assert [(r[2], r[3], r[4]) for r in rows] == [
        ("twin.read", "rejected 404", "GET /no/such/path?x=1 -> 404"),
        ("twin.write", "rejected 405", "PUT /twin/v1/history -> 405"),
        ("twin.read", "rejected 405", "HEAD /twin/v1/history -> 405"),
        ("twin.read", "rejected 405", "OPTIONS /ngsi-ld/v1/entities -> 405"),
        ("twin.read", "rejected 400", "GET /twin/v1/history?start=3000-01-01&property=pm25 -> 400"),
        ("twin.read", "ok", "GET /twin/v1/history?property=pm25 -> 200"),
    ]
    # a routed request knows its caller
    assert rows[-1][:2] == ("vera", "viewer")
    # `citytwin audit` shows the path and status
    r = CliRunner().invoke(cli, ["audit", "-w", str(twin_ws.ws.root), "--user", "admin", "--dataset", "twin",
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["detail"] == "GET /twin/v1/history?property=pm25 -> 200"
    r = CliRunner().invoke(cli, ["audit", "-w", str(twin_ws.ws.root), "--user", "admin", "--dataset", "twin",
                                 "--limit", "1"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "/twin/v1/history?property=pm25" in r.stdout, r.output


def test_tokens_are_stored_hashed_and_unique(twin_ws):
    cat = twin_ws.ws.catalog
    id1, t1 = cat.issue_token("ops", label="a")
    id2, t2 = cat.issue_token("ops", label="a")
    assert id1 != id2 and t1 != t2 and len(t1) >= 43  # 32 random bytes, URL-safe base64
    with cat.connect() as con:  # the raw rows, on either backend
        rows = con.execute("SELECT * FROM api_tokens WHERE id IN (?, ?) ORDER BY id", (id1, id2)).fetchall()
    assert [r[1] for r in rows] == [hashlib.sha256(t.encode()).hexdigest() for t in (t1, t2)]
    every = [str(v) for r in rows for v in r]
    assert t1 not in every and t2 not in every
    # nowhere in the catalog's files (database and write-ahead log; on PostgreSQL none in the workspace)
    for f in cat.path.parent.glob("catalog.sqlite*") if cat.path else ():
        data = f.read_bytes()
        assert all(t.encode() not in data for t in (t1, *twin_ws.tokens.values())), f
    listed = cat.tokens("ops")
    assert {"id", "user", "label", "created", "revoked"} <= set(listed[0]) and "hash" not in listed[0]
    assert cat.resolve_token(t1)["name"] == "ops" and cat.resolve_token(t1 + "x") is None
    with pytest.raises(CitytwinError, match="not registered"):
        cat.issue_token("nobody")


def test_cli_token_tokens_revoke(twin_ws, tmp_path):
    ws = str(twin_ws.ws.root)
    run = CliRunner().invoke
    r = run(cli, ["user", "token", "ops", "--label", "gateway-3", "-w", ws, "-u", "admin"])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()  # the token alone on stdout
    assert re.fullmatch(r"[A-Za-z0-9_\-]{43}", token)
    assert "not shown again" in r.stderr
    r = run(cli, ["user", "tokens", "ops", "-w", ws, "-u", "admin", "--json"])
    rows = json.loads(r.stdout)
    mine = next(x for x in rows if x["label"] == "gateway-3")
    assert mine["revoked"] == 0 and token not in r.stdout
    r = run(cli, ["user", "tokens", "-w", ws, "-u", "admin"])
    assert r.exit_code == 0 and "gateway-3" in r.stdout and "vera" in r.stdout
    # the API accepts it, until it is revoked
    rt = open_runtime(twin_ws.root)
    with TestClient(create_app(runtime=rt), headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/twin/v1/alerts").status_code == 200
        r = run(cli, ["user", "revoke-token", str(mine["id"]), "-w", ws, "-u", "admin"])
        assert r.exit_code == 0 and f"token {mine['id']} of user ops revoked" in r.stdout
        assert c.get("/twin/v1/alerts").status_code == 401
    rt.close()
    assert json.loads(run(cli, ["user", "tokens", "ops", "-w", ws, "-u", "admin", "--json"]).stdout)[-1]["revoked"] == 1
    # clear errors: only admins, known users, known ids
    r = run(cli, ["user", "token", "ops", "-w", ws, "-u", "ops"])
    assert r.exit_code == 2 and "may not manage users" in r.output
    r = run(cli, ["user", "token", "nobody", "-w", ws, "-u", "admin"])
    assert r.exit_code == 2 and "'nobody' is not registered" in r.output
    r = run(cli, ["user", "revoke-token", "999", "-w", ws, "-u", "admin"])
    assert r.exit_code == 2 and "no API token with id 999" in r.output
    r = run(cli, ["user", "tokens", "nobody", "-w", ws, "-u", "admin"])
    assert r.exit_code == 2 and "'nobody' is not registered" in r.output
    # issuing and revoking are audited (the token itself is not)
    acts = [(x["action"], x["detail"]) for x in twin_ws.ws.catalog.audit_log() if x["action"].startswith("token.")]
    assert acts == [("token.revoke", f"ops:{mine['id']}"), ("token.issue", f"ops:{mine['id']}")]


def test_secure_by_default_and_no_auth(tmp_path, twin_ws, monkeypatch):
    # a twin outside any workspace has no users to check: refused unless auth is explicitly off
    with pytest.raises(CitytwinError, match="not inside a workspace"):
        create_app(tmp_path / "loose_twin")
    rt = open_runtime(tmp_path / "loose_twin")
    with TestClient(create_app(runtime=rt, auth=False)) as c:
        assert c.post("/twin/v1/alerts", json={"rule": "r", "entity": "e"}).status_code == 201
        aid = c.get("/twin/v1/alerts").json()[0]["id"]
        # without a token nobody is known: an acknowledgement must say who ("by" is required)
        r = c.post(f"/twin/v1/alerts/{aid}/ack", json={})
        assert r.status_code == 400 and "by" in r.text
    rt.close()
    # `twin serve` is secure by default; --no-auth warns loudly and still audits (as anonymous)
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    ws = str(twin_ws.ws.root)
    r = CliRunner().invoke(cli, ["twin", "serve", "-w", ws, "--no-auto-verify", "--no-auto-alerts"])
    assert r.exit_code == 0, r.output
    assert "auth on: twin classification internal, 6 active API token(s)" in r.stderr
    with TestClient(served[-1]) as c:
        assert c.get("/twin/v1/alerts").status_code == 401
    r = CliRunner().invoke(cli, ["twin", "serve", "-w", ws, "--no-auth", "--no-auto-verify", "--no-auto-alerts"])
    assert r.exit_code == 0 and "WARNING: authentication is OFF" in r.stderr
    with TestClient(served[-1]) as c:
        assert c.get("/twin/v1/alerts").status_code == 200
        assert c.post("/twin/v1/observations", json=OBS).status_code in (201, 207)
    last = _twin_audit(twin_ws.ws)[-2:]
    assert last[0] == (None, None, "twin.read", "ok", "GET /twin/v1/alerts -> 200: auth off")
    assert last[1][:4] == (None, None, "twin.write", "ok")
    assert re.fullmatch(r"POST /twin/v1/observations -> 20[17]: auth off", last[1][4])


def test_twin_classify_cli_sets_the_setting(tmp_path) -> None:
    """`citytwin twin classify` (admins only) sets the classification the API guard reads."""
    from citytwin.foundation.workspace import Workspace
    from citytwin.service.auth import TwinGuard

    ws = Workspace.init(tmp_path / "ws", owner="admin")
    ws.add_user("v", "viewer")
    runner = CliRunner()
    r = runner.invoke(cli, ["twin", "classify", "public", "-w", str(ws.root), "--user", "admin"])
    assert r.exit_code == 0, r.output
    assert TwinGuard.for_workspace(Workspace.open(ws.root, user="admin")).classification == "public"
    r = runner.invoke(cli, ["twin", "classify", "secret", "-w", str(ws.root), "--user", "admin"])
    assert r.exit_code != 0
    r = runner.invoke(cli, ["twin", "classify", "internal", "-w", str(ws.root), "--user", "v"])
    assert r.exit_code != 0  # a viewer may not change settings
    assert Workspace.open(ws.root, user="admin").settings["twin_classification"] == "public"
    assert any(a["action"] == "setting" for a in ws.catalog.audit_log(limit=50))
