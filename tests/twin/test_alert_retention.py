"""The alert hub's memory stays bounded: resolved alerts past the retention leave memory, stay in the store,
are still listed and looked up, and their episodes are not raised again (issue 13, "ingest RSS flat").

The clock is the alerts' own times (``at=``, the run times of candidates): a replay of 2015 is measured in
2015, so the tests drive time through them."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from citytwin.twin.alerts import AlertStateError
from citytwin.twin.rules import AlertCandidate
from citytwin.workflows.alerting import AlertHub

T0 = pd.Timestamp("2015-12-01T00:00:00Z")
H = pd.Timedelta("1h")


def _cand(entity: str, start: pd.Timestamp, end: pd.Timestamp, *, ongoing: bool) -> AlertCandidate:
    return AlertCandidate(rule="aqi_heavy", entity=entity, property="aqi", start=start, end=end, peak=250.0,
                          peak_time=start, steps=int((end - start) / H) + 1, threshold=200.0, severity="warning",
                          ongoing=ongoing, message="heavy", detected_at=start)


def test_memory_is_bounded_after_many_alerts_and_all_stay_queryable(tmp_path) -> None:
    hub = AlertHub(tmp_path / "alerts.sqlite", retention="2D", max_resolved=50)
    n = 3000
    sizes = []
    for i in range(n):  # one episode an hour at one of 10 entities, resolved two hours later
        at = T0 + i * H
        a, created = hub.raise_alert("r", f"e{i % 10}", at=at, start=at)
        assert created
        hub.resolve(a.id, at=at + 2 * H)
        sizes.append(len(hub.book))
    # in memory: at most max_resolved resolved alerts plus what arrived since the last eviction pass
    assert max(sizes[1000:]) <= 50 + 256 + 10
    assert len(hub.book) <= 50 + 256 + 10
    assert sum(len(v) for v in hub.book._starts.values()) <= len(hub.book)
    assert len(hub.book.events) <= hub.book.keep_events and len(hub.backlog) <= hub.backlog.maxlen
    # all of them in the store, listed in order and looked up by id
    assert hub.count() == n
    listed = hub.alerts(rule="r", entity="e3")
    assert len(listed) == n // 10 and [a.opened_at for a in listed] == sorted(a.opened_at for a in listed)
    first = hub.alerts()[0]
    assert first.opened_at == T0 and hub.get(first.id).status == "resolved"
    assert first.id not in hub.book._alerts  # left memory
    with pytest.raises(AlertStateError):
        hub.acknowledge(first.id, by="duty officer")
    hub.close()
    # one row per alert: the store is written by alert, not rewritten as a whole
    con = sqlite3.connect(tmp_path / "alerts.sqlite")
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM alerts").fetchone() == (n, n)
    con.close()


def test_retention_by_age_keeps_live_alerts_and_reload_is_bounded(tmp_path) -> None:
    hub = AlertHub(tmp_path / "alerts.sqlite", retention="1D", max_resolved=10_000)
    live, _ = hub.raise_alert("r", "live-one", at=T0)
    old = []
    for i in range(300):
        a, _ = hub.raise_alert("r", f"e{i}", at=T0 + i * H)
        hub.resolve(a.id, at=T0 + i * H + H)
        old.append(a.id)
    hub.evict()
    newest = T0 + 300 * H
    kept = [a for a in hub.book if a.status == "resolved"]
    assert kept and all(a.resolved_at >= newest - pd.Timedelta("1D") for a in kept)
    assert hub.book.find("r", "live-one") is live  # live alerts never leave memory, however old
    hub.close()
    again = AlertHub(tmp_path / "alerts.sqlite", retention="1D", max_resolved=10_000)
    assert len(again.book) == len(kept) + 1 and again.count() == 301
    assert again.get(old[0]).status == "resolved"
    again.close()


def test_an_evicted_episode_is_not_raised_again(tmp_path) -> None:
    """Re-evaluating an old window (late readings, a replay) finds the episode in the store."""
    hub = AlertHub(tmp_path / "alerts.sqlite", retention="1D", max_resolved=5)
    first = _cand("dongsi", T0, T0 + 3 * H, ongoing=False)
    out = hub.sync([first], at=T0 + 4 * H, rules=["aqi_heavy"], entities=["dongsi"], refresh=False)
    assert len(out["opened"]) == 1
    for d in range(1, 20):  # later episodes at other stations push the first one out of memory
        hub.sync([_cand(f"s{d}", T0 + d * 24 * H, T0 + d * 24 * H + H, ongoing=False)], at=T0 + d * 24 * H + 2 * H,
                 rules=["aqi_heavy"], entities=[f"s{d}"], refresh=False)
    hub.evict()
    assert out["opened"][0] not in hub.book._alerts
    again = hub.sync([first], at=T0 + 30 * 24 * H, rules=["aqi_heavy"], entities=["dongsi"], refresh=False)
    assert again == {"opened": [], "updated": [], "resolved": []}
    assert len(hub.alerts(entity="dongsi")) == 1
    # the rule engine's follow-back sees it too
    assert [a.id for a in hub.alerts_of("aqi_heavy", "dongsi")] == out["opened"]
    hub.close()


def test_a_legacy_json_file_is_imported_once(tmp_path) -> None:
    old = AlertHub()  # in memory, written as the old hub did
    a, _ = old.raise_alert("r", "e", at=T0)
    (tmp_path / "alerts.json").write_text(old.book.to_json(), encoding="utf-8")
    hub = AlertHub(tmp_path / "alerts.json")
    assert hub.path == tmp_path / "alerts.sqlite" and [x.id for x in hub.alerts()] == [a.id]
    hub.acknowledge(a.id, by="me", at=T0 + H)
    hub.close()
    again = AlertHub(tmp_path / "alerts.sqlite")  # not imported a second time over the newer state
    assert again.get(a.id).status == "acknowledged"
    again.close()


def test_the_store_is_asked_about_evicted_runs_only_where_one_can_match(tmp_path) -> None:
    """The hub asks the store whether a run start was an evicted episode's only when an alert that left memory
    started as late (issue 13: a query per new run on the store thread); whether a run is known (in memory, or
    in the store) is what asking every time said, before and after the hub is reopened from its store."""
    import random

    rng = random.Random(5)
    path = tmp_path / "alerts.sqlite"
    hub = AlertHub(path, retention="2D", max_resolved=20)
    starts = [T0 + h * H for h in range(0, 24 * 40, 5)]
    for i, s in enumerate(starts):
        ent = f"s{i % 3}"
        hub.sync([_cand(ent, s, s + 2 * H, ongoing=False)], at=s + 3 * H, rules=["aqi_heavy"], entities=[ent],
                 refresh=False)
    hub.evict()
    assert hub.evicted > 0
    asked: list[pd.Timestamp] = []

    def known(h: AlertHub, ent: str, start: pd.Timestamp) -> tuple[bool, bool]:
        """(known as the hub sees it, known when the store is asked every time)."""
        mem = start in h.book._starts.get(("aqi_heavy", ent), ())
        assert h.store is not None
        return mem or h._archived("aqi_heavy", ent, start), mem or h.store.has_start("aqi_heavy", ent, start)

    for h in (hub, AlertHub(path, retention="2D", max_resolved=20)):
        has = h.store.has_start  # type: ignore[union-attr]
        h.store.has_start = lambda r, e, s, has=has: asked.append(s) or has(r, e, s)  # type: ignore[union-attr]
        for _ in range(400):
            ent = rng.choice(["s0", "s1", "s2", "s9"])
            start = rng.choice(starts) if rng.random() < 0.6 else T0 + rng.randrange(-48, 24 * 45) * H
            got, want = known(h, ent, start)
            assert got == want, (ent, start)
        n = len(asked)
        for d in range(3):  # runs later than any stored: nothing asked
            assert known(h, "s0", starts[-1] + (d + 1) * 24 * H) == (False, False)
        assert len(asked) == n + 3  # (the reference's own questions only)
        h.close()
