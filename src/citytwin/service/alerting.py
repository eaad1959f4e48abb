"""Alerts over HTTP: the lifecycle routes and the Server-Sent Events stream of the alert hub.

The hub itself (lifecycle, storage with retention, MQTT push) is
:class:`citytwin.workflows.alerting.AlertHub`; this module serves it:

* **Server-Sent Events**: ``GET /twin/v1/alerts/stream`` (``text/event-stream``); every event is
  sent as ``id: {seq}``, ``event: {kind}``, ``data: {json}`` (the event record of
  :mod:`citytwin.workflows.alerting`). A client that reconnects with the ``Last-Event-ID`` header
  (or ``?since=SEQ``) first gets the events it missed (the last ``keep_events`` are kept in memory),
  then the live ones. ``?maxEvents=N`` / ``?timeout=S`` end the stream (for scripts); otherwise a
  comment line keeps the connection alive every 15 s.
* **lifecycle**: ``GET /twin/v1/alerts?status=&entity=&rule=`` (all alerts, also those past the
  hub's memory retention, read from its store), ``GET /twin/v1/alerts/{id}``,
  ``POST /twin/v1/alerts`` (raise: ``{"rule", "entity", "severity", "property", "message", "peak"}``),
  ``POST /twin/v1/alerts/{id}/ack`` and ``POST /twin/v1/alerts/{id}/resolve`` (body ``{"by": ...,
  "note": ...}``; ``by`` defaults to the token's user; 404 unknown id, 409 a transition the lifecycle
  does not allow).

``AlertHub``, ``AutoAlerts``, ``MqttAlertPush`` and ``alert_topic`` are re-exported from
:mod:`citytwin.workflows.alerting` for existing callers.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from citytwin.foundation.errors import InputError
from citytwin.service.auth import principal_name
from citytwin.service.ngsi import BODY_ERRORS, ERRORS, ErrorBody, body_spec, read_body
from citytwin.twin.entities import PayloadError, decode_json
from citytwin.workflows.alerting import AlertHub, AutoAlerts, MqttAlertPush, alert_topic

__all__ = ["AlertHub", "AutoAlerts", "MqttAlertPush", "alert_topic", "install", "router"]


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

router = APIRouter()


def _hub(request: Request) -> AlertHub:
    hub: AlertHub = request.app.state.twin.alerts
    return hub


def _json_object(request: Request, raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        body = decode_json(raw)
    except PayloadError as exc:
        raise InputError(f"body: {exc.message}", field="body") from None
    if not isinstance(body, dict):
        raise InputError("body must be a JSON object", field="body")
    for k, v in body.items():  # the types the OpenAPI declares (_ALERT_BODY, _NOTE_BODY)
        if k == "peak":
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)):
                raise InputError(f"peak must be a finite number, got {str(v)[:50]!r}", field="peak")
        elif v is not None and not isinstance(v, str):
            raise InputError(f"{k} must be a string, got {type(v).__name__}", field=str(k)[:50])
    return body


_ALERT_BODY = {"type": "object", "additionalProperties": False, "required": ["rule", "entity"],
               "properties": {"rule": {"type": "string"}, "entity": {"type": "string"}, "at": {"type": "string"},
                              "severity": {"type": "string"}, "property": {"type": "string"},
                              "message": {"type": "string"}, "peak": {"type": "number"}}}
_NOTE_BODY = {"type": "object", "additionalProperties": False,
              "properties": {"by": {"type": "string"}, "at": {"type": "string"}, "note": {"type": "string"}}}
_BODY_ERRORS = {**ERRORS, **BODY_ERRORS, 409: {"model": ErrorBody, "description": "The alert is not in a state "
                                                                                   "that allows this"}}


@router.get("/twin/v1/alerts", responses=ERRORS)
def list_alerts(request: Request, status: str | None = None, entity: str | None = None,
                rule: str | None = None) -> Any:
    sts = status.split(",") if status else None
    return [a.to_record() for a in _hub(request).alerts(status=sts, entity=entity, rule=rule)]


@router.get("/twin/v1/alerts/stream", responses=ERRORS)
async def stream(request: Request, since: int | None = None, maxEvents: int | None = Query(None, ge=1),
                 timeout: float | None = Query(None, ge=0, le=86_400)) -> StreamingResponse:
    """Server-Sent Events: missed events after ``Last-Event-ID`` / ``since``, then live ones."""
    hub = _hub(request)
    last = request.headers.get("last-event-id")
    after = int(last) if last and last.isdigit() else since
    q, snap = hub.listen()

    def fmt(seq: int, rec: dict[str, Any]) -> str:
        return f"id: {seq}\nevent: {rec['kind']}\ndata: {json.dumps(rec, ensure_ascii=False)}\n\n"

    async def gen() -> AsyncIterator[str]:
        sent = 0
        top = 0
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            yield ": citytwin alert stream\n\n"
            if after is not None:
                for seq, rec in snap:
                    if seq > after:
                        yield fmt(seq, rec)
                        sent += 1
                        if maxEvents is not None and sent >= maxEvents:
                            return
            top = snap[-1][0] if snap else 0
            while True:
                wait = 15.0 if deadline is None else min(15.0, deadline - loop.time())
                if wait <= 0:
                    return
                try:
                    seq, rec = await asyncio.wait_for(q.get(), timeout=wait)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                if seq <= top:  # already in the snapshot
                    continue
                yield fmt(seq, rec)
                sent += 1
                if maxEvents is not None and sent >= maxEvents:
                    return
        finally:
            hub.unlisten(q)

    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/twin/v1/alerts/{alert_id}", responses=ERRORS)
def get_alert(request: Request, alert_id: str) -> Any:
    return _hub(request).get(alert_id).to_record()


@router.post("/twin/v1/alerts", status_code=201, responses=_BODY_ERRORS, openapi_extra=body_spec(_ALERT_BODY))
async def post_alert(request: Request) -> Any:
    """Raise an alert (or update the live one of the same rule and entity)."""
    raw = await read_body(request)
    return await run_in_threadpool(_post_alert, request, raw)


def _post_alert(request: Request, raw: bytes) -> Any:
    b = _json_object(request, raw)
    allowed = {"rule", "entity", "at", "severity", "property", "message", "peak"}
    extra = set(b) - allowed
    if extra:
        raise InputError(f"unknown field(s) {', '.join(sorted(extra))}", field=sorted(extra)[0])
    a, created = _hub(request).raise_alert(str(b.get("rule") or ""), str(b.get("entity") or ""),
                                           **{k: b[k] for k in allowed - {"rule", "entity"} if k in b})
    return JSONResponse({"created": created, "alert": a.to_record()}, status_code=201 if created else 200)


@router.post("/twin/v1/alerts/{alert_id}/ack", responses=_BODY_ERRORS,
             openapi_extra=body_spec(_NOTE_BODY, required=False))
async def ack_alert(request: Request, alert_id: str) -> Any:
    raw = await read_body(request)
    return await run_in_threadpool(_ack, request, alert_id, raw)


def _ack(request: Request, alert_id: str, raw: bytes) -> Any:
    b = _json_object(request, raw)
    by = str(b.get("by") or principal_name(request) or "")
    return _hub(request).acknowledge(alert_id, by=by, at=b.get("at"), note=b.get("note")).to_record()


@router.post("/twin/v1/alerts/{alert_id}/resolve", responses=_BODY_ERRORS,
             openapi_extra=body_spec(_NOTE_BODY, required=False))
async def resolve_alert(request: Request, alert_id: str) -> Any:
    raw = await read_body(request)
    return await run_in_threadpool(_resolve, request, alert_id, raw)


def _resolve(request: Request, alert_id: str, raw: bytes) -> Any:
    b = _json_object(request, raw)
    by = str(b.get("by") or principal_name(request) or "operator")
    return _hub(request).resolve(alert_id, by=by, at=b.get("at"), note=b.get("note")).to_record()


def install(app: Any, dependencies: list[Any] | None = None) -> None:
    """Add the alert routes to a FastAPI app (``state.twin`` must be a TwinRuntime; ``dependencies``: e.g. the
    token check of :mod:`citytwin.service.auth`)."""
    app.include_router(router, dependencies=dependencies)
