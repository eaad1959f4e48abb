"""`citytwin economy index | report | openness` end to end (files and workspace datasets)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app

runner = CliRunner()

SPEC = """
id: city
time: year
indicators:
  - {column: gdp, direction: positive, transform: log}
  - {column: broadband, direction: positive}
  - {column: so2, direction: negative}
"""


def _panel(names: list[str], years: tuple[int, ...] = (2019, 2020)) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = [{"city": c, "year": y, "gdp": rng.lognormal(6, 1), "broadband": rng.uniform(10, 90),
             "so2": rng.uniform(1, 50), "pop": rng.uniform(100, 900)} for y in years for c in names]
    return pd.DataFrame(rows)


@pytest.fixture()
def files(tmp_path: Path, shared_data: Path) -> dict[str, Path]:
    names = pd.read_csv(shared_data / "city_boundaries_cnmaps/china_cities_amap_centroids.csv")["name"]
    panel = _panel(list(names[:40]))
    p = tmp_path / "panel.csv"
    panel.to_csv(p, index=False)
    s = tmp_path / "spec.yaml"
    s.write_text(SPEC, encoding="utf-8")
    return {"panel": p, "spec": s, "dir": tmp_path}


def test_index_writes_weights_scores_options(files: dict[str, Path]) -> None:
    out = files["dir"] / "out"
    res = runner.invoke(app, ["economy", "index", str(files["panel"]), "--spec", str(files["spec"]),
                              "--method", "entropy", "--out", str(out)])
    assert res.exit_code == 0, res.output
    w = pd.read_csv(out / "weights.csv")
    assert list(w.columns[:2]) == ["indicator", "weight"] and w["weight"].sum() == pytest.approx(1)
    s = pd.read_csv(out / "scores.csv")
    assert list(s.columns[:4]) == ["city", "year", "score", "rank"] and len(s) == 80
    o = json.loads((out / "options.json").read_text(encoding="utf-8"))
    assert o["options"]["method"] == "entropy" and o["options"]["entropy_k"] == pytest.approx(1 / np.log(80))


@pytest.mark.parametrize("method", ["topsis", "critic", "pca", "equal"])
def test_index_methods(files: dict[str, Path], method: str) -> None:
    out = files["dir"] / method
    res = runner.invoke(app, ["economy", "index", str(files["panel"]), "--spec", str(files["spec"]),
                              "--method", method, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "options.json").read_text())["options"]["method"] == method


def test_index_from_and_into_a_workspace(files: dict[str, Path], workspace) -> None:  # type: ignore[no-untyped-def]
    workspace.write_derived("city_panel", pd.read_csv(files["panel"]), inputs=[], parameters={})
    out = files["dir"] / "ws_out"
    res = runner.invoke(app, ["economy", "index", "city_panel", "--spec", str(files["spec"]), "--out", str(out),
                              "-w", str(workspace.root), "--name", "de_index"])
    assert res.exit_code == 0, res.output
    stored = workspace.read("de_index")
    assert len(stored) == 80 and {"city", "year", "score", "rank"} <= set(stored.columns)
    assert workspace.catalog.inputs_of("de_index", 1) == [("city_panel", 1)]
    assert workspace.info("de_index").current.params["method"] == "entropy"
    assert len(workspace.read("de_index_weights")) == 3


def test_bad_spec_is_a_clear_error(files: dict[str, Path]) -> None:
    bad = files["dir"] / "bad.yaml"
    bad.write_text(SPEC + "  - {column: patents}\n", encoding="utf-8")
    res = runner.invoke(app, ["economy", "index", str(files["panel"]), "--spec", str(bad), "--out",
                              str(files["dir"] / "x")])
    assert res.exit_code == 2
    assert "patents" in res.output and "Traceback" not in res.output


def test_report_is_self_contained_with_a_map(files: dict[str, Path], shared_data: Path) -> None:
    out = files["dir"] / "report.html"
    res = runner.invoke(app, ["economy", "report", str(files["panel"]), "--spec", str(files["spec"]), "--out",
                              str(out), "--boundaries",
                              str(shared_data / "city_boundaries_cnmaps/china_cities_amap_simplified_0.01deg.geojson"),
                              "--group-weight", "pop", "--k", "3"])
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    assert html.count("<svg") >= 3 and "data:image/png;base64," in html
    # nothing fetched from elsewhere: no scripts, stylesheets, or http(s) sources / links
    assert "<script" not in html and "<link " not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "40 of 370 boundaries matched" in html
    assert "weighted_mean" in html and "east" in html  # regions from the boundary provinces


def test_openness_of_the_workspace_catalog(workspace) -> None:  # type: ignore[no-untyped-def]
    workspace.write_derived("a", pd.DataFrame({"x": [1]}), inputs=[], parameters={}, classification="public")
    workspace.write_derived("b", pd.DataFrame({"x": [2]}), inputs=["a"], parameters={}, classification="internal")
    res = runner.invoke(app, ["economy", "openness", "-w", str(workspace.root), "--json"])
    assert res.exit_code == 0, res.output
    p = json.loads(res.output)
    assert p["counts"] == {"datasets": 2, "public": 1}
    assert p["measures"]["public_used"] == 1.0 and p["measures"]["public_share"] == 0.5
    assert p["measures"]["public_open_format"] == 1.0


def test_openness_profiles_file(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    pd.DataFrame({"name": ["a", "b"], "readiness": [10, 90], "platform": [10, 90], "data": [10, 90],
                  "utilisation": [10, 90]}).to_csv(f, index=False)
    res = runner.invoke(app, ["economy", "openness", "--profiles", str(f), "--weight", "data=2", "--weight",
                              "readiness=1", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows[1]["rank"] == 1 and rows[1]["score"] == pytest.approx(90)
