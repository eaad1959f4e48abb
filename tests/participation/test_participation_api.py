"""Participation in ``citytwin serve`` (issue 17): Open311 mounted with the workspace's services and city
extent, the role model (residents post with their token as GeoReport v2's api_key; staff handle cases
with personal data masked by role), consultations over HTTP, cases as NGSI-LD entities, the demand map,
and the construction-site scheduler with a fake clock."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.conftest import served

from citytwin.foundation.workspace import Workspace
from citytwin.service.app import close_app

BBOX = [116.2, 39.8, 116.6, 40.05]  # the test city (Beijing's centre)
SITE = {"id": "site7", "sensors": ["urn:noise7"], "noise_db": 75, "activity_db": 55, "start_hour": 7,
        "end_hour": 19, "tz": "Asia/Shanghai", "min_steps": 2, "lat": 39.9, "lon": 116.4}
PLAN = {"type": "Polygon", "coordinates": [[[116.39, 39.90], [116.41, 39.90], [116.41, 39.91], [116.39, 39.91],
                                            [116.39, 39.90]]]}


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.t


@dataclass
class Env:
    ws: Workspace
    client: TestClient
    clock: Clock
    tokens: dict[str, str] = field(default_factory=dict)

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture()
def env(workspace: Workspace) -> Iterator[Env]:
    from citytwin.service.server import create_server_app

    (workspace.root / "participation.json").write_text(json.dumps({"bbox": BBOX, "construction_sites": [SITE],
                                                                   "check_minutes": 60}), encoding="utf-8")
    users = {"clerk": "steward", "ops": "integrator", "vera": "viewer", "wang": "public", "li": "public"}
    for name, role in users.items():
        workspace.add_user(name, role, "environment" if role != "public" else None)
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = create_server_app(workspace, clock=clock)
    e = Env(workspace, TestClient(app), clock)
    for name in [*users, "admin"]:
        e.tokens[name] = workspace.catalog.issue_token(name)[1]
    try:
        with e.client:
            yield e
    finally:
        close_app(app)


def post311(e: Env, key: str | None, **form: Any) -> Any:
    data = {k: str(v) for k, v in form.items()}
    if key:
        data["api_key"] = e.tokens[key]
    return e.client.post("/open311/v2/requests.json", data=data)


def test_open311_mounted_with_workspace_services_and_extent(env: Env) -> None:
    c = env.client
    svc = c.get("/open311/v2/services.json")  # the public service list: no token
    assert svc.status_code == 200
    assert {s["service_code"] for s in svc.json()} >= {"pothole", "noise", "construction", "dumping"}
    cfg = c.get("/participation/v1/config", headers=env.h("wang")).json()
    assert cfg["bbox"] == BBOX and cfg["bbox_source"] == "bbox of participation.json"
    # nobody posts anonymously: GeoReport v2's api_key is a workspace token
    r = post311(env, None, service_code="pothole", description="hole", lat=39.9, long=116.4)
    assert r.status_code == 401 and r.json()[0]["code"] == 401 and "api_key is required" in r.json()[0]["description"]
    r = c.post("/open311/v2/requests.json", data={"api_key": "nope", "service_code": "pothole", "lat": "39.9",
                                                  "long": "116.4", "description": "x"})
    assert r.status_code == 403 and "invalid api_key" in r.json()[0]["description"]
    r = post311(env, "wang", service_code="pothole", description="路面有坑 call 13812345678", lat=39.9, long=116.4,
                first_name="Wang", phone="13812345678", email="wang@example.cn")
    assert r.status_code == 201, r.text
    rid = r.json()[0]["service_request_id"]
    far = post311(env, "wang", service_code="pothole", description="hole", lat=31.2, long=121.5)  # Shanghai
    assert far.status_code == 400 and "outside the city" in far.json()[0]["description"]
    # listing needs a token; contact fields never come back, personal data in the text is masked
    assert c.get("/open311/v2/requests.json").status_code == 401
    got = c.get(f"/open311/v2/requests/{rid}.json", headers=env.h("li")).json()[0]
    assert got["agency_responsible"] == "transport" and got["status"] == "open"
    assert "13812345678" not in json.dumps(got) and "138****5678" in got["description"]
    assert not {"phone", "email", "first_name"} & set(got)
    rows = [r for r in env.ws.catalog.audit_log() if r["action"].startswith(("participation.", "complaint."))]
    assert ("participation.write", "wang", "ok") in {(r["action"], r["user"], r["outcome"]) for r in rows}
    assert ("complaint.open", "wang") in {(r["action"], r["user"]) for r in rows}
    refused = [r for r in rows if r["action"] == "participation.write" and r["outcome"] == "denied"]
    assert len(refused) == 1 and refused[0]["user"] is None  # the post with a bad key
    assert any(r["outcome"] == "unauthenticated" and r["detail"].startswith("POST /open311/v2/requests.json")
               for r in env.ws.catalog.audit_log())  # the post without one


def test_staff_route_and_close_with_masking(env: Env) -> None:
    c = env.client
    rid = post311(env, "wang", service_code="other", description="树倒了 <b>bold</b>", lat=39.91, long=116.41,
                  first_name="Wang", phone="13812345678").json()[0]["service_request_id"]
    assert c.get("/cases", headers=env.h("wang")).status_code == 403  # residents use Open311
    ops = c.get("/cases", headers=env.h("ops")).json()
    mine = next(x for x in ops if str(x["id"]) == rid)
    assert mine["reporter_phone"] == "138****5678" and mine["description"] == "树倒了 <b>bold</b>"
    clerk = c.get(f"/cases/{rid}", headers=env.h("clerk")).json()
    assert clerk["reporter_phone"] == "13812345678" and clerk["status"] == "open"
    assert c.post(f"/cases/{rid}/assign", json={"department": "parks"}, headers=env.h("vera")).status_code == 403
    r = c.post(f"/cases/{rid}/assign", json={"department": "parks", "note": "trees"}, headers=env.h("ops"))
    assert r.status_code == 200 and r.json()["department"] == "parks" and r.json()["status"] == "assigned"
    assert c.post(f"/cases/{rid}/reply", json={"text": "on our way"}, headers=env.h("ops")).status_code == 200
    bad = c.post(f"/cases/{rid}/status", json={"status": "gone"}, headers=env.h("ops"))
    assert bad.status_code == 400 and bad.json()["title"] == "BadRequest"
    done = c.post(f"/cases/{rid}/status", json={"status": "closed", "note": "cleared"}, headers=env.h("ops")).json()
    assert done["status"] == "closed"
    assert [h["kind"] for h in done["history"]] == ["opened", "assign", "reply", "status"]
    assert c.get(f"/open311/v2/requests/{rid}.json", headers=env.h("wang")).json()[0]["status"] == "closed"
    assert c.get("/cases/999", headers=env.h("ops")).status_code == 404
    actions = [r["action"] for r in env.ws.catalog.audit_log() if r["dataset"] == "cases"]
    assert {"case.assign", "case.reply", "case.status", "case.read_personal"} <= set(actions)


def _consultation(e: Env, **over: Any) -> dict[str, Any]:
    body = {"title": "Renewal of Block 7", "starts": "2026-03-01T00:00:00+08:00", "ends": "2026-03-31T00:00:00+08:00",
            "plan": PLAN, "documents": ["https://example.org/plan.pdf"],
            "questions": [{"kind": "vote", "text": "Do you support the plan?", "options": ["yes", "no"]},
                          {"kind": "scale", "text": "How urgent?", "scale_max": 5},
                          {"kind": "text", "text": "What is missing?"}], **over}
    r = e.client.post("/consultations", json=body, headers=e.h("clerk"))
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_consultation_comment_vote_moderate_results(env: Env) -> None:
    c = env.client
    assert c.post("/consultations", json={"title": "x", "starts": "2026-03-01T00:00:00Z",
                                          "ends": "2026-03-02T00:00:00Z"}, headers=env.h("wang")).status_code == 403
    con = _consultation(env)
    cid, (qv, qs, qt) = con["id"], [q["id"] for q in con["questions"]]
    assert con["plan"]["features"][0]["geometry"]["type"] == "Polygon"
    pt = {"type": "Point", "coordinates": [116.40, 39.905]}
    r = c.post(f"/consultations/{cid}/comments", json={"text": "<script>alert(1)</script> 需要更多座椅",
                                                       "geometry": pt}, headers=env.h("wang"))
    assert r.status_code == 201 and r.json()["author"] == "wang"
    m1 = r.json()["id"]
    area = {"type": "Polygon", "coordinates": [[[116.395, 39.901], [116.40, 39.901], [116.40, 39.905],
                                                [116.395, 39.901]]]}
    assert c.post(f"/consultations/{cid}/comments", json={"text": "keep these trees", "geometry": area},
                  headers=env.h("li")).status_code == 201
    rep = c.post(f"/consultations/{cid}/comments", json={"text": "agree", "parent": m1}, headers=env.h("li"))
    assert rep.status_code == 201
    spam = c.post(f"/consultations/{cid}/comments", json={"text": "buy now"}, headers=env.h("li")).json()["id"]
    for bad in ({"text": "x", "geometry": {"type": "Point"}}, {"text": "x", "geometry": {"type": "LineString",
                                                                                         "coordinates": [[0, 0]]}},
                {"text": "x", "geometry": {"type": "Point", "coordinates": [121.5, 31.2]}},
                {"text": "x", "parent": 999}):
        r = c.post(f"/consultations/{cid}/comments", json=bad, headers=env.h("wang"))
        assert r.status_code == 400, (bad, r.text)
    # votes: verified residents only, once per question
    vote = f"/consultations/{cid}/questions/{qv}/answer"
    assert c.post(vote, json={"value": "yes"}, headers=env.h("wang")).status_code == 403
    assert c.post("/consultations/residents/wang/verify", headers=env.h("wang")).status_code == 403
    for name in ("wang", "li"):
        assert c.post(f"/consultations/residents/{name}/verify", headers=env.h("clerk")).status_code == 200
    assert c.post(vote, json={"value": "yes"}, headers=env.h("wang")).status_code == 201
    again = c.post(vote, json={"value": "no"}, headers=env.h("wang"))
    assert again.status_code == 400 and "already answered" in again.json()["detail"]
    assert c.post(vote, json={"value": "maybe"}, headers=env.h("li")).status_code == 400
    assert c.post(f"/consultations/{cid}/questions/{qs}/answer", json={"value": 4},
                  headers=env.h("li")).status_code == 201
    assert c.post(f"/consultations/{cid}/questions/{qt}/answer", json={"value": "更多座椅和树荫"},
                  headers=env.h("li")).status_code == 201
    assert c.post(f"/consultations/{cid}/questions/99/answer", json={"value": "yes"},
                  headers=env.h("li")).status_code == 404
    mine = c.get(f"/consultations/{cid}", headers=env.h("wang")).json()["you"]
    assert mine == {"user": "wang", "verified": True, "answered": {str(qv): "yes"}}
    # moderation: staff only, with a reason, audited
    assert c.post(f"/consultations/comments/{spam}/hide", json={"reason": "ad"}, headers=env.h("li")).status_code == 403
    assert c.post(f"/consultations/comments/{spam}/hide", json={"reason": ""},
                  headers=env.h("clerk")).status_code == 422
    assert c.post(f"/consultations/comments/{spam}/hide", json={"reason": "advertising"},
                  headers=env.h("clerk")).status_code == 200
    mod = [r for r in env.ws.catalog.audit_log() if r["action"] == "consult.moderate"]
    assert [(r["user"], r["outcome"], json.loads(r["detail"])["reason"]) for r in mod] == [
        ("clerk", "ok", "advertising")]
    refused = [r for r in env.ws.catalog.audit_log() if r["outcome"] == "denied" and "/hide" in (r["detail"] or "")]
    assert [(r["user"], r["action"], r["detail"]) for r in refused] == [
        ("li", "participation.write", f"POST /consultations/comments/{spam}/hide -> 403: staff only")]
    # what a resident sees: other authors masked, HTML kept as text
    seen = c.get(f"/consultations/{cid}/comments", headers=env.h("li")).json()
    assert [m["id"] for m in seen] == [m1, m1 + 1, m1 + 2]
    assert seen[0]["text"].startswith("<script>alert(1)</script>") and seen[0]["author"] != "wang"
    assert seen[1]["author"] == "li"
    res = c.get(f"/consultations/{cid}/results", headers=env.h("vera")).json()
    assert res["comments"] == 3 and res["hidden_comments"] == 1 and res["comments_with_place"] == 2
    tables = {t["question"]: t for t in res["questions"]}
    assert tables[qv]["counts"] == {"yes": 1, "no": 0} and tables[qs]["mean"] == 4.0
    assert tables[qs]["counts"]["4"] == 1 and tables[qt]["responses"] == 1
    assert {w for w, _ in tables[qt]["keywords"]} >= {"座椅", "树荫"}
    gj = res["comment_map"]
    assert sorted(f["geometry"]["type"] for f in gj["features"]) == ["Point", "Polygon"]


def test_one_vote_per_resident_under_concurrent_requests(env: Env) -> None:
    con = _consultation(env)
    q = con["questions"][0]["id"]
    for name in ("wang", "li"):
        env.client.post(f"/consultations/residents/{name}/verify", headers=env.h("clerk"))

    def vote(i: int) -> int:
        who = "wang" if i % 2 else "li"
        r = env.client.post(f"/consultations/{con['id']}/questions/{q}/answer",
                            json={"value": "yes" if i % 3 else "no"}, headers=env.h(who))
        return r.status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(vote, range(16)))
    assert sorted(codes).count(201) == 2 and all(c in (201, 400) for c in codes)
    res = env.client.get(f"/consultations/{con['id']}/results", headers=env.h("clerk")).json()
    assert res["questions"][0]["responses"] == 2


def test_vote_outside_the_period(env: Env) -> None:
    con = _consultation(env)
    env.client.post("/consultations/residents/wang/verify", headers=env.h("clerk"))
    env.clock.t = datetime(2026, 4, 2, tzinfo=UTC)  # after the consultation ended
    r = env.client.post(f"/consultations/{con['id']}/questions/{con['questions'][0]['id']}/answer",
                        json={"value": "yes"}, headers=env.h("wang"))
    assert r.status_code == 400 and "is open from" in r.json()["detail"]
    r = env.client.post(f"/consultations/{con['id']}/comments", json={"text": "late"}, headers=env.h("wang"))
    assert r.status_code == 400


def test_cases_as_twin_entities_and_demand_map(env: Env) -> None:
    c = env.client
    for i in range(3):
        post311(env, "wang", service_code="noise", description=f"loud at night {i} 13812345678",
                lat=39.9 + 0.0001 * i, long=116.4, phone="13812345678")
    post311(env, "li", service_code="pothole", description="hole", lat=40.0, long=116.3)
    con = _consultation(env)
    c.post(f"/consultations/{con['id']}/comments", json={"text": "bench here",
                                                         "geometry": {"type": "Point", "coordinates": [116.4, 39.905]}},
           headers=env.h("wang"))
    ents = c.get("/participation/v1/entities", headers=env.h("li")).json()
    types = pd.Series([e["type"] for e in ents]).value_counts().to_dict()
    assert types == {"ServiceRequest": 4, "ConsultationComment": 1}
    sr = next(e for e in ents if e["type"] == "ServiceRequest" and e["service_code"]["value"] == "noise")
    assert sr["id"].startswith("urn:ngsi-ld:ServiceRequest:") and sr["location"]["type"] == "GeoProperty"
    assert sr["status"]["observedAt"] == "2026-03-02T09:00:00+00:00"
    assert "13812345678" not in json.dumps(ents) and not any("reporter_phone" in e for e in ents)
    com = next(e for e in ents if e["type"] == "ConsultationComment")
    assert com["author"]["value"] != "wang" and com["text"]["value"] == "bench here"
    only = c.get("/participation/v1/entities?type=ConsultationComment", headers=env.h("li")).json()
    assert [e["type"] for e in only] == ["ConsultationComment"]
    assert c.get("/participation/v1/entities?type=Sensor", headers=env.h("li")).status_code == 400
    fc = c.get("/participation/v1/map", headers=env.h("ops")).json()
    assert len(fc["features"]) == 5 and {f["geometry"]["type"] for f in fc["features"]} == {"Point"}
    demand = c.get("/participation/v1/demand?res=8", headers=env.h("ops")).json()
    counts = [(f["properties"]["count"], f["properties"]["by_service"]) for f in demand["features"]]
    assert counts == [(3, {"noise": 3}), (1, {"pothole": 1})]


def test_incident_from_scheduler_appears_as_entity(env: Env) -> None:
    """The server's scheduler (configured sites) checks the twin history with the injected clock."""
    from citytwin.foundation.timeseries.history import HistoryStore

    part = env.client.app.state.participation  # type: ignore[attr-defined]
    assert part.watch is not None and part.watch.running and part.watch.period_s == 3600
    hist: HistoryStore = env.client.app.state.twin.stores.history  # type: ignore[attr-defined]
    t = pd.date_range("2026-03-01 20:00", periods=4, freq="h", tz="Asia/Shanghai").tz_convert("UTC")
    hist.append({"entity": ["urn:noise7"] * 4, "type": ["NoiseLevelObserved"] * 4, "property": ["noise"] * 4,
                 "time": t.tz_localize(None).to_numpy(), "value": [70.0, 72.0, 40.0, 40.0], "unit": ["dB"] * 4,
                 "lon": [116.4] * 4, "lat": [39.9] * 4})
    res = part.watch.run_once()  # the thread's first round ran at start-up, maybe before these readings
    assert res["violations"] == 1
    ents = env.client.get("/participation/v1/entities?type=Incident", headers=env.h("ops")).json()
    assert len(ents) == 1 and ents[0]["category"]["value"] == "construction_works"
    state = env.client.get("/participation/v1/construction", headers=env.h("ops")).json()
    assert state["last"]["checked_at"] == "2026-03-02T09:00:00+00:00" and state["sites"] == 1


def test_construction_watch_with_fake_clock(workspace: Workspace, tmp_path: Any) -> None:
    """The scheduler loop: one round per period, each with the clock's time; a run of work after hours
    opens one incident, and the next rounds do not open it again; a later run opens another."""
    from citytwin.foundation.cases import CaseStore
    from citytwin.foundation.timeseries.history import HistoryStore
    from citytwin.service.participation_api import ConstructionWatch

    clock = Clock(datetime(2026, 3, 2, 0, 30, tzinfo=UTC))
    store = CaseStore.of(workspace, clock)
    hist = HistoryStore(tmp_path / "hist")

    def readings(start: str, values: list[float]) -> None:
        t = pd.date_range(start, periods=len(values), freq="h", tz="Asia/Shanghai").tz_convert("UTC")
        n = len(values)
        hist.append({"entity": ["urn:noise7"] * n, "type": ["NoiseLevelObserved"] * n, "property": ["noise"] * n,
                     "time": t.tz_localize(None).to_numpy(), "value": values, "unit": ["dB"] * n,
                     "lon": [116.4] * n, "lat": [39.9] * n})

    readings("2026-03-01 21:00", [60.0, 62.0, 58.0])  # 21:00–23:00 local: work after hours
    waits: list[float] = []
    stop_after = 3

    def wait(seconds: float) -> bool:  # the fake sleep: advance the clock by the period
        waits.append(seconds)
        with clock.lock:
            clock.t += timedelta(seconds=seconds)
        if len(waits) == 1:
            readings("2026-03-02 05:00", [60.0, 61.0])  # 05:00–06:00 local: again outside the hours
        return len(waits) >= stop_after

    w = ConstructionWatch(store, hist, [SITE], period_s=1800.0, lookback_hours=24.0, wait=wait)
    w.start()
    w._thread.join(10)  # type: ignore[union-attr]
    assert not w.running and w.rounds == 3 and waits == [1800.0] * 3
    incidents = store.cases(kind="incident")
    assert len(incidents) == 2 and {i["category"] for i in incidents} == {"construction_works"}
    assert w.last is not None and w.last["checked_at"] == "2026-03-02T01:30:00+00:00" and w.last["opened"] == []
    starts = sorted(next(lk["ref"] for lk in store.links(i["id"]) if lk["kind"] == "alert") for i in incidents)
    assert starts == ["site7:hours:2026-03-01T13:00:00+00:00", "site7:hours:2026-03-01T21:00:00+00:00"]


def _boundary(ws: Workspace, name: str, box: tuple[float, float, float, float], schema: str = "admin_boundary") -> None:
    import geopandas as gpd
    from shapely.geometry import box as shape_box

    frame = gpd.GeoDataFrame({"name": [name], "geometry": [shape_box(*box)]}, crs="EPSG:4326")
    ws.write_derived(name, frame, inputs=[], parameters={}, classification="public", schema=schema)
    assert ws.info(name).current.extent == pytest.approx(list(box))


def test_city_extent_sources_in_order(workspace: Workspace) -> None:
    """bbox of participation.json > its boundary_dataset > the setting city_boundary > the only
    admin_boundary dataset; none: no extent, said in the source."""
    from citytwin.foundation.errors import InputError
    from citytwin.workflows.participation import participation_config

    cfg = participation_config(workspace)
    assert cfg.bbox is None and cfg.bbox_source.startswith("none")
    assert {s["service_code"] for s in cfg.services} >= {"pothole", "dumping"}
    assert cfg.departments["noise"] == "environment" and cfg.deadline_hours["default"] == 72
    _boundary(workspace, "beijing", (116.0, 39.6, 116.8, 40.2))
    cfg = participation_config(workspace)
    assert cfg.bbox == pytest.approx((116.0, 39.6, 116.8, 40.2))
    assert cfg.bbox_source == "extent of dataset beijing (the only admin_boundary dataset)"
    _boundary(workspace, "core", (116.3, 39.85, 116.5, 39.95))
    assert participation_config(workspace).bbox is None  # two boundaries: none is "the" city
    workspace.set_setting("city_boundary", "core")
    assert participation_config(workspace).bbox_source == "extent of dataset core (setting city_boundary)"
    path = workspace.root / "participation.json"
    path.write_text(json.dumps({"boundary_dataset": "beijing"}), encoding="utf-8")
    assert participation_config(workspace).bbox == pytest.approx((116.0, 39.6, 116.8, 40.2))
    path.write_text(json.dumps({"bbox": [1, 2, 3, 4], "boundary_dataset": "beijing"}), encoding="utf-8")
    assert participation_config(workspace).bbox == (1.0, 2.0, 3.0, 4.0)
    for bad, msg in (({"bbox": [3, 2, 1, 4]}, "is not"), ({"bbox": "x"}, "four numbers"),
                     ({"boundary_dataset": "nowhere"}, "not in the catalog"),
                     ({"services": [{"service_name": "no code"}]}, "service_code")):
        path.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(InputError, match=msg):
            participation_config(workspace)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match=r"participation\.json"):
        participation_config(workspace)


def test_open311_without_a_city_extent(workspace: Workspace) -> None:
    from citytwin.service.server import create_server_app

    workspace.add_user("wang", "public")
    tok = workspace.catalog.issue_token("wang")[1]
    with served(create_server_app(workspace)) as c:
        r = c.post("/open311/v2/requests.json", data={"api_key": tok, "service_code": "pothole", "description": "x",
                                                      "lat": "39.9", "long": "116.4"})
        assert r.status_code == 400 and "extent is not configured" in r.json()[0]["description"]
        r = c.post("/open311/v2/requests.json", data={"api_key": tok, "service_code": "pothole", "description": "x",
                                                      "address_string": "1 Main Street"})
        assert r.status_code == 201


def test_results_summarise_free_text_in_topics(env: Env) -> None:
    """The results API gives the comments' topics (NMF over TF-IDF; the planted Chinese set of test_topics)."""
    from tests.participation.test_topics import ZH

    con = _consultation(env)
    for i, (text, _) in enumerate(ZH):
        r = env.client.post(f"/consultations/{con['id']}/comments", json={"text": text},
                            headers=env.h("wang" if i % 2 else "li"))
        assert r.status_code == 201
    res = env.client.get(f"/consultations/{con['id']}/results?topics=2", headers=env.h("vera")).json()
    t = res["topics"]
    assert t["k"] == 2 and t["rule"] == "given" and t["answers"] == len(ZH)
    assert sum(x["share"] for x in t["topics"]) == pytest.approx(1.0)
    label = {ex: x["topic"] for x in t["topics"] for ex in x["examples"]}
    assert len(label) == 6 and {label[tx] for tx, y in ZH if tx in label and y == 0}.isdisjoint(
        {label[tx] for tx, y in ZH if tx in label and y == 1})
    assert {x["terms"][0][0] for x in t["topics"]} == {"停车", "公园"}
    assert env.client.get(f"/consultations/{con['id']}/results?topics=0", headers=env.h("vera")).status_code == 422
    # the free-text question with one answer has no topics, and says why
    q = next(x for x in res["questions"] if x["kind"] == "text")
    assert q["topics"]["topics"] == [] and "topics need" in q["topics"]["reason"]


def test_cases_listed_by_ngsi_ld_entities_masked_by_role(env: Env) -> None:
    """``GET /ngsi-ld/v1/entities`` lists complaints and comments after the sensors: type filter, id,
    georel, q, attrs, keyValues and paging over both, and ``/ngsi-ld/v1/entities/{id}`` reads one; the reporter's data masked for a viewer, shown to
    a steward (audited as case.read_personal), refused to a resident (the twin is internal)."""
    c = env.client
    sensor = {"id": "urn:ngsi-ld:AirQualityObserved:far", "type": "AirQualityObserved",
              "location": {"type": "Point", "coordinates": [116.3, 40.02]}, "observedAt": "2026-03-02T08:00:00Z",
              "pm25": 30.0}
    assert c.post("/ngsi-ld/v1/entities", json=sensor, headers=env.h("ops")).status_code == 201
    r = post311(env, "wang", service_code="noise", description="loud at night, call 13812345678", lat=39.9,
                long=116.4, phone="13812345678", first_name="Fang", last_name="Wang", email="fang@example.org")
    rid = r.json()[0]["service_request_id"]
    post311(env, "li", service_code="pothole", description="hole", lat=39.95, long=116.45)
    con = _consultation(env)
    area = {"type": "Polygon", "coordinates": [[[116.395, 39.901], [116.40, 39.901], [116.40, 39.905],
                                                [116.395, 39.901]]]}
    c.post(f"/consultations/{con['id']}/comments", json={"text": "keep the trees", "geometry": area},
           headers=env.h("li"))
    url = "/ngsi-ld/v1/entities"
    seen = c.get(url, headers=env.h("vera")).json()
    assert [e["type"] for e in seen] == ["AirQualityObserved", "ServiceRequest", "ServiceRequest",
                                         "ConsultationComment"]
    mine = next(e for e in seen if e["id"] == f"urn:ngsi-ld:ServiceRequest:{rid}")
    assert "13812345678" not in json.dumps(seen) and "fang@example.org" not in json.dumps(seen)
    assert set(mine["reporter"]["value"]) == {"name", "phone", "email"}
    assert mine["reporter"]["value"]["phone"] != "13812345678" and mine["reporter"]["value"]["phone"].endswith("5678")
    clear = c.get(f"{url}?type=ServiceRequest", headers=env.h("clerk")).json()
    assert [e["reporter"]["value"] for e in clear if e["id"].endswith(f":{rid}")] == [
        {"name": "Fang Wang", "phone": "13812345678", "email": "fang@example.org"}]
    audit = env.ws.catalog.audit_log()
    personal = [r["user"] for r in audit if r["action"] == "case.read_personal"]
    assert "clerk" in personal and "vera" not in personal
    assert any(r["user"] == "vera" and r["action"] == "twin.read" and r["outcome"] == "ok"
               and "GET /ngsi-ld/v1/entities" in r["detail"] for r in audit)
    assert c.get(url, headers=env.h("wang")).status_code == 403  # residents: the twin is internal
    # filters: type, id, georel near / within, q, attrs, keyValues
    assert [e["type"] for e in c.get(f"{url}?type=AirQualityObserved", headers=env.h("vera")).json()] == [
        "AirQualityObserved"]
    got = c.get(f"{url}?type=ConsultationComment", headers=env.h("vera")).json()
    assert [e["location"]["value"]["type"] for e in got] == ["Polygon"]
    near = c.get(url, params={"georel": "near;maxDistance==300", "geometry": "Point", "coordinates": "[116.4,39.9]"},
                 headers=env.h("vera")).json()
    assert [e["id"] for e in near] == [f"urn:ngsi-ld:ServiceRequest:{rid}", got[0]["id"]]  # the area is 110 m away
    within = c.get(url, params={"georel": "within", "geometry": "bbox", "coordinates": "[116.39,39.899,116.41,39.91]"},
                   headers=env.h("vera")).json()
    assert {e["id"] for e in within} == {f"urn:ngsi-ld:ServiceRequest:{rid}", got[0]["id"]}
    assert c.get(f"{url}?id=urn:ngsi-ld:ServiceRequest:{rid}", headers=env.h("vera")).json()[0]["id"].endswith(rid)
    one = c.get(f"{url}/urn:ngsi-ld:ServiceRequest:{rid}", headers=env.h("vera")).json()
    assert one["id"] == mine["id"] and one["reporter"] == mine["reporter"]
    one = c.get(f"{url}/urn:ngsi-ld:ServiceRequest:{rid}?options=keyValues", headers=env.h("clerk")).json()
    assert one["reporter"]["phone"] == "13812345678" and one["status"] == "assigned"
    assert c.get(f"{url}/urn:ngsi-ld:ServiceRequest:999", headers=env.h("vera")).status_code == 404
    assert len(c.get(f"{url}?type=ServiceRequest&q=escalation>=0", headers=env.h("vera")).json()) == 2
    assert c.get(f"{url}?type=ServiceRequest&q=escalation>0", headers=env.h("vera")).json() == []
    slim = c.get(f"{url}?type=ServiceRequest&attrs=status", headers=env.h("vera")).json()
    assert {tuple(sorted(e)) for e in slim} == {("id", "location", "status", "type")}
    kv = c.get(f"{url}?type=ServiceRequest&options=keyValues", headers=env.h("clerk")).json()
    assert {e["status"] for e in kv} == {"assigned"} and kv[0]["location"]["type"] == "Point"
    # paging runs over the sensors and the cases as one list
    pages = [c.get(f"{url}?limit=1&offset={i}", headers=env.h("vera")).json() for i in range(5)]
    assert [p[0]["id"] for p in pages[:4]] == [e["id"] for e in seen] and pages[4] == []
    assert [e["id"] for e in c.get(f"{url}?limit=2&offset=1", headers=env.h("vera")).json()] == [
        e["id"] for e in seen[1:3]]


def test_area_comments_are_validated(env: Env) -> None:
    """An area comment: rings closed, valid, at most 500 positions, inside the city and touching the
    plan; each refusal a 400 naming the field and what is wrong."""
    con = _consultation(env)
    url = f"/consultations/{con['id']}/comments"

    def post(coords: Any, kind: str = "Polygon") -> Any:
        return env.client.post(url, json={"text": "area", "geometry": {"type": kind, "coordinates": coords}},
                               headers=env.h("wang"))

    ok = [[116.395, 39.901], [116.40, 39.901], [116.40, 39.905], [116.395, 39.901]]
    r = post([ok])
    assert r.status_code == 201 and r.json()["geometry"]["type"] == "Polygon"
    assert post([[ok]], "MultiPolygon").status_code == 201
    cases = {
        "is not closed": [[*ok[:-1], [116.396, 39.902]]],
        "a ring needs at least 4": [[ok[0], ok[1], ok[0]]],
        "Self-intersection": [[[116.395, 39.901], [116.40, 39.905], [116.40, 39.901], [116.395, 39.905],
                               [116.395, 39.901]]],
        "outside the city": [[[121.5, 31.2], [121.6, 31.2], [121.6, 31.3], [121.5, 31.2]]],
        "does not touch the plan": [[[116.30, 39.95], [116.31, 39.95], [116.31, 39.96], [116.30, 39.95]]],
        "more than the 500 allowed": [[*[[116.395 + 0.00001 * i, 39.901 + 0.000001 * i * i] for i in range(501)],
                                        [116.395, 39.901]]],
        "needs at least one ring": [],
    }
    for why, coords in cases.items():
        r = post(coords)
        assert r.status_code == 400 and why in r.json()["detail"], (why, r.text)
    shown = env.client.get(f"{url.removesuffix('/comments')}/comments.geojson", headers=env.h("li")).json()
    assert [f["geometry"]["type"] for f in shown["features"]] == ["Polygon", "MultiPolygon"]
