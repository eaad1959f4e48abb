"""NGSI-LD entity model of the live twin, message validation and the MQTT topic convention.

Pure functions over Python objects and pandas frames: no file or network I/O. The
ingest pipeline in :mod:`citytwin.foundation.timeseries.ingest` calls
:class:`MessageParser` on every MQTT message and HTTP body; the stores live in the
foundation.

Entity types and attribute names follow FIWARE Smart Data Models
(``dataModel.Environment/AirQualityObserved``, ``dataModel.Transportation/TrafficFlowObserved``):
``pm25``, ``pm10``, ``so2``, ``no2``, ``co``, ``o3``, ``temperature``, ``atmosphericPressure``,
``relativeHumidity``, ``precipitation``, ``windSpeed``, ``windDirection``; ``intensity``,
``occupancy``, ``averageVehicleSpeed``, ``averageVehicleLength``, ``congested``. Units are
stored canonical (see :data:`ENTITY_TYPES`); a payload may give another unit of the same
dimension (``unit`` label or UN/CEFACT ``unitCode``) and is converted.

Topic convention (MQTT)
-----------------------
``{prefix}/{type}/{localId}/attrs``
    one entity update; the entity id is ``urn:ngsi-ld:{type}:{localId}`` unless the payload has ``id``.
``{prefix}/batch``
    a JSON array of entity updates, each with ``id``.

``prefix`` defaults to ``citytwin``; ingest subscribes to ``{prefix}/#`` with QoS 1.

Payload (MQTT and HTTP alike)::

    {"id": "urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi",      (optional on a per-entity topic)
     "type": "AirQualityObserved",                               (optional; must match the entity)
     "observedAt": "2015-12-01T08:00:00+08:00",                  (or SDM "dateObserved"; timezone required)
     "pm25": 301,                                                (bare number: canonical unit)
     "co": {"value": 3100, "unitCode": "GQ"},                    (UN/CEFACT code, converted to mg/m³)
     "no2": {"type": "Property", "value": 80, "unit": "µg/m³", "observedAt": "..."},
     "o3": null}                                                 (missing: stored as null, never 0)

Examples
--------
>>> registry = {"urn:ngsi-ld:AirQualityObserved:S1": EntityRef("AirQualityObserved", 116.4, 39.9)}
>>> parser = MessageParser(registry.get, now_us=lambda: 2_000_000_000_000_000)
>>> res = parser.parse("citytwin/AirQualityObserved/S1/attrs",
...                    b'{"observedAt": "2015-12-01T00:00:00Z", "pm25": 120, "co": {"value": 3100, "unit": "ug/m3"}}')
>>> [(o.property, o.value, o.unit) for o in res.observations]
[('pm25', 120.0, 'µg/m³'), ('co', 3.1, 'mg/m³')]
>>> parser.parse("citytwin/AirQualityObserved/S1/attrs", b'{"observedAt": 5').rejects[0].reason
'malformed_json'
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from citytwin.foundation import units
from citytwin.foundation.errors import InputError
from citytwin.foundation.properties import physical_range

NGSI_PREFIX = "urn:ngsi-ld:"
DEFAULT_TOPIC_PREFIX = "citytwin"
DEFAULT_MAX_PAYLOAD = 1_048_576  # bytes; larger MQTT messages / HTTP bodies are dead-lettered
DEFAULT_MAX_FUTURE_S = 300.0  # observedAt later than now + this is rejected
DEFAULT_MAX_AGE_S = 30 * 365.25 * 86_400.0  # observedAt earlier than now - this (30 years) is rejected
MAX_DEPTH = 32  # JSON nesting deeper than this is rejected (a real payload needs about 6)
PropertyKind = Literal["number", "bool"]

# UN/CEFACT common codes used by Smart Data Models, mapped to unit labels foundation.units parses.
UNIT_CODES: dict[str, str] = {
    "GQ": "µg/m³", "GP": "mg/m³", "CEL": "℃", "A97": "hPa", "MMT": "mm", "MTS": "m/s", "KMH": "km/h",
    "DD": "degree", "C62": "dimensionless", "P1": "percent", "MTR": "m", "E50": "item", "KGM": "kg",
    "HPA": "hPa", "KWH": "kWh",
}


@dataclass(frozen=True)
class PropertySpec:
    """A typed attribute of an entity type.

    Parameters
    ----------
    name
        Smart Data Models attribute name (``pm25``).
    unit
        Canonical unit label values are stored in (``µg/m³``); ``""`` for dimensionless.
    kind
        ``number`` (JSON number) or ``bool`` (JSON true/false, stored as 1.0 / 0.0).
    description
        What it measures.
    """

    name: str
    unit: str
    kind: PropertyKind = "number"
    description: str = ""


@dataclass(frozen=True)
class EntityType:
    """An entity type with its observable properties."""

    name: str
    properties: Mapping[str, PropertySpec]
    description: str = ""


def _props(*specs: PropertySpec) -> dict[str, PropertySpec]:
    return {s.name: s for s in specs}


ENTITY_TYPES: dict[str, EntityType] = {
    "AirQualityObserved": EntityType(
        "AirQualityObserved",
        _props(
            PropertySpec("pm25", "µg/m³", description="PM2.5 mass concentration"),
            PropertySpec("pm10", "µg/m³", description="PM10 mass concentration"),
            PropertySpec("so2", "µg/m³", description="sulphur dioxide"),
            PropertySpec("no2", "µg/m³", description="nitrogen dioxide"),
            PropertySpec("co", "mg/m³", description="carbon monoxide (mg/m³ as in HJ 633-2012)"),
            PropertySpec("o3", "µg/m³", description="ozone"),
            PropertySpec("temperature", "℃", description="air temperature"),
            PropertySpec("dewPoint", "℃", description="dew point (SDM WeatherObserved name)"),
            PropertySpec("atmosphericPressure", "hPa", description="air pressure"),
            PropertySpec("relativeHumidity", "", description="relative humidity, ratio 0-1"),
            PropertySpec("precipitation", "mm", description="precipitation in the period"),
            PropertySpec("windSpeed", "m/s", description="wind speed"),
            PropertySpec("windDirection", "degree", description="wind direction, degrees from north"),
            PropertySpec("airQualityIndex", "", description="AQI (HJ 633-2012)"),
        ),
        "Smart Data Models dataModel.Environment/AirQualityObserved",
    ),
    "TrafficFlowObserved": EntityType(
        "TrafficFlowObserved",
        _props(
            PropertySpec("intensity", "item", description="vehicles counted in the observation period"),
            PropertySpec("occupancy", "", description="fraction of time a vehicle was over the sensor, 0-1"),
            PropertySpec("averageVehicleSpeed", "km/h", description="mean speed"),
            PropertySpec("averageVehicleLength", "m", description="mean vehicle length"),
            PropertySpec("averageHeadwayTime", "s", description="mean headway"),
            PropertySpec("congested", "", kind="bool", description="flow is congested"),
        ),
        "Smart Data Models dataModel.Transportation/TrafficFlowObserved",
    ),
}

# Keys of an entity payload that are not observed properties.
RESERVED = frozenset({"id", "type", "@context", "observedAt", "dateObserved", "dateObservedFrom",
                      "dateObservedTo", "location", "name", "address", "source", "dataProvider",
                      "refDevice", "refPointOfInterest", "refRoadSegment", "laneId", "laneDirection",
                      "stationName", "stationCode", "description", "vehicleType", "reliability",
                      "createdAt", "modifiedAt"})
STATIC_KEYS = RESERVED - {"id", "type", "@context", "observedAt", "dateObserved", "dateObservedFrom",
                          "dateObservedTo", "location", "createdAt", "modifiedAt"}


@dataclass(frozen=True)
class EntityRef:
    """What validation needs to know of a registered entity: its type and location (lon, lat)."""

    type: str
    lon: float | None = None
    lat: float | None = None


@dataclass(frozen=True)
class Entity:
    """A twin entity (sensor, station, road segment, asset) as registered in the live state.

    Parameters
    ----------
    id
        NGSI-LD URN, ``urn:ngsi-ld:{type}:{localId}``.
    type
        Entity type (a key of :data:`ENTITY_TYPES` or a custom type).
    lon, lat
        Location (WGS84), or None.
    static
        Non-observed attributes (``name``, ``address``, ``laneId`` ...).
    """

    id: str
    type: str
    lon: float | None = None
    lat: float | None = None
    static: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> EntityRef:
        return EntityRef(self.type, self.lon, self.lat)


class Observation(NamedTuple):
    """One accepted reading: entity, property, time (µs since epoch, UTC), value (canonical unit)."""

    entity: str
    type: str
    property: str
    observed_at_us: int
    value: float | None
    unit: str
    lon: float | None
    lat: float | None


def _obs(fields: tuple[Any, ...]) -> Observation:
    """An Observation from its 8 fields in order (``tuple.__new__``: no Python-level constructor call)."""
    return tuple.__new__(Observation, fields)


@dataclass(frozen=True)
class Reject:
    """A rejected message or attribute, with a machine reason and a human detail."""

    reason: str
    detail: str
    entity: str | None = None
    property: str | None = None
    payload: bytes | None = None


@dataclass
class ParseResult:
    """Observations accepted from one message and what was rejected (with reasons)."""

    observations: list[Observation] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    entities: int = 0


def entity_id(type_: str, local_id: str) -> str:
    """The NGSI-LD URN of an entity.

    Examples
    --------
    >>> entity_id("AirQualityObserved", "Beijing-Dongsi")
    'urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi'
    """
    return f"{NGSI_PREFIX}{type_}:{local_id}"


def topic_for(entity: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """The MQTT topic an entity publishes its updates on.

    Examples
    --------
    >>> topic_for("urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi")
    'citytwin/AirQualityObserved/Beijing-Dongsi/attrs'
    """
    if not entity.startswith(NGSI_PREFIX):
        raise InputError(f"entity id {entity!r} is not an NGSI-LD URN", field="id",
                         hint="use urn:ngsi-ld:{type}:{localId}")
    type_, _, local = entity[len(NGSI_PREFIX):].partition(":")
    return f"{prefix}/{type_}/{local}/attrs"


def parse_topic(topic: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> tuple[str | None, str | None]:
    """(entity id, type) named by a topic; (None, None) for the batch topic.

    Raises
    ------
    InputError
        If the topic does not follow the convention.
    """
    parts = topic.split("/")
    if parts == [prefix, "batch"]:
        return None, None
    if len(parts) == 4 and parts[0] == prefix and parts[3] == "attrs" and parts[1] and parts[2]:
        return entity_id(parts[1], parts[2]), parts[1]
    raise InputError(f"topic {topic!r} does not follow {prefix}/{{type}}/{{localId}}/attrs or {prefix}/batch",
                     field="topic")


def parse_time_us(value: Any) -> int:
    """ISO 8601 timestamp with a timezone -> microseconds since the epoch (UTC).

    Examples
    --------
    >>> parse_time_us("1970-01-01T00:00:01Z")
    1000000
    >>> parse_time_us("1970-01-01T08:00:00+08:00")
    0
    """
    if not isinstance(value, str):
        raise ValueError(f"observedAt must be an ISO 8601 string, got {type(value).__name__}")
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"observedAt {value!r} has no timezone (add Z or +08:00)")
    try:
        delta = dt - _EPOCH
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError(f"observedAt {value!r} is outside the years 1-9999 in UTC") from None
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OPEN = (-math.inf, math.inf)
_EXACT_INT = 2**53  # integers a float holds exactly
_MIN_US = int(pd.Timestamp("1678-01-01", tz="UTC").value // 1000)
_MAX_US = int(pd.Timestamp("2261-12-31", tz="UTC").value // 1000)


def format_time_us(us: int) -> str:
    """Microseconds since the epoch -> ISO 8601 UTC string (``...Z``).

    Examples
    --------
    >>> format_time_us(1_000_000)
    '1970-01-01T00:00:01Z'
    """
    dt = datetime.fromtimestamp(us / 1e6, tz=UTC)
    text = dt.isoformat(timespec="microseconds" if us % 1_000_000 else "seconds")
    return text.replace("+00:00", "Z")


@lru_cache(maxsize=4096)
def unit_factor(source: str, target: str) -> float:
    """Factor from ``source`` to ``target`` unit (UN/CEFACT codes accepted); InputError if unknown.

    A label longer than 64 characters, with control characters, or that the unit parser cannot
    read (``1/0``, ``((((``) is an unknown unit, as is one whose factor is 0 or not finite.
    """
    src = UNIT_CODES.get(source, source)
    tgt = UNIT_CODES.get(target, target)
    if src == tgt:
        return 1.0
    if src in ("", "dimensionless") and tgt in ("", "dimensionless"):
        return 1.0
    if len(src) > 64 or not src.isprintable():
        raise InputError(f"unit {src[:64]!r} is not a unit label (at most 64 printable characters)", field="unit")
    try:
        if tgt in ("", "dimensionless"):
            # ratio properties: accept percent as a label and convert to a fraction
            f = units.factor(src, "dimensionless") if src != "percent" else 0.01
        else:
            f = units.factor(src, tgt)
    except InputError:
        raise
    except Exception as exc:  # the unit parser (pint) fails in many ways on odd text
        raise InputError(f"unit {src!r} is not understood ({type(exc).__name__})", field="unit") from None
    if not math.isfinite(f) or f == 0:
        raise InputError(f"unit {src!r} gives the factor {f} to {tgt!r}", field="unit")
    return f


def _bad_number(v: Any) -> bool:
    return isinstance(v, bool) or not isinstance(v, int | float)


class PayloadError(InputError):
    """A message or body that cannot be decoded; ``reason`` is its dead-letter reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b'"[]{}')  # the bytes the depth count keeps
_STEP = np.array([{91: 1, 123: 1, 93: -1, 125: -1}.get(b, 0) for b in range(256)], dtype=np.int8)  # [{ ]}
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # the same steps as int8 bytes, for the short way


def _bracket_depth(raw: bytes) -> int:
    r"""Nesting depth of valid JSON ``raw`` (the callers decode it first): the highest running count of open
    brackets outside strings (a string of ``]`` would lower it), over the brackets and quotes alone. Escapes
    go first (``\\`` pairs, then ``\"``), so every quote left opens or closes a string. With no backslash, as
    many ``""`` (counted left to right) as half the quotes means no string holds a bracket (the opening quote
    of the first that does is followed by one, so is in no pair): the brackets are then counted as they are.

    Examples
    --------
    >>> _bracket_depth(b'[{"a": [1]}, {"b": "]]"}]'), _bracket_depth(b'{"s": "]]]]", "d": [[1]]}')
    (3, 3)
    >>> _bracket_depth(b'["\\\\", ["\\"[["]]'), _bracket_depth(b"1"), _bracket_depth(b"")
    (2, 0, 0)
    """
    if b"\\" not in raw:  # every quote opens or closes a string
        kept = raw.translate(None, _NOT_BRACKETS)
        if kept.count(b'""') * 2 == kept.count(b'"'):  # no string holds a bracket (its opening quote would be
            steps = np.frombuffer(kept.translate(_STEPS, b'"'), dtype=np.int8)  # left over): count them all
            return max(0, int(steps.cumsum(dtype=np.int32).max())) if len(steps) else 0
    else:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")  # an escaped quote does not end a string
    a = np.frombuffer(raw.translate(None, _NOT_BRACKETS), dtype=np.uint8)  # quotes and brackets, in order
    if not len(a):
        return 0
    inside = np.cumsum(a == 34, dtype=np.int32) & 1  # in a string: after an odd number of quotes (34)
    steps = np.where(inside, 0, _STEP[a])
    return max(0, int(steps.cumsum(dtype=np.int32).max()))


def decode_json(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode a JSON payload (UTF-8) that is safe to validate and store, or raise :class:`PayloadError`.

    Reasons: ``malformed_json`` (not JSON, not UTF-8, or an integer of more than 4,300 digits),
    ``too_deep`` (lists/objects nested deeper than ``max_depth``) and ``bad_text`` (a string
    holding a lone UTF-16 surrogate such as ``\\ud800``, which no store can encode).

    Examples
    --------
    >>> decode_json(b'{"pm25": 5}')
    {'pm25': 5}
    >>> try:
    ...     decode_json(b"[" * 100_000 + b"]" * 100_000)
    ... except PayloadError as exc:
    ...     print(exc.reason)
    too_deep
    >>> try:
    ...     decode_json(b'{"id": "\\\\ud800"}')
    ... except PayloadError as exc:
    ...     print(exc.reason)
    bad_text
    """
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise PayloadError("too_deep", f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError("malformed_json", f"not JSON: {exc}"[:300]) from None
    # the bracket count bounds the depth; only a payload with more brackets than that needs the exact count
    if raw.count(b"[") + raw.count(b"{") > max_depth and _bracket_depth(raw) > max_depth:
        raise PayloadError("too_deep", f"JSON nested deeper than {max_depth} levels")
    if _SURROGATE_ESCAPE.search(raw) is not None:
        try:  # a valid pair (\\ud83d\\ude00) decodes to one character; a lone half cannot be encoded
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise PayloadError("bad_text", "a string holds a lone UTF-16 surrogate (e.g. \\ud800), which is not "
                                           "text") from None
    return doc


class MessageParser:
    """Validate entity-update messages (MQTT payloads, HTTP bodies) into observations.

    Parameters
    ----------
    lookup
        ``entity id -> EntityRef | None``: the registered entities (from the live state store).
        An update for an entity it does not know is rejected (``unknown_entity``).
    now_us
        Clock (µs since the epoch), for rejecting future timestamps.
    max_payload
        Larger payloads are rejected (``oversized``) without being parsed.
    max_future_s
        Tolerated clock skew for ``observedAt`` in the future.
    max_age_s
        Oldest plausible ``observedAt``, in seconds before now (default 30 years); older is rejected.
    prefix
        MQTT topic prefix.
    ranges
        ``property -> (min, max) | None``: the physical range of a reading in its canonical unit
        (default :func:`citytwin.foundation.properties.physical_range`); a value outside is rejected.

    Reasons
    -------
    ``oversized``, ``malformed_json``, ``too_deep``, ``bad_text``, ``not_an_object``, ``bad_topic``,
    ``missing_id``, ``unknown_entity``, ``type_mismatch``, ``missing_time``, ``bad_time``,
    ``future_time``, ``too_old`` reject a whole entity update; ``wrong_type``, ``unknown_unit``,
    ``unknown_property``, ``implausible`` (outside the physical range; also values too large for a
    float) reject one attribute and keep the others. Nothing implausible is stored, not even with a
    flag: docs/twin.md explains the choice.
    """

    def __init__(self, lookup: Callable[[str], EntityRef | None], *, now_us: Callable[[], int] | None = None,
                 max_payload: int = DEFAULT_MAX_PAYLOAD, max_future_s: float = DEFAULT_MAX_FUTURE_S,
                 prefix: str = DEFAULT_TOPIC_PREFIX, types: Mapping[str, EntityType] | None = None,
                 max_age_s: float = DEFAULT_MAX_AGE_S,
                 ranges: Callable[[str], tuple[float | None, float | None] | None] | None = None) -> None:
        self.lookup = lookup
        self.now_us = now_us or (lambda: int(datetime.now(UTC).timestamp() * 1e6))
        self.max_payload = max_payload
        self.max_future_us = int(max_future_s * 1e6)
        self.max_age_us = int(max_age_s * 1e6)
        self.ranges = ranges or physical_range
        self._bounds_cache: dict[str, tuple[float, float]] = {}
        self._fast: dict[str, dict[str, tuple[str, float, float]]] = {}
        self.prefix = prefix
        self.types = dict(types or ENTITY_TYPES)
        self._factors: dict[tuple[str, str], float] = {}
        for et in self.types.values():  # warm the unit registry now, not on the first message
            for spec in et.properties.values():
                self._factors[(spec.unit, spec.unit)] = unit_factor(spec.unit, spec.unit)
        unit_factor("µg/m³", "mg/m³")

    # -- entry points ------------------------------------------------------------------
    def parse(self, topic: str | None, payload: bytes | str) -> ParseResult:
        """Parse one MQTT message (``topic`` given) or HTTP body (``topic=None``; id in the payload)."""
        raw = payload.encode() if isinstance(payload, str) else payload
        res = ParseResult()
        if (got := self.envelope(topic, raw, res, decode_json)) is not None:
            self.parse_doc(got[0], res, topic_id=got[1], topic_type=got[2], raw=raw)
        return res

    def envelope(self, topic: str | None, raw: bytes, res: ParseResult,
                 decode: Callable[[bytes], Any]) -> tuple[Any, str | None, str | None] | None:
        """The checks of a message before its content — size, topic, JSON (``decode``): ``(document, topic's entity
        id, topic's type)``, or None with the reject appended to ``res``."""
        if len(raw) > self.max_payload:
            res.rejects.append(Reject("oversized", f"payload of {len(raw)} bytes exceeds {self.max_payload}",
                                      payload=raw[:1024]))
            return None
        topic_id = topic_type = None
        if topic is not None:
            try:
                topic_id, topic_type = parse_topic(topic, self.prefix)
            except InputError as exc:
                res.rejects.append(Reject("bad_topic", exc.message, payload=raw))
                return None
        try:
            return decode(raw), topic_id, topic_type
        except PayloadError as exc:
            res.rejects.append(Reject(exc.reason, exc.message, entity=topic_id, payload=raw))
            return None

    def parse_doc(self, doc: Any, res: ParseResult, *, topic_id: str | None = None,
                  topic_type: str | None = None, raw: bytes | None = None) -> ParseResult:
        """Validate an already decoded JSON document (object or array of objects) into ``res``."""
        items = doc if isinstance(doc, list) else [doc]
        now = self.now_us()
        for item in items:
            if not isinstance(item, dict):
                res.rejects.append(Reject("not_an_object", f"expected a JSON object, got {type(item).__name__}",
                                          entity=topic_id, payload=_dump(item)))
                continue
            self._entity_update(item, res, topic_id, topic_type, now)
        return res

    def _time_reject(self, t_us: int, text: Any, now: int) -> tuple[str, str] | None:
        """(reason, detail) if ``t_us`` lies outside the plausible window around ``now``."""
        if t_us > now + self.max_future_us:
            return "future_time", f"observedAt {text} is in the future"
        if t_us < now - self.max_age_us:
            return "too_old", (f"observedAt {text} is more than {self.max_age_us / 3.15576e13:g} years before now"
                               " (max_age_s)")
        if not _MIN_US <= t_us <= _MAX_US:  # whatever the window says: the stores keep ns timestamps
            return "bad_time", f"observedAt {text} is outside 1678-2261, the range the history store can keep"
        return None

    def _bounds(self, name: str) -> tuple[float, float]:
        """(lo, hi) of a typed property, ±inf where open; cached (the check is then one comparison)."""
        b = self._bounds_cache.get(name)
        if b is None:
            rng = self.ranges(name)
            lo, hi = rng if rng is not None else (None, None)
            b = self._bounds_cache[name] = (-math.inf if lo is None else float(lo), math.inf if hi is None else float(hi))
        return b

    # -- one entity update --------------------------------------------------------------
    def _entity_head(self, item: dict[str, Any], rejects: list[Reject], topic_id: str | None, topic_type: str | None,
                     now: int) -> tuple[str, EntityRef, int | None, float | None, float | None] | None:
        """The checks of an entity update as a whole (id, registered entity, type, observedAt, location):
        ``(id, registered entity, observedAt µs or None, lon, lat)``, or None with the reject appended."""
        eid = item.get("id", topic_id)
        if not isinstance(eid, str) or not eid:
            rejects.append(Reject("missing_id", "entity update without a string 'id'", payload=_dump(item)))
            return None
        if topic_id is not None and eid != topic_id:
            rejects.append(Reject("type_mismatch", f"payload id {eid!r} differs from the topic's {topic_id!r}",
                                  entity=eid, payload=_dump(item)))
            return None
        ref = self.lookup(eid)
        if ref is None:
            rejects.append(Reject("unknown_entity", f"entity {eid!r} is not registered", entity=eid,
                                  payload=_dump(item)))
            return None
        declared = item.get("type", topic_type)
        if declared is not None and declared != ref.type:
            rejects.append(Reject("type_mismatch", f"type {declared!r} but {eid!r} is a {ref.type!r}",
                                  entity=eid, payload=_dump(item)))
            return None
        base_time = item.get("observedAt", item.get("dateObserved"))
        base_us: int | None = None
        if base_time is not None:
            try:
                base_us = parse_time_us(base_time)
            except ValueError as exc:
                rejects.append(Reject("bad_time", str(exc), entity=eid, payload=_dump(item)))
                return None
            bad = self._time_reject(base_us, base_time, now)
            if bad is not None:
                rejects.append(Reject(bad[0], bad[1], entity=eid, payload=_dump(item)))
                return None
        lon, lat = ref.lon, ref.lat
        loc = item.get("location")
        if loc is not None:
            try:
                lon, lat = location_lonlat(loc)
            except (InputError, TypeError, ValueError, KeyError, IndexError) as exc:
                rejects.append(Reject("wrong_type", f"location: {exc}", entity=eid, property="location",
                                      payload=_dump(item)))
                return None
        return eid, ref, base_us, lon, lat

    def _entity_update(self, item: dict[str, Any], res: ParseResult, topic_id: str | None,
                       topic_type: str | None, now: int) -> None:
        if (head := self._entity_head(item, res.rejects, topic_id, topic_type, now)) is None:
            return
        eid, ref, base_us, lon, lat = head
        type_, etype = ref.type, self.types.get(ref.type)
        res.entities += 1
        fast = self._fast_specs(type_, etype) if base_us is not None else None
        append = res.observations.append
        for name, attr in item.items():
            if name in RESERVED:
                continue
            if fast is not None and (f := fast.get(name)) is not None \
                    and (value := common_value(attr, f)) is not UNCOMMON:
                append(_obs((eid, type_, name, base_us, value, f[0], lon, lat)))
                continue
            self._attribute(res, eid, type_, etype, name, attr, base_us, now, lon, lat)

    def _fast_specs(self, type_: str, etype: EntityType | None) -> dict[str, tuple[str, float, float]] | None:
        """Numeric properties of a typed entity type: name -> (canonical unit, lo, hi) (cached)."""
        got = self._fast.get(type_)  # (never set for a type without an EntityType)
        if got is None and etype is not None:
            got = self._fast[type_] = {n: (s.unit, *self._bounds(n)) for n, s in etype.properties.items()
                                       if s.kind == "number"}
        return got

    def _attribute(self, res: ParseResult, eid: str, type_: str, etype: EntityType | None, name: str,
                   attr: Any, base_us: int | None, now: int, lon: float | None, lat: float | None) -> None:
        spec = etype.properties.get(name) if etype is not None else None
        if etype is not None and spec is None:
            res.rejects.append(Reject("unknown_property", f"{type_} has no property {name!r}", entity=eid,
                                      property=name, payload=_dump(attr)))
            return
        t_us = base_us
        unit: str | None = None
        if isinstance(attr, dict):
            value = attr.get("value")
            unit = attr.get("unitCode", attr.get("unit"))
            if "observedAt" in attr:
                try:
                    t_us = parse_time_us(attr["observedAt"])
                except ValueError as exc:
                    res.rejects.append(Reject("bad_time", str(exc), entity=eid, property=name, payload=_dump(attr)))
                    return
                bad = self._time_reject(t_us, attr["observedAt"], now)
                if bad is not None:
                    res.rejects.append(Reject(bad[0], bad[1], entity=eid, property=name, payload=_dump(attr)))
                    return
            if unit is not None and not isinstance(unit, str):
                res.rejects.append(Reject("wrong_type", "unit must be a string", entity=eid, property=name,
                                          payload=_dump(attr)))
                return
        else:
            value = attr
        if t_us is None:
            res.rejects.append(Reject("missing_time", "no observedAt (or dateObserved) for the value", entity=eid,
                                      property=name, payload=_dump(attr)))
            return
        kind = spec.kind if spec is not None else "number"
        if value is None:
            num: float | None = None
        elif kind == "bool":
            if not isinstance(value, bool):
                res.rejects.append(Reject("wrong_type", f"{name} must be true/false, got {type(value).__name__}",
                                          entity=eid, property=name, payload=_dump(attr)))
                return
            num = 1.0 if value else 0.0
        else:
            if _bad_number(value):
                res.rejects.append(Reject("wrong_type", f"{name} must be a finite number, got {value!r}"[:200],
                                          entity=eid, property=name, payload=_dump(attr)))
                return
            try:
                num = float(value)
            except OverflowError:  # an integer of hundreds of digits
                res.rejects.append(Reject("implausible", f"{name} has {len(str(value))} digits: too large for a"
                                                         " number", entity=eid, property=name, payload=_dump(attr)))
                return
            if not math.isfinite(num):
                res.rejects.append(Reject("wrong_type", f"{name} must be a finite number, got {value!r}"[:200],
                                          entity=eid, property=name, payload=_dump(attr)))
                return
        target = spec.unit if spec is not None else (unit or "")
        if spec is None and unit is None:
            res.rejects.append(Reject("unknown_unit", f"{name} of custom type {type_!r} needs a unit", entity=eid,
                                      property=name, payload=_dump(attr)))
            return
        if unit is not None and num is not None:
            try:
                f = self._factors.get((unit, target))
                if f is None:
                    f = unit_factor(unit, target)
                    if len(self._factors) < 4096:  # labels come from the senders: keep the cache bounded
                        self._factors[(unit, target)] = f
                num *= f
            except InputError as exc:
                res.rejects.append(Reject("unknown_unit", f"{name}: {exc.message} (stored in {target or '1'})",
                                          entity=eid, property=name, payload=_dump(attr)))
                return
        elif unit is not None:
            try:
                unit_factor(unit, target)
            except InputError as exc:
                res.rejects.append(Reject("unknown_unit", f"{name}: {exc.message}", entity=eid, property=name,
                                          payload=_dump(attr)))
                return
        if num is not None:
            lo, hi = (self._bounds_cache.get(name) or self._bounds(name)) if spec is not None else _OPEN
            if not lo <= num <= hi or num in (math.inf, -math.inf):  # NaN fails the first test
                rng = self.ranges(name) if spec is not None else None
                where = f"outside the physical range {rng[0]}..{rng[1]} {target}".rstrip() if rng is not None \
                    else "not finite after unit conversion"
                res.rejects.append(Reject("implausible", f"{name} {num:g} {target} is {where}".replace("  ", " "),
                                          entity=eid, property=name, payload=_dump(attr)))
                return
        res.observations.append(Observation(eid, type_, name, t_us, num, target, lon, lat))


UNCOMMON: Any = object()  # common_value's answer for an attribute of another form


def common_value(attr: Any, f: tuple[str, float, float]) -> Any:
    """What ``MessageParser._attribute`` stores for an attribute of the common form (a number or null in the unit
    ``f[0]``, in ``f[1]..f[2]``, at the update's time), else :data:`UNCOMMON`: both parsers' fast path, per reading."""
    if type(attr) is dict:
        if "observedAt" in attr or ((unit := attr.get("unitCode", attr.get("unit"))) is not None and unit != f[0]):
            return UNCOMMON
        value = attr.get("value")
        if value is None:
            return None
        if type(value) is int and -_EXACT_INT <= value <= _EXACT_INT:
            value = float(value)
    else:
        value = attr
    return value if type(value) is float and f[1] <= value <= f[2] and abs(value) != math.inf else UNCOMMON


def _dump(obj: Any) -> bytes:
    try:
        return json.dumps(obj, ensure_ascii=False, default=str).encode()[:65536]
    except (TypeError, ValueError):
        return repr(obj).encode()[:65536]


def location_lonlat(loc: Any) -> tuple[float, float]:
    """(lon, lat) of a GeoJSON Point or an NGSI-LD GeoProperty ``{"type": "GeoProperty", "value": Point}``.

    Examples
    --------
    >>> location_lonlat({"type": "Point", "coordinates": [116.4, 39.9]})
    (116.4, 39.9)
    """
    if isinstance(loc, dict) and loc.get("type") == "GeoProperty":
        loc = loc.get("value")
    if not isinstance(loc, dict) or loc.get("type") != "Point":
        raise InputError("location must be a GeoJSON Point", field="location")
    lon, lat = loc["coordinates"][:2]
    if _bad_number(lon) or _bad_number(lat) or not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"coordinates {loc['coordinates']!r} are not lon/lat in degrees", field="location")
    return float(lon), float(lat)


def validate_entity(doc: Mapping[str, Any], types: Mapping[str, EntityType] | None = None) -> Entity:
    """Validate an NGSI-LD entity document for registration (create / upsert).

    Only ``id``, ``type``, ``location`` and static attributes are taken here; observed
    properties in the same document go through :class:`MessageParser`.

    Raises
    ------
    InputError
        If the id is not a URN of the form ``urn:ngsi-ld:{type}:{localId}`` or the location is invalid.

    Examples
    --------
    >>> e = validate_entity({"id": "urn:ngsi-ld:TrafficFlowObserved:n1", "type": "TrafficFlowObserved",
    ...                      "location": {"type": "Point", "coordinates": [114.0, 22.5]}, "laneId": 1})
    >>> (e.type, e.lon, e.static)
    ('TrafficFlowObserved', 114.0, {'laneId': 1})
    """
    if not isinstance(doc, Mapping):
        raise InputError("an entity must be a JSON object")
    eid, type_ = doc.get("id"), doc.get("type")
    if not isinstance(eid, str) or not eid.startswith(NGSI_PREFIX) or eid.count(":") < 3:
        raise InputError(f"id {eid!r} is not an NGSI-LD URN", field="id",
                         hint="use urn:ngsi-ld:{type}:{localId}")
    if not isinstance(type_, str) or not type_:
        raise InputError("type is missing", field="type")
    if eid.split(":")[2] != type_:
        raise InputError(f"id {eid!r} does not carry type {type_!r}", field="id",
                         hint="use urn:ngsi-ld:{type}:{localId}")
    try:  # (no or ill-formed coordinates: a 400, never a 500)
        lon, lat = location_lonlat(doc["location"]) if doc.get("location") is not None else (None, None)
    except (TypeError, ValueError, KeyError, IndexError):
        raise InputError(f"location {doc['location']!r}"[:200] + " is not a GeoJSON Point with [lon, lat]",
                         field="location") from None
    static = {k: v.get("value") if isinstance(v, dict) and "value" in v else v
              for k, v in doc.items() if k in STATIC_KEYS}
    return Entity(eid, type_, lon, lat, static)
