"""The catalog (A3): datasets, versions, lineage, users, API tokens, the audit log and analysis jobs.

The records live in the workspace's records database (:mod:`citytwin.foundation.records`): its own
SQLite file by default (small, transactional, safe for a CLI and a service at once), or PostgreSQL
by URL for a server deployment; the data itself lives in Parquet / GeoParquet files beside it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from citytwin.foundation.errors import AccessDenied, InputError, NotFoundError
from citytwin.foundation.records import Connection, Database, Store, open_store
from citytwin.foundation.roles import CLASSIFICATIONS, check_role

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

_DDL = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    schema TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'ingested',
    department TEXT,
    classification TEXT NOT NULL DEFAULT 'internal',
    description TEXT DEFAULT '',
    source TEXT,
    licence TEXT,
    owner TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    current_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS versions (
    dataset TEXT NOT NULL REFERENCES datasets(name),
    version INTEGER NOT NULL,
    created TEXT NOT NULL,
    created_by TEXT,
    source_path TEXT,
    source_sha256 TEXT,
    rows_read INTEGER,
    rows_kept INTEGER,
    rows_quarantined INTEGER,
    columns_json TEXT,
    extent_json TEXT,
    time_min TEXT,
    time_max TEXT,
    path TEXT NOT NULL,
    quarantine_path TEXT,
    params_json TEXT,
    code_version TEXT,
    PRIMARY KEY (dataset, version)
);
CREATE TABLE IF NOT EXISTS lineage (
    dataset TEXT NOT NULL,
    version INTEGER NOT NULL,
    input_dataset TEXT NOT NULL,
    input_version INTEGER,
    role TEXT DEFAULT 'input'
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    department TEXT,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    "user" TEXT,
    role TEXT,
    action TEXT NOT NULL,
    dataset TEXT,
    version INTEGER,
    rows INTEGER,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_dataset ON audit(dataset);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL UNIQUE,
    "user" TEXT NOT NULL,
    label TEXT,
    created TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    revoked_at TEXT
);
"""

#: step 2: analysis jobs of the operations center, kept across restarts (:mod:`citytwin.service.jobs`)
_JOBS_DDL = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    process TEXT NOT NULL,
    "user" TEXT NOT NULL,
    inputs_json TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    updated TEXT NOT NULL,
    results_json TEXT,
    runner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created);
"""

#: the catalog's migrations: 1 = the schema before versioning, 2 = jobs
CATALOG_STORE = Store("catalog", (_DDL, _JOBS_DDL))


#: Roles that may add users and change roles (:meth:`Catalog.put_user`).
USER_ADMINS: tuple[str, ...] = ("admin",)
#: Roles that may change a dataset's classification (:meth:`Catalog.set_classification`).
CLASSIFIERS: tuple[str, ...] = ("admin", "steward")


def _audit(con: Connection, user: str | None, actor: tuple[str, str] | None, action: str,
           dataset: str | None, outcome: str, detail: str | None) -> None:
    """One audit row, written inside the caller's transaction."""
    con.execute('INSERT INTO audit(ts, "user", role, action, dataset, version, rows, outcome, detail)'
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (now(), user, actor[1] if actor else None, action, dataset, None, None, outcome, detail))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def token_hash(token: str) -> str:
    """SHA-256 (hex) of an API token: what the catalog stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    """Validate a dataset name (lower case letters, digits and ``_``, starting with a letter)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"invalid dataset name {name!r}",
                         hint="use lower-case letters, digits and '_', starting with a letter (max 63)")
    return name


def check_classification(value: str) -> str:
    if value not in CLASSIFICATIONS:
        raise InputError(f"invalid classification {value!r}", hint=f"use one of {', '.join(CLASSIFICATIONS)}")
    return value


@dataclass
class VersionInfo:
    dataset: str
    version: int
    created: str
    created_by: str | None
    source_path: str | None
    source_sha256: str | None
    rows_read: int | None
    rows_kept: int | None
    rows_quarantined: int | None
    columns: list[dict[str, Any]]
    extent: list[float] | None
    time_min: str | None
    time_max: str | None
    path: str
    quarantine_path: str | None
    params: dict[str, Any]
    code_version: str | None


@dataclass
class DatasetInfo:
    name: str
    schema: str
    kind: str
    department: str | None
    classification: str
    description: str
    source: str | None
    licence: str | None
    owner: str | None
    created: str
    updated: str
    current_version: int
    versions: list[VersionInfo] = field(default_factory=list)
    #: inputs of the current version that have a newer version since (see :meth:`Catalog.stale_inputs`)
    stale: list[dict[str, Any]] = field(default_factory=list)

    @property
    def current(self) -> VersionInfo:
        for v in self.versions:
            if v.version == self.current_version:
                return v
        raise NotFoundError(f"dataset {self.name!r} has no version {self.current_version}")

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["versions"] = [dict(v.__dict__) for v in self.versions]
        return d


class Catalog:
    """Records of a workspace: datasets, versions, lineage, users, tokens, audit log and jobs.

    Parameters
    ----------
    target
        The records database: a SQLite file (path or ``sqlite:///`` URL) or a ``postgresql://`` URL;
        migrated to this citytwin's schema when opened.
    """

    def __init__(self, target: str | Path) -> None:
        self.db: Database = open_store(target, CATALOG_STORE)
        #: the SQLite file (None on PostgreSQL)
        self.path: Path | None = self.db.path
        #: the database URL (``sqlite:///…`` or ``postgresql://…``)
        self.url: str = self.db.url

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.db.connect() as con:
            yield con

    # -- datasets --------------------------------------------------------
    def exists(self, name: str) -> bool:
        with self.connect() as con:
            return con.execute("SELECT 1 FROM datasets WHERE name=?", (name,)).fetchone() is not None

    def names(self) -> list[str]:
        with self.connect() as con:
            return [r[0] for r in con.execute("SELECT name FROM datasets ORDER BY name")]

    def get(self, name: str) -> DatasetInfo:
        with self.connect() as con:
            row = con.execute("SELECT * FROM datasets WHERE name=?", (name,)).fetchone()
            if row is None:
                raise NotFoundError(f"no dataset named {name!r} in this workspace",
                                    hint="`citytwin catalog list` shows what there is")
            info = DatasetInfo(**dict(row))
            for v in con.execute("SELECT * FROM versions WHERE dataset=? ORDER BY version", (name,)):
                d = dict(v)
                info.versions.append(VersionInfo(
                    dataset=d["dataset"], version=d["version"], created=d["created"], created_by=d["created_by"],
                    source_path=d["source_path"], source_sha256=d["source_sha256"], rows_read=d["rows_read"],
                    rows_kept=d["rows_kept"], rows_quarantined=d["rows_quarantined"],
                    columns=json.loads(d["columns_json"] or "[]"),
                    extent=json.loads(d["extent_json"]) if d["extent_json"] else None,
                    time_min=d["time_min"], time_max=d["time_max"], path=d["path"],
                    quarantine_path=d["quarantine_path"], params=json.loads(d["params_json"] or "{}"),
                    code_version=d["code_version"],
                ))
        if info.current_version:
            info.stale = self.stale_inputs(name, info.current_version)
        return info

    def head(self, name: str) -> tuple[str, str | None, int] | None:
        """``(classification, department, current_version)`` of a dataset, None if unknown: one indexed
        read, for callers that keep the rest of :meth:`get` per version (a version never changes)."""
        with self.connect() as con:
            r = con.execute("SELECT classification, department, current_version FROM datasets WHERE name=?",
                            (name,)).fetchone()
        return None if r is None else (str(r[0]), r[1], int(r[2]))

    def all_datasets(self) -> list[DatasetInfo]:
        return [self.get(n) for n in self.names()]

    def next_version(self, name: str) -> int:
        with self.connect() as con:
            r = con.execute("SELECT MAX(version) FROM versions WHERE dataset=?", (name,)).fetchone()
            return int(r[0] or 0) + 1

    def add_version(
        self,
        *,
        name: str,
        schema: str,
        kind: str,
        department: str | None,
        classification: str,
        description: str,
        source: str | None,
        licence: str | None,
        owner: str | None,
        version: VersionInfo,
        inputs: list[tuple[str, int | None]] | None = None,
        promote: bool = True,
    ) -> None:
        """Record a new version (and the dataset, if new) in one transaction.

        With ``promote=False`` the version is recorded (its quarantine stays readable) but the
        dataset's current version and description are left as they were.
        """
        check_name(name)
        check_classification(classification)
        ts = now()
        with self.connect() as con, con.transaction():
            existing = con.execute("SELECT name FROM datasets WHERE name=?", (name,)).fetchone()
            if existing is None:
                con.execute(
                    "INSERT INTO datasets(name, schema, kind, department, classification, description, source,"
                    " licence, owner, created, updated, current_version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (name, schema, kind, department, classification, description, source, licence, owner,
                     ts, ts, version.version),
                )
            elif not promote:
                con.execute("UPDATE datasets SET updated=? WHERE name=?", (ts, name))
            else:
                con.execute(
                    "UPDATE datasets SET schema=?, kind=?, department=COALESCE(?, department), classification=?,"
                    " description=CASE WHEN ?<>'' THEN ? ELSE description END, source=COALESCE(?, source),"
                    " licence=COALESCE(?, licence), updated=?, current_version=? WHERE name=?",
                    (schema, kind, department, classification, description, description, source, licence, ts,
                     version.version, name),
                )
            v = version
            con.execute(
                "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (name, v.version, v.created, v.created_by, v.source_path, v.source_sha256, v.rows_read,
                 v.rows_kept, v.rows_quarantined, json.dumps(v.columns, ensure_ascii=False),
                 json.dumps(v.extent) if v.extent else None, v.time_min, v.time_max, v.path,
                 v.quarantine_path, json.dumps(v.params, ensure_ascii=False, default=str), v.code_version),
            )
            for in_name, in_version in inputs or []:
                con.execute("INSERT INTO lineage VALUES (?,?,?,?,?)",
                            (name, v.version, in_name, in_version, "input"))

    def set_classification(self, name: str, classification: str, *, by: str | None) -> None:
        """Change a dataset's classification: ``by`` (the acting user) must be an admin or a steward.

        Allowed or refused, the attempt is one row of the audit log (action ``classify``).

        Examples
        --------
        >>> import tempfile
        >>> cat = Catalog(Path(tempfile.mkdtemp()) / "catalog.sqlite")
        >>> cat.put_user("root", "admin"); cat.put_user("vera", "viewer", by="root")
        >>> cat.set_classification("x", "public", by="vera")
        Traceback (most recent call last):
        ...
        citytwin.foundation.errors.AccessDenied: user 'vera' (role viewer) may not classify datasets (needs role admin or steward)
        """
        check_classification(classification)
        refused: Exception | None = None
        with self.connect() as con, con.transaction():  # the refusal's audit row is committed, then raised
            actor = self._actor(con, by)
            old = con.execute("SELECT classification FROM datasets WHERE name=?", (name,)).fetchone()
            if actor is None or actor[1] not in CLASSIFIERS:
                msg = (f"user {by!r} (role {actor[1] if actor else 'unregistered'}) may not classify datasets"
                       f" (needs role {' or '.join(CLASSIFIERS)})")
                _audit(con, by, actor, "classify", name, "denied", f"{classification}: {msg}")
                refused = AccessDenied(msg)
            elif old is None:
                _audit(con, by, actor, "classify", name, "error", f"{classification}: no such dataset")
                refused = NotFoundError(f"no dataset named {name!r}")
            else:
                con.execute("UPDATE datasets SET classification=?, updated=? WHERE name=?",
                            (classification, now(), name))
                _audit(con, by, actor, "classify", name, "ok", f"{old[0]} -> {classification}")
        if refused is not None:
            raise refused

    @staticmethod
    def _actor(con: Connection, by: str | None) -> tuple[str, str] | None:
        if by is None:
            return None
        r = con.execute("SELECT name, role FROM users WHERE name=?", (by,)).fetchone()
        return (r[0], r[1]) if r else None

    # -- lineage ----------------------------------------------------------
    def inputs_of(self, name: str, version: int) -> list[tuple[str, int | None]]:
        with self.connect() as con:
            return [(r[0], r[1]) for r in con.execute(
                "SELECT input_dataset, input_version FROM lineage WHERE dataset=? AND version=?", (name, version))]

    def outputs_of(self, name: str) -> list[tuple[str, int, int | None]]:
        with self.connect() as con:
            return [(r[0], r[1], r[2]) for r in con.execute(
                "SELECT dataset, version, input_version FROM lineage WHERE input_dataset=? ORDER BY dataset, version",
                (name,))]

    def lineage(self, name: str, version: int | None = None, _depth: int = 0) -> dict[str, Any]:
        """Upstream lineage tree of a dataset version: inputs, parameters and code version, recursively."""
        info = self.get(name)
        v = version or info.current_version
        vi = next((x for x in info.versions if x.version == v), None)
        if vi is None:
            raise NotFoundError(f"dataset {name!r} has no version {v}")
        node: dict[str, Any] = {
            "dataset": name, "version": v, "kind": info.kind, "source": vi.source_path or info.source,
            "params": vi.params, "code_version": vi.code_version, "created": vi.created, "inputs": [],
        }
        if _depth < 20:
            for in_name, in_v in self.inputs_of(name, v):
                if self.exists(in_name):
                    node["inputs"].append(self.lineage(in_name, in_v, _depth + 1))
                else:
                    node["inputs"].append({"dataset": in_name, "version": in_v, "missing": True})
        node["used_by"] = [{"dataset": d, "version": ver} for d, ver, in_v in self.outputs_of(name)
                           if in_v == v or (in_v is None and v == info.current_version)]
        stale = self.stale_inputs(name, v)
        if stale:
            node["stale"] = stale
        return node

    def stale_inputs(self, name: str, version: int | None = None) -> list[dict[str, Any]]:
        """Inputs of a dataset version that have a newer current version than the one it was built on.

        A derived dataset with such inputs is *stale*: rebuilt today, it would use other data.

        Returns
        -------
        list of dict
            ``{"dataset", "used_version", "current_version"}`` for each stale input (empty: up to date).
        """
        v = version or self.get(name).current_version
        out: list[dict[str, Any]] = []
        with self.connect() as con:
            rows = con.execute(
                "SELECT l.input_dataset, l.input_version, d.current_version FROM lineage l"
                " JOIN datasets d ON d.name = l.input_dataset WHERE l.dataset=? AND l.version=?"
                " ORDER BY l.input_dataset, l.input_version", (name, v)).fetchall()
        for in_name, in_v, cur in rows:
            if in_v is not None and cur and in_v < cur:
                out.append({"dataset": in_name, "used_version": in_v, "current_version": cur})
        return out

    # -- users --------------------------------------------------------------
    def put_user(self, name: str, role: str, department: str | None = None, *, by: str | None = None) -> None:
        """Add a user or change their role: ``by`` (the acting user) must be an admin.

        Only the first user of an empty catalog (the workspace's owner) needs no ``by``. Allowed or
        refused, the attempt is one row of the audit log (action ``user.put``).

        Examples
        --------
        >>> import tempfile
        >>> cat = Catalog(Path(tempfile.mkdtemp()) / "catalog.sqlite")
        >>> cat.put_user("root", "admin"); cat.put_user("vera", "viewer", by="root")
        >>> cat.put_user("vera", "admin", by="vera")
        Traceback (most recent call last):
        ...
        citytwin.foundation.errors.AccessDenied: user 'vera' (role viewer) may not manage users (needs role admin)
        >>> [(r["user"], r["outcome"]) for r in cat.audit_log()][:2]
        [('vera', 'denied'), ('root', 'ok')]
        """
        check_role(role)
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"invalid user name {name!r}", field="name")
        refused: AccessDenied | None = None
        with self.connect() as con, con.transaction():  # the refusal's audit row is committed, then raised
            first = con.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0
            actor = self._actor(con, by)
            detail = f"{name}:{role}" + (f":{department}" if department else "")
            if not first and (actor is None or actor[1] not in USER_ADMINS):
                msg = (f"user {by!r} (role {actor[1] if actor else 'unregistered'}) may not manage users"
                       f" (needs role {' or '.join(USER_ADMINS)})")
                _audit(con, by, actor, "user.put", None, "denied", detail)
                refused = AccessDenied(msg)
            else:
                con.execute("INSERT INTO users(name, role, department, created) VALUES (?,?,?,?) "
                            "ON CONFLICT(name) DO UPDATE SET role=excluded.role, department=excluded.department",
                            (name, role, department, now()))
                if first and actor is None:
                    actor = (name, role)  # the owner registers themself
                _audit(con, actor[0] if actor else by, actor, "user.put", None, "ok", detail)
        if refused is not None:
            raise refused

    def get_user(self, name: str) -> dict[str, Any] | None:
        with self.connect() as con:
            r = con.execute("SELECT * FROM users WHERE name=?", (name,)).fetchone()
            return dict(r) if r else None

    def users(self) -> list[dict[str, Any]]:
        with self.connect() as con:
            return [dict(r) for r in con.execute("SELECT * FROM users ORDER BY name")]

    # -- API tokens -----------------------------------------------------------
    def issue_token(self, user: str, label: str | None = None) -> tuple[int, str]:
        """Issue an API token for a registered user; returns ``(id, token)``.

        The plaintext token is returned only here: the catalog keeps its SHA-256 hash.
        (Who may issue tokens is checked by the caller; the CLI requires an admin.)

        Examples
        --------
        >>> import tempfile
        >>> cat = Catalog(Path(tempfile.mkdtemp()) / "catalog.sqlite")
        >>> cat.put_user("ops", "integrator")
        >>> tid, tok = cat.issue_token("ops", label="gateway")
        >>> cat.resolve_token(tok)["role"], cat.resolve_token("wrong")
        ('integrator', None)
        >>> cat.revoke_token(tid)["revoked"], cat.resolve_token(tok)
        (1, None)
        """
        if self.get_user(user) is None:
            raise NotFoundError(f"user {user!r} is not registered in this workspace",
                                hint="an admin adds users with `citytwin user add NAME --role ROLE`")
        token = secrets.token_urlsafe(32)
        with self.connect() as con:
            tid = con.insert('INSERT INTO api_tokens(hash, "user", label, created) VALUES (?,?,?,?)',
                             (token_hash(token), user, label, now()))
            return tid, token

    def tokens(self, user: str | None = None) -> list[dict[str, Any]]:
        """Issued tokens (id, user, label, created, revoked, revoked_at); never the token or its hash."""
        cols = 'id, "user", label, created, revoked, revoked_at'
        with self.connect() as con:
            if user is not None:
                q = con.execute(f'SELECT {cols} FROM api_tokens WHERE "user"=? ORDER BY id', (user,))
            else:
                q = con.execute(f"SELECT {cols} FROM api_tokens ORDER BY id")
            return [dict(r) for r in q]

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        """Revoke a token by id (revoking twice is harmless); returns its record."""
        with self.connect() as con:
            con.execute("UPDATE api_tokens SET revoked=1, revoked_at=COALESCE(revoked_at, ?) WHERE id=?",
                        (now(), token_id))
            r = con.execute('SELECT id, "user", label, created, revoked, revoked_at FROM api_tokens WHERE id=?',
                            (token_id,)).fetchone()
        if r is None:
            raise NotFoundError(f"no API token with id {token_id}", hint="`citytwin user tokens` lists them")
        return dict(r)

    def resolve_token(self, token: str) -> dict[str, Any] | None:
        """The user of a valid token: ``{name, role, department, token_id}``; None if unknown or revoked.

        The user's current role is used, so a role change applies to existing tokens at once.
        """
        if not token:
            return None
        with self.connect() as con:
            r = con.execute("SELECT u.name, u.role, u.department, t.id AS token_id FROM api_tokens t"
                            ' JOIN users u ON u.name = t."user" WHERE t.hash=? AND t.revoked=0',
                            (token_hash(token),)).fetchone()
        return dict(r) if r else None

    # -- audit --------------------------------------------------------------
    def audit(self, *, user: str | None, role: str | None, action: str, dataset: str | None = None,
              version: int | None = None, rows: int | None = None, outcome: str = "ok",
              detail: str | None = None) -> None:
        with self.connect() as con:
            con.execute('INSERT INTO audit(ts, "user", role, action, dataset, version, rows, outcome, detail)'
                        " VALUES (?,?,?,?,?,?,?,?,?)",
                        (now(), user, role, action, dataset, version, rows, outcome, detail))

    def audit_log(self, dataset: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        with self.connect() as con:
            if dataset:
                q = con.execute("SELECT * FROM audit WHERE dataset=? ORDER BY id DESC LIMIT ?", (dataset, limit))
            else:
                q = con.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
            return [dict(r) for r in q]


    # -- analysis jobs (the operations center's processes) ----------------------------
    def put_job(self, job: dict[str, Any]) -> None:
        """Insert or update one job record.

        ``job`` has ``id, process, user, inputs, status, progress, message, created, started, finished,
        results, runner`` (times as ISO 8601 text; ``inputs`` and ``results`` JSON-able).
        """
        row = (job["id"], job["process"], job["user"], json.dumps(job["inputs"], ensure_ascii=False, default=str),
               job["status"], float(job["progress"]), job.get("message"), job["created"], job.get("started"),
               job.get("finished"), now(),
               None if job.get("results") is None else json.dumps(job["results"], ensure_ascii=False, default=str),
               job.get("runner"))
        with self.connect() as con:
            con.execute('INSERT INTO jobs(id, process, "user", inputs_json, status, progress, message, created,'
                        " started, finished, updated, results_json, runner) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                        " ON CONFLICT(id) DO UPDATE SET status=excluded.status, progress=excluded.progress,"
                        " message=excluded.message, started=excluded.started, finished=excluded.finished,"
                        " updated=excluded.updated, results_json=excluded.results_json, runner=excluded.runner",
                        row)

    def jobs(self, limit: int = 500) -> list[dict[str, Any]]:
        """The newest ``limit`` job records, oldest first, with ``inputs`` and ``results`` decoded."""
        with self.connect() as con:
            rows = [dict(r) for r in con.execute("SELECT * FROM jobs ORDER BY created DESC, id DESC LIMIT ?",
                                                 (limit,))]
        for r in rows:
            r["inputs"] = json.loads(r.pop("inputs_json"))
            res = r.pop("results_json")
            r["results"] = None if res is None else json.loads(res)
        return rows[::-1]

    def fail_interrupted_jobs(self, alive: Callable[[str | None], bool]) -> list[str]:
        """Mark failed the queued or running jobs whose runner (see :func:`runner_id`) is not ``alive``:
        the process that ran them stopped before they finished. Returns their ids."""
        with self.connect() as con, con.transaction():
            rows = con.execute("SELECT id, runner FROM jobs WHERE status IN ('accepted', 'running')").fetchall()
            gone = [r[0] for r in rows if not alive(r[1])]
            ts = now()
            for jid in gone:
                con.execute("UPDATE jobs SET status='failed', finished=?, updated=?, message=? WHERE id=?",
                            (ts, ts, "interrupted: the service running this job stopped before it finished;"
                                     " start it again", jid))
        return gone


def runner_id() -> str:
    """This process as a job runner: ``host:pid:start`` (the start time tells a reused pid apart)."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{_START}"


_START = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


def runner_alive(runner: str | None) -> bool:
    """Whether the runner that wrote a job record still runs: this process, or another live process of
    this host started at that time. A runner on another host is taken as alive (it marks its own)."""
    import os
    import socket

    if not runner:
        return False
    if runner == runner_id():
        return True
    host, _, rest = runner.partition(":")
    if host != socket.gethostname():
        return True
    pid_text, _, start = rest.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return pid != os.getpid() or start == _START
