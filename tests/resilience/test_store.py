"""Resilience results stored in the workspace catalog as derived datasets, with lineage to the panel's
dataset version (or the panel file and its SHA-256), listed by the operations center's ``/catalog``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.conftest import served
from typer.testing import CliRunner

from citytwin.cli.main import app

from .test_cli import write_panel
from .test_cli_advanced import _threshold_panel

runner = CliRunner()


def _run(*args: str) -> dict[str, Any]:
    res = runner.invoke(app, ["resilience", *args, "--json"], env={"CITYTWIN_WORKSPACE": ""})
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def test_catalog_panel_results_stored_with_lineage(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = write_panel(tmp_path / "p.csv")
    panel = pd.read_csv(p)
    workspace.write_derived("city_panel", panel, inputs=[], parameters={}, description="test panel")
    ws = ["-w", str(workspace.root), "--user", "admin"]
    m = _run("model", "city_panel", *ws, "--y", "y", "--x", "x", "--controls", "z", "--fe", "city,year",
             "--out", str(tmp_path / "m"))
    assert m["stored"] == [{"dataset": "city_panel_model", "version": 1}]
    stored = workspace.read("city_panel_model")
    pd.testing.assert_frame_equal(stored, pd.read_csv(tmp_path / "m" / "coefficients.csv"), check_dtype=False)
    assert workspace.catalog.inputs_of("city_panel_model", 1) == [("city_panel", 1)]
    assert json.loads((tmp_path / "m" / "model.json").read_text())["stored"] == m["stored"]
    params = workspace.catalog.lineage("city_panel_model")["params"]
    assert params["command"] == "resilience model" and params["N"] == 250 and params["x"] == ["x"]

    # a new panel version: the next result's lineage names version 2, the first one keeps version 1
    workspace.write_derived("city_panel", panel.assign(y=panel["y"] * 2), inputs=[], parameters={})
    meas = _run("measure", "city_panel", *ws, "--unit", "city", "--time", "year", "--value", "gdp",
                "--shock", "2004:2006", "--out", str(tmp_path / "r"))
    assert meas["stored"] == [{"dataset": "city_panel_resilience", "version": 1}]
    assert workspace.catalog.inputs_of("city_panel_resilience", 1) == [("city_panel", 2)]
    assert workspace.catalog.inputs_of("city_panel_model", 1) == [("city_panel", 1)]
    assert len(workspace.read("city_panel_resilience")) == len(pd.read_csv(tmp_path / "r" / "resilience.csv")) == 25

    mech = _run("mechanism", "city_panel", *ws, "--y", "y", "--x", "x", "--m", "z", "--fe", "city,year",
                "--boot", "20", "--out", str(tmp_path / "me"))
    assert [s["dataset"] for s in mech["stored"]] == ["city_panel_mechanism", "city_panel_mechanism_steps"]
    panel2 = panel.assign(region=np.where(panel["city"].str[1:].astype(int) < 12, "east", "west"))
    workspace.write_derived("city_panel", panel2, inputs=[], parameters={})
    het = _run("heterogeneity", "city_panel", *ws, "--group", "region", "--y", "y", "--x", "x", "--fe", "city,year",
               "--store", "het_by_region", "--out", str(tmp_path / "h"))
    assert [s["dataset"] for s in het["stored"]] == ["het_by_region_groups", "het_by_region_pairs"]
    assert workspace.catalog.inputs_of("het_by_region_groups", 1) == [("city_panel", 3)]
    assert len(workspace.read("het_by_region_groups")) == 2


def test_file_panel_with_workspace_and_no_save(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _threshold_panel(tmp_path / "Panel 2024.csv")
    src = tmp_path / "Panel 2024.csv"
    args = ["threshold", str(src), "-w", str(workspace.root), "--user", "admin", "--y", "y", "--x", "x",
            "--q", "q", "--fe", "city,year", "--boot", "0"]
    s = _run(*args, "--out", str(tmp_path / "t"))
    assert [d["dataset"] for d in s["stored"]] == ["panel_2024_threshold", "panel_2024_threshold_lr"]
    node = workspace.catalog.lineage("panel_2024_threshold")
    assert node["inputs"] == [] and node["params"]["source_files"]["panel"] == str(src.resolve())
    assert node["params"]["source_files"]["panel_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert node["params"]["thresholds"] == pytest.approx(s["thresholds"])
    before = {d.name for d in workspace.datasets()}
    assert _run(*args, "--no-save", "--out", str(tmp_path / "t2"))["stored"] == []
    assert {d.name for d in workspace.datasets()} == before
    # no workspace: files only, nothing stored
    assert _run("threshold", str(src), "--y", "y", "--x", "x", "--q", "q", "--fe", "city,year", "--boot", "0",
                "--out", str(tmp_path / "t3"))["stored"] == []


def test_bad_store_name_is_a_clear_error(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = write_panel(tmp_path / "p.csv")
    res = runner.invoke(app, ["resilience", "model", str(p), "-w", str(workspace.root), "--user", "admin",
                              "--y", "y", "--x", "x", "--fe", "city,year", "--store", "Bad Name",
                              "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 2 and "invalid dataset name" in json.loads(res.stdout)["error"]


def test_operations_center_lists_stored_results(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from citytwin.service.server import create_server_app

    p = write_panel(tmp_path / "p.csv")
    workspace.write_derived("city_panel", pd.read_csv(p), inputs=[], parameters={})
    _run("model", "city_panel", "-w", str(workspace.root), "--user", "admin", "--y", "y", "--x", "x",
         "--fe", "city,year", "--out", str(tmp_path / "m"))
    token = workspace.catalog.issue_token("admin", label="test")[1]
    with served(create_server_app(workspace)) as client:
        h = {"Authorization": f"Bearer {token}"}
        names = {d["name"] for d in client.get("/catalog", headers=h).json()["datasets"]}
        assert {"city_panel", "city_panel_model"} <= names
        lin = client.get("/catalog/city_panel_model/lineage", headers=h).json()
    assert [i["dataset"] for i in lin["inputs"]] == ["city_panel"]


def test_spatial_results_stored_with_both_inputs(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`resilience spatial` with the panel and the boundaries both catalog datasets: lineage to both."""
    import geopandas as gpd
    import shapely

    side = 5
    ids = [f"u{i}" for i in range(side * side)]
    gdf = gpd.GeoDataFrame({"unit": ids}, geometry=[shapely.box(i % side, i // side, i % side + 1, i // side + 1)
                                                    for i in range(side * side)], crs="EPSG:3857")
    rng = np.random.default_rng(2)
    panel = pd.DataFrame([(u, t) for u in ids for t in range(2010, 2016)], columns=["unit", "year"])
    panel["x"] = rng.normal(size=len(panel))
    panel["y"] = 1.2 * panel["x"] + rng.normal(size=len(panel))
    workspace.write_derived("units", gdf, inputs=[], parameters={})
    workspace.write_derived("unit_panel", panel, inputs=[], parameters={})
    s = _run("spatial", "unit_panel", "-w", str(workspace.root), "--user", "admin", "--y", "y", "--x", "x",
             "--fe", "unit,year", "--boundaries", "units", "--id", "unit", "--draws", "0",
             "--out", str(tmp_path / "s"))
    assert [d["dataset"] for d in s["stored"]] == ["unit_panel_spatial", "unit_panel_spatial_impacts"]
    assert sorted(workspace.catalog.inputs_of("unit_panel_spatial_impacts", 1)) == [("unit_panel", 1), ("units", 1)]
    pd.testing.assert_frame_equal(workspace.read("unit_panel_spatial_impacts"),
                                  pd.read_csv(tmp_path / "s" / "impacts.csv"), check_dtype=False)
