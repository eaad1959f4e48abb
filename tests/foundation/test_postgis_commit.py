"""A spatial version is published to PostGIS at its catalog commit where serving is on (issue 19).

On the throw-away PostgreSQL 15 + PostGIS cluster of ``tests/pg.py``. A publish that fails at commit
(a real PostgreSQL error: a view in the way of the version's table) leaves the commit standing, says
why in the notes and an ``error`` audit row, and the version is published by its first bbox request.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pytest
from shapely.geometry import Point

from citytwin.foundation import postgis
from citytwin.foundation.ingest import ingest
from citytwin.foundation.workspace import Workspace

BOX = (116.40, 39.90, 116.41, 39.92)


@pytest.fixture()
def ws(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv(postgis.ENV_POSTGIS, "1")
    return Workspace.init(tmp_path / "ws", owner="admin", database=pg_url)


def _points(n: int = 50) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(5)
    x, y = 116.39 + rng.random(n) * 0.03, 39.89 + rng.random(n) * 0.04
    return gpd.GeoDataFrame({"kind": rng.choice(["a", "b"], n), "value": rng.random(n)},
                            geometry=[Point(a, b) for a, b in zip(x, y, strict=True)], crs=4326)


def _published_rows(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as con:
        return [(str(r[0]), int(r[1])) for r in
                con.execute(f"SELECT dataset, version FROM {postgis.SCHEMA}.published ORDER BY 1, 2").fetchall()]


def _audit(ws: Workspace, dataset: str) -> list[dict]:
    return [r for r in ws.catalog.audit_log(dataset) if r["action"] == "publish.postgis"]


def test_derived_version_is_published_at_commit(ws: Workspace) -> None:
    v = ws.write_derived("pts", _points(), inputs=[], parameters={})
    assert _published_rows(ws.catalog.url) == [("pts", v)]  # before any request
    rows = _audit(ws, "pts")
    assert [(r["outcome"], r["version"], r["rows"]) for r in rows] == [("ok", v, 50)]
    # what the bbox read gives from PostGIS is what DuckDB gives from the files
    pg = postgis.read_bbox(ws, "pts", v, BOX, "_fid")
    duck = ws.read("pts", bbox=BOX, position="_fid")
    assert len(pg) > 0
    assert pg["_fid"].tolist() == duck["_fid"].tolist()
    pd.testing.assert_frame_equal(pd.DataFrame(pg.drop(columns="geometry")), pd.DataFrame(duck.drop(columns="geometry")))
    # a second version is published at its own commit; a table without geometry is not
    v2 = ws.write_derived("pts", _points(20), inputs=[], parameters={})
    ws.write_derived("plain", pd.DataFrame({"a": [1, 2]}), inputs=[], parameters={})
    assert _published_rows(ws.catalog.url) == [("pts", v), ("pts", v2)]
    assert _audit(ws, "plain") == []


def test_ingested_layer_is_published_at_commit_and_said(ws: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "pois.csv"
    pd.DataFrame({"poi_id": [1, 2, 3], "name": ["a", "b", "c"], "category": ["school", "park", "hospital"],
                  "lon": [116.397, 116.404, 116.420], "lat": [39.908, 39.915, 39.930]}).to_csv(p, index=False)
    r = ingest(ws, p, dataset="pois", schema="poi")
    assert _published_rows(ws.catalog.url) == [("pois", r.version)]
    assert any(n.startswith(f"published to PostGIS as {postgis.SCHEMA}.") and "(3 rows)" in n for n in r.notes), r.notes


def test_serving_off_publishes_nothing(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(postgis.ENV_POSTGIS, "0")
    ws.write_derived("pts", _points(), inputs=[], parameters={})
    with psycopg.connect(ws.catalog.url) as con:
        assert con.execute("SELECT to_regclass(%s)", (f"{postgis.SCHEMA}.published",)).fetchone() == (None,)
    assert _audit(ws, "pts") == []


def test_failed_publish_keeps_the_commit_and_the_first_request_publishes(ws: Workspace) -> None:
    url = ws.catalog.url
    table = postgis.table_name("pts", 1)
    with psycopg.connect(url, autocommit=True) as con:  # a real PostgreSQL error at publish: a view in the way
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {postgis.SCHEMA}")
        con.execute(f'CREATE VIEW {postgis.SCHEMA}."{table}" AS SELECT 1 AS x')
    notes: list[str] = []
    v = ws.write_derived("pts", _points(), inputs=[], parameters={"notes": notes})
    assert v == 1 and ws.info("pts").current_version == 1 and len(ws.read("pts")) == 50  # the commit stands
    assert _published_rows(url) == []
    assert len(notes) == 1 and "publishing it to PostGIS failed" in notes[0] and "is not a table" in notes[0], notes
    assert "citytwin records publish-postgis pts" in notes[0]
    failed = _audit(ws, "pts")
    assert [(r["outcome"], r["version"]) for r in failed] == [("error", 1)]
    assert failed[0]["detail"].startswith("at commit:") and "is not a table" in failed[0]["detail"]
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f'DROP VIEW {postgis.SCHEMA}."{table}"')
    got = postgis.read_bbox(ws, "pts", 1, BOX, "_fid")  # the first request publishes it
    assert _published_rows(url) == [("pts", 1)]
    assert got["_fid"].tolist() == ws.read("pts", bbox=BOX, position="_fid")["_fid"].tolist()
    assert [r["outcome"] for r in _audit(ws, "pts")] == ["ok", "error"]  # newest first


def test_switched_on_with_sqlite_records_is_said_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(postgis.ENV_POSTGIS, "1")
    monkeypatch.delenv("CITYTWIN_DATABASE", raising=False)
    w = Workspace.init(tmp_path / "lite", owner="admin")
    notes: list[str] = []
    assert w.write_derived("pts", _points(), inputs=[], parameters={"notes": notes}) == 1
    assert len(notes) == 1 and "records are not on PostgreSQL" in notes[0], notes
    assert [r["outcome"] for r in _audit(w, "pts")] == ["error"]
