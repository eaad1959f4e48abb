"""`citytwin plan reserve|change|sites`: JSON output, files, bad input exits 2 with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
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


def test_change_cli_and_unknown_class(tmp_path: Path) -> None:
    a, b = tmp_path / "a.gpkg", tmp_path / "b.gpkg"
    grid(24.9, 60.15, 2, 2, 0.01, landuse=["farm", "farm", "forest", "farm"]).to_file(a)
    grid(24.9, 60.15, 2, 2, 0.01, landuse=["farm", "construction", "forest", "farm"]).to_file(b)
    out = tmp_path / "c"
    res = runner.invoke(app, ["plan", "change", str(a), str(b), "--years", "2", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
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
