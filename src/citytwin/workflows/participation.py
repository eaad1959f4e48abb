"""Participation and case workflows (G1–G3, F7): read files and the workspace's case store, call
:mod:`citytwin.participation`, write outputs, return JSON-ready summaries (the CLI prints them).

- :func:`train_router` / :func:`route`: the routing model from a labelled CSV/XLSX file, and
  routing of a file's rows (input rows in order plus ``label``);
- :func:`submit_complaint`: a resident's report -> routed, deadline set, duplicates linked;
- :func:`open_incident_from_alert`: a twin alert -> an incident with tasks and links;
- :func:`consultation_results`: counts, survey table and a keyword summary of a consultation;
- :func:`demand`: demand maps of the stored complaints.

The model file is a joblib pickle: load only models this city trained (a pickle runs code).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from citytwin.foundation.cases import CaseStore, parse_time
from citytwin.foundation.errors import InputError
from citytwin.foundation.workspace import Workspace
from citytwin.participation.text import join_text

MODEL_FORMAT = "citytwin-router-1"


def read_table(path: str | Path, *, sheet: str | None = None) -> pd.DataFrame:
    """A CSV (UTF-8, else GB18030) or XLSX/XLS file as text columns kept as read."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"no file {p}", file=str(p))
    suf = p.suffix.lower()
    try:
        if suf in (".xlsx", ".xls"):
            return pd.read_excel(p, sheet_name=sheet or 0)
        if suf in (".csv", ".txt"):
            try:
                return pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])
            except UnicodeDecodeError:
                return pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""], encoding="gb18030")
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read {p}: {exc}", file=str(p)) from exc
    raise InputError(f"unsupported file type {suf!r}", file=str(p), hint="use CSV or XLSX")


def _texts(frame: pd.DataFrame, cols: Sequence[str], file: str) -> list[str]:
    if not cols:
        raise InputError("no text column given", hint="pass --text COL (repeatable)")
    for c in cols:
        if c not in frame.columns:
            raise InputError(f"{file} has no column {c!r}", file=file, field=c,
                             hint=f"columns: {', '.join(map(str, frame.columns))}")
    return join_text([frame[c].tolist() for c in cols])


def train_router(file: str | Path, *, text: Sequence[str], label: str, out: str | Path, test_size: float = 0.3,
                 seed: int = 0, sheet: str | None = None) -> dict[str, Any]:
    """Train the routing model on a labelled file, report held-out accuracy and macro-F1 (with the
    TF-IDF + LinearSVC baseline on the same split) and save the model to ``out``."""
    import joblib

    from citytwin.participation.router import train_router as _train

    frame = read_table(file, sheet=sheet)
    if label not in frame.columns:
        raise InputError(f"{file} has no column {label!r}", file=str(file), field=label)
    r = _train(_texts(frame, text, str(file)), frame[label].tolist(), test_size=test_size, seed=seed)
    o = Path(out)
    o.parent.mkdir(parents=True, exist_ok=True)
    summary = {"file": str(file), "text": list(text), "label": label, **r.summary(), "model": str(o)}
    joblib.dump({"format": MODEL_FORMAT, "model": r.model, "text": list(text), "summary": summary}, o)
    return summary


def load_router(path: str | Path) -> dict[str, Any]:
    """A saved routing model (see :func:`train_router`)."""
    import joblib

    p = Path(path)
    if not p.exists():
        raise InputError(f"no model file {p}", file=str(p), hint="train one with `citytwin cases train-router`")
    try:
        obj = joblib.load(p)
    except Exception as exc:  # any unpickling failure means a bad model file
        raise InputError(f"{p} is not a routing model: {exc}", file=str(p)) from None
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise InputError(f"{p} is not a citytwin routing model", file=str(p))
    return obj


def route(file: str | Path, *, model: str | Path, text: Sequence[str], out: str | Path,
          sheet: str | None = None) -> dict[str, Any]:
    """Route every row of ``file``: ``out`` (CSV) holds the input rows in order plus ``label``."""
    from citytwin.participation.router import route as _route

    m = load_router(model)
    frame = read_table(file, sheet=sheet)
    texts = _texts(frame, text, str(file))
    labels = _route(m["model"], texts)
    res = frame.copy()
    if "label" in res.columns:
        raise InputError(f"{file} already has a column 'label'", file=str(file), field="label",
                         hint="rename it: the routed department is written to 'label'")
    res["label"] = labels
    o = Path(out)
    o.parent.mkdir(parents=True, exist_ok=True)
    res.to_csv(o, index=False)
    counts = pd.Series(labels, dtype=object).value_counts()
    return {"file": str(file), "rows": len(res), "out": str(o), "labels": {str(k): int(v) for k, v in counts.items()}}


def submit_complaint(store: CaseStore, *, description: str, service_code: str | None = None,
                     lat: float | None = None, lon: float | None = None, router: Mapping[str, Any] | None = None,
                     departments: Mapping[str, str] | None = None, deadline_hours: Mapping[str, float] | None = None,
                     duplicate_hours: float = 72.0, duplicate_radius_m: float = 100.0,
                     **fields: Any) -> dict[str, Any]:
    """Record a resident's report: department from ``departments[service_code]``, else from the
    routing model; deadline from the category table; linked to an earlier report of the same problem.

    Returns ``{"id", "department", "deadline", "duplicate_of"}``.
    """
    from citytwin.participation.cases import DuplicateRule, deadline_for, find_duplicate
    from citytwin.participation.router import route as _route

    now = store.now()
    dept = (departments or {}).get(service_code or "")
    if dept is None and router is not None:
        dept = _route(router["model"], [description])[0]
    since = now - timedelta(hours=duplicate_hours)
    near = (lat, lon, duplicate_radius_m * 1.5) if lat is not None and lon is not None else None
    recent = [] if near is None else [{**c, "created": parse_time(c["created"])}
                                      for c in store.cases(kind="complaint", start=since, near=near)]
    dup = find_duplicate({"lat": lat, "lon": lon, "created": now, "service_code": service_code,
                          "description": description}, recent,
                         DuplicateRule(radius_m=duplicate_radius_m, hours=duplicate_hours))
    category = fields.pop("category", None) or service_code
    deadline = deadline_for(category, now, deadline_hours)
    cid = store.open_case(kind="complaint", description=description, service_code=service_code, category=category,
                          department=dept, lat=lat, lon=lon, deadline=deadline, duplicate_of=dup, **fields)
    return {"id": cid, "department": dept, "deadline": deadline.isoformat(), "duplicate_of": dup}


def open_incident_from_alert(store: CaseStore, alert: Mapping[str, Any], *,
                             location: tuple[float, float] | None = None, radius_m: float = 1000.0,
                             since_hours: float = 72.0, task_hours: float = 24.0,
                             sensors: Sequence[str] = ()) -> dict[str, Any]:
    """Open an incident from a twin alert: one task per department of the alert's playbook (due in
    ``task_hours``), linked to the alert, its sensor (and ``sensors``) and to complaints within
    ``radius_m`` of it in the last ``since_hours``. An alert already linked to an incident returns
    that incident instead of opening a second one."""
    from citytwin.participation.incidents import incident_from_alert, nearby

    spec = incident_from_alert(alert, location=location)
    with store.connect() as con:
        r = con.execute("SELECT case_id FROM case_links WHERE kind='alert' AND ref=?", (spec.alert_id,)).fetchone()
    if r is not None:
        return {"id": int(r["case_id"]), "opened": False}
    now = store.now()
    cid = store.open_case(kind="incident", title=spec.title, category=spec.category, description=spec.description,
                          lat=spec.lat, lon=spec.lon, deadline=now + timedelta(hours=task_hours), source="twin_alert",
                          source_ref=spec.alert_id, data=spec.data)
    store.link(cid, "alert", spec.alert_id)
    for s in [spec.entity, *sensors]:
        store.link(cid, "sensor", s)
    for dept, title in spec.tasks:
        store.add_task(cid, dept, title, now + timedelta(hours=task_hours))
    linked: list[Any] = []
    if spec.lat is not None and spec.lon is not None:
        comps = [{**c, "created": parse_time(c["created"])} for c in store.cases(
            kind="complaint", start=now - timedelta(hours=since_hours), near=(spec.lat, spec.lon, radius_m * 1.5))]
        linked = nearby(spec.lat, spec.lon, comps, radius_m=radius_m, since=now - timedelta(hours=since_hours))
        for c in linked:
            store.link(cid, "complaint", str(c))
    return {"id": cid, "opened": True, "tasks": [d for d, _ in spec.tasks], "complaints": linked}


def consultation_results(store: CaseStore, cid: int, *, top: int = 20, topics: int | None = None) -> dict[str, Any]:
    """Counts, vote/survey tables and a summary of the free text (comments and text answers): keywords
    (jieba for Chinese) and topics (:func:`citytwin.participation.topics.topic_summary`: NMF over TF-IDF,
    ``topics`` of them, or as many as its stability rule finds)."""
    from citytwin.participation.text import keywords
    from citytwin.participation.topics import topic_summary

    c = store.consultation(cid)
    comments = store.comments(cid)
    hidden = len(store.comments(cid, include_hidden=True)) - len(comments)
    ans = store.answers(cid)
    tables: list[dict[str, Any]] = []
    for q in c["questions"]:
        vals = [a["value"] for a in ans if a["question_id"] == q["id"]]
        entry: dict[str, Any] = {"question": q["id"], "kind": q["kind"], "text": q["text"], "responses": len(vals)}
        if q["kind"] in ("vote", "single", "multiple"):
            flat = [v for x in vals for v in (x if isinstance(x, list) else [x])]
            entry["counts"] = {o: flat.count(o) for o in q["options"]}
        elif q["kind"] == "scale":
            entry["mean"] = sum(vals) / len(vals) if vals else None
            entry["counts"] = {str(k): vals.count(k) for k in range(1, int(q["scale_max"] or 5) + 1)}
        else:
            entry["keywords"] = keywords(vals, top=top)
            entry["topics"] = topic_summary(vals, k=topics)
        tables.append(entry)
    texts = [m["text"] for m in comments]
    return {"consultation": cid, "title": c["title"], "comments": len(comments), "hidden_comments": hidden,
            "comments_with_place": sum(1 for m in comments if m["geometry"]), "questions": tables,
            "keywords": keywords(texts, top=top), "topics": topic_summary(texts, k=topics)}


def demand(store: CaseStore, *, res: int = 9, hot_spot_permutations: int = 999, now: datetime | None = None,
           window_days: float = 7.0) -> dict[str, pd.DataFrame]:
    """Demand maps of the stored complaints: ``cells`` (per H3 cell and service code), ``hot_spots``
    (Getis-Ord G* per cell) and ``topics`` (emerging hot topics ending at ``now``, default the store's clock)."""
    from citytwin.participation.demand import counts_by_cell, hot_spots, hot_topics

    frame = pd.DataFrame(store.cases(kind="complaint", limit=10_000_000))
    if frame.empty:
        raise InputError("no complaints stored yet")
    by_cell = counts_by_cell(frame, res=res, by=["service_code"])
    per_cell = by_cell.groupby("h3")["count"].sum().reset_index()
    spots = hot_spots(per_cell, permutations=hot_spot_permutations) if len(per_cell) >= 2 else pd.DataFrame()
    topics = hot_topics(frame, text="description", time="created", now=now or store.now(), window_days=window_days)
    return {"cells": by_cell, "hot_spots": spots, "topics": topics}


# -- the operations center's participation side (Open311, cases as entities, construction checks) ----------

#: the workspace's participation settings (optional; every key has a default)
CONFIG_FILE = "participation.json"
#: workspace setting naming the dataset whose extent is the city's (Open311 refuses places outside it)
BOUNDARY_SETTING = "city_boundary"


@dataclass
class ParticipationConfig:
    """What the operations center's participation routes need from the workspace.

    Read by :func:`participation_config` from ``WS/participation.json`` (keys ``services``,
    ``departments``, ``deadline_hours``, ``bbox``, ``boundary_dataset``, ``construction_sites``,
    ``check_minutes``, ``check_lookback_hours``), with the shipped defaults
    (``citytwin/participation/open311_services.json``) for what it does not give.
    """

    services: list[dict[str, Any]]
    departments: dict[str, str]
    deadline_hours: dict[str, float]
    #: the city's extent (min_lon, min_lat, max_lon, max_lat), None when the workspace names none
    bbox: tuple[float, float, float, float] | None
    #: where ``bbox`` came from, in words (said by ``GET /participation/v1/config`` and the docs)
    bbox_source: str
    #: construction sites watched by the scheduler (see :func:`check_construction_sites`)
    construction_sites: list[dict[str, Any]] = field(default_factory=list)
    check_minutes: float = 15.0
    check_lookback_hours: float = 24.0
    notes: list[str] = field(default_factory=list)


def _default_services() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("citytwin.participation").joinpath("open311_services.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def _bbox(value: Any, where: str) -> tuple[float, float, float, float]:
    try:
        b = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: bbox must be four numbers [min_lon, min_lat, max_lon, max_lat]",
                         file=where, field="bbox") from None
    if len(b) != 4 or not (-180 <= b[0] <= b[2] <= 180 and -90 <= b[1] <= b[3] <= 90):
        raise InputError(f"{where}: bbox {list(value)} is not [min_lon, min_lat, max_lon, max_lat] in degrees",
                         file=where, field="bbox")
    return b[0], b[1], b[2], b[3]


def participation_config(ws: Workspace) -> ParticipationConfig:
    """The participation settings of ``ws`` (see :class:`ParticipationConfig`).

    The city's extent is, in this order: ``bbox`` of ``WS/participation.json``; the catalog extent of
    its ``boundary_dataset``; of the dataset named by the workspace setting ``city_boundary``
    (``citytwin`` sets it in the demo workspace); of the only ``admin_boundary`` dataset when there is
    exactly one. Otherwise there is none, and Open311 refuses requests with coordinates (saying why).
    """
    path = Path(ws.root) / CONFIG_FILE
    cfg: dict[str, Any] = {}
    if path.exists():
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read {path}: {exc}", file=str(path)) from None
        if not isinstance(cfg, dict):
            raise InputError(f"{path} must hold a JSON object", file=str(path))
    base = _default_services()
    services = cfg.get("services", base["services"])
    if not isinstance(services, list) or not all(isinstance(s, dict) and s.get("service_code")
                                                 and s.get("service_name") for s in services):
        raise InputError(f"{path}: services must be a list of objects with service_code and service_name",
                         file=str(path), field="services")
    notes: list[str] = []
    if "services" not in cfg:
        notes.append("services: the shipped default list (set 'services' in participation.json to change it)")
    bbox: tuple[float, float, float, float] | None = None
    source = "none: set 'bbox' or 'boundary_dataset' in participation.json, or the setting city_boundary"
    if cfg.get("bbox") is not None:
        bbox, source = _bbox(cfg["bbox"], str(path)), f"bbox of {path.name}"
    else:
        name = cfg.get("boundary_dataset") or ws.settings.get(BOUNDARY_SETTING)
        infos = {d.name: d for d in ws.datasets()}
        if name is None:
            bounds = [d.name for d in infos.values() if d.schema == "admin_boundary"]
            name = bounds[0] if len(bounds) == 1 else None
            how = "the only admin_boundary dataset"
        else:
            how = "boundary_dataset of participation.json" if cfg.get("boundary_dataset") else "setting city_boundary"
        if name is not None:
            if name not in infos:
                raise InputError(f"the city boundary dataset {name!r} ({how}) is not in the catalog",
                                 field="boundary_dataset")
            ext = infos[name].current.extent
            if not ext:
                raise InputError(f"the city boundary dataset {name!r} has no extent (no geometry)",
                                 field="boundary_dataset")
            bbox, source = _bbox(ext, name), f"extent of dataset {name} ({how})"
    notes.append(f"city extent: {source}")
    sites = cfg.get("construction_sites", [])
    if not isinstance(sites, list):
        raise InputError(f"{path}: construction_sites must be a list", file=str(path), field="construction_sites")
    return ParticipationConfig(services=[dict(s) for s in services],
                               departments={**base["departments"], **cfg.get("departments", {})}
                               if "services" not in cfg else dict(cfg.get("departments", {})),
                               deadline_hours={**base["deadline_hours"], **cfg.get("deadline_hours", {})},
                               bbox=bbox, bbox_source=source, construction_sites=[dict(s) for s in sites],
                               check_minutes=float(cfg.get("check_minutes", 15.0)),
                               check_lookback_hours=float(cfg.get("check_lookback_hours", 24.0)), notes=notes)


def case_entities(store: CaseStore, *, types: Sequence[str] | None = None, limit: int = 1000,
                  reporter: bool = False) -> list[dict[str, Any]]:
    """Complaints, incidents and consultation comments as NGSI-LD entities (masked for the store's
    user; comment authors masked like reporters' names for roles without personal-data clearance).

    With ``reporter``, cases carry their reporter's name, phone and e-mail (property ``reporter``),
    masked by the store for roles without clearance; the store audits unmasked reads
    (``case.read_personal``)."""
    from citytwin.participation.entities import ENTITY_TYPES, case_entity, comment_entity

    want = set(types or ENTITY_TYPES.values())
    unknown = want - set(ENTITY_TYPES.values())
    if unknown:
        raise InputError(f"unknown entity type {sorted(unknown)[0]!r}", field="type",
                         hint=", ".join(ENTITY_TYPES.values()))
    out: list[dict[str, Any]] = []
    for kind in ("complaint", "incident"):
        if ENTITY_TYPES[kind] in want:
            out += [case_entity(c, reporter=reporter) for c in store.cases(kind=kind, limit=limit)]
    if "ConsultationComment" in want:
        for c in store.consultations():
            out += [comment_entity(m, c) for m in visible_comments(store, int(c["id"]))]
    return out


def visible_comments(store: CaseStore, cid: int) -> list[dict[str, Any]]:
    """The consultation's comments that are not hidden, as the store's user may see them: for roles
    without personal-data clearance the authors' names (but the reader's own) and personal data in
    the text are masked, and the moderator's name is left out."""
    from citytwin.foundation import access

    rows = store.comments(cid)
    if store.user.r.sees_personal_data:
        return rows
    return [{**m, "author": m["author"] if m["author"] == store.user.name
             else str(access._mask_one(str(m["author"]), "name")), "text": access.mask_text(str(m["text"])),
             "hidden_by": None} for m in rows]


#: the most vertices a comment's area may have (all rings together)
MAX_AREA_VERTICES = 500


def _check_rings(geom: Mapping[str, Any], field_name: str, max_vertices: int | None) -> None:
    """Every ring of a GeoJSON Polygon / MultiPolygon closed (RFC 7946: 4 positions or more, the last
    equal to the first), and at most ``max_vertices`` positions in all."""
    coords = geom.get("coordinates")
    polys = [coords] if geom.get("type") == "Polygon" else coords
    if not isinstance(polys, list) or not polys or not all(isinstance(p, list) and p for p in polys):
        raise InputError(f"{field_name}: a {geom.get('type')} needs at least one ring of [lon, lat] positions",
                         field=field_name)
    n = 0
    for i, poly in enumerate(polys):
        for j, ring in enumerate(poly):
            where = f"{field_name} ring {j + 1}" + (f" of polygon {i + 1}" if geom.get("type") == "MultiPolygon" else "")
            if not isinstance(ring, list) or len(ring) < 4:
                raise InputError(f"{where} has {len(ring) if isinstance(ring, list) else 0} positions: a ring needs "
                                 "at least 4 (3 corners and the first again)", field=field_name)
            if ring[0] != ring[-1]:
                raise InputError(f"{where} is not closed: its last position {ring[-1]} must repeat the first "
                                 f"{ring[0]} (GeoJSON, RFC 7946)", field=field_name)
            n += len(ring)
    if max_vertices is not None and n > max_vertices:
        raise InputError(f"{field_name} has {n} positions, more than the {max_vertices} allowed", field=field_name,
                         hint="simplify the area")


def check_geometry(geom: Any, *, field_name: str = "geometry", bbox: Sequence[float] | None = None,
                   kinds: Sequence[str] = ("Point", "Polygon", "MultiPolygon"),
                   max_vertices: int | None = None) -> dict[str, Any]:
    """A GeoJSON geometry checked: one of ``kinds``, finite WGS84 coordinates that make a valid shape,
    polygon rings closed, at most ``max_vertices`` positions in an area's rings, inside ``bbox``
    (min_lon, min_lat, max_lon, max_lat) when given. Raises :class:`InputError` naming the field."""
    import shapely
    from shapely.geometry import shape

    if not isinstance(geom, Mapping) or geom.get("type") not in kinds:
        got = geom.get("type") if isinstance(geom, Mapping) else type(geom).__name__
        raise InputError(f"{field_name} must be a GeoJSON {' or '.join(kinds)}, not {got!r}", field=field_name)
    if geom.get("type") in ("Polygon", "MultiPolygon"):
        _check_rings(geom, field_name, max_vertices)
    try:
        g = shape(geom)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, shapely.errors.ShapelyError) as exc:
        raise InputError(f"{field_name} is not a valid GeoJSON {geom.get('type')}: {exc}", field=field_name) from None
    if g.is_empty or not g.is_valid:
        from shapely.validation import explain_validity

        raise InputError(f"{field_name} is empty or not a valid {geom.get('type')}: {explain_validity(g)}",
                         field=field_name, hint="a ring must not cross itself")
    x0, y0, x1, y1 = g.bounds
    if not all(map(math.isfinite, (x0, y0, x1, y1))) or x0 < -180 or x1 > 180 or y0 < -90 or y1 > 90:
        raise InputError(f"{field_name} has coordinates outside longitude -180..180 / latitude -90..90",
                         field=field_name)
    if bbox is not None and not (bbox[0] <= x0 and x1 <= bbox[2] and bbox[1] <= y0 and y1 <= bbox[3]):
        raise InputError(f"{field_name} lies outside the city (longitude {bbox[0]}..{bbox[2]}, latitude "
                         f"{bbox[1]}..{bbox[3]})", field=field_name)
    out: dict[str, Any] = shapely.geometry.mapping(g)
    out["coordinates"] = json.loads(json.dumps(out["coordinates"]))  # tuples -> lists
    return out


def demand_geojson(store: CaseStore, *, res: int = 9) -> dict[str, Any]:
    """The demand map: complaints per H3 cell (and per service code inside it) as polygons."""
    import h3

    from citytwin.participation.demand import counts_by_cell

    frame = pd.DataFrame(store.cases(kind="complaint", limit=10_000_000))
    feats: list[dict[str, Any]] = []
    if len(frame) and {"lat", "lon"} <= set(frame.columns):
        by = counts_by_cell(frame.assign(service_code=frame["service_code"].fillna("other")), res=res,
                            by=["service_code"])
        for cell, g in by.groupby("h3", sort=False):
            ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(str(cell))]
            feats.append({"type": "Feature", "id": str(cell),
                          "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                          "properties": {"h3": str(cell), "count": int(g["count"].sum()),
                                         "by_service": {str(k): int(v) for k, v in
                                                        zip(g["service_code"], g["count"], strict=True)}}})
    feats.sort(key=lambda f: -int(f["properties"]["count"]))
    return {"type": "FeatureCollection", "features": feats, "resolution": res}


def check_construction_sites(store: CaseStore, history: Any, sites: Sequence[Mapping[str, Any]], *,
                             lookback_hours: float = 24.0, step: str = "1h") -> dict[str, Any]:
    """One round of the construction-site checks: the sites' sensor readings of the last
    ``lookback_hours`` (ending at the store's clock) from the twin's history store, checked against
    each site's permit (:func:`citytwin.participation.construction.site_violations`); every
    violation run opens a ``construction_works`` incident (once: an alert already linked to an
    incident is not opened again). A site's ``lat``/``lon`` place the incident.

    Returns ``{"checked_at", "sites", "observations", "violations", "opened": [ids]}``.
    """
    from citytwin.participation.construction import site_violations
    from citytwin.participation.incidents import alerts_from_site_violations

    now = store.now()
    start = now - timedelta(hours=lookback_hours)
    sensors = sorted({str(e) for s in sites for e in s.get("sensors", [])})
    res: dict[str, Any] = {"checked_at": now.isoformat(), "sites": len(sites), "observations": 0,
                           "violations": 0, "opened": []}
    if not sensors:
        return res
    obs = history.query(entities=sensors, properties=["noise", "pm10"], start=start, end=now)
    res["observations"] = len(obs)
    if obs.empty:
        return res
    v = site_violations(obs[["entity", "property", "time", "value"]], sites, step=step)
    res["violations"] = len(v)
    where = {str(s["id"]): (float(s["lat"]), float(s["lon"])) for s in sites
             if s.get("lat") is not None and s.get("lon") is not None}
    for alert in alerts_from_site_violations(v, where):
        r = open_incident_from_alert(store, alert, sensors=[str(e) for s in sites if str(s["id"]) == alert["entity"]
                                                            for e in s.get("sensors", [])])
        if r["opened"]:
            res["opened"].append(r["id"])
    return res
