"""The entity updates of a whole batch of MQTT messages, validated column by column.

:class:`citytwin.twin.columnar.BatchParser` (the runtime's parser) hands the NGSI-LD entity updates of every
message of a batch (the default payload: a JSON array of updates on ``{prefix}/batch``, or one update on an
entity's topic) to :class:`UpdateBatch` instead of walking each attribute object in Python. The outcome is
the one :class:`citytwin.twin.entities.MessageParser` gives message by message: the same readings in the
same order (message, update, attribute), the same rejects with the same reason, detail, entity, property
and payload, in the same order per message. Only the form differs: the accepted readings come as columns
(numpy arrays, with the string columns also as integer codes, :data:`~citytwin.foundation.timeseries.ingest.CODES`),
as the columnar batch payload gives them.

How:

1. Each update is checked as a whole as :meth:`MessageParser._entity_head` checks it (id, registered entity,
   declared type, ``observedAt``, ``location``); an update that is like the ones before (an entity already
   looked up while the registry is unchanged, an ``observedAt`` text already parsed in this batch, no
   ``location``) takes these from the look-ups kept, and any other goes through ``_entity_head`` itself. A
   message whose updates all have one shape and known entities (a gateway's stations) is queued at once, by
   C-level passes over its updates (:meth:`UpdateBatch._add_known`; a new ``observedAt`` text is parsed once).
2. The updates of one entity type with the same keys in the same order (a device or gateway sends the same
   attributes every time) are queued together. Every :attr:`UpdateBatch.FLUSH` updates (the last few
   messages, whose objects are still in the CPU's cache; taken out after the whole batch, they cost about
   twice as much), each attribute of the queued updates becomes a column: its values and units are taken
   out of their ``{"value", "unit"}`` (or ``unitCode``) objects by C-level ``map``, the column is checked as
   a whole (numbers or nulls, one unit understood, its smallest and largest value inside the physical range
   after conversion) and converted to float64 with numpy. The columns taken are kept as blocks (a row per
   update, a column per attribute, already in the canonical unit), so the readings of a block are already in
   the order of (update, attribute): only readings taken one at a time (point 3) make the batch's columns
   need a sort.
   A shape with fewer than :attr:`UpdateBatch.FEW` updates in the queue is read one reading at a time instead,
   by the path :meth:`MessageParser._entity_update` takes for a number or null in the canonical unit.
3. A reading the column cannot take as it is — not a plain number or null, an attribute with its own
   ``observedAt`` or a unit that is not a string, a unit not understood, a value outside the range, a
   property the type lacks or a bool property, a column whose attributes are of mixed forms, an update
   without ``observedAt`` or of a type without a model — goes to :meth:`MessageParser._attribute`, one
   reading at a time: its outcome and its dead letter are then that method's by construction.

Examples
--------
>>> from citytwin.twin.entities import EntityRef, MessageParser, ParseResult
>>> reg = {"urn:ngsi-ld:AirQualityObserved:S1": EntityRef("AirQualityObserved", 116.4, 39.9)}
>>> p = MessageParser(reg.get, now_us=lambda: 2_000_000_000_000_000)
>>> b = UpdateBatch(p, p.now_us())
>>> res = ParseResult()
>>> b.add([{"id": "urn:ngsi-ld:AirQualityObserved:S1", "observedAt": "2015-12-01T00:00:00Z",
...         "pm25": {"value": 12, "unit": "µg/m³"}, "co": {"value": 3100, "unit": "µg/m³"}, "o3": -4}], res, None, None)
>>> cols, msg = b.finish()
>>> list(cols["property"]), cols["value"].tolist(), [(r.reason, r.property) for r in res.rejects]
(['pm25', 'co'], [12.0, 3.1], [('implausible', 'o3')])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.foundation.timeseries.ingest import CODES
from citytwin.twin.entities import (
    RESERVED,
    UNCOMMON,
    EntityRef,
    MessageParser,
    Observation,
    ParseResult,
    Reject,
    _dump,
    _obs,
    common_value,
    parse_time_us,
    unit_factor,
)

__all__ = ["UpdateBatch"]

_NONE = type(None)
_NUMBER = frozenset({float, int, _NONE})
_TWO = {2}
_STR = {str}
_VALUE = itemgetter("value")
_UNIT = itemgetter("unit")
_UNIT_CODE = itemgetter("unitCode")
_TYPE = attrgetter("type")
_TYPE_KEY = itemgetter("type")
_ID = itemgetter("id")
_OBSERVED_AT = itemgetter("observedAt")
_DICT = {dict}
_LON = attrgetter("lon")
_LAT = attrgetter("lat")
#: the column names of a batch's accepted readings, in the order the ingest takes them
KEYS = ("entity", "type", "property", "time_us", "value", "unit", "lon", "lat", CODES)


_UNSEEN: Any = object()


class _Shape:
    """The columns of the table of one shape of update (``UpdateBatch._take_all``), worked out once per batch."""

    def __init__(self, at: list[tuple[int, str]], spec: list[tuple[str, float, float]]) -> None:
        self.at, self.m, self.spec = at, len(at), spec
        self.places, self.names = [pos for pos, _ in at], [name for _, name in at]
        self.targets = [s[0] for s in spec]
        self.get = itemgetter(*self.names)
        self.lo, self.hi = np.asarray([s[1] for s in spec]), np.asarray([s[2] for s in spec])
        self.ones = np.ones(self.m)
        self.bare: list[str | None] = [None] * self.m

    @classmethod
    def of(cls, keys: tuple[str, ...], fast: dict[str, tuple[str, float, float]]) -> _Shape | None:
        """The table of updates with ``keys``, None if it has none: fewer than two properties, or one the type
        lacks or that is not a number."""
        at = [(pos, name) for pos, name in enumerate(keys) if name not in RESERVED]
        if len(at) < 2 or any(name not in fast for _, name in at):
            return None
        return cls(at, [fast[name] for _, name in at])


class UpdateBatch:
    """The entity updates of the messages of one batch: :meth:`add` each message's document, then :meth:`finish`.

    Parameters
    ----------
    parser
        The :class:`~citytwin.twin.entities.MessageParser` whose checks apply (look-up, clock window, ranges,
        units, entity types).
    now
        The batch's clock reading (µs), as ``parser.now_us()`` gave it.
    refs
        Look-ups kept between batches (entity id -> registered entity), valid while the registry is unchanged
        (the caller clears it when the registry changes); None: every update's entity is looked up.
    """

    #: updates queued before their attributes are taken out (those of the last few messages: still in the CPU's
    #: cache, and freed while they are)
    FLUSH = 64
    #: a shape with fewer queued updates than this is read one reading at a time (a column's checks cost a few µs)
    FEW = 8

    def __init__(self, parser: MessageParser, now: int, refs: dict[str, EntityRef] | None = None) -> None:
        self.p = parser
        self.now = now
        self.refs = refs
        self.times: dict[str, int] = {}  # observedAt text -> µs, for texts that passed every check (this batch)
        # per accepted update ("slot"), in the order of the messages and of the updates in them
        self.ent: list[str] = []
        self.type: list[str] = []
        self.base: list[int | None] = []
        self.lon: list[float | None] = []
        self.lat: list[float | None] = []
        self.msg: list[int] = []
        self.results: list[Any] = []  # the result of each message added, by message number
        self.n = 0  # updates seen (accepted or not): their order
        self.order: list[int] = []  # of each slot
        # updates queued by (type, keys in order): (updates, their slots)
        self.pending: dict[tuple[str, tuple[str, ...]], tuple[list[dict[str, Any]], list[int]]] = {}
        self.npending = 0
        # the (type, property, position in the update, unit) of the readings taken as columns -> canonical unit, in
        # the order first taken (the order of the codes of the property and unit columns)
        self.parts: dict[tuple[str, str, int, str | None], str] = {}
        # readings taken as columns, a block per shape and flush: (slots, positions, properties, canonical units,
        # values converted: a row per slot, a column per position), so in the order of (slot, position) within it
        self.blocks: list[tuple[np.ndarray, list[int], list[str], list[str], np.ndarray]] = []
        # what _take_all works out once per shape and batch: (type, keys) -> its table's columns, None if it has none;
        # (type, keys, units of a row) -> the factors of those units, None if one is not understood
        self.shapes: dict[tuple[str, tuple[str, ...]], _Shape | None] = {}
        self.factors: dict[tuple[str, tuple[str, ...], tuple[str, ...]], np.ndarray | None] = {}
        self.one: list[tuple[int, int, str, Any]] = []  # (slot, position, property, attribute): one at a time
        self.few: list[tuple[int, int, Observation]] = []  # readings of rare shapes taken by the common path
        # rejects found per message: (update order, attribute position, reject); -1 for the update as a whole
        self.rejects: dict[int, list[tuple[int, int, Reject]]] = {}

    # -- per message ---------------------------------------------------------------------------------------
    def add(self, doc: Any, res: Any, topic_id: str | None, topic_type: str | None) -> None:
        """Queue the updates of one message's decoded document (an object or an array of objects); ``res`` gets
        its count of entities now and its rejects at :meth:`finish` (``res.entities``, ``res.rejects``)."""
        k = len(self.results)
        self.results.append(res)
        items = doc if isinstance(doc, list) else [doc]
        if self.refs is not None and items and self._add_known(items, k, res, topic_id, topic_type):
            if self.npending >= self.FLUSH:
                self._flush()
            return
        p, refs, times, now = self.p, self.refs, self.times, self.now
        scratch: list[Reject] = []
        for item in items:
            o = self.n
            self.n += 1
            if not isinstance(item, dict):
                self._reject(k, o, -1, Reject("not_an_object", f"expected a JSON object, got {type(item).__name__}",
                                              entity=topic_id, payload=_dump(item)))
                continue
            head: tuple[str, EntityRef, int | None, float | None, float | None] | None = None
            eid = item.get("id", topic_id)
            ref = refs.get(eid) if refs is not None and type(eid) is str else None
            if ref is not None and (topic_id is None or eid == topic_id) and "location" not in item:
                declared = item.get("type", topic_type)
                text = item.get("observedAt", item.get("dateObserved"))
                t = times.get(text) if type(text) is str else None
                if t is not None and (declared is None or declared == ref.type):
                    head = (str(eid), ref, t, ref.lon, ref.lat)
            if head is None:  # the checks themselves (and the look-ups to keep)
                head = p._entity_head(item, scratch, topic_id, topic_type, now)
                if head is None:
                    self._reject(k, o, -1, scratch.pop())
                    continue
                text = item.get("observedAt", item.get("dateObserved"))
                if type(text) is str and head[2] is not None and len(times) < 65_536:
                    times[text] = head[2]
                if refs is not None:
                    if len(refs) >= 65_536:  # ids come from the senders: keep the look-ups bounded
                        refs.clear()
                    refs[head[0]] = head[1]
            eid, ref, base, lon, lat = head
            res.entities += 1
            slot = len(self.ent)
            self.ent.append(eid)
            self.type.append(ref.type)
            self.base.append(base)
            self.lon.append(lon)
            self.lat.append(lat)
            self.msg.append(k)
            self.order.append(o)
            if base is None or p._fast_specs(ref.type, p.types.get(ref.type)) is None:
                self.one.extend((slot, pos, name, attr) for pos, (name, attr) in enumerate(item.items())
                                if name not in RESERVED)
                continue
            key = (ref.type, tuple(item))
            got = self.pending.get(key)
            if got is None:
                got = self.pending[key] = ([], [])
            got[0].append(item)
            got[1].append(slot)
            self.npending += 1
        if self.npending >= self.FLUSH:
            self._flush()

    def _add_known(self, items: list[Any], k: int, res: Any, topic_id: str | None, topic_type: str | None) -> bool:
        """Queue message ``k``'s updates at once when the loop of :meth:`add` would take every head from the look-ups
        kept: objects with the same keys in the same order (a gateway's stations send the same attributes), an
        ``observedAt`` (parsed here if this batch has not parsed it yet: :meth:`_learn_times`) and no ``location``,
        entities looked up while the registry is unchanged, of the declared type, whose types have a model. The same
        slots and queues in the same order, by C-level passes over the updates instead of a Python step per update.
        False, with nothing changed but times kept, otherwise (the loop then decides)."""
        refs, n = self.refs, len(items)
        assert refs is not None
        if set(map(type, items)) != _DICT:
            return False
        shapes = list(map(tuple, items))
        keys = shapes[0]
        if shapes.count(keys) != n or "location" in keys or "observedAt" not in keys:
            return False
        eids: list[Any] = list(map(_ID, items)) if "id" in keys else [topic_id] * n
        texts = list(map(_OBSERVED_AT, items))
        try:
            got = list(map(refs.get, eids))  # (TypeError: an id that is not hashable)
            base = list(map(self.times.get, texts))  # (only strings are kept)
        except TypeError:
            return False
        if not all(got) or (topic_id is not None and eids.count(topic_id) != n):
            return False
        if not all(base):  # a time not parsed yet in this batch (a time of 0 µs is taken the long way too)
            if not self._learn_times(texts):
                return False
            base = list(map(self.times.get, texts))
            if not all(base):
                return False
        tnames = list(map(_TYPE, got))
        declared = list(map(_TYPE_KEY, items)) if "type" in keys else None if topic_type is None else [topic_type] * n
        if declared is not None and declared != tnames:
            return False
        kinds = set(tnames)
        p = self.p
        for tname in kinds:
            if p._fast_specs(tname, p.types.get(tname)) is None:
                return False
        slot, o = len(self.ent), self.n
        self.ent.extend(eids)
        self.type.extend(tnames)
        self.base.extend(base)
        self.lon.extend(map(_LON, got))
        self.lat.extend(map(_LAT, got))
        self.msg.extend(repeat(k, n))
        self.order.extend(range(o, o + n))
        self.n += n
        res.entities += n
        pending = self.pending
        for i, tname in enumerate(tnames) if len(kinds) > 1 else [(0, tnames[0])]:
            key = (tname, keys)
            q = pending.get(key)
            if q is None:
                q = pending[key] = ([], [])
            if len(kinds) > 1:
                q[0].append(items[i])
                q[1].append(slot + i)
            else:  # (all of one type: one queue)
                q[0].extend(items)
                q[1].extend(range(slot, slot + n))
        self.npending += n
        return True

    def _learn_times(self, texts: list[Any]) -> bool:
        """Parse and keep the ``observedAt`` texts not kept yet, as :meth:`add` keeps those that pass
        :meth:`MessageParser._entity_head`'s checks of the time (a pure function of the text and the batch's clock).
        False at the first text that does not pass them (or that the bounded look-up would not keep)."""
        times = self.times
        for text in set(texts):
            if text in times:
                continue
            if type(text) is not str or len(times) >= 65_536:
                return False
            try:
                t = parse_time_us(text)
            except ValueError:
                return False
            if self.p._time_reject(t, text, self.now) is not None:
                return False
            times[text] = t
        return True

    def _reject(self, k: int, order: int, pos: int, r: Reject) -> None:
        got = self.rejects.get(k)
        if got is None:
            got = self.rejects[k] = []
        got.append((order, pos, r))

    def _flush(self) -> None:
        """Take the attributes out of the queued updates, column by column."""
        for (tname, keys), (items, slots) in self.pending.items():
            fast = self.p._fast_specs(tname, self.p.types.get(tname))
            assert fast is not None
            if len(items) < self.FEW:
                self._few(tname, keys, items, slots, fast)
                continue
            if self._take_all(tname, keys, items, slots, fast):
                continue
            cols = zip(*map(itemgetter(*keys), items), strict=True) if len(keys) > 1 else [tuple(map(itemgetter(keys[0]), items))]
            for pos, (name, col) in enumerate(zip(keys, cols, strict=True)):
                if name in RESERVED:
                    continue
                f = fast.get(name)
                if f is None or not self._take(tname, name, pos, f, col, slots):
                    self.one.extend(zip(slots, repeat(pos), repeat(name), col, strict=False))
        self.pending.clear()
        self.npending = 0

    def _few(self, tname: str, keys: tuple[str, ...], items: list[dict[str, Any]], slots: list[int],
             fast: dict[str, tuple[str, float, float]]) -> None:
        """Updates of a shape too rare in the queue for columns (devices whose attributes differ, or come in
        another order): one reading at a time, the common ones by the path :meth:`MessageParser._entity_update`
        takes for them (a number or null in the canonical unit at the update's time), the others through
        :meth:`MessageParser._attribute`."""
        few, one = self.few, self.one
        for item, slot in zip(items, slots, strict=True):
            base = self.base[slot]
            for pos, name in enumerate(keys):
                if name in RESERVED:
                    continue
                attr = item[name]
                if (f := fast.get(name)) is not None and (value := common_value(attr, f)) is not UNCOMMON:
                    few.append((slot, pos, _obs((None, tname, name, base, value, f[0], None, None))))
                    continue
                one.append((slot, pos, name, attr))

    def _take_all(self, tname: str, keys: tuple[str, ...], items: list[dict[str, Any]], slots: list[int],
                  fast: dict[str, tuple[str, float, float]]) -> bool:
        """Every attribute of the queued updates of one shape at once, when each is a numeric property of the type
        and all are ``{"value", "unit"}`` objects with the same unit per attribute, or all bare numbers or nulls:
        one pass over all the readings (a table of updates by attributes) instead of one per attribute.

        A column with a value the general path would not store as it is (outside the range after conversion, not
        finite) goes one reading at a time, as from :meth:`_take`. False (nothing queued) if the updates are not of
        these forms: then :meth:`_take` looks at each attribute on its own."""
        shape = self.shapes.get((tname, keys), _UNSEEN)
        if shape is _UNSEEN:
            shape = self.shapes[(tname, keys)] = _Shape.of(keys, fast)
        if shape is None:
            return False
        at, m, spec = shape.at, shape.m, shape.spec
        flat = list(chain.from_iterable(map(shape.get, items)))  # update by update
        unit_of: list[str | None] = shape.bare
        factors = shape.ones
        try:
            try:
                vals: list[Any] = list(map(_VALUE, flat))  # (TypeError: not all are objects)
            except TypeError:
                if not set(map(type, flat)) <= _NUMBER:
                    return False
                vals = flat
            else:
                if set(map(len, flat)) != _TWO:
                    return False
                units = list(map(_UNIT, flat))
                row = units[:m]
                if units != row * len(items) or set(map(type, row)) != _STR:  # one unit (a string) per attribute
                    return False
                fkey = (tname, keys, tuple(row))
                got = self.factors.get(fkey, _UNSEEN)
                if got is _UNSEEN:
                    f = [self._factor(u, fast[name][0]) for u, (_, name) in zip(row, at, strict=True)]
                    got = self.factors[fkey] = None if any(x != x for x in f) else np.asarray(f)
                if got is None:  # a unit not understood
                    return False
                factors = got
                if not set(map(type, vals)) <= _NUMBER:
                    return False
                unit_of = row
            v = np.array(vals, dtype=np.float64).reshape(len(items), m)  # (None -> NaN; an int as float() gives it)
        except (TypeError, KeyError, IndexError, OverflowError, ValueError):  # not of these forms
            return False
        nan = np.isnan(v)
        if nan.any():  # a NaN that is not a null (the stdlib decoder reads NaN literals)
            at_nan = np.flatnonzero(nan.ravel()).tolist()
            if list(map(vals.__getitem__, at_nan)).count(None) != len(at_nan):
                return False
        with np.errstate(over="ignore", invalid="ignore"):
            x = v * factors
            fine = nan | ((x >= shape.lo) & (x <= shape.hi) & np.isfinite(x))
        good = fine.all(axis=0).tolist()
        keep: list[int] = []
        for j, (pos, name) in enumerate(at):
            if not good[j]:  # a reading the general path refuses or treats apart: the column goes one by one
                self.one.extend(zip(slots, repeat(pos), repeat(name), flat[j::m], strict=False))
                continue
            self.parts.setdefault((tname, name, pos, unit_of[j]), spec[j][0])
            keep.append(j)
        if len(keep) == m:  # (x is v times the factor of its unit: what the general path stores)
            self.blocks.append((np.asarray(slots, dtype=np.int64), shape.places, shape.names, shape.targets, x))
        elif keep:
            self.blocks.append((np.asarray(slots, dtype=np.int64), [at[j][0] for j in keep], [at[j][1] for j in keep],
                                [spec[j][0] for j in keep], x[:, keep]))
        return True

    def _take(self, tname: str, name: str, pos: int, f: tuple[str, float, float], col: tuple[Any, ...],
              slots: list[int]) -> bool:
        """Queue one attribute of some updates as a column if the general path would store every reading of it as
        it is: all bare numbers or nulls, or all ``{"value", "unit"}`` (or ``unitCode``) objects of one unit it
        understands, and every value inside the physical range after conversion. False (nothing queued) if not."""
        target, lo, hi = f
        unit: str | None = None
        factor = 1.0
        try:
            if type(col[0]) is dict:
                if set(map(len, col)) != _TWO:  # other keys too: "observedAt", "type", "unitCode" beside "unit" ...
                    return False
                vals: Sequence[Any] = list(map(_VALUE, col))  # (KeyError: a "value" missing; TypeError: not all are objects)
                try:
                    units = list(map(_UNIT, col))
                except KeyError:
                    units = list(map(_UNIT_CODE, col))
                distinct = set(units)
                if len(distinct) != 1:
                    return False
                unit = distinct.pop()
                if type(unit) is not str:
                    return False
                factor = self._factor(unit, target)
                if factor != factor:  # NaN: not understood
                    return False
            else:
                vals = col
            kinds = set(map(type, vals))
            if not kinds <= _NUMBER:
                return False
            w = vals if _NONE not in kinds else [x for x in vals if x is not None]
            if w:  # the extremes decide (a float's rounding keeps the order); NaN or inf make the sum not finite
                a, b = float(min(w)) * factor, float(max(w)) * factor
                if not (math.isfinite(sum(w)) and math.isfinite(a) and math.isfinite(b) and lo <= a <= hi
                        and lo <= b <= hi):
                    return False
            v = np.array(vals, dtype=np.float64)  # (None -> NaN; an int as float() gives it) while still in cache
        except (TypeError, KeyError, IndexError, OverflowError, ValueError):  # not of these forms
            return False
        self.parts.setdefault((tname, name, pos, unit), target)
        if factor != 1.0:
            v = v * factor
        self.blocks.append((np.asarray(slots, dtype=np.int64), [pos], [name], [target], v.reshape(-1, 1)))
        return True

    # -- the whole batch -----------------------------------------------------------------------------------
    def finish(self) -> tuple[dict[str, Any], np.ndarray]:
        """Validate the queued updates: the accepted readings as columns (:data:`KEYS`) in the order
        :class:`MessageParser` gives them, and the message (number of the :meth:`add` call, from 0) of each; every
        message's rejects are appended to its result, in order."""
        self._flush()
        kept = self._one_by_one(self.one) + self.few
        cols, msg = self._columns(kept)
        for k, got in self.rejects.items():
            if len(got) > 1:
                got.sort(key=itemgetter(0, 1))
            self.results[k].rejects.extend(r for _, _, r in got)
        return cols, msg

    def _factor(self, unit: str, target: str) -> float:
        """Factor from ``unit`` to ``target`` (kept as the parser keeps it), NaN if the unit is not understood."""
        f = self.p._factors.get((unit, target))
        if f is None:
            try:
                f = unit_factor(unit, target)
            except InputError:
                return math.nan
            if len(self.p._factors) < 4096:  # labels come from the senders: keep the cache bounded
                self.p._factors[(unit, target)] = f
        return f

    def _one_by_one(self, one: list[tuple[int, int, str, Any]]) -> list[tuple[int, int, Any]]:
        """Readings through :meth:`MessageParser._attribute`, one at a time: ``(slot, position, observation)`` of
        those it accepts; its rejects go to their messages."""
        p, now, kept = self.p, self.now, []
        scratch = ParseResult()
        for slot, pos, name, attr in one:
            tname = self.type[slot]
            p._attribute(scratch, self.ent[slot], tname, p.types.get(tname), name, attr, self.base[slot], now,
                         self.lon[slot], self.lat[slot])
            if scratch.observations:
                kept.append((slot, pos, scratch.observations.pop()))
            elif scratch.rejects:
                self._reject(self.msg[slot], self.order[slot], pos, scratch.rejects.pop())
        return kept

    def _columns(self, kept: list[tuple[int, int, Any]]) -> tuple[dict[str, Any], np.ndarray]:
        """The accepted readings (:attr:`blocks`, then ``kept``: ``(slot, position, observation)``) as columns, sorted
        by (update, attribute position), and their messages. The blocks of one flush follow one another in the order
        of their slots when the flush held one shape: then only the readings taken one at a time need sorting."""
        names: dict[str, int] = {}
        unit_names: dict[str, int] = {}
        for (_, name, _, _), target in self.parts.items():  # the codes in the order the readings were first taken
            names.setdefault(name, len(names))
            unit_names.setdefault(target, len(unit_names))
        pc = [names.setdefault(o.property, len(names)) for _, _, o in kept]
        uc = [unit_names.setdefault(o.unit, len(unit_names)) for _, _, o in kept]
        given, pos, pcode, ucode, vals = [], [], [], [], []
        for slots, places, props, units, v in self.blocks:
            n, m = v.shape
            given.append(np.repeat(slots, m) if m > 1 else slots)
            pos.append(np.tile(np.asarray(places, dtype=np.int64), n))
            pcode.append(np.tile(np.asarray([names[x] for x in props], dtype=np.int64), n))
            ucode.append(np.tile(np.asarray([unit_names[x] for x in units], dtype=np.int64), n))
            vals.append(v.ravel())
        given.append(np.asarray([s for s, _, _ in kept], dtype=np.int64))
        pos.append(np.asarray([q for _, q, _ in kept], dtype=np.int64))
        pcode.append(np.asarray(pc, dtype=np.int64))
        ucode.append(np.asarray(uc, dtype=np.int64))
        vals.append(np.asarray([math.nan if o.value is None else o.value for _, _, o in kept], dtype=np.float64))
        g, q = np.concatenate(given), np.concatenate(pos)
        key = g * (int(q.max()) + 1 if len(q) else 1) + q  # (slot, position): one reading each
        order = None if bool((key[1:] > key[:-1]).all()) else np.argsort(key, kind="stable")
        at = g if order is None else g[order]
        codes: dict[str, tuple[np.ndarray, np.ndarray]] = {
            "property": (np.concatenate(pcode), np.asarray(list(names), dtype=object)),
            "unit": (np.concatenate(ucode), np.asarray(list(unit_names), dtype=object)),
        }
        if order is not None:
            codes = {name: (c[order], u) for name, (c, u) in codes.items()}
        for name, per_slot in (("entity", self.ent), ("type", self.type)):
            c, u = pd.factorize(np.asarray(per_slot, dtype=object))
            codes[name] = (np.asarray(c, dtype=np.int64)[at], np.asarray(u, dtype=object))
        try:
            base = np.array(self.base, dtype=np.int64)
        except TypeError:  # an update without observedAt (its readings were refused or have their own time)
            base = np.asarray([0 if b is None else b for b in self.base], dtype=np.int64)
        t = base[g]
        value = np.concatenate(vals)
        if kept:  # a reading taken one at a time may have its own observedAt
            t[len(t) - len(kept):] = [o.observed_at_us for _, _, o in kept]
        if order is not None:
            t, value = t[order], value[order]
        lon = np.asarray(self.lon, dtype=np.float64)  # (None -> NaN)
        lat = np.asarray(self.lat, dtype=np.float64)
        cols: dict[str, Any] = {name: u[c] for name, (c, u) in codes.items()}
        cols.update({"time_us": t, "value": value, "lon": lon[at], "lat": lat[at], CODES: codes})
        return {k: cols[k] for k in KEYS}, np.asarray(self.msg, dtype=np.int64)[at]
