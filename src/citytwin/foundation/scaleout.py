"""Scale-out on Dask: the ``--dask`` option, the cluster it names, and tasks run on it (issue 19).

One option everywhere (CLI ``--dask``, Python ``dask=``):

* ``local:N`` — a :class:`distributed.LocalCluster` of ``N`` worker processes with one thread each,
  started for the job and closed after it;
* ``tcp://HOST:PORT`` (or ``tls://``) — an existing scheduler; its workers must see the same paths
  (a shared folder, or fsspec URLs) and have citytwin installed.

Workers read their inputs themselves (Parquet parts, GeoParquet, source files) from paths: shipping
data from the client's memory to the workers is two orders of magnitude slower (STACK.md: a 1M x 400
spatial join took 1.7 s when workers read GeoParquet, 158 s when it was shipped). Tasks return small
results (counts, partial sums) or write their own Parquet part and return its path.

A worker that dies mid-job (killed, out of memory) is restarted by its nanny and the scheduler runs
its tasks again elsewhere (``distributed.scheduler.allowed-failures``, default 3); a task that raises
does not run again: :func:`run_tasks` cancels the rest and raises the first error.

Examples
--------
>>> parse_dask("local:2")
DaskSpec(workers=2, address=None)
>>> parse_dask("tcp://10.0.0.5:8786").address
'tcp://10.0.0.5:8786'
>>> parse_dask("local:0")
Traceback (most recent call last):
...
citytwin.foundation.errors.InputError: field '--dask': local:N needs N >= 1, got 'local:0'
  hint: --dask local:N (N worker processes here) or --dask tcp://HOST:PORT (a running scheduler)
"""

from __future__ import annotations

import importlib
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from citytwin.foundation.errors import CitytwinError, InputError

__all__ = ["DaskSpec", "Progress", "cluster", "parse_dask", "placement", "run_futures", "run_tasks", "task_keys",
           "worker_cache", "worker_threads"]

T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called as tasks finish (the CLI draws a bar from it)."""

_HINT = "--dask local:N (N worker processes here) or --dask tcp://HOST:PORT (a running scheduler)"
_ADDRESS = re.compile(r"^(tcp|tls)://[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
#: the most local workers one machine is asked for (a typo such as local:200 should not fork 200 processes)
MAX_LOCAL_WORKERS = 64
#: how long a client waits for an existing scheduler to answer
CONNECT_TIMEOUT = "10s"
#: Dask settings of the local clusters started here: the event-loop tick (a check for a blocked loop,
#: 20 ms by default) and the system monitor (dashboard figures, 500 ms) run in every process of the
#: cluster, the scheduler's inside this one; at their defaults they took 0.03 CPU-s per second of a job
#: in the client's process while it waited, now about half (bench/scaleout.py uses the same)
LOCAL_CONFIG = {"distributed.admin.tick.interval": "1s", "distributed.admin.system-monitor.interval": "2s",
                # each worker's statistical profiler (for the dashboard, which local clusters here do not
                # run) sampled every 10 ms: 0.025 CPU-s per second of an idle worker, 0.005 without it
                "distributed.worker.profile.enabled": False,
                # glibc's own malloc settings, as in one process: Dask's MALLOC_TRIM_THRESHOLD_=65536 turns
                # off glibc's adaptive mmap threshold, so every NumPy array over 128 KiB was a fresh mmap,
                # page-faulted in again (index, kernel densities: a third of the workers' CPU in the kernel)
                "distributed.nanny.pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": 1,
                                                        "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}}
#: the environment of the local clusters' workers: one BLAS/OpenMP thread (one thread a worker process)
LOCAL_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: no dashboard, and the scheduler's HTTP server (its health and metrics routes, which Dask starts even with
#: ``dashboard_address=None``, then on port 8787: "Port 8787 is already in use ... Hosting the HTTP server on port
#: N instead" reached the user's terminal as a Python warning whenever another cluster ran) on a free loopback port
NO_DASHBOARD: dict[str, Any] = {"dashboard_address": "127.0.0.1:0", "scheduler_kwargs": {"dashboard": False}}


@dataclass(frozen=True)
class DaskSpec:
    """Where Dask work runs: ``workers`` local processes, or the scheduler at ``address``."""

    workers: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        return self.address if self.address else f"local:{self.workers}"


def parse_dask(spec: str | DaskSpec) -> DaskSpec:
    """Read a ``--dask`` value (``local:N`` or ``tcp://HOST:PORT``).

    Raises
    ------
    InputError
        For anything else, naming the option and the value.
    """
    if isinstance(spec, DaskSpec):
        return spec
    s = str(spec).strip()
    if s.startswith("local:"):
        n = s[len("local:"):]
        if not n.isdigit() or int(n) < 1:
            raise InputError(f"local:N needs N >= 1, got {s!r}", field="--dask", hint=_HINT)
        if int(n) > MAX_LOCAL_WORKERS:
            raise InputError(f"local:{n} asks for more than {MAX_LOCAL_WORKERS} worker processes", field="--dask",
                             hint=_HINT)
        return DaskSpec(workers=int(n))
    if _ADDRESS.match(s):
        port = int(s.rsplit(":", 1)[1])
        if not 0 < port < 65536:
            raise InputError(f"port {port} out of range in {s!r}", field="--dask", hint=_HINT)
        return DaskSpec(address=s)
    raise InputError(f"not a Dask cluster: {s!r}", field="--dask", hint=_HINT)


@contextmanager
def cluster(spec: str | DaskSpec) -> Iterator[Any]:
    """A :class:`distributed.Client` on the cluster ``spec`` names; a local cluster is closed afterwards.

    Raises
    ------
    InputError
        For a bad ``spec`` (:func:`parse_dask`).
    CitytwinError
        When the scheduler cannot be reached or the local cluster does not start.
    """
    dd = _distributed()
    Client, LocalCluster = _client_class(), dd.LocalCluster
    ds = parse_dask(spec)
    if ds.address:
        try:
            client = Client(ds.address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise CitytwinError(f"cannot reach the Dask scheduler at {ds.address}: {exc}",
                                hint="start one (`dask scheduler`, then `dask worker ADDRESS`) or use --dask local:N"
                                ) from None
        try:
            yield client
        finally:
            client.close()
        return
    try:
        # one thread per process: our tasks hold the GIL in places (GEOS, pandas) and DuckDB/pyarrow
        # would otherwise start as many threads as cores in every worker
        with importlib.import_module("dask").config.set(LOCAL_CONFIG):  # the nannies pass it to the workers
            local = LocalCluster(n_workers=ds.workers, threads_per_worker=1, processes=True, **NO_DASHBOARD,
                                 # a failed task is raised to the caller, who says it (a user error: no
                                 # traceback); the workers' own "Compute Failed" log would print one on stderr
                                 silence_logs=logging.CRITICAL, env=LOCAL_ENV)
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise CitytwinError(f"the local Dask cluster ({ds}) did not start: {exc}") from None
    try:
        client = Client(local, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        local.close()


def run_tasks(client: Any, fn: Callable[..., R], items: Sequence[Any], *, progress: Progress | None = None,
              key: str = "citytwin", **kwargs: Any) -> list[R]:
    """``[fn(item, **kwargs) for item in items]`` on the cluster, results in the order of ``items``.

    Every call is a task of its own, with a key unique to this call (``key`` + a random suffix, so two
    jobs on one scheduler never share results). ``progress(done, total)`` is called as tasks finish.
    When a task raises, the other tasks are waited for, then its error is raised here (a
    :class:`CitytwinError` as it was raised on the worker); tasks of a worker that died are run again
    by the scheduler, and only when a task has killed too many workers is it given up.

    Raises
    ------
    CitytwinError
        A task's own error, or the cluster's (a task given up after killing workers).
    """
    if not items:
        return []
    futures = client.map(fn, list(items), pure=False, key=task_keys(key, len(items)), **kwargs)
    return run_futures(client, futures, progress=progress)


def task_keys(prefix: str, n: int) -> list[str]:
    """``n`` task keys ``PREFIX-RANDOM-i``, unique to one job."""
    tag = uuid.uuid4().hex[:12]
    return [f"{prefix}-{tag}-{i}" for i in range(n)]


def run_futures(client: Any, futures: Sequence[Any], *, progress: Progress | None = None,
                each: Callable[[int, Any], Any] | None = None) -> list[Any]:
    """The results of ``futures`` (submitted to ``client``) in their order; see :func:`run_tasks`.

    Every future is waited for, even after one failed, so that no task still runs when the caller
    cleans up; then the first error is raised.

    ``each(i, result)``: called here as each future finishes (in the order they finish, while the others
    still run), so that the client works on a result while the workers compute; its return value
    replaces the result in the list returned. After a failed future it is not called any more.
    """
    dd = _distributed()
    KilledWorker = importlib.import_module("distributed.scheduler").KilledWorker

    futures = list(futures)
    total = len(futures)
    done = 0
    if progress:
        progress(0, total)
    failed = None
    try:
        # every task is waited for, even after one failed: a task still running must not write into a
        # folder its caller is about to remove (nothing half-written)
        where: dict[Any, list[int]] = {}
        for i, f in enumerate(futures):
            where.setdefault(f.key, []).append(i)
        results: dict[int, Any] = {}
        for fut in dd.as_completed(futures, loop=client.loop):
            if fut.status == "error":
                failed = failed or fut
                continue
            done += 1
            if each is not None and failed is None:
                value = fut.result()
                for i in where[fut.key]:
                    if i not in results:
                        results[i] = each(i, value)
            if progress:
                progress(done, total)
        if failed is not None:
            failed.result()  # raises the task's own exception
        if each is not None:
            return [results[i] for i in range(total)]
        return list(client.gather(futures))
    except KilledWorker as exc:
        raise CitytwinError(f"a Dask task was given up after its workers died: {exc}",
                            hint="a worker ran out of memory or was killed repeatedly; use smaller partitions "
                                 "or more memory per worker") from None
    finally:
        for f in futures:
            if not f.done():
                f.cancel()


def worker_threads() -> int:
    """Threads of the Dask worker running this task (1 outside a worker): what a task's DuckDB may use."""
    try:
        return int(_distributed().get_worker().state.nthreads)
    except (ValueError, AttributeError):
        return 1


def _distributed() -> Any:
    """The ``distributed`` module (imported when a cluster is asked for; untyped for mypy)."""
    return importlib.import_module("distributed")


_CLIENT: list[Any] = []


def _client_class() -> Any:
    """``distributed.Client``, except that a client whose start fails (an unreachable scheduler) stops its
    event-loop thread ("IO loop"): distributed leaves it running, and the client that owns it is nowhere to
    be closed (its constructor raised)."""
    if not _CLIENT:
        class StoppingClient(_distributed().Client):  # type: ignore[misc]
            def start(self, **kwargs: Any) -> None:
                try:
                    super().start(**kwargs)
                except BaseException:
                    self._loop_runner.stop()
                    raise

        _CLIENT.append(StoppingClient)
    return _CLIENT[0]


#: the name of the scheduler plugin :func:`placement` registers (once per scheduler)
PLACED_PLUGIN = "citytwin-placed"
#: the task keys that plugin looks after (every key citytwin makes starts so: :func:`task_keys`)
PLACED_PREFIX = "citytwin"


def placement(client: Any) -> Callable[[int], dict[str, Any]]:
    """``on(i)``: the ``submit`` options that place a task on the ``i``-th worker (round robin over the
    workers the scheduler has now, sorted), so that Dask's work stealing never moves it and a task whose
    worker has gone still runs.

    With loose restrictions (``workers=[w], allow_other_workers=True``) the scheduler's work stealing may
    move a queued task to another worker whenever one is idle (``distributed.stealing``: a loose
    restriction is no bar to a thief), which undoes a deliberate split (life circles' searches, session 16:
    5 against 3). A strict restriction (``workers=[w]``) is never stolen, but a task strictly bound to a
    worker that died (its nanny restarts it at another address) or left would wait for ever. So the tasks
    are placed strictly and a scheduler plugin (registered here once per scheduler, idempotent; its class
    travels by value, so the scheduler needs no citytwin) loosens the restriction of a task of citytwin's
    when none of its workers can take it (gone, retiring or paused): the scheduler then gives it to any
    worker, as with ``allow_other_workers``. Where the plugin cannot be registered, the placement is loose, as before.
    """
    workers = sorted(client.scheduler_info()["workers"])
    strict = True
    try:
        client.register_plugin(_placed_plugin()(), name=PLACED_PLUGIN)
    except Exception:  # a scheduler that refuses the plugin (another distributed): loose, stealing allowed
        strict = False

    def on(i: int) -> dict[str, Any]:
        if not workers:
            return {}
        w = workers[i % len(workers)]
        return {"workers": [w]} if strict else {"workers": [w], "allow_other_workers": True}

    return on


_PLUGIN: list[Any] = []


def _placed_plugin() -> Any:
    """The scheduler plugin of :func:`placement` (a class made here: ``distributed`` imported when asked for)."""
    if not _PLUGIN:
        base = importlib.import_module("distributed.diagnostics.plugin").SchedulerPlugin

        class Placed(base):  # type: ignore[misc, valid-type]
            """Loosens the worker restriction of a citytwin task that none of its workers can take."""

            idempotent = True
            name = PLACED_PLUGIN

            def __init__(self) -> None:
                self.scheduler: Any = None

            async def start(self, scheduler: Any) -> None:
                self.scheduler = scheduler

            def _orphan(self, ts: Any) -> bool:
                s = self.scheduler
                return bool(ts is not None and ts.worker_restrictions and not ts.loose_restrictions
                            and str(ts.key).startswith(PLACED_PREFIX)
                            and not any(s.workers.get(w) in s.running for w in ts.worker_restrictions))

            def _loosen(self, keys: list[Any]) -> None:
                # run by the event loop, outside the transition that found them
                s = self.scheduler
                recs = {k: "processing" for k in keys if k in s.tasks and s.tasks[k].state == "no-worker"}
                if recs:
                    s.transitions(recs, stimulus_id=f"citytwin-worker-gone-{uuid.uuid4().hex[:8]}")

            def _later(self, keys: list[Any]) -> None:
                for k in keys:  # any worker now (also one that joins later: no restriction left to match)
                    ts = self.scheduler.tasks[k]
                    ts.worker_restrictions, ts.loose_restrictions = None, True
                self.scheduler.loop.add_callback(self._loosen, keys)

            def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
                if finish == "no-worker" and self.scheduler is not None and self._orphan(self.scheduler.tasks.get(key)):
                    self._later([key])

            def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
                # tasks sent to no-worker while their worker was still there but not running (retiring, paused)
                if self.scheduler is not None:
                    keys = [ts.key for ts in list(self.scheduler.unrunnable) if self._orphan(ts)]
                    if keys:
                        self._later(keys)

        _PLUGIN.append(Placed)
    return _PLUGIN[0]


_CACHE: dict[Any, Any] = {}


def worker_cache(key: Any, build: Callable[[], T]) -> T:
    """``build()`` once per process for ``key`` (a worker keeps e.g. its copy of a street network).

    Used for what every task of a job needs whole and reads itself once (replicated, not shipped);
    ``key`` should name the job (a token), so that a later job reads its inputs afresh.
    """
    if key not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = build()
    return cast(T, _CACHE[key])
