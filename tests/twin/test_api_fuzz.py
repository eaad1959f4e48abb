"""Issue 13: Schemathesis over the twin API's OpenAPI, with bodies, on every route, with a valid token:
no 5xx.

Each operation gets positive (schema-valid) and negative (schema-violating) cases, bounded (a few
examples per operation and mode, derandomized, no deadline) so that the whole run takes about a
minute on 2 cores. The alert stream is given a short ``timeout`` (it is otherwise endless by design).
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from citytwin.service import alerting, forecasting, ngsi
from citytwin.service.app import close_app, create_app, open_runtime

AQ = "urn:ngsi-ld:AirQualityObserved:"
EXAMPLES = 15  # per operation and generation mode


def test_no_server_errors_on_any_route(twin_ws):
    rt = open_runtime(twin_ws.root)
    rt.stores.state.put_entity(AQ + "Dongsi", "AirQualityObserved", 116.4, 39.9, {})
    app = create_app(runtime=rt)
    headers = twin_ws.headers("integrator")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = [r.ok() for r in schema.get_all_operations()]
    seen: list[str] = []
    failures: list[str] = []
    statuses: dict[int, int] = {}
    with_body = 0
    try:
        for op in ops:
            seen.append(f"{op.method.upper()} {op.path}")
            strategy = st.one_of(op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE))

            @settings(max_examples=2 * EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case: Any) -> None:
                nonlocal with_body
                case.headers = {**(case.headers or {}), **headers}  # the generated ones must not replace the token
                if case.path == "/twin/v1/alerts/stream":
                    case.query = {**(case.query or {}), "timeout": 0.05}
                if case.body is not None and not isinstance(case.body, type(schemathesis.core.NOT_SET)):
                    with_body += 1
                try:
                    resp = case.call(headers=headers)
                except Exception as exc:  # the app raised: a 500
                    failures.append(f"{case.method} {case.formatted_path} {case.query}: {type(exc).__name__}: "
                                    f"{str(exc)[:200]}")
                    statuses[500] = statuses.get(500, 0) + 1
                    return
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                try:
                    case.validate_response(resp, checks=[not_a_server_error])
                except Exception as exc:  # collected and reported below
                    failures.append(f"{case.method} {case.formatted_path}: {str(exc)[:300]}")

            run()
    finally:
        close_app(app)  # its writer threads, whether or not schemathesis still runs its lifespan
        rt.close()
    routers = [ngsi.router, alerting.router, forecasting.router]
    routes = {f"{m} {r.path}" for rt_ in routers for r in rt_.routes for m in getattr(r, "methods", ())}
    assert routes | {"GET /health"} == set(seen)  # every route was fuzzed
    assert with_body > 0 and any(500 > s >= 400 for s in statuses)
    assert not failures, "\n".join(failures[:10])
    assert not [s for s in statuses if s >= 500], statuses


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
