"""Moving an embedded workspace's records into PostgreSQL (foundation.records_move, `citytwin records move`),
on the real throw-away PostgreSQL cluster of tests/pg.py: every table identical row by row, ids and
sequences kept, the workspace working on PostgreSQL afterwards, nothing half-written on failure."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation import records
from citytwin.foundation.cases import CaseStore
from citytwin.foundation.errors import CitytwinError, InputError
from citytwin.foundation.ingest import ingest
from citytwin.foundation.records_move import _stores, move_records, store_tables
from citytwin.foundation.workspace import Workspace
from citytwin.workflows.planning import project_store

runner = CliRunner()
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(records.ENV_DATABASE, raising=False)  # the workspaces start embedded


def _panel(tmp_path: Path, n: int) -> Path:
    p = tmp_path / f"panel{n}.csv"
    rows = "\n".join(f"北京市,{2000 + i},{i * 10.5}" for i in range(n))
    p.write_text(f"城市,年份,地区生产总值_亿元\n{rows}\n", encoding="utf-8")
    return p


def _build(tmp_path: Path, name: str = "ws") -> tuple[Workspace, dict[str, Any]]:
    """An embedded workspace with datasets (ingested, derived), users, tokens, audit rows, a job, cases
    (with events, a task, a link, a consultation) and a renewal project with its history."""
    ws = Workspace.init(tmp_path / name, owner="admin")
    ingest(ws, _panel(tmp_path, 3), dataset="panel", schema="city_panel", department="statistics")
    ingest(ws, _panel(tmp_path, 5), dataset="panel", schema="city_panel")
    ws.write_derived("gdp_total", ws.read("panel").groupby("city")["地区生产总值"].sum().reset_index(),
                     inputs=[("panel", 1), "panel"], parameters={"agg": "sum"})
    ws.add_user("vera", "viewer", "planning")
    ws.add_user("olga", "analyst")
    _, token = ws.catalog.issue_token("vera", label="move test")
    old_id, old = ws.catalog.issue_token("olga")
    ws.catalog.revoke_token(old_id)
    ws.as_user("vera").read("panel")
    ws.catalog.put_job({"id": "j1", "process": "economy-index", "user": "admin", "inputs": {"k": [1, 2]},
                        "status": "done", "progress": 1.0, "created": "2026-01-01T00:00:00+00:00",
                        "results": {"rows": 5}})
    cases = CaseStore.of(ws, clock=lambda: T0)
    cid = cases.open_case(description="路灯不亮 at 5 Main St", title="streetlight", lat=39.9, lon=116.4,
                          reporter_name="张三", reporter_phone="13800138000", deadline=T0 + timedelta(days=2))
    dup = cases.open_case(description="same lamp", duplicate_of=cid)
    cases.assign(cid, "lighting")
    cases.add_task(cid, "lighting", "replace the lamp", deadline=T0 + timedelta(days=1))
    cases.link(cid, "alert", "a-17")
    cases.create_consultation("老旧小区改造", starts=T0, ends=T0 + timedelta(days=14))
    ticks = iter(f"2026-01-{d:02d}T00:00:00+00:00" for d in range(1, 30))
    projects = project_store(ws)
    projects.clock = lambda: next(ticks)
    projects.create("p1", name="Old town", owner="district", budget=2e7, targets={"y": 3.0})
    projects.move("p1", "financing")
    projects.milestone("p1", "survey", done=True, indicator="y", value=0.1 + 0.2)
    panel = ws.read("panel")
    # the newest audit row deleted: SQLite's AUTOINCREMENT never gives its id again, nor may PostgreSQL
    with sqlite3.connect(ws.root / "catalog.sqlite") as con:
        con.execute("DELETE FROM audit WHERE id=(SELECT max(id) FROM audit)")
        seq = con.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()[0]
    return ws, {"panel": panel, "token": token, "revoked": old, "case": cid, "dup": dup, "audit_seq": seq}


def _typed(row: Any) -> tuple[tuple[str, Any], ...]:
    """A row with each value's type (1 and 1.0 differ here)."""
    return tuple((type(v).__name__, v) for v in row)


def _sqlite_rows(ws: Workspace) -> dict[str, list[tuple[tuple[str, Any], ...]]]:
    """Every table of every store file, as the target's columns (SQLite's rowid where the target has one)."""
    files = {"catalog": ws.root / "catalog.sqlite", "cases": ws.root / "cases" / "cases.sqlite",
             "projects": ws.root / "planning" / "projects.sqlite"}
    out = {}
    for store in _stores():
        with sqlite3.connect(files[store.name]) as con:
            for table in store_tables(store):
                cols = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
                sel = ", ".join(f'"{c}"' for c in cols)
                if table in ("transitions", "milestones"):  # {rowid}: explicit first column on PostgreSQL
                    sel = f"rowid, {sel}"
                out[table] = sorted((_typed(r) for r in con.execute(f'SELECT {sel} FROM "{table}"')), key=repr)
    return out


def _pg_rows(url: str) -> dict[str, list[tuple[tuple[str, Any], ...]]]:
    out = {}
    with psycopg.connect(url) as con:
        for store in _stores():
            for table in store_tables(store):
                out[table] = sorted((_typed(r) for r in con.execute(f'SELECT * FROM "{table}"')), key=repr)
    return out


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as con:
        have = {r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # type: ignore[index]
                for s in _stores() for t in store_tables(s) if t in have}


def test_move_copies_every_row_and_the_workspace_works_on_postgres(pg_url: str, tmp_path: Path) -> None:
    ws, made = _build(tmp_path)
    panel = made["panel"]
    before = _sqlite_rows(ws)
    assert all(before[t] for t in ("datasets", "versions", "lineage", "users", "api_tokens", "audit", "jobs",
                                   "cases", "case_events", "case_tasks", "case_links", "consultations",
                                   "projects", "transitions", "milestones"))
    marker = json.loads((ws.root / "citytwin.json").read_text(encoding="utf-8"))
    seen: list[tuple[str, str, int, int]] = []
    result = move_records(ws.root, pg_url, progress=lambda *a: seen.append(a))

    after = _pg_rows(pg_url)
    moves = [r for r in after["audit"] if ("str", "records.move") in r]
    assert len(moves) == 1
    after["audit"] = [r for r in after["audit"] if r not in moves]
    assert after == before  # every table, row by row, with its types
    assert result.rows == sum(len(v) for v in before.values())
    assert {(t.table, t.rows) for t in result.tables} == {(t, len(v)) for t, v in before.items()}
    assert seen[-1][2] == seen[-1][3] == result.rows  # progress reached the total
    # the move is audited with the next id after the highest SQLite ever gave (the deleted row's too)
    move_id = moves[0][0][1]  # its id (first column)
    assert move_id == made["audit_seq"] + 1 and result.sequences["audit.id"] == made["audit_seq"]
    assert json.loads((ws.root / "citytwin.json").read_text(encoding="utf-8")) == marker | {"database": pg_url}
    for rel in ("catalog.sqlite", "cases/cases.sqlite", "planning/projects.sqlite"):
        assert not (ws.root / rel).exists() and (ws.root / (rel + ".moved")).exists()
    assert sorted(result.kept) == sorted(str(ws.root / (r + ".moved")) for r in
                                         ("catalog.sqlite", "cases/cases.sqlite", "planning/projects.sqlite"))

    # the workspace now works on PostgreSQL: a read, a token check, a new audit row, cases and projects
    again = Workspace.open(ws.root, user="admin")
    assert again.catalog.db.dialect == "postgresql"
    assert again.read("panel").equals(panel) and len(panel) == 5
    assert again.catalog.lineage("gdp_total")["inputs"][0]["dataset"] == "panel"
    assert again.catalog.resolve_token(made["token"])["name"] == "vera"  # type: ignore[index]
    assert again.catalog.resolve_token(made["revoked"]) is None
    again.as_user("vera").read("panel")
    last = again.catalog.audit_log(limit=1)[0]  # the two reads since the move: new audit rows after it
    assert (last["id"], last["user"], last["action"]) == (move_id + 2, "vera", "read")
    cases = CaseStore.of(again, clock=lambda: T0)
    assert cases.get(made["case"])["reporter_name"] == "张三"
    assert cases.open_case(description="new") == made["dup"] + 1  # the cases' id sequence went on too
    proj = project_store(again).get("p1")
    assert [h["to_stage"] for h in proj["history"]] == ["planning", "financing"]
    assert again.catalog.jobs()[0]["results"] == {"rows": 5}


def test_a_failure_mid_copy_leaves_nothing(pg_url: str, tmp_path: Path) -> None:
    """A value PostgreSQL's BIGINT would round (1.5 in an INTEGER column, which SQLite keeps) stops the
    copy in the case store, after the catalog's tables went in: the target holds no record after,
    the setting and the SQLite files are as they were. So does an interrupt."""
    ws, _ = _build(tmp_path)
    marker = (ws.root / "citytwin.json").read_bytes()
    with sqlite3.connect(ws.root / "cases" / "cases.sqlite") as con:
        con.execute("UPDATE cases SET escalation=1.5 WHERE id=2")
    with pytest.raises(InputError) as err:
        move_records(ws.root, pg_url)
    assert err.value.file == str(ws.root / "cases" / "cases.sqlite") and err.value.row == 2
    assert err.value.field == "escalation" and "1.5" in err.value.message
    counts = _counts(pg_url)
    assert counts and set(counts.values()) == {0}
    assert (ws.root / "citytwin.json").read_bytes() == marker
    assert (ws.root / "catalog.sqlite").exists() and not list(ws.root.rglob("*.moved"))
    assert not list(ws.root.glob("*.tmp"))

    with sqlite3.connect(ws.root / "cases" / "cases.sqlite") as con:
        con.execute("UPDATE cases SET escalation=1 WHERE id=2")

    def interrupt(store: str, table: str, done: int, total: int) -> None:
        if store == "projects":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        move_records(ws.root, pg_url, progress=interrupt)
    assert set(_counts(pg_url).values()) == {0}
    assert (ws.root / "citytwin.json").read_bytes() == marker
    assert Workspace.open(ws.root, user="admin").catalog.db.dialect == "sqlite"
    # SQLite does not enforce foreign keys; PostgreSQL does: an orphan row is named, not dropped
    with sqlite3.connect(ws.root / "cases" / "cases.sqlite") as con:
        con.execute("INSERT INTO case_events(case_id, ts, kind) VALUES (99, '2026-01-01', 'note')")
    with pytest.raises(CitytwinError, match=r"case_events.*\(case_id\)=\(99\) is not present"):
        move_records(ws.root, pg_url)
    assert set(_counts(pg_url).values()) == {0} and (ws.root / "citytwin.json").read_bytes() == marker
    with sqlite3.connect(ws.root / "cases" / "cases.sqlite") as con:
        con.execute("DELETE FROM case_events WHERE case_id=99")
    move_records(ws.root, pg_url)  # and then it moves
    assert _counts(pg_url)["projects"] == 1


def test_cli_json_a_non_empty_target_and_replace(pg_url: str, tmp_path: Path) -> None:
    ws, _ = _build(tmp_path)
    r = runner.invoke(app, ["records", "move", "-w", str(ws.root), "--to", pg_url, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["target"] == pg_url and out["rows"] == sum(t["rows"] for t in out["tables"]) > 0
    assert {t["store"] for t in out["tables"]} == {"catalog", "cases", "projects"}

    r = runner.invoke(app, ["records", "move", "-w", str(ws.root), "--to", pg_url, "--json"])  # again
    assert r.exit_code == 2 and "already in PostgreSQL" in json.loads(r.stdout)["error"]

    other = Workspace.init(tmp_path / "other", owner="root2")
    other.add_user("x", "viewer")
    r = runner.invoke(app, ["records", "move", "-w", str(other.root), "--to", pg_url, "--json"])
    err = json.loads(r.stdout)
    assert r.exit_code == 2 and "already holds records" in err["error"] and "--replace" in err["hint"]
    assert "database" not in json.loads((other.root / "citytwin.json").read_text(encoding="utf-8"))

    r = runner.invoke(app, ["records", "move", "-w", str(other.root), "--to", pg_url, "--replace"])
    assert r.exit_code == 0, r.output
    assert "moved" in r.stdout and "catalog.sqlite.moved" in r.stdout
    users = Workspace.open(other.root, user="root2").catalog.users()
    assert [u["name"] for u in users] == ["root2", "x"]  # only the second workspace's records now
    assert _counts(pg_url)["datasets"] == 0


def test_bad_urls_are_clear_errors_without_the_password(pg_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.init(tmp_path / "ws", owner="admin")
    bad = {
        f"postgresql://citytwin:s3cret@127.0.0.1:{pg_cluster.port}/no_such_db": "no_such_db",
        "mysql://citytwin:s3cret@127.0.0.1/x": "only to PostgreSQL",
        "postgresql://citytwin:s3cret@[::1/x": "cannot read the database URL",
        "postgresql://citytwin:s3cret@127.0.0.1:5432": "names no database",
        str(tmp_path / "x.sqlite"): "only to PostgreSQL",
    }
    for url, said in bad.items():
        for as_json in (True, False):
            r = runner.invoke(app, ["records", "move", "-w", str(ws.root), "--to", url, *(["--json"] * as_json)])
            assert r.exit_code == 2, (url, r.output)
            text = r.stdout if as_json else r.stderr
            assert "s3cret" not in r.output and said in text, (url, text)
            if as_json:
                assert json.loads(r.stdout)["error"]
    assert Workspace.open(ws.root, user="admin").catalog.db.dialect == "sqlite"


def test_only_an_admin_moves(pg_url: str, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", owner="admin")
    ws.add_user("vera", "viewer")
    with pytest.raises(CitytwinError, match="may not"):
        move_records(ws.root, pg_url, user="vera")
    assert (ws.root / "catalog.sqlite").exists() and not _counts(pg_url).get("users")


def test_doctor_warns_when_records_stay_in_sqlite(pg_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from citytwin.workflows.doctor import run_checks

    ws = Workspace.init(tmp_path / "ws", owner="admin")
    monkeypatch.setenv(records.ENV_DATABASE, pg_url)
    checks = [c for c in run_checks(ws.root, broker=None) if c.name == "embedded"]
    warn = [c for c in checks if c.status == "warn" and "still in SQLite" in c.detail]
    assert len(warn) == 1 and "citytwin records move" in (warn[0].fix or "")
    # the move reads the workspace's own SQLite records, though $CITYTWIN_DATABASE points to the target
    result = move_records(ws.root, pg_url)
    assert [t.rows for t in result.tables if t.table == "users"] == [1] and result.notes == []
    assert not [c for c in run_checks(ws.root, broker=None) if "still in SQLite" in c.detail]


def test_values_that_would_change_are_found() -> None:
    """The value check (unit): what PostgreSQL would round, cast or refuse is caught, per chunk and per value."""
    from citytwin.foundation.records_move import _check_value, _chunk_ok

    target = [("a", "bigint"), ("b", "double precision"), ("c", "text")]
    assert _chunk_ok([(1, 2**62, 2.5, "x"), (2, None, 3, None)], target)
    for bad in [(1, 1.5, 1.0, "x"), (1, "7", 1.0, "x"), (1, 1, "x", "x"), (1, 1, 1.0, "a\x00b"), (1, 1, 1.0, b"x")]:
        assert not _chunk_ok([(0, 1, 1.0, "ok"), bad], target), bad
        assert not all(_check_value(v, t) for v, (_, t) in zip(bad[1:], target, strict=True)), bad
