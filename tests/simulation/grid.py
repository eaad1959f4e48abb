"""A 3 x 3 netgenerate grid (junctions A0..C2, fringe nodes left0.., right0.., bottom0.., top0..) with
heavy east-west and light north-south demand, given as trips (SUMO routes them on the network it runs)."""

from __future__ import annotations

from pathlib import Path

from citytwin.simulation.demand import Trip
from citytwin.workflows import simulation as sim


def ew_trips(per_row: int = 100, headway: float = 6.0, ns: int = 15) -> list[Trip]:
    trips = []
    for j in range(3):
        for k in range(per_row):  # 600 veh/h each way on each row over 600 s
            trips.append(Trip(f"we{j}_{k}", k * headway, f"left{j}A{j}", f"C{j}right{j}"))
            trips.append(Trip(f"ew{j}_{k}", k * headway + 3, f"right{j}C{j}", f"A{j}left{j}"))
        col = "ABC"[j]
        for k in range(ns):
            trips.append(Trip(f"sn{j}_{k}", k * 40.0, f"bottom{j}{col}0", f"{col}2top{j}"))
    return trips


def build(folder: Path, trips: list[Trip] | None = None) -> Path:
    sim.grid_scenario(folder, trips=ew_trips() if trips is None else trips)
    return folder
