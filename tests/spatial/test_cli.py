"""`citytwin spatial ...` end to end on the real Helsinki extract, with workspace lineage."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.osm import bundled_pbf

runner = CliRunner()


def _strict_json(text: str):
    """Parse JSON as a strict parser would: bare NaN / Infinity are errors."""
    def bad(c: str):
        raise ValueError(f"not JSON: {c}")
    return json.loads(text, parse_constant=bad)


def _run(*args: str):
    res = runner.invoke(app, ["spatial", *args])
    return res


def test_centers_and_mix_write_to_workspace(helsinki_pbf, workspace, helsinki):
    res = _run("centers", str(helsinki_pbf), "-w", str(workspace.root), "--name", "hel_centers", "--json")
    assert res.exit_code == 0, res.output
    out = _strict_json(res.stdout)  # only JSON on stdout, the "stored ..." lines go to stderr
    assert out["indices"]["n_centers"] >= 1
    names = {d.name for d in workspace.datasets()}
    assert {"hel_centers", "hel_centers_cells"} <= names
    info = workspace.info("hel_centers")
    assert info.current.params["source_files"]["pbf_sha256"]
    cells = workspace.read("hel_centers_cells")
    assert "gi_z" in cells.columns and len(cells) > 20

    # POIs as a catalog dataset, then mix from it: lineage points back to the dataset
    workspace.write_derived("hel_pois", helsinki["pois"][["osm_id", "category", "geometry"]], inputs=[],
                            parameters={"source": "Helsinki.osm.pbf"})
    res = _run("mix", "--pois", "hel_pois", "-w", str(workspace.root), "--name", "hel_mix", "--json")
    assert res.exit_code == 0, res.output
    assert workspace.catalog.inputs_of("hel_mix", 1) == [("hel_pois", 1)]
    mix = _strict_json(res.stdout)  # `mix --json -w` once appended "stored hel_mix v1" to the JSON
    assert len(mix) == len(workspace.read("hel_mix")) and {"cell", "entropy_norm"} <= set(mix[0])
    assert "stored hel_mix v1" in res.stderr


def test_lifecircle_json(helsinki_pbf):
    res = _run("lifecircle", str(helsinki_pbf), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["coverage"]) == 8
    assert out["report"]["threshold_m"] == 1200.0
    res3 = _run("lifecircle", str(helsinki_pbf), "--threshold-m", "3000", "--json")
    assert json.loads(res3.stdout)["report"]["threshold_m"] == 3000.0


def test_compare_and_jobs(helsinki_pbf, tmp_path):
    res = _run("compare", str(helsinki_pbf), "--add-cluster", "24.9505,60.1765,150,120,1", "--json",
               "-o", str(tmp_path / "cmp.parquet"))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):res.stdout.rindex("}") + 1])
    assert out["findings"]["new_centers"] == 1
    assert (tmp_path / "cmp.parquet").exists()
    res = _run("jobs", str(helsinki_pbf), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["indices"]["jhr"] > 1


@pytest.mark.slow
def test_report_is_self_contained(helsinki_pbf, tmp_path):
    out = tmp_path / "r.html"
    res = _run("report", str(helsinki_pbf), "--add-cluster", "24.9505,60.1765,150,120,1", "-o", str(out))
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert html.count("data:image/png;base64,") >= 6
    assert "<script" not in html and "src='http" not in html and 'src="http' not in html
    assert "OpenStreetMap contributors" in html


def test_bad_input(tmp_path):
    res = _run("lifecircle", str(tmp_path / "missing.osm.pbf"))
    assert res.exit_code == 2
    assert "not found" in res.output
    res = _run("lifecircle", str(tmp_path / "missing.osm.pbf"), "--json")  # the error as JSON too
    err = _strict_json(res.stdout)
    assert res.exit_code == 2 and err["error"].endswith("file not found") and err["file"].endswith("missing.osm.pbf")
    res = _run("compare", "--pois", "nope")
    assert res.exit_code == 2
    res = _run("compare", str(tmp_path / "x.pbf"), "--add-cluster", "1,2")
    assert res.exit_code == 2


def test_lifecircle_from_graph_files(helsinki, tmp_path):
    """The same life circle from GIS files (edges without nodes) and from a GraphML graph (OSMnx)."""
    import networkx as nx
    import osmnx as ox

    pois = helsinki["pois"][["osm_id", "category", "geometry"]]
    b = helsinki["buildings"][["osm_id", "use", "geometry"]]
    pois.to_parquet(tmp_path / "pois.parquet")
    b.to_parquet(tmp_path / "b.parquet")
    helsinki["edges"][["u", "v", "length", "geometry"]].to_parquet(tmp_path / "edges.parquet")
    nodes, edges = helsinki["nodes"], helsinki["edges"]
    g = nx.MultiDiGraph(crs="EPSG:4326")
    g.add_nodes_from((int(i), {"x": x, "y": y}) for i, x, y in zip(nodes["id"], nodes["x"], nodes["y"], strict=True))
    g.add_edges_from((int(u), int(v), {"length": float(w)})
                     for u, v, w in zip(edges["u"], edges["v"], edges["length"], strict=True))
    ox.save_graphml(g, tmp_path / "walk.graphml")
    common = ["--pois", str(tmp_path / "pois.parquet"), "--buildings", str(tmp_path / "b.parquet"), "--json"]
    outs = []
    for streets in ("edges.parquet", "walk.graphml"):
        res = _run("lifecircle", "--streets", str(tmp_path / streets), *common)
        assert res.exit_code == 0, res.output
        outs.append(json.loads(res.stdout)["coverage"])
    assert outs[0] == outs[1]
    res = _run("lifecircle", str(bundled_pbf()), "--json")
    assert json.loads(res.stdout)["coverage"] == outs[0]


@pytest.mark.slow
def test_commands_on_ingested_catalog_datasets(workspace, helsinki_pbf):
    """Layers ingested with the catalog schemas (poi_id, building without use, levels, land_use)."""
    from citytwin.foundation.ingest import ingest

    for name, schema, layer in (("h_streets", "street_network", "streets"), ("h_pois", "poi", "pois"),
                                ("h_buildings", "building", "buildings"), ("h_landuse", "land_use", "landuse")):
        ingest(workspace, helsinki_pbf, dataset=name, schema=schema, layer=layer, classification="public")
    ws = ["-w", str(workspace.root)]
    res = _run("lifecircle", "--pois", "h_pois", "--buildings", "h_buildings", "--streets", "h_streets",
               "--name", "h_lc", *ws)
    assert res.exit_code == 0, res.output
    assert sorted(n for n, _ in workspace.catalog.inputs_of("h_lc", 1)) == ["h_buildings", "h_pois", "h_streets"]
    homes = workspace.read("h_lc")
    assert len(homes) > 300 and homes["home_id"].notna().all()
    res = _run("jobs", "--pois", "h_pois", "--buildings", "h_buildings", "--json", *ws)
    assert res.exit_code == 0, res.output
    res = _run("compare", "--pois", "h_pois", "--landuse", "h_landuse", "--add-cluster", "24.9505,60.1765,150,120,1",
               "--json", *ws)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):res.stdout.rindex("}") + 1])
    assert out["findings"]["new_centers"] == 1
