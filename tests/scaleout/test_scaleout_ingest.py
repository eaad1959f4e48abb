"""Ingest of many files on Dask (issue 19): one file per task, the same version as one process.

Real data: the first 2,000 hours of Beijing stations (../shared/data/air_beijing_multisite, wide
sensor files, 11 values a row); CO is given in µg/m³ by the file and left without ``--unit`` here, so
its values above 150 are quarantined (5,494 of them in three files): the quarantine is compared too.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from citytwin.foundation.errors import CitytwinError, InputError
from citytwin.foundation.ingest import ingest
from citytwin.foundation.scaleout import parse_dask


def _heads(shared_data: Path, tmp_path: Path, n_files: int, rows: int = 2000) -> list[Path]:
    """The first ``rows`` data rows of ``n_files`` station files (written to tmp_path, not the repository)."""
    out = []
    for f in sorted((shared_data / "air_beijing_multisite").glob("*.csv"))[:n_files]:
        with f.open(encoding="utf-8") as fh:
            lines = [next(fh) for _ in range(rows + 1)]
        p = tmp_path / f.name
        p.write_text("".join(lines), encoding="utf-8")
        out.append(p)
    return out


def _same_version(ws, a: str, b: str) -> None:
    """Datasets ``a`` and ``b`` hold the same records, quarantine and catalog facts."""
    pd.testing.assert_frame_equal(ws.read(a), ws.read(b))
    pd.testing.assert_frame_equal(ws.quarantine(a), ws.quarantine(b))
    va, vb = ws.info(a).current, ws.info(b).current
    for fact in ("rows_read", "rows_kept", "rows_quarantined", "columns", "extent", "time_min", "time_max",
                 "source_sha256"):  # the time range and the hashes come from the tasks on Dask
        assert getattr(va, fact) == getattr(vb, fact), fact
    assert va.params["reasons"] == vb.params["reasons"]


def test_local_spec_starts_and_closes_its_cluster(workspace, shared_data: Path, tmp_path: Path) -> None:
    files = _heads(shared_data, tmp_path, 3)
    one = ingest(workspace, files, dataset="air_one", schema="sensor_observation")
    seen: list[tuple[int, int]] = []
    two = ingest(workspace, files, dataset="air_dask", schema="sensor_observation", dask="local:2",
                 task_progress=lambda done, total: seen.append((done, total)))
    assert (two.rows_read, two.rows_kept, two.rows_quarantined) == (one.rows_read, one.rows_kept,
                                                                     one.rows_quarantined)
    # the reason names the likely unit mistake (Beijing's CO is in µg/m³, the range is in mg/m³)
    assert one.rows_quarantined == 5494 and one.reasons == {"co: outside [0, 150] (in µg/m³? pass --unit CO=µg/m³)": 5494}
    assert two.reasons == one.reasons
    _same_version(workspace, "air_one", "air_dask")
    assert workspace.info("air_dask").current.params["pipeline"].startswith("dask local:2 (3 tasks")
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    assert not any((workspace.root / "tmp").iterdir())  # the staging folder is gone


def test_keys_repeated_across_files_are_quarantined_as_one_process_does(workspace, dask_address: str,
                                                                         shared_data: Path, tmp_path: Path) -> None:
    # the same station twice: each task sees one clean file; the duplicates show only when merged
    f = _heads(shared_data, tmp_path, 1, rows=300)[0]
    twice = tmp_path / "copy" / f.name
    twice.parent.mkdir()
    twice.write_bytes(f.read_bytes())
    one = ingest(workspace, [f, twice], dataset="dup_one", schema="sensor_observation")
    two = ingest(workspace, [f, twice], dataset="dup_dask", schema="sensor_observation", dask=dask_address)
    assert one.rows_quarantined == two.rows_quarantined > 300 * 11 // 2
    assert any("repeat across files" in n for n in two.notes)
    _same_version(workspace, "dup_one", "dup_dask")


@pytest.mark.parametrize(("first", "second", "repeats"), [((0, 300), (300, 600), False), ((0, 300), (250, 600), True)])
def test_one_station_split_in_time_is_checked_across_files_as_one_process(
        workspace, dask_address: str, shared_data: Path, tmp_path: Path, first: tuple[int, int],
        second: tuple[int, int], repeats: bool) -> None:
    """The tasks' key spans: one station in two files of consecutive hours shares no (entity, property, time)
    (the time ranges do not meet: no second read of the records); 50 hours in both do, and the staged
    pipeline quarantines them as one process does."""
    f = _heads(shared_data, tmp_path, 1, rows=600)[0]
    head, *rows = f.read_text(encoding="utf-8").splitlines(keepends=True)
    files = []
    for n, (lo, hi) in enumerate((first, second)):
        p = tmp_path / f"part{n}" / f.name
        p.parent.mkdir()
        p.write_text(head + "".join(rows[lo:hi]), encoding="utf-8")
        files.append(p)
    name = "rep" if repeats else "norep"
    one = ingest(workspace, files, dataset=f"{name}_one", schema="sensor_observation")
    two = ingest(workspace, files, dataset=f"{name}_dask", schema="sensor_observation", dask=dask_address)
    assert any("repeat across files" in n for n in two.notes) is repeats
    assert (one.rows_quarantined >= 50 * 11) is repeats
    _same_version(workspace, f"{name}_one", f"{name}_dask")


def test_key_spans_decide_only_when_values_cannot_meet() -> None:
    from citytwin.foundation.ingest.parallel import KeySpan, _spans_disjoint

    def span(entities: tuple[object, ...] | None, t: tuple[object, object]) -> KeySpan:
        return KeySpan(("entity", "time"), (entities, None), (("a", "z"), t))

    assert _spans_disjoint([span(("s1",), (0, 9)), span(("s2",), (0, 9)), None])  # one station a file
    assert _spans_disjoint([span(("s1", "s2"), (0, 9)), span(("s2",), (10, 19))])  # consecutive times
    assert not _spans_disjoint([span(("s1", "s2"), (0, 10)), span(("s2",), (10, 19))])  # hour 10 in both
    assert not _spans_disjoint([span((float("nan"),), (0, 9)), span((float("nan"),), (0, 9))])  # NaN: undecided
    assert not _spans_disjoint([span(None, (0, 9)), span(None, ("0", "9"))])  # types that do not compare
    assert _spans_disjoint([span(("s1",), (0, 9))])


def test_worker_killed_mid_job_is_retried_and_the_result_identical(workspace, dask_address: str,
                                                                   shared_data: Path, tmp_path: Path) -> None:
    from distributed import Client

    files = _heads(shared_data, tmp_path, 5, rows=1500)
    one = ingest(workspace, files, dataset="kill_one", schema="sensor_observation")
    watcher = Client(dask_address, set_as_default=False)
    killed: list[int] = []
    try:
        pids = watcher.run(os.getpid)

        def kill_one(done: int, total: int) -> None:
            # after the first file is done, kill a worker that is busy (else any): its running task and the
            # parts it had written are redone elsewhere
            if done == 1 and not killed:
                busy = [a for a, keys in watcher.processing().items() if keys] or list(pids)
                killed.append(pids[busy[0]])
                os.kill(pids[busy[0]], signal.SIGKILL)

        two = ingest(workspace, files, dataset="kill_dask", schema="sensor_observation", dask=dask_address,
                     task_progress=kill_one)
    finally:
        watcher.close()
    assert killed, "no worker was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    assert two.rows_kept == one.rows_kept
    _same_version(workspace, "kill_one", "kill_dask")


def test_a_failing_task_leaves_nothing(workspace, dask_address: str, shared_data: Path, tmp_path: Path) -> None:
    files = _heads(shared_data, tmp_path, 2, rows=200)
    bad = tmp_path / "broken.xlsx"
    bad.write_text("not a workbook", encoding="utf-8")
    before = [d.name for d in workspace.datasets()]
    with pytest.raises(InputError, match=r"broken\.xlsx"):
        ingest(workspace, [files[0], bad, files[1]], dataset="half", schema="sensor_observation", dask=dask_address)
    assert [d.name for d in workspace.datasets()] == before
    assert not workspace.catalog.exists("half")
    assert not (workspace.root / "data" / "half").exists()
    assert not any((workspace.root / "tmp").iterdir())


@pytest.mark.parametrize("bad", ["local:0", "local:x", "local:", "2", "tcp://host", "http://h:1", "local:100000"])
def test_bad_dask_values_are_refused(bad: str) -> None:
    with pytest.raises(InputError, match="--dask"):
        parse_dask(bad)


def test_unreachable_scheduler_is_said(workspace, shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    from citytwin.foundation import scaleout

    monkeypatch.setattr(scaleout, "CONNECT_TIMEOUT", "1s")
    files = _heads(shared_data, tmp_path, 1, rows=10)
    with pytest.raises(CitytwinError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
        ingest(workspace, files, dataset="nowhere", schema="sensor_observation", dask="tcp://127.0.0.1:9")
    assert not workspace.catalog.exists("nowhere")


def test_unreachable_scheduler_leaves_no_thread(monkeypatch) -> None:
    """A client that cannot connect stops its event-loop thread (distributed left it running: "IO loop")."""
    import threading

    from citytwin.foundation import scaleout

    monkeypatch.setattr(scaleout, "CONNECT_TIMEOUT", "1s")
    before = set(threading.enumerate())
    with pytest.raises(CitytwinError, match="cannot reach the Dask scheduler"), scaleout.cluster("tcp://127.0.0.1:9"):
        pass
    assert [t.name for t in set(threading.enumerate()) - before if t.is_alive()] == []


def test_personal_data_screened_by_the_tasks_as_one_process(workspace, dask_address: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Each task screens its file's text values as it writes them; the commit then scans only the columns a
    task flagged (their union: a phone number in one file's ``contact``), and finds what one process finds."""
    from citytwin.foundation import workspace as ws_mod

    files = []
    for f in range(3):
        lines = ["poi_id,name,category,lon,lat,contact,note"]
        for i in range(400):
            contact = "客服 13812345678" if (f, i) == (1, 250) else f"窗口 {i % 9}"
            lines.append(f"P{f}{i:05d},POI {i},shop,{116.0 + i / 1000:.6f},{39.5 + f / 100:.6f},{contact},room {i}")
        files.append(tmp_path / f"poi{f}.csv")
        files[-1].write_text("\n".join(lines) + "\n", encoding="utf-8")
    asked: list[object] = []
    real = ws_mod.detect_personal_columns

    def spy(glob_: str, skip: set[str] | None = None, candidates: object = None) -> dict[str, str]:
        asked.append(candidates)
        return real(glob_, skip, candidates)  # type: ignore[arg-type]

    monkeypatch.setattr(ws_mod, "detect_personal_columns", spy)
    ingest(workspace, files, dataset="poi_one", schema="poi")
    ingest(workspace, files, dataset="poi_dask", schema="poi", dask=dask_address)
    assert asked == [["contact"], ["contact"]]
    _same_version(workspace, "poi_one", "poi_dask")
    cols = {c["name"]: c for c in workspace.catalog.get("poi_dask").current.columns}
    assert cols["contact"]["pii"] == "text" and cols["contact"]["pii_detected"] is True
