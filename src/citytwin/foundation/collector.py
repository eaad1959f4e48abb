"""The cyclic garbage collector made rare where a process makes many containers that are never cyclic.

CPython's collector walks the young containers every 700 new ones (its default first threshold). The
twin's ingest (a batch's decoded JSON) and the land-change tasks (a million shapely geometries) make
hundreds of thousands of containers that reference counts free, none cyclic, so the walks find nothing
and cost 20–28 % of the ingest's CPU and 0.6–0.9 of a land-change job's 5.6–5.8 CPU-s. Two ways to make
them rare: :func:`collect_rarely` for a whole process (the ingest, the HTTP service) and
:func:`rare_collections` for a block (a task on a shared Dask worker, one job in a longer process: the
thresholds from before are restored when the last such block ends).
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["GC_THRESHOLD0", "collect_rarely", "collecting_rarely", "rare_collections"]

F = TypeVar("F", bound=Callable[..., Any])

#: The cyclic garbage collector's first threshold while collections are rare (CPython's default is 700).
GC_THRESHOLD0 = 20_000


def collect_rarely() -> None:
    """Run the cyclic garbage collector's young collections less often in this process (thresholds
    ``(GC_THRESHOLD0, 10, 10)`` or higher where already set).

    Why: decoding a batch of MQTT messages allocates tens of thousands of containers (lists and dicts of
    the JSON) that are all alive until the batch is stored, so at the default threshold of 700 the
    collector ran dozens of times per batch, walked them each time and found nothing: none of it is
    cyclic (reference counts free it). py-spy (``--native``) measured 20–28 % of the ingest pipeline's
    CPU in ``gc_collect_main``; with this threshold about 0 %. Memory: at most ``GC_THRESHOLD0`` more
    container objects before a collection (a few MiB).

    Examples
    --------
    >>> import gc
    >>> old = gc.get_threshold()
    >>> collect_rarely()
    >>> gc.get_threshold()[0] >= GC_THRESHOLD0
    True
    >>> gc.set_threshold(*old)
    """
    t0, t1, t2 = gc.get_threshold()
    if 0 < t0 < GC_THRESHOLD0:  # 0: the collector is off, left so
        gc.set_threshold(GC_THRESHOLD0, t1, t2)


class _Blocks:
    """The blocks in :func:`rare_collections` now, and the thresholds from before the first."""

    lock = threading.Lock()
    users = 0
    saved: tuple[int, int, int] = (700, 10, 10)


@contextmanager
def rare_collections() -> Iterator[None]:
    """The cyclic garbage collector's young collections at most every :data:`GC_THRESHOLD0` new containers
    while the block runs (the thresholds before restored when the last such block in the process ends,
    in whatever order the blocks end; a collector switched off is left so).

    Why: a land-change job makes a million shapely geometries, which the collector tracks, and none of
    them is cyclic; at the default threshold it walked them again and again: in the Dask path's tasks run
    in one process (100k + 100k polygons) 0.6-0.9 of 5.6-5.8 CPU-s, a third of the client's decoding and
    finishing, and the tree order 0.17 s instead of 0.05 (``gc.disable()`` saved no more).

    Examples
    --------
    >>> import gc
    >>> old = gc.get_threshold()
    >>> gc.set_threshold(700, 10, 10)
    >>> with rare_collections():
    ...     gc.get_threshold()
    (20000, 10, 10)
    >>> gc.get_threshold()
    (700, 10, 10)
    >>> gc.set_threshold(*old)
    """
    with _Blocks.lock:
        if _Blocks.users == 0:
            old = gc.get_threshold()
            _Blocks.saved = old
            if 0 < old[0] < GC_THRESHOLD0:  # 0: the collector is off, left so
                gc.set_threshold(GC_THRESHOLD0, old[1], old[2])
        _Blocks.users += 1
    try:
        yield
    finally:
        with _Blocks.lock:
            _Blocks.users -= 1
            if _Blocks.users == 0:
                gc.set_threshold(*_Blocks.saved)


def collecting_rarely(fn: F) -> F:
    """``fn`` run within :func:`rare_collections` (a decorator: the tasks of a Dask job).

    Examples
    --------
    >>> import gc
    >>> old = gc.get_threshold()
    >>> gc.set_threshold(700, 10, 10)
    >>> collecting_rarely(gc.get_threshold)()
    (20000, 10, 10)
    >>> gc.set_threshold(*old)
    """
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with rare_collections():
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]
