"""Single observations posted over HTTP, committed in groups by one writer thread the event loop awaits.

``POST /twin/v1/observations`` with one reading is the most frequent write of a city's sensors. Its
commit (an fsynced history file, the live state, the alert rules) is shared by concurrent requests
(the ingest's group commit, :meth:`citytwin.foundation.timeseries.Ingestor.commit`); run from a
worker thread per request, each reading also paid a hand-over to the thread pool and back, and 40
threads contended for the interpreter. :class:`CommitQueue` has one writer thread: the event loop
queues a request's parsed readings and awaits; the writer commits everything queued so far in one
``Ingestor.commit`` call (one group: one history file and fsync, one state transaction, the rules
once) and wakes the requests. Each request still returns only once its readings are durable and the
rules have seen them; a store failure is raised to every request of the group (503), as before.

Examples
--------
>>> import asyncio
>>> seen = []
>>> q = CommitQueue(lambda items: seen.append(len(items)))
>>> async def three():
...     await asyncio.gather(*(q.submit(i) for i in range(3)))
>>> asyncio.run(three())
>>> sum(seen), q.items, q.commits <= 3
(3, 3, True)
>>> q.close()
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from citytwin.service.auditbatch import wake

__all__ = ["CommitQueue"]


class CommitQueue:
    """Items queued from event loops, handed to ``commit`` in groups by one writer thread.

    Parameters
    ----------
    commit
        Called in the writer thread with every item queued so far (a list, at most ``max_items``); an
        exception it raises is raised to each of their submitters.
    max_items
        Most items in one call.
    """

    def __init__(self, commit: Callable[[list[Any]], Any], *, max_items: int = 2000) -> None:
        self._commit = commit
        self.max_items = max_items
        self._cond = threading.Condition()
        self._pending: list[tuple[Any, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._stop = False
        #: items committed, and calls of ``commit`` (the ratio is the group size)
        self.items = 0
        self.commits = 0

    async def submit(self, item: Any) -> None:
        """Queue ``item``; return once the ``commit`` call that took it returned (or raise what it raised)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            self._pending.append((item, loop, fut))
            if self._thread is None:
                self._stop = False
                self._thread = threading.Thread(target=self._run, name="citytwin-http-commit", daemon=True)
                self._thread.start()
            else:
                self._cond.notify()
        await fut

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if not self._pending:
                    self._thread = None
                    return
                batch, self._pending = self._pending[:self.max_items], self._pending[self.max_items:]
            error: BaseException | None = None
            try:
                self._commit([item for item, _, _ in batch])
            except BaseException as exc:  # raised to each submitter of the group
                error = exc
            else:
                self.items += len(batch)
                self.commits += 1
            wake([(loop, fut) for _, loop, fut in batch], error)

    def close(self) -> None:
        """Stop the writer once what is queued is committed (a later :meth:`submit` starts it again)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            th = self._thread
        if th is not None:
            th.join(120)

