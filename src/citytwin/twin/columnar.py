"""The columnar batch payload of the live twin, and the parser that reads it beside the entity updates.

A gateway that forwards many sensors at once may publish, on the MQTT batch topic
``{prefix}/batch``, one JSON object holding **columns** instead of an array of entity updates::

    {"ids": ["urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi", "urn:ngsi-ld:AirQualityObserved:Beijing-Tiantan"],
     "type": "AirQualityObserved",                          (optional; every entity must be of it)
     "observedAt": "2015-12-01T08:00:00+08:00",             (one time for all, or a list: one per id)
     "units": {"co": "µg/m³"},                              (optional: a property's unit when not canonical)
     "pm25": [301, 288],                                    (one value per id, in the order of "ids")
     "co": [3100, null]}                                    (null: missing, stored as null, never 0)

Row ``i`` of every column belongs to ``ids[i]``. The same validation as an entity update applies
(:class:`citytwin.twin.entities.MessageParser`): registered entity and its type, ``observedAt``
with a timezone inside the plausible window, known property of the type, a number (or true/false
for a bool property), unit conversion, physical range. What fails is dead-lettered with the same
reasons, **per reading** (or per entity row, for an id or time), and the detail names the field
and index (``pm25[3]: …``, ``ids[2]: …``); the rest of the message is stored. A row without a time
(``observedAt`` absent or null) has each reading refused as ``missing_time``. A message whose
shape is wrong (``ids`` not a list of strings, a column not a list of ``len(ids)`` values, a
``units`` that is not an object of strings) is dead-lettered whole (``wrong_type``), and so is
one with a ``location`` (there is no per-row location: the registered one is used). The other keys of
:data:`~citytwin.twin.entities.RESERVED` (``name``, ``address`` …) are ignored, as in an entity update.

Why: an entity update carries its property names and ``{"value", "unit"}`` objects with every
reading, and the ingest then has to take each reading out of its object one by one. The columnar
form is decoded into arrays and validated with numpy per column (docs/twin.md, "Columnar batch
payload"; ``bench/twin_throughput.py --columnar``).

Both formats are decoded with orjson; a payload orjson refuses (a number too large for a double,
``NaN``, a lone surrogate, nesting beyond its limit …) is decoded again by
:func:`citytwin.twin.entities.decode_json`, so the reason and the outcome are the ones that function
gives (an integer of 400 digits is still an ``implausible`` reading, not a malformed message).

Examples
--------
>>> from citytwin.twin.entities import EntityRef
>>> reg = {"urn:ngsi-ld:AirQualityObserved:S1": EntityRef("AirQualityObserved", 116.4, 39.9),
...        "urn:ngsi-ld:AirQualityObserved:S2": EntityRef("AirQualityObserved", 116.3, 39.8)}
>>> p = BatchParser(reg.get, now_us=lambda: 2_000_000_000_000_000)
>>> res = p.parse("citytwin/batch", b'{"ids": ["urn:ngsi-ld:AirQualityObserved:S1", '
...               b'"urn:ngsi-ld:AirQualityObserved:S2"], "observedAt": "2015-12-01T00:00:00Z", '
...               b'"pm25": [120, -5], "co": [3.1, null]}')
>>> list(res.columns["property"]), res.columns["value"].tolist()
(['pm25', 'co', 'co'], [120.0, 3.1, nan])
>>> [(r.reason, r.detail) for r in res.rejects]
[('implausible', 'pm25[1]: pm25 -5 µg/m³ is outside the physical range 0..2000 µg/m³')]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.foundation.timeseries.ingest import CODES
from citytwin.twin.entities import (
    DEFAULT_TOPIC_PREFIX,
    MAX_DEPTH,
    RESERVED,
    EntityRef,
    MessageParser,
    Observation,
    ParseResult,
    PayloadError,
    Reject,
    _bracket_depth,
    _dump,
    decode_json,
    format_time_us,
    parse_time_us,
    unit_factor,
)
from citytwin.twin.updates import KEYS, UpdateBatch

#: Keys of a columnar payload that are not property columns.
COLUMNAR_KEYS = frozenset({"ids", "type", "observedAt", "units"})
_NONE = type(None)
_STR = {str}
_NUMBER_TYPES = (frozenset({float}), frozenset({float, _NONE}), frozenset({int}), frozenset({int, _NONE}),
                 frozenset({float, int}), frozenset({float, int, _NONE}), frozenset({_NONE}))


def fast_decode(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode a JSON payload as :func:`~citytwin.twin.entities.decode_json` does, with orjson where it can.

    orjson refuses lone surrogates, ``NaN``/``Infinity`` and numbers beyond a double; those payloads go
    to :func:`~citytwin.twin.entities.decode_json`, which decides as it always has. The depth limit is
    checked the same way.

    Examples
    --------
    >>> fast_decode(b'{"pm25": [1, null]}')
    {'pm25': [1, None]}
    >>> fast_decode(b'{"pm25": ' + b'9' * 30 + b'}')["pm25"] == 10**30 - 1   # an exact int, as json gives it
    True
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return decode_json(raw, max_depth=max_depth)
    if _too_deep(raw, max_depth):
        raise PayloadError("too_deep", f"JSON nested deeper than {max_depth} levels")
    if _has_big_float(doc, raw):
        return decode_json(raw, max_depth=max_depth)  # orjson made an integer beyond 64 bits a float
    return doc


_PARENS = bytes.maketrans(b"[{]}", b"(())")  # both kinds of bracket alike: only the depth counts
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}\\')  # what the depth check drops


def _too_deep(raw: bytes, max_depth: int) -> bool:
    r"""Whether valid JSON ``raw`` nests deeper than ``max_depth``: ``_bracket_depth(raw) > max_depth``
    (:func:`~citytwin.twin.entities._bracket_depth`), in fewer C passes for the common payload.

    The brackets and quotes are kept in one ``translate`` (both kinds of bracket as ``(`` and ``)``). With no
    backslash and no string holding a bracket (the test of ``_bracket_depth``), the brackets alone are a balanced
    sequence, and removing every ``()`` (``bytes.replace``: each is an innermost pair) lowers its depth by exactly
    one: nesting deeper than ``max_depth`` is what ``max_depth`` such passes leave non-empty (an entity-update
    message of 12 updates takes 3 passes over 314 bytes, instead of the count of brackets, a second ``translate``
    and a numpy running sum). Other payloads (escapes, brackets in strings, more than 64 KiB of brackets) are
    counted by ``_bracket_depth``.

    Examples
    --------
    >>> _too_deep(b'[{"a": {"v": 1}}]', 2), _too_deep(b'[{"a": {"v": 1}}]', 3), _too_deep(b'{"s": "]]"}', 0)
    (True, False, True)
    """
    if len(raw) < 2 * max_depth + 2:  # too short for max_depth + 1 pairs of brackets
        return False
    kept = raw.translate(_PARENS, _NOT_STRUCTURE)
    if kept.count(b"(") <= max_depth:  # no more openers than the limit (those in strings counted too)
        return False
    if b"\\" in kept or kept.count(b'""') * 2 != kept.count(b'"') or len(kept) > 65_536:
        return _bracket_depth(raw) > max_depth
    s = kept.translate(None, b'"')
    for _ in range(max_depth):
        if not s:
            return False
        s = s.replace(b"()", b"")
    return bool(s)


_DIGITS_AS_ZERO = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_TWENTY = b"0" * 20


def _has_big_float(doc: Any, raw: bytes) -> bool:
    """True if orjson may have read an integer of more than 19 digits as a float (json keeps it an int): any run
    of 20 digits, in a number or a string, sends the payload to the stdlib decoder (two C passes over the bytes).

    Examples
    --------
    >>> _has_big_float(None, b'[12345678901234567890]'), _has_big_float(None, b'[1234567890.1234567890]')
    (True, False)
    """
    return _TWENTY in raw.translate(_DIGITS_AS_ZERO)


@dataclass
class ColumnarResult:
    """What one MQTT message gave (columnar, or entity updates read by :class:`~citytwin.twin.updates.UpdateBatch`):
    accepted readings as columns, and the rejects.

    ``columns`` holds ``entity, type, property, time_us, value, unit, lon, lat`` as numpy arrays
    (``value`` NaN = missing), the shape :meth:`citytwin.foundation.timeseries.ingest.Ingestor.commit`
    stores, and the string columns again as integer codes (:data:`~citytwin.foundation.timeseries.ingest.CODES`);
    ``observations`` is empty (the readings are only in ``columns``).
    """

    whole: dict[str, Any]
    rejects: list[Reject] = field(default_factory=list)
    entities: int = 0
    observations: tuple[()] = ()
    #: rows ``lo:hi`` of ``whole`` (the columns of every columnar message of the parsed batch) are this message's
    span: tuple[int, int] = (0, 0)

    @property
    def columns(self) -> dict[str, Any]:
        """This message's accepted readings (slices of :attr:`whole`; the ingest takes the whole batch at once)."""
        lo, hi = self.span
        if lo == 0 and hi == len(self.whole["entity"]):
            return self.whole
        sub = {name: arr[lo:hi] for name, arr in self.whole.items() if name != CODES}
        sub[CODES] = {name: (c[lo:hi], u) for name, (c, u) in self.whole.get(CODES, {}).items()}
        return sub


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


_NOTHING = {"entity": _read_only(np.empty(0, dtype=object)), "time_us": _read_only(np.empty(0, dtype=np.int64)),
            "value": _read_only(np.empty(0, dtype=np.float64))}
_NOTHING = {"entity": _NOTHING["entity"], "type": _NOTHING["entity"], "property": _NOTHING["entity"],
            "time_us": _NOTHING["time_us"], "value": _NOTHING["value"], "unit": _NOTHING["entity"],
            "lon": _NOTHING["value"], "lat": _NOTHING["value"]}


def _empty_columns() -> dict[str, Any]:
    """No readings, as columns (a new dict of shared empty read-only arrays: made once per message)."""
    return dict(_NOTHING)


class _Rows:
    """The accepted entity rows of the columnar messages of one batch, and their values per (type, property, unit)."""

    def __init__(self) -> None:
        self.ent: list[str] = []
        self.type: list[str] = []
        self.t: list[int] = []
        self.notime: list[bool] = []  # rows without an observedAt
        self.notime_arr = np.zeros(0, dtype=bool)
        self.lon: list[float] = []
        self.lat: list[float] = []
        self.msg: list[int] = []  # the message (index in the batch) of each row
        self.row: list[int] = []  # its index in that message's ``ids``
        self.ctx: dict[int, tuple[dict[str, Any], list[str], Any]] = {}  # message -> (doc, ids, observedAt)
        # (type, property, unit) -> (global row numbers, values)
        self.groups: dict[tuple[str, str, str | None], tuple[list[int], list[Any]]] = {}


class BatchParser(MessageParser):
    """:class:`~citytwin.twin.entities.MessageParser` that also reads the columnar batch payload.

    On the batch topic, a JSON object with ``ids`` is a columnar payload (see the module docstring);
    everything else is parsed as :class:`MessageParser` parses it, with the same outcome (decoded with orjson,
    see :func:`fast_decode`). HTTP bodies (``topic=None``) are never taken as columnar, and go through
    :meth:`MessageParser.parse_doc` as before.

    :meth:`parse_many` parses the messages of a whole batch; the columnar ones are validated together,
    one numpy pass per (entity type, property, unit) over all their rows, and the entity updates column by
    column (:class:`citytwin.twin.updates.UpdateBatch`: the readings and rejects of ``MessageParser``, given
    as columns). The look-ups of the updates' entities are kept as long as those of columnar ``ids``.

    ``registry_version`` (optional): a number that changes whenever a registered entity is created, changed
    or deleted (:attr:`citytwin.foundation.timeseries.state.StateStore.generation`). With it, the look-ups
    of a columnar message's ``ids`` are kept per list of ids (a gateway sends the same list again and again)
    and used until the number changes; without it every id is looked up in every message.
    """

    def __init__(self, lookup: Callable[[str], EntityRef | None], *,
                 registry_version: Callable[[], int] | None = None, **kw: Any) -> None:
        super().__init__(lookup, **kw)
        self.registry_version = registry_version
        self._ids_version: int | None = None
        # (ids, declared type) -> (types, lons, lats, distinct types): lists of ids whose entities are all
        # registered (and of the declared type), valid while the registry version stays ``_ids_version``
        self._ids_cache: dict[tuple[tuple[str, ...], str | None], tuple[list[str], list[float], list[float],
                                                                        set[str]]] = {}
        self._refs: dict[str, EntityRef] = {}  # entity updates' look-ups, as long (see UpdateBatch)

    def parse(self, topic: str | None, payload: bytes | str) -> Any:
        """Parse one MQTT message or HTTP body: a :class:`ColumnarResult` or a ``ParseResult``."""
        return self.parse_many([(topic, payload)])[0]

    def parse_many(self, messages: Sequence[tuple[str | None, bytes | str]]) -> list[Any]:
        """Parse a batch of ``(topic, payload)``: one result per message, in order.

        Each MQTT message (columnar or entity updates) gets a :class:`ColumnarResult` whose ``columns`` are its
        accepted readings (slices of the arrays validated for the whole batch); an HTTP body (``topic=None``)
        gets a ``ParseResult``.
        """
        results: list[Any] = []
        acc = _Rows()
        now = self.now_us()
        version = self.registry_version() if self.registry_version is not None else None
        if version is None or version != self._ids_version:
            self._ids_cache.clear()
            self._refs.clear()
            self._ids_version = version
        updates = UpdateBatch(self, now, self._refs if version is not None else None)
        upd: list[int] = []  # the messages of entity updates, in the order given to ``updates``
        for k, (topic, payload) in enumerate(messages):
            raw = payload.encode() if isinstance(payload, str) else payload
            res = ParseResult()
            results.append(res)
            got = self.envelope(topic, raw, res, fast_decode)  # size, topic, JSON: as MessageParser.parse
            if got is None:
                continue
            doc, topic_id, topic_type = got
            if topic is not None and topic_id is None and type(doc) is dict and "ids" in doc:
                col = results[k] = ColumnarResult(_empty_columns())
                self._rows(k, doc, raw, col, acc, now)
                continue
            if topic is None:  # an HTTP body: as MessageParser.parse gives it
                self.parse_doc(doc, res, topic_id=topic_id, topic_type=topic_type, raw=raw)
                continue
            # entity updates: validated together, column by column (citytwin.twin.updates)
            upd.append(k)
            results[k] = ColumnarResult(_empty_columns())
            updates.add(doc, results[k], topic_id, topic_type)
        if acc.groups:
            cols, msg = self._values(acc, results)
            _spans(results, sorted(acc.ctx), cols, msg)
        if upd:
            cols, msg = updates.finish()
            _spans(results, upd, cols, np.asarray(upd, dtype=np.int64)[msg])
        return results

    # -- the columnar payload ------------------------------------------------------------------
    def _rows(self, k: int, doc: dict[str, Any], raw: bytes, out: ColumnarResult, acc: _Rows, now: int) -> None:
        """Check the shape and the rows (id, type, time) of columnar message ``k``; queue its values in ``acc``."""
        rej = out.rejects
        ids = doc["ids"]
        if type(ids) is not list or (ids and set(map(type, ids)) != _STR):
            rej.append(Reject("wrong_type", "ids: expected a list of entity id strings", payload=raw))
            return
        n = len(ids)
        declared = doc.get("type")
        if declared is not None and type(declared) is not str:
            rej.append(Reject("wrong_type", "type: expected a string", payload=raw))
            return
        units = doc.get("units", {})
        if type(units) is not dict or (units and set(map(type, units.values())) != _STR):
            rej.append(Reject("wrong_type", "units: expected an object of unit strings", payload=raw))
            return
        times = doc.get("observedAt")  # None: no time, every reading is refused as missing_time (as in updates)
        if type(times) is list and len(times) != n:
            rej.append(Reject("wrong_type", f"observedAt: {len(times)} times for {n} ids", payload=raw))
            return
        if "location" in doc:  # meaningful in an entity update: refused here rather than ignored
            rej.append(Reject("wrong_type", "location: the columnar payload has none (the registered location is "
                                            "used); send entity updates to give one", property="location",
                              payload=raw))
            return
        props: list[tuple[str, list[Any]]] = []
        for key, v in doc.items():
            if key in COLUMNAR_KEYS or key in RESERVED:
                continue
            if type(v) is not list or len(v) != n:
                rej.append(Reject("wrong_type", f"{key}: expected a list of {n} values (one per id)", property=key,
                                  payload=raw))
                return
            props.append((key, v))
        single_t: int | None = None
        single_bad: list[Reject] = []
        if type(times) is not list and times is not None:  # one time for all rows: checked once, refused per row
            single_t = self._row_time(times, "observedAt", single_bad, None, raw, now)
        acc.ctx[k] = (doc, ids, times)
        g0 = len(acc.ent)
        kept: list[int] = []
        kinds: set[str] = set()
        idkey = (tuple(ids), declared) if self._ids_version is not None else None
        hit = self._ids_cache.get(idkey) if idkey is not None else None
        if hit is not None and single_t is not None:  # known ids, one valid time: the rows the loop below keeps
            kept = list(range(n))
            acc.notime.extend([False] * n)
            acc.ent.extend(ids)
            acc.type.extend(hit[0])
            acc.t.extend([single_t] * n)
            acc.lon.extend(hit[1])
            acc.lat.extend(hit[2])
            kinds = hit[3]
        registered = 0
        for i, eid in enumerate(() if hit is not None and single_t is not None else ids):
            ref = self.lookup(eid) if eid else None
            if ref is None:
                rej.append(Reject("unknown_entity" if eid else "missing_id",
                                  f"ids[{i}]: entity {eid!r} is not registered" if eid else f"ids[{i}]: empty id",
                                  entity=eid or None, payload=_row(doc, i, ids, times)))
                continue
            if declared is not None and declared != ref.type:
                rej.append(Reject("type_mismatch", f"ids[{i}]: type {declared!r} but {eid!r} is a {ref.type!r}",
                                  entity=eid, payload=_row(doc, i, ids, times)))
                continue
            registered += 1
            t = single_t
            if single_bad:
                rej.append(Reject(single_bad[0].reason, single_bad[0].detail, entity=eid,
                                  payload=_row(doc, i, ids, times)))
                continue
            notime = times is None or (type(times) is list and times[i] is None)
            if notime:  # kept: each of its readings is refused as missing_time (after unknown_property)
                t = 0
            elif t is None and type(times) is list:
                t = self._row_time(times[i], f"observedAt[{i}]", rej, eid, _row(doc, i, ids, times), now)
            if t is None:  # (refused above)
                continue
            acc.notime.append(notime)
            kept.append(i)
            kinds.add(ref.type)
            acc.ent.append(eid)
            acc.type.append(ref.type)
            acc.t.append(t)
            acc.lon.append(math.nan if ref.lon is None else ref.lon)
            acc.lat.append(math.nan if ref.lat is None else ref.lat)
        if idkey is not None and hit is None and registered == n and n:  # every id known: keep its look-ups
            if len(self._ids_cache) >= 4096:  # lists come from the senders: keep the cache bounded
                self._ids_cache.clear()
            refs = [self.lookup(e) for e in ids]
            if all(r is not None for r in refs):
                self._ids_cache[idkey] = ([r.type for r in refs if r is not None],
                                        [math.nan if r is None or r.lon is None else r.lon for r in refs],
                                        [math.nan if r is None or r.lat is None else r.lat for r in refs],
                                        {r.type for r in refs if r is not None})
        out.entities = len(kept)
        if not kept:
            return
        acc.msg.extend([k] * len(kept))
        acc.row.extend(kept)
        everyone = len(kept) == n
        for tname in kinds:
            if len(kinds) == 1:
                grows: Sequence[int] = range(g0, g0 + len(kept))
                pick = None if everyone else kept
            else:
                sel = [j for j in range(len(kept)) if acc.type[g0 + j] == tname]
                grows = [g0 + j for j in sel]
                pick = [kept[j] for j in sel]
            for name, vals in props:
                rows, values = acc.groups.setdefault((tname, name, units.get(name)), ([], []))
                rows.extend(grows)
                values.extend(vals if pick is None else [vals[i] for i in pick])

    def _row_time(self, text: Any, where: str, rej: list[Reject], eid: str | None, payload: bytes,
                  now: int) -> int | None:
        """µs of one row's (or the message's) ``observedAt``, or None with its reject appended."""
        if text is None:  # as an entity update without a time: its readings have none
            rej.append(Reject("missing_time", f"{where}: no observedAt for the values", entity=eid, payload=payload))
            return None
        try:
            t = parse_time_us(text)
        except ValueError as exc:
            rej.append(Reject("bad_time", f"{where}: {exc}", entity=eid, payload=payload))
            return None
        bad = self._time_reject(t, text, now)
        if bad is not None:
            rej.append(Reject(bad[0], f"{where}: {bad[1]}", entity=eid, payload=payload))
            return None
        return t

    def _values(self, acc: _Rows, results: list[Any]) -> tuple[dict[str, Any], np.ndarray]:
        """Validate the queued values, one numpy pass per (type, property, unit); the accepted readings as columns
        in message order, and the message of each (rejects go to their message's result)."""
        parts: list[tuple[np.ndarray, str, str, np.ndarray]] = []
        acc.notime_arr = np.asarray(acc.notime, dtype=bool)
        for (tname, name, unit), (rows, vals) in acc.groups.items():
            got = self._column(tname, name, unit, np.asarray(rows, dtype=np.int64), vals, acc, results)
            if got is not None and len(got[0]):
                parts.append(got)
        if not parts:
            return _empty_columns(), np.empty(0, dtype=np.int64)
        idx = np.concatenate([p[0] for p in parts])
        sizes = [len(p[0]) for p in parts]
        order = np.argsort(idx, kind="stable")  # message order: of two readings of one key, the later wins
        idx = idx[order]
        # the string columns as codes into their few distinct strings (factorized per entity row or per part,
        # not per reading), given beside the strings for the ingest (ingest.CODES)
        codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, per_row, where in (("entity", acc.ent, idx), ("type", acc.type, idx)):
            c, u = pd.factorize(np.array(per_row, dtype=object))
            codes[name] = (c[where], np.asarray(u, dtype=object))
        for name, j in (("property", 1), ("unit", 2)):
            c, u = pd.factorize(np.array([p[j] for p in parts], dtype=object))
            codes[name] = (np.repeat(c, sizes)[order], np.asarray(u, dtype=object))
        cols: dict[str, Any] = {name: u[c] for name, (c, u) in codes.items()}
        cols.update({"time_us": np.array(acc.t, dtype=np.int64)[idx],
                     "value": np.concatenate([p[3] for p in parts])[order],
                     "lon": np.array(acc.lon, dtype=np.float64)[idx], "lat": np.array(acc.lat, dtype=np.float64)[idx],
                     CODES: codes})
        return ({k: cols[k] for k in KEYS}, np.asarray(acc.msg, dtype=np.int64)[idx])

    def _column(self, tname: str, name: str, unit: str | None, rows: np.ndarray, vals: list[Any], acc: _Rows,
                results: list[Any]) -> tuple[np.ndarray, str, str, np.ndarray] | None:
        """One property of one entity type in one unit, over the rows of every message: (rows, name, unit, values)
        accepted."""
        etype = self.types.get(tname)
        spec = etype.properties.get(name) if etype is not None else None

        def reject(reason: str, detail: str, at: np.ndarray) -> None:
            for g in at.tolist():
                k, i = acc.msg[g], acc.row[g]
                doc, ids, times = acc.ctx[k]
                results[k].rejects.append(Reject(reason, f"{name}[{i}]: {detail}", entity=ids[i], property=name,
                                                 payload=_row(doc, i, ids, times, name)))

        if etype is not None and spec is None:
            reject("unknown_property", f"{tname} has no property {name!r}", rows)
            return None
        nt = acc.notime_arr[rows]
        if nt.any():
            reject("missing_time", "no observedAt (or dateObserved) for the value", rows[nt])
            rows = rows[~nt]
            vals = [v for v, x in zip(vals, nt.tolist(), strict=True) if not x]
            if not len(rows):
                return None
        # the checks in the order MessageParser._attribute makes them: type, size, unit, range
        kind = spec.kind if spec is not None else "number"
        bad = np.zeros(len(vals), dtype=bool)
        if kind == "bool":
            v = np.full(len(vals), np.nan)
            for j, x in enumerate(vals):
                if x is True or x is False:
                    v[j] = 1.0 if x else 0.0
                elif x is not None:
                    bad[j] = True
        else:
            v = _numbers(vals, bad)
        if bad.any():
            what = "true/false" if kind == "bool" else "a finite number"
            for j in np.flatnonzero(bad).tolist():
                reject("wrong_type", f"{name} must be {what}, got {vals[j]!r}"[:200], rows[j:j + 1])
        big = np.isinf(v) & ~bad  # an integer too large for a double
        if big.any():
            for j in np.flatnonzero(big).tolist():
                reject("implausible", f"{name} has {len(str(vals[j]))} digits: too large for a number", rows[j:j + 1])
            bad |= big
            v[big] = np.nan
        if spec is None and unit is None:
            reject("unknown_unit", f"{name} of custom type {tname!r} needs a unit (in \"units\")", rows[~bad])
            return None
        target = spec.unit if spec is not None else (unit or "")
        if unit is not None:
            try:
                f = self._factors.get((unit, target))
                if f is None:
                    f = unit_factor(unit, target)
                    if len(self._factors) < 4096:  # labels come from the senders: keep the cache bounded
                        self._factors[(unit, target)] = f
            except InputError as exc:
                reject("unknown_unit", f"{name}: {exc.message} (stored in {target or '1'})", rows[~bad])
                return None
            if f != 1.0:
                with np.errstate(over="ignore"):  # an overflow gives inf, refused as not finite just below
                    v = v * f
        lo, hi = self._bounds(name) if spec is not None else (-math.inf, math.inf)
        with np.errstate(invalid="ignore"):
            out = ~np.isnan(v) & ~((v >= lo) & (v <= hi) & np.isfinite(v))
        if out.any():
            rng = self.ranges(name) if spec is not None else None
            w = (f"outside the physical range {rng[0]}..{rng[1]} {target}".rstrip() if rng is not None
                 else "not finite after unit conversion")
            for j in np.flatnonzero(out).tolist():
                reject("implausible", f"{name} {v[j]:g} {target} is {w}".replace("  ", " "), rows[j:j + 1])
        keep = ~(bad | out)
        if not keep.all():
            rows, v = rows[keep], v[keep]
        return rows, name, target, v


def _numbers(sel: list[Any], bad: np.ndarray) -> np.ndarray:
    """Values of a number column as float64 (None -> NaN); ``bad`` marks what is not a number (bool, text …).

    A column of floats, ints and nulls is converted in one step; an integer that a double cannot hold
    becomes ``inf`` (rejected as implausible by the caller), as ``float(int)`` would overflow.
    """
    kinds = frozenset(map(type, sel))
    if kinds in _NUMBER_TYPES:
        try:
            v = np.array(sel, dtype=np.float64)
        except OverflowError:
            pass
        else:  # NaN only from null, no infinity: then nothing needs a closer look
            nan = np.isnan(v)
            if not np.isinf(v).any() and (not nan.any() or int(nan.sum()) == sel.count(None)):
                return v
    v = np.full(len(sel), np.nan)
    for j, x in enumerate(sel):
        t = type(x)
        if t is float:
            if not math.isfinite(x):  # NaN / Infinity literals (the stdlib decoder reads them)
                bad[j] = True
            else:
                v[j] = x
        elif t is int:
            try:
                v[j] = float(x)
            except OverflowError:
                v[j] = math.inf
        elif x is not None:
            bad[j] = True
    return v


def _spans(results: list[Any], ks: Sequence[int], cols: dict[str, Any], msg: np.ndarray) -> None:
    """Give the results of messages ``ks`` their rows of ``cols`` (``msg``: each row's message, non-decreasing)."""
    lo = np.searchsorted(msg, ks, side="left")
    hi = np.searchsorted(msg, ks, side="right")
    for k, a, b in zip(ks, lo.tolist(), hi.tolist(), strict=True):
        if b > a:
            results[k].whole, results[k].span = cols, (a, b)


def _row(doc: dict[str, Any], i: int, ids: list[Any], times: Any, prop: str | None = None) -> bytes:
    """The dead letter's payload for row ``i``: its id, time and (for one reading) that value, with the index."""
    d: dict[str, Any] = {"index": i, "id": ids[i], "observedAt": times[i] if type(times) is list else times}
    if prop is not None:
        d[prop] = doc[prop][i]
        u = doc.get("units", {}).get(prop) if type(doc.get("units")) is dict else None
        if u is not None:
            d["unit"] = u
    return _dump(d)


def observations_frame(obs: list[Observation]) -> pd.DataFrame:
    """Observations (of entity updates) as a long frame: entity, type, property, time (UTC), value, unit, lon, lat.

    (Moved here from :mod:`citytwin.twin.entities`, which keeps to the 800-line limit.)
    """
    return pd.DataFrame({
        "entity": [o.entity for o in obs], "type": [o.type for o in obs],
        "property": [o.property for o in obs],
        "time": pd.to_datetime(np.array([o.observed_at_us for o in obs], dtype="int64"), unit="us", utc=True),
        "value": np.array([np.nan if o.value is None else o.value for o in obs], dtype="float64"),
        "unit": [o.unit for o in obs], "lon": [o.lon for o in obs], "lat": [o.lat for o in obs],
    })


def columnar_messages_from_long(long: pd.DataFrame, *, prefix: str = DEFAULT_TOPIC_PREFIX,
                                per_message: int = 12) -> Iterator[tuple[int, str, bytes]]:
    """Group long observations into columnar batch messages, in time order: ``(time µs, topic, payload)``.

    The columnar twin of :func:`citytwin.twin.feeds.messages_from_long` (same grouping: ``per_message``
    entity rows of one time step after another, sorted by time then entity); NaN values are sent as
    ``null``, and each message carries the properties of its rows with their unit in ``units``.
    ``long`` needs entity, type, property, time, value, unit.

    Raises
    ------
    InputError
        If the rows of one message do not all have the same properties (the columnar form cannot say
        "absent" for one row: publish those as entity updates), or a property has several units.

    Examples
    --------
    >>> t = pd.Timestamp("2015-12-01T00:00:00Z")
    >>> long = pd.DataFrame({"entity": ["urn:ngsi-ld:T:a", "urn:ngsi-ld:T:b"], "type": "T", "property": "pm25",
    ...                      "time": [t, t], "value": [1.0, float("nan")], "unit": "µg/m³"})
    >>> [(topic, payload.decode()) for _, topic, payload in columnar_messages_from_long(long)]
    [('citytwin/batch', '{"ids":["urn:ngsi-ld:T:a","urn:ngsi-ld:T:b"],"type":"T","observedAt":"2015-12-01T00:00:00Z","units":{"pm25":"µg/m³"},"pm25":[1.0,null]}')]
    """
    units = long.groupby("property")["unit"].unique()
    several = units[units.map(len) > 1]
    if len(several):
        raise InputError(f"property {several.index[0]!r} has several units {list(several.iloc[0])}", field="unit")
    wide = long.pivot_table(index=["time", "entity"], columns="property", values="value", aggfunc="last",
                            dropna=False, sort=True)
    have = long.pivot_table(index=["time", "entity"], columns="property", values="value", aggfunc="size",
                            fill_value=0, sort=True).reindex(index=wide.index, columns=wide.columns, fill_value=0) > 0
    kinds = long.drop_duplicates("entity").set_index("entity")["type"]
    times = wide.index.get_level_values(0)
    t_us = pd.DatetimeIndex(times).tz_convert("UTC").as_unit("us").asi8
    ents = wide.index.get_level_values(1).to_numpy(dtype=object)
    props = list(wide.columns)
    vals = wide.to_numpy(dtype=np.float64)
    present = have.to_numpy()
    for s in range(0, len(wide), per_message):
        e = slice(s, s + per_message)
        ids = ents[e].tolist()
        p_here = present[e]
        cols = [j for j in range(len(props)) if p_here[:, j].any()]
        mixed = [props[j] for j in cols if not p_here[:, j].all()]
        if mixed:
            raise InputError(f"the rows of a columnar message at {times[s]} do not all have {mixed[0]!r}",
                             field="property", hint="publish these readings as entity updates")
        tt = t_us[e]
        doc: dict[str, Any] = {"ids": ids}
        ktypes = set(kinds.reindex(ids).tolist())
        if len(ktypes) == 1:
            doc["type"] = ktypes.pop()
        doc["observedAt"] = format_time_us(int(tt[0])) if (tt == tt[0]).all() else [format_time_us(int(x)) for x in tt]
        doc["units"] = {props[j]: str(units[props[j]][0]) for j in cols}
        block = vals[e]
        for j in cols:
            doc[props[j]] = [None if math.isnan(x) else x for x in block[:, j].tolist()]
        yield int(tt[0]), f"{prefix}/batch", orjson.dumps(doc)
