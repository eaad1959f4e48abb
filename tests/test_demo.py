"""The README's main job: `citytwin demo` builds the demo workspace from data shipped in packages."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.workspace import Workspace


def test_demo_builds_workspace(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "-w", str(root)])
    assert r.exit_code == 0, r.output
    ws = Workspace(root, user="admin")
    names = {d.name for d in ws.datasets()}
    assert {"helsinki_streets", "helsinki_pois", "helsinki_buildings", "helsinki_landuse", "china_admin_codes",
            "china_prefectures", "helsinki_poi_per_h3", "mexico_states", "mexico_dagum", "columbus_index", "helsinki_centers",
            "helsinki_lifecircle_coverage"} <= names
    assert (root / "reports" / "helsinki_spatial.html").stat().st_size > 50_000
    pref = ws.info("china_prefectures").current
    assert pref.rows_kept == 370
    # seed 000 Table 1 is printed as published: Guiyang 27 places above its GDP rank
    assert "Guiyang +27" in r.output
    # Dagum 1940 as in REFERENCES.md (G = 0.353724)
    assert "0.3537 in 1940" in r.output
    assert (root / "reports" / "economy.html").stat().st_size > 10_000
    assert (root / "catalog.dcat.json").exists()
    lineage = ws.catalog.lineage("mexico_dagum")
    assert lineage["inputs"][0]["dataset"] == "mexico_states"
    # one scenario comparison (SUMO, Helsinki base + a road closure), stored with lineage and in the twin
    diffs = ws.read("helsinki_sim_closure_differences")
    assert set(diffs["metric"]) >= {"mean_travel_time_s", "co2_kg", "vehicles_inserted"}
    assert ws.catalog.lineage("helsinki_sim_closure_edges")["inputs"][0]["dataset"] == "helsinki_streets"
    assert (root / "reports" / "helsinki_simulation.html").read_text().count("<img") == 2
    from citytwin.workflows.simulation_twin import list_scenarios

    assert [sc["scenario"] for sc in list_scenarios(root / "twin")] == ["helsinki-base", "helsinki-closure"]
    # a public resident sees only public datasets
    assert all(d.classification == "public" for d in ws.as_user("resident").datasets())
