"""``citytwin doctor`` against a real PostgreSQL (tests/pg.py) and a real Mosquitto (scripts/mosquitto.sh),
and against wrong URLs: each check says ok/warn/fail with what to do, exit 1 on a failure, valid JSON,
never a traceback."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "mosquitto.sh"
HAVE_MOSQUITTO = shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()
runner = CliRunner()


@pytest.fixture()
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, str, str]]:
    """Mosquitto with anonymous access off and one account (from the env, as the twin tests start it),
    plain and TLS listeners (DIR/tls_port; its CA in DIR/tls/ca.crt)."""
    if not HAVE_MOSQUITTO:
        pytest.skip("Mosquitto not installed (scripts/setup.sh --test installs it)")
    user, password = "citytwin-doctor", secrets.token_urlsafe(12)
    monkeypatch.setenv("CITYTWIN_MQTT_USERNAME", user)
    monkeypatch.setenv("CITYTWIN_MQTT_PASSWORD", password)
    d = tmp_path / "broker"
    port = int(subprocess.run([str(SCRIPT), "start", str(d), "--tls"], check=True, capture_output=True,
                              text=True).stdout.strip())
    yield port, user, password
    subprocess.run([str(SCRIPT), "stop", str(d)], check=False)


def _doctor(*args: str) -> tuple[int, dict[str, dict[str, str]], bool]:
    r = runner.invoke(app, ["doctor", *args, "--json", "--timeout", "5"])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    out = json.loads(r.stdout)
    checks = {c["name"]: c for c in out["checks"]}
    assert all(c["status"] in ("ok", "warn", "fail") for c in checks.values())
    assert r.exit_code == (1 if any(c["status"] == "fail" for c in checks.values()) else 0)
    assert out["ok"] == (r.exit_code == 0)
    return r.exit_code, checks, out["ok"]


def test_doctor_on_a_postgres_deployment_with_a_broker(tmp_path: Path, pg_cluster, pg_url: str,  # type: ignore[no-untyped-def]
                                                        broker: tuple[int, str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITYTWIN_DATABASE", raising=False)
    port, user, _password = broker
    ws = Workspace.init(tmp_path / "ws", owner="admin", database=pg_url)  # the URL kept in its settings
    _, checks, _ = _doctor("-w", str(ws.root), "--broker", f"mqtt://127.0.0.1:{port}")
    assert checks["workspace"]["status"] == "ok"
    assert checks["records"]["status"] == "ok"
    assert "PostgreSQL 1" in checks["records"]["detail"] and "catalog 2" in checks["records"]["detail"]
    assert checks["postgis"]["status"] == ("ok" if pg_cluster.postgis else "warn")
    # the development broker's account may read the broker's statistics: nothing queued, nobody away
    assert checks["mqtt"] == {"name": "mqtt", "status": "ok", "fix": None,
                              "detail": f"mqtt://127.0.0.1:{port} accepted a connection as {user}; 0 messages "
                                        "queued or in flight (0.0 MiB stored), 0 disconnected clients with "
                                        "persistent sessions"}
    # a wrong password in the URL: refused, said with what to do
    code, checks, ok = _doctor("-w", str(ws.root), "--broker", f"mqtt://{user}:wrong@127.0.0.1:{port}")
    assert code == 1 and not ok and checks["records"]["status"] == "ok"
    assert checks["mqtt"]["status"] == "fail" and "refused the connection" in checks["mqtt"]["detail"]
    assert "CITYTWIN_MQTT_PASSWORD" in checks["mqtt"]["fix"]
    # TLS: the broker's CA from CITYTWIN_MQTT_TLS_CA; without it the system's CAs do not trust the broker
    tls_port = int((tmp_path / "broker" / "tls_port").read_text())
    monkeypatch.setenv("CITYTWIN_MQTT_TLS_CA", str(tmp_path / "broker" / "tls" / "ca.crt"))
    _, checks, _ = _doctor("-w", str(ws.root), "--broker", f"mqtts://127.0.0.1:{tls_port}")
    assert checks["mqtt"]["status"] == "ok" and f"as {user} over TLS; 0 messages" in checks["mqtt"]["detail"]
    monkeypatch.delenv("CITYTWIN_MQTT_TLS_CA")
    _, checks, _ = _doctor("-w", str(ws.root), "--broker", f"mqtts://127.0.0.1:{tls_port}")
    assert checks["mqtt"]["status"] == "fail" and "certificate" in checks["mqtt"]["detail"].lower()
    # no credentials at all: anonymous access is off
    monkeypatch.delenv("CITYTWIN_MQTT_USERNAME")
    monkeypatch.delenv("CITYTWIN_MQTT_PASSWORD")
    _, checks, _ = _doctor("-w", str(ws.root), "--broker", f"127.0.0.1:{port}")
    assert checks["mqtt"]["status"] == "fail"


def test_doctor_names_what_is_wrong(tmp_path: Path, pg_cluster, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("CITYTWIN_DATABASE", raising=False)
    ws = Workspace.init(tmp_path / "ws", owner="admin")
    code, checks, _ = _doctor("-w", str(ws.root))
    assert checks["records"]["status"] == "ok" and "SQLite" in checks["records"]["detail"]
    assert "postgis" not in checks and checks["mqtt"]["status"] == "warn"
    # a database that does not exist on a server that does
    wrong = f"postgresql://citytwin:hunter2@127.0.0.1:{pg_cluster.port}/no_such_db"
    code, checks, _ = _doctor("-w", str(ws.root), "--database", wrong)
    assert code == 1 and checks["records"]["status"] == "fail"
    assert "no_such_db" in checks["records"]["detail"] and "hunter2" not in json.dumps(checks)
    # a server that is not there, and a broker that is not there
    free = _free_port()
    code, checks, _ = _doctor("--database", f"postgresql://citytwin@127.0.0.1:{free}/x", "--broker",
                              f"mqtt://127.0.0.1:{free}")
    assert code == 1 and checks["records"]["status"] == checks["mqtt"]["status"] == "fail"
    assert "cannot reach" in checks["mqtt"]["detail"] and "cannot reach" in checks["records"]["detail"]
    # not a workspace; a broker URL that is not one
    code, checks, _ = _doctor("-w", str(tmp_path / "nowhere"), "--broker", "http://x")
    assert checks["workspace"]["status"] == "fail" and "does not exist" in checks["workspace"]["detail"]
    assert checks["mqtt"]["status"] == "fail" and "mqtt://HOST:PORT" in checks["mqtt"]["detail"]
    # the same as text: one line per check, no traceback
    r = runner.invoke(app, ["doctor", "-w", str(ws.root), "--database", wrong])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert any(line.startswith("fail records") for line in r.stdout.splitlines())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
