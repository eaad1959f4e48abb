"""``run_futures(each=)``: the client works on each result as it arrives, while the other tasks run
(issue 19, session 17: land change decodes each stripe's pieces, life circles make the homes' table)."""

from __future__ import annotations

import uuid

import pytest

#: how long a held task waits for the client (a bound against a hang, not a measured time)
PATIENCE_S = 60.0


def _held(name: str) -> str:
    """``"released"`` once the event ``name`` is set, ``"timed out"`` if it is not within the bound."""
    from distributed import Event

    return "released" if Event(name).wait(timeout=PATIENCE_S) else "timed out"


def _quick(x: int) -> int:
    return x * 10


def _fails(x: int) -> int:
    from citytwin.foundation.errors import InputError

    raise InputError(f"bad {x}", field="x")


def test_each_runs_on_a_result_while_other_tasks_still_run(dask_address: str) -> None:
    """The held task is released only by ``each`` on the quick task's result: were ``each`` called after every
    task had finished, the held one would time out. Results in the futures' order, ``each``'s values in place."""
    from distributed import Client, Event

    from citytwin.foundation.scaleout import run_futures, task_keys

    name = f"wall-{uuid.uuid4().hex}"
    seen: list[tuple[int, object]] = []
    with Client(dask_address, set_as_default=False) as client:
        Event(name, client=client)  # made before the tasks wait on it

        def each(i: int, result: object) -> object:
            seen.append((i, result))
            if i == 1:
                Event(name, client=client).set()
            return ("got", result)

        keys = task_keys("citytwin-wall", 3)
        futs = [client.submit(_held, name, key=keys[0], pure=False), client.submit(_quick, 4, key=keys[1], pure=False),
                client.submit(_quick, 5, key=keys[2], pure=False)]
        out = run_futures(client, futs, each=each)
        plain = run_futures(client, [client.submit(_quick, 4, key=k, pure=False) for k in task_keys("citytwin-wall", 1)])
    assert out == [("got", "released"), ("got", 40), ("got", 50)]
    assert plain == [40]
    order = [i for i, _ in seen]
    assert sorted(order) == [0, 1, 2] and order.index(1) < order.index(0)  # the held one after the quick one


def test_each_and_a_failed_task(dask_address: str) -> None:
    """A task's error is raised as without ``each`` (the task's own exception)."""
    from distributed import Client

    from citytwin.foundation.errors import InputError
    from citytwin.foundation.scaleout import run_futures, task_keys

    with Client(dask_address, set_as_default=False) as client:
        keys = task_keys("citytwin-wall", 2)
        futs = [client.submit(_quick, 1, key=keys[0], pure=False), client.submit(_fails, 2, key=keys[1], pure=False)]
        with pytest.raises(InputError, match="bad 2"):
            run_futures(client, futs, each=lambda i, r: r)
