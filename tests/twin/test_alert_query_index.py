"""The follow-back's query of the alert store reads through indexes, with the rows of its definition.

``AlertStore.query(ending_since=...)`` is what the rule engine asks, per touched entity and rule, on every commit
(``AlertHub.alerts_of``). Its bound used to be one ``OR`` of four conditions, which SQLite tested on every record
of the rule and entity: a cost that grew with the alerts stored (in a replay of the soak's passes, 7.8 ms of rules
per commit in the first pass, 12.4 ms in the twelfth; docs/twin.md, "Session 15: the soak's step"). It is now a
union of index look-ups (``alerts_live``, ``alerts_end``, ``alerts_key``). Compared here with the definition
written out in Python over random records, and the plan checked for a full scan.
"""

from __future__ import annotations

import random
import sqlite3

import pandas as pd
import pytest

from citytwin.foundation.timeseries.alerts import AlertStore, record_us

T0 = pd.Timestamp("2015-12-01T00:00:00Z")
H = pd.Timedelta("1h")
STATUSES = ["resolved"] * 6 + ["open", "acknowledged", "snoozed"]


def _records(rng: random.Random, n: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(n):
        start = T0 + rng.randrange(0, 2000) * H
        end = None if rng.random() < 0.1 else start + rng.randrange(0, 60) * H
        status = rng.choice(STATUSES)
        out.append({"id": f"a{i:05d}", "rule": f"r{rng.randrange(3)}", "entity": f"e{rng.randrange(5)}",
                    "status": status, "opened_at": (start + rng.randrange(0, 3) * H).isoformat(),
                    "start": None if rng.random() < 0.05 else start.isoformat(),
                    "end": None if end is None else end.isoformat(),
                    "resolved_at": None if status != "resolved" or end is None else (end + H).isoformat()})
    return out


def _expected(recs: list[dict[str, object]], since: pd.Timestamp, rule: str | None, entity: str | None,
              status: list[str] | None) -> list[str]:
    """The bound as documented: not resolved, or no run end, or a run that ends or starts at or after ``since``."""
    s = since.value // 1000
    keep = []
    for seq, r in enumerate(recs):
        end, start = record_us(r["end"]), record_us(r["start"])
        if not (r["status"] != "resolved" or end is None or end >= s or (start is not None and start >= s)):
            continue
        if (rule is not None and r["rule"] != rule) or (entity is not None and r["entity"] != entity):
            continue
        if status is not None and r["status"] not in status:
            continue
        keep.append((record_us(r["opened_at"]), seq, str(r["id"])))
    return [aid for _, _, aid in sorted(keep)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_bounded_query_returns_the_rows_of_its_definition(tmp_path, seed: int) -> None:
    rng = random.Random(seed)
    recs = _records(rng, 1500)
    s = AlertStore(tmp_path / "alerts.sqlite")
    s.put(recs)
    for _ in range(40):
        since = T0 + rng.randrange(-10, 2100) * H
        rule = rng.choice([None, "r0", "r1", "r2"])
        entity = rng.choice([None, "e0", "e3", "e4"])
        status = rng.choice([None, ["resolved"], ["open", "snoozed"]])
        got = [str(r["id"]) for r in s.query(rule=rule, entity=entity, ending_since=since, status=status)]
        assert got == _expected(recs, since, rule, entity, status), (since, rule, entity, status)
    # with exclude and live_or_resolved_since, as before
    since = T0 + 1000 * H
    want = [a for a in _expected(recs, since, "r1", "e3", None) if a != "a00007"]
    got = [str(r["id"]) for r in s.query(rule="r1", entity="e3", ending_since=since, exclude=["a00007"])]
    assert got == want
    both = s.query(rule="r1", entity="e3", ending_since=since, live_or_resolved_since=since)
    assert all(r["resolved_at"] is None or record_us(r["resolved_at"]) >= since.value // 1000 for r in both)
    assert {r["id"] for r in both} <= set(_expected(recs, since, "r1", "e3", None))
    s.close()


def test_the_follow_back_query_does_not_read_every_record(tmp_path) -> None:
    s = AlertStore(tmp_path / "alerts.sqlite")
    s.put(_records(random.Random(4), 300))
    plans: list[str] = []
    real = s._con()

    class Explaining:
        def execute(self, sql: str, params: list[object]) -> sqlite3.Cursor:
            plans.extend(str(row[3]) for row in real.execute("EXPLAIN QUERY PLAN " + sql, params))
            return real.execute(sql, params)

    s._con = lambda: Explaining()  # type: ignore[assignment,method-assign,return-value]
    s.query(rule="r1", entity="e2", ending_since=T0 + 500 * H)
    assert plans and not [p for p in plans if p.startswith("SCAN alerts")], plans
    looked_up = " ".join(plans)
    for index in ("alerts_live", "alerts_end", "alerts_key"):
        assert index in looked_up, plans
    s.close()
