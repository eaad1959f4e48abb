"""History compaction off the commit path (issue 13): background, size-tiered, crash-safe, reads stay exact.

Each test compares what the store answers with the readings written (a frame built here), never with a
figure taken from the store itself.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.timeseries import HistoryStore

H = 3_600_000_000
T0 = 1_420_070_400_000_000  # 2015-01-01T00:00:00Z
DAY = "2015-01-01"
STEPS = ("written", "manifest", "renamed", "unlinking", "unlinked")


def _readings(n_hours: int = 24, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for e in ("e:a", "e:b", "e:c"):
        for prop in ("pm25", "no2"):
            v = rng.gamma(2.0, 40.0, n_hours)
            v[rng.random(n_hours) < 0.1] = np.nan
            rows.append(pd.DataFrame({"entity": e, "type": "AirQualityObserved", "property": prop,
                                      "time_us": T0 + np.arange(n_hours) * H, "value": v, "unit": "µg/m³",
                                      "lon": 116.4, "lat": 39.9}))
    return pd.concat(rows, ignore_index=True)


def _append(h: HistoryStore, df: pd.DataFrame) -> int:
    return h.append({c: df[c].tolist() if c != "value" else df[c].to_numpy() for c in df.columns})


def _fill(h: HistoryStore, df: pd.DataFrame, parts: int) -> pd.DataFrame:
    """Append ``df`` in ``parts`` small files, then redeliver a third and correct two readings; returns the
    readings the store must answer (one per key, the last write)."""
    for chunk in np.array_split(np.arange(len(df)), parts):
        _append(h, df.iloc[chunk])
    _append(h, df.iloc[::3])  # redelivered
    fix = df.iloc[[4, 50]].copy()
    fix["value"] = [1.5, np.nan]  # corrections, one to missing
    _append(h, fix)
    exp = df.copy()
    exp.loc[fix.index, "value"] = fix["value"]
    return exp


def _check(h: HistoryStore, exp: pd.DataFrame) -> None:
    got = h.query(fast=False).sort_values(["entity", "property", "time"]).reset_index(drop=True)
    e = exp.sort_values(["entity", "property", "time_us"]).reset_index(drop=True)
    assert len(got) == len(e)
    assert got["entity"].tolist() == e["entity"].tolist() and got["property"].tolist() == e["property"].tolist()
    assert got["time"].dt.as_unit("us").astype("int64").tolist() == e["time_us"].tolist()
    np.testing.assert_array_equal(got["value"].isna().to_numpy(), e["value"].isna().to_numpy())
    np.testing.assert_allclose(got["value"].fillna(-1).to_numpy(), e["value"].fillna(-1).to_numpy())
    assert h.count() == {"rows": len(e), "values": int(e["value"].notna().sum()),
                         "missing": int(e["value"].isna().sum())}


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("day=*/.*") if p.name.startswith((".tmp-", ".compact-")))


class Crash(BaseException):
    """A simulated crash inside a merge (a BaseException, like the process going down: no clean-up runs)."""


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_each_step_loses_and_doubles_nothing(tmp_path, step):
    root = tmp_path / "h"
    h = HistoryStore(root, compact_threshold=1000, background=False)
    exp = _fill(h, _readings(), parts=10)
    files_before = sorted(p.name for p in root.glob("day=*/part-*.parquet"))
    physical_before = h.physical_rows()
    assert physical_before > len(exp)  # redeliveries are stored physically until a compaction

    def crash(name: str) -> None:
        if name == step:
            raise Crash(name)

    h._fault = crash
    with pytest.raises(Crash):
        h.compact(DAY)
    _check(h, exp)  # even before any recovery, reads are exact (one row per key)
    # the process "dies" here; a new one opens the store
    h2 = HistoryStore(root, compact_threshold=1000, background=False)
    assert h2.recover() >= 1  # a hidden output or a manifest was left behind
    assert _leftovers(root) == []
    _check(h2, exp)
    after = sorted(p.name for p in root.glob("day=*/part-*.parquet"))
    if STEPS.index(step) < STEPS.index("renamed"):
        assert after == files_before and h2.physical_rows() == physical_before  # rolled back, inputs intact
    else:
        assert len(after) == 1 and "-L1-" in after[0] and h2.physical_rows() == len(exp)  # rolled forward
    # the store goes on: a later write wins over the compacted rows, compaction still works
    late = exp.iloc[[7]].copy()
    late["value"] = 42.0
    _append(h2, late)
    exp.loc[late.index, "value"] = 42.0
    assert h2.compact(DAY) == 1
    _check(h2, exp)
    assert h2.physical_rows() == len(exp)
    h.close()
    h2.close()


def test_manifest_cut_short_is_dropped(tmp_path):
    root = tmp_path / "h"
    h = HistoryStore(root, compact_threshold=1000, background=False)
    exp = _fill(h, _readings(), parts=4)
    (root / f"day={DAY}" / ".compact-0123.json").write_text('{"output": "part-1-L1-')  # torn write
    h.close()
    h2 = HistoryStore(root, background=False)
    assert h2.recover() == 1 and _leftovers(root) == []
    _check(h2, exp)
    h2.close()


def test_size_tiered_merges_stay_bounded(tmp_path):
    root = tmp_path / "h"
    h = HistoryStore(root, compact_threshold=4, compact_fanin=3, background=False)
    sizes: list[int] = []
    merge = h._merge

    def spy(d, files, level, con=None):  # type: ignore[no-untyped-def]
        sizes.append(len(files))
        return merge(d, files, level, con)

    h._merge = spy  # type: ignore[method-assign]
    df = _readings(n_hours=24)
    per = [df.iloc[i::48] for i in range(48)]  # 48 small appends of one day
    for p in per:
        _append(h, p)
    # 48 level-0 files -> 12 level-1 merges of 4; every 3 level-1 -> one level-2 (4), 3 level-2 -> one level-3 (1)
    assert sorted(sizes) == [3] * 5 + [4] * 12 and h.merges == 17
    levels = sorted(int(p.name.split("-L")[1].split("-")[0]) for p in root.glob("day=*/part-*-L*.parquet"))
    assert levels == [2, 3]  # 48 = 36 (one level-3 file) + 12 (one level-2 file)
    _check(h, df)
    assert h.physical_rows() == len(df)
    h.close()


def test_append_never_waits_for_a_compaction(tmp_path):
    """A merge held at its first step (as a slow merge of a large day would be) blocks no append."""
    root = tmp_path / "h"
    h = HistoryStore(root, compact_threshold=4)
    entered, release = threading.Event(), threading.Event()

    def hold(name: str) -> None:
        if name == "written" and not release.is_set():
            entered.set()
            assert release.wait(60)

    h._fault = hold
    df = _readings(n_hours=24)
    per = [df.iloc[i::24] for i in range(24)]
    for p in per[:4]:
        _append(h, p)
    assert entered.wait(30)  # the compactor is inside a merge now, holding the compaction lock
    for p in per[4:]:
        _append(h, p)  # returns although the merge is not finished
    _check(h, df)  # and reads see every acknowledged reading meanwhile
    release.set()
    assert h.wait_compactions(60) and h.compaction_error is None
    _check(h, df)
    assert h.physical_rows() == len(df) and len(list(root.glob("day=*/part-*.parquet"))) < 4 + 3
    h.close()


def test_compactor_failure_keeps_the_store_usable(tmp_path):
    h = HistoryStore(tmp_path / "h", compact_threshold=3)
    def disk_full(name: str) -> None:
        if name == "manifest":
            raise OSError("disk full")

    h._fault = disk_full
    df = _readings(n_hours=6)
    for i in range(6):
        _append(h, df.iloc[i::6])
    assert h.wait_compactions(60)
    assert isinstance(h.compaction_error, OSError)
    assert _leftovers(tmp_path / "h") == []  # a failed merge removes its hidden output and manifest
    _check(h, df)
    h._fault = None
    _append(h, df.iloc[:1])  # the next append past the threshold tries again
    assert h.wait_compactions(60)
    _check(h, df)
    assert h.merges >= 1 and _leftovers(tmp_path / "h") == []
    h.close()


def test_read_listed_before_a_merge_lists_again(tmp_path):
    """A DuckDB read whose file list was taken before a merge deleted those files reads the merged file."""
    h = HistoryStore(tmp_path / "h", compact_threshold=1000, background=False)
    exp = _fill(h, _readings(), parts=6)
    sql, params = h._sql("count(*) AS rows", entities=None, properties=None, types=None, start=DAY,
                         end="2015-01-02", bbox=None, near=None)
    assert h.compact(DAY) == 1  # every listed file is gone now
    assert h._run(sql, params).column("rows")[0].as_py() == len(exp)
    h.close()


def test_concurrent_readers_during_compactions(tmp_path):
    """Readers (DuckDB and pyarrow paths, aggregates, latest) run while a writer redelivers readings and the
    background compactor merges: every read equals the readings written, exactly."""
    root = tmp_path / "h"
    h = HistoryStore(root, compact_threshold=3, compact_fanin=2)
    df = _readings(n_hours=48)  # two days
    exp = _fill(h, df, parts=2)
    assert h.wait_compactions(60)
    e = exp.sort_values(["entity", "property", "time_us"]).reset_index(drop=True)
    n_a = int((e.entity == "e:a").sum())
    day1 = e[(e.entity == "e:b") & (e.time_us < T0 + 24 * H)]
    agg_exp = e.groupby("entity")["value"].count().to_dict()
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def reader(kind: int) -> None:
        try:
            while not stop.is_set():
                if kind == 0:
                    _check(h, exp)
                elif kind == 1:
                    q = h.query(entities="e:a", start=DAY, end="2015-01-03")  # pyarrow fast path
                    assert len(q) == n_a
                    q1 = h.query(entities="e:b", start=DAY, end="2015-01-02", order="entity")
                    np.testing.assert_allclose(q1["value"].fillna(-1).to_numpy(), day1["value"].fillna(-1).to_numpy())
                else:
                    a = h.aggregate("1 day", funcs=("count",))
                    assert a.groupby("entity")["count"].sum().to_dict() == agg_exp
                    assert len(h.latest()) == 6
                reads[0] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    before = h.merges
    redeliver = [exp.iloc[i::5] for i in range(5)]  # same keys, same values: the answer must not change
    i = 0
    while h.merges - before < 30 and not errors and i < 2000:
        _append(h, redeliver[i % 5])
        i += 1
        if i % 3 == 0:  # let the compactor keep up (merges, not the machine's speed, bound the loop)
            assert h.wait_compactions(120)
    assert h.wait_compactions(120)
    stop.set()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    assert h.merges - before >= 30 and reads[0] >= 3 and h.compaction_error is None
    _check(h, exp)
    h.compact()
    assert h.physical_rows() == len(exp)
    h.close()


def _child_appends(root: str, q) -> None:  # type: ignore[no-untyped-def]
    h = _FORKED[0]
    h._fault = None  # the parent's hold is not the child's
    df = _child_readings()
    for i in range(4):  # crosses the threshold of the next day: the child's own compactor must run
        _append(h, df.iloc[i::4])
    q.put("appended")  # the parent then lets its merge finish (and free the store's file lock)
    q.put((h.wait_compactions(60), h.count()["rows"]))


_FORKED: list[HistoryStore] = []


def _child_readings() -> pd.DataFrame:
    df = _readings(n_hours=24, seed=1)
    df["time_us"] += 24 * H  # the next day
    return df


def test_fork_during_a_merge(tmp_path):
    """A process forked while the compactor holds its locks gets a store whose locks are free (its own compactor
    runs once the parent's merge has released the store's file lock, which serialises merges across processes)."""
    import multiprocessing as mp

    h = HistoryStore(tmp_path / "h", compact_threshold=4)
    entered, release = threading.Event(), threading.Event()

    def hold(name: str) -> None:
        if name == "written" and not release.is_set():
            entered.set()
            assert release.wait(60)

    h._fault = hold
    df = _readings(n_hours=24)
    for i in range(4):
        _append(h, df.iloc[i::4])
    assert entered.wait(30)  # the parent's compactor holds the compaction lock now
    _FORKED[:] = [h]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_appends, args=(str(tmp_path / "h"), q))
    p.start()
    assert q.get(timeout=120) == "appended"
    release.set()
    done, rows = q.get(timeout=120)
    p.join(60)
    assert done and rows == 2 * len(df) and p.exitcode == 0
    assert h.wait_compactions(60)
    _check(h, pd.concat([df, _child_readings()], ignore_index=True))
    h.close()
