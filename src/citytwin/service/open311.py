"""Open311 GeoReport v2 (G2): residents' service requests over HTTP, stored in the case store.

Endpoints (https://wiki.open311.org/GeoReport_v2; JSON format only)
-------------------------------------------------------------------
``GET  /open311/v2/services.json``                 the service list (code, name, description, metadata, type, keywords, group)
``GET  /open311/v2/services/{code}.json``          a service definition (its attributes)
``POST /open311/v2/requests.json``                 create a request (form-encoded as in the spec, or a JSON object);
                                                   returns ``[{"service_request_id", "service_notice", "account_id"}]``
``GET  /open311/v2/requests.json``                 requests: ``service_request_id`` (comma list), ``service_code`` (comma list),
                                                   ``start_date``, ``end_date`` (ISO 8601), ``status`` (open, closed)
``GET  /open311/v2/requests/{id}.json``            one request (a list of one, as the spec)

Errors use the spec's format, a list of ``{"code": HTTP status, "description": ...}`` with that
status: a location outside the city's bounding box, no location, a missing required attribute, an
unknown service code, text or a media URL over the limits, a malformed field -> 400; an unknown
request -> 404; a bad API key -> 403; a body over the limit -> 413. Text is stored as sent (HTML
too) and returned as JSON strings: nothing is ever rendered as markup here.

The router acts as the workspace user it is built with (a ``public`` role user: reporters' contact
data it stores is never returned, and personal data inside descriptions comes back masked).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from citytwin.foundation.cases import CaseStore
from citytwin.foundation.errors import CitytwinError, NotFoundError

#: Limits on what a request may carry.
MAX_BODY = 64 * 1024
MAX_DESCRIPTION = 4000
MAX_FIELD = 200
MAX_MEDIA_URL = 2048

_TEXT_FIELDS = ("address_string", "address_id", "email", "device_id", "account_id", "first_name", "last_name",
                "phone", "api_key", "jurisdiction_id")


class Open311Error(Exception):
    """An error answered in the GeoReport v2 format."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def error_response(status: int, description: str) -> JSONResponse:
    """``[{"code": status, "description": ...}]`` with HTTP ``status``."""
    return JSONResponse([{"code": status, "description": description}], status_code=status)


_ERR = {"description": "an error in GeoReport v2 format", "content": {"application/json": {"schema": {
    "type": "array", "items": {"type": "object", "properties": {"code": {"type": "integer"},
                                                                "description": {"type": "string"}}}}}}}
#: the 4xx answers of the Open311 routes (OpenAPI)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_ERR, "description": "bad input (outside the city, unknown service, missing attribute, too long ...)"},
    401: {**_ERR, "description": "no api_key or bearer token (posting and listing requests need one)"},
    403: {**_ERR, "description": "invalid api_key or token"},
    404: {**_ERR, "description": "unknown service request"},
    413: {**_ERR, "description": f"body over {MAX_BODY} bytes"}}
#: the body of ``POST requests.json`` (form-encoded as the spec, or JSON)
REQUEST_SCHEMA: dict[str, Any] = {"type": "object", "required": ["service_code"], "properties": {
    "api_key": {"type": "string"}, "service_code": {"type": "string"}, "description": {"type": "string"},
    "lat": {"type": "number"}, "long": {"type": "number"}, "address_string": {"type": "string"},
    "address_id": {"type": "string"}, "email": {"type": "string"}, "device_id": {"type": "string"},
    "account_id": {"type": "string"}, "first_name": {"type": "string"}, "last_name": {"type": "string"},
    "phone": {"type": "string"}, "media_url": {"type": "string"}}, "additionalProperties": {"type": "string"}}


def _status(s: str) -> str:
    return "closed" if s in ("resolved", "closed") else "open"


def _time(value: str, name: str) -> datetime:
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name} {value!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        raise Open311Error(400, f"{name} {value!r} needs a time zone (e.g. 2026-03-02T09:00:00+08:00)")
    return t


def _float(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except ValueError:
        raise Open311Error(400, f"{name} {value!r} is not a number") from None
    if not math.isfinite(v):
        raise Open311Error(400, f"{name} {value!r} is not a finite number")
    return v


def make_router(store: Callable[[], CaseStore] | CaseStore | None, *, services: Sequence[Mapping[str, Any]],
                bbox: tuple[float, float, float, float] | None, departments: Mapping[str, str] | None = None,
                deadline_hours: Mapping[str, float] | None = None, api_keys: Sequence[str] | None = None,
                router_model: Mapping[str, Any] | None = None, prefix: str = "/open311/v2",
                resolve: Callable[[Request, str | None], CaseStore] | None = None,
                bbox_source: str = "") -> APIRouter:
    """The Open311 router.

    Parameters
    ----------
    store
        The case store (or a factory of one per request) to record requests in.
    services
        The service list: dicts with ``service_code``, ``service_name`` and optionally
        ``description``, ``group``, ``keywords``, ``type`` and ``attributes`` (Open311 service
        definition attributes: ``code``, ``datatype``, ``required``, ``description``, ``values``).
    bbox
        The city's bounding box ``(min_lon, min_lat, max_lon, max_lat)``: requests outside are refused.
        None: the city's extent is unknown and requests with coordinates are refused (``bbox_source``
        says how to set it).
    departments
        Service code -> department; codes not in it are routed with ``router_model`` when given.
    deadline_hours
        Hours to resolve per service code (``"default"`` for the rest).
    api_keys
        When given, a POST needs one of these ``api_key`` values (403 otherwise).
    resolve
        ``resolve(request, api_key)`` -> the case store as the caller (the operations center: the
        ``api_key`` of a POST, else the bearer token, is a workspace token); it raises
        :class:`Open311Error` (401/403) to refuse. Used instead of ``store`` when given.
    """
    from citytwin.workflows.participation import submit_complaint

    svc = {str(s["service_code"]): dict(s) for s in services}
    if store is None and resolve is None:
        raise ValueError("give store or resolve")
    fixed: Callable[[], CaseStore] | None = None if store is None else (
        store if callable(store) else (lambda: store))

    def get_store(request: Request, api_key: str | None = None) -> CaseStore:
        if resolve is not None:
            return resolve(request, api_key)
        assert fixed is not None
        return fixed()
    r = APIRouter(prefix=prefix, tags=["open311"])

    def service_list() -> list[dict[str, Any]]:
        return [{"service_code": c, "service_name": s["service_name"], "description": s.get("description", ""),
                 "metadata": bool(s.get("attributes")), "type": s.get("type", "realtime"),
                 "keywords": ",".join(s.get("keywords", [])) if isinstance(s.get("keywords"), list)
                 else s.get("keywords", ""), "group": s.get("group", "")} for c, s in svc.items()]

    def record(c: dict[str, Any]) -> dict[str, Any]:
        s = svc.get(c.get("service_code") or "", {})
        return {"service_request_id": str(c["id"]), "status": _status(c["status"]),
                "status_notes": c.get("data", {}).get("status_notes"), "service_name": s.get("service_name"),
                "service_code": c.get("service_code"), "description": c.get("description"),
                "agency_responsible": c.get("department"), "service_notice": None,
                "requested_datetime": c["created"], "updated_datetime": c["updated"],
                "expected_datetime": c.get("deadline"), "address": c.get("address"), "address_id": None,
                "zipcode": None, "lat": c.get("lat"), "long": c.get("lon"),
                "media_url": c.get("data", {}).get("media_url")}

    @r.get("/services.json")
    def services_json() -> list[dict[str, Any]]:
        """The service list (GeoReport v2 ``GET services``)."""
        return service_list()

    @r.get("/services/{code}.json", response_model=None, responses={404: ERRORS[404]})
    def service_definition(code: str) -> Any:
        """A service definition (its attributes)."""
        if code not in svc:
            return error_response(404, f"unknown service_code {code!r}")
        attrs = [{"variable": True, "code": a["code"], "datatype": a.get("datatype", "string"),
                  "required": bool(a.get("required")), "datatype_description": a.get("datatype_description"),
                  "order": i + 1, "description": a.get("description", a["code"]), "values": a.get("values", [])}
                 for i, a in enumerate(svc[code].get("attributes", []))]
        return {"service_code": code, "attributes": attrs}

    def parse(form: Mapping[str, str]) -> dict[str, Any]:
        if api_keys is not None and form.get("api_key") not in set(api_keys):
            raise Open311Error(403, "invalid api_key")
        code = form.get("service_code") or ""
        if not code:
            raise Open311Error(400, "service_code is required")
        if code not in svc:
            raise Open311Error(400, f"unknown service_code {code!r} (see services.json)")
        desc = form.get("description") or ""
        if len(desc) > MAX_DESCRIPTION:
            raise Open311Error(400, f"description has {len(desc)} characters; the limit is {MAX_DESCRIPTION}")
        for f in _TEXT_FIELDS:
            if len(form.get(f) or "") > MAX_FIELD:
                raise Open311Error(400, f"{f} is longer than {MAX_FIELD} characters")
        media = form.get("media_url") or ""
        if len(media) > MAX_MEDIA_URL:
            raise Open311Error(400, f"media_url is longer than {MAX_MEDIA_URL} characters")
        if media and not media.lower().startswith(("http://", "https://")):
            raise Open311Error(400, "media_url must be an http(s) URL (attachments are linked, not uploaded)")
        lat, lon = _float(form.get("lat"), "lat"), _float(form.get("long"), "long")
        if (lat is None) != (lon is None):
            raise Open311Error(400, "lat and long go together")
        if lat is None and not form.get("address_string") and not form.get("address_id"):
            raise Open311Error(400, "a location is required: lat and long, address_string or address_id")
        if lat is not None and bbox is None:
            raise Open311Error(400, "this city's extent is not configured, so places given by coordinates cannot be"
                                    f" checked ({bbox_source or 'no bbox'}); give address_string instead")
        if lat is not None and lon is not None and bbox is not None and not (
                bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]):
            raise Open311Error(400, f"location ({lat}, {lon}) is outside the city "
                                    f"(longitude {bbox[0]}..{bbox[2]}, latitude {bbox[1]}..{bbox[3]})")
        attrs: dict[str, str] = {}
        for k, v in form.items():
            if k.startswith("attribute[") and k.endswith("]"):
                attrs[k[10:-1]] = v
        for a in svc[code].get("attributes", []):
            if a.get("required") and not attrs.get(a["code"]):
                raise Open311Error(400, f"attribute[{a['code']}] is required for service {code}")
            vals = [str(v.get("key")) for v in a.get("values", [])]
            if vals and attrs.get(a["code"]) and attrs[a["code"]] not in vals:
                raise Open311Error(400, f"attribute[{a['code']}] must be one of {', '.join(vals)}")
        if not desc and not attrs:
            raise Open311Error(400, "description is required when the service has no attributes filled in")
        name = " ".join(x for x in (form.get("first_name"), form.get("last_name")) if x) or None
        return {"service_code": code, "description": desc, "lat": lat, "lon": lon,
                "address": form.get("address_string") or form.get("address_id"), "reporter_name": name,
                "reporter_phone": form.get("phone") or None, "reporter_email": form.get("email") or None,
                "data": {"attributes": attrs, "media_url": media or None, "device_id": form.get("device_id"),
                         "account_id": form.get("account_id")}}

    @r.post("/requests.json", response_model=None, status_code=201, responses=ERRORS,
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": REQUEST_SCHEMA},
                "application/json": {"schema": REQUEST_SCHEMA}}}})
    async def post_request(request: Request) -> Any:
        """Create a service request (GeoReport v2 ``POST requests``)."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return error_response(413, f"request body over {MAX_BODY} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return error_response(400, "the body is not UTF-8")
        ctype = request.headers.get("content-type", "")
        try:
            if "json" in ctype:
                obj = json.loads(text or "{}")
                if not isinstance(obj, dict):
                    return error_response(400, "the JSON body must be an object")
                form = {str(k): "" if v is None else str(v) for k, v in obj.items()}
            else:
                form = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
            key = form.get("api_key") or None
            st = await run_in_threadpool(get_store, request, key) if resolve is not None else get_store(request)
            fields = parse(form)
        except Open311Error as exc:
            return error_response(exc.status, exc.description)
        except ValueError as exc:
            return error_response(400, f"malformed body: {exc}")

        def save() -> dict[str, Any]:
            return submit_complaint(st, departments=departments, deadline_hours=deadline_hours,
                                    router=router_model, source="open311", **fields)

        try:
            res = await run_in_threadpool(save)
        except CitytwinError as exc:
            return error_response(400, exc.message)
        notice = f"duplicate of request {res['duplicate_of']}; linked" if res["duplicate_of"] else None
        return JSONResponse([{"service_request_id": str(res["id"]), "service_notice": notice,
                              "account_id": fields["data"].get("account_id")}], status_code=201)

    @r.get("/requests.json", response_model=None, responses=ERRORS)
    def get_requests(request: Request, service_request_id: str | None = None, service_code: str | None = None,
                     start_date: str | None = None, end_date: str | None = None, status: str | None = None) -> Any:
        """Requests matching the filters (GeoReport v2 ``GET requests``), newest first, at most 1,000."""
        try:
            st = get_store(request)
            ids = None
            if service_request_id:
                try:
                    ids = [int(x) for x in service_request_id.split(",") if x.strip()]
                except ValueError:
                    raise Open311Error(400, f"bad service_request_id {service_request_id!r}") from None
            codes = [x.strip() for x in service_code.split(",") if x.strip()] if service_code else None
            for c in codes or []:
                if c not in svc:
                    raise Open311Error(400, f"unknown service_code {c!r}")
            st_filter = None
            if status:
                want = {x.strip() for x in status.split(",") if x.strip()}
                if not want <= {"open", "closed"}:
                    raise Open311Error(400, f"status must be open or closed, not {status!r}")
                st_filter = [s for s in ("open", "assigned", "in_progress", "resolved", "closed") if _status(s) in want]
            start = _time(start_date, "start_date") if start_date else None
            end = _time(end_date, "end_date") if end_date else None
        except Open311Error as exc:
            return error_response(exc.status, exc.description)
        rows = st.cases(kind="complaint", status=st_filter, service_code=codes, start=start, end=end, ids=ids)
        return [record(c) for c in rows]

    @r.get("/requests/{request_id}.json", response_model=None, responses=ERRORS)
    def get_request(request: Request, request_id: str) -> Any:
        """One request (a list of one, as the spec)."""
        try:
            c = get_store(request).get(int(request_id))
        except Open311Error as exc:
            return error_response(exc.status, exc.description)
        except (ValueError, NotFoundError):
            return error_response(404, f"no service request {request_id!r}")
        if c["kind"] != "complaint":
            return error_response(404, f"no service request {request_id!r}")
        return [record(c)]

    return r


__all__ = ["ERRORS", "MAX_BODY", "MAX_DESCRIPTION", "Open311Error", "error_response", "make_router"]
