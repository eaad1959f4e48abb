"""Benchmark: H3 cells as a pure DuckDB SQL expression vs h3-py, h3ronpy and the ingest's arrow UDF.

Usage::

    python bench/h3sql_bench.py            # 1,000,000 points (default)
    python bench/h3sql_bench.py --n 10000000 --res 9

Points are uniform on the sphere, in a DuckDB table ``pts``. Timed (wall clock, best of
``--repeat``):

* ``sql``: ``SELECT count(h3) FROM (wrap_select(...))`` on all DuckDB threads;
* ``sql→parquet``: ``COPY (wrap_select(...)) TO 'x.parquet'`` (all columns + h3);
* ``udf``: the ingest's former arrow UDF ``h3_cell(lon, lat, res)`` (h3-py in a Python loop, one core);
* ``h3-py``: ``h3.latlng_to_cell`` in a Python loop over numpy arrays (one core);
* ``h3ronpy``: ``h3ronpy.vector.coordinates_to_cells`` (vectorised Rust, one core; returns
  UInt64, plus ``cells_to_string`` for the same hex strings);
* ``h3numba``: :func:`citytwin.foundation.h3numba.cells_array` (the SQL's operations compiled with
  numba, Arrow strings out) on all cores and on one (``threads=1``, as the ingest calls it); its
  one-off load (numba import and cache) is reported apart.

The Python paths (udf, h3-py) run on a subsample of at most ``--sample`` points and are scaled
linearly to n (said so in the output). Correctness: the SQL strings are compared with h3-py on the
subsample and with h3ronpy on all n points.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import h3
import numpy as np
import pyarrow as pa

from citytwin.foundation import spacelink
from citytwin.foundation.h3sql import wrap_select


def _mem_gib() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


_CPU: dict[float, float] = {}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs; the CPU seconds of that run are kept in ``_CPU[wall]``."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t, c = time.perf_counter(), _cpu()
        out = fn()
        wall, cpu = time.perf_counter() - t, _cpu() - c
        if wall < best:
            best = wall
            _CPU[wall] = cpu
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="number of points (full size: 10,000,000)")
    ap.add_argument("--res", type=int, default=9, help="H3 resolution")
    ap.add_argument("--sample", type=int, default=1_000_000, help="subsample for the Python loops")
    ap.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: DuckDB's default)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="n = 100,000 (smoke run)")
    args = ap.parse_args()
    n = 100_000 if args.quick else args.n
    sample = min(n, args.sample)

    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads={args.threads}")
    threads = con.sql("SELECT current_setting('threads')").fetchone()[0]  # type: ignore[index]
    print(f"machine: {platform.machine()}, nproc {os.cpu_count()}, memory {_mem_gib():.1f} GiB, "
          f"duckdb {duckdb.__version__} threads {threads}, h3 {h3.__version__}")
    print(f"points: {n:,} uniform on the sphere, resolution {args.res}")
    con.execute("SELECT setseed(0.42)")
    con.execute(f"""CREATE TABLE pts AS SELECT i AS id, random() * 360 - 180 AS lon,
                    degrees(asin(random() * 2 - 1)) AS lat FROM range({n}) t(i)""")
    inner = "SELECT * FROM pts"
    sql = wrap_select(inner, "lon", "lat", args.res)
    rows: list[tuple[str, float, float, str]] = []

    t_sql, _ = _best(lambda: con.sql(f"SELECT count(h3) FROM ({sql})").fetchone(), args.repeat)
    rows.append(("sql count(h3)", t_sql, _CPU[t_sql], "measured"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pts.parquet"
        t_copy, _ = _best(lambda: con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet)"), 1)
        t_copy_plain, _ = _best(lambda: con.execute(f"COPY ({inner}) TO '{out}' (FORMAT parquet)"), 1)
    rows.append(("sql -> parquet", t_copy, _CPU[t_copy], "measured"))
    rows.append(("parquet without h3", t_copy_plain, _CPU[t_copy_plain], "measured (reference)"))

    sub = con.sql(f"SELECT lon, lat FROM pts WHERE id < {sample} ORDER BY id").fetchnumpy()
    lon, lat = np.asarray(sub["lon"]), np.asarray(sub["lat"])
    scale = n / sample

    def h3py() -> list[str]:
        return [h3.latlng_to_cell(b, a, args.res) for a, b in zip(lon.tolist(), lat.tolist(), strict=True)]

    t_py, ref = _best(h3py, 1)
    rows.append(("h3-py loop", t_py * scale, _CPU[t_py] * scale, f"{sample:,} points x {scale:g}" if scale != 1 else "measured"))

    # the ingest's former path: h3-py's loop (spacelink.h3_cells) in an arrow UDF
    def h3_cell(lo: pa.Array, la: pa.Array, res: pa.Array) -> pa.Array:
        x = lo.to_numpy(zero_copy_only=False).astype(float)
        y = la.to_numpy(zero_copy_only=False).astype(float)
        return pa.array(spacelink.h3_cells(x, y, resolution=int(res[0].as_py()), invalid="none"), pa.string())

    udf_opts: dict[str, Any] = {"type": "arrow", "null_handling": "special"}  # the stubs lack these spellings
    con.create_function("h3_cell", h3_cell, [duckdb.sqltype("DOUBLE"), duckdb.sqltype("DOUBLE"),
                                             duckdb.sqltype("INTEGER")], duckdb.sqltype("VARCHAR"), **udf_opts)
    t_udf, _ = _best(lambda: con.sql(f"SELECT count(h3_cell(lon, lat, {args.res})) FROM pts WHERE id < {sample}")
                     .fetchone(), 1)
    rows.append(("arrow UDF h3_cell", t_udf * scale, _CPU[t_udf] * scale, f"{sample:,} points x {scale:g}" if scale != 1 else "measured"))

    full = con.sql("SELECT lon, lat FROM pts ORDER BY id").fetchnumpy()
    flon, flat = np.asarray(full["lon"]), np.asarray(full["lat"])
    t0 = time.perf_counter()
    from citytwin.foundation import h3numba

    h3numba.cells_array(flon[:1], flat[:1], args.res)
    t_load = time.perf_counter() - t0
    t_nb, nb_cells = _best(lambda: h3numba.cells_array(flon, flat, args.res), args.repeat)
    rows.append(("h3numba (all cores)", t_nb, _CPU[t_nb], f"measured; numba load {t_load:.2f} s once"))
    t_nb1, _ = _best(lambda: h3numba.cells_array(flon, flat, args.res, threads=1), args.repeat)
    rows.append(("h3numba (one core)", t_nb1, _CPU[t_nb1], "measured"))
    sql_all = con.sql(f"SELECT h3 FROM ({sql}) ORDER BY id").to_arrow_table().column(0).combine_chunks()
    bad_nb = int(n - pa.compute.sum(pa.compute.equal(sql_all, nb_cells)).as_py())

    got_sub = [r[0] for r in con.sql(f"SELECT h3 FROM ({sql}) WHERE id < {sample} ORDER BY id").fetchall()]
    bad_py = sum(g != w for g, w in zip(got_sub, ref, strict=True))

    bad_ron: int | None = None
    try:
        import h3ronpy
        from h3ronpy.vector import coordinates_to_cells
    except ImportError:  # pragma: no cover - optional peer
        print("h3ronpy: not installed, skipped")
    else:
        t_ron, cells = _best(lambda: coordinates_to_cells(flat, flon, args.res), args.repeat)
        t_ron_s, strings = _best(lambda: h3ronpy.cells_to_string(cells), 1)
        rows.append(("h3ronpy (UInt64)", t_ron, _CPU[t_ron], "measured"))
        rows.append(("h3ronpy + to_string", t_ron + t_ron_s, _CPU[t_ron] + _CPU[t_ron_s], "measured"))
        mine = con.sql(f"SELECT h3 FROM ({sql}) ORDER BY id").to_arrow_table().column(0)
        theirs = pa.array(strings).cast(pa.string())
        bad_ron = int(len(mine) - pa.compute.sum(pa.compute.equal(mine, theirs)).as_py())

    print(f"\n{'path':22s} {'wall s':>8s} {'points/s':>12s} {'wall/sql':>9s} {'cpu s':>8s} {'ns cpu/pt':>10s}  note")
    for name, sec, cpu, note in rows:
        print(f"{name:22s} {sec:8.2f} {n / sec:12,.0f} {sec / t_sql:9.2f} {cpu:8.2f} {cpu / n * 1e9:10.0f}  {note}")
    print("(wall/sql > 1: slower than the SQL expression; cpu s: user+system CPU seconds of this process)")
    print(f"\ncorrectness: sql vs h3-py on {sample:,} points: {sample - bad_py:,} equal, {bad_py} differ")
    print(f"correctness: sql vs h3numba on {n:,} points: {n - bad_nb:,} equal, {bad_nb} differ")
    if bad_ron is not None:
        print(f"correctness: sql vs h3ronpy on {n:,} points: {n - bad_ron:,} equal, {bad_ron} differ")


if __name__ == "__main__":
    main()
