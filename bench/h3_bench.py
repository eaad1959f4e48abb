"""Benchmark: H3 cells by h3numba (citytwin's fast path) vs h3-py (its fallback) vs h3ronpy, same points.

Usage::

    python bench/h3_bench.py --quick       # 100,000 points (smoke run)
    python bench/h3_bench.py               # 1,000,000 points (default)
    python bench/h3_bench.py --n 10000000 --res 9

Points are uniform on the sphere (numpy, seeded), or around Beijing with ``--city``. Timed (wall
clock and this process's CPU seconds, best of ``--repeat``):

* ``h3numba``: :func:`citytwin.foundation.h3numba.cells_array` (Arrow strings out) on all cores and on
  one (``threads=1``, as the ingest calls it); its one-off load (numba import and cache) apart;
* ``spacelink.h3_cells_arrow``: the one interface (h3numba here; the same call with numba
  unimportable is the h3-py loop below);
* ``h3-py``: ``h3.latlng_to_cell`` in a Python loop (one core) — the fallback and the reference;
* ``h3ronpy`` (if installed): ``coordinates_to_cells`` (vectorised Rust, UInt64) plus
  ``cells_to_string`` for the same hex strings;
* ``duckdb UDF h3_cell``: the staged ingest's DuckDB function around the interface (DuckDB's arrow
  UDF glue included).

The h3-py loop and the UDF run on a subsample of at most ``--sample`` points, scaled linearly to n
(said so in the output). Correctness: h3numba's strings are compared with h3-py on the subsample
and with h3ronpy on all n points.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from collections.abc import Callable
from typing import Any

import duckdb
import h3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from citytwin.foundation import spacelink


def _mem_gib() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(wall, cpu, result) of the fastest of ``repeat`` runs."""
    best, best_cpu, out = float("inf"), float("nan"), None
    for _ in range(repeat):
        t, c = time.perf_counter(), _cpu()
        out = fn()
        wall, cpu = time.perf_counter() - t, _cpu() - c
        if wall < best:
            best, best_cpu = wall, cpu
    return best, best_cpu, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="number of points (full size: 10,000,000)")
    ap.add_argument("--res", type=int, default=9, help="H3 resolution")
    ap.add_argument("--sample", type=int, default=300_000, help="subsample for the h3-py loop and the UDF")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--city", action="store_true", help="points within ~0.5° of Beijing instead of the sphere")
    ap.add_argument("--quick", action="store_true", help="n = 100,000 (smoke run)")
    args = ap.parse_args()
    n = 100_000 if args.quick else args.n
    sample = min(n, args.sample)
    scale = n / sample

    rng = np.random.default_rng(42)
    if args.city:
        lon, lat = 116.4 + rng.uniform(-0.5, 0.5, n), 39.9 + rng.uniform(-0.5, 0.5, n)
    else:
        lon, lat = rng.uniform(-180.0, 180.0, n), np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    print(f"machine: {platform.machine()}, nproc {os.cpu_count()}, memory {_mem_gib():.1f} GiB, "
          f"duckdb {duckdb.__version__}, h3 {h3.__version__}")
    print(f"points: {n:,} {'around Beijing' if args.city else 'uniform on the sphere'}, resolution {args.res}")
    rows: list[tuple[str, float, float, str]] = []

    slon, slat = lon[:sample], lat[:sample]
    t_py, c_py, ref = _best(lambda: [h3.latlng_to_cell(b, a, args.res)
                                     for a, b in zip(slon.tolist(), slat.tolist(), strict=True)], 1)
    note = f"{sample:,} points x {scale:g}" if scale != 1 else "measured"
    rows.append(("h3-py loop (fallback)", t_py * scale, c_py * scale, note))

    t0 = time.perf_counter()
    from citytwin.foundation import h3numba

    h3numba.cells_array(lon[:1], lat[:1], args.res)
    t_load = time.perf_counter() - t0
    t_nb, c_nb, nb = _best(lambda: h3numba.cells_array(lon, lat, args.res), args.repeat)
    rows.append(("h3numba (all cores)", t_nb, c_nb, f"measured; numba load {t_load:.2f} s once"))
    t_nb1, c_nb1, _ = _best(lambda: h3numba.cells_array(lon, lat, args.res, threads=1), args.repeat)
    rows.append(("h3numba (one core)", t_nb1, c_nb1, "measured"))
    assert spacelink.h3_engine() == "h3numba"
    t_if, c_if, _ = _best(lambda: spacelink.h3_cells_arrow(lon, lat, args.res, threads=1), args.repeat)
    rows.append(("h3_cells_arrow (1 core)", t_if, c_if, "measured; the interface, h3numba"))

    from citytwin.foundation.ingest.connection import register_udfs

    con = duckdb.connect()
    register_udfs(con)
    con.register("pts", pa.table({"lon": slon, "lat": slat}))
    t_udf, c_udf, _ = _best(lambda: con.sql(f"SELECT count(h3_cell(lon, lat, {args.res})) FROM pts").fetchone(), 1)
    rows.append(("duckdb UDF h3_cell", t_udf * scale, c_udf * scale, note + "; staged ingest"))

    bad_py = sum(g != w for g, w in zip(nb.slice(0, sample).to_pylist(), ref, strict=True))
    bad_ron: int | None = None
    try:
        import h3ronpy
        from h3ronpy.vector import coordinates_to_cells
    except ImportError:  # optional peer
        print("h3ronpy: not installed, skipped")
    else:
        t_ron, c_ron, cells = _best(lambda: coordinates_to_cells(lat, lon, args.res), args.repeat)
        t_str, c_str, strings = _best(lambda: h3ronpy.cells_to_string(cells), 1)
        rows.append(("h3ronpy (UInt64)", t_ron, c_ron, "measured"))
        rows.append(("h3ronpy + to_string", t_ron + t_str, c_ron + c_str, "measured"))
        theirs = pa.array(strings).cast(pa.string())
        bad_ron = int(n - pc.sum(pc.equal(nb, theirs)).as_py())

    print(f"\n{'path':24s} {'wall s':>8s} {'points/s':>12s} {'wall/numba1':>11s} {'cpu s':>8s} {'ns cpu/pt':>10s}  note")
    for name, sec, cpu, nt in rows:
        print(f"{name:24s} {sec:8.2f} {n / sec:12,.0f} {sec / t_nb1:11.2f} {cpu:8.2f} {cpu / n * 1e9:10.0f}  {nt}")
    print("(wall/numba1: wall time over h3numba's on one core; cpu s: user+system CPU seconds of this process)")
    print(f"\ncorrectness: h3numba vs h3-py on {sample:,} points: {sample - bad_py:,} equal, {bad_py} differ")
    if bad_ron is not None:
        print(f"correctness: h3numba vs h3ronpy on {n:,} points: {n - bad_ron:,} equal, {bad_ron} differ")


if __name__ == "__main__":
    main()
