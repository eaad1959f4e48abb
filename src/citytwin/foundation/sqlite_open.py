"""Open a SQLite file in WAL mode, safely when many connections open a new file at once.

``PRAGMA journal_mode=WAL`` on a file that is not yet in WAL mode reads the header under a shared
lock, then asks for an exclusive one. When another connection holds or waits for a write lock at that
moment, SQLite refuses at once with ``database is locked`` instead of calling the busy handler (it
would deadlock otherwise), so ``timeout=`` does not cover it. Eight threads opening a new records
database together hit it about once in twelve tries (CI saw it). :func:`connect_wal` retries that
pragma, with a short growing sleep, until the connection's own timeout has passed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from citytwin.foundation.errors import CitytwinError

#: seconds a connection waits for a lock (SQLite's busy timeout) and for WAL mode at open
TIMEOUT_S = 30.0


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def set_wal(con: sqlite3.Connection, path: str | Path, *, timeout_s: float = TIMEOUT_S,
            clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> None:
    """Put ``con``'s database in WAL mode, retrying while another connection holds the lock.

    Raises :class:`CitytwinError` naming ``path`` when the lock is still held after ``timeout_s``.
    """
    start = clock()
    delay = 0.001
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if not _locked(exc):
                raise
            if clock() - start >= timeout_s:
                raise CitytwinError(
                    f"cannot put the SQLite database {path} in WAL mode: it stayed locked for "
                    f"{timeout_s:g} s ({exc})",
                    hint="another process holds it open in a long transaction; retry when it is done"
                ) from None
            sleep(delay)
            delay = min(delay * 2, 0.05)
            continue
        return


def connect_wal(path: str | Path, *, what: str = "the SQLite database",
                timeout_s: float = TIMEOUT_S, row_factory: bool = False) -> sqlite3.Connection:
    """An autocommit connection to ``path`` in WAL mode with a busy timeout of ``timeout_s``.

    ``what`` names the file in the error when it cannot be opened (e.g. "the records database").
    """
    try:
        con = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise CitytwinError(f"cannot open {what} {path}: {exc}",
                            hint="check that the folder exists and is writable") from None
    if row_factory:
        con.row_factory = sqlite3.Row
    try:
        set_wal(con, path, timeout_s=timeout_s)
    except BaseException:
        con.close()
        raise
    return con
