"""A small CityFlow scenario written from the public format (CityFlow docs, "Roadnet File" and "Flow
File"): one signalised intersection with four arms (two lanes each way) and four virtual boundary
intersections; lane 0 is the inner lane (left and straight), lane 1 the outer (straight and right)."""

from __future__ import annotations

from typing import Any

ARM = {"E": (300.0, 0.0), "N": (0.0, 300.0), "W": (-300.0, 0.0), "S": (0.0, -300.0)}
# heading of traffic entering the centre from each arm, and the arms reached by straight/left/right
TURNS = {"E": {"go_straight": "W", "turn_left": "S", "turn_right": "N"},
         "N": {"go_straight": "S", "turn_left": "E", "turn_right": "W"},
         "W": {"go_straight": "E", "turn_left": "N", "turn_right": "S"},
         "S": {"go_straight": "N", "turn_left": "W", "turn_right": "E"}}


def _lanes() -> list[dict[str, float]]:
    return [{"width": 3.2, "maxSpeed": 13.89}, {"width": 3.2, "maxSpeed": 13.89}]


def roadnet() -> dict[str, Any]:
    inters: list[dict[str, Any]] = []
    roads: list[dict[str, Any]] = []
    for arm, (x, y) in ARM.items():
        roads.append({"id": f"in_{arm}", "startIntersection": f"b_{arm}", "endIntersection": "c",
                      "points": [{"x": x, "y": y}, {"x": 0.0, "y": 0.0}], "lanes": _lanes()})
        roads.append({"id": f"out_{arm}", "startIntersection": "c", "endIntersection": f"b_{arm}",
                      "points": [{"x": 0.0, "y": 0.0}, {"x": x, "y": y}], "lanes": _lanes()})
        inters.append({"id": f"b_{arm}", "point": {"x": x, "y": y}, "width": 0, "virtual": True,
                       "roads": [f"in_{arm}", f"out_{arm}"], "roadLinks": [],
                       "trafficLight": {"roadLinkIndices": [], "lightphases": []}})
    links = []
    for arm in ARM:
        for kind, to in TURNS[arm].items():
            lane = {"turn_left": [(0, 0)], "go_straight": [(0, 0), (1, 1)], "turn_right": [(1, 1)]}[kind]
            links.append({"type": kind, "startRoad": f"in_{arm}", "endRoad": f"out_{to}", "direction": 0,
                          "laneLinks": [{"startLaneIndex": a, "endLaneIndex": b, "points": []} for a, b in lane]})
    right = [i for i, lk in enumerate(links) if lk["type"] == "turn_right"]

    def serve(arms: str) -> list[int]:
        return sorted({i for i, lk in enumerate(links) if lk["startRoad"][-1] in arms} | set(right))

    phases = [{"time": 30, "availableRoadLinks": serve("EW")}, {"time": 5, "availableRoadLinks": right},
              {"time": 30, "availableRoadLinks": serve("NS")}, {"time": 5, "availableRoadLinks": right}]
    inters.append({"id": "c", "point": {"x": 0.0, "y": 0.0}, "width": 10, "virtual": False,
                   "roads": [r["id"] for r in roads], "roadLinks": links,
                   "trafficLight": {"roadLinkIndices": list(range(len(links))), "lightphases": phases}})
    return {"intersections": inters, "roads": roads}


VEHICLE = {"length": 5.0, "width": 2.0, "maxPosAcc": 2.0, "maxNegAcc": 4.5, "usualPosAcc": 2.0,
           "usualNegAcc": 4.5, "minGap": 2.5, "maxSpeed": 11.111, "headwayTime": 2}


def flows() -> list[dict[str, Any]]:
    out = []
    for arm in ARM:
        for kind, to in TURNS[arm].items():
            out.append({"vehicle": dict(VEHICLE), "route": [f"in_{arm}", f"out_{to}"],
                        "interval": 20.0 if kind == "go_straight" else 60.0, "startTime": 0, "endTime": 300})
    return out
