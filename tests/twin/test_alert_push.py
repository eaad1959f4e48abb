"""F3 alerts pushed to subscribers: MQTT (real Mosquitto), Server-Sent Events (a real uvicorn server),
and the lifecycle over HTTP (ack / resolve)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import uvicorn
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from citytwin.foundation.mqtt import MqttAuth
from citytwin.service.alerting import AlertHub, alert_topic
from citytwin.service.app import create_app, open_runtime
from citytwin.twin import feeds as F

HAVE_MOSQUITTO = shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()
DONGSI = F.beijing_entity("Dongsi").id
TIANTAN = F.beijing_entity("Tiantan").id


class Collector:
    """A plain MQTT subscriber (QoS 1) recording every message it receives."""

    def __init__(self, host: str, port: int, topic: str, client_id: str) -> None:
        self.got: list[tuple[str, dict, int, bool]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        MqttAuth.from_env().apply(self.c)  # the broker refuses anonymous clients
        self.c.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda c, u, m, r, p: self.ready.set()
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, json.loads(m.payload), m.qos, bool(m.retain)))
        self.c.connect(host, port)
        self.c.loop_start()
        assert self.ready.wait(10)

    def wait(self, n: int, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # anything extra (a duplicate) would arrive now
        return len(self.got) >= n

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.mark.integration
@pytest.mark.skipif(not HAVE_MOSQUITTO, reason="Mosquitto not installed (scripts/setup.sh --test installs it)")
def test_alerts_pushed_over_mqtt_once_per_transition(broker, twin_ws):
    host, port = broker
    rt = open_runtime(twin_ws.root)
    rt.register([F.beijing_entity("Dongsi"), F.beijing_entity("Tiantan")])
    sub = Collector(host, port, "citytwin/alerts/#", "test-alert-subscriber")
    rt.start_mqtt(host, port, client_id="alert-it-ingest")  # ingest + alert publishing on one broker
    try:
        with TestClient(create_app(runtime=rt), headers=twin_ws.headers("integrator")) as c:
            r = c.post("/twin/v1/alerts", json={"rule": "aqi_heavy_3h", "entity": DONGSI, "peak": 320.0,
                                                "at": "2015-12-01T03:00:00Z", "severity": "major"})
            assert r.status_code == 201, r.text
            aid = r.json()["alert"]["id"]
            r = c.post("/twin/v1/alerts", json={"rule": "aqi_heavy_3h", "entity": DONGSI, "peak": 350.0,
                                                "at": "2015-12-01T04:00:00Z"})
            assert r.status_code == 200 and r.json()["created"] is False  # deduplicated: an update event
            assert c.post(f"/twin/v1/alerts/{aid}/ack", json={"by": "duty officer",
                                                              "at": "2015-12-01T05:00:00Z"}).status_code == 200
            # a second alert (another entity) resolved without acknowledgement
            bid = c.post("/twin/v1/alerts", json={"rule": "aqi_heavy_3h", "entity": TIANTAN,
                                                  "at": "2015-12-01T06:00:00Z"}).json()["alert"]["id"]
            assert c.post(f"/twin/v1/alerts/{bid}/resolve", json={"at": "2015-12-01T07:00:00Z"}).status_code == 200
            assert c.post(f"/twin/v1/alerts/{aid}/resolve", json={"by": "system",
                                                                  "at": "2015-12-02T10:00:00Z"}).status_code == 200
            # a transition the lifecycle forbids is refused and pushes nothing
            assert c.post(f"/twin/v1/alerts/{aid}/ack", json={"by": "late"}).status_code == 409
        assert sub.wait(6)
        kinds = {aid: [], bid: []}
        for topic, rec, qos, retained in sub.got:
            assert qos == 1 and retained is False
            assert topic == alert_topic("aqi_heavy_3h", rec["alert"]["entity"])
            kinds[rec["alert"]["id"]].append(rec["kind"])
        assert kinds == {aid: ["open", "update", "ack", "resolve"], bid: ["open", "resolve"]}
        seqs = [rec["seq"] for _, rec, _, _ in sub.got]
        assert len(seqs) == len(set(seqs)) == 6  # exactly once per transition
        last = sub.got[-1][1]["alert"]
        assert (last["status"], last["acknowledged_by"], last["peak"]) == ("resolved", "duty officer", 350.0)
        # a late subscriber gets the retained last event of each rule x entity: the current state
        late = Collector(host, port, "citytwin/alerts/#", "test-alert-late")
        assert late.wait(2)
        assert sorted((r["alert"]["entity"], r["kind"], ret) for _, r, _, ret in late.got) == [
            (DONGSI, "resolve", True), (TIANTAN, "resolve", True)]
        late.close()
        # the ingest client (subscribed to citytwin/#) ignores the twin's own alert topics
        assert rt.stores.deadletters.counts() == {}
        assert rt.mqtt is not None and rt.mqtt.stats.received >= 6
    finally:
        sub.close()
        rt.close()
    # the alert book is saved: a restarted twin has both alerts, resolved
    again = AlertHub(twin_ws.root / "alerts.sqlite")
    assert sorted(a.status for a in again.book) == ["resolved", "resolved"]


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def _sse(lines: list[str]) -> list[dict]:
    events, cur = [], {}
    for line in lines:
        if not line:
            if "data" in cur:
                events.append(cur)
            cur = {}
        elif not line.startswith(":"):
            k, _, v = line.partition(": ")
            cur[k] = v
    return events


def test_alert_stream_sse_live_and_resume(twin_ws):
    rt = open_runtime(twin_ws.root)
    app = create_app(runtime=rt)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started
        lines: list[str] = []

        def read() -> None:
            with httpx.stream("GET", f"{base}/twin/v1/alerts/stream", params={"maxEvents": 3, "timeout": 20},
                              headers=twin_ws.headers("viewer"), timeout=30) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                lines.extend(r.iter_lines())

        reader = threading.Thread(target=read)
        reader.start()
        while not rt.alerts._listeners and time.monotonic() < deadline:  # the stream is connected
            time.sleep(0.01)
        with httpx.Client(base_url=base, headers=twin_ws.headers("integrator")) as c:
            aid = c.post("/twin/v1/alerts", json={"rule": "congestion", "entity": "urn:ngsi-ld:TrafficFlowObserved:n7",
                                                  "at": "2024-01-01T08:00:00Z"}).json()["alert"]["id"]
            assert c.post(f"/twin/v1/alerts/{aid}/ack", json={"by": "operator"}).status_code == 200
            assert c.post(f"/twin/v1/alerts/{aid}/resolve", json={"by": "operator"}).status_code == 200
        reader.join(30)
        ev = _sse(lines)
        assert [(e["event"], e["id"]) for e in ev] == [("open", "1"), ("ack", "2"), ("resolve", "3")]
        assert [json.loads(e["data"])["alert"]["status"] for e in ev] == ["open", "acknowledged", "resolved"]
        # a client that reconnects with Last-Event-ID gets exactly what it missed
        with httpx.stream("GET", f"{base}/twin/v1/alerts/stream", params={"maxEvents": 2, "timeout": 5},
                          headers={"Last-Event-ID": "1", **twin_ws.headers("viewer")}, timeout=30) as r:
            again = _sse(list(r.iter_lines()))
        assert [(e["event"], e["id"]) for e in again] == [("ack", "2"), ("resolve", "3")]
    finally:
        server.should_exit = True
        th.join(10)
        rt.close()


def test_alert_lifecycle_http_errors(twin_ws):
    rt = open_runtime(twin_ws.root)
    with TestClient(create_app(runtime=rt), headers=twin_ws.headers("integrator")) as c:
        aid = c.post("/twin/v1/alerts", json={"rule": "r", "entity": "e", "at": "2024-01-01T00:00:00Z"}) \
            .json()["alert"]["id"]
        assert c.post("/twin/v1/alerts/nope/ack", json={"by": "x"}).status_code == 404
        r = c.post(f"/twin/v1/alerts/{aid}/ack", json={"by": "x", "at": "2023-12-31T00:00:00Z"})
        assert r.status_code == 400  # before it opened
        # who acknowledged is required; without "by" it is the token's user (ops, the integrator)
        r = c.post(f"/twin/v1/alerts/{aid}/ack", json={})
        assert r.status_code == 200 and r.json()["acknowledged_by"] == "ops"
        assert c.post("/twin/v1/alerts", json={"rule": "r", "entity": "e", "colour": "red"}).status_code == 400
        assert c.post("/twin/v1/alerts", content=b"[1]").status_code == 400
        assert c.post(f"/twin/v1/alerts/{aid}/resolve", json={"by": "x"}).json()["status"] == "resolved"
        assert c.post(f"/twin/v1/alerts/{aid}/resolve", json={"by": "x"}).status_code == 409
        assert [a["id"] for a in c.get("/twin/v1/alerts", params={"status": "resolved"}).json()] == [aid]
        assert c.get("/twin/v1/alerts", params={"status": "bogus"}).status_code == 400
        assert c.get(f"/twin/v1/alerts/{aid}").json()["resolved_by"] == "x"
        # the stream's backlog through TestClient (which reads a response to its end): since=0, 3 events
        r = c.get("/twin/v1/alerts/stream", params={"since": 0, "maxEvents": 3})
        assert [e["event"] for e in _sse(r.text.splitlines())] == ["open", "ack", "resolve"]
    rt.close()


def test_alert_push_payload_is_the_event_record_as_json():
    """MqttAlertPush encodes with orjson (the ingest's hot path) and with json where orjson cannot: the payload
    decodes to the record either way, numpy numbers as numbers, and a NaN as null (valid JSON, where json.dumps
    would write the invalid token NaN)."""
    import decimal

    import numpy as np

    from citytwin.workflows.alerting import MqttAlertPush

    sent: list[tuple[str, bytes]] = []

    class Pub:
        def publish(self, topic, payload, qos=0, retain=False):
            sent.append((topic, payload))

    push = MqttAlertPush(Pub())
    rec = {"seq": 3, "kind": "open", "alert": {"rule": "pm25_high", "entity": "urn:x:站点", "peak": np.float64(151.5),
                                               "steps": np.int64(4), "data": {"threshold": 150.0, "spread": float("nan")}}}
    push(rec)
    topic, payload = sent[0]
    assert topic == alert_topic("pm25_high", "urn:x:站点")
    got = json.loads(payload)
    assert got["alert"]["peak"] == 151.5 and got["alert"]["steps"] == 4 and got["alert"]["entity"] == "urn:x:站点"
    assert got["alert"]["data"] == {"threshold": 150.0, "spread": None}
    # what orjson refuses and json writes (an integer beyond 64 bits) goes through json
    push({"seq": 4, "kind": "update", "alert": {"rule": "r", "entity": "e", "count": 2**70}})
    assert json.loads(sent[1][1])["alert"]["count"] == 2**70
    # what neither writes raises: the hub records it as a push error and the lifecycle goes on
    with pytest.raises(TypeError):
        push({"seq": 5, "kind": "update", "alert": {"rule": "r", "entity": "e", "peak": decimal.Decimal("1.5")}})
    assert push.sent == 2
