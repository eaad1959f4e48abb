"""Planning workflows (E1–E5): read plan layers and tables (files or catalog datasets), call
:mod:`citytwin.planning`, write the outputs to a folder, and return a JSON-serialisable summary (the
CLI prints it). Every output folder is written whole or not at all: the files are made in a hidden
folder beside it and moved in once all of them exist.

Outputs (all in ``out``):

- :func:`conflicts`: ``conflicts.parquet`` (GeoParquet, one row per conflict polygon: rule, kind,
  layer, other, feature, other_feature, area_m2, geometry in WGS84), ``summary.csv`` (``rule, n,
  area_m2``), ``pairs.csv`` (per rule and pair of layers) and ``conflicts.json`` (the CRS of the areas);
- :func:`change`: ``changes.parquet``, ``transitions.csv`` (the matrix, m²), ``rates.csv``,
  ``change.json``, with rules ``violations.parquet`` / ``violations.csv``, with hot spots ``hotspots.csv``;
- :func:`reserve`: ``forecast.csv``, ``reserve.csv``, ``reserve.json`` (every parameter);
- :func:`sites`: ``ranking.csv`` (contributions, score, rank), ``sensitivity.csv``, ``sites.json``;
- :func:`outcome`: ``outcome.json`` (difference-in-differences beside the project's targets).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from citytwin.foundation.errors import InputError
from citytwin.workflows.common import WorkspaceLike, maybe_ws, open_ws, read_layer_file

if TYPE_CHECKING:
    import geopandas as gpd

    from citytwin.foundation.projects import ProjectStore


def _write_all(out: str | Path, writers: Mapping[str, Callable[[Path], None]]) -> Path:
    """Write every file of ``writers`` (file name -> function writing that path) into ``out`` at once."""
    o = Path(out)
    o.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{o.name}.", dir=o.parent))
    try:
        for name, write in writers.items():
            write(tmp / name)
        o.mkdir(parents=True, exist_ok=True)
        for name in writers:
            os.replace(tmp / name, o / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return o


def _json_writer(obj: Any) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        p.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str), encoding="utf-8")

    return write


def read_layer(source: str, *, workspace: WorkspaceLike | None = None, user: str | None = None
               ) -> tuple[gpd.GeoDataFrame, str | None]:
    """A polygon layer from a file (GeoParquet, GeoPackage, GeoJSON, Shapefile ...), an ``s3://``
    GeoParquet object or, failing that, a catalog dataset (read through ``Workspace.read``: checked,
    masked, audited)."""
    import geopandas as gpd

    from citytwin.foundation.objectstore import is_url, read_geoparquet

    if is_url(source):  # an s3:// GeoParquet object, read by this process (store errors name the URL)
        return read_geoparquet(source), None
    if Path(source).exists():
        return read_layer_file(source), None
    ws = maybe_ws(workspace, user)
    if ws is None:
        raise InputError(f"{source!r} is not a file, and no workspace was given to look it up as a dataset",
                         hint="pass a file path, or --workspace DIR with a dataset name")
    frame = ws.read(source)
    if not isinstance(frame, gpd.GeoDataFrame):
        raise InputError(f"dataset {source!r} has no geometry", field="geometry")
    return frame, source


def parse_layers(specs: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """``["A=plan.gpkg", "B=redline"]`` -> ``{"A": "plan.gpkg", "B": "redline"}``."""
    if isinstance(specs, Mapping):
        return dict(specs)
    out: dict[str, str] = {}
    for s in specs:
        name, sep, src = s.partition("=")
        if not sep or not name.strip() or not src.strip():
            raise InputError(f"bad --layer {s!r}", field="--layer", hint="use --layer NAME=DATASET_OR_FILE")
        if name.strip() in out:
            raise InputError(f"layer {name.strip()!r} given twice", field="--layer")
        out[name.strip()] = src.strip()
    if not out:
        raise InputError("no layers given", field="--layer", hint="use --layer NAME=DATASET_OR_FILE (repeated)")
    return out


def read_rules(path: str | Path) -> Any:
    """The parsed YAML (or JSON) rules file."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise InputError("rules file not found", file=str(p))
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the rules: {exc}", file=str(p)) from exc


def _load_layers(specs: Mapping[str, str], workspace: WorkspaceLike | None, user: str | None,
                 overlap_tolerance: float | None = None, *, check: bool = True
                 ) -> tuple[dict[str, gpd.GeoDataFrame], list[str]]:
    """The layers read (and checked with :func:`citytwin.planning.overlay.check_layer` unless ``check``
    is false: :func:`citytwin.planning.overlay.find_conflicts` checks them itself), and the datasets read."""
    from citytwin.planning.overlay import SELF_OVERLAP_TOLERANCE, check_layer

    layers: dict[str, gpd.GeoDataFrame] = {}
    inputs: list[str] = []
    for name, src in specs.items():
        frame, ds = read_layer(src, workspace=workspace, user=user)
        layers[name] = check_layer(name, frame, source=src, overlap_tolerance=overlap_tolerance or
                                   SELF_OVERLAP_TOLERANCE) if check else frame
        if ds:
            inputs.append(ds)
    return layers, inputs


def conflicts(layers: Sequence[str] | Mapping[str, str], rules: str | Path, out: str | Path, *,
              workspace: WorkspaceLike | None = None, user: str | None = None,
              store: str | None = None, overlap_tolerance: float | None = None) -> dict[str, Any]:
    """Plan conflicts -> ``out/conflicts.parquet`` and ``out/summary.csv`` (and a derived dataset
    ``store`` with lineage when a workspace is given). ``overlap_tolerance``: overlaps within a layer
    accepted up to this share of the smaller polygon (:func:`citytwin.planning.overlay.check_layer`);
    the accepted ones are counted per layer in the summary and ``conflicts.json``, with a warning."""
    from citytwin.planning.overlay import SELF_OVERLAP_TOLERANCE, find_conflicts, parse_rules

    specs = parse_layers(layers)
    rule_list = parse_rules(read_rules(rules), list(specs), source=str(rules))
    used = {r.layer for r in rule_list} | {o for r in rule_list for o in r.others}
    used_specs = {k: v for k, v in specs.items() if k in used}
    loaded, inputs = _load_layers(used_specs, workspace, user, check=False)
    # find_conflicts checks the layers (errors name their source) and reuses what the checks computed
    res = find_conflicts(loaded, rule_list, check=True, sources=used_specs,
                         overlap_tolerance=overlap_tolerance or SELF_OVERLAP_TOLERANCE)
    accepted = {n: {"pairs": int(c.get("accepted_overlaps", 0)),
                    "largest_share": float(c.get("largest_overlap_share", 0.0))}
                for n, c in res.checks.items() if c.get("accepted_overlaps")}
    warnings = [f"layer {n!r}: {a['pairs']} pair(s) of its own features overlap (up to {a['largest_share']:.3g} "
                "of the smaller one; accepted by --overlap-tolerance): conflicts there are counted once per feature"
                for n, a in accepted.items()]
    meta = {"crs_of_areas": res.crs, "layers": specs, "rules": str(rules),
            "repaired": {n: int(c.get("repaired", 0)) for n, c in res.checks.items()},
            "overlap_tolerance": overlap_tolerance, "accepted_overlaps": accepted, "warnings": warnings}
    o = _write_all(out, {
        "conflicts.parquet": lambda p: res.conflicts.to_parquet(p, index=False),
        "summary.csv": lambda p: res.summary[["rule", "n", "area_m2"]].to_csv(p, index=False),
        "pairs.csv": lambda p: res.pairs.to_csv(p, index=False),
        "conflicts.json": _json_writer(meta),
    })
    stored = None
    if store:
        ws = open_ws(workspace, user)
        stored = ws.write_derived(store, res.conflicts, inputs=list(inputs), department="planning",
                                  parameters={"rules": read_rules(rules), "layers": specs, "crs": res.crs,
                                              "overlap_tolerance": overlap_tolerance,
                                              "accepted_overlaps": accepted},
                                  description="plan conflicts (citytwin plan conflicts)")
    return {"out": str(o), "crs_of_areas": res.crs, "summary": res.summary.to_dict("records"),
            "pairs": res.pairs.to_dict("records"), "stored": {"dataset": store, "version": stored} if store else None,
            "repaired": meta["repaired"], "accepted_overlaps": accepted, "warnings": warnings}


def change(before: str, after: str, out: str | Path, *, column: str = "landuse", years: float = 1.0,
           after_column: str | None = None, classes: Sequence[str] | None = None,
           layers: Sequence[str] | Mapping[str, str] | None = None, rules: str | Path | None = None,
           hotspots: int | None = None, workspace: WorkspaceLike | None = None,
           user: str | None = None, store: str | None = None, overlap_tolerance: float | None = None,
           dask: str | None = None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Land change between two snapshots -> ``out/changes.parquet``, ``transitions.csv``, ``rates.csv``;
    with ``rules`` (layer ``change`` = the change pieces) and plan ``layers``, the violations. With ``dask``
    (``local:N`` | ``tcp://HOST:PORT``) the snapshots (files or ``s3://`` GeoParquet objects, read by the
    workers) are cut in stripes on Dask
    (:func:`citytwin.workflows.scaleout_change.land_change`: the same result)."""
    from citytwin.planning.change import change_hotspots, flag_changes, land_change
    from citytwin.planning.overlay import parse_rules

    if dask:  # the workers read the snapshot files themselves
        from citytwin.foundation.scaleout import parse_dask
        from citytwin.workflows import scaleout_change

        parse_dask(dask)  # a bad value is said first
        ds_b = ds_a = None
    else:
        b, ds_b = read_layer(before, workspace=workspace, user=user)
        a, ds_a = read_layer(after, workspace=workspace, user=user)
    specs = parse_layers(layers) if layers else {}
    rule_list = parse_rules(read_rules(rules), ["change", *specs], source=str(rules)) if rules else []
    from citytwin.planning.overlay import SELF_OVERLAP_TOLERANCE

    if dask:
        res = scaleout_change.land_change(before, after, dask=dask, column=column, after_column=after_column,
                                          years=years, classes=classes, overlap_tolerance=overlap_tolerance,
                                          progress=progress)
    else:  # young collections made rare, as the Dask path's tasks do: its many geometries are never cyclic
        from citytwin.foundation.collector import rare_collections

        with rare_collections():
            res = land_change(b, a, column=column, after_column=after_column, years=years, classes=classes,
                              names=(before, after), overlap_tolerance=overlap_tolerance or SELF_OVERLAP_TOLERANCE)
    writers: dict[str, Callable[[Path], None]] = {
        "changes.parquet": lambda p: res.changes.to_parquet(p, index=False),
        "transitions.csv": lambda p: res.matrix.to_csv(p),
        "rates.csv": lambda p: res.rates.to_csv(p, index=False),
    }
    summary: dict[str, Any] = {"crs_of_areas": res.crs, "years": res.years,
                               "total_area_m2": float(res.matrix.to_numpy().sum()),
                               "changed_area_m2": float(res.changes["area_m2"].sum()),
                               "n_changes": len(res.changes), "overlap_tolerance": overlap_tolerance,
                               "warnings": res.warnings}
    if dask:
        summary["dask"] = str(dask)
    if rule_list:
        plan, _inputs = _load_layers(specs, workspace, user)
        flags = flag_changes(res, plan, rule_list)
        writers["violations.parquet"] = lambda p: flags.conflicts.to_parquet(p, index=False)
        writers["violations.csv"] = lambda p: flags.summary.to_csv(p, index=False)
        summary["violations"] = flags.summary.to_dict("records")
    if hotspots is not None:
        hs = change_hotspots(res, resolution=hotspots)
        writers["hotspots.csv"] = lambda p: hs.to_csv(p, index=False)
        summary["hot_cells"] = int((hs["hotspot"] == "hot").sum())
    writers["change.json"] = _json_writer(summary)
    o = _write_all(out, writers)
    if store:
        inputs: list[str | tuple[str, int | None]] = [d for d in (ds_b, ds_a) if d]
        summary["stored"] = {"dataset": store, "version": open_ws(workspace, user).write_derived(
            store, res.changes, inputs=inputs, department="planning",
            parameters={"before": before, "after": after, "column": column, "years": years, "crs": res.crs},
            description="land change pieces (citytwin plan change)")}
    return {"out": str(o), **summary, "matrix": {str(k): v for k, v in res.matrix.to_dict("index").items()},
            "rates": res.rates.to_dict("records")}


def reserve(population: str | None, out: str | Path, *, planned_total_km2: float, target_years: Sequence[int],
            year: str = "year", value: str = "population", reserve_km2: float | None = None,
            reserve_ratio: float | None = None, per_capita_m2: float = 100.0, climate_zone: str = "II",
            activation_year: int | None = None, may_only_grow: bool = True, capacity: float | None = None,
            workspace: WorkspaceLike | None = None, user: str | None = None) -> dict[str, Any]:
    """Reserve land per planning year (population forecasts when ``population`` is a table)."""
    from citytwin.planning.reserve import ReserveParams, forecast_population, reserve_land
    from citytwin.workflows.resilience import read_panel

    params = ReserveParams(planned_total_km2=planned_total_km2, reserve_km2=reserve_km2,
                           reserve_ratio=reserve_ratio, per_capita_m2=per_capita_m2, climate_zone=climate_zone,
                           activation_year=activation_year, may_only_grow=may_only_grow)
    fc = None
    if population:
        ws = maybe_ws(workspace, user)
        frame, _ = read_panel(population, workspace=ws.root if ws else None, user=user)
        for c in (year, value):
            if c not in frame.columns:
                raise InputError(f"no column {c!r}", file=population, field=c)
        dup = frame[year].duplicated(keep=False).to_numpy()
        if dup.any():
            i = int(dup.argmax())
            v = frame[year].iloc[i]
            v = v.item() if hasattr(v, "item") else v
            raise InputError(f"year {v!r} appears {int((frame[year] == v).sum())} times: the population table must "
                             "have one row per year", file=population, row=i + 1, field=year,
                             hint="the table seems to hold several places; keep the rows of one place and "
                                  "pass that table")
        fc = forecast_population(frame[year].to_numpy(), frame[value].to_numpy(), target_years, capacity=capacity)
    res = reserve_land(params, fc, years=target_years)
    writers: dict[str, Callable[[Path], None]] = {"reserve.csv": lambda p: res.table.to_csv(p, index=False),
                                                  "reserve.json": _json_writer({"params": res.params,
                                                                                "warnings": res.warnings})}
    if fc is not None:
        writers["forecast.csv"] = lambda p: fc.to_csv(p, index=False)
    o = _write_all(out, writers)
    return {"out": str(o), "params": res.params, "warnings": res.warnings, "table": res.table.to_dict("records")}


def parse_criteria(spec: str | Mapping[str, str]) -> dict[str, str]:
    """``"age:benefit,vitality:cost"`` -> ``{"age": "benefit", "vitality": "cost"}``."""
    if isinstance(spec, Mapping):
        return dict(spec)
    out: dict[str, str] = {}
    for item in spec.split(","):
        col, _, d = item.strip().partition(":")
        if not col:
            continue
        out[col] = d or "benefit"
    return out


def parse_weights(spec: str) -> str | dict[str, float]:
    """``"entropy"`` or ``"age=0.5,vitality=0.5"``."""
    if "=" not in spec:
        return spec
    out: dict[str, float] = {}
    for item in spec.split(","):
        k, _, v = item.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise InputError(f"bad weight {item!r}", field="--weights", hint="use COLUMN=NUMBER,...") from None
    return out


def sites(table: str, out: str | Path, *, criteria: str | Mapping[str, str], site: str = "site",
          weights: str = "entropy", delta: float = 0.2, draws: int = 500, seed: int = 0, top: int = 10,
          workspace: WorkspaceLike | None = None, user: str | None = None) -> dict[str, Any]:
    """Renewal ranking with reasons and rank sensitivity -> ``out/ranking.csv``, ``out/sensitivity.csv``."""
    from citytwin.planning.renewal import rank_sensitivity, rank_sites
    from citytwin.workflows.resilience import read_panel

    ws = maybe_ws(workspace, user)
    frame, _ = read_panel(table, workspace=ws.root if ws else None, user=user)
    crit = parse_criteria(criteria)
    r = rank_sites(frame, crit, site=site, weights=parse_weights(weights))
    sens, stab = rank_sensitivity(frame, crit, r.weights, site=site, delta=delta, draws=draws, seed=seed, top=top)
    o = _write_all(out, {"ranking.csv": lambda p: r.table.to_csv(p, index=False),
                         "sensitivity.csv": lambda p: sens.to_csv(p, index=False),
                         "sites.json": _json_writer({"weights": r.weights, "method": r.method, "stability": stab})})
    return {"out": str(o), "weights": r.weights, "method": r.method, "stability": stab,
            "top": r.table.head(top).to_dict("records")}


def project_store(workspace: WorkspaceLike | None, user: str | None = None) -> ProjectStore:
    """The workspace's project records with the planning lifecycle."""
    from citytwin.foundation.projects import ProjectStore
    from citytwin.planning.lifecycle import STAGES, check_transition

    return ProjectStore(open_ws(workspace, user), check_transition=check_transition, initial_stage=STAGES[0])


def outcome(project: str, data: str, *, outcome_col: str, treated: str, post: str, cluster: str | None = None,
            workspace: WorkspaceLike | None = None, user: str | None = None,
            out: str | Path | None = None) -> dict[str, Any]:
    """A project's outcome by difference-in-differences on ``data``, beside its targets; recorded as
    a milestone reading of the indicator."""
    from citytwin.planning.lifecycle import did
    from citytwin.workflows.resilience import read_panel

    store = project_store(workspace, user)
    rec = store.get(project)
    frame, _ = read_panel(data, workspace=store.ws.root, user=user)
    r = did(frame, outcome=outcome_col, treated=treated, post=post, cluster=cluster)
    target = rec["targets"].get(outcome_col)
    res = {"project": project, "indicator": outcome_col, "effect": r.effect, "se": r.se, "ci95": list(r.ci),
           "p": r.p, "nobs": r.nobs, "clusters": r.clusters, "means": r.means, "target": target,
           "target_met": None if target is None else bool(r.effect >= target)}
    store.milestone(project, f"outcome {outcome_col}", done=True, indicator=outcome_col, value=r.effect)
    if out is not None:
        _write_all(out, {"outcome.json": _json_writer(res)})
    return res


#: OSM land-use values grouped into the demo plan's classes.
DEMO_CLASSES: dict[str, tuple[str, ...]] = {
    "construction": ("residential", "commercial", "retail", "industrial", "construction", "civil", "military"),
    "green": ("grass", "park", "forest", "meadow", "recreation_ground", "village_green", "cemetery"),
    "water": ("basin", "pond", "reservoir"),
}


def helsinki_demo(workspace: WorkspaceLike, out: str | Path, *, user: str | None = None, cell_m: float = 250.0,
                  store: bool = True) -> dict[str, Any]:
    """E1–E5 end to end on the Helsinki layers of the demo workspace (``helsinki_landuse``,
    ``helsinki_buildings``, ``helsinki_pois``).

    The plan layers are BUILT FOR THE DEMO from OpenStreetMap (Helsinki has no such plans in the demo
    data); they are not official plans:

    - ``landuse_plan``: a grid of ``cell_m`` squares, each given the class (construction, green,
      water, other) of the OSM land use covering most of it, else construction where buildings cover
      at least 10 % of it;
    - ``redline`` (a stand-in "ecological red line"): the OSM green and water land use, dissolved;
    - ``boundary`` (a stand-in "urban development boundary"): building footprints buffered by 100 m;
    - the two land-use "snapshots" of the change step are the grid classed from OSM land use only
      (A) and the same grid where building cover >= 10 % makes a cell construction (B), 1 year apart.
    """
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import shapely

    from citytwin.planning.change import flag_changes, land_change
    from citytwin.planning.overlay import equal_area_crs, find_conflicts, parse_rules
    from citytwin.planning.renewal import rank_sensitivity, rank_sites
    from citytwin.planning.reserve import zone_reserve

    ws = open_ws(workspace, user)
    lu = cast(gpd.GeoDataFrame, ws.read("helsinki_landuse", columns=["parcel_id", "land_use", "geometry"]))
    bld = cast(gpd.GeoDataFrame, ws.read("helsinki_buildings", columns=["building_id", "geometry"]))
    pois = cast(gpd.GeoDataFrame, ws.read("helsinki_pois", columns=["poi_id", "category", "geometry"]))
    ea = equal_area_crs(lu, bld)
    lu_ea, bld_ea, poi_ea = lu.to_crs(ea), bld.to_crs(ea), pois.to_crs(ea)
    group = {v: k for k, vs in DEMO_CLASSES.items() for v in vs}
    lu_ea["cls"] = lu_ea["land_use"].map(group).fillna("other")
    x0, y0, x1, y1 = np.asarray(gpd.GeoSeries([*lu_ea.geometry, *bld_ea.geometry], crs=ea).total_bounds)
    xs, ys = np.arange(x0, x1, cell_m), np.arange(y0, y1, cell_m)
    cells = shapely.box(*[a.ravel() for a in np.meshgrid(xs, ys)], *[a.ravel() + cell_m for a in np.meshgrid(xs, ys)])
    grid = gpd.GeoDataFrame({"cell": np.arange(len(cells))}, geometry=cells, crs=ea)
    # class of each cell by the OSM land use covering most of it
    gi, li = shapely.STRtree(np.asarray(lu_ea.geometry.values)).query(cells, predicate="intersects")
    cover = pd.DataFrame({"cell": gi, "cls": lu_ea["cls"].to_numpy()[li],
                          "a": shapely.area(shapely.intersection(cells[gi], np.asarray(lu_ea.geometry.values)[li]))})
    major = cover.groupby(["cell", "cls"])["a"].sum().reset_index().sort_values("a").drop_duplicates("cell", keep="last")
    grid["class_a"] = grid["cell"].map(major.set_index("cell")["cls"]).fillna("other")
    bi, bj = shapely.STRtree(np.asarray(bld_ea.geometry.values)).query(cells, predicate="intersects")
    barea = pd.Series(shapely.area(shapely.intersection(cells[bi], np.asarray(bld_ea.geometry.values)[bj]))
                      ).groupby(bi).sum()
    grid["building_cover"] = grid["cell"].map(barea).fillna(0.0) / cell_m**2
    grid["n_buildings"] = grid["cell"].map(pd.Series(bj).groupby(bi).size()).fillna(0).astype(int)
    pi, pj = shapely.STRtree(cells).query(np.asarray(poi_ea.geometry.values), predicate="intersects")
    grid["pois"] = grid["cell"].map(pd.Series(pi).groupby(pj).size()).fillna(0).astype(int)
    grid["poi_categories"] = grid["cell"].map(
        pd.DataFrame({"c": pj, "k": pois["category"].to_numpy()[pi]}).groupby("c")["k"].nunique()).fillna(0)
    grid["class_b"] = np.where(grid["building_cover"] >= 0.10, "construction", grid["class_a"])
    grid = grid[(grid["class_a"] != "other") | (grid["n_buildings"] > 0) | (grid["pois"] > 0)].reset_index(drop=True)
    landuse_plan = grid.rename(columns={"class_b": "class"})[["cell", "class", "geometry"]].to_crs(4326)
    green = lu_ea[lu_ea["cls"].isin(["green", "water"])]
    red_parts = shapely.get_parts(shapely.union_all(np.asarray(green.geometry.values)))
    redline = gpd.GeoDataFrame({"part": np.arange(len(red_parts))}, geometry=red_parts, crs=ea).to_crs(4326)
    boundary = gpd.GeoDataFrame({"name": ["demo boundary"]}, crs=ea,
                                geometry=[shapely.union_all(shapely.buffer(np.asarray(bld_ea.geometry.values), 100))]
                                ).to_crs(4326)
    layers = {"landuse_plan": landuse_plan, "redline": redline, "boundary": boundary}
    rules = parse_rules([
        {"name": "construction_in_redline", "layer": "landuse_plan", "overlaps": "redline",
         "where": {"class": "construction"}},
        {"name": "construction_outside_boundary", "layer": "landuse_plan", "outside": "boundary",
         "where": {"class": "construction"}}], list(layers), source="helsinki demo rules")
    conf = find_conflicts(layers, rules)
    snap_a = grid[["cell", "class_a", "geometry"]].rename(columns={"class_a": "landuse"}).to_crs(4326)
    snap_b = grid[["cell", "class_b", "geometry"]].rename(columns={"class_b": "landuse"}).to_crs(4326)
    ch = land_change(snap_a, snap_b, years=1.0, classes=[*DEMO_CLASSES, "other"], names=("snapshot_a", "snapshot_b"))
    flags = flag_changes(ch, {"redline": redline}, parse_rules(
        [{"name": "new_construction_in_redline", "layer": "change", "overlaps": "redline",
          "where": {"to_class": "construction"}}], ["change", "redline"]))
    built = grid[grid["n_buildings"] > 0].copy()
    crit = {"building_cover": "benefit", "pois": "cost", "poi_categories": "cost"}
    built["site"] = built["cell"].astype(str)
    rank = rank_sites(built, crit, weights="entropy")
    sens, stab = rank_sensitivity(built, crit, rank.weights, delta=0.2, draws=200)
    cand = grid[grid["class_b"].isin(["other", "green"])].copy()
    centre = shapely.centroid(shapely.union_all(np.asarray(poi_ea.geometry.values)))
    cand["dist_centre_m"] = shapely.distance(np.asarray(cand.geometry.values), centre)
    zones = zone_reserve(cand.to_crs(4326), {"dist_centre_m": (0.5, "benefit"), "pois": (0.5, "cost")},
                         exclude=redline, min_area_m2=2 * cell_m**2)
    o = _write_all(out, {
        "layers_landuse_plan.parquet": lambda p: landuse_plan.to_parquet(p, index=False),
        "layers_redline.parquet": lambda p: redline.to_parquet(p, index=False),
        "layers_boundary.parquet": lambda p: boundary.to_parquet(p, index=False),
        "conflicts.parquet": lambda p: conf.conflicts.to_parquet(p, index=False),
        "summary.csv": lambda p: conf.summary.to_csv(p, index=False),
        "changes.parquet": lambda p: ch.changes.to_parquet(p, index=False),
        "transitions.csv": lambda p: ch.matrix.to_csv(p),
        "rates.csv": lambda p: ch.rates.to_csv(p, index=False),
        "violations.csv": lambda p: flags.summary.to_csv(p, index=False),
        "ranking.csv": lambda p: rank.table.to_csv(p, index=False),
        "sensitivity.csv": lambda p: sens.to_csv(p, index=False),
        "reserve_zones.parquet": lambda p: zones.zones.to_parquet(p, index=False),
    })
    stored: dict[str, int] = {}
    if store:
        inputs: list[str | tuple[str, int | None]] = ["helsinki_landuse", "helsinki_buildings"]
        stored["helsinki_plan_conflicts"] = ws.write_derived(
            "helsinki_plan_conflicts", conf.conflicts, inputs=inputs, department="planning",
            parameters={"cell_m": cell_m, "rules": [r.name for r in rules], "crs": conf.crs},
            description="demo plan conflicts (plan layers built from OSM for the demo, not official plans)")
        stored["helsinki_land_change"] = ws.write_derived(
            "helsinki_land_change", ch.changes, inputs=inputs, department="planning",
            parameters={"cell_m": cell_m, "years": 1.0},
            description="demo land change between two snapshots built from OSM (not real change)")
    return {"out": str(o), "crs_of_areas": conf.crs, "cells": len(grid), "conflicts": conf.summary.to_dict("records"),
            "change": {"changed_area_m2": float(ch.changes["area_m2"].sum()),
                       "total_area_m2": float(ch.matrix.to_numpy().sum()),
                       "violations": flags.summary.to_dict("records")},
            "sites": {"weights": rank.weights, "stability": stab, "top": rank.table.head(5).to_dict("records")},
            "reserve_zones": len(zones.zones), "stored": stored}


def zone(candidates: str, out: str | Path, *, criteria: str, exclude: Sequence[str] = (), min_area_m2: float = 0.0,
         target_m2: float | None = None, workspace: WorkspaceLike | None = None,
         user: str | None = None) -> dict[str, Any]:
    """Reserve zoning among candidate land -> ``out/zones.parquet`` and ``out/candidates.parquet``.

    ``criteria`` is ``"COL:WEIGHT:benefit|cost,..."``; ``exclude`` lists constraint layers (files or
    datasets: ecological red lines, basic farmland) cut out of the candidates.
    """
    import geopandas as gpd

    from citytwin.planning.reserve import zone_reserve

    crit: dict[str, tuple[float, str]] = {}
    for item in criteria.split(","):
        parts = item.strip().split(":")
        if len(parts) != 3:
            raise InputError(f"bad criterion {item!r}", field="--criteria", hint="use COLUMN:WEIGHT:benefit|cost")
        try:
            crit[parts[0]] = (float(parts[1]), parts[2])
        except ValueError:
            raise InputError(f"bad weight in {item!r}", field="--criteria") from None
    cand, _ = read_layer(candidates, workspace=workspace, user=user)
    ex = [read_layer(e, workspace=workspace, user=user)[0] for e in exclude]
    excl = None
    if ex:
        excl = gpd.GeoDataFrame(geometry=_all_geoms([e.to_crs(4326) for e in ex]), crs=4326)
    z = zone_reserve(cand, crit, exclude=excl, min_area_m2=min_area_m2, target_m2=target_m2)
    o = _write_all(out, {"zones.parquet": lambda p: z.zones.to_parquet(p, index=False),
                         "candidates.parquet": lambda p: z.candidates.to_parquet(p, index=False),
                         "zoning.json": _json_writer({"criteria": crit, "exclude": list(exclude),
                                                      "min_area_m2": min_area_m2, "target_m2": target_m2,
                                                      "crs_of_areas": z.crs})})
    sel = z.zones[z.zones["selected"]]
    return {"out": str(o), "zones": len(z.zones), "selected": len(sel), "selected_area_m2": float(sel["area_m2"].sum()),
            "crs_of_areas": z.crs}


def _all_geoms(frames: Sequence[gpd.GeoDataFrame]) -> list[Any]:
    """All geometries of ``frames`` in one list."""
    return [g for f in frames for g in f.geometry]
