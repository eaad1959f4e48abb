"""`citytwin spatial ...` commands: centers, mix, lifecircle, zones, jobs, compare, report (D1-D6).

Thin layer: inputs (an OSM PBF file, GIS files or workspace datasets), storing results (``--out``
file, or ``-w`` workspace with lineage) and the report come from citytwin.workflows.spatial; the
commands call citytwin.spatial and print.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from citytwin.cli.common import (
    DaskOpt,
    JsonOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    open_workspace,
    out_console,
    print_json,
    task_progress,
)

if TYPE_CHECKING:
    import pandas as pd

    from citytwin.foundation.workspace import Workspace
    from citytwin.workflows.spatial import Inputs

app = typer.Typer(help="Urban spatial structure: centers, functional mix, life circles, job-housing balance, "
                       "snapshot comparison, HTML report (D1-D6).", no_args_is_help=True)

SourceArg = Annotated[str | None, typer.Argument(help="OSM PBF file (all layers come from it).")]
PoisOpt = Annotated[str | None, typer.Option("--pois", help="POI layer: GIS file or dataset name (needs 'category').")]
BuildingsOpt = Annotated[str | None, typer.Option("--buildings", help="Buildings: GIS file or dataset (needs 'use').")]
StreetsOpt = Annotated[str | None, typer.Option("--streets", help="Street edges (u, v, length): GIS file, "
                                                                  "GraphML graph or dataset.")]
NodesOpt = Annotated[str | None, typer.Option("--nodes", help="Street nodes (id + point): file or dataset; default "
                                                              "from the edges' end points.")]
LanduseOpt = Annotated[str | None, typer.Option("--landuse", help="Land-use polygons: file or dataset.")]
ResOpt = Annotated[int, typer.Option("--resolution", "-r", help="H3 resolution (9 = ~0.1 km2 cells).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write the result to a file (.parquet, .geojson, "
                                                                  ".gpkg; .html for report).")]
NameOpt = Annotated[str, typer.Option("--name", help="Dataset name prefix for results written with -w.")]
ClusterOpt = Annotated[list[str] | None, typer.Option(
    "--add-cluster", help="Second snapshot = first + a synthetic center: LON,LAT,N[,RADIUS_M[,SEED]] (repeatable).")]


def load_inputs(source: str | None, ws: Workspace | None, need: set[str], **layers: Any) -> Inputs:
    """:func:`citytwin.workflows.spatial.load_inputs` (imported when called)."""
    from citytwin.workflows.spatial import load_inputs as load

    return load(source, ws, need, **layers)


def _ws(workspace: Path | None) -> Workspace | None:
    return open_workspace(workspace) if workspace is not None else None


def _write_file(frame: pd.DataFrame, out: Path, as_json: bool = False) -> None:
    from citytwin.workflows.spatial import write_file

    write_file(frame, out)
    out_console(as_json).print(f"wrote {out}")


def _store(ws: Workspace | None, name: str, frames: dict[str, pd.DataFrame], inp: Inputs, params: dict[str, Any],
           description: str, as_json: bool = False) -> None:
    from citytwin.workflows.spatial import store_results

    for nm, v in store_results(ws, name, frames, inp, params, description):
        out_console(as_json).print(f"stored [bold]{nm}[/] v{v}")


def _print_indices(title: str, d: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=title)
    t.add_column("indicator")
    t.add_column("value", justify="right")
    for k, v in d.items():
        t.add_row(str(k), f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(t)


@app.command("centers")
@handle_errors
def centers_cmd(source: SourceArg = None, pois: PoisOpt = None, resolution: ResOpt = 9,
                method: Annotated[str, typer.Option("--method", help="peaks | getis_ord | local_moran")] = "peaks",
                weight: Annotated[str | None, typer.Option("--weight", help="Sum this column, not counts.")] = None,
                out: OutOpt = None, name: NameOpt = "spatial_centers", as_json: JsonOpt = False,
                workspace: WorkspaceOpt = None) -> None:
    """D1: centers (hot spots, density peaks), hierarchy and polycentricity (UCI, rank-size).

    Example: citytwin spatial centers Helsinki.osm.pbf --method peaks -o centers.parquet
    """
    from citytwin.spatial.centers import find_centers

    ws = _ws(workspace)
    inp = load_inputs(source, ws, {"pois"}, pois=pois)
    res = find_centers(inp.layers["pois"], resolution=resolution, weight_col=weight, method=method)  # type: ignore[arg-type]
    if as_json:
        print_json({"indices": res.indices, "centers": res.centers.drop(columns="geometry").to_dict("records"),
                    "report": res.report})
    else:
        _print_indices("polycentricity", res.indices)
        console.print(res.centers.drop(columns="geometry").to_string(index=False))
    if out:
        _write_file(res.centers, out, as_json)
    _store(ws, name, {"": res.centers, "cells": res.cells}, inp, res.report, "Centers and polycentricity (D1)",
           as_json)


@app.command("mix")
@handle_errors
def mix_cmd(source: SourceArg = None, pois: PoisOpt = None, resolution: ResOpt = 9,
            classes: Annotated[str | None, typer.Option("--classes", help="Comma-separated classification "
                                                                          "(K = its size).")] = None,
            out: OutOpt = None, name: NameOpt = "spatial_mix", as_json: JsonOpt = False,
            workspace: WorkspaceOpt = None) -> None:
    """D3: functional mix (entropy / ln K, Simpson) and composite-function labels per H3 cell."""
    from citytwin.spatial.mix import functional_mix

    ws = _ws(workspace)
    inp = load_inputs(source, ws, {"pois"}, pois=pois)
    cls = [c.strip() for c in classes.split(",")] if classes else None
    m = functional_mix(inp.layers["pois"], resolution=resolution, classes=cls)
    cols = ["cell", "n_pois", "entropy_norm", "gini_simpson", "dominant", "label"]
    if as_json:
        print_json(m[cols].to_dict("records"))
    else:
        console.print(f"{len(m)} cells, K = {len(m.attrs.get('classes', []))} classes")
        console.print(m.sort_values("entropy_norm", ascending=False)[cols].head(20).to_string(index=False))
    if out:
        _write_file(m, out, as_json)
    _store(ws, name, {"": m}, inp, {"resolution": resolution, "classes": m.attrs.get("classes")},
           "Functional mix per H3 cell (D3)", as_json)


@app.command("lifecircle")
@handle_errors
def lifecircle_cmd(source: SourceArg = None, pois: PoisOpt = None, buildings: BuildingsOpt = None,
                   streets: StreetsOpt = None, nodes: NodesOpt = None,
                   minutes: Annotated[float, typer.Option("--minutes", help="Walking time.")] = 15.0,
                   speed: Annotated[float, typer.Option("--speed", help="Walking speed, km/h.")] = 4.8,
                   threshold_m: Annotated[float | None, typer.Option("--threshold-m", help="Distance threshold "
                                                                     "(m), e.g. 3000; overrides minutes.")] = None,
                   include_unknown: Annotated[bool, typer.Option("--include-unknown/--residential-only",
                                                                 help="Count untyped buildings as homes.")] = True,
                   max_snap: Annotated[float, typer.Option("--max-snap", help="Max snapping distance, m.")] = 250.0,
                   out: OutOpt = None, name: NameOpt = "spatial_lifecircle", as_json: JsonOpt = False,
                   workspace: WorkspaceOpt = None, dask: DaskOpt = None,
                   partition_m: Annotated[float | None, typer.Option(
                       "--partition-radius", help="With --dask and a Parquet network: searches stop at this many "
                       "metres and each worker holds a west-east part of the network with a halo this wide.")] = None,
                   ) -> None:
    """D5: walking distance from every home to each daily service; coverage and ranked gaps.

    With --dask, one task per service category (layers from files; the same result)."""
    from citytwin.foundation.errors import InputError
    from citytwin.foundation.objectstore import is_url
    from citytwin.workflows import scaleout
    from citytwin.workflows.spatial import life_circles

    ws = _ws(workspace)
    kw: dict[str, Any] = dict(pois=pois, buildings=buildings, streets=streets, nodes=nodes, minutes=minutes,
                              speed_kmh=speed, threshold_m=threshold_m, include_unknown=include_unknown,
                              max_snap_m=max_snap)
    if partition_m is not None and not dask:
        raise InputError("--partition-radius splits the network over Dask workers: give --dask too",
                         field="--partition-radius")
    remote = [x for x in (source, pois, buildings, streets, nodes) if x and is_url(x)]
    if remote and not dask:
        raise InputError("object-storage layers are read by the Dask workers: give --dask", file=remote[0],
                         hint="e.g. --dask local:2 with --nodes and --streets as Parquet; or copy the files here")
    if dask:
        parts: dict[str, Any] = {} if partition_m is None else {"max_distance": partition_m, "partitions": True}
        with task_progress(f"life circles: categories on Dask ({dask})") as tasks:
            lc = scaleout.life_circles(source, dask=dask, progress=tasks, **kw, **parts)
        inp = scaleout.life_circle_inputs(source, pois=pois, buildings=buildings, streets=streets, nodes=nodes)
    else:
        run = life_circles(source, ws, **kw)
        lc, inp = run.result, run.inputs
    net = lc.report["network"]
    if as_json:
        print_json({"coverage": lc.coverage.to_dict("records"), "report": lc.report})
    else:
        console.print(lc.coverage.to_string(index=False))
        console.print(f"network: {net['nodes']} nodes, {net['components']} components; "
                      f"homes: {len(lc.homes)}; threshold {lc.threshold_m:.0f} m")
        g = lc.gaps(10)
        console.print(g[["gap_rank", "home_id", "n_missing", "n_unreachable", "mean_excess_m"]].to_string(index=False))
    if out:
        _write_file(lc.homes, out, as_json)
    params = {"minutes": minutes, "speed_kmh": speed, "threshold_m": lc.threshold_m, "max_snap_m": max_snap,
              "include_unknown": include_unknown, "report": lc.report,
              **({} if partition_m is None else {"max_distance_m": partition_m, "partitions": True})}
    _store(ws, name, {"": lc.homes, "coverage": lc.coverage}, inp, params, "Life circles (D5)", as_json)


@app.command("zones")
@handle_errors
def zones_cmd(points: Annotated[str, typer.Argument(help="Points: GeoParquet file, folder or glob of parts, or "
                                                         "dataset.")],
              zones: Annotated[str, typer.Option("--zones", help="Zone polygons (GIS file or GeoParquet), e.g. "
                                                                 "H3 cells or districts.")],
              zone_id: Annotated[str, typer.Option("--zone-id", help="Zone id column.")] = "zone",
              predicate: Annotated[str, typer.Option("--predicate", help="within | intersects")] = "within",
              out: OutOpt = None, as_json: JsonOpt = False, workspace: WorkspaceOpt = None,
              dask: DaskOpt = None) -> None:
    """Points per zone (a spatial join); with --dask the parts are joined by the workers."""
    from citytwin.workflows.scaleout import points_per_zone

    with task_progress(f"points per zone: parts on Dask ({dask})", enabled=bool(dask)) as tasks:
        res = points_per_zone(points, zones, zone_id=zone_id, predicate=predicate, workspace=_ws(workspace),
                              dask=dask, progress=tasks)
    if as_json:
        print_json({"points": res.points, "matched": res.matched, "options": res.options,
                    "counts": res.counts.to_dict("records")})
    else:
        console.print(f"{res.points:,} points, {res.matched:,} in a zone, {len(res.counts):,} zones")
        console.print(res.counts.sort_values("points", ascending=False).head(10).to_string(index=False))
    if out:
        _write_file(res.counts, out, as_json)


@app.command("jobs")
@handle_errors
def jobs_cmd(source: SourceArg = None, pois: PoisOpt = None, buildings: BuildingsOpt = None,
             resolution: ResOpt = 9, out: OutOpt = None, name: NameOpt = "spatial_jobs_housing",
             as_json: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """D6: job-housing balance per H3 cell (floor-area proxies) and commuting benchmarks."""
    from citytwin.spatial.jobs_housing import jobs_housing

    ws = _ws(workspace)
    inp = load_inputs(source, ws, {"pois", "buildings"}, pois=pois, buildings=buildings)
    jh = jobs_housing(inp.layers["buildings"], inp.layers["pois"], resolution=resolution)
    if as_json:
        print_json({"indices": jh.indices, "report": jh.report})
    else:
        _print_indices("job-housing balance", jh.indices)
    if out:
        _write_file(jh.cells, out, as_json)
    _store(ws, name, {"": jh.cells}, inp, jh.report, "Job-housing balance per H3 cell (D6)", as_json)


@app.command("compare")
@handle_errors
def compare_cmd(source: SourceArg = None,
                second: Annotated[str | None, typer.Option("--second", help="Second snapshot: PBF file, POI file "
                                                                            "or dataset.")] = None,
                pois: PoisOpt = None, landuse: LanduseOpt = None, add_cluster: ClusterOpt = None,
                resolution: ResOpt = 9, method: Annotated[str, typer.Option("--method")] = "peaks",
                out: OutOpt = None, name: NameOpt = "spatial_compare", as_json: JsonOpt = False,
                workspace: WorkspaceOpt = None) -> None:
    """D2/D4: compare two snapshots: new / lost centers, hierarchy change, innovation-district types.

    Example (a planned new center): citytwin spatial compare Helsinki.osm.pbf --add-cluster 24.9505,60.1765,150,120,1
    """
    from citytwin.workflows.spatial import compare_two_snapshots

    ws = _ws(workspace)
    run = compare_two_snapshots(source, ws, second=second, pois=pois, landuse=landuse, add_cluster=add_cluster,
                                resolution=resolution, method=method)
    cmp, dist, inp = run.comparison, run.districts, run.inputs
    if as_json:
        print_json({"findings": cmp.findings, "indices": cmp.indices.to_dict("records"),
                    "centers": cmp.centers.drop(columns="geometry").to_dict("records"),
                    "districts": dist.drop(columns="geometry").to_dict("records")})
    else:
        console.print(cmp.indices.to_string(index=False))
        console.print(cmp.findings)
        console.print(dist[["center_id", "activity", "district_type", "district_types"]].to_string(index=False))
    if out:
        _write_file(cmp.centers, out, as_json)
    _store(ws, name, {"": cmp.centers, "indices": cmp.indices, "districts": dist}, inp,
           {"resolution": resolution, "method": method, "add_cluster": add_cluster or [], "findings": cmp.findings},
           "Snapshot comparison of centers (D2/D4)", as_json)


@app.command("report")
@handle_errors
def report_cmd(source: SourceArg = None, pois: PoisOpt = None, buildings: BuildingsOpt = None,
               streets: StreetsOpt = None, nodes: NodesOpt = None, landuse: LanduseOpt = None,
               add_cluster: ClusterOpt = None, resolution: ResOpt = 9,
               out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("spatial.html"),
               title: Annotated[str, typer.Option("--title")] = "Urban spatial structure",
               workspace: WorkspaceOpt = None) -> None:
    """All of D1-D6 on one self-contained HTML page with maps (no CDN, no tiles).

    Example: citytwin spatial report Helsinki.osm.pbf --add-cluster 24.9505,60.1765,150,120,1 -o helsinki.html
    """
    from citytwin.workflows.spatial import spatial_report

    rep = spatial_report(out, source=source, workspace=_ws(workspace), pois=pois, buildings=buildings,
                         streets=streets, nodes=nodes, landuse=landuse, add_cluster=add_cluster,
                         resolution=resolution, title=title)
    console.print(f"wrote {out} ({rep.size / 1024:.0f} KiB)")
