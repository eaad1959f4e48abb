"""What the GeoParquet covering and spatial order of ingested point layers cost and give (issue 14).

The ingest's Arrow path can write point records as GeoParquet 1.1 with a bbox covering (the
coordinates themselves; ``foundation.geoparquet.INGEST_POINTS``, off by default) and, with
``ingest.streamed.ORDER_POINTS``, each chunk of more than one row group in Hilbert order. This
script ingests the same generated POI CSV (``poi_id, name, category, lon, lat``, random order over
1 x 1 degree around Beijing, H3 cells on) three ways, interleaved (off, on, ordered, off ...
``--repeat`` rounds), each run in a child process, and reports per variant the wall time, the CPU seconds of the child (all its threads:
on a shared machine CPU is steadier than wall time), peak RSS and file size; then, per variant,
the small-bbox read the operations center does (``bench/service_latency.py``'s
``big_layer_layout`` and ``bbox_read_peer``, called as they are: row groups overlapping its box by
the covering's statistics, and the pushed-down ``Workspace.read(bbox=)`` against a whole read
filtered by GeoPandas).

    python bench/point_covering.py                 # 2M points, 2 rounds
    python bench/point_covering.py --rows 500000 --repeat 3

Writes ``bench/out/point_covering.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def make_csv(path: Path, n: int) -> None:
    """``n`` random POIs in random order (no spatial order in the source)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(0)
    cats = np.array(["restaurant", "shop", "school", "hospital", "bank", "hotel", "park", "bus_stop"])
    t = pa.table({"poi_id": pa.array(np.char.add("P", np.arange(n).astype(str))),
                  "name": pa.array(np.char.add("poi ", rng.integers(0, 10 * n, n).astype(str))),
                  "category": pa.array(cats[rng.integers(0, len(cats), n)]),
                  "lon": rng.uniform(116.0, 117.0, n).round(6), "lat": rng.uniform(39.5, 40.5, n).round(6)})
    pacsv.write_csv(t, path)


def _service_latency() -> Any:
    spec = importlib.util.spec_from_file_location("service_latency", HERE / "service_latency.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def child(csv: str, root: str, cover: str) -> None:
    """One ingest (covering on or off) into a new workspace; prints a JSON line."""
    from citytwin.foundation import geoparquet
    from citytwin.foundation.ingest import ingest, streamed
    from citytwin.foundation.workspace import Workspace

    geoparquet.INGEST_POINTS = cover != "off"
    streamed.ORDER_POINTS = cover == "ordered"
    ws = Workspace.init(Path(root), owner="admin")
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    res = ingest(ws, Path(csv), dataset="big_points", schema="poi", classification="public")
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - t0
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    hwm = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    size = sum(f.stat().st_size for f in (ws.root / ws.info("big_points").current.path).glob("*.parquet"))
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": hwm, "rows": res.rows_kept,
                      "pipeline": ws.info("big_points").current.params["pipeline"], "file_mib": size / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tmp", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "point_covering.json")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    tmp = Path(tempfile.mkdtemp(prefix="ct-pcov-", dir=args.tmp))
    try:
        csv = tmp / "poi.csv"
        make_csv(csv, args.rows)
        print(f"{args.rows:,} POIs, CSV {csv.stat().st_size / 2**20:.0f} MiB; load {os.getloadavg()[0]:.1f} "
              f"(2 cores shared: compare within this run only)")
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": [], "ordered": []}
        for r in range(args.repeat):
            for variant in runs:
                root = tmp / f"ws-{variant}-{r}"
                out = subprocess.run([sys.executable, __file__, "--child", str(csv), str(root), variant],
                                     capture_output=True, text=True, check=True)
                run = json.loads(out.stdout.strip().splitlines()[-1])
                run["load"] = os.getloadavg()[0]
                runs[variant].append(run)
                print(f"  round {r + 1} covering {variant:7s}: wall {run['wall_s']:6.2f} s  cpu {run['cpu_s']:6.2f} s  "
                      f"peak RSS {run['peak_rss_mib']:5.0f} MiB  file {run['file_mib']:5.1f} MiB  "
                      f"({run['pipeline']}, load {run['load']:.1f})")
                if r < args.repeat - 1:
                    shutil.rmtree(root)
        best = {v: {k: min(x[k] for x in runs[v]) for k in ("wall_s", "cpu_s", "peak_rss_mib", "file_mib")}
                for v in runs}
        for v in ("on", "ordered"):
            print(f"best of {args.repeat}: cpu {v}/off {best[v]['cpu_s'] / best['off']['cpu_s']:.2f}, "
                  f"wall {v}/off {best[v]['wall_s'] / best['off']['wall_s']:.2f}, "
                  f"file {v}/off {best[v]['file_mib'] / best['off']['file_mib']:.2f}")
        sl = _service_latency()
        reads: dict[str, Any] = {}
        for variant in runs:
            root = tmp / f"ws-{variant}-{args.repeat - 1}"
            layout = sl.big_layer_layout(root)
            peer = sl.bbox_read_peer(root)
            reads[variant] = {**layout, **peer}
            print(f"  covering {variant:7s}: {layout['row_groups_overlapping_box']} of {layout['row_groups']} row "
                  f"groups overlap the box {sl.BIG_BOX}; bbox read {peer['pushed_ms']:.0f} ms "
                  f"({peer['features']:,} points) vs whole read + GeoPandas {peer['whole_then_geopandas_ms']:.0f} ms")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": args.rows, "runs": runs, "best": best, "bbox_read": reads,
                                        "stdev_cpu": {v: statistics.pstdev(x["cpu_s"] for x in runs[v])
                                                      for v in runs}}, indent=2))
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
