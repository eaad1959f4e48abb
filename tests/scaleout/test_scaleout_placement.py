"""Tasks placed on a worker (``foundation.scaleout.placement``) stay there: Dask's work stealing does not move
them to an idle worker, and a task whose worker died still runs elsewhere (issue 19, session 16)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import pytest

#: how long a test waits for the cluster to reach a state (a bound against a hang, not a measured time)
PATIENCE_S = 120.0


def _hold(name: str) -> str:
    """Wait until the event ``name`` is set, then say where this ran."""
    from distributed import Event, get_worker

    Event(name).wait()
    return str(get_worker().address)


def _where(i: int) -> str:
    from distributed import get_worker

    return str(get_worker().address)


def _until(check: Any, what: str) -> None:
    end = time.monotonic() + PATIENCE_S
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"the cluster did not reach: {what}")
        time.sleep(0.05)


def _steal(dask_scheduler: Any) -> int:
    """One pass of the scheduler's work stealing (what its periodic callback runs); how many moves are in flight."""
    stealing = dask_scheduler.extensions["stealing"]
    stealing.balance()
    return len(stealing.in_flight)


def _in_flight(dask_scheduler: Any) -> int:
    return len(dask_scheduler.extensions["stealing"].in_flight)


def test_placed_tasks_queued_behind_a_busy_worker_are_not_stolen(dask_address: str) -> None:
    """Worker 0 is held busy by a task while six more are queued on it and worker 1 is idle: the work stealing
    the scheduler then runs would move some to worker 1 (it does with ``allow_other_workers=True``, the old
    placement); placed tasks all run on worker 0."""
    from distributed import Client, Event

    from citytwin.foundation.scaleout import placement, task_keys

    with Client(dask_address, set_as_default=False) as client:
        on = placement(client)
        first = sorted(client.scheduler_info()["workers"])[0]
        name = f"citytwin-test-hold-{uuid.uuid4().hex}"
        event = Event(name, client=client)
        keys = task_keys("citytwin-test-placed", 7)
        held = client.submit(_hold, name, key=keys[0], pure=False, **on(0))
        _until(lambda: held.key in client.processing()[first], "the held task on worker 0")
        queued = [client.submit(_where, i, key=k, pure=False, **on(0)) for i, k in enumerate(keys[1:])]
        _until(lambda: len(client.processing()[first]) == 7, "all seven tasks on worker 0")
        try:
            for _ in range(5):  # the periodic callback runs it too; these passes make sure it ran while all wait
                client.run_on_scheduler(_steal)
                _until(lambda: client.run_on_scheduler(_in_flight) == 0, "the steals answered")
        finally:
            event.set()
        ran = client.gather([held, *queued])
    assert ran == [first] * 7, f"tasks moved off their worker {first}: {ran}"


def test_a_placed_task_whose_worker_died_runs_elsewhere(dask_address: str) -> None:
    """Worker 1 killed while it holds one placed task and four more wait for it: its nanny restarts it at
    another address, and the five tasks still run (a strict restriction alone would keep them waiting), and so
    does one placed on it after it died."""
    from distributed import Client, Event

    from citytwin.foundation.scaleout import placement, task_keys

    with Client(dask_address, set_as_default=False) as client:
        on = placement(client)
        second = sorted(client.scheduler_info()["workers"])[1]
        pid = client.run(os.getpid, workers=[second])[second]
        name = f"citytwin-test-hold-{uuid.uuid4().hex}"
        event = Event(name, client=client)
        keys = task_keys("citytwin-test-gone", 5)
        held = client.submit(_hold, name, key=keys[0], pure=False, **on(1))
        waiting = [client.submit(_where, i, key=k, pure=False, **on(1)) for i, k in enumerate(keys[1:])]
        _until(lambda: len(client.processing().get(second, ())) == 5, "all five tasks on worker 1")
        os.kill(pid, signal.SIGKILL)
        event.set()
        # a strict restriction alone: they would wait for the dead worker for ever
        _until(lambda: held.done() and all(f.done() for f in waiting), "the five tasks done")
        ran = client.gather([held, *waiting])
        # placed after the scheduler removed the worker (the job's placement names its old address)
        _until(lambda: second not in client.scheduler_info()["workers"], "worker 1 removed")
        late = client.submit(_where, 5, key=task_keys("citytwin-test-late", 1)[0], pure=False, **on(1))
        _until(late.done, "the task placed on the dead worker done")
        ran.append(late.result())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert len(ran) == 6 and second not in ran
