"""A finished simulation run published into the twin as a named scenario (F5), apart from live data.

:func:`publish` turns a run folder (:func:`citytwin.workflows.simulation.run`: ``summary.json`` and
``edges_intervals.csv``) into ``TrafficFlowObserved`` entities, one per edge of the network, with one
observation per interval of simulated time (``intensity``: vehicles that entered the edge,
``averageVehicleSpeed``, ``occupancy``; a speed without vehicles is missing, not 0; static: the edge's shape
as a GeoJSON LineString and the run's mean speed and CO2 on it, :func:`edge_static`, :func:`run_edge_static`),
and, for a run with
detectors, one such entity per induction loop (vehicles that passed it), stored in the
scenario's own twin stores ``WORKSPACE/twin/scenarios/NAME/`` (history, state, dead letters): never in the
live stores, so live queries, live history and the live alert rules never see them. Entity ids carry the
scenario too: ``urn:ngsi-ld:TrafficFlowObserved:scenario:NAME:edge:EDGE`` (the edge id percent-encoded).
The twin API reads a scenario with ``?scenario=NAME`` (:func:`open_scenario_state`).

Observation times are ``start`` + the simulated time at the end of each interval; by default ``start`` is
chosen so that the last interval ends at the time of publishing (the clock is a parameter).
Publishing a name again replaces that scenario as a whole (built beside it, then swapped in). A run can also
publish while it runs: :mod:`citytwin.workflows.simulation_live`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from citytwin.foundation.errors import InputError, NotFoundError
from citytwin.foundation.timeseries import StateStore
from citytwin.workflows.common import WorkspaceLike, open_ws
from citytwin.workflows.simulation_detectors import detector_places

SCENARIOS = "scenarios"
META = "scenario.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ENTITY_TYPE = "TrafficFlowObserved"


def check_name(name: str) -> str:
    """A scenario name: letters, digits, ``-`` and ``_``, at most 64 characters, not starting with ``-``/``_``.

    Examples
    --------
    >>> check_name("closure-B1C1")
    'closure-B1C1'
    """
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InputError(f"scenario name {name!r} is not allowed", field="scenario",
                         hint="letters, digits, '-' and '_' (at most 64, starting with a letter or digit)")
    return name


def scenario_root(twin_root: Path, name: str) -> Path:
    """The stores of scenario ``name`` under a twin folder."""
    return Path(twin_root) / SCENARIOS / check_name(name)


def edge_entity_id(name: str, edge: str) -> str:
    """The id of an edge's entity in scenario ``name``.

    Examples
    --------
    >>> edge_entity_id("base", "-12#3")
    'urn:ngsi-ld:TrafficFlowObserved:scenario:base:edge:-12%233'
    """
    return f"urn:ngsi-ld:{ENTITY_TYPE}:scenario:{name}:edge:{quote(edge, safe='-_.')}"


def list_scenarios(twin_root: Path) -> list[dict[str, Any]]:
    """The published scenarios of a twin folder, with what :func:`publish` (or a live run,
    :mod:`citytwin.workflows.simulation_live`) recorded about each; ``status`` is ``running``, ``complete``
    or ``failed`` (a ``running`` scenario whose publishing process is gone is reported ``failed``)."""
    root = Path(twin_root) / SCENARIOS
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.is_dir() and _NAME.fullmatch(d.name) and (d / META).is_file():
            meta = json.loads((d / META).read_text(encoding="utf-8"))
            meta.setdefault("status", "complete")  # published before statuses were recorded
            if meta["status"] == "running" and not process_alive(meta):
                meta.update(status="failed", error="the publishing process ended without finishing the run")
            out.append(meta)
    return out


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """``scenario.json`` replaced in one step (the API may read it at any time)."""
    tmp = folder / f".{META}.{os.getpid()}"
    tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, folder / META)


def process_alive(meta: dict[str, Any]) -> bool:
    """Whether the process that writes a ``running`` scenario still runs (assumed so on another host)."""
    pid, host = meta.get("pid"), meta.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_STATES: dict[tuple[str, int], StateStore] = {}


def open_scenario_state(twin_root: Path, name: str) -> StateStore:
    """The live-state store of a published scenario (read by the twin API's ``?scenario=NAME``).

    Raises
    ------
    NotFoundError
        When no scenario of that name was published.
    """
    path = scenario_root(twin_root, name) / "state.sqlite"
    try:
        key = (str(path), path.stat().st_ino)  # a republished scenario is a new file
    except FileNotFoundError:
        raise NotFoundError(f"no simulation scenario {name!r} was published in this twin",
                            hint="citytwin sim publish RUN_DIR --scenario NAME") from None
    store = _STATES.get(key)
    if store is None:
        store = _STATES[key] = StateStore(path)
    return store


def _edge_locations(net_file: Path) -> dict[str, tuple[float | None, float | None, int, dict[str, Any] | None]]:
    """Edge -> (lon, lat of its midpoint, lanes, its shape as a GeoJSON LineString in WGS84); positions and
    shape are None when the network has no geographic reference."""
    import sumolib

    net = sumolib.net.readNet(str(net_file))
    geo = net.hasGeoProj()
    out: dict[str, tuple[float | None, float | None, int, dict[str, Any] | None]] = {}
    for e in net.getEdges():
        if e.getFunction() == "internal":
            continue
        lon = lat = None
        shape = None
        if geo:
            x, y = sumolib.geomhelper.positionAtShapeOffset(e.getShape(), e.getLength() / 2.0)
            lon, lat = net.convertXY2LonLat(x, y)
            coords = [[round(c, 7) for c in net.convertXY2LonLat(px, py)] for px, py in e.getShape()]
            shape = {"type": "LineString", "coordinates": coords}
        out[e.getID()] = (lon, lat, e.getLaneNumber(), shape)
    return out


def edge_static(name: str, edge: str, lanes: int, shape: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """The static attributes of an edge's entity: ``name``, ``refRoadSegment``, ``laneCount``, ``scenario``,
    ``source`` and, on a geo-referenced network, ``shape`` (the edge's SUMO shape as a GeoJSON LineString in
    WGS84: the entity's ``location`` is its midpoint)."""
    out: dict[str, Any] = {"name": edge, "refRoadSegment": edge, "laneCount": lanes, "scenario": name,
                           "source": source}
    if shape is not None:
        out["shape"] = shape
    return out


def run_edge_static(run_dir: Path) -> dict[str, dict[str, float | None]]:
    """Per edge, the run's results over the whole simulated time (``edges.csv``, mean over seeds) as static
    attributes: ``runMeanSpeedKmh`` (distance / sampled vehicle-seconds, km/h; missing without vehicles) and
    ``runCo2Kg`` (CO2 emitted on the edge, kg; missing for a run without emissions), so that two scenarios
    can be compared edge by edge."""
    path = Path(run_dir) / "edges.csv"
    if not path.is_file():
        return {}
    edges = pd.read_csv(path, dtype={"edge": str})

    def val(x: Any, scale: float) -> float | None:
        return None if pd.isna(x) else round(float(x) * scale, 6)

    co2 = edges["co2_kg"] if "co2_kg" in edges else pd.Series(float("nan"), index=edges.index)
    return {str(e): {"runMeanSpeedKmh": val(v, 3.6), "runCo2Kg": val(c, 1.0)}
            for e, v, c in zip(edges["edge"], edges["speed"], co2, strict=True) if not str(e).startswith(":")}


def detector_entity_id(name: str, detector: str) -> str:
    """The id of a detector's entity in scenario ``name``.

    Examples
    --------
    >>> detector_entity_id("base", "e1_B1C1_0")
    'urn:ngsi-ld:TrafficFlowObserved:scenario:base:detector:e1_B1C1_0'
    """
    return f"urn:ngsi-ld:{ENTITY_TYPE}:scenario:{name}:detector:{quote(detector, safe='-_.')}"


def _docs(frame: pd.DataFrame, key: str, entity: Callable[[str], str | None], start_us: int) -> list[dict[str, Any]]:
    """Entity updates (the twin's message format) of per-interval rows ``key, end, entered, speed, occupancy``;
    a missing value stays missing."""
    from citytwin.twin.entities import format_time_us

    def val(x: float) -> float | None:
        return None if math.isnan(x) else x

    docs = []
    cols = [frame[c].astype(float).tolist() for c in ("end", "entered", "speed", "occupancy")]
    for k, end, entered, speed, occ in zip(frame[key].astype(str).tolist(), *cols, strict=True):
        eid = entity(k)
        if eid is None:
            continue
        docs.append({"id": eid, "type": ENTITY_TYPE, "observedAt": format_time_us(start_us + int(end * 1e6)),
                     "intensity": val(entered), "averageVehicleSpeed": {"value": val(speed), "unit": "m/s"},
                     "occupancy": val(occ)})
    return docs


def publish(run_dir: Path, workspace: WorkspaceLike | None, name: str, *, start: str | None = None,
            now_us: Callable[[], int] | None = None) -> dict[str, Any]:
    """Publish a finished run's edges as twin entities of scenario ``name`` (see the module docstring).

    Parameters
    ----------
    run_dir
        A run folder of ``citytwin sim run`` / ``sim signals``.
    start
        ISO 8601 time of simulated time ``begin`` (default: so that the run's last interval ends now).
    now_us
        Clock (µs since the epoch).
    """
    from citytwin.foundation.timeseries import Ingestor, TwinStores
    from citytwin.twin.entities import EntityRef, MessageParser, format_time_us, parse_time_us
    from citytwin.workflows.simulation import _read_json

    check_name(name)
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json", "summary.json (is this a run folder?)")
    iv_file = run_dir / "edges_intervals.csv"
    if not iv_file.is_file():
        raise InputError("the run folder has no edges_intervals.csv", file=str(run_dir),
                         hint="rerun it with this version of `citytwin sim run`")
    iv = pd.read_csv(iv_file, dtype={"edge": str})
    iv = iv[~iv["edge"].str.startswith(":")]
    net = Path(str(summary.get("net", "")))
    if not net.is_file():
        raise InputError("the run's network file is gone", file=str(net), field="net",
                         hint="publish from the folder the run was made from")
    locations = _edge_locations(net)
    det_file = run_dir / "detectors_intervals.csv"
    det_iv = pd.read_csv(det_file, dtype={"detector": str}) if det_file.is_file() else pd.DataFrame(
        columns=["end", "detector", "entered", "speed", "occupancy"])
    places = detector_places(net) if len(det_iv) else {}
    clock = now_us or (lambda: time.time_ns() // 1000)
    now = clock()
    if start is None:
        start_us = now - int(float(iv["end"].max() if len(iv) else 0.0) * 1e6)
    else:
        try:
            start_us = parse_time_us(start)
        except ValueError as exc:
            raise InputError(f"--start {start!r}: {exc}", field="--start") from None
    root = open_ws(workspace).root / "twin"  # as workflows.twin.twin_root (not imported: service imports us)
    final = scenario_root(root, name)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
    try:
        stores = TwinStores.open(tmp)
        try:
            source = f"citytwin simulation {run_dir.resolve()}"
            results = run_edge_static(run_dir)
            for edge, (lon, lat, lanes, shape) in locations.items():
                stores.state.put_entity(edge_entity_id(name, edge), ENTITY_TYPE, lon, lat,
                                        {**edge_static(name, edge, lanes, shape, source), **results.get(edge, {})})
            for det, (lane, edge, index, lon, lat) in places.items():
                stores.state.put_entity(detector_entity_id(name, det), ENTITY_TYPE, lon, lat,
                                        {"name": det, "refRoadSegment": edge, "laneId": index, "scenario": name,
                                         "source": source, "description": f"induction loop on lane {lane}"})

            def lookup(eid: str) -> EntityRef | None:
                r = stores.state.lookup(eid)
                return EntityRef(*r) if r is not None else None

            parser = MessageParser(lookup, now_us=lambda: now)
            docs = _docs(iv, "edge", lambda e: edge_entity_id(name, e) if e in locations else None, start_us)
            docs += _docs(det_iv, "detector", lambda d: detector_entity_id(name, d) if d in places else None,
                          start_us)
            msgs = [(None, json.dumps(docs[i:i + 1000]).encode()) for i in range(0, len(docs), 1000)]  # < 1 MiB
            rep = Ingestor(stores, parser).ingest(msgs, source="simulation")
            if rep.rejected:
                dl = stores.deadletters.frame(limit=1)
                detail = str(dl["detail"].iloc[0]) if len(dl) else ""
                raise InputError(f"{rep.rejected} observations of the run were refused by the twin: {detail}",
                                 file=str(iv_file), hint="is --start in the future, or more than 30 years ago?")
        finally:
            stores.close()
        meta = {"scenario": name, "status": "complete", "run": str(run_dir.resolve()), "net": str(net), "control": summary.get("control"),
                "seeds": summary.get("seeds"), "entities": len(locations) + len(places),
                "edges": len(locations), "detectors": len(places), "observations": rep.accepted,
                "start": format_time_us(start_us), "published": format_time_us(now),
                "interval_s": summary.get("interval_s"), "simulated_s": float(iv["end"].max()) if len(iv) else None,
                "metrics": {k: summary.get(k) for k in ("mean_travel_time_s", "mean_delay_s", "vehicles_inserted",
                                                        "vehicles_arrived", "co2_kg")}}
        (tmp / META).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        old = None
        if final.exists():
            old = final.parent / f".{name}.old.{time.time_ns()}"
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {**meta, "stores": str(final)}
