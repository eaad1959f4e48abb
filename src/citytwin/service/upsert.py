"""The batch upsert of the NGSI-LD API (``POST /ngsi-ld/v1/entityOperations/upsert``), its readings as columns.

Each item of the array is checked as an entity first, in order, as it always was: :func:`validate_entity`
(``invalid_entity``), then created or updated in the live state when it is new, moved or carries static
attributes (``type_mismatch`` if the registered entity has another type). The observed attributes of the items
that pass are then validated as the MQTT ingest validates a batch's entity updates
(:class:`citytwin.twin.updates.UpdateBatch`: the readings and rejects of
:meth:`MessageParser.parse_doc <citytwin.twin.entities.MessageParser.parse_doc>`, given as numpy columns) instead
of one Python object per reading, and committed as those columns.

The outcome is the one the per-item parse gave (:func:`upsert` with ``columns=False``, kept as the reference the
tests compare with): the same accepted readings in the same order, the same rejects (reason, detail, entity,
property, payload) in the same order, hence the same 201/207 answer, dead letters, history rows, live state and
alerts. What keeps it so:

* every item's updates are handed over (:meth:`UpdateBatch.add`, which looks the entity up at once) before the
  live state changes again: the run of items queued so far is added before an entity is created or updated, so an
  item sees the registered entity as it was when the per-item parse looked it up;
* the rejects of the entity checks and those of the readings are put back in the order of the items;
* the look-ups the batch keeps (``refs``) are the parser's own look-ups, made after the last change of the
  registry and dropped at the next one.

A body whose items are all objects with the same keys in the same order, without ``location`` or static attributes,
of registered entities (a gateway's stations: the common case) is checked at once (:meth:`_Upsert.known`): its
entity checks depend only on the pair (id, type), so each distinct pair is checked once, and none of its items
changes the registry; any other body is checked item by item.

The items are parsed with one clock reading for the whole body (the per-item parse read the clock per item:
microseconds apart, as within an MQTT batch).
"""

from __future__ import annotations

import json
from operator import itemgetter
from typing import Any

from citytwin.foundation.errors import InputError
from citytwin.twin.columnar import ColumnarResult
from citytwin.twin.entities import STATIC_KEYS, EntityRef, ParseResult, Reject, validate_entity
from citytwin.twin.updates import UpdateBatch

__all__ = ["parse_updates", "upsert"]

_DICT = {dict}
_ID = itemgetter("id")
_TYPE = itemgetter("type")


def _reject(reason: str, detail: str, item: Any) -> Reject:
    eid: Any = item.get("id") if isinstance(item, dict) else None
    if not (eid is None or isinstance(eid, str | int | float)):  # (an id that is a list or an object: as JSON text)
        eid = json.dumps(eid, default=str)[:300]
    return Reject(reason, detail, entity=eid, payload=json.dumps(item, default=str).encode()[:65536])


def _entity_error(entity: Any, detail: str) -> dict[str, Any]:
    return {"entityId": entity, "error": {"title": "BadRequestData", "detail": detail}}


class _Upsert:
    """One request's items: entity checks in order, the readings of those that pass through one :class:`UpdateBatch`."""

    def __init__(self, twin: Any) -> None:
        self.state = twin.stores.state
        self.parser = twin.parser
        self.refs: dict[str, EntityRef] = {}  # the parser's look-ups since the last change of the registry
        self.batch = UpdateBatch(self.parser, self.parser.now_us(), self.refs)
        self.segments: list[Any] = []  # in item order: a ParseResult (a run of items added) or (reject, error)
        self.run: list[dict[str, Any]] = []  # items that passed, not yet added
        self.ok: list[str] = []

    def _add_run(self) -> None:
        if self.run:
            res = ParseResult()
            self.batch.add(self.run, res, None, None)
            self.segments.append(res)
            self.run = []

    def item(self, item: Any) -> None:
        try:
            ent = validate_entity(item)
        except InputError as exc:
            self._add_run()
            self.segments.append((_reject("invalid_entity", exc.message, item),
                                  _entity_error(item.get("id") if isinstance(item, dict) else None, exc.message)))
            return
        known = self.state.lookup(ent.id)
        if known is None or (ent.lon is not None and (known[1], known[2]) != (ent.lon, ent.lat)) or ent.static:
            self._add_run()  # the items before see the registry as it is now
            self.refs.clear()
            try:
                self.state.put_entity(ent.id, ent.type, ent.lon, ent.lat, ent.static)
            except InputError as exc:
                self.segments.append((_reject("type_mismatch", exc.message, item), _entity_error(ent.id, exc.message)))
                return
        if ent.id not in self.refs and (ref := self.parser.lookup(ent.id)) is not None:
            self.refs[ent.id] = ref
        self.ok.append(ent.id)
        self.run.append(item)

    def known(self, doc: list[Any]) -> bool:
        """Check every item at once when :meth:`item`, item by item, would let each pass without a registry change:
        objects with the same keys in the same order, with ``id`` and ``type`` but no ``location`` and no static
        attribute (the checks then depend on (id, type) alone: each distinct pair is checked once), every entity
        registered. The same ids, look-ups and run as :meth:`item` gives them; False, with nothing queued,
        otherwise (the items then go one by one)."""
        if self.run or self.segments or not doc or set(map(type, doc)) != _DICT:
            return False
        keys = tuple(doc[0])
        if "id" not in keys or "type" not in keys or "location" in keys or not STATIC_KEYS.isdisjoint(keys) \
                or list(map(tuple, doc)).count(keys) != len(doc):
            return False
        ids = list(map(_ID, doc))
        try:
            pairs = dict.fromkeys(zip(ids, map(_TYPE, doc), strict=True))  # (TypeError: an id not hashable)
        except TypeError:
            return False
        for eid, tname in pairs:
            if type(eid) is not str or type(tname) is not str:
                return False
            try:
                validate_entity({"id": eid, "type": tname})
            except InputError:
                return False
            if self.state.lookup(eid) is None:  # (a new entity is registered by item())
                return False
        refs, lookup = self.refs, self.parser.lookup
        for eid in dict.fromkeys(ids):  # in the order item() looks them up
            if eid not in refs and (ref := lookup(eid)) is not None:
                refs[eid] = ref
        self.ok = ids
        self.run = list(doc)
        return True

    def finish(self) -> tuple[ColumnarResult, list[dict[str, Any]]]:
        """The request's parse result (columns, and every reject in item order) and its errors (the 207's)."""
        self._add_run()
        cols, _ = self.batch.finish()
        rejects: list[Reject] = []
        errors: list[dict[str, Any]] = []
        entities = 0
        for seg in self.segments:
            if isinstance(seg, ParseResult):
                entities += seg.entities
                rejects.extend(seg.rejects)
                errors.extend({"entityId": r.entity, "attribute": r.property,
                               "error": {"title": r.reason, "detail": r.detail}} for r in seg.rejects)
            else:
                rejects.append(seg[0])
                errors.append(seg[1])
        n = len(cols["entity"])
        return ColumnarResult(cols, rejects, entities, span=(0, n)), errors


def parse_updates(parser: Any, doc: Any) -> ColumnarResult:
    """An HTTP body of entity updates (an object or an array; ``POST /twin/v1/observations``) validated as
    :meth:`MessageParser.parse_doc <citytwin.twin.entities.MessageParser.parse_doc>` validates it, its accepted
    readings as columns (:class:`UpdateBatch`: the same readings in the same order, the same rejects)."""
    batch = UpdateBatch(parser, parser.now_us())
    res = ParseResult()
    batch.add(doc, res, None, None)
    cols, _ = batch.finish()
    return ColumnarResult(cols, res.rejects, res.entities, span=(0, len(cols["entity"])))


def upsert(twin: Any, doc: list[Any], path: str, *, columns: bool = True) -> tuple[list[str], list[dict[str, Any]], int]:
    """Upsert the entities of a decoded batch body and commit their readings: ``(ids that passed the entity checks,
    errors in item order, readings accepted)``. ``columns=False``: the per-item parse (the reference)."""
    if not columns:
        return _upsert_rows(twin, doc, path)
    up = _Upsert(twin)
    if not up.known(doc):
        for item in doc:
            up.item(item)
    res, errors = up.finish()
    rep = twin.ingestor.commit([res], source="http", topics=[path])
    return up.ok, errors, int(rep.accepted)


def _upsert_rows(twin: Any, doc: list[Any], path: str) -> tuple[list[str], list[dict[str, Any]], int]:
    """The per-item parse: each item's updates through ``MessageParser.parse_doc`` right after its entity checks."""
    res = ParseResult()
    errors: list[dict[str, Any]] = []
    ok: list[str] = []
    state = twin.stores.state
    for item in doc:
        try:
            ent = validate_entity(item)
        except InputError as exc:
            res.rejects.append(_reject("invalid_entity", exc.message, item))
            errors.append(_entity_error(item.get("id") if isinstance(item, dict) else None, exc.message))
            continue
        known = state.lookup(ent.id)
        if known is None or (ent.lon is not None and (known[1], known[2]) != (ent.lon, ent.lat)) or ent.static:
            try:
                state.put_entity(ent.id, ent.type, ent.lon, ent.lat, ent.static)
            except InputError as exc:
                res.rejects.append(_reject("type_mismatch", exc.message, item))
                errors.append(_entity_error(ent.id, exc.message))
                continue
        n0 = len(res.rejects)
        twin.parser.parse_doc(item, res)
        ok.append(ent.id)
        for r in res.rejects[n0:]:
            errors.append({"entityId": ent.id, "attribute": r.property,
                           "error": {"title": r.reason, "detail": r.detail}})
    rep = twin.ingestor.commit([res], source="http", topics=[path])
    return ok, errors, int(rep.accepted)
