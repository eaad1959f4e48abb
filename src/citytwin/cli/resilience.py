"""`citytwin resilience ...` commands: measures, panel models, mechanism, heterogeneity, threshold, spatial,
report (C1–C3).

Thin layer: parse options, call :mod:`citytwin.workflows.resilience`, print. With ``--json`` the
output is JSON, errors included (``{"error": ..., "hint": ...}``, exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from citytwin.cli.common import (
    JsonOpt,
    UserOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    print_json,
)

app = typer.Typer(help="Economic resilience and panel models: measures, two-way FE, mechanism, heterogeneity, "
                       "paper tables.", no_args_is_help=True)


PanelArg = Annotated[str, typer.Argument(help="Panel file (CSV/XLSX/Parquet) or catalog dataset name.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
YOpt = Annotated[str, typer.Option("--y", help="Outcome column.")]
XOpt = Annotated[str, typer.Option("--x", help="Regressor column(s), comma-separated.")]
ControlsOpt = Annotated[str | None, typer.Option("--controls", help="Control columns, comma-separated.")]
FeOpt = Annotated[str, typer.Option("--fe", help="Fixed effects UNIT,TIME (also the panel's unit and time).")]
ClusterOpt = Annotated[str | None, typer.Option("--cluster", help="Cluster column(s) (default: the unit; "
                                                 "unit,time for --vcov twoway).")]
VcovOpt = Annotated[str, typer.Option("--vcov", help="cluster | twoway | dk (Driscoll–Kraay) | hetero | iid.")]
SheetOpt = Annotated[str | None, typer.Option("--sheet", help="Sheet of an XLSX panel (default: the first).")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="With a workspace: name of the derived dataset(s) "
                                               "(default PANEL_COMMAND; further tables get a suffix).")]
SaveOpt = Annotated[bool, typer.Option("--save/--no-save", help="With a workspace: store the result tables as "
                                       "derived datasets (default) or not.")]


def _print(summary: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        print_json(summary)
        return
    for w in summary.get("warnings", []) or []:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    for line in lines:
        console.print(line, highlight=False)
    for st in summary.get("stored") or []:
        console.print(f"stored: {st['dataset']} v{st['version']}", highlight=False)


def _cluster(cluster: str | None, fe: str, vcov: str) -> str | None:
    """The cluster column(s): as given, else the unit (both FE columns for two-way clustering)."""
    if cluster or not fe:
        return cluster
    return fe if vcov == "twoway" else fe.split(",")[0].strip()


@app.command("measure")
@handle_errors
def measure_cmd(
    panel: PanelArg,
    unit: Annotated[str, typer.Option("--unit", help="Unit column (city).")],
    time: Annotated[str, typer.Option("--time", help="Period column (year).")],
    value: Annotated[str, typer.Option("--value", help="Value column (employment, GDP ...).")],
    out: OutOpt,
    reference: Annotated[str, typer.Option("--reference", help="national (sum of units) or a column.")] = "national",
    shock: Annotated[str | None, typer.Option("--shock", help="START:END of the shock; detected if left out.")]
    = None,
    recovery_end: Annotated[str | None, typer.Option("--recovery-end", help="Last recovery period.")] = None,
    method: Annotated[str, typer.Option("--method", help="martin | growth-deviation.")] = "martin",
    store: StoreOpt = None, save: SaveOpt = True,
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    sheet: SheetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Resilience of each unit against a reference economy -> OUT/resilience.csv.

    Example: citytwin resilience measure panel.csv --unit city --time year --value gdp --reference national
    --shock 2008:2009 --method martin --out out/
    """
    from citytwin.workflows.resilience import measure

    s = measure(panel, unit=unit, time=time, value=value, out=out, reference=reference, shock=shock,
                recovery_end=recovery_end, method=method, store=store, save=save, workspace=workspace, user=user,
                sheet=sheet)
    _print(s, as_json, [f"shock {s['shock'][0]}:{s['shock'][1]} ({s['shock_rule']}); {s['rows']} rows -> "
                        f"{out / 'resilience.csv'}"])


@app.command("model")
@handle_errors
def model_cmd(
    panel: PanelArg, y: YOpt, x: XOpt, fe: FeOpt, out: OutOpt, controls: ControlsOpt = None,
    cluster: ClusterOpt = None, vcov: VcovOpt = "cluster", store: StoreOpt = None, save: SaveOpt = True,
    workspace: WorkspaceOpt = None, user: UserOpt = None,
    sheet: SheetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Two-way fixed-effects model -> OUT/coefficients.csv and OUT/model.json.

    Example: citytwin resilience model panel.csv --y resilience --x index --controls pop,fdi --fe city,year
    --cluster city --out out/
    """
    from citytwin.workflows.resilience import model

    s = model(panel, y=y, x=x, out=out, controls=controls, fe=fe, cluster=_cluster(cluster, fe, vcov), vcov=vcov,
              store=store, save=save, workspace=workspace, user=user, sheet=sheet)
    coef = "\n".join(f"  {c['term']:<24} {c['estimate']:>12.6g} ({c['std_error']:.6g})  p={c['p']:.4g}"
                     for c in s["coefficients"])
    _print(s, as_json, [coef, f"N={s['N']}, R² within={s['r2_within']}, clusters={s['n_clusters']}, "
                              f"dropped singletons={s['dropped_singletons']}, dropped rows={s['dropped_rows']} "
                              f"-> {out}"])


@app.command("mechanism")
@handle_errors
def mechanism_cmd(
    panel: PanelArg, y: YOpt, x: XOpt, m: Annotated[str, typer.Option("--m", help="Mediator column.")],
    fe: FeOpt, out: OutOpt, controls: ControlsOpt = None, cluster: ClusterOpt = None, vcov: VcovOpt = "cluster",
    boot: Annotated[int, typer.Option("--boot", help="Bootstrap replications (0: none).")] = 500,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    store: StoreOpt = None, save: SaveOpt = True,
    workspace: WorkspaceOpt = None, user: UserOpt = None, sheet: SheetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Mechanism test: Baron–Kenny steps, Sobel and bootstrap, and the X→M form -> OUT/mechanism.csv.

    Example: citytwin resilience mechanism panel.csv --y resilience --x index --m innovation --fe city,year
    --out out/
    """
    from citytwin.workflows.resilience import mechanism

    s = mechanism(panel, y=y, x=x, m=m, out=out, controls=controls, fe=fe, cluster=_cluster(cluster, fe, vcov),
                  vcov=vcov, n_boot=boot, seed=seed, store=store, save=save, workspace=workspace, user=user,
                  sheet=sheet)
    b = s["bootstrap"]
    _print(s, as_json, [f"indirect a*b = {s['indirect']:.6g}; Sobel z = {s['sobel']['z']:.4f} "
                        f"(p={s['sobel']['p']:.4g}); bootstrap CI [{b.get('ci_low')}, {b.get('ci_high')}] -> {out}"])


@app.command("heterogeneity")
@handle_errors
def heterogeneity_cmd(
    panel: PanelArg, group: Annotated[str, typer.Option("--group", help="Group column (region, size ...).")],
    y: YOpt, x: XOpt, fe: FeOpt, out: OutOpt, controls: ControlsOpt = None, cluster: ClusterOpt = None,
    vcov: VcovOpt = "cluster",
    permutations: Annotated[int, typer.Option("--permutations", help="Fisher permutation test reps (0: none).")]
    = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    store: StoreOpt = None, save: SaveOpt = True,
    workspace: WorkspaceOpt = None, user: UserOpt = None, sheet: SheetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Model per group and tests of coefficient differences -> OUT/groups.csv, OUT/pairs.csv.

    Example: citytwin resilience heterogeneity panel.csv --group region --y resilience --x index
    --fe city,year --permutations 499 --out out/
    """
    from citytwin.workflows.resilience import heterogeneity

    s = heterogeneity(panel, group=group, y=y, x=x, out=out, controls=controls, fe=fe,
                      cluster=_cluster(cluster, fe, vcov), vcov=vcov, n_perm=permutations, seed=seed,
                      store=store, save=save, workspace=workspace, user=user, sheet=sheet)
    rows = "\n".join(f"  {g['group']:<12} {g['estimate']:>12.6g} ({g['std_error']:.6g}) N={g['N']}"
                     for g in s["groups"])
    _print(s, as_json, [rows, f"Wald test of equal slopes: chi2={s['wald']['chi2']:.4f}, p={s['wald']['p']:.4g} "
                              f"-> {out}"])


@app.command("threshold")
@handle_errors
def threshold_cmd(
    panel: PanelArg, y: YOpt, x: XOpt,
    q: Annotated[str, typer.Option("--q", help="Threshold variable (column).")],
    fe: FeOpt, out: OutOpt, controls: ControlsOpt = None,
    thresholds: Annotated[int, typer.Option("--thresholds", help="1 (single) or 2 (double).")] = 1,
    trim: Annotated[float, typer.Option("--trim", help="Share trimmed from each tail of q.")] = 0.05,
    grid: Annotated[int, typer.Option("--grid", help="Grid points (quantiles of q).")] = 100,
    boot: Annotated[int, typer.Option("--boot", help="Bootstrap replications of the F test (0: none).")] = 300,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    two_way: Annotated[bool, typer.Option("--two-way/--unit-fe", help="Time effects as well.")] = False,
    store: StoreOpt = None, save: SaveOpt = True,
    workspace: WorkspaceOpt = None, user: UserOpt = None, sheet: SheetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Hansen (1999) panel threshold -> OUT/coefficients.csv, OUT/threshold.json, OUT/lr.csv.

    Example: citytwin resilience threshold panel.csv --y resilience --x index --q pop --fe city,year
    --thresholds 2 --boot 300 --out out/
    """
    from citytwin.workflows.resilience import threshold

    s = threshold(panel, y=y, x=x, q=q, fe=fe, out=out, controls=controls, n_thresholds=thresholds, trim=trim,
                  n_grid=grid, bootstrap=boot, seed=seed, two_way=two_way, store=store, save=save, workspace=workspace,
                  user=user,
                  sheet=sheet)
    lines = [f"  threshold {g:.6g}  95% CI [{lo:.6g}, {hi:.6g}]" for g, (lo, hi) in zip(s["thresholds"], s["ci"],
                                                                                        strict=True)]
    lines += [f"  F{i + 1} = {f:.4f}, bootstrap p = {p}" for i, (f, p) in enumerate(zip(s["f_stats"], s["p_values"],
                                                                                          strict=True))]
    _print(s, as_json, [*lines, f"N={s['N']} -> {out}"])


@app.command("spatial")
@handle_errors
def spatial_cmd(
    panel: PanelArg, y: YOpt, x: XOpt, fe: FeOpt, out: OutOpt,
    boundaries: Annotated[str, typer.Option("--boundaries", help="GIS file or dataset: one polygon per unit.")],
    id_col: Annotated[str, typer.Option("--id", help="Column of the boundaries holding the panel's unit ids.")],
    weights: Annotated[str, typer.Option("--weights", help="queen | inverse_distance | economic")] = "queen",
    model: Annotated[str, typer.Option("--model", help="sar | sdm")] = "sar",
    economic: Annotated[str | None, typer.Option("--economic", help="Panel column for economic weights.")] = None,
    draws: Annotated[int, typer.Option("--draws", help="Simulation draws for the impacts' errors.")] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    two_way: Annotated[bool, typer.Option("--two-way/--unit-fe", help="Time effects as well.")] = True,
    store: StoreOpt = None, save: SaveOpt = True,
    workspace: WorkspaceOpt = None, user: UserOpt = None, sheet: SheetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Spatial lag / Durbin panel with LeSage–Pace impacts -> OUT/coefficients.csv, OUT/impacts.csv.

    Example: citytwin resilience spatial panel.csv --y resilience --x index --fe city,year
    --boundaries cities.geojson --id city --weights queen --model sdm --out out/
    """
    from citytwin.workflows.resilience import spatial

    s = spatial(panel, y=y, x=x, fe=fe, out=out, boundaries=boundaries, id_col=id_col, weights=weights,
                model=model, two_way=two_way, economic=economic, draws=draws, seed=seed, store=store, save=save,
                workspace=workspace,
                user=user, sheet=sheet)
    rows = "\n".join(f"  {r['variable']:<20} direct {r['direct']:>10.6g}  indirect {r['indirect']:>10.6g}  "
                     f"total {r['total']:>10.6g}" for r in s["impacts"])
    _print(s, as_json, [f"rho = {s['rho']:.6g} ({s['model']}, {s['weights']} weights, N={s['N']})", rows,
                        f"-> {out}"])


@app.command("report")
@handle_errors
def report_cmd(
    panel: PanelArg, y: YOpt, x: XOpt, fe: FeOpt, out: OutOpt, controls: ControlsOpt = None,
    cluster: ClusterOpt = None, vcov: VcovOpt = "cluster",
    m: Annotated[str | None, typer.Option("--m", help="Mediator: adds the M~X and Y~X+M columns.")] = None,
    title: Annotated[str, typer.Option("--title")] = "Regression results",
    workspace: WorkspaceOpt = None, user: UserOpt = None, sheet: SheetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Paper-ready table (HTML, LaTeX, Word) and coefficient plot -> OUT/table.*, OUT/coefficients.png.

    Example: citytwin resilience report panel.csv --y resilience --x index --controls pop --fe city,year
    --out out/
    """
    from citytwin.workflows.resilience import report

    s = report(panel, y=y, x=x, out=out, controls=controls, fe=fe, cluster=_cluster(cluster, fe, vcov), vcov=vcov, m=m,
               title=title, workspace=workspace, user=user, sheet=sheet)
    _print(s, as_json, [f"{len(s['models'])} models -> {', '.join(s['files'])} in {out}"])
