"""History store of the live twin: every observation, as Parquet partitioned by day, queried with DuckDB.

Layout::

    ROOT/day=YYYY-MM-DD/part-{batch}-{uuid}.parquet     (UTC day of the observation time)

Columns: ``entity, type, property, time (timestamp µs UTC), value (double, null = missing),
unit, lon, lat, received_at, _batch (int64), _row (int32)``.

Durability: :meth:`HistoryStore.append` writes each day's rows to a hidden temporary file,
fsyncs it, renames it into place and fsyncs the folder before returning, so a caller that
acknowledges a message after ``append`` returns never acknowledges data that a crash could
lose. A process killed mid-write leaves only a hidden ``.tmp-*`` file, which readers ignore
and :meth:`HistoryStore.recover` removes.

Idempotency (exact): the key is ``(entity, property, time)``. A redelivered message is
appended again (writing is cheap and blind); every read keeps, per key, only the row of the
latest write (``_batch`` then ``_row``), so the same observation is never counted twice,
and a later correction replaces an earlier value. :meth:`HistoryStore.compact` rewrites a
day's files into one file holding one row per key, after which the duplicates are gone
physically as well.

Compaction runs off the commit path (issue 13), size-tiered, in a background thread, with a crash-safe
swap (a manifest; :meth:`HistoryStore.recover`): docs/twin.md, "Compaction off the commit path", says how.

Missing values are stored as null (never 0): ``count`` counts non-missing values, ``avg``
ignores nulls, and the ``missing`` column of aggregates counts them.

Examples
--------
>>> import tempfile, numpy as np
>>> h = HistoryStore(tempfile.mkdtemp())
>>> cols = dict(entity=["e1", "e1"], type=["T", "T"], property=["pm25", "pm25"],
...             time_us=[0, 3_600_000_000], value=[10.0, None], unit=["µg/m³"] * 2, lon=[116.4] * 2, lat=[39.9] * 2)
>>> h.append(cols)
2
>>> h.append(cols)   # redelivered: stored once
2
>>> h.count()
{'rows': 2, 'values': 1, 'missing': 1}
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from citytwin.foundation import duck
from citytwin.foundation.errors import InputError
from citytwin.foundation.timeseries.historyutil import (  # re-exported: to_us, TimeLike, iso_duration_s, utc, fsync_dir
    BBox,
    Near,
    TimeLike,
    _day_name,
    _Empty,
    _empty_frame,
    _file_lock,
    _filters,
    _fsync_dir,
    _haversine_sql,
    _interval_sql,
    _keep_recent,
    _level,
    _level0,
    _part_files,
    _parts,
    _ReadGuard,
    _utc,
    fsync_dir,
    iso_duration_s,
    pc_max,
    to_us,
    utc,
    write_day,
)

DAY_US = 86_400_000_000
SCHEMA = pa.schema([
    ("entity", pa.string()), ("type", pa.string()), ("property", pa.string()),
    ("time", pa.timestamp("us", tz="UTC")), ("value", pa.float64()), ("unit", pa.string()),
    ("lon", pa.float64()), ("lat", pa.float64()), ("received_at", pa.timestamp("us", tz="UTC")),
    ("_batch", pa.int64()), ("_row", pa.int32()),
])
_TS = pa.timestamp("us", tz="UTC")
OUT_COLUMNS = ["entity", "type", "property", "time", "value", "unit", "lon", "lat"]
AGGREGATES = ("avg", "min", "max", "count", "sum", "missing")
# Nice bucket sizes for downsampling, seconds.
_STEPS = [1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400, 604800]
_EXPLICIT_DAYS = 92  # ranges up to this many days list their day folders; longer ones glob all
_FAST_DAYS = 7  # narrow entity reads up to this span use the pyarrow fast path
_log = logging.getLogger(__name__)
COMPACTOR_NICE = 10  #: how much lower the background compactor's priority is (Linux nice, per thread)
_READ_TRIES = 10  # a read that lost a file to a merge lists again (merges run every few hundred ms at most)
#: Days whose level-0 file count an append keeps in memory (the most recently written ones; another day's count
#: is read from its folder when it is next written): bounded, where a count per day ever written grew with the run
COUNTED_DAYS = 1024

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reads(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """A read of the store (a method): lists and reads its files under the store's read guard."""
    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        store = cast(HistoryStore, args[0])
        with store._guard.read():
            return fn(*args, **kwargs)
    return wrapper


class HistoryStore:
    """Append-only, day-partitioned Parquet history with exact (entity, property, time) dedupe on read.

    Parameters
    ----------
    root
        Folder of the store (created if missing).
    compact_threshold
        When a day folder holds this many small (level-0) files after an append, they are merged
        into one level-1 file.
    compact_fanin
        This many files of one level (1 and up) are merged into one file of the next level.
    background
        Compact in a background thread (the default): an append never waits for a compaction.
        ``False`` compacts inside the append that crossed the threshold.
    """

    def __init__(self, root: str | Path, *, compact_threshold: int = 64, compact_fanin: int = 8,
                 background: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._root_s = str(self.root)  # what the commit path joins file names to (strings: see append)
        if compact_threshold < 2 or compact_fanin < 2:
            raise InputError("compact_threshold and compact_fanin must be at least 2", field="compact_threshold")
        self.compact_threshold = compact_threshold
        self.compact_fanin = compact_fanin
        self.background = background
        self._lock = threading.RLock()  # appends (batch numbers, file writes)
        self._guard = _ReadGuard()  # readers share it while they list and read; a merge's swap holds it alone
        self._superseded: set[str] = set()  # inputs of a merge whose output is in place, until they are deleted
        self._compact_lock = threading.Lock()  # one merge at a time in this process
        self._count_lock = threading.Lock()
        self._last_batch = 0
        self._files_per_day: dict[str, int] = {}  # level-0 files per day
        self._con = duck.connect(spatial=False)
        self._con.execute("SET TimeZone='UTC'")
        self._cv = threading.Condition()
        self._queued: dict[str, None] = {}  # days waiting for the compactor, in order
        self._compactor: threading.Thread | None = None
        self._busy = False
        self._closing = False
        #: merges done, their total and largest seconds, and the last error of the compactor thread
        self.merges = 0
        self.merge_seconds = 0.0
        self.merge_max_seconds = 0.0
        self.compaction_error: BaseException | None = None
        #: test hook: called with the name of each step of a merge (a test raises in it to simulate a crash)
        self._fault: Callable[[str], None] | None = None
        _STORES.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the compactor thread and any lock it held stayed in the parent."""
        self._lock = threading.RLock()
        self._guard = _ReadGuard()
        self._compact_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._cv = threading.Condition()
        self._compactor = None
        self._busy = False
        self._superseded = set()  # the parent finishes its merge; a listing here may hold both sides (deduplicated)

    # -- writing -----------------------------------------------------------------------
    def _next_batch(self) -> int:
        b = max(time.time_ns(), self._last_batch + 1)
        self._last_batch = b
        return b

    def append(self, columns: Mapping[str, Sequence[Any] | np.ndarray] | pd.DataFrame, *,
               received_us: int | None = None, meanwhile: Callable[[], None] | None = None) -> int:
        """Durably append observations; returns the number of rows written.

        ``columns`` holds equal-length ``entity, type, property, time_us (int µs UTC) or time (datetime64), value
        (None / NaN = missing), unit, lon, lat``. ``meanwhile`` (if rows): called in the calling thread while the
        writer threads write and fsync the files (:func:`_write_days`)."""
        table = self._to_table(columns, received_us)
        n = int(table.num_rows)
        if n == 0:
            return 0
        t = table.column("time").cast(pa.int64()).to_numpy()
        days = t // DAY_US
        with self._lock:
            batch = self._next_batch()
            table = table.set_column(table.schema.get_field_index("_batch"), "_batch",
                                     pa.array(np.full(n, batch, dtype="int64")))
            if n > 1 and bool((days[1:] < days[:-1]).any()):
                order = np.argsort(days, kind="stable")
                sdays = days[order]
                table = table.take(pa.array(order))  # one gather; then each day is a zero-copy slice
            else:  # already in day order (a live feed): no copy at all
                sdays = days
            cuts = np.flatnonzero(np.diff(sdays)) + 1
            starts = np.concatenate([[0], cuts])
            ends = np.concatenate([cuts, [n]])
            days_of = [_day_name(int(sdays[s])) for s in starts]
            with self._count_lock:  # days whose level-0 files are not counted: counted once their file is in
                uncounted = [self._files_per_day.get(day) is None for day in days_of]
            # paths as strings, not pathlib objects: each commit's file names are new, and Python 3.11's pathlib
            # interns every name it parses (historyutil._part_files says why that matters)
            jobs = [(os.path.join(self._root_s, f"day={day}"), table.slice(int(s), int(e - s)), batch, c)
                    for day, s, e, c in zip(days_of, starts, ends, uncounted, strict=True)]
            # Files of different days are written and fsynced in parallel (the waits overlap), each in its day
            # folder (made by the job where it is new)
            done = _write_days(jobs) if meanwhile is None else _write_days(jobs, meanwhile)
            if any(new for new, _ in done):
                _fsync_dir(self.root)
            due: list[str] = []
            with self._count_lock:
                for day, (d, _, _, _), (_, n0) in zip(days_of, jobs, done, strict=True):
                    old = self._files_per_day.get(day)
                    k = old + 1 if old is not None else n0 if n0 is not None else _level0(d)
                    if _keep_recent(self._files_per_day, day, k, COUNTED_DAYS) >= self.compact_threshold:
                        due.append(day)
            for day in due:
                if self.background:
                    self._schedule(day)
                else:
                    self._compact_tiered(day)
        return n

    def _to_table(self, columns: Mapping[str, Any] | pd.DataFrame, received_us: int | None) -> pa.Table:
        """The columns as a table of :data:`SCHEMA` (``_batch`` zero: set by :meth:`append`).

        Built with the fewest conversions (a commit of a few readings pays them all, whatever its size): int64
        times made timestamps in the conversion itself, a string column given as codes (``_codes``, decoded
        once by the ingest) as its distinct strings taken by the codes. The same table as the former conversion
        (timestamps cast from int64 arrays, codes as a dictionary array cast to strings):
        tests/twin/test_history_table.py compares them."""
        c = columns
        if "time_us" in c:
            t = pa.array(np.asarray(c["time_us"], dtype="int64"), type=_TS)
        elif "time" in c:
            tt = pd.to_datetime(pd.Series(c["time"]), utc=True)
            t = pa.array(tt.dt.as_unit("us").astype("int64").to_numpy(), type=_TS)
        else:
            raise InputError("observations need a time_us or time column", field="time")
        n = len(t)
        value = c["value"]
        vals = pa.array(np.asarray(value, dtype="float64"), from_pandas=True) if not isinstance(value, list) \
            else pa.array(value, type=pa.float64(), from_pandas=True)
        rec = received_us if received_us is not None else time.time_ns() // 1000

        codes = c.get("_codes") if not isinstance(c, pd.DataFrame) else None  # ingest.CODES: decoded in C++

        def col(name: str, typ: pa.DataType) -> pa.Array:
            if name not in c:
                return pa.nulls(n, typ)
            if codes and name in codes:  # (the distinct strings taken by the codes: a plain array, no dictionary)
                return pa.array(codes[name][1], typ).take(pa.array(codes[name][0]))
            v = c[name]
            return pa.array(list(v) if isinstance(v, pd.Series) else v, type=typ, from_pandas=True)

        for req in ("entity", "property"):
            if req not in c:
                raise InputError(f"observations need a {req!r} column", field=req)
        return pa.Table.from_arrays([
            col("entity", pa.string()), col("type", pa.string()), col("property", pa.string()), t, vals,
            col("unit", pa.string()), col("lon", pa.float64()), col("lat", pa.float64()),
            pa.array(np.full(n, rec, dtype="int64"), type=_TS),
            pa.array(np.zeros(n, dtype="int64")), pa.array(np.arange(n, dtype="int32")),
        ], schema=SCHEMA)

    def recover(self) -> int:
        """Remove temporary files left by a killed writer and finish or drop interrupted merges.

        A merge whose manifest survives is finished when its output file is in place (its inputs, already contained
        in the output, are deleted) and dropped otherwise (its inputs were never touched). Returns the number of
        temporary files and manifests handled."""
        n = 0
        with self._compact_lock, _file_lock(self.root / ".compact.lock"):
            for p in self.root.glob("day=*/.tmp-*"):
                p.unlink(missing_ok=True)
                n += 1
            for m in sorted(self.root.glob("day=*/.compact-*.json")):
                d = m.parent
                try:
                    info = json.loads(m.read_text())
                    out, inputs = str(info["output"]), [str(x) for x in info["inputs"]]
                except (OSError, ValueError, KeyError, TypeError):
                    out, inputs = "", []  # a manifest cut short: its merge never reached the rename
                if out and (d / out).exists():
                    for name in inputs:
                        (d / name).unlink(missing_ok=True)
                    _fsync_dir(d)
                m.unlink(missing_ok=True)
                _fsync_dir(d)
                n += 1
        with self._count_lock:
            self._files_per_day.clear()
        return n

    # -- compaction ---------------------------------------------------------------------
    def compact(self, day: str | None = None, *, min_files: int = 2) -> int:
        """Rewrite each day folder (or one ``day``, ``YYYY-MM-DD``) into one deduplicated file.

        Returns the number of day folders compacted. Only the files present when a day's compaction starts are
        replaced, so appends running at the same time are kept. Runs in the caller (the background compactor waits
        meanwhile); crash-safe like every merge."""
        days = [day] if day else [p.name[4:] for p in sorted(self.root.glob("day=*"))]
        done = 0
        with self._compact_lock, _file_lock(self.root / ".compact.lock"):
            for dname in days:
                d = self.root / f"day={dname}"
                files = _parts(d)
                if len(files) >= min_files:
                    self._merge(d, files, max(_level(f.name) for f in files) + 1)
                    done += 1
                self._recount(dname)
        return done

    def _compact_tiered(self, day: str, con: duckdb.DuckDBPyConnection | None = None) -> int:
        """Size-tiered compaction of one day: level-0 files at ``compact_threshold``, other levels at
        ``compact_fanin`` files are merged into one file of the next level, until no level is full."""
        d = self.root / f"day={day}"
        merges = 0
        with self._compact_lock, _file_lock(self.root / ".compact.lock"):
            while True:
                by_level: dict[int, list[Path]] = {}
                for f in _parts(d):
                    by_level.setdefault(_level(f.name), []).append(f)
                full = [lv for lv, fs in sorted(by_level.items())
                        if len(fs) >= (self.compact_threshold if lv == 0 else self.compact_fanin)]
                if not full:
                    break
                self._merge(d, by_level[full[0]], full[0] + 1, con)
                merges += 1
            self._recount(day)
        return merges

    def _recount(self, day: str) -> None:
        with self._count_lock:
            _keep_recent(self._files_per_day, day, _level0(self.root / f"day={day}"), COUNTED_DAYS)

    def _step(self, name: str) -> None:
        if self._fault is not None:
            self._fault(name)

    def _merge(self, d: Path, files: list[Path], level: int, con: duckdb.DuckDBPyConnection | None = None) -> Path:
        """Merge ``files`` of folder ``d`` into one deduplicated file of ``level`` (crash-safe, see the module
        docstring) with DuckDB connection ``con`` (the store's own by default); the caller holds the
        compaction locks."""
        t0 = time.perf_counter()
        cur = (con or self._con).cursor()
        try:
            table = cur.sql(
                "SELECT * FROM read_parquet($files, hive_partitioning = false) QUALIFY row_number() OVER "
                "(PARTITION BY entity, property, time ORDER BY _batch DESC, _row DESC) = 1 "
                "ORDER BY entity, property, time", params={"files": [str(f) for f in files]}).to_arrow_table()
        finally:
            cur.close()
        # each row keeps its own _batch and _row: later appends still win, and the order is global
        table = table.cast(SCHEMA)
        batch = int(pc_max(table.column("_batch")))
        ident = uuid.uuid4().hex
        tmp = d / f".tmp-{ident}.parquet"
        final = d / f"part-{batch}-L{level}-{ident[:8]}.parquet"
        manifest = d / f".compact-{ident}.json"
        mtmp = d / f".tmp-{ident}.json"
        try:
            with open(tmp, "wb") as f:
                pq.write_table(table, f, compression="zstd", row_group_size=1_000_000)
                f.flush()
                os.fsync(f.fileno())
            self._step("written")
            with open(mtmp, "w") as mf:
                json.dump({"output": final.name, "inputs": [p.name for p in files]}, mf)
                mf.flush()
                os.fsync(mf.fileno())
            os.replace(mtmp, manifest)
            _fsync_dir(d)
            self._step("manifest")
        except Exception:  # e.g. disk full: nothing was swapped, the inputs stay; drop the hidden files
            for p in (manifest, mtmp, tmp):
                p.unlink(missing_ok=True)
            raise
        names = [str(p) for p in files]
        with self._guard.write():  # no read of this process lists or reads files meanwhile
            os.replace(tmp, final)
            self._superseded.update(names)  # readers list the output, not its inputs
        self._step("renamed")
        _fsync_dir(d)  # the output is durable in its place before any input goes
        with self._guard.write():  # no read is reading an input while it is deleted
            try:
                for i, p in enumerate(files):
                    p.unlink(missing_ok=True)
                    if i == 0:
                        self._step("unlinking")
            finally:
                self._superseded.difference_update(n for n in names if not os.path.exists(n))
        _fsync_dir(d)
        self._step("unlinked")
        manifest.unlink(missing_ok=True)
        dt = time.perf_counter() - t0
        self.merges += 1
        self.merge_seconds += dt
        self.merge_max_seconds = max(self.merge_max_seconds, dt)
        return final

    def _schedule(self, day: str) -> None:
        with self._cv:
            if self._closing:
                return
            self._queued[day] = None
            if self._compactor is None or not self._compactor.is_alive():
                self._compactor = threading.Thread(target=self._compactor_run, name="citytwin-history-compact",
                                                   daemon=True)
                self._compactor.start()
            self._cv.notify_all()

    def _compactor_run(self) -> None:
        # Merges yield the CPU to commits and reads: this thread runs at a lower priority (Linux nice is per
        # thread, and inherited by threads it starts) with its own single-threaded DuckDB connection, so a
        # merge uses at most one core, at the lower priority, instead of DuckDB's pool of every core.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COMPACTOR_NICE)
        con = duck.connect(spatial=False, threads=1)
        try:
            while True:
                with self._cv:
                    while not self._queued and not self._closing:
                        self._cv.wait()
                    if self._closing:
                        self._cv.notify_all()
                        return
                    day = next(iter(self._queued))
                    del self._queued[day]
                    self._busy = True
                try:
                    self._compact_tiered(day, con)
                except Exception as exc:  # the store stays usable: small files wait for the next try
                    self.compaction_error = exc
                    _log.warning("history compaction of day %s failed: %s", day, exc)
                finally:
                    with self._cv:
                        self._busy = False
                        self._cv.notify_all()
        finally:
            con.close()

    def wait_compactions(self, timeout: float | None = None) -> bool:
        """Wait until the background compactor has nothing queued or running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._queued or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
        return True

    # -- reading -----------------------------------------------------------------------
    def days(self) -> list[str]:
        """Day partitions present (``YYYY-MM-DD``), sorted."""
        return sorted(p.name[4:] for p in self.root.glob("day=*") if _parts(p))

    def _files(self, start_us: int | None, end_us: int | None) -> list[str] | str | None:
        if start_us is not None and end_us is not None and (end_us - start_us) / DAY_US <= _EXPLICIT_DAYS:
            out: list[str] = []
            for dn in range(start_us // DAY_US, (end_us - 1) // DAY_US + 1):
                out.extend(_part_files(os.path.join(self._root_s, f"day={_day_name(dn)}")))
            return self._current(out) or None
        if not any(self.root.glob("day=*/part-*.parquet")):
            return None
        if self._superseded:  # between a merge's rename and its deletes: list, leaving its inputs out
            return self._current([p for d in sorted(self.root.glob("day=*")) for p in _part_files(d)]) or None
        return str(self.root / "day=*" / "part-*.parquet")

    def _current(self, files: list[str]) -> list[str]:
        sup = self._superseded
        return [f for f in files if f not in sup] if sup else files

    def _sql(self, select: str, *, entities: Sequence[str] | str | None, properties: Sequence[str] | str | None,
             types: Sequence[str] | str | None, start: TimeLike, end: TimeLike, bbox: BBox | None,
             near: Near | None, tail: str = "", value_filter: str | None = None) -> tuple[str, dict[str, Any]]:
        s_us, e_us = to_us(start), to_us(end)
        if s_us is not None and e_us is not None and e_us <= s_us:
            raise InputError(f"end {end} is not after start {start}", field="end")
        files = self._files(s_us, e_us)
        if files is None:
            raise _Empty
        params: dict[str, Any] = {"files": files}
        inner: list[str] = []
        for name, vals in (("entity", entities), ("property", properties), ("type", types)):
            if vals is not None:
                lst = [vals] if isinstance(vals, str) else list(vals)
                params[name] = lst
                inner.append(f"{name} IN (SELECT unnest(${name}))" if len(lst) != 1 else f"{name} = ${name}[1]")
        if s_us is not None:
            inner.append("time >= make_timestamp($s_us)::TIMESTAMPTZ")
            params["s_us"] = s_us
        if e_us is not None:
            inner.append("time < make_timestamp($e_us)::TIMESTAMPTZ")
            params["e_us"] = e_us
        outer: list[str] = []
        if bbox is not None:
            x0, y0, x1, y1 = (float(v) for v in bbox)
            if x0 > x1 or y0 > y1:
                raise InputError(f"bbox {bbox} must be min lon, min lat, max lon, max lat", field="bbox")
            outer.append(f"lon BETWEEN {x0!r} AND {x1!r} AND lat BETWEEN {y0!r} AND {y1!r}")
        if near is not None:
            outer.append(f"{_haversine_sql(near.lon, near.lat)} <= {float(near.max_m)!r}")
        if value_filter:
            outer.append(value_filter)
        where_in = (" WHERE " + " AND ".join(inner)) if inner else ""
        where_out = (" WHERE " + " AND ".join(outer)) if outer else ""
        sql = (f"WITH raw AS (SELECT * FROM read_parquet($files, hive_partitioning = false){where_in}), "
               "obs AS (SELECT * FROM raw QUALIFY row_number() OVER "
               "(PARTITION BY entity, property, time ORDER BY _batch DESC, _row DESC) = 1) "
               f"SELECT {select} FROM obs{where_out} {tail}")
        return sql, params

    def _run(self, sql: str, params: dict[str, Any]) -> pa.Table:
        for attempt in range(_READ_TRIES):
            cur = self._con.cursor()
            try:
                return cur.sql(sql, params=params).to_arrow_table()
            except duckdb.IOException:
                # a file was merged away between listing and reading: list its days again (the merge's
                # output holds its rows; a glob is listed again by DuckDB itself)
                if attempt == _READ_TRIES - 1:
                    raise
                if isinstance(params["files"], list):
                    params["files"] = self._relist(params["files"]) or params["files"]
                time.sleep(0.01)
            finally:
                cur.close()
        raise AssertionError("unreachable")

    def _relist(self, files: list[str]) -> list[str]:
        dirs = dict.fromkeys(os.path.dirname(f) for f in files)
        return self._current([p for d in dirs for p in _part_files(d)])

    @_reads
    def query(self, *, entities: Sequence[str] | str | None = None, properties: Sequence[str] | str | None = None,
              types: Sequence[str] | str | None = None, start: TimeLike = None, end: TimeLike = None,
              bbox: BBox | None = None, near: Near | None = None, limit: int | None = None,
              order: str = "time", fast: bool = True) -> pd.DataFrame:
        """Observations in ``[start, end)`` (one row per key; missing values as NaN).

        Returns a frame with ``entity, type, property, time (UTC), value, unit, lon, lat``.

        Narrow reads (given entities, a time range of a few days, no geo filter) take a fast path: the day files
        are scanned with pyarrow (filters pushed down) and deduplicated by the same rule; DuckDB's fixed cost per
        query (~15-20 ms on a busy 2-core machine) is larger than such a read. ``fast=False`` forces DuckDB; the
        tests check both agree."""
        if order not in ("time", "entity"):
            raise InputError(f"order must be time or entity, not {order!r}", field="order")
        if fast and entities is not None and bbox is None and near is None:
            s_us, e_us = to_us(start), to_us(end)
            if s_us is not None and e_us is not None and 0 < e_us - s_us <= _FAST_DAYS * DAY_US:
                try:
                    return self._fast_query(entities, properties, types, s_us, e_us, limit, order)
                except (FileNotFoundError, OSError, pa.ArrowException):
                    pass  # a file compacted away meanwhile: DuckDB path lists again and retries
        tail = "ORDER BY time, entity, property" if order == "time" else "ORDER BY entity, property, time"
        if limit is not None:
            tail += f" LIMIT {int(limit)}"
        try:
            sql, params = self._sql(", ".join(OUT_COLUMNS), entities=entities, properties=properties, types=types,
                                    start=start, end=end, bbox=bbox, near=near, tail=tail)
        except _Empty:
            return _empty_frame()
        return _utc(self._run(sql, params).to_pandas())

    def _fast_query(self, entities: Sequence[str] | str, properties: Sequence[str] | str | None,
                    types: Sequence[str] | str | None, s_us: int, e_us: int, limit: int | None,
                    order: str) -> pd.DataFrame:
        files = self._files(s_us, e_us)
        if not files:
            return _empty_frame()
        assert isinstance(files, list)
        ts = pa.timestamp("us", tz="UTC")
        filt: list[tuple[str, str, Any]] = [("time", ">=", pa.scalar(s_us, type=pa.int64()).cast(ts)),
                                            ("time", "<", pa.scalar(e_us, type=pa.int64()).cast(ts))]
        for name, vals in (("entity", entities), ("property", properties), ("type", types)):
            if vals is not None:
                filt.append((name, "in", [vals] if isinstance(vals, str) else list(vals)))
        table = pq.ParquetDataset(files, filters=filt).read(columns=[*OUT_COLUMNS, "_batch", "_row"])
        df = table.to_pandas()
        if len(df):
            df = (df.sort_values(["_batch", "_row"], kind="stable")
                  .drop_duplicates(["entity", "property", "time"], keep="last"))
        keys = ["time", "entity", "property"] if order == "time" else ["entity", "property", "time"]
        df = df.sort_values(keys, kind="stable")[OUT_COLUMNS].reset_index(drop=True)
        if limit is not None:
            df = df.head(int(limit))
        return _utc(df)

    @_reads
    def count(self, **filters: Any) -> dict[str, int]:
        """Rows (one per key), non-missing values and missing values matching the filters of :meth:`query`."""
        try:
            sql, params = self._sql("count(*) AS rows, count(value) AS values", **_filters(filters))
        except _Empty:
            return {"rows": 0, "values": 0, "missing": 0}
        r = self._run(sql, params).to_pylist()[0]
        return {"rows": int(r["rows"]), "values": int(r["values"]), "missing": int(r["rows"] - r["values"])}

    @_reads
    def physical_rows(self) -> int:
        """Rows stored on disk, duplicates included (equals :meth:`count` rows after :meth:`compact`)."""
        files = self._files(None, None)
        if files is None:
            return 0
        return int(self._run("SELECT count(*) AS n FROM read_parquet($files, hive_partitioning = false)", {"files": files})
                   .column("n")[0].as_py())

    @_reads
    def aggregate(self, interval: str | float = "1 hour", *, funcs: Sequence[str] = ("avg", "min", "max", "count"),
                  by_entity: bool = True, **filters: Any) -> pd.DataFrame:
        """Aggregate values per time bucket (and entity, property).

        Parameters
        ----------
        interval
            DuckDB interval text (``'15 minutes'``, ``'1 hour'``, ``'1 day'``) or seconds.
        funcs
            Any of ``avg, min, max, count, sum, missing`` (``count`` counts non-missing values).
        by_entity
            Group per entity (else over all matching entities).

        Returns a frame with ``[entity,] property, unit, time`` (bucket start, UTC) and one column per function.
        """
        bad = [f for f in funcs if f not in AGGREGATES]
        if bad:
            raise InputError(f"unknown aggregate(s) {bad}", field="funcs", hint=f"use {', '.join(AGGREGATES)}")
        step = _interval_sql(interval)
        exprs = []
        for f in funcs:
            exprs.append("count(*) - count(value) AS missing" if f == "missing" else f"{f}(value) AS {f}")
        keys = (["entity"] if by_entity else []) + ["property", "unit"]
        select = (", ".join(keys) + f", time_bucket({step}, time, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS time, "
                  + ", ".join(exprs))
        tail = f"GROUP BY ALL ORDER BY {', '.join(keys)}, time"
        try:
            sql, params = self._sql(select, tail=tail, **_filters(filters))
        except _Empty:
            return pd.DataFrame(columns=[*keys, "time", *funcs])
        return _utc(self._run(sql, params).to_pandas())

    def downsample(self, *, max_points: int = 1000, funcs: Sequence[str] = ("avg", "min", "max", "count"),
                   **filters: Any) -> pd.DataFrame:
        """Aggregate a long range into at most about ``max_points`` buckets per series.

        The bucket is the smallest of 1 s, 5 s, ..., 1 h, 3 h, 6 h, 12 h, 1 day, 1 week that
        fits; the chosen size (seconds) is in ``df.attrs['interval_s']``.
        """
        s_us, e_us = to_us(filters.get("start")), to_us(filters.get("end"))
        if s_us is None or e_us is None:
            span = self._span(**{k: v for k, v in filters.items() if k not in ("start", "end")})
            if span is None:
                return pd.DataFrame()
            s_us = s_us if s_us is not None else span[0]
            e_us = e_us if e_us is not None else span[1] + 1
            filters = {**filters, "start": s_us, "end": e_us}
        need = (e_us - s_us) / 1e6 / max(1, max_points)
        step = next((s for s in _STEPS if s >= need), _STEPS[-1])
        df = self.aggregate(float(step), funcs=funcs, **filters)
        df.attrs["interval_s"] = step
        return df

    @_reads
    def _span(self, **filters: Any) -> tuple[int, int] | None:
        try:
            sql, params = self._sql("epoch_us(min(time)) AS a, epoch_us(max(time)) AS b", **_filters(filters))
        except _Empty:
            return None
        r = self._run(sql, params).to_pylist()[0]
        return None if r["a"] is None else (int(r["a"]), int(r["b"]))

    def span(self, **filters: Any) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """First and last observation time (UTC) matching the filters of :meth:`query`; None if none."""
        r = self._span(**filters)
        if r is None:
            return None
        return pd.Timestamp(r[0], unit="us", tz="UTC"), pd.Timestamp(r[1], unit="us", tz="UTC")

    @_reads
    def latest(self, **filters: Any) -> pd.DataFrame:
        """The latest observation per (entity, property): rebuilds live state from history."""
        try:
            sql, params = self._sql(", ".join(OUT_COLUMNS), tail="QUALIFY row_number() OVER "
                                    "(PARTITION BY entity, property ORDER BY time DESC) = 1 ORDER BY entity, property",
                                    **_filters(filters))
        except _Empty:
            return _empty_frame()
        return _utc(self._run(sql, params).to_pandas())

    def replay(self, *, start: TimeLike, end: TimeLike, speed: float = 1.0, sleep: Any = time.sleep,
               clock: Any = time.monotonic, **filters: Any) -> Iterator[pd.DataFrame]:
        """Replay a period at ``speed``× real time: yields the observations of each timestamp, paced.

        A timestamp ``t`` is yielded ``(t - t0) / speed`` seconds after the first one;
        ``speed <= 0`` or ``inf`` yields as fast as possible. Days are read one at a time.
        """
        s_us, e_us = to_us(start), to_us(end)
        if s_us is None or e_us is None:
            raise InputError("replay needs start and end", field="start")
        fast = speed <= 0 or not math.isfinite(speed)
        t0: int | None = None
        w0 = clock()
        day = s_us
        while day < e_us:
            nxt = min(e_us, (day // DAY_US + 1) * DAY_US)
            df = self.query(start=day, end=nxt, **filters)
            day = nxt
            if df.empty:
                continue
            tus = df["time"].dt.as_unit("us").astype("int64").to_numpy()
            cuts = np.flatnonzero(np.diff(tus)) + 1
            for part_idx in np.split(np.arange(len(df)), cuts):
                t = int(tus[part_idx[0]])
                if t0 is None:
                    t0 = t
                if not fast:
                    wait = w0 + (t - t0) / 1e6 / speed - clock()
                    if wait > 0:
                        sleep(wait)
                yield df.iloc[part_idx].reset_index(drop=True)

    def close(self) -> None:
        """Stop the background compactor (after the merge it is running; queued days wait for the next
        open) and close the store."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
            th = self._compactor
        if th is not None and th is not threading.current_thread():
            th.join(300)
        self._con.close()


_POOL: ThreadPoolExecutor | None = None


def _write_days(jobs: list[tuple[str, pa.Table, int, bool]],
                meanwhile: Callable[[], None] | None = None) -> list[tuple[bool, int | None]]:
    """:func:`write_day` for each job (results in job order): the first in the calling thread (one hand-off fewer), the
    others in the writer threads meanwhile (fsyncs overlap); with ``meanwhile``, all in the writer threads while the
    calling thread runs it. As ``Executor.map``: the first failure in job order raised, jobs not started cancelled."""
    futures = [_pool().submit(write_day, *j) for j in (jobs if meanwhile is not None else jobs[1:])]
    try:
        first = [write_day(*jobs[0])] if meanwhile is None else []
        if meanwhile is not None:
            meanwhile()
        return first + [f.result() for f in futures]
    finally:
        for f in futures:
            f.cancel()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="citytwin-history")
    return _POOL


_STORES: weakref.WeakSet[HistoryStore] = weakref.WeakSet()


def _reset_pool_in_child() -> None:
    # a forked child inherits the pool object but not its threads: give it a new one
    global _POOL
    _POOL = None
    for st in list(_STORES):
        st._after_fork()


os.register_at_fork(after_in_child=_reset_pool_in_child)

__all__ = ["BBox", "HistoryStore", "Near", "TimeLike", "fsync_dir", "iso_duration_s", "pc_max", "to_us", "utc"]
