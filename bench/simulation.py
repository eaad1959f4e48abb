"""Simulation overhead: simulated vehicle-seconds per wall second of citytwin's runs vs SUMO alone on the
same network and demand, and max-pressure control time per step.

A netgenerate grid (``--grid N`` x N signalised junctions, 200 m blocks) with random fringe-to-fringe
trips (``--trips``, over 900 s) is built once, then timed (best of ``--repeat``):

- **SUMO alone**: the scenario stepped with no outputs and no control, through libsumo (in-process) and
  through TraCI (socket to a ``sumo`` process); vehicle-seconds counted per step;
- **citytwin**: ``workflows.simulation.run`` with one seed (trip, summary, statistic and edge outputs,
  parsed into metrics), fixed control (``sumo`` binary) and max-pressure through libsumo and TraCI.

``ratio = citytwin vehicle-s per wall s / SUMO alone's`` (goal: >= 0.8 with libsumo). Max-pressure
overhead = time in the controller (lane counts, decisions, state changes) / steps.

    python bench/simulation.py --quick        # 3 x 3 grid, 600 trips (under a minute)
    python bench/simulation.py                # 4 x 4 grid, 1,500 trips (about 1.5 min)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def bare(sc: dict[str, Any], backend: str, outputs: Path | None = None) -> tuple[float, float]:
    """Wall seconds and vehicle-seconds of SUMO alone stepping the scenario (with ``outputs``: writing the
    same outputs as citytwin's runs into that folder: trip, summary, statistic, edge and emission edge data
    over all lanes; nothing parsed)."""
    import subprocess

    from citytwin.workflows import simulation as sim

    mod = sim.traci_module(backend)
    args = [sim._bin("sumo"), "-n", str(sc["net"]), "-r", ",".join(map(str, sc["routes"])), "--no-step-log",
            "true", "--no-warnings", "true", "--seed", "1"]
    if outputs is not None:
        (outputs / "e.add.xml").write_text('<additional><edgeData id="t" file="e1.xml"/><edgeData id="e" '
                                           'type="emissions" file="e2.xml" withInternal="true"/></additional>')
        args += ["-a", str(outputs / "e.add.xml"), "--tripinfo-output", str(outputs / "ti.xml"),
                 "--summary-output", str(outputs / "s.xml"), "--statistic-output", str(outputs / "st.xml")]
    t0 = time.perf_counter()
    if backend == "traci":
        import contextlib

        with contextlib.redirect_stdout(sys.stderr):
            mod.start(args, stdout=subprocess.DEVNULL)
    else:
        mod.start(args)
    vs = 0.0
    try:
        while mod.simulation.getMinExpectedNumber() > 0:
            mod.simulationStep()
            vs += mod.vehicle.getIDCount()
    finally:
        mod.close()
    return time.perf_counter() - t0, vs


def ours(sc_dir: Path, control: str, backend: str) -> tuple[float, float, dict[str, Any]]:
    from citytwin.workflows import simulation as sim

    out = Path(tempfile.mkdtemp()) / "run"
    t0 = time.perf_counter()
    s = sim.run(sc_dir, out, seeds=1, control=control, backend=backend)
    wall = time.perf_counter() - t0
    shutil.rmtree(out.parent)
    return wall, float(s["per_seed"][0]["vehicle_seconds"]), s["per_seed"][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--grid", type=int)
    ap.add_argument("--trips", type=int)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    n = a.grid or (3 if a.quick else 4)
    trips_n = a.trips or (600 if a.quick else 1500)
    from citytwin.workflows import simulation as sim

    work = Path(tempfile.mkdtemp(prefix="simbench"))
    try:
        sim.grid_scenario(work / "g0", n=n, trips=[])
        trips = sim.random_trips(work / "g0" / "net.net.xml", end=900, period=900 / trips_n, seed=1, fringe=True)
        sim.grid_scenario(work / "sc", n=n, trips=trips)
        sc = sim.load_scenario(work / "sc")
        res: dict[str, Any] = {"grid": n, "trips": len(trips), "nproc": os.cpu_count(), "repeat": a.repeat}
        for backend in ("libsumo", "traci"):
            best = min((bare(sc, backend) for _ in range(a.repeat)), key=lambda r: r[0])
            res[f"alone_{backend}"] = {"wall_s": best[0], "vehicle_s": best[1], "veh_s_per_s": best[1] / best[0]}
        # SUMO alone writing the same outputs: separates SUMO's own output cost from citytwin's overhead
        best = min((bare(sc, "libsumo", work) for _ in range(a.repeat)), key=lambda r: r[0])
        res["alone_libsumo_outputs"] = {"wall_s": best[0], "vehicle_s": best[1], "veh_s_per_s": best[1] / best[0]}
        for control, backend in (("fixed", "sumo"), ("maxpressure", "libsumo"), ("maxpressure", "traci")):
            runs = [ours(work / "sc", control, backend if backend != "sumo" else "libsumo")
                    for _ in range(a.repeat)]
            wall, vs, row = min(runs, key=lambda r: r[0])
            ref = res["alone_traci" if backend == "traci" else "alone_libsumo"]["veh_s_per_s"]
            entry = {"wall_s": wall, "vehicle_s": vs, "veh_s_per_s": vs / wall, "ratio": vs / wall / ref}
            if backend != "traci":
                entry["ratio_same_outputs"] = vs / wall / res["alone_libsumo_outputs"]["veh_s_per_s"]
            if control == "maxpressure":
                entry["control_ms_per_step"] = 1000 * row["control_s"] / row["steps"]
            res[f"citytwin_{control}_{backend}"] = entry
        print(json.dumps(res, indent=2))
        for k, v in res.items():
            if isinstance(v, dict):
                extra = f", ratio {v['ratio']:.2f}" if "ratio" in v else ""
                extra += f" ({v['ratio_same_outputs']:.2f} vs same outputs)" if "ratio_same_outputs" in v else ""
                mp = f", control {v['control_ms_per_step']:.3f} ms/step" if "control_ms_per_step" in v else ""
                print(f"{k:<32} {v['veh_s_per_s']:>12.0f} veh-s/s  wall {v['wall_s']:.2f} s{extra}{mp}",
                      file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
