"""Two MQTT ingests with one client id (one account on a broker that ties client ids to usernames, or one
``--client-id``): Mosquitto 2.0 closes the older connection without a reason code and each client's reconnect,
0.1 s later, takes the session back. Before, they did so ~10 times a second, each time two audit rows (connect,
lost connection) and the pending batch dropped, and nothing said why. Now the ingest says it once
(``mqtt.takeover``, in its errors and the log) and waits ``TAKEOVER_BACKOFF`` s before each reconnect until a
connection lasts."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from citytwin.foundation import mqtt as M
from citytwin.foundation.mqtt import MqttAuth, MqttIngest

needs_broker = pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                  reason="Mosquitto not installed (scripts/setup.sh --test installs it)")
LOST = SimpleNamespace(is_failure=True, value=128, __str__=lambda self: "Unspecified error")
OK = SimpleNamespace(is_failure=False)


def test_short_connections_in_a_row_are_said_once() -> None:
    """The streak by an injected clock (no broker): three connections ended within TAKEOVER_S make one
    ``mqtt.takeover`` row; one that lasts ends the streak; a fourth short one in the same streak says nothing new."""
    rows: list[tuple[str, str]] = []
    m = MqttIngest("127.0.0.1", 1, lambda b: None, client_id="twin", auth=MqttAuth("ingest", "pw"),
                   on_event=lambda a, o, u, d: rows.append((a, o)))
    now = [100.0]
    m.clock = lambda: now[0]

    def cycle(lasting: float) -> None:
        m._on_connect(m.client, None, None, OK, None)
        now[0] += lasting
        m._on_disconnect(m.client, None, None, LOST, None)
        now[0] += 0.1

    for _ in range(2):
        cycle(0.2)
    assert ("mqtt.takeover", "error") not in rows and m._short == 2
    cycle(M.TAKEOVER_S + 1)  # lasted: the streak starts again
    assert m._short == 0
    for _ in range(M.TAKEOVER_RUN + 1):
        cycle(0.2)
    assert rows.count(("mqtt.takeover", "error")) == 1
    assert m._short == M.TAKEOVER_RUN + 1 and "client id 'twin'" in m.stats.errors[-1]


@needs_broker
def test_two_ingests_with_one_client_id_back_off_and_say_why(broker: tuple[str, int]) -> None:
    host, port = broker
    rows: list[list[tuple[str, str, float]]] = [[], []]
    ings = [MqttIngest(host, port, lambda b: None, topics=["takeover/#"], client_id="same-ingest",
                       on_event=lambda a, o, u, d, i=i: rows[i].append((a, o, time.monotonic())))
            for i in range(2)]
    try:
        ings[0].start()
        t0 = time.monotonic()
        ings[1].start()
        time.sleep(8.0)
    finally:
        for m in ings:
            m.stop()
    connects = [r for rr in rows for r in rr if r[0] == "mqtt.connect" and r[2] >= t0]
    said = [r for rr in rows for r in rr if r[0] == "mqtt.takeover"]
    assert said, rows
    # without the back-off the two took the session from each other every ~0.1 s: 40-80 connects in 8 s
    assert len(connects) <= 16, len(connects)


@needs_broker
def test_a_refusing_broker_is_audited_once_and_retried_slowly(broker: tuple[str, int],
                                                              mqtt_dev_account: tuple[str, str]) -> None:
    """A server's ingest whose account the broker refuses (a wrong password, a revoked account) goes on trying in
    the background (``start(background=True)``). Before, each refused attempt also made an ``mqtt.disconnect`` row
    and a warning, which broke the refusals' run of identical rows, and the wait went back to 0.1 s after each
    attempt: ~20 audit rows a second. Now the refusal is one row and the attempts slow down to one every 2 s."""
    host, port = broker
    rows: list[tuple[str, str]] = []
    m = MqttIngest(host, port, lambda b: None, topics=["refused/#"], client_id="refused-ingest",
                   auth=MqttAuth(mqtt_dev_account[0], "not-the-password"),
                   on_event=lambda a, o, u, d: rows.append((a, o)))
    try:
        m.start(wait_connected=1.0, background=True)
        time.sleep(6.0)
        assert not m.connected and m.refused is not None and "Not authorized" in m.refused
    finally:
        m.stop()
    assert rows == [("mqtt.connect", "denied")], rows[:10]
