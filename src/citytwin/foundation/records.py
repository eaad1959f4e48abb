"""Where the records live: one small connection layer over SQLite and PostgreSQL, chosen by URL.

The record stores (the catalog, the case store, the project store) write plain SQL in the dialect
both engines accept and go through :class:`Connection`, which hides the few differences:

* placeholders: the stores write ``?``; on PostgreSQL they become ``%s`` (a literal ``%`` is escaped);
* rows: a row is read by position or by name (``row[0]``, ``row["name"]``, ``dict(row)``) on both;
* new ids: :meth:`Connection.insert` returns the id through ``RETURNING id`` (both engines);
* transactions: :meth:`Connection.transaction` takes the store's write lock (SQLite's
  ``BEGIN IMMEDIATE``; a transaction-scoped advisory lock on PostgreSQL) and commits or rolls back;
* DDL: the stores write SQLite types; on PostgreSQL ``INTEGER`` becomes ``BIGINT``, ``REAL``
  becomes ``DOUBLE PRECISION``, ``INTEGER PRIMARY KEY AUTOINCREMENT`` becomes ``BIGSERIAL PRIMARY KEY``
  and ``{rowid}`` (SQLite's implicit row id, used for ordering) becomes an explicit ``rowid`` column.

Which database: a URL ``postgresql://user@host:port/db`` (credentials may come from libpq's
``~/.pgpass`` or ``PGPASSWORD`` instead of the URL), ``sqlite:///path`` or a plain path (the
embedded default: one SQLite file per store in the workspace folder). :func:`resolve_url` picks
it: an explicit ``--database``, else ``$CITYTWIN_DATABASE``, else the workspace's ``database``
setting, else the workspace's own SQLite file. On PostgreSQL every store of a workspace shares
the one database (their table names do not clash).

Migrations: each store is a :class:`Store` with ordered steps; :func:`open_store` applies the
steps the database has not had yet (recorded in the ``schema_version`` table, one row per store) in
one locked transaction, so two processes opening an old database at once migrate it once. A
database newer than this citytwin is refused with a clear error.

Examples
--------
>>> import tempfile
>>> store = Store("example", ("CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL)",))
>>> db = open_store(Path(tempfile.mkdtemp()) / "notes.sqlite", store)
>>> with db.connect() as con:
...     first = con.insert("INSERT INTO notes(text) VALUES (?)", ("hello",))
...     dict(con.execute("SELECT * FROM notes WHERE id=?", (first,)).fetchone())
{'id': 1, 'text': 'hello'}
>>> db.schema_version(), db.dialect
(1, 'sqlite')
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from citytwin.foundation.errors import CitytwinError
from citytwin.foundation.sqlite_open import connect_wal

__all__ = ["ENV_DATABASE", "Connection", "Database", "Store", "integrity_errors", "open_store", "redact",
           "resolve_url"]

#: environment variable naming the records database (a URL or a path)
ENV_DATABASE = "CITYTWIN_DATABASE"

_PG_SCHEMES = ("postgresql", "postgres")
#: idle PostgreSQL connections kept per URL (a small pool shared by the threads of a process)
POOL_SIZE = 8


class Cursor(Protocol):
    """What a store reads from a statement (sqlite3's and psycopg's cursors both have it)."""

    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


def integrity_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of a unique or foreign-key constraint refusing a write, on either engine (for
    ``except records.integrity_errors():``; psycopg is imported only where PostgreSQL is used, since
    importing it costs 0.1-0.2 s that an embedded workspace need not pay)."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:  # no PostgreSQL connection was made in this process
        return (sqlite3.IntegrityError,)
    return (sqlite3.IntegrityError, psycopg.errors.IntegrityError)


def is_postgres(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL database (a ``postgresql://`` URL)."""
    return isinstance(target, str) and target.split(":", 1)[0].lower() in _PG_SCHEMES


def sqlite_path(target: str | Path) -> Path:
    """The file of a ``sqlite:///path`` URL or a plain path."""
    s = str(target)
    if s.startswith("sqlite:///"):
        return Path(s[len("sqlite://"):])
    if s.startswith("sqlite:"):
        raise CitytwinError(f"cannot read the SQLite URL {s!r}", hint="write sqlite:///ABSOLUTE/PATH or a plain path")
    return Path(s)


def redact(url: str | Path) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs).

    Examples
    --------
    >>> redact("postgresql://city:s3cret@db.example:5432/citytwin")
    'postgresql://city:***@db.example:5432/citytwin'
    """
    s = str(url)
    if not is_postgres(s):
        return s
    parts = urlsplit(s)
    if parts.password is None:
        return s
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def resolve_url(explicit: str | Path | None, setting: str | None, default: Path) -> str:
    """The records database of a workspace: ``explicit`` (``--database``), else ``$CITYTWIN_DATABASE``,
    else the workspace's ``database`` setting, else ``default`` (its SQLite file) as ``sqlite:///``.

    Examples
    --------
    >>> resolve_url("postgresql://db/city", "postgresql://db/other", Path("/ws/catalog.sqlite"))
    'postgresql://db/city'
    >>> resolve_url("/ws/records.sqlite", None, Path("/ws/catalog.sqlite"))
    'sqlite:////ws/records.sqlite'
    """
    for value in (explicit, os.environ.get(ENV_DATABASE), setting):
        if value:
            s = str(value)
            return s if is_postgres(s) or s.startswith("sqlite:") else f"sqlite:///{Path(s).resolve()}"
    return f"sqlite:///{default}"


# -- SQL translation ----------------------------------------------------------------------------

_STRING_OR_MARK = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"])*\"|\?|%")


@lru_cache(maxsize=1024)
def to_postgres(sql: str) -> str:
    """``?`` placeholders as ``%s`` (outside quoted text), a literal ``%`` as ``%%``.

    Examples
    --------
    >>> to_postgres("SELECT * FROM t WHERE a=? AND b LIKE 'x%' AND c='?'")
    "SELECT * FROM t WHERE a=%s AND b LIKE 'x%%' AND c='?'"
    """
    def sub(m: re.Match[str]) -> str:
        t = m.group(0)
        if t == "?":
            return "%s"
        if t == "%":
            return "%%"
        return t.replace("%", "%%") if t.startswith("'") else t

    return _STRING_OR_MARK.sub(sub, sql)


_DDL_TYPES = ((re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
              (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
              (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"))


def ddl(script: str, dialect: str) -> list[str]:
    """The statements of a DDL script written for SQLite, for ``dialect`` (comments dropped).

    Examples
    --------
    >>> ddl("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, {rowid} x REAL); -- done", "postgresql")
    ['CREATE TABLE t (id BIGSERIAL PRIMARY KEY, rowid BIGSERIAL, x DOUBLE PRECISION)']
    >>> ddl("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, {rowid} x REAL)", "sqlite")
    ['CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT,  x REAL)']
    """
    text = re.sub(r"--[^\n]*", "", script)
    if dialect == "postgresql":
        text = text.replace("{rowid}", "rowid BIGSERIAL,")
        for pattern, repl in _DDL_TYPES:
            text = pattern.sub(repl, text)
    else:
        text = text.replace("{rowid}", "")
    return [s.strip() for s in text.split(";") if s.strip()]


class Row(Sequence[Any]):
    """A PostgreSQL row read by position or by name, like :class:`sqlite3.Row`."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = tuple(values)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, Sequence) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description
    index = {c.name: i for i, c in enumerate(desc)} if desc else {}

    def make(values: Sequence[Any]) -> Row:
        return Row(index, values)

    return make


# -- connections -------------------------------------------------------------------------------

class Connection:
    """One open connection to a records database (see the module docstring for what it hides)."""

    def __init__(self, raw: Any, dialect: str, store: str) -> None:
        self.raw = raw
        self.dialect = dialect
        self.store = store
        self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement with ``?`` placeholders; returns its cursor."""
        if self.dialect != "postgresql":
            cur: Cursor = self.raw.execute(sql, params)
            return cur
        try:
            cur = self.raw.execute(to_postgres(sql), tuple(params))
        except Exception as exc:
            _raise_read_only(exc, self.raw)
            raise
        return cur

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement with ``?`` placeholders once per parameter row."""
        if self.dialect == "postgresql":
            try:
                with self.raw.cursor() as cur:
                    cur.executemany(to_postgres(sql), [tuple(r) for r in rows])
            except Exception as exc:
                _raise_read_only(exc, self.raw)
                raise
        else:
            self.raw.executemany(sql, rows)

    def executescript(self, script: str) -> None:
        """Run a DDL script written for SQLite (see :func:`ddl`), statement by statement."""
        for stmt in ddl(script, self.dialect):
            self.raw.execute(stmt)

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an ``INSERT`` into a table with an ``id`` column and return the new row's id."""
        row = self.execute(sql + " RETURNING id", params).fetchone()
        return int(row[0])

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction holding the store's write lock: commits on exit, rolls back on an exception."""
        if self._depth:
            raise RuntimeError("nested records transaction")
        self._depth = 1
        try:
            if self.dialect == "postgresql":
                with self.raw.transaction():
                    self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.store),))
                    yield self
            else:
                self.raw.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    self.raw.execute("ROLLBACK")
                    raise
                self.raw.execute("COMMIT")
        finally:
            self._depth = 0


#: PostgreSQL's SQLSTATE of a write refused in a read-only transaction (a hot standby's every transaction)
READ_ONLY_SQLSTATE = "25006"


def _raise_read_only(exc: BaseException, raw: Any) -> None:
    """Raise a :class:`CitytwinError` instead of ``exc`` when PostgreSQL refused a write in a read-only
    transaction: every transaction of a hot standby (a replica) is one, and citytwin writes its records
    to the primary only (so is a database or role with ``default_transaction_read_only``)."""
    if getattr(exc, "sqlstate", None) != READ_ONLY_SQLSTATE:
        return
    info = raw.info
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    raise CitytwinError(
        f"the records database {info.host}:{info.port}/{info.dbname} is read-only (a hot-standby replica?): "
        f"PostgreSQL refused a write ({first})",
        hint="point CITYTWIN_DATABASE (or --database) at the primary; a replica only serves reads "
             "(docs/deployment.md, 'PostgreSQL with a replica')") from None


def _lock_key(store: str) -> int:
    return zlib.crc32(f"citytwin:{store}".encode()) - 2**31


_POOL: dict[str, list[Any]] = {}
_POOL_LOCK = threading.Lock()


def _pg_connect(url: str) -> Any:
    import psycopg

    with _POOL_LOCK:
        idle = _POOL.get(url, [])
        while idle:
            raw = idle.pop()
            if not raw.closed and raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                return raw
            raw.close()
    try:
        return psycopg.connect(url, autocommit=True, row_factory=_row_factory, connect_timeout=10,
                               application_name="citytwin")
    except psycopg.Error as exc:
        raise CitytwinError(f"cannot reach the records database {redact(url)}: {str(exc).strip()}",
                            hint="check the URL (CITYTWIN_DATABASE or --database), that PostgreSQL runs "
                                 "and that the user may log in; `citytwin doctor` checks it") from None


def _pg_release(url: str, raw: Any) -> None:
    import psycopg

    ok = not raw.closed and raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with _POOL_LOCK:
        idle = _POOL.setdefault(url, [])
        if ok and len(idle) < POOL_SIZE:
            idle.append(raw)
            return
    raw.close()


def dispose(url: str) -> None:
    """Close the idle pooled connections to ``url`` (before dropping that database, in tests)."""
    with _POOL_LOCK:
        idle = _POOL.pop(url, [])
    for raw in idle:
        raw.close()


@dataclass(frozen=True)
class Store:
    """A record store: its name (the ``schema_version`` key) and ordered migration steps.

    Step ``i`` (from 1) is a DDL script written for SQLite (translated by :func:`ddl`). A database
    made before versioning has version 0: the first step of every store uses ``IF NOT EXISTS``, so
    it is a no-op on such a database and the later steps bring it up to date.
    """

    name: str
    steps: tuple[str, ...]

    @property
    def version(self) -> int:
        return len(self.steps)


_VERSION_DDL = ("CREATE TABLE IF NOT EXISTS schema_version (store TEXT PRIMARY KEY, version INTEGER NOT NULL,"
                " updated TEXT NOT NULL)")


class Database:
    """One store's database: :meth:`connect` yields a :class:`Connection`.

    Parameters
    ----------
    target
        A ``postgresql://`` URL, a ``sqlite:///`` URL or a path of a SQLite file.
    store
        The store (its name keys its lock and its schema version).
    """

    def __init__(self, target: str | Path, store: Store) -> None:
        self.store = store
        if is_postgres(target):
            self.dialect = "postgresql"
            self.url = str(target)
            self.path: Path | None = None
        else:
            self.dialect = "sqlite"
            self.path = sqlite_path(target)
            self.url = f"sqlite:///{self.path}"

    def __repr__(self) -> str:
        return f"Database({redact(self.url)!r}, store={self.store.name!r})"

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """An open connection (a pooled one on PostgreSQL), closed or returned to the pool at exit."""
        if self.dialect == "postgresql":
            raw = _pg_connect(self.url)
            try:
                yield Connection(raw, "postgresql", self.store.name)
            finally:
                _pg_release(self.url, raw)
            return
        assert self.path is not None
        con = connect_wal(self.path, what="the records database", row_factory=True)
        try:
            yield Connection(con, "sqlite", self.store.name)
        finally:
            con.close()

    def schema_version(self) -> int:
        """The store's schema version in this database (0: none recorded)."""
        with self.connect() as con:
            return _version(con, self.store.name)

    def migrate(self) -> list[int]:
        """Apply the steps this database lacks, in one locked transaction; returns the steps applied."""
        with self.connect() as con:
            if _version(con, self.store.name) == self.store.version:
                return []
            with con.transaction():
                con.execute(_VERSION_DDL)
                have = _version(con, self.store.name)
                if have > self.store.version:
                    raise CitytwinError(
                        f"the records database {redact(self.url)} has schema version {have} of store "
                        f"{self.store.name!r}, newer than this citytwin knows ({self.store.version})",
                        hint="upgrade citytwin on this machine to the version that wrote it")
                done = []
                for i in range(have + 1, self.store.version + 1):
                    con.executescript(self.store.steps[i - 1])
                    done.append(i)
                if done:
                    con.execute("INSERT INTO schema_version(store, version, updated) VALUES (?,?,?)"
                                " ON CONFLICT(store) DO UPDATE SET version=excluded.version, updated=excluded.updated",
                                (self.store.name, self.store.version,
                                 datetime.now(UTC).isoformat(timespec="seconds")))
                return done


def _version(con: Connection, store: str) -> int:
    if con.dialect == "postgresql":
        exists = con.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
    else:
        exists = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
                             ).fetchone() is not None
    if not exists:
        return 0
    r = con.execute("SELECT version FROM schema_version WHERE store=?", (store,)).fetchone()
    return int(r[0]) if r else 0


def open_store(target: str | Path, store: Store) -> Database:
    """The database of ``store`` at ``target``, migrated to this citytwin's schema."""
    db = Database(target, store)
    db.migrate()
    return db
