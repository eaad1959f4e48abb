"""AlertBook: lifecycle, deduplication, subscribers, serialisation, sync with rule candidates."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from citytwin.foundation.errors import InputError, NotFoundError
from citytwin.twin.alerts import Alert, AlertBook, AlertEvent, AlertStateError
from citytwin.twin.rules import ThresholdRule, evaluate

T0 = pd.Timestamp("2024-01-01 08:00")


def test_lifecycle_and_events() -> None:
    book = AlertBook()
    events: list[AlertEvent] = []
    book.subscribe(events.append)
    a, created = book.raise_alert("r", "s1", at=T0, peak=250.0, severity="critical")
    assert created and a.status == "open" and a.live
    book.acknowledge(a.id, by="ops", at=T0 + pd.Timedelta("1h"), note="on it")
    assert a.status == "acknowledged" and a.acknowledged_by == "ops"
    book.resolve(a.id, by="ops", at=T0 + pd.Timedelta("5h"))
    assert a.status == "resolved" and not a.live and book.find("r", "s1") is None
    assert [e.kind for e in events] == ["open", "ack", "resolve"]
    # events carry snapshots: later changes do not rewrite what a subscriber already got
    assert events[0].alert.status == "open"


def test_an_event_carries_the_alert_a_record_round_trip_gives_and_keeps_it() -> None:
    """The event's snapshot is the alert ``Alert.from_record(alert.to_record())`` gives (made without the round
    trip), and nothing done to the live alert later reaches it: not the fields, not nested ``data``."""
    book = AlertBook()
    events: list[AlertEvent] = []
    book.subscribe(events.append)
    a, _ = book.raise_alert("r", "s1", at=T0, peak=float("nan"), data={"threshold": 75.0, "bands": [1, 2]})
    b, _ = book.raise_alert("r", "s2", at=T0, peak=3.0, data={"threshold": 75.0, "steps": 3})
    want = [Alert.from_record(x.to_record()) for x in (a, b)]
    a.data["bands"].append(3)
    b.data["steps"] = 4
    book.raise_alert("r", "s1", at=T0 + pd.Timedelta("1h"), peak=300.0, data={"more": {"x": 1}})
    for ev, w in zip(events[:2], want, strict=True):
        assert ev.alert == w and ev.to_record()["alert"] == w.to_record()
    assert events[0].alert.peak is None and events[0].alert.data == {"threshold": 75.0, "bands": [1, 2]}
    assert events[1].alert.data == {"threshold": 75.0, "steps": 3}
    assert events[2].alert.count == 2 and events[2].to_record()["alert"] == a.to_record()
    a.data["more"]["x"] = 2  # the record made at the event is a copy too
    assert events[2].to_record()["alert"]["data"]["more"] == {"x": 1}


def test_illegal_transitions() -> None:
    book = AlertBook()
    a, _ = book.raise_alert("r", "s1", at=T0)
    with pytest.raises(InputError, match="before it opened"):
        book.acknowledge(a.id, by="ops", at=T0 - pd.Timedelta("1h"))
    book.resolve(a.id, at=T0)
    with pytest.raises(AlertStateError, match="only an open alert"):
        book.acknowledge(a.id, by="ops", at=T0)
    with pytest.raises(AlertStateError, match="already resolved"):
        book.resolve(a.id, at=T0)
    with pytest.raises(NotFoundError):
        book.get("nope")
    with pytest.raises(InputError, match="needs who"):
        b, _ = book.raise_alert("r", "s2", at=T0)
        book.acknowledge(b.id, by="", at=T0)


def test_dedup_while_live_then_reopen() -> None:
    book = AlertBook()
    a, _ = book.raise_alert("r", "s1", at=T0, peak=210.0)
    book.acknowledge(a.id, by="ops", at=T0)
    b, created = book.raise_alert("r", "s1", at=T0 + pd.Timedelta("1h"), peak=300.0)
    assert not created and b is a and a.count == 2 and a.peak == 300.0
    assert a.status == "acknowledged"  # a duplicate does not reopen an acknowledged alert
    c, created = book.raise_alert("r", "s2", at=T0)  # another entity: its own alert
    d, created2 = book.raise_alert("other", "s1", at=T0)  # another rule: its own alert
    assert created and created2 and len({a.id, c.id, d.id}) == 3
    book.resolve(a.id, at=T0 + pd.Timedelta("2h"))
    e, created = book.raise_alert("r", "s1", at=T0 + pd.Timedelta("3h"))
    assert created and e.id != a.id  # after resolution the same condition opens a new alert
    assert [x.id for x in book.alerts(status="resolved")] == [a.id]
    assert len(book.alerts(status=["open", "acknowledged"])) == 3
    with pytest.raises(InputError, match="unknown status"):
        book.alerts(status="closed")


def test_lower_is_worse_peak() -> None:
    book = AlertBook()
    a, _ = book.raise_alert("slow", "road", at=T0, peak=20.0, lower_is_worse=True)
    book.raise_alert("slow", "road", at=T0, peak=12.0)
    book.raise_alert("slow", "road", at=T0, peak=15.0)
    assert a.peak == 12.0


def test_failing_subscriber_does_not_break_others() -> None:
    book = AlertBook()
    got: list[str] = []

    def bad(ev: AlertEvent) -> None:
        raise RuntimeError("broker down")

    book.subscribe(bad)
    unsub = book.subscribe(lambda ev: got.append(ev.kind))
    a, _ = book.raise_alert("r", "s1", at=T0)
    assert got == ["open"] and a.status == "open"
    assert len(book.delivery_errors) == 1 and "broker down" in book.delivery_errors[0][1]
    unsub()
    book.resolve(a.id, at=T0)
    assert got == ["open"]
    assert [e.kind for e in book.events] == ["open", "resolve"]  # kept for redelivery


def test_round_trip_records() -> None:
    book = AlertBook()
    a, _ = book.raise_alert("r", "s1", at=T0, peak=250.0, property="aqi", message="AQI high",
                            start=T0 - pd.Timedelta("2h"), end=T0, data={"threshold": 200})
    book.acknowledge(a.id, by="ops", at=T0)
    book.raise_alert("r", "s2", at=T0)
    recs = json.loads(json.dumps(book.to_records()))  # JSON-safe
    again = AlertBook.from_records(recs)
    assert again.to_records() == book.to_records()
    assert again.find("r", "s1") is not None and again.find("r", "s1").status == "acknowledged"
    # dedup survives the round trip
    _, created = again.raise_alert("r", "s1", at=T0)
    assert not created
    with pytest.raises(InputError, match="unknown alert status"):
        AlertBook.from_records([{**recs[0], "status": "closed"}])
    with pytest.raises(InputError, match="two live alerts"):
        AlertBook.from_records([recs[0], {**recs[0], "id": "other"}])
    assert list(book.frame()["entity"]) == ["s1", "s2"]


def test_sync_with_rule_candidates() -> None:
    rule = ThresholdRule("aqi_heavy", "aqi", ">", 200, min_steps=2, step="1h")
    t = pd.date_range(T0, periods=10, freq="h")
    vals = [250, 260, 100, 100, 230, 240, 250, 120, 300, 310]
    obs = pd.DataFrame({"entity": "s1", "property": "aqi", "time": t, "value": vals})
    book = AlertBook()
    kinds: list[str] = []
    book.subscribe(lambda ev: kinds.append(ev.kind))
    res = book.sync(evaluate(rule, obs), at=t[-1])
    # three episodes: two finished (opened and resolved), the last ongoing (open)
    assert len(res["opened"]) == 3 and len(res["resolved"]) == 2
    live = book.find("aqi_heavy", "s1")
    assert live is not None and live.status == "open" and live.peak == 310.0
    first = book.alerts(status="resolved")[0]
    assert first.opened_at == t[1]  # detected when the second hour above 200 arrived
    assert first.resolved_at == t[1]  # and it ended there
    # idempotent: the same evaluation again changes nothing
    n_events = len(kinds)
    res = book.sync(evaluate(rule, obs), at=t[-1])
    assert res["opened"] == [] and res["resolved"] == [] and len(book) == 3
    assert len(kinds) == n_events + 1 and kinds[-1] == "update"  # the ongoing one is refreshed
    # the condition ends: the live alert is resolved
    more = pd.DataFrame({"entity": "s1", "property": "aqi", "time": [t[-1] + pd.Timedelta("1h")], "value": [90]})
    res = book.sync(evaluate(rule, pd.concat([obs, more])), at=more["time"].iloc[0])
    assert res["resolved"] == [live.id] and live.status == "resolved"
    assert book.alerts(status="open") == []


def _run_frame(values: list[float], start: str = "2024-01-01 00:00") -> pd.DataFrame:
    t = pd.date_range(start, periods=len(values), freq="h")
    return pd.DataFrame({"entity": "s1", "property": "aqi", "time": t, "value": values})


def test_sync_keeps_an_older_finished_run_apart_from_the_live_alert() -> None:
    """Late readings reveal an episode before the live one: it is recorded (opened and resolved) on its own;
    the live alert stays open, untouched."""
    rule = ThresholdRule("heavy", "aqi", ">", 200, min_steps=2, step="1h")
    book = AlertBook()
    live_c = evaluate(rule, _run_frame([100, 250, 260, 270], "2024-01-02 00:00"))
    book.sync(live_c, refresh=False)
    live = book.find("heavy", "s1")
    assert live is not None and live.status == "open"
    before = live.to_record()
    old = evaluate(rule, _run_frame([300, 310, 100]))  # 1 Jan 00:00-01:00, over
    assert [c.ongoing for c in old] == [False]
    out = book.sync(old, entities=[], refresh=False)
    assert len(out["opened"]) == 1 and out["resolved"] == out["opened"]
    assert book.find("heavy", "s1") is live and live.to_record() == before
    assert [(a.start, a.status) for a in book.alerts(rule="heavy", entity="s1")] == [  # oldest first
        (pd.Timestamp("2024-01-01 00:00"), "resolved"), (pd.Timestamp("2024-01-02 01:00"), "open")]
    # the same again: known, nothing happens
    assert book.sync(old, entities=[], refresh=False) == {"opened": [], "updated": [], "resolved": []}


def test_sync_moves_a_live_episode_start_back_when_earlier_readings_arrive() -> None:
    rule = ThresholdRule("heavy", "aqi", ">", 200, min_steps=2, step="1h")
    book = AlertBook()
    book.sync(evaluate(rule, _run_frame([250, 260], "2024-01-01 05:00")), refresh=False)
    a = book.find("heavy", "s1")
    assert a is not None and a.start == pd.Timestamp("2024-01-01 05:00")
    # 03:00 and 04:00 come late, above 200 too, with a higher peak
    full = evaluate(rule, _run_frame([400, 300, 250, 260], "2024-01-01 03:00"))
    out = book.sync(full, refresh=False)
    assert out["updated"] == [a.id] and book.find("heavy", "s1") is a
    assert (a.start, a.peak, a.peak_time, a.data["steps"]) == (pd.Timestamp("2024-01-01 03:00"), 400.0,
                                                               pd.Timestamp("2024-01-01 03:00"), 4)
    assert len(book) == 1


def test_to_json_equals_json_of_records_and_follows_changes() -> None:
    book = AlertBook()
    a, _ = book.raise_alert("r", "s1", at=T0, peak=250.0, message="PM2.5 高")
    book.raise_alert("r", "s2", at=T0, peak=float("nan"))
    assert book.to_json() == json.dumps(book.to_records(), ensure_ascii=False)
    book.raise_alert("r", "s1", at=T0 + pd.Timedelta("1h"), peak=300.0)
    book.acknowledge(a.id, by="ops", at=T0 + pd.Timedelta("2h"))
    assert book.to_json() == json.dumps(book.to_records(), ensure_ascii=False)
    assert json.loads(book.to_json())[0]["peak"] == 300.0
