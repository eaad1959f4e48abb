"""Fingerprint of what the live twin stores from a replay: checks that a change to the ingest, the rules or the
alert hub leaves the results identical.

Ingests the first ``--months`` of the Beijing air data (12 stations, hourly; the messages of
``bench/twin_throughput.py``: 12 entity updates a message) in one process through ``Ingestor.ingest`` with the
shipped hooks (auto-alerts, forecast verification), in batches of ``B`` messages, with every ``N``-th message
poisoned (implausible values, wrong units and types, unknown entities, future and ancient times, cut JSON; the
same messages for the same ``N``), and prints one line per ``(N, B)`` with the sha256 of

* ``history``: the history rows (all columns, sorted);
* ``state``: the live state of the stations;
* ``letters``: the dead letters (without their ids and receipt times, sorted);
* ``events``: the alert events as pushed to the hub's pushers, in order (seq, event id, kind, time, alert);
* ``stored``: the alert store's rows (every column, the record text as stored), by id;

and the counts beside them. Run it on two versions of the code (each with its own virtualenv, or ``git stash``)
and compare the lines::

    .venv/bin/python bench/twin_hash.py                       # N = 3, 7; B = 2000, 137
    (cd /work/main && .venv/bin/python /path/to/this/bench/twin_hash.py)   # the other checkout's code

``citytwin`` is imported from the interpreter's environment (the line ``code:`` says which checkout).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import citytwin
from citytwin.service.app import open_runtime
from citytwin.twin import entities as E
from citytwin.twin import feeds as F
from twin_throughput import load_long, stations  # the same data and stations as the throughput bench

NOPE = E.entity_id("AirQualityObserved", "nope")


def poisoned(msgs: list[tuple[str, bytes]], every: int, seed: int = 2) -> list[tuple[str, bytes]]:
    """Every ``every``-th message (the 2nd, then every ``every`` on) spoilt one of several ways (seeded)."""
    rng = random.Random(seed)
    out = []
    for i, (topic, raw) in enumerate(msgs):
        if every > 0 and i % every == 1:
            doc = json.loads(raw)
            item = doc[rng.randrange(len(doc))]
            key = rng.choice([k for k in item if k not in ("id", "observedAt")])
            item[key] = rng.choice([-50.0, "12", {"value": 1.0, "unit": "furlong"}, {"value": 3, "unit": "mg/m³"},
                                    {"value": 1.0, "observedAt": "1800-01-01T00:00:00Z"}, None, 7,
                                    {"value": 900.0, "observedAt": "2013-03-01T05:00:00Z"}])
            if rng.random() < 0.2:
                doc.append(rng.choice([{"id": NOPE, "pm25": 1}, 5,
                                       {"id": doc[0]["id"], "observedAt": "2099-01-01T00:00:00Z", "pm25": 1}]))
            raw = json.dumps(doc, ensure_ascii=False).encode()
            if rng.random() < 0.1:
                raw = raw[:-2]
        out.append((topic, raw))
    return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _frame_sha(df: pd.DataFrame) -> str:
    df = df.sort_values(list(df.columns), key=lambda c: c.astype(str), kind="stable").reset_index(drop=True)
    return _sha(df.to_csv(index=False))


def fingerprint(msgs: list[tuple[str, bytes]], batch: int) -> dict[str, Any]:
    """Ingest ``msgs`` in batches of ``batch`` into a fresh twin; the hashes and counts of what it stored."""
    work = Path(tempfile.mkdtemp(prefix="ct-twin-hash-"))
    try:
        rt = open_runtime(work / "twin")
        ents = stations()
        rt.register(ents)
        rt.enable_auto_verify()
        rt.enable_auto_alerts()
        events: list[str] = []
        rt.alerts.add_pusher(lambda rec: events.append(json.dumps(rec, sort_keys=True, ensure_ascii=False)))
        c0 = time.process_time()
        for i in range(0, len(msgs), batch):
            rt.ingestor.ingest(msgs[i:i + batch], source="mqtt")
        cpu = time.process_time() - c0
        ids = [e.id for e in ents]
        hist = rt.stores.history.query(entities=ids)
        state = rt.stores.state.query(ids=ids)
        letters = rt.stores.deadletters.frame(limit=10_000_000)
        letters = letters.drop(columns=[c for c in ("id", "received_us", "received_at") if c in letters.columns])
        path = rt.alerts.path
        rt.close()
        stored: list[Any] = []
        if path is not None:
            with sqlite3.connect(path) as con:
                stored = [list(r) for r in con.execute("SELECT * FROM alerts ORDER BY id")]
        return {"history": _frame_sha(hist), "state": _sha(json.dumps(state, sort_keys=True, default=str)),
                "letters": _frame_sha(letters), "events": _sha("\n".join(events)),
                "stored": _sha(json.dumps(stored, default=str)),
                "n": f"{len(hist):,} rows, {len(letters):,} letters, {len(events):,} events, {len(stored):,} alerts",
                "cpu": cpu}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--months", type=int, default=6, help="first N months of the Beijing data")
    ap.add_argument("--poison", default="3,7", help="comma-separated N: every N-th message poisoned (0: none)")
    ap.add_argument("--batch", default="2000,137", help="comma-separated B: messages per Ingestor.ingest")
    args = ap.parse_args()
    print(f"code: {Path(citytwin.__file__).resolve().parents[2]}")
    msgs = [(t, p) for _, t, p in F.messages_from_long(load_long(False, args.months), per_message=12)]
    for n in (int(x) for x in args.poison.split(",")):
        bad = poisoned(msgs, n)
        for b in (int(x) for x in args.batch.split(",")):
            fp = fingerprint(bad, b)
            print(f"N={n} B={b}: history {fp['history']} state {fp['state']} letters {fp['letters']} "
                  f"events {fp['events']} stored {fp['stored']} ({fp['n']}; ingest {fp['cpu']:.2f} CPU-s)", flush=True)


if __name__ == "__main__":
    main()
