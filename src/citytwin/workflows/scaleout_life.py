"""Life circles on Dask, the reading side: node files decoded without shapely objects, and the search in
parts of the network for a network larger than one worker (issue 19).

:func:`citytwin.workflows.scaleout.life_circles` runs one of three ways: a network from an OSM PBF or GIS
files is built by every worker (replicated); a Parquet network (GeoParquet nodes, an edge list ``u, v,
length``) is built once, the nodes on one worker and the graph on another, and the graph fetched by the
other (:func:`life_split` here); with ``partitions=True`` and a search radius (``max_distance``) each worker holds
only a west-east part of the graph plus a halo as wide as the radius (:mod:`citytwin.spatial.network_parts`):
:func:`life_partitioned` here.

The partitioned run, task by task: one part per worker reads every node's coordinates (decoded, 16 bytes a
node) and streams the edge list in row groups, keeping the edges of its part; the homes and POIs are
snapped once, on the first worker, against all nodes (the snapping is the whole network's, so every home
gets the node one process gives it); each home is searched in the part that owns its node, every
category's POIs whose nodes the part holds as sources. Components are labelled per part and merged on the
client. Results equal one process's :func:`citytwin.spatial.lifecircle.life_circle` with the same
``max_distance`` (tests/scaleout/test_scaleout_network.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.collector import collecting_rarely, rare_collections
from citytwin.foundation.errors import InputError
from citytwin.foundation.objectstore import is_url, list_objects, read_geoparquet
from citytwin.foundation.scaleout import Progress, _distributed, placement, run_futures, task_keys
from citytwin.workflows.scaleout_files import parquet_file, read_parquet

if TYPE_CHECKING:
    import geopandas as gpd
    import numpy as np
    from pyproj import CRS

    from citytwin.spatial.lifecircle import HomeSide, LifeCirclePrep, PoiSide
    from citytwin.spatial.network_parts import NetworkPart

__all__ = ["edge_batches", "life_partitioned", "object_layers", "read_layers", "read_network_nodes"]


def read_network_nodes(path: str | Path, crs: Any = None) -> tuple[np.ndarray, np.ndarray, CRS]:
    """:func:`citytwin.spatial.network.network_nodes` of a GeoParquet node file, its points decoded from
    the WKB without shapely objects (:func:`citytwin.spatial.network.decode_wkb_points`).

    A street network's node table is millions of points: reading it as a GeoDataFrame makes one shapely
    object per node (2.3 s for a million, the largest serial step of building a large network). When the
    file is GeoParquet with 2D little-endian WKB points in a metric CRS (the CRS ``network_nodes`` keeps),
    the ids and points are read with pyarrow and the coordinates taken from the bytes; anything else
    (another CRS, other geometry types, nulls, 3D points) goes through ``network_nodes`` on the
    GeoDataFrame. The same result either way (tests/scaleout/test_scaleout_network.py).

    Examples
    --------
    >>> import tempfile, os, geopandas as gpd
    >>> g = gpd.GeoDataFrame({"id": [7, 8, 7]}, geometry=gpd.points_from_xy([0.5, 100, 3], [0, 0, 50]), crs=3067)
    >>> f = os.path.join(tempfile.mkdtemp(), "nodes.parquet")
    >>> g.to_parquet(f)
    >>> ids, xy, c = read_network_nodes(f)
    >>> ids.tolist(), xy.tolist(), c.to_epsg()
    ([7, 8], [[0.5, 0.0], [100.0, 0.0]], 3067)
    """
    import geopandas as gpd

    from citytwin.spatial.network import decode_wkb_points, network_nodes, wkb_points_layout

    url = is_url(path)
    path = str(path) if url else Path(path)
    try:
        pf = parquet_file(str(path))  # an s3:// object read through s3fs by this process
        schema = pf.schema_arrow
        meta = json.loads((schema.metadata or {}).get(b"geo", b"null"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read nodes: {exc}", file=str(path)) from exc
    layout = wkb_points_layout(meta, schema.names, crs)
    if layout is not None:
        col, mcrs = layout
        table = pf.read(columns=["id", col])
        xy = decode_wkb_points(table.column(col))
        if xy is not None:
            ids = table.column("id").to_pandas()
            del table
            dup = ids.duplicated().to_numpy()
            if dup.any():  # the first occurrence in table order, as ``drop_duplicates("id")``
                return ids.to_numpy()[~dup], xy[~dup], mcrs
            return ids.to_numpy(), xy, mcrs
        del table
    return network_nodes(read_geoparquet(str(path)) if url else gpd.read_parquet(path), crs)


def edge_batches(ids: np.ndarray, streets: str | Path, batch: int = 1 << 20
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(u, v as node positions in ``ids``, length) of an edge list ``u, v, length`` in Parquet, a row group
    at a time, with :func:`citytwin.spatial.network.network_graph`'s checks and errors (unknown nodes,
    missing or negative lengths; rows counted from 1 over the whole file)."""
    import numpy as np
    import pandas as pd

    n = len(ids)
    identity = n > 0 and ids.dtype.kind in "iu" and ids[0] == 0 and bool(np.all(np.diff(ids) == 1))
    order = np.arange(n) if identity else np.argsort(ids, kind="stable")
    sid = ids if identity else ids[order]

    def position(col: np.ndarray) -> np.ndarray:
        if identity and col.dtype.kind in "iu":  # ids 0..n-1 (a generated network): the id is the position
            pos = col.astype(np.int64, copy=False)
            return np.where((pos >= 0) & (pos < n), pos, -1)
        if n == 0:
            return np.full(len(col), -1, dtype=np.int64)
        i = np.minimum(np.searchsorted(sid, col), n - 1)
        return np.where(sid[i] == col, order[i], -1)

    start = 0
    for b in parquet_file(str(streets)).iter_batches(batch_size=batch, columns=["u", "v", "length"]):
        u, v = position(b.column("u").to_numpy(zero_copy_only=False)), position(b.column("v").to_numpy(
            zero_copy_only=False))
        unknown = (u < 0) | (v < 0)
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise InputError(f"{int(unknown.sum())} edge(s) name nodes not in the node table", row=start + i + 1,
                             field="u/v", hint="pass the node table that belongs to these edges")
        length = pd.to_numeric(b.column("length").to_pandas(), errors="coerce").to_numpy(dtype=float)
        if np.isnan(length).any():
            i = int(np.flatnonzero(np.isnan(length))[0])
            raise InputError("edge length missing or not a number", row=start + i + 1, field="length")
        if (length < 0).any():
            i = int(np.flatnonzero(length < 0)[0])
            raise InputError(f"negative edge length {length[i]}", row=start + i + 1, field="length")
        start += len(u)
        yield u, v, length


def read_layers(refs: dict[str, str | None], kinds: tuple[str, ...]) -> dict[str, gpd.GeoDataFrame]:
    """The layers ``kinds`` of ``refs`` read by this process (a worker): files as
    :func:`citytwin.workflows.spatial.load_inputs` reads them, ``s3://`` GeoParquet objects through s3fs."""
    from citytwin.workflows.spatial import load_inputs

    out = {k: read_geoparquet(str(refs[k])) for k in kinds if refs.get(k) and is_url(str(refs[k]))}
    local = {k: refs.get(k) for k in kinds if k not in out}
    if local:
        out.update(load_inputs(None, None, set(local), pois=local.get("pois"), buildings=local.get("buildings"),
                               streets=local.get("streets"), nodes=local.get("nodes")).layers)
    return out


def object_layers(source: str | None, refs: dict[str, str | None]) -> list[str]:
    """The layers of ``refs`` given as ``s3://`` URLs (checked by listing: each one Parquet object; no
    object is opened here). A PBF ``source`` is read by pyrosm from a local path, and a network from
    objects must be Parquet (GeoParquet nodes and an edge list ``u, v, length``): anything else is refused.

    Raises
    ------
    InputError
        Naming the URL: not Parquet, no such object or bucket, no credentials, an endpoint that does not
        answer; an OSM PBF given as a URL; object layers beside a PBF or without a Parquet network.
    """
    if source and is_url(source):
        raise InputError("an OSM PBF is read by pyrosm from a local path, not from object storage", file=source,
                         hint="copy the .pbf to a folder every worker sees, or give the network as Parquet objects "
                              "(--nodes GeoParquet, --streets an edge list u, v, length)")
    urls = [k for k, v in refs.items() if v and is_url(v)]
    for k in urls:
        url = str(refs[k])
        if not url.lower().endswith(".parquet"):
            raise InputError("on object storage the life-circle layers are read as Parquet/GeoParquet objects",
                             file=url, field=k, hint="write the layer as GeoParquet (.parquet)")
        if list_objects(url, k) != [url]:
            raise InputError("no such object (a prefix or glob is not a layer)", file=url, field=k)
    if urls and (source or not (refs.get("nodes") and refs.get("streets"))):
        raise InputError("s3:// layers are read by the workers with the network as Parquet: give --nodes "
                         "(GeoParquet points) and --streets (an edge list u, v, length), without a PBF",
                         field=urls[0], hint="or copy the layers to a folder every worker sees")
    return urls


# ---------------------------------------------------------------------------------------------- tasks
def _life_nodes(nodes: str) -> tuple[np.ndarray, np.ndarray, Any]:
    return read_network_nodes(nodes)


def _life_prepare(node_part: tuple[np.ndarray, np.ndarray, Any], refs: dict[str, str | None], include_unknown: bool,
                  *, kw: dict[str, Any]) -> LifeCirclePrep:
    """Homes and POIs read and snapped on the nodes' worker, before the graph is needed: the components
    (``component`` of each home, the report's ``network``) are put in by :func:`_life_components`."""
    import numpy as np
    from scipy import sparse

    from citytwin.spatial.lifecircle import prepare_life_circle, residential_buildings
    from citytwin.spatial.network import StreetNetwork

    layers = read_layers(refs, ("pois", "buildings"))
    homes = residential_buildings(layers["buildings"], include_unknown=include_unknown)
    ids, coords, crs = node_part
    n = len(ids)
    snapping = StreetNetwork(node_ids=ids, coords=coords, graph=sparse.csr_matrix((n, n)), crs=crs,
                             component=np.zeros(n, dtype=np.int64))  # no graph yet: snapping needs the nodes only
    return prepare_life_circle(homes, layers["pois"], snapping, **kw)


def _search_inputs(prep: LifeCirclePrep) -> LifeCirclePrep:
    """``prep`` without the homes' table (the searches need the arrays; the client keeps the table)."""
    import dataclasses

    return dataclasses.replace(prep, homes=prep.homes.iloc[:0])


# A Parquet network whole on every worker (``life_split``): the graph is built once and fetched by the other
# worker; the preparation is shared out so that neither worker waits long nor does much more than the other.
@collecting_rarely
def _life_graph(nodes: str, streets: str, after: Any = None) -> tuple[Any, np.ndarray, np.ndarray]:
    """(CSR graph, each node's component, the node ids in graph order) of a Parquet network. ``after``:
    nothing read (a result the task waits for: the homes' points, so that the homes go first on its worker)."""
    from citytwin.spatial.network import network_graph

    ids = read_parquet(nodes, columns=["id"])["id"].drop_duplicates().to_numpy()  # network_nodes' order
    graph, component = network_graph(ids, read_parquet(streets, columns=["u", "v", "length"]))
    return graph, component, ids


def _graph_only(graph_part: tuple[Any, np.ndarray, np.ndarray]) -> Any:
    """The graph alone: what the other worker's searches fetch (not the components or ids)."""
    return graph_part[0]


def _node_crs(node_part: tuple[np.ndarray, np.ndarray, Any]) -> Any:
    return node_part[2]


def _node_tree(node_part: tuple[np.ndarray, np.ndarray, Any]) -> Any:
    """The k-d tree of the node coordinates, as :attr:`citytwin.spatial.network.StreetNetwork.kdtree` builds it."""
    from scipy.spatial import cKDTree

    return cKDTree(node_part[1])


@collecting_rarely
def _life_buildings(refs: dict[str, str | None], include_unknown: bool) -> gpd.GeoDataFrame:
    """The homes read (:func:`citytwin.spatial.lifecircle.residential_buildings`): needs no CRS, so it runs
    while the other worker decodes the nodes."""
    from citytwin.spatial.lifecircle import residential_buildings

    return residential_buildings(read_layers(refs, ("buildings",))["buildings"], include_unknown=include_unknown)


@collecting_rarely
def _life_homes(homes: gpd.GeoDataFrame, crs: Any, kw: dict[str, Any]) -> HomeSide:
    """The homes checked (:func:`citytwin.spatial.lifecircle.check_homes`), before snapping."""
    from citytwin.spatial.lifecircle import check_homes

    return check_homes(homes, crs, id_col=kw.get("id_col", "osm_id"), population_col=kw.get("population_col"))


def _home_xy(homes: HomeSide) -> np.ndarray:
    """The homes' points in the network's CRS: what the k-d tree's worker snaps (1.6 MB at 100k homes)."""
    return homes.xy


@collecting_rarely
def _life_pois(refs: dict[str, str | None], crs: Any, kw: dict[str, Any]) -> PoiSide:
    """The POIs read and checked (:func:`citytwin.spatial.lifecircle.check_pois`), before snapping."""
    from citytwin.spatial.lifecircle import DAILY_SERVICES, check_pois

    return check_pois(read_layers(refs, ("pois",))["pois"], crs, kw.get("categories", DAILY_SERVICES),
                      category_col=kw.get("category_col", "category"), id_col=kw.get("id_col", "osm_id"))


def _life_snap(tree: Any, homes_xy: np.ndarray, pois: PoiSide) -> tuple[np.ndarray, ...]:
    """(each home's node index and distance, each POI's node index and distance), with the nodes' k-d tree."""
    from citytwin.spatial.network import snap_xy

    p_node, p_snap = snap_xy(tree, pois.xy)
    h_node, h_snap = snap_xy(tree, homes_xy)
    return h_node, h_snap, p_node, p_snap


@collecting_rarely
def _life_assemble(homes: HomeSide, pois: PoiSide, snapped: tuple[np.ndarray, ...],
                   graph_part: tuple[Any, np.ndarray, np.ndarray], kw: dict[str, Any]) -> LifeCirclePrep:
    """:func:`citytwin.spatial.lifecircle.assemble_prep` on the graph's worker (the ids and components are there)."""
    from citytwin.spatial.lifecircle import DAILY_SERVICES, assemble_prep, life_threshold, network_facts

    h_node, h_snap, p_node, p_snap = snapped
    _, component, ids = graph_part
    return assemble_prep(homes, h_node, h_snap, pois, p_node, p_snap, ids[h_node], component[h_node],
                         network_facts(component), categories=kw.get("categories", DAILY_SERVICES),
                         threshold_m=life_threshold(kw.get("minutes", 15.0), kw.get("speed_kmh", 4.8),
                                                    kw.get("threshold_m")),
                         max_snap_m=kw.get("max_snap_m", 250.0), include_snap=kw.get("include_snap", True),
                         max_distance=kw.get("max_distance"))


def _hold_graph(graph: Any) -> Any:
    """The graph, fetched by a worker that did not build it as soon as it is built (while that worker still
    puts the preparation together, and this one may still snap)."""
    return graph


def _hold(graph: Any, light: LifeCirclePrep) -> tuple[Any, LifeCirclePrep]:
    """(the graph, the searches' inputs) held on a worker that did not build the graph: what its searches read
    without fetching anything more (the same objects as the fetched copies, no copy made)."""
    return graph, light


def _life_search(cat: str, graph: Any, prep: LifeCirclePrep) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from types import SimpleNamespace

    from citytwin.spatial.lifecircle import category_search

    return category_search(prep, SimpleNamespace(graph=graph), cat)  # type: ignore[arg-type]


def _held_search(cat: str, held: tuple[Any, LifeCirclePrep]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """:func:`_life_search` on what :func:`_hold` holds."""
    return _life_search(cat, *held)


@collecting_rarely
def _for_client(prep: LifeCirclePrep) -> tuple[LifeCirclePrep, Any]:
    """``prep`` as the client receives it: what :func:`citytwin.spatial.lifecircle.finish_life_circle`
    reads (the homes' table, the options, the report; not the snapped arrays, which the searches used), the
    table without its geometry, and the geometry apart (:func:`geometry_payload`)."""
    import dataclasses

    import numpy as np
    import pandas as pd

    table = prep.homes
    none = np.empty(0)
    return dataclasses.replace(prep, homes=pd.DataFrame(table.drop(columns=table.geometry.name)), h_node=none,
                               h_snap=none, h_off=none, weights=none, p_node=none, p_snap=none, p_off=none,
                               p_cat=none), geometry_payload(table.geometry)


def geometry_payload(geom: gpd.GeoSeries) -> tuple[str, Any, Any]:
    """What a GeoSeries travels as: ``("xy", (n, 2) coordinates, crs)`` when every geometry is a 2D point
    with finite coordinates (the same doubles, without a WKB piece a point), else ``("wkb", WKB, crs)``.

    Examples
    --------
    >>> import geopandas as gpd
    >>> g = gpd.GeoSeries.from_xy([1.5, 2.0], [3.0, 4.0], crs=4326)
    >>> kind, data, crs = geometry_payload(g)
    >>> kind, data.tolist(), geometry_from_payload((kind, data, crs)).equals(g)
    ('xy', [[1.5, 3.0], [2.0, 4.0]], True)
    """
    import numpy as np
    import shapely

    arr = geom.to_numpy()
    if shapely.get_type_id(arr).tolist() == [0] * len(arr) and not shapely.has_z(arr).any():
        coords = shapely.get_coordinates(arr)
        if len(coords) == len(arr) and np.isfinite(coords).all():
            return "xy", coords, geom.crs
    return "wkb", shapely.to_wkb(arr), geom.crs


def geometry_from_payload(payload: tuple[str, Any, Any]) -> gpd.GeoSeries:
    """The GeoSeries of :func:`geometry_payload`.

    The garbage collector's young collections are made rare while the geometries are made
    (``foundation.collector.rare_collections``): each geometry is a tracked object, so making 100,000 of them
    at the default threshold runs collections over the objects the process holds (in a process holding two
    million objects 0.05 CPU-s against 0.012 with the collector off; the geometries hold no cycles)."""
    import geopandas as gpd
    import shapely

    kind, data, crs = payload
    with rare_collections():
        return gpd.GeoSeries(shapely.points(data) if kind == "xy" else shapely.from_wkb(data), crs=crs)


def life_split(client: Any, cats: list[str], refs: dict[str, str | None], include_unknown: bool,
               kw: dict[str, Any], progress: Progress | None) -> tuple[LifeCirclePrep, list[Any], int]:
    """(prepared homes and POIs, one ``category_search`` result per category, the number of tasks) of a
    Parquet network whole on every worker, built once.

    The first worker decodes the nodes (:func:`read_network_nodes`), reads and checks the POIs
    (:func:`citytwin.spatial.lifecircle.check_pois`), builds the nodes' k-d tree and snaps the homes and the
    POIs; the second reads the homes at once (no CRS needed), checks them once the nodes' CRS is known
    (:func:`~citytwin.spatial.lifecircle.check_homes`: the homes' table in EPSG:4326, each point in the
    network's CRS; the points, 1.6 MB at 100k homes, sent to the first), then builds the graph (the edges to
    CSR, components) and puts the preparation together with the node ids and components it holds
    (:func:`~citytwin.spatial.lifecircle.assemble_prep`, as one process's ``prepare_life_circle``; the POIs'
    side fetched from the first). Neither sends the k-d tree or the node table. The graph waits for the homes'
    points so that the snapping need not wait for the graph (session 17: the POIs moved to the first worker,
    whose preparation was 0.2-0.3 CPU-s shorter and which waited for the graph's worker; the homes read before
    the CRS). The searches (one per category) are spread over the workers; each other worker fetches the
    graph (not the components) and the searches' inputs and holds them (:func:`_hold`), and the graph's
    worker's searches are submitted once every other worker holds them (a search holds the GIL, so a worker
    that searches sends nothing: session 18). The client receives the homes' table without the snapped
    arrays, its points as coordinates (:func:`geometry_payload`)."""
    import geopandas as gpd

    on = placement(client)  # spread over the workers, never stolen; another takes a task if its worker dies
    k = max(1, len(client.scheduler_info()["workers"]))
    # the workers that search but did not build the graph (``where=1``): each holds the graph and the searches'
    # inputs before the graph's worker searches (a search holds the GIL: that worker could not send them)
    others = sorted({i % k for i in range(len(cats))} - {1 % k})

    n_tasks = 13 + 2 * len(others) + len(cats)
    keys = iter(task_keys("citytwin-life", n_tasks))

    def task(fn: Any, *args: Any, where: int, **kwargs: Any) -> Any:
        return client.submit(fn, *args, key=next(keys), pure=False, **kwargs, **on(where))

    nodes, streets = str(refs["nodes"]), str(refs["streets"])
    node_part = task(_life_nodes, nodes, where=0)
    buildings = task(_life_buildings, refs, include_unknown, where=1)  # no CRS needed: at once
    # before the tree, said explicitly (tasks submitted within Dask's fifo timeout share a priority, their ties
    # in no set order): the homes' check waits for it
    crs = task(_node_crs, node_part, where=0, priority=1)
    homes = task(_life_homes, buildings, crs, kw, where=1)
    home_xy = task(_home_xy, homes, where=1)
    graph_part = task(_life_graph, nodes, streets, home_xy, where=1)  # after the homes: the snapping waits for them
    pois = task(_life_pois, refs, crs, kw, where=0)
    tree = task(_node_tree, node_part, where=0)
    snapped = task(_life_snap, tree, home_xy, pois, where=0)
    prep = task(_life_assemble, homes, pois, snapped, graph_part, kw, where=1)
    light = task(_search_inputs, prep, where=1, priority=1)  # before the client's table: the others wait for it
    graph = task(_graph_only, graph_part, where=1)
    held = {j: task(_hold, task(_hold_graph, graph, where=j), light, where=j) for j in others}
    futs: list[Any] = [task(_held_search, c, held[i % k], where=i) if i % k in held else None
                       for i, c in enumerate(cats)]
    sent = task(_for_client, prep, where=1)
    # The graph's worker searches once every other worker holds the graph and the searches' inputs, and its
    # searches are submitted from here when they do (session 18): scipy's search holds the GIL, so a worker
    # that searches answers no fetch until the search ends. A search made to wait for a task of the other
    # worker (session 17's ``_hold``) had to fetch that task's result from it, and the fetch of the inputs
    # raced with the graph's worker's first search: on a warm cluster the graph is built before the snapping
    # ends, the hold ran first, and the other worker waited one whole search (0.7-2.2 s) for the inputs.
    waiting = list(held.values())
    for hold in _distributed().as_completed(waiting, loop=client.loop):  # waited for, not fetched (46 MB)
        if hold.status != "finished":  # every task waited for, then the first error raised
            run_futures(client, [*(s for s in futs if s is not None), sent, *waiting])
    futs = [f if f is not None else task(_life_search, c, graph, light, where=i) for i, (c, f) in
            enumerate(zip(cats, futs, strict=True))]

    def homes_table(i: int, result: Any) -> Any:  # the client's table made as soon as it arrives (searches run)
        if i != len(futs):
            return result
        full, payload = result
        geometry = geometry_from_payload(payload)
        full.homes = gpd.GeoDataFrame(full.homes, geometry=geometry.to_numpy(), crs=geometry.crs)
        return full

    # the holds are not fetched (each holds the graph): the scheduler keeps each until its searches have run
    *searched, full = run_futures(client, [*futs, sent], progress=progress, each=homes_table)
    return full, searched, n_tasks


def _part_build(part: int, parts: int, nodes: str, streets: str, radius: float) -> NetworkPart:
    from citytwin.spatial.network_parts import band_bounds, build_part

    ids, xy, _ = read_network_nodes(nodes)
    return build_part(part, xy, band_bounds(xy[:, 0], parts), radius, edge_batches(ids, streets))


def _part_summary(part: NetworkPart) -> dict[str, np.ndarray]:
    return part.summary()


def _part_labels(part: NetworkPart, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return nodes, part.labels[part.local(nodes)]


def _part_homes(part: NetworkPart, prep: LifeCirclePrep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions of the homes whose node the part owns, their nodes' local indices, local labels)."""
    import numpy as np

    loc = part.local(prep.h_node)
    mine = loc >= 0
    mine[mine] = part.own[loc[mine]]
    pos = np.flatnonzero(mine)
    return pos, loc[pos], part.labels[loc[pos]]


def _part_search(cat: str, part: NetworkPart, prep: LifeCirclePrep) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the part's homes, the network distance at their nodes) for one category: a search
    from the category's POIs whose nodes the part holds (the others are farther than the radius)."""
    import numpy as np

    from citytwin.spatial.lifecircle import nearest_distance

    pos, loc, _ = _part_homes(part, prep)
    p_loc = part.local(prep.p_node)
    every = (prep.p_cat == cat) & ~prep.p_off
    sel = every & (p_loc >= 0)
    # the search form the whole network's search takes (virtual source when any of all its offsets is not 0)
    virtual = bool(prep.include_snap and np.any(prep.p_snap[every]))
    d_node = nearest_distance(part.graph, p_loc[sel], prep.p_snap[sel] if prep.include_snap else None,
                              prep.max_distance, virtual=virtual)
    return pos, d_node[loc]


def life_partitioned(client: Any, cats: list[str], refs: dict[str, str | None], include_unknown: bool,
                     kw: dict[str, Any], progress: Progress | None) -> tuple[LifeCirclePrep, list[Any], int]:
    """(prepared homes and POIs with their components, one ``category_search`` result per category, the
    number of tasks) of a Parquet network searched in parts, one part per worker (module docstring)."""
    import numpy as np

    from citytwin.spatial.lifecircle import category_result
    from citytwin.spatial.network_parts import merge_components, wanted_labels

    radius = kw.get("max_distance")
    if radius is None or not np.isfinite(radius) or radius <= 0:
        raise InputError("a partitioned search needs a search radius (max_distance, metres)", field="max_distance",
                         hint="give max_distance, e.g. 3000; without it every worker holds the whole network")
    k = max(1, len(client.scheduler_info()["workers"]))
    keys = iter(task_keys("citytwin-lifepart", 4 + k * (4 + len(cats))))
    on = placement(client)

    nodes, streets = str(refs["nodes"]), str(refs["streets"])
    parts = [client.submit(_part_build, p, k, nodes, streets, float(radius), key=next(keys), pure=False, **on(p))
             for p in range(k)]
    node_part = client.submit(_life_nodes, nodes, key=next(keys), pure=False, **on(0))
    prep = client.submit(_life_prepare, node_part, refs, include_unknown, kw=kw, key=next(keys), pure=False, **on(0))
    light = client.submit(_search_inputs, prep, key=next(keys), pure=False, **on(0))
    homes = [client.submit(_part_homes, parts[p], light, key=next(keys), pure=False, **on(p)) for p in range(k)]
    searches = [[client.submit(_part_search, c, parts[p], light, key=next(keys), pure=False, **on(p))
                 for p in range(k)] for c in cats]
    summaries = run_futures(client, [client.submit(_part_summary, parts[p], key=next(keys), pure=False, **on(p))
                                     for p in range(k)])
    want = wanted_labels(summaries)
    answers = run_futures(client, [client.submit(_part_labels, parts[p], want[p], key=next(keys), pure=False,
                                                 **on(p)) for p in range(k)])
    glob, sizes = merge_components(summaries, answers)
    flat = run_futures(client, [*homes, *(f for row in searches for f in row)], progress=progress)
    home_parts, found = flat[:k], flat[k:]
    full = client.gather(prep)
    del node_part, parts
    nh = len(full.h_node)
    component = np.zeros(nh, dtype=np.int64)
    for p, (pos, _, labels) in enumerate(home_parts):
        component[pos] = glob[p][labels]
    full.homes["component"] = component
    n = int(sizes.sum())
    full.report["network"] = {"nodes": n, "components": len(sizes),
                              "largest_component_share": float(sizes[0] / n) if n else 0.0}
    searched = []
    for i, c in enumerate(cats):
        d = np.full(nh, np.inf)
        for pos, dist in found[i * k:(i + 1) * k]:
            d[pos] = dist
        searched.append(category_result(full, c, d))
    return full, searched, 4 + k * (4 + len(cats))
