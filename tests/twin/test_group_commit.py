"""Group commit of the ingest pipeline: concurrent commits share one durable write, each caller gets its own
report only once its data is durable, and a store failure reaches every caller of the group (issue 13)."""

from __future__ import annotations

import threading
import time

import pytest

from citytwin.foundation.timeseries import StoreError
from citytwin.twin import feeds as F
from citytwin.twin.entities import ParseResult
from citytwin.workflows.runtime import open_runtime

DONGSI = "urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi"


def _result(rt, i: int, *, bad: bool = False) -> ParseResult:
    doc = {"id": DONGSI, "type": "AirQualityObserved", "observedAt": f"2015-12-01T{i % 24:02d}:{i // 24:02d}:00Z",
           "pm25": "not a number" if bad else float(i)}
    return rt.parser.parse_doc(doc, ParseResult())


@pytest.fixture
def rt(tmp_path):
    r = open_runtime(tmp_path / "twin")
    r.register([F.beijing_entity(s) for s in F.BEIJING_STATIONS])
    yield r
    r.close()


def _hold_first_write(rt, n_waiting: int):
    """Make the first history write wait until ``n_waiting`` more commits are queued behind it."""
    real = rt.stores.history.append
    calls: list[int] = []
    durable: list[int] = []

    def append(cols, **kw):
        if not calls:
            deadline = time.monotonic() + 30
            while len(rt.ingestor._queue) < n_waiting and time.monotonic() < deadline:
                time.sleep(0.005)
        calls.append(len(cols["entity"]))
        n = real(cols, **kw)
        durable.append(len(cols["entity"]))
        return n

    rt.stores.history.append = append
    return calls, durable


def test_concurrent_commits_share_one_durable_write(rt) -> None:
    n = 12
    calls, durable = _hold_first_write(rt, n - 1)
    reports: dict[int, object] = {}
    seen_durable: dict[int, int] = {}

    def post(i: int) -> None:
        rep = rt.ingestor.commit([_result(rt, i, bad=(i == 5))], source="http", topics=["/twin/v1/observations"])
        seen_durable[i] = sum(durable)  # rows durable when this caller was answered
        reports[i] = rep

    first = threading.Thread(target=post, args=(0,))
    first.start()
    while not calls and not rt.ingestor._writing:
        time.sleep(0.001)
    rest = [threading.Thread(target=post, args=(i,)) for i in range(1, n)]
    for t in rest:
        t.start()
    for t in [first, *rest]:
        t.join(60)
    assert len(reports) == n
    # two durable writes for twelve calls: the first alone, the eleven queued behind it together
    assert calls == [1, n - 2] and rt.ingestor.groups == 2 and rt.ingestor.grouped_calls == n
    # each caller's own report: its reading, or its reject
    for i, rep in reports.items():
        assert (rep.accepted, rep.rejected) == ((0, 1) if i == 5 else (1, 0)), i
    # nobody was answered before its data was durable
    assert seen_durable[0] >= 1 and all(seen_durable[i] == n - 1 for i in range(1, n))
    assert rt.stores.history.count()["rows"] == n - 1
    assert rt.stores.deadletters.counts() and rt.ingestor.totals.accepted == n - 1


def test_commit_hooks_run_once_per_group_before_callers_return(rt) -> None:
    n = 6
    calls, _ = _hold_first_write(rt, n - 1)
    seen: list[list[str]] = []
    rt.ingestor.on_commit.append(lambda rep, lo, hi: seen.append(list(rep.entities)) or time.sleep(0.05))
    done_at: list[int] = []

    def post(i: int) -> None:
        rt.ingestor.commit([_result(rt, i)], source="http")
        done_at.append(len(seen))

    ts = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    ts[0].start()
    while not calls and not rt.ingestor._writing:
        time.sleep(0.001)
    for t in ts[1:]:
        t.start()
    for t in ts:
        t.join(60)
    assert len(seen) == 2 and all(e == [DONGSI] for e in seen)
    assert sorted(done_at)[1:] == [2] * (n - 1)  # the grouped callers returned after their group's hook


def test_a_store_failure_reaches_every_caller_of_the_group(rt) -> None:
    n = 5
    calls, _ = _hold_first_write(rt, n - 1)
    real = rt.stores.history.append

    def failing(cols, **kw):
        if calls and len(cols["entity"]) > 1:
            raise OSError(28, "No space left on device")
        return real(cols, **kw)

    rt.stores.history.append = failing
    outcomes: dict[int, str] = {}

    def post(i: int) -> None:
        try:
            rt.ingestor.commit([_result(rt, i)], source="http")
            outcomes[i] = "ok"
        except StoreError as exc:
            outcomes[i] = str(exc)

    calls.append(0)  # the wrapper below the failing one no longer holds: build the group by hand
    with rt.ingestor._cv:
        rt.ingestor._writing = True  # as if a write were running: the callers queue up
    ts = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + 30
    while len(rt.ingestor._queue) < n and time.monotonic() < deadline:
        time.sleep(0.005)
    with rt.ingestor._cv:
        rt.ingestor._writing = False
        rt.ingestor._cv.notify_all()
    for t in ts:
        t.join(60)
    assert len(outcomes) == n and all("No space left on device" in v for v in outcomes.values()), outcomes
    # and the next commit, alone, works again
    rt.stores.history.append = real
    assert rt.ingestor.commit([_result(rt, 99)], source="http").accepted == 1

