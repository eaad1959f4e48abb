"""The ingest pipeline: parse messages, write history durably, update live state, dead-letter rejects.

The pipeline does not know the entity model: it is given a *parser* (in practice
:class:`citytwin.twin.entities.MessageParser`) whose ``parse(topic, payload)`` returns an
object with ``observations`` (items with ``entity, type, property, observed_at_us, value,
unit, lon, lat``) and ``rejects`` (items with ``reason, detail, entity, property, payload``).

:meth:`Ingestor.commit` returns only after the observations are fsynced into the history
store and the rejects into the dead-letter store; MQTT acknowledges a message only after
that (see :mod:`citytwin.foundation.mqtt`), and HTTP answers only after that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from citytwin.foundation.errors import CitytwinError
from citytwin.foundation.timeseries.deadletter import DeadLetter, DeadLetterStore
from citytwin.foundation.timeseries.history import HistoryStore
from citytwin.foundation.timeseries.state import StateStore


class _Obs(Protocol):
    entity: str
    type: str
    property: str
    observed_at_us: int
    value: float | None
    unit: str
    lon: float | None
    lat: float | None


class _Rej(Protocol):
    reason: str
    detail: str
    entity: str | None
    property: str | None
    payload: bytes | None


class _Result(Protocol):
    @property
    def observations(self) -> Sequence[Any]: ...

    @property
    def rejects(self) -> Sequence[Any]: ...


class Parser(Protocol):
    def parse(self, topic: str | None, payload: bytes) -> Any: ...


@dataclass(frozen=True)
class _Rejected:
    reason: str
    detail: str
    entity: str | None = None
    property: str | None = None
    payload: bytes | None = None


@dataclass
class _Unparsed:
    rejects: list[_Rejected]
    observations: tuple[()] = ()


class StoreError(CitytwinError):
    """Storing a batch failed for a reason that is not the messages' (disk full, read-only folder, I/O)."""


@dataclass
class IngestReport:
    """What one commit stored: accepted observations, rejects per reason."""

    messages: int = 0
    accepted: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    entities: list[str] = field(default_factory=list)  # entities with accepted observations (per commit)
    # the committed columns (entity, property, time_us, value, unit ...), for commit hooks; not kept after them
    columns: dict[str, list[Any]] | None = field(default=None, repr=False, compare=False)


@dataclass
class TwinStores:
    """The three stores of a twin under one folder: ``history/``, ``state.sqlite``, ``deadletter.sqlite``."""

    root: Path
    history: HistoryStore
    state: StateStore
    deadletters: DeadLetterStore

    @classmethod
    def open(cls, root: str | Path, *, compact_threshold: int = 64) -> TwinStores:
        r = Path(root)
        r.mkdir(parents=True, exist_ok=True)
        h = HistoryStore(r / "history", compact_threshold=compact_threshold)
        h.recover()
        return cls(r, h, StateStore(r / "state.sqlite"), DeadLetterStore(r / "deadletter.sqlite"))

    def close(self) -> None:
        self.history.close()
        self.state.close()
        self.deadletters.close()


class Ingestor:
    """Commit parsed messages to the stores (thread-safe; one commit at a time)."""

    def __init__(self, stores: TwinStores, parser: Parser) -> None:
        self.stores = stores
        self.parser = parser
        self._lock = threading.Lock()
        self.totals = IngestReport()
        # called after each durable commit with the report and the committed time range (µs);
        # a hook that raises is logged in ``hook_errors`` and never fails the commit
        self.on_commit: list[Callable[[IngestReport, int, int], None]] = []
        self.hook_errors: list[str] = []

    def ingest(self, messages: Iterable[tuple[str | None, bytes]], *, source: str) -> IngestReport:
        """Parse and commit ``(topic, payload)`` messages (topic None for HTTP bodies)."""
        topics: list[str | None] = []
        results: list[Any] = []
        sizes: list[int] = []
        for topic, payload in messages:
            topics.append(topic)
            sizes.append(len(payload))
            try:
                results.append(self.parser.parse(topic, payload))
            except Exception as exc:  # the parser is pure: what it cannot handle is the message's fault
                results.append(_Unparsed([_Rejected("unparseable", f"{type(exc).__name__}: {exc}"[:300],
                                                    payload=bytes(payload[:65536]))]))
        return self.commit(results, source=source, topics=topics, sizes=sizes)

    def commit(self, results: Sequence[Any], *, source: str, topics: Sequence[str | None] | None = None,
               sizes: Sequence[int] | None = None) -> IngestReport:
        """Durably store the observations and rejects of parse results."""
        t0 = time.perf_counter()
        cols: dict[str, list[Any]] = {k: [] for k in
                                      ("entity", "type", "property", "time_us", "value", "unit", "lon", "lat")}
        letters: list[DeadLetter] = []
        rep = IngestReport(messages=len(results))
        now = time.time_ns() // 1000
        for i, res in enumerate(results):
            for o in res.observations:
                cols["entity"].append(o.entity)
                cols["type"].append(o.type)
                cols["property"].append(o.property)
                cols["time_us"].append(o.observed_at_us)
                cols["value"].append(o.value)
                cols["unit"].append(o.unit)
                cols["lon"].append(o.lon)
                cols["lat"].append(o.lat)
            topic = topics[i] if topics else None
            for r in res.rejects:
                letters.append(DeadLetter(source=source, reason=r.reason, detail=r.detail, topic=topic,
                                          entity=r.entity, property=r.property, payload=r.payload,
                                          payload_bytes=(sizes[i] if sizes and r.reason == "oversized" else None),
                                          received_us=now))
                rep.reasons[r.reason] = rep.reasons.get(r.reason, 0) + 1
        rep.accepted = len(cols["entity"])
        rep.entities = sorted(set(cols["entity"]))
        rep.rejected = len(letters)
        with self._lock:
            try:
                if rep.accepted:
                    self.stores.history.append(cols, received_us=now)
                if letters:
                    self.stores.deadletters.add(letters)
                if rep.accepted:
                    self.stores.state.upsert_latest(zip(cols["entity"], cols["property"], cols["value"],
                                                        cols["unit"], cols["time_us"], strict=True))
            except Exception as exc:  # the parser made every bad message a reject: this is the stores' fault
                raise StoreError(f"storing {rep.accepted} observations and {rep.rejected} dead letters under "
                                 f"{self.stores.root} failed: {type(exc).__name__}: {exc}"[:600],
                                 hint="check free disk space and that the twin folder is writable") from exc
            t = self.totals
            t.messages += rep.messages
            t.accepted += rep.accepted
            t.rejected += rep.rejected
            for k, v in rep.reasons.items():
                t.reasons[k] = t.reasons.get(k, 0) + v
        rep.seconds = time.perf_counter() - t0
        if rep.accepted and self.on_commit:
            lo, hi = min(cols["time_us"]), max(cols["time_us"])
            rep.columns = cols
            for hook in list(self.on_commit):
                try:
                    hook(rep, lo, hi)
                except Exception as exc:  # derived work (verification …) must not fail ingest
                    self.hook_errors.append(f"{type(exc).__name__}: {exc}"[:300])
            rep.columns = None
        return rep
