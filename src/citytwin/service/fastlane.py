"""The fast lane: the hottest requests answered without FastAPI's routing and dependency solving.

Four kinds of request make nearly all of a live city's traffic: an entity's latest values
(``GET /ngsi-ld/v1/entities/{id}``), a vector tile (``GET /tiles/{dataset}/{z}/{x}/{y}.mvt``), a
sensor's reading (``POST /twin/v1/observations``) and a gateway's batch of entity updates (``POST
/ngsi-ld/v1/entityOperations/upsert``; there the ~0.2 ms saved is ~1% of the request, whose upsert
and commit cost ~15–20 ms). FastAPI spends ~0.15–0.25 ms of CPU on each
before the route runs (matching the path against every route, solving the dependencies, validating
each parameter), as much as the route's own work on a cached tile. :class:`FastLane`, an ASGI
middleware inside :class:`~citytwin.service.auth.AuditMiddleware` (so each request is still one
audit row), recognises these four by method and path and calls the same functions the routes call:
the same guard (token, role, classification; :class:`~citytwin.service.auth.TwinGuard`,
:class:`~citytwin.service.apiauth.ApiGuard`), the same reads and commit, the same responses, the
app's own exception handlers for errors raised while answering.

Whatever it does not recognise or cannot answer before its route's work starts — another path,
method or parameter (``?scenario=``), a missing, malformed, unknown or refused token, a bad tile
number, a dataset the role may not read, a guard whose catalog is not a pooled SQLite one — goes to
FastAPI unchanged, which answers it as it always did (those answers are the rare ones). A test
compares both lanes answer by answer (``tests/service/test_fastlane.py``); ``create_app(...,
fast_lane=False)`` turns the lane off.
"""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from citytwin.foundation.errors import CitytwinError
from citytwin.service.auth import AuthError

__all__ = ["FastLane"]

_ENTITY = "/ngsi-ld/v1/entities/"
_TILES = "/tiles/"
_OBSERVATIONS = "/twin/v1/observations"
_UPSERT = "/ngsi-ld/v1/entityOperations/upsert"
_ENTITY_PARAMS = frozenset({"attrs", "options"})


class _Pass(Exception):
    """The fast lane gives the request to FastAPI."""


def _bearer(scope: dict[str, Any]) -> str:
    """The bearer token of a request, as FastAPI's ``HTTPBearer`` reads it; :class:`_Pass` if none."""
    for k, v in scope["headers"]:
        if k == b"authorization":
            scheme, _, cred = v.decode("latin-1").partition(" ")
            cred = cred.strip()
            if scheme and cred and scheme.lower() == "bearer":
                return cred
            break
    raise _Pass


def _digits(text: str) -> int:
    if not (0 < len(text) <= 9 and text.isascii() and text.isdigit()):
        raise _Pass
    return int(text)


class FastLane:
    """ASGI middleware: entity reads, vector tiles, single observations and batch upserts without FastAPI's routing.

    Parameters
    ----------
    app
        The rest of the application (FastAPI's exception middleware and router).
    enabled
        False: every request goes to FastAPI.
    stats
        Counts ``served`` (answered here) and ``passed`` (of the four kinds, given to FastAPI).
    """

    def __init__(self, app: Any, enabled: bool = True, stats: dict[str, int] | None = None) -> None:
        self.app = app
        self.enabled = enabled
        self.stats = {"served": 0, "passed": 0} if stats is None else stats

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.enabled and scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            try:
                if method == "GET" and path.startswith(_ENTITY) and "/" not in path[len(_ENTITY):]:
                    response = self._entity(scope, receive, path[len(_ENTITY):])
                elif method == "GET" and path.startswith(_TILES) and path.endswith(".mvt"):
                    response = await self._tile(scope, receive, path[len(_TILES):-4])
                elif method == "POST" and path == _OBSERVATIONS:
                    response = await self._observations(scope, receive)
                elif method == "POST" and path == _UPSERT:
                    response = await self._upsert(scope, receive)
                else:
                    raise _Pass
            except _Pass:
                if method in ("GET", "POST") and path.startswith((_ENTITY, _TILES, _OBSERVATIONS, _UPSERT)):
                    self.stats["passed"] += 1
            else:
                self.stats["served"] += 1
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    # -- the four lanes --------------------------------------------------------------------------
    def _entity(self, scope: Any, receive: Any, raw_id: str) -> Response:
        from citytwin.service import ngsi

        state = scope["app"].state
        guard = state.guard
        if not raw_id or not guard.inline:
            raise _Pass
        params = dict(_params(scope, _ENTITY_PARAMS))
        token = _bearer(scope)
        try:
            guard.check("GET", scope["path"], token, audit=False, note=scope.setdefault("citytwin.audit", {}))
        except AuthError:
            raise _Pass from None
        try:  # the path is percent-decoded already (as the route's path parameter)
            response = ngsi.entity_response(state.twin.stores.state, raw_id, params.get("attrs"),
                                            params.get("options"))
        except CitytwinError:  # a read that failed: FastAPI reads again and answers with the app's handler
            raise _Pass from None
        if response.status_code == 404 and getattr(state, "entity_provider", None) is not None:
            raise _Pass  # not a sensor: perhaps a case or comment, which FastAPI's route asks the provider for
        return response

    async def _tile(self, scope: Any, receive: Any, rest: str) -> Response:
        from citytwin.service import tiles

        state = scope["app"].state
        guard = getattr(state, "api_guard", None)
        if guard is None or not guard.inline:
            raise _Pass
        parts = rest.split("/")
        if len(parts) != 4 or not parts[0]:
            raise _Pass
        dataset = parts[0]
        z, x, y = (_digits(p) for p in parts[1:])
        token = _bearer(scope)
        try:
            p = guard.check("GET", scope["path"], token, note=scope.setdefault("citytwin.audit", {}))
        except AuthError:
            raise _Pass from None
        ws = guard.workspace(p.user)
        tm = tiles.maker(state)
        inm = _header(scope, b"if-none-match")
        try:
            tiles.check_tile(z, x, y)
            found = tiles.lookup(ws, dataset, tm, z, x, y, inm, audit=False)
        except CitytwinError:  # bad tile, unknown dataset, refused: FastAPI answers (and audits a refusal)
            raise _Pass from None
        if isinstance(found, Response):
            return found
        return await _handled(scope, receive, tiles.make_later(ws, dataset, tm, found))

    async def _observations(self, scope: Any, receive: Any) -> Response:
        from citytwin.service import ngsi

        return await self._post(scope, receive, ngsi.post_observations)

    async def _upsert(self, scope: Any, receive: Any) -> Response:
        from citytwin.service import ngsi

        return await self._post(scope, receive, ngsi.batch_upsert)

    @staticmethod
    async def _post(scope: Any, receive: Any, route: Any) -> Response:
        """A twin POST route (``route(request)``) after the twin guard's check, inline; else to FastAPI."""
        guard = scope["app"].state.guard
        if not guard.inline:
            raise _Pass
        token = _bearer(scope)
        try:
            guard.check("POST", scope["path"], token, audit=False, note=scope.setdefault("citytwin.audit", {}))
        except AuthError:
            raise _Pass from None
        return await _handled(scope, receive, route(Request(scope, receive)))


def _params(scope: Any, allowed: frozenset[str]) -> list[tuple[str, str]]:
    """The query parameters, if each of ``allowed`` comes at most once; others are ignored, as FastAPI
    ignores them (:class:`_Pass` if one of ``allowed`` repeats)."""
    qs = scope.get("query_string", b"")
    if not qs:
        return []
    pairs = [(k, v) for k, v in parse_qsl(qs.decode("latin-1"), keep_blank_values=True) if k in allowed
             or k == "scenario"]
    names = [k for k, _ in pairs]
    if "scenario" in names or len(set(names)) != len(names):
        raise _Pass
    return pairs


def _header(scope: Any, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


async def _handled(scope: Any, receive: Any, work: Any) -> Response:
    """Await a route's work; a :class:`CitytwinError` it raises becomes the app's own error response
    (the handler FastAPI would call); anything else goes up as it would from a route (a 500)."""
    try:
        response: Response = await work
        return response
    except CitytwinError as exc:
        handlers = scope["app"].exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                out = handlers[cls](Request(scope, receive), exc)
                if inspect.isawaitable(out):
                    out = await out
                assert isinstance(out, Response)
                return out
        raise
