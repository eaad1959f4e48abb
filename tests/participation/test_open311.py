"""Open311 GeoReport v2 against the specification (https://wiki.open311.org/GeoReport_v2): the service
list and definitions, POST requests (form-encoded as the spec), GET requests with its filters, one
request's status; errors in the spec's format; HTML stored and returned as text."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from citytwin.foundation.cases import CaseStore
from citytwin.service.open311 import MAX_BODY, MAX_DESCRIPTION, make_router

BALTIMORE = (-76.72, 39.19, -76.52, 39.38)
SERVICES = [
    {"service_code": "pothole", "service_name": "Pothole", "description": "A hole in the road", "group": "streets",
     "keywords": ["road", "street"]},
    {"service_code": "streetlight", "service_name": "Street light out", "group": "streets"},
    {"service_code": "dumping", "service_name": "Illegal dumping", "group": "sanitation",
     "attributes": [{"code": "material", "required": True, "datatype": "singlevaluelist",
                     "description": "What was dumped", "values": [{"key": "tires", "name": "Tires"},
                                                                   {"key": "trash", "name": "Trash"}]}]},
]
SPEC_FIELDS = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
               "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
               "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"}


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.t


@pytest.fixture()
def env(workspace):  # type: ignore[no-untyped-def]
    workspace.add_user("open311", "public")
    workspace.add_user("clerk", "steward")
    clock = Clock()
    public = CaseStore.of(workspace.as_user("open311"), clock)
    staff = CaseStore.of(workspace.as_user("clerk"), clock)
    app = FastAPI()
    app.include_router(make_router(public, services=SERVICES, bbox=BALTIMORE,
                                   departments={"pothole": "Transportation", "streetlight": "Transportation",
                                                "dumping": "Solid Waste"},
                                   deadline_hours={"pothole": 48, "default": 72}))
    return TestClient(app), staff, clock


def post(client: TestClient, **form: Any) -> Any:
    return client.post("/open311/v2/requests.json", data={k: str(v) for k, v in form.items()})


def test_services(env) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = client.get("/open311/v2/services.json")
    assert r.status_code == 200
    lst = r.json()
    assert [s["service_code"] for s in lst] == ["pothole", "streetlight", "dumping"]
    for s in lst:
        assert set(s) == {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
    assert lst[2]["metadata"] is True and lst[0]["metadata"] is False and lst[0]["keywords"] == "road,street"
    d = client.get("/open311/v2/services/dumping.json").json()
    assert d["service_code"] == "dumping" and d["attributes"][0]["code"] == "material"
    assert d["attributes"][0]["required"] is True and d["attributes"][0]["order"] == 1
    assert client.get("/open311/v2/services/nope.json").status_code == 404


def test_post_get_filter_status(env) -> None:  # type: ignore[no-untyped-def]
    client, staff, clock = env
    r = post(client, service_code="pothole", lat=39.29, long=-76.61, description="Deep pothole",
             first_name="Ann", last_name="Lee", email="ann@example.org", phone="4105551234")
    assert r.status_code == 201
    body = r.json()
    assert set(body[0]) == {"service_request_id", "service_notice", "account_id"}
    rid = body[0]["service_request_id"]
    clock.t += timedelta(hours=2)
    r2 = post(client, service_code="dumping", address_string="100 N Holliday St", **{"attribute[material]": "tires"})
    assert r2.status_code == 201
    one = client.get(f"/open311/v2/requests/{rid}.json").json()
    assert len(one) == 1 and set(one[0]) == SPEC_FIELDS
    rec = one[0]
    assert rec["status"] == "open" and rec["agency_responsible"] == "Transportation"
    assert rec["lat"] == 39.29 and rec["long"] == -76.61 and rec["service_name"] == "Pothole"
    assert rec["requested_datetime"] == "2026-03-02T09:00:00+00:00"
    assert rec["expected_datetime"] == "2026-03-04T09:00:00+00:00"  # 48 h for potholes
    assert "ann@example.org" not in str(one)  # contact data is never returned
    # filters
    allr = client.get("/open311/v2/requests.json").json()
    assert [x["service_request_id"] for x in allr] == [r2.json()[0]["service_request_id"], rid]  # newest first
    assert [x["service_code"] for x in client.get("/open311/v2/requests.json?service_code=dumping").json()] == ["dumping"]
    q = "/open311/v2/requests.json?start_date=2026-03-02T10:00:00%2B00:00"
    assert [x["service_code"] for x in client.get(q).json()] == ["dumping"]
    q = "/open311/v2/requests.json?end_date=2026-03-02T10:00:00Z"
    assert [x["service_code"] for x in client.get(q).json()] == ["pothole"]
    assert len(client.get(f"/open311/v2/requests.json?service_request_id={rid}").json()) == 1
    # an official closes it: the status follows
    staff.set_status(int(rid), "in_progress")
    staff.set_status(int(rid), "resolved")
    assert client.get(f"/open311/v2/requests/{rid}.json").json()[0]["status"] == "closed"
    assert [x["service_request_id"] for x in client.get("/open311/v2/requests.json?status=closed").json()] == [rid]
    assert len(client.get("/open311/v2/requests.json?status=open").json()) == 1
    # JSON bodies are accepted too
    r3 = client.post("/open311/v2/requests.json", json={"service_code": "streetlight", "lat": 39.3, "long": -76.6,
                                                         "description": "dark"})
    assert r3.status_code == 201


def test_duplicate_notice(env) -> None:  # type: ignore[no-untyped-def]
    client, _, clock = env
    a = post(client, service_code="streetlight", lat=39.2900, long=-76.6100, description="light out").json()
    clock.t += timedelta(hours=1)
    b = post(client, service_code="streetlight", lat=39.2902, long=-76.6101, description="dark corner").json()
    assert b[0]["service_notice"] == f"duplicate of request {a[0]['service_request_id']}; linked"


@pytest.mark.parametrize("form,needle", [
    ({"service_code": "pothole", "lat": 40.7, "long": -74.0, "description": "x"}, "outside the city"),
    ({"service_code": "pothole", "description": "x"}, "a location is required"),
    ({"service_code": "nope", "lat": 39.29, "long": -76.61, "description": "x"}, "unknown service_code 'nope'"),
    ({"lat": 39.29, "long": -76.61, "description": "x"}, "service_code is required"),
    ({"service_code": "dumping", "lat": 39.29, "long": -76.61, "description": "x"}, "attribute[material] is required"),
    ({"service_code": "dumping", "lat": 39.29, "long": -76.61, "attribute[material]": "gold"}, "must be one of"),
    ({"service_code": "pothole", "lat": 39.29, "long": -76.61, "description": "x" * (MAX_DESCRIPTION + 1)},
     "the limit is 4000"),
    ({"service_code": "pothole", "lat": 39.29, "long": -76.61, "description": "x",
      "media_url": "https://e.org/" + "a" * 3000}, "media_url is longer"),
    ({"service_code": "pothole", "lat": "abc", "long": -76.61, "description": "x"}, "lat 'abc' is not a number"),
    ({"service_code": "pothole", "lat": "nan", "long": -76.61, "description": "x"}, "not a finite number"),
])
def test_errors_in_spec_format(env, form: dict[str, Any], needle: str) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = post(client, **form)
    assert r.status_code == 400
    err = r.json()
    assert isinstance(err, list) and set(err[0]) == {"code", "description"} and err[0]["code"] == 400
    assert needle in err[0]["description"]
    assert client.get("/open311/v2/requests.json").json() == []  # nothing stored


def test_other_errors(env) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = client.post("/open311/v2/requests.json", content=b"description=" + b"x" * (MAX_BODY + 10),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and r.json()[0]["code"] == 413
    assert client.get("/open311/v2/requests/999.json").json() == [{"code": 404, "description": "no service request '999'"}]
    assert client.get("/open311/v2/requests.json?status=maybe").json()[0]["code"] == 400
    assert client.get("/open311/v2/requests.json?start_date=yesterday").status_code == 400
    assert client.get("/open311/v2/requests.json?start_date=2026-03-02T10:00:00").status_code == 400  # no zone


def test_html_stored_as_text(env) -> None:  # type: ignore[no-untyped-def]
    client, staff, _ = env
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)> 路面塌陷'
    rid = post(client, service_code="pothole", lat=39.29, long=-76.61, description=evil).json()[0]["service_request_id"]
    r = client.get(f"/open311/v2/requests/{rid}.json")
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()[0]["description"] == evil  # exactly as sent, never rewritten or rendered
    assert staff.get(int(rid))["description"] == evil
