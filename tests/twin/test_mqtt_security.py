"""MQTT security over a real Mosquitto broker configured from the workspace's accounts.

Accounts are made with the CLI (`citytwin twin devices ...`), the broker is started by
``scripts/mosquitto.sh start DIR --auth AUTH --tls`` on the files `broker-files` writes (password
file of PBKDF2-SHA512 ``$7$`` hashes, ACL per account, anonymous off, client id = username), and
every check is a real client connecting, publishing or subscribing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from citytwin.cli.main import app as cli
from citytwin.foundation.mqtt import MqttAuth, MqttConnectError, MqttPublisher
from citytwin.foundation.mqtt_auth import MqttAccounts, hash_password, verify_password
from citytwin.service.app import open_runtime
from citytwin.twin import entities as E
from citytwin.twin import feeds as F

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "mosquitto.sh"
HAVE_MOSQUITTO = shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()
needs_broker = pytest.mark.skipif(not HAVE_MOSQUITTO or shutil.which("openssl") is None,
                                  reason="needs Mosquitto (scripts/setup.sh --test) and openssl")
DONGSI = E.entity_id("AirQualityObserved", "Beijing-Dongsi")
TIANTAN = E.entity_id("AirQualityObserved", "Beijing-Tiantan")


def reading(entity: str, hour: int, pm25: float) -> bytes:
    return json.dumps({"id": entity, "observedAt": f"2015-12-01T{hour:02d}:00:00+08:00",
                       "pm25": pm25}).encode()  # bare number: canonical µg/m³


def run(*args: str) -> Any:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    return r


def creds(ws: str, name: str) -> MqttAuth:
    out = json.loads(run("twin", "devices", "credentials", name, "-w", ws, "-u", "admin", "--json").stdout)
    assert set(out) == {"username", "password"}
    return MqttAuth(out["username"], out["password"])


class Client:
    """A plain paho MQTT v5 client that records the broker's answers."""

    def __init__(self, port: int, *, client_id: str = "", auth: MqttAuth | None = None) -> None:
        self.connack: Any = None
        self.suback: list[Any] | None = None
        self.got: list[tuple[str, bytes]] = []
        self.disconnected = threading.Event()
        self.answered = threading.Event()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if auth is not None:
            auth.apply(self.c)

        def on_connect(c: Any, u: Any, f: Any, reason: Any, p: Any) -> None:
            self.connack = reason
            self.answered.set()

        def on_subscribe(c: Any, u: Any, mid: int, reasons: Any, p: Any) -> None:
            self.suback = list(reasons)
            self.subscribed.set()

        self.c.on_connect = on_connect
        self.c.on_subscribe = on_subscribe
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        self.c.on_disconnect = lambda c, u, f, r, p: self.disconnected.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.answered.wait(10), "no CONNACK"

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def publish(self, topic: str, payload: bytes) -> Any:
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        return info

    def subscribe(self, topic: str) -> list[Any]:
        self.subscribed.clear()
        self.c.subscribe(topic, qos=1)
        assert self.subscribed.wait(10), "no SUBACK"
        assert self.suback is not None
        return self.suback

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_password_hash_is_mosquitto_format(tmp_path):
    """Our hash verifies mosquitto_passwd's, and has its shape ($7$, 101 iterations, 12-byte salt)."""
    h = hash_password("s3cret")
    parts = h.split("$")
    assert parts[1:3] == ["7", "101"] and len(parts[3]) == 16 and len(parts[4]) == 88
    assert verify_password("s3cret", h) and not verify_password("s3cret ", h)
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed")
    f = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", str(f), "u1", "s3cret"], check=True, capture_output=True)
    theirs = f.read_text().strip().split(":", 1)[1]
    assert verify_password("s3cret", theirs) and not verify_password("other", theirs)


def test_accounts_acl_and_password_file(twin_ws):
    accts = MqttAccounts(twin_ws.ws.catalog, actor="admin", actor_role="admin")
    accts.add_device(DONGSI)
    accts.add_service("ingest")
    accts.add_user("vera")      # viewer: cleared for the twin's default classification (internal)
    accts.add_user("resident")  # public: not cleared
    for a in accts.list():
        accts.issue(a.username)
    acl = accts.acl_file()
    blocks = {b.splitlines()[0]: b.splitlines()[1:] for b in acl.split("\n\n")[1:]}
    assert blocks == {"user citytwin-ingest": ["topic read citytwin/#"],
                      "user dev-AirQualityObserved-Beijing-Dongsi":
                          ["topic write citytwin/AirQualityObserved/Beijing-Dongsi/attrs"],
                      "user resident": ["# no topics"],
                      "user vera": ["topic read citytwin/#"]}
    # the public classification clears the public role too
    assert "user resident\ntopic read citytwin/#" in accts.acl_file(twin_classification="public")
    lines = accts.password_file().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["citytwin-ingest", "dev-AirQualityObserved-Beijing-Dongsi",
                                                  "resident", "vera"]
    assert all(ln.split(":", 1)[1].startswith("$7$101$") for ln in lines)
    accts.revoke("vera")
    assert "vera" not in accts.password_file() and "user vera" not in accts.acl_file()
    # names that would widen an ACL or break the files are refused
    from citytwin.foundation.errors import InputError

    for bad in ("urn:ngsi-ld:AirQualityObserved:a/#", "urn:ngsi-ld:AirQualityObserved:+",
                "urn:ngsi-ld:AirQualityObserved:x\ntopic readwrite #", "urn:ngsi-ld:Air Quality:x"):
        with pytest.raises(InputError):
            accts.add_device(bad)
    actions = [r["action"] for r in twin_ws.ws.catalog.audit_log(dataset="twin")]
    assert actions.count("mqtt.credentials.issue") == 4 and actions.count("mqtt.credentials.revoke") == 1
    assert actions.count("mqtt.account.add") == 4


def test_cli_errors_are_clean(twin_ws):
    ws = str(twin_ws.ws.root)
    r = CliRunner().invoke(cli, ["twin", "devices", "add", "Nowhere", "-w", ws, "-u", "admin"])
    assert r.exit_code == 2 and "no registered entity 'Nowhere'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["twin", "devices", "credentials", "Nowhere", "-w", ws, "-u", "admin", "--json"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["twin", "devices", "list", "-w", ws, "-u", "vera"])  # a viewer is no admin
    assert r.exit_code == 2


@pytest.fixture()
def secure(twin_ws, tmp_path):
    """Workspace accounts (2 devices, ingest, alerts, replay, vera, resident), a broker on their files
    with TLS, and the credentials issued through the CLI."""
    ws = str(twin_ws.ws.root)
    rt = open_runtime(twin_ws.root)
    rt.register([F.beijing_entity("Dongsi"), F.beijing_entity("Tiantan")])
    out = json.loads(run("twin", "devices", "add", "Dongsi", "Tiantan", "--service", "ingest", "--service",
                         "alerts", "--service", "publisher", "--ws-user", "vera", "--ws-user", "resident",
                         "-w", ws, "-u", "admin", "--json").stdout)
    assert [a["username"] for a in out] == ["dev-AirQualityObserved-Beijing-Dongsi",
                                            "dev-AirQualityObserved-Beijing-Tiantan", "citytwin-ingest",
                                            "citytwin-ingest-alerts", "citytwin-replay", "vera", "resident"]
    c = {name: creds(ws, name) for name in ("Dongsi", "Tiantan", "citytwin-ingest", "citytwin-ingest-alerts",
                                            "citytwin-replay", "vera", "resident")}
    listed = json.loads(run("twin", "devices", "list", "-w", ws, "-u", "admin", "--json").stdout)
    assert all(a["has_password"] for a in listed) and "$7$" not in json.dumps(listed)
    auth = tmp_path / "auth"
    run("twin", "devices", "broker-files", "--out", str(auth), "-w", ws, "-u", "admin")
    d = tmp_path / "broker"
    port = int(subprocess.run([str(SCRIPT), "start", str(d), "--auth", str(auth), "--tls"], check=True,
                              capture_output=True, text=True).stdout.strip())
    tls_port = int((d / "tls_port").read_text())
    try:
        yield {"rt": rt, "ws": ws, "catalog": twin_ws.ws.catalog, "port": port, "tls_port": tls_port,
               "ca": str(d / "tls" / "ca.crt"), "creds": c, "auth_dir": auth, "broker_dir": d}
    finally:
        rt.close()
        subprocess.run([str(SCRIPT), "stop", str(d)], check=False)


def _start_ingest(s: dict[str, Any]) -> Any:
    c = s["creds"]
    return s["rt"].start_mqtt("127.0.0.1", s["port"], client_id="citytwin-ingest", max_delay=0.02,
                              auth=c["citytwin-ingest"], alerts_auth=c["citytwin-ingest-alerts"])


def _wait(cond: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def _stored(s: dict[str, Any]) -> set[str]:
    return {e["id"] for e in s["rt"].stores.state.query() if e["attrs"]}


@pytest.mark.integration
@needs_broker
def test_without_credentials_nothing(secure):
    port = secure["port"]
    anon = Client(port, client_id="anon")
    assert not anon.accepted and str(anon.connack) == "Not authorized"
    anon.close()
    wrong = Client(port, client_id="x", auth=MqttAuth("citytwin-ingest", "guess"))
    assert not wrong.accepted
    wrong.close()
    with pytest.raises(MqttConnectError, match="refused the connection: Not authorized"):
        MqttPublisher("127.0.0.1", port, client_id="anon-pub", auth=MqttAuth())
    # a device, and a user whose role is not cleared for the twin, receive nothing on any subscription
    # (Mosquitto's acl_file grants the SUBACK and checks "read" on every delivery); a cleared viewer does
    c = secure["creds"]
    dev, res, vera = (Client(port, auth=c[n]) for n in ("Dongsi", "resident", "vera"))
    assert dev.accepted and res.accepted and vera.accepted
    for cl in (dev, res, vera):
        cl.subscribe("citytwin/#")
    dev.subscribe(E.topic_for(DONGSI))
    pub = MqttPublisher("127.0.0.1", port, client_id="ignored", auth=c["citytwin-replay"])
    pub.publish(E.topic_for(DONGSI), reading(DONGSI, 0, 1.0))
    pub.publish(E.topic_for(TIANTAN), reading(TIANTAN, 0, 1.0))
    assert pub.wait_all(10)
    pub.close()
    assert _wait(lambda: len(vera.got) == 2)
    time.sleep(0.3)
    assert dev.got == [] and res.got == []
    for cl in (dev, res):
        cl.close()
    # and a reader cannot publish: the broker drops the message and the connection
    vera.c.publish(E.topic_for(DONGSI), reading(DONGSI, 1, 2.0), qos=1)
    assert vera.disconnected.wait(5)
    vera.c.loop_stop()


@pytest.mark.integration
@needs_broker
def test_device_publishes_only_its_own_topics(secure):
    m = _start_ingest(secure)
    vera = Client(secure["port"], auth=secure["creds"]["vera"])  # a viewer reads every reading
    assert not any(r.is_failure for r in vera.subscribe("citytwin/#"))
    dongsi_topic, tiantan_topic = E.topic_for(DONGSI), E.topic_for(TIANTAN)
    dev = Client(secure["port"], auth=secure["creds"]["Dongsi"])
    dev.publish(dongsi_topic, reading(DONGSI, 0, 10.0))
    assert _wait(lambda: m.stats.acked >= 1)
    dev.close()
    # another station's topic, the batch topic (which carries any entity's id), the alerts topic:
    # Mosquitto (2.0.11) drops each and closes the device's connection
    for topic, payload in ((tiantan_topic, reading(TIANTAN, 0, 999.0)),
                           ("citytwin/batch", json.dumps([json.loads(reading(TIANTAN, 1, 999.0))]).encode()),
                           ("citytwin/alerts/fake/x", b"{}")):
        bad = Client(secure["port"], auth=secure["creds"]["Dongsi"])
        bad.c.publish(topic, payload, qos=1)
        assert bad.disconnected.wait(5), topic
        bad.c.loop_stop()
    dev = Client(secure["port"], auth=secure["creds"]["Dongsi"])
    dev.publish(dongsi_topic, reading(DONGSI, 1, 11.0))                     # sentinel
    assert _wait(lambda: m.stats.acked >= 2)
    time.sleep(0.3)
    assert m.stats.received == 2                          # nothing else reached the ingest
    assert _stored(secure) == {DONGSI}
    assert [t for t, _ in vera.got] == [dongsi_topic, dongsi_topic]
    # the replay account may publish any station's readings
    pub = MqttPublisher("127.0.0.1", secure["port"], client_id="ignored", auth=secure["creds"]["citytwin-replay"])
    pub.publish(tiantan_topic, reading(TIANTAN, 2, 20.0))
    assert pub.wait_all(10)
    pub.close()
    assert _wait(lambda: _stored(secure) == {DONGSI, TIANTAN})
    dev.close()
    vera.close()
    audit = secure["catalog"].audit_log(dataset="twin")
    ok = {(r["action"], r["user"]) for r in audit if r["outcome"] == "ok"}
    assert ("mqtt.connect", "citytwin-ingest") in ok and ("mqtt.subscribe", "citytwin-ingest") in ok


@pytest.mark.integration
@needs_broker
def test_ingest_client_id_cannot_be_taken(secure):
    m = _start_ingest(secure)
    port = secure["port"]
    # without credentials, or with the ingest's name and a wrong password: refused
    for auth in (None, MqttAuth("citytwin-ingest", "guess")):
        refused = Client(port, client_id="citytwin-ingest", auth=auth)
        assert not refused.accepted
        refused.c.loop_stop()
    # a valid device account asking for the ingest's id gets its own (its username) instead: the
    # ingest stays connected, keeps its session and receives what follows; the intruder gets nothing
    thief = Client(port, client_id="citytwin-ingest", auth=secure["creds"]["Tiantan"])
    assert thief.accepted
    dev = Client(port, auth=secure["creds"]["Dongsi"])
    for h in range(5):
        dev.publish(E.topic_for(DONGSI), reading(DONGSI, h, 10.0 + h))
    assert _wait(lambda: m.stats.acked >= 5)
    time.sleep(0.3)
    assert m.stats.received == 5 and m.stats.reconnects == 0 and not m.stats.errors
    assert thief.got == [] and not thief.disconnected.is_set()
    connects = [r for r in secure["catalog"].audit_log(dataset="twin") if r["action"] == "mqtt.connect"]
    assert len(connects) == 1                 # the ingest connected once and was never displaced
    thief.close()
    dev.close()
    # the broker never closed an existing session for a newcomer
    assert "already connected" not in (secure["broker_dir"] / "mosquitto.log").read_text()


@pytest.mark.integration
@needs_broker
def test_tls_and_revocation(secure):
    m = _start_ingest(secure)
    c = secure["creds"]["Dongsi"]
    tls = MqttAuth(c.username, c.password, tls_ca=secure["ca"])
    pub = MqttPublisher("127.0.0.1", secure["tls_port"], client_id="d", auth=tls)
    pub.publish(E.topic_for(DONGSI), reading(DONGSI, 3, 30.0))
    assert pub.wait_all(10)
    pub.close()
    assert _wait(lambda: m.stats.acked >= 1)
    # plaintext to the TLS port fails; TLS to the plaintext port fails
    with pytest.raises(MqttConnectError):
        MqttPublisher("127.0.0.1", secure["tls_port"], client_id="d", auth=c)
    with pytest.raises(MqttConnectError):
        MqttPublisher("127.0.0.1", secure["port"], client_id="d", auth=tls)
    # revoke the device, rewrite the files, reload the broker: refused from now on
    run("twin", "devices", "revoke", "Dongsi", "-w", secure["ws"], "-u", "admin", "--write", str(secure["auth_dir"]))
    subprocess.run([str(SCRIPT), "reload", str(secure["broker_dir"])], check=True)
    tried: list[Client] = []  # closed at the end: a refused client's network thread would keep reconnecting

    def refused() -> bool:
        tried.append(Client(secure["port"], auth=c))
        return not tried[-1].accepted

    try:
        assert _wait(refused, timeout=5)
    finally:
        for cl in tried:
            cl.close()
    actions = [(r["action"], r["outcome"]) for r in secure["catalog"].audit_log(dataset="twin")]
    assert ("mqtt.credentials.revoke", "ok") in actions and ("mqtt.credentials.issue", "ok") in actions


@pytest.mark.integration
@needs_broker
def test_ingest_refused_is_a_clear_error(twin_ws, tmp_path):
    """With a wrong password the broker refuses the ingest: a clear error, audited as denied."""
    d = tmp_path / "broker"
    port = int(subprocess.run([str(SCRIPT), "start", str(d)], check=True, capture_output=True,
                              text=True).stdout.strip())  # the single test account of conftest
    rt = open_runtime(twin_ws.root)
    try:
        with pytest.raises(MqttConnectError, match="Not authorized"):
            rt.start_mqtt("127.0.0.1", port, client_id="x", auth=MqttAuth("citytwin-test", "wrong"),
                          publish_alerts=False)
        denied = [r for r in twin_ws.ws.catalog.audit_log(dataset="twin")
                  if r["action"] == "mqtt.connect" and r["outcome"] == "denied"]
        assert denied and denied[0]["user"] == "citytwin-test"
    finally:
        rt.close()
        subprocess.run([str(SCRIPT), "stop", str(d)], check=False)


@pytest.mark.integration
@needs_broker
def test_cli_replay_over_tls_with_credentials(secure, shared_data, monkeypatch):
    """`citytwin twin replay --tls-ca --username --password` to the TLS port: one station-day stored by
    the ingest; the same replay with a wrong password is a clean error (exit 2, no traceback)."""
    for var in ("CITYTWIN_MQTT_USERNAME", "CITYTWIN_MQTT_PASSWORD"):  # only the options count here
        monkeypatch.delenv(var)
    m = _start_ingest(secure)
    rep = secure["creds"]["citytwin-replay"]
    args = ["twin", "replay", str(shared_data / "air_beijing_multisite"), "--station", "Dongsi",
            "--start", "2016-01-01T00:00:00+08:00", "--end", "2016-01-02T00:00:00+08:00",
            "--broker", f"127.0.0.1:{secure['tls_port']}", "--tls-ca", secure["ca"], "--username", rep.username]
    run(*args, "--password", str(rep.password))
    assert _wait(lambda: m.stats.acked >= 24)
    assert m.stats.received == 24 and _stored(secure) == {DONGSI}
    r = CliRunner().invoke(cli, [*args, "--password", "wrong"])
    assert r.exit_code == 2 and "Not authorized" in r.output and "Traceback" not in r.output


def test_repeated_refusals_audited_once():
    """The reconnect loop's repeated refusals make one audit row until the outcome changes (no broker)."""
    from citytwin.foundation.mqtt import MqttIngest

    rows: list[tuple[str, str, str | None]] = []
    m = MqttIngest("127.0.0.1", 1, lambda b: None, auth=MqttAuth("ingest", "pw"),
                   on_event=lambda a, o, u, d: rows.append((a, o, u)))
    for outcome in ("denied", "denied", "denied", "ok", "denied", "denied"):
        m._event("mqtt.connect", outcome, "detail")
    assert rows == [("mqtt.connect", "denied", "ingest"), ("mqtt.connect", "ok", "ingest"),
                    ("mqtt.connect", "denied", "ingest")]
