"""Benchmark of B4 disparity measures: Dagum decomposition and local Moran's I against peers.

Usage::

    python bench/economy_disparity.py            # full size: 3,000 units, 9,999 permutations
    python bench/economy_disparity.py --quick    # 500 units, 999 permutations

* Dagum Gini decomposition on N units in 8 groups: citytwin (sorted cumulative sums, O(n log n)) against
  the usual pairwise-matrix implementation (O(n^2) memory and time) in the same run; both give the
  same numbers (checked). PySAL has no Dagum decomposition.
* Local Moran's I with P conditional permutations on N random points with k-nearest-neighbour
  weights: citytwin (numba kernel, single thread, running sums) against ``esda.Moran_Local``
  (numba, ``n_jobs=1``, ``keep_simulations=True`` default and ``False``), same seed, after a warm-up
  call so that neither side's JIT compilation is timed. Equality of Ii and p_sim is checked.
* Markov and spatial Markov chains (``--markov``, the default; ``--no-markov`` skips): citytwin
  (``economy.dynamics``) against ``giddy.markov.Markov`` / ``Spatial_Markov`` on N units x 20
  periods (quintiles; spatial: pooled relative quintiles on the k-nearest-neighbour W), with the
  CPU seconds of ``import giddy.markov`` in a fresh process (what a CLI run would pay to wrap
  giddy). Transition counts are checked equal.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
import warnings

import numpy as np


def machine() -> str:
    import psutil

    return (f"{platform.processor() or platform.machine()}, nproc={os.cpu_count()}, "
            f"memory={psutil.virtual_memory().total / 2**30:.1f} GiB, load={os.getloadavg()[0]:.1f}, "
            f"python {platform.python_version()}")


def naive_dagum(y: np.ndarray, g: np.ndarray) -> tuple[float, float, float, float]:
    """The common textbook implementation: full pairwise |y_i - y_j| matrices per pair of groups."""
    labels = np.unique(g)
    n, mu = y.size, y.mean()
    G = np.abs(y[:, None] - y[None, :]).sum() / (2 * n * n * mu)
    parts = {lab: y[g == lab] for lab in labels}
    gw = gnb = gt = 0.0
    for lab in labels:
        a = parts[lab]
        gjj = np.abs(a[:, None] - a[None, :]).sum() / (2 * a.size**2 * a.mean())
        gw += gjj * (a.size / n) * (a.sum() / y.sum())
    for la, lb in itertools.combinations(labels, 2):
        a, b = parts[la], parts[lb]
        if a.mean() < b.mean():
            a, b = b, a
        diff = a[:, None] - b[None, :]
        gjh = np.abs(diff).sum() / (a.size * b.size * (a.mean() + b.mean()))
        d, p = diff[diff > 0].sum(), -diff[diff < 0].sum()
        D = (d - p) / (d + p)
        wpair = gjh * (a.size / n * b.sum() / y.sum() + b.size / n * a.sum() / y.sum())
        gnb += wpair * D
        gt += wpair * (1 - D)
    return G, gw, gnb, gt


def best(f, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="500 units, 999 permutations")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--permutations", type=int, default=None)
    ap.add_argument("--k", type=int, default=8, help="neighbours of the knn weights")
    ap.add_argument("--no-markov", dest="markov", action="store_false", help="skip the Markov comparison")
    args = ap.parse_args()
    n = args.n or (500 if args.quick else 3000)
    perms = args.permutations or (999 if args.quick else 9999)
    print(f"machine: {machine()}")
    warnings.simplefilter("ignore")

    from citytwin.economy.dagum import dagum_gini

    rng = np.random.default_rng(2026)
    y = rng.lognormal(10, 0.6, n)
    g = rng.integers(0, 8, n)
    ours = dagum_gini(y, g)
    ref = naive_dagum(y, g)
    assert np.allclose((ours.g, ours.g_w, ours.g_nb, ours.g_t), ref, rtol=1e-10), "Dagum results differ"
    t_ours = best(lambda: dagum_gini(y, g), 5)
    t_naive = best(lambda: naive_dagum(y, g), 2)
    print(f"dagum    n={n} groups=8: citytwin {t_ours * 1e3:8.2f} ms | pairwise numpy {t_naive * 1e3:8.2f} ms"
          f" | ratio citytwin/naive = {t_ours / t_naive:.3f}  (results equal to 1e-10)")

    import esda
    import libpysal

    from citytwin.economy.autocorr import local_moran

    pts = rng.random((n, 2)) * 100
    w = libpysal.weights.KNN(pts, k=args.k)
    yv = pts[:, 0] * 0.05 + rng.normal(0, 1, n)  # a spatial trend plus noise
    small = libpysal.weights.KNN(pts[:50], k=3)
    t0 = time.perf_counter()
    local_moran(yv[:50], small, permutations=9, seed=1)
    c_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    esda.Moran_Local(yv[:50], small, permutations=9, seed=1)
    c_esda = time.perf_counter() - t0
    print(f"warm-up (numba compile or cache load, not in the ratio): citytwin {c_ours:.1f} s, esda {c_esda:.1f} s")

    local_moran(yv[:50], small, permutations=9, seed=1, draws="esda")
    seed = 12345
    t0 = time.perf_counter()
    lm_fast = local_moran(yv, w, permutations=perms, seed=seed)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    lm = local_moran(yv, w, permutations=perms, seed=seed, draws="esda")
    t_lm = time.perf_counter() - t0
    t0 = time.perf_counter()
    e = esda.Moran_Local(yv, w, permutations=perms, seed=seed)  # n_jobs=1, keep_simulations=True (defaults)
    t_e = time.perf_counter() - t0
    t0 = time.perf_counter()
    esda.Moran_Local(yv, w, permutations=perms, seed=seed, keep_simulations=False)
    t_e2 = time.perf_counter() - t0
    same_p = float((np.abs(lm["p_sim"].to_numpy() - e.p_sim) < 1e-12).mean())
    max_dp = float(np.abs(lm["p_sim"].to_numpy() - e.p_sim).max())
    print(f"local Moran n={n} knn k={args.k} permutations={perms} (single thread each):")
    print(f"  esda.Moran_Local (keep_simulations=True, default)   {t_e:8.2f} s")
    print(f"  esda.Moran_Local (keep_simulations=False)           {t_e2:8.2f} s")
    print(f"  citytwin draws='fast' (default; numba {_numba_version()})    {t_fast:8.2f} s"
          f"   ratio citytwin/esda = {t_fast / t_e:.3f} (vs keep_simulations=False: {t_fast / t_e2:.3f})")
    print(f"  citytwin draws='esda' (esda's exact draws)          {t_lm:8.2f} s"
          f"   ratio citytwin/esda = {t_lm / t_e:.3f} (vs keep_simulations=False: {t_lm / t_e2:.3f})")
    print(f"  draws='esda': max|dIi| = {np.abs(lm['Ii'].to_numpy() - e.Is).max():.1e}; p_sim identical for"
          f" {same_p:.1%} of units, max|dp| = {max_dp:.1e} (1/(P+1) = {1 / (perms + 1):.1e})")
    dpf = np.abs(lm_fast["p_sim"].to_numpy() - e.p_sim)
    print(f"  draws='fast': p_sim differs from esda by Monte Carlo error only: mean|dp| = {dpf.mean():.1e},"
          f" max|dp| = {dpf.max():.1e}")
    if args.markov:
        markov_bench(n, pts, w, rng)


def markov_bench(n: int, pts: np.ndarray, w: object, rng: np.random.Generator) -> None:
    """Markov and spatial Markov: citytwin vs giddy, and the cost of importing giddy."""
    import subprocess
    import sys

    import pandas as pd

    from citytwin.economy.dynamics import markov, spatial_markov

    code = ("import resource, giddy.markov; r = resource.getrusage(resource.RUSAGE_SELF); "
            "print(r.ru_utime + r.ru_stime)")
    base = ("import resource; r = resource.getrusage(resource.RUSAGE_SELF); print(r.ru_utime + r.ru_stime)")
    imp = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    py = float(subprocess.run([sys.executable, "-c", base], capture_output=True, text=True, check=True).stdout)
    from giddy.markov import Markov, Spatial_Markov

    T = 20
    Y = np.exp(np.cumsum(rng.normal(0, 0.05, (n, T)), axis=1) + pts[:, :1] * 0.01)
    long = pd.DataFrame({"id": np.repeat(np.arange(n), T), "t": np.tile(np.arange(T), n), "y": Y.ravel()})
    import libpysal

    wn = libpysal.weights.W(dict(w.neighbors), id_order=list(w.id_order), silence_warnings=True)  # type: ignore[attr-defined]
    ours = markov(long, value="y", time="t", id="id", k=5)
    q5 = ours.classes.to_numpy()
    g = Markov(q5, summary=False)
    assert (ours.transitions.to_numpy() == g.transitions).all(), "Markov counts differ"
    t_ours = best(lambda: markov(long, value="y", time="t", id="id", k=5), 3)
    t_g = best(lambda: Markov(q5, summary=False), 3)
    sm = spatial_markov(long, wn, value="y", time="t", id="id", k=5, m=5)
    wr = libpysal.weights.W(dict(w.neighbors), id_order=list(w.id_order), silence_warnings=True)  # type: ignore[attr-defined]
    wr.transform = "r"
    gs = Spatial_Markov(Y / Y.mean(axis=0), wr, fixed=True, k=5, m=5)
    assert (sm.T == gs.T).all(), "spatial Markov counts differ"
    t_sm = best(lambda: spatial_markov(long, wn, value="y", time="t", id="id", k=5, m=5), 3)
    t_gs = best(lambda: Spatial_Markov(Y / Y.mean(axis=0), wr, fixed=True, k=5, m=5), 3)
    print(f"Markov n={n} T={T} k=5: citytwin {t_ours * 1e3:8.1f} ms (from the long panel, classes included) |"
          f" giddy.Markov {t_g * 1e3:8.1f} ms (classes given) | ratio {t_ours / t_g:.3f}; counts equal")
    print(f"spatial Markov n={n} T={T} k=m=5: citytwin {t_sm * 1e3:8.1f} ms | giddy.Spatial_Markov"
          f" {t_gs * 1e3:8.1f} ms | ratio {t_sm / t_gs:.3f}; counts equal")
    print(f"import giddy.markov in a fresh process: {imp - py:.2f} CPU-s (python start-up {py:.2f} CPU-s"
          f" subtracted) -- paid by every run that wraps giddy")


def _numba_version() -> str:
    try:
        import numba

        return str(numba.__version__)
    except ImportError:  # pragma: no cover
        return "absent"


if __name__ == "__main__":
    main()
