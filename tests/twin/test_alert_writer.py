"""One process changes a twin's alerts (``foundation/timeseries/writerlock.py``).

The deployment ran ``citytwin serve`` and ``citytwin twin ingest`` on one workspace, both with automatic alerts:
each evaluated the rules over the readings it received and kept its own book of alerts in memory, both writing
``alerts.sqlite``. An alert the ingest raised could not be acknowledged through the API (409 "alert … is already
open": the API's book did not hold it), and an acknowledgement would have been written over by the other book.
Now the first hub that changes the alerts (or enables automatic alerts) holds a lock; a second is refused with the
holder named, readers are not, and the deployment runs the API and the MQTT ingest in one process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app as cli
from citytwin.foundation.errors import CitytwinError
from citytwin.service.app import open_runtime
from citytwin.twin import entities as E

EID = E.entity_id("AirQualityObserved", "Dongsi")


def _readings(rt, hours: range, pm25: float) -> None:  # type: ignore[no-untyped-def]
    rt.ingest_messages([(E.topic_for(EID), json.dumps(
        {"id": EID, "type": "AirQualityObserved", "observedAt": f"2015-12-01T{h:02d}:00:00+08:00",
         "pm25": pm25}).encode()) for h in hours])


def test_two_hubs_on_one_store_the_second_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    root = tmp_path / "twin"
    first, second = open_runtime(root), open_runtime(root)
    try:
        first.stores.state.put_entity(EID, "AirQualityObserved", 116.4, 39.9, {})
        first.enable_auto_alerts()
        _readings(first, range(0, 3), 480.0)  # AQI 500: both default rules open
        opened = first.alerts.alerts(status="open")
        assert {a.rule for a in opened} == {"aqi_severe_1h", "aqi_heavy_2h"}
        assert {a.id for a in second.alerts.alerts(status="open")} == {a.id for a in opened}  # readers: no lock
        for change in (lambda: second.enable_auto_alerts(),
                       lambda: second.alerts.acknowledge(opened[0].id, by="duty officer")):
            with pytest.raises(CitytwinError, match="kept by pid") as err:
                change()
            assert "citytwin serve --broker" in (err.value.hint or "")
        first.close()
        second.alerts.acknowledge(opened[0].id, by="duty officer")  # the first let go: the second may change them
        assert second.alerts.get(opened[0].id).status == "acknowledged"
    finally:
        first.close()
        second.close()


def test_a_second_live_process_is_refused_with_the_holder_named(tmp_path: Path, twin_ws, shared_data) -> None:  # type: ignore[no-untyped-def]
    root = twin_ws.root
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from citytwin.service.app import open_runtime
        rt = open_runtime({str(root)!r})
        rt.enable_auto_alerts()
        print("ready", flush=True)
        sys.stdin.read()
        rt.close()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        # `citytwin twin ingest` on the same workspace: refused at its start, before it connects (no broker here)
        r = CliRunner().invoke(cli, ["twin", "ingest", "-w", str(twin_ws.ws.root), "--broker", "127.0.0.1:1"])
        assert r.exit_code != 0 and f"pid {holder.pid}" in r.output and "Traceback" not in r.output, r.output
        # a replay that only publishes (no --ingest) changes no alert: it needs no lock (here it fails to connect)
        r = CliRunner().invoke(cli, ["twin", "replay", str(shared_data / "air_beijing_multisite"), "-w",
                                     str(twin_ws.ws.root), "--broker", "127.0.0.1:1", "--station", "Dongsi",
                                     "--start", "2015-12-01", "--end", "2015-12-02"])
        assert "kept by" not in r.output and "could not connect" in r.output, r.output
        # `citytwin doctor` names the live process, without taking the lock
        doc = CliRunner().invoke(cli, ["doctor", "-w", str(twin_ws.ws.root), "--json", "--timeout", "1"])
        twin = {c["name"]: c for c in json.loads(doc.stdout)["checks"]}["twin"]
        assert twin["status"] == "ok" and f"pid {holder.pid}" in twin["detail"], twin
        rt = open_runtime(root)
        try:
            assert rt.alerts.alerts() == []  # reading needs no lock
            with pytest.raises(CitytwinError, match=f"pid {holder.pid}"):
                rt.enable_auto_alerts()
        finally:
            rt.close()
    finally:
        holder.kill()  # killed, not closed: the kernel drops its lock
        holder.wait(30)
    doc = CliRunner().invoke(cli, ["doctor", "-w", str(twin_ws.ws.root), "--json", "--timeout", "1"])
    twin = {c["name"]: c for c in json.loads(doc.stdout)["checks"]}["twin"]
    assert twin["status"] == "warn" and "citytwin serve --broker" in twin["fix"], twin
    rt = open_runtime(root)
    try:
        rt.enable_auto_alerts()
    finally:
        rt.close()
