"""Alerts pushed to subscribers: MQTT and Server-Sent Events, with the lifecycle over HTTP.

:class:`AlertHub` wraps the twin's :class:`~citytwin.twin.alerts.AlertBook` (thread-safe, saved
to ``WS/twin/alerts.json`` after every change) and fans each lifecycle event out to

* **MQTT** (when a broker is configured): topic ``{prefix}/alerts/{rule}/{entity}`` (default prefix
  ``citytwin``; ``/ + #`` in a rule or entity become ``_``), JSON payload, **QoS 1**, **retained**
  (the retained message is the alert's last event, so a new subscriber sees the current state of
  every rule × entity at once). Subscribers receive one message per transition; QoS 1 is
  at-least-once, so a redelivery after a lost connection is possible: the payload's ``seq`` (and
  ``event_id``) identify the event and make deduplication trivial;
* **Server-Sent Events**: ``GET /twin/v1/alerts/stream`` (``text/event-stream``); every event is
  sent as ``id: {seq}``, ``event: {kind}``, ``data: {json}``. A client that reconnects with the
  ``Last-Event-ID`` header (or ``?since=SEQ``) first gets the events it missed (the last
  ``keep_events`` are kept in memory), then the live ones. ``?maxEvents=N`` / ``?timeout=S`` end
  the stream (for scripts); otherwise a comment line keeps the connection alive every 15 s.

Payload (MQTT and SSE ``data``)::

    {"seq": 3, "event_id": "a1b2c3d4e5f60718:ack:3", "kind": "ack", "at": "2015-12-01T05:00:00+00:00",
     "alert": {"id": "a1b2c3d4e5f60718", "rule": "aqi_heavy_3h", "entity": "urn:ngsi-ld:...",
               "status": "acknowledged", "acknowledged_by": "duty officer", ...}}

``kind`` is ``open``, ``update`` (the live alert raised again: count, peak, last_seen change),
``ack`` or ``resolve``.

HTTP lifecycle: ``GET /twin/v1/alerts?status=&entity=&rule=``, ``GET /twin/v1/alerts/{id}``,
``POST /twin/v1/alerts`` (raise: ``{"rule", "entity", "severity", "property", "message", "peak"}``),
``POST /twin/v1/alerts/{id}/ack`` and ``POST /twin/v1/alerts/{id}/resolve`` (body ``{"by": ...,
"note": ...}``; ``by`` defaults to the token's user; 404 unknown id, 409 a transition the lifecycle does not allow).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from citytwin.foundation.errors import InputError
from citytwin.service.auth import principal_name
from citytwin.service.ngsi import BODY_ERRORS, ERRORS, ErrorBody, body_spec, read_body
from citytwin.twin.alerts import Alert, AlertBook, AlertEvent
from citytwin.twin.entities import PayloadError, decode_json


def alert_topic(rule: str, entity: str, prefix: str = "citytwin") -> str:
    """MQTT topic of an alert's events.

    Examples
    --------
    >>> alert_topic("aqi_heavy_3h", "urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi")
    'citytwin/alerts/aqi_heavy_3h/urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi'
    >>> alert_topic("a/b", "x+#")
    'citytwin/alerts/a_b/x__'
    """
    def clean(s: str) -> str:
        return "".join("_" if c in "/+#\x00" else c for c in str(s)) or "_"

    return f"{prefix}/alerts/{clean(rule)}/{clean(entity)}"


class AlertHub:
    """The twin's alert book with persistence and push (MQTT, SSE listeners).

    Parameters
    ----------
    path
        JSON file the alerts are saved to after each change (loaded at start if it exists);
        None keeps them in memory only.
    keep_events
        Events kept for SSE clients that reconnect.
    """

    def __init__(self, path: str | Path | None = None, *, keep_events: int = 10_000) -> None:
        self.path = Path(path) if path is not None else None
        records: list[dict[str, Any]] = []
        if self.path is not None and self.path.exists():
            records = json.loads(self.path.read_text() or "[]")
        self.book = AlertBook.from_records(records, keep_events=keep_events)
        self._lock = threading.RLock()
        self.seq = 0
        self.backlog: deque[tuple[int, dict[str, Any]]] = deque(maxlen=keep_events)
        self._listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[tuple[int, dict[str, Any]]]]] = []
        self._pushers: list[Callable[[dict[str, Any]], None]] = []
        self.push_errors: list[str] = []
        self._deferred = 0
        self._dirty = False
        self.book.subscribe(self._on_event)

    # -- fan-out -------------------------------------------------------------------------
    def _on_event(self, ev: AlertEvent) -> None:
        self.seq += 1
        rec = {"seq": self.seq, "event_id": f"{ev.alert.id}:{ev.kind}:{self.seq}", **ev.to_record()}
        self.backlog.append((self.seq, rec))
        if self._deferred:  # inside sync: saved once at its end
            self._dirty = True
        else:
            self._save()
        for push in list(self._pushers):
            try:
                push(rec)
            except Exception as exc:  # a transport failure must not break the lifecycle
                self.push_errors.append(f"{type(exc).__name__}: {exc}")
        for loop, q in list(self._listeners):
            try:
                loop.call_soon_threadsafe(q.put_nowait, (self.seq, rec))
            except RuntimeError:  # the listener's loop is closed
                self.unlisten(q)

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(f".tmp-{self.path.name}")
        tmp.write_text(self.book.to_json())  # = json.dumps(to_records()), from per-alert cached JSON
        os.replace(tmp, self.path)

    def add_pusher(self, push: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``push(event_record)`` on every event (e.g. an MQTT publish); returns a remover."""
        self._pushers.append(push)
        return lambda: self._pushers.remove(push) if push in self._pushers else None

    def listen(self) -> tuple[asyncio.Queue[tuple[int, dict[str, Any]]], list[tuple[int, dict[str, Any]]]]:
        """Register an asyncio queue (of the running loop) for live events; returns it and a backlog snapshot."""
        q: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        with self._lock:
            self._listeners.append((asyncio.get_running_loop(), q))
            snap = list(self.backlog)
        return q, snap

    def unlisten(self, q: asyncio.Queue[Any]) -> None:
        with self._lock:
            self._listeners = [(lp, x) for lp, x in self._listeners if x is not q]

    # -- lifecycle (thread-safe) -----------------------------------------------------------
    def raise_alert(self, rule: str, entity: str, **kw: Any) -> tuple[Alert, bool]:
        with self._lock:
            return self.book.raise_alert(rule, entity, **kw)

    def acknowledge(self, alert_id: str, *, by: str, at: Any = None, note: str | None = None) -> Alert:
        with self._lock:
            return self.book.acknowledge(alert_id, by=by, at=at, note=note)

    def resolve(self, alert_id: str, *, by: str = "system", at: Any = None, note: str | None = None) -> Alert:
        with self._lock:
            return self.book.resolve(alert_id, by=by, at=at, note=note)

    def sync(self, candidates: Any, **kw: Any) -> dict[str, list[str]]:
        """:meth:`AlertBook.sync` under the hub's lock (events pushed as they happen, the file saved once
        at the end rather than after each event)."""
        with self._lock:
            self._deferred += 1
            try:
                return self.book.sync(candidates, **kw)
            finally:
                self._deferred -= 1
                if not self._deferred and self._dirty:
                    self._dirty = False
                    self._save()


class AutoAlerts:
    """Alert rules evaluated after each committed ingest batch, fed to an :class:`AlertHub`.

    :meth:`on_commit` is an :class:`~citytwin.foundation.timeseries.ingest.Ingestor` commit hook. The
    batch's readings go to a :class:`~citytwin.twin.live_rules.LiveRuleEngine`, which keeps each
    entity's recent readings in memory and evaluates, for the entities of the batch that have a
    property the rules read, the window from ``lookback`` before their earliest reading in the batch
    to their latest reading (history is read only for what it does not keep: see the engine); the
    result goes to :meth:`AlertHub.sync` with ``entities`` = those entities and ``refresh=False``. So:

    * an episode opens one alert (when it has lasted ``min_steps``), is updated while it grows,
      and is resolved (``by="system"``, at its last step) when the condition ends;
    * feeding the same batches again changes nothing (runs are recognised by rule, entity and
      start; a run that reaches the window's start is followed back, up to ``max_lookback``,
      until its true start is found);
    * a late batch of old readings is evaluated up to the entity's latest observation, so it
      does not close a current episode.

    Statistics: :attr:`batches` evaluated, :attr:`seconds` spent, :attr:`last` (the last sync result).
    """

    def __init__(self, history: Any, hub: AlertHub, rules: Any = None, *, lookback: str = "24h",
                 tz: str = "Asia/Shanghai", state: Any = None, max_lookback: str = "31D") -> None:
        self.history = history
        self.hub = hub
        self.state = state
        self._lock = threading.Lock()
        self.batches = 0
        self.seconds = 0.0
        self.last: dict[str, list[str]] = {}
        self.configure(rules, lookback=lookback, tz=tz, max_lookback=max_lookback)

    def configure(self, rules: Any = None, *, lookback: str = "24h", tz: str = "Asia/Shanghai",
                  max_lookback: str = "31D") -> None:
        """Set the rules (None: :data:`~citytwin.twin.live_rules.DEFAULT_LIVE_RULES`) and the window."""
        from citytwin.twin import live_rules as lr

        def read(ents: list[str], start_us: int, end_us: int | None) -> pd.DataFrame:
            return self.history.query(entities=ents, properties=self.properties,
                                      start=pd.Timestamp(start_us, unit="us", tz="UTC"),
                                      end=None if end_us is None else pd.Timestamp(end_us, unit="us", tz="UTC"))

        self.engine = lr.LiveRuleEngine(rules, history=read, lookback=lookback, tz=tz, max_lookback=max_lookback)
        self.rules, self.tz = self.engine.rules, tz
        self.properties = self.engine.properties

    def run(self, entities: list[str], lo: pd.Timestamp, hi: pd.Timestamp,
            batch: Any = None) -> dict[str, list[str]]:
        """Evaluate the batch incrementally (:class:`~citytwin.twin.live_rules.LiveRuleEngine`) and sync the hub;
        returns the ids ``opened``, ``updated``, ``resolved``. Without ``batch`` (the committed columns) the
        batch's readings of ``entities`` in ``[lo, hi]`` are read from history."""
        with self._lock, self.hub._lock:
            t0 = time.perf_counter()
            if batch is None:
                batch = self.history.query(entities=entities, properties=self.properties, start=lo,
                                           end=hi + pd.Timedelta("1us"))
            up = self.engine.update(batch, known=lambda rule, ent: self.hub.book.alerts(rule=rule, entity=ent))
            names = [r.name for r in self.rules]
            res = self.hub.sync(up.current, at=hi, rules=names, entities=up.entities, refresh=False)
            if up.past:
                for k, v in self.hub.sync(up.past, at=hi, rules=names, entities=[], refresh=False).items():
                    res[k] = res.get(k, []) + v
            self.batches += 1
            self.seconds += time.perf_counter() - t0
            self.last = res
            return res

    def on_commit(self, rep: Any, lo_us: int, hi_us: int) -> None:
        """Ingest hook: evaluate the batch's entities (see the class docstring)."""
        ents = list(getattr(rep, "entities", None) or [])
        if not ents:
            return
        self.run(ents, pd.Timestamp(lo_us, unit="us", tz="UTC"), pd.Timestamp(hi_us, unit="us", tz="UTC"),
                 batch=getattr(rep, "columns", None))


class MqttAlertPush:
    """Publish alert events to MQTT (QoS 1, retained) through a :class:`~citytwin.foundation.mqtt.MqttPublisher`."""

    def __init__(self, publisher: Any, *, prefix: str = "citytwin", retain: bool = True) -> None:
        self.publisher = publisher
        self.prefix = prefix
        self.retain = retain
        self.sent = 0

    def __call__(self, rec: dict[str, Any]) -> None:
        a = rec["alert"]
        self.publisher.publish(alert_topic(a["rule"], a["entity"], self.prefix),
                               json.dumps(rec, ensure_ascii=False).encode(), qos=1, retain=self.retain)
        self.sent += 1


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
    return [a.to_record() for a in _hub(request).book.alerts(status=sts, entity=entity, rule=rule)]


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
    return _hub(request).book.get(alert_id).to_record()


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
