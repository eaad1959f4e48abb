"""`citytwin economy ...` commands: composite index, report, openness (B1-B3, A6).

Thin layer: read files / catalog datasets and YAML, call citytwin.economy, write and print.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
import yaml

from citytwin.cli.common import WorkspaceOpt, console, handle_errors, open_workspace, print_json
from citytwin.foundation.errors import InputError
from citytwin.foundation.workspace import Workspace

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


def read_table(source: str, ws: Workspace | None, sheet: str | None = None) -> tuple[pd.DataFrame, str | None]:
    """A file (CSV, XLSX/XLS, Parquet) or, failing that, a dataset of the workspace.

    Returns the frame and the dataset name (``None`` when it came from a file).
    """
    p = Path(source)
    if p.exists():
        suf = p.suffix.lower()
        try:
            if suf in (".xlsx", ".xls"):
                return pd.read_excel(p, sheet_name=sheet or 0), None
            if suf == ".parquet":
                return pd.read_parquet(p), None
            if suf in (".csv", ".txt", ".tsv"):
                return pd.read_csv(p, sep="\t" if suf == ".tsv" else ","), None
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read {p}: {exc}", file=str(p)) from exc
        raise InputError(f"unsupported panel file type {suf!r}", file=str(p), hint="use CSV, XLSX or Parquet")
    if ws is None:
        raise InputError(f"{source!r} is not a file, and no workspace was given to look it up as a dataset",
                         hint="pass a file path, or --workspace DIR with a dataset name")
    return ws.read(source), source


def read_spec(path: Path) -> dict[str, Any]:
    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"cannot parse the specification: {exc}", file=str(path)) from exc
    if not isinstance(obj, dict):
        raise InputError("the specification must be a YAML mapping", file=str(path))
    return obj


def _compute(panel: str, spec: Path, method: str, workspace: Path | None, sheet: str | None,
             normalisation: str, shift: float, scale: float, scope: str, topsis_normalisation: str,
             topsis_weights: str, score_scale: float) -> tuple[Any, pd.DataFrame, str | None, Workspace | None]:
    from citytwin.economy.index import composite_index

    ws = open_workspace(workspace) if workspace else None
    frame, dataset = read_table(panel, ws, sheet)
    result = composite_index(frame, read_spec(spec), method, normalisation=normalisation,  # type: ignore[arg-type]
                             shift=shift, scale=scale, scope=scope,  # type: ignore[arg-type]
                             topsis_normalisation=topsis_normalisation,  # type: ignore[arg-type]
                             topsis_weights=topsis_weights, score_scale=score_scale, source=panel)
    result.options["panel"] = panel
    result.options["spec_file"] = str(spec)
    return result, frame, dataset, ws


def _scores_out(result: Any) -> pd.DataFrame:
    s = result.scores.rename(columns={result.id_col: "city"})
    if result.time_col:
        s = s.rename(columns={result.time_col: "year"})
    return s


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
) -> None:
    """Build a composite index: writes OUT/weights.csv, OUT/scores.csv and OUT/options.json.

    With --workspace, the scores (and weights, as NAME_weights) are also stored as catalog datasets with
    lineage. Example: citytwin economy index panel.xlsx --spec spec.yaml --method entropy --out out/
    """
    result, _frame, dataset, ws = _compute(panel, spec, method, workspace, sheet, normalisation, shift, scale,
                                           scope, topsis_normalisation, topsis_weights, score_scale)
    out.mkdir(parents=True, exist_ok=True)
    wcols = ["indicator", "weight"] + [c for c in result.weights.columns if c not in ("indicator", "weight")]
    result.weights[wcols].to_csv(out / "weights.csv", index=False)
    scores = _scores_out(result)
    scores.to_csv(out / "scores.csv", index=False)
    record = {"options": result.options, "warnings": result.warnings, "diagnostics": result.diagnostics}
    (out / "options.json").write_text(json.dumps(record, ensure_ascii=False, indent=2, default=str),
                                      encoding="utf-8")
    if ws is not None:
        inputs: list[str | tuple[str, int | None]] = [dataset] if dataset else []
        params = {k: v for k, v in result.options.items() if k != "spec"} | {"spec": result.options["spec"]}
        v = ws.write_derived(name, scores, inputs=inputs, parameters=json.loads(json.dumps(params, default=str)),
                             description=f"composite index ({result.options['method']}) of {panel}",
                             code="citytwin.economy.index.composite_index")
        ws.write_derived(f"{name}_weights", result.weights, inputs=inputs,
                         parameters={"method": result.options["method"]},
                         description=f"indicator weights of {name}", code="citytwin.economy.index.composite_index")
        console.print(f"stored [bold]{name}[/] v{v} (and {name}_weights) in {ws.root}")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    top = scores.sort_values(["year", "rank"] if "year" in scores.columns else ["rank"])
    console.print(f"{len(result.weights)} weights, {len(scores)} scores -> {out}")
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
    from citytwin.economy.groups import assign_groups, city_provinces, group_scores, regions_nbs2011
    from citytwin.economy.ranking import assign_tiers
    from citytwin.economy.report import render_report

    result, frame, _dataset, _ws = _compute(panel, spec, method, workspace, sheet, normalisation, shift, scale,
                                            scope, topsis_normalisation, topsis_weights, score_scale)
    tier_s, tier_info = (None, None)
    if tiers != "none":
        tier_s, tier_info = assign_tiers(result.scores, "score", by=result.time_col, method=tiers,  # type: ignore[arg-type]
                                         k=k)
    geo = None
    groups = None
    warnings: list[str] = []
    if boundaries is not None:
        import geopandas as gpd

        try:
            geo = gpd.read_file(boundaries)
        except Exception as exc:  # pyogrio raises several types
            raise InputError(f"cannot read boundaries: {exc}", file=str(boundaries)) from exc
        if boundary_key not in geo.columns:
            raise InputError(f"the boundaries have no column {boundary_key!r}", file=str(boundaries),
                             field=boundary_key, hint=f"columns: {list(geo.columns)}")
        if "province" in geo.columns:
            aliases = dict(a.split("=", 1) for a in (alias or []) if "=" in a)
            prov = city_provinces(result.scores[result.id_col], pd.DataFrame(geo.drop(columns="geometry")),
                                  name=boundary_key, aliases=aliases)
            warnings += prov.warnings
            reg = assign_groups(prov.groups, regions_nbs2011())
            sc = result.scores.assign(region=reg.groups.to_numpy())
            if weight_col:
                wv = frame.set_index([result.id_col] + ([result.time_col] if result.time_col else []))[weight_col]
                sc = sc.join(wv, on=[result.id_col] + ([result.time_col] if result.time_col else []))
            groups = group_scores(sc, "score", "region", by=result.time_col, weight=weight_col)
    result.warnings.extend(warnings)
    attribution = [f"Panel: {panel}"] + ([f"Boundaries: {boundaries}"] if boundaries else [])
    html = render_report(result, title=title, tiers=tier_s, tier_info=tier_info, groups=groups,
                         group_col="region", boundaries=geo, boundary_key=boundary_key, attribution=attribution,
                         notes=["Regions: NBS 2011 east/central/west/northeast, by province."] if groups is not None
                         else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    console.print(f"wrote {out} ({len(html) // 1024} KiB)")


@app.command("openness")
@handle_errors
def openness_cmd(
    workspace: WorkspaceOpt = None,
    profiles: Annotated[Path | None, typer.Option("--profiles", help="CSV of profiles to score (columns: name, "
                                                  "readiness, platform, data, utilisation).")] = None,
    weight: Annotated[list[str] | None, typer.Option("--weight", help="DIMENSION=WEIGHT, repeatable "
                                                     "(default equal).")] = None,
    recent_days: Annotated[int, typer.Option("--recent-days")] = 365,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score data-openness profiles, or compute the workspace catalog's own profile (A6).

    Example: citytwin economy openness -w ./ws ; citytwin economy openness --profiles cities.csv
    """
    from citytwin.economy.openness import catalog_profile, score_profiles

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


def catalog_facts(ws: Workspace) -> list[dict[str, Any]]:
    """Facts about the datasets this user may see, for :func:`citytwin.economy.openness.catalog_profile`."""
    infos = ws.datasets()
    facts = []
    for d in infos:
        used_by = len(ws.catalog.outputs_of(d.name))
        facts.append({"name": d.name, "classification": d.classification, "licence": d.licence,
                      "description": d.description, "source": d.source, "department": d.department,
                      "owner": d.owner, "updated": d.updated,
                      # every version is stored as (Geo)Parquet, an open format
                      "formats": ["parquet"], "used_by": used_by})
    return facts


# Disparity commands live in their own module (keep these two lines).
from citytwin.cli import economy_disparity as _disparity  # noqa: E402

_disparity.register(app)
