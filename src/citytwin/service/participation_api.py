"""Participation in the operations center (G1–G3, F7): Open311, case handling, cases as twin entities,
the demand map and the scheduled construction-site checks, mounted by :func:`install` in
``citytwin serve`` (:func:`citytwin.service.server.create_server_app`).

Role model
----------
* **Residents** are workspace users of role ``public`` (``citytwin user add NAME public``; a token with
  ``citytwin user token NAME``). They post Open311 requests — GeoReport v2's ``api_key`` is such a
  token (a bearer token works too) — comment on consultations, and vote/answer once verified
  (``POST /consultations/residents/{name}/verify`` by staff). Nobody posts anonymously.
* ``GET /open311/v2/services.json`` and ``services/{code}.json`` are open (the public service list);
  listing requests needs a token of any role. Reporters' contact fields are never returned by
  Open311; descriptions come back with personal data masked for roles without clearance.
* **Staff**: ``/cases`` (list, read, assign, status, reply) need a role other than ``public``; the
  writes need a writing role (analyst, integrator, steward, admin: the case store checks it and
  audits refusals). Reporters' name, phone and e-mail come back masked for roles that do not see
  personal data (all but steward and admin), and reading them unmasked is audited.
* Every request is one audit row (action ``participation.read`` / ``participation.write``, dataset
  ``cases``); each write in the case store adds its own (``complaint.open``, ``case.assign``,
  ``consult.moderate`` ...).

Routes (besides Open311 and the consultations of :mod:`citytwin.service.consult_api`)
----------------------------------------------------------------------------------
``GET /participation/v1/config``                    services, the city's extent and where it came from
``GET /participation/v1/entities?type=``            complaints, incidents, comments as NGSI-LD entities
``GET /participation/v1/map``                       the same as GeoJSON (the web map's layer)
``GET /participation/v1/demand``                    complaints per H3 cell (GeoJSON polygons)
``GET /participation/v1/construction``              the last construction-site check of the scheduler
``GET /cases``, ``GET /cases/{id}``                 staff: cases (masked by role) with history, links, tasks
``POST /cases/{id}/assign|status|reply``            staff: route, move, answer

The same entities are listed by the twin's ``GET /ngsi-ld/v1/entities`` after the sensors (type
filter, ``id``, ``idPattern``, ``q``, georel, ``attrs``, ``options=keyValues``) through the entity
provider :func:`ngsi_entities`, there with the reporter's contact data masked by role.

The scheduler (:class:`ConstructionWatch`) runs
:func:`~citytwin.workflows.participation.check_construction_sites` every ``check_minutes`` of
``WS/participation.json`` while the service runs, on its own thread, with an injectable clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from citytwin.foundation import access
from citytwin.foundation.cases import STATUSES, CaseStore, Clock
from citytwin.foundation.workspace import Workspace
from citytwin.service.auth import READ_METHODS, AuthError, Principal, bearer

__all__ = ["ERRORS", "ConstructionWatch", "Participation", "RowId", "install", "ngsi_entities", "participant",
           "store_of"]

_PROBLEM = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "type": {"type": "string"}, "title": {"type": "string"}, "detail": {"type": "string"}}}}}}
#: the 4xx answers of the participation routes (OpenAPI)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_PROBLEM, "description": "bad input (names the field)"},
    401: {**_PROBLEM, "description": "no, unknown or revoked token"},
    403: {**_PROBLEM, "description": "the role may not do this"},
    404: {**_PROBLEM, "description": "unknown case, consultation, comment or question"},
    422: {**_PROBLEM, "description": "the body or a parameter does not match the schema"}}


class Participation:
    """The participation side of one served workspace: config, case stores per caller, the clock.

    Parameters
    ----------
    ws
        The workspace (opened as its owner).
    clock
        Returns the current time (timezone-aware) for the case stores and the scheduler; tests
        inject one. Default: the wall clock.
    """

    def __init__(self, ws: Workspace, *, clock: Clock | None = None) -> None:
        from citytwin.workflows.participation import participation_config

        self.ws = ws
        self.clock = clock
        self.config = participation_config(ws)
        self.path = Path(ws.root) / "cases" / "cases.sqlite"
        self._lock = threading.Lock()
        self._stores: dict[tuple[str, str, str | None], CaseStore] = {}
        self.watch: ConstructionWatch | None = None

    def store(self, user: access.User) -> CaseStore:
        """The case store as ``user`` (cached per user; each call of a store opens its own connection)."""
        key = (user.name, user.role, user.department)
        with self._lock:
            st = self._stores.get(key)
            if st is None:
                if len(self._stores) > 256:
                    self._stores.clear()
                st = CaseStore(self.path, self.ws.catalog, user, self.clock)
                self._stores[key] = st
            return st


def _principal(request: Request, token: str | None) -> Principal:
    """Authenticate ``token`` (any role); the request's audit row gets the user and the action."""
    from citytwin.service.apiauth import ApiGuard

    guard: ApiGuard = request.app.state.api_guard
    note = request.scope.setdefault("citytwin.audit", {})
    write = request.method.upper() not in READ_METHODS
    note.update({"action": "participation.write" if write else "participation.read", "dataset": "cases"})
    if not guard.enabled:
        note["user"], note["why"] = guard.ws.user, "auth off"
        return Principal(guard.ws.user)
    rec = guard.catalog.resolve_token(token) if token and len(token) <= 500 else None
    if rec is None:
        why = "no token" if not token else "unknown or revoked token"
        note["why"] = why
        raise AuthError(401, "Unauthorized", f"{why}: send 'Authorization: Bearer <token>' with a token from "
                                             "`citytwin user token NAME` (residents: a user of role public)")
    user = access.User(rec["name"], rec["role"], rec["department"])
    note["user"] = user
    return Principal(user, int(rec["token_id"]))


def participant(request: Request,
                cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:  # noqa: B008
    """FastAPI dependency: the caller, of any role (residents included); audited with the request."""
    p = _principal(request, cred.credentials if cred is not None else None)
    request.state.principal = p
    return p


def staff(request: Request, p: Principal = Depends(participant)) -> Principal:  # noqa: B008
    """FastAPI dependency: a caller of a staff role (not ``public``)."""
    if p.user.role == "public":
        request.scope["citytwin.audit"]["why"] = "staff only"
        raise AuthError(403, "Forbidden", f"user {p.user.name!r} (role public) may not handle cases: "
                                          "residents use Open311 and the consultations")
    return p


def store_of(request: Request, p: Principal) -> CaseStore:
    """The case store as the caller."""
    part: Participation = request.app.state.participation
    return part.store(p.user)


Caller = Annotated[Principal, Depends(participant)]
#: a record id in a path (SQLite's integers are 64-bit)
RowId = Annotated[int, PathParam(ge=1, le=2**63 - 1, examples=[1])]
Staff = Annotated[Principal, Depends(staff)]


class AssignBody(BaseModel):
    """Route a case to a department."""

    department: str = Field(min_length=1, max_length=100)
    note: str | None = Field(default=None, max_length=4000)


class StatusBody(BaseModel):
    """Move a case to a status (open, assigned, in_progress, resolved, closed)."""

    status: str = Field(min_length=1, max_length=20)
    note: str | None = Field(default=None, max_length=4000)


class ReplyBody(BaseModel):
    """A reply to the reporter (kept in the case's history)."""

    text: str = Field(min_length=1, max_length=4000)


router = APIRouter(tags=["participation"], responses=ERRORS)


@router.get("/participation/v1/config", summary="The Open311 services and the city's extent")
def config(request: Request, p: Caller) -> dict[str, Any]:
    """What residents may report and where: the service list, the city's extent (and where it came
    from), the construction sites watched and the scheduler's period."""
    c = request.app.state.participation.config
    return {"services": c.services, "bbox": c.bbox, "bbox_source": c.bbox_source, "notes": c.notes,
            "construction_sites": [s.get("id") for s in c.construction_sites], "check_minutes": c.check_minutes}


@router.get("/participation/v1/entities", summary="Complaints, incidents and comments as NGSI-LD entities")
def entities(request: Request, p: Caller,
             type: Annotated[str | None, Query(max_length=200, description="comma list of ServiceRequest, "
                                               "Incident, ConsultationComment")] = None,
             limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> list[dict[str, Any]]:
    """NGSI-LD entities (normalized) with place and time; personal fields masked for the caller's role."""
    from citytwin.workflows.participation import case_entities

    types = [t.strip() for t in type.split(",") if t.strip()] if type else None
    return case_entities(store_of(request, p), types=types, limit=limit)


@router.get("/participation/v1/map", summary="The entities as GeoJSON (the web map's layer)")
def entity_map(request: Request, p: Caller,
               type: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
    """A FeatureCollection: one point per complaint, incident and comment with a place (an area comment
    at its vertices' mean, the area in the property ``area``)."""
    from citytwin.participation.entities import feature_collection
    from citytwin.workflows.participation import case_entities

    types = [t.strip() for t in type.split(",") if t.strip()] if type else None
    return feature_collection(case_entities(store_of(request, p), types=types))


@router.get("/participation/v1/demand", summary="The demand map: complaints per H3 cell")
def demand_map(request: Request, p: Caller, res: Annotated[int, Query(ge=5, le=11)] = 9) -> dict[str, Any]:
    """H3 cells (polygons) with the number of complaints and their split by service code."""
    from citytwin.workflows.participation import demand_geojson

    return demand_geojson(store_of(request, p), res=res)


@router.get("/participation/v1/construction", summary="The last scheduled construction-site check")
def construction(request: Request, p: Staff) -> dict[str, Any]:
    """The scheduler's state: its period, the last round's result (or error) and the rounds run."""
    w: ConstructionWatch | None = request.app.state.participation.watch
    if w is None:
        return {"running": False, "sites": 0, "last": None, "rounds": 0, "error": None}
    return {"running": w.running, "sites": len(w.sites), "last": w.last, "rounds": w.rounds, "error": w.error}


def _case(st: CaseStore, case_id: int) -> dict[str, Any]:
    rec = st.get(case_id)
    return {**rec, "history": st.history(case_id), "links": st.links(case_id), "tasks": st.tasks(case_id)}


@router.get("/cases", summary="Cases (staff): complaints and incidents, newest first")
def list_cases(request: Request, p: Staff,
               kind: Annotated[str | None, Query(pattern="^(complaint|incident)$")] = None,
               status: Annotated[str | None, Query(max_length=100, description="comma list")] = None,
               limit: Annotated[int, Query(ge=1, le=10000)] = 200) -> list[dict[str, Any]]:
    """Cases with reporters' personal data masked for roles without clearance."""
    from citytwin.foundation.errors import InputError

    sts = [s.strip() for s in status.split(",") if s.strip()] if status else None
    for s in sts or []:
        if s not in STATUSES:
            raise InputError(f"unknown status {s!r}", field="status", hint=", ".join(STATUSES))
    return store_of(request, p).cases(kind=kind, status=sts, limit=limit)


@router.get("/cases/{case_id}", summary="One case (staff) with its history, links and tasks")
def get_case(request: Request, p: Staff, case_id: RowId) -> dict[str, Any]:
    return _case(store_of(request, p), case_id)


@router.post("/cases/{case_id}/assign", summary="Route a case to a department (staff)")
def assign_case(request: Request, p: Staff, case_id: RowId, body: Annotated[AssignBody, Body()]) -> dict[str, Any]:
    st = store_of(request, p)
    st.assign(case_id, body.department, note=body.note)
    return _case(st, case_id)


@router.post("/cases/{case_id}/status", summary="Move a case to a status (staff)")
def case_status(request: Request, p: Staff, case_id: RowId, body: Annotated[StatusBody, Body()]) -> dict[str, Any]:
    st = store_of(request, p)
    st.set_status(case_id, body.status, note=body.note)
    return _case(st, case_id)


@router.post("/cases/{case_id}/reply", summary="Reply to the reporter (staff)")
def case_reply(request: Request, p: Staff, case_id: RowId, body: Annotated[ReplyBody, Body()]) -> dict[str, Any]:
    st = store_of(request, p)
    st.reply(case_id, body.text)
    return _case(st, case_id)


class ConstructionWatch:
    """The scheduler of the construction-site checks: a thread that runs one round every ``period_s``
    (:func:`citytwin.workflows.participation.check_construction_sites`), as the workspace owner.

    Parameters
    ----------
    store
        The case store incidents are opened in (its clock is the check's "now").
    history
        The twin's history store (``query`` of observations).
    sites
        The construction sites (see :func:`citytwin.participation.construction.site_violations`).
    period_s
        Seconds between rounds (the wall-clock wait; the check's time comes from the store's clock).
    lookback_hours
        Hours of readings each round checks.
    wait
        ``wait(seconds)`` -> True to stop (default: the stop event's wait); tests inject their own.
    """

    def __init__(self, store: CaseStore, history: Any, sites: list[dict[str, Any]], *, period_s: float = 900.0,
                 lookback_hours: float = 24.0, wait: Callable[[float], bool] | None = None) -> None:
        self.store, self.history, self.sites = store, history, sites
        self.period_s, self.lookback_hours = period_s, lookback_hours
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._thread: threading.Thread | None = None
        self.last: dict[str, Any] | None = None
        self.error: str | None = None
        self.rounds = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_once(self) -> dict[str, Any]:
        """One round now; its result is kept in ``last`` (an error in ``error``, the loop goes on)."""
        from citytwin.foundation.errors import CitytwinError
        from citytwin.workflows.participation import check_construction_sites

        try:
            self.last = check_construction_sites(self.store, self.history, self.sites,
                                                 lookback_hours=self.lookback_hours)
            self.error = None
        except (CitytwinError, OSError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.last = {"checked_at": self.store.now().isoformat(), "error": self.error}
        self.rounds += 1
        return self.last

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            if self._wait(self.period_s) or self._stop.is_set():
                break

    def start(self) -> None:
        if self._thread is None and self.sites:
            self._thread = threading.Thread(target=self._loop, name="construction-watch", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def _resolver(request: Request, api_key: str | None) -> CaseStore:
    """Open311's store resolver: the ``api_key`` (POST) or the bearer token, as a workspace token."""
    from citytwin.service.open311 import Open311Error

    token = api_key
    if token is None:
        h = request.headers.get("authorization", "")
        token = h[7:].strip() if h.lower().startswith("bearer ") else None
    try:
        p = _principal(request, token)
    except AuthError as exc:
        write = request.method.upper() not in READ_METHODS
        if not token:  # no credentials at all: 401, as the rest of the API
            raise Open311Error(401, "an api_key is required (a workspace token: `citytwin user token NAME`;"
                                    " residents are users of role public)" if write else exc.detail) from None
        raise Open311Error(403, ("invalid api_key: " if write else "") + exc.detail) from None
    request.state.principal = p
    return store_of(request, p)


@contextmanager
def running(app: FastAPI) -> Iterator[None]:
    """Start the construction-site scheduler for the app's lifespan (when sites are configured)."""
    part: Participation = app.state.participation
    w = part.watch
    if w is not None:
        w.start()
    try:
        yield
    finally:
        if w is not None:
            w.stop()


def ngsi_entities(request: Request, *, type: str | None, ids: list[str] | None, id_pattern: str | None,
                  q: list[tuple[str, str, float]], near: tuple[float, float, float] | None,
                  bbox: tuple[float, float, float, float] | None, attrs: list[str] | None, key_values: bool,
                  limit: int, offset: int) -> list[dict[str, Any]]:
    """The entity provider of ``GET /ngsi-ld/v1/entities`` (``app.state.entity_provider``): complaints
    (``ServiceRequest``), ``Incident``s and ``ConsultationComment``s matching the query, read as the
    caller (the twin's token check has passed), with the reporter's name, phone and e-mail — masked
    for roles without personal-data clearance; unmasked reads are audited (``case.read_personal``)
    beside the request's own ``twin.read`` row."""
    from citytwin.participation.entities import ENTITY_TYPES, select_entities
    from citytwin.participation.entities import key_values as simplified
    from citytwin.workflows.participation import case_entities

    asked = [t.strip() for t in type.split(",")] if type else list(ENTITY_TYPES.values())
    types = [t for t in asked if t in ENTITY_TYPES.values()
             and (ids is None or any(i.startswith(f"urn:ngsi-ld:{t}:") for i in ids))]
    p: Principal | None = getattr(request.state, "principal", None)
    if not types or p is None:
        return []
    filtered = bool(ids or id_pattern or q or near or bbox)
    ents = case_entities(store_of(request, p), types=types, limit=10_000_000 if filtered else offset + limit,
                         reporter=True)
    ents = select_entities(ents, ids=ids, id_pattern=id_pattern, q=q, near=near, bbox=bbox,
                           attrs=attrs)[offset:offset + limit]
    return [simplified(e) for e in ents] if key_values else ents


def install(app: FastAPI, ws: Workspace, *, clock: Clock | None = None, history: Any = None,
            watch_wait: Callable[[float], bool] | None = None) -> Participation:
    """Mount Open311, the case routes and the entity map on ``app`` (the consultations'
    :data:`citytwin.service.consult_api.router` is mounted beside it); set up the construction-site
    scheduler over ``history`` (the twin's history store) when sites are configured (started by
    :func:`running` in the app's lifespan)."""
    from citytwin.service.open311 import make_router

    part = Participation(ws, clock=clock)
    c = part.config
    app.state.participation = part
    app.include_router(make_router(None, services=c.services, bbox=c.bbox, departments=c.departments,
                                   deadline_hours=c.deadline_hours, resolve=_resolver, bbox_source=c.bbox_source))
    app.include_router(router)
    app.state.entity_provider = ngsi_entities
    if c.construction_sites and history is not None:
        part.watch = ConstructionWatch(part.store(ws.user), history, c.construction_sites,
                                       period_s=60.0 * c.check_minutes, lookback_hours=c.check_lookback_hours,
                                       wait=watch_wait)
    return part
