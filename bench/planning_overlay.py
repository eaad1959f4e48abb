"""Plan-conflict overlay and land-change detection (E4, E5): citytwin.planning vs GeoPandas ``overlay``.

Two generated layers of ``--n`` polygons each (a grid of squares and a shifted, slightly rotated grid
of the same size; no overlaps within a layer; WGS84 near Helsinki) and two land-use snapshots of
``--change-n`` polygons each (the same construction, with classes). What is timed, each in its own
process (fresh imports, its own peak RSS):

- conflicts: ``find_conflicts`` with one ``overlaps`` rule (layer checks incl. the within-layer
  overlap check, intersection pieces, equal-area areas) vs ``geopandas.overlay(a, b, "intersection")``
  followed by the same equal-area areas (``to_crs(laea).area``); also timed without our layer checks;
- change: ``land_change`` (pieces incl. the parts covered by one snapshot only, transition matrix,
  rates) vs ``geopandas.overlay(before, after, "union")`` + equal-area areas + a pivot table.

The checks are not equivalent. GeoPandas ``overlay`` (default ``make_valid=True``) tests every input
geometry with ``is_valid`` and repairs the invalid ones, refuses layers of mixed geometry types and
only warns when the two CRS differ. citytwin's layer checks (:func:`citytwin.planning.overlay.check_layer`)
also refuse a layer with no CRS, an empty layer, missing or empty geometries and non-polygons, and
look for overlaps between the features of each layer (measured, refused above the tolerance), which
GeoPandas does not do at all.

Both sides produce the same total area (checked, printed). Each case runs ``--rounds`` times,
interleaved (ours, GeoPandas, ours without checks, then again), each in a fresh process; the best
round of each is reported, as wall seconds and as CPU seconds (user + system of the process, all
threads: the fair figure on a shared machine, and the one that shows what threads add).
``ratio = geopandas seconds / citytwin seconds`` (> 1: citytwin faster). Imports are outside the
timed section on both sides; numba loading its cached kernels at their first call is inside ours.

    python bench/planning_overlay.py --quick      # 10,000 + 10,000 polygons, change on 20,000
    python bench/planning_overlay.py              # 100,000 + 100,000, change on 1,000,000
    python bench/planning_overlay.py --only conflicts --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

LAEA = "+proj=laea +lat_0=60.2 +lon_0=24.9 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"


def layers(n: int, seed: int = 0) -> tuple[Any, Any]:
    """Two layers of about ``n`` squares each: a grid, and a shifted grid rotated by 7 degrees."""
    import geopandas as gpd
    import numpy as np
    import shapely

    side = int(np.ceil(np.sqrt(n)))
    d = 0.001
    ij = np.arange(side * side)[:n]
    x, y = 24.5 + (ij % side) * d, 60.0 + (ij // side) * d * 0.5
    a = shapely.box(x, y, x + d, y + d * 0.5)
    rng = np.random.default_rng(seed)
    # the second layer: rectangles of 0.9 x 0.45 d shifted by (d/3, d/7), each rotated by 7 degrees about
    # its centre (small enough that neighbours never overlap)
    cx, cy = x + d / 3 + d * 0.45, y + d / 7 + d * 0.225
    hx, hy = np.array([-1, 1, 1, -1, -1]) * d * 0.45, np.array([-1, -1, 1, 1, -1]) * d * 0.225
    th = np.deg2rad(7)
    px = cx[:, None] + hx * np.cos(th) - hy * np.sin(th)
    py = cy[:, None] + hx * np.sin(th) + hy * np.cos(th)
    b = shapely.polygons(np.stack([px, py], axis=-1))
    classes = np.array(["farm", "forest", "construction", "water"])
    ga = gpd.GeoDataFrame({"landuse": classes[rng.integers(0, 4, len(a))]}, geometry=a, crs=4326)
    gb = gpd.GeoDataFrame({"landuse": classes[rng.integers(0, 4, len(b))]}, geometry=b, crs=4326)
    return ga, gb


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_case(case: str, n: int) -> dict[str, Any]:
    import geopandas as gpd
    from pyproj import CRS

    from citytwin.planning.change import land_change
    from citytwin.planning.overlay import find_conflicts, parse_rules

    a, b = layers(n)
    ea = CRS.from_proj4(LAEA)
    t0, c0 = time.perf_counter(), _cpu()
    if case in ("conflicts_citytwin", "conflicts_citytwin_nocheck"):
        r = find_conflicts({"A": a, "B": b}, parse_rules([{"name": "r", "layer": "A", "overlaps": "B"}], ["A", "B"]),
                           crs=ea, check=case == "conflicts_citytwin")
        total, pieces = float(r.summary["area_m2"].sum()), len(r.conflicts)
    elif case == "conflicts_geopandas":
        o = gpd.overlay(a, b, how="intersection", keep_geom_type=True)
        total, pieces = float(o.to_crs(ea).area.sum()), len(o)
    elif case == "change_citytwin":
        c = land_change(a, b, years=5, crs=ea)
        total, pieces = float(c.matrix.to_numpy().sum()), len(c.pieces)
    elif case == "change_geopandas":
        o = gpd.overlay(a, b, how="union", keep_geom_type=True)
        o["area_m2"] = o.to_crs(ea).area
        m = o.pivot_table(index="landuse_1", columns="landuse_2", values="area_m2", aggfunc="sum", dropna=False)
        total, pieces = float(o["area_m2"].sum()), len(o)
        del m
    else:
        raise SystemExit(f"unknown case {case}")
    secs, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"case": case, "n": n, "seconds": secs, "cpu_seconds": cpu, "total_area_m2": total, "pieces": pieces,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child(case: str, n: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", case, "--n", str(n)], capture_output=True, text=True,
                         check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The best of several rounds of one case: least wall and least CPU seconds (each its own minimum),
    the largest peak RSS, and every round."""
    out = dict(runs[0])
    out["seconds"] = min(r["seconds"] for r in runs)
    out["cpu_seconds"] = min(r["cpu_seconds"] for r in runs)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["rounds"] = runs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None, help="polygons per layer (conflicts)")
    ap.add_argument("--change-n", type=int, default=None, help="polygons per snapshot (change)")
    ap.add_argument("--only", choices=["conflicts", "change"], default=None, help="run one of the two")
    ap.add_argument("--rounds", type=int, default=1, help="rounds per case (interleaved; the best is reported)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.n)))
        return
    n = args.n or (10_000 if args.quick else 100_000)
    cn = args.change_n or (20_000 if args.quick else 1_000_000)
    print(f"nproc {os.cpu_count()}, memory {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB, "
          f"load average {os.getloadavg()[0]:.1f}, best of {args.rounds} round(s)")
    results = []
    for what, size in (("conflicts", n), ("change", cn)):
        if args.only and what != args.only:
            continue
        cases = [f"{what}_citytwin", f"{what}_geopandas"] + (["conflicts_citytwin_nocheck"] if what == "conflicts" else [])
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in cases}
        for _ in range(args.rounds):
            for c in cases:
                runs[c].append(child(c, size))
        ct, gp = best(runs[cases[0]]), best(runs[cases[1]])
        ratio, cpu_ratio = gp["seconds"] / ct["seconds"], gp["cpu_seconds"] / ct["cpu_seconds"]
        print(f"{what:<10} n={size:>9,}  citytwin {ct['seconds']:8.2f} s ({ct['cpu_seconds']:7.2f} CPU-s) "
              f"{ct['peak_rss_mb']:6.0f} MB  geopandas {gp['seconds']:8.2f} s ({gp['cpu_seconds']:7.2f} CPU-s) "
              f"{gp['peak_rss_mb']:6.0f} MB  ratio {ratio:5.2f} (CPU {cpu_ratio:5.2f})  "
              f"area citytwin {ct['total_area_m2']:.6g} / geopandas {gp['total_area_m2']:.6g} m²")
        rec = {"what": what, "n": size, "citytwin": ct, "geopandas": gp, "ratio": ratio, "cpu_ratio": cpu_ratio,
               "load_average": os.getloadavg()[0]}
        if what == "conflicts":  # the same without our layer checks
            nc = best(runs["conflicts_citytwin_nocheck"])
            rec["citytwin_without_checks"] = nc
            print(f"{'':<10} without our layer checks: citytwin {nc['seconds']:8.2f} s ({nc['cpu_seconds']:7.2f} CPU-s), "
                  f"ratio {gp['seconds'] / nc['seconds']:5.2f} (CPU {gp['cpu_seconds'] / nc['cpu_seconds']:5.2f})")
            print(f"{'':<10} checks: ours = CRS present, no missing/empty/non-polygon features, validity "
                  f"(repaired), overlaps within each layer; GeoPandas overlay = validity (repaired), mixed types, "
                  f"CRS mismatch warning; not equivalent")
        results.append(rec)
    os.makedirs("bench/out", exist_ok=True)
    with open("bench/out/planning_overlay.json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
