"""The operations center: one process serving the HTTP API and the web app of a workspace.

``citytwin serve -w WS`` runs :func:`create_server_app` under uvicorn. The app holds:

* the live twin's API (:func:`citytwin.service.app.create_app`: NGSI-LD entities, history,
  observations, forecasts, alerts and their SSE stream ``/twin/v1/alerts/stream``), unchanged, plus
  an SSE stream of observation updates ``/twin/v1/observations/stream`` (:mod:`~citytwin.service.live`);
* the dataset API: OGC API – Features collections (:mod:`~citytwin.service.features`), vector
  tiles (:mod:`~citytwin.service.tiles`), catalog records, quality and lineage
  (:mod:`~citytwin.service.catalog_api`), jobs (:mod:`~citytwin.service.jobs`);
* ``POST /auth/login`` (user name + token -> role and what it may see) and ``GET /auth/me``;
* the static web app from ``citytwin/service/web/`` at ``/app/`` (``/`` redirects there).

Every route but ``/health``, ``/auth/login`` and the static files needs a bearer token; each
request is one audit row (``twin.*`` for the twin's routes, ``api.*`` for the rest), and reads of
datasets add their own (``read``, ``read.stats``) with the access check and masking of
:class:`~citytwin.foundation.workspace.Workspace`. Errors answer ``{"type", "title", "detail"}``
JSON: 400 bad input, 403 refused, 404 unknown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from citytwin.foundation import access
from citytwin.foundation.errors import AccessDenied, CitytwinError, NotFoundError
from citytwin.foundation.workspace import Workspace
from citytwin.service import catalog_api, consult_api, features, jobs, live, participation_api, tiles
from citytwin.service.apiauth import ApiGuard, login_info, require_user
from citytwin.service.app import UVICORN
from citytwin.service.auditbatch import GroupCommitCatalog
from citytwin.service.auth import AuthError, Principal, require_token

__all__ = ["UVICORN", "WEB_DIR", "create_server_app"]

#: the web app's static files (index.html and its bundled assets)
WEB_DIR = Path(__file__).parent / "web"


def error_response(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler: a :class:`CitytwinError` -> JSON ``{"type", "title", "detail"}`` (400/403/404; the
    twin routes' own statuses kept: 413, 415, 409, 503 … of :func:`citytwin.service.ngsi.error_status`)."""
    from citytwin.service.ngsi import ApiError, error_status

    assert isinstance(exc, CitytwinError)
    status, title = ((403, "Forbidden") if isinstance(exc, AccessDenied) else
                     (404, "NotFound") if isinstance(exc, NotFoundError) else
                     (400, "BadRequest"))
    twin_status, twin_title = error_status(exc)
    if twin_status not in (400, 403, 404):
        status, title = twin_status, twin_title
    body: dict[str, Any] = {"type": f"https://citytwin.dev/errors/{title}", "title": title, "detail": exc.message}
    if exc.hint:
        body["hint"] = exc.hint
    if isinstance(exc, ApiError):
        body.update({k: v for k, v in exc.extra.items() if k not in body})
    return JSONResponse(body, status_code=status)


def validation_response(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler: a parameter FastAPI could not parse -> 422 in the API's error style
    ``{"type", "title", "detail", "errors"}`` (``detail`` names each parameter and what is wrong)."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError

    assert isinstance(exc, RequestValidationError)
    errs = list(exc.errors())
    what = "; ".join(f"{' '.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errs[:5])
    body = {"type": "https://citytwin.dev/errors/UnprocessableEntity", "title": "UnprocessableEntity",
            "detail": what or "invalid request", "errors": jsonable_encoder(errs, exclude={"ctx", "input"})}
    return JSONResponse(body, status_code=422)


class GroupCommitApiGuard(ApiGuard):
    """The dataset API's guard whose workspace views share the app's group-commit catalog, so the audit
    rows of their reads (``read``, ``read.stats``) share commits like the requests' own rows
    (:mod:`citytwin.service.auditbatch`)."""

    def __init__(self, ws: Workspace, batched: GroupCommitCatalog, *, enabled: bool = True) -> None:
        owner = ws.as_user(ws.user.name)  # its own view: the caller's workspace object is left as it is
        owner.catalog = batched
        super().__init__(owner, enabled=enabled)
        self.batched = batched

    def workspace(self, user: access.User) -> Workspace:
        view = super().workspace(user)
        if view.catalog is not self.batched:
            view.catalog = self.batched
        return view


@dataclass
class Login:
    """Sign-in of the web app: a workspace user and one of that user's API tokens."""

    user: str
    token: str


def create_server_app(workspace: Workspace | str | Path, *, auth: bool = True,
                      broker: tuple[str, int] | None = None, auto_alerts: bool = True,
                      web_dir: Path | None = None, job_workers: int = 1, clock: Any = None,
                      fast_lane: bool = True) -> FastAPI:
    """The one app of ``citytwin serve``: twin API + dataset API + jobs + the web app.

    Parameters
    ----------
    workspace
        The workspace (or its folder); its twin lives in ``WORKSPACE/twin``.
    auth
        False: no tokens needed (every request acts as the workspace owner; still audited).
    broker
        ``(host, port)`` of an MQTT broker to ingest from while serving.
    auto_alerts
        Evaluate the default alert rules after each ingest batch (alerts reach the SSE stream).
    web_dir
        Folder of the web app's static files (default :data:`WEB_DIR`).
    job_workers
        Worker threads running jobs.
    clock
        The participation side's clock (case deadlines, consultation periods, construction checks;
        :mod:`~citytwin.service.participation_api`); default the wall clock.
    fast_lane
        Entity reads, vector tiles and single observations skip FastAPI's routing
        (:mod:`~citytwin.service.fastlane`); False: every request goes through it.
    """
    from citytwin.service.app import _open_workspace, create_app

    ws = workspace if isinstance(workspace, Workspace) else _open_workspace(workspace)
    twin_dir = ws.root / "twin"
    twin_dir.mkdir(mode=0o700, exist_ok=True)
    app = create_app(twin_dir, workspace=ws, auth=auth, broker=broker, auto_alerts=auto_alerts, fast_lane=fast_lane)
    app.title = "citytwin operations center"
    app.description = ("The city's datasets (OGC API – Features, vector tiles, catalog, quality, lineage), "
                       "analyses as jobs (OGC API – Processes) and the live twin (NGSI-LD style, alerts, SSE).")
    batched = app.state.guard.catalog
    app.state.api_guard = (GroupCommitApiGuard(ws, batched, enabled=auth) if isinstance(batched, GroupCommitCatalog)
                           else ApiGuard(ws, enabled=auth))
    app.state.tiles = tiles.TileMaker()
    app.state.jobs = jobs.JobRunner(ws, workers=job_workers)
    app.state.workspace = ws
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with inner(a) as st:
            try:
                with participation_api.running(a):  # the construction-site scheduler
                    yield st
            finally:  # running jobs stop at their next progress report; DuckDB closes
                a.state.jobs.close()
                a.state.tiles.close()

    app.router.lifespan_context = lifespan
    app.add_exception_handler(CitytwinError, error_response)
    app.add_exception_handler(AuthError, _auth_error)
    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(RequestValidationError, validation_response)

    app.include_router(features.router)
    app.include_router(tiles.router)
    app.include_router(catalog_api.router)
    app.include_router(jobs.router)
    live.install(app, [Depends(require_token)])
    from citytwin.service import report as report_api  # views and reports of the web app (ocweb)
    app.include_router(report_api.router)
    participation_api.install(app, ws, clock=clock, history=app.state.twin.stores.history)
    app.include_router(consult_api.router)

    @app.post("/auth/login", tags=["auth"], summary="Sign in with a user name and an API token")
    def login(request: Request, body: Annotated[Login, Body()]) -> dict[str, Any]:
        """Check the token belongs to the user; answer the user, role and the datasets it may see.

        Tokens are issued with ``citytwin user token NAME``; the catalog keeps only their SHA-256.
        """
        guard: ApiGuard = request.app.state.api_guard
        rec = ws.catalog.resolve_token(body.token) if body.token and len(body.token) <= 500 else None
        if rec is None or rec["name"] != body.user:
            guard.audit(None, "api.login", "unauthenticated", f"POST /auth/login: user {body.user[:80]!r}")
            raise AuthError(401, "Unauthorized", "unknown user, or a token that is not this user's (or revoked)")
        user = access.User(rec["name"], rec["role"], rec["department"])
        guard.audit(user, "api.login", "ok", "POST /auth/login")
        return {**login_info(ws, user), "token_id": int(rec["token_id"])}

    @app.get("/auth/me", tags=["auth"], summary="The signed-in user and what the role may see and do")
    def me(principal: Annotated[Principal, Depends(require_user)]) -> dict[str, Any]:
        return login_info(ws, principal.user)

    web = web_dir or WEB_DIR
    if web.is_dir():
        app.mount("/app", StaticFiles(directory=web, html=True), name="web")

        @app.get("/", include_in_schema=False)
        def root() -> RedirectResponse:
            return RedirectResponse("/app/")

    return app


def _auth_error(request: Request, exc: Exception) -> JSONResponse:
    from citytwin.service.auth import auth_error_response

    return auth_error_response(request, exc)
