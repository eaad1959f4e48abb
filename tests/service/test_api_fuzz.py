"""Every route of the operations center's OpenAPI, fuzzed with schemathesis (valid admin token,
bounded and derandomized examples): no request gets a 5xx.

The app serves its own small workspace (so what the fuzzer writes — twin entities, jobs, derived
datasets — stays there). The two SSE streams (alerts, observations; open until a limit) are left out: tests/twin and
tests/service/test_live.py cover them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from tests.service.conftest import _incidents

from citytwin.foundation.workspace import Workspace
from citytwin.service.app import close_app

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    from citytwin.service.server import create_server_app

    ws = Workspace.init(tmp_path_factory.mktemp("fuzz") / "ws", owner="admin")
    ws.write_derived("incidents", _incidents(), inputs=[], parameters={}, classification="internal")
    ws.write_derived("secret_sites", _incidents().iloc[:5], inputs=[], parameters={}, classification="sensitive")
    _, tok = ws.catalog.issue_token("admin", "fuzz")
    _seed_participation(ws)
    app = create_server_app(ws)
    yield app, {"Authorization": f"Bearer {tok}"}
    close_app(app)  # the fuzzer calls the app without its lifespan: its writers, jobs and runtime


def _seed_participation(ws: Workspace) -> None:
    """A city extent, a complaint and an open consultation with a comment (id 1 each: the routes'
    explicit examples), so that the participation routes are fuzzed past their 404s."""
    import json
    from datetime import UTC, datetime

    from citytwin.foundation.cases import CaseStore

    (ws.root / "participation.json").write_text(json.dumps({"bbox": [24.8, 60.1, 25.1, 60.3]}), encoding="utf-8")
    st = CaseStore.of(ws)
    st.open_case(description="a hole <b>here</b>", service_code="pothole", lat=60.17, lon=24.94,
                 reporter_phone="13812345678")
    cid = st.create_consultation("plan", starts=datetime(2000, 1, 1, tzinfo=UTC), ends=datetime(2100, 1, 1, tzinfo=UTC),
                                 questions=[{"kind": "vote", "text": "ok?", "options": ["yes", "no"]}])
    st.comment(cid, "admin", "first", geometry={"type": "Point", "coordinates": [24.94, 60.17]})
    st.verify_resident("admin")


@pytest.fixture()
def stack() -> Iterator[ExitStack]:
    with ExitStack() as st:
        yield st


@pytest.fixture(scope="module")
def api_schema(fuzz_env: tuple[FastAPI, dict[str, str]]) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_env[0]).exclude(
        path=["/twin/v1/alerts/stream", "/twin/v1/observations/stream"])


def test_no_server_errors(api_schema: Any, fuzz_env: tuple[FastAPI, dict[str, str]],
                          stack: ExitStack) -> None:
    """Each operation gets up to MAX_EXAMPLES generated requests (schemathesis strategies driven by
    Hypothesis, derandomized); every answer is < 500 and JSON bodies parse."""
    from schemathesis.python import asgi

    headers = fuzz_env[1]
    session = stack.enter_context(asgi.get_client(fuzz_env[0]))  # one client (and app lifespan) for all
    failures: list[str] = []
    calls = 0

    for result in api_schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            r = case.call(headers=dict(headers), session=session)
            assert r.status_code < 500, f"{case.method} {case.formatted_path}: {r.status_code} {r.text[:300]}"
            ct = r.headers.get("content-type") or [""]  # schemathesis keeps each header as a list
            if ct[0].startswith(("application/json", "application/geo+json")):
                r.json()  # JSON bodies, errors included, are valid JSON

        t0 = time.perf_counter()
        try:
            run()
        except Exception as exc:  # collect every operation's failure, then fail once
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:400]}")
        if os.environ.get("CITYTWIN_FUZZ_LOG"):
            print(f"{op.method.upper()} {op.path}: {time.perf_counter() - t0:.1f} s, {calls} calls", flush=True)
    assert not failures, "\n".join(failures)
    assert calls > 100


def test_every_route_is_fuzzed(api_schema: Any, fuzz_env: tuple[FastAPI, dict[str, str]]) -> None:
    """The schema holds the new routes (so the fuzz above covers them), and the stream is the only one left out."""
    paths = set(fuzz_env[0].openapi()["paths"])
    for p in ("/collections", "/collections/{collection_id}/items", "/tiles/{dataset}/{z}/{x}/{y}.mvt",
              "/tiles/{dataset}.json", "/catalog/{dataset}/lineage", "/processes/{process_id}/execution",
              "/jobs/{job_id}", "/auth/login", "/ngsi-ld/v1/entities", "/open311/v2/requests.json",
              "/cases/{case_id}/status", "/consultations/{cid}/comments", "/consultations/{cid}/questions/{qid}/answer",
              "/participation/v1/entities"):
        assert p in paths, p
    fuzzed = {op.ok().path for op in api_schema.get_all_operations()}
    assert paths - fuzzed == {"/twin/v1/alerts/stream", "/twin/v1/observations/stream"}
