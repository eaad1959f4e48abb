"""A street network as a compressed sparse graph (scipy) in metres, with snapping and components.

Built from (nodes, edges) GeoDataFrames such as :func:`citytwin.foundation.osm.street_graph` returns,
or any graph file read into the same shape (nodes ``id`` + point geometry; edges ``u``, ``v`` and
optionally ``length`` in metres). Walking networks are undirected: each edge is usable both ways;
parallel edges keep the shortest length.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import CRS
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from citytwin.foundation.errors import InputError
from citytwin.spatial.geo import as_points, metric_crs, require_crs, xy

#: Lengths of 0 m are stored as this (scipy sparse graphs drop explicit zeros).
MIN_LENGTH = 1e-6


@dataclass
class StreetNetwork:
    """An undirected street graph in a metric CRS.

    Attributes
    ----------
    node_ids
        Original node ids, position i = graph index i.
    coords
        (n, 2) node coordinates in ``crs`` (metres).
    graph
        Symmetric CSR matrix of edge lengths (metres).
    crs
        The metric CRS of ``coords``.
    component
        Connected-component label of every node (0 = the largest).
    """

    node_ids: np.ndarray
    coords: np.ndarray
    graph: sparse.csr_matrix
    crs: CRS
    component: np.ndarray

    @property
    def n_nodes(self) -> int:
        return int(self.coords.shape[0])

    @property
    def n_components(self) -> int:
        return int(self.component.max()) + 1 if self.n_nodes else 0

    def components_summary(self) -> pd.DataFrame:
        """Nodes per connected component, largest first."""
        counts = np.bincount(self.component) if self.n_nodes else np.array([], dtype=int)
        return pd.DataFrame({"component": np.arange(len(counts)), "nodes": counts})

    @cached_property
    def kdtree(self) -> cKDTree:
        """A k-d tree of the node coordinates (built once: homes and POIs are snapped with the same).

        Balanced (median splits): ``balanced_tree=False`` builds 3x faster but picks another of two nodes
        at the same place (OSM has such pairs; the pandana comparison on Helsinki then fails)."""
        return cKDTree(self.coords)

    def snap(self, points: gpd.GeoSeries | gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Nearest node (graph index) and the straight-line snapping distance (m) of each point."""
        return self.snap_xy(points_xy(points, self.crs))

    def snap_xy(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`snap` of points given as (n, 2) coordinates in the network's CRS (:func:`points_xy`)."""
        return snap_xy(self.kdtree, coords)

    def nodes_frame(self) -> gpd.GeoDataFrame:
        """Nodes as a GeoDataFrame (id, component) in EPSG:4326."""
        g = gpd.GeoDataFrame({"id": self.node_ids, "component": self.component},
                             geometry=gpd.points_from_xy(self.coords[:, 0], self.coords[:, 1]), crs=self.crs)
        return g.to_crs(4326)


def points_xy(points: gpd.GeoSeries | gpd.GeoDataFrame, crs: Any) -> np.ndarray:
    """(n, 2) coordinates in ``crs`` of each point (lines and polygons: a representative point), as
    :meth:`StreetNetwork.snap` snaps them.

    Examples
    --------
    >>> from shapely.geometry import Point, box
    >>> points_xy(gpd.GeoSeries([Point(1, 2), box(0, 0, 4, 2)], crs=3067), 3067).tolist()
    [[1.0, 2.0], [2.0, 1.0]]
    """
    geom = points.geometry if isinstance(points, gpd.GeoDataFrame) else points
    if geom.crs is None:
        raise InputError("points have no coordinate reference system", field="geometry")
    pts = as_points(gpd.GeoDataFrame(geometry=geom.to_crs(crs)))
    return xy(pts) if len(pts) else np.empty((0, 2))


def snap_xy(tree: cKDTree, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nearest node index, distance) of each of the (n, 2) ``coords`` with a k-d tree of the nodes (the
    network's :attr:`StreetNetwork.kdtree`, or the same tree built from the same coordinates elsewhere:
    a balanced ``cKDTree`` of the same points picks the same node among equals)."""
    if len(coords) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    dist, idx = tree.query(coords)
    return idx.astype(np.int64), dist


def build_network(nodes: gpd.GeoDataFrame, edges: pd.DataFrame, crs: Any = None) -> StreetNetwork:
    """Build a :class:`StreetNetwork` from node and edge frames.

    Parameters
    ----------
    nodes
        GeoDataFrame with an ``id`` column and point geometry (any CRS).
    edges
        Frame with ``u``, ``v`` (node ids) and ``length`` (metres). When ``length`` is missing it is
        measured on the edge geometry (a GeoDataFrame) in the metric CRS, or else as the straight
        line between the two nodes.
    crs
        Metric CRS to work in; default: the nodes' own when metric, else the local UTM zone.

    Returns
    -------
    StreetNetwork

    Raises
    ------
    InputError
        Empty network, edges naming unknown nodes, negative or missing lengths.

    Examples
    --------
    >>> nodes = gpd.GeoDataFrame({"id": [1, 2, 3]}, geometry=gpd.points_from_xy([0, 100, 100], [0, 0, 50]),
    ...                          crs=3067)
    >>> edges = pd.DataFrame({"u": [1, 2], "v": [2, 3], "length": [100.0, 50.0]})
    >>> net = build_network(nodes, edges)
    >>> net.n_nodes, net.n_components
    (3, 1)
    """
    require_crs(nodes, "nodes")
    if len(nodes) == 0 or len(edges) == 0:
        raise InputError("empty street network (no nodes or no edges)", field="edges",
                         hint="is the area empty, or the network type wrong?")
    for col in ("u", "v"):
        if col not in edges.columns:
            raise InputError(f"edges have no column {col!r}", field=col)
    ids, coords, mcrs = network_nodes(nodes, crs)
    graph, component = network_graph(ids, edges, coords=coords, crs=mcrs)
    return StreetNetwork(node_ids=ids, coords=coords, graph=graph, crs=mcrs, component=component)


def network_nodes(nodes: gpd.GeoDataFrame, crs: Any = None) -> tuple[np.ndarray, np.ndarray, CRS]:
    """The node half of :func:`build_network`: (ids, (n, 2) coordinates in metres, the metric CRS).

    Ids are the first occurrence of each ``id`` in table order (the graph index).
    """
    require_crs(nodes, "nodes")
    if "id" not in nodes.columns:
        raise InputError("nodes have no column 'id'", field="id")
    if len(nodes) == 0:
        raise InputError("empty street network (no nodes or no edges)", field="edges",
                         hint="is the area empty, or the network type wrong?")
    mcrs = CRS.from_user_input(crs) if crs is not None else metric_crs(nodes)
    # a 10-million-node table is not copied when it is already metric and its ids unique
    nodes_m = nodes if nodes.crs is not None and nodes.crs.equals(mcrs) else nodes.to_crs(mcrs)
    if not nodes_m["id"].is_unique:
        nodes_m = nodes_m.drop_duplicates("id")
    return nodes_m["id"].to_numpy(), xy(as_points(nodes_m)), mcrs


def wkb_points_layout(meta: Any, names: list[str], crs: Any = None) -> tuple[str, CRS] | None:
    """(geometry column, its CRS) of a GeoParquet node table (``meta``: its ``geo`` metadata, ``names``: its
    columns) whose points :func:`decode_wkb_points` can read and :func:`network_nodes` would keep in their
    CRS (metric, or ``crs``), else None."""
    if not isinstance(meta, dict) or "id" not in names:
        return None
    col = meta.get("primary_column")
    info = (meta.get("columns") or {}).get(col)
    if not isinstance(info, dict) or info.get("encoding", "WKB").upper() != "WKB" or "crs" not in info:
        return None  # no "crs" key means OGC:CRS84: geographic, reprojected by the general path
    if info.get("geometry_types") not in (["Point"],):
        return None
    if info["crs"] is None:
        return None  # no CRS: the general path says so
    fcrs = CRS.from_user_input(info["crs"])
    want = CRS.from_user_input(crs) if crs is not None else fcrs
    metric = fcrs.is_projected and fcrs.axis_info and fcrs.axis_info[0].unit_name in ("metre", "meter")
    if not metric or not want.equals(fcrs):
        return None
    return str(col), fcrs


def decode_wkb_points(arr: Any) -> np.ndarray | None:
    """(n, 2) coordinates of a chunked Arrow binary array of 2D little-endian WKB points, else None.

    The doubles of the WKB themselves, as shapely would give them, without a shapely object per point
    (2.3 s for a million nodes as a GeoDataFrame, 0.26 s decoded; issue 19).

    Examples
    --------
    >>> import pyarrow as pa, shapely
    >>> decode_wkb_points(pa.chunked_array([shapely.to_wkb(shapely.points([[1.5, 2.0], [3.0, 4.0]]))])).tolist()
    [[1.5, 2.0], [3.0, 4.0]]
    >>> decode_wkb_points(pa.chunked_array([shapely.to_wkb(shapely.points([[1.5, 2.0, 9.0]]))])) is None
    True
    """
    import pyarrow as pa

    parts = []
    for chunk in arr.chunks:
        if chunk.null_count:
            return None
        off_t: type[np.signedinteger[Any]]
        if pa.types.is_binary(chunk.type):
            off_t = np.int32
        elif pa.types.is_large_binary(chunk.type):
            off_t = np.int64
        else:
            return None
        n = len(chunk)
        bufs = chunk.buffers()
        offsets = np.frombuffer(bufs[1], dtype=off_t, count=n + 1, offset=chunk.offset * np.dtype(off_t).itemsize)
        if n and not (np.all(np.diff(offsets) == 21)):
            return None
        raw = np.frombuffer(bufs[2], dtype=np.uint8, count=21 * n, offset=int(offsets[0]) if n else 0)
        rec = raw.view(np.dtype([("o", "u1"), ("t", "<u4"), ("x", "<f8"), ("y", "<f8")]))
        if n and not (np.all(rec["o"] == 1) and np.all(rec["t"] == 1)):
            return None
        parts.append(np.column_stack([rec["x"], rec["y"]]))
    return np.concatenate(parts) if parts else np.empty((0, 2))


def network_graph(ids: np.ndarray, edges: pd.DataFrame, *, coords: np.ndarray | None = None,
                  crs: Any = None) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The edge half of :func:`build_network`: (symmetric CSR of lengths, component of each node, 0 = largest).

    ``ids`` as :func:`network_nodes` gives them. ``coords`` and ``crs`` are needed only when ``edges``
    has no ``length`` (measured on the edge geometry in ``crs``, else as the straight line).
    """
    for col in ("u", "v"):
        if col not in edges.columns:
            raise InputError(f"edges have no column {col!r}", field=col)
    u, v = node_positions(ids, edges["u"].to_numpy()), node_positions(ids, edges["v"].to_numpy())
    unknown = (u < 0) | (v < 0)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise InputError(f"{int(unknown.sum())} edge(s) name nodes not in the node table", row=i + 1, field="u/v",
                         hint="pass the node table that belongs to these edges")
    if "length" in edges.columns:
        length = pd.to_numeric(edges["length"], errors="coerce").to_numpy(dtype=float)
    elif isinstance(edges, gpd.GeoDataFrame) and edges.crs is not None and crs is not None:
        length = edges.geometry.to_crs(crs).length.to_numpy()
    elif coords is not None:
        length = np.hypot(*(coords[u] - coords[v]).T)
    else:
        raise InputError("edges have no 'length' column", field="length", hint="give lengths in metres")
    if np.isnan(length).any():
        i = int(np.flatnonzero(np.isnan(length))[0])
        raise InputError("edge length missing or not a number", row=i + 1, field="length")
    if (length < 0).any():
        i = int(np.flatnonzero(length < 0)[0])
        raise InputError(f"negative edge length {length[i]}", row=i + 1, field="length")
    length = np.maximum(length, MIN_LENGTH)
    n = len(ids)
    graph = symmetric_csr(u, v, length, n)
    ncomp, labels = connected_components(graph, directed=False)
    # relabel so that 0 is the largest component
    order = np.argsort(-np.bincount(labels, minlength=ncomp), kind="stable")
    relabel = np.empty(ncomp, dtype=np.int64)
    relabel[order] = np.arange(ncomp)
    return graph, relabel[labels]


def node_positions(ids: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """The graph index of each node id in ``refs`` (``ids`` unique, as :func:`network_nodes` gives them); -1
    where it is not one of ``ids``.

    Ids ``0 .. n-1`` in order (a generated or renumbered network) are their own positions: integer ``refs``
    are then checked against the range instead of looked up (a tenth of the time at a million nodes).

    Examples
    --------
    >>> node_positions(np.array([10, 30, 20]), np.array([20, 10, 99])).tolist()
    [2, 0, -1]
    >>> node_positions(np.arange(3), np.array([2, 0, 3, -1])).tolist()
    [2, 0, -1, -1]
    """
    n = len(ids)
    refs = np.asarray(refs)
    if (n and refs.dtype.kind in "iu" and ids.dtype.kind in "iu" and ids[0] == 0 and ids[-1] == n - 1
            and bool(np.all(np.diff(ids) == 1))):
        pos = refs.astype(np.int64, copy=False)
        return np.where((pos >= 0) & (pos < n), pos, -1)
    found = pd.Series(np.arange(n), index=ids).reindex(refs).to_numpy()
    return np.where(np.isnan(found), -1, found).astype(np.int64)


def symmetric_csr(u: np.ndarray, v: np.ndarray, w: np.ndarray, n: int) -> sparse.csr_matrix:
    """Symmetric CSR adjacency with the minimum weight over parallel edges; self-loops dropped.

    The directed pairs are sorted by (row, column) once and the minimum weight of each pair taken
    with ``np.minimum.reduceat``; the sorted unique pairs are the CSR arrays themselves (sorted
    indices). A ``lexsort`` by (pair, weight) did the same at about four times the cost: the biggest
    serial step of building a large network (issue 19).

    Examples
    --------
    >>> g = symmetric_csr(np.array([0, 1, 0, 2]), np.array([1, 0, 2, 2]), np.array([5.0, 3.0, 1.0, 9.0]), 3)
    >>> g.toarray().tolist()
    [[0.0, 3.0, 1.0], [3.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """
    keep = u != v
    a = np.concatenate([u[keep], v[keep]]).astype(np.int64)
    b = np.concatenate([v[keep], u[keep]]).astype(np.int64)
    ww = np.concatenate([w[keep], w[keep]]).astype(float)
    key = a * n + b
    del a, b  # intermediates freed as soon as done with: a large network's peak memory is here
    order = np.argsort(key)
    key_s = key[order]
    del key
    w_s = ww[order]
    del ww, order
    first = np.ones(len(key_s), dtype=bool)
    first[1:] = key_s[1:] != key_s[:-1]
    starts = np.flatnonzero(first)
    del first
    data = np.minimum.reduceat(w_s, starts) if len(starts) else np.empty(0)
    del w_s
    ukey = key_s[starts]
    del key_s, starts
    rows, cols = ukey // n, ukey % n
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    idx_t = np.int32 if max(n, len(ukey)) < np.iinfo(np.int32).max else np.int64
    return sparse.csr_matrix((data, cols.astype(idx_t), indptr.astype(idx_t)), shape=(n, n))


def nodes_from_edges(edges: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Node table (``id`` + point) from line edges: ``u`` at each line's first vertex, ``v`` at its last.

    For street layers stored without their node table (e.g. a GeoParquet of edges).

    Examples
    --------
    >>> from shapely.geometry import LineString
    >>> e = gpd.GeoDataFrame({"u": [1], "v": [2]}, geometry=[LineString([(0, 0), (1, 0)])], crs=3067)
    >>> nodes_from_edges(e)["id"].tolist()
    [1, 2]
    """
    require_crs(edges, "edges")
    if not {"u", "v"}.issubset(edges.columns):
        raise InputError("edges need 'u' and 'v' columns", field="u/v")
    e = edges[edges.geometry.notna() & ~edges.geometry.is_empty]
    import shapely

    first = shapely.get_point(e.geometry.values, 0)
    last = shapely.get_point(e.geometry.values, -1)
    ids = np.concatenate([e["u"].to_numpy(), e["v"].to_numpy()])
    pts = np.concatenate([np.asarray(first), np.asarray(last)])
    g = gpd.GeoDataFrame({"id": ids}, geometry=gpd.GeoSeries(pts, crs=edges.crs), crs=edges.crs)
    return g.drop_duplicates("id").reset_index(drop=True)


def network_stats(nodes: pd.DataFrame, edges: pd.DataFrame) -> dict[str, Any]:
    """Basic street-network statistics (the OSMnx ``stats`` definitions), from the edge list.

    ``streets_per_node`` counts the undirected street segments at each node (parallel segments
    each, a self-loop once); intersections are nodes with at least 2 streets, as OSMnx's
    ``intersection_count(min_streets=2)``; dead ends have exactly 1.

    Examples
    --------
    >>> nodes = pd.DataFrame({"id": [1, 2, 3]})
    >>> edges = pd.DataFrame({"u": [1, 2], "v": [2, 3], "length": [10.0, 5.0]})
    >>> s = network_stats(nodes, edges)
    >>> s["n"], s["m"], s["edge_length_total"], s["streets_per_node_avg"], s["dead_end_count"]
    (3, 2, 15.0, 1.3333333333333333, 2)
    """
    ids = nodes["id"].to_numpy()
    pos = pd.Series(np.arange(len(ids)), index=ids)
    u = pos.reindex(edges["u"].to_numpy()).to_numpy()
    v = pos.reindex(edges["v"].to_numpy()).to_numpy()
    ok = ~(np.isnan(u) | np.isnan(v))
    u, v = u[ok].astype(np.int64), v[ok].astype(np.int64)
    loop = u == v
    # reverse duplicates (u->v and v->u, same segment) collapse into one undirected street
    a, b = np.minimum(u, v), np.maximum(u, v)
    pair = pd.DataFrame({"a": a, "b": b, "d": u <= v})
    n_dir = pair.groupby(["a", "b"])["d"].agg(["sum", "count"])
    per_pair = np.maximum(n_dir["sum"].to_numpy(), (n_dir["count"] - n_dir["sum"]).to_numpy())
    pa = n_dir.index.get_level_values(0).to_numpy()
    pb = n_dir.index.get_level_values(1).to_numpy()
    is_loop = pa == pb
    counts = (np.bincount(pa[~is_loop], weights=per_pair[~is_loop], minlength=len(ids))
              + np.bincount(pb[~is_loop], weights=per_pair[~is_loop], minlength=len(ids))
              + np.bincount(pa[is_loop], weights=np.ones(int(is_loop.sum())), minlength=len(ids)))
    length = pd.to_numeric(edges["length"], errors="coerce").to_numpy(dtype=float)[ok]
    return {
        "n": len(ids), "m": int(ok.sum()), "self_loops": int(loop.sum()),
        "edge_length_total": float(length.sum()), "edge_length_avg": float(length.mean()) if len(length) else 0.0,
        "streets_per_node_avg": float(counts.mean()) if len(counts) else 0.0,
        "streets_per_node_counts": {int(k): int(c) for k, c in zip(*np.unique(counts, return_counts=True),
                                                                   strict=True)},
        "intersection_count": int((counts >= 2).sum()), "dead_end_count": int((counts == 1).sum()),
    }
