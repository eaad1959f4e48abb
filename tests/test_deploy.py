"""The server deployment's files (deploy/, docs/deployment.md): the systemd units verify, and
deploy/backup.sh's two parts (pg_dump of the records, the workspace folder) restore into a new
database and folder that read back the same catalog and data."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from citytwin.foundation.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CITYTWIN = Path(os.environ.get("VIRTUAL_ENV") or REPO / ".venv") / "bin" / "citytwin"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", ["citytwin-serve.service"])  # (one live process: docs/deployment.md, section 3)
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    text = (DEPLOY / unit).read_text(encoding="utf-8")
    exe = CITYTWIN if CITYTWIN.exists() else Path(shutil.which("citytwin") or "/bin/true")
    # the unit as installed, with this checkout's citytwin where /opt/citytwin's would be
    (tmp_path / unit).write_text(text.replace("/opt/citytwin/.venv/bin/citytwin", str(exe)), encoding="utf-8")
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True,
                       timeout=60)
    problems = [line for line in (r.stdout + r.stderr).splitlines() if unit in line]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr
    # the citytwin command the unit runs exists and takes these options
    from typer.testing import CliRunner

    from citytwin.cli.main import app

    args = re.findall(r"^ExecStart=\S+/citytwin (.+)$", text, re.M)[0].split()
    command = args[:next(i for i, a in enumerate(args) if a.startswith("--"))]  # e.g. ["twin", "ingest"]
    help_text = CliRunner().invoke(app, [*command, "--help"]).stdout
    for opt in (a for a in args if a.startswith("--")):
        assert opt in help_text, (unit, opt)


def test_env_example_names_the_variables_citytwin_reads() -> None:
    from citytwin.foundation import records
    from citytwin.foundation.mqtt import ENV_PASSWORD, ENV_USERNAME, MqttAuth
    from citytwin.workflows.doctor import ENV_BROKER

    names = set(re.findall(r"^#?(CITYTWIN_[A-Z_]+)=", (DEPLOY / "citytwin.env.example").read_text(), re.M))
    monitor = MqttAuth.from_env({"CITYTWIN_MQTT_MONITOR_USERNAME": "m", "CITYTWIN_MQTT_MONITOR_PASSWORD": "p"},
                                role="monitor")  # the doctor's account (docs/deployment.md, section 5)
    assert (monitor.username, monitor.password) == ("m", "p")
    assert names == {"CITYTWIN_WORKSPACE", records.ENV_DATABASE, ENV_BROKER, ENV_USERNAME, ENV_PASSWORD,
                     "CITYTWIN_MQTT_MONITOR_USERNAME", "CITYTWIN_MQTT_MONITOR_PASSWORD", "CITYTWIN_MQTT_TLS_CA"}


def test_backup_and_restore(tmp_path: Path, pg_cluster, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.init(tmp_path / "srv" / "ws", owner="admin", database=pg_url)
    ws.add_user("vera", "viewer")
    frame = pd.DataFrame({"station": ["东四", "天坛"], "pm25": [35.5, 12.0]})
    ws.write_derived("stations", frame, inputs=[], parameters={"k": 1}, classification="public")
    ws.catalog.issue_token("vera", label="restore test")
    env = {**os.environ, "CITYTWIN_DATABASE": pg_url, "CITYTWIN_WORKSPACE": str(ws.root),
           "PATH": f"{pg_cluster.bindir}:{os.environ['PATH']}"}
    out = subprocess.run([str(DEPLOY / "backup.sh"), str(tmp_path / "backups")], env=env, check=True,
                         capture_output=True, text=True, timeout=300).stdout.split()
    dump, archive = Path(out[0]), Path(out[1])
    assert dump.suffix == ".dump" and archive.name.endswith(".tar.gz")
    with tarfile.open(archive) as tar:
        assert not any(n.startswith("ws/tmp/") for n in tar.getnames())
    # restore: a new database and the folder somewhere else
    restored = pg_cluster.fresh_database()
    try:
        pg_cluster.run("pg_restore", "--clean", "--if-exists", "--no-owner", "-d", restored, str(dump))
        (tmp_path / "restored").mkdir()
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path / "restored", filter="data")
        monkeypatch.setenv("CITYTWIN_DATABASE", restored)
        again = Workspace.open(tmp_path / "restored" / "ws", user="admin")
        assert again.catalog.url == restored
        assert [d.to_dict() for d in again.catalog.all_datasets()] == [d.to_dict() for d in ws.catalog.all_datasets()]
        assert again.catalog.users() == ws.catalog.users() and again.catalog.tokens() == ws.catalog.tokens()
        pd.testing.assert_frame_equal(again.read("stations"), ws.read("stations"))
    finally:
        pg_cluster.drop(restored)
