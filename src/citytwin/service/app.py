"""The citytwin HTTP service: the live twin's NGSI-LD-style API (and MQTT ingest when a broker is given).

Run with ``citytwin twin serve -w WORKSPACE [--broker HOST:PORT]`` or, in Python::

    from citytwin.service.app import create_app
    app = create_app("./ws/twin")            # a workspace's twin folder (history/, state.sqlite, ...)

Every endpoint but ``/health`` needs a bearer token of a workspace user and a role allowed to
read (GET) or write (the rest) the twin; every request is audited in the workspace catalog
(:mod:`citytwin.service.auth`). ``create_app(..., auth=False)`` turns this off for a local demo.

This module only builds the FastAPI app. The runtime it serves (stores, parser, ingest pipeline,
forecasts, alert hub, MQTT) is wired by :func:`citytwin.workflows.runtime.open_runtime`;
``TwinRuntime`` and ``open_runtime`` are re-exported here for existing callers.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI

from citytwin.foundation.errors import CitytwinError
from citytwin.foundation.mqtt import MqttAuth
from citytwin.foundation.workspace import MARKER, Workspace
from citytwin.service import alerting, forecasting, ngsi
from citytwin.service import auth as auth_mod
from citytwin.service.auditbatch import GroupCommitCatalog
from citytwin.service.commitqueue import CommitQueue
from citytwin.service.fastlane import FastLane
from citytwin.twin.rules import ThresholdRule
from citytwin.workflows.runtime import TwinRuntime, collect_rarely, open_runtime

__all__ = ["UVICORN", "TwinRuntime", "close_app", "create_app", "open_runtime", "serve"]

log = logging.getLogger(__name__)

#: how ``citytwin serve`` and ``citytwin twin serve`` run uvicorn: httptools' HTTP parser and uvloop's
#: event loop (less CPU per request than h11 and asyncio's own loop), no access log (every request is a
#: row of the audit log instead)
UVICORN: dict[str, Any] = {"http": "httptools", "loop": "uvloop", "log_level": "warning", "access_log": False}


def serve(app: Any, host: str, port: int) -> None:
    """Run ``app`` under uvicorn as ``citytwin serve`` and ``citytwin twin serve`` do (:data:`UVICORN`).

    What is loaded by then (libraries, the app) lives as long as the process, so it is first moved out of
    the cyclic garbage collector's reach (``gc.freeze``): a full collection while serving then walks only
    what requests made, where it walked the ~140,000 objects of the start (140–530 ms on this machine,
    the event loop stalled meanwhile); young collections run less often, as during MQTT ingest
    (:func:`~citytwin.workflows.runtime.collect_rarely`: a request's objects are freed by reference counts).
    When uvicorn returns (Ctrl-C, SIGTERM), the twin runtime the app opened is closed (:func:`close_app`).
    """
    import uvicorn

    gc.collect()
    gc.freeze()
    collect_rarely()
    try:
        uvicorn.run(app, host=host, port=port, **UVICORN)
    finally:
        close_app(app)


def close_app(app: FastAPI) -> None:
    """Close what ``app`` holds once it has stopped serving, whether its lifespan ran or not.

    The lifespan stops what it started for serving (MQTT, the construction-site checks) and the writer
    threads; an app called without it (a test client not entered, an ASGI fuzzer) started those writers
    with its first requests all the same. This stops the audit and HTTP-commit writers, the jobs and the
    tile maker of ``citytwin serve``'s app, and closes the twin runtime the app opened (:func:`create_app`
    from a twin folder): pending alerts stored, the history's compactor stopped, the stores' connections
    closed. The runtime outlives the lifespan (a test client may enter it again); a runtime passed to
    :func:`create_app` is its caller's to close. :func:`serve` calls this when uvicorn returns; calling it
    again closes nothing more.
    """
    state = app.state
    for name in ("jobs", "tiles"):  # the operations center's (service.server)
        part = getattr(state, name, None)
        if part is not None:
            part.close()
    state.commits.close()
    if isinstance(state.guard.catalog, GroupCommitCatalog):
        state.guard.catalog.close()
    rt = state.twin if getattr(state, "owns_twin", False) else None
    state.owns_twin = False
    if rt is not None:
        rt.close()


def _open_workspace(path: str | Path) -> Workspace:
    """A workspace opened as its owner (the service acts on its catalog, not as a user)."""
    marker = Path(path) / MARKER
    owner = json.loads(marker.read_text(encoding="utf-8")).get("owner") if marker.exists() else None
    return Workspace.open(path, user=owner)


def _workspace_of(twin_root: Path) -> Workspace | None:
    """The workspace a twin folder sits in (``WORKSPACE/twin``), if any."""
    parent = Path(twin_root).resolve().parent
    return _open_workspace(parent) if (parent / MARKER).exists() else None


def create_app(root: str | Path | None = None, *, runtime: TwinRuntime | None = None,
               broker: tuple[str, int] | None = None, client_id: str = "citytwin-ingest",
               max_body: int | None = None, auto_verify: bool = False, auto_alerts: bool = False,
               rules: Sequence[ThresholdRule] | None = None, workspace: Workspace | str | Path | None = None,
               auth: bool = True, mqtt_auth: MqttAuth | None = None,
               mqtt_alerts_auth: MqttAuth | None = None, fast_lane: bool = True,
               mqtt_background: bool = True) -> FastAPI:
    """The FastAPI app over a twin folder (or a given runtime); with ``broker``, MQTT ingest runs alongside.

    ``auto_verify`` scores stored forecasts after each ingest batch that brings a due actual;
    ``auto_alerts`` evaluates alert ``rules`` (default rules if None) after each ingest batch.

    Secure by default: with ``auth`` (the default) every endpoint but ``/health`` needs a bearer
    token and a role (:mod:`citytwin.service.auth`), and requests are audited, against
    ``workspace`` — by default the workspace the twin folder sits in (``WORKSPACE/twin``); without
    one, a :class:`~citytwin.foundation.errors.CitytwinError`. ``auth=False`` lets every request
    through (a local demo; still audited when there is a workspace). The twin's classification
    (workspace setting ``twin_classification``) is read here: restart the service after changing it.

    ``fast_lane``: entity reads, vector tiles and single observations skip FastAPI's routing
    (:mod:`citytwin.service.fastlane`: same checks, same answers, less CPU); False sends them through it.

    ``mqtt_background``: a broker that cannot be reached (or refuses) when the app starts does not keep the API
    from serving: the ingest connects in the background and ``/health`` says ``"connected": false`` meanwhile.
    False: the start fails instead.
    """
    if runtime is None and root is None:
        raise ValueError("give root or runtime")
    twin_dir = Path(root) if runtime is None else runtime.stores.root  # type: ignore[arg-type]
    ws = _workspace_of(twin_dir) if workspace is None else (
        workspace if isinstance(workspace, Workspace) else _open_workspace(workspace))
    if ws is None and auth:
        raise CitytwinError(f"the twin at {twin_dir} is not inside a workspace, so its API has no users"
                            " or tokens to check", hint="pass workspace=..., or auth=False for a local demo")
    # the per-request audit rows share their commits (service.auditbatch: still written before each response)
    batched = None if ws is None else GroupCommitCatalog(ws.catalog.url)
    guard = auth_mod.TwinGuard(None, enabled=False) if batched is None else auth_mod.TwinGuard(
        batched, auth_mod.twin_classification(ws.settings) if ws is not None else "internal", enabled=auth)
    owns_twin = runtime is None  # opened here: closed by close_app
    if runtime is None:
        runtime = open_runtime(twin_dir)
    if max_body is not None:
        runtime.max_body = max_body
    rt = runtime
    if auto_verify:
        rt.enable_auto_verify()
    if auto_alerts:
        rt.enable_auto_alerts(rules)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if broker is not None:
            rt.start_mqtt(broker[0], broker[1], client_id=client_id, auth=mqtt_auth, alerts_auth=mqtt_alerts_auth,
                          background=mqtt_background)
        try:
            with guard.hold():
                yield
        finally:
            if broker is not None and rt.mqtt is not None:  # stop only what this app started
                rt.mqtt.stop()
                rt.mqtt = None
            if broker is not None and rt.alert_publisher is not None:
                rt.alert_publisher.wait_all(timeout=5)
                rt.alert_publisher.close()
                rt.alert_publisher = None
            app.state.commits.close()
            if batched is not None:
                batched.close()

    app = FastAPI(title="citytwin", description="Live digital twin: NGSI-LD-style entities, history, ingest.",
                  lifespan=lifespan)
    app.state.twin = rt
    app.state.owns_twin = owns_twin
    app.state.guard = guard
    # single observations posted over HTTP: committed in groups by one writer thread (service.commitqueue)
    app.state.commits = CommitQueue(ngsi.http_committer(rt))
    app.add_exception_handler(auth_mod.AuthError, auth_mod.auth_error_response)
    app.state.fast_lane = {"served": 0, "passed": 0}
    app.add_middleware(FastLane, enabled=fast_lane, stats=app.state.fast_lane)  # inside the audit: audited too
    app.add_middleware(auth_mod.AuditMiddleware)  # every request, routed or not, with its status
    deps = [Depends(auth_mod.require_token)]
    ngsi.install(app, deps)
    forecasting.install(app, deps)
    alerting.install(app, deps)

    @app.get("/health")
    def health() -> dict[str, Any]:
        t = rt.ingestor.totals
        return {"status": "ok", "entities": rt.stores.state.count(), "accepted": t.accepted, "rejected": t.rejected,
                # durable writes and the ingest calls they served (group commit: calls / commits = group size);
                # single observations posted over HTTP: requests and the commits that stored them
                "commits": rt.ingestor.groups, "commit_calls": rt.ingestor.grouped_calls,
                "http_posts": {"requests": app.state.commits.items, "commits": app.state.commits.commits},
                "mqtt": None if rt.mqtt is None else {"connected": rt.mqtt.connected, "refused": rt.mqtt.refused,
                                                     "received": rt.mqtt.stats.received, "acked": rt.mqtt.stats.acked,
                                                     "failure": None if rt.mqtt.failure is None else str(rt.mqtt.failure)}}

    return app
