"""The MQTT ingest's chunked reader (``foundation.mqtt._ReceiveClient``) against paho's own reader.

A stream of packets — QoS 1 PUBLISHes without properties (the short path), QoS 1 with properties, QoS 0, PINGRESP,
remaining lengths of 1 to 3 bytes, DUP and RETAIN flags — goes over a real socket pair cut at random places; the
messages delivered (message id, QoS, topic, payload, in order) must be the ones paho's decoder reads from the same
packets. ``ack_many`` must put on the wire exactly the bytes paho's ``ack`` puts there message by message. Over a
real Mosquitto, in plain TCP and in TLS (whose records cut the stream elsewhere): every message reaches the handler
once, in order, and is acknowledged (a second ingest on the same session gets nothing again).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from tests.twin.conftest import wait_until

from citytwin.foundation.mqtt import MqttAuth, MqttIngest, MqttPublisher, _ReceiveClient

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mosquitto.sh"
needs_broker = pytest.mark.skipif(
    (shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists()) or shutil.which("openssl") is None,
    reason="needs Mosquitto (scripts/setup.sh --test) and openssl")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def _publish(topic: str, payload: bytes, *, qos: int, mid: int, props: bytes = b"", dup: bool = False,
             retain: bool = False) -> bytes:
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + (struct.pack("!H", mid) if qos else b"") + _varint(len(props)) + props + payload
    return bytes([0x30 | (8 if dup else 0) | qos << 1 | (1 if retain else 0)]) + _varint(len(body)) + body


def _client(sock: socket.socket, got: list[tuple[int, int, str, bytes]]) -> _ReceiveClient:
    c = _ReceiveClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True)
    c._sock = sock
    c.on_message = lambda cl, u, m: got.append((m.mid, m.qos, m.topic, bytes(m.payload)))
    c.fast = lambda mid, topic, payload: got.append((mid, 1, topic, payload))
    return c


def _stream(rng: random.Random) -> tuple[bytes, list[tuple[int, int, str, bytes]]]:
    """Packets and the messages paho's decoder reads from them (PINGRESPs deliver nothing)."""
    packets, want = [], []
    for i in range(400):
        kind = rng.random()
        if kind < 0.05:
            packets.append(b"\xd0\x00")  # PINGRESP
            continue
        size = rng.choice([0, 1, 60, 120, 127, 128, 200, 7_800, 16_383, 16_384, 70_000, 300_000])
        payload = rng.randbytes(size)
        topic = rng.choice(["citytwin/batch", "citytwin/AirQualityObserved/Dongsi/attrs", "citytwin/站点/attrs", ""])
        topic = topic or "x"
        qos = 0 if kind < 0.15 else 1
        props = b""
        if 0.15 <= kind < 0.25:  # a user property (key "k", value "v"): not the short path
            props = b"\x26\x00\x01k\x00\x01v"
        pkt = _publish(topic, payload, qos=qos, mid=i % 65_535 + 1, props=props, dup=rng.random() < 0.1,
                       retain=rng.random() < 0.1)
        packets.append(pkt)
        head, rest = pkt[0], pkt[1:]
        while rest[0] & 128:
            rest = rest[1:]
        d = _packet.decode_publish(head, rest[1:], mqtt.MQTTv5)
        want.append((d.mid, d.qos, d.topic.decode(), bytes(d.payload)))
    return b"".join(packets), want


@pytest.mark.parametrize("seed", range(6))
def test_chunked_reader_delivers_what_paho_decodes(seed: int) -> None:
    rng = random.Random(seed)
    data, want = _stream(rng)
    a, b = socket.socketpair()
    a.setblocking(False)
    got: list[tuple[int, int, str, bytes]] = []
    c = _client(a, got)
    try:
        at = 0
        while at < len(data):
            n = rng.choice([1, 2, 3, 50, 1_000, 9_000, 100_000])
            b.sendall(data[at:at + n])
            at += n
            while (rc := c._packet_read()) == MQTTErrorCode.MQTT_ERR_SUCCESS:
                pass
            assert rc == MQTTErrorCode.MQTT_ERR_AGAIN
    finally:
        a.close()
        b.close()
    assert len(got) == len(want)
    assert got == want
    assert not c._rbuf  # every packet was complete: nothing left over


def test_reader_refuses_a_remaining_length_of_five_bytes() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    c = _client(a, [])
    try:
        b.sendall(b"\x32\xff\xff\xff\xff\x01")
        assert c._packet_read() == MQTTErrorCode.MQTT_ERR_PROTOCOL
        assert not c._rbuf
    finally:
        a.close()
        b.close()


def test_ack_many_writes_the_bytes_of_pahos_acks_in_order() -> None:
    mids = [1, 2, 255, 256, 4_096, 65_535, 7, 7, 300]
    wires = []
    for batch in (True, False):
        a, b = socket.socketpair()
        c = _client(a, [])
        try:
            if batch:
                assert c.ack_many(mids) == MQTTErrorCode.MQTT_ERR_SUCCESS
            else:
                for m in mids:
                    c.ack(m, 1)
            wires.append(b.recv(1 << 16))
        finally:
            a.close()
            b.close()
    assert wires[0] == wires[1] == b"".join(struct.pack("!BBH", 0x40, 2, m) for m in mids)


@pytest.mark.integration
@needs_broker
@pytest.mark.parametrize("tls", [False, True])
def test_every_message_through_a_real_broker_once_in_order(tmp_path: Path, tls: bool) -> None:
    d = tmp_path / "broker"
    plain = int(subprocess.run([str(SCRIPT), "start", str(d), "--tls"], check=True, capture_output=True,
                               text=True).stdout.strip())
    port = int((d / "tls_port").read_text()) if tls else plain
    auth = MqttAuth.from_env(tls_ca=str(d / "tls" / "ca.crt") if tls else None)
    rng = random.Random(5)
    sizes = [0, 1, 127, 128, 16_383, 16_384, 20_000, 70_000, 300_000] + [rng.randrange(9_000) for _ in range(600)]
    sent = [(f"t/{i % 3}", os.urandom(n)) for i, n in enumerate(sizes)]
    got: list[tuple[str, bytes]] = []
    batches: list[int] = []

    def handler(batch):  # type: ignore[no-untyped-def]
        batches.append(len(batch))
        got.extend(batch)

    ing = MqttIngest("127.0.0.1", port, handler, topics=["t/#"], client_id="rx-ingest", max_batch=50,
                     max_delay=0.01, auth=auth).start()
    pub = MqttPublisher("127.0.0.1", port, client_id="rx-pub", auth=auth)
    try:
        for i, (topic, payload) in enumerate(sent):
            if i == 7:  # one with a property (paho's own reader takes it) and one of QoS 0
                from paho.mqtt.packettypes import PacketTypes
                from paho.mqtt.properties import Properties
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.UserProperty = ("k", "v")
                pub.client.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)
            elif i == 8:
                pub.client.publish(topic, payload, qos=0)
                time.sleep(0.2)  # (QoS 0 has no acknowledgement to wait for: keep the order)
            else:
                pub.publish(topic, payload)
        assert pub.wait_all(60)
        assert wait_until(lambda: ing.stats.acked == len(sent)), ing.stats
        assert got == sent
        assert max(batches) <= 50 and ing.stats.received == len(sent) and not ing.stats.errors
    finally:
        ing.stop()
        pub.close()
    # everything was acknowledged: the session holds nothing to deliver again
    try:
        assert _redelivered(port, auth) == []
    finally:
        subprocess.run([str(SCRIPT), "stop", str(d)], check=False)


def _redelivered(port: int, auth: MqttAuth) -> list[tuple[str, bytes]]:
    """What a new ingest under the ingest's client id gets in its first second."""
    again: list[tuple[str, bytes]] = []
    ing2 = MqttIngest("127.0.0.1", port, again.extend, topics=["t/#"], client_id="rx-ingest", max_delay=0.01,
                      auth=auth).start()
    try:
        time.sleep(1.0)
    finally:
        ing2.stop()
    return again


@pytest.mark.integration
@needs_broker
def test_a_stop_waits_until_the_broker_has_taken_the_last_acknowledgements(tmp_path: Path) -> None:
    """The broker is frozen while the last batch is stored, so its PUBACKs wait unread in the socket when the
    ingest stops, and a new ingest under the same client id connects at once. Mosquitto lets the new connection
    take the session over and drops the old one's unread bytes: before the stop pinged the broker and waited for
    its answer (``MqttIngest._acks_taken``), 42–88 of 100 acknowledged messages came again here."""
    import signal
    import threading

    d = tmp_path / "broker"
    port = int(subprocess.run([str(SCRIPT), "start", str(d)], check=True, capture_output=True,
                              text=True).stdout.strip())
    pid = int((d / "mosquitto.pid").read_text())
    auth = MqttAuth.from_env()
    got: list[tuple[str, bytes]] = []
    frozen = threading.Event()

    def handler(batch):  # type: ignore[no-untyped-def]
        got.extend(batch)
        if len(got) >= 100 and not frozen.is_set():
            os.kill(pid, signal.SIGSTOP)  # the PUBACKs of this batch stay unread
            frozen.set()

    thaw = threading.Timer(0.5, os.kill, (pid, signal.SIGCONT))
    ing = MqttIngest("127.0.0.1", port, handler, topics=["t/#"], client_id="rx-ingest", max_batch=50,
                     max_delay=0.01, auth=auth).start()
    try:
        pub = MqttPublisher("127.0.0.1", port, client_id="rx-pub", auth=auth)
        for i in range(100):
            pub.publish("t/1", b"m%d" % i)
        assert pub.wait_all(30)
        pub.close()
        assert wait_until(lambda: ing.stats.acked == 100) and frozen.is_set()
        thaw.start()  # the broker wakes half a second into the stop
        ing.stop()
        assert _redelivered(port, auth) == []
    finally:
        thaw.cancel()
        os.kill(pid, signal.SIGCONT)
        subprocess.run([str(SCRIPT), "stop", str(d)], check=False)
