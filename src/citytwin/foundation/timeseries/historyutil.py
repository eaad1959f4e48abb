"""Helpers of :mod:`citytwin.foundation.timeseries.history`: times, file names and levels, directory
fsync and locks, the read guard of merges, and the SQL fragments of queries (split from that module so that
it stays under the size limit; it re-exports the public names)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from citytwin.foundation.errors import InputError

_LEVEL = re.compile(r"^part-\d+-L(\d+)-[0-9a-f]+\.parquet$")


TimeLike = str | datetime | pd.Timestamp | int | None


def to_us(t: TimeLike) -> int | None:
    """A time (ISO string with or without zone = UTC, datetime, Timestamp, or µs int) -> µs since epoch.

    Examples
    --------
    >>> to_us("1970-01-02")
    86400000000
    """
    if t is None:
        return None
    if isinstance(t, int | np.integer):
        return int(t)
    try:
        ts = pd.Timestamp(t)
        if pd.isna(ts):
            raise ValueError("NaT")
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        return int(ts.tz_convert("UTC").as_unit("ns").value) // 1000
    except (ValueError, TypeError, OverflowError) as exc:  # OutOfBoundsDatetime is a ValueError
        raise InputError(f"not a time the history can hold: {str(t)[:100]!r} ({exc})"[:300],
                         hint="use ISO 8601 between 1678 and 2261, e.g. 2015-12-01T00:00:00Z") from None

class _ReadGuard:
    """Shared by reads while they list and read files, held alone by a merge's swap (which goes first).

    A thread may nest reads. A merge waits for the reads running; reads arriving while it waits wait
    for it (its hold is a rename or a few deletes), so that a steady stream of reads cannot hold it off.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0
        self._local = threading.local()

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        depth: int = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cv:
                while self._writer or self._waiting:
                    self._cv.wait()
                self._readers += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._cv:
                    self._readers -= 1
                    if not self._readers:
                        self._cv.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cv:
            self._waiting += 1
            while self._writer or self._readers:
                self._cv.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cv:
                self._writer = False
                self._cv.notify_all()

class _Empty(Exception):
    """No files match: the answer is empty."""


def _utc(df: pd.DataFrame) -> pd.DataFrame:
    if "time" in df.columns and len(df.columns):
        df["time"] = pd.to_datetime(df["time"], utc=True).dt.tz_convert("UTC")
    return df


def _filters(f: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {"entities", "properties", "types", "start", "end", "bbox", "near"}
    bad = set(f) - allowed
    if bad:
        raise InputError(f"unknown filter(s) {sorted(bad)}", hint=f"use {sorted(allowed)}")
    return {k: f.get(k) for k in allowed}


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({"entity": pd.Series(dtype="str"), "type": pd.Series(dtype="str"),
                         "property": pd.Series(dtype="str"), "time": pd.Series(dtype="datetime64[us, UTC]"),
                         "value": pd.Series(dtype="float64"), "unit": pd.Series(dtype="str"),
                         "lon": pd.Series(dtype="float64"), "lat": pd.Series(dtype="float64")})


def _interval_sql(interval: str | float) -> str:
    if isinstance(interval, int | float):
        if interval <= 0:
            raise InputError(f"interval must be positive, got {interval}", field="interval")
        return f"to_microseconds({int(interval * 1e6)})"
    text = str(interval).strip()
    import re
    m = re.fullmatch(r"(\d+)\s*(second|minute|hour|day|week|month)s?", text)
    if not m:
        iso = iso_duration_s(text)
        if iso is None:
            raise InputError(f"interval {interval!r} not understood", field="interval",
                             hint="use e.g. '15 minutes', '1 hour', '1 day' or ISO 8601 PT1H")
        return f"to_microseconds({int(iso * 1e6)})"
    return f"INTERVAL '{int(m.group(1))} {m.group(2)}'"


def iso_duration_s(text: str) -> float | None:
    """Seconds of an ISO 8601 duration such as PT1H, PT15M, P1D (no months/years)."""
    import re
    m = re.fullmatch(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", text)
    if not m or not any(m.groups()):
        return None
    w, d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return (((w * 7 + d) * 24 + h) * 60 + mi) * 60 + s


def _haversine_sql(lon: float, lat: float) -> str:
    lo, la = float(lon), float(lat)
    return (f"(2 * 6371008.8 * asin(sqrt(pow(sin(radians(lat - {la!r}) / 2), 2) + cos(radians({la!r})) * "
            f"cos(radians(lat)) * pow(sin(radians(lon - {lo!r}) / 2), 2))))")


def pc_max(arr: pa.ChunkedArray) -> int:
    import pyarrow.compute as pc
    return int(pc.max(arr).as_py())

def _day_name(day_number: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day_number)).isoformat()


def _part_files(d: str | os.PathLike[str]) -> list[str]:
    """The part files of a day folder, sorted, as path strings (no folder: none).

    Strings, not :class:`~pathlib.Path` objects, on every path that runs per commit or per read: Python 3.11's
    pathlib interns each component of a path it parses (``sys.intern``), and the files of a history are named
    once each (``part-{batch}-{id}``, ``.tmp-{id}``). An interned string leaves the interpreter's table of
    interned strings when it dies, but its slot is reused only when that table is rebuilt, so one Path per new
    file name used the table up; at the rebuild the table was sized for the ~59,000 names the imported
    libraries keep alive, which made it grow from 2^17 to 2^18 slots (1.8 -> 3.7 MiB) after ~7,250 commits:
    the one-time step of C heap at minute 15 of the 30-minute soak (docs/twin.md, "The minute-15 step").
    """
    try:
        return sorted(e.path for e in os.scandir(d) if e.name.startswith("part-") and e.name.endswith(".parquet"))
    except FileNotFoundError:
        return []


def _parts(d: Path) -> list[Path]:
    """:func:`_part_files` as paths (what compaction works with: a few calls per merge)."""
    return [Path(p) for p in _part_files(d)]


def _level(name: str) -> int:
    """Compaction level of a part file from its name (``part-{batch}-L{level}-{id}``; other names are 0).

    Examples
    --------
    >>> _level("part-17-L2-0a1b2c3d.parquet"), _level("part-17-0a1b2c3d.parquet")
    (2, 0)
    """
    m = _LEVEL.match(name)
    return int(m.group(1)) if m else 0


def _level0(d: str | os.PathLike[str]) -> int:
    return sum(1 for p in _part_files(d) if _level(os.path.basename(p)) == 0)


def _fsync_dir(d: str | os.PathLike[str]) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = _fsync_dir  #: public name of the directory fsync (for forecasts; issue 11)


def write_part(d: str, table: pa.Table, batch: int) -> str:
    """Write ``table`` durably as a new part file of day folder ``d``: a hidden temporary file, fsynced, renamed
    into place (the caller fsyncs the folder). The Parquet file is encoded in memory and written with one call
    (no GIL taken per page, as writing to a Python file object took it). Paths are strings (see
    :func:`_part_files`: no name interned)."""
    u = uuid.uuid4().hex  # (one random id names both: the temporary file's in full, the part's by 8 digits)
    tmp = os.path.join(d, f".tmp-{u}.parquet")
    final = os.path.join(d, f"part-{batch}-{u[:8]}.parquet")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy")
    data = memoryview(sink.getvalue())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # (as open(tmp, "wb"), without its buffer)
    try:
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    return final


def write_day(d: str, table: pa.Table, batch: int, count: bool) -> tuple[bool, int | None]:
    """One day's share of an append (a job of the history's writer threads): make the day folder if it is new,
    write the part file (:func:`write_part`) and fsync the folder. Returns whether the folder was made (its
    parent is then fsynced by the caller) and, if ``count``, the folder's level-0 files now."""
    try:
        os.mkdir(d)
        new = True
    except FileExistsError:
        new = False
    except FileNotFoundError:  # (the store's folder itself is gone: made again)
        os.makedirs(d, exist_ok=True)
        new = True
    write_part(d, table, batch)
    _fsync_dir(d)
    return new, _level0(d) if count else None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def utc(us: int) -> datetime:
    """µs since epoch -> aware UTC datetime."""
    return datetime.fromtimestamp(us / 1e6, tz=UTC)


@dataclass(frozen=True)
class Near:
    """Geo filter: within ``max_m`` metres (great circle) of ``(lon, lat)``."""

    lon: float
    lat: float
    max_m: float


BBox = tuple[float, float, float, float]  # min lon, min lat, max lon, max lat


def _keep_recent(counts: dict[str, int], key: str, value: int, cap: int) -> int:
    """Set ``counts[key] = value`` as the most recent entry and drop the oldest beyond ``cap``; return ``value``.

    >>> d = {"a": 1, "b": 2}
    >>> _keep_recent(d, "a", 5, 2), list(d)
    (5, ['b', 'a'])
    >>> _keep_recent(d, "c", 1, 2), d
    (1, {'a': 5, 'c': 1})
    """
    counts.pop(key, None)  # re-inserted last: the dict is in order of writes
    counts[key] = value
    while len(counts) > cap:
        del counts[next(iter(counts))]
    return value
