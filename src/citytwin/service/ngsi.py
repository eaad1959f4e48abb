"""NGSI-LD-style HTTP API of the live twin (``/ngsi-ld/v1``) and a flat history API (``/twin/v1``).

Endpoints (NGSI-LD 1.6 names; a practical subset)
--------------------------------------------------
``POST   /ngsi-ld/v1/entities``                      create an entity (409 if it exists); observed attributes in it are ingested
``GET    /ngsi-ld/v1/entities``                      query: ``type``, ``id`` (comma list), ``idPattern``, ``q`` (``pm25>150;no2<80``),
                                                     ``georel=near;maxDistance==2000`` + ``geometry=Point`` + ``coordinates=[lon,lat]``,
                                                     ``georel=within`` + ``geometry=Polygon|bbox`` + ``coordinates``, ``attrs``,
                                                     ``limit``, ``offset``, ``options=keyValues``; after the live entities, those
                                                     of ``app.state.entity_provider`` when set (cases and comments:
                                                     :func:`citytwin.service.participation_api.ngsi_entities`)
``GET    /ngsi-ld/v1/entities/{id}``                 one entity (``attrs``, ``options=keyValues``; also the provider's)
                                                     (both GETs: ``scenario=NAME`` reads a published simulation scenario)
``DELETE /ngsi-ld/v1/entities/{id}``                 delete (history is kept)
``PATCH|POST /ngsi-ld/v1/entities/{id}/attrs``       update attributes = new observations (history + state)
``POST   /ngsi-ld/v1/entityOperations/upsert``       batch: create missing entities, ingest all attributes (201, or 207 with errors)
``GET    /ngsi-ld/v1/temporal/entities/{id}``        history: ``attrs``, ``timerel=between|after|before``, ``timeAt``,
                                                     ``endTimeAt``, ``lastN``, ``aggrMethods=avg,min,max,count``,
                                                     ``aggrPeriodDuration=PT1H``, ``options=temporalValues``
``GET    /ngsi-ld/v1/temporal/entities``             history of many entities: ``type``, ``id``, geo filters as above
``POST   /twin/v1/observations``                     the MQTT payload format over HTTP (object or array; unknown entities rejected)
``GET    /twin/v1/history``                          flat rows: ``entity``, ``property``, ``start``, ``end``, ``interval``, ``funcs``,
                                                     ``bbox=minlon,minlat,maxlon,maxlat``, ``near=lon,lat,metres``, ``maxPoints``
``GET    /twin/v1/scenarios``                        simulation scenarios (``citytwin sim publish``, ``sim run --live``), ``status`` running/complete/failed
``GET    /twin/v1/deadletters``                      rejected input with reasons (``reason``, ``source``, ``limit``)

Every endpoint needs ``Authorization: Bearer <token>``: reads (GET) a role cleared for the twin's
classification, writes an integrator, steward or admin; each request is audited
(:mod:`citytwin.service.auth`, installed by :func:`citytwin.service.app.create_app`).

Every write returns only after the observations are fsynced to the history store; every
rejected item is written to the dead-letter store with its reason, and the response says
which items were rejected and why.

Hardening (issue 13): bodies are read as a stream and refused with 413 once past the limit
(:func:`read_body`), non-JSON content types get 415, bodies are decoded by
:func:`citytwin.twin.entities.decode_json` (too deep, lone surrogates -> 400 and a dead letter);
every :class:`~citytwin.foundation.errors.CitytwinError` becomes a 4xx through one exception
handler (:func:`error_response`, registered by :func:`install`); the blocking work of a route
(decoding, validation, the fsynced commit, rules, the alert hub) runs in the thread pool, never
on the event loop (an entity read of the live state, tens of microseconds, runs on it, and so do the
decoding and parsing of a small observation body, whose commit a writer thread makes for many requests
at once: :mod:`citytwin.service.commitqueue`); the OpenAPI declares every request body and 4xx (:data:`ERRORS`, :func:`body_spec`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from citytwin.foundation.errors import AccessDenied, CitytwinError, InputError, NotFoundError
from citytwin.foundation.timeseries import DeadLetter, Near, StoreError
from citytwin.foundation.timeseries.history import to_us
from citytwin.service.upsert import parse_updates, upsert
from citytwin.twin.columnar import fast_decode
from citytwin.twin.entities import (
    UNIT_CODES,
    ParseResult,
    PayloadError,
    decode_json,
    format_time_us,
    location_lonlat,
    validate_entity,
)

_CODE_OF = {v: k for k, v in UNIT_CODES.items() if k not in ("HPA",)}


def _twin(request: Request) -> Any:
    return request.app.state.twin


def _state(request: Request, scenario: str | None) -> Any:
    """The live state, or a published simulation scenario's (``?scenario=NAME``; never mixed with live)."""
    if scenario is None:
        return _twin(request).stores.state
    from citytwin.workflows.simulation_twin import open_scenario_state
    return open_scenario_state(_twin(request).stores.root, scenario)


def json_response(content: Any, status_code: int = 200, background: BackgroundTask | None = None) -> Response:
    """A JSON response encoded by orjson (a tenth of the standard encoder's time on an entity; UTF-8 as is,
    no spaces, numpy numbers and arrays as numbers, NaN/Infinity as null)."""
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status_code,
                    media_type="application/json", background=background)


async def _drop(held: list[Any]) -> None:
    held.clear()


def freed_after_reply(*objects: Any) -> BackgroundTask:
    """A response's background task that holds ``objects`` (a request's decoded body) until the response is sent,
    then frees them on the event loop: freeing the ~3,000 objects of a 240-update body takes 0.6-0.9 ms, which the
    client no longer waits for. Nothing the response promises depends on it (docs/twin.md, "Session 18")."""
    return BackgroundTask(_drop, list(objects))


def _error(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"type": f"https://uri.etsi.org/ngsi-ld/errors/{title}", "title": title,
                         "detail": detail, **extra}, status_code=status)


class ApiError(CitytwinError):
    """An error with its HTTP status and NGSI-LD title (``BadRequestData``, ``RequestEntityTooLarge`` ...)."""

    def __init__(self, status: int, title: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.title, self.extra = status, title, extra


def error_status(exc: CitytwinError) -> tuple[int, str]:
    """HTTP status and title of an error raised on purpose (a bad request unless it says otherwise)."""
    from citytwin.twin.alerts import AlertStateError

    if isinstance(exc, ApiError):
        return exc.status, exc.title
    if isinstance(exc, StoreError):
        return 503, "ServiceUnavailable"
    if isinstance(exc, NotFoundError):
        return 404, "ResourceNotFound"
    if isinstance(exc, AccessDenied):
        return 403, "Forbidden"
    if isinstance(exc, AlertStateError):
        return 409, "Conflict"
    return 400, "BadRequestData"


def error_response(request: Request, exc: Exception) -> JSONResponse:
    """The app's one exception handler for :class:`CitytwinError`: its status (4xx; 503 for a store
    failure) and ``{"type", "title", "detail"}``, so that no route needs its own ``try/except``."""
    assert isinstance(exc, CitytwinError)
    status, title = error_status(exc)
    extra = exc.extra if isinstance(exc, ApiError) else {}
    detail = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    return _error(status, title, detail, **extra)


class ErrorBody(BaseModel):
    """An error answer (NGSI-LD problem details)."""

    type: str
    title: str
    detail: str


_E: dict[str, Any] = {"model": ErrorBody}
#: the 4xx every route may answer (with the token check); body routes add 413 and 415
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_E, "description": "Bad request: the detail names the parameter or field"},
    401: {**_E, "description": "No, unknown or revoked bearer token"},
    403: {**_E, "description": "The token's role may not do this"},
    404: {**_E, "description": "Not found"},
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {**_E, "description": "Body larger than the limit (refused while reading)"},
    415: {**_E, "description": "Body is not JSON (Content-Type must be application/json or */*+json)"},
}
router = APIRouter(responses=ERRORS)
JSON_MEDIA = ("application/json", "application/ld+json", "application/geo+json")
_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
ENTITY_SCHEMA: dict[str, Any] = {"type": "object", "required": ["id", "type"], "additionalProperties": True,
                                 "properties": {"id": {"type": "string"}, "type": {"type": "string"}}}


def body_spec(schema: dict[str, Any], *, required: bool = True, describe: str = "") -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body (the routes read it themselves, as a stream)."""
    return {"requestBody": {"required": required, "description": describe,
                            "content": {m: {"schema": schema} for m in ("application/json", "application/ld+json")}}}


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media in JSON_MEDIA or (media.startswith("application/") and media.endswith("+json"))


def _dead_letter(twin: Any, **kw: Any) -> None:
    twin.stores.deadletters.add([DeadLetter(**kw)])


async def read_body(request: Request, source: str = "http") -> bytes:
    """The raw body, read as a stream and refused (413) as soon as it passes the limit.

    A ``Content-Length`` over the limit is refused before anything is read; a chunked body when
    the limit is passed, so that at most one chunk over the limit is ever held. Non-JSON content
    types get 415. Oversized bodies are dead-lettered (in a worker thread).
    """
    twin = _twin(request)
    limit = twin.max_body
    ctype = request.headers.get("content-type")
    if ctype is not None and not _is_json(ctype):
        raise ApiError(415, "UnsupportedMediaType", f"body of type {ctype!r} is not JSON",
                       hint="send Content-Type: application/json")
    path = str(request.url.path)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await run_in_threadpool(_dead_letter, twin, source=source, reason="oversized", topic=path,
                                detail=f"declared body of {declared} bytes exceeds {limit}", payload=None,
                                payload_bytes=int(declared))
        raise ApiError(413, "RequestEntityTooLarge", f"body of {declared} bytes exceeds {limit}")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            await run_in_threadpool(_dead_letter, twin, source=source, reason="oversized", topic=path,
                                    detail=f"body exceeds {limit} bytes (refused while reading)",
                                    payload=bytes(buf[:1024]), payload_bytes=None)
            raise ApiError(413, "RequestEntityTooLarge", f"body exceeds {limit} bytes")
    return bytes(buf)


def decode_body(request: Request, raw: bytes, source: str = "http",
                decode: Callable[[bytes], Any] = decode_json) -> Any:
    """Decode a JSON body (:func:`citytwin.twin.entities.decode_json`, or ``decode``: the same outcome, e.g.
    :func:`citytwin.twin.columnar.fast_decode`); what fails is dead-lettered (400)."""
    try:
        return decode(raw)
    except PayloadError as exc:
        _dead_letter(_twin(request), source=source, reason=exc.reason, topic=str(request.url.path),
                     detail=exc.message, payload=raw)
        raise ApiError(400, "InvalidRequest", f"body: {exc.message}", reason=exc.reason) from None


def _rejects_json(res: Any) -> list[dict[str, Any]]:
    return [{"reason": r.reason, "detail": r.detail, "entity": r.entity, "attribute": r.property}
            for r in res.rejects]


def _commit(request: Request, res: Any, source: str = "http") -> dict[str, Any]:
    twin = _twin(request)
    rep = twin.ingestor.commit([res], source=source, topics=[str(request.url.path)])
    return {"accepted": rep.accepted, "rejected": _rejects_json(res)}


# -- entity representation --------------------------------------------------------------------------

_GEOJSON_TYPES = frozenset({"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"})


def entity_json(e: dict[str, Any], key_values: bool = False) -> dict[str, Any]:
    """A state-store entity as NGSI-LD normalized (or keyValues) JSON."""
    out: dict[str, Any] = {"id": e["id"], "type": e["type"]}
    if e.get("lon") is not None:
        point = {"type": "Point", "coordinates": [e["lon"], e["lat"]]}
        out["location"] = point if key_values else {"type": "GeoProperty", "value": point}
    for k, v in (e.get("static") or {}).items():  # a static GeoJSON geometry (a road's shape) is a GeoProperty
        geo = isinstance(v, dict) and v.get("type") in _GEOJSON_TYPES and "coordinates" in v
        out[k] = v if key_values else {"type": "GeoProperty" if geo else "Property", "value": v}
    for prop, a in sorted(e["attrs"].items()):
        if key_values:
            out[prop] = a["value"]
        else:
            p: dict[str, Any] = {"type": "Property", "value": a["value"], "observedAt": format_time_us(a["observed_us"])}
            if a.get("unit"):
                code = _CODE_OF.get(a["unit"])
                p["unitCode" if code else "unit"] = code or a["unit"]
            out[prop] = p
    return out


def parse_q(q: str | None) -> list[tuple[str, str, float]]:
    """NGSI-LD ``q`` (``pm25>150;no2<=80``; ``;`` = and) -> conditions.

    Examples
    --------
    >>> parse_q("pm25>150;no2==3")
    [('pm25', '>', 150.0), ('no2', '==', 3.0)]
    """
    if not q:
        return []
    out = []
    import re
    for part in q.split(";"):
        m = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*(==|!=|>=|<=|>|<)\s*(-?[\d.eE+-]+)\s*", part)
        if not m:
            raise InputError(f"q term {part!r} not understood", field="q",
                             hint="use attribute op number, joined by ';' (e.g. pm25>150;no2<80)")
        try:
            val = float(m.group(3))
        except ValueError:
            val = math.nan
        if not math.isfinite(val):
            raise InputError(f"q term {part!r}: {m.group(3)!r} is not a finite number", field="q")
        out.append((m.group(1), m.group(2), val))
    return out


def parse_geo(georel: str | None, geometry: str | None, coordinates: str | None
              ) -> tuple[tuple[float, float, float] | None, tuple[float, float, float, float] | None]:
    """NGSI-LD geo-query -> (near (lon, lat, metres) or None, bbox or None).

    ``georel=near;maxDistance==2000`` with ``geometry=Point``; ``georel=within`` with
    ``geometry=Polygon`` (its bounding box is used) or ``geometry=bbox`` and
    ``coordinates=[minlon,minlat,maxlon,maxlat]``.

    Examples
    --------
    >>> parse_geo("near;maxDistance==2000", "Point", "[116.4,39.9]")
    ((116.4, 39.9, 2000.0), None)
    """
    if not georel:
        return None, None
    if coordinates is None or geometry is None:
        raise InputError("georel needs geometry and coordinates", field="georel")
    try:
        coords = decode_json(coordinates.encode("utf-8", "surrogatepass"), max_depth=4)
    except PayloadError as exc:
        raise InputError(f"coordinates {coordinates[:200]!r}: {exc.message}", field="coordinates") from None
    rel, *mods = georel.split(";")
    if rel == "near":
        if geometry != "Point" or not isinstance(coords, list) or len(coords) != 2:
            raise InputError("near needs geometry=Point and coordinates=[lon,lat]", field="geometry")
        dist = None
        for m in mods:
            k, _, v = m.partition("==")
            if k == "maxDistance":
                try:
                    dist = float(v)
                except ValueError:
                    raise InputError(f"maxDistance {v[:100]!r} is not a number of metres", field="georel") from None
        if dist is None or not 0 <= dist < math.inf:
            raise InputError("near needs maxDistance==METRES (a finite number >= 0)", field="georel")
        lon, lat = location_lonlat({"type": "Point", "coordinates": coords})
        return (lon, lat, dist), None
    if rel in ("within", "intersects"):
        try:
            if not isinstance(coords, list) or any(isinstance(v, bool) for v in _leaves(coords)):
                raise ValueError("not a list of numbers")
            arr = np.asarray(coords, dtype="float64")
        except (TypeError, ValueError):
            raise InputError(f"coordinates {coordinates[:200]!r} are not numbers", field="coordinates") from None
        if not np.isfinite(arr).all():
            raise InputError("coordinates must be finite numbers", field="coordinates")
        if geometry == "bbox" and arr.shape == (4,):
            return None, (float(arr[0]), float(arr[1]), float(arr[2]), float(arr[3]))
        if geometry == "Polygon" and arr.ndim == 3 and arr.shape[1] >= 1 and arr.shape[2] >= 2:
            ring = arr[0]
            return None, (float(ring[:, 0].min()), float(ring[:, 1].min()), float(ring[:, 0].max()),
                          float(ring[:, 1].max()))
        raise InputError("within needs geometry=Polygon (coordinates [[[lon,lat],...]]) or geometry=bbox",
                         field="geometry")
    raise InputError(f"georel {rel!r} not supported", field="georel", hint="use near or within")


def _leaves(x: Any) -> list[Any]:
    out: list[Any] = []
    stack = [x]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        else:
            out.append(v)
    return out


# -- entities -------------------------------------------------------------------------------------

_BODY = {**ERRORS, **BODY_ERRORS}


@router.post("/ngsi-ld/v1/entities", status_code=201, responses={**_BODY, 409: {**_E, "description": "Exists"}},
             openapi_extra=body_spec(ENTITY_SCHEMA, describe="An NGSI-LD entity; observed attributes in it are "
                                                             "ingested"))
async def create_entity(request: Request) -> Response:
    raw = await read_body(request)
    return await run_in_threadpool(_create_entity, request, raw)


def _create_entity(request: Request, raw: bytes) -> Response:
    doc = decode_body(request, raw)
    twin = _twin(request)
    try:
        ent = validate_entity(doc)
    except InputError as exc:
        _dead_letter(twin, source="http", reason="invalid_entity", detail=exc.message, topic=str(request.url.path),
                     payload=raw[:65536])
        raise
    if twin.stores.state.lookup(ent.id) is not None:
        return _error(409, "AlreadyExists", f"entity {ent.id} exists")
    twin.stores.state.put_entity(ent.id, ent.type, ent.lon, ent.lat, ent.static)
    res = twin.parser.parse_doc(doc, ParseResult())
    out = _commit(request, res)
    return JSONResponse(out, status_code=201, headers={"Location": f"/ngsi-ld/v1/entities/{ent.id}"})


@router.get("/ngsi-ld/v1/entities")
def query_entities(request: Request, type: str | None = None, id: str | None = None,
                   idPattern: str | None = None, q: str | None = None, georel: str | None = None,
                   geometry: str | None = None, coordinates: str | None = None, attrs: str | None = None,
                   limit: int = Query(100, ge=1, le=10000), offset: int = Query(0, ge=0),
                   options: str | None = None, scenario: str | None = None) -> Any:
    near, bbox = parse_geo(georel, geometry, coordinates)
    state = _state(request, scenario)
    filt: dict[str, Any] = {"ids": id.split(",") if id else None, "id_pattern": idPattern, "q": parse_q(q), "near": near,
                            "bbox": bbox, "attrs": attrs.split(",") if attrs else None}
    rows = state.query(type=type, limit=limit, offset=offset, **filt)
    kv = bool(options and "keyValues" in options)
    out = [entity_json(e, kv) for e in rows]
    provide = getattr(request.app.state, "entity_provider", None)  # cases: service.participation_api
    if provide is not None and scenario is None and len(out) < limit:  # listed after the sensors, one paging
        skip = 0 if rows or not offset else offset - len(state.query(type=type, limit=offset, **{**filt, "attrs": [""]}))
        out += provide(request, type=type, key_values=kv, limit=limit - len(out), offset=skip, **filt)
    return out


@router.get("/ngsi-ld/v1/entities/{entity_id}")
async def get_entity(request: Request, entity_id: str, attrs: str | None = None, options: str | None = None,
                     scenario: str | None = None) -> Any:
    """One entity with its latest values. The live state is read on the event loop (one indexed read of
    its SQLite file in WAL mode, which the ingest's writes never block: tens of microseconds); a
    scenario's state is opened in a worker thread."""
    if scenario is not None:
        return await run_in_threadpool(_get_entity, request, entity_id, attrs, options, scenario)
    return _get_entity(request, entity_id, attrs, options, None)


def _get_entity(request: Request, entity_id: str, attrs: str | None, options: str | None,
                scenario: str | None) -> Any:
    response = entity_response(_state(request, scenario), entity_id, attrs, options)
    provide = getattr(request.app.state, "entity_provider", None)
    if response.status_code == 404 and provide is not None and scenario is None:  # a case or comment
        got = provide(request, type=None, ids=[entity_id], id_pattern=None, q=[], near=None, bbox=None,
                      attrs=attrs.split(",") if attrs else None,
                      key_values=bool(options and "keyValues" in options), limit=1, offset=0)
        if got:
            return got[0]
    return response


def entity_response(state: Any, entity_id: str, attrs: str | None, options: str | None) -> Response:
    """The answer of ``GET /ngsi-ld/v1/entities/{id}`` from a state store (200, or 404)."""
    e = state.get(entity_id, attrs=attrs.split(",") if attrs else None)
    if e is None:
        return _error(404, "ResourceNotFound", f"entity {entity_id} not found")
    return json_response(entity_json(e, bool(options and "keyValues" in options)))


@router.delete("/ngsi-ld/v1/entities/{entity_id}", status_code=204)
def delete_entity(request: Request, entity_id: str) -> Response:
    if not _twin(request).stores.state.delete_entity(entity_id):
        return _error(404, "ResourceNotFound", f"entity {entity_id} not found")
    return Response(status_code=204)


def _update_attrs(request: Request, entity_id: str, raw: bytes) -> Response:
    doc = decode_body(request, raw)
    twin = _twin(request)
    if not isinstance(doc, dict):
        res = ParseResult()
        twin.parser.parse_doc(doc, res, topic_id=entity_id)
        _commit(request, res)
        return _error(400, "BadRequestData", "attributes must be a JSON object", rejected=_rejects_json(res))
    res = twin.parser.parse_doc({**doc, "id": entity_id}, ParseResult(), topic_id=entity_id)
    out = _commit(request, res)
    if any(r.reason == "unknown_entity" for r in res.rejects):
        return _error(404, "ResourceNotFound", f"entity {entity_id} not found", rejected=out["rejected"])
    if out["rejected"]:
        return JSONResponse({"notUpdated": out["rejected"], "updated": out["accepted"]}, status_code=207)
    return Response(status_code=204)


_ATTRS = body_spec(_OBJECT, describe="Attributes to update (new observations)")


@router.patch("/ngsi-ld/v1/entities/{entity_id}/attrs", status_code=204, responses=_BODY, openapi_extra=_ATTRS)
async def patch_attrs(request: Request, entity_id: str) -> Response:
    raw = await read_body(request)
    return await run_in_threadpool(_update_attrs, request, entity_id, raw)


@router.post("/ngsi-ld/v1/entities/{entity_id}/attrs", status_code=204, responses=_BODY, openapi_extra=_ATTRS)
async def post_attrs(request: Request, entity_id: str) -> Response:
    raw = await read_body(request)
    return await run_in_threadpool(_update_attrs, request, entity_id, raw)


@router.post("/ngsi-ld/v1/entityOperations/upsert", status_code=201, responses=_BODY,
             openapi_extra=body_spec({"type": "array", "items": _OBJECT}, describe="Entities to create or update"))
async def batch_upsert(request: Request) -> Response:
    raw = await read_body(request)
    return await run_in_threadpool(_batch_upsert, request, raw)


def _batch_upsert(request: Request, raw: bytes) -> Response:
    """The items' entity checks in order, their readings validated and committed as columns
    (:func:`citytwin.service.upsert.upsert`)."""
    doc = decode_body(request, raw, decode=fast_decode)
    twin = _twin(request)
    if not isinstance(doc, list):
        _dead_letter(twin, source="http", reason="not_an_object", topic=str(request.url.path),
                     detail="batch upsert needs a JSON array of entities", payload=raw[:65536])
        return _error(400, "BadRequestData", "batch upsert needs a JSON array of entities")
    ok, errors, accepted = upsert(twin, doc, str(request.url.path))
    later = freed_after_reply(doc, raw)  # (the body's objects freed once the answer is out)
    if errors:
        return JSONResponse({"success": ok, "errors": errors, "accepted": accepted}, status_code=207, background=later)
    return json_response(ok, status_code=201, background=later)  # (the ids as JSONResponse gave them, by orjson)


@router.post("/twin/v1/observations", status_code=201, responses=_BODY,
             openapi_extra=body_spec({"oneOf": [_OBJECT, {"type": "array", "items": _OBJECT}]},
                                     describe="Entity updates in the MQTT payload format (object or array)"))
async def post_observations(request: Request) -> Response:
    """A small body that decodes is parsed on the event loop (microseconds; the parser only looks entities up)
    and committed by the app's :class:`~citytwin.service.commitqueue.CommitQueue` (``app.state.commits``),
    grouped with the other requests queued meanwhile; anything else (large, undecodable: dead-lettered) is
    handled in a worker thread as before."""
    raw = await read_body(request)
    queue = getattr(request.app.state, "commits", None)
    if queue is not None and len(raw) <= INLINE_BODY:
        try:
            doc = decode_json(raw)
        except PayloadError:  # the worker thread decodes it again and dead-letters it
            doc = None
        if doc is not None:
            res = _twin(request).parser.parse_doc(doc, ParseResult())
            await queue.submit((res, str(request.url.path)))
            out = {"accepted": len(res.observations), "rejected": _rejects_json(res)}
            return json_response(out, status_code=201 if not out["rejected"] else 207)
    return await run_in_threadpool(_post_observations, request, raw)


#: bodies up to this size are decoded and parsed on the event loop (a reading is ~100 bytes)
INLINE_BODY = 16 * 1024


def http_committer(twin: Any) -> Any:
    """The commit function of a :class:`~citytwin.service.commitqueue.CommitQueue`: the queued
    ``(ParseResult, path)`` pairs of many requests in one ``Ingestor.commit`` call (one group)."""
    def commit(items: list[tuple[ParseResult, str]]) -> None:
        twin.ingestor.commit([r for r, _ in items], source="http", topics=[t for _, t in items])
    return commit


def _post_observations(request: Request, raw: bytes) -> Response:
    """A large body: its readings validated and committed as columns (:func:`citytwin.service.upsert.parse_updates`)."""
    doc = decode_body(request, raw, decode=fast_decode)
    out = _commit(request, parse_updates(_twin(request).parser, doc))
    later = freed_after_reply(doc, raw)
    return json_response(out, status_code=201 if not out["rejected"] else 207, background=later)


# -- history ------------------------------------------------------------------------------------

def _time_window(timerel: str | None, timeAt: str | None, endTimeAt: str | None) -> tuple[Any, Any]:
    if timerel is None:
        return None, None
    if timeAt is None:
        raise InputError("timerel needs timeAt", field="timeAt")
    if timerel == "between":
        if endTimeAt is None:
            raise InputError("timerel=between needs endTimeAt", field="endTimeAt")
        return timeAt, endTimeAt
    if timerel == "after":
        return to_us(timeAt) + 1, None  # type: ignore[operator]
    if timerel == "before":
        return None, timeAt
    raise InputError(f"timerel {timerel!r} not supported", field="timerel", hint="between, after, before")


def _records_value(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def temporal_json(df: pd.DataFrame, *, aggr: list[str] | None, period_s: float | None,
                  temporal_values: bool) -> dict[str, dict[str, Any]]:
    """History rows (one entity or many) -> ``{entity: NGSI-LD temporal representation}``."""
    out: dict[str, dict[str, Any]] = {}
    if df.empty:
        return out
    tcol = pd.to_datetime(df["time"], utc=True)
    iso = [format_time_us(int(x)) for x in tcol.astype("int64") // 1000] if tcol.dt.unit == "ns" else \
        [format_time_us(int(x)) for x in tcol.dt.as_unit("us").astype("int64")]
    df = df.assign(_iso=iso)
    for (ent, prop), g in df.groupby(["entity", "property"], sort=True):
        doc = out.setdefault(str(ent), {"id": ent, "type": g["type"].iloc[0] if "type" in g else None})
        if aggr:
            attr: dict[str, Any] = {"type": "Property"}
            step_us = int((period_s or 0) * 1e6)
            ends = [format_time_us(int(pd.Timestamp(t).value // 1000) + step_us) for t in g["time"]]
            for f in aggr:
                attr[f] = [[_records_value(v), s, e] for v, s, e in zip(g[f].tolist(), g["_iso"], ends, strict=True)]
            doc[str(prop)] = attr
        elif temporal_values:
            doc[str(prop)] = {"type": "Property",
                              "values": [[_records_value(v), t] for v, t in zip(g["value"].tolist(), g["_iso"],
                                                                                strict=True)]}
        else:
            unit = g["unit"].iloc[0]
            code = _CODE_OF.get(unit)
            doc[str(prop)] = [{"type": "Property", "value": _records_value(v), "observedAt": t,
                               **({"unitCode": code} if code else {"unit": unit})}
                              for v, t in zip(g["value"].tolist(), g["_iso"], strict=True)]
    return out


def _temporal(request: Request, *, ids: list[str] | None, type: str | None, attrs: str | None, timerel: str | None,
              timeAt: str | None, endTimeAt: str | None, lastN: int | None, aggrMethods: str | None,
              aggrPeriodDuration: str | None, options: str | None, georel: str | None, geometry: str | None,
              coordinates: str | None) -> dict[str, dict[str, Any]]:
    twin = _twin(request)
    h = twin.stores.history
    start, end = _time_window(timerel, timeAt, endTimeAt)
    near, bbox = parse_geo(georel, geometry, coordinates)
    filt: dict[str, Any] = {"entities": ids, "types": [type] if type else None,
                            "properties": attrs.split(",") if attrs else None, "start": start, "end": end,
                            "bbox": bbox, "near": Near(*near) if near else None}
    if aggrMethods:
        funcs = aggrMethods.split(",")
        from citytwin.foundation.timeseries.history import iso_duration_s
        period = iso_duration_s(aggrPeriodDuration or "PT1H")
        if period is None:
            raise InputError(f"aggrPeriodDuration {aggrPeriodDuration!r} is not an ISO 8601 duration",
                             field="aggrPeriodDuration")
        df = h.aggregate(period, funcs=[f if f != "totalCount" else "count" for f in funcs], **filt)
        if type:
            df["type"] = type
        return temporal_json(df, aggr=funcs, period_s=period, temporal_values=False)
    df = h.query(**filt)
    if lastN:
        df = df.groupby(["entity", "property"], sort=False).tail(int(lastN))
    return temporal_json(df, aggr=None, period_s=None, temporal_values=bool(options and "temporalValues" in options))


@router.get("/ngsi-ld/v1/temporal/entities/{entity_id}")
def temporal_entity(request: Request, entity_id: str, attrs: str | None = None, timerel: str | None = None,
                    timeAt: str | None = None, endTimeAt: str | None = None, lastN: int | None = None,
                    aggrMethods: str | None = None, aggrPeriodDuration: str | None = None,
                    options: str | None = None) -> Any:
    twin = _twin(request)
    ref = twin.stores.state.lookup(entity_id)
    out = _temporal(request, ids=[entity_id], type=None, attrs=attrs, timerel=timerel, timeAt=timeAt,
                    endTimeAt=endTimeAt, lastN=lastN, aggrMethods=aggrMethods,
                    aggrPeriodDuration=aggrPeriodDuration, options=options, georel=None, geometry=None,
                    coordinates=None)
    if entity_id not in out:
        if ref is None:
            return _error(404, "ResourceNotFound", f"entity {entity_id} has no history")
        return {"id": entity_id, "type": ref[0]}
    doc = out[entity_id]
    if doc.get("type") is None and ref is not None:
        doc["type"] = ref[0]
    return doc


@router.get("/ngsi-ld/v1/temporal/entities")
def temporal_entities(request: Request, type: str | None = None, id: str | None = None, attrs: str | None = None,
                      timerel: str | None = None, timeAt: str | None = None, endTimeAt: str | None = None,
                      lastN: int | None = None, aggrMethods: str | None = None,
                      aggrPeriodDuration: str | None = None, options: str | None = None,
                      georel: str | None = None, geometry: str | None = None,
                      coordinates: str | None = None) -> Any:
    if not (type or id or georel):
        raise InputError("give type, id or a geo-query", field="type")
    out = _temporal(request, ids=id.split(",") if id else None, type=type, attrs=attrs, timerel=timerel,
                    timeAt=timeAt, endTimeAt=endTimeAt, lastN=lastN, aggrMethods=aggrMethods,
                    aggrPeriodDuration=aggrPeriodDuration, options=options, georel=georel,
                    geometry=geometry, coordinates=coordinates)
    return list(out.values())


def _floats(text: str, n: int, name: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise InputError(f"{name} {text!r} is not {n} numbers", field=name) from exc
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        raise InputError(f"{name} {text!r} is not {n} finite numbers", field=name)
    return vals


@router.get("/twin/v1/history")
def history(request: Request, entity: str | None = None, property: str | None = None, type: str | None = None,
            start: str | None = None, end: str | None = None, interval: str | None = None,
            funcs: str = "avg,min,max,count", bbox: str | None = None, near: str | None = None,
            maxPoints: int | None = None, limit: int = Query(100_000, ge=1, le=5_000_000)) -> Any:
    h = _twin(request).stores.history
    filt: dict[str, Any] = {
        "entities": entity.split(",") if entity else None, "properties": property.split(",") if property else None,
        "types": [type] if type else None, "start": start, "end": end,
        "bbox": tuple(_floats(bbox, 4, "bbox")) if bbox else None,
        "near": Near(*_floats(near, 3, "near")) if near else None}
    if maxPoints:
        df = h.downsample(max_points=maxPoints, funcs=funcs.split(","), **filt)
    elif interval:
        df = h.aggregate(interval, funcs=funcs.split(","), **filt)
    else:
        df = h.query(limit=limit, **filt)
    if "time" in df:
        df = df.assign(time=pd.to_datetime(df["time"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    df = df.astype(object).where(df.notna(), None)
    return {"rows": len(df), "columns": list(df.columns), "data": df.to_dict(orient="records"),
            **({"interval_s": df.attrs["interval_s"]} if "interval_s" in df.attrs else {})}


@router.get("/twin/v1/scenarios")
def scenarios(request: Request) -> Any:
    """Published simulation scenarios (``citytwin sim publish``, or live: ``sim run --publish NAME --live``), each
    readable with ``?scenario=NAME``; ``status``: ``running`` (published while it runs), ``complete`` or ``failed``
    (with ``error``)."""
    from citytwin.workflows.simulation_twin import list_scenarios
    return list_scenarios(_twin(request).stores.root)


@router.get("/twin/v1/deadletters")
def deadletters(request: Request, reason: str | None = None, source: str | None = None,
                limit: int = Query(100, ge=1, le=100_000)) -> Any:
    dl = _twin(request).stores.deadletters
    df = dl.frame(reason=reason, source=source, limit=limit)
    if len(df):
        df = df.drop(columns=["received_us"]).assign(received_at=df["received_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    return {"counts": dl.counts(), "items": df.astype(object).where(df.notna(), None).to_dict(orient="records")}


def install(app: Any, dependencies: list[Any] | None = None) -> None:
    """Add the twin routes to a FastAPI app (its ``state.twin`` must be a :class:`TwinRuntime`;
    ``dependencies``: e.g. the token check of :mod:`citytwin.service.auth`).

    Also registers :func:`error_response`, the app's one handler for
    :class:`~citytwin.foundation.errors.CitytwinError` (the alert and forecast routes rely on it too).
    """
    app.add_exception_handler(CitytwinError, error_response)
    app.include_router(router, dependencies=dependencies)
