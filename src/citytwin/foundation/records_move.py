"""Move an embedded workspace's records (its SQLite files) into a PostgreSQL database (issue 19).

What moves: every record store of the workspace that has a file — the catalog (datasets, versions,
lineage, users, API tokens, the audit log, jobs: ``WS/catalog.sqlite`` or the SQLite file its
``database`` setting names), the case store (``WS/cases/cases.sqlite``) and the project store
(``WS/planning/projects.sqlite``). Dataset files (Parquet) and the twin's stores stay where they are.

How (:func:`move_records`):

1. the target's schema is brought to this citytwin's version (each store's migrations, as when a
   store opens), and so is each source file;
2. in **one PostgreSQL transaction** holding every store's write lock: the target must hold no
   record (else refused, unless ``replace``: then its rows are deleted first); every table of every
   store is copied with ``COPY`` in row order, ids and SQLite's implicit ``rowid`` (the order column
   of the project store's histories) kept; each value is checked to arrive unchanged (an ``INTEGER``
   column holding ``1.5`` or text, text holding a NUL byte: refused, naming file, row and column,
   never rounded); row counts are compared; every id sequence is set past the highest id ever given
   (SQLite's ``sqlite_sequence`` included, so deleted ids are not reused); one audit row
   ``records.move`` is written; the new settings file is prepared; then it commits;
3. the workspace's ``database`` setting is switched to the URL (an atomic rename of ``citytwin.json``);
4. each SQLite file is checkpointed and renamed ``NAME.moved`` (kept as the copy it was, not used
   again; renaming it back and removing the setting returns the workspace to it).

A failure before the commit (a bad value, a lost connection, an interrupt) leaves the target without
any record (its empty tables may exist), the workspace's setting unchanged and the SQLite files in
place. Stop the services that write the workspace (``citytwin serve``, ``twin ingest``) first: a
write that lands in a SQLite file after its copy is not moved.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from citytwin.foundation import records
from citytwin.foundation.errors import CitytwinError, InputError
from citytwin.foundation.records import Store
from citytwin.foundation.sql import ident

__all__ = ["MOVED_SUFFIX", "MoveResult", "TableMove", "move_records", "store_tables"]

#: suffix of a SQLite file whose records were moved (kept, no longer used)
MOVED_SUFFIX = ".moved"
MARKER = "citytwin.json"
_CHUNK = 5000

#: ``progress(store, table, rows copied so far in all tables, rows to copy in all)``
Progress = Callable[[str, str, int, int], None]


@dataclass
class TableMove:
    """One table copied: its store, name and rows."""

    store: str
    table: str
    rows: int


@dataclass
class MoveResult:
    """What :func:`move_records` did."""

    workspace: str
    target: str  # the URL, password shown as ***
    sources: dict[str, str]  # store -> SQLite file copied
    tables: list[TableMove]
    sequences: dict[str, int]  # "table.column" -> the last id given
    replaced: int  # rows deleted from the target first (``replace``)
    kept: list[str]  # the SQLite files, renamed
    left: list[str] = field(default_factory=list)  # tables in a source file that belong to no store
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = self.rows
        return d


def _stores() -> tuple[Store, ...]:
    from citytwin.foundation.cases import CASES_STORE
    from citytwin.foundation.catalog import CATALOG_STORE
    from citytwin.foundation.projects import PROJECTS_STORE

    return CATALOG_STORE, CASES_STORE, PROJECTS_STORE


def store_tables(store: Store) -> list[str]:
    """The tables a store's migrations create, in creation order (parents before the tables that refer to them).

    Examples
    --------
    >>> store_tables(Store("s", ("CREATE TABLE IF NOT EXISTS a (x TEXT); CREATE TABLE b (y TEXT)",)))
    ['a', 'b']
    """
    import re

    out: list[str] = []
    for step in store.steps:
        for name in re.findall(r'CREATE TABLE (?:IF NOT EXISTS )?"?(\w+)', step, flags=re.I):
            if name not in out:
                out.append(name)
    return out


def check_target(url: str) -> str:
    """``url`` if it names a PostgreSQL database, else a clear error (its password never shown).

    Examples
    --------
    >>> check_target("postgresql://city@db.example/citytwin")
    'postgresql://city@db.example/citytwin'
    >>> check_target("mysql://city:pw@db/x")
    Traceback (most recent call last):
    ...
    citytwin.foundation.errors.InputError: field 'to': the records can move only to PostgreSQL, not mysql://…
      hint: write postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or keep the password in ~/.pgpass)
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    hint = "write postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or keep the password in ~/.pgpass)"
    if not records.is_postgres(url):
        shown = f"{scheme}://…" if scheme else "a plain path"
        raise InputError(f"the records can move only to PostgreSQL, not {shown}", field="to", hint=hint)
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise InputError(f"cannot read the database URL {_safe(url)}: {exc}", field="to", hint=hint) from None
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise InputError(f"the database URL {_safe(url)} names no database", field="to", hint=hint)
    return url


def _safe(url: str) -> str:
    try:
        return records.redact(url)
    except ValueError:
        return f"{url.split(':', 1)[0]}://…"


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _source_url(root: Path) -> str:
    """The workspace's own records (its ``database`` setting, else its SQLite file), ignoring
    ``$CITYTWIN_DATABASE``: what there is to move."""
    try:
        settings = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        settings = {}
    setting = settings.get("database") if isinstance(settings, dict) else None
    default = root / "catalog.sqlite"
    return records.resolve_url(setting, None, default) if setting else f"sqlite:///{default}"


def move_records(root: str | Path, to: str, *, user: str | None = None, replace: bool = False,
                 progress: Progress | None = None) -> MoveResult:
    """Move the records of the workspace at ``root`` from its SQLite files into the PostgreSQL database
    ``to`` and make the workspace use it (see the module docstring for each step).

    Parameters
    ----------
    root
        The workspace folder.
    to
        ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB``.
    user
        Who moves (an admin of the workspace; default: as :class:`Workspace` resolves it).
    replace
        Delete the records the target already holds first (else a target with records is refused).
    progress
        Called as rows are copied: ``progress(store, table, done, total)``.

    Returns
    -------
    MoveResult
        The tables and rows copied, the sequences set, the files kept.
    """
    from citytwin.foundation import access
    from citytwin.foundation.workspace import Workspace

    check_target(to)
    root = Path(root).resolve()
    source = _source_url(root)
    if records.is_postgres(source):
        raise CitytwinError(f"the records of {root} are already in PostgreSQL ({records.redact(source)})",
                            hint="nothing to move; `citytwin doctor -w WS` checks that database")
    ws = Workspace(root, user=user, database=source)  # the SQLite records, whatever $CITYTWIN_DATABASE says
    access.require_admin(ws.user)
    catalog_store, cases_store, projects_store = _stores()
    candidates = ((catalog_store, records.sqlite_path(source).resolve()), (cases_store, root / "cases" / "cases.sqlite"),
                  (projects_store, root / "planning" / "projects.sqlite"))
    sources = [(s, p) for s, p in candidates if p.exists()]
    for store, path in sources:
        records.open_store(path, store)  # the source at this citytwin's schema, as when it opens
    with _pg_errors(to):
        for store in (catalog_store, cases_store, projects_store):
            records.open_store(to, store)
        result = _copy(ws, to, sources, replace=replace, progress=progress)
    for _, path in sources:
        try:
            result.kept.append(str(_retire(path)))
        except OSError as exc:
            result.notes.append(f"{path} could not be renamed ({exc.strerror or exc}); it is no longer used")
    env = os.environ.get(records.ENV_DATABASE)
    if env and env != to:
        result.notes.append(f"${records.ENV_DATABASE} is set ({_safe(env)}) and overrides the workspace's "
                            "database setting in this environment")
    return result


@contextmanager
def _pg_errors(url: str) -> Iterator[None]:
    """PostgreSQL's errors as a clear message that never shows the URL's password."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = getattr(getattr(exc, "diag", None), "message_detail", None)
        if detail:
            msg = f"{msg} ({detail})"
        pw = _password(url)
        if pw:
            msg = msg.replace(pw, "***")
        raise CitytwinError(f"moving the records to {_safe(url)} failed: {msg}",
                            hint="nothing was moved: the target holds no record of this workspace and the "
                                 "workspace still uses its SQLite files") from None


def _target_columns(con: records.Connection, table: str) -> list[tuple[str, str]]:
    rows = con.execute("SELECT column_name, data_type FROM information_schema.columns"
                       " WHERE table_schema=current_schema() AND table_name=? ORDER BY ordinal_position",
                       (table,)).fetchall()
    return [(r[0], r[1]) for r in rows]


_ALLOWED: dict[str, set[type]] = {"bigint": {int, type(None)}, "double precision": {int, float, type(None)},
                                  "text": {str, type(None)}}


def _chunk_ok(rows: list[Any], target: list[tuple[str, str]]) -> bool:
    """Whether every value of ``rows`` (rowid first) arrives unchanged: the types of each column as a set
    and the NUL test on joined text run in C (a chunk that fails is scanned row by row for the message)."""
    cols = list(zip(*rows, strict=True))[1:]
    for (_, pgtype), col in zip(target, cols, strict=True):
        kinds = set(map(type, col))
        allowed = _ALLOWED.get(pgtype)
        if allowed is None:
            if bytes in kinds:
                return False
        elif not kinds <= allowed or (pgtype == "text" and "\x00" in "".join(filter(None, col))):
            return False
    return True


def _check_value(value: Any, pgtype: str) -> bool:
    """Whether PostgreSQL's ``pgtype`` holds ``value`` (as SQLite returned it) unchanged."""
    if value is None:
        return True
    if pgtype == "bigint":
        return isinstance(value, int)
    if pgtype == "double precision":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if pgtype == "text":
        return isinstance(value, str) and "\x00" not in value
    return not isinstance(value, bytes)


def _copy(ws: Any, to: str, sources: list[tuple[Store, Path]], *, replace: bool,
          progress: Progress | None) -> MoveResult:
    stores = _stores()
    all_tables = [t for s in stores for t in store_tables(s)]
    db = records.Database(to, stores[0])
    settings_tmp = ws.root / (MARKER + ".move.tmp")
    result = MoveResult(workspace=str(ws.root), target=_safe(to), sources={s.name: str(p) for s, p in sources},
                        tables=[], sequences={}, replaced=0, kept=[])
    src_cons = {s.name: _open_source(p) for s, p in sources}
    try:
        with db.connect() as con, con.raw.transaction():
            for s in stores:  # every store's write lock: no citytwin process writes the target meanwhile
                con.execute("SELECT pg_advisory_xact_lock(?)", (records._lock_key(s.name),))
            held = {t: int(con.execute(f"SELECT count(*) FROM {ident(t)}").fetchone()[0]) for t in all_tables}
            held = {t: n for t, n in held.items() if n}
            if held and not replace:
                listed = ", ".join(f"{t} {n}" for t, n in held.items())
                raise CitytwinError(f"the target database {_safe(to)} already holds records ({listed} rows)",
                                    hint="choose an empty database, or pass --replace to delete those records "
                                         "first (they are lost)")
            if held:
                con.execute(f"TRUNCATE {', '.join(ident(t) for t in all_tables)}")
                result.replaced = sum(held.values())
            for sc in src_cons.values():
                sc.execute("BEGIN IMMEDIATE")  # one snapshot per file; writers wait
            plan = []
            for store, path in sources:
                src = src_cons[store.name]
                have = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                tables = store_tables(store)
                result.left += [f"{path}:{t}" for t in sorted(have - set(tables) - {"schema_version"})
                                if not t.startswith("sqlite_")]
                for t in tables:
                    n = int(src.execute(f"SELECT count(*) FROM {ident(t)}").fetchone()[0]) if t in have else 0
                    plan.append((store, path, t, n, t in have))
            total, done = sum(p[3] for p in plan), 0
            for store, path, table, n, present in plan:
                if present:
                    done = _copy_table(con, src_cons[store.name], store.name, path, table, done, total, progress)
                got = int(con.execute(f"SELECT count(*) FROM {ident(table)}").fetchone()[0])
                if got != n:
                    raise CitytwinError(f"table {table}: {got} rows arrived in {_safe(to)} of {n} in {path}",
                                        hint="nothing was moved; run the move again")
                result.tables.append(TableMove(store.name, table, n))
            result.sequences = _set_sequences(con, all_tables, src_cons)
            result.notes += [f"{n} rows of the target were deleted first (--replace)"] if result.replaced else []
            detail = (f"records moved from SQLite ({', '.join(str(p) for _, p in sources)}) to {_safe(to)}: "
                      f"{result.rows} rows; database setting switched")
            con.execute('INSERT INTO audit(ts, "user", role, action, dataset, version, rows, outcome, detail)'
                        " VALUES (?,?,?,?,?,?,?,?,?)",
                        (_now(), ws.user.name, ws.user.role, "records.move", None, None, result.rows, "ok", detail))
            _prepare_settings(ws.root, settings_tmp, to)
        try:
            os.replace(settings_tmp, ws.root / MARKER)  # committed: the workspace now uses the target
        except OSError as exc:
            raise CitytwinError(f"the records were moved to {_safe(to)}, but the workspace's setting could not "
                                f"be written: {exc.strerror or exc}",
                                hint=f'set "database" in {ws.root / MARKER} to that URL by hand') from None
    finally:
        for sc in src_cons.values():
            sc.close()
        settings_tmp.unlink(missing_ok=True)
    return result


def _now() -> str:
    from citytwin.foundation.catalog import now

    return now()


def _open_source(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    con.execute("PRAGMA busy_timeout=30000")
    return con


def _copy_table(con: records.Connection, src: sqlite3.Connection, store: str, path: Path, table: str,
                done: int, total: int, progress: Progress | None) -> int:
    """Copy one table with ``COPY``, checking each value arrives unchanged; returns rows done so far."""
    target = _target_columns(con, table)
    src_cols = [r[1] for r in src.execute(f"PRAGMA table_info({ident(table)})")]
    extra = [c for c in src_cols if c not in {name for name, _ in target}]
    if extra:
        raise CitytwinError(f"{path}: table {table} has columns the target's schema lacks: {', '.join(extra)}",
                            hint="nothing was moved; upgrade citytwin to the version that wrote this workspace")
    select = []
    for name, _ in target:
        if name in src_cols:
            select.append(ident(name))
        elif name == "rowid":  # SQLite's implicit row id: an explicit column on PostgreSQL
            select.append("rowid")
        else:
            raise CitytwinError(f"{path}: table {table} lacks the column {name} of the target's schema",
                                hint="nothing was moved; open the workspace once with this citytwin, then move")
    cols = ", ".join(ident(n) for n, _ in target)
    cur = src.execute(f"SELECT rowid, {', '.join(select)} FROM {ident(table)} ORDER BY rowid")
    with con.raw.cursor() as pg, pg.copy(f"COPY {ident(table)} ({cols}) FROM STDIN") as copy:
        while rows := cur.fetchmany(_CHUNK):
            if not _chunk_ok(rows, target):
                for row in rows:
                    for (name, pgtype), value in zip(target, row[1:], strict=True):
                        if not _check_value(value, pgtype):
                            raise InputError(f"table {table}: {value!r} cannot be stored as PostgreSQL "
                                             f"{pgtype} unchanged", file=str(path), row=int(row[0]), field=name,
                                             hint="nothing was moved; correct the value in the SQLite file "
                                                  "(row = its rowid), then move again")
            for row in rows:
                copy.write_row(row[1:])
            done += len(rows)
            if progress is not None:
                progress(store, table, done, total)
    return done


def _set_sequences(con: records.Connection, tables: list[str], src_cons: dict[str, sqlite3.Connection]
                   ) -> dict[str, int]:
    """Every id sequence set past the highest id (SQLite's ``sqlite_sequence`` too: ids never reused)."""
    seen: dict[str, int] = {}
    for src in src_cons.values():
        if src.execute("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'").fetchone():
            for name, seq in src.execute("SELECT name, seq FROM sqlite_sequence"):
                seen[name] = max(seen.get(name, 0), int(seq))
    out: dict[str, int] = {}
    serial = con.execute("SELECT table_name, column_name FROM information_schema.columns"
                         " WHERE table_schema=current_schema() AND column_default LIKE 'nextval(%'"
                         " ORDER BY table_name, column_name").fetchall()
    for table, column in serial:
        if table not in tables:
            continue
        top = con.execute(f"SELECT max({ident(column)}) FROM {ident(table)}").fetchone()[0]
        last = max(int(top or 0), seen.get(table, 0) if column == "id" else 0)
        seq = con.execute("SELECT pg_get_serial_sequence(?, ?)", (ident(table), column)).fetchone()[0]
        if last:
            con.execute("SELECT setval(?, ?, true)", (seq, last))
        else:
            con.execute("SELECT setval(?, 1, false)", (seq,))
        out[f"{table}.{column}"] = last
    return out


def _prepare_settings(root: Path, tmp: Path, to: str) -> None:
    """Write the new ``citytwin.json`` (``database`` = ``to``) beside the old one, same mode."""
    marker = root / MARKER
    settings = json.loads(marker.read_text(encoding="utf-8"))
    settings["database"] = to
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IMODE(marker.stat().st_mode))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(settings, indent=2, ensure_ascii=False))
        f.flush()
        os.fsync(f.fileno())


def _retire(path: Path) -> Path:
    """Checkpoint a moved SQLite file into one file and rename it ``NAME.moved`` (its WAL along, if any)."""
    try:
        con = sqlite3.connect(path, timeout=5, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=DELETE")
        finally:
            con.close()
    except sqlite3.Error:
        pass  # another process holds it: its WAL is renamed with it below
    moved = path.with_name(path.name + MOVED_SUFFIX)
    os.replace(path, moved)
    for side in ("-wal", "-shm"):
        extra = path.with_name(path.name + side)
        if extra.exists():
            os.replace(extra, moved.with_name(moved.name + side))
    return moved
