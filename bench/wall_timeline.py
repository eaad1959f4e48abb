"""Where the wall time of a Dask job goes when no worker computes (issue 19, session 17): a timeline per job.

Runs one workflow of ``bench/scaleout.py`` (``lifegrid``, ``change`` or ``index``) ``--rounds`` times on LocalClusters of
1 and of 2 workers (started and warmed as the bench does; rounds alternate between the two clusters) and
records, from the scheduler's task stream (``Client.get_task_stream``) and the client's own clock:

- ``start``: from the call to the first task's start on any worker (the client's planning, its connection,
  the scheduler's first transitions);
- per worker: the span from the job's start to its last task, its ``compute`` seconds, its ``transfer``
  seconds (fetching a dependency), and its idle seconds inside the job (neither);
- ``gaps``: the spans inside the job where **no** worker computes (client-side steps between rounds, waits);
- ``end``: from the last task's end to the call's return (the client's post-processing);
- the job's wall time and the client's CPU seconds.

    python bench/wall_timeline.py --workflow lifegrid --rounds 2
    python bench/wall_timeline.py --workflow change --rounds 2 --json out.json

The machine is shared: the load average is printed with each round.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scaleout as bench  # the bench's clusters, data and warm-up


def union_length(spans: list[tuple[float, float]]) -> float:
    """The total length of the union of ``spans`` (start, stop)."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(spans):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def gaps(spans: list[tuple[float, float]], t0: float, t1: float) -> list[tuple[float, float]]:
    """The spans of [t0, t1] that no span of ``spans`` covers."""
    out, at = [], t0
    for s, e in sorted(spans):
        if s > at:
            out.append((at, min(s, t1)))
        at = max(at, e)
    if at < t1:
        out.append((at, t1))
    return [(a, b) for a, b in out if b > a]


def _label(key: Any) -> str:
    """``citytwin-life-TAG-7`` -> ``life-7`` (the task's number in its workflow's order)."""
    k = str(key[0] if isinstance(key, tuple) else key).split("-")
    return "-".join(k[1:-2] + k[-1:]) if len(k) > 3 and k[0] == "citytwin" else "-".join(k[:2])


def timeline(stream: list[dict[str, Any]], t0: float, t1: float) -> dict[str, Any]:
    """The figures of one job (module docstring) from its task stream and the call's start and end."""
    compute: dict[str, list[tuple[float, float]]] = {}
    transfer: dict[str, list[tuple[float, float]]] = {}
    for rec in stream:
        for ss in rec.get("startstops", ()):
            d = compute if ss["action"] == "compute" else transfer
            d.setdefault(rec["worker"], []).append((ss["start"], ss["stop"]))
    every = [x for v in compute.values() for x in v]
    if not every:
        return {"wall": t1 - t0}
    first, last = min(s for s, _ in every), max(e for _, e in every)
    workers = {}
    for w in sorted(set(compute) | set(transfer)):
        c, tr = compute.get(w, []), transfer.get(w, [])
        busy = union_length(c + tr)
        wlast = max(e for _, e in c + tr)
        workers[w] = {"compute": union_length(c), "transfer": union_length(tr), "idle_in_job": (last - first) - busy,
                      "first_start": min(s for s, _ in c + tr) - t0, "last_stop": wlast - t0,
                      "idle_after_own_end": last - wlast}
    tasks: dict[str, list[tuple[str, float, float]]] = {}
    for rec in stream:
        for ss in rec.get("startstops", ()):
            if ss["action"] in ("compute", "transfer"):  # a transfer: the task's inputs fetched ("<-" before its name)
                label = _label(rec["key"]) if ss["action"] == "compute" else "<-" + _label(rec["key"])
                tasks.setdefault(rec["worker"], []).append((label, ss["start"] - t0, ss["stop"] - t0))
    for w in workers:
        workers[w]["tasks"] = [(k, round(s, 3), round(e, 3)) for k, s, e in sorted(tasks.get(w, []), key=lambda x: x[1])]
    none = gaps(every, first, last)
    return {"wall": t1 - t0, "start": first - t0, "end": t1 - last, "computing": last - first,
            "no_worker_computes": sum(b - a for a, b in none),
            "gaps": [(round(a - t0, 3), round(b - a, 3)) for a, b in none if b - a > 0.02],
            "workers": workers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workflow", choices=("lifegrid", "change", "index"), required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write the rounds' figures here")
    ap.add_argument("--tasks", action="store_true", help="print each worker's tasks (number, start, stop s)")
    a = ap.parse_args()
    from distributed import Client

    wf = bench.workflows(a.quick, bench.OUT, [a.workflow])[a.workflow]
    clusters = {n: bench.start(n) for n in a.workers}
    rows = []
    try:
        clients = {n: Client(c.scheduler_address, set_as_default=False) for n, c in clusters.items()}
        for c in clients.values():
            c.run(bench._warm)
            c.get_task_stream(start=time.time())  # registers the scheduler's task-stream plugin
        bench._warm()
        for r in range(a.rounds):
            for n, client in clients.items():
                addr = clusters[n].scheduler_address
                c0, t0 = bench._cpu_s(), time.time()
                wf["run"](addr)
                t1, cpu = time.time(), bench._cpu_s() - c0
                stream = client.get_task_stream(start=t0 - 0.5, stop=t1 + 0.5)
                row = {"workflow": a.workflow, "workers": n, "round": r + 1, "load": os.getloadavg()[0],
                       "client_cpu": cpu, "utc": time.strftime("%H:%M:%S", time.gmtime()), **timeline(stream, t0, t1)}
                rows.append(row)
                ws = "; ".join(f"w{i}: compute {v['compute']:.2f}, transfer {v['transfer']:.2f}, idle in job "
                               f"{v['idle_in_job']:.2f}, ends {v['idle_after_own_end']:.2f} s before the last"
                               for i, v in enumerate(row["workers"].values()))
                print(f"{a.workflow} {n} worker(s) r{r + 1} {row['utc']} UTC load {row['load']:.1f}: wall {row['wall']:.2f} s "
                      f"= start {row['start']:.2f} + computing {row['computing']:.2f} + end {row['end']:.2f}; no worker "
                      f"computes {row['no_worker_computes']:.2f} s inside; client {cpu:.2f} CPU-s\n    {ws}\n"
                      f"    gaps > 20 ms (at s, length): {row['gaps']}", flush=True)
                if a.tasks:
                    for i, v in enumerate(row["workers"].values()):
                        print(f"    w{i} tasks: " + " ".join(f"{k}@{s:.3f}-{e:.3f}" for k, s, e in v["tasks"]))
    finally:
        for c in clusters.values():
            c.close()
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
