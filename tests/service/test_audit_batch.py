"""Group commit of the per-request audit rows (service.auditbatch): one row per request, committed before
the response, in groups; none lost under concurrent load."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from tests.service.conftest import ServiceWorkspace

from citytwin.service.app import close_app
from citytwin.service.auditbatch import GroupCommitCatalog


def _rows(cat: GroupCommitCatalog) -> list[str]:
    return [r["user"] for r in reversed(cat.audit_log(limit=10_000))]


def test_rows_queued_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    cat = GroupCommitCatalog(tmp_path / "catalog.sqlite")
    real = cat._write
    release = threading.Event()
    calls: list[int] = []

    def slow_first(rows: list[tuple]) -> None:
        calls.append(len(rows))
        if len(calls) == 1:
            release.wait(30)
        real(rows)

    cat._write = slow_first  # type: ignore[method-assign]
    first = threading.Thread(target=cat.audit, kwargs={"user": "u000", "role": "viewer", "action": "a"})
    first.start()
    while not calls:
        time.sleep(0.001)
    rest = [threading.Thread(target=cat.audit, kwargs={"user": f"u{i:03d}", "role": "viewer", "action": "a"})
            for i in range(1, 50)]
    for t in rest:
        t.start()
    deadline = time.monotonic() + 30
    while len(cat._pending) < 49 and time.monotonic() < deadline:  # all queued behind the slow commit
        time.sleep(0.001)
    assert _rows(cat) == [] and all(t.is_alive() for t in rest)  # nobody returned before its commit
    release.set()
    for t in [first, *rest]:
        t.join(30)
    assert calls == [1, 49] and cat.commits == 2 and cat.rows_written == 50
    assert sorted(_rows(cat)) == [f"u{i:03d}" for i in range(50)]
    cat.close()
    cat.audit(user="late", role="viewer", action="a")  # close stops nothing: still written
    assert _rows(cat)[-1] == "late"
    cat.close()


def test_a_failed_commit_is_raised_to_its_callers(tmp_path: Path) -> None:
    cat = GroupCommitCatalog(tmp_path / "catalog.sqlite")

    def broken(rows: list[tuple]) -> None:
        raise OSError("disk full")

    real = cat._write
    cat._write = broken  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk full"):
        cat.audit(user="u", role="viewer", action="a")
    cat._write = real  # type: ignore[method-assign]
    cat.audit(user="v", role="viewer", action="a")
    assert _rows(cat) == ["v"]
    cat.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_every_concurrent_request_is_audited_once(service_ws: ServiceWorkspace) -> None:
    """600 requests from 64 connections at once to a real uvicorn: each is one row with its status,
    all there when the responses have come back, and the rows shared commits."""
    from citytwin.service.server import create_server_app

    app = create_server_app(service_ws.ws)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    cat = service_ws.ws.catalog
    before = max(r["id"] for r in cat.audit_log(limit=1))
    n = 600

    async def load() -> list[int]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as c:
            async def one(i: int) -> int:
                h = service_ws.headers("viewer") if i % 5 else {"Authorization": "Bearer nope"}
                url = (f"/tiles/helsinki_pois/0/0/0.mvt?n={i}" if i % 3 else f"/ngsi-ld/v1/entities?n={i}")
                return (await c.get(url, headers=h)).status_code
            return await asyncio.gather(*(one(i) for i in range(n)))

    try:
        statuses = asyncio.run(load())
        rows = [r for r in cat.audit_log(limit=5000) if r["id"] > before and "?n=" in (r["detail"] or "")]
    finally:
        server.should_exit = True
        th.join(30)
        close_app(app)
    by_n: dict[int, list[dict]] = {}
    for r in rows:
        by_n.setdefault(int(r["detail"].split("?n=")[1].split()[0]), []).append(r)
    assert sorted(by_n) == list(range(n)) and all(len(v) == 1 for v in by_n.values())
    for i, st in enumerate(statuses):
        r = by_n[i][0]
        assert f" -> {st}" in r["detail"], (i, r["detail"], st)
        assert r["outcome"] == ("ok" if i % 5 else "unauthenticated")
        assert st == (200 if i % 5 else 401)
    guard = app.state.guard
    assert guard.catalog.rows_written >= n and guard.catalog.commits < guard.catalog.rows_written
    # the dataset reads' own audit rows (read.stats of the tiles made) go through the same group commit
    view = app.state.api_guard.workspace(service_ws.ws.as_user("vera").user)
    assert view.catalog is guard.catalog
