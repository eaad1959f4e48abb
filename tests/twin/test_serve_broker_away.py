"""A server with a broker (``citytwin serve --broker``, the deployment's one live process) whose broker is away
when it starts: before, the app's start failed ("Application startup failed", a traceback on the terminal) and the
API did not serve; now it serves, ``/health`` says the ingest is not connected, and the ingest (and the alerts'
publisher) connect when the broker answers: readings published then are stored, their alerts raised and pushed,
and the API acknowledges them (one process holds the twin's alerts)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.twin.conftest import wait_until
from tests.twin.test_alert_push import HAVE_MOSQUITTO, Collector

from citytwin.foundation.mqtt import MqttPublisher
from citytwin.service.app import create_app
from citytwin.twin import entities as E

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mosquitto.sh"
EID = E.entity_id("AirQualityObserved", "Dongsi")


@pytest.mark.integration
@pytest.mark.skipif(not HAVE_MOSQUITTO, reason="Mosquitto not installed (scripts/setup.sh --test installs it)")
def test_the_api_serves_while_the_broker_is_away_and_ingest_starts_when_it_answers(twin_ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    app = create_app(twin_ws.root, broker=("127.0.0.1", port), auto_alerts=True)
    bdir = tmp_path / "broker"
    try:
        with TestClient(app, headers=twin_ws.headers("integrator")) as c:  # the app starts: no broker on that port
            h = c.get("/health").json()
            assert h["mqtt"]["connected"] is False and h["mqtt"]["failure"] is None, h
            assert c.post("/ngsi-ld/v1/entities", json={"id": EID, "type": "AirQualityObserved",
                                                        "location": {"type": "Point", "coordinates": [116.4, 39.9]}}
                          ).status_code == 201
            subprocess.run([str(SCRIPT), "start", str(bdir), str(port)], check=True, capture_output=True)
            assert wait_until(lambda: c.get("/health").json()["mqtt"]["connected"], 30)
            alerts = Collector("127.0.0.1", port, "citytwin/alerts/#", "away-alerts")
            pub = MqttPublisher("127.0.0.1", port, client_id="away-pub")
            for h_ in range(3):  # AQI 500 for three hours: both default rules open
                pub.publish(E.topic_for(EID), json.dumps({"id": EID, "type": "AirQualityObserved",
                                                          "observedAt": f"2015-12-01T{h_:02d}:00:00+08:00",
                                                          "pm25": 480.0}).encode())
            assert pub.wait_all(10)
            pub.close()
            assert wait_until(lambda: c.get("/health").json()["accepted"] == 3, 20)
            opened = c.get("/twin/v1/alerts", params={"status": "open"}).json()
            assert {a["rule"] for a in opened} == {"aqi_severe_1h", "aqi_heavy_2h"}, opened
            assert alerts.wait(2), alerts.got  # pushed by the publisher that connected in the background
            alerts.close()
            r = c.post(f"/twin/v1/alerts/{opened[0]['id']}/ack", json={"by": "duty officer"})
            assert r.status_code == 200 and r.json()["status"] == "acknowledged", r.text
    finally:
        subprocess.run([str(SCRIPT), "stop", str(bdir)], check=False, capture_output=True)
