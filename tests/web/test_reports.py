"""Views and reports of the operations center (H2): the data each view shows, access, HTML/PDF files.

Reference values come from independent reads of the workspace (the quarantine files, the quality
report, the package's seed 000 table), not from the code under test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app as cli
from citytwin.foundation.errors import AccessDenied, InputError
from citytwin.foundation.workspace import Workspace
from citytwin.workflows.report import render_html, view_data, write_report

pytestmark = pytest.mark.slow


def test_economy_view_matches_seed000_table(demo_root: Path) -> None:
    from citytwin.economy import data as econ_data

    d = view_data(Workspace.open(demo_root, user="analyst"), "economy")
    t1 = econ_data.load("seed000_table1_digital_economy_vs_gdp").set_index("city")
    rows = {r["city"]: r for r in d["cities"]["rows"]}
    assert set(rows) == set(t1.index)
    for city, r in rows.items():
        assert r["places_above"] == t1.loc[city, "gdp_rank_2020"] - t1.loc[city, "de_rank_2020"]
        assert r["series"]["de_score"] == pytest.approx([t1.loc[city, f"de_score_{y}"] for y in (2018, 2019, 2020)])
    # every city of the table is found among the prefecture boundaries (Chinese names kept as they are)
    names = {f["properties"]["city"] for f in d["cities"]["geojson"]["features"]}
    assert names == set(t1.index)
    assert [r["year"] for r in d["disparity"]["rows"]] == list(range(1940, 2001, 10))
    assert sorted(r["rank"] for r in d["index"]["rows"]) == list(range(1, len(d["index"]["rows"]) + 1))
    json.dumps(d, allow_nan=False)


def test_catalog_view_counts_and_clearance(demo_root: Path) -> None:
    from citytwin.foundation.quality import quality_report

    admin = Workspace.open(demo_root, user="admin")
    d = view_data(admin, "catalog")
    by = {r["name"]: r for r in d["datasets"]}
    assert set(by) == {i.name for i in admin.datasets()}
    for name in ("helsinki_buildings", "helsinki_pois", "helsinki_landuse"):
        assert by[name]["quarantined"] == len(admin.quarantine(name)) > 0
        assert by[name]["quality"] == pytest.approx(quality_report(admin, name).score)
    assert {"source": "helsinki_pois", "target": "helsinki_poi_per_h3"} in d["lineage"]
    # the viewer (internal clearance) sees neither the sensitive layer nor lineage edges that touch it
    v = view_data(Workspace.open(demo_root, user="viewer"), "catalog")
    assert "helsinki_buildings" not in {r["name"] for r in v["datasets"]}
    assert all("helsinki_buildings" not in (e["source"], e["target"]) for e in v["lineage"])


def test_twin_view_needs_clearance(demo_root: Path) -> None:
    with pytest.raises(AccessDenied):
        view_data(Workspace.open(demo_root, user="resident"), "twin")
    with pytest.raises(InputError, match="unknown view"):
        view_data(Workspace.open(demo_root, user="admin"), "weather")


def test_html_report_is_self_contained(demo_root: Path) -> None:
    html = render_html(Workspace.open(demo_root, user="viewer"), "space")
    assert len(re.findall(r'<img alt="figure" src="data:image/png;base64,', html)) >= 3
    assert not re.search(r'(src|href)="(https?:)?//', html), "a report must not load anything from elsewhere"
    assert "seen as viewer" in html


def test_report_errors_are_clear(demo_root: Path, tmp_path: Path) -> None:
    ws = Workspace.open(demo_root, user="admin")
    with pytest.raises(InputError, match=r"must end in \.html or \.pdf"):
        write_report(ws, "economy", tmp_path / "r.docx")
    r = CliRunner().invoke(cli, ["report", "nowhere", "-w", str(demo_root), "-u", "admin", "--out",
                                 str(tmp_path / "r.html"), "--json"])
    assert r.exit_code == 2
    assert json.loads(r.stdout)["field"] == "view"
    assert not (tmp_path / "r.html").exists()
    r = CliRunner().invoke(cli, ["report", "economy", "-w", str(demo_root), "-u", "admin", "--out",
                                 str(tmp_path / "r.html"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"view": "economy", "format": "html", "path": str(tmp_path / "r.html")}
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!doctype html>")


def test_space_view_shows_a_stored_snapshot_comparison(demo_root: Path) -> None:
    r = CliRunner().invoke(cli, ["spatial", "compare", "-w", str(demo_root), "--pois", "helsinki_pois",
                                 "--add-cluster", "24.9505,60.1765,150,120,1", "--name", "plan_compare"])
    assert r.exit_code == 0, r.output
    ws = Workspace.open(demo_root, user="viewer")
    d = view_data(ws, "space")["compare"]
    stored = ws.read("plan_compare")
    assert d["dataset"] == "plan_compare"
    assert [(x["snapshot"], x["status"]) for x in d["rows"]] == list(zip(stored["snapshot"], stored["status"],
                                                                          strict=True))
    change = {x["index"]: x["change"] for x in d["indices"]}
    assert change["n_centers"] == ws.read("plan_compare_indices").set_index("index").loc["n_centers", "change"]
    assert "Snapshot comparison" in render_html(ws, "space")
