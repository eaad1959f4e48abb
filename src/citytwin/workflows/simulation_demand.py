"""Demand workflows (F5): a scenario's network with the trips of an OD matrix between zones (edge lists, H3
cells or district polygons), or with routes that reproduce counts on roads. Scenario folders as in
:mod:`citytwin.workflows.simulation`; the zone mapping itself is :mod:`citytwin.simulation.zones` (pure).
"""

from __future__ import annotations

import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.simulation import demand, zones
from citytwin.workflows.simulation import (
    _read_json,
    _save_scenario,
    _staging,
    _tool,
    load_scenario,
    sumo_home,
)

ZONE_KINDS = ("edges", "h3", "districts")


def edge_midpoints(net_file: Path, *, vclass: str = "passenger") -> pd.DataFrame:
    """``edge, lon, lat, leave, enter`` of the network's edges that ``vclass`` may use (junctions' internal
    edges left out): the point half-way along each edge's shape, in WGS84; whether a vehicle can leave the
    edge for another (it has outgoing connections: a trip may start on it) and enter it from another (a
    trip may end on it).

    Raises
    ------
    InputError
        When the network has no geographic reference (a ``netgenerate`` grid without ``origin``).
    """
    import sumolib

    net = sumolib.net.readNet(str(net_file))
    if not net.hasGeoProj():
        raise InputError("the network has no geographic reference, so H3 or district zones cannot be placed on it",
                         file=str(net_file), hint="use a network from OSM (citytwin sim osm), a geo-referenced "
                         "grid, or zones as edge lists (JSON {zone: [edge, ...]})")
    rows = []
    for e in net.getEdges():
        if e.getFunction() == "internal" or not e.allows(vclass):
            continue
        x, y = sumolib.geomhelper.positionAtShapeOffset(e.getShape(), e.getLength() / 2.0)
        lon, lat = net.convertXY2LonLat(x, y)
        rows.append((e.getID(), lon, lat, bool(e.getOutgoing()), bool(e.getIncoming())))
    return pd.DataFrame(rows, columns=["edge", "lon", "lat", "leave", "enter"])


def read_zones(net_file: Path, zones_file: Path | None, kind: str, od: pd.DataFrame, *,
               field: str = "name") -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The edges of each zone trips may start on and end on: ``kind`` ``edges`` (JSON ``{zone: [edge, ...]}``,
    each edge checked against the network; both ends), ``h3`` (the OD matrix's zones are H3 cells; no file)
    or ``districts`` (polygons in a GIS file, named by column ``field``). For H3 cells and districts a trip
    starts on an edge of the zone that has a way out and ends on one that has a way in (a dead end at the
    network's border is only a destination, an entry only an origin)."""
    if kind not in ZONE_KINDS:
        raise InputError(f"unknown zone kind {kind!r}", field="--zone-kind", hint=" | ".join(ZONE_KINDS))
    if kind in ("h3", "districts"):
        mids = edge_midpoints(net_file)
        if kind == "h3":
            named = pd.concat([od["origin"], od["destination"]]).dropna().astype(str).unique()
            mapping = zones.h3_zone_edges(mids, named, file=None)
        else:
            mapping = zones.polygon_zone_edges(mids, _districts(zones_file), field, file=str(zones_file))
        leave, enter = set(mids.loc[mids["leave"], "edge"]), set(mids.loc[mids["enter"], "edge"])
        return ({z: [e for e in es if e in leave] for z, es in mapping.items()},
                {z: [e for e in es if e in enter] for z, es in mapping.items()})
    if zones_file is None:
        raise InputError("edge zones need a zones file", field="--zones")
    data = _read_json(Path(zones_file), "zones file")
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise InputError("the zones file must map zone -> list of edges", file=str(zones_file),
                         hint="or give --zone-kind h3 / districts")
    edges = _edge_ids(net_file)
    for z, es in data.items():
        for e in es:
            if e not in edges:
                raise InputError(f"zone {z} names edge {e!r}, which is not in the network", file=str(zones_file),
                                 field=str(z))
    both = {str(k): [str(e) for e in v] for k, v in data.items()}
    return both, both


def _districts(zones_file: Path | None) -> Any:
    import geopandas as gpd

    if zones_file is None:
        raise InputError("district zones need a GIS file of polygons", field="--zones")
    try:
        d = gpd.read_file(zones_file)
    except Exception as exc:  # pyogrio's DataSourceError, OSError ...: the file is not a GIS file
        raise InputError(f"cannot read the districts: {exc}"[:300], file=str(zones_file)) from None
    if d.crs is None:
        raise InputError("the districts have no coordinate reference system", file=str(zones_file))
    return d.to_crs(4326)


def od_scenario(base: Path, od_file: Path, zones_file: Path | None, out: Path, *, begin: float = 0.0,
                end: float = 3600.0, seed: int = 0, zone_kind: str = "edges", zone_field: str = "name"
                ) -> dict[str, Any]:
    """A scenario with the network of ``base`` and the trips of an OD matrix (CSV ``origin, destination,
    trips``) between zones: edge lists (JSON ``{zone: [edge, ...]}``), H3 cells (``zone_kind="h3"``: the OD's
    zones are cell ids, each holding the edges whose midpoint lies in it) or districts
    (``zone_kind="districts"``: polygons in a GIS file named by ``zone_field``). A zone of the OD matrix
    that is unknown, or has no edge of the network, is an error naming its row and column."""
    sc = load_scenario(base)
    try:
        od = pd.read_csv(od_file, dtype={"origin": str, "destination": str})
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the OD matrix: {exc}", file=str(od_file)) from None
    for col in ("origin", "destination"):
        if col not in od.columns:
            raise InputError(f"the OD matrix has no column {col!r}", file=str(od_file), field=col,
                             hint="columns: origin, destination, trips")
    zone_edges, arrivals = read_zones(sc["net"], zones_file, zone_kind, od, field=zone_field)
    trips = demand.od_trips(od, zone_edges, begin=begin, end=end, seed=seed, file=str(od_file), arrivals=arrivals)
    with _staging(out) as tmp:
        shutil.copy(sc["net"], tmp / "net.net.xml")
        (tmp / "trips.rou.xml").write_text(demand.trips_xml(trips), encoding="utf-8")
        _save_scenario(tmp, net="net.net.xml", routes=["trips.rou.xml"], source=f"od {Path(od_file).name}",
                       zones={"kind": zone_kind, "file": None if zones_file is None else str(zones_file),
                              "origin_edges": {z: len(v) for z, v in zone_edges.items()},
                              "destination_edges": {z: len(v) for z, v in arrivals.items()}})
    return {"out": str(out), "trips": len(trips), "zone_kind": zone_kind,
            "origin_edges": {z: len(v) for z, v in zone_edges.items()},
            "destination_edges": {z: len(v) for z, v in arrivals.items()}}


def counts_scenario(base: Path, counts_file: Path, out: Path, *, begin: float = 0.0, end: float = 3600.0,
                    seed: int = 0) -> dict[str, Any]:
    """A scenario with the network of ``base`` and routes that reproduce counts on roads (CSV ``edge,count``:
    vehicles over ``[begin, end)``), chosen by SUMO's ``routeSampler.py`` among candidate routes (random
    trips routed by ``randomTrips.py``, seeded). An edge not in the network is an error naming its row."""
    sc = load_scenario(base)
    edges = _edge_ids(sc["net"])
    try:
        counts = pd.read_csv(counts_file, dtype={"edge": str})
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the counts: {exc}", file=str(counts_file)) from None
    for col in ("edge", "count"):
        if col not in counts:
            raise InputError(f"the counts have no column {col!r}", file=str(counts_file), field=col)
    for row, (e, c) in enumerate(zip(counts["edge"], counts["count"], strict=True), start=1):
        if e not in edges:
            raise InputError(f"edge {e!r} is not in the network", file=str(counts_file), row=row, field="edge")
        if not (isinstance(c, int | float | np.integer | np.floating) and c >= 0):
            raise InputError(f"count {c!r} must be a number >= 0", file=str(counts_file), row=row, field="count")
    with _staging(out) as tmp:
        shutil.copy(sc["net"], tmp / "net.net.xml")
        rows = "".join(f'        <edge id="{e}" entered="{float(c)!r}"/>\n'
                       for e, c in zip(counts["edge"], counts["count"], strict=True))
        (tmp / "counts.xml").write_text(f'<data>\n    <interval id="counts" begin="{begin!r}" end="{end!r}">\n'
                                        f"{rows}    </interval>\n</data>\n", encoding="utf-8")
        tools = sumo_home() / "tools"
        _tool([sys.executable, str(tools / "randomTrips.py"), "-n", "net.net.xml", "-r", "candidates.rou.xml",
               "-o", "candidates.trips.xml", "-e", str(end), "-p", "1", "--seed", str(seed)],
              "randomTrips (candidate routes)", cwd=tmp)
        _tool([sys.executable, str(tools / "routeSampler.py"), "-r", "candidates.rou.xml", "-d", "counts.xml",
               "--edgedata-attribute", "entered", "-o", "routes.rou.xml", "-b", str(begin), "-e", str(end),
               "--seed", str(seed)], "routeSampler", cwd=tmp)
        for f in ("candidates.rou.xml", "candidates.trips.xml", "candidates.rou.alt.xml"):
            (tmp / f).unlink(missing_ok=True)
        _save_scenario(tmp, net="net.net.xml", routes=["routes.rou.xml"], source=f"counts {Path(counts_file).name}")
        n = sum(1 for _ in ET.parse(tmp / "routes.rou.xml").getroot().iter("vehicle"))
    return {"out": str(out), "vehicles": n}


def _edge_ids(net_file: Path) -> set[str]:
    import sumolib

    return {e.getID() for e in sumolib.net.readNet(str(net_file)).getEdges()}


