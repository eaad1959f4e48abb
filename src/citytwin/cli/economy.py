"""`citytwin economy ...` commands: composite index, report, openness (B1-B3, A6).

Thin layer: parse options, call citytwin.workflows.economy (and citytwin.economy.openness), print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from citytwin.cli.common import (
    DaskOpt,
    JsonOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    open_workspace,
    print_json,
)
from citytwin.foundation.errors import InputError

app = typer.Typer(help="Digital-economy evaluation: indices, ranks, tiers, groups, openness, disparities.",
                  no_args_is_help=True)

SpecOpt = Annotated[Path, typer.Option("--spec", "-s", help="Indicator specification (YAML).", exists=True,
                                       dir_okay=False)]
MethodOpt = Annotated[str, typer.Option("--method", "-m",
                                        help="entropy | topsis | critic | pca | equal | expert | combined")]
SheetOpt = Annotated[str | None, typer.Option("--sheet", help="Sheet of an XLSX panel (default: the first).")]
NormOpt = Annotated[str, typer.Option("--normalisation", help="Entropy normalisation: minmax | sum.")]
ShiftOpt = Annotated[float, typer.Option("--shift", help="Entropy: add this after normalising (e.g. 0.0001).")]
ScaleOpt = Annotated[float, typer.Option("--scale", help="Entropy: multiply the normalised value (e.g. 0.998).")]
ScopeOpt = Annotated[str, typer.Option("--scope", help="pooled (all city-years; default) | per_year.")]
TopsisNormOpt = Annotated[str, typer.Option("--topsis-normalisation", help="TOPSIS: vector | minmax.")]
TopsisWOpt = Annotated[str, typer.Option("--topsis-weights", help="TOPSIS weights from: entropy | critic | "
                                                                  "pca | equal | expert.")]
ScoreScaleOpt = Annotated[float, typer.Option("--score-scale", help="Multiply scores (100 for 0-100).")]


@app.command("index")
@handle_errors
def index_cmd(
    panel: Annotated[str, typer.Argument(help="Panel file (CSV/XLSX/Parquet) or catalog dataset name.")],
    spec: SpecOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    method: MethodOpt = "entropy",
    workspace: WorkspaceOpt = None,
    sheet: SheetOpt = None,
    normalisation: NormOpt = "minmax",
    shift: ShiftOpt = 0.0,
    scale: ScaleOpt = 1.0,
    scope: ScopeOpt = "pooled",
    topsis_normalisation: TopsisNormOpt = "vector",
    topsis_weights: TopsisWOpt = "entropy",
    score_scale: ScoreScaleOpt = 1.0,
    name: Annotated[str, typer.Option("--name", help="Dataset name for the scores in the workspace.")] =
    "economy_index",
    dask: DaskOpt = None,
) -> None:
    """Build a composite index: writes OUT/weights.csv, OUT/scores.csv and OUT/options.json.

    With --workspace, the scores (and weights, as NAME_weights) are also stored as catalog datasets with
    lineage. Example: citytwin economy index panel.xlsx --spec spec.yaml --method entropy --out out/
    """
    from citytwin.cli.common import task_progress
    from citytwin.workflows.economy import build_index

    with task_progress(f"index: periods on Dask ({dask})", enabled=bool(dask)) as tasks:
        res = build_index(panel, spec, out, method, workspace=workspace, name=name, sheet=sheet,
                          normalisation=normalisation, shift=shift, scale=scale, scope=scope,
                          topsis_normalisation=topsis_normalisation, topsis_weights=topsis_weights,
                          score_scale=score_scale, dask=dask, progress=tasks)
    if res.ws is not None:
        console.print(f"stored [bold]{name}[/] v{res.version} (and {name}_weights) in {res.ws.root}")
    for w in res.result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    scores = res.scores
    top = scores.sort_values(["year", "rank"] if "year" in scores.columns else ["rank"])
    console.print(f"{len(res.result.weights)} weights, {len(scores)} scores -> {out}")
    console.print(top.tail(5).to_string(index=False), highlight=False)


@app.command("report")
@handle_errors
def report_cmd(
    panel: Annotated[str, typer.Argument(help="Panel file (CSV/XLSX/Parquet) or catalog dataset name.")],
    spec: SpecOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")],
    method: MethodOpt = "entropy",
    workspace: WorkspaceOpt = None,
    sheet: SheetOpt = None,
    normalisation: NormOpt = "minmax",
    shift: ShiftOpt = 0.0,
    scale: ScaleOpt = 1.0,
    scope: ScopeOpt = "pooled",
    topsis_normalisation: TopsisNormOpt = "vector",
    topsis_weights: TopsisWOpt = "entropy",
    score_scale: ScoreScaleOpt = 1.0,
    boundaries: Annotated[Path | None, typer.Option("--boundaries", help="City boundaries (GeoJSON/GPKG) for "
                                                    "the map; a `province` column enables regions.")] = None,
    boundary_key: Annotated[str, typer.Option("--boundary-key", help="Boundary column with city names.")] = "name",
    tiers: Annotated[str, typer.Option("--tiers", help="natural_breaks | quantiles | none.")] = "natural_breaks",
    k: Annotated[int, typer.Option("--k", help="Number of tiers.")] = 4,
    alias: Annotated[list[str] | None, typer.Option("--alias", help="OLD=NEW city name (renamed/merged), "
                                                     "repeatable; NEW may be a province.")] = None,
    weight_col: Annotated[str | None, typer.Option("--group-weight", help="Panel column weighting group "
                                                   "scores (e.g. population).")] = None,
    title: Annotated[str, typer.Option("--title")] = "Digital-economy index report",
) -> None:
    """Write a self-contained HTML report (weights, ranks, tiers, regions, map; no external assets).

    Example: citytwin economy report panel.xlsx --spec spec.yaml --boundaries cities.geojson --out report.html
    """
    from citytwin.workflows.economy import build_report

    res = build_report(panel, spec, out, method, workspace=workspace, sheet=sheet, normalisation=normalisation,
                       shift=shift, scale=scale, scope=scope, topsis_normalisation=topsis_normalisation,
                       topsis_weights=topsis_weights, score_scale=score_scale, boundaries=boundaries,
                       boundary_key=boundary_key, tiers=tiers, k=k,
                       aliases=dict(a.split("=", 1) for a in (alias or []) if "=" in a), group_weight=weight_col,
                       title=title)
    for w in res.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    console.print(f"wrote {out} ({res.size // 1024} KiB)")


@app.command("openness")
@handle_errors
def openness_cmd(
    workspace: WorkspaceOpt = None,
    profiles: Annotated[Path | None, typer.Option("--profiles", help="CSV of profiles to score (columns: name, "
                                                  "readiness, platform, data, utilisation).")] = None,
    weight: Annotated[list[str] | None, typer.Option("--weight", help="DIMENSION=WEIGHT, repeatable "
                                                     "(default equal).")] = None,
    recent_days: Annotated[int, typer.Option("--recent-days")] = 365,
    as_json: JsonOpt = False,
) -> None:
    """Score data-openness profiles, or compute the workspace catalog's own profile (A6).

    Example: citytwin economy openness -w ./ws ; citytwin economy openness --profiles cities.csv
    """
    import pandas as pd

    from citytwin.economy.openness import catalog_profile, score_profiles
    from citytwin.workflows.economy import catalog_facts

    weights = None
    if weight:
        try:
            weights = {a.split("=", 1)[0]: float(a.split("=", 1)[1]) for a in weight}
        except (IndexError, ValueError):
            raise InputError(f"bad --weight {weight}", hint="use e.g. --weight data=0.4") from None
    if profiles is not None:
        scored = score_profiles(pd.read_csv(profiles), weights=weights)
        if as_json:
            print_json(scored.to_dict(orient="records"))
        else:
            console.print(scored.to_string(index=False), highlight=False)
        return
    ws = open_workspace(workspace)
    profile = catalog_profile(catalog_facts(ws), recent_days=recent_days, weights=weights)
    if as_json:
        print_json(profile.as_dict())
        return
    for d in ("readiness", "platform", "data", "utilisation", "score"):
        console.print(f"{d:12s} {getattr(profile, d):6.1f}")
    for k_, v in profile.measures.items():
        console.print(f"  {k_:24s} {v:.3f}", highlight=False)
    for w in profile.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)


# Disparity commands live in their own module (keep these two lines).
from citytwin.cli import economy_disparity as _disparity  # noqa: E402

_disparity.register(app)
