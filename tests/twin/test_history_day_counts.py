"""The history store's per-day file counts stay bounded over a long ingest (issue 13, "ingest RSS flat"): a
live feed writes a new day every day, and a count kept for every day ever written grew with the run."""

from __future__ import annotations

from citytwin.foundation.timeseries import history as hmod
from citytwin.foundation.timeseries.history import DAY_US, HistoryStore


def _cols(day: int, n: int = 2) -> dict[str, list[object]]:
    return dict(entity=["e1"] * n, type=["T"] * n, property=["pm25"] * n,
                time_us=[day * DAY_US + i * 3_600_000_000 for i in range(n)], value=[1.0] * n,
                unit=["µg/m³"] * n, lon=[116.4] * n, lat=[39.9] * n)


def test_counts_are_bounded_and_a_forgotten_day_is_counted_again_from_its_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(hmod, "COUNTED_DAYS", 4)
    h = HistoryStore(tmp_path, compact_threshold=3, background=False)
    for day in range(20):
        h.append(_cols(day))
        assert len(h._files_per_day) <= 4
    assert list(h._files_per_day) == [hmod._day_name(d) for d in range(16, 20)]  # the most recently written
    # day 0 left the counts with one file; two more writes reach the threshold of 3 and compact it
    h.append(_cols(0))
    assert h._files_per_day[hmod._day_name(0)] == 2
    h.append(_cols(0))
    assert len(list((tmp_path / f"day={hmod._day_name(0)}").glob("part-*.parquet"))) == 1  # merged into one
    assert h.count() == {"rows": 40, "values": 40, "missing": 0}
    h.close()
