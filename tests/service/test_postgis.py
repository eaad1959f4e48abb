"""Features and tiles served from PostGIS (issue 19) on the real test cluster, against the DuckDB path.

The workspace of the API tests (records on PostgreSQL with PostGIS) is served twice in the same
app: ``CITYTWIN_POSTGIS=0`` (DuckDB over the GeoParquet files, today's path) and ``=1`` (the
version's PostGIS table). Items with a bbox, tiles, refusals and masking must be the same.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import mapbox_vector_tile
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box, shape
from tests.service.conftest import ServiceWorkspace

from citytwin.foundation import postgis
from citytwin.foundation.workspace import Workspace
from citytwin.service.tiles import tile_of

pytestmark = pytest.mark.parametrize("service_backend", ["postgresql"], indirect=True, scope="session")

BBOX = "24.935,60.165,24.945,60.172"


@pytest.fixture()
def engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    """Switches the engine: ``engines["use"]("postgis" | "duckdb")``."""
    def use(name: str) -> None:
        monkeypatch.setenv(postgis.ENV_POSTGIS, "1" if name == "postgis" else "0")

    yield {"use": use}


def _get(client: TestClient, engines: dict[str, object], engine: str, url: str, h: dict[str, str]) -> object:
    engines["use"](engine)  # type: ignore[operator]
    return client.get(url, headers=h)


@pytest.fixture()
def own_ws(pg_url: str, tmp_path: Path, service_backend: str | None) -> Workspace:
    """A workspace of its own (records in a fresh PostGIS database), for tests that add datasets: the
    session's API workspace keeps the datasets test_api.py expects."""
    ws = Workspace.init(tmp_path / "own", owner="admin", database=pg_url)
    ws.add_user("vera", "viewer")
    return ws


def _table_exists(service_ws: ServiceWorkspace | Workspace, dataset: str) -> bool:
    import psycopg

    ws = service_ws.ws if isinstance(service_ws, ServiceWorkspace) else service_ws
    v = ws.info(dataset).current_version
    with psycopg.connect(ws.catalog.url) as con:
        r = con.execute("SELECT to_regclass(%s)", (f'{postgis.SCHEMA}."{postgis.table_name(dataset, v)}"',)).fetchone()
    return r is not None and r[0] is not None


def test_not_configured_is_todays_path(client: TestClient, service_ws: ServiceWorkspace,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(postgis.ENV_POSTGIS, raising=False)
    assert postgis.configured(service_ws.ws) is None
    cat = service_ws.ws.catalog
    before = max(r["id"] for r in cat.audit_log(limit=1))
    r = client.get(f"/collections/helsinki_pois/items?bbox={BBOX}", headers=service_ws.headers("viewer"))
    assert r.status_code == 200 and r.json()["numberMatched"] > 0
    rows = [x for x in cat.audit_log(limit=50) if x["id"] > before]
    reads = [x for x in rows if x["action"] == "read" and x["dataset"] == "helsinki_pois"]
    assert reads and all("engine=postgis" not in (x["detail"] or "") for x in reads)
    assert not any(x["action"] == "publish.postgis" for x in rows)
    assert not _table_exists(service_ws, "helsinki_pois")


def test_items_with_bbox_equal_the_duckdb_path(client: TestClient, service_ws: ServiceWorkspace,
                                               engines: dict[str, object]) -> None:
    for dataset, role in (("helsinki_buildings", "admin"), ("helsinki_buildings", "viewer"), ("incidents", "viewer"),
                          ("incidents", "admin"), ("helsinki_pois", "analyst")):
        url = f"/collections/{dataset}/items?bbox={BBOX}&limit=10000"
        h = service_ws.headers(role)
        duck = _get(client, engines, "duckdb", url, h).json()  # type: ignore[attr-defined]
        pg = _get(client, engines, "postgis", url, h).json()  # type: ignore[attr-defined]
        assert duck["numberMatched"] > 0, dataset
        assert pg["numberMatched"] == duck["numberMatched"]
        assert [f["id"] for f in pg["features"]] == [f["id"] for f in duck["features"]]
        assert [f["properties"] for f in pg["features"]] == [f["properties"] for f in duck["features"]]
        for a, b in zip(pg["features"], duck["features"], strict=True):
            assert shape(a["geometry"]).equals_exact(shape(b["geometry"]), 0), (dataset, a["id"])
        # CSV too (same frame)
        csv_d = _get(client, engines, "duckdb", url + "&f=csv", h).text  # type: ignore[attr-defined]
        csv_p = _get(client, engines, "postgis", url + "&f=csv", h).text  # type: ignore[attr-defined]
        assert pd.read_csv(io.StringIO(csv_p), dtype=str).equals(pd.read_csv(io.StringIO(csv_d), dtype=str))
    assert _table_exists(service_ws, "helsinki_buildings")
    # the bbox went to PostGIS: the read row says so, and the records in the box are those GeoPandas finds
    reads = [x for x in service_ws.ws.catalog.audit_log(limit=200) if x["action"] == "read"
             and x["dataset"] == "helsinki_buildings" and "engine=postgis" in (x["detail"] or "")]
    assert reads
    ref = service_ws.ws.read("helsinki_buildings")
    want = ref.index[ref.geometry.intersects(box(*map(float, BBOX.split(",")))).to_numpy()].tolist()
    got = _get(client, engines, "postgis", f"/collections/helsinki_buildings/items?bbox={BBOX}&limit=10000",
               service_ws.headers("admin")).json()  # type: ignore[attr-defined]
    assert [f["id"] for f in got["features"]] == want


def test_personal_columns_masked_and_left_out_of_tiles(client: TestClient, service_ws: ServiceWorkspace,
                                                       engines: dict[str, object]) -> None:
    url = "/collections/incidents/items?bbox=24.9,60.1,25.0,60.2&limit=5"
    viewer = _get(client, engines, "postgis", url, service_ws.headers("viewer")).json()  # type: ignore[attr-defined]
    admin = _get(client, engines, "postgis", url, service_ws.headers("admin")).json()  # type: ignore[attr-defined]
    clear = [f["properties"]["phone"] for f in admin["features"]]
    assert clear == [f"1380013{i:04d}" for i in range(5)]
    masked = [f["properties"]["phone"] for f in viewer["features"]]
    assert masked == service_ws.ws.as_user("vera").read("incidents", limit=5)["phone"].tolist()
    assert all(m != c for m, c in zip(masked, clear, strict=True))
    z, (x, y) = 14, tile_of(24.935, 60.1675, 14)
    for engine in ("duckdb", "postgis"):
        t_admin = mapbox_vector_tile.decode(_get(client, engines, engine, f"/tiles/incidents/{z}/{x}/{y}.mvt",
                                                 service_ws.headers("admin")).content)  # type: ignore[attr-defined]
        t_viewer = mapbox_vector_tile.decode(_get(client, engines, engine, f"/tiles/incidents/{z}/{x}/{y}.mvt",
                                                  service_ws.headers("viewer")).content)  # type: ignore[attr-defined]
        assert "phone" in t_admin["incidents"]["features"][0]["properties"], engine
        assert t_viewer["incidents"]["features"], engine
        assert all("phone" not in f["properties"] for f in t_viewer["incidents"]["features"]), engine


@pytest.mark.parametrize("path", ["/collections/secret_sites/items?bbox=24,60,26,61", "/tiles/secret_sites/0/0/0.mvt",
                                  "/tiles/secret_sites/12/2331/1185.mvt"])
def test_no_clearance_is_403_on_postgis_too(client: TestClient, service_ws: ServiceWorkspace,
                                            engines: dict[str, object], path: str) -> None:
    cat = service_ws.ws.catalog

    def audited(engine: str, role: str) -> list[tuple[str, str, str | None]]:
        before = max(r["id"] for r in cat.audit_log(limit=1))
        r = _get(client, engines, engine, path, service_ws.headers(role))
        assert r.status_code == 403, (engine, role, r.text)  # type: ignore[attr-defined]
        return sorted((x["action"], x["outcome"], x["dataset"]) for x in cat.audit_log(limit=20) if x["id"] > before)

    for role in ("viewer", "analyst", "public"):
        rows = audited("postgis", role)
        assert rows == audited("duckdb", role)  # the same audit rows as the DuckDB path
        assert any(outcome == "denied" for _a, outcome, _d in rows) and not any(a == "publish.postgis" for a, *_ in rows)
    assert _get(client, engines, "postgis", path, service_ws.headers("steward")).status_code == 200  # type: ignore[attr-defined]


def test_tile_of_a_known_building_equals_the_duckdb_tile(client: TestClient, service_ws: ServiceWorkspace,
                                                         engines: dict[str, object],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[int, int, int]] = []
    real = postgis.tile

    def spy(ws: object, dataset: str, version: int, props: list[str], z: int, x: int, y: int, *a: object,
            **kw: object) -> bytes:
        made.append((z, x, y))
        return real(ws, dataset, version, props, z, x, y, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(postgis, "tile", spy)
    ref = service_ws.ws.read("helsinki_buildings", where=[("building_id", "=", "8033120")])
    poly = ref.geometry.iloc[0]
    z = 15
    x, y = tile_of(poly.centroid.x, poly.centroid.y, z)
    url = f"/tiles/helsinki_buildings/{z}/{x}/{y}.mvt"
    h = service_ws.headers("viewer")
    rd = _get(client, engines, "duckdb", url, h)
    rp = _get(client, engines, "postgis", url, h)
    assert rp.status_code == 200 and rp.headers["content-type"] == "application/vnd.mapbox-vector-tile"  # type: ignore[attr-defined]
    assert made == [(z, x, y)]  # made by PostGIS (the DuckDB tile was not reused from the cache)
    assert rp.headers["etag"] == rd.headers["etag"]  # type: ignore[attr-defined]
    assert _get(client, engines, "postgis", url, {**h, "If-None-Match": rp.headers["etag"]}).status_code == 304  # type: ignore[attr-defined]
    ld = mapbox_vector_tile.decode(rd.content)["helsinki_buildings"]  # type: ignore[attr-defined]
    lp = mapbox_vector_tile.decode(rp.content)["helsinki_buildings"]  # type: ignore[attr-defined]
    assert lp["extent"] == 4096
    fp = [f for f in lp["features"] if f["properties"].get("building_id") == "8033120"]
    fd = [f for f in ld["features"] if f["properties"].get("building_id") == "8033120"]
    assert len(fp) == 1 == len(fd)
    assert fp[0]["properties"] == fd[0]["properties"]
    assert fp[0]["properties"]["building"] == ref["building"].iloc[0]
    assert all("email" not in f["properties"] for f in lp["features"])
    # the same features, the same properties; geometry within a pixel (rounding of two implementations)
    key = "building_id"
    assert sorted(f["properties"][key] for f in lp["features"]) == sorted(f["properties"][key] for f in ld["features"])
    gp, gd = shape(fp[0]["geometry"]), shape(fd[0]["geometry"])
    assert max(abs(a - b) for a, b in zip(gp.bounds, gd.bounds, strict=True)) <= 1.0
    assert gp.symmetric_difference(gd).area / gd.area < 0.02


def test_publish_is_all_or_nothing_and_cli(own_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tests.conftest import CLI_ENV
    from tests.service.conftest import _incidents
    from typer.testing import CliRunner

    from citytwin.cli.main import app

    ws = own_ws
    ws.write_derived("pg_points", _incidents(), inputs=[], parameters={}, classification="public")
    real = postgis._csv_chunk
    calls: list[int] = []

    def failing(*args: object, **kw: object) -> bytes:
        calls.append(1)
        if len(calls) == 3:  # two batches of 10 are in the table by then
            raise OSError("disk full (test)")
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(postgis, "_csv_chunk", failing)
    with pytest.raises(OSError, match="disk full"):
        postgis.publish(ws, "pg_points", batch_rows=10)
    assert len(calls) == 3
    assert not _table_exists(ws, "pg_points")
    assert postgis.published(ws.catalog.url, "pg_points", ws.info("pg_points").current_version) is None
    monkeypatch.setattr(postgis, "_csv_chunk", real)
    runner = CliRunner()
    env = {**CLI_ENV, "CITYTWIN_DATABASE": ws.catalog.url}
    r = runner.invoke(app, ["records", "publish-postgis", "pg_points", "-w", str(ws.root), "--user", "admin", "--json"], env=env)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)["published"]
    assert out == [{"dataset": "pg_points", "version": 1, "table": f"{postgis.SCHEMA}.pg_points__v1", "rows": 30}]
    assert _table_exists(ws, "pg_points")
    # a table gone behind citytwin's back: a clear error (no traceback), audited
    import psycopg

    from citytwin.foundation.errors import CitytwinError

    with psycopg.connect(ws.catalog.url, autocommit=True) as con:
        con.execute(f'DROP TABLE {postgis.SCHEMA}."pg_points__v1"')
    monkeypatch.setenv(postgis.ENV_POSTGIS, "1")
    with pytest.raises(CitytwinError, match="cannot read dataset 'pg_points' from PostGIS"):
        postgis.read_bbox(ws, "pg_points", None, (24, 60, 25, 61), "_fid")
    last = ws.catalog.audit_log(limit=1)[0]
    assert (last["action"], last["outcome"], last["dataset"]) == ("read", "error", "pg_points")
    # a viewer may not publish; a non-spatial dataset is a clear error; both as JSON
    r = runner.invoke(app, ["records", "publish-postgis", "-w", str(ws.root), "--user", "vera", "--json"], env=env)
    assert r.exit_code == 2 and "may not publish" in json.loads(r.output)["error"]
    ws.write_derived("pg_table", pd.DataFrame({"a": [1]}), inputs=[], parameters={}, classification="public")
    r = runner.invoke(app, ["records", "publish-postgis", "pg_table", "-w", str(ws.root), "--user", "admin", "--json"], env=env)
    assert r.exit_code == 2 and "no geometry" in json.loads(r.output)["error"]


def test_switched_on_without_postgresql_is_a_clear_error(tmp_path: object, monkeypatch: pytest.MonkeyPatch,
                                                          service_backend: str | None) -> None:
    from pathlib import Path

    from citytwin.foundation.errors import CitytwinError
    from citytwin.foundation.workspace import Workspace

    monkeypatch.delenv("CITYTWIN_DATABASE", raising=False)
    ws = Workspace.init(Path(str(tmp_path)) / "ws", owner="admin")
    monkeypatch.setenv(postgis.ENV_POSTGIS, "1")
    with pytest.raises(CitytwinError, match="not on PostgreSQL"):
        postgis.configured(ws)
    monkeypatch.setenv(postgis.ENV_POSTGIS, "0")
    ws.set_setting("postgis", True)
    assert postgis.configured(ws) is None  # the environment wins


def test_values_read_back_exactly(own_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Floats (shortest text), empty vs missing text, times, booleans: PostGIS gives back the frame of
    Workspace.read, through the CSV load and through psycopg's rows (a nested column)."""
    import geopandas as gpd
    from pandas.testing import assert_frame_equal
    from shapely.geometry import Point

    ws = own_ws
    n = 6
    frame = gpd.GeoDataFrame({
        "f": [0.1 + 0.2, 1e-300, None, 1 / 3, -0.0, 123456789.123456789],
        "s": ['a,"b', None, "", " x ", "路口", "\\N"],
        "b": [True, False, None, True, False, True],
        "i": pd.array([1, None, 3, -4, 2**62, 0], dtype="Int64"),
        "t": pd.to_datetime(["2024-03-01T00:00:00.123456Z", None, "1999-12-31T23:59:59Z", "2024-01-01T00:00:00Z",
                             "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"], utc=True, format="ISO8601"),
    }, geometry=[Point(24.93 + 0.001 * i, 60.17) for i in range(n)], crs="EPSG:4326")
    monkeypatch.setenv(postgis.ENV_POSTGIS, "1")
    box_ = (24.0, 60.0, 25.0, 61.0)
    for name, extra in (("pg_exact", None), ("pg_nested", [{"k": i, "v": [i, i + 1]} for i in range(n)])):
        f = frame.copy()
        if extra is not None:
            f["nested"] = extra
        ws.write_derived(name, f, inputs=[], parameters={}, classification="public")
        want = ws.read(name, bbox=box_, position="_fid")
        got = postgis.read_bbox(ws, name, None, box_, "_fid")
        cols = [c for c in want.columns if c != "nested"]
        assert_frame_equal(got[cols], want[cols], check_exact=True)
        if extra is not None:
            assert got["nested"].to_json() == want["nested"].to_json()  # as the API writes it


def test_doctor_says_whether_postgis_can_serve(service_ws: ServiceWorkspace, tmp_path: object,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from citytwin.foundation.workspace import Workspace
    from citytwin.workflows.doctor import run_checks

    ws = service_ws.ws
    monkeypatch.setenv(postgis.ENV_POSTGIS, "0")
    assert not [c for c in run_checks(ws.root, database=ws.catalog.url) if c.name == "serving"]
    monkeypatch.setenv(postgis.ENV_POSTGIS, "1")
    postgis.publish(ws, "incidents")
    serving = [c for c in run_checks(ws.root, database=ws.catalog.url) if c.name == "serving"]
    assert len(serving) == 1 and serving[0].status == "ok" and "published" in serving[0].detail
    monkeypatch.delenv("CITYTWIN_DATABASE", raising=False)
    embedded = Workspace.init(Path(str(tmp_path)) / "ws2", owner="admin")
    bad = [c for c in run_checks(embedded.root) if c.name == "serving"]
    assert len(bad) == 1 and bad[0].status == "fail" and "not on PostgreSQL" in bad[0].detail
