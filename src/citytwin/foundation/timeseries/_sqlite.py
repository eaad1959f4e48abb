"""A per-thread SQLite connection in WAL mode, shared by the twin's small SQLite stores."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from citytwin.foundation.sqlite_open import connect_wal


def thread_connection(local: threading.local, path: Path, *, synchronous: str) -> sqlite3.Connection:
    """The calling thread's connection to ``path`` (opened once per thread, autocommit, WAL)."""
    con: sqlite3.Connection | None = getattr(local, "con", None)
    if con is None:
        con = connect_wal(path)
        con.execute(f"PRAGMA synchronous={synchronous}")
        local.con = con
    return con
