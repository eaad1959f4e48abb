"""Dead-letter store: every rejected message or attribute, with its reason (SQLite, fsynced).

Nothing that arrives is silently dropped: a message that fails validation (malformed JSON,
wrong type, unknown unit, future timestamp, unknown entity, oversized ...) is written here
before the message is acknowledged.

Examples
--------
>>> import tempfile
>>> dl = DeadLetterStore(tempfile.mkdtemp() + "/dl.sqlite")
>>> dl.add([DeadLetter(source="mqtt", topic="citytwin/batch", reason="malformed_json", detail="not JSON",
...                    payload=b"{oops", payload_bytes=5)])
1
>>> dl.counts()
{'malformed_json': 1}
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from citytwin.foundation.timeseries._sqlite import thread_connection

MAX_KEPT = 65_536  # bytes of a rejected payload kept (the size is always recorded)

_DDL = """
CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT, received_us INTEGER NOT NULL, source TEXT NOT NULL, topic TEXT,
  reason TEXT NOT NULL, detail TEXT, entity TEXT, property TEXT, payload BLOB, payload_bytes INTEGER);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters(reason);
"""


@dataclass
class DeadLetter:
    """One rejected message or attribute."""

    source: str
    reason: str
    detail: str = ""
    topic: str | None = None
    entity: str | None = None
    property: str | None = None
    payload: bytes | None = None
    payload_bytes: int | None = None
    received_us: int = field(default_factory=lambda: time.time_ns() // 1000)


class DeadLetterStore:
    """Append-only SQLite table of dead letters (``synchronous=FULL``: on disk when :meth:`add` returns)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._con().executescript(_DDL)

    def _con(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path, synchronous="FULL")

    def add(self, letters: Sequence[DeadLetter]) -> int:
        """Durably store dead letters; returns how many."""
        if not letters:
            return 0
        rows = [(d.received_us, d.source, d.topic, d.reason, d.detail[:2000] if d.detail else d.detail, d.entity,
                 d.property, d.payload[:MAX_KEPT] if d.payload is not None else None,
                 d.payload_bytes if d.payload_bytes is not None else (len(d.payload) if d.payload else None))
                for d in letters]
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany("INSERT INTO dead_letters (received_us, source, topic, reason, detail, entity, property, "
                            "payload, payload_bytes) VALUES (?,?,?,?,?,?,?,?,?)", rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return len(rows)

    def counts(self) -> dict[str, int]:
        """Number of dead letters per reason."""
        return {r: int(n) for r, n in self._con().execute(
            "SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason")}

    def frame(self, *, reason: str | None = None, source: str | None = None, limit: int = 1000) -> pd.DataFrame:
        """Dead letters, newest first, as a frame (payload decoded as UTF-8 where possible)."""
        where: list[str] = []
        params: list[Any] = []
        if reason:
            where.append("reason = ?")
            params.append(reason)
        if source:
            where.append("source = ?")
            params.append(source)
        sql = "SELECT * FROM dead_letters" + (" WHERE " + " AND ".join(where) if where else "") + \
              " ORDER BY id DESC LIMIT ?"
        params.append(int(limit))
        cur = self._con().execute(sql, params)
        cols = [c[0] for c in cur.description]
        df = pd.DataFrame(cur.fetchall(), columns=cols)
        if len(df):
            df["received_at"] = pd.to_datetime(df["received_us"], unit="us", utc=True)
            df["payload"] = df["payload"].map(_decode)
        return df

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


def _decode(b: Any) -> Any:
    if isinstance(b, bytes):
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return repr(b)
    return b
