"""PostgreSQL with a replica (issue 19, "the path past these machines"), checked on real servers: a primary
and a streaming hot standby made by ``pg_basebackup -R`` (tests/pg.py, the fixture's own start and stop
helpers), each on its own port. citytwin writes and reads its records on the primary (the operations
center included); the standby holds the same catalog once it has replayed the primary's WAL, row for row;
citytwin's own read code runs on the standby; a write sent there is refused by PostgreSQL and said by
citytwin as such (no traceback), and ``citytwin doctor`` reports the replication (``pg_stat_replication``
on the primary, ``--replica URL`` for the standby: streaming, bytes behind) and refuses a standby as the
records database."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.conftest import served
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.catalog import Catalog
from citytwin.foundation.errors import CitytwinError
from citytwin.foundation.ingest import ingest
from citytwin.foundation.workspace import Workspace

pg = sys.modules["citytwin_tests_pg"]  # tests/pg.py, loaded once by tests/conftest.py
pytestmark = pytest.mark.integration
runner = CliRunner()
#: how long the standby may take to replay what the primary wrote (a wait for a condition, not a timing)
CATCH_UP_S = 60.0


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[Any, Any]]:
    """A primary (its own throw-away cluster, so that it has exactly one standby) and its hot standby."""
    if pg.pg_bindir() is None:
        msg = "PostgreSQL server binaries not found (install postgresql and postgis: scripts/setup.sh --test)"
        if os.environ.get(pg.ENV_REQUIRE, "") not in ("", "0"):
            pytest.fail(f"{msg}; ${pg.ENV_REQUIRE} is set")
        pytest.skip(msg)
    primary = pg.start_cluster()
    try:
        replica = pg.start_replica(primary)
        try:
            yield primary, replica
        finally:
            pg.stop_cluster(replica)
    finally:
        pg.stop_cluster(primary)


def _rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        return [tuple(r) for r in con.execute(sql, params).fetchall()]  # type: ignore[arg-type]


def _caught_up(primary_url: str, replica_url: str) -> None:
    """Wait until the standby has replayed the primary's WAL up to now: up to the last record *inserted*, not the
    last written (the test clusters run with ``synchronous_commit=off``, so a commit may still be in the WAL
    buffers, past ``pg_current_wal_lsn()``; the standby gets it once the WAL writer writes it)."""
    (lsn,), = _rows(primary_url, "SELECT pg_current_wal_insert_lsn()::text")
    deadline = time.monotonic() + CATCH_UP_S
    while _rows(replica_url, "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()) > 0", (lsn,))[0][0]:
        assert time.monotonic() < deadline, f"the standby did not replay up to {lsn} within {CATCH_UP_S:g} s"
        time.sleep(0.05)


def _tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the database's public schema, in a fixed order."""
    names = [r[0] for r in _rows(url, "SELECT table_name FROM information_schema.tables WHERE table_schema="
                                      "'public' AND table_type='BASE TABLE' ORDER BY table_name")]
    out = {}
    for name in names:
        ncols = _rows(url, "SELECT count(*) FROM information_schema.columns WHERE table_schema='public' AND "
                           "table_name=%s", (name,))[0][0]
        order = ", ".join(str(i) for i in range(1, ncols + 1))
        out[name] = _rows(url, f'SELECT * FROM "{name}" ORDER BY {order}')
    return out


@pytest.fixture(scope="module")
def deployment(clusters: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A workspace whose records are on the primary, with a dataset ingested and one API read made."""
    primary, replica = clusters
    db_url = primary.fresh_database()  # CREATE DATABASE is replayed on the standby too
    name = db_url.rsplit("/", 1)[1]
    root = tmp_path_factory.mktemp("replica") / "ws"
    ws = Workspace.init(root, owner="admin", database=db_url)
    csv = root.parent / "stats.csv"
    csv.write_text("city,year,gdp\n北京市,2020,36102.6\n上海市,2020,38700.6\n", encoding="utf-8")
    ingest(ws, csv, dataset="stats", schema="city_panel", classification="internal", department="statistics")
    _, token = ws.catalog.issue_token("admin", "replica test")
    from citytwin.service.server import create_server_app

    with served(create_server_app(ws)) as client:  # the operations center, on the primary
        r = client.get("/catalog", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        listed = r.json()
    yield {"ws": ws, "primary": db_url, "replica": replica.url(name), "listed": listed, "root": root}
    from citytwin.foundation import records

    records.dispose(replica.url(name))
    primary.drop(db_url)


def test_the_standby_streams_and_holds_the_same_records(clusters: tuple[Any, Any],
                                                          deployment: dict[str, Any]) -> None:
    primary, replica = clusters
    p_url, r_url = deployment["primary"], deployment["replica"]
    # the standby is one, streaming (the primary's view) and in recovery (its own)
    rep = _rows(primary.url(), "SELECT application_name, state, host(client_addr) FROM pg_stat_replication")
    assert rep == [("citytwin_replica", "streaming", "127.0.0.1")]
    assert _rows(r_url, "SELECT pg_is_in_recovery()") == [(True,)]
    assert _rows(r_url, "SELECT status FROM pg_stat_wal_receiver") == [("streaming",)]
    _caught_up(primary.url(), replica.url())
    # every row of every table is the same: the catalog, versions, users, tokens, the audit of the API's
    # read (written on the primary), the schema versions
    on_primary, on_replica = _tables(p_url), _tables(r_url)
    assert {"datasets", "versions", "users", "api_tokens", "audit", "schema_version"} <= on_primary.keys()
    assert on_replica == on_primary
    assert [r for r in on_primary["datasets"] if "stats" in r]
    # citytwin's own read code on the standby gives what the operations center gave on the primary
    assert {d["name"] for d in deployment["listed"]["datasets"]} == {"stats"}
    mirror = Catalog(r_url)  # opening reads the schema version only: nothing to migrate, nothing written
    here = Catalog(p_url)
    assert [d.to_dict() for d in mirror.all_datasets()] == [d.to_dict() for d in here.all_datasets()]
    assert mirror.audit_log() == here.audit_log()
    assert any("/catalog" in f"{a['action']} {a['detail']}" for a in mirror.audit_log())  # the API's read
    assert mirror.users() == here.users() and mirror.tokens() == here.tokens()


def test_a_write_to_the_standby_is_refused_and_said(clusters: tuple[Any, Any], deployment: dict[str, Any]) -> None:
    import psycopg

    _, replica = clusters
    r_url = deployment["replica"]
    before = _tables(r_url)["audit"]
    # PostgreSQL itself refuses a write on the standby
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        _rows(r_url, "INSERT INTO audit(ts, action, outcome) VALUES ('x', 'x', 'ok')")
    mirror = Catalog(r_url)
    # citytwin says so, naming the server and what to do: a single statement, and a locked transaction
    with pytest.raises(CitytwinError, match=r"is read-only \(a hot-standby replica\?\): PostgreSQL refused a "
                                            r"write \(cannot execute INSERT in a read-only transaction\)") as e:
        mirror.audit(user="admin", role="admin", action="should not be written")
    assert f"127.0.0.1:{replica.port}/" in e.value.message and "primary" in (e.value.hint or "")
    with pytest.raises(CitytwinError, match="read-only"):
        mirror.put_user("eve", "viewer")
    assert _tables(r_url)["audit"] == before
    # a command pointed at the standby: exit 2, one JSON object, no traceback
    r = runner.invoke(app, ["user", "token", "admin", "-w", str(deployment["root"]), "-u", "admin",
                                "--json"], env={"CITYTWIN_DATABASE": r_url})
    assert r.exit_code == 2, r.output
    err = json.loads(r.stdout)
    assert "read-only" in err["error"] and "primary" in err["hint"]


def _doctor(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    r = runner.invoke(app, ["doctor", *args, "--json", "--timeout", "1"], env=env)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    out = json.loads(r.stdout)
    assert out["ok"] == (r.exit_code == 0)
    return r.exit_code, {c["name"]: c for c in out["checks"] if c["name"] != "replica"} | {
        f"replica{i}": c for i, c in enumerate(c for c in out["checks"] if c["name"] == "replica")}


def test_doctor_reports_the_replication(clusters: tuple[Any, Any], deployment: dict[str, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    primary, replica = clusters
    monkeypatch.delenv("CITYTWIN_DATABASE", raising=False)
    root, p_url, r_url = str(deployment["root"]), deployment["primary"], deployment["replica"]
    _caught_up(primary.url(), replica.url())
    dead = f"postgresql://citytwin@127.0.0.1:{pg._free_port()}/x"
    _, checks = _doctor("-w", root, "--replica", r_url, "--replica", p_url, "--replica", dead)
    assert checks["records"]["status"] == "ok"
    # the primary's view: its standby, streaming
    assert checks["replication"]["status"] == "ok"
    assert checks["replication"]["detail"].startswith("1 standby(s): citytwin_replica (127.0.0.1) streaming, async")
    # the standby's view: hot standby, streaming from the primary, how far behind, the same schema
    ok = checks["replica0"]
    assert ok["status"] == "ok", ok
    assert ok["detail"].startswith(f"{r_url} (PostgreSQL 1") and f"streaming from 127.0.0.1:{primary.port}" in ok["detail"]
    assert "bytes behind the primary" in ok["detail"] and ok["detail"].endswith("catalog schema 2")
    # the primary given as a replica, and a replica that does not answer: failures, said
    assert checks["replica1"]["status"] == "fail" and "is not a standby" in checks["replica1"]["detail"]
    assert checks["replica2"]["status"] == "fail" and "cannot reach" in checks["replica2"]["detail"]
    # the standby given as the records database: refused, with what to do
    code, checks = _doctor("--database", r_url)
    assert code == 1 and checks["records"]["status"] == "fail"
    assert "read-only hot standby" in checks["records"]["detail"] and "primary" in checks["records"]["fix"]
