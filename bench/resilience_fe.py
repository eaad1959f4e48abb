"""Two-way fixed effects with clustered errors: citytwin.resilience.panel.fit_fe vs pyfixest.feols.

``fit_fe`` wraps ``pyfixest.feols`` (same estimator), so the ratio is ~1 by construction: what this
measures is the wrapper's overhead (input checks, missing-row and singleton counting done by
citytwin, renaming) on a 300 × 20 panel and on a large synthetic panel (``--rows``, default
10,000,000 rows over 100,000 units). Each run is in its own process (fresh imports, its own peak
RSS); sizes are generated the same way in both (seeded), and each timing is the best of ``--repeat``.

    python bench/resilience_fe.py --quick             # 300 x 20 and 1,000,000 rows / 10,000 units
    python bench/resilience_fe.py                     # 300 x 20 and 10,000,000 rows / 100,000 units

``ratio = pyfixest seconds / citytwin seconds`` (>= 1: as fast as pyfixest). Both run with the same
demeaning tolerance (1e-10, citytwin's default); pyfixest's own default (1e-6) is timed too.
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


def make(rows: int, units: int, seed: int = 0) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    periods = rows // units
    unit = np.repeat(np.arange(units, dtype=np.int64), periods)
    year = np.tile(np.arange(2000, 2000 + periods, dtype=np.int64), units)
    ue = rng.normal(size=units)[unit]
    te = rng.normal(size=periods)[year - 2000]
    x = rng.normal(size=len(unit)) + 0.5 * ue
    z = rng.normal(size=len(unit))
    y = 0.3 * x - 0.1 * z + ue + te + rng.normal(size=len(unit))
    return pd.DataFrame({"unit": unit, "year": year, "x": x, "z": z, "y": y})


def child(impl: str, rows: int, units: int, repeat: int) -> dict[str, Any]:
    import warnings

    warnings.simplefilter("ignore")
    import pyfixest as pf

    from citytwin.resilience.panel import fit_fe

    d = make(rows, units)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    best = float("inf")
    coef = float("nan")
    for _ in range(repeat):
        t0 = time.perf_counter()
        if impl == "citytwin":
            r = fit_fe(d, "y", "x", controls=["z"], fe=["unit", "year"], cluster="unit", unit="unit", time="year")
            coef = r.estimate("x")
        else:
            tol = 1e-10 if impl == "pyfixest" else None
            m = pf.feols("y ~ x + z | unit + year", data=d, vcov={"CRV1": "unit"}, fixef_tol=tol)
            coef = float(m.coef()["x"])
        best = min(best, time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"impl": impl, "rows": rows, "units": units, "seconds": best, "coef_x": coef,
            "peak_rss_mb": round(peak, 1), "rss_after_data_mb": round(rss_data, 1)}


def run(impl: str, rows: int, units: int, repeat: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", impl, "--rows", str(rows), "--units", str(units),
                          "--repeat", str(repeat)], capture_output=True, text=True, check=True)
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--units", type=int, default=None, help="default rows / 100")
    ap.add_argument("--quick", action="store_true", help="1,000,000 rows / 10,000 units")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.rows, a.units, a.repeat)))
        return
    rows = 1_000_000 if a.quick else a.rows
    units = a.units or max(rows // 100, 1)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {os.cpu_count()} CPUs, {mem:.0f} GiB")
    results = []
    for r, u, rep in ((6_000, 300, 10), (rows, units, a.repeat)):
        row = {i: run(i, r, u, rep) for i in ("citytwin", "pyfixest", "pyfixest_tol1e-6")}
        ratio = row["pyfixest"]["seconds"] / row["citytwin"]["seconds"]
        diff = abs(row["citytwin"]["coef_x"] - row["pyfixest"]["coef_x"])
        print(f"{r:>11,} rows / {u:>7,} units: citytwin {row['citytwin']['seconds']:.3f} s "
              f"(peak {row['citytwin']['peak_rss_mb']:.0f} MB), pyfixest {row['pyfixest']['seconds']:.3f} s "
              f"(peak {row['pyfixest']['peak_rss_mb']:.0f} MB), pyfixest tol 1e-6 "
              f"{row['pyfixest_tol1e-6']['seconds']:.3f} s; ratio {ratio:.2f}; |Δcoef| {diff:.1e}")
        results.append({"rows": r, "units": u, "ratio": ratio, **{k: v for k, v in row.items()}})
    os.makedirs("bench/out", exist_ok=True)
    with open("bench/out/resilience_fe.json", "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
