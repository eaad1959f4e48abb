"""The case store (G1, G2, F7): complaints, incidents, consultations and their history, in the
workspace's records database (:mod:`citytwin.foundation.records`): by default a SQLite file inside
the workspace (``WS/cases/cases.sqlite``, owner-only like the catalog), on a server the catalog's
PostgreSQL database.

Every write is one row of the catalog's audit log (action ``case.*``, ``incident.*``,
``consult.*``; dataset ``cases``); reads that return reporters' personal data are audited too.
Reporters' name, phone and e-mail (and personal data inside the description) are masked with
:mod:`citytwin.foundation.access` for roles that do not see personal data. Times come from an
injectable clock (``clock``) so that deadlines and escalation can be tested.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from citytwin.foundation import access
from citytwin.foundation.catalog import Catalog
from citytwin.foundation.errors import AccessDenied, InputError, NotFoundError
from citytwin.foundation.records import Connection, Store, integrity_errors, is_postgres, open_store
from citytwin.foundation.roles import User

Clock = Callable[[], datetime]

_DDL = """
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,                 -- complaint | incident
    service_code TEXT, category TEXT, department TEXT,
    status TEXT NOT NULL, title TEXT, description TEXT,
    lat REAL, lon REAL, address TEXT,
    reporter_name TEXT, reporter_phone TEXT, reporter_email TEXT,
    created TEXT NOT NULL, updated TEXT NOT NULL, deadline TEXT,
    escalation INTEGER NOT NULL DEFAULT 0,
    duplicate_of INTEGER REFERENCES cases(id),
    source TEXT, source_ref TEXT, data_json TEXT
);
CREATE INDEX IF NOT EXISTS cases_status ON cases(status);
CREATE TABLE IF NOT EXISTS case_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    ts TEXT NOT NULL, actor TEXT, kind TEXT NOT NULL,
    from_status TEXT, to_status TEXT, text TEXT
);
CREATE TABLE IF NOT EXISTS case_tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    department TEXT NOT NULL, title TEXT NOT NULL, deadline TEXT,
    status TEXT NOT NULL DEFAULT 'open', done_at TEXT
);
CREATE TABLE IF NOT EXISTS case_links (
    case_id INTEGER NOT NULL REFERENCES cases(id),
    kind TEXT NOT NULL, ref TEXT NOT NULL,
    PRIMARY KEY (case_id, kind, ref)
);
CREATE TABLE IF NOT EXISTS consultations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL, plan_geojson TEXT, documents_json TEXT,
    starts TEXT NOT NULL, ends TEXT NOT NULL, created TEXT NOT NULL, created_by TEXT
);
CREATE TABLE IF NOT EXISTS questions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consultation_id INTEGER NOT NULL REFERENCES consultations(id),
    kind TEXT NOT NULL, text TEXT NOT NULL, options_json TEXT, scale_max INTEGER
);
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consultation_id INTEGER NOT NULL REFERENCES consultations(id),
    parent_id INTEGER REFERENCES comments(id),
    author TEXT NOT NULL, geometry_json TEXT, text TEXT NOT NULL, created TEXT NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0, hidden_reason TEXT, hidden_by TEXT
);
CREATE TABLE IF NOT EXISTS residents (
    name TEXT PRIMARY KEY, verified INTEGER NOT NULL DEFAULT 0, verified_at TEXT
);
CREATE TABLE IF NOT EXISTS answers (
    question_id INTEGER NOT NULL REFERENCES questions(id),
    respondent TEXT NOT NULL, value_json TEXT NOT NULL, ts TEXT NOT NULL,
    PRIMARY KEY (question_id, respondent)
);
"""

#: the case store's migrations: 1 = the schema before versioning
CASES_STORE = Store("cases", (_DDL,))

CASE_FIELDS = ("id", "kind", "service_code", "category", "department", "status", "title", "description", "lat",
               "lon", "address", "reporter_name", "reporter_phone", "reporter_email", "created", "updated",
               "deadline", "escalation", "duplicate_of", "source", "source_ref")
PERSONAL = {"reporter_name": "name", "reporter_phone": "phone", "reporter_email": "email", "description": "text"}
QUESTION_KINDS = ("vote", "single", "multiple", "scale", "text")

#: Case statuses and the moves allowed between them.
STATUSES: tuple[str, ...] = ("open", "assigned", "in_progress", "resolved", "closed")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("assigned", "in_progress", "resolved", "closed"),
    "assigned": ("in_progress", "resolved", "closed", "open"),
    "in_progress": ("resolved", "closed", "assigned"),
    "resolved": ("closed", "in_progress"),
    "closed": ("open",),  # reopened
}

def escalation_level(deadline: datetime, now: datetime, *, step_hours: float = 24.0) -> int:
    """0 while on time; 1 once late; one more level every ``step_hours`` late after that.

    Examples
    --------
    >>> from datetime import datetime
    >>> d = datetime(2026, 1, 1)
    >>> [escalation_level(d, datetime(2026, 1, 1, h)) for h in (0, 1)], escalation_level(d, datetime(2026, 1, 3, 1))
    ([0, 1], 3)
    """
    late = (now - deadline).total_seconds() / 3600.0
    if late <= 0:
        return 0
    return 1 + int(late // step_hours)


def can_move(old: str, new: str) -> bool:
    """Whether a case may go from status ``old`` to ``new``."""
    return new in TRANSITIONS.get(old, ())




def _utcnow() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    """``t`` as ISO 8601 in UTC (a naive time is taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat(timespec="seconds")


def parse_time(s: str) -> datetime:
    t = datetime.fromisoformat(s)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class CaseStore:
    """Cases of one workspace, seen by one user.

    Parameters
    ----------
    path
        The records database: a SQLite file (created owner-only with its folder) or a
        ``postgresql://`` URL (:mod:`citytwin.foundation.records`).
    catalog
        The workspace's catalog: its audit log records every write.
    user
        Who acts (role decides masking and what may be written).
    clock
        Returns the current time (timezone-aware); tests inject a controllable one.
    """

    def __init__(self, path: str | Path, catalog: Catalog, user: User, clock: Clock | None = None) -> None:
        self.catalog = catalog
        self.user = user
        self.clock: Clock = clock or _utcnow
        if is_postgres(path):
            self.path: str | Path = str(path)
            self.db = open_store(self.path, CASES_STORE)
            return
        self.path = Path(path)
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True)
        new = not self.path.exists()
        self.db = open_store(self.path, CASES_STORE)
        if new:
            self.path.chmod(0o600)

    @classmethod
    def of(cls, ws: Any, clock: Clock | None = None) -> CaseStore:
        """The case store of workspace ``ws`` as its user: ``WS/cases/cases.sqlite``, or the catalog's
        PostgreSQL database when the workspace's records are there."""
        target = ws.catalog.url if ws.catalog.db.dialect == "postgresql" else Path(ws.root) / "cases" / "cases.sqlite"
        return cls(target, ws.catalog, ws.user, clock)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.db.connect() as con:
            yield con

    # -- helpers -------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock()

    def _audit(self, action: str, detail: Mapping[str, Any], outcome: str = "ok", rows: int | None = None) -> None:
        self.catalog.audit(user=self.user.name, role=self.user.role, action=action, dataset="cases", rows=rows,
                           outcome=outcome, detail=json.dumps(dict(detail), ensure_ascii=False, default=str))

    def _require_staff(self, action: str) -> None:
        if not self.user.r.can_write:
            self._audit(action, {"reason": "role may not write"}, outcome="denied")
            raise AccessDenied(f"user {self.user.name!r} (role {self.user.role}) may not {action.split('.')[-1]} cases")

    def _event(self, con: Connection, case_id: int, kind: str, *, from_status: str | None = None,
               to_status: str | None = None, text: str | None = None, actor: str | None = None) -> None:
        con.execute("INSERT INTO case_events(case_id, ts, actor, kind, from_status, to_status, text)"
                    " VALUES (?,?,?,?,?,?,?)", (case_id, iso(self.now()), actor or self.user.name, kind,
                                                from_status, to_status, text))

    def _mask(self, rec: dict[str, Any]) -> dict[str, Any]:
        if self.user.r.sees_personal_data:
            return rec
        out = dict(rec)
        for col, kind in PERSONAL.items():
            if out.get(col) is not None:
                out[col] = access._mask_one(out[col], kind)
        return out

    # -- cases -----------------------------------------------------------------
    def open_case(self, *, kind: str = "complaint", description: str, service_code: str | None = None,
                  category: str | None = None, department: str | None = None, title: str | None = None,
                  lat: float | None = None, lon: float | None = None, address: str | None = None,
                  reporter_name: str | None = None, reporter_phone: str | None = None,
                  reporter_email: str | None = None, deadline: datetime | None = None,
                  duplicate_of: int | None = None, source: str | None = None, source_ref: str | None = None,
                  data: Mapping[str, Any] | None = None) -> int:
        """Record a new case (status ``open``, or ``assigned`` when a department is given); returns its id.

        Anyone may report (residents through Open311 act as the ``public`` role); the text is
        stored as given (HTML is never interpreted here)."""
        if kind not in ("complaint", "incident"):
            raise InputError(f"unknown case kind {kind!r}", field="kind", hint="complaint or incident")
        now = iso(self.now())
        status = "assigned" if department else "open"
        with self.connect() as con, con.transaction():
            cid = con.insert(
                "INSERT INTO cases(kind, service_code, category, department, status, title, description, lat, lon,"
                " address, reporter_name, reporter_phone, reporter_email, created, updated, deadline, duplicate_of,"
                " source, source_ref, data_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (kind, service_code, category, department, status, title, description, lat, lon, address,
                 reporter_name, reporter_phone, reporter_email, now, now, iso(deadline) if deadline else None,
                 duplicate_of, source, source_ref, json.dumps(dict(data or {}), ensure_ascii=False, default=str)))
            self._event(con, cid, "opened", to_status=status, text=f"department {department}" if department else None)
            if duplicate_of is not None:
                con.execute("INSERT INTO case_links VALUES (?,?,?) ON CONFLICT DO NOTHING",
                            (cid, "duplicate_of", str(duplicate_of)))
                con.execute("INSERT INTO case_links VALUES (?,?,?) ON CONFLICT DO NOTHING",
                            (duplicate_of, "duplicate", str(cid)))
        self._audit(f"{kind}.open", {"case": cid, "service_code": service_code, "department": department,
                                     "duplicate_of": duplicate_of})
        return cid

    def get(self, case_id: int) -> dict[str, Any]:
        """One case (masked for roles without personal-data clearance; audited when clear)."""
        with self.connect() as con:
            r = con.execute("SELECT * FROM cases WHERE id=?", (case_id,)).fetchone()
        if r is None:
            raise NotFoundError(f"no case {case_id}")
        rec = dict(r)
        rec["data"] = json.loads(rec.pop("data_json") or "{}")
        if self.user.r.sees_personal_data and any(rec.get(c) for c in PERSONAL if c != "description"):
            self._audit("case.read_personal", {"case": case_id}, rows=1)
        return self._mask(rec)

    def cases(self, *, kind: str | None = None, status: Sequence[str] | None = None,
              service_code: Sequence[str] | None = None, start: datetime | None = None,
              end: datetime | None = None, ids: Sequence[int] | None = None,
              near: tuple[float, float, float] | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Cases matching the filters, newest first (masked as :meth:`get`).

        ``near`` = (lat, lon, metres) keeps the cases in the box around that circle (a coarse
        prefilter: callers measure the distance)."""
        q = "SELECT * FROM cases WHERE 1=1"
        args: list[Any] = []
        for col, vals in (("status", status), ("service_code", service_code), ("id", ids)):
            if vals:
                q += f" AND {col} IN ({','.join('?' * len(vals))})"
                args.extend(vals)
        if kind:
            q += " AND kind=?"
            args.append(kind)
        if start:
            q += " AND created>=?"
            args.append(iso(start))
        if end:
            q += " AND created<=?"
            args.append(iso(end))
        if near:
            lat, lon, m = near
            dlat = m / 111_000.0
            dlon = m / (111_000.0 * max(math.cos(math.radians(lat)), 1e-6))
            q += " AND lat BETWEEN ? AND ? AND lon BETWEEN ? AND ?"
            args.extend([lat - dlat, lat + dlat, lon - dlon, lon + dlon])
        q += " ORDER BY created DESC, id DESC LIMIT ?"
        args.append(limit)
        with self.connect() as con:
            rows = [dict(r) for r in con.execute(q, args)]
        for r in rows:
            r["data"] = json.loads(r.pop("data_json") or "{}")
        if self.user.r.sees_personal_data and rows:
            self._audit("case.read_personal", {"cases": len(rows)}, rows=len(rows))
        return [self._mask(r) for r in rows]

    def history(self, case_id: int) -> list[dict[str, Any]]:
        """The case's events in order (opened, status changes, replies, escalations, links)."""
        with self.connect() as con:
            return [dict(r) for r in con.execute("SELECT * FROM case_events WHERE case_id=? ORDER BY id", (case_id,))]

    def set_status(self, case_id: int, status: str, *, note: str | None = None) -> None:
        """Move a case to ``status`` (checked against the allowed moves) with an optional note."""
        self._require_staff("case.status")
        if status not in STATUSES:
            raise InputError(f"unknown status {status!r}", field="status", hint=", ".join(STATUSES))
        with self.connect() as con, con.transaction():
            r = con.execute("SELECT status FROM cases WHERE id=?", (case_id,)).fetchone()
            if r is None:
                raise NotFoundError(f"no case {case_id}")
            old = r["status"]
            if not can_move(old, status):
                raise InputError(f"case {case_id} cannot go from {old} to {status}", field="status")
            con.execute("UPDATE cases SET status=?, updated=? WHERE id=?", (status, iso(self.now()), case_id))
            self._event(con, case_id, "status", from_status=old, to_status=status, text=note)
        self._audit("case.status", {"case": case_id, "from": old, "to": status})

    def assign(self, case_id: int, department: str, *, note: str | None = None) -> None:
        """Route a case to ``department`` (status ``assigned`` if it was open)."""
        self._require_staff("case.assign")
        with self.connect() as con, con.transaction():
            r = con.execute("SELECT status FROM cases WHERE id=?", (case_id,)).fetchone()
            if r is None:
                raise NotFoundError(f"no case {case_id}")
            new = "assigned" if r["status"] == "open" else r["status"]
            con.execute("UPDATE cases SET department=?, status=?, updated=? WHERE id=?",
                        (department, new, iso(self.now()), case_id))
            self._event(con, case_id, "assign", from_status=r["status"], to_status=new,
                        text=f"department {department}" + (f": {note}" if note else ""))
        self._audit("case.assign", {"case": case_id, "department": department})

    def reply(self, case_id: int, text: str) -> None:
        """A reply to the reporter, kept in the case's history."""
        self._require_staff("case.reply")
        self.get(case_id)
        with self.connect() as con:
            self._event(con, case_id, "reply", text=text)
            con.execute("UPDATE cases SET updated=? WHERE id=?", (iso(self.now()), case_id))
        self._audit("case.reply", {"case": case_id})

    def escalate_overdue(self, *, step_hours: float = 24.0) -> list[dict[str, Any]]:
        """Raise the escalation level of every unresolved case past its deadline (one level when late,
        one more every ``step_hours``); returns the cases whose level rose, with old and new level."""
        now = self.now()
        changed: list[dict[str, Any]] = []
        with self.connect() as con, con.transaction():
            rows = con.execute("SELECT id, deadline, escalation, department FROM cases WHERE deadline IS NOT NULL"
                               " AND status NOT IN ('resolved','closed')").fetchall()
            for r in rows:
                level = escalation_level(parse_time(r["deadline"]), now, step_hours=step_hours)
                if level > r["escalation"]:
                    con.execute("UPDATE cases SET escalation=?, updated=? WHERE id=?", (level, iso(now), r["id"]))
                    self._event(con, r["id"], "escalate", text=f"level {r['escalation']} -> {level}",
                                actor="system")
                    changed.append({"case": r["id"], "from": r["escalation"], "to": level,
                                    "department": r["department"], "deadline": r["deadline"]})
        if changed:
            self._audit("case.escalate", {"cases": [c["case"] for c in changed]}, rows=len(changed))
        return changed

    def link(self, case_id: int, kind: str, ref: str) -> None:
        """Link a case to something (``alert``, ``complaint``, ``sensor``, ``duplicate`` ...)."""
        with self.connect() as con:
            con.execute("INSERT INTO case_links VALUES (?,?,?) ON CONFLICT DO NOTHING", (case_id, kind, str(ref)))
            self._event(con, case_id, "link", text=f"{kind} {ref}")
        self._audit("case.link", {"case": case_id, "kind": kind, "ref": ref})

    def links(self, case_id: int) -> list[dict[str, Any]]:
        with self.connect() as con:
            return [dict(r) for r in con.execute("SELECT kind, ref FROM case_links WHERE case_id=? ORDER BY kind, ref",
                                                 (case_id,))]

    # -- incident tasks ----------------------------------------------------
    def add_task(self, case_id: int, department: str, title: str, deadline: datetime | None = None) -> int:
        """A task of an incident for one department."""
        self._require_staff("incident.task")
        self.get(case_id)
        with self.connect() as con:
            tid = con.insert("INSERT INTO case_tasks(case_id, department, title, deadline) VALUES (?,?,?,?)",
                             (case_id, department, title, iso(deadline) if deadline else None))
            self._event(con, case_id, "task", text=f"{department}: {title}")
        self._audit("incident.task", {"case": case_id, "task": tid, "department": department})
        return tid

    def finish_task(self, task_id: int) -> None:
        self._require_staff("incident.task_done")
        with self.connect() as con:
            r = con.execute("SELECT case_id, department, title FROM case_tasks WHERE id=?", (task_id,)).fetchone()
            if r is None:
                raise NotFoundError(f"no task {task_id}")
            con.execute("UPDATE case_tasks SET status='done', done_at=? WHERE id=?", (iso(self.now()), task_id))
            self._event(con, r["case_id"], "task_done", text=f"{r['department']}: {r['title']}")
        self._audit("incident.task_done", {"task": task_id})

    def tasks(self, case_id: int) -> list[dict[str, Any]]:
        with self.connect() as con:
            rows = [dict(r) for r in con.execute("SELECT * FROM case_tasks WHERE case_id=? ORDER BY id", (case_id,))]
        now = self.now()
        for r in rows:
            r["overdue"] = bool(r["deadline"] and r["status"] != "done" and parse_time(r["deadline"]) < now)
        return rows

    # -- consultations (G1) -------------------------------------------------
    def create_consultation(self, title: str, *, starts: datetime, ends: datetime,
                            plan: Mapping[str, Any] | None = None, documents: Sequence[str] = (),
                            questions: Sequence[Mapping[str, Any]] = ()) -> int:
        """A consultation with its plan (GeoJSON geometry or feature collection), documents, period and
        questions (``{"kind": vote|single|multiple|scale|text, "text": ..., "options": [...], "scale_max": 5}``)."""
        self._require_staff("consult.create")
        if ends <= starts:
            raise InputError("a consultation must end after it starts", field="ends")
        for i, q in enumerate(questions):
            if q.get("kind") not in QUESTION_KINDS:
                raise InputError(f"question {i + 1}: unknown kind {q.get('kind')!r}", row=i + 1, field="kind",
                                 hint=", ".join(QUESTION_KINDS))
            if q["kind"] in ("vote", "single", "multiple") and not q.get("options"):
                raise InputError(f"question {i + 1}: a {q['kind']} question needs options", row=i + 1, field="options")
        with self.connect() as con, con.transaction():
            cid = con.insert("INSERT INTO consultations(title, plan_geojson, documents_json, starts, ends, created,"
                             " created_by) VALUES (?,?,?,?,?,?,?)",
                             (title, json.dumps(plan) if plan else None, json.dumps(list(documents)), iso(starts),
                              iso(ends), iso(self.now()), self.user.name))
            for q in questions:
                con.execute("INSERT INTO questions(consultation_id, kind, text, options_json, scale_max)"
                            " VALUES (?,?,?,?,?)", (cid, q["kind"], q["text"], json.dumps(q.get("options") or []),
                                                    q.get("scale_max")))
        self._audit("consult.create", {"consultation": cid, "title": title})
        return cid

    def consultation(self, cid: int) -> dict[str, Any]:
        with self.connect() as con:
            r = con.execute("SELECT * FROM consultations WHERE id=?", (cid,)).fetchone()
            if r is None:
                raise NotFoundError(f"no consultation {cid}")
            qs = [dict(q) for q in con.execute("SELECT * FROM questions WHERE consultation_id=? ORDER BY id", (cid,))]
        rec = dict(r)
        rec["plan"] = json.loads(rec.pop("plan_geojson") or "null")
        rec["documents"] = json.loads(rec.pop("documents_json") or "[]")
        for q in qs:
            q["options"] = json.loads(q.pop("options_json") or "[]")
        rec["questions"] = qs
        return rec

    def consultations(self) -> list[dict[str, Any]]:
        """Every consultation (as :meth:`consultation`), newest first."""
        with self.connect() as con:
            ids = [int(r["id"]) for r in con.execute("SELECT id FROM consultations ORDER BY id DESC")]
        return [self.consultation(i) for i in ids]

    def is_verified(self, name: str) -> bool:
        """Whether ``name`` is a verified resident (may vote and answer)."""
        with self.connect() as con:
            r = con.execute("SELECT verified FROM residents WHERE name=?", (name,)).fetchone()
        return bool(r is not None and r["verified"])

    def verify_resident(self, name: str) -> None:
        """Mark ``name`` as a verified resident (may vote and answer)."""
        self._require_staff("consult.verify")
        with self.connect() as con:
            con.execute("INSERT INTO residents(name, verified, verified_at) VALUES (?,1,?) ON CONFLICT(name) DO"
                        " UPDATE SET verified=1, verified_at=excluded.verified_at", (name, iso(self.now())))
        self._audit("consult.verify", {"resident": name})

    def _open_period(self, con: Connection, cid: int) -> None:
        r = con.execute("SELECT starts, ends FROM consultations WHERE id=?", (cid,)).fetchone()
        if r is None:
            raise NotFoundError(f"no consultation {cid}")
        now = self.now()
        if not parse_time(r["starts"]) <= now <= parse_time(r["ends"]):
            raise InputError(f"consultation {cid} is open from {r['starts']} to {r['ends']}, not at {iso(now)}",
                             field="period")

    def comment(self, cid: int, author: str, text: str, *, geometry: Mapping[str, Any] | None = None,
                parent: int | None = None) -> int:
        """A comment on the plan (a GeoJSON Point or Polygon, or none) or a reply to another comment."""
        if geometry is not None and geometry.get("type") not in ("Point", "Polygon", "MultiPolygon"):
            raise InputError(f"a comment's place is a Point or an area, not {geometry.get('type')!r}", field="geometry")
        if not text.strip():
            raise InputError("empty comment", field="text")
        with self.connect() as con:
            self._open_period(con, cid)
            mid = con.insert("INSERT INTO comments(consultation_id, parent_id, author, geometry_json, text, created)"
                             " VALUES (?,?,?,?,?,?)", (cid, parent, author, json.dumps(geometry) if geometry else None,
                                                       text, iso(self.now())))
        self._audit("consult.comment", {"consultation": cid, "comment": mid, "author": author})
        return mid

    def hide_comment(self, comment_id: int, reason: str) -> None:
        """Moderation: hide a comment with a reason (kept, audited)."""
        self._require_staff("consult.moderate")
        if not reason.strip():
            raise InputError("hiding a comment needs a reason", field="reason")
        with self.connect() as con:
            n = con.execute("UPDATE comments SET hidden=1, hidden_reason=?, hidden_by=? WHERE id=?",
                            (reason, self.user.name, comment_id)).rowcount
        if not n:
            raise NotFoundError(f"no comment {comment_id}")
        self._audit("consult.moderate", {"comment": comment_id, "reason": reason})

    def comments(self, cid: int, *, include_hidden: bool = False) -> list[dict[str, Any]]:
        q = "SELECT * FROM comments WHERE consultation_id=?" + ("" if include_hidden else " AND hidden=0")
        with self.connect() as con:
            rows = [dict(r) for r in con.execute(q + " ORDER BY id", (cid,))]
        for r in rows:
            r["geometry"] = json.loads(r.pop("geometry_json") or "null")
        return rows

    def answer(self, question_id: int, respondent: str, value: Any) -> None:
        """A verified resident's vote or survey answer: one per resident per question, enforced by the
        database (a second one, even concurrent, is refused), inside the consultation's period."""
        with self.connect() as con:
            q = con.execute("SELECT * FROM questions WHERE id=?", (question_id,)).fetchone()
            if q is None:
                raise NotFoundError(f"no question {question_id}")
            self._open_period(con, q["consultation_id"])
            v = con.execute("SELECT verified FROM residents WHERE name=?", (respondent,)).fetchone()
            if v is None or not v["verified"]:
                self._audit("consult.answer", {"question": question_id, "respondent": respondent,
                                               "reason": "not verified"}, outcome="denied")
                raise AccessDenied(f"{respondent!r} is not a verified resident", hint="verify residents first")
            value = _check_answer(dict(q), value)
            try:
                con.execute("INSERT INTO answers(question_id, respondent, value_json, ts) VALUES (?,?,?,?)",
                            (question_id, respondent, json.dumps(value, ensure_ascii=False), iso(self.now())))
            except integrity_errors():
                self._audit("consult.answer", {"question": question_id, "respondent": respondent,
                                               "reason": "already answered"}, outcome="denied")
                raise InputError(f"{respondent!r} has already answered question {question_id}",
                                 field="respondent") from None
        self._audit("consult.answer", {"question": question_id, "respondent": respondent})

    def answers(self, cid: int) -> list[dict[str, Any]]:
        with self.connect() as con:
            rows = [dict(r) for r in con.execute(
                "SELECT a.question_id, q.kind, q.text AS question, a.respondent, a.value_json, a.ts FROM answers a"
                " JOIN questions q ON q.id=a.question_id WHERE q.consultation_id=? ORDER BY a.question_id, a.ts",
                (cid,))]
        for r in rows:
            r["value"] = json.loads(r.pop("value_json"))
        return rows


def _check_answer(q: dict[str, Any], value: Any) -> Any:
    opts = json.loads(q.get("options_json") or "[]")
    kind = q["kind"]
    if kind in ("vote", "single"):
        if value not in opts:
            raise InputError(f"{value!r} is not an option of question {q['id']}", field="value", hint=f"one of {opts}")
    elif kind == "multiple":
        if not isinstance(value, list) or not value or any(v not in opts for v in value) or len(set(value)) < len(value):
            raise InputError(f"question {q['id']} takes a list of distinct options", field="value", hint=f"of {opts}")
    elif kind == "scale":
        top = int(q.get("scale_max") or 5)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise InputError(f"question {q['id']} takes a whole number from 1 to {top}", field="value")
    elif kind == "text" and (not isinstance(value, str) or not value.strip()):
        raise InputError(f"question {q['id']} takes text", field="value")
    return value
