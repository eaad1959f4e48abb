"""The history's append with fewer conversions and one hand-off fewer (docs/twin.md, "Session 17: a request's fixed
cost"): ``HistoryStore._to_table`` builds the table the former conversion built, and an append spanning several days
writes the same files whichever thread writes each day."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from citytwin.foundation.timeseries import history as H
from citytwin.foundation.timeseries.history import SCHEMA, HistoryStore
from citytwin.foundation.timeseries.ingest import factorized
from citytwin.service import upsert as U
from citytwin.twin import feeds as F
from citytwin.twin.columnar import fast_decode
from citytwin.workflows.runtime import open_runtime


def _reference(c: Mapping[str, Any] | pd.DataFrame, received_us: int | None) -> pa.Table:
    """``HistoryStore._to_table`` as it was before session 17 (main db8372c), verbatim but for ``self``."""
    if "time_us" in c:
        t = pa.array(np.asarray(c["time_us"], dtype="int64")).cast(pa.timestamp("us", tz="UTC"))
    elif "time" in c:
        tt = pd.to_datetime(pd.Series(c["time"]), utc=True)
        t = pa.array(tt.dt.as_unit("us").astype("int64").to_numpy()).cast(pa.timestamp("us", tz="UTC"))
    else:
        raise AssertionError
    n = len(t)
    value = c["value"]
    vals = pa.array(np.asarray(value, dtype="float64"), from_pandas=True) if not isinstance(value, list) \
        else pa.array(value, type=pa.float64(), from_pandas=True)
    rec = received_us if received_us is not None else time.time_ns() // 1000
    codes = c.get("_codes") if not isinstance(c, pd.DataFrame) else None

    def col(name: str, typ: pa.DataType) -> pa.Array:
        if name not in c:
            return pa.nulls(n, typ)
        if codes and name in codes:
            return pa.DictionaryArray.from_arrays(pa.array(codes[name][0]), pa.array(codes[name][1], typ)).cast(typ)
        v = c[name]
        return pa.array(list(v) if isinstance(v, pd.Series) else v, type=typ, from_pandas=True)

    return pa.Table.from_arrays([
        col("entity", pa.string()), col("type", pa.string()), col("property", pa.string()), t, vals,
        col("unit", pa.string()), col("lon", pa.float64()), col("lat", pa.float64()),
        pa.array(np.full(n, rec, dtype="int64")).cast(pa.timestamp("us", tz="UTC")),
        pa.array(np.zeros(n, dtype="int64")), pa.array(np.arange(n, dtype="int32")),
    ], schema=SCHEMA)


def _same(a: pa.Table, b: pa.Table) -> None:
    assert a.schema.equals(b.schema, check_metadata=True)
    assert a.equals(b)
    assert a.to_pylist() == b.to_pylist()  # (values, nulls and NaN-as-null alike, row by row)


def _ingest_columns(tmp_path, bodies: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The columns (with the ingest's ``_codes``) the upsert hands to ``HistoryStore.append``."""
    rt = open_runtime(tmp_path / "twin")
    rt.register([F.beijing_entity(s) for s in sorted(F.BEIJING_STATIONS)[:4]])
    got: list[dict[str, Any]] = []
    orig = HistoryStore.append

    def spy(self: HistoryStore, columns: Any, **kw: Any) -> int:
        got.append(dict(columns))
        return orig(self, columns, **kw)

    HistoryStore.append = spy  # type: ignore[method-assign]
    try:
        for b in bodies:
            U.upsert(rt, fast_decode(json.dumps(b).encode()), "/ngsi-ld/v1/entityOperations/upsert")
    finally:
        HistoryStore.append = orig  # type: ignore[method-assign]
        rt.close()
    return got


def test_the_table_of_an_upserts_columns_is_the_former_conversions(tmp_path) -> None:
    ents = [F.beijing_entity(s) for s in sorted(F.BEIJING_STATIONS)[:4]]
    bodies = [[{"id": e.id, "type": "AirQualityObserved", "observedAt": f"2015-12-0{1 + d}T{h:02d}:00:00Z",
                "pm25": {"value": 10.5 + h, "unit": "µg/m³"}, "no2": {"value": None if h % 5 == 0 else h}}
               for e in ents[:k] for h in range(0, 24, 6)] for d, k in ((0, 1), (1, 4), (2, 2))]
    bodies.append([{"id": ents[0].id, "type": "AirQualityObserved", "observedAt": "2015-12-05T00:00:00Z",
                    "o3": 3.0}])  # one reading
    cols = _ingest_columns(tmp_path, bodies)
    assert len(cols) == len(bodies) and all(c.get("_codes") for c in cols)  # (the codes path is exercised)
    store = HistoryStore.__new__(HistoryStore)
    for c in cols:
        _same(store._to_table(c, 1_700_000_000_000_000), _reference(c, 1_700_000_000_000_000))


@pytest.mark.parametrize("case", ["lists", "arrays", "frame", "no_optional", "nan_none", "empty", "codes_subset"])
def test_the_table_of_other_columns_is_the_former_conversions(case: str) -> None:
    n = 7
    t = [1_449_000_000_000_000 + 3_600_000_000 * i for i in range(n)]
    base: dict[str, Any] = {"entity": [f"e{i % 3}" for i in range(n)], "type": ["T"] * n,
                            "property": ["pm25", "no2"] * 3 + ["o3"], "time_us": t,
                            "value": [1.0, None, float("nan"), 4.0, 5.5, -1.0, 0.0], "unit": ["u", None] * 3 + ["v"],
                            "lon": [116.0 + i for i in range(n)], "lat": [None] + [39.0] * (n - 1)}
    if case == "lists":
        c: Any = base
    elif case == "arrays":
        c = {k: (np.asarray(v, dtype=object) if k in ("entity", "type", "property", "unit") else
                 np.asarray(v, dtype="float64") if k in ("value", "lon", "lat") else np.asarray(v)) for k, v in base.items()}
    elif case == "frame":
        c = pd.DataFrame({**{k: v for k, v in base.items() if k != "time_us"},
                          "time": pd.to_datetime(base["time_us"], unit="us", utc=True)})
    elif case == "no_optional":
        c = {k: base[k] for k in ("entity", "property", "time_us", "value")}
    elif case == "nan_none":
        c = {**base, "value": np.array([np.nan] * n)}
    elif case == "empty":
        c = {k: [] for k in base}
    else:  # codes for some string columns only (as the ingest gives them), the others as arrays
        arr = {k: np.asarray(v, dtype=object) for k, v in base.items() if k in ("entity", "property", "unit", "type")}
        c = {**base, **arr, "_codes": {"entity": factorized(arr, "entity"), "property": factorized(arr, "property")}}
    store = HistoryStore.__new__(HistoryStore)
    _same(store._to_table(c, 5), _reference(c, 5))


def test_an_append_over_several_days_writes_each_day_once_in_any_thread(tmp_path) -> None:
    """Five days in one append (not in day order): one part file per day, the rows of each day in order, whether
    the first day is written by the calling thread (as now) or every day by the writer threads (as before)."""
    n = 96
    cols = {"entity": [f"e{i % 4}" for i in range(n)], "type": ["T"] * n, "property": ["pm25"] * n,
            "time_us": [1_449_000_000_000_000 + 3_600_000_000 * ((i * 37) % n) for i in range(n)],
            "value": [float(i) for i in range(n)], "unit": ["u"] * n, "lon": [1.0] * n, "lat": [2.0] * n}

    def stored(path, writer: Any) -> list[tuple[str, list[dict[str, Any]]]]:
        old = H._write_days
        H._write_days = writer
        try:
            h = HistoryStore(path, compact_threshold=10**6)
            h.append(cols, received_us=7)
            days = sorted((d.name, [r for r in pa.parquet.read_table(next(d.glob("part-*.parquet")))
                                    .drop_columns(["_batch"]).to_pylist()])
                          for d in path.iterdir() if d.is_dir() and len(list(d.glob("part-*.parquet"))) == 1)
            assert len(days) == len([d for d in path.iterdir() if d.is_dir()])
            h.close()
        finally:
            H._write_days = old
        return days

    threads: list[str] = []

    def write_day(*job: Any) -> Any:
        import threading
        threads.append(threading.current_thread().name)
        return H.write_day(*job)

    def before(jobs: Any) -> Any:  # as before session 17: every day through the writer threads
        return list(H._pool().map(lambda j: write_day(*j), jobs))

    now = stored(tmp_path / "now", H._write_days)
    ref = stored(tmp_path / "ref", before)
    assert len(now) == 5 and now == ref  # (the hours span five UTC days)
    assert all(name.startswith("citytwin-history") for name in threads)


def test_write_days_raises_the_first_failure_in_job_order(tmp_path, monkeypatch) -> None:
    calls: list[str] = []

    def fake(d: str, table: Any, batch: int, count: bool) -> tuple[bool, int | None]:
        calls.append(d)
        if d in ("b", "c"):
            raise OSError(f"disk full at {d}")
        return False, None

    monkeypatch.setattr(H, "write_day", fake)
    with pytest.raises(OSError, match="at b"):
        H._write_days([("a", None, 1, False), ("b", None, 1, False), ("c", None, 1, False)])  # type: ignore[list-item]
    assert H._write_days([("a", None, 1, False), ("a", None, 1, False)]) == [(False, None)] * 2  # type: ignore[list-item]

