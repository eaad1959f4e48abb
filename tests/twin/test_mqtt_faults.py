"""Fault tests: broker restarted mid-stream; ingest process killed (SIGKILL) mid-stream and restarted.

In each case no observation acknowledged by the broker is lost and none is stored twice
(QoS 1 + persistent sessions + acknowledgement only after the durable write + the history
store's idempotent key). Data: one Beijing station (Dongsi), 2015-11-15 .. 2015-12-15
(720 station-hours, 8,640 readings).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from citytwin.foundation.mqtt import MqttPublisher
from citytwin.foundation.timeseries import HistoryStore
from citytwin.foundation.workspace import Workspace
from citytwin.service.app import open_runtime
from citytwin.twin import feeds as F

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "mosquitto.sh"
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                 reason="Mosquitto not installed (scripts/setup.sh --test installs it)")]


def _broker(cmd: str, d: Path) -> int | None:
    out = subprocess.run([str(SCRIPT), cmd, str(d)], check=True, capture_output=True, text=True).stdout.strip()
    return int(out) if cmd == "start" else None


@pytest.fixture()
def broker(tmp_path):
    d = tmp_path / "broker"
    port = _broker("start", d)
    yield "127.0.0.1", port, d
    subprocess.run([str(SCRIPT), "stop", str(d)], check=False)


@pytest.fixture(scope="module")
def dongsi(shared_data) -> tuple[pd.DataFrame, list]:
    w = pd.read_csv(shared_data / "air_beijing_multisite" / "PRSA_Data_Dongsi_20130301-20170228.csv")
    t = pd.to_datetime(w[["year", "month", "day", "hour"]])
    w = w[(t >= "2015-11-15") & (t < "2015-12-15")]
    long = F.beijing_long(w)
    return long, list(F.messages_from_long(long))


def wait_until(cond, timeout: float = 60.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _check_exact(h: HistoryStore, long: pd.DataFrame) -> None:
    c = h.count()
    assert c["rows"] == len(long)  # nothing lost, nothing twice
    assert c["values"] == int(long["value"].notna().sum())
    assert c["missing"] == int(long["value"].isna().sum())
    got = h.query(order="entity")
    exp = long.sort_values(["entity", "property", "time"]).reset_index(drop=True)
    exp_v = exp["value"].where(exp["property"] != "co", exp["value"] / 1000.0)  # CO is stored in mg/m³
    pd.testing.assert_series_equal(got["value"], exp_v, check_names=False, rtol=1e-12)


def test_broker_restart_mid_stream(broker, tmp_path, dongsi):
    host, port, bdir = broker
    long, msgs = dongsi
    rt = open_runtime(tmp_path / "twin")
    rt.register([F.beijing_entity("Dongsi")])
    rt.start_mqtt(host, port, client_id="fault-ingest", max_delay=0.05)
    pub = MqttPublisher(host, port, client_id="fault-replay")
    try:
        third = len(msgs) // 3
        for _, topic, payload in msgs[:third]:
            pub.publish(topic, payload)
        assert pub.wait_all(30)
        assert wait_until(lambda: rt.ingestor.totals.accepted > 0)
        # graceful restart: mosquitto saves sessions and queued messages to its persistence file
        _broker("stop", bdir)
        for _, topic, payload in msgs[third: 2 * third]:  # published while the broker is down: queued in paho
            pub.publish(topic, payload)
        time.sleep(0.5)
        assert _broker("start", bdir) == port
        for _, topic, payload in msgs[2 * third:]:
            pub.publish(topic, payload)
        assert pub.wait_all(60), "the broker did not acknowledge every message"
        assert wait_until(lambda: rt.stores.history.count()["rows"] >= len(long), timeout=60)
        time.sleep(0.5)  # let any redelivery land: it must not add rows
        assert rt.mqtt is not None and rt.mqtt.stats.reconnects >= 1
        _check_exact(rt.stores.history, long)
        rt.stores.history.compact()
        assert rt.stores.history.physical_rows() == len(long)
    finally:
        pub.close()
        rt.close()


def _ingest_proc(ws: Path, host: str, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "citytwin.cli.main", "twin", "ingest", "-w", str(ws), "--broker",
                          f"{host}:{port}", "--client-id", "kill-ingest", "--max-batch", "50",
                          "--max-delay", "0.05", *extra], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()  # printed once connected and subscribed (the session exists from then on)
    assert "ingesting from" in line, line
    return p


def _prepare_ws(tmp_path: Path) -> tuple[Path, HistoryStore]:
    ws = Workspace.init(tmp_path / "ws", owner="admin")
    rt = open_runtime(ws.root / "twin")
    rt.register([F.beijing_entity("Dongsi")])
    rt.close()
    return ws.root, HistoryStore(ws.root / "twin" / "history")


def test_ingest_killed_between_write_and_ack(broker, tmp_path, dongsi):
    """The ingest process SIGKILLs itself right after storing a batch, before acknowledging it:
    the broker redelivers that batch and the idempotent key stores it once."""
    host, port, _ = broker
    long, msgs = dongsi
    ws, h = _prepare_ws(tmp_path)
    p = _ingest_proc(ws, host, port, "--crash-after-batches", "3")
    pub = MqttPublisher(host, port, client_id="kill-replay-1")
    try:
        for _, topic, payload in msgs:
            pub.publish(topic, payload)
        assert pub.wait_all(60)
        assert p.wait(60) == -signal.SIGKILL
        stored_before = h.count()["rows"]
        assert 0 < stored_before < len(long)
        p = _ingest_proc(ws, host, port)  # restart: same persistent session
        assert wait_until(lambda: h.count()["rows"] >= len(long), timeout=90)
        time.sleep(0.5)
        _check_exact(h, long)
        # the batch stored before the crash was delivered again and written again: duplicates exist
        # on disk, yet every query counts them once; compaction removes them physically
        assert h.physical_rows() > len(long)
        h.compact()
        assert h.physical_rows() == len(long)
    finally:
        pub.close()
        p.send_signal(signal.SIGTERM)
        p.wait(20)


def test_ingest_sigkill_mid_stream_and_restart(broker, tmp_path, dongsi):
    host, port, _ = broker
    long, msgs = dongsi
    ws, h = _prepare_ws(tmp_path)
    p = _ingest_proc(ws, host, port)
    pub = MqttPublisher(host, port, client_id="kill-replay-2")
    try:
        n = len(msgs)
        for _, topic, payload in msgs[: n // 2]:
            pub.publish(topic, payload)
            time.sleep(0.0005)
        assert wait_until(lambda: h.count()["rows"] > 0, timeout=60)
        p.send_signal(signal.SIGKILL)  # mid-stream, wherever it is
        assert p.wait(10) == -signal.SIGKILL
        for _, topic, payload in msgs[n // 2:]:  # the stream goes on while ingest is down
            pub.publish(topic, payload)
        assert pub.wait_all(60)
        assert h.count()["rows"] < len(long)
        p = _ingest_proc(ws, host, port)
        assert wait_until(lambda: h.count()["rows"] >= len(long), timeout=90)
        time.sleep(0.5)
        _check_exact(h, long)
    finally:
        pub.close()
        p.send_signal(signal.SIGTERM)
        p.wait(20)
