"""Authentication, roles and audit for the live twin's HTTP API.

Every endpoint except ``/health`` needs ``Authorization: Bearer <token>``, a token issued with
``citytwin user token NAME`` (:meth:`citytwin.foundation.catalog.Catalog.issue_token`; the
catalog keeps only its SHA-256). The token's user and role come from the workspace catalog at
each request, so a revoked token or a changed role applies at once.

Roles (the rules of :mod:`citytwin.foundation.access`):

* **reads** (``GET``: entities, temporal, history, dead letters, alerts, the alert stream,
  forecasts, scores) need a role cleared for the twin's classification (workspace setting
  ``twin_classification``, default ``internal``: every role but ``public``);
* **writes** (``POST``/``PATCH``/``PUT``/``DELETE``: entities, attributes, observations, upsert,
  alerts raise/ack/resolve, forecast issue/verify) need a role in
  :data:`~citytwin.foundation.access.LIVE_WRITERS` (integrator, steward, admin) that may also
  read the twin.

Failures answer in the API's error style, ``{"type", "title", "detail"}``: 401 ``Unauthorized``
(no, unknown or revoked token; with ``WWW-Authenticate: Bearer``) or 403 ``Forbidden`` (naming
the role needed). Each request — allowed or refused, routed or not (unknown paths, 405, ``HEAD``,
``OPTIONS``) — writes one row to the catalog's audit log when its response starts
(:class:`AuditMiddleware`): ``action`` ``twin.read`` / ``twin.write``, ``dataset`` ``twin``,
``outcome`` from the response status (``ok`` below 400, ``unauthenticated`` 401, ``denied`` 403,
``rejected NNN`` other 4xx, ``error NNN`` 5xx), ``detail`` ``"METHOD /path?query -> STATUS"``
(and why a token was refused): one row per request, not per observation. Only successful
``/health`` checks (which carry no data) are not audited.

Examples
--------
>>> import tempfile
>>> from citytwin.foundation.workspace import Workspace
>>> ws = Workspace.init(tempfile.mkdtemp() + "/ws", owner="admin")
>>> ws.add_user("viewer1", "viewer")
>>> _, tok = ws.catalog.issue_token("viewer1")
>>> guard = TwinGuard.for_workspace(ws)
>>> guard.check("GET", "/ngsi-ld/v1/entities", tok).user.role
'viewer'
>>> try:
...     guard.check("POST", "/twin/v1/observations", tok)
... except AuthError as exc:
...     print(exc.status, exc.title)
403 Forbidden
>>> [(r["action"], r["outcome"]) for r in ws.catalog.audit_log("twin")]
[('twin.write', 'denied'), ('twin.read', 'ok')]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from citytwin.foundation import access
from citytwin.foundation.catalog import Catalog, check_classification
from citytwin.foundation.errors import CitytwinError

#: Workspace setting holding the live twin's data classification.
SETTING = "twin_classification"
DEFAULT_CLASSIFICATION = "internal"
DATASET = "twin"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer = HTTPBearer(auto_error=False, description="An API token: `citytwin user token NAME -w WORKSPACE`.")


class AuthError(Exception):
    """A refused request: ``status`` 401 (authentication) or 403 (role)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


@dataclass(frozen=True)
class Principal:
    """Who made a request: the user (name, role, department) and the token used (None without auth)."""

    user: access.User
    token_id: int | None = None


def twin_classification(settings: dict[str, Any]) -> str:
    """The live twin's classification from workspace settings (default ``internal``).

    Examples
    --------
    >>> twin_classification({}), twin_classification({"twin_classification": "public"})
    ('internal', 'public')
    """
    return check_classification(str(settings.get(SETTING, DEFAULT_CLASSIFICATION)))


class TwinGuard:
    """Checks a request's token and role against a workspace catalog, and audits it.

    Parameters
    ----------
    catalog
        The workspace catalog (users, tokens, audit log); None: no audit (only with ``enabled=False``).
    classification
        The twin's data classification (``public``, ``internal`` or ``sensitive``).
    enabled
        False: every request passes as an anonymous caller (a local demo); still audited when
        there is a catalog.
    """

    def __init__(self, catalog: Catalog | None, classification: str = DEFAULT_CLASSIFICATION, *,
                 enabled: bool = True) -> None:
        if enabled and catalog is None:
            raise CitytwinError("the twin's API needs a workspace catalog to check tokens",
                                hint="serve a twin inside a workspace, or pass auth=False for a local demo")
        self.catalog = catalog
        self.classification = check_classification(classification)
        self.enabled = enabled
        #: whether :meth:`check` costs microseconds (no catalog call, or a pooled SQLite one), so that the
        #: service makes it on its event loop rather than in a worker thread
        self.inline = not enabled or bool(getattr(catalog, "inline_reads", False))

    @classmethod
    def for_workspace(cls, ws: Any, *, enabled: bool = True) -> TwinGuard:
        """A guard over a :class:`~citytwin.foundation.workspace.Workspace` (catalog and settings)."""
        return cls(ws.catalog, twin_classification(ws.settings), enabled=enabled)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep one connection to the catalog open while serving (the app's lifespan does).

        The per-request catalog connections then do not checkpoint the SQLite write-ahead log when
        they close (the last connection to close does): a token look-up plus an audit row cost about
        1 ms instead of 3 ms on this machine. The held connection is not used for anything else.
        """
        if self.catalog is None:
            yield
            return
        with self.catalog.connect() as con:
            con.execute("SELECT 1 FROM audit LIMIT 1").fetchall()
            yield

    def _audit(self, principal: access.User | None, action: str, outcome: str, detail: str,
               dataset: str | None = DATASET) -> None:
        if self.catalog is not None:
            self.catalog.audit(user=None if principal is None else principal.name,
                               role=None if principal is None else principal.role, action=action,
                               dataset=dataset, outcome=outcome, detail=detail)

    def check(self, method: str, path: str, token: str | None, *, audit: bool = True,
              note: dict[str, Any] | None = None) -> Principal:
        """Authenticate ``token`` and authorise ``method`` on ``path``; audit the decision.

        Raises :class:`AuthError` (401 or 403) when refused. With ``audit=False`` nothing is
        written; the caller (the :class:`AuditMiddleware`) audits the request once its status is
        known, and ``note`` receives ``user`` and, for a refusal, ``why``.
        """
        write = method.upper() not in READ_METHODS
        action = "twin.write" if write else "twin.read"
        what = f"{method.upper()} {path}"
        note = {} if note is None else note
        if not self.enabled:
            anon = access.User("anonymous", "admin")
            note["why"] = "auth off"
            if audit:
                self._audit(None, action, "ok", f"{what} (auth off)")
            return Principal(anon)
        assert self.catalog is not None
        rec = self.catalog.resolve_token(token) if token else None
        if rec is None:
            why = "no bearer token" if not token else "unknown or revoked token"
            note["why"] = why
            if audit:
                self._audit(None, action, "unauthenticated", f"{what}: {why}")
            raise AuthError(401, "Unauthorized",
                            f"{why}: send 'Authorization: Bearer <token>' with a token from "
                            "`citytwin user token NAME`")
        user = access.User(rec["name"], rec["role"], rec["department"])
        note["user"] = user
        try:
            access.require_read(user, DATASET, self.classification, None)
            if write:
                access.require_live_write(user, DATASET)
        except access.AccessDenied as exc:
            if audit:
                self._audit(user, action, "denied", what)
            raise AuthError(403, "Forbidden", exc.message) from None
        if audit:
            self._audit(user, action, "ok", what)
        return Principal(user, int(rec["token_id"]))

    def _request_row(self, method: str, target: str, status: int, note: dict[str, Any] | None) -> dict[str, Any]:
        note = note or {}
        # the API guard (service.apiauth) names its own action (api.read / api.write) and no dataset
        action = note.get("action") or ("twin.write" if method.upper() not in READ_METHODS else "twin.read")
        outcome = ("ok" if status < 400 else "unauthenticated" if status == 401 else "denied" if status == 403
                   else f"rejected {status}" if status < 500 else f"error {status}")
        why = note.get("why")
        user: access.User | None = note.get("user")
        return {"user": None if user is None else user.name, "role": None if user is None else user.role,
                "action": action, "dataset": note.get("dataset", DATASET), "outcome": outcome,
                "detail": f"{method.upper()} {target} -> {status}" + (f": {why}" if why else "")}

    def audit_request(self, method: str, target: str, status: int, note: dict[str, Any] | None = None) -> None:
        """Write the audit row of one finished (or starting) request: ``target`` is path and query."""
        if self.catalog is not None:
            self.catalog.audit(**self._request_row(method, target, status, note))

    async def audit_request_async(self, method: str, target: str, status: int,
                                  note: dict[str, Any] | None = None) -> None:
        """:meth:`audit_request` from the event loop: returns once the row is committed. With the service's
        group-commit catalog (:mod:`citytwin.service.auditbatch`) it waits on the commit without a worker
        thread; with another catalog the write runs in a worker thread."""
        if self.catalog is None:
            return
        row = self._request_row(method, target, status, note)
        audit_async = getattr(self.catalog, "audit_async", None)
        if audit_async is not None:
            await audit_async(**row)
        else:
            await run_in_threadpool(self.catalog.audit, **row)


async def require_token(request: Request,
                        cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:  # noqa: B008
    """FastAPI dependency: the caller, checked by the app's :class:`TwinGuard` (``app.state.guard``).

    Sets ``request.state.principal``. The token look-up is one indexed read of the catalog at each
    request (a revoked token or a changed role applies at once). On the service's pooled SQLite
    catalog (:mod:`citytwin.service.auditbatch`) it takes microseconds and runs on the event loop;
    otherwise (PostgreSQL: a network round trip) in a worker thread, so the loop is never blocked.
    """
    guard: TwinGuard = request.app.state.guard
    note = request.scope.setdefault("citytwin.audit", {})
    token = cred.credentials if cred is not None else None
    if guard.inline:
        p = guard.check(request.method, request.url.path, token, audit=False, note=note)
    else:
        p = await run_in_threadpool(guard.check, request.method, request.url.path, token, audit=False, note=note)
    request.state.principal = p
    return p


class AuditMiddleware:
    """ASGI middleware: one audit row per HTTP request, written when the response starts.

    It sees every request, also those no route serves (unknown path, wrong method, ``HEAD``,
    ``OPTIONS``), records the query string and the response status, and takes the caller from
    what :func:`require_token` found. The catalog write runs in a worker thread (the event
    loop is never blocked; with the group-commit catalog the loop only waits for the writer thread's
    commit, :meth:`TwinGuard.audit_request_async`) and finishes before the response goes out. A
    request that fails before its response starts is audited as ``error 500``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        note: dict[str, Any] = scope.setdefault("citytwin.audit", {})
        method = scope["method"]
        qs = scope.get("query_string", b"").decode("latin-1")
        target = scope.get("path", "") + (f"?{qs}" if qs else "")
        done = False

        async def audit(status: int) -> None:
            nonlocal done
            if done:
                return
            done = True
            guard: TwinGuard | None = getattr(scope["app"].state, "guard", None) if "app" in scope else None
            if guard is None or (scope.get("path") == "/health" and status < 400):
                return
            await guard.audit_request_async(method, target[:2000], status, note)

        async def send_audited(message: Any) -> None:
            if message["type"] == "http.response.start":
                await audit(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_audited)
        except BaseException:
            await audit(500)
            raise


def principal_name(request: Request) -> str | None:
    """The authenticated user's name of a request, if any (e.g. who acknowledged an alert)."""
    p = getattr(request.state, "principal", None)
    return None if p is None or p.token_id is None else p.user.name


def auth_error_response(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler: :class:`AuthError` -> the API's JSON error (401 with ``WWW-Authenticate``)."""
    assert isinstance(exc, AuthError)
    headers = {"WWW-Authenticate": 'Bearer realm="citytwin"'} if exc.status == 401 else None
    return JSONResponse({"type": f"https://uri.etsi.org/ngsi-ld/errors/{exc.title}", "title": exc.title,
                         "detail": exc.detail}, status_code=exc.status, headers=headers)
