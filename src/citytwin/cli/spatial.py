"""`citytwin spatial ...` commands: centers, mix, lifecircle, jobs, compare, report (D1-D6).

Thin layer: read an OSM PBF file (layers via citytwin.foundation.osm) or workspace datasets / GIS
files, call citytwin.spatial, print, write results (``--out`` file, or ``-w`` workspace with lineage).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import geopandas as gpd
import pandas as pd
import typer

from citytwin.cli.common import WorkspaceOpt, console, handle_errors, open_workspace, print_json
from citytwin.foundation.errors import InputError
from citytwin.foundation.workspace import Workspace

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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ClusterOpt = Annotated[list[str] | None, typer.Option(
    "--add-cluster", help="Second snapshot = first + a synthetic center: LON,LAT,N[,RADIUS_M[,SEED]] (repeatable).")]


@dataclass
class Inputs:
    """Layers loaded for a command, and where they came from (for lineage)."""

    layers: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_graphml(path: Path) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """(nodes, edges) of a GraphML street graph (as OSMnx writes it: node x/y, edge length in m)."""
    import osmnx as ox

    try:
        g = ox.load_graphml(path)
        nodes, edges = ox.graph_to_gdfs(g)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read the GraphML graph: {exc}", file=str(path)) from exc
    nodes = nodes.reset_index().rename(columns={"osmid": "id"})
    edges = edges.reset_index()
    return nodes, edges


def _read_layer(ref: str, ws: Workspace | None, inp: Inputs, kind: str) -> gpd.GeoDataFrame:
    p = Path(ref)
    if p.exists() and p.suffix.lower() == ".graphml" and kind == "streets":
        nodes, edges = read_graphml(p)
        inp.layers["nodes"] = nodes
        inp.files[kind] = str(p)
        return edges
    if p.exists():
        try:
            g = gpd.read_parquet(p) if p.suffix.lower() == ".parquet" else gpd.read_file(p)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {kind}: {exc}", file=str(p)) from exc
        inp.files[kind] = str(p)
        return g
    if ws is None:
        raise InputError(f"{ref!r} is not a file, and no workspace was given to look it up as a dataset",
                         field=kind, hint="pass a file path, or --workspace DIR with a dataset name")
    df = ws.read(ref)
    if not isinstance(df, gpd.GeoDataFrame):
        raise InputError(f"dataset {ref!r} has no geometry", field=kind)
    inp.datasets.append(ref)
    return df


def load_inputs(source: str | None, ws: Workspace | None, need: set[str], *, pois: str | None = None,
                buildings: str | None = None, streets: str | None = None, nodes: str | None = None,
                landuse: str | None = None, network_type: str = "walking") -> Inputs:
    """Load the layers a command needs from a PBF file and/or files / datasets."""
    from citytwin.foundation import osm

    inp = Inputs()
    given = {"pois": pois, "buildings": buildings, "streets": streets, "nodes": nodes, "landuse": landuse}
    if source:
        p = Path(source)
        if not p.exists():
            raise InputError("file not found", file=source)
        inp.files["pbf"] = str(p)
        inp.files["pbf_sha256"] = _sha256(p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for layer in ("pois", "buildings", "landuse"):
                if layer in need and not given[layer]:
                    inp.layers[layer] = osm.read_osm_layer(p, layer)
            if ({"streets", "nodes"} & need) and not streets:
                n, e = osm.street_graph(p, network_type=network_type)
                inp.layers["nodes"], inp.layers["streets"] = n, e
    for kind in ("pois", "buildings", "landuse", "streets", "nodes"):  # streets before nodes
        ref = given[kind]
        if ref and (kind in need or (kind == "nodes" and "streets" in need)):
            inp.layers[kind] = _read_layer(ref, ws, inp, kind)
    if "streets" in need and "nodes" not in inp.layers and "streets" in inp.layers:
        from citytwin.spatial.network import nodes_from_edges

        inp.layers["nodes"] = nodes_from_edges(inp.layers["streets"])
    missing = sorted(k for k in need if k not in inp.layers)
    if missing:
        raise InputError(f"missing input layer(s): {', '.join(missing)}", field=missing[0],
                         hint="give an OSM PBF file, or --" + " --".join(missing))
    return inp


def _ws(workspace: Path | None) -> Workspace | None:
    return open_workspace(workspace) if workspace is not None else None


def _write_file(frame: pd.DataFrame, out: Path) -> None:
    suf = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suf == ".parquet":
        frame.to_parquet(out)
    elif suf in (".geojson", ".json", ".gpkg") and isinstance(frame, gpd.GeoDataFrame):
        frame.to_file(out, driver="GeoJSON" if suf != ".gpkg" else "GPKG")
    elif suf == ".csv":
        pd.DataFrame(frame.drop(columns="geometry", errors="ignore")).to_csv(out, index=False)
    else:
        raise InputError(f"unsupported output type {suf!r}", file=str(out), hint="use .parquet, .geojson, .gpkg, .csv")
    console.print(f"wrote {out}")


def _store(ws: Workspace | None, name: str, frames: dict[str, pd.DataFrame], inp: Inputs, params: dict[str, Any],
           description: str) -> None:
    if ws is None:
        return
    clean = json.loads(json.dumps({**params, "source_files": inp.files}, default=str))
    for suffix, frame in frames.items():
        nm = f"{name}_{suffix}" if suffix else name
        v = ws.write_derived(nm, frame, inputs=list(dict.fromkeys(inp.datasets)), parameters=clean,
                             description=description)
        console.print(f"stored [bold]{nm}[/] v{v}")


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
        _write_file(res.centers, out)
    _store(ws, name, {"": res.centers, "cells": res.cells}, inp, res.report, "Centers and polycentricity (D1)")


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
        _write_file(m, out)
    _store(ws, name, {"": m}, inp, {"resolution": resolution, "classes": m.attrs.get("classes")},
           "Functional mix per H3 cell (D3)")


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
                   workspace: WorkspaceOpt = None) -> None:
    """D5: walking distance from every home to each daily service; coverage and ranked gaps."""
    from citytwin.spatial.lifecircle import life_circle, residential_buildings
    from citytwin.spatial.network import build_network

    ws = _ws(workspace)
    inp = load_inputs(source, ws, {"pois", "buildings", "streets"}, pois=pois, buildings=buildings,
                      streets=streets, nodes=nodes)
    net = build_network(inp.layers["nodes"], inp.layers["streets"])
    homes = residential_buildings(inp.layers["buildings"], include_unknown=include_unknown)
    lc = life_circle(homes, inp.layers["pois"], net, minutes=minutes, speed_kmh=speed, threshold_m=threshold_m,
                     max_snap_m=max_snap)
    if as_json:
        print_json({"coverage": lc.coverage.to_dict("records"), "report": lc.report})
    else:
        console.print(lc.coverage.to_string(index=False))
        console.print(f"network: {net.n_nodes} nodes, {net.n_components} components; "
                      f"homes: {len(lc.homes)}; threshold {lc.threshold_m:.0f} m")
        g = lc.gaps(10)
        console.print(g[["gap_rank", "home_id", "n_missing", "n_unreachable", "mean_excess_m"]].to_string(index=False))
    if out:
        _write_file(lc.homes, out)
    params = {"minutes": minutes, "speed_kmh": speed, "threshold_m": lc.threshold_m, "max_snap_m": max_snap,
              "include_unknown": include_unknown, "report": lc.report}
    _store(ws, name, {"": lc.homes, "coverage": lc.coverage}, inp, params, "Life circles (D5)")


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
        _write_file(jh.cells, out)
    _store(ws, name, {"": jh.cells}, inp, jh.report, "Job-housing balance per H3 cell (D6)")


def _parse_cluster(spec: str) -> dict[str, Any]:
    parts = [s.strip() for s in spec.split(",")]
    if len(parts) < 3:
        raise InputError(f"bad --add-cluster {spec!r}", field="add-cluster", hint="LON,LAT,N[,RADIUS_M[,SEED]]")
    try:
        return {"lon": float(parts[0]), "lat": float(parts[1]), "n": int(parts[2]),
                "radius_m": float(parts[3]) if len(parts) > 3 else 100.0, "seed": int(parts[4]) if len(parts) > 4 else 0}
    except ValueError as exc:
        raise InputError(f"bad --add-cluster {spec!r}: {exc}", field="add-cluster") from exc


def _second_snapshot(pois_a: gpd.GeoDataFrame, clusters: list[str]) -> gpd.GeoDataFrame:
    from citytwin.spatial.compare import add_cluster

    out = pois_a
    for spec in clusters:
        c = _parse_cluster(spec)
        out = add_cluster(out, c["lon"], c["lat"], c["n"], radius_m=c["radius_m"], seed=c["seed"])
    return out


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
    from citytwin.spatial.centers import find_centers
    from citytwin.spatial.compare import compare_snapshots, innovation_districts

    ws = _ws(workspace)
    inp = load_inputs(source, ws, {"pois", "landuse"} if (source or landuse) else {"pois"}, pois=pois,
                      landuse=landuse)
    pa = inp.layers["pois"]
    if second:
        if second.lower().endswith(".pbf"):
            inp2 = load_inputs(second, ws, {"pois"})
        else:
            inp2 = load_inputs(None, ws, {"pois"}, pois=second)
        pb = inp2.layers["pois"]
        inp.datasets += inp2.datasets
        inp.files.update({f"second_{k}": v for k, v in inp2.files.items()})
    elif add_cluster:
        pb = _second_snapshot(pa, add_cluster)
    else:
        raise InputError("no second snapshot", field="second", hint="give --second or --add-cluster")
    a = find_centers(pa, resolution=resolution, method=method)  # type: ignore[arg-type]
    b = find_centers(pb, resolution=resolution, method=method)  # type: ignore[arg-type]
    cmp = compare_snapshots(a, b)
    dist = innovation_districts(b, pb, inp.layers.get("landuse"))
    if as_json:
        print_json({"findings": cmp.findings, "indices": cmp.indices.to_dict("records"),
                    "centers": cmp.centers.drop(columns="geometry").to_dict("records"),
                    "districts": dist.drop(columns="geometry").to_dict("records")})
    else:
        console.print(cmp.indices.to_string(index=False))
        console.print(cmp.findings)
        console.print(dist[["center_id", "activity", "district_type", "district_types"]].to_string(index=False))
    if out:
        _write_file(cmp.centers, out)
    _store(ws, name, {"": cmp.centers, "indices": cmp.indices, "districts": dist}, inp,
           {"resolution": resolution, "method": method, "add_cluster": add_cluster or [], "findings": cmp.findings},
           "Snapshot comparison of centers (D2/D4)")


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
    from citytwin.spatial import report as R
    from citytwin.spatial.centers import find_centers
    from citytwin.spatial.compare import compare_snapshots, innovation_districts
    from citytwin.spatial.jobs_housing import jobs_housing
    from citytwin.spatial.lifecircle import DAILY_SERVICES, life_circle, residential_buildings
    from citytwin.spatial.mix import functional_mix
    from citytwin.spatial.network import build_network

    ws = _ws(workspace)
    inp = load_inputs(source, ws, {"pois", "buildings", "streets", "landuse"} if (source or landuse)
                      else {"pois", "buildings", "streets"}, pois=pois, buildings=buildings, streets=streets,
                      nodes=nodes, landuse=landuse)
    L = inp.layers
    st = L["streets"]
    cen = find_centers(L["pois"], resolution=resolution)
    sections = [R.centers_section(cen, st), R.mix_section(functional_mix(L["pois"], resolution=resolution), st)]
    net = build_network(L["nodes"], st)
    lc = life_circle(residential_buildings(L["buildings"], include_unknown=True), L["pois"], net)
    sections.append(R.lifecircle_section(lc, st, L["pois"][L["pois"]["category"].isin(DAILY_SERVICES)]))
    sections.append(R.jobs_section(jobs_housing(L["buildings"], L["pois"], resolution=resolution), st))
    notes = [f"Inputs: {inp.files or inp.datasets}", f"Life circle: {lc.report.get('notes')}"]
    if add_cluster:
        pb = _second_snapshot(L["pois"], add_cluster)
        b = find_centers(pb, resolution=resolution)
        sections.append(R.comparison_section(compare_snapshots(cen, b), st))
        sections.append(R.districts_section(innovation_districts(b, pb, L.get("landuse"))))
        notes.append(f"Second snapshot = first + synthetic clusters {add_cluster} (citytwin.spatial.compare.add_cluster)")
    else:
        sections.append(R.districts_section(innovation_districts(cen, L["pois"], L.get("landuse"))))
    page = R.render_html(title, sections, notes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    console.print(f"wrote {out} ({len(page) / 1024:.0f} KiB)")
