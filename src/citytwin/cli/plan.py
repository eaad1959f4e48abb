"""`citytwin plan ...` commands: conflicts, change, reserve, sites, project (E1–E5).

Thin layer: parse options, call :mod:`citytwin.workflows.planning`, print. With ``--json`` the output
is JSON, errors included (``{"error": ..., "hint": ...}``, exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from citytwin.cli.common import (
    DaskOpt,
    JsonOpt,
    UserOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    print_json,
)
from citytwin.foundation.errors import CitytwinError

app = typer.Typer(help="Planning and renewal: plan conflicts, land change, reserve land, renewal sites, "
                       "projects.", no_args_is_help=True)
project_app = typer.Typer(help="Renewal projects: planning -> financing -> construction -> monitoring -> "
                               "evaluation -> feedback.", no_args_is_help=True)
app.add_typer(project_app, name="project")


OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]


def _print(summary: Any, as_json: bool, lines: list[str]) -> None:
    if as_json:
        print_json(summary)
        return
    for w in (summary.get("warnings", []) if isinstance(summary, dict) else []) or []:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


@app.command("conflicts")
@handle_errors
def conflicts_cmd(
    layer: Annotated[list[str], typer.Option("--layer", help="NAME=DATASET_OR_FILE (repeat for each layer).")],
    rules: Annotated[Path, typer.Option("--rules", help="Rules file (YAML list of {name, layer, overlaps|outside}).")],
    out: OutOpt,
    store: Annotated[str | None, typer.Option("--store", help="Also store the conflicts as this derived dataset.")]
    = None,
    overlap_tolerance: Annotated[float | None, typer.Option(
        "--overlap-tolerance", help="Accept overlaps within a layer up to this share of the smaller polygon "
                                    "(e.g. 0.02 for simplified boundaries; default: none beyond rounding).")] = None,
    workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False,
) -> None:
    """Conflicts between plan layers -> OUT/conflicts.parquet (GeoParquet) and OUT/summary.csv (rule, n, area_m2).

    Example: citytwin plan conflicts --layer landuse=plan.gpkg --layer redline=redline.geojson
    --rules rules.yaml --out out/
    """
    from citytwin.workflows.planning import conflicts

    s = conflicts(layer, rules, out, workspace=workspace, user=user, store=store, overlap_tolerance=overlap_tolerance)
    lines = [f"  {r['rule']:<28} {r['n']:>7}  {r['area_m2']:>16,.1f} m²" for r in s["summary"]]
    _print(s, as_json, ["rule                               n           area", *lines,
                        f"areas in {s['crs_of_areas']} -> {out}"])


@app.command("change")
@handle_errors
def change_cmd(
    before: Annotated[str, typer.Argument(help="Earlier land-use snapshot (file, s3:// GeoParquet object or dataset).")],
    after: Annotated[str, typer.Argument(help="Later land-use snapshot (file, s3:// GeoParquet object or dataset).")],
    out: OutOpt,
    column: Annotated[str, typer.Option("--column", help="Land-use class column.")] = "landuse",
    years: Annotated[float, typer.Option("--years", help="Years between the snapshots.")] = 1.0,
    classes: Annotated[str | None, typer.Option("--classes", help="Allowed classes, comma-separated.")] = None,
    layer: Annotated[list[str] | None, typer.Option("--layer", help="Plan layer NAME=DATASET_OR_FILE for --rules.")]
    = None,
    rules: Annotated[Path | None, typer.Option("--rules", help="Rules on layer 'change' (flag violations).")] = None,
    hotspots: Annotated[int | None, typer.Option("--hotspots", help="H3 resolution of change hot spots (G*).")]
    = None,
    store: Annotated[str | None, typer.Option("--store", help="Also store the changes as this derived dataset.")]
    = None,
    overlap_tolerance: Annotated[float | None, typer.Option(
        "--overlap-tolerance", help="Accept overlaps within a snapshot up to this share of the smaller polygon "
                                    "(counted once per feature; default: none beyond rounding).")] = None,
    workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False, dask: DaskOpt = None,
) -> None:
    """Land change between two snapshots -> OUT/changes.parquet, transitions.csv, rates.csv.

    With --dask the snapshots (files or s3:// GeoParquet objects, read by the workers) are cut in west-east
    stripes on Dask, with the same result.
    Example: citytwin plan change lu2015.gpkg lu2020.gpkg --column class --years 5 --out out/
    """
    from citytwin.cli.common import task_progress
    from citytwin.workflows.planning import change

    cls = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    with task_progress(f"land change: stripes on Dask ({dask})", enabled=bool(dask)) as tasks:
        s = change(before, after, out, column=column, years=years, classes=cls, layers=layer or None, rules=rules,
                   hotspots=hotspots, workspace=workspace, user=user, store=store,
                   overlap_tolerance=overlap_tolerance, dask=dask, progress=tasks)
    _print(s, as_json, [f"{s['n_changes']} change polygons, {s['changed_area_m2']:,.1f} m² changed of "
                        f"{s['total_area_m2']:,.1f} m² over {s['years']:g} years -> {out}"])


@app.command("reserve")
@handle_errors
def reserve_cmd(
    out: OutOpt,
    planned_total_km2: Annotated[float, typer.Option("--planned-total-km2", help="Planned construction land.")],
    years: Annotated[str, typer.Option("--years", help="Planning years, comma-separated.")],
    population: Annotated[str | None, typer.Option("--population", help="Population table (year, population).")]
    = None,
    reserve_km2: Annotated[float | None, typer.Option("--reserve-km2", help="Reserve amount (given).")] = None,
    reserve_ratio: Annotated[float | None, typer.Option("--reserve-ratio", help="Reserve ratio (given).")] = None,
    per_capita_m2: Annotated[float, typer.Option("--per-capita-m2", help="Construction land per person.")] = 100.0,
    climate_zone: Annotated[str, typer.Option("--climate-zone", help="GB 50137-2011 zone I..VII.")] = "II",
    activation_year: Annotated[int | None, typer.Option("--activation-year", help="Not activated before.")]
    = None,
    capacity: Annotated[float | None, typer.Option("--capacity", help="Logistic carrying capacity.")] = None,
    may_shrink: Annotated[bool, typer.Option("--may-shrink", help="Allow the reserve to fall.")] = False,
    workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False,
) -> None:
    """Strategic reserve land per planning year -> OUT/reserve.csv (and forecast.csv).

    Example (Beijing 2020): citytwin plan reserve --planned-total-km2 2760 --reserve-km2 132
    --activation-year 2035 --years 2020,2035 --out out/
    """
    from citytwin.workflows.planning import reserve

    try:
        ys = [int(y) for y in years.split(",") if y.strip()]
    except ValueError:
        raise CitytwinError(f"bad --years {years!r}", hint="e.g. --years 2025,2030,2035") from None
    s = reserve(population, out, planned_total_km2=planned_total_km2, target_years=ys, reserve_km2=reserve_km2,
                reserve_ratio=reserve_ratio, per_capita_m2=per_capita_m2, climate_zone=climate_zone,
                activation_year=activation_year, may_only_grow=not may_shrink, capacity=capacity,
                workspace=workspace, user=user)
    lines = [f"  {r['year']}  reserve {r['reserve_km2']:.2f} km²  ratio {r['ratio_pct']:.2f} %  "
             f"activatable {r['activatable']}" for r in s["table"]]
    _print(s, as_json, [f"method: {s['params']['method']}", *lines, f"-> {out}"])


@app.command("sites")
@handle_errors
def sites_cmd(
    table: Annotated[str, typer.Argument(help="Candidate sites (CSV/XLSX/Parquet or dataset).")],
    out: OutOpt,
    criteria: Annotated[str, typer.Option("--criteria", help="COLUMN:benefit|cost,... (benefit: more need).")],
    site: Annotated[str, typer.Option("--site", help="Site id column.")] = "site",
    weights: Annotated[str, typer.Option("--weights", help="entropy | critic | equal | COL=W,...")] = "entropy",
    delta: Annotated[float, typer.Option("--delta", help="Relative weight perturbation.")] = 0.2,
    draws: Annotated[int, typer.Option("--draws", help="Sensitivity draws.")] = 500,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False,
) -> None:
    """Rank renewal sites with each criterion's contribution and rank stability -> OUT/ranking.csv.

    Example: citytwin plan sites blocks.csv --criteria age:benefit,vacancy:benefit,vitality:cost --out out/
    """
    from citytwin.workflows.planning import sites

    s = sites(table, out, criteria=criteria, site=site, weights=weights, delta=delta, draws=draws, seed=seed,
              workspace=workspace, user=user)
    lines = [f"  {r['rank']:>3}  {r[site]!s:<20} {r['score']:.4f}" for r in s["top"]]
    _print(s, as_json, [f"weights ({s['method']}): " + ", ".join(f"{k}={v:.3f}" for k, v in s["weights"].items()),
                        *lines, f"rank stability: mean Spearman {s['stability']['spearman_mean']:.3f} -> {out}"])


@project_app.command("create")
@handle_errors
def project_create(
    pid: Annotated[str, typer.Argument(help="Project id.")],
    name: Annotated[str, typer.Option("--name")],
    owner: Annotated[str, typer.Option("--owner")],
    budget: Annotated[float | None, typer.Option("--budget")] = None,
    site: Annotated[str | None, typer.Option("--site")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", help="INDICATOR=VALUE (repeat).")] = None,
    workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create a renewal project (stage planning).

    Example: citytwin plan project create p1 --name "Old town" --owner district --budget 2e7 --target vitality=0.5
    """
    from citytwin.workflows.planning import parse_weights, project_store

    targets = parse_weights(",".join(target)) if target else {}
    if isinstance(targets, str):
        raise CitytwinError(f"bad --target {target!r}", hint="use --target INDICATOR=VALUE")
    rec = project_store(workspace, user).create(pid, name=name, owner=owner, budget=budget, site=site,
                                                targets=targets)
    _print(rec, as_json, [f"project {pid} created (stage {rec['stage']})"])


@project_app.command("move")
@handle_errors
def project_move(
    pid: Annotated[str, typer.Argument(help="Project id.")],
    stage: Annotated[str, typer.Argument(help="New stage.")],
    note: Annotated[str | None, typer.Option("--note")] = None,
    workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False,
) -> None:
    """Move a project to another stage (illegal transitions are refused).

    Example: citytwin plan project move p1 financing
    """
    from citytwin.workflows.planning import project_store

    rec = project_store(workspace, user).move(pid, stage, note)
    _print(rec, as_json, [f"project {pid}: stage {rec['stage']}"])


@project_app.command("show")
@handle_errors
def project_show(
    pid: Annotated[str | None, typer.Argument(help="Project id (all projects if left out).")] = None,
    workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show one project with its history and milestones, or list all.

    Example: citytwin plan project show p1
    """
    from citytwin.workflows.planning import project_store

    store = project_store(workspace, user)
    if pid is None:
        rows = store.list()
        _print(rows, as_json, [f"  {r['id']:<12} {r['stage']:<13} {r['name']} ({r['owner']})" for r in rows])
        return
    rec = store.get(pid)
    lines = [f"{rec['id']}: {rec['name']} — owner {rec['owner']}, budget {rec['budget']}, stage {rec['stage']}",
             *[f"  {h['ts']}  {h['from_stage'] or '-'} -> {h['to_stage']}  {h['note'] or ''}" for h in rec["history"]],
             *[f"  milestone {m['name']}: {m['indicator'] or ''} {m['value'] if m['value'] is not None else ''}"
               for m in rec["milestones"]]]
    _print(rec, as_json, lines)


@project_app.command("outcome")
@handle_errors
def project_outcome(
    pid: Annotated[str, typer.Argument(help="Project id.")],
    data: Annotated[str, typer.Argument(help="Observations (file or dataset): outcome, treated, post.")],
    outcome: Annotated[str, typer.Option("--outcome", help="Outcome column (the indicator).")],
    treated: Annotated[str, typer.Option("--treated", help="1 for the project area, 0 for comparison areas.")],
    post: Annotated[str, typer.Option("--post", help="1 after the project, 0 before.")],
    cluster: Annotated[str | None, typer.Option("--cluster", help="Cluster column (area).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder.")] = None,
    workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False,
) -> None:
    """A project's outcome by difference-in-differences, beside its target.

    Example: citytwin plan project outcome p1 obs.csv --outcome vitality --treated treated --post post --cluster area
    """
    from citytwin.workflows.planning import outcome as run

    s = run(pid, data, outcome_col=outcome, treated=treated, post=post, cluster=cluster, workspace=workspace,
            user=user, out=out)
    _print(s, as_json, [f"{pid} {outcome}: effect {s['effect']:.4g} (95 % CI {s['ci95'][0]:.4g} .. "
                        f"{s['ci95'][1]:.4g}), target {s['target']}, met {s['target_met']}"])


@app.command("demo")
@handle_errors
def demo_cmd(
    out: OutOpt,
    cell_m: Annotated[float, typer.Option("--cell-m", help="Grid cell size of the demo land-use plan (m).")] = 250.0,
    workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False,
) -> None:
    """E1–E5 on the Helsinki layers of the demo workspace, with plan layers BUILT FOR THE DEMO from OSM.

    Example: citytwin plan demo -w ./citytwin-demo --out out/plan-demo
    """
    from citytwin.workflows.planning import helsinki_demo

    s = helsinki_demo(_ws_required(workspace), out, user=user, cell_m=cell_m)
    lines = [f"  {r['rule']:<32} {r['n']:>6} {r['area_m2']:>14,.1f} m²" for r in s["conflicts"]]
    _print(s, as_json, [f"{s['cells']} grid cells; conflicts (areas in {s['crs_of_areas']}):", *lines,
                        f"change: {s['change']['changed_area_m2']:,.1f} of {s['change']['total_area_m2']:,.1f} m²; "
                        f"{s['reserve_zones']} reserve zone(s) -> {out}"])


def _ws_required(workspace: Path | None) -> Path:
    if workspace is None:
        raise CitytwinError("no workspace given", hint="pass --workspace DIR or set CITYTWIN_WORKSPACE")
    return workspace


@app.command("zone")
@handle_errors
def zone_cmd(
    candidates: Annotated[str, typer.Argument(help="Candidate land polygons (file or dataset).")],
    out: OutOpt,
    criteria: Annotated[str, typer.Option("--criteria", help="COLUMN:WEIGHT:benefit|cost,... (suitability).")],
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Constraint layer (repeat).")] = None,
    min_area_m2: Annotated[float, typer.Option("--min-area-m2", help="Minimum contiguous zone size.")] = 0.0,
    target_m2: Annotated[float | None, typer.Option("--target-m2", help="Select zones up to this area.")] = None,
    workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False,
) -> None:
    """Zone reserve land among candidates -> OUT/zones.parquet (red lines excluded, small zones dropped).

    Example: citytwin plan zone parcels.gpkg --criteria slope:1:cost,access:1:benefit --exclude redline.gpkg
    --min-area-m2 50000 --out out/
    """
    from citytwin.workflows.planning import zone

    s = zone(candidates, out, criteria=criteria, exclude=exclude or [], min_area_m2=min_area_m2, target_m2=target_m2,
             workspace=workspace, user=user)
    _print(s, as_json, [f"{s['zones']} zone(s), {s['selected']} selected, {s['selected_area_m2']:,.1f} m² -> {out}"])


@project_app.command("milestone")
@handle_errors
def project_milestone(
    pid: Annotated[str, typer.Argument(help="Project id.")],
    name: Annotated[str, typer.Argument(help="Milestone name.")],
    due: Annotated[str | None, typer.Option("--due", help="Due date.")] = None,
    done: Annotated[bool, typer.Option("--done", help="Reached.")] = False,
    indicator: Annotated[str | None, typer.Option("--indicator", help="Performance indicator read.")] = None,
    value: Annotated[float | None, typer.Option("--value", help="Its value.")] = None,
    workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False,
) -> None:
    """Record a milestone or a performance-indicator reading of a project.

    Example: citytwin plan project milestone p1 "funding approved" --done
    """
    from citytwin.workflows.planning import project_store

    rec = project_store(workspace, user).milestone(pid, name, due=due, done=done, indicator=indicator, value=value)
    _print(rec, as_json, [f"project {pid}: {len(rec['milestones'])} milestone(s)"])
