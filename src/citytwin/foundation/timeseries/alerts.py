"""Alert records of the live twin: one SQLite row per alert, written when the alert changes (F3).

The alert hub (:class:`citytwin.workflows.alerting.AlertHub`) keeps the live alerts and the recently
resolved ones in memory and writes every changed alert here (an upsert of that alert's row, not a
rewrite of all alerts). Resolved alerts past the hub's retention leave memory and stay here,
where they can still be listed and looked up (:meth:`AlertStore.query`, :meth:`AlertStore.get`).

Records are the JSON-friendly dicts of :meth:`citytwin.twin.alerts.Alert.to_record` (times as ISO
8601 text); the store keeps the record as it was given and indexes rule, entity, status, opening
time, run start and run end.

The rule engine's follow-back asks, per rule and entity, only for the alerts that a run starting in
its window can continue (:meth:`AlertStore.query` with ``ending_since``): a long ingest keeps every
alert here, and reading them all back on each batch made each batch's work and transient memory grow
with the alerts ever raised (issue 13's RSS creep; docs/twin.md, "RSS over 30 minutes").

Examples
--------
>>> import tempfile
>>> s = AlertStore(tempfile.mkdtemp() + "/alerts.sqlite")
>>> rec = {"id": "a1", "rule": "r", "entity": "e", "status": "resolved", "opened_at": "2015-12-01T03:00:00+00:00",
...        "start": "2015-12-01T01:00:00+00:00"}
>>> s.put([rec])
1
>>> [r["id"] for r in s.query(status=["resolved"], rule="r")], s.has_start("r", "e", "2015-12-01T01:00:00Z")
(['a1'], True)
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from json import encoder as _json_encoder
from pathlib import Path
from typing import Any

import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.foundation.timeseries._sqlite import thread_connection
from citytwin.foundation.timeseries.history import to_us

_DDL = """
CREATE TABLE IF NOT EXISTS alerts (
  id TEXT PRIMARY KEY, rule TEXT NOT NULL, entity TEXT NOT NULL, status TEXT NOT NULL,
  opened_us INTEGER NOT NULL, start_us INTEGER, resolved_us INTEGER, seq INTEGER NOT NULL, record TEXT NOT NULL,
  end_us INTEGER);
CREATE INDEX IF NOT EXISTS alerts_key ON alerts(rule, entity, start_us);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status, opened_us);
CREATE INDEX IF NOT EXISTS alerts_opened ON alerts(opened_us, seq);
"""

# what AlertStore.query(ending_since=...) reads through (the rule engine's follow-back, every commit): without them
# SQLite read every record of the rule and entity to test the bound, a cost that grew with the alerts stored
# (docs/twin.md, "Session 15: the soak's step"); made after ``end_us`` exists (a store written before gets it first)
_FOLLOW_DDL = """
CREATE INDEX IF NOT EXISTS alerts_end ON alerts(rule, entity, end_us);
CREATE INDEX IF NOT EXISTS alerts_live ON alerts(rule, entity) WHERE status != 'resolved';
"""

# the ISO text an alert record holds (Timestamp.isoformat() of an aware time, at most µs), years well inside
# what to_us accepts: read by the standard library (a tenth of to_us's time), anything else by to_us itself
_RECORD_TIME = re.compile(r"(1[7-9]|2[0-1])\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?[+-]\d\d:\d\d\Z", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def record_us(t: Any) -> int | None:
    """:func:`to_us` of a time of an alert record, faster for the ISO text records hold (the same result).

    Examples
    --------
    >>> record_us("2015-12-01T03:00:00+08:00") == to_us("2015-12-01T03:00:00+08:00") == 1448910000000000
    True
    >>> record_us("2015-12-01T03:00:00.5-01:30") == to_us("2015-12-01T03:00:00.5-01:30"), record_us(None)
    (True, None)
    """
    if type(t) is str:
        us = _RECORD_US.get(t)
        if us is not None:
            return us
        if _RECORD_TIME.match(t):
            try:
                us = (datetime.fromisoformat(t) - _EPOCH) // _US
            except ValueError:  # (an offset out of range, a day 31 of a short month ...): to_us says what it says
                return to_us(t)
            if len(_RECORD_US) >= 4096:
                _RECORD_US.clear()
            _RECORD_US[t] = us
            return us
    return to_us(t)


# ISO text -> µs of record_us: an alert's times recur in every write of it (its opening, its run's start, each end);
# a bounded cache (cleared when full) instead of reading the same text again
_RECORD_US: dict[str, int] = {}


def _make_dumps() -> Callable[[Any], str]:
    """``json.dumps(obj, ensure_ascii=False)``: the same text, by one C encoder made once (``json.dumps`` with an
    argument builds an encoder object and a C encoder per call, ~4 µs of a record's ~11); anything it fails on
    (a value JSON does not take, a cycle) goes through ``json.dumps`` itself, which says what it says."""
    make: Any = getattr(_json_encoder, "c_make_encoder", None)  # (typeshed does not declare it)
    if make is None:  # (no C accelerator: json.dumps as is)
        return lambda obj: json.dumps(obj, ensure_ascii=False)
    ref = json.JSONEncoder(ensure_ascii=False)
    # as JSONEncoder.iterencode(_one_shot=True) makes it, without the markers (cycles: json.dumps below)
    enc = make(None, ref.default, _json_encoder.encode_basestring, ref.indent, ref.key_separator,
               ref.item_separator, ref.sort_keys, ref.skipkeys, ref.allow_nan)

    def dumps(obj: Any) -> str:
        if type(obj) is dict:
            try:
                return "".join(enc(obj, 0))
            except Exception:  # (json.dumps below raises what it raises)
                pass
        return json.dumps(obj, ensure_ascii=False)

    return dumps


#: ``json.dumps(record, ensure_ascii=False)``, the text :meth:`AlertStore.put` stores (the same text, faster)
record_json = _make_dumps()


class AlertStore:
    """SQLite table of alert records (WAL, ``synchronous=NORMAL``), one row per alert id.

    Parameters
    ----------
    path
        SQLite file (created with its table if missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._seq_lock = threading.Lock()
        con = self._con()
        con.executescript(_DDL)
        if "end_us" not in {r[1] for r in con.execute("PRAGMA table_info(alerts)")}:
            self._add_end(con)
        con.executescript(_FOLLOW_DDL)
        self._seq = int(con.execute("SELECT coalesce(max(seq), 0) FROM alerts").fetchone()[0])

    @staticmethod
    def _add_end(con: sqlite3.Connection) -> None:
        """A store written before the ``end_us`` column: add it and fill it from each record's ``end``."""
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("ALTER TABLE alerts ADD COLUMN end_us INTEGER")
            rows = [(to_us(end), aid) for aid, rec in con.execute("SELECT id, record FROM alerts")
                    if (end := json.loads(rec).get("end")) is not None]
            con.executemany("UPDATE alerts SET end_us = ? WHERE id = ?", rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _con(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path, synchronous="NORMAL")

    def put(self, records: Iterable[dict[str, Any]]) -> int:
        """Insert or replace alert records (one transaction); returns how many."""
        rows = []
        with self._seq_lock:
            for r in records:
                for k in ("id", "rule", "entity", "status", "opened_at"):
                    if not r.get(k):
                        raise InputError(f"an alert record needs {k!r}", field=k)
                self._seq += 1
                start, res, end = r.get("start"), r.get("resolved_at"), r.get("end")
                rows.append((str(r["id"]), str(r["rule"]), str(r["entity"]), str(r["status"]),
                             record_us(r["opened_at"]), record_us(start), record_us(res), self._seq,
                             record_json(r), record_us(end)))
        if not rows:
            return 0
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            # seq orders alerts opened at the same instant as they were first written
            con.executemany("INSERT INTO alerts (id, rule, entity, status, opened_us, start_us, resolved_us, seq, "
                            "record, end_us) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                            "status = excluded.status, start_us = excluded.start_us, "
                            "resolved_us = excluded.resolved_us, record = excluded.record, end_us = excluded.end_us",
                            rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return len(rows)

    def get(self, alert_id: str) -> dict[str, Any] | None:
        """The record of one alert; None if there is none."""
        row = self._con().execute("SELECT record FROM alerts WHERE id = ?", (str(alert_id),)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def query(self, *, status: Sequence[str] | None = None, entity: str | None = None, rule: str | None = None,
              exclude: Iterable[str] = (), live_or_resolved_since: Any = None,
              ending_since: Any = None) -> list[dict[str, Any]]:
        """Records filtered by status (any of), entity and rule, oldest opening first; ``exclude``: ids to skip;
        ``live_or_resolved_since``: only alerts not resolved, or resolved at or after this time;
        ``ending_since``: only alerts not resolved, or whose run starts or ends at or after this time (or that
        have no run end), i.e. those a run that starts at or after it can continue or repeat."""
        where: list[str] = []
        params: list[Any] = []
        if ending_since is not None:
            # (status != 'resolved' OR end_us IS NULL OR end_us >= ? OR start_us >= ?) as a union of index look-ups
            # (alerts_live, alerts_end, alerts_key under the rule and entity): the same rows, without reading every
            # record of the rule and entity (ORDER BY below sorts the few found)
            key, kp = "", list[str]()
            if rule is not None:
                key, kp = key + " AND rule = ?", [*kp, rule]
            if entity is not None:
                key, kp = key + " AND entity = ?", [*kp, str(entity)]
            us = to_us(ending_since)
            where.append("rowid IN (" + " UNION ".join(
                f"SELECT rowid FROM alerts WHERE {cond}{key}"
                for cond in ("status != 'resolved'", "end_us IS NULL", "end_us >= ?", "start_us >= ?")) + ")")
            params.extend([*kp, *kp, us, *kp, us, *kp])
        if live_or_resolved_since is not None:
            where.append("(resolved_us IS NULL OR resolved_us >= ?)")
            params.append(to_us(live_or_resolved_since))
        if status is not None:  # (+: not through an index where the rows are found by rowid above)
            where.append(f"{'+' if ending_since is not None else ''}status IN ({','.join('?' * len(status))})")
            params.extend(status)
        if entity is not None and ending_since is None:  # (else in each look-up above)
            where.append("entity = ?")
            params.append(str(entity))
        if rule is not None and ending_since is None:
            where.append("rule = ?")
            params.append(rule)
        sql = "SELECT id, record FROM alerts" + (" WHERE " + " AND ".join(where) if where else "") + \
              " ORDER BY opened_us, seq"
        skip = set(exclude)
        return [dict(json.loads(rec)) for aid, rec in self._con().execute(sql, params) if aid not in skip]

    def has_start(self, rule: str, entity: str, start: Any) -> bool:
        """Whether an alert of ``rule`` at ``entity`` with this run start is recorded."""
        us = to_us(start)
        return self._con().execute("SELECT 1 FROM alerts WHERE rule = ? AND entity = ? AND start_us = ? LIMIT 1",
                                   (rule, str(entity), us)).fetchone() is not None

    def latest_starts(self) -> dict[tuple[str, str], int]:
        """The latest run start (µs) recorded per rule and entity (those with a start)."""
        rows = self._con().execute("SELECT rule, entity, max(start_us) FROM alerts WHERE start_us IS NOT NULL "
                                   "GROUP BY rule, entity")
        return {(str(r), str(e)): int(us) for r, e, us in rows}

    def newest_resolved(self) -> pd.Timestamp | None:
        """When the most recently resolved alert was resolved (UTC); None if none is."""
        us = self._con().execute("SELECT max(resolved_us) FROM alerts").fetchone()[0]
        return None if us is None else pd.Timestamp(int(us), unit="us", tz="UTC")

    def count(self) -> int:
        """Number of alerts recorded."""
        return int(self._con().execute("SELECT count(*) FROM alerts").fetchone()[0])

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
