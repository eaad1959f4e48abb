"""Commit latency of single readings, in process: where a single-reading HTTP post's commit time goes.

Runs ``N`` sequential one-reading commits through ``Ingestor.commit`` (what the HTTP commit queue calls
when each group holds one reading) on a fresh twin with the shipped defaults (automatic alerts and
forecast auto-verification on), the readings one minute apart at 12 stations, all in one UTC day (as
``twin_throughput.py --single-only`` posts them), and prints p50/p90/p99/max of the whole commit, of
``HistoryStore.append``, of the state upsert and of the commit hooks, and the history store's merges
(issue 13: compaction off the commit path). Compare with another version of citytwin by running it
with ``PYTHONPATH=that/src``, interleaved, on the same machine; on a shared machine state the load.

Run:  python bench/commit_latency.py [N]     (default 700; about 10 s)
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import twin_throughput as tt
from citytwin.service.app import open_runtime
from citytwin.twin.entities import ParseResult


def _q(a: list[float]) -> str:
    x = np.array(a) * 1000
    return (f"n={len(x)} p50 {np.percentile(x, 50):.1f} p90 {np.percentile(x, 90):.1f} "
            f"p99 {np.percentile(x, 99):.1f} max {x.max():.1f} ms")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 700
    root = Path(tempfile.mkdtemp(prefix="ct-commit-"))
    rt = open_runtime(root)
    rt.register(tt.stations())
    rt.enable_auto_verify()
    rt.enable_auto_alerts()
    ids = [e.id for e in tt.stations()]
    base = pd.Timestamp("2016-01-01T00:00:00Z")
    h = rt.stores.history
    times: dict[str, list[float]] = {"append": [], "state": [], "hooks": []}

    def timed(name: str, f: Any) -> Any:
        def w(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                times[name].append(time.perf_counter() - t)
        return w

    h.append = timed("append", h.append)  # type: ignore[method-assign]
    st = rt.stores.state
    if hasattr(st, "begin_latest"):  # (session 18: the ingest writes the state in two steps, the commit after the history)
        times["state commit"] = []
        st.begin_latest = timed("state", st.begin_latest)  # type: ignore[method-assign]
        st.end_latest = timed("state commit", st.end_latest)  # type: ignore[method-assign]
    else:
        st.upsert_latest = timed("state", st.upsert_latest)  # type: ignore[method-assign]
    rt.ingestor.on_commit[:] = [timed("hooks", f) for f in rt.ingestor.on_commit]
    total: list[float] = []
    print(f"load average before {os.getloadavg()[0]:.1f}")
    for i in range(n):
        doc = {"id": ids[i % len(ids)], "type": "AirQualityObserved",
               "observedAt": (base + pd.Timedelta(minutes=i // len(ids))).isoformat(), "pm25": float(5 + i % 300)}
        res = rt.parser.parse_doc(doc, ParseResult())
        t = time.perf_counter()
        rt.ingestor.commit([res], source="http", topics=["/twin/v1/observations"])
        total.append(time.perf_counter() - t)
    print("commit", _q(total))
    for k, v in times.items():
        print(k, _q(v))
    if hasattr(h, "merges"):
        print(f"merges {h.merges} (background), {h.merge_seconds:.2f} s in all, longest {h.merge_max_seconds:.2f} s")
    else:
        print("merges: inside the appends (this version compacts in the commit)")
    print(f"load average after {os.getloadavg()[0]:.1f}")
    rt.close()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
