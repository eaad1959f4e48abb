"""`citytwin plan conflicts`: the scripted form, its files, JSON output and bad input (nothing half-written)."""

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
from citytwin.planning.overlay import find_conflicts, parse_rules

runner = CliRunner()

RULES = """
- {name: r1, layer: A, overlaps: B}
- {name: r2, layer: A, outside: C}
"""


@pytest.fixture
def files(tmp_path: Path, plan_layers: dict[str, gpd.GeoDataFrame]) -> dict[str, Path]:
    a = tmp_path / "a.gpkg"
    b = tmp_path / "b.geojson"
    c = tmp_path / "c.parquet"
    plan_layers["landuse"].to_file(a)
    plan_layers["redline"].to_crs(3067).to_file(b)  # another CRS: reprojected
    plan_layers["boundary"].to_parquet(c)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    return {"A": a, "B": b, "C": c, "rules": rules}


def _args(files: dict[str, Path], out: Path) -> list[str]:
    return ["plan", "conflicts", "--layer", f"A={files['A']}", "--layer", f"B={files['B']}", "--layer",
            f"C={files['C']}", "--rules", str(files["rules"]), "--out", str(out)]


def test_conflicts_files(files: dict[str, Path], tmp_path: Path, plan_layers: dict[str, gpd.GeoDataFrame]) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, [*_args(files, out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == ["rule", "n", "area_m2"]
    assert list(summary["rule"]) == ["r1", "r2"]
    conf = gpd.read_parquet(out / "conflicts.parquet")
    assert conf.crs.equals("EPSG:4326")
    assert {"rule", "layer", "other", "area_m2"} <= set(conf.columns)
    assert conf.groupby("rule")["area_m2"].sum().to_dict() == pytest.approx(
        summary.set_index("rule")["area_m2"].to_dict())
    # the same as the library on the layers as read from the files
    layers = {"A": gpd.read_file(files["A"]), "B": gpd.read_file(files["B"]), "C": gpd.read_parquet(files["C"])}
    ref = find_conflicts(layers, parse_rules([{"name": "r1", "layer": "A", "overlaps": "B"},
                                              {"name": "r2", "layer": "A", "outside": "C"}], list(layers)))
    assert summary["area_m2"].to_numpy() == pytest.approx(ref.summary["area_m2"].to_numpy(), rel=1e-9)
    assert s["summary"][0]["rule"] == "r1"


@pytest.mark.parametrize("case", ["missing_layer", "overlap", "no_crs", "empty"])
def test_bad_input_clear_error_nothing_written(case: str, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _args(files, out)
    if case == "missing_layer":
        files["rules"].write_text("- {name: r1, layer: A, overlaps: Z}\n", encoding="utf-8")
        expect = "names layer 'Z'"
    elif case == "overlap":
        bad = gpd.GeoDataFrame(geometry=[shapely.box(24.9, 60.15, 24.92, 60.17), shapely.box(24.91, 60.16, 24.93,
                                                                                            60.18)], crs=4326)
        bad.to_file(files["A"])
        expect = "features 1 and 2 overlap"
    elif case == "no_crs":
        gpd.read_parquet(files["C"]).set_crs(None, allow_override=True).to_parquet(files["C"])
        expect = "no CRS"
    else:
        gpd.read_file(files["A"]).iloc[:0].to_file(files["A"])
        expect = "is empty"
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 2
    err = json.loads(res.stdout)
    assert expect in err["error"]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    plain = runner.invoke(app, args)
    assert plain.exit_code == 2 and "Traceback" not in plain.output


def test_overlap_tolerance_for_simplified_boundaries(tmp_path: Path) -> None:
    """Boundaries simplified independently overlap by slivers (the cnmaps city boundaries: 939 pairs, up to
    1.6 % of the smaller city). Refused by default with the share named; accepted with --overlap-tolerance,
    which the output says (warnings, conflicts.json); the conflict areas then equal shapely's by hand."""
    a = gpd.GeoDataFrame({"name": ["w", "e"]}, geometry=[shapely.box(24.90, 60.20, 24.9101, 60.21),
                                                          shapely.box(24.91, 60.20, 24.92, 60.21)], crs=4326)
    b = gpd.GeoDataFrame({"zone": ["z"]}, geometry=[shapely.box(24.905, 60.205, 24.915, 60.215)], crs=4326)
    a.to_file(tmp_path / "a.geojson")
    b.to_file(tmp_path / "b.geojson")
    (tmp_path / "r.yaml").write_text("- {name: r1, layer: A, overlaps: B}\n", encoding="utf-8")
    args = ["plan", "conflicts", "--layer", f"A={tmp_path / 'a.geojson'}", "--layer", f"B={tmp_path / 'b.geojson'}",
            "--rules", str(tmp_path / "r.yaml"), "--json"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o1")])
    err = json.loads(res.stdout)
    assert res.exit_code == 2 and "overlap by 0.01 of the smaller one" in err["error"]
    assert "--overlap-tolerance" in err["hint"] and not (tmp_path / "o1").exists()
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o2"), "--overlap-tolerance", "0.02"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["accepted_overlaps"] == {"A": {"pairs": 1, "largest_share": pytest.approx(0.01, rel=1e-6)}}
    assert len(s["warnings"]) == 1 and "accepted by --overlap-tolerance" in s["warnings"][0]
    meta = json.loads((tmp_path / "o2" / "conflicts.json").read_text())
    assert meta["overlap_tolerance"] == 0.02 and meta["accepted_overlaps"]["A"]["pairs"] == 1
    ea = find_conflicts({"A": a, "B": b}, parse_rules([{"name": "r1", "layer": "A", "overlaps": "B"}], ["A", "B"]),
                        overlap_tolerance=0.02).crs
    from pyproj import CRS, Transformer

    t = Transformer.from_crs(4326, CRS.from_user_input(ea), always_xy=True)
    want = sum(shapely.transform(shapely.intersection(g, b.geometry[0]),
                                 lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1]))).area for g in a.geometry)
    assert s["summary"][0]["area_m2"] == pytest.approx(want, rel=1e-4)  # the sliver counted in both features
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o3"), "--overlap-tolerance", "1.5"])
    assert res.exit_code == 2 and "overlap tolerance must be in (0, 1)" in json.loads(res.stdout)["error"]


def test_table_without_geometry_says_how_to_use_it(tmp_path: Path) -> None:
    """A CSV with WKT polygons (like the census file in ../shared/data) read as a layer: a clear error whose
    hint says to ingest it first; nothing is written."""
    pd.DataFrame({"city": ["a"], "coord": ["POLYGON((0 0, 1 0, 1 1, 0 0))"]}).to_csv(tmp_path / "t.csv", index=False)
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], crs=4326).to_file(tmp_path / "b.geojson")
    (tmp_path / "r.yaml").write_text("- {name: r1, layer: A, overlaps: B}\n", encoding="utf-8")
    res = runner.invoke(app, ["plan", "conflicts", "--layer", f"A={tmp_path / 't.csv'}", "--layer",
                              f"B={tmp_path / 'b.geojson'}", "--rules", str(tmp_path / "r.yaml"), "--out",
                              str(tmp_path / "o"), "--json"])
    err = json.loads(res.stdout)
    assert res.exit_code == 2 and "has no geometry column" in err["error"] and "citytwin ingest" in err["hint"]
    assert not (tmp_path / "o").exists()
