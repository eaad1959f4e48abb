"""`citytwin resilience threshold|spatial`: the CLI writes what the pure functions compute."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.resilience.spatial import impacts, spatial_panel, weights_from_boundaries
from citytwin.resilience.threshold import panel_threshold

runner = CliRunner()


def _threshold_panel(path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n, t = 50, 8
    unit = np.repeat(np.arange(n), t)
    q = rng.uniform(0, 10, n * t)
    x = rng.normal(size=n * t)
    y = rng.normal(scale=3, size=n)[unit] + np.where(q <= 4.0, 1.0, 3.0) * x + rng.normal(scale=0.5, size=n * t)
    d = pd.DataFrame({"city": unit, "year": np.tile(np.arange(2010, 2010 + t), n), "y": y, "x": x, "q": q})
    d.to_csv(path, index=False)
    return d


def test_threshold_cli_matches_function(tmp_path: Path) -> None:
    d = _threshold_panel(tmp_path / "p.csv")
    res = runner.invoke(app, ["resilience", "threshold", str(tmp_path / "p.csv"), "--y", "y", "--x", "x", "--q", "q",
                              "--fe", "city,year", "--boot", "0", "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    direct = panel_threshold(d, "y", ["x"], "q", "city", "year", bootstrap=0)
    assert s["thresholds"] == pytest.approx(direct.thresholds)
    assert abs(s["thresholds"][0] - 4.0) < 0.2  # the planted threshold
    coef = pd.read_csv(tmp_path / "o" / "coefficients.csv")
    assert list(coef.columns) == ["term", "estimate", "std_error", "t", "p"]
    assert (tmp_path / "o" / "lr.csv").exists() and json.loads((tmp_path / "o" / "threshold.json").read_text())


def test_threshold_cli_bad_input_is_json(tmp_path: Path) -> None:
    _threshold_panel(tmp_path / "p.csv")
    res = runner.invoke(app, ["resilience", "threshold", str(tmp_path / "p.csv"), "--y", "y", "--x", "x",
                              "--q", "nope", "--fe", "city,year", "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "nope" in json.loads(res.stdout)["error"]
    # an unbalanced panel (seen on the real 287-city workbook): the file is named too
    d = pd.read_csv(tmp_path / "p.csv").iloc[1:]
    d.to_csv(tmp_path / "u.csv", index=False)
    res = runner.invoke(app, ["resilience", "threshold", str(tmp_path / "u.csv"), "--y", "y", "--x", "x",
                              "--q", "q", "--fe", "city,year", "--out", str(tmp_path / "o"), "--json"])
    err = json.loads(res.stdout)["error"]
    assert res.exit_code == 2 and err.startswith(f"file {tmp_path / 'u.csv'}: field 'year': unbalanced panel")


def test_spatial_cli_matches_function_and_lesage_pace(tmp_path: Path) -> None:
    """A 6 x 6 grid of square units with a planted spatial lag; the CLI's impacts are the LeSage–Pace
    impacts of its own rho and beta, and equal those of the pure function."""
    side, t = 6, 6
    ids = [f"u{i}" for i in range(side * side)]
    polys = [shapely.box(i % side, i // side, i % side + 1, i // side + 1) for i in range(side * side)]
    gdf = gpd.GeoDataFrame({"unit": ids}, geometry=polys, crs="EPSG:3857")
    gdf.to_file(tmp_path / "units.geojson", driver="GeoJSON")
    w = weights_from_boundaries(gdf, "unit", "queen")
    wm = w.full()[0]
    order = w.id_order
    rng = np.random.default_rng(7)
    rows = []
    inv = np.linalg.inv(np.eye(len(order)) - 0.4 * wm)
    mu = rng.normal(size=len(order))
    for year in range(2010, 2010 + t):
        x = rng.normal(size=len(order))
        y = inv @ (mu + 1.5 * x + rng.normal(scale=0.3, size=len(order)))
        rows += [{"unit": u, "year": year, "y": yy, "x": xx} for u, yy, xx in zip(order, y, x, strict=True)]
    panel = pd.DataFrame(rows)
    panel.to_csv(tmp_path / "p.csv", index=False)
    res = runner.invoke(app, ["resilience", "spatial", str(tmp_path / "p.csv"), "--y", "y", "--x", "x",
                              "--fe", "unit,year", "--boundaries", str(tmp_path / "units.geojson"), "--id", "unit",
                              "--draws", "0", "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    direct = spatial_panel(panel, "y", ["x"], "unit", "year", w, draws=0)
    assert s["rho"] == pytest.approx(direct.rho, rel=1e-6)
    assert s["rho"] == pytest.approx(0.4, abs=0.1)
    beta = {c["term"]: c["estimate"] for c in s["coefficients"]}["x"]
    lp = impacts(s["rho"], np.array([beta]), w, names=["x"])
    got = pd.read_csv(tmp_path / "o" / "impacts.csv").set_index("variable")
    assert got.loc["x", "direct"] == pytest.approx(float(lp.set_index("variable").loc["x", "direct"]), rel=1e-8)
    assert got.loc["x", "total"] == pytest.approx(beta / (1 - s["rho"]), rel=1e-8)  # row-standardised W
