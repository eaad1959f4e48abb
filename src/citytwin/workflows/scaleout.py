"""Workflows on Dask (issue 19): economy index and disparity, points per zone, life circles, simulation seeds.

Each function here gives the result of its single-process workflow (``tests/scaleout`` compares them)
with the work split into tasks on a Dask cluster (``dask="local:N"`` or ``"tcp://HOST:PORT"``,
:mod:`citytwin.foundation.scaleout`). The workers read their inputs themselves from Parquet,
GeoParquet or source files; the client holds only small results (keys, partial sums, counts).
Ingest on Dask is :func:`citytwin.foundation.ingest.ingest` with ``dask=``.

How each splits:

* **economy index** (:func:`index`, module :mod:`citytwin.workflows.scaleout_index`): the periods in
  one shard per worker, one task per worker and pass. ``scope="per_year"``: each period a whole index
  (any method: exact). ``scope="pooled"``: every
  method's global quantities (min/max, entropy sums, the covariance of CRITIC and PCA, TOPSIS norms
  and ideal points) are per-period partial results reduced on the client, scores per period: bit-identical
  to one process, which adds its pooled sums in the same order (:mod:`citytwin.economy.sums`).
* **disparity** (:func:`disparity`, module :mod:`citytwin.workflows.scaleout_disparity`): one task per
  period reads its rows and computes Gini, Theil and Dagum: exact.
* **simulation seeds** (:func:`sim_run`): one SUMO run per task: per-seed metrics exact.
* **land change** (:func:`citytwin.workflows.scaleout_change.land_change`, its own module): stripes
  west to east; each feature cut once, by its stripe's task, exactly as one process cuts it: exact.
* **points per zone** (:func:`points_per_zone`): one task per GeoParquet part of the points, read by the
  worker as one process reads it; each part is joined to the zones (read by each worker once) and
  counted; the counts are added (exact).
* **life circles** (:func:`life_circles`): the search origins are partitioned: one task per service
  category runs the multi-source shortest-path search from that category's POIs. A network from an OSM
  PBF or GIS files is replicated (each worker builds it and snaps the homes and POIs once per job); a
  Parquet network is built once, in two halves on two workers (node coordinates decoded from the WKB,
  then the snapping; the graph), and its graph fetched by each worker; with ``partitions=True`` and a
  search radius each worker holds only a west-east part of the graph with a halo as wide as the radius
  (:mod:`citytwin.workflows.scaleout_life`). The homes' summary columns (missing, unreachable, gap rank)
  are computed on the client from the per-category distances (exact: the same code on the same numbers).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.foundation.objectstore import is_url, read_geoparquet
from citytwin.foundation.scaleout import (
    Progress,
    cluster,
    parse_dask,
    run_futures,
    task_keys,
    worker_cache,
)
from citytwin.workflows.common import WorkspaceLike, maybe_ws
from citytwin.workflows.scaleout_disparity import DISPARITY_TABLES, disparity  # by period (its own module)
from citytwin.workflows.scaleout_files import parquet_file, parquet_files
from citytwin.workflows.scaleout_index import POOLED_METHODS, index  # the index on Dask (its own module)
from citytwin.workflows.scaleout_life import life_partitioned, life_split, object_layers

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

    from citytwin.spatial.lifecircle import LifeCirclePrep, LifeCircleResult
    from citytwin.workflows.spatial import Inputs

__all__ = ["DISPARITY_TABLES", "POOLED_METHODS", "SIM_TABLES", "TIMING_COLUMNS", "ZoneCounts", "disparity", "index",
           "life_circle_inputs", "life_circles", "parquet_files", "points_per_zone", "sim_run"]


# ------------------------------------------------------------------------------------------ points/zones
@dataclass
class ZoneCounts:
    """Points per zone: ``counts`` (``zone`` id, ``points``; every zone, 0 where none), the run's facts."""

    counts: pd.DataFrame
    points: int
    matched: int
    options: dict[str, Any] = field(default_factory=dict)


def _zones(zones: str, zone_id: str) -> gpd.GeoDataFrame:
    import geopandas as gpd

    try:
        z = (read_geoparquet(zones) if is_url(zones) else
             gpd.read_parquet(zones) if zones.lower().endswith(".parquet") else gpd.read_file(zones))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the zones: {exc}", file=zones) from exc
    if zone_id not in z.columns:
        raise InputError(f"the zones have no column {zone_id!r}", file=zones, field=zone_id,
                         hint=f"columns: {[c for c in z.columns if c != 'geometry']}")
    return z[[zone_id, "geometry"]]


def _zone_ids(zones: str, zone_id: str) -> list[Any]:
    """The zones' ids in file order, as ``_zones(zones, zone_id)[zone_id].tolist()`` gives them. A local GeoParquet
    file with that column: only the column is read (the same Arrow-to-pandas conversion GeoPandas makes), not its
    polygons (93,840 H3 cells: 0.01 CPU-s against 0.16-0.19; the client's share of a Dask join). Anything else,
    and any doubt (no GeoParquet metadata, no such column, an unreadable file): ``_zones``, which says what is
    wrong; a zones file whose geometries cannot be read is then said by the tasks that read it (same error)."""
    if not is_url(zones) and zones.lower().endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(zones)
            if b"geo" in (schema.metadata or {}) and zone_id in schema.names:
                ids: list[Any] = pq.read_table(zones, columns=[zone_id]).to_pandas()[zone_id].tolist()
                return ids
        except (OSError, ValueError, pa.ArrowException):
            pass
    out: list[Any] = _zones(zones, zone_id)[zone_id].tolist()
    return out


def _count_in_zones(points: gpd.GeoDataFrame, zones: str, zone_id: str, predicate: str, job: str = "") -> pd.DataFrame:
    """Points of one partition per zone (``zone_id``, ``points``) and the partition's size (row ``None``)."""
    import geopandas as gpd
    import pandas as pd

    z = worker_cache(("zones", job, zones, zone_id), lambda: _zones(zones, zone_id))
    if points.crs is not None and z.crs is not None and not z.crs.equals(points.crs):
        z = z.to_crs(points.crs)
    pts = gpd.GeoDataFrame(geometry=points.geometry.reset_index(drop=True), crs=points.crs)
    joined = gpd.sjoin(pts, z, how="inner", predicate=predicate)
    c = joined.groupby(zone_id).size()
    return pd.DataFrame({"zone": [*c.index.tolist(), None], "points": [*c.to_numpy().tolist(), len(pts)]})


def _count_object(url: str, zones: str, zone_id: str, predicate: str, job: str) -> pd.DataFrame:
    """:func:`_count_in_zones` of one GeoParquet part, read by the worker as one process reads it (a file;
    an object through s3fs)."""
    import geopandas as gpd

    pts = read_geoparquet(url, columns=["geometry"]) if is_url(url) else gpd.read_parquet(url, columns=["geometry"])
    return _count_in_zones(pts, zones, zone_id, predicate, job)


def _finish_counts(parts: list[pd.DataFrame], zone_ids: Sequence[Any], options: dict[str, Any]) -> ZoneCounts:
    import pandas as pd

    allp = pd.concat(parts, ignore_index=True)
    n = int(allp.loc[allp["zone"].isna(), "points"].sum())
    per = allp.dropna(subset=["zone"]).groupby("zone")["points"].sum()
    counts = pd.DataFrame({"zone": list(zone_ids)})
    counts["points"] = counts["zone"].map(per).fillna(0).astype("int64")
    return ZoneCounts(counts=counts, points=n, matched=int(per.sum()), options=options)


def points_per_zone(points: str, zones: str, *, zone_id: str = "zone", predicate: str = "within",
                    workspace: WorkspaceLike | None = None, dask: str | None = None,
                    progress: Progress | None = None) -> ZoneCounts:
    """Count the points (GeoParquet parts or a dataset) in each zone (a GIS file or GeoParquet of polygons).

    The points-to-cells/zones spatial join (GeoPandas ``sjoin``, ``predicate`` ``within`` or
    ``intersects``; a point on the edge between two zones is in neither with ``within``, in both with
    ``intersects``). Zones are reprojected to the points' CRS. Without ``dask`` one process joins
    the parts one after another; with ``dask`` each part is a task whose worker reads it (a file, or an
    ``s3://`` object), each worker reads the zones once; the client reads only the zones' ids. The same counts
    either way (integers).
    """
    if dask is not None:
        parse_dask(dask)
    if predicate not in ("within", "intersects"):
        raise InputError(f"unknown predicate {predicate!r}", field="predicate", hint="within | intersects")
    files = parquet_files(points, maybe_ws(workspace), "points", objects=True)
    zone_ids = _zone_ids(zones, zone_id)
    options = {"points": points, "zones": zones, "zone_id": zone_id, "predicate": predicate, "parts": len(files)}
    if dask is None:
        import geopandas as gpd

        parts = []
        for i, f in enumerate(files):
            pts = read_geoparquet(f, columns=["geometry"]) if is_url(f) else gpd.read_parquet(f, columns=["geometry"])
            parts.append(_count_in_zones(pts, zones, zone_id, predicate))
            if progress:
                progress(i + 1, len(files))
        return _finish_counts(parts, zone_ids, options)
    # one task per part: the worker reads its file or object (the client opens none) as one process reads it, and
    # the zones once per job (the job token keeps a later job from an older copy). Plain tasks, not a
    # dask_geopandas frame: its graph cost the client about 0.1-0.2 CPU-s per job (docs/scaleout.md, session 15)
    with cluster(dask) as client:
        keys, job = task_keys("citytwin-zones", len(files)), uuid.uuid4().hex
        futs = [client.submit(_count_object, f, zones, zone_id, predicate, job, key=k, pure=False)
                for f, k in zip(files, keys, strict=True)]
        parts = run_futures(client, futs, progress=progress)
    return _finish_counts(parts, zone_ids, dict(options, dask=str(dask), partitions=len(files)))


# -------------------------------------------------------------------------------------------- life circles
def _life_prepared(source: str | None, refs: dict[str, str | None], include_unknown: bool, kw: dict[str, Any],
                   job: str) -> tuple[Any, LifeCirclePrep]:
    """(network, prepared homes and POIs) read, built and snapped on a worker once per job (kept for the
    job's other tasks): what every category's search needs whole."""
    from citytwin.spatial.lifecircle import prepare_life_circle, residential_buildings
    from citytwin.spatial.network import build_network
    from citytwin.workflows.spatial import load_inputs

    def build() -> tuple[Any, LifeCirclePrep]:
        inp = load_inputs(source, None, {"pois", "buildings", "streets"}, pois=refs["pois"],
                          buildings=refs["buildings"], streets=refs["streets"], nodes=refs["nodes"])
        net = build_network(inp.layers.pop("nodes"), inp.layers.pop("streets"))
        homes = residential_buildings(inp.layers.pop("buildings"), include_unknown=include_unknown)
        return net, prepare_life_circle(homes, inp.layers.pop("pois"), net, **kw)

    return worker_cache(("lifecircle", job, source, tuple(sorted(refs.items())), include_unknown), build)


def _life_category(cat: str, *, source: str | None, refs: dict[str, str | None], include_unknown: bool,
                   first: bool, kw: dict[str, Any], job: str) -> dict[str, Any]:
    from citytwin.spatial.lifecircle import category_search

    net, prep = _life_prepared(source, refs, include_unknown, kw, job)
    d, ok, row = category_search(prep, net, cat)
    return {"searched": (d, ok, row), **({"prep": prep} if first else {})}


def _parquet_network(refs: dict[str, str | None]) -> bool:
    """Whether the network's halves can be built apart: nodes and an edge list with ``length`` in Parquet
    (the schemas read: on a worker when the files are ``s3://`` objects)."""
    nodes, streets = refs["nodes"], refs["streets"]
    if not (nodes and streets and nodes.lower().endswith(".parquet") and streets.lower().endswith(".parquet")):
        return False
    return ({"u", "v", "length"} <= set(parquet_file(streets).schema_arrow.names)
            and "id" in parquet_file(nodes).schema_arrow.names)


def life_circle_inputs(source: str | None, **layers: str | None) -> Inputs:
    """Where the layers of :func:`life_circles` come from (files only: the workers read them), for lineage.

    Raises
    ------
    InputError
        A layer that is not a file (a dataset name: export it, or give the file), or a missing source.
    """
    from citytwin.foundation.ingest.parallel import file_sha256 as _sha256  # the hash load_inputs records
    from citytwin.workflows.spatial import Inputs

    inp = Inputs()
    remote = object_layers(source, dict(layers))  # s3:// layers: listed (each one Parquet object), not opened
    for kind, ref in layers.items():
        if ref and kind not in remote and not Path(ref).is_file():
            raise InputError(f"on Dask the workers read the layers from files; {ref!r} is not a file", field=kind,
                             hint="give a GIS file, GeoParquet or the OSM PBF file")
        if ref:
            inp.files[kind] = str(ref)
    if source:
        if not Path(source).is_file():
            raise InputError("file not found", file=source)
        inp.files["pbf"] = str(source)
        inp.files["pbf_sha256"] = _sha256(Path(source))
    return inp


def life_circles(source: str | None = None, *, pois: str | None = None, buildings: str | None = None,
                 streets: str | None = None, nodes: str | None = None, dask: str,
                 categories: Sequence[str] | None = None, minutes: float = 15.0, speed_kmh: float = 4.8,
                 threshold_m: float | None = None, include_unknown: bool = True, max_snap_m: float = 250.0,
                 max_distance: float | None = None, partitions: bool = False,
                 progress: Progress | None = None) -> LifeCircleResult:
    """:func:`citytwin.workflows.spatial.life_circles` on Dask: one task per service category.

    Inputs are files the workers read (an OSM PBF ``source`` and/or GIS files or GeoParquet per layer;
    streets may be a plain Parquet edge list ``u``, ``v``, ``length``); every worker builds the street
    network and snaps the homes and POIs once per job (:func:`citytwin.spatial.lifecircle.prepare_life_circle`),
    then runs the searches of the categories it is given (:func:`~citytwin.spatial.lifecircle.category_search`).
    ``homes``, ``coverage`` and ``report`` equal the single-process result (the report has a ``dask`` entry more).

    ``max_distance`` stops every search at that many metres (farther: missing), as
    :func:`citytwin.spatial.lifecircle.life_circle`'s. ``partitions=True`` (a Parquet network and a
    ``max_distance``): each worker holds a west-east part of the network and a halo ``max_distance`` wide,
    not the whole graph (:func:`citytwin.workflows.scaleout_life.life_partitioned`): for a network larger
    than one worker's memory.
    """
    from citytwin.spatial.lifecircle import DAILY_SERVICES, finish_life_circle

    parse_dask(dask)
    life_circle_inputs(source, pois=pois, buildings=buildings, streets=streets, nodes=nodes)
    cats = list(dict.fromkeys(categories or DAILY_SERVICES))
    refs = {"pois": pois, "buildings": buildings, "streets": streets, "nodes": nodes}
    kw = {"categories": cats, "minutes": minutes, "speed_kmh": speed_kmh, "threshold_m": threshold_m,
          "max_snap_m": max_snap_m, "max_distance": max_distance}
    remote = any(v and is_url(v) for v in refs.values())  # objects: their schemas read by a worker, below
    split = source is None and (remote or _parquet_network(refs))
    if partitions and not split:
        raise InputError("a partitioned search needs the network as Parquet: GeoParquet nodes and an edge list "
                         "u, v, length", field="streets", hint="give nodes= and streets= as Parquet files")
    with cluster(dask) as client:
        if remote and not run_futures(client, [client.submit(_parquet_network, refs, pure=False,
                                                             key=task_keys("citytwin-life-layout", 1)[0])])[0]:
            raise InputError("the network objects are not a Parquet network: --nodes needs an `id` column and "
                             "--streets the columns u, v, length", file=str(streets), field="streets")
        if partitions:
            prep, searched, n_tasks = life_partitioned(client, cats, refs, include_unknown, kw, progress)
        elif split:
            prep, searched, n_tasks = life_split(client, cats, refs, include_unknown, kw, progress)
        else:
            keys = task_keys("citytwin-life", len(cats))
            job = keys[0]  # the network is built and the inputs snapped once per worker and job
            futs = [client.submit(_life_category, c, source=source, refs=refs, include_unknown=include_unknown,
                                  first=i == 0, kw=kw, job=job, pure=False, key=keys[i]) for i, c in enumerate(cats)]
            parts = run_futures(client, futs, progress=progress)
            prep, searched = parts[0]["prep"], [p["searched"] for p in parts]
    res = finish_life_circle(prep, searched)
    res.report["dask"] = {"cluster": str(dask), "tasks": n_tasks if partitions or split else len(cats),
                          "split": (
        f"network in west-east parts, one per worker, each with a {max_distance} m halo; homes and POIs snapped "
        "once; one search per category and part" if partitions else
        "network nodes (their k-d tree; homes and POIs snapped) and graph (homes and POIs read and checked) "
        "built at once on two workers; one search per category"
        if split else "one search per category; network built and inputs snapped on every worker")}
    return res


# ------------------------------------------------------------------------------------------ simulation
#: per-seed columns that measure this machine, not the simulation (they differ between any two runs)
TIMING_COLUMNS = ("wall_s", "control_s", "steps")
#: the tables a run writes (``runs`` one row per seed; the others means over seeds, by these keys)
SIM_TABLES = {"runs": None, "edges": ["edge"], "edges_intervals": ["begin", "end", "edge"],
              "detectors_intervals": ["begin", "end", "detector", "lane"]}


def _sim_seed(seed: int, *, scenario_dir: str, work: str, control: str, plan: str | None, backend: str,
              interval: float, detectors: bool, emissions: bool) -> dict[str, Any]:
    """One SUMO run (one seed) on a worker, through the single-process workflow, in ``work/seed{seed}``."""
    import shutil

    import pandas as pd

    from citytwin.workflows.simulation import run

    folder = Path(work) / f"seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)  # a task run again after its worker died starts clean
    summary = run(Path(scenario_dir), folder, seeds=1, first_seed=seed, control=control,
                  plan=Path(plan) if plan else None, backend=backend, interval=interval, detectors=detectors,
                  emissions=emissions)
    tables = {name: pd.read_csv(folder / f"{name}.csv") for name in SIM_TABLES if (folder / f"{name}.csv").exists()}
    return {"summary": summary, **tables}


def sim_run(scenario_dir: Path, out: Path, *, dask: str, seeds: int = 3, control: str = "fixed",
            plan: Path | None = None, backend: str = "libsumo", first_seed: int = 1, interval: float = 300.0,
            detectors: bool = False, emissions: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """:func:`citytwin.workflows.simulation.run` with one SUMO run (seed) per Dask task.

    Writes ``out/summary.json``, ``runs.csv``, ``edges.csv``, ``edges_intervals.csv`` (and with
    ``detectors`` ``detectors_intervals.csv``) as one process does, once every seed has run (nothing is
    written when a run fails). Each seed's simulation is the single-process one (SUMO
    is deterministic for a seed): the per-seed metrics are equal; the edge means over seeds are added in
    another order (to 1e-9 relative); ``wall_s``/``control_s`` measure the machine.
    """
    import json
    import shutil

    import pandas as pd

    from citytwin.simulation import results
    from citytwin.workflows.simulation import CONTROLS, load_scenario

    parse_dask(dask)
    if control not in CONTROLS:
        raise InputError(f"unknown control {control!r}", field="--control", hint=" | ".join(CONTROLS))
    if seeds < 1:
        raise InputError("--seeds must be at least 1", field="--seeds")
    if not interval > 0:
        raise InputError(f"--interval {interval!r} must be positive (s)", field="--interval")
    load_scenario(scenario_dir)  # a bad scenario is said here, before any task
    out = Path(out)
    if out.exists() and any(out.iterdir()):  # as the single-process run says it
        raise InputError(f"output folder {out} exists and is not empty", file=str(out), hint="give a new folder")
    work = out.parent / f".{out.name}.dask-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        with cluster(dask) as client:
            # the seeds spread evenly over the workers (round robin: the runs cost about the same; as they
            # finished, a worker slowed by its neighbours got fewer, e.g. 5 + 3 of 8); another worker takes
            # over a task whose worker is gone
            workers = sorted(client.scheduler_info(n_workers=-1).get("workers", {}))
            keys = task_keys("citytwin-seed", seeds)
            futures = [client.submit(_sim_seed, s_, pure=False, key=keys[i],
                                     workers=[workers[i % len(workers)]] if workers else None,
                                     allow_other_workers=True, scenario_dir=str(scenario_dir), work=str(work),
                                     control=control, plan=str(plan) if plan else None, backend=backend,
                                     interval=interval, detectors=detectors, emissions=emissions)
                       for i, s_ in enumerate(range(first_seed, first_seed + seeds))]
            parts = run_futures(client, futures, progress=progress)
        runs = pd.concat([p["runs"] for p in parts], ignore_index=True)
        means = {name: pd.concat([p[name] for p in parts]).groupby(by, as_index=False).mean(numeric_only=True)
                 for name, by in SIM_TABLES.items() if by is not None and name in parts[0]}
        first = parts[0]["summary"]
        summary: dict[str, Any] = {k: first[k] for k in ("scenario", "net", "control", "backend")}
        summary["seeds"] = runs["seed"].tolist()
        summary["interval_s"] = first.get("interval_s", interval)
        summary["detectors"] = first.get("detectors", detectors)
        for metric in results.METRICS:
            mean, lo, hi = results.mean_ci(runs[metric].to_numpy())
            summary[metric] = mean
            summary[f"{metric}_ci95"] = [lo, hi]
        summary["vehicles_loaded"] = float(runs["vehicles_loaded"].mean())
        summary["teleports"] = float(runs["teleports"].mean())
        summary["all_inserted"] = bool((runs["vehicles_inserted"] == runs["vehicles_loaded"]).all())
        summary["emission_model"] = first["emission_model"]
        summary["per_seed"] = runs.to_dict(orient="records")
        summary.update({k: v for k, v in first.items() if k not in summary})  # the control's plans (webster)
        summary["dask"] = {"cluster": str(dask), "tasks": seeds, "split": "one SUMO run (seed) per task"}
        stage = work / "out"
        stage.mkdir()
        runs.to_csv(stage / "runs.csv", index=False)
        for name, table in means.items():
            table.to_csv(stage / f"{name}.csv", index=False)
        (stage / "summary.json").write_text(json.dumps(_plain(summary), ensure_ascii=False, indent=2, allow_nan=False,
                                                       default=str), encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty (checked above)
        stage.replace(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _plain(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and NaN as None (strict JSON, as one process writes it)."""
    import math

    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj

