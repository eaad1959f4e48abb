"""``citytwin doctor``'s broker check on a broker that ties client ids to usernames (real Mosquitto, the
workspace's accounts): run with the ingest's own credentials it must not discard the ingest's session (a clean
start did: the readings queued while the ingest was stopped were lost), and with a ``monitor`` account it reads the
broker's statistics and warns about messages queued for disconnected persistent sessions."""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tests.twin.test_mqtt_security import (
    DONGSI,
    SCRIPT,
    _start_ingest,
    _wait,
    creds,
    needs_broker,
    reading,
    run,
)
from tests.twin.test_mqtt_security import secure as secure
from typer.testing import CliRunner

from citytwin.cli.main import app as cli
from citytwin.foundation.mqtt import SESSION_NEVER_EXPIRES, MqttPublisher
from citytwin.twin import entities as E
from citytwin.workflows.doctor import check_broker


def _rows(s: dict[str, Any]) -> int:
    return int(s["rt"].stores.history.count()["rows"])


def _doctor(s: dict[str, Any]) -> dict[str, Any]:
    r = CliRunner().invoke(cli, ["doctor", "--broker", f"mqtt://127.0.0.1:{s['port']}", "--json", "--timeout", "5"])
    return {c["name"]: c for c in json.loads(r.stdout)["checks"]}["mqtt"]


@pytest.mark.integration
@needs_broker
def test_doctor_with_the_ingests_account_keeps_its_session(secure: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    c = secure["creds"]
    monkeypatch.setenv("CITYTWIN_MQTT_USERNAME", c["citytwin-ingest"].username or "")  # as citytwin.env sets it
    monkeypatch.setenv("CITYTWIN_MQTT_PASSWORD", c["citytwin-ingest"].password or "")
    monkeypatch.delenv("CITYTWIN_MQTT_MONITOR_USERNAME", raising=False)
    pub = MqttPublisher("127.0.0.1", secure["port"], client_id="x", auth=c["citytwin-replay"])
    ingest = _start_ingest(secure)
    pub.publish(E.topic_for(DONGSI), reading(DONGSI, 0, 1.0))
    assert pub.wait_all(10) and _wait(lambda: _rows(secure) == 1)
    ingest.stop()
    for h in range(1, 6):  # queued in the ingest's session while it is stopped
        pub.publish(E.topic_for(DONGSI), reading(DONGSI, h, float(h)))
    assert pub.wait_all(10)
    check = _doctor(secure)
    ingest = _start_ingest(secure)
    assert _wait(lambda: _rows(secure) == 6), _rows(secure)  # the doctor's clean start had left 1
    assert check["status"] == "warn" and "already had a session" in check["detail"]
    assert "--service monitor" in check["fix"]
    # with the ingest running: it is disconnected for a moment and comes back; nothing is lost
    check = _doctor(secure)
    assert check["status"] == "warn"
    # the ingest's side: the lost connection audited (then it reconnected)
    assert _wait(lambda: any(r["action"] == "mqtt.disconnect" and "connection lost" in r["detail"]
                             for r in secure["catalog"].audit_log(dataset="twin")), 10)
    for h in range(6, 10):
        pub.publish(E.topic_for(DONGSI), reading(DONGSI, h, float(h)))
    assert pub.wait_all(10)
    assert _wait(lambda: _rows(secure) == 10), _rows(secure)
    ingest.stop()
    pub.close()


@pytest.mark.integration
@needs_broker
def test_doctor_with_a_monitor_account_sees_an_abandoned_session(secure: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ws = secure["ws"]
    run("twin", "devices", "add", "--service", "monitor", "-w", ws, "-u", "admin", "--json")
    mon = creds(ws, "citytwin-monitor")
    run("twin", "devices", "broker-files", "--out", str(secure["auth_dir"]), "-w", ws, "-u", "admin")
    subprocess.run([str(SCRIPT), "reload", str(secure["broker_dir"])], check=True)
    monkeypatch.setenv("CITYTWIN_MQTT_MONITOR_USERNAME", mon.username or "")
    monkeypatch.setenv("CITYTWIN_MQTT_MONITOR_PASSWORD", mon.password or "")
    monkeypatch.setenv("CITYTWIN_MQTT_USERNAME", secure["creds"]["citytwin-ingest"].username or "")
    url = f"mqtt://127.0.0.1:{secure['port']}"
    assert _wait(lambda: check_broker(url, timeout=5).status == "ok"
                 and "as citytwin-monitor" in check_broker(url, timeout=5).detail, 10)
    check = check_broker(url, timeout=5)
    assert "messages queued or in flight" in check.detail and "0 disconnected clients" in check.detail
    # a cleared user subscribes with a session that never expires, and goes away: messages pile up for it
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_NEVER_EXPIRES
    cl = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="vera", protocol=mqtt.MQTTv5)
    secure["creds"]["vera"].apply(cl)
    cl.connect("127.0.0.1", secure["port"], clean_start=False, properties=props)
    cl.loop_start()
    assert _wait(cl.is_connected, 10)
    cl.subscribe("citytwin/#", qos=1)
    time.sleep(0.5)
    cl.disconnect()
    cl.loop_stop()
    pub = MqttPublisher("127.0.0.1", secure["port"], client_id="x", auth=secure["creds"]["citytwin-replay"])
    for h in range(30):
        pub.publish(E.topic_for(DONGSI), reading(DONGSI, h % 24, float(h)))
    assert pub.wait_all(10)
    pub.close()
    # the broker publishes its statistics every 10 s (sys_interval)
    assert _wait(lambda: check_broker(url, timeout=5, queue_warn=30).status == "warn", 25)
    check = check_broker(url, timeout=5, queue_warn=30)
    away = re.search(r"(\d+) disconnected clients with persistent sessions", check.detail)
    assert away is not None and int(away.group(1)) >= 1  # vera (and the publisher's session, which holds nothing)
    assert "persistent_client_expiration" in (check.fix or "")
    assert check_broker(url, timeout=5, queue_warn=10_000).status == "ok"  # below the bound: said, not warned
