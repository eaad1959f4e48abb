"""D5 life circles: network walking distance from every home to the nearest daily service.

Method
------
Homes (residential buildings, population cells or nodes) and POIs are snapped to their nearest
street node (straight-line snapping distance reported; beyond ``max_snap_m`` a point is flagged
*off network* and left out). For every service category one multi-source Dijkstra runs on the
street graph (scipy ``csgraph``): a virtual source node is linked to every node holding a POI of the
category, with the POI's snapping distance as link length, so one pass gives, for every node, the
distance to the nearest POI of the category *including* the walk from the POI to the street. The
home's own snapping distance is then added. Distances are metres; a category that cannot be reached
(another connected component, or beyond ``max_distance``) is **missing** (NaN), never zero.

A home is covered for a category when its distance is within the threshold: ``minutes`` at
``speed_kmh`` (15 min at 4.8 km/h = 1,200 m, the default) or an explicit ``threshold_m``
(e.g. 3,000 m for the 3-km circle). Gaps are ranked: most missing categories first, then
unreachable ones, then the mean excess distance of the missing ones.

Peers: pandana (``Network.nearest_pois``, contraction hierarchies) answers the same question; we
keep scipy's exact multi-source Dijkstra because pandana needs a search radius and a number of
POIs fixed when the POIs are loaded and stores its distances rounded (~1 mm). ``tests/spatial/test_lifecircle.py`` compares distances with pandana on the real
Helsinki network (0.01 m), and ``bench/spatial_lifecircle.py`` measures time and peak memory
against pandana in the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import CRS
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

from citytwin.foundation.errors import InputError
from citytwin.spatial.geo import InputReport, id_column, require_crs, valid_geometries, with_use
from citytwin.spatial.network import MIN_LENGTH, StreetNetwork, points_xy

#: Daily-service categories (same as :data:`citytwin.foundation.osm.DAILY_SERVICES`).
DAILY_SERVICES: tuple[str, ...] = (
    "school", "kindergarten", "clinic", "pharmacy", "grocery", "park", "elderly_care", "transit_stop",
)


def map_chinese_categories(pois: gpd.GeoDataFrame, category_col: str, classes: Sequence[str],
                           report: InputReport) -> gpd.GeoDataFrame:
    """POIs whose categories are a Chinese map platform's (``运动健身:网球场``) and none of ``classes``:
    their categories mapped with the shipped table (:mod:`citytwin.spatial.poi_categories`), said
    in the report. Other POIs are returned as they are."""
    from citytwin.spatial.poi_categories import TABLE, classify_cn, looks_chinese

    present = pois[category_col].dropna().astype(str)
    if present.isin(list(classes)).any() or not looks_chinese(present.unique()):
        return pois
    mapped = classify_cn(pois[category_col].tolist())
    n_ok = int(mapped.notna().sum())
    unmapped = sorted({str(c) for c, m in zip(pois[category_col], mapped, strict=True) if m is None and c is not None})
    report.note(f"POI categories read as Chinese map-platform categories (table spatial/data/{TABLE}): "
                f"{n_ok} of {len(pois)} POIs mapped to classes"
                + (f"; not in the table: {', '.join(unmapped[:10])}{' …' if len(unmapped) > 10 else ''}"
                   if unmapped else ""))
    return pois.assign(**{category_col: mapped.to_numpy()})


def walk_threshold_m(minutes: float = 15.0, speed_kmh: float = 4.8) -> float:
    """Walking distance (m) covered in ``minutes`` at ``speed_kmh``.

    Examples
    --------
    >>> walk_threshold_m()
    1200.0
    """
    if minutes <= 0 or speed_kmh <= 0:
        raise InputError("minutes and speed must be positive", field="minutes/speed_kmh")
    return float(minutes * speed_kmh * 1000.0 / 60.0)


def nearest_distance(graph: sparse.csr_matrix, source_nodes: np.ndarray, offsets: np.ndarray | None = None,
                     max_distance: float | None = None, virtual: bool | None = None) -> np.ndarray:
    """Distance from every node to the nearest source node (plus the source's offset).

    Parameters
    ----------
    graph
        Square CSR matrix of edge lengths (use a symmetric one for undirected networks).
    source_nodes
        Graph indices of the sources (repeats allowed: the smallest offset is kept).
    offsets
        Extra length at each source (e.g. its snapping distance); default 0.
    max_distance
        Stop searching beyond this distance (faster); farther nodes get ``inf``.
    virtual
        Search from a virtual source linked to the sources by their offsets (default: when any offset is
        not 0; else a plain multi-source search). A search over a part of the network passes what the
        whole network's search would use, so that both add the same numbers.

    Returns
    -------
    ndarray of length n_nodes; ``inf`` where no source is reachable.

    Examples
    --------
    >>> g = sparse.csr_matrix(([1.0, 1.0, 2.0, 2.0], ([0, 1, 1, 2], [1, 0, 2, 1])), shape=(3, 3))
    >>> nearest_distance(g, np.array([2])).tolist()
    [3.0, 2.0, 0.0]
    >>> nearest_distance(g, np.array([0, 2]), offsets=np.array([0.0, 5.0])).round(9).tolist()
    [0.0, 1.0, 3.0]
    """
    n = graph.shape[0]
    src = np.asarray(source_nodes, dtype=np.int64)
    if len(src) == 0:
        return np.full(n, np.inf)
    limit = np.inf if max_distance is None else float(max_distance)
    if virtual is None:
        virtual = offsets is not None and bool(np.any(offsets))
    if not virtual:
        d = dijkstra(graph, directed=True, indices=np.unique(src), min_only=True, limit=limit)
        return np.asarray(d, dtype=float)
    # scipy drops explicit zeros from sparse graphs: every offset is shifted by MIN_LENGTH on the
    # virtual links and the shift is taken off the result, which is exact
    offsets = np.zeros(len(src)) if offsets is None else offsets
    off = (pd.Series(np.maximum(np.asarray(offsets, dtype=float), 0.0)).groupby(src).min() + MIN_LENGTH)
    g = graph.tocsr()
    k = len(off)
    indptr = np.concatenate([g.indptr, [g.indptr[-1] + k]])
    indices = np.concatenate([g.indices, off.index.to_numpy(dtype=g.indices.dtype)])
    data = np.concatenate([g.data, off.to_numpy()])
    aug = sparse.csr_matrix((data, indices, indptr), shape=(n + 1, n + 1))
    d = dijkstra(aug, directed=True, indices=n, limit=limit + MIN_LENGTH)
    return np.maximum(np.asarray(d[:n], dtype=float) - MIN_LENGTH, 0.0)


def count_within(graph: sparse.csr_matrix, origins: np.ndarray, node_weights: np.ndarray, radius: float,
                 chunk: int = 256) -> np.ndarray:
    """Sum of ``node_weights`` over nodes within network distance ``radius`` of each origin node.

    The cumulative-opportunity measure (pandana's ``aggregate(type="sum", decay="flat")``); cost
    grows with origins x nodes reached, so use it on neighbourhood-size networks or few origins.

    Examples
    --------
    >>> g = sparse.csr_matrix(([1.0, 1.0, 2.0, 2.0], ([0, 1, 1, 2], [1, 0, 2, 1])), shape=(3, 3))
    >>> count_within(g, np.array([0, 1, 2]), np.array([1.0, 1.0, 1.0]), 2.0).tolist()
    [2.0, 3.0, 2.0]
    """
    origins = np.asarray(origins, dtype=np.int64)
    w = np.asarray(node_weights, dtype=float)
    out = np.zeros(len(origins))
    for s in range(0, len(origins), chunk):
        part = origins[s:s + chunk]
        d = dijkstra(graph, directed=True, indices=part, limit=radius)
        out[s:s + chunk] = (d <= radius).astype(float) @ w
    return out


@dataclass
class LifeCircleResult:
    """Outcome of :func:`life_circle`.

    Attributes
    ----------
    homes
        One row per home (EPSG:4326): id, snapped node, ``snap_m``, ``component``, ``off_network``,
        ``dist_<category>`` (m, NaN = unreachable), ``ok_<category>`` (within threshold),
        ``n_missing``, ``n_unreachable``, ``gap_rank`` (1 = worst served).
    coverage
        One row per category: POIs used, POIs off network, homes covered, share covered
        (population-weighted when a population column is given), homes unreachable, median distance.
    report
        Input handling: dropped rows, reprojections, POI snapping statistics, network components.
    threshold_m
        The coverage threshold in metres.
    """

    homes: gpd.GeoDataFrame
    coverage: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)
    threshold_m: float = 1200.0

    def gaps(self, top: int | None = None) -> gpd.GeoDataFrame:
        """Homes missing at least one category, worst first."""
        g = self.homes[self.homes["n_missing"] > 0].sort_values("gap_rank")
        return g if top is None else g.head(top)


def residential_buildings(buildings: gpd.GeoDataFrame, include_unknown: bool = False) -> gpd.GeoDataFrame:
    """Buildings read as homes from a ``use`` column (see :func:`citytwin.foundation.osm.building_use`).

    Without a ``use`` column it is derived from ``building`` (:func:`citytwin.spatial.geo.with_use`).
    ``include_unknown`` also takes untyped buildings (OSM ``building=yes`` without shop/office/amenity);
    in central extracts most homes are tagged so, which makes this the usual proxy.
    """
    buildings = with_use(buildings)
    keep = {"residential", "unknown"} if include_unknown else {"residential"}
    return buildings[buildings["use"].isin(keep)]


def life_circle(homes: gpd.GeoDataFrame, pois: gpd.GeoDataFrame, network: StreetNetwork,
                categories: Sequence[str] = DAILY_SERVICES, *, minutes: float = 15.0, speed_kmh: float = 4.8,
                threshold_m: float | None = None, max_snap_m: float = 250.0, include_snap: bool = True,
                max_distance: float | None = None, category_col: str = "category", id_col: str = "osm_id",
                population_col: str | None = None) -> LifeCircleResult:
    """Walking distance from every home to the nearest POI of each category, coverage and gaps.

    Parameters
    ----------
    homes
        Residential buildings (any geometry; polygons use a representative point), population
        cells or nodes. Rows without geometry are dropped and reported.
    pois
        POIs with a ``category_col`` column (any geometry).
    network
        The street network (:func:`citytwin.spatial.network.build_network`).
    categories
        Service categories to measure (default: :data:`DAILY_SERVICES`). A category with no POI
        at all is kept: every home is then unreachable for it.
    minutes, speed_kmh, threshold_m
        Coverage threshold: ``threshold_m`` if given, else ``minutes`` at ``speed_kmh``.
    max_snap_m
        Points farther than this from any street node are flagged off network and not used.
    include_snap
        Add the straight-line snapping distances of home and POI to the network distance.
    max_distance
        Stop the search at this distance (NaN beyond); default: no limit.
    population_col
        Optional weight of each home (e.g. population) for the coverage shares.

    Returns
    -------
    LifeCircleResult

    Notes
    -----
    Three steps, also run apart (the Dask form runs one search per task on workers that keep the
    prepared inputs): :func:`prepare_life_circle` (checks, snapping), :func:`category_search` (one
    multi-source search per category), :func:`finish_life_circle` (distances, gaps, coverage, report).
    """
    prep = prepare_life_circle(homes, pois, network, categories, minutes=minutes, speed_kmh=speed_kmh,
                               threshold_m=threshold_m, max_snap_m=max_snap_m, include_snap=include_snap,
                               max_distance=max_distance, category_col=category_col, id_col=id_col,
                               population_col=population_col)
    return finish_life_circle(prep, [category_search(prep, network, c) for c in prep.categories])


@dataclass
class LifeCirclePrep:
    """Homes and POIs checked and snapped to a network: :func:`life_circle` before its searches.

    Attributes
    ----------
    homes
        One row per home: ``home_id``, ``node``, ``snap_m``, ``component``, ``off_network``, geometry
        (EPSG:4326).
    h_node, h_snap, h_off
        Each home's graph index, snapping distance (m) and off-network flag.
    weights
        Each home's weight for the coverage shares.
    p_node, p_snap, p_off, p_cat
        Each POI's (of the categories) graph index, snapping distance, off-network flag and category.
    categories, threshold_m, include_snap, max_distance
        The options of the run.
    report
        The input report (dropped rows, notes, POI snapping, homes, network).
    """

    homes: gpd.GeoDataFrame
    h_node: np.ndarray
    h_snap: np.ndarray
    h_off: np.ndarray
    weights: np.ndarray
    p_node: np.ndarray
    p_snap: np.ndarray
    p_off: np.ndarray
    p_cat: np.ndarray
    categories: list[str]
    threshold_m: float
    include_snap: bool
    max_distance: float | None
    report: dict[str, Any]


def prepare_life_circle(homes: gpd.GeoDataFrame, pois: gpd.GeoDataFrame, network: StreetNetwork,
                        categories: Sequence[str] = DAILY_SERVICES, *, minutes: float = 15.0,
                        speed_kmh: float = 4.8, threshold_m: float | None = None, max_snap_m: float = 250.0,
                        include_snap: bool = True, max_distance: float | None = None,
                        category_col: str = "category", id_col: str = "osm_id",
                        population_col: str | None = None) -> LifeCirclePrep:
    """The checks and snapping of :func:`life_circle` (same parameters), before any search.

    In steps that also run apart (the Dask form checks the homes on one worker and the POIs and the
    snapping on another): :func:`check_homes`, :func:`check_pois`, the snapping of their points
    (:meth:`citytwin.spatial.network.StreetNetwork.snap_xy`) and :func:`assemble_prep`.
    """
    require_crs(homes, "homes")
    require_crs(pois, "pois")
    if category_col not in pois.columns:
        raise InputError(f"POIs have no column {category_col!r}", field=category_col)
    thr = life_threshold(minutes, speed_kmh, threshold_m)
    cats = list(dict.fromkeys(categories))
    hs = check_homes(homes, network.crs, id_col=id_col, population_col=population_col)
    ps = check_pois(pois, network.crs, cats, category_col=category_col, id_col=id_col)
    p_node, p_snap = network.snap_xy(ps.xy)
    h_node, h_snap = network.snap_xy(hs.xy)
    return assemble_prep(hs, h_node, h_snap, ps, p_node, p_snap, network.node_ids[h_node], network.component[h_node],
                         network_facts(network.component), categories=cats, threshold_m=thr, max_snap_m=max_snap_m,
                         include_snap=include_snap, max_distance=max_distance)


def life_threshold(minutes: float = 15.0, speed_kmh: float = 4.8, threshold_m: float | None = None) -> float:
    """The coverage threshold of :func:`life_circle` in metres: ``threshold_m``, else ``minutes`` at ``speed_kmh``.

    Examples
    --------
    >>> life_threshold(), life_threshold(threshold_m=3000)
    (1200.0, 3000.0)
    """
    return float(threshold_m) if threshold_m is not None else walk_threshold_m(minutes, speed_kmh)


@dataclass
class SideReport:
    """What one side (homes or POIs) of :func:`prepare_life_circle` did to its input, by stage, so that the
    sides' notes and dropped rows are put together in one process's order however they ran
    (:func:`assemble_prep`).

    Stages: 0/1 rows without geometry (homes/POIs), 2/3 reprojections (homes/POIs), 4 the POIs' category
    mapping; :func:`assemble_prep` adds the POIs off the network, the homes off it and "no homes"."""

    stages: dict[int, InputReport] = field(default_factory=dict)

    def at(self, stage: int) -> InputReport:
        """The report of ``stage`` (made when first asked for)."""
        return self.stages.setdefault(stage, InputReport())


@dataclass
class HomeSide:
    """The homes of :func:`prepare_life_circle`, checked, before snapping (:func:`check_homes`).

    Attributes
    ----------
    table
        ``home_id`` and the geometry in EPSG:4326 (the homes' table before its network columns).
    xy
        (n, 2) point of each home in the network's CRS (polygons and lines: a representative point).
    weights
        Each home's weight for the coverage shares.
    report
        What was done to the homes.
    """

    table: gpd.GeoDataFrame
    xy: np.ndarray
    weights: np.ndarray
    report: SideReport


@dataclass
class PoiSide:
    """The POIs of the categories of :func:`prepare_life_circle`, checked, before snapping (:func:`check_pois`).

    ``xy``: each POI's point in the network's CRS; ``cat``: its category; ``ids``: its id (the row index
    without an id column), named when it is off the network; ``report``: what was done to the POIs."""

    xy: np.ndarray
    cat: np.ndarray
    ids: np.ndarray
    report: SideReport


def _reprojection(name: str, g: gpd.GeoDataFrame, crs: Any, report: InputReport) -> None:
    if g.crs is not None and not g.crs.equals(crs) and not g.crs.equals("EPSG:4326"):
        report.note(f"{name}: reprojected from {g.crs.to_string()} to the network's {CRS.from_user_input(crs).to_string()}")


def check_homes(homes: gpd.GeoDataFrame, crs: Any, *, id_col: str = "osm_id",
                population_col: str | None = None) -> HomeSide:
    """The homes' side of :func:`prepare_life_circle` before snapping: rows without geometry dropped, each
    home's point in the network's ``crs`` and its row of the homes' table (id, geometry in EPSG:4326)."""
    require_crs(homes, "homes")
    rep = SideReport()
    h_id = id_column(homes, id_col)
    homes = valid_geometries(homes, h_id, "homes", rep.at(0))
    _reprojection("homes", homes, crs, rep.at(2))
    table = gpd.GeoDataFrame({"home_id": homes[h_id].to_numpy() if h_id is not None else homes.index.to_numpy()},
                             geometry=homes.geometry.to_crs(4326).to_numpy(), crs=4326)
    weights = (pd.to_numeric(homes[population_col], errors="coerce").fillna(0).to_numpy(dtype=float)
               if population_col else np.ones(len(homes)))
    return HomeSide(table=table, xy=points_xy(homes, crs), weights=weights, report=rep)


def check_pois(pois: gpd.GeoDataFrame, crs: Any, categories: Sequence[str], *, category_col: str = "category",
               id_col: str = "osm_id") -> PoiSide:
    """The POIs' side of :func:`prepare_life_circle` before snapping: rows without geometry dropped,
    categories read (a Chinese map platform's mapped), the POIs of ``categories`` and their points in the
    network's ``crs``."""
    require_crs(pois, "pois")
    if category_col not in pois.columns:
        raise InputError(f"POIs have no column {category_col!r}", field=category_col)
    rep = SideReport()
    p_id = id_column(pois, id_col)
    pois = valid_geometries(pois, p_id, "pois", rep.at(1))
    _reprojection("pois", pois, crs, rep.at(3))
    cats = list(dict.fromkeys(categories))
    pois = map_chinese_categories(pois, category_col, cats, rep.at(4))
    pois = pois[pois[category_col].isin(cats)]
    return PoiSide(xy=points_xy(pois, crs), cat=pois[category_col].to_numpy(),
                   ids=pois[p_id].to_numpy() if p_id is not None else pois.index.to_numpy(), report=rep)


def assemble_prep(homes: HomeSide, h_node: np.ndarray, h_snap: np.ndarray, pois: PoiSide, p_node: np.ndarray,
                  p_snap: np.ndarray, home_node_ids: np.ndarray, home_component: np.ndarray, network: dict[str, Any],
                  *, categories: Sequence[str], threshold_m: float, max_snap_m: float = 250.0,
                  include_snap: bool = True, max_distance: float | None = None) -> LifeCirclePrep:
    """:func:`prepare_life_circle`'s result from its two checked sides and their snapping (each point's
    node index and distance), the id and component of each home's node, and the report's ``network`` entry
    (:func:`network_facts`): the notes and dropped rows in one process's order."""
    report = InputReport()
    for stage in sorted({*homes.report.stages, *pois.report.stages}):
        for side in (homes.report, pois.report):
            part = side.stages.get(stage)
            if part is not None:
                report.notes.extend(part.notes)
                for what, ids in part.dropped.items():
                    report.drop(what, ids)
    p_off = p_snap > max_snap_m
    poi_stats = {
        "n": len(p_snap), "off_network": int(p_off.sum()),
        "snap_m_median": float(np.median(p_snap)) if len(p_snap) else None,
        "snap_m_max": float(p_snap.max()) if len(p_snap) else None, "max_snap_m": max_snap_m,
    }
    if p_off.any():
        report.drop("pois_off_network", pois.ids[p_off].tolist())
        report.note(f"pois: {int(p_off.sum())} farther than {max_snap_m} m from the network, not used")
    h_off = h_snap > max_snap_m
    if h_off.any():
        report.note(f"homes: {int(h_off.sum())} farther than {max_snap_m} m from the network (flagged, no distances)")
    n = len(homes.table)
    table = homes.table.copy()
    table.insert(1, "node", home_node_ids if n else np.empty(0, dtype=np.int64))
    table.insert(2, "snap_m", h_snap)
    table.insert(3, "component", home_component if n else np.empty(0, dtype=np.int64))
    table.insert(4, "off_network", h_off)
    if not n:
        report.note("homes: none (empty area)")
    rep = report.as_dict()
    rep.update({
        "threshold_m": threshold_m, "include_snap": include_snap, "pois": poi_stats,
        "homes": {"n": n, "off_network": int(h_off.sum())}, "network": network,
    })
    return LifeCirclePrep(homes=table, h_node=h_node, h_snap=h_snap, h_off=h_off, weights=homes.weights,
                          p_node=p_node, p_snap=p_snap, p_off=p_off, p_cat=pois.cat,
                          categories=list(dict.fromkeys(categories)), threshold_m=threshold_m,
                          include_snap=include_snap, max_distance=max_distance, report=rep)


def network_facts(component: np.ndarray) -> dict[str, Any]:
    """The report's ``network`` entry from each node's component (0 = the largest): nodes, components,
    the largest component's share of the nodes.

    Examples
    --------
    >>> network_facts(np.array([0, 0, 1, 0]))
    {'nodes': 4, 'components': 2, 'largest_component_share': 0.75}
    """
    n = len(component)
    return {"nodes": n, "components": int(component.max()) + 1 if n else 0,
            "largest_component_share": float((component == 0).mean()) if n else 0.0}


def category_search(prep: LifeCirclePrep, network: StreetNetwork, cat: str
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One category of :func:`life_circle`: (each home's distance in m, NaN = missing; within the
    threshold; the category's coverage row), from one multi-source search on ``network``."""
    sel = (prep.p_cat == cat) & ~prep.p_off
    d_node = nearest_distance(network.graph, prep.p_node[sel], prep.p_snap[sel] if prep.include_snap else None,
                              prep.max_distance)
    return category_result(prep, cat, d_node[prep.h_node] if len(prep.h_node) else np.empty(0))


def category_result(prep: LifeCirclePrep, cat: str, d_home_node: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """:func:`category_search`'s result from the network distance at each home's node (``inf``: none
    reached), however it was searched (whole, or in parts of the network)."""
    h_node, h_off, weights = prep.h_node, prep.h_off, prep.weights
    sel = (prep.p_cat == cat) & ~prep.p_off
    d = d_home_node + (prep.h_snap if prep.include_snap else 0.0) if len(h_node) else np.empty(0)
    d = np.where(np.isfinite(d) & ~h_off, d, np.nan)
    if prep.max_distance is not None:
        d = np.where(d <= prep.max_distance, d, np.nan)
    ok = d <= prep.threshold_m
    wsum = weights[~h_off].sum()
    row = {
        "category": cat, "pois": int(sel.sum()), "pois_off_network": int(((prep.p_cat == cat) & prep.p_off).sum()),
        "homes": int((~h_off).sum()), "homes_covered": int(ok.sum()),
        "share_covered": float(weights[ok].sum() / wsum) if wsum > 0 else float("nan"),
        "homes_unreachable": int((np.isnan(d) & ~h_off).sum()),
        "median_m": float(np.nanmedian(d)) if np.isfinite(d).any() else float("nan"),
    }
    return d, ok, row


def finish_life_circle(prep: LifeCirclePrep, searched: Sequence[tuple[np.ndarray, np.ndarray, dict[str, Any]]],
                       homes: gpd.GeoDataFrame | None = None) -> LifeCircleResult:
    """The result of :func:`life_circle` from its preparation and one :func:`category_search` per
    category (in ``prep.categories`` order); ``homes``: ``prep.homes`` when that was not kept."""
    out = (prep.homes if homes is None else homes).copy()
    for cat, (d, ok, _) in zip(prep.categories, searched, strict=True):
        out[f"dist_{cat}"] = d
        out[f"ok_{cat}"] = ok
    summarise_homes(out, prep.categories, prep.threshold_m)
    coverage = pd.DataFrame([row for _, _, row in searched],
                            columns=["category", "pois", "pois_off_network", "homes", "homes_covered",
                                     "share_covered", "homes_unreachable", "median_m"])
    return LifeCircleResult(homes=out, coverage=coverage, report=dict(prep.report), threshold_m=prep.threshold_m)


def summarise_homes(out: pd.DataFrame, cats: Sequence[str], thr: float) -> None:
    """Add each home's gap summary to ``out`` (which has ``dist_C``/``ok_C`` per category and
    ``off_network``): ``n_missing``, ``n_unreachable``, ``mean_excess_m`` beyond ``thr`` metres, and
    ``gap_rank`` (worst first). Shared by :func:`life_circle` and its Dask form."""
    if not len(out):
        for c in ("n_missing", "n_unreachable", "gap_rank"):
            out[c] = pd.Series([], dtype="int64")
        out["mean_excess_m"] = pd.Series([], dtype=float)
        return
    dist = out[[f"dist_{c}" for c in cats]].to_numpy(dtype=float)
    okm = out[[f"ok_{c}" for c in cats]].to_numpy(dtype=bool)
    out["n_missing"] = (~okm).sum(axis=1)
    out["n_unreachable"] = np.isnan(dist).sum(axis=1)
    excess = np.where(~okm & ~np.isnan(dist), dist - thr, np.nan)
    cnt = (~np.isnan(excess)).sum(axis=1)
    out["mean_excess_m"] = np.where(cnt > 0, np.nansum(excess, axis=1) / np.maximum(cnt, 1), 0.0)
    out.loc[out["off_network"], ["n_missing", "n_unreachable"]] = len(cats)
    order = np.lexsort((-out["mean_excess_m"].to_numpy(), -out["n_unreachable"].to_numpy(),
                        -out["n_missing"].to_numpy()))
    rank = np.empty(len(out), dtype=np.int64)
    rank[order] = np.arange(1, len(out) + 1)
    out["gap_rank"] = rank
