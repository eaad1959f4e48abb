"""Live state store: registered entities and the latest value of each attribute (SQLite, WAL).

The state is derived data: every observation is in the history store first, and
:meth:`StateStore.rebuild` recomputes the latest values from it. Updates never move an
attribute back in time: an observation older than the stored one is ignored.

Several processes may use one store (an MQTT ingest process and the HTTP API): SQLite in
WAL mode lets readers run while one writer writes.

Examples
--------
>>> import tempfile
>>> s = StateStore(tempfile.mkdtemp() + "/state.sqlite")
>>> s.put_entity("urn:ngsi-ld:T:a", "T", 116.4, 39.9, {"name": "a"})
>>> s.upsert_latest([("urn:ngsi-ld:T:a", "pm25", 12.0, "µg/m³", 10)])
1
>>> s.get("urn:ngsi-ld:T:a")["attrs"]["pm25"]["value"]
12.0
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from citytwin.foundation.errors import InputError
from citytwin.foundation.timeseries._sqlite import thread_connection

_DDL = """
CREATE TABLE IF NOT EXISTS entities (
  id TEXT PRIMARY KEY, type TEXT NOT NULL, lon REAL, lat REAL, static TEXT NOT NULL DEFAULT '{}',
  created_us INTEGER NOT NULL, modified_us INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS entities_type ON entities(type);
CREATE TABLE IF NOT EXISTS attributes (
  entity TEXT NOT NULL, property TEXT NOT NULL, value REAL, unit TEXT, observed_us INTEGER NOT NULL,
  PRIMARY KEY (entity, property)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attributes_prop ON attributes(property, value);
"""
OPS = {"==": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
Condition = tuple[str, str, float]  # (property, operator, number)


class StateStore:
    """Entities and their latest attribute values.

    Parameters
    ----------
    path
        SQLite file (created with its tables if missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._cache: dict[str, tuple[str, float | None, float | None]] = {}
        self.generation = 0  # +1 at every change of an entity (what a parser's cache of look-ups checks)
        con = self._con()
        con.executescript(_DDL)

    def _con(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path, synchronous="NORMAL")

    # -- entities ----------------------------------------------------------------------
    def put_entity(self, id: str, type: str, lon: float | None = None, lat: float | None = None,
                   static: dict[str, Any] | None = None, *, replace_static: bool = False) -> None:
        """Create or update an entity (type cannot change; static attributes are merged unless replaced)."""
        now = time.time_ns() // 1000
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute("SELECT type, static FROM entities WHERE id = ?", (id,)).fetchone()
            if row is not None and row[0] != type:
                raise InputError(f"entity {id!r} is a {row[0]!r}, not a {type!r}", field="type")
            merged = dict(static or {}) if (row is None or replace_static) else {**json.loads(row[1]), **(static or {})}
            if row is None:
                con.execute("INSERT INTO entities VALUES (?,?,?,?,?,?,?)",
                            (id, type, lon, lat, json.dumps(merged, ensure_ascii=False), now, now))
            else:
                con.execute("UPDATE entities SET lon = coalesce(?, lon), lat = coalesce(?, lat), static = ?, "
                            "modified_us = ? WHERE id = ?", (lon, lat, json.dumps(merged, ensure_ascii=False), now, id))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._cache.pop(id, None)
        self.generation += 1

    def delete_entity(self, id: str) -> bool:
        """Delete an entity and its live attributes (its history stays). True if it existed."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        n = con.execute("DELETE FROM entities WHERE id = ?", (id,)).rowcount
        con.execute("DELETE FROM attributes WHERE entity = ?", (id,))
        con.execute("COMMIT")
        self._cache.pop(id, None)
        self.generation += 1
        return n > 0

    def delete_attribute(self, id: str, prop: str) -> bool:
        con = self._con()
        return con.execute("DELETE FROM attributes WHERE entity = ? AND property = ?", (id, prop)).rowcount > 0

    def lookup(self, id: str) -> tuple[str, float | None, float | None] | None:
        """(type, lon, lat) of a registered entity, or None (cached; a miss asks SQLite)."""
        hit = self._cache.get(id)
        if hit is not None:
            return hit
        row = self._con().execute("SELECT type, lon, lat FROM entities WHERE id = ?", (id,)).fetchone()
        if row is None:
            return None
        ref = (row[0], row[1], row[2])
        self._cache[id] = ref
        return ref

    # -- attributes --------------------------------------------------------------------
    def upsert_latest(self, rows: Iterable[tuple[str, str, float | None, str | None, int]]) -> int:
        """Set latest values from ``(entity, property, value, unit, observed_us)`` rows.

        Per (entity, property) only the latest observation is kept; an older one never
        overwrites a newer one. Returns the number of rows offered.
        """
        n = self.begin_latest(rows)
        if n:
            self.end_latest(commit=True)
        return n

    def begin_latest(self, rows: Iterable[tuple[str, str, float | None, str | None, int]]) -> int:
        """:meth:`upsert_latest` with its transaction left open (the write lock held) in the calling thread's
        connection: :meth:`end_latest` in the same thread commits it (then it is what :meth:`upsert_latest` did)
        or rolls it back. Returns the rows written; 0: nothing written, no transaction open."""
        best: dict[tuple[str, str], tuple[str, str, float | None, str | None, int]] = {}
        for r in rows:
            k = (r[0], r[1])
            cur = best.get(k)
            if cur is None or r[4] >= cur[4]:
                v = r[2]
                best[k] = (r[0], r[1], None if v is None or (isinstance(v, float) and math.isnan(v)) else v, r[3], r[4])
        if not best:
            return 0
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(
                "INSERT INTO attributes VALUES (?,?,?,?,?) ON CONFLICT(entity, property) DO UPDATE SET "
                "value = excluded.value, unit = excluded.unit, observed_us = excluded.observed_us "
                "WHERE excluded.observed_us >= attributes.observed_us", list(best.values()))
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return len(best)

    def end_latest(self, *, commit: bool) -> None:
        """Commit (or roll back) the transaction :meth:`begin_latest` left open in this thread."""
        con = self._con()
        if not commit:
            con.execute("ROLLBACK")
            return
        try:
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    # -- queries -----------------------------------------------------------------------
    def get(self, id: str, attrs: Sequence[str] | None = None) -> dict[str, Any] | None:
        """One entity with its latest attributes, or None."""
        res = self.query(ids=[id], attrs=attrs)
        return res[0] if res else None

    def query(self, *, type: str | None = None, ids: Sequence[str] | None = None, id_pattern: str | None = None,
              q: Sequence[Condition] = (), bbox: tuple[float, float, float, float] | None = None,
              near: tuple[float, float, float] | None = None, attrs: Sequence[str] | None = None,
              limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """Entities matching all filters, as dicts ``id, type, lon, lat, static, attrs{prop: {value, unit, observed_us}}``.

        ``q`` conditions are ``(property, op, number)`` with op in ``== != > >= < <=``; ``near``
        is ``(lon, lat, max metres)``; ``bbox`` is ``(min lon, min lat, max lon, max lat)``;
        ``id_pattern`` is a regular expression on the id (RE2 syntax, linear time: :func:`match_ids`).
        """
        where: list[str] = []
        params: list[Any] = []
        if type:
            where.append("e.type = ?")
            params.append(type)
        if ids is not None:
            where.append(f"e.id IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        for prop, op, val in q:
            if op not in OPS:
                raise InputError(f"operator {op!r} not supported", field="q", hint=f"use {' '.join(OPS)}")
            where.append(f"EXISTS (SELECT 1 FROM attributes a WHERE a.entity = e.id AND a.property = ? "
                         f"AND a.value {OPS[op]} ?)")
            params.extend([prop, float(val)])
        if bbox is not None:
            where.append("e.lon BETWEEN ? AND ? AND e.lat BETWEEN ? AND ?")
            params.extend([bbox[0], bbox[2], bbox[1], bbox[3]])
        if near is not None:
            lon, lat, dist = near
            dlat = dist / 111_000.0 + 1e-6
            dlon = dlat / max(0.01, math.cos(math.radians(lat)))
            where.append("e.lon BETWEEN ? AND ? AND e.lat BETWEEN ? AND ?")
            params.extend([lon - dlon, lon + dlon, lat - dlat, lat + dlat])
        sql = "SELECT e.id, e.type, e.lon, e.lat, e.static FROM entities e"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY e.id"
        con = self._con()
        rows = con.execute(sql, params).fetchall()
        if near is not None:
            rows = [r for r in rows if r[2] is not None and haversine_m(near[0], near[1], r[2], r[3]) <= near[2]]
        if id_pattern:
            keep = set(match_ids([r[0] for r in rows], id_pattern))
            rows = [r for r in rows if r[0] in keep]
        rows = rows[offset: offset + limit]
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            out[r[0]] = {"id": r[0], "type": r[1], "lon": r[2], "lat": r[3], "static": json.loads(r[4]), "attrs": {}}
        if out:
            idl = list(out)
            for i in range(0, len(idl), 500):
                chunk = idl[i:i + 500]
                asql = f"SELECT entity, property, value, unit, observed_us FROM attributes WHERE entity IN " \
                       f"({','.join('?' * len(chunk))})"
                aparams: list[Any] = list(chunk)
                if attrs:
                    asql += f" AND property IN ({','.join('?' * len(attrs))})"
                    aparams.extend(attrs)
                for ent, prop, val, unit, obs in con.execute(asql, aparams):
                    out[ent]["attrs"][prop] = {"value": val, "unit": unit, "observed_us": obs}
        return list(out.values())

    def count(self, type: str | None = None) -> int:
        if type:
            return int(self._con().execute("SELECT count(*) FROM entities WHERE type = ?", (type,)).fetchone()[0])
        return int(self._con().execute("SELECT count(*) FROM entities").fetchone()[0])

    def rebuild(self, latest: Iterable[tuple[str, str, float | None, str | None, int]]) -> int:
        """Replace all attribute values by ``latest`` rows (e.g. from ``HistoryStore.latest``)."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        con.execute("DELETE FROM attributes")
        con.execute("COMMIT")
        return self.upsert_latest(latest)

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


_RE2 = threading.local()
MAX_PATTERN = 1000  # characters of an idPattern


def match_ids(ids: Sequence[str], pattern: str) -> list[str]:
    """The ids in which ``pattern`` matches (anywhere, as ``re.search``), with a linear-time engine.

    Python's ``re`` backtracks: ``(.*)(.*)(.*)(.*)(.*)X`` took 13.8 s on 15 ids and blocked the
    service. The pattern runs in DuckDB's ``regexp_matches`` instead, which is RE2: time linear
    in the text, whatever the pattern. RE2 has no backreferences or look-around; such a
    pattern (or one longer than :data:`MAX_PATTERN`) is an :class:`InputError`.

    Examples
    --------
    >>> match_ids(["urn:a:S1", "urn:a:S2", "urn:b:X"], "S[12]$")
    ['urn:a:S1', 'urn:a:S2']
    >>> match_ids(["a" * 50], "(.*)(.*)(.*)(.*)(.*)X")
    []
    """
    import duckdb

    if len(pattern) > MAX_PATTERN:
        raise InputError(f"idPattern is {len(pattern)} characters long (at most {MAX_PATTERN})", field="idPattern")
    if not ids:
        return []
    con = getattr(_RE2, "con", None)
    if con is None:
        con = _RE2.con = duckdb.connect()
    try:
        got = con.execute("SELECT list_filter($1::VARCHAR[], x -> regexp_matches(x, $2))",
                          [list(ids), pattern]).fetchone()
    except duckdb.Error as exc:
        msg = str(exc).split("Error: ", 1)[-1]
        raise InputError(f"idPattern {pattern[:200]!r} is not a regular expression RE2 accepts: {msg}"[:400],
                         field="idPattern", hint="RE2 syntax: no backreferences or look-around") from None
    return list(got[0]) if got is not None and got[0] is not None else []


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (mean Earth radius 6,371,008.8 m).

    Examples
    --------
    >>> round(haversine_m(116.0, 40.0, 116.0, 41.0))
    111195
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))
