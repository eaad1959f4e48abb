"""The history store's commit and read paths intern no file names (issue 13, "ingest RSS flat").

Python 3.11's pathlib interns every component of a path it parses (``sys.intern``). The history names each file
once (``part-{batch}-{id}``, ``.tmp-{id}``), so one ``Path`` per file written or listed used up the slots of the
interpreter's table of interned strings; when it was rebuilt, after ~7,250 commits of the 30-minute soak, it grew
from 2^17 to 2^18 slots: the one-time 3.7 MiB step of C heap at minute 15 (docs/twin.md, "The minute-15 step").
The store now joins and lists these paths as strings; compaction (a few calls per merge) still uses ``Path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from citytwin.foundation.timeseries.history import DAY_US, HistoryStore


def _cols(day: int, hours: range) -> dict[str, list[object]]:
    return dict(entity=["e1"] * len(hours), type=["T"] * len(hours), property=["pm25"] * len(hours),
                time_us=[day * DAY_US + h * 3_600_000_000 for h in hours], value=[float(h) for h in hours],
                unit=["µg/m³"] * len(hours), lon=[116.4] * len(hours), lat=[39.9] * len(hours))


def test_appends_and_reads_intern_no_file_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    interned: list[str] = []
    real = sys.intern

    def spy(s: str) -> str:
        interned.append(s)
        return real(s)

    monkeypatch.setattr(sys, "intern", spy)
    # the spy sees what pathlib interns (where this Python's pathlib interns at all): the control
    _ = Path(tmp_path) / "part-1-control.parquet"
    pathlib_interns = any(s == "part-1-control.parquet" for s in interned)
    assert pathlib_interns or sys.version_info >= (3, 12)

    h = HistoryStore(tmp_path / "h", compact_threshold=1000, background=False)
    interned.clear()
    for day in range(3):  # new day folders, files of one day and of two days per commit
        for h0 in range(0, 24, 6):
            h.append(_cols(day, range(h0, h0 + 6)))
        h.append({k: v + w for (k, v), w in zip(_cols(day, range(23, 24)).items(),
                                                 _cols(day + 1, range(0, 1)).values(), strict=True)})
    got = h.query(entities="e1", start=0, end=2 * DAY_US)  # a narrow read: the day folders listed
    n = h.count(start=0, end=4 * DAY_US)  # and one through DuckDB
    names = [s for s in interned if "part-" in s or ".tmp-" in s or s.startswith("day=")]
    assert names == []
    # what was written is read back whole
    assert len(got) == 48 and got["value"].tolist() == [float(x % 24) for x in range(48)]
    assert n == {"rows": 73, "values": 73, "missing": 0}
    assert len(list((tmp_path / "h").glob("day=*/part-*.parquet"))) == 3 * 5 + 3
    h.close()
