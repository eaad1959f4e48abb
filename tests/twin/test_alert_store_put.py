"""The alert store's ``put`` writes the rows it always wrote, faster (docs/twin.md, "Session 18").

``AlertStore.put`` makes each record's text with :data:`record_json` (one C encoder made once) instead of
``json.dumps(record, ensure_ascii=False)``, and reads each record's times with :func:`record_us`, whose results for
ISO text are remembered. Both are compared here with what they replace: the text of ``json.dumps``, the µs of
``to_us``, and the store's rows with rows made the former way, for the records of random alert books.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from typing import Any

import pandas as pd
import pytest

from citytwin.foundation.timeseries import alerts as S
from citytwin.foundation.timeseries.alerts import AlertStore, record_json, record_us
from citytwin.foundation.timeseries.historyutil import to_us
from citytwin.twin.alerts import AlertBook

T0 = pd.Timestamp("2015-12-01T00:00:00Z")
H = pd.Timedelta("1h")
ENTITIES = ["urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi", "东四", "São Paulo \u2028 \"quoted\" \\ back", "e\x00nul"]


def _records(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """The records of a book's alerts after random raises, updates, acknowledgements and resolves (every kind of
    value a record holds: times in several zones, peaks, NaN, data of floats, lists, nested dicts, text)."""
    book = AlertBook()
    out: list[dict[str, Any]] = []
    book.subscribe(lambda ev: out.append(ev.to_record()["alert"]))
    zones = ["UTC", "Asia/Shanghai", "America/Sao_Paulo"]
    for _ in range(n):
        at = (T0 + rng.randrange(0, 500) * H + pd.Timedelta(microseconds=rng.choice([0, 0, 1, 123456])))
        z = rng.choice(zones)
        at = at.tz_convert(z)
        peak = rng.choice([None, float("nan"), rng.uniform(-1e6, 1e6), 1e16, 3.0, float("inf")])
        data = rng.choice([{}, {"threshold": 300.0, "steps": 3}, {"x": [1, 2.5, "ü", None, True],
                                                                    "y": {"z": -0.0, "w": 1e-7}}])
        a, _ = book.raise_alert(f"r{rng.randrange(3)}", rng.choice(ENTITIES), at=at, peak=peak, start=at,
                                end=at + H, message=rng.choice(["", "AQI 300 ≥ 200 for 3 h", "tab\there"]),
                                data=data, severity=rng.choice(["warning", "critical"]))
        r = rng.random()
        late = max(at, a.opened_at)
        if r < 0.2 and a.status == "open":
            book.acknowledge(a.id, by=rng.choice(["duty officer", "值班员"]), at=late + 2 * H, note="seen")
        elif r < 0.6:
            book.resolve(a.id, at=late + 3 * H)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_record_json_is_the_text_of_json_dumps(seed: int) -> None:
    recs = _records(random.Random(seed), 300)
    assert any(isinstance(r["peak"], float) and math.isinf(r["peak"]) for r in recs)
    for r in recs:
        assert record_json(r) == json.dumps(r, ensure_ascii=False)
    for odd in ([1, "ü"], "text", 3.5, None, {"a": float("nan"), "b": [{"c": "\u2028"}]}, {1: "int key"}):
        assert record_json(odd) == json.dumps(odd, ensure_ascii=False)


def test_record_json_fails_as_json_dumps_does() -> None:
    cyc: dict[str, Any] = {"a": 1}
    cyc["self"] = cyc
    for bad in ({"t": pd.Timestamp("2015-12-01")}, {"s": {1, 2}}, cyc, {(1, 2): "tuple key"}):
        with pytest.raises(Exception) as want:
            json.dumps(bad, ensure_ascii=False)
        with pytest.raises(want.type, match=str(want.value)[:20].replace("(", r"\(").replace(")", r"\)")):
            record_json(bad)


def test_record_us_remembered_gives_to_us() -> None:
    rng = random.Random(4)
    texts = [(T0 + rng.randrange(-10**6, 10**6) * pd.Timedelta(seconds=37)).tz_convert(
        rng.choice(["UTC", "Asia/Shanghai", "America/St_Johns"])).isoformat() for _ in range(6000)]
    texts += ["2015-12-01T03:00:00.5-01:30", "2015-02-31T00:00:00+00:00", "2015-12-01", "2015-12-01T03:00:00Z"]
    for rnd in range(3):  # the second and third time from the cache (cleared on the way: more texts than it keeps)
        for t in texts:
            try:
                want: Any = to_us(t)
            except Exception as exc:
                want = type(exc)
            try:
                got: Any = record_us(t)
            except Exception as exc:
                got = type(exc)
            assert got == want, (rnd, t)
    assert 0 < len(S._RECORD_US) <= 4096


def _rows_before(recs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows ``put`` wrote before (json.dumps and to_us), last write of an id winning, seq of its first."""
    rows: dict[str, tuple[Any, ...]] = {}
    for seq, r in enumerate(recs, 1):
        old = rows.get(r["id"])
        rows[r["id"]] = (r["id"], r["rule"], r["entity"], r["status"], to_us(r["opened_at"]), to_us(r.get("start")),
                         to_us(r.get("resolved_at")), seq if old is None else old[7],
                         json.dumps(r, ensure_ascii=False), to_us(r.get("end")))
    return sorted(rows.values())


@pytest.mark.parametrize("seed", [5, 6])
def test_put_writes_the_rows_of_before(tmp_path, seed: int) -> None:
    rng = random.Random(seed)
    recs = _records(rng, 400)
    store = AlertStore(tmp_path / "alerts.sqlite")
    i = 0
    while i < len(recs):  # in puts of random sizes, as the hub's syncs write them
        n = rng.randrange(1, 40)
        store.put(recs[i:i + n])
        i += n
    store.close()
    with sqlite3.connect(tmp_path / "alerts.sqlite") as con:
        got = sorted(con.execute("SELECT id, rule, entity, status, opened_us, start_us, resolved_us, seq, record, "
                                 "end_us FROM alerts"))
    assert got == _rows_before(recs)
