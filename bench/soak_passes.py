"""CPU per commit of the MQTT ingest over the soak's passes, in one process: the ``--quick`` month moved forward by
its span once per pass (as ``bench/twin_throughput.py --soak-minutes`` publishes it), its entity-update messages
(144 readings each) through ``Ingestor.ingest`` (the MQTT store thread's call, ``source="mqtt"``) in commits of
``--batch`` messages, to a twin with the shipped hooks (auto-alerts, auto-verify, memory release). Prints, for some
passes, the CPU-s (``time.process_time``) per commit of the whole and of each ``on_commit`` hook, with the load:
what grows with the run shows as a rising figure (docs/twin.md, "Session 15: the soak's step"). Compare two versions
by running them side by side with ``PYTHONPATH=/other/src`` for one::

    .venv/bin/python bench/soak_passes.py --batch 7 --passes 40
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

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import citytwin
from citytwin.service.app import open_runtime
from citytwin.twin import feeds as F
from citytwin.workflows.runtime import collect_rarely
from twin_throughput import load_long, stations  # the same data and stations as the throughput bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=7, help="messages per commit (7: the 30-minute soak's ~1,040 readings)")
    ap.add_argument("--passes", type=int, default=40, help="passes of the month")
    args = ap.parse_args()
    print(f"code: {Path(citytwin.__file__).resolve().parent.parent}")
    long = load_long(True, None)
    span = (long["time"].max() - long["time"].min() + pd.Timedelta("1h")).ceil("D")
    root = Path(tempfile.mkdtemp(prefix="soak-passes-"))
    try:
        rt = open_runtime(root / "twin")
        rt.register(stations())
        rt.enable_auto_verify()
        rt.enable_auto_alerts()
        collect_rarely()
        spent: dict[str, float] = {}

        def timed(name: str, hook: Any) -> Any:
            def run(*a: Any) -> None:
                c0 = time.process_time()
                hook(*a)
                spent[name] = spent.get(name, 0.0) + time.process_time() - c0
            return run

        rt.ingestor.on_commit[:] = [timed(getattr(h, "__qualname__", "hook").split(".<")[0], h)
                                    for h in rt.ingestor.on_commit]
        shown = {1, 2, 5, 10, 20, 30, 40, 60, 80, 100, 128, args.passes}
        for k in range(1, args.passes + 1):
            msgs = [(t, p) for _, t, p in F.messages_from_long(long.assign(time=long["time"] + k * span),
                                                                per_message=12)]
            spent.clear()
            c0, n = time.process_time(), 0
            for i in range(0, len(msgs), args.batch):
                rt.ingestor.ingest(msgs[i:i + args.batch], source="mqtt")
                n += 1
            c = time.process_time() - c0
            if k in shown:
                print(f"pass {k}: {n} commits, {1e3 * c / n:.1f} ms CPU per commit; hooks "
                      + ", ".join(f"{h} {1e3 * v / n:.1f}" for h, v in spent.items())
                      + f"; {rt.alerts.store.count() if rt.alerts.store is not None else 0:,} alerts stored; load "
                      + "/".join(f"{x:.1f}" for x in os.getloadavg()), flush=True)
        rt.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
