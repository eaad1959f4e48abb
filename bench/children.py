"""Child processes of a benchmark that do not outlive it.

A benchmark that is stopped (``timeout``, Ctrl-C, ``kill``) must not leave its publishers, ingest or server
running, nor its broker: they would load the machine under the next measurement. Two parts:

* :func:`die_with_parent` — called first in each child (or as a ``subprocess.Popen`` ``preexec_fn``): Linux's
  ``PR_SET_PDEATHSIG`` sends the child SIGTERM when the process that started it dies, even by SIGKILL, which no
  handler in the parent can see;
* :func:`exit_on_sigterm` — called once in the bench's main process: SIGTERM raises ``SystemExit``, so its
  ``finally`` blocks (the broker stopped, the children joined, the work folder removed) run as they do on
  Ctrl-C.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Have this process get ``sig`` when its parent dies; exit at once if the parent is gone already.

    Returns False where the kernel call is not available (not Linux): the child then lives on as before.
    """
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    # the parent died before prctl (no signal will come): the child was handed to init (or a subreaper)
    if parent == 1 or os.getppid() != parent:
        os._exit(128 + int(sig))
    return True


def exit_on_sigterm() -> None:
    """SIGTERM raises ``SystemExit(143)`` in the main thread, so that cleanup in ``finally`` runs."""

    def _exit(signum: int, _frame: Any) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
