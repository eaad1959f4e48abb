"""Consultations over HTTP (G1): plans on the map, comments (a point or an area) and replies, votes and
survey answers, moderation and results — over :class:`~citytwin.foundation.cases.CaseStore` and
:mod:`citytwin.workflows.participation`, mounted by :func:`citytwin.service.participation_api.install`.

``POST /consultations``                                   staff: create (title, period, plan GeoJSON, documents, questions)
``GET  /consultations``, ``GET /consultations/{id}``       list / one (with the caller's own state: verified, answered)
``GET  /consultations/{id}/comments``                      visible comments (authors masked for roles without clearance)
``GET  /consultations/{id}/comments.geojson``              the comment map
``POST /consultations/{id}/comments``                      comment on the plan (``geometry``: Point or area) or reply (``parent``)
``POST /consultations/{id}/questions/{qid}/answer``        vote / answer as the caller: verified residents, once per question
``POST /consultations/comments/{mid}/hide``                staff: moderation, hide with a reason (audited)
``POST /consultations/residents/{name}/verify``            staff: mark a resident verified
``GET  /consultations/{id}/results``                       counts, survey tables, keywords, topics, the comment map

The author of a comment and the respondent of an answer are always the signed-in user (never a field
of the body), so one vote per verified resident per question holds per account; the case store's
primary key enforces it under concurrent requests. Text is stored as sent and returned as JSON
strings (HTML is never interpreted here; the web app shows it as text). Places must lie in the
city's extent when the workspace has one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, Field

from citytwin.foundation.errors import InputError, NotFoundError
from citytwin.service.participation_api import ERRORS, Caller, RowId, Staff, store_of

__all__ = ["router"]

router = APIRouter(prefix="/consultations", tags=["consultations"], responses=ERRORS)


class QuestionBody(BaseModel):
    """A question: ``vote``/``single``/``multiple`` (with ``options``), ``scale`` (1..``scale_max``) or ``text``."""

    kind: Literal["vote", "single", "multiple", "scale", "text"]
    text: str = Field(min_length=1, max_length=2000)
    options: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(default=None, max_length=50)
    scale_max: int | None = Field(default=None, ge=2, le=10)


class ConsultationBody(BaseModel):
    """A new consultation: its period (times with a zone), plan (a GeoJSON geometry, feature or
    feature collection), documents (titles or URLs) and questions."""

    title: str = Field(min_length=1, max_length=300)
    starts: datetime
    ends: datetime
    plan: dict[str, Any] | None = None
    documents: list[Annotated[str, Field(max_length=2048)]] = Field(default_factory=list, max_length=50)
    questions: list[QuestionBody] = Field(default_factory=list, max_length=50)


class CommentBody(BaseModel):
    """A comment on the plan: text, and a place (GeoJSON Point, or a Polygon or MultiPolygon: rings
    closed, valid, at most 500 positions, touching the plan) or a ``parent`` comment it replies to."""

    text: str = Field(min_length=1, max_length=4000)
    geometry: dict[str, Any] | None = None
    parent: int | None = Field(default=None, ge=1, le=2**63 - 1)


class AnswerBody(BaseModel):
    """A vote or survey answer: an option (vote, single), a list of options (multiple), a whole number
    (scale) or text."""

    value: str | int | list[str] = Field(union_mode="left_to_right")


class HideBody(BaseModel):
    """Why a comment is hidden (kept and audited)."""

    reason: str = Field(min_length=1, max_length=500)


def _bbox(request: Request) -> tuple[float, float, float, float] | None:
    bbox: tuple[float, float, float, float] | None = request.app.state.participation.config.bbox
    return bbox


def _plan(plan: dict[str, Any] | None, bbox: Any) -> dict[str, Any] | None:
    """The plan checked: a geometry, a feature or a feature collection of polygons, lines or points."""
    from citytwin.workflows.participation import check_geometry

    if plan is None:
        return None
    kinds = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
    t = plan.get("type")
    if t == "FeatureCollection":
        feats = plan.get("features")
        if not isinstance(feats, list) or not feats or len(feats) > 1000:
            raise InputError("plan: a FeatureCollection needs 1 to 1,000 features", field="plan")
        out = []
        for i, f in enumerate(feats):
            if not isinstance(f, dict) or f.get("type") != "Feature":
                raise InputError(f"plan: feature {i + 1} is not a GeoJSON Feature", field="plan", row=i + 1)
            props = f.get("properties") if isinstance(f.get("properties"), dict) else {}
            out.append({"type": "Feature", "properties": props,
                        "geometry": check_geometry(f.get("geometry"), field_name=f"plan feature {i + 1}",
                                                   bbox=bbox, kinds=kinds)})
        return {"type": "FeatureCollection", "features": out}
    if t == "Feature":
        props = plan.get("properties") if isinstance(plan.get("properties"), dict) else {}
        return {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": props, "geometry":
                                                           check_geometry(plan.get("geometry"), field_name="plan",
                                                                          bbox=bbox, kinds=kinds)}]}
    return {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry":
                                                       check_geometry(plan, field_name="plan", bbox=bbox,
                                                                      kinds=kinds)}]}


def _on_plan(area: dict[str, Any], con: dict[str, Any]) -> None:
    """An area comment must touch the consultation's plan (when it has one)."""
    from shapely.geometry import shape

    plan = con.get("plan")
    if not plan:
        return
    t = plan.get("type")
    feats = plan.get("features", []) if t == "FeatureCollection" else [plan] if t == "Feature" else [{"geometry": plan}]
    a = shape(area)
    if not any(f.get("geometry") and shape(f["geometry"]).intersects(a) for f in feats):
        raise InputError(f"geometry: the area does not touch the plan of consultation {con['id']}", field="geometry",
                         hint="draw the area on or across the plan (a point may be placed anywhere in the city)")


def _zoned(t: datetime, name: str) -> datetime:
    if t.tzinfo is None:
        raise InputError(f"{name} needs a time zone (e.g. 2026-03-02T09:00:00+08:00)", field=name)
    return t


def _view(st: Any, c: dict[str, Any]) -> dict[str, Any]:
    me = st.user.name
    mine = [a for a in st.answers(int(c["id"])) if a["respondent"] == me]
    return {**c, "you": {"user": me, "verified": st.is_verified(me),
                         "answered": {str(a["question_id"]): a["value"] for a in mine}}}


@router.post("", status_code=201, summary="Create a consultation (staff)")
def create(request: Request, p: Staff, body: Annotated[ConsultationBody, Body()]) -> dict[str, Any]:
    """A consultation with its plan, documents, period and questions."""
    st = store_of(request, p)
    plan = _plan(body.plan, _bbox(request))
    cid = st.create_consultation(body.title, starts=_zoned(body.starts, "starts"), ends=_zoned(body.ends, "ends"),
                                 plan=plan, documents=body.documents,
                                 questions=[q.model_dump(exclude_none=True) for q in body.questions])
    return _view(st, st.consultation(cid))


@router.get("", summary="Consultations, newest first")
def list_consultations(request: Request, p: Caller) -> list[dict[str, Any]]:
    st = store_of(request, p)
    return [_view(st, c) for c in st.consultations()]


@router.get("/{cid}", summary="One consultation (plan, documents, period, questions, your answers)")
def get_consultation(request: Request, p: Caller, cid: RowId) -> dict[str, Any]:
    st = store_of(request, p)
    return _view(st, st.consultation(cid))


@router.get("/{cid}/comments", summary="The visible comments and replies")
def comments(request: Request, p: Caller, cid: RowId) -> list[dict[str, Any]]:
    """Comments not hidden, oldest first; authors (but yours) masked for roles without clearance."""
    from citytwin.workflows.participation import visible_comments

    st = store_of(request, p)
    st.consultation(cid)
    return visible_comments(st, cid)


@router.get("/{cid}/comments.geojson", summary="The comment map (GeoJSON)")
def comments_geojson(request: Request, p: Caller, cid: RowId) -> dict[str, Any]:
    """The comments with a place as features (areas as areas), with text, author and time."""
    from citytwin.participation.entities import comment_entity, feature_collection
    from citytwin.workflows.participation import visible_comments

    st = store_of(request, p)
    c = st.consultation(cid)
    return feature_collection([comment_entity(m, c) for m in visible_comments(st, cid)], marker=False)


@router.post("/{cid}/comments", status_code=201, summary="Comment on the plan, or reply to a comment")
def add_comment(request: Request, p: Caller, cid: RowId, body: Annotated[CommentBody, Body()]) -> dict[str, Any]:
    """A comment by the signed-in user, at a point or on an area of the plan, or a reply (``parent``)."""
    from citytwin.workflows.participation import MAX_AREA_VERTICES, check_geometry

    st = store_of(request, p)
    con = st.consultation(cid)
    geom = None if body.geometry is None else check_geometry(body.geometry, bbox=_bbox(request),
                                                             max_vertices=MAX_AREA_VERTICES)
    if geom is not None and geom["type"] != "Point":
        _on_plan(geom, con)
    if body.parent is not None and body.parent not in {int(m["id"]) for m in st.comments(cid, include_hidden=True)}:
        raise InputError(f"comment {body.parent} is not a comment of consultation {cid}", field="parent")
    mid = st.comment(cid, p.user.name, body.text, geometry=geom, parent=body.parent)
    return {"id": mid, "consultation": cid, "author": p.user.name, "text": body.text, "geometry": geom,
            "parent_id": body.parent}


@router.post("/{cid}/questions/{qid}/answer", status_code=201, summary="Vote or answer a question")
def answer(request: Request, p: Caller, cid: RowId, qid: RowId, body: Annotated[AnswerBody, Body()]) -> dict[str, Any]:
    """The signed-in user's answer: a verified resident, once per question, inside the period
    (a second vote is refused with 400, an unverified user with 403)."""
    st = store_of(request, p)
    if qid not in {int(q["id"]) for q in st.consultation(cid)["questions"]}:
        raise NotFoundError(f"consultation {cid} has no question {qid}")
    st.answer(qid, p.user.name, body.value)
    return {"consultation": cid, "question": qid, "respondent": p.user.name, "value": body.value}


@router.post("/comments/{mid}/hide", summary="Hide a comment with a reason (staff, audited)")
def hide(request: Request, p: Staff, mid: RowId, body: Annotated[HideBody, Body()]) -> dict[str, Any]:
    store_of(request, p).hide_comment(mid, body.reason)
    return {"comment": mid, "hidden": True, "reason": body.reason}


@router.post("/residents/{name}/verify", summary="Mark a resident verified (staff)")
def verify(request: Request, p: Staff, name: str) -> dict[str, Any]:
    """A verified resident may vote and answer surveys (once per question)."""
    if not 0 < len(name) <= 100:
        raise InputError("a resident's name has 1 to 100 characters", field="name")
    store_of(request, p).verify_resident(name)
    return {"resident": name, "verified": True}


@router.get("/{cid}/results", summary="Results: counts, survey tables, keywords, topics, the comment map")
def results(request: Request, p: Caller, cid: RowId,
            top: Annotated[int, Query(ge=1, le=100)] = 20,
            topics: Annotated[int | None, Query(ge=1, le=20, description="number of topics (default: the "
                                                "stability rule chooses)")] = None) -> dict[str, Any]:
    """Comments (visible, hidden, with a place), per-question tables (option counts, scale means),
    keywords and topics (NMF over TF-IDF: top terms, share of answers, examples) of the comments and
    free-text answers (Chinese segmented with jieba), and the comment map."""
    from citytwin.participation.entities import comment_entity, feature_collection
    from citytwin.workflows.participation import consultation_results, visible_comments

    st = store_of(request, p)
    c = st.consultation(cid)
    res = consultation_results(st, cid, top=top, topics=topics)
    res["comment_map"] = feature_collection([comment_entity(m, c) for m in visible_comments(st, cid)], marker=False)
    return res
