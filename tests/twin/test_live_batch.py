"""The rule engine evaluates a batch's entities together (:meth:`LiveRuleEngine._evaluate_many`: one AQI grid for
all of them, :func:`live_eval.aqi_arrays_many`, runs looked for only where a rule holds) and gives what evaluating
them one by one gave (``batch_eval = False``, the reference): the same hours and AQI values bit for bit, the same
candidates in the same order on every commit, the same tails, and through a twin the same alerts and events."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from citytwin.twin import live_eval as le
from citytwin.twin import live_rules as lr
from citytwin.twin.rules import ThresholdRule

H = 3_600_000_000


def _data(rng: np.random.Generator, t0: int, hours: int) -> dict[str, tuple[np.ndarray, ...]]:
    out: dict[str, tuple[np.ndarray, ...]] = {}
    for p in le.AQI_INPUTS:
        if rng.random() < 0.15:
            continue  # a pollutant not reported
        n = int(rng.integers(0, hours * 2))
        t = np.unique(t0 + rng.integers(0, hours, n) * H + rng.integers(0, 4, n) * 900_000_000)
        v = rng.uniform(0, 900 if p != "co" else 30, len(t))
        v[rng.random(len(t)) < 0.1] = np.nan
        v[rng.random(len(t)) < 0.02] = -1.0  # negative: no concentration
        f = np.where(rng.random(len(t)) < 0.2, 1000.0 if p == "co" else 0.5, 1.0)
        out[p] = (t.astype(np.int64), v, f)
    return out


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Europe/Berlin", "America/Sao_Paulo", "Asia/Kolkata"])
@pytest.mark.parametrize("when", ["2015-10-16", "2015-06-20"])
@pytest.mark.parametrize("seed", range(4))
def test_aqi_of_many_entities_equals_the_aqi_of_each(tz: str, when: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # from 2015-10-16: around a change of offset in Berlin (2015-10-25) and in São Paulo (2015-10-18, 2016-02-21);
    # from 2015-06-20: none (all rows' hours back to UTC at once); Kolkata: local hours at UTC half hours
    base = int(pd.Timestamp(when, tz="UTC").value // 1000)
    items = []
    for _ in range(int(rng.integers(1, 14))):
        t0 = base + int(rng.integers(0, 24 * 12)) * H
        items.append((_data(rng, t0, int(rng.integers(1, 90))), t0 + int(rng.integers(-10, 60)) * H))
    items.append(({}, base))  # nothing to read
    t = base + np.arange(30, dtype=np.int64) * H
    items.append(({"pm25": (t, np.full(30, np.nan), np.ones(30))}, base + 40 * H))  # no value: no row
    items.append(({"pm25": (t, np.full(30, 80.0), np.ones(30))}, base + 60 * H))  # all before its warm-up
    items.insert(0, ({"no2": (t, np.full(30, 90.0), np.ones(30)), "o3": (t, np.full(30, np.nan), np.ones(30))},
                     base + 20 * H))
    many = le.aqi_arrays_many(items, 24 * H, tz)
    whole = le.aqi_arrays_many(items, 24 * H, tz, kept_only=False)  # the IAQIs of every hour of the grid (before)
    assert len(many) == len(items)
    for (d, s), (t, v), (t2, v2) in zip(items, many, whole, strict=True):
        t1, v1 = le.aqi_arrays(d, s, 24 * H, tz)
        np.testing.assert_array_equal(t, t2)
        np.testing.assert_array_equal(v, v2)
        assert t.dtype == t1.dtype and v.dtype == v1.dtype
        np.testing.assert_array_equal(t, t1)
        np.testing.assert_array_equal(v, v1)  # (NaN where NaN: bit for bit otherwise)
    assert sum(len(t) for t, _ in many) > 50


def test_holding_entities_are_those_with_candidates() -> None:
    rng = np.random.default_rng(1)
    rule = ThresholdRule("r", "pm25", ">", 150, min_steps=1, step="1h")
    series = [(np.arange(n, dtype=np.int64) * H, np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 160, n)))
              for n in rng.integers(0, 30, 40)]
    got = le.holding_entities(rule, series)
    assert got == [k for k, (t, v) in enumerate(series) if le.series_candidates(rule, "e", t, v)]
    assert 0 < len(got) < len(series)
    # and the candidates of several series made together are those of each
    for r in (rule, ThresholdRule("r2", "pm25", ">", 100, min_steps=3, step="1h", max_gap=1,
                                  message="{entity} {steps} h from {start} to {end}, peak {peak:g}")):
        ents = [f"e{k}" for k in range(len(series))]
        many = le.series_candidates_many(r, ents, series)
        one = [le.series_candidates(r, e, t, v) for e, (t, v) in zip(ents, series, strict=True)]
        assert many == one and [list(map(repr, c)) for c in many] == [list(map(repr, c)) for c in one]
        assert sum(map(len, many)) > 5


@pytest.mark.parametrize("seed", range(6))
def test_runs_of_all_series_at_once_equal_the_runs_of_each(seed: int) -> None:
    """:func:`live_eval.series_candidates_many` (the runs of all series in one pass, :func:`live_eval._runs_many`)
    equals :func:`live_eval.series_candidates_each` (one :func:`live_eval._runs` per series): runs at the ends of
    series, empty series, gaps, NaN, ``max_gap``, ``<`` and ``<=`` rules, runs reaching each series' last time."""
    rng = np.random.default_rng(100 + seed)
    rules = [ThresholdRule("a", "aqi", ">", 200, min_steps=2, step="1h"),
             ThresholdRule("b", "aqi", ">=", 150, min_steps=1, step="1h", max_gap=2,
                           message="{entity} {steps} h from {start} to {end}, peak {peak:g}"),
             ThresholdRule("c", "o3", "<", 40, min_steps=3, step="1h", max_gap=1),
             ThresholdRule("d", "pm10", "<=", 60, min_steps=2, step="30min")]
    series = []
    for n in rng.integers(0, 40, int(rng.integers(1, 30))):
        t0 = int(rng.integers(0, 1000)) * H
        t = np.unique(t0 + rng.integers(0, 60, int(n)) * (H // 2)).astype(np.int64)
        v = rng.uniform(0, 300, len(t))
        v[rng.random(len(t)) < 0.15] = np.nan
        series.append((t, v))
    ents = [f"e{k}" for k in range(len(series))]
    total = going = 0
    for r in rules:
        many = le.series_candidates_many(r, ents, series)
        each = le.series_candidates_each(r, ents, series)
        assert many == each and [list(map(repr, c)) for c in many] == [list(map(repr, c)) for c in each]
        total += sum(map(len, many))
        going += sum(c.ongoing for cs in many for c in cs)
    assert total > 10 and going > 0


@pytest.mark.parametrize("seed", range(6))
def test_the_rules_over_one_series_together_equal_each_rule_alone(seed: int) -> None:
    """:func:`live_eval.series_candidates_rules` (the series laid end to end once for all the rules over a property,
    every series passed) gives, rule by rule, what :func:`live_eval.series_candidates_many` over the holding series
    (the engine's path before) and :func:`live_eval.series_candidates_loop` per series (Timestamps made one by one)
    give: ``>``, ``>=``, ``<``, ``<=``, ``max_gap``, a 30-min step, empty series, series where no rule holds."""
    rng = np.random.default_rng(200 + seed)
    rules = [*lr.DEFAULT_LIVE_RULES,
             ThresholdRule("b", "aqi", ">=", 150, min_steps=1, step="1h", max_gap=2,
                           message="{entity} {steps} h from {start} to {end}, peak {peak:g}"),
             ThresholdRule("c", "aqi", "<", 40, min_steps=3, step="1h", max_gap=1),
             ThresholdRule("d", "aqi", "<=", 60, min_steps=2, step="30min")]
    series = []
    for n in rng.integers(0, 40, int(rng.integers(1, 30))):
        t0 = 1_448_000_000_000_000 + int(rng.integers(0, 1000)) * H
        t = np.unique(t0 + rng.integers(0, 60, int(n)) * (H // 2)).astype(np.int64)
        v = rng.uniform(0, 400, len(t))
        v[rng.random(len(t)) < 0.15] = np.nan
        series.append((t, v))
    series.append((np.arange(5, dtype=np.int64) * H, np.full(5, 100.0)))  # no rule of the first two holds
    ents = [f"e{k}" for k in range(len(series))]
    together = le.series_candidates_rules(rules, ents, series)
    assert len(together) == len(rules)
    total = 0
    for r, got in zip(rules, together, strict=True):
        hold = le.holding_entities(r, series)
        before: list[list[Any]] = [[] for _ in series]
        for k, cands in zip(hold, le.series_candidates_many(r, [ents[k] for k in hold], [series[k] for k in hold]),
                            strict=True):
            before[k] = cands
        loop = [le.series_candidates_loop(r, e, t, v) for e, (t, v) in zip(ents, series, strict=True)]
        for ref in (before, loop):
            assert got == ref and [list(map(repr, c)) for c in got] == [list(map(repr, c)) for c in ref]
            assert [[(c.start.unit, c.start.tz, c.end.tz, c.peak_time.tz, c.detected_at.tz) for c in cs]
                    for cs in got] == [[(c.start.unit, c.start.tz, c.end.tz, c.peak_time.tz, c.detected_at.tz)
                                        for c in cs] for cs in ref]
        total += sum(map(len, got))
    assert total > 5


def test_stamps_are_the_timestamps_of_an_index() -> None:
    """:func:`live_eval._stamps` (each Timestamp made once, then remembered) gives what a ``DatetimeIndex`` of the
    same nanoseconds localized to UTC gives (value, unit, time zone, repr), also once the cache was cleared."""
    rng = np.random.default_rng(3)
    ns = (rng.integers(-10**6, 10**6, 5000) * 3_600_000_000_000 // 7).astype(np.int64)
    ref = list(pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize(le._UTC))
    for _ in range(2):  # (the second time from the cache, which was cleared on the way: more than 4,096 values)
        got = le._stamps(ns.tolist())
        assert got == ref and list(map(repr, got)) == list(map(repr, ref))
        assert [(t.unit, t.tz) for t in got] == [(t.unit, t.tz) for t in ref]


def _same(a: Any, b: Any) -> None:
    assert a.current == b.current and a.entities == b.entities and a.past == b.past
    assert [repr(c) for c in a.current] == [repr(c) for c in b.current]


RULES = (*lr.DEFAULT_LIVE_RULES,
         ThresholdRule("pm10_high", "pm10", ">", 300, min_steps=3, step="1h", max_gap=1, severity="warning"),
         ThresholdRule("o3_low", "o3", "<", 5, min_steps=2, step="1h"))


@pytest.mark.parametrize("size", [137, 2000])
def test_a_replay_in_small_commits_equals_the_entities_one_by_one(shared_data, size: int, monkeypatch) -> None:
    """Two months of the 12 stations in commits of ``size`` readings, shuffled a little (late and out-of-order
    readings, some sent twice), through two engines with a history to read back (one with the batched evaluation and
    the merge by slices, one entity by entity with a mask per property): every commit's update equal, and the tails.
    Every trim is checked: cut at the tail's latest reading (as it is then) less ``keep``, what ``np.searchsorted``
    cuts (the engine takes the latest reading from before the follow-back, and the array's own searchsorted)."""
    from citytwin.twin import feeds as F

    trims = [0]
    trim = lr._Tail.trim

    def checked_trim(tail: lr._Tail, before: int) -> None:
        assert before == tail.latest() - new.keep_us  # type: ignore[operator]
        want = {p: tuple(a[int(np.searchsorted(t, before, side="left")):] for a in (t, v, f))
                for p, (t, v, f) in tail.data.items()} if before > tail.cover_from else dict(tail.data)
        trim(tail, before)
        assert tail.data.keys() == want.keys()
        for p, arrays in tail.data.items():
            for x, y in zip(arrays, want[p], strict=True):
                np.testing.assert_array_equal(x, y)
        trims[0] += 1

    monkeypatch.setattr(lr._Tail, "trim", checked_trim)

    files = sorted((shared_data / "air_beijing_multisite").glob("*.csv"))
    w = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    t = pd.to_datetime(w[["year", "month", "day", "hour"]])
    w = w[(t >= "2015-11-29") & (t < "2015-12-03")].reset_index(drop=True)
    long = F.beijing_long(w).reset_index(drop=True)
    tt = pd.to_datetime(long["time"])
    tt = tt.dt.tz_localize("Asia/Shanghai") if tt.dt.tz is None else tt
    long = long.assign(time_us=tt.dt.tz_convert("UTC").dt.as_unit("us").astype("int64"))
    rng = np.random.default_rng(size)
    key = long["time_us"].to_numpy() + rng.integers(-3, 4, len(long)) * H * (rng.random(len(long)) < 0.05)
    long = long.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
    # some readings sent twice in a row, the second with another value (the later one counts)
    twice = np.flatnonzero(rng.random(len(long)) < 0.02)
    again = long.iloc[twice].assign(value=long["value"].iloc[twice] + 7.0)
    long = pd.concat([long, again]).iloc[np.argsort(np.r_[np.arange(len(long)), twice], kind="stable")
                                         ].reset_index(drop=True)
    stored = [0]  # readings committed so far: long[:stored[0]]

    def history(ents: list[str], lo: int, hi: int | None) -> pd.DataFrame:
        h = long.iloc[:stored[0]]
        m = h["entity"].isin(ents) & (h["time_us"] >= lo) & ((h["time_us"] < hi) if hi is not None else True)
        return h[m].drop_duplicates(["entity", "property", "time_us"], keep="last").sort_values("time_us")

    new, old = lr.LiveRuleEngine(RULES, history=history), lr.LiveRuleEngine(RULES, history=history)
    old.batch_eval = old.segment_merge = False
    rulewise = lr.LiveRuleEngine(RULES, history=history)  # batched, but the rules one by one (before joint_rules)
    rulewise.joint_rules = rulewise.group_checks = False  # (and each group's merge checked by _Tail.merge)
    n_cands = 0
    for i in range(0, len(long), size):
        b = long.iloc[i:i + size]
        stored[0] = i + len(b)
        u_new, u_old, u_rw = new.update(b), old.update(b), rulewise.update(b)
        _same(u_new, u_old)
        _same(u_new, u_rw)
        n_cands += len(u_new.current)
    assert n_cands > 100
    assert trims[0] > 3 * len(long) // size and new.history_reads > 0
    assert new.tails.keys() == old.tails.keys()
    for e, x in new.tails.items():
        y = old.tails[e]
        assert x.cover_from == y.cover_from and x.data.keys() == y.data.keys()
        for p in x.data:
            for u, v in zip(x.data[p], y.data[p], strict=True):
                np.testing.assert_array_equal(u, v)


def _merge_reference(data: dict[str, tuple[np.ndarray, ...]], prop: str, t: np.ndarray, v: np.ndarray,
                     f: np.ndarray) -> None:
    """``_Tail.merge`` as it was before its append path: concatenate, stable sort, the last of each time kept."""
    if prop in data:
        t0, v0, f0 = data[prop]
        t, v, f = np.concatenate([t0, t]), np.concatenate([v0, v]), np.concatenate([f0, f])
    order = np.argsort(t, kind="stable")
    t, v, f = t[order], v[order], f[order]
    keep = np.r_[t[1:] != t[:-1], True] if len(t) else np.zeros(0, dtype=bool)
    data[prop] = (t[keep], v[keep], f[keep])


@pytest.mark.parametrize("seed", range(4))
def test_tail_merge_appends_as_the_sort_would(seed: int) -> None:
    """Readings after the kept ones, in order, are appended (no sort): the same tail as the sort and dedup give,
    for in-order, out-of-order, repeated and boundary-equal times."""
    rng = np.random.default_rng(seed)
    tail = lr._Tail(0, {})
    ref: dict[str, tuple[np.ndarray, ...]] = {}
    last = 0
    appended = 0
    for _ in range(300):
        n = int(rng.integers(0, 6))
        kind = rng.random()
        if kind < 0.6:  # after the kept ones, in order (the append path)
            t = last + np.cumsum(rng.integers(1, 3, n)) * H
        elif kind < 0.75:  # the first one at the last kept time (replaces it)
            t = last + np.r_[0, np.cumsum(rng.integers(1, 3, max(n - 1, 0)))][:n] * H
        elif kind < 0.9:  # late or out of order
            t = last + rng.integers(-20, 5, n) * H
        else:  # a time twice in the batch
            t = last + np.repeat(rng.integers(1, 4, max(n // 2, 1)), 2)[:n] * H
        t = t.astype(np.int64)
        v, f = rng.uniform(0, 300, n), np.ones(n)
        p = "pm25" if rng.random() < 0.8 else "o3"
        before = len(tail.data.get(p, ((),))[0])
        tail.merge(p, t, v, f)
        _merge_reference(ref, p, t, v, f)
        appended += int(len(t) > 0 and len(tail.data[p][0]) == before + len(t))
        if len(t):
            last = max(last, int(t.max()))
        assert tail.data.keys() == ref.keys()
        for q in ref:
            for a, b in zip(tail.data[q], ref[q], strict=True):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)
    assert appended > 100


def test_follow_back_continues_the_last_matching_known_alert() -> None:
    """A run reaching the window's start continues the *last* known alert (oldest first) that reaches it, as the
    list of all matches' last element gave; found by a scan from the end."""
    from types import SimpleNamespace

    rule = lr.AQI_HEAVY_2H
    eng = lr.LiveRuleEngine([rule])
    t = np.arange(6, dtype=np.int64) * H + 400_000 * H
    cands = le.series_candidates(rule, "s", t, np.full(6, 250.0))
    assert len(cands) == 1
    c = cands[0]
    ts = pd.Timestamp

    def alert(start_h: int, end_h: int | None, live: bool, peak: float) -> SimpleNamespace:
        s = c.start + pd.Timedelta(hours=start_h)
        return SimpleNamespace(start=s, end=None if end_h is None else c.start + pd.Timedelta(hours=end_h),
                               live=live, peak=peak, peak_time=s)

    for mine, want in (([alert(-30, -1, False, 260.0), alert(-20, -1, False, 270.0), alert(-9, None, True, 280.0),
                         alert(-5, -4, False, 300.0)], 2),  # the last that reaches: the live one, not the first
                       ([alert(-30, -1, False, 260.0), alert(-20, -1, False, 270.0)], 1),
                       ([alert(-30, -1, False, 260.0), alert(-3, -3, False, 900.0)], 0)):
        got = eng._follow_back("s", lr._Tail(0, {}), int(t[0] // 1) + H, [c], lambda r, e, m=mine: m, -10**18, H)
        assert got == [lr._continued(rule, c, mine[want])], want
        assert ts(got[0].start) == mine[want].start


@pytest.mark.parametrize("seed", range(3))
def test_the_eight_iaqis_in_one_pass_equal_iaqi_array_bit_for_bit(seed: int) -> None:
    """``iaqi_rows`` (the eight IAQIs of the AQI grid in one pass) against one ``iaqi_array`` per row: values at,
    between, just beside and beyond every breakpoint, NaN and infinity, the switching rows (SO2 1-h, O3 8-h) above
    their switch; the same bits (NaN where NaN, the sign of zero). A negative value raises as ``iaqi_array`` does."""
    from citytwin.foundation.errors import InputError
    from citytwin.twin import aqi as aqi_mod

    tbl = aqi_mod.load_table()
    rng = np.random.default_rng(seed)
    rows = []
    for p, per in le._IAQI_ROWS:
        bp = np.asarray(tbl.breakpoints[(p, per)])
        pool = np.r_[bp, np.nextafter(bp, np.inf), np.nextafter(bp, -np.inf).clip(0), bp * 1.5, np.nan, np.inf,
                     rng.uniform(0, bp[-1] * 1.3, 200)]
        rows.append(rng.choice(pool, (7, 40)))
    conc = np.stack(rows)
    got = le.iaqi_rows(conc, tbl)
    want = np.stack([aqi_mod.iaqi_array(p, per, conc[r], tbl) for r, (p, per) in enumerate(le._IAQI_ROWS)])
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert (np.signbit(got) == np.signbit(want)).all() and (np.isnan(got) == np.isnan(want)).all()
    assert np.isnan(want).any() and (want == 500).any()
    conc[3, 0, 0] = -1.0
    with pytest.raises(InputError):
        le.iaqi_rows(conc, tbl)
