"""API latency with the records in PostgreSQL vs the embedded SQLite (issue 19), measured in one run.

Every API request resolves its bearer token in the records and writes one audit row, and the routes
below read the catalog (``/collections``: the datasets the user may read) or the jobs table
(``/jobs``). The same workspace content is built twice — records in SQLite (the default) and in a
throw-away PostgreSQL 15 cluster (``tests/pg.py``'s, on a loopback port, ``fsync=off`` like the
tests: a server with ``fsync=on`` pays one WAL flush per audit row more) — and each is served by
``citytwin serve``'s app under uvicorn in a subprocess, loaded open-loop by
``bench/service_latency.py``'s generator at stepped rates; p50/p99 (from the scheduled send time)
and the achieved rate are printed per step, with the PostgreSQL ÷ SQLite p99 ratio.

    python bench/records_backends.py --quick     # ~1-2 min on 2 cores

Writes ``bench/out/records_backends.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(root: Path, database: str | None) -> str:
    """A workspace with a few datasets, users and finished jobs; returns an admin token."""
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import Point

    from citytwin.foundation.workspace import Workspace

    ws = Workspace.init(root, owner="admin", database=database)
    for i in range(5):
        ws.add_user(f"user{i}", "analyst")
    pts = gpd.GeoDataFrame({"name": [f"p{i}" for i in range(200)], "v": range(200)},
                           geometry=[Point(24.9 + i * 1e-4, 60.1 + i * 1e-4) for i in range(200)], crs="EPSG:4326")
    for i in range(10):
        ws.write_derived(f"layer_{i}", pts, inputs=[], parameters={"i": i}, classification="public")
    ws.write_derived("table_only", pd.DataFrame({"a": range(10)}), inputs=["layer_0"], parameters={})
    now = "2026-01-01T00:00:00+00:00"
    for i in range(50):
        ws.catalog.put_job({"id": f"job{i:03d}", "process": "spatial-structure", "user": "admin", "inputs": {},
                            "status": "successful", "progress": 100.0, "message": "done", "created": now,
                            "started": now, "finished": now, "results": {"datasets": []}, "runner": None})
    return ws.catalog.issue_token("admin", "bench")[1]


def measure(lat: Any, root: Path, token: str, rates: list[float], seconds: float) -> dict[str, Any]:
    port = lat.free_port()
    proc = lat.start_server(root, port)
    out: dict[str, Any] = {}
    try:
        async def run() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30,
                                         limits=httpx.Limits(max_connections=64)) as client:
                for kind, url in (("collections", "/collections"), ("jobs", "/jobs")):
                    for _ in range(20):
                        await client.get(url)  # warm
                    out[kind] = [await lat.run_rate(client, [url], r, seconds) for r in rates]
        asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short steps")
    ap.add_argument("--rates", default=None, help="comma-separated request rates per second")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per rate step")
    a = ap.parse_args()
    rates = [float(r) for r in (a.rates or ("10,25,50" if a.quick else "10,25,50,100")).split(",")]
    seconds = a.seconds or (6.0 if a.quick else 20.0)
    lat = _load("bench_service_latency", REPO / "bench" / "service_latency.py")
    pg = _load("citytwin_tests_pg", REPO / "tests" / "pg.py")
    cluster = pg.start_cluster()
    results: dict[str, Any] = {"rates": rates, "seconds_per_step": seconds}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend, database in (("sqlite", None), ("postgresql", cluster.fresh_database())):
                t0 = time.perf_counter()
                token = build(Path(tmp) / backend, database)
                print(f"{backend}: workspace built in {time.perf_counter() - t0:.1f} s", flush=True)
                results[backend] = measure(lat, Path(tmp) / backend, token, rates, seconds)
    finally:
        pg.stop_cluster(cluster)
    print(f"\n{'route':<12} {'rate':>5}  {'sqlite p50/p99 ms':>18}  {'postgresql p50/p99 ms':>22}  {'p99 ratio':>9}")
    for kind in ("collections", "jobs"):
        for s, p in zip(results["sqlite"][kind], results["postgresql"][kind], strict=True):
            print(f"{kind:<12} {s['rate']:>5.0f}  {s['p50_ms']:>8.1f}/{s['p99_ms']:<9.1f}"
                  f"  {p['p50_ms']:>11.1f}/{p['p99_ms']:<10.1f}  {p['p99_ms'] / s['p99_ms']:>9.2f}"
                  f"   (achieved {s['achieved_rps']:.0f} / {p['achieved_rps']:.0f} req/s;"
                  f" errors {s['errors']} / {p['errors']})")
    OUT.mkdir(exist_ok=True)
    (OUT / "records_backends.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
