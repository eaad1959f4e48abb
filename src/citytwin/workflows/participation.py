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

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from citytwin.foundation.cases import CaseStore, parse_time
from citytwin.foundation.errors import InputError
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


def consultation_results(store: CaseStore, cid: int, *, top: int = 20) -> dict[str, Any]:
    """Counts, vote/survey tables and a keyword summary (jieba for Chinese) of a consultation."""
    from citytwin.participation.text import keywords

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
        tables.append(entry)
    return {"consultation": cid, "title": c["title"], "comments": len(comments), "hidden_comments": hidden,
            "comments_with_place": sum(1 for m in comments if m["geometry"]), "questions": tables,
            "keywords": keywords([m["text"] for m in comments], top=top)}


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
