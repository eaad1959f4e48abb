"""Catalog versions (issue 12): identical re-ingest is a no-op, an all-quarantined ingest is not
promoted, "used by" names only the version used, stale derived datasets are flagged; DCAT with
IRIs, absolute URLs, an ``@id`` per dataset and typed dates."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest import ingest
from citytwin.foundation.opendata import dcat_catalog
from citytwin.foundation.workspace import Workspace

#: one suite, two backends: each test runs on SQLite (the embedded default) and PostgreSQL (tests/pg.py)
pytestmark = pytest.mark.usefixtures("backend")

runner = CliRunner()


def _panel(tmp_path: Path, n: int = 3, name: str = "p.csv") -> Path:
    p = tmp_path / name
    rows = "\n".join(f"北京市,{2000 + i},{i * 10}" for i in range(n))
    p.write_text(f"城市,年份,地区生产总值_亿元\n{rows}\n", encoding="utf-8")
    return p


def _all_bad(tmp_path: Path) -> Path:
    p = tmp_path / "bad.csv"
    p.write_text("城市,年份,地区生产总值_亿元\n北京市,两千,1\n上海市,二〇〇一,2\n", encoding="utf-8")
    return p


def test_identical_reingest_is_a_noop_with_a_note(workspace: Workspace, tmp_path: Path) -> None:
    p = _panel(tmp_path)
    r1 = ingest(workspace, p, dataset="panel", schema="city_panel")
    copy = tmp_path / "copy_of_p.csv"
    copy.write_bytes(p.read_bytes())
    r2 = ingest(workspace, copy, dataset="panel", schema="city_panel")
    assert (r1.version, r2.version) == (1, 1)
    assert any("identical to version 1" in n for n in r2.notes)
    info = workspace.catalog.get("panel")
    assert [v.version for v in info.versions] == [1] and info.current_version == 1
    assert not (workspace.root / "data" / "panel" / "v2").exists()
    assert list((workspace.root / "tmp").iterdir()) == []
    last = workspace.catalog.audit_log("panel", limit=1)[0]
    assert last["action"] == "write" and last["detail"].startswith("no-op")
    # other content, or the same file with other options, is a new version
    assert ingest(workspace, _panel(tmp_path, 4, "p4.csv"), dataset="panel", schema="city_panel").version == 2
    assert ingest(workspace, p, dataset="panel", schema="city_panel").version == 3  # differs from current v2
    assert ingest(workspace, p, dataset="panel", schema="city_panel").version == 3  # now identical to v3
    # options are compared as given (even one without effect on this file, such as h3)
    assert ingest(workspace, p, dataset="panel", schema="city_panel", h3=False).version == 4
    assert ingest(workspace, p, dataset="panel", schema="city_panel", h3=False, classification="public").version == 5


def test_all_quarantined_is_not_promoted(workspace: Workspace, tmp_path: Path) -> None:
    ingest(workspace, _panel(tmp_path), dataset="panel", schema="city_panel")
    r = ingest(workspace, _all_bad(tmp_path), dataset="panel", schema="city_panel")
    assert (r.rows_kept, r.rows_quarantined, r.version) == (0, 2, 2)
    assert any("not made current" in n for n in r.notes)
    info = workspace.catalog.get("panel")
    assert info.current_version == 1 and [v.version for v in info.versions] == [1, 2]
    assert len(workspace.read("panel")) == 3
    q = workspace.quarantine("panel", 2)
    assert len(q) == 2 and set(q["field"]) == {"year"}


def test_all_quarantined_new_dataset_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"all 2 record\(s\) were quarantined.*year"):
        ingest(workspace, _all_bad(tmp_path), dataset="fresh", schema="city_panel")
    assert not workspace.catalog.exists("fresh")
    assert not (workspace.root / "data" / "fresh").exists()
    r = runner.invoke(app, ["ingest", str(_all_bad(tmp_path)), "-d", "fresh", "-s", "city_panel",
                            "-w", str(workspace.root)])
    assert r.exit_code == 2 and "Traceback" not in r.output and "quarantined" in r.output


def _derive(ws: Workspace, version: int | None = None) -> None:
    df = ws.read("panel", version)
    ws.write_derived("gdp_total", df.groupby("city")["地区生产总值"].sum().reset_index(),
                     inputs=[("panel", version) if version else "panel"], parameters={"agg": "sum"})


def test_used_by_only_on_the_version_used_and_stale_flag(workspace: Workspace, tmp_path: Path) -> None:
    ingest(workspace, _panel(tmp_path), dataset="panel", schema="city_panel")
    _derive(workspace)  # built on panel v1
    assert workspace.stale("gdp_total") == []
    ingest(workspace, _panel(tmp_path, 5, "p5.csv"), dataset="panel", schema="city_panel")
    cat = workspace.catalog
    assert cat.lineage("panel", 1)["used_by"] == [{"dataset": "gdp_total", "version": 1}]
    assert cat.lineage("panel", 2)["used_by"] == []
    stale = [{"dataset": "panel", "used_version": 1, "current_version": 2}]
    assert workspace.stale("gdp_total") == stale
    assert cat.lineage("gdp_total")["stale"] == stale
    r = runner.invoke(app, ["catalog", "show", "gdp_total", "-w", str(workspace.root)])
    assert r.exit_code == 0 and "stale: built on panel v1; its current version is v2" in " ".join(r.output.split())
    r = runner.invoke(app, ["catalog", "show", "gdp_total", "-w", str(workspace.root), "--json"])
    assert json.loads(r.stdout)["stale"] == stale
    r = runner.invoke(app, ["catalog", "lineage", "gdp_total", "-w", str(workspace.root)])
    assert "stale" in r.output and "panel v1 (now v2)" in r.output
    r = runner.invoke(app, ["catalog", "lineage", "gdp_total", "-w", str(workspace.root), "--json"])
    assert json.loads(r.stdout)["stale"] == stale
    _derive(workspace)  # rebuilt on v2: up to date again
    assert workspace.stale("gdp_total") == [] and "stale" not in cat.lineage("gdp_total")
    assert cat.lineage("panel", 2)["used_by"] == [{"dataset": "gdp_total", "version": 2}]


# ---------------------------------------------------------------------------
# DCAT
# ---------------------------------------------------------------------------
XSD_FORMS = {"xsd:dateTime": datetime.fromisoformat, "xsd:date": date.fromisoformat,
             "xsd:gYear": lambda v: re.fullmatch(r"\d{4}", v) or (_ for _ in ()).throw(ValueError(v)),
             "xsd:nonNegativeInteger": lambda v: int(v) >= 0 or (_ for _ in ()).throw(ValueError(v))}


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    out = [(path, node)]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _walk(v, f"{path}[{i}]")
    return out


def _check_jsonld(doc: dict[str, Any]) -> None:
    """No rdflib in the environment: check what JSON-LD to RDF needs, by structure.

    Every prefixed key and type is declared in @context; every @id is an absolute IRI; every typed
    literal parses as its XSD type.
    """
    ctx = doc["@context"]
    for path, node in _walk(doc):
        if not isinstance(node, dict):
            continue
        for k in node:
            if k.startswith("@") or path.startswith("/@context"):
                continue
            assert ":" in k and k.split(":")[0] in ctx, f"{path}/{k}: undeclared prefix"
        if "@id" in node:
            u = urlparse(node["@id"])
            assert u.scheme in ("http", "https", "file") and (u.netloc or u.scheme == "file"), f"{path}: {node}"
        if "@type" in node and "@value" in node:
            t = node["@type"]
            if t in XSD_FORMS:
                XSD_FORMS[t](node["@value"])
            else:
                assert urlparse(t).scheme in ("http", "https"), f"{path}: untyped {t}"
        elif "@type" in node:
            assert node["@type"].split(":")[0] in ctx


def test_dcat_iris_urls_ids_and_typed_dates(workspace: Workspace, tmp_path: Path) -> None:
    ingest(workspace, _panel(tmp_path), dataset="panel", schema="city_panel", classification="public",
           licence="CC-BY-4.0", department="statistics")
    _derive(workspace)
    doc = dcat_catalog(workspace)
    _check_jsonld(doc)
    items = {d["dct:identifier"]: d for d in doc["dcat:dataset"]}
    p = items["panel"]
    base = workspace.root.as_uri() + "/"
    assert p["@id"] == base + "dataset/panel"
    assert p["dct:license"] == {"@id": "https://creativecommons.org/licenses/by/4.0/"}
    assert p["dct:accessRights"] == {"@id": "http://publications.europa.eu/resource/authority/access-right/PUBLIC"}
    assert items["gdp_total"]["dct:accessRights"]["@id"].endswith("/PUBLIC")
    assert p["dct:conformsTo"] == {"@id": base + "schema/city_panel"}
    assert p["dct:issued"]["@type"] == "xsd:dateTime"
    assert p["dct:temporal"]["dcat:startDate"] == {"@value": "2000", "@type": "xsd:gYear"}
    dist = p["dcat:distribution"][0]
    access_dir = Path(unquote(urlparse(dist["dcat:accessURL"]["@id"]).path))
    assert access_dir == workspace.root / "data" / "panel" / "v1" and access_dir.is_dir()
    files = [Path(unquote(urlparse(u["@id"]).path)) for u in dist["dcat:downloadURL"]]
    assert files and all(f.is_file() for f in files)
    assert int(dist["dcat:byteSize"]["@value"]) == sum(f.stat().st_size for f in files)
    assert items["gdp_total"]["prov:wasDerivedFrom"] == [{"@id": base + "dataset/panel/v1"}]
    assert len({d["@id"] for d in doc["dcat:dataset"]}) == 2
    # published under an http base: every IRI under it
    web = dcat_catalog(workspace, base="https://data.city.example/ws")
    _check_jsonld(web)
    assert web["dcat:dataset"][1]["@id"] == "https://data.city.example/ws/dataset/panel"
    assert web["dcat:dataset"][1]["dcat:distribution"][0]["dcat:accessURL"]["@id"] == \
        "https://data.city.example/ws/data/panel/v1/"
    with pytest.raises(InputError, match="not an absolute IRI"):
        dcat_catalog(workspace, base="data/ws")


def test_dcat_unknown_licence_and_sensitive(workspace: Workspace, tmp_path: Path) -> None:
    ingest(workspace, _panel(tmp_path), dataset="s", schema="city_panel", classification="sensitive",
           licence="城市数据共享协议")
    d = dcat_catalog(workspace)["dcat:dataset"][0]
    assert d["dct:license"] == {"@type": "dct:LicenseDocument", "rdfs:label": "城市数据共享协议"}
    assert d["dct:accessRights"]["@id"].endswith("/NON_PUBLIC")
    pd.testing.assert_series_equal(pd.Series([d["citytwin:classification"]]), pd.Series(["sensitive"]))
