"""The faster forms of the live rules' and the alert hub's work on the ingest's store thread (issue 13) give what
the forms they replace gave: the same candidates (every field, the same Timestamps), the same ISO text, the same
microseconds, the same alerts left in a book after an eviction, and the same engine result from the ingest's
columns with codes as from the columns alone."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.foundation.timeseries.alerts import record_us
from citytwin.foundation.timeseries.historyutil import to_us
from citytwin.foundation.timeseries.ingest import CODES
from citytwin.twin import live_eval as le
from citytwin.twin import live_rules as lr
from citytwin.twin.alerts import Alert, AlertBook, iso
from citytwin.twin.rules import ThresholdRule
from citytwin.workflows.alerting import alert_topic


def _same_candidates(a: list[Any], b: list[Any]) -> None:
    assert a == b
    for x, y in zip(a, b, strict=True):
        assert repr(x) == repr(y)
        for f in ("start", "end", "peak_time", "detected_at"):
            u, w = getattr(x, f), getattr(y, f)
            assert type(u) is type(w) and u.unit == w.unit and u.tz is w.tz, f


@pytest.mark.parametrize("seed", range(6))
def test_series_candidates_equal_the_one_run_at_a_time_form(seed: int) -> None:
    """Random series (ties for the peak, NaNs, gaps, negative and far times, every operator, steps of seconds to
    days, messages with and without start and end) give the candidates of ``series_candidates_loop``."""
    rng = np.random.default_rng(seed)
    for _ in range(300):
        step = str(rng.choice(["1h", "30min", "1D", "90s", "10min"]))
        msg = str(rng.choice(["{entity} {peak:g} for {steps} steps", "from {start} to {end}: {peak}", "trend {op}",
                              "{start:%H} {threshold:g}"]))
        rule = ThresholdRule("r", "p", str(rng.choice([">", ">=", "<", "<="])), float(rng.integers(50, 150)),
                             min_steps=int(rng.integers(1, 5)), step=step, max_gap=int(rng.integers(0, 3)), message=msg)
        n = int(rng.integers(0, 200))
        su = int(pd.Timedelta(step).value // 1000)
        t = np.cumsum(rng.integers(1, 4, size=n)) * su + int(rng.integers(-2 * 10**15, 2 * 10**15))
        v = rng.integers(0, 200, size=n).astype(float) * float(rng.choice([1.0, 0.5, -1.0]))
        v[rng.random(n) < 0.15] = np.nan
        now = None if rng.random() < 0.5 or not n else int(t[-1]) + int(rng.integers(-3, 3)) * su
        _same_candidates(le.series_candidates(rule, "e", t, v, now), le.series_candidates_loop(rule, "e", t, v, now))


def test_series_candidates_at_the_bounds_fall_back_to_the_loop() -> None:
    """Runs that span centuries, or whose detection time passes the last Timestamp, take the loop's way (an
    overflow where it raised one, the same candidates where it had them)."""
    rule = ThresholdRule("r", "p", ">", 1, min_steps=2, step="1D", max_gap=10**6)
    t = np.array([-9 * 10**15, 0, 9 * 10**15], dtype=np.int64)  # 570 years apart
    v = np.array([5.0, 5.0, 5.0])
    _same_candidates(le.series_candidates(rule, "e", t, v), le.series_candidates_loop(rule, "e", t, v))
    last = int(pd.Timestamp.max.value // 1000) - 100  # a run of 1.5 h counts 3 steps: detected 0.5 h after it
    late = ThresholdRule("r", "p", ">", 1, min_steps=3, step="1h", max_gap=1)
    t2 = np.array([last - 5_400_000_000, last], dtype=np.int64)
    with pytest.raises(Exception) as want:
        le.series_candidates_loop(late, "e", t2, np.array([5.0, 5.0]))
    with pytest.raises(type(want.value)):
        le.series_candidates(late, "e", t2, np.array([5.0, 5.0]))


def test_iso_is_isoformat() -> None:
    rng = random.Random(3)
    zones = [None, "UTC", "Asia/Shanghai", "America/Santiago", "Europe/Helsinki"]
    for _ in range(3000):
        ns = rng.randrange(-2 * 10**18, 2 * 10**18) // rng.choice([1, 1000, 10**9, 3600 * 10**9])
        t = pd.Timestamp(ns)
        z = rng.choice(zones)
        t = t if z is None else t.tz_localize("UTC").tz_convert(z)
        t = t.as_unit(rng.choice(["s", "ms", "us", "ns"])) if rng.random() < 0.3 else t
        assert iso(t) == t.isoformat() and iso(t) == t.isoformat()  # (the second from the cache)
        assert iso(t.to_pydatetime(warn=False)) == pd.Timestamp(t.to_pydatetime(warn=False)).isoformat()


def test_record_us_is_to_us() -> None:
    """Random ISO-like text, valid and not (days 31 of short months, hours 24, offsets past 23:59, years out of the
    Timestamp range, 7 fraction digits): the same microseconds, or the same InputError."""
    rng = random.Random(1)

    def either(f: Any, s: str) -> Any:
        try:
            return f(s)
        except InputError:
            return "error"

    for _ in range(20000):
        y = rng.choice([1677, 1678, 1700, 1969, 1970, 2015, 2199, 2261, 2262, rng.randint(1000, 3000)])
        s = (f"{y:04d}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}T{rng.randint(0, 25):02d}:"
             f"{rng.randint(0, 60):02d}:{rng.randint(0, 60):02d}")
        if rng.random() < 0.5:
            s += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 7)))
        s += (rng.choice("+-") + f"{rng.randint(0, 25):02d}:{rng.randint(0, 60):02d}" if rng.random() < 0.9
              else rng.choice(["", "Z"]))
        assert either(record_us, s) == either(to_us, s), s
    assert record_us(None) is None and record_us(12) == 12
    assert record_us(pd.Timestamp("2015-12-01", tz="UTC")) == to_us("2015-12-01")


def _evict_one_at_a_time(book: AlertBook, out: list[Alert]) -> None:
    """What AlertBook.evict did with the alerts it removes, one at a time (the reference)."""
    for a in out:
        del book._alerts[a.id]
        key = (a.rule, a.entity)
        ids = book._by_key.get(key, [])
        if a.id in ids:
            ids.remove(a.id)
        if not ids:
            book._by_key.pop(key, None)
            book._starts.pop(key, None)
        elif a.start is not None and all(book._alerts[i].start != a.start for i in ids):
            book._starts.get(key, set()).discard(pd.Timestamp(a.start))


@pytest.mark.parametrize("seed", range(5))
def test_evict_leaves_what_one_removal_at_a_time_left(seed: int) -> None:
    """Books with several alerts per rule and entity, shared and moved run starts, live ones among them: the ids,
    the index and the run starts left after an eviction equal those of the removal one at a time."""
    rng = random.Random(seed)
    t0 = pd.Timestamp("2015-12-01", tz="UTC")
    books = (AlertBook(), AlertBook())
    for h in range(300):
        rule, ent = rng.choice(["r1", "r2"]), rng.choice(["e1", "e2", "e3"])
        at = t0 + pd.Timedelta(hours=7 * h)
        start = None if rng.random() < 0.1 else t0 + pd.Timedelta(hours=rng.randrange(0, 40) * 50)
        separate, resolve, later = rng.random() < 0.3, rng.random() < 0.7, rng.randrange(0, 5)
        for b in books:
            a, _ = b.raise_alert(rule, ent, at=at, start=start, _separate=separate)
            if resolve or separate:
                b.resolve(a.id, at=max(at, a.opened_at) + pd.Timedelta(hours=later))
    if rng.random() < 0.5:  # a live alert whose start moved: its old start stays recorded
        live = next(iter(books[0]._live.values()), None)
        for b in books:
            if live is not None:
                b._starts[(b._alerts[live].rule, b._alerts[live].entity)].add(t0 - pd.Timedelta("7D"))
    cut = t0 + pd.Timedelta(hours=rng.randrange(700, 2000))
    keep = rng.choice([None, 5, 50])
    got = books[0].evict(before=cut, keep=keep)
    ref = _reference_evict(books[1], cut, keep)
    assert [a.id for a in got] == [a.id for a in ref] and len(got) > 10
    assert books[0]._by_key == books[1]._by_key and books[0]._starts == books[1]._starts
    assert list(books[0]._alerts) == list(books[1]._alerts)


def _reference_evict(book: AlertBook, cut: pd.Timestamp, keep: int | None) -> list[Alert]:
    done = sorted((a for a in book._alerts.values() if a.status == "resolved" and a.resolved_at is not None),
                  key=lambda a: a.resolved_at)  # type: ignore[arg-type,return-value]
    out = [a for a in done if a.resolved_at < cut]  # type: ignore[operator]
    if keep is not None and len(done) - len(out) > keep:
        out = done[: len(done) - max(0, keep)]
    _evict_one_at_a_time(book, out)
    return out


def test_the_engine_on_the_ingests_codes_equals_the_engine_on_the_columns() -> None:
    """The rule columns taken from the ingest's codes (the string columns not copied) give the engine the update
    it makes of the same columns without codes: candidates, entities, and the tails it keeps."""
    rng = np.random.default_rng(4)
    ents = np.array([f"urn:ngsi-ld:AirQualityObserved:S{i}" for i in range(5)], dtype=object)
    props = np.array(["pm25", "pm10", "no2", "TEMP", "co", "o3", "so2"], dtype=object)
    units = np.array(["µg/m³", "mg/m³", "°C", None], dtype=object)
    engines = (lr.LiveRuleEngine(complete=True), lr.LiveRuleEngine(complete=True))
    t0 = int(pd.Timestamp("2015-12-01", tz="UTC").value // 1000)
    for batch in range(6):
        n = 3000
        ec, pc = rng.integers(0, len(ents), n), rng.integers(0, len(props), n)
        uc = np.where(props[pc] == "TEMP", 2, np.where((props[pc] == "co") & (rng.random(n) < 0.3), 1, 0))
        if batch == 3:
            uc[props[pc] == "pm10"] = 3  # no unit
        cols = {"entity": ents[ec], "property": props[pc], "unit": units[uc],
                "time_us": t0 + (batch * 200 + rng.integers(0, 260, n)) * 3_600_000_000,
                "value": np.where(rng.random(n) < 0.05, np.nan, rng.uniform(0, 500, n))}
        coded = dict(cols)
        coded[CODES] = {"entity": (ec, ents), "property": (pc, props), "unit": (uc, units)}
        a, b = engines[0].update(coded), engines[1].update(cols)
        _same_candidates(a.current, b.current)
        assert a.entities == b.entities and a.past == b.past
    for e in engines[1].tails:
        x, y = engines[0].tails[e], engines[1].tails[e]
        assert x.cover_from == y.cover_from and x.data.keys() == y.data.keys()
        for p in x.data:
            for u, w in zip(x.data[p], y.data[p], strict=True):
                np.testing.assert_array_equal(u, w)


def test_alert_topic_levels_remembered() -> None:
    assert alert_topic("a/b", "x+#\x00") == "citytwin/alerts/a_b/x___" == alert_topic("a/b", "x+#\x00")
    assert alert_topic("", "e", prefix="p") == "p/alerts/_/e"
