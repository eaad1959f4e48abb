"""``citytwin records move`` (foundation.records_move): rows/s moving an embedded workspace's records into
PostgreSQL, against a bare copy of the same rows measured in the same run.

The workspace holds N audit rows and N/10 cases with one event each (written straight into its SQLite
files: the bench measures the move, not the writes). The peer is the floor of any such copy: the same
tables created (the stores' migrations) and read from the same SQLite files with ``sqlite3`` and written
with psycopg's ``COPY`` into a fresh database, in one transaction, with no checks, no locks, no sequences,
no settings. Both run against a
throw-away PostgreSQL 15 cluster (``tests/pg.py``: loopback, ``fsync=off``), best of ``--repeat``.
Ratio = peer seconds / move seconds (1.0: the checks cost nothing).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(root: Path, n: int) -> None:
    """A workspace with ``n`` audit rows and ``n // 10`` cases (one event each)."""
    from citytwin.foundation.cases import CaseStore
    from citytwin.foundation.workspace import Workspace

    ws = Workspace.init(root, owner="admin")
    CaseStore.of(ws)  # makes cases/cases.sqlite
    ts = "2026-01-01T00:00:00+00:00"
    with sqlite3.connect(root / "catalog.sqlite") as con:
        con.executemany('INSERT INTO audit(ts, "user", role, action, dataset, version, rows, outcome, detail)'
                        " VALUES (?,?,?,?,?,?,?,?,?)",
                        ((ts, f"user{i % 50}", "viewer", "read", f"dataset_{i % 300}", i % 7, i, "ok",
                          f"GET /collections/x/items?page={i}") for i in range(n)))
    with sqlite3.connect(root / "cases" / "cases.sqlite") as con:
        con.executemany("INSERT INTO cases(kind, status, title, description, lat, lon, created, updated)"
                        " VALUES ('complaint','open',?,?,?,?,?,?)",
                        ((f"case {i}", f"路灯不亮 {i}", 39.9 + i * 1e-6, 116.4, ts, ts) for i in range(n // 10)))
        con.execute("INSERT INTO case_events(case_id, ts, kind, text) SELECT id, created, 'open', title FROM cases")


def peer_copy(root: Path, url: str) -> float:
    """The bare copy: every table of the two files, sqlite3 -> COPY, one transaction."""
    import psycopg

    from citytwin.foundation import records
    from citytwin.foundation.cases import CASES_STORE
    from citytwin.foundation.catalog import CATALOG_STORE
    from citytwin.foundation.records_move import store_tables

    t0 = time.perf_counter()
    for store in (CATALOG_STORE, CASES_STORE):
        records.open_store(url, store)  # the tables, as the move makes them
    with psycopg.connect(url) as pg:
        for store, path in ((CATALOG_STORE, root / "catalog.sqlite"), (CASES_STORE, root / "cases" / "cases.sqlite")):
            src = sqlite3.connect(path)
            for table in store_tables(store):
                cur = src.execute(f'SELECT * FROM "{table}"')
                cols = ", ".join(f'"{d[0]}"' for d in cur.description)
                with pg.cursor().copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
                    while rows := cur.fetchmany(5000):
                        for row in rows:
                            copy.write_row(row)
            src.close()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k audit rows (default 1M)")
    ap.add_argument("--n", type=int, default=None, help="audit rows")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    n = a.n or (100_000 if a.quick else 1_000_000)
    print(f"nproc {os.cpu_count()}, audit rows {n:,}, cases {n // 10:,}", flush=True)
    from citytwin.foundation.records_move import move_records

    pg = _load("citytwin_tests_pg", REPO / "tests" / "pg.py")
    cluster = pg.start_cluster()
    best: dict[str, float] = {}
    rows = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            seed = Path(tmp) / "seed"
            build(seed, n)
            for i in range(a.repeat):
                for kind in ("peer", "move"):
                    ws = Path(tmp) / f"{kind}{i}"
                    shutil.copytree(seed, ws)
                    url = cluster.fresh_database()
                    if kind == "peer":
                        sec = peer_copy(ws, url)
                    else:
                        t0 = time.perf_counter()
                        rows = move_records(ws, url).rows
                        sec = time.perf_counter() - t0
                    best[kind] = min(best.get(kind, float("inf")), sec)
                    print(f"round {i + 1} {kind}: {sec:.2f} s", flush=True)
                    cluster.drop(url)
    finally:
        pg.stop_cluster(cluster)
    print(f"\nrecords move: {rows:,} rows in {best['move']:.2f} s ({rows / best['move']:,.0f} rows/s); "
          f"bare sqlite3->COPY: {best['peer']:.2f} s; ratio peer/move {best['peer'] / best['move']:.2f}")


if __name__ == "__main__":
    main()
