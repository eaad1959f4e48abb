"""CityFlow import: a scenario written by the test from the public format converts to SUMO with the same
intersections, roads, lanes and movements, and runs with every vehicle inserted; bad input fails clearly
with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.simulation import cityflow_data as cd
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.errors import InputError
from citytwin.simulation import cityflow
from citytwin.workflows import simulation as sim

runner = CliRunner()


def _write(tmp: Path, roadnet: dict, flows: list) -> tuple[Path, Path]:
    (tmp / "roadnet.json").write_text(json.dumps(roadnet))
    (tmp / "flow.json").write_text(json.dumps(flows))
    return tmp / "roadnet.json", tmp / "flow.json"


def test_import_and_run_every_vehicle_inserted(tmp_path: Path) -> None:
    rn, fl = _write(tmp_path, cd.roadnet(), cd.flows())
    res = runner.invoke(app, ["sim", "import-cityflow", str(rn), str(fl), "--out", str(tmp_path / "sc"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    # 4 arms x (in, out) roads of 2 lanes; 4 arms x (straight 2 lane links + left + right) movements
    assert info["counts"] == {"intersections": 5, "roads": 8, "lanes": 16, "movements": 16, "signals": 1}
    got = sim.net_counts(tmp_path / "sc" / "net.net.xml")
    assert got == cityflow.NetworkCounts(**info["counts"])
    # straight flows every 20 s over [0, 300] -> 16 vehicles, turns every 60 s -> 6; 4 arms
    assert info["vehicles"] == 4 * (16 + 6 + 6) == 112
    # CityFlow lane 0 (inner) is SUMO's leftmost lane: the left turn leaves from lane 1 of a 2-lane road
    links = sim.tls_links(tmp_path / "sc" / "net.net.xml")["c"]
    assert ("in_E_1", "out_S_1") in links and ("in_E_0", "out_N_0") in links
    res = runner.invoke(app, ["sim", "run", str(tmp_path / "sc"), "--seeds", "2", "--out", str(tmp_path / "run"),
                              "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["vehicles_inserted"] == s["vehicles_arrived"] == 112
    assert s["all_inserted"]
    for key in ("mean_travel_time_s", "mean_delay_s", "co2_kg"):
        assert s[key] > 0
    # free-flow time over 2 x 300 m at 11.1 m/s is 54 s: travel time is above it, delay is the rest
    assert 54 < s["mean_travel_time_s"] < 200
    assert 0 < s["mean_delay_s"] < s["mean_travel_time_s"]


def test_missing_intersection_named_and_nothing_written(tmp_path: Path) -> None:
    rn = cd.roadnet()
    rn["roads"][3]["endIntersection"] = "nowhere"
    r, f = _write(tmp_path, rn, cd.flows())
    res = runner.invoke(app, ["sim", "import-cityflow", str(r), str(f), "--out", str(tmp_path / "sc"), "--json"])
    assert res.exit_code == 2
    err = json.loads(res.stdout)
    assert "road 'out_N' references intersection 'nowhere'" in err["error"]
    assert err["field"] == "endIntersection" and err["row"] == 4
    assert not (tmp_path / "sc").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.json", "roadnet.json"]  # no staging left


def test_route_that_does_not_connect(tmp_path: Path) -> None:
    flows = cd.flows()
    flows[2]["route"] = ["in_E", "out_E"]  # a U-turn: no road link
    with pytest.raises(InputError, match=r"flow 2: route does not connect: no road link from road 'in_E' to "
                                         r"road 'out_E' at intersection 'c'"):
        cityflow.convert(cd.roadnet(), flows)
    flows[2]["route"] = ["in_E", "ghost"]
    with pytest.raises(InputError, match="route names road 'ghost'"):
        cityflow.convert(cd.roadnet(), flows)
    # through the CLI: one JSON error naming the flow and the intersection, nothing written
    flows[2]["route"] = ["in_E", "out_E"]
    r, f = _write(tmp_path, cd.roadnet(), flows)
    res = runner.invoke(app, ["sim", "import-cityflow", str(r), str(f), "--out", str(tmp_path / "sc"), "--json"])
    assert res.exit_code == 2
    err = json.loads(res.stdout)
    assert "flow 2: route does not connect" in err["error"] and "intersection 'c'" in err["error"]
    assert not (tmp_path / "sc").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.json", "roadnet.json"]


def test_phase_with_missing_road_link(tmp_path: Path) -> None:
    rn = cd.roadnet()
    rn["intersections"][-1]["trafficLight"]["lightphases"][0]["availableRoadLinks"].append(40)
    with pytest.raises(InputError, match=r"intersection 'c', phase 0: available road link 40 does not exist"):
        cityflow.convert(rn, cd.flows())
