"""`citytwin resilience` CLI: exact output files, JSON output (errors too), bad input exits 2 with a clear
message and no traceback, and a panel read from the catalog."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app

runner = CliRunner()


def write_panel(path: Path) -> Path:
    rng = np.random.default_rng(11)
    f = pd.DataFrame([(f"c{u}", t) for u in range(25) for t in range(2001, 2011)], columns=["city", "year"])
    f["x"] = rng.normal(size=len(f))
    f["z"] = rng.normal(size=len(f))
    f["y"] = 0.4 * f["x"] + rng.normal(size=len(f))
    f["gdp"] = 100 * np.exp(np.cumsum(rng.normal(0.08, 0.02, len(f))))
    f.to_csv(path, index=False)
    return path


def test_model_outputs(tmp_path: Path) -> None:
    p = write_panel(tmp_path / "p.csv")
    res = runner.invoke(app, ["resilience", "model", str(p), "--y", "y", "--x", "x", "--controls", "z",
                              "--fe", "city,year", "--cluster", "city", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    c = pd.read_csv(tmp_path / "o" / "coefficients.csv")
    assert list(c.columns) == ["term", "estimate", "std_error", "t", "p"] and list(c.term) == ["x", "z"]
    m = json.loads((tmp_path / "o" / "model.json").read_text())
    assert m["N"] == 250 and m["n_clusters"] == {"city": 25} and m["dropped_singletons"] == 0
    assert m["dropped_rows"] == 0 and 0 <= m["r2_within"] <= 1


@pytest.mark.parametrize("vcov", ["twoway", "dk"])
def test_model_vcov_options(tmp_path: Path, vcov: str) -> None:
    p = write_panel(tmp_path / "p.csv")
    res = runner.invoke(app, ["resilience", "model", str(p), "--y", "y", "--x", "x", "--fe", "city,year",
                              "--vcov", vcov, "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["vcov"] == vcov


def test_measure_martin_file(tmp_path: Path) -> None:
    p = write_panel(tmp_path / "p.csv")
    res = runner.invoke(app, ["resilience", "measure", str(p), "--unit", "city", "--time", "year", "--value", "gdp",
                              "--shock", "2004:2006", "--method", "martin", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    t = pd.read_csv(tmp_path / "o" / "resilience.csv")
    assert len(t) == 25 and {"unit", "period", "sensitivity", "resistance", "recovery"} <= set(t.columns)


@pytest.mark.parametrize(("args", "message"), [
    (["measure", "--unit", "city", "--time", "year", "--value", "gdp", "--shock", "2008:2030"],
     "shock period 2030 is outside the data"),
    (["measure", "--unit", "city", "--time", "year", "--value", "gdp", "--shock", "2008"], "bad --shock"),
    (["measure", "--unit", "city", "--time", "year", "--value", "gdp", "--method", "nope"], "unknown method"),
    (["model", "--y", "y", "--x", "nope", "--fe", "city,year"], "no column 'nope'"),
    (["model", "--y", "y", "--x", "x,x2", "--fe", "city,year"], "collinear regressor(s) ['x2']"),
    (["model", "--y", "y", "--x", "label", "--fe", "city,year"], "non-numeric value 'a'"),
])
def test_bad_input_exit_2_json(tmp_path: Path, args: list[str], message: str) -> None:
    p = write_panel(tmp_path / "p.csv")
    f = pd.read_csv(p)
    f["x2"] = 3 * f["x"]
    f["label"] = "a"
    f.to_csv(p, index=False)
    cmd = ["resilience", args[0], str(p), *args[1:], "--out", str(tmp_path / "o")]
    res = runner.invoke(app, [*cmd, "--json"])
    assert res.exit_code == 2, res.output
    err = json.loads(res.stdout)
    assert message in err["error"]
    plain = runner.invoke(app, cmd)
    assert plain.exit_code == 2 and "Traceback" not in plain.output and message in " ".join(plain.output.split())


def test_missing_file_and_no_workspace(tmp_path: Path) -> None:
    res = runner.invoke(app, ["resilience", "model", "no_such_panel", "--y", "y", "--x", "x", "--fe", "a,b",
                              "--out", str(tmp_path / "o"), "--json"], env={"CITYTWIN_WORKSPACE": ""})
    assert res.exit_code == 2 and "not a file" in json.loads(res.stdout)["error"]


def test_panel_from_catalog(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = write_panel(tmp_path / "p.csv")
    workspace.write_derived("city_panel", pd.read_csv(p), inputs=[], parameters={}, description="test panel")
    res = runner.invoke(app, ["resilience", "model", "city_panel", "-w", str(workspace.root), "--user", "admin",
                              "--y", "y", "--x", "x", "--fe", "city,year", "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    direct = runner.invoke(app, ["resilience", "model", str(p), "--y", "y", "--x", "x", "--fe", "city,year",
                                 "--out", str(tmp_path / "o2"), "--json"])
    assert json.loads(res.output)["coefficients"] == json.loads(direct.output)["coefficients"]
