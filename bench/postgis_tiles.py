"""Tile and bbox latency from PostGIS vs DuckDB over GeoParquet, same dataset, same run (issue 19).

A throw-away PostgreSQL 15 + PostGIS cluster (``tests/pg.py``'s: loopback port, ``fsync=off``) holds
the records of a workspace with one random point layer (``--points``, default 500k, around
Helsinki, a text and a number column). The version is published into PostGIS (load time printed:
DuckDB reads the GeoParquet in batches, psycopg ``COPY`` writes them, then the GiST index), then
for the same tiles and boxes, in this process, no HTTP and no tile cache:

* tile: the route's DuckDB query (``service.tiles.tile_sql``, ``ST_AsMVT`` over ``read_parquet``)
  vs ``foundation.postgis.tile`` (``ST_AsMVT`` over the GiST-indexed table);
* bbox: ``Workspace.read(bbox=…, position=…)`` (DuckDB) vs ``foundation.postgis.read_bbox``
  (each with its access check, masking and audit row).

Median and p90 per request and the PostGIS ÷ DuckDB ratio of medians are printed. Rounds are
interleaved (DuckDB, PostGIS, DuckDB, …) so machine load hits both alike.

    python bench/postgis_tiles.py --quick      # ~1 min on 2 cores

Writes ``bench/out/postgis_tiles.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"


def _pg() -> Any:
    spec = importlib.util.spec_from_file_location("citytwin_tests_pg", REPO / "tests" / "pg.py")
    assert spec is not None and spec.loader is not None
    mod = sys.modules["citytwin_tests_pg"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stats(ts: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in ts)
    return {"median_ms": round(statistics.median(ms), 2), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
            "n": len(ms)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="200k points, 2 rounds")
    args = ap.parse_args()
    if args.quick:
        args.points, args.rounds = 200_000, 2
    import geopandas as gpd
    import pandas as pd

    from citytwin.foundation import postgis
    from citytwin.foundation.readsql import covering
    from citytwin.foundation.workspace import Workspace
    from citytwin.service.tiles import BUFFER, EXTENT, TileMaker, tile_bounds, tile_of, tile_sql

    pg = _pg()
    cluster = pg.start_cluster()
    try:
        url = cluster.fresh_database()
        os.environ[postgis.ENV_POSTGIS] = "1"
        root = Path(tempfile.mkdtemp(prefix="citytwin-bench-")) / "ws"
        ws = Workspace.init(root, owner="admin", database=url)
        rng = np.random.default_rng(0)
        n = args.points
        lon, lat = 24.80 + rng.random(n) * 0.3, 60.13 + rng.random(n) * 0.15
        frame = gpd.GeoDataFrame({"name": [f"poi{i}" for i in range(n)], "value": rng.integers(0, 1000, n)},
                                 geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
        ws.write_derived("points", frame, inputs=[], parameters={}, classification="public")
        del frame
        t0 = time.perf_counter()
        pub = postgis.publish(ws, "points")
        load_s = time.perf_counter() - t0
        print(f"publish {pub.rows:,} points into PostGIS: {load_s:.2f} s ({pub.rows / load_s:,.0f} rows/s)")
        version = ws.info("points").current_version
        glob, _ = ws.stats_glob("points")
        tm = TileMaker()
        props = [(c, t.upper()) for c, t in tm.columns(glob) if c != "geometry"]
        dsql = tile_sql(glob, "geometry", props, "points", covering(glob, "geometry"))
        tiles = []
        for z in (12, 13, 14, 15):
            for k in range(6):
                x, y = tile_of(24.85 + 0.04 * k, 60.16 + 0.015 * k, z)
                tiles.append((z, x, y))
        boxes = [(24.85 + 0.03 * k, 60.15 + 0.01 * k, 24.86 + 0.03 * k, 60.155 + 0.01 * k) for k in range(8)]
        res: dict[str, dict[str, list[float]]] = {"tile": {"duckdb": [], "postgis": []},
                                                 "bbox": {"duckdb": [], "postgis": []}}
        same = True
        for _ in range(args.rounds):
            for z, x, y in tiles:
                w, s, e, nn = tile_bounds(z, x, y)
                mx, my = (e - w) * BUFFER / EXTENT, (nn - s) * BUFFER / EXTENT
                t = time.perf_counter()
                tm.make(("b", time.perf_counter_ns()), dsql, z, x, y)  # a fresh key: never cached
                res["tile"]["duckdb"].append(time.perf_counter() - t)
                t = time.perf_counter()
                postgis.tile(ws, "points", version, [c for c, _ in props], z, x, y, (w - mx, s - my, e + mx, nn + my))
                res["tile"]["postgis"].append(time.perf_counter() - t)
            for b in boxes:
                t = time.perf_counter()
                a = ws.read("points", bbox=b, position="_fid")
                res["bbox"]["duckdb"].append(time.perf_counter() - t)
                t = time.perf_counter()
                p = postgis.read_bbox(ws, "points", None, b, "_fid")
                res["bbox"]["postgis"].append(time.perf_counter() - t)
                same &= a["_fid"].tolist() == p["_fid"].tolist() and bool(
                    pd.Series(a["name"]).equals(pd.Series(p["name"])))
        out: dict[str, Any] = {"points": n, "rounds": args.rounds, "publish_s": round(load_s, 3),
                               "same_records": same}
        print(f"{n:,} points; {len(tiles)} tiles (z12-15) and {len(boxes)} boxes x {args.rounds} rounds; "
              f"bbox reads give the same records on both: {same}")
        for kind in ("tile", "bbox"):
            d, p_ = _stats(res[kind]["duckdb"]), _stats(res[kind]["postgis"])
            ratio = p_["median_ms"] / d["median_ms"]
            out[kind] = {"duckdb": d, "postgis": p_, "postgis_over_duckdb": round(ratio, 3)}
            print(f"{kind:5} duckdb median {d['median_ms']:8.2f} ms p90 {d['p90_ms']:8.2f} | postgis median "
                  f"{p_['median_ms']:8.2f} ms p90 {p_['p90_ms']:8.2f} | postgis/duckdb {ratio:.3f}")
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "postgis_tiles.json").write_text(json.dumps(out, indent=2))
    finally:
        pg.stop_cluster(cluster)


if __name__ == "__main__":
    main()
