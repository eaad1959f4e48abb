"""Alerts with a lifecycle: open → acknowledged → resolved, deduplicated, pushed to subscribers.

:class:`AlertBook` is pure and in-memory: it holds alerts, applies the lifecycle, deduplicates by
``(rule, entity)`` while an alert is not resolved, and notifies subscribers (plain callables) on
``open``, ``update`` (a duplicate raised again), ``ack`` and ``resolve``. Transport (MQTT, HTTP push,
WebSocket) is the service layer's job: it subscribes a callable. The whole book round-trips through
plain records (:meth:`AlertBook.to_records` / :meth:`AlertBook.from_records`) for storage.

A subscriber that raises does not stop the others nor the transition; the failure is kept in
:attr:`AlertBook.delivery_errors` (and the event stays in :attr:`AlertBook.events`, so a transport
can redeliver from there).

Examples
--------
>>> import pandas as pd
>>> book = AlertBook()
>>> seen = []
>>> _ = book.subscribe(lambda ev: seen.append((ev.kind, ev.alert.status)))
>>> a, new = book.raise_alert("aqi_heavy_3h", "Dongsi", at=pd.Timestamp("2015-12-01 03:00"), peak=480.0)
>>> b, new2 = book.raise_alert("aqi_heavy_3h", "Dongsi", at=pd.Timestamp("2015-12-01 04:00"), peak=510.0)
>>> (new, new2, a.id == b.id, b.peak, b.count)
(True, False, True, 510.0, 2)
>>> _ = book.acknowledge(a.id, by="duty officer", at=pd.Timestamp("2015-12-01 05:00"))
>>> _ = book.resolve(a.id, by="system", at=pd.Timestamp("2015-12-02 10:00"))
>>> seen
[('open', 'open'), ('update', 'open'), ('ack', 'acknowledged'), ('resolve', 'resolved')]
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import json
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd

from citytwin.foundation.errors import CitytwinError, InputError, NotFoundError
from citytwin.twin.rules import AlertCandidate

Status = Literal["open", "acknowledged", "resolved"]
EventKind = Literal["open", "update", "ack", "resolve"]
STATUSES: tuple[str, ...] = ("open", "acknowledged", "resolved")
_TIME_FIELDS = ("opened_at", "last_seen", "acknowledged_at", "resolved_at", "start", "end", "peak_time")


# (value in ns, tz) -> ISO text: an alert's times recur in every event of it (open, update, resolve) and
# in its stored record; a bounded cache (cleared when full) instead of formatting each of them again
_ISO: dict[tuple[int, Any], str] = {}


def iso(t: Any) -> str:
    """``pd.Timestamp(t).isoformat()``, remembered (the text depends only on the instant and the time zone).

    Examples
    --------
    >>> iso(pd.Timestamp("2015-12-01 03:00", tz="UTC")), iso("2015-12-01 11:00+08:00"), iso("2015-12-01")
    ('2015-12-01T03:00:00+00:00', '2015-12-01T11:00:00+08:00', '2015-12-01T00:00:00')
    """
    ts = t if type(t) is pd.Timestamp else pd.Timestamp(t)
    key = (ts.value, ts.tz)
    s = _ISO.get(key)
    if s is None:
        if len(_ISO) >= 4096:
            _ISO.clear()
        s = _ISO[key] = ts.isoformat()
    return s


class AlertStateError(CitytwinError):
    """A lifecycle transition that is not allowed (acknowledging a resolved alert …)."""


@dataclass
class Alert:
    """One alert.

    ``id`` is stable: a hash of rule, entity and opening time. ``count`` is how many times the
    condition was raised while the alert was live; ``peak`` the most extreme value seen (maximum, or
    minimum for rules with ``<``).
    """

    id: str
    rule: str
    entity: str
    status: Status
    opened_at: pd.Timestamp
    last_seen: pd.Timestamp
    severity: str = "warning"
    property: str | None = None
    message: str = ""
    peak: float | None = None
    peak_time: pd.Timestamp | None = None
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    count: int = 1
    lower_is_worse: bool = False
    acknowledged_at: pd.Timestamp | None = None
    acknowledged_by: str | None = None
    resolved_at: pd.Timestamp | None = None
    resolved_by: str | None = None
    note: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @builtins.property
    def live(self) -> bool:
        """True while the alert is open or acknowledged."""
        return self.status != "resolved"

    def to_record(self) -> dict[str, Any]:
        """JSON-friendly dict (times as ISO 8601 strings, ``None`` kept)."""
        d = dict(self.__dict__)  # not asdict: its deep copy of every field is slow
        if tuple(d) != _FIELD_NAMES:  # (the fields, in their order, as __init__ and snapshot() leave them)
            d = {k: getattr(self, k) for k in _FIELD_NAMES}
        data = self.data
        d["data"] = dict(data) if all(type(v) in _FLAT for v in data.values()) else copy.deepcopy(data)
        for k in _TIME_FIELDS:
            if d[k] is not None:
                d[k] = iso(d[k])
        if d["peak"] is not None and isinstance(d["peak"], float) and math.isnan(d["peak"]):
            d["peak"] = None
        return d

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Alert:
        """Inverse of :meth:`to_record` (unknown keys raise InputError)."""
        names = {f.name for f in fields(cls)}
        extra = set(rec) - names
        if extra:
            raise InputError(f"unknown alert field(s) {', '.join(sorted(extra))}", field=sorted(extra)[0])
        d = dict(rec)
        if d.get("status") not in STATUSES:
            raise InputError(f"unknown alert status {d.get('status')!r}", field="status",
                             hint="open, acknowledged or resolved")
        for k in _TIME_FIELDS:
            if d.get(k) is not None:
                d[k] = pd.Timestamp(d[k])
        d["data"] = dict(d.get("data") or {})
        return cls(**d)

    def snapshot(self) -> Alert:
        """A copy that later changes of this alert do not reach (what an event carries).

        The same alert :meth:`from_record` makes of :meth:`to_record` (a NaN ``peak`` becomes None, ``data`` is
        copied), without the round trip through text: the times are the same (immutable) Timestamps.
        """
        snap = object.__new__(Alert)  # a shallow copy (copy.copy goes through __reduce_ex__: slower)
        snap.__dict__.update(self.__dict__)
        data = self.data
        snap.data = dict(data) if all(type(v) in _FLAT for v in data.values()) else copy.deepcopy(data)
        if isinstance(snap.peak, float) and math.isnan(snap.peak):
            snap.peak = None
        return snap


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Alert))
_FLAT = frozenset({str, int, float, bool, type(None)})  # values of ``data`` a shallow copy keeps apart


@dataclass(frozen=True)
class AlertEvent:
    """What subscribers receive: the kind of change, a snapshot of the alert, and when."""

    kind: EventKind
    alert: Alert
    at: pd.Timestamp
    #: ``alert.to_record()``, made once when the event is emitted (shared by every :meth:`to_record`: do not change it)
    record: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_record(self) -> dict[str, Any]:
        """JSON-friendly dict (its ``alert`` is :attr:`record` when the book made one)."""
        return {"kind": self.kind, "at": iso(self.at),
                "alert": self.record if self.record is not None else self.alert.to_record()}


Subscriber = Callable[[AlertEvent], None]


def _ts(at: Any) -> pd.Timestamp:
    if type(at) is pd.Timestamp:  # (pd.Timestamp(at) is at itself: the call, ~0.4 µs, is skipped)
        return at
    if at is None:
        return pd.Timestamp(datetime.now(UTC))
    try:
        return pd.Timestamp(at)
    except (ValueError, TypeError) as exc:
        raise InputError(f"bad time {at!r}", field="at") from exc


def _tsc(t: Any) -> pd.Timestamp:
    """``pd.Timestamp(t)``: ``t`` itself when it is one (what pd.Timestamp returns for it), without the call."""
    return t if type(t) is pd.Timestamp else pd.Timestamp(t)


class AlertBook:
    """In-memory alert store with lifecycle, deduplication and subscribers.

    Parameters
    ----------
    alerts
        Alerts to start with (e.g. from :meth:`from_records`).
    keep_events
        How many past events to keep in :attr:`events` (oldest dropped first).
    """

    def __init__(self, alerts: Iterable[Alert] = (), *, keep_events: int = 10_000) -> None:
        self._alerts: dict[str, Alert] = {}
        self._live: dict[tuple[str, str], str] = {}
        self._by_key: dict[tuple[str, str], list[str]] = {}  # (rule, entity) -> ids, oldest first
        self._starts: dict[tuple[str, str], set[pd.Timestamp]] = {}  # (rule, entity) -> run starts recorded
        self._json: dict[str, str] = {}  # id -> the alert's JSON, dropped when the book changes it
        self._subs: list[Subscriber] = []
        self.keep_events = keep_events
        self.events: list[AlertEvent] = []
        self.delivery_errors: deque[tuple[AlertEvent, str]] = deque(maxlen=1000)
        #: ``archived(rule, entity, start)``: whether a run with this start was recorded by an alert no longer
        #: held here (see :meth:`evict`); sync consults it so that an evicted episode is not raised again
        self.archived: Callable[[str, str, pd.Timestamp], bool] | None = None
        for a in alerts:
            self._add(a)

    # -- storage ---------------------------------------------------------------------------------
    def _add(self, a: Alert) -> None:
        if a.id in self._alerts:
            raise InputError(f"duplicate alert id {a.id}", field="id")
        if a.live:
            key = (a.rule, a.entity)
            if key in self._live:
                raise InputError(f"two live alerts for rule {a.rule!r} at {a.entity!r}", field="status")
            self._live[key] = a.id
        self._alerts[a.id] = a
        self._by_key.setdefault((a.rule, a.entity), []).append(a.id)
        if a.start is not None:
            self._starts.setdefault((a.rule, a.entity), set()).add(pd.Timestamp(a.start))

    def __len__(self) -> int:
        return len(self._alerts)

    def __iter__(self) -> Iterator[Alert]:
        return iter(self._alerts.values())

    def get(self, alert_id: str) -> Alert:
        """The alert with this id (NotFoundError if none)."""
        try:
            return self._alerts[alert_id]
        except KeyError:
            raise NotFoundError(f"no alert {alert_id!r}") from None

    def find(self, rule: str, entity: str) -> Alert | None:
        """The live (open or acknowledged) alert of ``rule`` at ``entity``, if any."""
        aid = self._live.get((rule, str(entity)))
        return self._alerts[aid] if aid else None

    def alerts(self, *, status: str | Iterable[str] | None = None, entity: str | None = None,
             rule: str | None = None) -> list[Alert]:
        """Alerts filtered by status (one or several), entity and rule, oldest first."""
        sts = {status} if isinstance(status, str) else set(status) if status is not None else None
        if sts is not None and not sts <= set(STATUSES):
            raise InputError(f"unknown status {sorted(sts - set(STATUSES))[0]!r}", field="status")
        pool: Iterable[Alert] = self._alerts.values()
        if rule is not None and entity is not None:  # the index: no scan of every alert
            pool = [self._alerts[i] for i in self._by_key.get((rule, str(entity)), [])]
        out = [a for a in pool
               if (sts is None or a.status in sts) and (entity is None or a.entity == str(entity))
               and (rule is None or a.rule == rule)]
        return sorted(out, key=lambda a: a.opened_at)  # stable: insertion order breaks ties

    # -- subscribers -----------------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` on every change; returns a function that unsubscribes."""
        if not callable(callback):
            raise InputError("subscriber must be callable", field="callback")
        self._subs.append(callback)

        def unsubscribe() -> None:
            if callback in self._subs:
                self._subs.remove(callback)

        return unsubscribe

    def _emit(self, kind: EventKind, alert: Alert, at: pd.Timestamp) -> None:
        self._json.pop(alert.id, None)  # every change of an alert is emitted: its cached JSON is stale
        ev = AlertEvent(kind, alert.snapshot(), at, alert.to_record())
        self.events.append(ev)
        if len(self.events) > self.keep_events:
            del self.events[: len(self.events) - self.keep_events]
        for cb in list(self._subs):
            try:
                cb(ev)
            except Exception as exc:  # a subscriber's failure must not break the book
                self.delivery_errors.append((ev, f"{type(exc).__name__}: {exc}"))

    # -- lifecycle -------------------------------------------------------------------------------
    def raise_alert(self, rule: str, entity: str, *, at: Any = None, severity: str = "warning",
                    property: str | None = None, message: str = "", peak: float | None = None,
                    peak_time: Any = None, start: Any = None, end: Any = None,
                    lower_is_worse: bool = False, data: dict[str, Any] | None = None,
                    _separate: bool = False) -> tuple[Alert, bool]:
        """Open an alert, or update the live one of the same rule and entity (deduplication).

        Returns
        -------
        (alert, created)
            ``created`` is False when an open or acknowledged alert absorbed this one (its
            ``count``, ``last_seen``, ``end``, ``peak`` and ``message`` are updated; an
            acknowledged alert stays acknowledged).
        """
        if not rule or entity is None or str(entity) == "":
            raise InputError("an alert needs a rule and an entity", field="rule" if not rule else "entity")
        t = _ts(at)
        entity = str(entity)
        live = None if _separate else self.find(rule, entity)
        pk_t = _ts(peak_time) if peak_time is not None else (t if peak is not None else None)
        if live is not None:
            live.count += 1
            live.last_seen = max(live.last_seen, t)
            if end is not None:
                live.end = _ts(end) if live.end is None else max(live.end, _ts(end))
            if peak is not None and (live.peak is None
                                     or (peak < live.peak if live.lower_is_worse else peak > live.peak)):
                live.peak, live.peak_time = float(peak), pk_t
            if message:
                live.message = message
            if data:
                live.data.update(data)
            self._emit("update", live, t)
            return live, False
        aid = hashlib.sha1(f"{rule}\x00{entity}\x00{iso(t)}".encode()).hexdigest()[:16]
        n = 1
        while aid in self._alerts:  # re-opened at the very same instant after a resolve
            aid = hashlib.sha1(f"{rule}\x00{entity}\x00{iso(t)}\x00{n}".encode()).hexdigest()[:16]
            n += 1
        a = Alert(id=aid, rule=rule, entity=entity, status="open", opened_at=t, last_seen=t,
                  severity=severity, property=property, message=message,
                  peak=None if peak is None else float(peak), peak_time=pk_t,
                  start=_ts(start) if start is not None else None, end=_ts(end) if end is not None else None,
                  lower_is_worse=lower_is_worse, data=dict(data or {}))
        if _separate:  # a finished run older than the live alert: recorded beside it (resolved by the caller)
            self._alerts[a.id] = a
            self._by_key.setdefault((a.rule, a.entity), []).append(a.id)
            if a.start is not None:
                self._starts.setdefault((a.rule, a.entity), set()).add(pd.Timestamp(a.start))
        else:
            self._add(a)
        self._emit("open", a, t)
        return a, True

    def raise_candidate(self, c: AlertCandidate, *, at: Any = None, _separate: bool = False) -> tuple[Alert, bool]:
        """Raise an alert from a rule's :class:`~citytwin.twin.rules.AlertCandidate`.

        A new alert opens at ``at`` or, by default, when the run became long enough
        (``c.detected_at``); an update is stamped with the end of the run.
        """
        live = self.find(c.rule, c.entity)
        when = at if at is not None else (c.end if live is not None or c.detected_at is None else c.detected_at)
        return self.raise_alert(
            c.rule, c.entity, at=when, severity=c.severity, property=c.property,
            message=c.message, peak=c.peak, peak_time=c.peak_time, start=c.start, end=c.end,
            lower_is_worse=c.lower_is_worse,
            data={"threshold": c.threshold, "steps": c.steps, **c.extra}, _separate=_separate,
        )

    def acknowledge(self, alert_id: str, *, by: str, at: Any = None, note: str | None = None) -> Alert:
        """open → acknowledged (AlertStateError from any other state)."""
        a = self.get(alert_id)
        if a.status != "open":
            raise AlertStateError(f"alert {alert_id} is {a.status}: only an open alert can be acknowledged")
        if not by:
            raise InputError("acknowledge needs who (by=)", field="by")
        t = _ts(at)
        if t < a.opened_at:
            raise InputError(f"acknowledged at {t} before it opened at {a.opened_at}", field="at")
        a.status, a.acknowledged_at, a.acknowledged_by = "acknowledged", t, by
        if note:
            a.note = note
        self._emit("ack", a, t)
        return a

    def resolve(self, alert_id: str, *, by: str = "system", at: Any = None, note: str | None = None) -> Alert:
        """open or acknowledged → resolved (AlertStateError if already resolved)."""
        a = self.get(alert_id)
        if a.status == "resolved":
            raise AlertStateError(f"alert {alert_id} is already resolved")
        t = _ts(at)
        if t < a.opened_at:
            raise InputError(f"resolved at {t} before it opened at {a.opened_at}", field="at")
        a.status, a.resolved_at, a.resolved_by = "resolved", t, by
        if note:
            a.note = note
        if self._live.get((a.rule, a.entity)) == a.id:
            del self._live[(a.rule, a.entity)]
        self._emit("resolve", a, t)
        return a

    def sync(self, candidates: Iterable[AlertCandidate], *, at: Any = None, rules: Iterable[str] | None = None,
             entities: Iterable[str] | None = None, auto_resolve: bool = True,
             refresh: bool = True) -> dict[str, list[str]]:
        """Apply a fresh evaluation of rules: raise what holds, resolve what stopped holding.

        Candidates that are ``ongoing`` raise (or update) alerts. Finished runs raise an alert that
        is resolved at the run's end (``auto_resolve``), so a replayed history leaves one resolved
        alert per episode. Live alerts of the evaluated ``rules`` (default: the rules among the
        candidates) without an ongoing candidate are resolved by ``system`` at ``at``.

        Idempotent: a run already recorded (same rule, entity and start, in any state) is not
        raised again; a live one is updated. Re-evaluating an overlapping window is therefore safe.

        ``entities`` limits the resolving of live alerts to those entities (an evaluation over the
        entities of one ingest batch must not resolve the alerts of the others). With
        ``refresh=False`` a live alert is updated only when its run has grown (a later ``end``):
        the same evaluation repeated emits no event at all.

        Returns
        -------
        dict
            ids of alerts ``opened``, ``updated`` and ``resolved``.
        """
        t = _ts(at)
        cands = list(candidates)
        evaluated = set(rules) if rules is not None else {c.rule for c in cands}
        ents = None if entities is None else {str(e) for e in entities}
        out: dict[str, list[str]] = {"opened": [], "updated": [], "resolved": []}
        still: set[tuple[str, str]] = set()

        def known(c: AlertCandidate) -> bool:
            if _tsc(c.start) in self._starts.get((c.rule, c.entity), ()):
                return True
            return self.archived is not None and self.archived(c.rule, c.entity, _tsc(c.start))

        for c in sorted(cands, key=lambda c: (c.start, c.rule, c.entity)):
            live = self.find(c.rule, c.entity)
            if (live is None or live.start != c.start) and known(c):
                if c.ongoing and live is not None:
                    still.add((c.rule, c.entity))
                continue
            if (not refresh and live is not None and live.start == c.start and live.end is not None
                    and c.end <= live.end):
                a = live  # nothing new about this run: no update event
            else:
                # a finished run older than the live alert (late readings revealed it) is an episode of its
                # own: it must not be merged into, nor resolve, the live one
                older = (live is not None and not c.ongoing and live.start is not None
                         and _tsc(c.end) < _tsc(live.start))
                if (live is not None and live.start is not None
                        and _tsc(c.start) < _tsc(live.start) <= _tsc(c.end)):
                    # late readings show the live episode began earlier: it takes the earlier start
                    live.start = _tsc(c.start)
                    live.peak, live.peak_time = float(c.peak), _tsc(c.peak_time)  # c spans the whole run
                    self._starts.setdefault((c.rule, c.entity), set()).add(live.start)
                a, created = self.raise_candidate(c, _separate=older)
                (out["opened"] if created else out["updated"]).append(a.id)
            if c.ongoing:
                still.add((c.rule, c.entity))
            elif auto_resolve:
                self.resolve(a.id, by="system", at=max(c.end, a.opened_at), note="condition ended")
                out["resolved"].append(a.id)
        if auto_resolve:
            for (rule, ent), aid in list(self._live.items()):
                if rule in evaluated and (rule, ent) not in still and (ents is None or ent in ents):
                    self.resolve(aid, by="system", at=max(t, self._alerts[aid].opened_at),
                                 note="condition no longer holds")
                    out["resolved"].append(aid)
        return out

    # -- retention -------------------------------------------------------------------------------
    def evict(self, *, before: Any, keep: int | None = None) -> list[Alert]:
        """Remove resolved alerts resolved before ``before`` and, with ``keep``, all but the ``keep`` most
        recently resolved ones; returns the removed alerts (oldest resolution first).

        Live (open or acknowledged) alerts are never removed: they deduplicate new raises. The caller
        keeps the removed alerts elsewhere (the hub's store) and sets :attr:`archived` so that
        :meth:`sync` still recognises their runs.

        Examples
        --------
        >>> book = AlertBook()
        >>> a, _ = book.raise_alert("r", "e", at="2015-12-01T00:00Z", start="2015-12-01T00:00Z")
        >>> _ = book.resolve(a.id, at="2015-12-01T05:00Z")
        >>> b, _ = book.raise_alert("r", "e", at="2015-12-09T00:00Z")
        >>> [x.id for x in book.evict(before="2015-12-02T00:00Z")] == [a.id], len(book), book.find("r", "e") is b
        (True, 1, True)
        """
        cut = _ts(before)
        done = sorted((a for a in self._alerts.values() if a.status == "resolved" and a.resolved_at is not None),
                      key=lambda a: a.resolved_at)  # type: ignore[arg-type,return-value]
        out = [a for a in done if a.resolved_at < cut]  # type: ignore[operator]
        if keep is not None and len(done) - len(out) > keep:
            out = done[: len(done) - max(0, keep)]
        gone: dict[tuple[str, str], list[Alert]] = {}
        for a in out:
            del self._alerts[a.id]
            self._json.pop(a.id, None)
            gone.setdefault((a.rule, a.entity), []).append(a)
        # per key at once (one removal at a time rescanned the key's alerts for each: quadratic in them): a run
        # start is forgotten when no alert left of the key has it
        for key, removed in gone.items():
            ids = self._by_key.get(key, [])
            drop = {a.id for a in removed}
            ids[:] = [i for i in ids if i not in drop]
            if not ids:
                self._by_key.pop(key, None)
                self._starts.pop(key, None)
                continue
            left = {self._alerts[i].start for i in ids}
            starts = self._starts.get(key, set())
            for a in removed:
                if a.start is not None and a.start not in left:
                    starts.discard(pd.Timestamp(a.start))
        return out

    # -- serialisation ---------------------------------------------------------------------------
    def to_records(self) -> list[dict[str, Any]]:
        """All alerts as JSON-friendly dicts, oldest first."""
        return [a.to_record() for a in self.alerts()]

    def to_json(self) -> str:
        """``json.dumps(self.to_records(), ensure_ascii=False)``, with each alert's JSON kept until it changes.

        Saving the book after every change costs a join of cached strings instead of serialising every
        alert again (alerts must be changed through the book's methods, which all emit an event).
        """
        parts = []
        for a in self.alerts():
            js = self._json.get(a.id)
            if js is None:
                js = self._json[a.id] = json.dumps(a.to_record(), ensure_ascii=False)
            parts.append(js)
        return "[" + ", ".join(parts) + "]"

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]], **kw: Any) -> AlertBook:
        """Rebuild a book from :meth:`to_records` output (subscribers are not stored)."""
        return cls((Alert.from_record(r) for r in records), **kw)

    def frame(self) -> pd.DataFrame:
        """All alerts as a DataFrame (for display and storage)."""
        cols = [f.name for f in fields(Alert)]
        return pd.DataFrame([asdict(a) for a in self.alerts()], columns=cols)
