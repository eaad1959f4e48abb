"""Where the CPU of the 1M-node grid's life circles goes on Dask (issue 19): each task's thread CPU, per worker.

Runs ``scaleout.life_circles`` on the grid of ``bench/scaleout.py`` (``lifegrid``; generated into
``bench/out/scaleout`` if missing) ``--rounds`` times on one LocalCluster of ``--workers`` workers (started as
the bench starts them, the workflows' modules imported first), with every task function of
``citytwin.workflows.scaleout_life`` wrapped in the workers to record its thread CPU and start/stop times.
Prints per round: the wall time, the client's CPU, and per worker its process CPU, its tasks' CPU, the CPU
outside its tasks (receiving and sending data, the event loop), then each task in the order it ran (a
search names its category). Which worker ran which search shows the split; the tasks Dask's work stealing
moved (confirmed steals in the scheduler's "stealing" events) are counted per round, by their number in
``life_split`` (session 18, 2 workers: 12 the graph fetched early, 13 the hold, 14-17 the searches of the
nodes' worker, 18 the client's table, 19-22 the graph's worker's searches; session 17: searches 13 to 20 of 22;
12 to 19 of 21 before). Each task's minor page faults and kernel CPU (its thread's ``getrusage``) and each
worker's in the round are printed too (session 18: what a cluster's second job saves).

    python bench/lifegrid_tasks.py                   # 2 workers, 3 rounds, 1M nodes
    python bench/lifegrid_tasks.py --workers 1 --rounds 2 --nodes 250000

A worker's CPU in its other threads (the event loop, transfers) is the "outside tasks" figure; the load is
printed (the machine is shared: compare rounds of one run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scaleout as bench  # the bench's cluster, data and warm-up

#: the task functions of ``life_split`` (a name starting with one of these is wrapped)
TASKS = ("_life", "_node", "_graph", "_hold", "_search", "_for_client", "_home")


def wrap_tasks() -> list[str]:
    """In a worker: every task function of ``scaleout_life`` logs (name, thread CPU s, start, stop) to
    ``scaleout_life._task_log`` (tasks are pickled by reference, so the worker runs the wrapped one)."""
    import functools
    import resource

    import citytwin.workflows.scaleout_life as m

    log: list[tuple[str, float, float, float, int, float]] = []
    m._task_log = log  # type: ignore[attr-defined]
    for name in dir(m):
        fn = getattr(m, name)
        if not name.startswith(TASKS) or not callable(fn) or getattr(fn, "_logged", False):
            continue

        def make(fn: Any, name: str) -> Any:
            @functools.wraps(fn)
            def run(*a: Any, **k: Any) -> Any:
                r0 = resource.getrusage(resource.RUSAGE_THREAD)
                c, s = time.thread_time(), time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    r1 = resource.getrusage(resource.RUSAGE_THREAD)
                    label = f"{name}[{a[0]}]" if name == "_life_search" else name
                    log.append((label, time.thread_time() - c, s, time.perf_counter(), r1.ru_minflt - r0.ru_minflt,
                                r1.ru_stime - r0.ru_stime))

            run._logged = True  # type: ignore[attr-defined]
            return run

        setattr(m, name, make(fn, name))
    return sorted(n for n in dir(m) if getattr(getattr(m, n), "_logged", False))


def take() -> tuple[list[tuple[str, float, float, float, int, float]], float, int, float]:
    """In a worker: (the task log since the last call, the process's CPU s, minor page faults and kernel CPU s
    so far)."""
    import resource

    import citytwin.workflows.scaleout_life as m

    log = list(getattr(m, "_task_log", []))
    getattr(m, "_task_log", []).clear()
    r = resource.getrusage(resource.RUSAGE_SELF)
    return log, r.ru_utime + r.ru_stime, r.ru_minflt, r.ru_stime


def steals(dask_scheduler: Any) -> list[tuple[str, str, str]]:
    """On the scheduler: (key, victim, thief) of every confirmed steal so far (the stealing extension's events)."""
    out = []
    for _, msg in dask_scheduler.get_events(topic="stealing"):
        if msg[0] == "confirm":
            out.append((str(msg[1]), str(msg[3]), str(msg[4])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=1_000_000)
    a = ap.parse_args()
    from distributed import Client

    from citytwin.workflows import scaleout

    layers = bench.grid_layers(bench.grid_network(a.nodes, bench.OUT))
    cluster = bench.start(a.workers)
    try:
        with Client(cluster.scheduler_address, set_as_default=False) as client:
            client.run(bench._warm)
            client.run(wrap_tasks)
            bench._warm()
            for r in range(a.rounds):
                before = client.run(take)
                stolen0 = len(client.run_on_scheduler(steals))
                c0, s = bench._cpu_s(), time.perf_counter()
                scaleout.life_circles(dask=cluster.scheduler_address, **layers)
                wall, cpu = time.perf_counter() - s, bench._cpu_s() - c0
                after = client.run(take)
                stolen = [k for k, _, _ in client.run_on_scheduler(steals)[stolen0:] if k.startswith("citytwin-life")]
                print(f"round {r + 1}: wall {wall:.2f} s, client {cpu:.2f} CPU-s, load {os.getloadavg()[0]:.1f}, "
                      f"tasks stolen {len(stolen)}: {', '.join(k.rsplit('-', 1)[1] for k in stolen) or '-'}")
                t0 = min((x[2] for log, *_ in after.values() for x in log), default=0.0)
                for w, (log, total, faults, kernel) in sorted(after.items()):
                    tasks = sum(x[1] for x in log)
                    spent = total - before[w][1]
                    searches = sum(1 for x in log if x[0].startswith("_life_search"))
                    t_faults, t_kernel = sum(x[4] for x in log), sum(x[5] for x in log)
                    print(f"  worker {w}: {spent:.2f} CPU-s (kernel {kernel - before[w][3]:.2f}, minor page faults "
                          f"{(faults - before[w][2]) / 1e3:.1f}k), tasks {tasks:.2f} ({searches} searches; kernel "
                          f"{t_kernel:.2f}, faults {t_faults / 1e3:.1f}k), outside tasks {spent - tasks:.2f} "
                          f"(faults {(faults - before[w][2] - t_faults) / 1e3:.1f}k)")
                    for label, c, b, e, flt, kern in log:
                        print(f"    {label:28s} {c:5.2f} CPU-s (kernel {kern:4.2f}, faults {flt / 1e3:5.1f}k)   "
                              f"{b - t0:6.2f} -> {e - t0:6.2f} s")
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
