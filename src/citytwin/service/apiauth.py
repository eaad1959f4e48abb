"""Tokens, roles and audit for the operations center's dataset API (collections, tiles, catalog, jobs).

The twin's guard (:class:`citytwin.service.auth.TwinGuard`) checks a request against the twin's one
classification; dataset routes need a per-dataset check instead. :class:`ApiGuard` authenticates
the same bearer tokens (``citytwin user token NAME``), writes one audit row per request (``action``
``api.read`` / ``api.write``, ``outcome`` ``ok`` / ``denied`` / ``unauthenticated``, ``detail``
``"METHOD /path"``), and hands the route a :class:`~citytwin.foundation.workspace.Workspace` opened
as the caller: its reads check the dataset's classification (403 when the role lacks clearance),
mask personal fields and audit again, per dataset.

Writes (``POST``/``DELETE``: jobs) need a role in :data:`~citytwin.foundation.access.LIVE_WRITERS`
(integrator, steward, admin).

Examples
--------
>>> import tempfile
>>> from citytwin.foundation.workspace import Workspace
>>> ws = Workspace.init(tempfile.mkdtemp() + "/ws", owner="admin")
>>> ws.add_user("resident", "public")
>>> _, tok = ws.catalog.issue_token("resident")
>>> g = ApiGuard(ws)
>>> g.check("GET", "/collections", tok).user.role
'public'
>>> try:
...     g.check("POST", "/processes/economy-index/execution", tok)
... except AuthError as exc:
...     print(exc.status)
403
>>> [(r["action"], r["outcome"]) for r in ws.catalog.audit_log()][:2]
[('api.write', 'denied'), ('api.read', 'ok')]
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from citytwin.foundation import access
from citytwin.foundation.workspace import Workspace
from citytwin.service.auth import READ_METHODS, AuthError, Principal, bearer

__all__ = ["ApiGuard", "require_user", "user_workspace"]


class ApiGuard:
    """Checks a request's token against a workspace's catalog and audits it (dataset API).

    Parameters
    ----------
    ws
        The workspace served (opened as its owner).
    enabled
        False: every request passes as the workspace owner (a local demo); still audited.
    """

    def __init__(self, ws: Workspace, *, enabled: bool = True) -> None:
        self.ws = ws
        self.catalog = ws.catalog
        self.enabled = enabled
        #: whether :meth:`check` costs microseconds (a pooled SQLite catalog, or none called), so that the
        #: service makes it on its event loop (:func:`require_user`)
        self.inline = not enabled or bool(getattr(self.catalog, "inline_reads", False))
        self._lock = threading.Lock()
        self._views: dict[tuple[str, str, str | None], Workspace] = {}

    def audit(self, user: access.User | None, action: str, outcome: str, detail: str) -> None:
        self.catalog.audit(user=None if user is None else user.name, role=None if user is None else user.role,
                           action=action, outcome=outcome, detail=detail)

    def check(self, method: str, path: str, token: str | None, *,
              note: dict[str, Any] | None = None) -> Principal:
        """Authenticate ``token``; writes need a writer role. :class:`AuthError` when refused.

        Audited: here, one row per decision; or, with ``note`` (the request's entry of the
        :class:`~citytwin.service.auth.AuditMiddleware`), the decision (user, action, why) goes into
        ``note`` and the middleware writes the request's one row once its status is known.
        """
        write = method.upper() not in READ_METHODS
        action = "api.write" if write else "api.read"
        what = f"{method.upper()} {path}"

        def decide(user: access.User | None, outcome: str, detail: str, why: str | None = None) -> None:
            if note is None:
                self.audit(user, action, outcome, detail)
                return
            note.update({"action": action, "dataset": None})
            if user is not None:
                note["user"] = user
            if why:
                note["why"] = why

        if not self.enabled:
            owner = self.ws.user
            decide(owner, "ok", f"{what} (auth off)", "auth off")
            return Principal(owner)
        rec = self.catalog.resolve_token(token) if token else None
        if rec is None:
            why = "no bearer token" if not token else "unknown or revoked token"
            decide(None, "unauthenticated", f"{what}: {why}", why)
            raise AuthError(401, "Unauthorized", f"{why}: send 'Authorization: Bearer <token>' with a token from "
                                                 "`citytwin user token NAME`")
        user = access.User(rec["name"], rec["role"], rec["department"])
        if write and not access.can_write_live(user):
            decide(user, "denied", what)
            raise AuthError(403, "Forbidden", f"user {user.name!r} (role {user.role}) may not run or cancel jobs"
                                              f" (needs role {' or '.join(access.LIVE_WRITERS)})")
        decide(user, "ok", what)
        return Principal(user, int(rec["token_id"]))

    def workspace(self, user: access.User) -> Workspace:
        """The workspace seen by ``user`` (reads checked, masked, audited as that user); cached per role."""
        key = (user.name, user.role, user.department)
        with self._lock:
            view = self._views.get(key)
            if view is None:
                view = self.ws if user.name == self.ws.user.name and user.role == self.ws.user.role \
                    else self.ws.as_user(user.name)
                if len(self._views) > 256:
                    self._views.clear()
                self._views[key] = view
            return view


async def require_user(request: Request,
                       cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:  # noqa: B008
    """FastAPI dependency: the caller of a dataset route, checked and audited by ``app.state.api_guard``
    (on the event loop when that takes microseconds, :attr:`ApiGuard.inline`; else in a worker thread)."""
    guard: ApiGuard = request.app.state.api_guard
    note = request.scope.get("citytwin.audit")  # the AuditMiddleware's entry: it writes the one row
    token = cred.credentials if cred is not None else None
    if guard.inline and note is not None:
        p = guard.check(request.method, request.url.path, token, note=note)
    else:  # without the middleware's entry the decision is its own audit row: a write, in a worker thread
        p = await run_in_threadpool(guard.check, request.method, request.url.path, token, note=note)
    request.state.principal = p
    return p


async def user_workspace(request: Request, principal: Principal = Depends(require_user)) -> Workspace:  # noqa: B008
    """FastAPI dependency: the workspace as the authenticated caller sees it (a cached view per user)."""
    guard: ApiGuard = request.app.state.api_guard
    return guard.workspace(principal.user)


def login_info(ws: Workspace, user: access.User) -> dict[str, Any]:
    """What the web app needs after sign-in: the user, role, and what the role may see and do."""
    from citytwin.service.auth import twin_classification

    view = ws if user.name == ws.user.name else ws.as_user(user.name)
    datasets = [d.name for d in view.datasets()]
    return {"user": user.name, "role": user.role, "department": user.department, "datasets": datasets,
            "twin": {"read": access.can_read(user, twin_classification(ws.settings), None),
                     "write": access.can_write_live(user)},
            "jobs": access.can_write_live(user), "sees_personal_data": user.r.sees_personal_data}
