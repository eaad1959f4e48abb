"""Benchmark of the Urban Centrality Index (D1) on large H3 grids: time and peak memory.

Usage::

    python bench/spatial_uci.py              # 20,000 cells
    python bench/spatial_uci.py --n 200000   # 200,000 cells

A disc of H3 resolution-10 cells around central Helsinki with a synthetic polycentric activity
(three Gaussian centers plus noise, 40 % of the cells empty). Peak memory is measured by
``tracemalloc`` (Python and numpy allocations) around the UCI call alone, and the process's RSS
(psutil) before and after. Before issue 12 the UCI built a dense cells x cells matrix: 20,000 cells
took about 6 GB (8 bytes x 20,000^2 x 2 matrices); now memory is linear in the cells.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc

import numpy as np


def machine() -> str:
    import psutil

    return (f"{platform.processor() or platform.machine()}, nproc={os.cpu_count()}, "
            f"memory={psutil.virtual_memory().total / 2**30:.1f} GiB, load={os.getloadavg()[0]:.1f}, "
            f"python {platform.python_version()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="cells (about)")
    ap.add_argument("--resolution", type=int, default=10)
    ap.add_argument("--network", action="store_true", help="also the network-distance variant (O(n^2 log n) time)")
    args = ap.parse_args()
    import h3
    import psutil

    from citytwin.spatial.grid import cells_frame
    from citytwin.spatial.polycentricity import urban_centrality_index

    print(f"machine: {machine()}")
    c0 = h3.latlng_to_cell(60.17, 24.94, args.resolution)
    k = int(np.ceil((np.sqrt((4 * args.n - 1) / 3) - 1) / 2))  # a disc of radius k holds 3k(k+1)+1 cells
    cells = sorted(h3.grid_disk(c0, k))
    t0 = time.perf_counter()
    grid = cells_frame(cells)
    ll = np.array([h3.cell_to_latlng(c) for c in cells])
    rng = np.random.default_rng(12)
    act = np.zeros(len(cells))
    for lat, lon, amp, sd in ((60.17, 24.94, 500, 0.01), (60.19, 24.99, 200, 0.008), (60.15, 24.89, 120, 0.006)):
        act += amp * np.exp(-(((ll[:, 0] - lat) / sd) ** 2 + ((ll[:, 1] - lon) / (2 * sd)) ** 2))
    act = np.round(act + rng.exponential(1.0, len(cells))) * (rng.random(len(cells)) > 0.4)
    grid["activity"] = act
    print(f"grid: {len(cells):,} H3 res-{args.resolution} cells, {int((act > 0).sum()):,} with activity,"
          f" built in {time.perf_counter() - t0:.1f} s")
    urban_centrality_index(grid.iloc[:50], "activity")  # numba compile / cache load, not timed
    for distance in ("euclidean", "network") if args.network else ("euclidean",):
        rss0 = psutil.Process().memory_info().rss
        tracemalloc.start()
        t0 = time.perf_counter()
        r = urban_centrality_index(grid, "activity", distance=distance)
        dt = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss1 = psutil.Process().memory_info().rss
        dense = 8 * len(cells) ** 2 / 2**30
        print(f"UCI {distance:9s} n={len(cells):,}: {dt:7.1f} s, tracemalloc peak {peak / 2**20:7.1f} MiB, "
              f"RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB (one dense n x n float64 matrix: {dense:.1f} GiB)"
              f" | UCI={r.uci:.6f} LC={r.location_coef:.6f} PI={r.proximity_index:.6f}")


if __name__ == "__main__":
    main()
