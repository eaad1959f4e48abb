"""The rule engine's follow-back reads a bounded number of stored alerts (issue 13, "ingest RSS flat").

Before: once alerts had left memory, every follow-back asked the alert store for *all* alerts of the rule and
entity, so each batch decoded more records the longer the twin ran (in the 30-minute soak: 9,600 records in the
first pass of the month, 110,000 in the seventh), and the transient memory of that read grew without bound.
Now it asks only for the alerts a run in the batch's window can continue (:meth:`AlertStore.query`'s
``ending_since``). The alerts raised are the same either way (compared here on a feed of 160 days)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd

from citytwin.foundation.timeseries.alerts import AlertStore
from citytwin.twin.rules import ThresholdRule
from citytwin.workflows.alerting import AlertHub, AutoAlerts

T0 = pd.Timestamp("2015-12-01T00:00:00Z")
H = pd.Timedelta("1h")
RULE = ThresholdRule("pm_high", "pm25", ">", 100, min_steps=2, step="1h", severity="warning",
                     message="pm25 above {threshold:g} for {steps} h at {entity}")


def _rec(aid: str, status: str, start: pd.Timestamp, end: pd.Timestamp | None) -> dict[str, object]:
    return {"id": aid, "rule": "r", "entity": "e", "status": status, "opened_at": start.isoformat(),
            "start": start.isoformat(), "end": None if end is None else end.isoformat(),
            "resolved_at": None if status != "resolved" or end is None else (end + H).isoformat()}


def test_ending_since_keeps_what_a_later_run_can_continue(tmp_path) -> None:
    s = AlertStore(tmp_path / "alerts.sqlite")
    cut = T0 + 10 * 24 * H
    s.put([
        _rec("old", "resolved", T0, T0 + 5 * H),  # over long before: left out
        _rec("ends-after", "resolved", cut - 2 * H, cut + H),  # its run reaches past the cut
        _rec("ends-at", "resolved", cut - 3 * H, cut),  # the bound itself is kept
        _rec("live-old", "open", T0 + H, T0 + 3 * H),  # live: always kept, however old
        _rec("no-end", "resolved", T0 + 2 * H, None),  # no run end recorded: kept (nothing known)
    ])
    got = [r["id"] for r in s.query(rule="r", entity="e", ending_since=cut)]
    assert got == ["live-old", "no-end", "ends-at", "ends-after"]
    assert len(s.query(rule="r", entity="e")) == 5  # without the bound: all of them
    s.close()


def test_a_store_written_before_the_end_column_is_filled_from_its_records(tmp_path) -> None:
    path = tmp_path / "alerts.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""CREATE TABLE alerts (id TEXT PRIMARY KEY, rule TEXT NOT NULL, entity TEXT NOT NULL,
        status TEXT NOT NULL, opened_us INTEGER NOT NULL, start_us INTEGER, resolved_us INTEGER,
        seq INTEGER NOT NULL, record TEXT NOT NULL)""")
    for i, (aid, end) in enumerate((("a", T0 + 2 * H), ("b", T0 + 50 * H))):
        r = _rec(aid, "resolved", T0, end)
        con.execute("INSERT INTO alerts VALUES (?,?,?,?,?,?,?,?,?)",
                    (aid, "r", "e", "resolved", T0.value // 1000, T0.value // 1000, None, i + 1, json.dumps(r)))
    con.commit()
    con.close()
    s = AlertStore(path)
    assert [r["id"] for r in s.query(rule="r", entity="e", ending_since=T0 + 10 * H)] == ["b"]
    s.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT id, end_us FROM alerts ORDER BY id").fetchall() == [
        ("a", (T0 + 2 * H).value // 1000), ("b", (T0 + 50 * H).value // 1000)]
    con.close()


class _Counting(AlertStore):
    """The real store, counting the records its queries return."""

    returned: list[int]

    def query(self, **kw):  # type: ignore[no-untyped-def,override]
        out = super().query(**kw)
        self.returned.append(len(out))
        return out


def _feed(tmp_path, name: str, *, bounded: bool) -> tuple[list[tuple[str, str, str, str]], list[int]]:
    """160 days at one station: 30-hour episodes of pm25 above 100 every 48 hours (longer than the 24 h
    lookback, so each batch's window starts inside a run and the follow-back asks the store), in 6-hour
    batches; resolved alerts leave memory after 2 days."""
    hub = AlertHub(tmp_path / name / "alerts.sqlite", retention="2D", max_resolved=3)
    assert hub.store is not None
    hub.store.__class__ = _Counting
    hub.store.returned = []  # type: ignore[attr-defined]
    auto = AutoAlerts(_NoHistory(), hub, [RULE], lookback="24h", max_lookback="31D")
    if not bounded:  # the code before the fix: every stored alert of the rule and entity
        hub.alerts_of = lambda rule, entity, since=None: AlertHub.alerts_of(hub, rule, entity)  # type: ignore[method-assign]
    hours = 160 * 24
    t = T0 + H * np.arange(hours)
    v = np.where(np.arange(hours) % 48 < 30, 150.0, 20.0)
    per: list[int] = []
    for i in range(0, hours, 6):
        batch = pd.DataFrame({"entity": "s1", "property": "pm25", "time": t[i:i + 6], "value": v[i:i + 6],
                              "unit": "µg/m³"})
        n0 = len(hub.store.returned)  # type: ignore[attr-defined]
        auto.run(["s1"], t[i], t[min(i + 5, hours - 1)], batch=batch)
        hub.evict()
        per.append(sum(hub.store.returned[n0:]))  # type: ignore[attr-defined]
    alerts = [(a.id, a.status, str(a.start), str(a.end)) for a in hub.alerts()]
    hub.close()
    return alerts, per


class _NoHistory:
    """Every reading comes through the batches (an empty history: the engine never reads back)."""

    def days(self) -> list[str]:
        return []

    def query(self, **kw):  # type: ignore[no-untyped-def]
        raise AssertionError("the engine must not read history here")


def test_follow_back_reads_a_bounded_number_of_stored_alerts_and_raises_the_same_alerts(tmp_path) -> None:
    bounded, per_b = _feed(tmp_path, "bounded", bounded=True)
    unbounded, per_u = _feed(tmp_path, "unbounded", bounded=False)
    assert bounded == unbounded  # the same alerts, starts, ends and statuses
    # one alert per episode, each over, each with its whole run (30 hours) although the batches are 6 hours
    assert len(bounded) == 80 and all(a[1] == "resolved" for a in bounded)
    assert {pd.Timestamp(a[3]) - pd.Timestamp(a[2]) for a in bounded} == {29 * H}
    print("records read per batch, bounded / unbounded: max", max(per_b), max(per_u), "last month max",
          max(per_b[-120:]), max(per_u[-120:]))
    last_month = per_b[-120:]
    # bounded: at most the episodes of max_lookback (31 days) + a step + a day of margin, 48 hours apart
    assert max(per_b) <= 33 // 2 + 2
    assert max(last_month) >= 10  # the follow-back did read stored alerts (the test exercises the path)
    # unbounded (before): what one batch read grew with the alerts ever raised
    assert max(per_u[-120:]) >= 70 > max(per_b)
