"""Catalog (A3): versions, lineage, DCAT export; the foundation CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.ingest import ingest
from citytwin.foundation.opendata import dcat_catalog, export_dataset
from citytwin.foundation.quality import quality_report
from citytwin.foundation.workspace import Workspace

#: one suite, two backends: each test runs on SQLite (the embedded default) and PostgreSQL (tests/pg.py)
pytestmark = pytest.mark.usefixtures("backend")

runner = CliRunner()


def _panel(tmp_path: Path, n: int = 3, name: str = "p.csv") -> Path:
    p = tmp_path / name
    rows = "\n".join(f"北京市,{2000 + i},{i * 10}" for i in range(n))
    p.write_text(f"城市,年份,地区生产总值_亿元\n{rows}\n", encoding="utf-8")
    return p


def test_versions_and_lineage(workspace: Workspace, tmp_path: Path) -> None:
    r1 = ingest(workspace, _panel(tmp_path, 3), dataset="panel", schema="city_panel", department="statistics",
                licence="CC-BY-4.0")
    r2 = ingest(workspace, _panel(tmp_path, 5, "p2.csv"), dataset="panel", schema="city_panel")
    assert (r1.version, r2.version) == (1, 2)
    info = workspace.info("panel")
    assert info.current_version == 2 and [v.rows_kept for v in info.versions] == [3, 5]
    assert info.department == "statistics" and info.licence == "CC-BY-4.0"
    assert len(workspace.read("panel", version=1)) == 3 and len(workspace.read("panel")) == 5
    c = info.current
    assert (c.time_min, c.time_max) == ("2000", "2004")
    assert c.source_sha256 and c.code_version
    derived = workspace.read("panel").groupby("city")["地区生产总值"].sum().reset_index()
    workspace.write_derived("gdp_total", derived, inputs=[("panel", 1), "panel"], parameters={"agg": "sum"})
    tree = workspace.catalog.lineage("gdp_total")
    assert tree["params"] == {"agg": "sum"}
    assert [(i["dataset"], i["version"]) for i in tree["inputs"]] == [("panel", 1), ("panel", 2)]
    assert tree["inputs"][0]["source"].endswith("p.csv")
    assert workspace.catalog.lineage("panel")["used_by"][0]["dataset"] == "gdp_total"


def test_dcat_and_export(workspace: Workspace, tmp_path: Path) -> None:
    ingest(workspace, _panel(tmp_path), dataset="pub", schema="city_panel", classification="public")
    ingest(workspace, _panel(tmp_path), dataset="secret", schema="city_panel", classification="sensitive")
    workspace.add_user("resident", "public")
    doc = dcat_catalog(workspace.as_user("resident"))
    assert [d["dct:identifier"] for d in doc["dcat:dataset"]] == ["pub"]
    # access rights are an IRI of the EU access-right vocabulary now (issue 12), no longer the bare word
    assert doc["dcat:dataset"][0]["dct:accessRights"] == {
        "@id": "http://publications.europa.eu/resource/authority/access-right/PUBLIC"}
    assert len(dcat_catalog(workspace)["dcat:dataset"]) == 2
    out = tmp_path / "pub.csv"
    assert export_dataset(workspace.as_user("resident"), "pub", out) == 3
    assert len(pd.read_csv(out)) == 3


def test_quality_report_outliers_and_completeness(workspace: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "q.csv"
    vals = [10, 11, 12, 10, 11, 500, None, 12]
    p.write_text("city,year,x\n" + "\n".join(f"C{i},2020,{'' if v is None else v}" for i, v in enumerate(vals)),
                 encoding="utf-8")
    ingest(workspace, p, dataset="q", schema="city_panel")
    rep = quality_report(workspace, "q")
    assert rep.completeness["x"] == pytest.approx(7 / 8)
    assert rep.missing["x"] == 1
    out = next(o for o in rep.outliers if o["column"] == "x")
    # Tukey fences by hand: Q1 = 10.5, Q3 = 12 (linear interpolation), IQR = 1.5 -> [8.25, 14.25]
    assert (out["q1"], out["q3"]) == (pytest.approx(10.5), pytest.approx(12.0))
    assert out["count"] == 1 and out["examples"] == [500]
    assert rep.duplicate_keys == 0


def test_cli_end_to_end(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    r = runner.invoke(app, ["init", str(ws)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["ingest", str(_panel(tmp_path)), "-d", "panel", "-s", "city_panel", "-w", str(ws)])
    assert r.exit_code == 0, r.output
    assert "3 kept" in r.output
    r = runner.invoke(app, ["catalog", "list", "-w", str(ws), "--json"])
    assert json.loads(r.stdout)[0]["rows"] == 3
    r = runner.invoke(app, ["catalog", "show", "panel", "-w", str(ws), "--json"])
    cols = {c["name"]: c for c in json.loads(r.stdout)["versions"][0]["columns"]}
    assert cols["地区生产总值"]["unit"] == "CNY" and cols["地区生产总值"]["source_unit"] == "亿元"
    r = runner.invoke(app, ["quality", "panel", "-w", str(ws), "--json"])
    assert json.loads(r.stdout)["rows"] == 3
    r = runner.invoke(app, ["catalog", "lineage", "panel", "-w", str(ws), "--json"])
    assert json.loads(r.stdout)["dataset"] == "panel"
    r = runner.invoke(app, ["catalog", "export", "-w", str(ws)])
    assert json.loads(r.stdout)["@type"] == "dcat:Catalog"
    r = runner.invoke(app, ["user", "add", "bob", "--role", "public", "-w", str(ws)])
    assert r.exit_code == 0
    r = runner.invoke(app, ["catalog", "list", "-w", str(ws), "--json", "--user", "bob"])
    assert json.loads(r.stdout) == []  # internal dataset hidden from the public role
    r = runner.invoke(app, ["audit", "-w", str(ws), "--json"])
    assert any(e["action"] == "ingest" or e["action"] == "write" for e in json.loads(r.stdout))


def test_cli_bad_input_clear_error(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    runner.invoke(app, ["init", str(ws)])
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [{"type": "Feat', encoding="utf-8")
    r = runner.invoke(app, ["ingest", str(bad), "-d", "b", "-s", "admin_boundary", "-w", str(ws)])
    assert r.exit_code == 2
    assert "bad.geojson" in r.output and "truncated" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["ingest", str(bad), "-d", "b", "-s", "table"])
    assert r.exit_code == 2 and "no workspace given" in r.output
    r = runner.invoke(app, ["catalog", "show", "nope", "-w", str(ws)])
    assert r.exit_code == 2 and "no dataset named 'nope'" in r.output
    r = runner.invoke(app, ["ingest", str(_panel(tmp_path)), "-d", "p", "-s", "city_panel", "--unit", "oops",
                            "-w", str(ws)])
    assert r.exit_code == 2 and "COLUMN=UNIT" in r.output


def _strict_json(text: str):  # type: ignore[no-untyped-def]
    """Parse JSON as a strict parser would: bare NaN / Infinity are errors."""
    def bad(c: str) -> None:
        raise ValueError(f"not JSON: {c}")
    return json.loads(text, parse_constant=bad)


def test_json_output_is_strict_json_errors_included(tmp_path: Path) -> None:
    """`quarantine --json` once printed a bare NaN (a duplicate key's missing raw record); an error
    under --json is one JSON object on stdout (exit code 2), not red text."""
    ws = tmp_path / "ws"
    runner.invoke(app, ["init", str(ws)])
    p = tmp_path / "d.csv"
    p.write_text("城市,年份,地区生产总值_亿元\n北京市,2000,10\n北京市,2000,20\n上海市,2001,30\n", encoding="utf-8")
    r = runner.invoke(app, ["ingest", str(p), "-d", "d", "-s", "city_panel", "-w", str(ws)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["quarantine", "d", "-w", str(ws), "--json"])
    assert r.exit_code == 0, r.output
    q = _strict_json(r.stdout)
    assert q["total"] == 1
    rec = q["records"][0]
    assert rec["row"] == 2 and rec["reason"].startswith("duplicate key") and rec["record"] is None
    r = runner.invoke(app, ["catalog", "show", "nope", "-w", str(ws), "--json"])
    assert r.exit_code == 2
    err = _strict_json(r.stdout)
    assert err["type"] == "NotFoundError" and "no dataset named 'nope'" in err["error"]
    r = runner.invoke(app, ["ingest", str(p), "-d", "p", "-s", "city_panel", "--unit", "oops", "-w", str(ws),
                            "--json"])
    err = _strict_json(r.stdout)
    assert r.exit_code == 2 and "COLUMN=UNIT" in err["error"] and err["hint"] == "e.g. --unit CO=µg/m³"
