"""Renewal project records (E3): a small store in the workspace's records database
(:mod:`citytwin.foundation.records`): ``WS/planning/projects.sqlite`` by default, the catalog's
PostgreSQL database on a server.

Projects (owner, budget, stage, site, targets), their stage changes and milestones. Every stage change is
checked by the lifecycle the caller passes in (the domain's
:func:`citytwin.planning.lifecycle.check_transition`; the foundation imports no domain package) and recorded
in the catalog's audit log (action ``project.create`` / ``project.move`` / ``project.milestone``),
refused ones too. The clock is injectable (tests do not depend on the wall clock).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from citytwin.foundation.errors import CitytwinError, InputError, NotFoundError
from citytwin.foundation.records import Connection, Store, open_store

# {rowid}: SQLite's implicit row id (the order of writes), an explicit column on PostgreSQL
_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL,
  budget REAL, stage TEXT NOT NULL, site TEXT, targets TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transitions ({rowid} project TEXT NOT NULL, ts TEXT NOT NULL, "user" TEXT,
  from_stage TEXT, to_stage TEXT NOT NULL, note TEXT);
CREATE TABLE IF NOT EXISTS milestones ({rowid} project TEXT NOT NULL, ts TEXT NOT NULL, "user" TEXT,
  name TEXT NOT NULL, due TEXT, done INTEGER NOT NULL, indicator TEXT, value REAL);
"""

#: the project store's migrations: 1 = the schema before versioning
PROJECTS_STORE = Store("projects", (_SCHEMA,))
_TRANSITION = 'INSERT INTO transitions(project, ts, "user", from_stage, to_stage, note) VALUES (?,?,?,?,?,?)'
_MILESTONE = ('INSERT INTO milestones(project, ts, "user", name, due, done, indicator, value)'
              " VALUES (?,?,?,?,?,?,?,?)")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ProjectStore:
    """The workspace's project records; ``ws`` is a :class:`citytwin.foundation.workspace.Workspace`."""

    def __init__(self, ws: Any, *, check_transition: Callable[[str, str], None], initial_stage: str,
                 clock: Callable[[], str] = _now) -> None:
        self.ws = ws
        self.clock = clock
        self.check_transition = check_transition
        self.initial_stage = initial_stage
        if ws.catalog.db.dialect == "postgresql":
            self.db = open_store(ws.catalog.url, PROJECTS_STORE)
        else:
            path = Path(ws.root) / "planning" / "projects.sqlite"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = open_store(path, PROJECTS_STORE)
        #: the SQLite file (None on PostgreSQL)
        self.path = self.db.path

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[Connection]:
        """A connection; with ``write``, inside a locked transaction (committed at exit)."""
        with self.db.connect() as con:
            if not write:
                yield con
                return
            with con.transaction():
                yield con

    def _audit(self, action: str, outcome: str, detail: str) -> None:
        u = self.ws.user
        self.ws.catalog.audit(user=u.name, role=u.role, action=action, outcome=outcome, detail=detail[:500])

    def _require_writer(self, action: str, pid: str) -> None:
        if not self.ws.user.r.can_write:
            self._audit(action, "denied", f"project {pid}")
            from citytwin.foundation.errors import AccessDenied

            raise AccessDenied(f"role {self.ws.user.role!r} may not change project records")

    def create(self, pid: str, *, name: str, owner: str, budget: float | None = None, site: str | None = None,
               targets: dict[str, float] | None = None) -> dict[str, Any]:
        """A new project in stage ``planning``."""
        self._require_writer("project.create", pid)
        if not pid:
            raise InputError("a project needs an id", field="id")
        if budget is not None and budget < 0:
            raise InputError("budget must be >= 0", field="budget")
        ts = self.clock()
        with self._connect(write=True) as con:
            if con.execute("SELECT 1 FROM projects WHERE id=?", (pid,)).fetchone():
                self._audit("project.create", "error", f"project {pid} exists")
                raise CitytwinError(f"project {pid!r} already exists")
            con.execute("INSERT INTO projects VALUES (?,?,?,?,?,?,?,?)",
                        (pid, name, owner, budget, self.initial_stage, site, json.dumps(targets or {}), ts))
            con.execute(_TRANSITION, (pid, ts, self.ws.user.name, None, self.initial_stage, "created"))
        self._audit("project.create", "ok", f"project {pid}")
        return self.get(pid)

    def get(self, pid: str) -> dict[str, Any]:
        """One project with its history and milestones."""
        with self._connect() as con:
            r = con.execute("SELECT * FROM projects WHERE id=?", (pid,)).fetchone()
            if r is None:
                raise NotFoundError(f"no project {pid!r}", hint="list them with `citytwin plan project list`")
            hist = [dict(h) for h in con.execute(
                'SELECT project, ts, "user", from_stage, to_stage, note FROM transitions WHERE project=?'
                " ORDER BY rowid", (pid,))]
            ms = [dict(m) for m in con.execute(
                'SELECT project, ts, "user", name, due, done, indicator, value FROM milestones WHERE project=?'
                " ORDER BY rowid", (pid,))]
        rec = dict(r)
        rec["targets"] = json.loads(rec["targets"])
        rec["history"] = hist
        rec["milestones"] = ms
        return rec

    def list(self) -> list[dict[str, Any]]:
        """All projects (without history)."""
        with self._connect() as con:
            rows = [dict(r) for r in con.execute("SELECT * FROM projects ORDER BY id")]
        for r in rows:
            r["targets"] = json.loads(r["targets"])
        return rows

    def move(self, pid: str, stage: str, note: str | None = None) -> dict[str, Any]:
        """Move a project to ``stage``; an illegal transition is refused (and audited)."""
        self._require_writer("project.move", pid)
        cur = self.get(pid)["stage"]
        try:
            self.check_transition(cur, stage)
        except InputError as exc:
            self._audit("project.move", "error", f"project {pid}: {exc.message}")
            raise
        with self._connect(write=True) as con:
            con.execute("UPDATE projects SET stage=? WHERE id=?", (stage, pid))
            con.execute(_TRANSITION, (pid, self.clock(), self.ws.user.name, cur, stage, note))
        self._audit("project.move", "ok", f"project {pid}: {cur} -> {stage}")
        return self.get(pid)

    def milestone(self, pid: str, name: str, *, due: str | None = None, done: bool = False,
                  indicator: str | None = None, value: float | None = None) -> dict[str, Any]:
        """Record a milestone or a performance-indicator reading."""
        self._require_writer("project.milestone", pid)
        self.get(pid)
        with self._connect(write=True) as con:
            con.execute(_MILESTONE, (pid, self.clock(), self.ws.user.name, name, due, int(done), indicator, value))
        self._audit("project.milestone", "ok", f"project {pid}: {name}")
        return self.get(pid)
