"""OD demand with zones as H3 cells or district polygons on a geo-referenced netgenerate grid (real SUMO runs):
the edges of each zone are those whose midpoint lies in it (checked against h3-py and against the grid's own
coordinates), trips go between the zones' edges, and unknown or empty zones are errors naming row and column."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h3
import pyproj
import pytest
import sumolib
from tests.simulation import grid
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.simulation.demand import Trip
from citytwin.workflows import simulation as sim

runner = CliRunner()
ORIGIN = (24.94, 60.17)  # the grid's (0, 0), central Helsinki
UTM = pyproj.Proj("+proj=utm +zone=35 +ellps=WGS84 +datum=WGS84 +units=m +no_defs")


def _lonlat(x: float, y: float) -> tuple[float, float]:
    """Grid metres -> WGS84, computed here independently of the network's <location>."""
    x0, y0 = UTM(*ORIGIN)
    return UTM(x0 + x, y0 + y, inverse=True)


@pytest.fixture(scope="module")
def geo_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zones") / "grid"
    sim.grid_scenario(out, trips=[Trip("t0", 0, "left1A1", "C1right1")], origin=ORIGIN)
    return out


def _midpoints(sc: Path) -> dict[str, tuple[float, float]]:
    """Edge -> midpoint in grid metres (straight grid edges: the mean of the shape's two ends)."""
    net = sumolib.net.readNet(str(sc / "net.net.xml"))
    out = {}
    for e in net.getEdges():
        (xa, ya), (xb, yb) = e.getShape()[0], e.getShape()[-1]
        out[e.getID()] = ((xa + xb) / 2, (ya + yb) / 2)
    return out


def _border(edge: str, end: int) -> bool:
    """Whether a grid edge (id: from node + to node, e.g. left1A1, A1left1) starts (end 0) or ends (end 1) at a
    fringe node."""
    fringe = r"(left|right|top|bottom)\d+"
    return re.fullmatch(fringe + r"[A-Z]\d+" if end == 0 else r"[A-Z]\d+" + fringe, edge) is not None


def _od(tmp: Path, name: str, rows: list[tuple[str, str, int]]) -> Path:
    p = tmp / name
    p.write_text("origin,destination,trips\n" + "".join(f"{o},{d},{n}\n" for o, d, n in rows))
    return p


def test_geo_referenced_grid_is_where_it_was_put(geo_grid: Path) -> None:
    net = sumolib.net.readNet(str(geo_grid / "net.net.xml"))
    lon, lat = net.convertXY2LonLat(200.0, 200.0)
    assert (lon, lat) == pytest.approx(_lonlat(200.0, 200.0), abs=1e-7)
    assert net.convertXY2LonLat(0.0, 0.0) == pytest.approx(ORIGIN, abs=1e-7)


def test_h3_zones(geo_grid: Path, tmp_path: Path) -> None:
    mids = _midpoints(geo_grid)
    cell_of = {e: h3.latlng_to_cell(*reversed(_lonlat(*xy)), 9) for e, xy in mids.items() if not e.startswith(":")}
    west, east = cell_of["left1A1"], cell_of["C1right1"]
    assert west != east
    od = _od(tmp_path, "od.csv", [(west, east, 20), (east, west, 10)])
    res = runner.invoke(app, ["sim", "od", str(geo_grid), str(od), "--zone-kind", "h3", "--end", "300",
                              "--out", str(tmp_path / "sc"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["trips"] == 30
    # every edge whose midpoint h3-py puts in the cell, and no other; trips leave edges that do not end at the
    # grid's border (dead ends: no turnarounds) and end on edges that do not start there (no way in)
    for cell in (west, east):
        inside = [e for e, c in cell_of.items() if c == cell]
        assert info["origin_edges"][cell] == sum(not _border(e, 1) for e in inside) > 0
        assert info["destination_edges"][cell] == sum(not _border(e, 0) for e in inside) > 0
    trips = [t for t in sumolib.xml.parse(str(tmp_path / "sc" / "trips.rou.xml"), "trip")]
    for t in trips:
        assert cell_of[t.attr_from] in (west, east) and cell_of[t.to] in (west, east)
        assert cell_of[t.attr_from] != cell_of[t.to]
    res = runner.invoke(app, ["sim", "run", str(tmp_path / "sc"), "--seeds", "1", "--out", str(tmp_path / "run"),
                              "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["vehicles_inserted"] == s["vehicles_arrived"] == 30

    far = h3.latlng_to_cell(39.9, 116.4, 9)  # Beijing: a valid cell without edges of this network
    bad = _od(tmp_path, "bad.csv", [(west, east, 2), (west, far, 3)])
    res = runner.invoke(app, ["sim", "od", str(geo_grid), str(bad), "--zone-kind", "h3", "--out",
                              str(tmp_path / "b1"), "--json"])
    assert res.exit_code == 2
    err = json.loads(res.stdout)
    assert err["row"] == 2 and err["field"] == "destination" and f"zone {far} has no edge of the network a trip can end on" in err["error"]
    bad = _od(tmp_path, "bad2.csv", [("harbour", east, 2)])
    res = runner.invoke(app, ["sim", "od", str(geo_grid), str(bad), "--zone-kind", "h3", "--out",
                              str(tmp_path / "b2"), "--json"])
    assert res.exit_code == 2 and "zone 'harbour' is not an H3 cell" in json.loads(res.stdout)["error"]
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()


def test_district_zones(geo_grid: Path, tmp_path: Path) -> None:
    def poly(x0: float, x1: float) -> list[list[float]]:
        ring = [(x0, -1000.0), (x1, -1000.0), (x1, 2000.0), (x0, 2000.0), (x0, -1000.0)]
        return [list(_lonlat(x, y)) for x, y in ring]

    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"district": "Kamppi"}, "geometry": {"type": "Polygon",
                                                                               "coordinates": [poly(-1000, 250)]}},
        {"type": "Feature", "properties": {"district": "Kruununhaka"},
         "geometry": {"type": "Polygon", "coordinates": [poly(250, 2000)]}}]}
    (tmp_path / "districts.geojson").write_text(json.dumps(fc))
    mids = {e: xy for e, xy in _midpoints(geo_grid).items() if not e.startswith(":")}
    west = {e for e, (x, _) in mids.items() if x < 250}
    od = _od(tmp_path, "od.csv", [("Kamppi", "Kruununhaka", 25)])
    args = ["sim", "od", str(geo_grid), str(od), "--zones", str(tmp_path / "districts.geojson"), "--zone-kind",
            "districts", "--zone-field", "district", "--end", "300", "--json"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "sc")])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["origin_edges"] == {"Kamppi": sum(not _border(e, 1) for e in west),
                                    "Kruununhaka": sum(not _border(e, 1) for e in set(mids) - west)}
    assert info["destination_edges"] == {"Kamppi": sum(not _border(e, 0) for e in west),
                                         "Kruununhaka": sum(not _border(e, 0) for e in set(mids) - west)}
    for t in sumolib.xml.parse(str(tmp_path / "sc" / "trips.rou.xml"), "trip"):
        assert t.attr_from in west and t.to not in west
    bad = _od(tmp_path, "bad.csv", [("Kamppi", "Kruununhaka", 1), ("Kallio", "Kamppi", 4)])
    res = runner.invoke(app, [*args[:3], str(bad), *args[4:], "--out", str(tmp_path / "b")])
    assert res.exit_code == 2
    err = json.loads(res.stdout)
    assert err["row"] == 2 and err["field"] == "origin" and "unknown zone Kallio" in err["error"]
    assert not (tmp_path / "b").exists()


def test_h3_zones_need_a_geo_referenced_network(tmp_path: Path) -> None:
    base = grid.build(tmp_path / "plain", [])
    od = _od(tmp_path, "od.csv", [(h3.latlng_to_cell(60.17, 24.94, 9), h3.latlng_to_cell(60.171, 24.94, 9), 1)])
    res = runner.invoke(app, ["sim", "od", str(base), str(od), "--zone-kind", "h3", "--out", str(tmp_path / "o"),
                              "--json"])
    assert res.exit_code == 2
    assert "no geographic reference" in json.loads(res.stdout)["error"]
