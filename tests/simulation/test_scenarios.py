"""Scenarios on a netgenerate grid with real SUMO runs: a closed road moves traffic to the parallel roads,
a development adds trips at the stated rate, emissions rise with vehicle-km, the comparison has intervals
over paired seeds and an HTML report; OD demand and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.simulation import grid
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.simulation import demand
from citytwin.simulation.demand import Trip

runner = CliRunner()


def _cli(*args: str) -> dict:
    res = runner.invoke(app, ["sim", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_closed_road_moves_traffic_to_the_parallel_road(tmp_path: Path) -> None:
    trips = [Trip(f"t{k}", k * 6.0, "left1A1", "C1right1") for k in range(60)]  # along the middle row
    base = grid.build(tmp_path / "base", trips)
    _cli("scenario", str(base), "--close", "B1C1", "--out", str(tmp_path / "closed"))
    _cli("run", str(base), "--seeds", "2", "--out", str(tmp_path / "run_base"))
    _cli("run", str(tmp_path / "closed"), "--seeds", "2", "--out", str(tmp_path / "run_closed"))
    eb = pd.read_csv(tmp_path / "run_base" / "edges.csv").set_index("edge")["entered"]
    ev = pd.read_csv(tmp_path / "run_closed" / "edges.csv").set_index("edge")["entered"]
    # SUMO routes trips on current travel times, so some base vehicles already avoid the queue on the
    # middle row; every one that used B1C1 in the base takes a parallel road in the variant
    assert eb["B1C1"] > 40
    assert "B1C1" not in ev.index  # the edge is gone from the variant's network
    parallel = ["B0C0", "B2C2"]
    assert ev.reindex(parallel).fillna(0).sum() == 60
    assert ev.reindex(parallel).fillna(0).sum() - eb.reindex(parallel).fillna(0).sum() == eb["B1C1"]
    s = json.loads((tmp_path / "run_closed" / "summary.json").read_text())
    assert s["vehicles_arrived"] == 60


def test_development_adds_trips_at_the_stated_rate_and_emissions_follow_vehicle_km(tmp_path: Path) -> None:
    base = grid.build(tmp_path / "base", grid.ew_trips(per_row=40, headway=15.0, ns=5))
    info = _cli("scenario", str(base), "--development", "A0B0:office:50000", "--out", str(tmp_path / "dev"))
    begin, end = 0.0, 39 * 15.0 + 3  # the base demand's departure window
    expected = round(50000 / 100 * demand.TRIP_RATES["office"] * (end - begin) / 3600)
    assert info["developments"][0]["trips"] == expected == 98
    _cli("run", str(base), "--seeds", "3", "--out", str(tmp_path / "rb"))
    _cli("run", str(tmp_path / "dev"), "--seeds", "3", "--out", str(tmp_path / "rv"))
    b = json.loads((tmp_path / "rb" / "summary.json").read_text())
    v = json.loads((tmp_path / "rv" / "summary.json").read_text())
    assert v["vehicles_inserted"] - b["vehicles_inserted"] == expected
    assert v["vehicle_km"] > b["vehicle_km"] and v["co2_kg"] > b["co2_kg"]
    # per edge, CO2 rises with vehicle-km (sampled vehicle-seconds x mean speed); not exactly in proportion:
    # vehicles queued at signals emit without moving (0.83 on this grid)
    e = pd.read_csv(tmp_path / "rv" / "edges.csv").dropna()
    vkm = e["sampledSeconds"] * e["speed"] / 1000
    assert np.corrcoef(vkm, e["co2_kg"])[0, 1] > 0.75
    assert np.polyfit(vkm, e["co2_kg"], 1)[0] > 0

    cmp = _cli("compare", str(tmp_path / "rb"), str(tmp_path / "rv"), "--out", str(tmp_path / "cmp"))
    d = {r["metric"]: r for r in cmp["differences"]}
    assert d["vehicles_inserted"]["diff"] == expected and d["vehicles_inserted"]["n_seeds"] == 3
    co2 = d["co2_kg"]
    assert co2["diff"] == pytest.approx(v["co2_kg"] - b["co2_kg"])
    assert co2["ci_low"] < co2["diff"] < co2["ci_high"] and co2["ci_low"] > 0
    runs_b = pd.read_csv(tmp_path / "rb" / "runs.csv")
    runs_v = pd.read_csv(tmp_path / "rv" / "runs.csv")
    paired = (runs_v["mean_travel_time_s"] - runs_b["mean_travel_time_s"]).to_numpy()
    from scipy import stats

    lo, hi = stats.t.interval(0.95, 2, loc=paired.mean(), scale=stats.sem(paired))
    assert d["mean_travel_time_s"]["ci_low"] == pytest.approx(lo)
    assert d["mean_travel_time_s"]["ci_high"] == pytest.approx(hi)
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert html.count("<img") == 2 and "co2_kg" in html


def test_od_matrix_and_unknown_zone(tmp_path: Path) -> None:
    base = grid.build(tmp_path / "base", [])
    (tmp_path / "zones.json").write_text(json.dumps({"west": ["left0A0", "left1A1"], "east": ["C0right0"]}))
    (tmp_path / "od.csv").write_text("origin,destination,trips\nwest,east,30\neast,west,0\n")
    info = _cli("od", str(base), str(tmp_path / "od.csv"), "--zones", str(tmp_path / "zones.json"),
                "--end", "600", "--out", str(tmp_path / "od"))
    assert info["trips"] == 30
    s = _cli("run", str(tmp_path / "od"), "--seeds", "1", "--out", str(tmp_path / "run"))
    assert s["vehicles_inserted"] == s["vehicles_arrived"] == 30
    (tmp_path / "bad.csv").write_text("origin,destination,trips\nwest,east,3\nwest,harbour,5\n")
    res = runner.invoke(app, ["sim", "od", str(base), str(tmp_path / "bad.csv"), "--zones",
                              str(tmp_path / "zones.json"), "--out", str(tmp_path / "bad"), "--json"])
    assert res.exit_code == 2
    err = json.loads(res.stdout)
    assert err["row"] == 2 and err["field"] == "destination" and "unknown zone harbour" in err["error"]
    assert not (tmp_path / "bad").exists()


def test_variant_errors_name_the_element(tmp_path: Path) -> None:
    base = grid.build(tmp_path / "base", [Trip("t0", 0, "left1A1", "B1C1")])
    res = runner.invoke(app, ["sim", "scenario", str(base), "--close", "B1C1", "--out", str(tmp_path / "v")])
    assert res.exit_code == 2 and "trip 't0' uses closed edge 'B1C1'" in res.output
    res = runner.invoke(app, ["sim", "scenario", str(base), "--narrow", "nope:1", "--out", str(tmp_path / "v")])
    assert res.exit_code == 2 and "edge 'nope' is not in the network" in res.output
    assert not (tmp_path / "v").exists()
    res = runner.invoke(app, ["sim", "run", str(tmp_path), "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 2 and "scenario.json" in json.loads(res.stdout)["error"]


def test_narrow_speed_add_lane_and_road_change_the_network(tmp_path: Path) -> None:
    import sumolib

    base = grid.build(tmp_path / "base", [])
    _cli("scenario", str(base), "--narrow", "A1B1:1", "--add-lane", "B1C1", "--speed", "A0B0:5",
         "--add-road", "A0:C2:2", "--out", str(tmp_path / "v"))
    net = sumolib.net.readNet(str(tmp_path / "v" / "net.net.xml"))
    assert net.getEdge("B1C1").getLaneNumber() == 2
    assert net.getEdge("A0B0").getSpeed() == 5
    assert net.getEdge("new_0_A0_C2").getLaneNumber() == 2
    assert net.getEdge("A1B1").getLaneNumber() == 1


def test_compare_needs_run_folders(tmp_path: Path) -> None:
    base = grid.build(tmp_path / "base", [])
    res = runner.invoke(app, ["sim", "compare", str(base), str(base), "--out", str(tmp_path / "c"), "--json"])
    assert res.exit_code == 2
    assert "not a run folder (no runs.csv)" in json.loads(res.stdout)["error"]
    assert not (tmp_path / "c").exists()


def test_counts_on_roads_are_reproduced(tmp_path: Path) -> None:
    base = grid.build(tmp_path / "base", [])
    (tmp_path / "counts.csv").write_text("edge,count\nA1B1,120\nB0B1,40\nC2C1,60\n")
    _cli("counts", str(base), str(tmp_path / "counts.csv"), "--end", "900", "--out", str(tmp_path / "sc"))
    _cli("run", str(tmp_path / "sc"), "--seeds", "1", "--out", str(tmp_path / "run"))
    e = pd.read_csv(tmp_path / "run" / "edges.csv").set_index("edge")
    # vehicles on an edge: those entering it plus those departing on it
    got = (e["entered"] + e["departed"]).reindex(["A1B1", "B0B1", "C2C1"]).tolist()
    assert got == [120, 40, 60]
    (tmp_path / "bad.csv").write_text("edge,count\nA1B1,5\nZ9,3\n")
    res = runner.invoke(app, ["sim", "counts", str(base), str(tmp_path / "bad.csv"), "--out", str(tmp_path / "b"),
                              "--json"])
    assert res.exit_code == 2
    err = json.loads(res.stdout)
    assert err["row"] == 2 and err["field"] == "edge" and "edge 'Z9' is not in the network" in err["error"]


def test_without_emissions_the_same_run_and_emissions_missing(tmp_path: Path) -> None:
    base = grid.build(tmp_path / "base", grid.ew_trips(per_row=20, headway=10.0, ns=3))
    on = _cli("run", str(base), "--seeds", "1", "--out", str(tmp_path / "on"))
    off = _cli("run", str(base), "--seeds", "1", "--no-emissions", "--out", str(tmp_path / "off"))
    # the emission model only observes: the same seed gives the same traffic
    for m in ("mean_travel_time_s", "vehicle_km", "vehicles_arrived", "mean_queue_veh"):
        assert off[m] == on[m]
    assert on["co2_kg"] > 0 and off["co2_kg"] is None and off["emission_model"] is None
    e = pd.read_csv(tmp_path / "off" / "edges.csv")
    assert e["co2_kg"].isna().all() and e["entered"].sum() > 0


def test_emission_totals_match_sumos_other_emission_outputs(tmp_path: Path) -> None:
    """The run's emissions come from SUMO's emission edge data over all lanes (the model computed once, per
    vehicle and step, shared among the lanes a vehicle is on within the step). Side by side on the same
    scenario and seed, SUMO's two other outputs of the same model give (every vehicle arrives):

    - its emission output (every vehicle at every step, written to 6 decimals), summed: the same totals
      within 0.2 % for CO2, NOx and fuel (0.12 % for CO2 here) and 1.4 % for PMx (measured; the edge data
      evaluates the model per lane portion of a step, with the mean speed over that portion);
    - its emission device on every vehicle, summed over the trip records (the method used before session 6):
      within 1 %, not within rounding: per vehicle the device's total differs from the vehicle's per-step
      sum by up to several grams either way (it books the steps around insertion and arrival differently),
      0.57 % in total on this grid of short trips and about 0.1 % on the bench's 4 x 4 grid (longer trips).
    """
    import subprocess
    import xml.etree.ElementTree as ET

    from citytwin.workflows import simulation as sim

    base = grid.build(tmp_path / "base", grid.ew_trips(per_row=30, headway=8.0, ns=5))
    ours = _cli("run", str(base), "--seeds", "1", "--out", str(tmp_path / "run"))
    sc = sim.load_scenario(base)
    subprocess.run([sim._bin("sumo"), "-n", str(sc["net"]), "-r", ",".join(map(str, sc["routes"])), "--seed", "1",
                    "--no-step-log", "true", "--no-warnings", "true", "--device.emissions.probability", "1", "--precision", "6",
                    "--tripinfo-output", str(tmp_path / "ti.xml"), "--emission-output", str(tmp_path / "em.xml")],
                   check=True, capture_output=True)
    trips = list(ET.parse(tmp_path / "ti.xml").getroot().iter("tripinfo"))
    assert len(trips) == ours["vehicles_arrived"] == ours["vehicles_inserted"] == 30 * 6 + 15
    assert sum(float(t.get("routeLength")) for t in trips) / 1000 == pytest.approx(ours["vehicle_km"], rel=1e-9)
    keys = {"CO2": ("co2_kg", 1e6), "NOx": ("nox_g", 1e3), "PMx": ("pmx_g", 1e3), "fuel": ("fuel_l", 745e3)}
    step = dict.fromkeys(keys, 0.0)  # mg/s (or mg/s of fuel) per vehicle and 1 s step
    for _, el in ET.iterparse(tmp_path / "em.xml"):
        if el.tag == "vehicle":
            for k in keys:
                step[k] += float(el.get(k, "nan"))
        elif el.tag == "timestep":
            el.clear()
    device = {k: sum(float(t.find("emissions").get(f"{k}_abs", "nan")) for t in trips) for k in keys}
    for k, (metric, scale) in keys.items():
        assert ours[metric] == pytest.approx(step[k] / scale, rel=2e-2 if k == "PMx" else 2e-3), k
        assert ours[metric] == pytest.approx(device[k] / scale, rel=1e-2), k
    assert ours["co2_kg"] != pytest.approx(device["CO2"] / 1e6, rel=2e-3)  # the device differs, as said above
