"""bench/twin_throughput.py: the raw subscriber of the ceiling leaves no session behind on the broker.

A persistent session that never expires, subscribed to ``citytwin/#``, left after the ceiling rounds had the
broker (scripts/mosquitto.sh: no cap on queued messages) keep every later message of the run for it, so its
persistence file grew by the whole feed and each autosave (every 30 s) stalled the broker for up to a second: the
soak's gap every ~31 s in the MQTT store thread (docs/twin.md, "Session 16: the store thread's gap every ~31 s")."""

from __future__ import annotations

import multiprocessing as mp
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from citytwin.foundation.mqtt import SESSION_NEVER_EXPIRES, MqttAuth, MqttPublisher

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _session_present(host: str, port: int, cid: str) -> bool:
    """Connect as ``cid`` without a clean start and say whether the broker still held a session for it (the
    CONNACK's flag); the probe ends its own session as it leaves."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    sys.path.insert(0, str(BENCH))
    from twin_throughput import end_session

    flags: list[bool] = []
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    MqttAuth.from_env().apply(client)

    def on_connect(c: Any, u: Any, f: Any, r: Any, p: Any) -> None:
        flags.append(bool(f.session_present))
        connected.set()

    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_NEVER_EXPIRES
    client.connect(host, port, keepalive=30, clean_start=False, properties=props)
    client.loop_start()
    try:
        assert connected.wait(30), "no CONNACK"
    finally:
        end_session(client)
        client.loop_stop()
    return flags[0]


@pytest.mark.timeout(120)
def test_raw_subscriber_ends_its_session(broker: tuple[str, int]) -> None:
    sys.path.insert(0, str(BENCH))
    import twin_throughput as tt

    host, port = broker
    ctx = mp.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    got, t_last = ctx.Value("q", 0, lock=False), ctx.Value("d", 0.0, lock=False)
    sub = ctx.Process(target=tt._raw_subscriber, args=(host, port, "raw-sub", ready, got, t_last, stop))
    sub.start()
    try:
        assert ready.wait(30), "the raw subscriber did not subscribe"
        pub = MqttPublisher(host, port, client_id="raw-session-pub")  # something for it to count while it is on
        pub.publish("citytwin/batch", b"{}")
        assert pub.wait_all(30)
        pub.close()
    finally:
        stop.set()
        sub.join(30)
    assert sub.exitcode == 0
    assert got.value == 1
    # after it: messages published now would be queued for a session left behind
    assert not _session_present(host, port, "raw-sub"), "the raw subscriber left its session on the broker"


@pytest.mark.timeout(120)
def test_probe_sees_a_session_left_behind(broker: tuple[str, int]) -> None:
    """The probe above can fail: a client that only disconnects leaves its never-expiring session."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    host, port = broker
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="left-behind", protocol=mqtt.MQTTv5)
    MqttAuth.from_env().apply(client)
    client.on_connect = lambda c, u, f, r, p: c.subscribe("citytwin/#", qos=1)
    client.on_subscribe = lambda c, u, mid, r, p: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_NEVER_EXPIRES
    client.connect(host, port, keepalive=30, clean_start=False, properties=props)
    client.loop_start()
    assert subscribed.wait(30)
    client.disconnect()
    client.loop_stop()
    assert _session_present(host, port, "left-behind")
