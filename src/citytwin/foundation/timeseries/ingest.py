"""The ingest pipeline: parse messages, write history durably, update live state, dead-letter rejects.

Concurrent commits are grouped: callers queued while a write runs share the next one (see
:meth:`Ingestor.commit`).

The pipeline does not know the entity model: it is given a *parser* (in practice
:class:`citytwin.twin.entities.MessageParser`) whose ``parse(topic, payload)`` returns an
object with ``observations`` (items with ``entity, type, property, observed_at_us, value,
unit, lon, lat``) and ``rejects`` (items with ``reason, detail, entity, property, payload``).

:meth:`Ingestor.commit` returns only after the observations are fsynced into the history
store and the rejects into the dead-letter store; MQTT acknowledges a message only after
that (see :mod:`citytwin.foundation.mqtt`), and HTTP answers only after that.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

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
class _Pending:
    """One caller's results waiting in the group commit queue."""

    results: Sequence[Any]
    source: str
    topics: Sequence[str | None] | None
    sizes: Sequence[int] | None
    taken: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    report: IngestReport | None = None
    error: BaseException | None = None
    merged: IngestReport | None = None


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


_COLUMNS = ("entity", "type", "property", "time_us", "value", "unit", "lon", "lat")


def _columns(rows: Sequence[Any]) -> dict[str, list[Any]]:
    """Observations -> columns ``entity, type, property, time_us, value, unit, lon, lat``.

    Tuples whose fields are those columns in that order (:class:`citytwin.twin.entities.Observation`)
    are transposed in one step; other objects are read by attribute.
    """
    if not rows:
        return {k: [] for k in _COLUMNS}
    kind = type(rows[0])
    if getattr(kind, "_fields", None) == ("entity", "type", "property", "observed_at_us", "value", "unit", "lon",
                                          "lat") and all(type(o) is kind for o in rows):
        return {k: list(map(itemgetter(i), rows)) for i, k in enumerate(_COLUMNS)}
    names = ("entity", "type", "property", "observed_at_us", "value", "unit", "lon", "lat")
    return {k: [getattr(o, a) for o in rows] for k, a in zip(_COLUMNS, names, strict=True)}


#: Optional key of a columns mapping: ``{name: (codes, strings)}`` for string columns (``entity``, ``type``,
#: ``property``, ``unit``) whose row ``i`` is ``strings[codes[i]]``, given by a parser that knows them (the columnar
#: batch parser). Grouping, unique values and the Arrow conversion then use the integer codes instead of hashing
#: every string; the string column itself is always there too (what every other reader uses).
CODES = "_codes"


def factorized(cols: Mapping[str, Any], name: str, *, sort: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, uniques)`` of a string column: the values present, as :func:`pandas.factorize` gives them
    (``sort=True``: uniques sorted, as ``factorize(sort=True)``; else in no particular order), from the
    column's :data:`CODES` when the columns have them.

    Examples
    --------
    >>> cols = {"entity": np.array(["b", "a", "b"], dtype=object),
    ...         CODES: {"entity": (np.array([2, 0, 2]), np.array(["a", "x", "b"], dtype=object))}}
    >>> codes, uniq = factorized(cols, "entity", sort=True)
    >>> codes.tolist(), uniq.tolist()
    ([1, 0, 1], ['a', 'b'])
    >>> [x.tolist() for x in factorized({"entity": cols["entity"]}, "entity", sort=True)]
    [[1, 0, 1], ['a', 'b']]
    """
    got = cols.get(CODES)
    pair = got.get(name) if isinstance(got, Mapping) else None
    if pair is None:
        codes, uniq = pd.factorize(np.asarray(cols[name], dtype=object), sort=sort)
        return np.asarray(codes, dtype=np.int64), np.asarray(uniq, dtype=object)
    codes, uniq = np.asarray(pair[0], dtype=np.int64), np.asarray(pair[1], dtype=object)
    keep = np.flatnonzero(np.bincount(codes, minlength=len(uniq)))
    if sort:
        keep = keep[np.argsort(uniq[keep], kind="stable")]
    if len(keep) == len(uniq) and not sort:
        return codes, uniq
    remap = np.full(len(uniq), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    return remap[codes], uniq[keep]


_DTYPES: dict[str, Any] = {"entity": object, "type": object, "property": object, "time_us": np.int64,
                          "value": np.float64, "unit": object, "lon": np.float64, "lat": np.float64}


def _concat(chunks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Columns of several results as one set of numpy arrays (values and coordinates float64, None -> NaN).

    Examples
    --------
    >>> c = _concat([{"entity": ["a"], "type": ["T"], "property": ["p"], "time_us": [1], "value": [None],
    ...               "unit": ["u"], "lon": [None], "lat": [2.0]},
    ...              {"entity": np.array(["b"], dtype=object), "type": ["T"], "property": ["p"], "time_us": [2],
    ...               "value": np.array([3.0]), "unit": ["u"], "lon": np.array([1.0]), "lat": np.array([2.0])}])
    >>> c["entity"].tolist(), c["value"].tolist(), c["lon"].tolist()
    (['a', 'b'], [nan, 3.0], [nan, 1.0])
    """
    out: dict[str, Any] = {}
    for k in _COLUMNS:
        dt = _DTYPES[k]
        parts = []
        for c in chunks:
            a = c[k]
            if dt is np.float64 and not isinstance(a, np.ndarray):
                a = [np.nan if x is None else x for x in a]
            parts.append(np.asarray(a, dtype=dt))
        out[k] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    # the codes, when every chunk has them over the same strings (the messages of one parsed batch)
    codes: list[Mapping[str, Any]] = [x for x in (c.get(CODES) for c in chunks) if isinstance(x, Mapping)]
    first = codes[0] if codes and len(codes) == len(chunks) else None
    if first is None or not all(x.keys() == first.keys() for x in codes):
        return out
    if all(all(x[n][1] is first[n][1] for n in first) for x in codes):
        out[CODES] = {n: (np.concatenate([x[n][0] for x in codes]) if len(codes) > 1 else first[n][0], first[n][1])
                      for n in first}
    else:  # several parsed batches (a group commit of HTTP requests): their codes over the union of their strings
        merged = {n: _merged_codes([x[n] for x in codes]) for n in first}
        if all(m is not None for m in merged.values()):
            out[CODES] = merged
    return out


def _merged_codes(pairs: Sequence[tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray] | None:
    """One string column's ``(codes, strings)`` of several chunks as one: codes in the order of first appearance and
    the strings present, as :func:`pandas.factorize` gives them for the concatenated column (so every reader of the
    codes sees what it would compute from the strings).

    Examples
    --------
    >>> c, u = _merged_codes([(np.array([1, 1]), np.array(["x", "b"], dtype=object)),
    ...                       (np.array([0, 2]), np.array(["a", "b", "x"], dtype=object))])
    >>> c.tolist(), u.tolist()
    ([0, 0, 1, 2], ['b', 'a', 'x'])
    """
    seen: dict[int, int] = {}  # id of a strings array -> its offset in the union
    arrays: list[np.ndarray] = []
    at = 0
    for _, u in pairs:
        if id(u) not in seen:
            seen[id(u)] = at
            arrays.append(np.asarray(u, dtype=object))
            at += len(u)
    union_codes, union = pd.factorize(np.concatenate(arrays))  # each position of the union -> its distinct string
    if (union_codes < 0).any():  # (a missing value: pandas gives it no code; left to the strings)
        return None
    whole = np.concatenate([np.asarray(union_codes, dtype=np.int64)[seen[id(u)] + np.asarray(c, dtype=np.int64)]
                            for c, u in pairs])
    codes, present = pd.factorize(whole)  # first appearance
    return np.asarray(codes, dtype=np.int64), np.asarray(union, dtype=object)[present]


def _latest_rows(cols: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    """The rows :meth:`StateStore.upsert_latest` keeps: per (entity, property) the latest time, the last given of
    equal times; ``(entity, property, value, unit, time_us)`` (vectorised: a batch holds few keys)."""
    n = len(cols["entity"])
    if n < 64:  # (times as int: a numpy int64 from columns would reach SQLite as an 8-byte blob)
        return list(zip(cols["entity"], cols["property"], cols["value"], cols["unit"], map(int, cols["time_us"]),
                        strict=True))
    ec, _ = factorized(cols, "entity")
    pc, pu = factorized(cols, "property")
    key = ec.astype(np.int64) * max(1, len(pu)) + pc
    t = np.asarray(cols["time_us"], dtype=np.int64)
    size = int(key.max()) + 1
    if size <= 2 * n + 1024:  # per key (in key order): its latest time, and the last row at that time
        top = np.full(size, np.iinfo(np.int64).min)
        np.maximum.at(top, key, t)
        at = np.flatnonzero(t == top[key])
        pos = np.full(size, -1, dtype=np.int64)
        np.maximum.at(pos, key[at], at)
        last = pos[pos >= 0]
    else:  # (keys too sparse for a table: the same rows by sorting)
        order = np.lexsort((np.arange(n), t, key))  # by key, then time, then position: the last of a key wins
        ks = key[order]
        last = order[np.r_[ks[1:] != ks[:-1], True]]
    e, p, v, u = cols["entity"], cols["property"], cols["value"], cols["unit"]
    return [(e[i], p[i], v[i], u[i], int(t[i])) for i in last.tolist()]


class _Span(Mapping[str, Any]):
    """Rows ``lo:hi`` of the columns of a whole parsed batch (one message's), sliced only when read."""

    def __init__(self, whole: Mapping[str, Any], lo: int, hi: int) -> None:
        self.whole, self.lo, self.hi = whole, lo, hi
        self._cols: dict[str, Any] | None = None

    def _sliced(self) -> dict[str, Any]:
        if self._cols is None:
            w, lo, hi = self.whole, self.lo, self.hi
            self._cols = {k: v[lo:hi] for k, v in w.items() if k != CODES}
            if isinstance(w.get(CODES), Mapping):
                self._cols[CODES] = {k: (c[lo:hi], u) for k, (c, u) in w[CODES].items()}
        return self._cols

    def __getitem__(self, key: str) -> Any:
        return self._sliced()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sliced())

    def __len__(self) -> int:
        return len(self._sliced())


def _covers(chunks: Sequence[Mapping[str, Any]]) -> bool:
    """True if the chunks are, in order, spans that cover the same whole batch of columns from its first row to
    its last."""
    first = chunks[0]
    if not isinstance(first, _Span) or first.lo != 0:
        return False
    at = 0
    for c in chunks:
        if not isinstance(c, _Span) or c.whole is not first.whole or c.lo != at:
            return False
        at = c.hi
    return at == len(first.whole["entity"])


#: a commit of at least this many readings writes the live state's latest values while the history's writer threads
#: write and fsync its files (a transaction committed after them); a smaller one writes them after the history and
#: the dead letters, in its own thread, as before (a hand-off to a writer thread would cost more than it overlaps)
OVERLAP_ROWS = 64


class Ingestor:
    """Commit parsed messages to the stores (thread-safe; one commit at a time)."""

    def __init__(self, stores: TwinStores, parser: Parser) -> None:
        self.stores = stores
        self.parser = parser
        self._cv = threading.Condition()  # guards the queue; one durable write at a time (_writing)
        self._writing = False
        self._queue: list[_Pending] = []
        self.totals = IngestReport()
        self.groups = 0  # durable writes so far, and the calls they served (group commit)
        self.grouped_calls = 0
        # called after each durable commit with the report and the committed time range (µs);
        # a hook that raises is logged in ``hook_errors`` and never fails the commit
        self.on_commit: list[Callable[[IngestReport, int, int], None]] = []
        self.hook_errors: list[str] = []

    def ingest(self, messages: Iterable[tuple[str | None, bytes]], *, source: str) -> IngestReport:
        """Parse and commit ``(topic, payload)`` messages (topic None for HTTP bodies)."""
        msgs = list(messages)
        topics: list[str | None] = [t for t, _ in msgs]
        sizes: list[int] = [len(p) for _, p in msgs]
        results: list[Any] | None = None
        many = getattr(self.parser, "parse_many", None)
        if many is not None:  # a parser that validates a whole batch at once (citytwin.twin.columnar.BatchParser)
            try:
                results = many(msgs)
            except Exception:  # then message by message, so that only the messages at fault are dead-lettered
                results = None
        if results is None:
            results = []
            for topic, payload in msgs:
                try:
                    results.append(self.parser.parse(topic, payload))
                except Exception as exc:  # the parser is pure: what it cannot handle is the message's fault
                    results.append(_Unparsed([_Rejected("unparseable", f"{type(exc).__name__}: {exc}"[:300],
                                                        payload=bytes(payload[:65536]))]))
        return self.commit(results, source=source, topics=topics, sizes=sizes)

    def commit(self, results: Sequence[Any], *, source: str, topics: Sequence[str | None] | None = None,
               sizes: Sequence[int] | None = None) -> IngestReport:
        """Durably store the observations and rejects of parse results; returns what this call stored.

        Group commit: calls from several threads at once (HTTP requests) share one durable write.
        The first caller writes its results together with those of every caller queued behind the
        previous write (one history file and fsync, one dead-letter and one state transaction for all),
        runs the commit hooks once over the group, then releases them all. Every caller returns only
        after its own data is durable and the hooks have seen it; a store failure is raised to every
        caller of the group. A lone caller (MQTT's batches) writes alone, as before.
        """
        me = _Pending(results, source, topics, sizes)
        with self._cv:
            self._queue.append(me)
            while not me.taken and self._writing:
                self._cv.wait()
            group: list[_Pending] | None = None
            if not me.taken:  # no write runs and none took this call: write it with all queued so far
                group, self._queue = self._queue, []
                for p in group:
                    p.taken = True
                self._writing = True
        if group is not None:
            try:
                self._write_group(group)
            except BaseException as exc:  # not a store failure (those are set per caller): still release all
                for p in group:
                    p.error = p.error or exc
            finally:
                with self._cv:
                    self._writing = False
                    self._cv.notify_all()
            self._finish_group(group)  # the next group may be written meanwhile
        me.done.wait()
        if me.error is not None:
            raise me.error
        assert me.report is not None
        return me.report

    def _write_group(self, group: list[_Pending]) -> None:
        """Build the group's columns and dead letters and store them (one group at a time)."""
        t0 = time.perf_counter()
        rows: list[Any] = []  # the observations, transposed to columns below
        # results that are columns already (the columnar batch payload), in message order with the rows
        # between them (a later reading of a key must stay later): [(rows before it, columns), ...]
        chunks: list[tuple[int, Mapping[str, Any]]] = []
        letters: list[DeadLetter] = []
        now = time.time_ns() // 1000
        for p in group:
            rep = p.report = IngestReport(messages=len(p.results))
            first, first_chunk = len(rows), len(chunks)
            for i, res in enumerate(p.results):
                rows.extend(res.observations)
                span = getattr(res, "span", None)  # (lo, hi) rows of res.whole: a batch parser's columns
                if span is not None:
                    if span[1] > span[0]:
                        chunks.append((len(rows), _Span(res.whole, span[0], span[1])))
                elif (cc := getattr(res, "columns", None)) is not None and len(cc["entity"]):
                    chunks.append((len(rows), cc))
                topic = p.topics[i] if p.topics else None
                for r in res.rejects:
                    letters.append(DeadLetter(source=p.source, reason=r.reason, detail=r.detail, topic=topic,
                                              entity=r.entity, property=r.property, payload=r.payload,
                                              payload_bytes=(p.sizes[i] if p.sizes and r.reason == "oversized"
                                                             else None), received_us=now))
                    rep.reasons[r.reason] = rep.reasons.get(r.reason, 0) + 1
            mine = [c for _, c in chunks[first_chunk:]]
            rep.accepted = len(rows) - first + sum(c.hi - c.lo if isinstance(c, _Span) else len(c["entity"])
                                                   for c in mine)
            if len(group) > 1:  # (a lone caller's entities are the group's: taken from its columns below)
                ents = {o.entity for o in rows[first:]}
                if mine:
                    ents.update(pd.unique(np.concatenate([c["entity"] for c in mine])).tolist())
                rep.entities = sorted(ents)
            rep.rejected = sum(rep.reasons.values())
        if not chunks:
            cols = _columns(rows)
        elif not rows and _covers([c for _, c in chunks]):  # the whole parsed batch, in order: taken as it is
            head = chunks[0][1]
            assert isinstance(head, _Span)
            cols = dict(head.whole)
        else:
            runs: list[Mapping[str, Any]] = []
            at = 0
            for end, cc in chunks:
                if end > at:
                    runs.append(_columns(rows[at:end]))
                runs.append(cc)
                at = end
            if len(rows) > at:
                runs.append(_columns(rows[at:]))
            cols = _concat(runs)
        accepted = len(cols["entity"])
        state = self.stores.state
        opened: list[int | Exception] = []  # the latest values written in a transaction left open (or its error)

        def latest() -> None:  # (with many rows: in this thread while the history's files are written and fsynced)
            try:
                opened.append(state.begin_latest(_latest_rows(cols)))
            except Exception as exc:
                opened.append(exc)

        try:
            # the live state's transaction is committed only once the history is durable and the dead letters are
            # in, as when it was written after them: rolled back if either fails
            try:
                if accepted:
                    self.stores.history.append(cols, received_us=now,
                                               meanwhile=latest if accepted >= OVERLAP_ROWS else None)
                if letters:
                    self.stores.deadletters.add(letters)
                if accepted and not opened:
                    latest()
                if opened and isinstance(opened[0], Exception):
                    raise opened[0]
            except BaseException:
                if opened and not isinstance(opened[0], Exception) and opened[0]:
                    with contextlib.suppress(Exception):  # (what failed first is what is raised)
                        state.end_latest(commit=False)
                raise
            if opened and opened[0]:
                state.end_latest(commit=True)
        except Exception as exc:  # the parser made every bad message a reject: this is the stores' fault
            err = StoreError(f"storing {accepted} observations and {len(letters)} dead letters under "
                             f"{self.stores.root} failed: {type(exc).__name__}: {exc}"[:600],
                             hint="check free disk space and that the twin folder is writable")
            err.__cause__ = exc
            for p in group:
                p.error = err
            return
        t = self.totals
        merged = IngestReport(entities=factorized(cols, "entity", sort=True)[1].tolist() if accepted else [],
                              columns=cols)
        if len(group) == 1:
            assert group[0].report is not None
            group[0].report.entities = list(merged.entities)
        for p in group:
            assert p.report is not None
            t.messages += p.report.messages
            t.accepted += p.report.accepted
            t.rejected += p.report.rejected
            for k, v in p.report.reasons.items():
                t.reasons[k] = t.reasons.get(k, 0) + v
            merged.messages += p.report.messages
            merged.accepted += p.report.accepted
            merged.rejected += p.report.rejected
        self.groups += 1
        self.grouped_calls += len(group)
        merged.seconds = time.perf_counter() - t0
        group[0].merged = merged

    def _finish_group(self, group: list[_Pending]) -> None:
        """Run the commit hooks once over the group's observations, then release its callers."""
        merged = group[0].merged
        try:
            if merged is not None and merged.accepted and self.on_commit:
                cols = merged.columns
                assert cols is not None
                t = np.asarray(cols["time_us"], dtype=np.int64)
                lo, hi = int(t.min()), int(t.max())
                for hook in list(self.on_commit):
                    try:
                        hook(merged, lo, hi)
                    except Exception as exc:  # derived work (verification …) must not fail ingest
                        self.hook_errors.append(f"{type(exc).__name__}: {exc}"[:300])
        finally:
            if merged is not None:
                merged.columns = None
                for p in group:
                    assert p.report is not None
                    p.report.seconds = merged.seconds
            for p in group:
                p.done.set()
