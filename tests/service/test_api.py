"""The operations center's API over a real workspace: collections, items, tiles, catalog, sign-in,
access control (403 on a sensitive dataset, masked personal fields) and the audit of every request."""

from __future__ import annotations

import io
import math

import geopandas as gpd
import mapbox_vector_tile
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from shapely.affinity import affine_transform
from shapely.geometry import box, shape
from tests.conftest import served
from tests.service.conftest import ServiceWorkspace

from citytwin.service.tiles import tile_of

#: one suite, two backends: the API over a workspace whose records are in SQLite, then in PostgreSQL
pytestmark = pytest.mark.parametrize("service_backend", ["sqlite", "postgresql"], indirect=True, scope="session")

WORLD = 20037508.342789244


def test_collections_follow_the_role(client: TestClient, service_ws: ServiceWorkspace) -> None:
    ids = {role: {c["id"] for c in client.get("/collections", headers=service_ws.headers(role)).json()["collections"]}
           for role in ("admin", "viewer", "public")}
    assert ids["admin"] == {"helsinki_buildings", "helsinki_pois", "incidents", "secret_sites"}
    assert ids["viewer"] == {"helsinki_buildings", "helsinki_pois", "incidents"}
    assert ids["public"] == {"helsinki_buildings", "helsinki_pois"}
    c = client.get("/collections/helsinki_buildings", headers=service_ws.headers("viewer")).json()
    assert c["itemType"] == "feature" and c["geometry"] == "geometry"
    assert c["extent"]["spatial"]["bbox"][0] == service_ws.ws.info("helsinki_buildings").current.extent


@pytest.mark.parametrize("path", ["/collections/secret_sites", "/collections/secret_sites/items",
                                  "/collections/secret_sites/items/0", "/catalog/secret_sites",
                                  "/catalog/secret_sites/quality", "/catalog/secret_sites/lineage",
                                  "/tiles/secret_sites/0/0/0.mvt", "/tiles/secret_sites.json"])
def test_sensitive_dataset_is_403_without_clearance(client: TestClient, service_ws: ServiceWorkspace,
                                                    path: str) -> None:
    for role in ("viewer", "analyst", "integrator", "public"):  # the analyst is not of the owning department
        r = client.get(path, headers=service_ws.headers(role))
        assert r.status_code == 403, (role, r.text)
        assert r.json()["title"] == "Forbidden" and "secret_sites" in r.json()["detail"]
    assert client.get(path, headers=service_ws.headers("steward")).status_code == 200


def test_personal_fields_are_masked(client: TestClient, service_ws: ServiceWorkspace) -> None:
    def phones(role: str) -> list[str]:
        r = client.get("/collections/incidents/items?limit=5", headers=service_ws.headers(role))
        assert r.status_code == 200
        return [f["properties"]["phone"] for f in r.json()["features"]]

    clear = phones("admin")
    assert clear == [f"1380013{i:04d}" for i in range(5)]
    masked = phones("viewer")
    assert all(m != c for m, c in zip(masked, clear, strict=True))
    # the same masking as Workspace.read for that user
    assert masked == service_ws.ws.as_user("vera").read("incidents", limit=5)["phone"].tolist()
    csv = client.get("/collections/incidents/items?limit=5&f=csv", headers=service_ws.headers("viewer"))
    assert pd.read_csv(io.StringIO(csv.text), dtype=str)["phone"].tolist() == masked
    # a masked column is left out of tiles
    z, (x, y) = 14, tile_of(24.935, 60.1675, 14)
    admin_tile = mapbox_vector_tile.decode(
        client.get(f"/tiles/incidents/{z}/{x}/{y}.mvt", headers=service_ws.headers("admin")).content)
    viewer = client.get(f"/tiles/incidents/{z}/{x}/{y}.mvt", headers=service_ws.headers("viewer"))
    viewer_tile = mapbox_vector_tile.decode(viewer.content)
    assert "phone" in admin_tile["incidents"]["features"][0]["properties"]
    assert viewer_tile["incidents"]["features"]
    assert all("phone" not in f["properties"] for f in viewer_tile["incidents"]["features"])


def test_every_request_is_audited(client: TestClient, service_ws: ServiceWorkspace) -> None:
    cat = service_ws.ws.catalog
    before = max(r["id"] for r in cat.audit_log(limit=1))
    paths = ["/collections", "/collections/helsinki_pois/items?limit=1", "/tiles/helsinki_pois/0/0/0.mvt",
             "/catalog/helsinki_pois/lineage", "/processes", "/collections/secret_sites"]
    for p in paths:
        client.get(p, headers=service_ws.headers("viewer"))
    client.get("/collections")  # no token
    client.get("/collections", headers={"Authorization": "Bearer nope"})
    client.get("/ngsi-ld/v1/entities", headers=service_ws.headers("viewer"))
    rows = [r for r in cat.audit_log(limit=500) if r["id"] > before]
    req = [r for r in rows if r["action"] in ("api.read", "api.write", "twin.read", "twin.write")]
    # one row per request, written by the AuditMiddleware with the status (issue 13): "GET /path?q -> 200"
    details = [r["detail"].split(" -> ")[0].split("?")[0] for r in reversed(req)]
    assert all(" -> " in r["detail"] for r in req)
    assert [d.split(":")[0] for d in details] == [f"GET {p.split('?')[0]}" for p in paths] + [
        "GET /collections", "GET /collections", "GET /ngsi-ld/v1/entities"]
    assert [r["outcome"] for r in reversed(req)][-3:] == ["unauthenticated", "unauthenticated", "ok"]
    # dataset reads add their own rows, as the caller; the refused one is denied
    assert any(r["action"] == "read" and r["dataset"] == "helsinki_pois" and r["user"] == "vera" for r in rows)
    assert any(r["action"] == "read.stats" and r["dataset"] == "helsinki_pois" for r in rows)


def test_items_bbox_datetime_and_paging(client: TestClient, service_ws: ServiceWorkspace) -> None:
    h = service_ws.headers("admin")
    bb = (24.935, 60.165, 24.945, 60.172)
    ref = service_ws.ws.read("helsinki_buildings")
    want = set(ref.index[ref.geometry.intersects(box(*bb)).to_numpy()].tolist())
    assert 5 < len(want) < len(ref)
    got: list[int] = []
    url: str | None = f"/collections/helsinki_buildings/items?bbox={','.join(map(str, bb))}&limit=7"
    pages = 0
    while url:
        body = client.get(url, headers=h).json()
        assert body["numberMatched"] == len(want)
        got += [f["id"] for f in body["features"]]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
        pages += 1
    assert sorted(got) == sorted(want) and len(got) == len(set(got)) and pages == math.ceil(len(want) / 7)
    # without filters: only the first records are read; the count is the version's
    page = client.get("/collections/helsinki_buildings/items?limit=5&offset=20", headers=h).json()
    assert page["numberMatched"] == len(ref) and [f["id"] for f in page["features"]] == list(range(20, 25))
    assert [f["properties"]["building_id"] for f in page["features"]] == ref["building_id"].iloc[20:25].tolist()
    one = client.get(f"/collections/helsinki_buildings/items/{got[0]}", headers=h).json()
    assert shape(one["geometry"]).equals_exact(ref.geometry.iloc[got[0]], 1e-9)
    assert one["properties"]["building_id"] == ref["building_id"].iloc[got[0]]
    # datetime: incidents are 6 h apart from 2024-03-01T00:00Z
    r = client.get("/collections/incidents/items?datetime=2024-03-02T00:00:00Z/2024-03-03T00:00:00Z", headers=h)
    assert [f["properties"]["incident"] for f in r.json()["features"]] == [f"i{i:02d}" for i in range(4, 9)]
    r = client.get("/collections/incidents/items?datetime=2024-03-08T00:00:00Z/..&limit=2&offset=2", headers=h)
    assert r.json()["numberMatched"] == 2 and r.json()["features"] == []
    assert [link["rel"] for link in r.json()["links"]] == ["self", "prev"]


@pytest.mark.parametrize("query", ["bbox=1,2,3", "bbox=a,b,c,d", "bbox=3,0,1,1", "datetime=yesterday",
                                   "datetime=2024-02-01/2024-01-01", "f=xml", "limit=0", "offset=-1"])
def test_bad_queries_are_400(client: TestClient, service_ws: ServiceWorkspace, query: str) -> None:
    r = client.get(f"/collections/incidents/items?{query}", headers=service_ws.headers("admin"))
    assert r.status_code in (400, 422), r.text
    assert r.json()["detail"]


def test_unknown_dataset_is_404(client: TestClient, service_ws: ServiceWorkspace) -> None:
    for p in ("/collections/nope", "/collections/nope/items", "/tiles/nope/1/0/0.mvt", "/catalog/nope"):
        r = client.get(p, headers=service_ws.headers("admin"))
        assert r.status_code == 404 and r.json()["title"] == "NotFound", p


def test_tile_of_a_known_building_decodes_to_it(client: TestClient, service_ws: ServiceWorkspace) -> None:
    ref = service_ws.ws.read("helsinki_buildings", where=[("building_id", "=", "8033120")])
    assert len(ref) == 1
    poly = ref.geometry.iloc[0]
    z = 15  # the whole building lies in this tile (at z16 it is clipped at the tile's buffer)
    x, y = tile_of(poly.centroid.x, poly.centroid.y, z)
    r = client.get(f"/tiles/helsinki_buildings/{z}/{x}/{y}.mvt", headers=service_ws.headers("viewer"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    layer = mapbox_vector_tile.decode(r.content)["helsinki_buildings"]
    assert layer["extent"] == 4096
    feats = [f for f in layer["features"] if f["properties"].get("building_id") == "8033120"]
    assert len(feats) == 1 and feats[0]["properties"]["building"] == ref["building"].iloc[0]
    # tile coordinates (y up) -> web mercator; compare with the stored polygon, to within two tile pixels
    size = 2 * WORLD / 2 ** z
    minx, miny = -WORLD + x * size, WORLD - (y + 1) * size
    g = shape(feats[0]["geometry"])
    merc = affine_transform(g, [size / 4096, 0, 0, size / 4096, minx, miny])
    want = gpd.GeoSeries([poly], crs="EPSG:4326").to_crs("EPSG:3857").iloc[0]
    pixel = size / 4096
    assert box(minx, miny, minx + size, miny + size).contains(want)
    assert max(abs(a - b) for a, b in zip(merc.bounds, want.bounds, strict=True)) < 2 * pixel
    assert merc.symmetric_difference(want).area / want.area < 0.02
    # personal data (a detected e-mail column) is left out for the viewer
    assert all("email" not in f["properties"] for f in layer["features"])


def test_tile_etag_cache_and_tilejson(client: TestClient, service_ws: ServiceWorkspace) -> None:
    h = service_ws.headers("admin")
    url = "/tiles/secret_sites/12/2331/1185.mvt"
    a = client.get(url, headers=h)
    assert a.status_code == 200 and '"secret_sites-v' in a.headers["etag"]
    assert client.get(url, headers={**h, "If-None-Match": a.headers["etag"]}).status_code == 304
    b = client.get(url, headers=h)
    assert b.content == a.content and b.headers["etag"] == a.headers["etag"]
    tj = client.get("/tiles/helsinki_buildings.json", headers=h).json()
    info = service_ws.ws.info("helsinki_buildings")
    assert tj["bounds"] == info.current.extent and tj["minzoom"] == 0 and tj["maxzoom"] == 22
    assert tj["tiles"][0].endswith("/tiles/helsinki_buildings/{z}/{x}/{y}.mvt")
    assert client.get("/tiles/helsinki_buildings/3/8/0.mvt", headers=h).status_code == 400  # x beyond 2^z - 1
    assert client.get("/tiles/helsinki_buildings/23/0/0.mvt", headers=h).status_code in (400, 422)


def test_new_version_gets_a_new_etag(service_ws: ServiceWorkspace, tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.service.conftest import _incidents

    from citytwin.foundation.workspace import Workspace
    from citytwin.service.server import create_server_app

    ws = Workspace.init(tmp_path_factory.mktemp("etag") / "ws", owner="admin")
    ws.write_derived("pts", _incidents(), inputs=[], parameters={}, classification="public")
    _, tok = ws.catalog.issue_token("admin")
    h = {"Authorization": f"Bearer {tok}"}
    z, (x, y) = 14, tile_of(24.935, 60.1675, 14)
    with served(create_server_app(ws)) as c:
        a = c.get(f"/tiles/pts/{z}/{x}/{y}.mvt", headers=h)
        n_a = len(mapbox_vector_tile.decode(a.content)["pts"]["features"])
        ws.write_derived("pts", _incidents().iloc[:3], inputs=[], parameters={}, classification="public")
        b = c.get(f"/tiles/pts/{z}/{x}/{y}.mvt", headers={**h, "If-None-Match": a.headers["etag"]})
        assert b.status_code == 200 and b.headers["etag"] != a.headers["etag"]
        assert len(mapbox_vector_tile.decode(b.content)["pts"]["features"]) == 3 < n_a


def test_catalog_quality_lineage(client: TestClient, service_ws: ServiceWorkspace) -> None:
    from citytwin.foundation.quality import quality_report

    h = service_ws.headers("viewer")
    rec = client.get("/catalog/helsinki_buildings", headers=h).json()
    assert rec["rows"] == service_ws.ws.info("helsinki_buildings").current.rows_kept
    q = client.get("/catalog/helsinki_buildings/quality", headers=h).json()
    ref = quality_report(service_ws.ws.as_user("vera"), "helsinki_buildings")
    assert q["score"] == pytest.approx(ref.score) and q["rows_quarantined"] == ref.rows_quarantined
    qq = client.get("/catalog/helsinki_buildings/quarantine", headers=h).json()
    assert qq["rows"] == ref.rows_quarantined == sum(qq["reasons"].values())
    lin = client.get("/catalog/helsinki_buildings/lineage", headers=h).json()
    assert lin["dataset"] == "helsinki_buildings" and lin["kind"] == "ingested"
    assert [d["name"] for d in client.get("/catalog", headers=h).json()["datasets"]] == [
        d.name for d in service_ws.ws.as_user("vera").datasets()]


def test_login(client: TestClient, service_ws: ServiceWorkspace) -> None:
    r = client.post("/auth/login", json={"user": "resident", "token": service_ws.tokens["public"]})
    assert r.status_code == 200
    body = r.json()
    assert body["role"] == "public" and set(body["datasets"]) == {"helsinki_buildings", "helsinki_pois"}
    assert body["jobs"] is False and body["twin"]["read"] is False
    assert client.post("/auth/login", json={"user": "admin", "token": service_ws.tokens["public"]}).status_code == 401
    assert client.post("/auth/login", json={"user": "admin", "token": "x"}).status_code == 401
    r = client.post("/auth/login", json={"user": "admin"})
    assert r.status_code == 422 and r.json()["title"] == "UnprocessableEntity" and "token" in r.json()["detail"]
    # a parameter of the wrong form: 422 in the API's error style, naming the parameter
    r = client.get("/reports/economy?f=doc", headers=service_ws.headers("admin"))
    assert r.status_code == 422 and r.json()["detail"].startswith("query f: ") and r.json()["errors"][0]["loc"] == [
        "query", "f"]
    me = client.get("/auth/me", headers=service_ws.headers("integrator")).json()
    assert me["user"] == "ops" and me["jobs"] is True
    log = service_ws.ws.catalog.audit_log(limit=50)
    assert any(r["action"] == "api.login" and r["outcome"] == "ok" and r["user"] == "resident" for r in log)


def test_web_app_is_served(client: TestClient) -> None:
    r = client.get("/", follow_redirects=True)
    assert r.status_code == 200 and "citytwin" in r.text
    assert client.get("/health").status_code == 200
