"""One writer of a twin's alerts: an exclusive lock file beside the alert store, held while a process may change them.

A twin's alert hub (:class:`citytwin.workflows.alerting.AlertHub`) keeps its live alerts in memory and writes each
changed alert to ``alerts.sqlite``; its rule engine keeps each entity's recent readings in memory. Both assume that
one process changes the twin's alerts. Two processes that did (the deployment's ``citytwin serve`` and ``citytwin
twin ingest`` on one workspace, both with automatic alerts) each evaluated the rules over the readings *they*
received and kept a book of their own: an alert the ingest raised could not be acknowledged through the API ("alert
… is already open"), and an acknowledgement would have been written over by the other book's next change.

:class:`WriterLock` makes the assumption a rule: the first hub that changes the alerts (or enables automatic
alerts) takes an exclusive ``flock`` on ``alerts.sqlite.lock`` until it is closed, and writes its process id and
command into it; another process (or another hub in the same process) that tries gets a
:class:`~citytwin.foundation.errors.CitytwinError` naming the holder. Readers (listing alerts, history, state) take
no lock. The kernel drops the lock with its process, so a killed process leaves nothing to clean up.

Examples
--------
>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> a, b = WriterLock(d + "/alerts.sqlite.lock"), WriterLock(d + "/alerts.sqlite.lock")
>>> a.claim("test a")
>>> try:
...     b.claim("test b")
... except Exception as exc:
...     print(type(exc).__name__)
CitytwinError
>>> a.release(); b.claim("test b"); b.release()
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path
from typing import IO

from citytwin.foundation.errors import CitytwinError

__all__ = ["WriterLock"]


class WriterLock:
    """An exclusive, non-blocking ``flock`` on ``path``, taken by :meth:`claim` and kept until :meth:`release`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._f is not None

    def claim(self, what: str) -> None:
        """Take the lock (nothing if held already); ``what`` says who holds it, in the error another claim gets."""
        if self._f is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (kept open while the lock is held)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise CitytwinError(
                f"the alerts of the twin at {self.path.parent} are kept by {holder}: one process evaluates a twin's "
                f"rules and changes its alerts",
                hint="stop that process, or let it do this work: `citytwin serve --broker HOST:PORT` runs the API and "
                     "the MQTT ingest in one process (docs/deployment.md); commands that only read alerts need no lock"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} ({what}; {' '.join(sys.argv[:3])[:120]}), since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
        f.flush()
        self._f = f

    def holder(self) -> str | None:
        """Who holds the lock now, without taking it (Linux: the ``FLOCK`` entries of ``/proc/locks``): the holder's
        line from the file, or None where no process holds it (also where ``/proc/locks`` cannot be read)."""
        try:
            st = self.path.stat()
            entries = Path("/proc/locks").read_text(encoding="ascii").splitlines()
        except OSError:
            return None
        dev = (os.major(st.st_dev), os.minor(st.st_dev))
        for line in entries:
            parts = line.split()
            if len(parts) < 6 or parts[1] != "FLOCK":
                continue
            try:
                major, minor, inode = parts[5].split(":")
                if (int(major, 16), int(minor, 16), int(inode)) == (*dev, st.st_ino):
                    return self.path.read_text(encoding="utf-8").strip() or f"pid {parts[4]}"
            except (ValueError, OSError):
                continue
        return None

    def release(self) -> None:
        """Let the lock go (the holder's line stays in the file; the next holder writes its own)."""
        f, self._f = self._f, None
        if f is not None:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
