"""A finished run published into the twin as a named scenario (real SUMO run, real twin stores and HTTP API):
its edges become entities with one observation per interval, read through the API with ``?scenario=NAME``;
live queries, live history and live alert rules never see them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import served
from tests.simulation import grid
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.timeseries import HistoryStore
from citytwin.foundation.workspace import Workspace
from citytwin.service.app import create_app
from citytwin.simulation.demand import Trip
from citytwin.twin.rules import ThresholdRule
from citytwin.workflows import simulation_twin as st

runner = CliRunner()
START = "2025-03-01T08:00:00Z"
LIVE = "urn:ngsi-ld:TrafficFlowObserved:live-loop-1"


@pytest.fixture()
def ws(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws", owner="admin")


def test_published_scenario_is_read_apart_from_live_data(ws: Workspace, tmp_path: Path) -> None:
    trips = [Trip(f"t{k}", k * 6.0, "left1A1", "C1right1") for k in range(60)]
    base = grid.build(tmp_path / "base", trips)
    token = ws.catalog.issue_token("admin", label="test")[1]
    rule = ThresholdRule(name="busy", property="intensity", op=">", threshold=0.0, step="1min")
    with served(create_app(ws.root / "twin", workspace=ws, auto_alerts=True, rules=[rule]),
               headers={"Authorization": f"Bearer {token}"}) as c:
        # live: one detector with one reading, which the live rule turns into an alert
        r = c.post("/ngsi-ld/v1/entities", json={"id": LIVE, "type": "TrafficFlowObserved",
                                                 "location": {"type": "Point", "coordinates": [24.94, 60.17]},
                                                 "intensity": {"value": 12, "observedAt": START}})
        assert r.status_code == 201, r.text
        alerts_before = c.get("/twin/v1/alerts").json()
        assert len(alerts_before) == 1

        res = runner.invoke(app, ["sim", "run", str(base), "--seeds", "1", "--interval", "60", "--detectors", "--out",
                                  str(tmp_path / "run"), "--publish", "base", "-w", str(ws.root), "--json"])
        assert res.exit_code == 0, res.output
        pub = json.loads(res.stdout)["published"]
        iv = pd.read_csv(tmp_path / "run" / "edges_intervals.csv")
        det = pd.read_csv(tmp_path / "run" / "detectors_intervals.csv")
        # 3 x 3 grid: 48 edges; 36 one-lane roads into the 9 signals, one loop on each
        assert pub["edges"] == 48 and pub["detectors"] == 36 == det["detector"].nunique()
        assert pub["observations"] == 3 * (len(iv) + len(det))
        res = runner.invoke(app, ["sim", "publish", str(tmp_path / "run"), "--scenario", "base", "--start", START,
                                  "-w", str(ws.root), "--json"])  # published again: replaced as a whole
        assert res.exit_code == 0, res.output

        # live queries: only the live entity, its one reading, still one alert
        live = c.get("/ngsi-ld/v1/entities", params={"type": "TrafficFlowObserved"}).json()
        assert [e["id"] for e in live] == [LIVE]
        assert c.get("/twin/v1/history", params={"property": "intensity"}).json()["rows"] == 1
        assert c.get("/twin/v1/alerts").json() == alerts_before

        # the scenario: every edge, its latest interval, in canonical units
        sc = c.get("/ngsi-ld/v1/entities", params={"scenario": "base", "limit": 1000,
                                                   "options": "keyValues"}).json()
        assert len(sc) == 48 + 36 and all(e["scenario"] == "base" for e in sc)
        # the loop 5 m before C1 on B1C1 counts every vehicle that entered B1C1 (all of them drive on to C1)
        loop = st.detector_entity_id("base", "e1_B1C1_0")
        hd = HistoryStore(st.scenario_root(ws.root / "twin", "base") / "history").query(entities=[loop])
        assert hd.loc[hd["property"] == "intensity", "value"].sum() == iv.loc[iv["edge"] == "B1C1", "entered"].sum() > 40
        assert c.get(f"/ngsi-ld/v1/entities/{loop}", params={"scenario": "base"}).json()["laneId"]["value"] == 0
        eid = st.edge_entity_id("base", "B1C1")
        e = c.get(f"/ngsi-ld/v1/entities/{eid}", params={"scenario": "base"}).json()
        last = iv[iv["edge"] == "B1C1"].sort_values("end").iloc[-1]
        assert e["intensity"]["value"] == last["entered"]
        assert e["intensity"]["observedAt"] == (pd.Timestamp(START) + pd.Timedelta(seconds=last["end"])
                                                ).strftime("%Y-%m-%dT%H:%M:%SZ")
        busy = iv[(iv["edge"] == "B1C1") & (iv["entered"] > 0)].iloc[0]
        # the scenario's history is its own store: its intervals, summed, are the run's vehicles on the edge
        h = HistoryStore(st.scenario_root(ws.root / "twin", "base") / "history").query(entities=[eid])
        assert h.loc[h["property"] == "intensity", "value"].sum() == iv.loc[iv["edge"] == "B1C1", "entered"].sum()
        speed = h[(h["property"] == "averageVehicleSpeed")].set_index("time")["value"]
        t_busy = pd.Timestamp(START) + pd.Timedelta(seconds=busy["end"])
        assert speed[t_busy] == pytest.approx(busy["speed"] * 3.6)  # m/s -> km/h
        assert c.get(f"/ngsi-ld/v1/entities/{eid}").status_code == 404  # not in the live state
        assert [s["scenario"] for s in c.get("/twin/v1/scenarios").json()] == ["base"]
        r = c.get("/ngsi-ld/v1/entities", params={"scenario": "nope"})
        assert r.status_code == 404 and "no simulation scenario 'nope'" in r.text


def test_publish_errors(ws: Workspace, tmp_path: Path) -> None:
    base = grid.build(tmp_path / "base", [Trip("t0", 0, "left1A1", "C1right1")])
    res = runner.invoke(app, ["sim", "run", str(base), "--seeds", "1", "--out", str(tmp_path / "r"), "--publish",
                              "../x", "-w", str(ws.root), "--json"])
    assert res.exit_code == 2 and "scenario name '../x' is not allowed" in json.loads(res.stdout)["error"]
    assert not (tmp_path / "r").exists()  # refused before the run
    res = runner.invoke(app, ["sim", "publish", str(base), "--scenario", "s", "-w", str(ws.root), "--json"])
    assert res.exit_code == 2 and "summary.json" in json.loads(res.stdout)["error"]
    runner.invoke(app, ["sim", "run", str(base), "--seeds", "1", "--out", str(tmp_path / "r")])
    res = runner.invoke(app, ["sim", "publish", str(tmp_path / "r"), "--scenario", "s", "--start",
                              "2999-01-01T00:00:00Z", "-w", str(ws.root), "--json"])
    assert res.exit_code == 2 and "refused by the twin" in json.loads(res.stdout)["error"]
    assert not (ws.root / "twin" / "scenarios" / "s").exists()
    assert [p.name for p in (ws.root / "twin" / "scenarios").iterdir()] == []  # nothing half-written


def test_published_edges_carry_their_shape_and_run_results(ws: Workspace, tmp_path: Path) -> None:
    """On a geo-referenced network every edge entity carries its SUMO shape as a WGS84 LineString (so the
    web view draws lines, not points) and the run's mean speed and CO2 on it (for edge-by-edge comparison)."""
    import pyproj
    import sumolib

    trips = [Trip(f"t{k}", k * 6.0, "left1A1", "C1right1") for k in range(40)]
    trips += [Trip(f"n{k}", k * 20.0, "bottom1B0", "B2top1") for k in range(10)]
    base = tmp_path / "base"
    from citytwin.workflows import simulation as sim

    sim.grid_scenario(base, trips=trips, origin=(24.94, 60.17))
    res = runner.invoke(app, ["sim", "run", str(base), "--seeds", "1", "--interval", "60", "--out",
                              str(tmp_path / "run"), "--publish", "geo", "--start", START, "-w", str(ws.root), "--json"])
    assert res.exit_code == 0, res.output
    token = ws.catalog.issue_token("admin", label="test")[1]
    with served(create_app(ws.root / "twin", workspace=ws), headers={"Authorization": f"Bearer {token}"}) as c:
        ents = c.get("/ngsi-ld/v1/entities", params={"scenario": "geo", "limit": 1000, "options": "keyValues"}).json()
        one = c.get(f"/ngsi-ld/v1/entities/{st.edge_entity_id('geo', 'B1C1')}", params={"scenario": "geo"}).json()
        listed = c.get("/twin/v1/scenarios").json()
    # the record says how far the run went (the web view's "simulated time up to")
    assert listed[0]["simulated_s"] == pd.read_csv(tmp_path / "run" / "edges_intervals.csv")["end"].max() > 0
    assert one["shape"]["type"] == "GeoProperty" and one["shape"]["value"]["type"] == "LineString"
    net = sumolib.net.readNet(str(base / "net.net.xml"))
    geod = pyproj.Geod(ellps="WGS84")
    edges = pd.read_csv(tmp_path / "run" / "edges.csv").set_index("edge")
    assert len(ents) == 48
    for e in ents:
        shape = e["shape"]
        assert shape["type"] == "LineString" and len(shape["coordinates"]) >= 2
        lons, lats = zip(*shape["coordinates"], strict=True)
        # the line is the edge: its geodesic length is SUMO's length of the edge (UTM scale < 0.1 %)
        assert geod.line_length(lons, lats) == pytest.approx(net.getEdge(e["name"]).getLength(), rel=1e-3)
        # and its midpoint is the entity's location
        mid = geod.npts(lons[0], lats[0], lons[-1], lats[-1], 1)[0] if len(lons) == 2 else None
        if mid is not None:
            assert e["location"]["coordinates"] == pytest.approx(list(mid), abs=1e-6)
        row = edges.loc[e["name"]]
        assert e["runMeanSpeedKmh"] == (None if pd.isna(row["speed"]) else pytest.approx(row["speed"] * 3.6))
        assert e["runCo2Kg"] == pytest.approx(row["co2_kg"], abs=1e-6)
    # the busy east-west row: vehicles on it, CO2 emitted on it
    b1c1 = next(e for e in ents if e["name"] == "B1C1")
    assert b1c1["runMeanSpeedKmh"] > 10 and b1c1["runCo2Kg"] > 0
