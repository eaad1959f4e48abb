"""Inputs, results and the report of the urban-space analyses (D1-D6).

:func:`load_inputs` gathers the layers an analysis needs from an OSM PBF file and/or GIS files,
GraphML graphs or catalog datasets (remembering where each came from, for lineage);
:func:`store_results` writes results as derived datasets; :func:`spatial_report` runs D1-D6 and
writes one self-contained HTML page. ``citytwin spatial ...`` and the demo call these.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.workflows.common import WorkspaceLike, maybe_ws

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

    from citytwin.foundation.workspace import Workspace
    from citytwin.spatial.compare import SnapshotComparison
    from citytwin.spatial.lifecircle import LifeCircleResult
    from citytwin.spatial.network import StreetNetwork

__all__ = ["CompareRun", "Inputs", "LifeCircleRun", "SpatialReport", "compare_two_snapshots", "life_circles",
           "load_inputs", "parse_cluster", "read_graphml", "second_snapshot", "spatial_report", "store_results",
           "write_file"]


@dataclass
class Inputs:
    """Layers loaded for an analysis, and where they came from (for lineage)."""

    layers: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


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


def _is_geoparquet(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        return b"geo" in (pq.read_schema(path).metadata or {})
    except (OSError, ValueError):
        return True  # unreadable: said by the GeoParquet reader


def _read_layer(ref: str, ws: Workspace | None, inp: Inputs, kind: str) -> gpd.GeoDataFrame:
    import geopandas as gpd

    p = Path(ref)
    if p.exists() and p.suffix.lower() == ".graphml" and kind == "streets":
        nodes, edges = read_graphml(p)
        inp.layers["nodes"] = nodes
        inp.files[kind] = str(p)
        return edges
    if p.exists():
        try:
            if p.suffix.lower() == ".parquet" and kind == "streets" and not _is_geoparquet(p):
                import pandas as pd  # an edge list u, v, length without geometry (a large network's)

                g = pd.read_parquet(p)
            else:
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


def load_inputs(source: str | None, workspace: WorkspaceLike | None, need: set[str], *, pois: str | None = None,
                buildings: str | None = None, streets: str | None = None, nodes: str | None = None,
                landuse: str | None = None, network_type: str = "walking") -> Inputs:
    """Load the layers an analysis needs from a PBF file and/or files / datasets.

    Parameters
    ----------
    source
        OSM PBF file: every needed layer not given otherwise comes from it.
    workspace
        Workspace (or its folder) in which ``pois`` ... ``landuse`` are looked up as datasets when
        they are not files.
    need
        The layers needed: ``pois``, ``buildings``, ``streets``, ``nodes``, ``landuse``.
    pois, buildings, streets, nodes, landuse
        A GIS file (GraphML for streets), or a dataset name, per layer.
    network_type
        Street network of the PBF file (pyrosm's ``walking``, ``driving``, ...).

    Raises
    ------
    InputError
        When a file is missing or unreadable, or a needed layer was not given.
    """
    from citytwin.foundation import osm

    ws = maybe_ws(workspace)
    inp = Inputs()
    given = {"pois": pois, "buildings": buildings, "streets": streets, "nodes": nodes, "landuse": landuse}
    if source:
        p = Path(source)
        if not p.exists():
            raise InputError("file not found", file=source)
        inp.files["pbf"] = str(p)
        from citytwin.foundation.ingest.parallel import file_sha256  # the ingest package is heavy to import

        inp.files["pbf_sha256"] = file_sha256(p)
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


def write_file(frame: pd.DataFrame, out: Path) -> Path:
    """Write a result to ``out`` (.parquet, .geojson/.json or .gpkg for a GeoDataFrame, .csv); returns ``out``.

    Raises
    ------
    InputError
        For another file type.
    """
    import geopandas as gpd
    import pandas as pd

    suf = out.suffix.lower()
    if suf not in (".parquet", ".csv") and not (suf in (".geojson", ".json", ".gpkg")
                                               and isinstance(frame, gpd.GeoDataFrame)):
        raise InputError(f"unsupported output type {suf!r}", file=str(out), hint="use .parquet, .geojson, .gpkg, .csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suf == ".parquet":
        frame.to_parquet(out)
    elif suf == ".csv":
        pd.DataFrame(frame.drop(columns="geometry", errors="ignore")).to_csv(out, index=False)
    else:
        assert isinstance(frame, gpd.GeoDataFrame)
        frame.to_file(out, driver="GeoJSON" if suf != ".gpkg" else "GPKG")
    return out


def store_results(ws: Workspace | None, name: str, frames: dict[str, pd.DataFrame], inp: Inputs,
                  params: dict[str, Any], description: str) -> list[tuple[str, int]]:
    """Store result frames as derived datasets ``name`` / ``name_<suffix>`` with lineage to the inputs.

    Returns the (dataset, version) pairs stored; nothing without a workspace.
    """
    if ws is None:
        return []
    clean = json.loads(json.dumps({**params, "source_files": inp.files}, default=str))
    stored = []
    for suffix, frame in frames.items():
        nm = f"{name}_{suffix}" if suffix else name
        v = ws.write_derived(nm, frame, inputs=list(dict.fromkeys(inp.datasets)), parameters=clean,
                             description=description)
        stored.append((nm, v))
    return stored


def parse_cluster(spec: str) -> dict[str, Any]:
    """``LON,LAT,N[,RADIUS_M[,SEED]]`` -> the keyword arguments of :func:`citytwin.spatial.compare.add_cluster`.

    Examples
    --------
    >>> parse_cluster("24.95,60.17,150,120,1")
    {'lon': 24.95, 'lat': 60.17, 'n': 150, 'radius_m': 120.0, 'seed': 1}
    """
    parts = [s.strip() for s in spec.split(",")]
    if len(parts) < 3:
        raise InputError(f"bad --add-cluster {spec!r}", field="add-cluster", hint="LON,LAT,N[,RADIUS_M[,SEED]]")
    try:
        return {"lon": float(parts[0]), "lat": float(parts[1]), "n": int(parts[2]),
                "radius_m": float(parts[3]) if len(parts) > 3 else 100.0, "seed": int(parts[4]) if len(parts) > 4 else 0}
    except ValueError as exc:
        raise InputError(f"bad --add-cluster {spec!r}: {exc}", field="add-cluster") from exc


def second_snapshot(pois_a: gpd.GeoDataFrame, clusters: list[str]) -> gpd.GeoDataFrame:
    """A second snapshot: the POIs ``pois_a`` plus synthetic clusters (:func:`parse_cluster` specs)."""
    from citytwin.spatial.compare import add_cluster

    out = pois_a
    for spec in clusters:
        c = parse_cluster(spec)
        out = add_cluster(out, c["lon"], c["lat"], c["n"], radius_m=c["radius_m"], seed=c["seed"])
    return out


@dataclass
class LifeCircleRun:
    """Life circles computed by :func:`life_circles`: the result, the street network and the inputs."""

    result: LifeCircleResult
    network: StreetNetwork
    inputs: Inputs


def life_circles(source: str | None = None, workspace: WorkspaceLike | None = None, *, pois: str | None = None,
                 buildings: str | None = None, streets: str | None = None, nodes: str | None = None,
                 minutes: float = 15.0, speed_kmh: float = 4.8, threshold_m: float | None = None,
                 include_unknown: bool = True, max_snap_m: float = 250.0) -> LifeCircleRun:
    """D5: walking distance on the street network from every home to each daily service.

    Inputs as for :func:`load_inputs` (POIs, buildings, streets); homes are the residential buildings
    (with ``include_unknown``, untyped ones too); the distance threshold is ``minutes`` at
    ``speed_kmh``, or ``threshold_m`` when given (:func:`citytwin.spatial.lifecircle.life_circle`).
    """
    from citytwin.spatial.lifecircle import life_circle, residential_buildings
    from citytwin.spatial.network import build_network

    inp = load_inputs(source, workspace, {"pois", "buildings", "streets"}, pois=pois, buildings=buildings,
                      streets=streets, nodes=nodes)
    net = build_network(inp.layers["nodes"], inp.layers["streets"])
    homes = residential_buildings(inp.layers["buildings"], include_unknown=include_unknown)
    lc = life_circle(homes, inp.layers["pois"], net, minutes=minutes, speed_kmh=speed_kmh,
                     threshold_m=threshold_m, max_snap_m=max_snap_m)
    return LifeCircleRun(lc, net, inp)


@dataclass
class CompareRun:
    """Two snapshots compared by :func:`compare_two_snapshots`: the comparison of their centers, the
    innovation-district types of the second, and the inputs (both snapshots' sources)."""

    comparison: SnapshotComparison
    districts: pd.DataFrame
    inputs: Inputs


def compare_two_snapshots(source: str | None = None, workspace: WorkspaceLike | None = None, *,
                          second: str | None = None, pois: str | None = None, landuse: str | None = None,
                          add_cluster: list[str] | None = None, resolution: int = 9,
                          method: str = "peaks") -> CompareRun:
    """D2/D4: compare two snapshots: new / lost centers, hierarchy change, innovation-district types.

    The first snapshot's POIs (and land use) come as for :func:`load_inputs`; the second is
    ``second`` (a PBF file, a POI file or dataset) or the first plus ``add_cluster`` synthetic clusters.

    Raises
    ------
    InputError
        When there is no second snapshot, or an input cannot be read.
    """
    from citytwin.spatial.centers import find_centers
    from citytwin.spatial.compare import compare_snapshots, innovation_districts

    ws = maybe_ws(workspace)
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
        pb = second_snapshot(pa, add_cluster)
    else:
        raise InputError("no second snapshot", field="second", hint="give --second or --add-cluster")
    a = find_centers(pa, resolution=resolution, method=method)  # type: ignore[arg-type]
    b = find_centers(pb, resolution=resolution, method=method)  # type: ignore[arg-type]
    return CompareRun(compare_snapshots(a, b), innovation_districts(b, pb, inp.layers.get("landuse")), inp)


@dataclass
class SpatialReport:
    """The HTML page :func:`spatial_report` wrote (``size`` in characters) and its inputs."""

    out: Path
    size: int
    inputs: Inputs


def spatial_report(out: Path, *, source: str | None = None, workspace: WorkspaceLike | None = None,
                   pois: str | None = None, buildings: str | None = None, streets: str | None = None,
                   nodes: str | None = None, landuse: str | None = None, add_cluster: list[str] | None = None,
                   resolution: int = 9, title: str = "Urban spatial structure") -> SpatialReport:
    """All of D1-D6 on one self-contained HTML page with maps (no CDN, no tiles), written to ``out``.

    Inputs as for :func:`load_inputs` (land use is needed with a PBF ``source`` or ``landuse``);
    ``add_cluster`` specs make a second snapshot for the comparison (D2/D4).
    """
    from citytwin.spatial import report as R
    from citytwin.spatial.centers import find_centers
    from citytwin.spatial.compare import compare_snapshots, innovation_districts
    from citytwin.spatial.jobs_housing import jobs_housing
    from citytwin.spatial.lifecircle import DAILY_SERVICES, life_circle, residential_buildings
    from citytwin.spatial.mix import functional_mix
    from citytwin.spatial.network import build_network

    inp = load_inputs(source, workspace, {"pois", "buildings", "streets", "landuse"} if (source or landuse)
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
        pb = second_snapshot(L["pois"], add_cluster)
        b = find_centers(pb, resolution=resolution)
        sections.append(R.comparison_section(compare_snapshots(cen, b), st))
        sections.append(R.districts_section(innovation_districts(b, pb, L.get("landuse"))))
        notes.append(f"Second snapshot = first + synthetic clusters {add_cluster} (citytwin.spatial.compare.add_cluster)")
    else:
        sections.append(R.districts_section(innovation_districts(cen, L["pois"], L.get("landuse"))))
    page = R.render_html(title, sections, notes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return SpatialReport(out, len(page), inp)
