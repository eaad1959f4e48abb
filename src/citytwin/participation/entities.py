"""Cases and comments as twin entities (F7): NGSI-LD-style records with a place and a time, so that the
operations center shows complaints, incidents and consultation comments beside the sensors.

The records come from the case store already masked for the reader's role (reporters' name, phone and
e-mail, personal data inside the text); these functions add nothing personal: a case entity carries
its status, service, department, escalation and times, never the reporter's contact fields.

Entity types and ids: ``ServiceRequest`` (complaints, after Open311 / Smart Data Models'
``ServiceRequest``), ``Incident`` and ``ConsultationComment``;
``urn:ngsi-ld:<Type>:<id>`` (``urn:ngsi-ld:ConsultationComment:<consultation>-<comment>`` for comments).

Examples
--------
>>> e = case_entity({"id": 3, "kind": "complaint", "status": "open", "service_code": "pothole",
...                  "department": "transport", "description": "hole", "lat": 39.9, "lon": 116.4,
...                  "created": "2026-03-02T09:00:00+00:00", "updated": "2026-03-02T09:00:00+00:00",
...                  "reporter_phone": "13800138000"})
>>> e["id"], e["type"], e["location"]["value"]["coordinates"], "reporter_phone" in e
('urn:ngsi-ld:ServiceRequest:3', 'ServiceRequest', [116.4, 39.9], False)
>>> to_feature(e)["properties"]["status"]
'open'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["ENTITY_TYPES", "case_entity", "comment_entity", "feature_collection", "key_values", "select_entities",
           "to_feature"]

#: case kind -> entity type
ENTITY_TYPES = {"complaint": "ServiceRequest", "incident": "Incident", "comment": "ConsultationComment"}

_CASE_PROPS = ("status", "service_code", "category", "department", "title", "description", "escalation",
               "deadline", "duplicate_of", "source")


def _prop(value: Any, observed: str | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"type": "Property", "value": value}
    if observed:
        p["observedAt"] = observed
    return p


def _point(lon: Any, lat: Any) -> dict[str, Any] | None:
    if lon is None or lat is None:
        return None
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [float(lon), float(lat)]}}


def case_entity(rec: Mapping[str, Any], *, reporter: bool = False) -> dict[str, Any]:
    """A case record (:meth:`~citytwin.foundation.cases.CaseStore.cases`) as an NGSI-LD entity (normalized).

    Properties: ``status`` (observed at the case's last update), ``service_code``, ``category``,
    ``department``, ``title``, ``description`` (as stored: HTML is text), ``escalation``,
    ``deadline``, ``duplicate_of``, ``source``, ``dateCreated``, ``dateModified``; ``location`` when
    the case has a place. Reporters' contact fields are copied only with ``reporter`` (property
    ``reporter``: ``name``, ``phone``, ``email`` as given, so mask the record first for roles without
    personal-data clearance, as the case store does).
    """
    etype = ENTITY_TYPES.get(str(rec.get("kind")), "ServiceRequest")
    ent: dict[str, Any] = {"id": f"urn:ngsi-ld:{etype}:{rec['id']}", "type": etype}
    loc = _point(rec.get("lon"), rec.get("lat"))
    if loc:
        ent["location"] = loc
    for k in _CASE_PROPS:
        if rec.get(k) is not None:
            ent[k] = _prop(rec[k], rec.get("updated") if k == "status" else None)
    ent["dateCreated"] = _prop(rec.get("created"))
    ent["dateModified"] = _prop(rec.get("updated"))
    if reporter:
        who = {k: rec.get(f"reporter_{k}") for k in ("name", "phone", "email") if rec.get(f"reporter_{k}") is not None}
        if who:
            ent["reporter"] = _prop(who)
    return ent


def _centroid(geom: Mapping[str, Any]) -> tuple[float, float] | None:
    """The mean of an area's outer-ring vertices (a marker position), or the point itself."""
    if geom.get("type") == "Point":
        x, y = geom["coordinates"][:2]
        return float(x), float(y)
    rings = [geom["coordinates"][0]] if geom.get("type") == "Polygon" else [p[0] for p in geom.get("coordinates", [])]
    pts = [c for r in rings for c in r[:-1] or r]
    if not pts:
        return None
    return sum(float(c[0]) for c in pts) / len(pts), sum(float(c[1]) for c in pts) / len(pts)


def comment_entity(rec: Mapping[str, Any], consultation: Mapping[str, Any]) -> dict[str, Any]:
    """A consultation comment (:meth:`~citytwin.foundation.cases.CaseStore.comments`) as an entity:
    ``location`` is its point, or the area itself (a GeoProperty holds any geometry), ``text``,
    ``author`` (as given: mask it before for roles without personal-data clearance), ``consultation``
    (its title), ``refComment`` (the comment it replies to) and ``dateCreated``."""
    cid = consultation.get("id", rec.get("consultation_id"))
    ent: dict[str, Any] = {"id": f"urn:ngsi-ld:ConsultationComment:{cid}-{rec['id']}", "type": "ConsultationComment"}
    if rec.get("geometry"):
        ent["location"] = {"type": "GeoProperty", "value": dict(rec["geometry"])}
    ent["text"] = _prop(rec.get("text"))
    ent["author"] = _prop(rec.get("author"))
    ent["consultation"] = _prop(consultation.get("title"))
    ent["consultationId"] = _prop(cid)
    if rec.get("parent_id") is not None:
        ent["refComment"] = {"type": "Relationship",
                             "object": f"urn:ngsi-ld:ConsultationComment:{cid}-{rec['parent_id']}"}
    ent["dateCreated"] = _prop(rec.get("created"))
    return ent


def to_feature(entity: Mapping[str, Any], *, marker: bool = True) -> dict[str, Any] | None:
    """A GeoJSON feature of an entity (its properties' values flattened; None without a location).

    With ``marker`` an area is drawn as a point at its vertices' mean (the map's marker layer) and the
    area itself goes to the property ``area``."""
    loc = entity.get("location")
    if not loc:
        return None
    geom = dict(loc["value"])
    props: dict[str, Any] = {"id": entity["id"], "type": entity["type"]}
    for k, v in entity.items():
        if k in ("id", "type", "location") or not isinstance(v, Mapping):
            continue
        props[k] = v.get("value", v.get("object"))
    if marker and geom.get("type") != "Point":
        c = _centroid(geom)
        if c is None:
            return None
        props["area"] = geom
        geom = {"type": "Point", "coordinates": [c[0], c[1]]}
    return {"type": "Feature", "id": entity["id"], "geometry": geom, "properties": props}


def feature_collection(entities: Iterable[Mapping[str, Any]], *, marker: bool = True) -> dict[str, Any]:
    """A FeatureCollection of the entities that have a place."""
    feats = [f for f in (to_feature(e, marker=marker) for e in entities) if f is not None]
    return {"type": "FeatureCollection", "features": feats}


_OPS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _near_m(geom: Mapping[str, Any], lon: float, lat: float) -> float:
    """Metres from (lon, lat) to a geometry (0 inside an area), on a local equirectangular plane."""
    import math

    import shapely
    from shapely.geometry import shape

    k = math.cos(math.radians(lat))
    g = shapely.transform(shape(geom), lambda c: (c - [lon, lat]) * [k * 111_320.0, 110_574.0])
    return float(g.distance(shapely.Point(0.0, 0.0)))


def select_entities(entities: Iterable[Mapping[str, Any]], *, ids: Sequence[str] | None = None,
                    id_pattern: str | None = None, q: Sequence[tuple[str, str, float]] = (),
                    near: tuple[float, float, float] | None = None,
                    bbox: tuple[float, float, float, float] | None = None,
                    attrs: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The entities matching an NGSI-LD query, as the live state store answers it
    (:meth:`citytwin.foundation.timeseries.state.StateStore.query`): ``ids``; ``id_pattern`` (RE2);
    ``q`` (``(attribute, op, number)``, all must hold; an attribute that is not a number never
    matches); ``near`` (lon, lat, metres: an area's nearest point counts); ``bbox`` (min lon, min lat,
    max lon, max lat: the whole place inside); ``attrs`` keeps only these attributes (with ``id``,
    ``type`` and ``location``).

    Examples
    --------
    >>> es = [case_entity({"id": i, "kind": "complaint", "status": "open", "escalation": i, "lat": 39.9,
    ...                    "lon": 116.4 + 0.01 * i, "created": "t", "updated": "t"}) for i in range(3)]
    >>> [e["id"][-1] for e in select_entities(es, q=[("escalation", ">=", 1)], near=(116.41, 39.9, 100))]
    ['1']
    >>> sorted(select_entities(es, ids=["urn:ngsi-ld:ServiceRequest:2"], attrs=["status"])[0])
    ['id', 'location', 'status', 'type']
    """
    from shapely.geometry import shape

    from citytwin.foundation.timeseries.state import match_ids

    out = [dict(e) for e in entities]
    if ids is not None:
        want = set(ids)
        out = [e for e in out if e["id"] in want]
    if id_pattern:
        keep = set(match_ids([e["id"] for e in out], id_pattern))
        out = [e for e in out if e["id"] in keep]
    for prop, op, val in q:
        f = _OPS[op]
        out = [e for e in out if isinstance(e.get(prop), Mapping)
               and (n := _number(e[prop].get("value"))) is not None and f(n, val)]
    if near is not None or bbox is not None:
        placed = [e for e in out if e.get("location")]
        if bbox is not None:
            placed = [e for e in placed if _inside(shape(e["location"]["value"]).bounds, bbox)]
        if near is not None:
            placed = [e for e in placed if _near_m(e["location"]["value"], near[0], near[1]) <= near[2]]
        out = placed
    if attrs is not None:
        keep_attrs = {"id", "type", "location", *attrs}
        out = [{k: v for k, v in e.items() if k in keep_attrs} for e in out]
    return out


def _inside(bounds: tuple[float, ...], bbox: tuple[float, float, float, float]) -> bool:
    x0, y0, x1, y1 = bounds
    return bbox[0] <= x0 and x1 <= bbox[2] and bbox[1] <= y0 and y1 <= bbox[3]


def key_values(entity: Mapping[str, Any]) -> dict[str, Any]:
    """An entity in NGSI-LD's simplified form (``options=keyValues``): each attribute's value, a
    GeoProperty's geometry, a Relationship's object.

    Examples
    --------
    >>> key_values({"id": "x", "type": "T", "status": {"type": "Property", "value": "open"},
    ...             "refComment": {"type": "Relationship", "object": "y"}})
    {'id': 'x', 'type': 'T', 'status': 'open', 'refComment': 'y'}
    """
    out: dict[str, Any] = {}
    for k, v in entity.items():
        out[k] = v.get("value", v.get("object")) if isinstance(v, Mapping) else v
    return out
