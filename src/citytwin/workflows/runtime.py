"""The live twin's runtime: stores, message parser, ingest pipeline, forecasts, alert hub and MQTT, wired.

:func:`open_runtime` wires the pieces: the foundation stores, the twin's message parser
(entity model and validation) whose entity lookup asks the live state store, the ingest
pipeline, the forecast store (predict and verify: :mod:`citytwin.workflows.forecasting`) and the
alert hub (lifecycle, storage with retention, MQTT push: :mod:`citytwin.workflows.alerting`). The
HTTP service (:func:`citytwin.service.app.create_app`) serves a runtime; the CLI's twin commands
and :mod:`citytwin.workflows.twin` open one too. Nothing here imports the service layer
(``tests/workflows/test_layering.py``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from citytwin.foundation.allocator import malloc_arenas, malloc_stats, malloc_trim
from citytwin.foundation.collector import GC_THRESHOLD0, collect_rarely
from citytwin.foundation.mqtt import MqttAuth, MqttIngest, MqttPublisher
from citytwin.foundation.timeseries import Ingestor, IngestReport, TwinStores
from citytwin.foundation.timeseries.forecasts import ForecastStore
from citytwin.foundation.workspace import MARKER, Workspace
from citytwin.twin.columnar import BatchParser
from citytwin.twin.entities import DEFAULT_MAX_PAYLOAD, Entity, EntityRef, MessageParser
from citytwin.twin.rules import ThresholdRule
from citytwin.workflows import forecasting
from citytwin.workflows.alerting import STORE_NAME, AlertHub, AutoAlerts, MqttAlertPush

__all__ = ["GC_THRESHOLD0", "TwinRuntime", "collect_rarely", "malloc_arenas", "malloc_stats",
           "open_runtime", "release_free_memory", "use_system_memory_pool"]

#: Seconds between two returns of freed memory to the operating system during ingest (see
#: :func:`release_free_memory`; :meth:`TwinRuntime.enable_memory_release`).
MEMORY_RELEASE_S = 60.0


def release_free_memory() -> bool:
    """Return memory that the allocators hold but no longer use to the operating system.

    Why: the ingest frees most of what a commit allocates (JSON, columns, Parquet buffers), but in several
    threads (MQTT network loop, ingest worker, alert publisher); glibc keeps such freed chunks in per-thread
    arenas and gives back only the top of each heap, so the RSS of a long ingest creeps up while the memory in
    use stays flat (issue 13's soak). ``malloc_trim(0)`` releases the free pages of every arena (glibc only; a
    no-op elsewhere, and it covers Arrow's buffers too once :func:`use_system_memory_pool` ran) and
    ``release_unused`` does the same for Arrow's pool where that is mimalloc or jemalloc. Returns
    whether glibc released anything.
    """
    pa.default_memory_pool().release_unused()
    return malloc_trim()


def use_system_memory_pool() -> str:
    """Make Arrow allocate from the C library (``malloc``) instead of its bundled mimalloc; returns the backend
    that was the default before (``"system"`` when nothing changed).

    Why: in a long ingest mimalloc kept freed Arrow buffers (Parquet pages, columns of each commit) in its
    reserved segments, which ``release_unused`` does not return; the 30-minute soak of issue 13 saw the RSS
    step by ~45 MiB at minutes 16-18 while Arrow's bytes in use stayed at 11 MiB, and a run with Arrow's system
    pool started ~120 MiB lower. With the system pool Arrow's freed blocks sit in glibc's arenas, which
    :func:`release_free_memory` (``malloc_trim``, once a minute) returns to the operating system. Set at run
    time rather than with ``ARROW_DEFAULT_MEMORY_POOL`` because the variable is read when pyarrow is first
    imported, which a forked worker or an embedding program may have done long before. It switches the pool
    of pyarrow's Python API (our Arrow arrays, Parquet reads and writes through pyarrow), not the one Arrow's
    C++ takes for itself (Parquet's page buffers): ``citytwin twin serve`` and ``twin ingest`` therefore also
    set ``ARROW_DEFAULT_MEMORY_POOL=system`` before pyarrow is imported. An ``ARROW_DEFAULT_MEMORY_POOL`` in
    the environment is the operator's choice and is kept. Buffers allocated before the switch keep their
    pool and are freed into it. Process-wide: called where a long-lived ingest starts
    (:meth:`TwinRuntime.start_mqtt`), not for one-shot commands.
    """
    before = str(pa.default_memory_pool().backend_name)
    if before != "system" and not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())
    return before


def workspace_of_twin(twin_root: str | Path) -> Workspace | None:
    """The workspace a twin folder sits in (``WORKSPACE/twin``), opened as its owner; None if none."""
    parent = Path(twin_root).resolve().parent
    marker = parent / MARKER
    if not marker.exists():
        return None
    owner = json.loads(marker.read_text(encoding="utf-8")).get("owner")
    return Workspace.open(parent, user=owner)


@dataclass
class TwinRuntime:
    """Stores, parser and ingest pipeline of one twin folder."""

    stores: TwinStores
    parser: MessageParser
    ingestor: Ingestor
    max_body: int = 8 * DEFAULT_MAX_PAYLOAD
    mqtt: MqttIngest | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    forecasts: ForecastStore | None = None
    alerts: AlertHub = field(default_factory=AlertHub)
    prefix: str = "citytwin"
    alert_publisher: MqttPublisher | None = None
    last_verify: forecasting.VerifyReport | None = None
    _next_due_us: int | None = None
    _verify_lock: threading.Lock = field(default_factory=threading.Lock)
    auto_alerts: AutoAlerts | None = None
    memory_releases: int = 0
    _release_hook: Callable[[IngestReport, int, int], None] | None = None

    def register(self, entities: list[Entity]) -> None:
        """Register (create or update) entities in the live state."""
        for e in entities:
            self.stores.state.put_entity(e.id, e.type, e.lon, e.lat, e.static)

    def ingest_messages(self, batch: Any, source: str = "mqtt") -> Any:
        return self.ingestor.ingest(batch, source=source)

    def start_mqtt(self, host: str, port: int, *, client_id: str = "citytwin-ingest", prefix: str = "citytwin",
                   max_batch: int = 2000, max_delay: float = 0.1, publish_alerts: bool = True,
                   auth: MqttAuth | None = None, alerts_auth: MqttAuth | None = None,
                   system_pool: bool = True, background: bool = False) -> MqttIngest:
        """Start MQTT ingest in a background thread (QoS 1, persistent session, ack after durable write).

        With ``publish_alerts`` the alert events are published to the same broker too (see
        :meth:`publish_alerts`). The twin's own output topics (``{prefix}/alerts/…``) are not ingested.
        ``auth``/``alerts_auth``: credentials and TLS of the two clients (None: from the environment,
        :meth:`MqttAuth.from_env`). Connects and subscriptions are audited in the workspace catalog.
        ``system_pool``: switch Arrow to the C library's allocator first (:func:`use_system_memory_pool`: the
        RSS of a long ingest stays flat); False keeps Arrow's default pool (benchmarks compare the two).
        ``background``: a broker that cannot be reached (or refuses) at the start is said in the log and connected
        to in the background (:meth:`MqttIngest.start`), for a server whose API must not wait for the broker.
        """
        if system_pool:
            use_system_memory_pool()
        own = f"{prefix}/alerts/"
        collect_rarely()

        def handle(batch: Any) -> Any:
            return self.ingestor.ingest([(t, p) for t, p in batch if not t.startswith(own)], source="mqtt")

        ws = workspace_of_twin(Path(self.stores.root))
        on_event = None if ws is None else (lambda action, outcome, user, detail: ws.catalog.audit(
            user=user, role="mqtt", action=action, dataset="twin", outcome=outcome, detail=detail))
        self.mqtt = MqttIngest(host, port, handle, topics=[f"{prefix}/#"], client_id=client_id, max_batch=max_batch,
                               max_delay=max_delay, auth=auth, on_event=on_event).start(background=background)
        if publish_alerts:
            # its own account where client ids are tied to usernames (docs/twin.md, "MQTT security")
            self.publish_alerts(host, port, client_id=f"{client_id}-alerts", prefix=prefix,
                                auth=alerts_auth or MqttAuth.from_env(role="alerts", fallback=auth),
                                background=background)
        return self.mqtt

    def publish_alerts(self, host: str, port: int, *, client_id: str = "citytwin-alerts", prefix: str = "citytwin",
                       retain: bool = True, auth: MqttAuth | None = None, background: bool = False) -> MqttAlertPush:
        """Publish every alert event to ``{prefix}/alerts/{rule}/{entity}`` (JSON, QoS 1, retained)."""
        if self.alert_publisher is None:
            self.alert_publisher = MqttPublisher(host, port, client_id=client_id, auth=auth, background=background)
        push = MqttAlertPush(self.alert_publisher, prefix=prefix, retain=retain)
        self.extra["alert_push_remove"] = self.alerts.add_pusher(push)
        return push

    # -- predict and verify ------------------------------------------------------------------
    def issue_forecasts(self, *, property: str = "pm25", entities: Sequence[str] | None = None,
                        models: Sequence[str] = forecasting.DEFAULT_MODELS, horizons: Sequence[str | int] = (
                            "1h", "2h", "3h", "4h", "5h", "6h"), train_days: float = 28.0, at: Any = None,
                        freq: str = "1h") -> forecasting.IssueReport:
        """Issue forecasts from the history and store them (:func:`citytwin.workflows.forecasting.issue`)."""
        assert self.forecasts is not None
        rep = forecasting.issue(self.stores.history, self.forecasts, property=property, entities=entities,
                                models=models, horizons=horizons, train_days=train_days, at=at, freq=freq)
        if rep.stored and rep.issued_at is not None:
            due = int((rep.issued_at + pd.Timedelta(freq)).value // 1000)
            self._next_due_us = due if self._next_due_us is None else min(self._next_due_us, due)
        return rep

    def verify_forecasts(self) -> forecasting.VerifyReport:
        """Score every stored forecast whose actual has arrived (:func:`citytwin.workflows.forecasting.verify`)."""
        assert self.forecasts is not None
        with self._verify_lock:
            rep = forecasting.verify(self.stores.history, self.forecasts)
            self.last_verify = rep
            # the next automatic run: when data reaches a pending target after the latest observation
            # (a pending target before it has a missing reading and may never be verifiable)
            span = self.stores.history.span()
            due = rep.next_due if span is None else rep.due_after(span[1])
            self._next_due_us = None if due is None else int(due.value // 1000)
            return rep

    def enable_auto_verify(self) -> None:
        """Verify after every ingest batch that brings an observation at or after the earliest pending target."""
        if self.forecasts is not None and self.forecasts.count():
            self.verify_forecasts()

        def hook(rep: IngestReport, lo_us: int, hi_us: int) -> None:
            if self._next_due_us is not None and hi_us >= self._next_due_us:
                self.verify_forecasts()

        if hook not in self.ingestor.on_commit:
            self.ingestor.on_commit.append(hook)

    # -- rules evaluated on ingest ----------------------------------------------------------
    def enable_auto_alerts(self, rules: Sequence[ThresholdRule] | None = None, *, lookback: str = "24h",
                           tz: str = "Asia/Shanghai") -> AutoAlerts:
        """Evaluate alert rules after every committed ingest batch and feed the alert hub.

        Only the entities of the batch and a recent window (``lookback`` before the batch's
        earliest observation, extended back while a run reaches the window's start) are evaluated;
        :meth:`AlertHub.sync` makes the re-evaluation idempotent (no duplicates; an alert resolves
        when its condition ends). Default rules: :data:`citytwin.twin.live_rules.DEFAULT_LIVE_RULES`.
        Calling it again replaces the rules. See :class:`citytwin.workflows.alerting.AutoAlerts`.
        """
        self.alerts.claim("automatic alerts")  # before the first batch: a second live process is refused at its start
        if self.auto_alerts is None:
            self.auto_alerts = AutoAlerts(self.stores.history, self.alerts, rules, lookback=lookback, tz=tz,
                                          state=self.stores.state)
            self.ingestor.on_commit.append(self.auto_alerts.on_commit)
        else:
            self.auto_alerts.configure(rules, lookback=lookback, tz=tz)
        return self.auto_alerts

    def enable_memory_release(self, every_s: float = MEMORY_RELEASE_S, *,
                              clock: Callable[[], float] = time.monotonic) -> None:
        """After a committed ingest batch, return freed memory to the OS (:func:`release_free_memory`) when
        ``every_s`` seconds passed since the last time (``clock``: injectable for tests). On by default
        (:func:`open_runtime`): without it a long MQTT ingest's RSS grows though its memory in use does not."""
        if self._release_hook is not None and self._release_hook in self.ingestor.on_commit:
            self.ingestor.on_commit.remove(self._release_hook)
        last = [clock()]

        def hook(rep: IngestReport, lo_us: int, hi_us: int) -> None:
            now = clock()
            if now - last[0] >= every_s:
                last[0] = now
                release_free_memory()
                self.memory_releases += 1

        self._release_hook = hook
        self.ingestor.on_commit.append(hook)

    def disable_auto_alerts(self) -> None:
        """Stop evaluating rules on ingest (alerts already raised stay)."""
        if self.auto_alerts is not None:
            if self.auto_alerts.on_commit in self.ingestor.on_commit:
                self.ingestor.on_commit.remove(self.auto_alerts.on_commit)
            self.auto_alerts = None

    def close(self) -> None:
        if self.mqtt is not None:
            self.mqtt.stop()
            self.mqtt = None
        if self.alert_publisher is not None:
            self.alert_publisher.wait_all(timeout=5)
            self.alert_publisher.close()
            self.alert_publisher = None
        self.alerts.close()
        self.stores.close()


def open_runtime(root: str | Path, *, max_payload: int = DEFAULT_MAX_PAYLOAD, max_future_s: float = 300.0,
                 prefix: str = "citytwin", compact_threshold: int = 64) -> TwinRuntime:
    """Open (or create) the twin stores under ``root`` and wire the ingest pipeline."""
    stores = TwinStores.open(root, compact_threshold=compact_threshold)

    def lookup(eid: str) -> EntityRef | None:
        r = stores.state.lookup(eid)
        return EntityRef(*r) if r is not None else None

    parser = BatchParser(lookup, max_payload=max_payload, max_future_s=max_future_s, prefix=prefix,
                         registry_version=lambda: stores.state.generation)
    root = Path(root)
    rt = TwinRuntime(stores, parser, Ingestor(stores, parser), max_body=max(max_payload, 8 * DEFAULT_MAX_PAYLOAD),
                     forecasts=ForecastStore(root / "forecasts"), alerts=AlertHub(root / STORE_NAME), prefix=prefix)
    rt.enable_memory_release()
    return rt
