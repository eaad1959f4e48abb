"""Issue 13: poison messages over a real Mosquitto broker are dead-lettered and acknowledged, and the
next good message is stored; a store failure that is not the message's fault stops ingest with a
clear error instead of taking redeliveries in a loop, and a restarted ingest says so (not "could
not connect")."""

from __future__ import annotations

import errno
import json
import shutil
import time
from pathlib import Path

import pytest

from citytwin.foundation.mqtt import IngestFailed, MqttIngest, MqttPublisher
from citytwin.service.app import open_runtime
from citytwin.twin import entities as E

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                 reason="Mosquitto not installed (scripts/setup.sh --test installs it)")]
TOPIC = "citytwin/AirQualityObserved/S1/attrs"
EID = E.entity_id("AirQualityObserved", "S1")


def wait_until(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def good(hour: int) -> bytes:
    return json.dumps({"observedAt": f"2015-12-01T{hour:02d}:00:00Z", "pm25": 100 + hour}).encode()


POISON = [
    (b'{"observedAt": "2015-12-01T00:00:00Z", "pm25": ' + b"9" * 401 + b"}", "implausible"),
    (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
    (b'{"observedAt": "0001-01-01T00:00:00+14:00", "pm25": 5}', "too_old"),
    (b'[{"id": "urn:ngsi-ld:AirQualityObserved:\\ud800", "observedAt": "2015-12-01T00:00:00Z", "pm25": 5}]',
     "bad_text"),
    (b'{"observedAt": "2015-12-01T00:00:00Z", "pm25": -50}', "implausible"),
    (b'{"observedAt": "1800-01-01T00:00:00Z", "pm25": 5}', "too_old"),
]


def test_poison_messages_are_dead_lettered_and_ingest_goes_on(broker, tmp_path):
    host, port = broker
    rt = open_runtime(tmp_path / "twin")
    rt.register([E.Entity(EID, "AirQualityObserved", 116.4, 39.9)])
    ing = rt.start_mqtt(host, port, client_id="poison-ingest", publish_alerts=False, max_delay=0.02)
    pub = MqttPublisher(host, port, client_id="poison-pub")
    try:
        for i, (payload, _) in enumerate(POISON):
            topic = "citytwin/batch" if payload.startswith(b'[{"id"') else TOPIC
            pub.publish(topic, payload)
            pub.publish(TOPIC, good(i))  # the next good message
        assert pub.wait_all(30)
        n = len(POISON)
        assert wait_until(lambda: ing.stats.acked == 2 * n), ing.stats
        counts = rt.stores.deadletters.counts()
        want: dict[str, int] = {}
        for _, reason in POISON:
            want[reason] = want.get(reason, 0) + 1
        assert counts == want
        df = rt.stores.history.query(entities=[EID], properties="pm25")
        assert sorted(df["value"].tolist()) == [100.0 + i for i in range(n)]
        assert ing.failure is None and ing.stats.received == 2 * n  # each one delivered once: nothing redelivered
    finally:
        pub.close()
        rt.close()


def test_store_failure_stops_ingest_with_a_clear_error(broker, tmp_path, monkeypatch):
    host, port = broker
    rt = open_runtime(tmp_path / "twin")
    rt.register([E.Entity(EID, "AirQualityObserved", 116.4, 39.9)])
    rt.start_mqtt(host, port, client_id="full-ingest", publish_alerts=False, max_delay=0.02)
    ing = rt.mqtt
    assert ing is not None
    real_append = rt.stores.history.append

    def disk_full(*a, **kw):  # simulated: the history folder's disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rt.stores.history, "append", disk_full)
    pub = MqttPublisher(host, port, client_id="full-pub")
    try:
        pub.publish(TOPIC, good(1))
        assert pub.wait_all(10)
        assert wait_until(lambda: ing.failure is not None, 15)
        assert "No space left on device" in str(ing.failure) and "twin folder is writable" in str(ing.failure)
        assert ing._thread is not None
        ing._thread.join(5)
        assert not ing._thread.is_alive()  # stopped, not spinning on redeliveries
        assert ing.stats.acked == 0 and ing.stats.received == 1
        assert rt.stores.deadletters.counts() == {}  # a good reading is not blamed
        # a restart while the disk is still full names the real problem, not "could not connect"
        rt.mqtt = None
        assert "No space left on device" in _restart(rt, host, port)
        # once the disk has room, a restart stores the message the broker kept
        monkeypatch.setattr(rt.stores.history, "append", real_append)
        rt.mqtt = None
        ing2 = rt.start_mqtt(host, port, client_id="full-ingest", publish_alerts=False, max_delay=0.02)
        assert wait_until(lambda: ing2.stats.acked >= 1)
        assert rt.stores.history.query(entities=[EID])["value"].tolist() == [101.0]
    finally:
        pub.close()
        rt.close()


def _restart(rt, host: str, port: int) -> str:
    """Start ingest again; it either fails at once with the store's error or reports it soon after."""
    try:
        ing = rt.start_mqtt(host, port, client_id="full-ingest", publish_alerts=False, max_delay=0.02)
    except IngestFailed as exc:
        return str(exc)
    assert wait_until(lambda: ing.failure is not None, 15)
    assert ing.stats.acked == 0
    rt.mqtt = None
    return str(ing.failure)


def test_restart_after_a_store_failure_reports_it(broker, tmp_path):
    """MqttIngest.start() waits for the subscription or a failure, whichever comes first."""
    host, port = broker
    seen: list[int] = []

    def handler(batch):
        seen.append(len(batch))
        raise PermissionError(errno.EROFS, "Read-only file system")

    pub = MqttPublisher(host, port, client_id="ro-pub")
    first = MqttIngest(host, port, lambda b: None, client_id="ro-ingest").start()
    first.stop()  # the session exists now: the broker queues for it
    pub.publish(TOPIC, good(2))
    assert pub.wait_all(10)
    ing = MqttIngest(host, port, handler, client_id="ro-ingest", max_delay=0.01, store_retries=1)
    try:  # the redelivery may come before or after the SUBACK: either way no "could not connect"
        ing.start(wait_connected=15)
    except IngestFailed as exc:
        assert "Read-only file system" in str(exc)
    assert wait_until(lambda: ing.failure is not None, 15)
    assert "Read-only file system" in str(ing.failure)
    assert ing._thread is not None
    ing._thread.join(5)
    assert not ing._thread.is_alive() and seen == [1, 1]  # one try and one retry, then it stopped
    pub.close()
