"""The records layer (foundation.records): one connection API over SQLite and PostgreSQL, migrations,
an old SQLite catalog brought up to date, clear errors, and a pg_dump backup that restores identical."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from citytwin.foundation import records
from citytwin.foundation.catalog import CATALOG_STORE, Catalog, VersionInfo
from citytwin.foundation.errors import CitytwinError

OLD_CATALOG = Path(__file__).with_name("catalog_before_versions.sql")

NOTES = records.Store("notes", (
    "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL UNIQUE, x REAL,"
    " n INTEGER)",
    "CREATE INDEX IF NOT EXISTS notes_x ON notes(x)",
))


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "notes.sqlite")
    return str(request.getfixturevalue("pg_url"))


def test_one_api_on_both_engines(target: str) -> None:
    db = records.open_store(target, NOTES)
    assert db.schema_version() == 2 and db.migrate() == []  # applied once
    with db.connect() as con:
        a = con.insert("INSERT INTO notes(text, x, n) VALUES (?,?,?)", ("a 100% sure?", 0.1 + 0.2, 2**40))
        b = con.insert("INSERT INTO notes(text, x, n) VALUES (?,?,?)", ("b", None, None))
        assert (a, b) == (1, 2)
        row = con.execute("SELECT * FROM notes WHERE text LIKE 'a%' AND id=?", (a,)).fetchone()
        # by name and by position; a double keeps every bit, a big integer its value
        assert dict(row) == {"id": 1, "text": "a 100% sure?", "x": 0.1 + 0.2, "n": 2**40}
        ident, text, *_ = row  # unpacked in column order
        assert row[1] == row["text"] == text and ident == 1
        with pytest.raises(records.integrity_errors()):
            con.execute("INSERT INTO notes(text) VALUES (?)", ("b",))
        with pytest.raises(ZeroDivisionError), con.transaction():  # rolled back as a whole
            con.execute("INSERT INTO notes(text) VALUES (?)", ("c",))
            raise ZeroDivisionError
        with con.transaction():
            con.execute("INSERT INTO notes(text) VALUES (?) ON CONFLICT DO NOTHING", ("b",))
            con.execute("INSERT INTO notes(text) VALUES (?) ON CONFLICT DO NOTHING", ("d",))
        assert [r[0] for r in con.execute("SELECT text FROM notes ORDER BY id")] == ["a 100% sure?", "b", "d"]


def test_an_old_sqlite_catalog_is_migrated(tmp_path: Path) -> None:
    """A catalog made by citytwin before schema versions (dumped in catalog_before_versions.sql) opens,
    gets the jobs table (step 2) and keeps every record."""
    path = tmp_path / "catalog.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript(OLD_CATALOG.read_text(encoding="utf-8"))
    before = {t: sqlite3.connect(path).execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
              for t in ("datasets", "versions", "lineage", "users", "audit", "api_tokens")}
    cat = Catalog(path)
    assert cat.db.schema_version() == CATALOG_STORE.version == 2
    after = {t: sqlite3.connect(path).execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in before}
    assert after == before
    assert cat.get("pois").current.extent == [24.9, 60.1, 25.0, 60.2]
    assert cat.lineage("pois_per_h3")["inputs"][0]["dataset"] == "pois"
    assert [u["name"] for u in cat.users()] == ["admin", "vera"]
    assert cat.jobs() == []
    cat.audit(user="vera", role="viewer", action="read", dataset="pois")
    assert cat.audit_log(limit=1)[0]["id"] == 4  # the ids go on where they were
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT store, version FROM schema_version").fetchall() == [("catalog", 2)]


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "catalog.sqlite")
    with cat.connect() as con:
        con.execute("UPDATE schema_version SET version=99 WHERE store='catalog'")
    with pytest.raises(CitytwinError, match="schema version 99 of store 'catalog', newer than this citytwin"):
        Catalog(tmp_path / "catalog.sqlite")


def test_an_unreachable_database_is_a_clear_error(pg_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from citytwin.foundation.workspace import Workspace

    url = f"postgresql://citytwin:secret@127.0.0.1:{pg_cluster.port}/no_such_db"
    with pytest.raises(CitytwinError) as err:
        Catalog(url)
    msg = str(err.value)
    assert "cannot reach the records database postgresql://citytwin:***@" in msg and "no_such_db" in msg
    assert "secret" not in msg and "citytwin doctor" in (err.value.hint or "")
    with pytest.raises(CitytwinError, match="cannot reach"):  # and no half-made workspace is left
        Workspace.init(tmp_path / "ws", owner="admin", database=url)
    assert not (tmp_path / "ws").exists()


def test_url_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(records.ENV_DATABASE, raising=False)
    default = tmp_path / "catalog.sqlite"
    assert records.resolve_url(None, None, default) == f"sqlite:///{default}"
    assert records.resolve_url(None, "postgresql://db/a", default) == "postgresql://db/a"
    monkeypatch.setenv(records.ENV_DATABASE, "postgresql://db/env")
    assert records.resolve_url(None, "postgresql://db/a", default) == "postgresql://db/env"
    assert records.resolve_url("postgresql://db/cli", "x", default) == "postgresql://db/cli"


def _fill(cat: Catalog) -> None:
    cat.put_user("admin", "admin")
    cat.put_user("vera", "viewer", "planning", by="admin")
    v = VersionInfo(dataset="pois", version=1, created="2026-01-02T03:04:05+00:00", created_by="admin",
                    source_path="pois.csv", source_sha256="ab" * 32, rows_read=3, rows_kept=3, rows_quarantined=0,
                    columns=[{"name": "名称", "type": "string"}], extent=[24.9, 60.1, 25.0, 60.2], time_min=None,
                    time_max=None, path="data/pois/v1", quarantine_path=None, params={"k": 1.5}, code_version="t")
    cat.add_version(name="pois", schema="poi", kind="ingested", department="planning", classification="public",
                    description="兴趣点", source="pois.csv", licence="ODbL", owner="admin", version=v)
    cat.issue_token("vera", label="backup test")
    cat.audit(user="vera", role="viewer", action="read", dataset="pois", version=1, rows=3)


def _snapshot(cat: Catalog) -> dict[str, object]:
    return {"datasets": [d.to_dict() for d in cat.all_datasets()], "users": cat.users(), "tokens": cat.tokens(),
            "audit": cat.audit_log(), "jobs": cat.jobs(), "version": cat.db.schema_version()}


def test_pg_dump_backup_restores_identical(pg_cluster, pg_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """docs/deployment.md's backup and restore: pg_dump -Fc, then pg_restore into a new database."""
    cat = Catalog(pg_url)
    _fill(cat)
    dump = tmp_path / "citytwin.dump"
    pg_cluster.run("pg_dump", "-Fc", "-f", str(dump), pg_url)
    restored = pg_cluster.fresh_database()
    try:
        pg_cluster.run("pg_restore", "--clean", "--if-exists", "--no-owner", "-d", restored, str(dump))
        again = Catalog(restored)
        assert _snapshot(again) == _snapshot(cat)
        again.audit(user="admin", role="admin", action="after restore")  # the id sequences came along too
        assert again.audit_log(limit=1)[0]["id"] == cat.audit_log(limit=1)[0]["id"] + 1
    finally:
        pg_cluster.drop(restored)


def test_many_new_sqlite_files_opened_by_eight_threads_at_once(tmp_path: Path) -> None:
    """WAL mode asked by eight threads on a new file: SQLite refuses some at once with 'database is locked'
    (no busy handler there), which failed CI about once in twelve before :func:`sqlite_open.set_wal`
    retried it. Forty new files make a miss of the old race unlikely (0.92**40 < 4 %)."""
    from concurrent.futures import ThreadPoolExecutor

    def open_it(target: str) -> int:
        return len(records.Database(target, NOTES).migrate())

    for i in range(40):
        target = str(tmp_path / f"notes{i}.sqlite")
        with ThreadPoolExecutor(8) as pool:
            applied = list(pool.map(open_it, [target] * 8))
        assert sorted(applied) == [0] * 7 + [2]


class _LockedCon:
    """A connection whose WAL pragma is refused ``times`` times (our retry logic, not SQLite's)."""

    def __init__(self, times: int, message: str = "database is locked") -> None:
        self.times, self.message, self.calls = times, message, 0

    def execute(self, sql: str) -> None:
        assert sql == "PRAGMA journal_mode=WAL"
        self.calls += 1
        if self.calls <= self.times:
            raise sqlite3.OperationalError(self.message)


def test_set_wal_retries_a_locked_file_then_gives_a_clear_error() -> None:
    from citytwin.foundation.sqlite_open import set_wal

    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    con = _LockedCon(5)
    set_wal(con, "x.sqlite", clock=lambda: now[0], sleep=sleep)  # type: ignore[arg-type]
    assert con.calls == 6 and slept == [0.001, 0.002, 0.004, 0.008, 0.016]
    now[0] = 0.0
    forever = _LockedCon(10**9)
    with pytest.raises(CitytwinError, match=r"x\.sqlite in WAL mode: it stayed locked for 1 s"):
        set_wal(forever, "x.sqlite", timeout_s=1, clock=lambda: now[0], sleep=sleep)  # type: ignore[arg-type]
    assert max(slept) == 0.05  # the sleep grows to 50 ms, no more
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):  # not a lock: no retry
        set_wal(_LockedCon(1, "disk I/O error"), "x.sqlite")  # type: ignore[arg-type]


def test_concurrent_openers_migrate_once(target: str) -> None:
    """Eight threads open a new database at once: the store's lock lets one migrate, the others see it done."""
    from concurrent.futures import ThreadPoolExecutor

    def open_it(_: int) -> int:
        db = records.Database(target, NOTES)
        return len(db.migrate())

    with ThreadPoolExecutor(8) as pool:
        applied = list(pool.map(open_it, range(8)))
    assert sorted(applied) == [0] * 7 + [2]  # one opener applied both steps
    with records.Database(target, NOTES).connect() as con:
        assert [tuple(r) for r in con.execute("SELECT store, version FROM schema_version")] == [("notes", 2)]
