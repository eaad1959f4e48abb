"""`citytwin plan reserve|change|sites`: JSON output, files, bad input exits 2 with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app

from .conftest import grid

runner = CliRunner()


def test_reserve_beijing(tmp_path: Path) -> None:
    out = tmp_path / "r"
    res = runner.invoke(app, ["plan", "reserve", "--planned-total-km2", "2760", "--reserve-km2", "132",
                              "--activation-year", "2035", "--years", "2020,2035", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert [round(r["ratio_pct"], 2) for r in s["table"]] == [4.78, 4.78]
    assert pd.read_csv(out / "reserve.csv")["activatable"].tolist() == [False, True]
    pop = tmp_path / "pop.csv"
    pd.DataFrame({"year": range(2010, 2021), "population": np.linspace(1e6, 1.3e6, 11)}).to_csv(pop, index=False)
    res = runner.invoke(app, ["plan", "reserve", "--population", str(pop), "--planned-total-km2", "150",
                              "--years", "2025,2030", "--per-capita-m2", "130", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert any("outside GB 50137-2011" in w for w in s["warnings"])
    assert (out / "forecast.csv").exists()
    # a table of several places (like ../shared/data/regioncode_r/china_urban_population.xlsx): one clear error
    many = tmp_path / "many.csv"
    pd.DataFrame({"name": ["a", "b"] * 5, "year": np.repeat(range(2016, 2021), 2),
                  "population": np.arange(10.0) + 1}).to_csv(many, index=False)
    res = runner.invoke(app, ["plan", "reserve", "--population", str(many), "--planned-total-km2", "150",
                              "--years", "2025", "--out", str(tmp_path / "r2"), "--json"])
    err = json.loads(res.stdout)
    assert res.exit_code == 2 and "year 2016 appears 2 times" in err["error"] and "row 1" in err["error"]
    assert "several places" in err["hint"] and not (tmp_path / "r2").exists()


def test_change_cli_and_unknown_class(tmp_path: Path) -> None:
    a, b = tmp_path / "a.gpkg", tmp_path / "b.gpkg"
    grid(24.9, 60.15, 2, 2, 0.01, landuse=["farm", "farm", "forest", "farm"]).to_file(a)
    grid(24.9, 60.15, 2, 2, 0.01, landuse=["farm", "construction", "forest", "farm"]).to_file(b)
    out = tmp_path / "c"
    res = runner.invoke(app, ["plan", "change", str(a), str(b), "--years", "2", "--hotspots", "8", "--out", str(out),
                              "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert (out / "hotspots.csv").exists() and "hot_cells" in s
    from citytwin.foundation.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", owner="alice")
    res = runner.invoke(app, ["plan", "change", str(a), str(b), "--out", str(tmp_path / "c3"), "--store", "lu_change",
                              "-w", str(ws.root), "--json"])
    assert res.exit_code == 0, res.output
    assert len(ws.read("lu_change")) == 1
    assert s["n_changes"] == 1 and s["changed_area_m2"] > 0
    out2 = tmp_path / "c2"
    res = runner.invoke(app, ["plan", "change", str(a), str(b), "--classes", "farm,forest", "--out", str(out2),
                              "--json"])
    assert res.exit_code == 2
    assert "unknown land-use class 'construction'" in json.loads(res.stdout)["error"]
    assert not out2.exists()


def test_sites_cli(tmp_path: Path) -> None:
    t = tmp_path / "s.csv"
    pd.DataFrame({"site": list("abcdef"), "age": [10, 50, 30, 70, 20, 60], "vitality": [5, 1, 3, 0, 4, 2]}
                 ).to_csv(t, index=False)
    out = tmp_path / "o"
    res = runner.invoke(app, ["plan", "sites", str(t), "--criteria", "age:benefit,vitality:cost", "--weights",
                              "age=1,vitality=1", "--draws", "50", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["top"][0]["site"] == "d"  # oldest and least vital
    r = pd.read_csv(out / "ranking.csv")
    np.testing.assert_allclose(r["contrib_age"] + r["contrib_vitality"], r["score"], atol=1e-12)
    res = runner.invoke(app, ["plan", "sites", str(t), "--criteria", "age:benefit,nope:cost", "--out",
                              str(tmp_path / "x"), "--json"])
    assert res.exit_code == 2 and "nope" in json.loads(res.stdout)["error"]


def test_zone_cli(tmp_path: Path) -> None:
    import geopandas as gpd
    import shapely

    cand = grid(24.90, 60.15, 4, 1, 0.01, slope=[1.0, 5.0, 2.0, 9.0], access=[3.0, 2.0, 1.0, 0.0]).drop(index=2)
    c, red = tmp_path / "cand.gpkg", tmp_path / "red.geojson"
    cand.to_file(c)
    gpd.GeoDataFrame(geometry=[shapely.box(24.905, 60.15, 24.91, 60.16)], crs=4326).to_file(red)
    out = tmp_path / "z"
    res = runner.invoke(app, ["plan", "zone", str(c), "--criteria", "slope:1:cost,access:1:benefit", "--exclude",
                              str(red), "--min-area-m2", "700000", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["zones"] == 1 and s["selected"] == 1
    z = gpd.read_parquet(out / "zones.parquet")
    assert shapely.intersection(z.geometry.iloc[0], shapely.box(24.905, 60.15, 24.91, 60.16)).area < 1e-12
    res = runner.invoke(app, ["plan", "zone", str(c), "--criteria", "slope:x:cost", "--out", str(tmp_path / "y"),
                              "--json"])
    assert res.exit_code == 2 and "bad weight" in json.loads(res.stdout)["error"]


def test_project_milestone_cli(tmp_path: Path) -> None:
    from citytwin.foundation.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", owner="alice")
    base = ["-w", str(ws.root), "--json"]
    assert runner.invoke(app, ["plan", "project", "create", "p1", "--name", "x", "--owner", "o", *base]).exit_code == 0
    res = runner.invoke(app, ["plan", "project", "milestone", "p1", "funding approved", "--done", *base])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["milestones"][0]["name"] == "funding approved"
    res = runner.invoke(app, ["plan", "project", "milestone", "nope", "m", *base])
    assert res.exit_code == 2 and "no project 'nope'" in json.loads(res.stdout)["error"]


def test_change_overlap_tolerance(tmp_path: Path) -> None:
    """Snapshots from independently simplified polygons overlap within themselves: refused by default, and
    with --overlap-tolerance accepted and said; the overlap is then counted once per feature (by hand)."""
    import shapely
    from pyproj import CRS, Transformer

    w, e = shapely.box(24.90, 60.20, 24.9101, 60.21), shapely.box(24.91, 60.20, 24.92, 60.21)
    gpd.GeoDataFrame({"landuse": ["farm", "forest"]}, geometry=[w, e], crs=4326).to_file(tmp_path / "a.geojson")
    after = shapely.box(24.905, 60.20, 24.925, 60.21)
    gpd.GeoDataFrame({"landuse": ["construction"]}, geometry=[after], crs=4326).to_file(tmp_path / "b.geojson")
    args = ["plan", "change", str(tmp_path / "a.geojson"), str(tmp_path / "b.geojson"), "--json"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o1")])
    assert res.exit_code == 2 and "--overlap-tolerance" in json.loads(res.stdout)["hint"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o2"), "--overlap-tolerance", "0.02"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert len(s["warnings"]) == 1 and "counted once per feature" in s["warnings"][0]
    assert json.loads((tmp_path / "o2" / "change.json").read_text())["overlap_tolerance"] == 0.02
    t = Transformer.from_crs(4326, CRS.from_user_input(s["crs_of_areas"]), always_xy=True)

    def ea(g: shapely.Geometry) -> float:
        return float(shapely.transform(g, lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1]))).area)

    union = shapely.union_all([w, e, after])
    assert s["total_area_m2"] == pytest.approx(ea(union) + ea(shapely.intersection(w, e)), rel=1e-6)
