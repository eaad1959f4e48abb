"""CityFlow scenarios (``roadnet.json`` + ``flow.json``, the public format of the traffic-signal-control
benchmarks) -> SUMO plain XML.

Mapping (documented in docs/simulation.md):

- an intersection becomes a SUMO node (``traffic_light`` when it has signal phases and is not virtual,
  else ``priority``); a road becomes an edge from its start to its end intersection with one SUMO lane
  per CityFlow lane and the road's polyline as shape;
- CityFlow numbers lanes from the inside (lane 0 next to the centre line), SUMO from the kerb (lane 0
  rightmost): SUMO lane = ``n_lanes - 1 - cityflow_lane``;
- every lane link of a road link is one SUMO connection; at a signalised intersection the connections
  are numbered (``linkIndex``) in the order of the road links and their lane links, and each CityFlow
  phase becomes a SUMO phase of the same duration whose state is green for the links of its
  ``availableRoadLinks`` (``g``, yielding, for left turns) and red for the others;
- each flow emits one vehicle at ``startTime``, ``startTime + interval`` ... up to ``endTime``
  (inclusive; a negative ``endTime`` means the horizon given), on the flow's route, with a vehicle type
  from its ``vehicle`` block (length, width, minGap, maxSpeed, maxPosAcc -> accel, usualNegAcc -> decel,
  maxNegAcc -> emergencyDecel, headwayTime -> tau).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

from citytwin.foundation.errors import InputError


@dataclass(frozen=True)
class NetworkCounts:
    """What a conversion must keep: intersections, roads, lanes and movements (lane-to-lane links)."""

    intersections: int
    roads: int
    lanes: int
    movements: int
    signals: int = 0

    def differences(self, other: NetworkCounts) -> list[str]:
        """The fields that differ, as ``"name: self -> other"`` (empty when equal)."""
        out = []
        for name in ("intersections", "roads", "lanes", "movements", "signals"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name}: {a} -> {b}")
        return out


@dataclass
class CityFlowNetwork:
    """A checked CityFlow scenario turned into SUMO plain XML (strings) and vehicles.

    Attributes
    ----------
    nodes_xml, edges_xml, connections_xml, tll_xml
        SUMO plain XML files for ``netconvert`` (``--node-files`` ...).
    routes_xml
        Vehicle types and one ``<vehicle>`` per CityFlow vehicle, sorted by departure.
    counts
        Intersections, roads, lanes, movements and signals of the CityFlow input.
    vehicles
        Number of vehicles written.
    """

    nodes_xml: str
    edges_xml: str
    connections_xml: str
    tll_xml: str
    routes_xml: str
    counts: NetworkCounts
    vehicles: int
    warnings: list[str] = field(default_factory=list)


def _req(obj: Any, key: str, *, file: str, where: str, kind: type | tuple[type, ...] = object) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise InputError(f"{where} has no {key!r}", file=file, field=key)
    val = obj[key]
    if not isinstance(val, kind):
        raise InputError(f"{where}: {key!r} is {type(val).__name__}, not the expected type", file=file, field=key)
    return val


def _num(v: Any, *, file: str, where: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InputError(f"{where}: {key!r} must be a number, got {v!r}", file=file, field=key)
    return float(v)


def convert(roadnet: dict[str, Any], flows: list[Any], *, roadnet_file: str = "roadnet.json",
            flow_file: str = "flow.json", horizon: float = 3600.0) -> CityFlowNetwork:
    """Check a CityFlow scenario and turn it into SUMO plain XML and vehicles.

    Parameters
    ----------
    roadnet, flows
        The parsed ``roadnet.json`` (``{"intersections": [...], "roads": [...]}``) and ``flow.json``
        (a list of flows).
    roadnet_file, flow_file
        Names used in error messages.
    horizon
        Last departure time for flows whose ``endTime`` is negative.

    Returns
    -------
    CityFlowNetwork

    Raises
    ------
    InputError
        Naming the file, the element (road, intersection, flow) and the field: a road whose start or
        end intersection does not exist, a road link or phase that names a missing road or link, a flow
        whose route names a missing road or does not connect (no road link between two consecutive
        roads).
    """
    rf, ff = roadnet_file, flow_file
    if not isinstance(roadnet, dict):
        raise InputError("the road network must be a JSON object with 'intersections' and 'roads'", file=rf)
    inters = _req(roadnet, "intersections", file=rf, where="roadnet", kind=list)
    roads = _req(roadnet, "roads", file=rf, where="roadnet", kind=list)
    inter_by_id: dict[str, dict[str, Any]] = {}
    for i, it in enumerate(inters):
        iid = str(_req(it, "id", file=rf, where=f"intersection #{i}"))
        if iid in inter_by_id:
            raise InputError(f"intersection {iid!r} appears twice", file=rf, row=i + 1, field="id")
        inter_by_id[iid] = it
    road_by_id: dict[str, dict[str, Any]] = {}
    lanes_of: dict[str, int] = {}
    for i, rd in enumerate(roads):
        rid = str(_req(rd, "id", file=rf, where=f"road #{i}"))
        if rid in road_by_id:
            raise InputError(f"road {rid!r} appears twice", file=rf, row=i + 1, field="id")
        for key in ("startIntersection", "endIntersection"):
            ref = str(_req(rd, key, file=rf, where=f"road {rid!r}"))
            if ref not in inter_by_id:
                raise InputError(f"road {rid!r} references intersection {ref!r}, which does not exist",
                                 file=rf, row=i + 1, field=key)
        lanes = _req(rd, "lanes", file=rf, where=f"road {rid!r}", kind=list)
        if not lanes:
            raise InputError(f"road {rid!r} has no lanes", file=rf, row=i + 1, field="lanes")
        pts = _req(rd, "points", file=rf, where=f"road {rid!r}", kind=list)
        if len(pts) < 2:
            raise InputError(f"road {rid!r} needs at least two points", file=rf, row=i + 1, field="points")
        road_by_id[rid] = rd
        lanes_of[rid] = len(lanes)

    nodes, tll_logics, tll_cons, cons = [], [], [], []
    links_at: dict[tuple[str, str], str] = {}  # (from road, to road) -> intersection
    n_mov = n_sig = 0
    for iid, it in inter_by_id.items():
        pt = _req(it, "point", file=rf, where=f"intersection {iid!r}", kind=dict)
        x = _num(pt.get("x"), file=rf, where=f"intersection {iid!r}", key="point.x")
        y = _num(pt.get("y"), file=rf, where=f"intersection {iid!r}", key="point.y")
        road_links = it.get("roadLinks") or []
        tl = it.get("trafficLight") or {}
        phases = tl.get("lightphases") or [] if isinstance(tl, dict) else []
        signal = bool(phases) and not it.get("virtual", False) and bool(road_links)
        idx = 0
        link_indices: list[list[int]] = []
        left: list[bool] = []
        for k, rl in enumerate(road_links):
            where = f"intersection {iid!r}, road link {k}"
            a = str(_req(rl, "startRoad", file=rf, where=where))
            b = str(_req(rl, "endRoad", file=rf, where=where))
            for key, r in (("startRoad", a), ("endRoad", b)):
                if r not in road_by_id:
                    raise InputError(f"{where} names road {r!r}, which does not exist", file=rf, field=key)
            if road_by_id[a]["endIntersection"] != iid or road_by_id[b]["startIntersection"] != iid:
                raise InputError(f"{where}: road {a!r} -> {b!r} does not pass through intersection {iid!r}",
                                 file=rf, field="roadLinks")
            links_at[(a, b)] = iid
            mine = []
            for m, ll in enumerate(_req(rl, "laneLinks", file=rf, where=where, kind=list)):
                fl = int(_num(ll.get("startLaneIndex"), file=rf, where=f"{where}, lane link {m}",
                              key="startLaneIndex"))
                tlane = int(_num(ll.get("endLaneIndex"), file=rf, where=f"{where}, lane link {m}",
                                 key="endLaneIndex"))
                if not 0 <= fl < lanes_of[a] or not 0 <= tlane < lanes_of[b]:
                    raise InputError(f"{where}, lane link {m}: lane {fl} -> {tlane} outside roads {a!r} "
                                     f"({lanes_of[a]} lanes) / {b!r} ({lanes_of[b]} lanes)", file=rf,
                                     field="laneLinks")
                attrs = (f'from={quoteattr(a)} to={quoteattr(b)} fromLane="{lanes_of[a] - 1 - fl}" '
                         f'toLane="{lanes_of[b] - 1 - tlane}"')
                cons.append(f"    <connection {attrs}/>")
                if signal:
                    tll_cons.append(f'    <connection {attrs} tl={quoteattr(iid)} linkIndex="{idx}"/>')
                mine.append(idx)
                idx += 1
                n_mov += 1
            link_indices.append(mine)
            left.append(rl.get("type") == "turn_left")
        nodes.append(f'    <node id={quoteattr(iid)} x="{x!r}" y="{y!r}" '
                     f'type="{"traffic_light" if signal else "priority"}"/>')
        if signal:
            n_sig += 1
            tll_logics.append(_tl_logic(iid, phases, link_indices, left, idx, rf))

    edges = []
    for rid, rd in road_by_id.items():
        lanes = rd["lanes"]
        speeds = [_num(ln.get("maxSpeed"), file=rf, where=f"road {rid!r}", key="lanes.maxSpeed") for ln in lanes]
        shape = " ".join(f"{_num(p.get('x'), file=rf, where=f'road {rid!r}', key='points.x')!r},"
                         f"{_num(p.get('y'), file=rf, where=f'road {rid!r}', key='points.y')!r}" for p in rd["points"])
        lane_xml = "".join(
            f'\n        <lane index="{len(lanes) - 1 - j}" speed="{speeds[j]!r}"'
            + (f' width="{float(ln["width"])!r}"' if isinstance(ln.get("width"), int | float) else "") + "/>"
            for j, ln in enumerate(lanes))
        edges.append(f'    <edge id={quoteattr(rid)} from={quoteattr(str(rd["startIntersection"]))} '
                     f'to={quoteattr(str(rd["endIntersection"]))} numLanes="{len(lanes)}" '
                     f'speed="{max(speeds)!r}" shape="{shape}">{lane_xml}\n    </edge>')

    routes_xml, n_veh = _vehicles(flows, road_by_id, links_at, ff, horizon)
    counts = NetworkCounts(intersections=len(inter_by_id), roads=len(road_by_id), lanes=sum(lanes_of.values()),
                           movements=n_mov, signals=n_sig)
    return CityFlowNetwork(
        nodes_xml="<nodes>\n" + "\n".join(nodes) + "\n</nodes>\n",
        edges_xml="<edges>\n" + "\n".join(edges) + "\n</edges>\n",
        connections_xml="<connections>\n" + "\n".join(cons) + "\n</connections>\n",
        tll_xml="<tlLogics>\n" + "\n".join(tll_logics + tll_cons) + "\n</tlLogics>\n",
        routes_xml=routes_xml, counts=counts, vehicles=n_veh)


def _tl_logic(iid: str, phases: list[Any], link_indices: list[list[int]], left: list[bool], n_links: int,
              rf: str) -> str:
    out = [f'    <tlLogic id={quoteattr(iid)} type="static" programID="0" offset="0">']
    for p, ph in enumerate(phases):
        where = f"intersection {iid!r}, phase {p}"
        dur = _num(ph.get("time") if isinstance(ph, dict) else None, file=rf, where=where, key="time")
        if dur <= 0:
            raise InputError(f"{where}: duration {dur!r} s must be positive", file=rf, field="time")
        state = ["r"] * n_links
        for k in ph.get("availableRoadLinks") or []:
            if not isinstance(k, int) or not 0 <= k < len(link_indices):
                raise InputError(f"{where}: available road link {k!r} does not exist (the intersection has "
                                 f"{len(link_indices)} road links)", file=rf, field="availableRoadLinks")
            for li in link_indices[k]:
                state[li] = "g" if left[k] else "G"
        out.append(f'        <phase duration="{dur!r}" state="{"".join(state)}"/>')
    out.append("    </tlLogic>")
    return "\n".join(out)


def _vehicles(flows: list[Any], road_by_id: dict[str, Any], links_at: dict[tuple[str, str], str], ff: str,
              horizon: float) -> tuple[str, int]:
    if not isinstance(flows, list):
        raise InputError("the flow file must be a JSON list of flows", file=ff)
    vtypes: dict[tuple[float, ...], str] = {}
    vehicles: list[tuple[float, int, str]] = []
    for i, fl in enumerate(flows):
        where = f"flow {i}"
        route = _req(fl, "route", file=ff, where=where, kind=list)
        if not route:
            raise InputError(f"{where} has an empty route", file=ff, row=i + 1, field="route")
        route = [str(r) for r in route]
        for r in route:
            if r not in road_by_id:
                raise InputError(f"{where}: route names road {r!r}, which does not exist", file=ff, row=i + 1,
                                 field="route")
        for a, b in itertools.pairwise(route):
            if (a, b) not in links_at:
                at = road_by_id[a]["endIntersection"]
                raise InputError(f"{where}: route does not connect: no road link from road {a!r} to road {b!r} "
                                 f"at intersection {at!r}", file=ff, row=i + 1, field="route")
        veh = _req(fl, "vehicle", file=ff, where=where, kind=dict)
        keys = ("length", "width", "minGap", "maxSpeed", "maxPosAcc", "usualNegAcc", "maxNegAcc", "headwayTime")
        defaults = {"length": 5.0, "width": 2.0, "minGap": 2.5, "maxSpeed": 16.67, "maxPosAcc": 2.0,
                    "usualNegAcc": 4.5, "maxNegAcc": 4.5, "headwayTime": 1.5}
        vals = tuple(_num(veh.get(k, defaults[k]), file=ff, where=where, key=f"vehicle.{k}") for k in keys)
        vt = vtypes.setdefault(vals, f"cf{len(vtypes)}")
        start = _num(fl.get("startTime", 0), file=ff, where=where, key="startTime")
        end = _num(fl.get("endTime", -1), file=ff, where=where, key="endTime")
        interval = _num(_req(fl, "interval", file=ff, where=where), file=ff, where=where, key="interval")
        if interval <= 0:
            raise InputError(f"{where}: interval {interval!r} must be positive", file=ff, row=i + 1,
                             field="interval")
        if end < 0:
            end = horizon
        k = 0
        edges = " ".join(route)
        while start + k * interval <= end + 1e-9:
            t = start + k * interval
            vehicles.append((t, len(vehicles), f'    <vehicle id="flow_{i}_{k}" type="{vt}" depart="{t!r}" '
                                               f'departLane="best" departSpeed="max">\n'
                                               f'        <route edges={quoteattr(edges)}/>\n    </vehicle>'))
            k += 1
    types = []
    for vals, vid in vtypes.items():
        length, width, min_gap, vmax, acc, dec, edec, tau = vals
        types.append(f'    <vType id="{vid}" length="{length!r}" width="{width!r}" minGap="{min_gap!r}" '
                     f'maxSpeed="{vmax!r}" accel="{acc!r}" decel="{dec!r}" emergencyDecel="{max(edec, dec)!r}" '
                     f'tau="{tau!r}"/>')
    vehicles.sort(key=lambda v: (v[0], v[1]))
    body = "\n".join(types + [v[2] for v in vehicles])
    return f"<routes>\n{body}\n</routes>\n", len(vehicles)
