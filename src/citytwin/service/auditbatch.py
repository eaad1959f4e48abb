"""The HTTP service's catalog: group commit of the per-request audit rows, and pooled connections.

Every HTTP request is one row of the catalog's audit log (:class:`citytwin.service.auth.AuditMiddleware`),
written before its response goes out. Written one by one, each row is one SQLite commit with its
``fsync``: 2.5–4 ms on this machine when quiet, 25 ms when its disk is shared, most of a cached
tile's or an entity read's cost. :class:`GroupCommitCatalog` keeps the guarantee and shares the
commit: each row is queued (timestamped when queued) to one writer thread, which inserts all rows
queued so far in one transaction; rows queued meanwhile go into the next one. Under load many
requests share one commit. Still one row per request, in the order the requests were audited,
committed before the response (the caller waits for its row's commit: :meth:`~GroupCommitCatalog.audit`
from a thread, :meth:`~GroupCommitCatalog.audit_async` from the event loop, which then waits without
a worker thread of its own): nothing is lost when the process stops, cleanly or not. Commits are made
with SQLite's ``synchronous=NORMAL`` (the write-ahead log is synced at checkpoints, not at each
commit): a crash of the process loses no row; a crash of the operating system or a power cut may lose
the rows since the last checkpoint.

On SQLite the catalog's other calls (token look-ups, dataset records) reuse open connections from a
small pool instead of opening the file for each (an open with its pragmas costs ~0.25 ms, a token
look-up on an open connection ~5 µs); each call still reads the committed state of the moment, so a
revoked token or a changed role applies at the next request, whichever process changed it.

Examples
--------
>>> import tempfile, threading
>>> from pathlib import Path
>>> cat = GroupCommitCatalog(Path(tempfile.mkdtemp()) / "catalog.sqlite")
>>> ts = [threading.Thread(target=cat.audit, kwargs={"user": f"u{i}", "role": "viewer", "action": "twin.read"})
...       for i in range(20)]
>>> for t in ts: t.start()
>>> for t in ts: t.join()
>>> len(cat.audit_log()), cat.rows_written, cat.commits <= 20
(20, 20, True)
>>> cat.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from citytwin.foundation.catalog import Catalog, now
from citytwin.foundation.records import Connection
from citytwin.foundation.sqlite_open import connect_wal

__all__ = ["GroupCommitCatalog"]

#: the same row as :meth:`Catalog.audit` writes
_INSERT = ('INSERT INTO audit(ts, "user", role, action, dataset, version, rows, outcome, detail)'
           " VALUES (?,?,?,?,?,?,?,?,?)")
#: idle SQLite connections kept open for reuse
POOL_SIZE = 16

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"] | None


class GroupCommitCatalog(Catalog):
    """A workspace catalog whose :meth:`audit` rows are committed in groups by one writer thread.

    The writer takes every row queued so far (at most ``max_rows``), commits them in one
    transaction and wakes their callers; rows queued while it commits wait for the next one. The
    thread starts with the first row and stops at :meth:`close` (a later row starts it again).

    Parameters
    ----------
    target
        The records database of the workspace's catalog (its file, or a ``postgresql://`` URL).
    max_rows
        Most rows in one commit.
    """

    def __init__(self, target: str | Path, *, max_rows: int = 5000) -> None:
        super().__init__(target)
        self.max_rows = max_rows
        self._cond = threading.Condition()
        self._pending: list[tuple[Any, ...]] = []
        self._waiters: list[_Waiter] = []  # one per pending row: the event loop's future, or None (a thread)
        self._queued = 0       # rows queued so far (a row's number is its place in this count)
        self._written = 0      # rows whose commit finished (written or failed)
        self._failed: list[tuple[int, int, BaseException]] = []  # (first, last) row numbers of failed commits
        self._thread: threading.Thread | None = None
        self._stop = False
        self._idle: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        #: rows committed, and commits made (the ratio is the group size)
        self.rows_written = 0
        self.commits = 0

    # -- connections -----------------------------------------------------------------------------
    @property
    def inline_reads(self) -> bool:
        """True when a short read costs microseconds (SQLite, pooled): the service may make it on its
        event loop instead of in a worker thread."""
        return self.db.dialect == "sqlite"

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection to the records database; on SQLite one from the pool (returned at exit,
        rolled back first if a transaction was left open)."""
        if self.db.dialect != "sqlite":
            with super().connect() as con:
                yield con
            return
        with self._pool_lock:
            raw = self._idle.pop() if self._idle else None
        if raw is None:
            raw = self._open()
        ok = False
        try:
            yield Connection(raw, "sqlite", self.db.store.name)
            ok = True
        finally:
            if raw.in_transaction:
                try:
                    raw.execute("ROLLBACK")
                except sqlite3.Error:
                    ok = False
            with self._pool_lock:
                if ok and len(self._idle) < POOL_SIZE:
                    self._idle.append(raw)
                    raw = None
            if raw is not None:
                raw.close()

    def _open(self) -> sqlite3.Connection:
        assert self.db.path is not None
        return connect_wal(self.db.path, what="the records database", row_factory=True)

    # -- audit rows ------------------------------------------------------------------------------
    def _queue(self, row: tuple[Any, ...], waiter: _Waiter) -> int:
        with self._cond:
            self._pending.append(row)
            self._waiters.append(waiter)
            self._queued += 1
            if self._thread is None:
                self._stop = False
                self._thread = threading.Thread(target=self._run, name="citytwin-audit", daemon=True)
                self._thread.start()
            else:
                self._cond.notify_all()
            return self._queued

    def audit(self, *, user: str | None, role: str | None, action: str, dataset: str | None = None,
              version: int | None = None, rows: int | None = None, outcome: str = "ok",
              detail: str | None = None) -> None:
        """Queue one audit row and return once it is committed (raises what its commit raised)."""
        mine = self._queue((now(), user, role, action, dataset, version, rows, outcome, detail), None)
        with self._cond:
            while self._written < mine:
                self._cond.wait()
            for lo, hi, failure in self._failed:
                if lo <= mine <= hi:
                    raise failure

    async def audit_async(self, *, user: str | None, role: str | None, action: str, dataset: str | None = None,
                          version: int | None = None, rows: int | None = None, outcome: str = "ok",
                          detail: str | None = None) -> None:
        """:meth:`audit` for the event loop: queue the row, and wait for its commit without a thread."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._queue((now(), user, role, action, dataset, version, rows, outcome, detail), (loop, fut))
        await fut

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if not self._pending:  # stopped, nothing left
                    self._thread = None
                    return
                n = min(len(self._pending), self.max_rows)
                batch, self._pending = self._pending[:n], self._pending[n:]
                waiters, self._waiters = self._waiters[:n], self._waiters[n:]
                first = self._written + 1
            error: BaseException | None = None
            try:
                self._write(batch)
            except BaseException as exc:  # the callers of these rows raise it
                error = exc
            with self._cond:
                self._written += len(batch)
                if error is None:
                    self.rows_written += len(batch)
                    self.commits += 1
                else:
                    self._failed = [*self._failed[-15:], (first, self._written, error)]
                self._cond.notify_all()
            wake(waiters, error)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        with self.connect() as con:
            if con.dialect == "sqlite":
                # durable once in the OS (a process crash loses nothing); the write-ahead log reaches the
                # disk at its checkpoints, not at each commit (an OS crash may lose the last rows)
                con.execute("PRAGMA synchronous=NORMAL")
            try:
                with con.transaction():
                    con.executemany(_INSERT, rows)
            finally:
                if con.dialect == "sqlite":  # the pooled connection goes back as it came
                    con.execute("PRAGMA synchronous=FULL")

    def close(self) -> None:
        """Stop the writer once the queued rows are committed, and close the pooled connections
        (a later :meth:`audit` starts the writer again)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            th = self._thread
        if th is not None:
            th.join(60)
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for raw in idle:
            raw.close()


def wake(waiters: list[_Waiter], error: BaseException | None) -> None:
    """Resolve the event-loop futures of a committed (or failed) batch: one call into each loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for w in waiters:
        if w is not None:
            by_loop.setdefault(w[0], []).append(w[1])
    for loop, futs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(_resolve, futs, error)


def _resolve(futs: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for f in futs:
        if not f.done():
            if error is None:
                f.set_result(None)
            else:
                f.set_exception(error)
