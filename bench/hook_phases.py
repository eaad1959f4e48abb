"""The auto-alert hook's thread CPU per commit by phase: ``bench/rules_per_commit.py``'s loop (the ``--quick`` month's
entity updates in bodies of ``--batch`` updates through ``service.upsert.upsert``, shipped hooks) with
``time.thread_time_ns`` wrappers around the rule engine's, the alert hub's and the alert store's functions (no
profiler: a wrapper costs ~1 µs a call, so the parts read a little high; the nesting is shown by indentation).

Compare two versions of the code by alternating runs (``PYTHONPATH=/path/to/other/src`` for the other; a phase the
other version does not have is left out)::

    .venv/bin/python bench/hook_phases.py --batch 240
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import citytwin
from citytwin.foundation.timeseries import alerts as store_mod
from citytwin.service import upsert as U
from citytwin.service.app import open_runtime
from citytwin.twin import alerts as book_mod
from citytwin.twin import live_rules as LR
from citytwin.workflows import alerting as AL
from rules_per_commit import entity_updates  # the same updates as the rules bench
from twin_throughput import stations  # the same stations as the throughput bench

#: (owner, attribute, label): what is timed, the label's indentation its nesting
PHASES: list[tuple[Any, str, str]] = [
    (AL.AutoAlerts, "on_commit", "hook"),
    (LR.LiveRuleEngine, "update", "  engine.update"),
    (LR.LiveRuleEngine, "_columns", "    batch columns (_columns)"),
    (LR._Tail, "merge", "    _Tail.merge (groups not appended in update's loop)"),
    (LR.LiveRuleEngine, "_evaluate_many", "    evaluation (_evaluate_many)"),
    (LR, "aqi_arrays_many", "      AQI grid (aqi_arrays_many)"),
    (LR, "series_candidates_rules", "      runs and candidates (series_candidates_rules)"),
    (LR.LiveRuleEngine, "_follow_back", "    follow-back"),
    (AL.AlertHub, "alerts_of", "      hub.alerts_of"),
    (LR._Tail, "latest", "    _Tail.latest"),
    (LR._Tail, "trim", "    _Tail.trim"),
    (AL.AlertHub, "sync", "  hub.sync"),
    (book_mod.AlertBook, "raise_candidate", "    book.raise_candidate"),
    (book_mod.AlertBook, "resolve", "    book.resolve"),
    (AL.AlertHub, "_save", "    hub._save"),
    (store_mod.AlertStore, "put", "      store.put"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=240, help="entity updates per body (one commit each)")
    args = ap.parse_args()
    spent: dict[str, int] = {}
    calls: dict[str, int] = {}
    clock = time.thread_time_ns

    def wrap(owner: Any, name: str, label: str) -> None:
        f = getattr(owner, name, None)
        if f is None:
            return

        def timed(*a: Any, **k: Any) -> Any:
            c0 = clock()
            try:
                return f(*a, **k)
            finally:
                spent[label] = spent.get(label, 0) + clock() - c0
                calls[label] = calls.get(label, 0) + 1

        setattr(owner, name, timed)

    for owner, name, label in PHASES:
        wrap(owner, name, label)
    updates = entity_updates()
    bodies = [updates[i:i + args.batch] for i in range(0, len(updates), args.batch)]
    root = Path(tempfile.mkdtemp(prefix="hook-phases-"))
    try:
        rt = open_runtime(root / "twin")
        rt.register(stations())
        rt.enable_auto_verify()
        rt.enable_auto_alerts()
        for b in bodies:
            U.upsert(rt, b, "/ngsi-ld/v1/entityOperations/upsert")
        n = len(bodies)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"code: {Path(citytwin.__file__).resolve().parents[2]}; load {load}")
        print(f"batch {args.batch} updates: {n} commits; thread CPU ms per commit (calls per commit)")
        for _, _, label in PHASES:
            if label in spent:
                print(f"{label:58s} {spent[label] / 1e6 / n:7.3f}  ({calls[label] / n:.2f})")
        rt.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
