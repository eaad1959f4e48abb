"""A live stream of observation updates for the browser: ``GET /twin/v1/observations/stream``.

Server-Sent Events, one ``observations`` event per ingest commit (MQTT or HTTP), with the number
of observations stored, the committed time range and the entities updated with their live state
(at most :data:`MAX_ENTITIES` per event; the rest are named only). Same access as the twin's other
reads (a bearer token and a role cleared for the twin's classification; audited). ``maxEvents`` and
``timeout`` (seconds) end the stream; a comment line every 15 s keeps it open.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from citytwin.foundation.timeseries.ingest import IngestReport

router = APIRouter(tags=["twin"])

MAX_ENTITIES = 50
QUEUE = 256


class ObservationFeed:
    """Fans ingest commits out to the open streams (each an asyncio queue on its event loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[tuple[int, dict[str, Any]]]]] = []
        self.seq = 0

    def on_commit(self, rep: IngestReport, lo_us: int, hi_us: int) -> None:
        """The ingest hook (runs in the ingesting thread)."""
        with self._lock:
            self.seq += 1
            evt = {"accepted": rep.accepted, "rejected": rep.rejected, "entities": list(rep.entities),
                   "from": pd.Timestamp(lo_us, unit="us", tz="UTC").isoformat(),
                   "to": pd.Timestamp(hi_us, unit="us", tz="UTC").isoformat()}
            item = (self.seq, evt)
            for loop, q in list(self._listeners):
                loop.call_soon_threadsafe(_offer, q, item)

    def listen(self) -> asyncio.Queue[tuple[int, dict[str, Any]]]:
        q: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue(maxsize=QUEUE)
        with self._lock:
            self._listeners.append((asyncio.get_running_loop(), q))
        return q

    def unlisten(self, q: asyncio.Queue[tuple[int, dict[str, Any]]]) -> None:
        with self._lock:
            self._listeners = [(lp, x) for lp, x in self._listeners if x is not q]


def _offer(q: asyncio.Queue[tuple[int, dict[str, Any]]], item: tuple[int, dict[str, Any]]) -> None:
    if q.full():  # a slow reader loses the oldest update, never blocks ingest
        q.get_nowait()
    q.put_nowait(item)


def _states(state: Any, ids: list[str]) -> list[dict[str, Any]]:
    return [e for e in (state.get(i) for i in ids) if e]


def install(app: Any, dependencies: list[Any]) -> ObservationFeed:
    """Hook a feed into the app's twin runtime and add the route."""
    feed = ObservationFeed()
    app.state.twin.ingestor.on_commit.append(feed.on_commit)
    app.state.observation_feed = feed
    app.include_router(router, dependencies=dependencies)
    return feed


@router.get("/twin/v1/observations/stream", summary="Server-Sent Events: observation updates as they are stored",
            responses={200: {"content": {"text/event-stream": {}}}})
async def observation_stream(request: Request, maxEvents: int | None = Query(None, ge=1),
                             timeout: float | None = Query(None, gt=0, le=86400)) -> StreamingResponse:
    feed: ObservationFeed = request.app.state.observation_feed
    state = request.app.state.twin.stores.state
    q = feed.listen()

    async def gen() -> AsyncIterator[str]:
        sent = 0
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            yield ": citytwin observation stream\n\n"
            while True:
                wait = 15.0 if deadline is None else min(15.0, deadline - loop.time())
                if wait <= 0:
                    return
                try:
                    seq, evt = await asyncio.wait_for(q.get(), timeout=wait)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                ids = evt["entities"][:MAX_ENTITIES]
                live = await asyncio.to_thread(_states, state, ids)
                data = {**evt, "state": live}
                yield f"id: {seq}\nevent: observations\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"
                sent += 1
                if maxEvents is not None and sent >= maxEvents:
                    return
        finally:
            feed.unlisten(q)

    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
