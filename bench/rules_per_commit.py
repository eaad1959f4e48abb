"""CPU per commit of the live twin's ingest hooks, in one process: the ``--quick`` month's entity updates (the
messages of ``bench/twin_throughput.py``) posted as bodies of ``--batch`` updates through
``citytwin.service.upsert.upsert`` (what ``POST /ngsi-ld/v1/entityOperations/upsert`` runs, without HTTP), to a twin
with the shipped hooks (auto-alerts, auto-verify, memory release). Prints the CPU-s (``time.process_time``) of the
whole and of each ``on_commit`` hook, per commit, with the load; ``--profile`` adds ``cProfile``'s top functions.

Compare two versions of the code by alternating runs (``PYTHONPATH=/path/to/other/src`` for the other)::

    .venv/bin/python bench/rules_per_commit.py --batch 240
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import citytwin
from citytwin.service import upsert as U
from citytwin.service.app import open_runtime
from citytwin.twin import feeds as F
from twin_throughput import load_long, stations  # the same data and stations as the throughput bench


def entity_updates() -> list[dict[str, Any]]:
    """The throughput bench's month as NGSI-LD entity updates (12 readings each), in time order."""
    updates: list[dict[str, Any]] = []
    for _, _, p in F.messages_from_long(load_long(True, None), per_message=144):
        items = json.loads(p)
        for it in items if isinstance(items, list) else [items]:
            it["type"] = "AirQualityObserved"
            updates.append(it)
    return updates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=240, help="entity updates per body (one commit each)")
    ap.add_argument("--profile", action="store_true", help="also print cProfile's top 40 by cumulative time")
    ap.add_argument("--clients", type=int, default=1,
                    help="N > 1: N threads at once, thread c posting the updates of every N-th station from the c-th "
                         "in bodies of --batch (as bench/twin_throughput.py's N HTTP clients); prints how the "
                         "ingest's group commit grouped them and each hook's CPU by time.thread_time")
    args = ap.parse_args()
    updates = entity_updates()
    bodies = [updates[i:i + args.batch] for i in range(0, len(updates), args.batch)]
    n_cl = max(1, args.clients)
    if n_cl > 1:
        order = {e.id: i for i, e in enumerate(stations())}
        mine = [[u for u in updates if order[u["id"]] % n_cl == c] for c in range(n_cl)]
        shares = [[m[i:i + args.batch] for i in range(0, len(m), args.batch)] for m in mine]
    root = Path(tempfile.mkdtemp(prefix="rules-per-commit-"))
    try:
        rt = open_runtime(root / "twin")
        rt.register(stations())
        rt.enable_auto_verify()
        rt.enable_auto_alerts()
        spent: dict[str, float] = {}

        clock = time.process_time if n_cl == 1 else time.thread_time  # (threads: the hook's own thread only)
        calls: dict[str, int] = {}

        def timed(name: str, hook: Any) -> Any:
            def run(*a: Any) -> None:
                c0 = clock()
                hook(*a)
                spent[name] = spent.get(name, 0.0) + clock() - c0
                calls[name] = calls.get(name, 0) + 1
            return run

        hooks = rt.ingestor.on_commit
        for i, h in enumerate(list(hooks)):
            hooks[i] = timed(getattr(h, "__qualname__", repr(h)), h)
        prof = cProfile.Profile() if args.profile else None
        c0 = time.process_time()
        if prof:
            prof.enable()
        if n_cl == 1:
            for b in bodies:
                U.upsert(rt, b, "/ngsi-ld/v1/entityOperations/upsert")
        else:
            def client(mine: list[list[dict[str, Any]]]) -> None:
                for b in mine:
                    U.upsert(rt, b, "/ngsi-ld/v1/entityOperations/upsert")

            threads = [threading.Thread(target=client, args=(sh,)) for sh in shares]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        if prof:
            prof.disable()
        total = time.process_time() - c0
        n = len(bodies) if n_cl == 1 else sum(map(len, shares))
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"code: {Path(citytwin.__file__).resolve().parents[2]}; load {load}")
        print(f"batch {args.batch} updates: {n} commits, {total:.3f} CPU-s = {1000 * total / n:.2f} ms per commit; "
              f"{len(rt.alerts.alerts())} alerts")
        if n_cl > 1:
            ing = rt.ingestor
            print(f"  {n_cl} clients: {n} requests in {ing.groups} commits (group commit: {ing.grouped_calls} calls "
                  f"served); the figures below are per request")
        for name, s in spent.items():
            print(f"  hook {name}: {s:.3f} CPU-s = {1000 * s / n:.2f} ms per commit, {calls[name]} calls")
        rt.close()
        if prof:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
