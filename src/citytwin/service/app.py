"""The citytwin HTTP service: the live twin's NGSI-LD-style API (and MQTT ingest when a broker is given).

Run with ``citytwin twin serve -w WORKSPACE [--broker HOST:PORT]`` or, in Python::

    from citytwin.service.app import create_app
    app = create_app("./ws/twin")            # a twin folder (history/, state.sqlite, deadletter.sqlite)

:func:`open_runtime` wires the pieces: the foundation stores, the twin's message parser
(entity model and validation) whose entity lookup asks the live state store, and the ingest
pipeline; the CLI uses it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from citytwin.foundation.mqtt import MqttIngest
from citytwin.foundation.timeseries import Ingestor, TwinStores
from citytwin.service import ngsi
from citytwin.twin.entities import DEFAULT_MAX_PAYLOAD, Entity, EntityRef, MessageParser


@dataclass
class TwinRuntime:
    """Stores, parser and ingest pipeline of one twin folder."""

    stores: TwinStores
    parser: MessageParser
    ingestor: Ingestor
    max_body: int = 8 * DEFAULT_MAX_PAYLOAD
    mqtt: MqttIngest | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def register(self, entities: list[Entity]) -> None:
        """Register (create or update) entities in the live state."""
        for e in entities:
            self.stores.state.put_entity(e.id, e.type, e.lon, e.lat, e.static)

    def ingest_messages(self, batch: Any, source: str = "mqtt") -> Any:
        return self.ingestor.ingest(batch, source=source)

    def start_mqtt(self, host: str, port: int, *, client_id: str = "citytwin-ingest", prefix: str = "citytwin",
                   max_batch: int = 2000, max_delay: float = 0.1) -> MqttIngest:
        """Start MQTT ingest in a background thread (QoS 1, persistent session, ack after durable write)."""
        self.mqtt = MqttIngest(host, port, lambda b: self.ingestor.ingest(b, source="mqtt"), topics=[f"{prefix}/#"],
                               client_id=client_id, max_batch=max_batch, max_delay=max_delay).start()
        return self.mqtt

    def close(self) -> None:
        if self.mqtt is not None:
            self.mqtt.stop()
            self.mqtt = None
        self.stores.close()


def open_runtime(root: str | Path, *, max_payload: int = DEFAULT_MAX_PAYLOAD, max_future_s: float = 300.0,
                 prefix: str = "citytwin", compact_threshold: int = 64) -> TwinRuntime:
    """Open (or create) the twin stores under ``root`` and wire the ingest pipeline."""
    stores = TwinStores.open(root, compact_threshold=compact_threshold)

    def lookup(eid: str) -> EntityRef | None:
        r = stores.state.lookup(eid)
        return EntityRef(*r) if r is not None else None

    parser = MessageParser(lookup, max_payload=max_payload, max_future_s=max_future_s, prefix=prefix)
    return TwinRuntime(stores, parser, Ingestor(stores, parser), max_body=max(max_payload, 8 * DEFAULT_MAX_PAYLOAD))


def create_app(root: str | Path | None = None, *, runtime: TwinRuntime | None = None,
               broker: tuple[str, int] | None = None, client_id: str = "citytwin-ingest",
               max_body: int | None = None) -> FastAPI:
    """The FastAPI app over a twin folder (or a given runtime); with ``broker``, MQTT ingest runs alongside."""
    if runtime is None:
        if root is None:
            raise ValueError("give root or runtime")
        runtime = open_runtime(root)
    if max_body is not None:
        runtime.max_body = max_body
    rt = runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if broker is not None:
            rt.start_mqtt(broker[0], broker[1], client_id=client_id)
        try:
            yield
        finally:
            if rt.mqtt is not None:
                rt.mqtt.stop()
                rt.mqtt = None

    app = FastAPI(title="citytwin", description="Live digital twin: NGSI-LD-style entities, history, ingest.",
                  lifespan=lifespan)
    app.state.twin = rt
    ngsi.install(app)

    @app.get("/health")
    def health() -> dict[str, Any]:
        t = rt.ingestor.totals
        return {"status": "ok", "entities": rt.stores.state.count(), "accepted": t.accepted, "rejected": t.rejected,
                "mqtt": None if rt.mqtt is None else {"received": rt.mqtt.stats.received, "acked": rt.mqtt.stats.acked}}

    return app
