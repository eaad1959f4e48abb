"""Signal control on a netgenerate grid, same demand and seeds: Webster from flows and max-pressure
(libsumo and TraCI) beat a poor fixed-time plan on mean travel time; actuated runs; plans are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sumolib
from tests.simulation import grid
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.workflows import simulation as sim

runner = CliRunner()


def _poor_plan(net: Path) -> dict[str, list[dict[str, object]]]:
    """10 s green for the heavy east-west phases, 50 s for the light north-south ones."""
    n = sumolib.net.readNet(str(net))
    links = sim.tls_links(net)

    def horizontal(lane: str) -> bool:
        e = n.getEdge(lane.rsplit("_", 1)[0])
        return abs(e.getFromNode().getCoord()[1] - e.getToNode().getCoord()[1]) < 1

    plan = {}
    for tls, phases in sim.net_programs(net).items():
        out = []
        for p in phases:
            ew = any(c in "Gg" and horizontal(links[tls][k][0]) for k, c in enumerate(p.state))
            out.append({"duration": (10 if ew else 50) if p.is_green else p.duration, "state": p.state})
        plan[tls] = out
    return plan


@pytest.fixture(scope="module")
def grid_sc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("grid")
    sc = grid.build(d / "sc")
    (d / "poor.json").write_text(json.dumps(_poor_plan(sc / "net.net.xml")))
    return sc, d / "poor.json"


def _signals(sc: Path, out: Path, control: str, *extra: str) -> dict:
    res = runner.invoke(app, ["sim", "signals", str(sc), "--control", control, "--seeds", "2", "--out", str(out),
                              "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_webster_and_maxpressure_beat_a_poor_fixed_plan(grid_sc: tuple[Path, Path], tmp_path: Path) -> None:
    sc, poor = grid_sc
    fixed = _signals(sc, tmp_path / "fixed", "fixed", "--plan", str(poor))
    webster = _signals(sc, tmp_path / "webster", "webster")
    mp = _signals(sc, tmp_path / "mp", "maxpressure")
    actuated = _signals(sc, tmp_path / "act", "actuated")
    for s in (fixed, webster, mp, actuated):
        assert s["vehicles_inserted"] == 645 and s["seeds"] == [1, 2]
    assert webster["mean_travel_time_s"] < 0.95 * fixed["mean_travel_time_s"]
    assert mp["mean_travel_time_s"] < 0.95 * fixed["mean_travel_time_s"]
    assert actuated["mean_travel_time_s"] < fixed["mean_travel_time_s"]
    # Webster's plan: the east-west phase of a middle junction gets the longer green
    b1 = webster["webster"]["B1"]
    assert not b1["saturated"] and b1["lost_time_s"] == 6
    # 600 veh/h each way, one lane, saturation 1,800: y = 1/3 for the east-west phase
    assert max(b1["greens_s"]) > 2 * min(b1["greens_s"])


def test_maxpressure_through_traci_matches_libsumo(grid_sc: tuple[Path, Path], tmp_path: Path) -> None:
    sc, _ = grid_sc
    a = sim.run(sc, tmp_path / "lib", seeds=1, control="maxpressure", backend="libsumo")
    b = sim.run(sc, tmp_path / "traci", seeds=1, control="maxpressure", backend="traci")
    # the same controller on the same seed: the same simulation
    assert a["mean_travel_time_s"] == pytest.approx(b["mean_travel_time_s"])
    assert a["vehicles_arrived"] == b["vehicles_arrived"]


def test_plan_that_does_not_match_the_intersection(grid_sc: tuple[Path, Path], tmp_path: Path) -> None:
    sc, poor = grid_sc
    plan = json.loads(poor.read_text())
    plan["B1"][2]["state"] = "GGrr"
    (tmp_path / "bad.json").write_text(json.dumps(plan))
    res = runner.invoke(app, ["sim", "signals", str(sc), "--control", "fixed", "--plan", str(tmp_path / "bad.json"),
                              "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 2
    err = json.loads(res.stdout)
    assert "intersection 'B1', phase 2: state 'GGrr' has 4 signals but the intersection controls 12 links" \
        in err["error"]
    assert not (tmp_path / "out").exists()
    res = runner.invoke(app, ["sim", "signals", str(sc), "--control", "bogus", "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "unknown control" in res.output
