"""Induction-loop detectors of a simulation run (F5): SUMO E1 detectors on every lane that enters a signalised
junction, 5 m before the stop line (``run(detectors=True)``, ``citytwin sim run --detectors``), read into
``detectors_intervals.csv`` and published into the twin like real traffic detectors
(:mod:`citytwin.workflows.simulation_twin`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pandas as pd

#: metres between a detector and the stop line (or the lane's start, on a lane shorter than that)
SETBACK_M = 5.0
COLUMNS = ["begin", "end", "detector", "lane", "entered", "flow_veh_h", "occupancy", "speed"]


def detector_id(lane: str) -> str:
    """The id of the detector on ``lane``.

    Examples
    --------
    >>> detector_id("B1C1_0")
    'e1_B1C1_0'
    """
    return f"e1_{lane}"


def _lanes(net_file: Path) -> dict[str, float]:
    """Lanes entering a signal (in link order of first appearance) -> their length (m)."""
    root = ET.parse(net_file).getroot()
    length = {ln.get("id", ""): float(ln.get("length", 0)) for e in root.iter("edge") for ln in e.iter("lane")}
    lanes: dict[str, float] = {}
    for c in root.iter("connection"):
        if c.get("tl") is not None:
            lane = f"{c.get('from')}_{c.get('fromLane')}"
            lanes.setdefault(lane, length.get(lane, 0.0))
    return lanes


def detectors_xml(net_file: Path, interval: float) -> str:
    """Additional-file lines of one E1 detector per lane entering a signal, writing ``detectors.xml`` every
    ``interval`` s (beside the additional file)."""
    return "".join(
        f"    <inductionLoop id={quoteattr(detector_id(lane))} lane={quoteattr(lane)} "
        f'pos="{max(length - SETBACK_M, 0.0)!r}" period="{interval!r}" file="detectors.xml"/>\n'
        for lane, length in _lanes(net_file).items())


def read_detectors(work: Path) -> pd.DataFrame:
    """``detectors.xml`` of one run as :data:`COLUMNS`: vehicles that passed (``entered``), flow, occupancy
    0-1, mean speed (m/s; missing, not SUMO's -1, when no vehicle passed)."""
    return detector_intervals(ET.parse(work / "detectors.xml").getroot())


def detector_intervals(root: ET.Element) -> pd.DataFrame:
    """The ``<interval>`` elements of a detector output (whole, or the part written so far) as :data:`COLUMNS`."""
    rows: list[dict[str, Any]] = []
    for iv in root.iter("interval"):
        det = iv.get("id", "")
        speed = float(iv.get("speed", "-1"))
        rows.append({"begin": float(iv.get("begin", "nan")), "end": float(iv.get("end", "nan")), "detector": det,
                     "lane": det.removeprefix("e1_"), "entered": float(iv.get("nVehContrib", "nan")),
                     "flow_veh_h": float(iv.get("flow", "nan")),
                     "occupancy": float(iv.get("occupancy", "nan")) / 100.0,
                     "speed": speed if speed >= 0 else float("nan")})
    return pd.DataFrame(rows, columns=COLUMNS)


EDGE_COLUMNS = ["begin", "end", "edge", "entered", "departed", "speed", "sampledSeconds", "occupancy"]


def edge_intervals(root: ET.Element) -> pd.DataFrame:
    """The intervals of SUMO edge data (whole, or the part written so far) as :data:`EDGE_COLUMNS`, per edge
    (junctions' internal edges included): vehicles entered and departed, mean speed (m/s), sampled
    vehicle-seconds, occupancy 0-1 (SUMO writes percent)."""
    cols = EDGE_COLUMNS[3:]
    rows = []
    for iv in root.iter("interval"):
        b, e_ = float(iv.get("begin", "nan")), float(iv.get("end", "nan"))
        for e in iv.iter("edge"):
            rows.append({"begin": b, "end": e_, "edge": e.get("id"), **{c: float(e.get(c, "nan")) for c in cols}})
    per_iv = pd.DataFrame(rows, columns=EDGE_COLUMNS)
    per_iv["occupancy"] = per_iv["occupancy"] / 100.0
    return per_iv


def detector_places(net_file: Path) -> dict[str, tuple[str, str, int, float | None, float | None]]:
    """Detector id -> (lane, edge, lane index, lon, lat of the detector; None without a geographic reference)."""
    import sumolib

    net = sumolib.net.readNet(str(net_file))
    geo = net.hasGeoProj()
    out: dict[str, tuple[str, str, int, float | None, float | None]] = {}
    for lane, length in _lanes(net_file).items():
        ln = net.getLane(lane)
        lon = lat = None
        if geo:
            x, y = sumolib.geomhelper.positionAtShapeOffset(ln.getShape(), max(length - SETBACK_M, 0.0))
            lon, lat = net.convertXY2LonLat(x, y)
        out[detector_id(lane)] = (lane, ln.getEdge().getID(), ln.getIndex(), lon, lat)
    return out
