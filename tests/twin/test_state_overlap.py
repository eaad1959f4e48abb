"""The live state's write overlaps the history's file writes, and is committed only after them (session 18).

``Ingestor._write_group`` writes the latest values of a commit of ``OVERLAP_ROWS`` readings or more in a transaction
it opens while the history's writer threads write and fsync the part files (``HistoryStore.append(meanwhile=...)``),
and commits it once the history is durable and the dead letters are in: the state never holds a value the history
lacks, and a failed write leaves it as it was (rolled back), as when the state was written after the other two (what
a smaller commit still does). Each test runs both ways (the threshold patched to 1 and to never)."""

from __future__ import annotations

import threading

import pytest

from citytwin.foundation.timeseries import StoreError
from citytwin.foundation.timeseries import history as H
from citytwin.foundation.timeseries import ingest as I
from citytwin.foundation.timeseries.state import StateStore
from citytwin.twin import feeds as F
from citytwin.twin.entities import ParseResult
from citytwin.workflows.runtime import open_runtime

DONGSI = "urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi"


def _result(rt, hour: int, value: float, *, bad: bool = False) -> ParseResult:
    doc = [{"id": DONGSI, "type": "AirQualityObserved", "observedAt": f"2015-12-0{1 + hour // 24}T{hour % 24:02d}:00:00Z",
            "pm25": value, "pm10": value + 1}]
    if bad:
        doc.append({"id": DONGSI, "type": "AirQualityObserved", "observedAt": "2015-12-01T00:00:00Z", "pm25": "x"})
    return rt.parser.parse_doc(doc, ParseResult())


@pytest.fixture(params=[True, False], ids=["overlap", "after"])
def overlap(request, monkeypatch) -> bool:
    monkeypatch.setattr(I, "OVERLAP_ROWS", 1 if request.param else 10**9)
    return bool(request.param)


@pytest.fixture
def rt(tmp_path, overlap):
    r = open_runtime(tmp_path / "twin")
    r.register([F.beijing_entity(s) for s in F.BEIJING_STATIONS])
    yield r
    r.close()


def _pm25(path) -> float | None:
    """The stored latest pm25, read through a connection of its own (what another process sees)."""
    other = StateStore(path)
    try:
        got = other.get(DONGSI)
        return None if got is None or "pm25" not in got["attrs"] else got["attrs"]["pm25"]["value"]
    finally:
        other.close()


def test_the_state_is_committed_after_the_history_files_are_durable(rt, monkeypatch, overlap) -> None:
    path = rt.stores.state.path
    seen: list[tuple[str, float | None]] = []
    real = H.write_day

    def write_day(*job):  # the history's file writes: the state must not show the new value before they are done
        out = real(*job)
        seen.append((threading.current_thread().name, _pm25(path)))
        return out

    monkeypatch.setattr(H, "write_day", write_day)
    rt.ingestor.commit([_result(rt, 1, 10.0)], source="http")
    rt.ingestor.commit([_result(rt, 47, 20.0), _result(rt, 2, 30.0)], source="http")  # two days: two files
    assert [v for _, v in seen] == [None, 10.0, 10.0]
    # with the overlap every file is written by the writer threads (the calling thread writes the state meanwhile)
    writers = sorted(name.startswith("citytwin-history") for name, _ in seen)  # (the two days' files: in any order)
    assert writers == ([True] * 3 if overlap else [False, False, True])
    assert _pm25(path) == 20.0 and rt.stores.history.count()["rows"] == 6


@pytest.mark.parametrize("where", ["history", "deadletters"])
def test_a_failed_write_leaves_the_state_as_it_was_and_the_next_commit_works(rt, monkeypatch, where) -> None:
    path = rt.stores.state.path
    rt.ingestor.commit([_result(rt, 1, 10.0)], source="http")
    real_day, real_add = H.write_day, rt.stores.deadletters.add

    def disk_full(*a, **kw):
        raise OSError(28, "No space left on device")

    if where == "history":
        monkeypatch.setattr(H, "write_day", disk_full)
    else:
        monkeypatch.setattr(rt.stores.deadletters, "add", disk_full)
    with pytest.raises(StoreError, match="No space left"):
        rt.ingestor.commit([_result(rt, 3, 99.0, bad=True)], source="http")
    assert _pm25(path) == 10.0 and rt.stores.state.get(DONGSI)["attrs"]["pm25"]["value"] == 10.0
    # the write lock was released: another connection writes at once, and the next commit stores its values
    other = StateStore(path)
    other.upsert_latest([(DONGSI, "no2", 5.0, "µg/m³", 1)])
    other.close()
    monkeypatch.setattr(H, "write_day", real_day)
    monkeypatch.setattr(rt.stores.deadletters, "add", real_add)
    rt.ingestor.commit([_result(rt, 4, 40.0, bad=True)], source="http")
    assert _pm25(path) == 40.0 and rt.stores.state.get(DONGSI)["attrs"]["no2"]["value"] == 5.0
    assert rt.stores.history.query(entities=[DONGSI], properties=["pm25"])["value"].tolist() == (
        [10.0, 40.0] if where == "history" else [10.0, 99.0, 40.0])  # (the dead letters failed after the history)


def test_a_failed_state_write_is_a_store_error_after_a_durable_history(rt, monkeypatch) -> None:
    def broken(rows):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(rt.stores.state, "begin_latest", broken)
    with pytest.raises(StoreError, match="I/O error"):
        rt.ingestor.commit([_result(rt, 1, 10.0)], source="http")
    assert rt.stores.history.count()["rows"] == 2  # written before, as when the state came after it
    monkeypatch.setattr(rt.stores.state, "begin_latest", type(rt.stores.state).begin_latest.__get__(rt.stores.state))
    rt.ingestor.commit([_result(rt, 2, 20.0)], source="http")
    assert _pm25(rt.stores.state.path) == 20.0
