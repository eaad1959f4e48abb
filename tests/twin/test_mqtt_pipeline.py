"""Issue 13: the MQTT ingest's batches. A burst is handed to the store at once when no batch is being stored
(``MqttIngest(min_batch=...)``), not after ``max_delay``; slower traffic is batched by time; and wherever the
batches end, the runtime stores over Mosquitto the history, live state and dead letters it stores in process."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from tests.twin.conftest import wait_until
from tests.twin.test_updates_columns import _poisoned  # the same poisoned messages

from citytwin.foundation.mqtt import MqttIngest, MqttPublisher
from citytwin.service.app import open_runtime
from citytwin.twin import entities as E
from citytwin.twin import feeds as F

needs_broker = pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                  reason="Mosquitto not installed (scripts/setup.sh --test installs it)")
STATIONS = [E.entity_id("AirQualityObserved", s) for s in ("A", "B", "C")]


def _messages() -> list[tuple[str, bytes]]:
    """20 days of three stations, 3 readings an hour, 4 station-hours a message, a third of them poisoned
    (implausible values, wrong units and types, unknown entities, future and ancient times, cut JSON)."""
    rng = random.Random(5)
    times = pd.date_range("2015-12-01", periods=480, freq="h", tz="UTC")
    long = pd.DataFrame([(e, "AirQualityObserved", p, t, rng.uniform(0, 400) * s if rng.random() > 0.1 else None, u)
                         for t in times for e in STATIONS
                         for p, u, s in (("pm25", "µg/m³", 1), ("pm10", "µg/m³", 1), ("co", "µg/m³", 10))],
                        columns=["entity", "type", "property", "time", "value", "unit"])
    return _poisoned([(tp, p) for _, tp, p in F.messages_from_long(long, per_message=4)], random.Random(2))


def _runtime(root: Path):
    rt = open_runtime(root)
    rt.register([E.Entity(e, "AirQualityObserved", 116.0 + i / 10, 39.9) for i, e in enumerate(STATIONS)])
    rt.enable_auto_alerts()
    return rt


def _snapshot(rt, *, alerts: bool = True) -> tuple:
    hist = rt.stores.history.query(entities=STATIONS)
    letters = rt.stores.deadletters.frame(limit=100_000)
    letters = letters.drop(columns=[c for c in ("id", "received_us", "received_at") if c in letters.columns])
    return (hist.reset_index(drop=True), rt.stores.state.query(ids=STATIONS),
            letters.sort_values(list(letters.columns), key=lambda c: c.astype(str)).reset_index(drop=True),
            [a.to_record() for a in rt.alerts.alerts()] if alerts else None,
            rt.alerts.store.query() if alerts and getattr(rt.alerts, "store", None) is not None else None)


def _same(a: tuple, b: tuple) -> None:
    pd.testing.assert_frame_equal(a[0], b[0])
    assert a[1] == b[1]
    pd.testing.assert_frame_equal(a[2], b[2])
    assert a[3] == b[3] and a[4] == b[4]


@pytest.mark.integration
@needs_broker
def test_the_runtime_stores_over_mqtt_what_it_stores_in_process(broker, tmp_path):
    """Through Mosquitto with the shipped wiring (a burst taken at ``min_batch``): every message acknowledged once,
    and the history, live state and dead letters equal those of the same messages ingested in process in batches of
    40 (alert events depend on where batches end: ``test_updates_columns`` compares them in process)."""
    host, port = broker
    msgs = _messages()
    ref = _runtime(tmp_path / "ref")
    for i in range(0, len(msgs), 40):
        ref.ingestor.ingest(msgs[i:i + 40], source="mqtt")
    want = _snapshot(ref, alerts=False)
    ref.close()
    rt = _runtime(tmp_path / "mqtt")
    pub = MqttPublisher(host, port, client_id="pipe-pub")
    try:
        rt.start_mqtt(host, port, client_id="pipe-ingest", max_batch=40, publish_alerts=False)
        assert rt.mqtt is not None and rt.mqtt.min_batch == 5
        for topic, payload in msgs:
            pub.publish(topic, payload)
        assert pub.wait_all(60)
        assert wait_until(lambda: rt.mqtt.stats.acked == len(msgs), 60), rt.mqtt.stats
        assert rt.mqtt.failure is None and rt.mqtt.stats.dropped_unacked == 0
        _same(_snapshot(rt, alerts=False), want)
    finally:
        pub.close()
        rt.close()


@pytest.mark.integration
@needs_broker
def test_a_burst_is_handed_off_at_min_batch_without_waiting_for_max_delay(broker):
    host, port = broker
    got: list[list[bytes]] = []
    ing = MqttIngest(host, port, lambda b: got.append([p for _, p in b]), topics=["pipe/#"], client_id="pipe-ingest",
                     max_batch=100, min_batch=3, max_delay=60.0).start()
    pub = MqttPublisher(host, port, client_id="pipe-pub")
    try:
        t0 = time.monotonic()
        for i in range(3):
            pub.publish("pipe/a", str(i).encode())
        assert wait_until(lambda: ing.stats.acked == 3, 20)
        assert time.monotonic() - t0 < 20 and [p for b in got for p in b] == [b"0", b"1", b"2"]
        pub.publish("pipe/a", b"3")  # fewer than min_batch: it waits for max_delay
        assert wait_until(lambda: ing.stats.received == 4, 20)
        time.sleep(0.5)
        assert ing.stats.acked == 3
    finally:
        ing.stop()
        pub.close()
