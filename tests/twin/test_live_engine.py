"""The incremental rule engine of the live twin (:class:`citytwin.twin.live_rules.LiveRuleEngine`).

Real data: the UCI Beijing multi-site air data (12 stations, hourly). The engine must raise exactly
the alerts of one evaluation of everything from scratch, whatever the batch size; its numpy AQI and
run detection must equal the pandas path (:func:`window_candidates`, :func:`rules.evaluate`) they
replace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.service.app import open_runtime
from citytwin.twin import feeds as F
from citytwin.twin import live_eval as le
from citytwin.twin import live_rules as lr
from citytwin.twin.alerts import AlertBook
from citytwin.twin.rules import ThresholdRule, evaluate

#: The fields that make an alert (count and last_seen say how often it was raised: they depend on batching).
FIELDS = ("rule", "entity", "status", "start", "end", "peak", "peak_time", "opened_at", "resolved_at",
          "severity", "message", "data")


def _wide(shared_data: Path, start: str, end: str, stations: int | None = None) -> pd.DataFrame:
    files = sorted((shared_data / "air_beijing_multisite").glob("*.csv"))[:stations]
    w = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    t = pd.to_datetime(w[["year", "month", "day", "hour"]])
    return w[(t >= start) & (t < end)].reset_index(drop=True)


@pytest.fixture(scope="module")
def day(shared_data: Path) -> pd.DataFrame:
    """2015-12-01 (Beijing time), all 12 stations: the peak of a heavy-pollution episode."""
    return F.beijing_long(_wide(shared_data, "2015-12-01", "2015-12-02"))


def _alerts(book: AlertBook) -> list[tuple]:
    return sorted(tuple(r[k] for k in FIELDS) for r in book.to_records())


def from_scratch(long: pd.DataFrame) -> list[tuple]:
    """One evaluation of the whole day (window_candidates), synced into an empty book."""
    book = AlertBook()
    cands = lr.window_candidates(lr.DEFAULT_LIVE_RULES, long)
    book.sync(cands, rules=[r.name for r in lr.DEFAULT_LIVE_RULES], refresh=False)
    return _alerts(book)


@pytest.mark.parametrize(("size", "complete"), [(1, True), (7, True), (7, False), (500, True), (500, False)])
def test_incremental_equals_from_scratch_over_a_replayed_day(tmp_path, day, size, complete):
    expected = from_scratch(day)
    # the day has episodes of both rules, finished and still going at its end
    assert {a[0] for a in expected} == {"aqi_heavy_2h", "aqi_severe_1h"}
    assert {a[2] for a in expected} == {"open", "resolved"}
    rt = open_runtime(tmp_path / "twin")
    rt.register([F.beijing_entity(s) for s in F.BEIJING_STATIONS])
    auto = rt.enable_auto_alerts()
    assert auto.engine.complete  # an empty history: the engine sees every reading through its hook
    auto.engine.complete = complete  # False: as on a history that held readings before (read back)
    msgs = [(tp, p) for _, tp, p in F.messages_from_long(day)]  # one message per station-hour
    try:
        for i in range(0, len(msgs), size):
            rep = rt.ingestor.ingest(msgs[i:i + size], source="replay")
            assert rep.rejected == 0
        assert rt.ingestor.hook_errors == []
        assert auto.batches == -(-len(msgs) // size)
        assert _alerts(rt.alerts.book) == expected
        # not complete: history was read once per batch that brought stations seen for the first time (all of
        # them in one query; one per station when a batch brings one), never again; complete: never
        first: dict[str, int] = {}
        for i, (tp, _) in enumerate(msgs):
            first.setdefault(tp, i // size)
        assert len(first) == 12
        assert auto.engine.history_reads == (0 if complete else len(set(first.values())))
    finally:
        rt.close()


def test_engine_aqi_and_runs_equal_window_candidates(shared_data):
    """Two months of four stations (CO in µg/m³: unit conversion), evaluated from arrays vs pandas."""
    long = F.beijing_long(_wide(shared_data, "2015-11-01", "2016-01-01", stations=4))
    ref = lr.window_candidates(lr.DEFAULT_LIVE_RULES, long)
    eng = lr.LiveRuleEngine()
    got = eng.update(long).current
    key = lambda c: (c.rule, c.entity, c.start)  # noqa: E731
    assert len(ref) > 100
    assert sorted(got, key=key) == sorted(ref, key=key)
    # and from a start inside the data (the window of a later batch)
    s = pd.Timestamp("2015-12-10T00:00:00Z")
    ref2 = lr.window_candidates(lr.DEFAULT_LIVE_RULES, long, start=s)
    # the engine keeps only the last days of each station; one that keeps all evaluates from s
    assert all(t.cover_from > int(pd.Timestamp("2015-12-27").value // 1000) for t in eng.tails.values())
    tails = lr.LiveRuleEngine(keep="90D")
    tails.update(long)
    got2 = [c for e in sorted(tails.tails) for c in tails._evaluate(e, tails.tails[e].data, int(s.value // 1000))]
    assert sorted(got2, key=key) == sorted(ref2, key=key)


@pytest.mark.parametrize("op", [">", ">=", "<", "<="])
@pytest.mark.parametrize("max_gap", [0, 2])
def test_series_candidates_equal_rules_evaluate(op, max_gap):
    """The numpy run detection against rules.evaluate (pandas) on irregular series with gaps and NaNs."""
    rng = np.random.default_rng(7)
    for trial in range(30):
        n = int(rng.integers(1, 80))
        t = np.cumsum(rng.choice([10, 10, 10, 20, 40], size=n)) * 60_000_000  # minutes -> µs
        v = rng.normal(100, 30, size=n).round()
        v[rng.random(n) < 0.1] = np.nan
        rule = ThresholdRule("r", "x", op, 100, min_steps=int(rng.integers(1, 4)), step="10min", max_gap=max_gap)
        df = pd.DataFrame({"entity": "e", "property": "x", "time": pd.to_datetime(t * 1000), "value": v})
        ref = [(c.start, c.end, c.peak, c.peak_time, c.steps, c.ongoing, c.message, c.detected_at)
               for c in evaluate(rule, df)]
        got = [(c.start.tz_localize(None), c.end.tz_localize(None), c.peak, c.peak_time.tz_localize(None),
                c.steps, c.ongoing, c.message, c.detected_at.tz_localize(None) if c.detected_at else None)
               for c in lr.series_candidates(rule, "e", t, v)]
        assert got == ref, trial


def test_old_and_late_readings(tmp_path, day):
    """A reading of 1800 reads a bounded window of history (fast, nothing raised, nothing resolved); a
    late batch a day old re-evaluates from it without touching the episodes after it."""
    rt = open_runtime(tmp_path / "twin", max_future_s=10 ** 12)
    rt.register([F.beijing_entity("Dongsi")])
    auto = rt.enable_auto_alerts()
    dongsi = F.beijing_entity("Dongsi").id
    long = day[day["entity"] == dongsi]
    msgs = [(tp, p) for _, tp, p in F.messages_from_long(long)]
    try:
        rt.ingestor.ingest(msgs[12:], source="replay")  # from 12:00
        before = _alerts(rt.alerts.book)
        assert before
        # stored and handed to the rules as the ingest does (the parser's plausibility checks are not
        # the subject here: the engine must cope with whatever is stored)
        t_old = int(pd.Timestamp("1800-01-01T00:00:00Z").value // 1000)
        cols = {"entity": [dongsi], "type": ["AirQualityObserved"], "property": ["pm25"], "time_us": [t_old],
                "value": [900.0], "unit": ["µg/m³"], "lon": [None], "lat": [None]}
        rt.stores.history.append(cols)
        lo = pd.Timestamp(t_old, unit="us", tz="UTC")
        reads: list[tuple[int, int | None]] = []
        history = auto.engine.history
        assert history is not None
        auto.engine.history = lambda e, s, t: reads.append((s, t)) or history(e, s, t)
        auto.run([dongsi], lo, lo, batch=cols)
        # it took 14.8 s when the rules read everything from 1800 on: now one window of hours around it
        assert len(reads) == 1 and reads[0][1] is not None
        assert pd.Timedelta(microseconds=reads[0][1] - reads[0][0]) <= pd.Timedelta("5D")
        # one hour above 300: a finished severe episode in 1800 (its hour is one of Beijing's local mean
        # time then, +08:05:43, as window_candidates has it), beside the live one of today, which stays open
        ref = lr.window_candidates(lr.DEFAULT_LIVE_RULES, pd.DataFrame(
            {"entity": [dongsi], "property": ["pm25"], "time": [lo], "value": [900.0], "unit": ["µg/m³"]}))
        assert [(c.rule, c.ongoing) for c in ref] == [("aqi_severe_1h", True)]
        after = _alerts(rt.alerts.book)
        new = [a for a in after if a not in before]
        assert [(a[0], a[2], a[3], a[4]) for a in new] == [("aqi_severe_1h", "resolved", ref[0].start.isoformat(),
                                                            ref[0].end.isoformat())]
        assert [a for a in after if a in before] == before  # nothing else changed
        # the morning comes late: evaluated as if it had come in order
        rt.ingestor.ingest(msgs[:12], source="replay")
        assert rt.ingestor.hook_errors == []
        # the live episodes take their true (earlier) start, peak and length; they stay open and keep the
        # time they were opened (a from-scratch evaluation would have opened them earlier)
        skip = FIELDS.index("opened_at")
        mine = [a[:skip] + a[skip + 1:] for a in _alerts(rt.alerts.book) if a[3] > "1801"]
        assert mine == [a[:skip] + a[skip + 1:] for a in from_scratch(long)]
        assert {a[2] for a in mine} == {"open"}
    finally:
        rt.close()


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Europe/Helsinki", "America/Santiago", "UTC"])
def test_the_fixed_offset_from_the_day_cache_is_the_offset_of_every_hour(tz: str) -> None:
    """``_fixed_offset`` answers from whole days of one offset; it must say what the time zone's offset at each
    hour of the times says: one offset, or None when they differ (windows across the changes of summer time)."""
    hour = 3_600_000_000
    rng = np.random.default_rng(3)
    t0 = int(pd.Timestamp("2015-01-01", tz="UTC").value // 1000)
    le._DAY_OFFSETS.clear()
    seen = set()
    for _ in range(400):
        start = t0 + int(rng.integers(0, 2 * 8760)) * hour
        span = int(rng.choice([1, 30, 24 * 3, 24 * 40, 24 * 200]))
        t = start + rng.integers(0, span * hour, size=int(rng.integers(1, 50)))
        loc = pd.DatetimeIndex(t.astype("datetime64[us]")).tz_localize("UTC").tz_convert(tz).tz_localize(None)
        offs = set((loc.as_unit("us").asi8 - t).tolist())
        want = offs.pop() if len(offs) == 1 else None
        assert le._fixed_offset(t, tz) == want, (tz, t.min(), t.max())
        seen.add(want is None)
    assert seen == ({False} if tz in ("Asia/Shanghai", "UTC") else {False, True})
