"""Forecast store of the live twin: every issued forecast, kept so it can be verified when the actual arrives.

Layout::

    ROOT/issued/part-{batch}-{uuid}.parquet     forecast records (append-only)
    ROOT/scores.parquet                         the latest verification scores (replaced atomically)

Record columns: ``entity, property, issued_at (timestamp µs UTC), target_time (timestamp µs UTC),
horizon_s (int64 seconds), steps (int32), model, value (double)``, plus ``written_at`` and the
write order ``_batch, _row``. The key ``(entity, property, issued_at, horizon, model)`` is
idempotent: issuing the same forecast again (a retried request, a restarted job) is appended
blindly, and every read keeps only the latest write of a key, so it counts once. Writes are
durable before :meth:`ForecastStore.append` returns (temporary file, fsync, rename, fsync of the
folder), as in :class:`~citytwin.foundation.timeseries.history.HistoryStore`.

The store is pure storage: issuing forecasts and scoring them is done by
:mod:`citytwin.twin.forecast`, wired by the service runtime.

Examples
--------
>>> import tempfile
>>> import pandas as pd
>>> s = ForecastStore(tempfile.mkdtemp())
>>> rec = pd.DataFrame({"entity": ["e1"], "property": ["pm25"],
...                     "issued_at": [pd.Timestamp("2016-01-01 00:00", tz="UTC")],
...                     "target_time": [pd.Timestamp("2016-01-01 01:00", tz="UTC")],
...                     "horizon": [pd.Timedelta("1h")], "steps": [1], "model": ["seasonal_naive"],
...                     "value": [42.0]})
>>> s.append(rec), s.append(rec.assign(value=43.0))   # same key twice: the later write wins
(1, 1)
>>> s.query()[["entity", "horizon", "model", "value"]].values.tolist()
[['e1', Timedelta('0 days 01:00:00'), 'seasonal_naive', 43.0]]
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from citytwin.foundation.errors import InputError
from citytwin.foundation.timeseries.history import TimeLike, to_us
from citytwin.foundation.timeseries.history import fsync_dir as _fsync_dir

KEY = ["entity", "property", "issued_at", "horizon_s", "model"]
SCHEMA = pa.schema([
    ("entity", pa.string()), ("property", pa.string()),
    ("issued_at", pa.timestamp("us", tz="UTC")), ("target_time", pa.timestamp("us", tz="UTC")),
    ("horizon_s", pa.int64()), ("steps", pa.int32()), ("model", pa.string()), ("value", pa.float64()),
    ("written_at", pa.timestamp("us", tz="UTC")), ("_batch", pa.int64()), ("_row", pa.int32()),
])
OUT_COLUMNS = ["entity", "property", "issued_at", "target_time", "horizon", "steps", "model", "value"]
NEEDED = ["entity", "property", "issued_at", "target_time", "horizon", "model", "value"]


def _utc_series(s: pd.Series, name: str) -> pd.Series:
    try:
        t = pd.to_datetime(s)
    except (ValueError, TypeError) as exc:
        raise InputError(f"forecast column {name!r} holds a value that is not a time", field=name) from exc
    if t.dt.tz is None:
        t = t.dt.tz_localize("UTC")  # naive times are UTC (the twin's convention)
    return t.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


class ForecastStore:
    """Append-only Parquet store of forecast records, idempotent on (entity, property, issued_at, horizon, model).

    Parameters
    ----------
    root
        Folder of the store (created if missing), e.g. ``WS/twin/forecasts``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.issued_dir = self.root / "issued"
        self.issued_dir.mkdir(parents=True, exist_ok=True)
        self.scores_path = self.root / "scores.parquet"
        self._lock = threading.RLock()
        self._last_batch = 0
        for p in self.issued_dir.glob(".tmp-*"):  # a write killed midway: never visible to readers
            p.unlink(missing_ok=True)

    # -- writing -----------------------------------------------------------------------
    def _table(self, records: pd.DataFrame, batch: int) -> pa.Table:
        missing = [c for c in NEEDED if c not in records.columns]
        if missing:
            raise InputError(f"forecast records lack column(s) {', '.join(missing)}", field=missing[0])
        r = records.reset_index(drop=True)
        try:
            horizon_s = pd.to_timedelta(r["horizon"]).dt.total_seconds()
        except (ValueError, TypeError) as exc:
            raise InputError("forecast column 'horizon' holds a value that is not a duration",
                             field="horizon") from exc
        if horizon_s.isna().any() or (horizon_s <= 0).any():
            raise InputError("forecast horizons must be positive durations", field="horizon")
        issued = _utc_series(r["issued_at"], "issued_at")
        target = _utc_series(r["target_time"], "target_time")
        if (target - issued != pd.to_timedelta(horizon_s, unit="s").to_numpy()).any():
            raise InputError("target_time must equal issued_at + horizon", field="target_time")
        value = pd.to_numeric(r["value"], errors="coerce").astype(float)
        steps = r["steps"] if "steps" in r.columns else pd.Series(0, index=r.index)
        now = pd.Timestamp(time.time_ns(), unit="ns", tz="UTC").as_unit("us")
        data = {
            "entity": r["entity"].astype(str), "property": r["property"].astype(str),
            "issued_at": issued, "target_time": target, "horizon_s": horizon_s.astype("int64"),
            "steps": steps.astype("int32"), "model": r["model"].astype(str), "value": value,
            "written_at": pd.Series([now] * len(r), dtype="datetime64[us, UTC]"),
            "_batch": pd.Series([batch] * len(r), dtype="int64"),
            "_row": pd.Series(range(len(r)), dtype="int32"),
        }
        return pa.Table.from_pandas(pd.DataFrame(data), schema=SCHEMA, preserve_index=False)

    def append(self, records: pd.DataFrame) -> int:
        """Store forecast records durably; returns how many were written.

        ``records`` have ``entity, property, issued_at, target_time, horizon`` (a Timedelta),
        ``model, value`` and optionally ``steps`` — the records of
        :meth:`citytwin.twin.forecast.Forecaster.predict`. Naive times are taken as UTC.
        """
        if records is None or len(records) == 0:
            return 0
        with self._lock:
            batch = max(time.time_ns(), self._last_batch + 1)
            self._last_batch = batch
            table = self._table(records, batch)
            name = f"part-{batch}-{uuid.uuid4().hex[:8]}.parquet"
            tmp = self.issued_dir / f".tmp-{name}"
            pq.write_table(table, tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.issued_dir / name)
            _fsync_dir(self.issued_dir)
            return int(table.num_rows)

    # -- reading -----------------------------------------------------------------------
    def _files(self) -> list[Path]:
        return sorted(p for p in self.issued_dir.glob("part-*.parquet"))

    def query(self, *, entities: Sequence[str] | str | None = None, properties: Sequence[str] | str | None = None,
              models: Sequence[str] | str | None = None, issued_start: TimeLike = None, issued_end: TimeLike = None,
              target_start: TimeLike = None, target_end: TimeLike = None,
              latest_issue: bool = False) -> pd.DataFrame:
        """Forecast records (one per key), filtered; times are UTC, ``horizon`` a Timedelta.

        ``issued_*`` and ``target_*`` ranges are half-open ``[start, end)``. ``latest_issue`` keeps,
        per entity and property, only the forecasts of the last issue time.
        """
        files = self._files()
        if not files:
            return _empty()
        ts = pa.timestamp("us", tz="UTC")
        filt: list[tuple[str, str, Any]] = []
        for name, vals in (("entity", entities), ("property", properties), ("model", models)):
            if vals is not None:
                filt.append((name, "in", [vals] if isinstance(vals, str) else list(vals)))
        for col, lo, hi in (("issued_at", issued_start, issued_end), ("target_time", target_start, target_end)):
            lo_us, hi_us = to_us(lo), to_us(hi)
            if lo_us is not None:
                filt.append((col, ">=", pa.scalar(lo_us, type=pa.int64()).cast(ts)))
            if hi_us is not None:
                filt.append((col, "<", pa.scalar(hi_us, type=pa.int64()).cast(ts)))
        with self._lock:
            df = pq.ParquetDataset([str(f) for f in files], filters=filt or None).read().to_pandas()
        if df.empty:
            return _empty()
        df = df.sort_values(["_batch", "_row"], kind="stable").drop_duplicates(KEY, keep="last")
        if latest_issue:
            last = df.groupby(["entity", "property"])["issued_at"].transform("max")
            df = df[df["issued_at"] == last]
        df["horizon"] = pd.to_timedelta(df["horizon_s"], unit="s")
        df = df.sort_values(["issued_at", "entity", "property", "model", "horizon_s"], kind="stable")
        out: pd.DataFrame = df[OUT_COLUMNS].reset_index(drop=True)
        return out

    def count(self) -> int:
        """Forecasts stored (one per key)."""
        return len(self.query())

    # -- scores ------------------------------------------------------------------------
    def write_scores(self, scores: pd.DataFrame) -> None:
        """Replace the stored score table (atomically: readers see the old or the new one)."""
        out = scores.copy()
        for c in out.columns:
            if pd.api.types.is_timedelta64_dtype(out[c]):
                out[c] = out[c].dt.total_seconds().astype("int64")
                out = out.rename(columns={c: f"{c}_s"})
        tmp = self.root / f".tmp-scores-{uuid.uuid4().hex[:8]}.parquet"
        out.to_parquet(tmp, index=False)
        os.replace(tmp, self.scores_path)
        _fsync_dir(self.root)

    def scores(self) -> pd.DataFrame:
        """The score table of the last verification (empty before the first one)."""
        if not self.scores_path.exists():
            return pd.DataFrame()
        df = pd.read_parquet(self.scores_path)
        if "horizon_s" in df.columns:
            df.insert(list(df.columns).index("horizon_s"), "horizon", pd.to_timedelta(df["horizon_s"], unit="s"))
            df = df.drop(columns=["horizon_s"])
        return df


def _empty() -> pd.DataFrame:
    return pd.DataFrame({
        "entity": pd.Series(dtype=str), "property": pd.Series(dtype=str),
        "issued_at": pd.Series(dtype="datetime64[us, UTC]"), "target_time": pd.Series(dtype="datetime64[us, UTC]"),
        "horizon": pd.Series(dtype="timedelta64[s]"), "steps": pd.Series(dtype="int32"),
        "model": pd.Series(dtype=str), "value": pd.Series(dtype=float)})
