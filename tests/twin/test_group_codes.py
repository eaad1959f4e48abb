"""A group commit of several parsed batches (concurrent HTTP upserts) keeps their string columns as codes
(``ingest._merged_codes``): the codes over the union of the batches' strings, in order of first appearance, give
what the strings give, so what is stored and alerted is what the commit stored and alerted without them."""

from __future__ import annotations

import json
import random
import sqlite3

import numpy as np
import pandas as pd

from citytwin.foundation.timeseries import ingest as I
from citytwin.service import upsert as U
from citytwin.twin import entities as E
from citytwin.twin import feeds as F
from citytwin.workflows.runtime import open_runtime

STATIONS = [F.beijing_entity(s) for s in sorted(F.BEIJING_STATIONS)[:6]]
PROPS = ["pm25", "pm10", "so2", "no2", "co", "o3"]
NOW_US = E.parse_time_us("2026-01-01T00:00:00Z")


def _bodies(rng: random.Random, clients: int) -> list[list[dict[str, object]]]:
    """Hourly updates of the stations split among ``clients`` gateways (every N-th station), 12 updates a body; some
    bodies with a bad reading (another property order too: other strings first)."""
    ups = [{"id": e.id, "type": "AirQualityObserved", "observedAt": f"2015-12-{1 + h // 24:02d}T{h % 24:02d}:00:00Z",
            **{p: {"value": round(rng.uniform(0, 500), 1), "unit": "µg/m³"}
               for p in (PROPS if rng.random() < 0.7 else PROPS[::-1])}}
           for h in range(72) for e in STATIONS]
    for u in rng.sample(ups, 10):
        u["pm25"] = {"value": -5, "unit": "µg/m³"}
    shares = [[u for u in ups if STATIONS.index(next(e for e in STATIONS if e.id == u["id"])) % clients == c]
              for c in range(clients)]
    return [s[i:i + 12] for i in range(0, max(map(len, shares)), 12) for s in shares if s[i:i + 12]]


def _run(path, bodies, group: int):
    rt = open_runtime(path)
    rt.register(STATIONS)
    rt.enable_auto_verify()
    coded: list[bool] = []
    rt.ingestor.on_commit.insert(0, lambda rep, lo, hi: coded.append(I.CODES in rep.columns))
    rt.enable_auto_alerts()
    rt.parser.now_us = lambda: NOW_US
    events: list[str] = []
    rt.alerts.add_pusher(lambda rec: events.append(json.dumps(rec, sort_keys=True)))
    reports = []
    for i in range(0, len(bodies), group):
        results = []
        for b in bodies[i:i + group]:
            up = U._Upsert(rt)
            if not up.known(b):
                for item in b:
                    up.item(item)
            results.append(up.finish()[0])
        rep = rt.ingestor.commit(results, source="http", topics=["/x"] * len(results))
        reports.append((rep.accepted, rep.rejected, rep.entities, rep.reasons))
    hist = rt.stores.history.query(entities=[e.id for e in STATIONS])
    state = rt.stores.state.query()
    for e in state:
        e.pop("modified_us", None)
    letters = rt.stores.deadletters.frame(limit=10**6).drop(columns=["id", "received_us", "received_at"],
                                                              errors="ignore")
    path_alerts = rt.alerts.path
    rt.close()
    with sqlite3.connect(path_alerts) as con:
        alerts = [list(r) for r in con.execute("SELECT * FROM alerts ORDER BY id")]
    return coded, reports, hist, json.loads(json.dumps(state, default=str)), letters, events, json.loads(
        json.dumps(alerts, default=str))


def test_merged_codes_are_what_factorize_gives():
    rng = np.random.default_rng(3)
    pairs = []
    for _ in range(5):
        u = np.array(rng.permutation(["a", "b", "c", "d", "e"])[: rng.integers(1, 6)], dtype=object)
        pairs.append((rng.integers(0, len(u), rng.integers(0, 20)), u))
    pairs.append((pairs[0][0][::-1].copy(), pairs[0][1]))  # (one strings array in two chunks)
    codes, uniq = I._merged_codes(pairs)
    col = np.concatenate([u[c] for c, u in pairs])
    want_c, want_u = pd.factorize(col)
    assert codes.tolist() == want_c.tolist() and uniq.tolist() == want_u.tolist()
    cols = I._concat([{**{k: [] for k in I._COLUMNS}, "entity": u[c], I.CODES: {"entity": (c, u)},
                       "time_us": np.zeros(len(c), dtype=np.int64), "value": np.zeros(len(c)), "lon": np.zeros(len(c)),
                       "lat": np.zeros(len(c)), "type": u[c], "property": u[c], "unit": u[c]} for c, u in pairs])
    assert [x.tolist() for x in I.factorized(cols, "entity")] == [want_c.tolist(), want_u.tolist()]
    assert [x.tolist() for x in I.factorized(cols, "entity", sort=True)] == [
        x.tolist() for x in pd.factorize(col, sort=True)]


def test_a_group_commit_with_merged_codes_stores_what_one_without_them_stores(tmp_path, monkeypatch):
    bodies = _bodies(random.Random(5), clients=3)
    new = _run(tmp_path / "codes", bodies, group=3)
    monkeypatch.setattr(I, "_merged_codes", lambda pairs: None)  # the group's columns without codes (as before)
    old = _run(tmp_path / "strings", bodies, group=3)
    assert all(new[0]) and not any(old[0])  # the group's columns with codes, and without
    assert new[1] == old[1]
    pd.testing.assert_frame_equal(new[2], old[2], check_exact=True)
    pd.testing.assert_frame_equal(new[4], old[4], check_exact=True)
    assert new[3] == old[3] and new[5] == old[5] and new[6] == old[6]
    assert len(new[2]) > 1000 and new[6] and len(new[4]) == 10  # readings, alerts and dead letters compared
