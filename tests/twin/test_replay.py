"""`citytwin twin replay|aqi|alerts|history|deadletters` end to end (in-process and through Mosquitto)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.timeseries import HistoryStore, Ingestor

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _air(shared_data: Path) -> str:
    return str(shared_data / "air_beijing_multisite")


def _csv_counts(shared_data: Path, start: str, end: str, stations: list[str] | None = None) -> tuple[int, int]:
    """(readings, non-missing readings) of the 12 mapped columns in [start, end) Beijing time."""
    from citytwin.twin.feeds import BEIJING_COLUMNS
    files = sorted((shared_data / "air_beijing_multisite").glob("*.csv"))
    w = pd.concat([pd.read_csv(f) for f in files])
    if stations:
        w = w[w.station.isin(stations)]
    t = pd.to_datetime(w[["year", "month", "day", "hour"]]).dt.tz_localize("Asia/Shanghai")
    w = w[(t >= pd.Timestamp(start)) & (t < pd.Timestamp(end))]
    cols = list(BEIJING_COLUMNS)
    return len(w) * len(cols), int(w[cols].notna().sum().sum())


def test_replay_in_process_then_aqi_and_alerts(tmp_path, shared_data):
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    start, end = "2015-11-29T00:00:00+08:00", "2015-12-03T00:00:00+08:00"
    r = runner.invoke(app, ["twin", "replay", _air(shared_data), "-w", str(ws), "--start", start, "--end", end])
    assert r.exit_code == 0, r.output
    rows, values = _csv_counts(shared_data, start, end)
    h = HistoryStore(ws / "twin" / "history")
    assert h.count() == {"rows": rows, "values": values, "missing": rows - values}
    # replaying the same period again stores nothing twice
    r = runner.invoke(app, ["twin", "replay", _air(shared_data), "-w", str(ws), "--start", start, "--end", end])
    assert r.exit_code == 0 and h.count()["rows"] == rows
    assert h.physical_rows() == 2 * rows  # written twice, counted once ...
    r = runner.invoke(app, ["twin", "compact", "-w", str(ws)])
    assert r.exit_code == 0, r.output
    assert h.physical_rows() == rows  # ... and stored once after compaction
    r = runner.invoke(app, ["twin", "aqi", "-w", str(ws), "--start", start, "--end", end, "--json"])
    assert r.exit_code == 0, r.output
    daily = pd.DataFrame(json.loads(r.stdout))
    assert len(daily) == 12 * 4
    # 2015-12-01: Beijing's heaviest day of that episode; every station is at level 6 (严重污染, AQI > 300)
    assert (daily[daily.date.str.startswith("2015-12-01")]["category_zh"] == "严重污染").all()
    r = runner.invoke(app, ["twin", "alerts", "-w", str(ws), "--start", start, "--end", end, "--json"])
    assert r.exit_code == 0, r.output
    al = pd.DataFrame(json.loads(r.stdout))
    # the hub's alerts, raised by the default rules as the replay was ingested (twice: no duplicates)
    assert not al.duplicated(["rule", "entity", "start"]).any()
    heavy, severe = al[al["rule"] == "aqi_heavy_2h"], al[al["rule"] == "aqi_severe_1h"]
    assert heavy["entity"].nunique() == 12 and (heavy["peak"] > 200).all()
    assert severe["entity"].nunique() == 12 and (severe["peak"] > 300).all()
    # --file: heavy-pollution days of the file (a throwaway book, as before)
    r = runner.invoke(app, ["twin", "alerts", "--file", _air(shared_data), "--start", start, "--end", end, "--json"])
    assert r.exit_code == 0, r.output
    al = pd.DataFrame(json.loads(r.stdout))
    assert al["entity"].nunique() == 12 and (al["peak"] > 300).all()
    r = runner.invoke(app, ["twin", "history", "-w", str(ws), "-e", "urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi",
                            "-p", "pm25", "--interval", "1 day", "--json"])
    assert r.exit_code == 0
    # history buckets are UTC days: 4 Beijing days (UTC+8) touch 5 UTC days
    assert [d["time"][:10] for d in json.loads(r.stdout)] == ["2015-11-28", "2015-11-29", "2015-11-30",
                                                             "2015-12-01", "2015-12-02"]


def test_replay_speed_paces_the_feed(tmp_path, shared_data, monkeypatch):
    """The pacing itself, not the process around it: when the replay hands its batches to the store
    (monotonic clock), compared with when their messages are due. Reading the files, start-up and the
    last commit are outside the measured span, and a slow commit (later messages already due when it
    returns, so they go in one batch) does not make the test fail."""
    ws = tmp_path / "ws"
    runner.invoke(app, ["init", str(ws)])
    handed: list[tuple[float, int]] = []  # (time a batch is handed over, messages in it)
    commit = Ingestor.ingest

    def timed_ingest(self, messages, **kw):
        handed.append((time.monotonic(), len(messages)))
        return commit(self, messages, **kw)

    monkeypatch.setattr(Ingestor, "ingest", timed_ingest)
    # 7 hours of one station, one message per hour, at 36,000x: message k is due 0.1k s after the first
    r = runner.invoke(app, ["twin", "replay", _air(shared_data), "-w", str(ws), "--station", "Dongsi",
                            "--start", "2015-12-01T00:00:00+08:00", "--end", "2015-12-01T07:00:00+08:00",
                            "--speed", "36000"])
    assert r.exit_code == 0, r.output
    assert HistoryStore(ws / "twin" / "history").count()["rows"] == 7 * 12
    assert sum(n for _, n in handed) == 7
    # a paced replay hands a batch over when it must wait for the next message (before that one is due:
    # the first batch goes before message m is due, m = its size) and the last one after message 6 is
    # due, so the span is at least (6 - m) x 0.1 s; unpaced, everything goes in one batch at once
    assert len(handed) >= 2, handed
    m = handed[0][1]
    assert handed[-1][0] - handed[0][0] >= (6 - m) * 0.1 - 0.02, handed  # 0.02 s: from check to hand-over


def test_replay_errors(tmp_path, shared_data):
    r = runner.invoke(app, ["twin", "replay", str(tmp_path / "nothing.csv"), "-w", str(tmp_path)])
    assert r.exit_code == 2
    r = runner.invoke(app, ["twin", "replay", _air(shared_data), "--start", "2015-12-01", "--end", "2015-12-02"])
    assert r.exit_code == 2 and "workspace" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    ws = tmp_path / "ws"
    runner.invoke(app, ["init", str(ws)])
    r = runner.invoke(app, ["twin", "replay", str(bad), "-w", str(ws)])
    assert r.exit_code == 2 and "missing" in r.output


def test_long_file_replay_and_dead_letters(tmp_path):
    """A generic observation file (entity, property, time, value, unit) with one bad unit."""
    ws = tmp_path / "ws"
    runner.invoke(app, ["init", str(ws)])
    f = tmp_path / "obs.csv"
    pd.DataFrame({"entity": ["urn:ngsi-ld:TrafficFlowObserved:n1"] * 3, "type": "TrafficFlowObserved",
                  "property": ["intensity", "averageVehicleSpeed", "averageVehicleSpeed"],
                  "time": ["2018-01-01T00:00:00Z", "2018-01-01T00:00:00Z", "2018-01-01T00:05:00Z"],
                  "value": [12, 40.0, 7.0], "unit": ["item", "km/h", "parsecs"], "lon": 114.0, "lat": 22.5}).to_csv(f)
    r = runner.invoke(app, ["twin", "replay", str(f), "-w", str(ws)])
    assert r.exit_code == 0, r.output
    assert HistoryStore(ws / "twin" / "history").count()["rows"] == 2
    r = runner.invoke(app, ["twin", "deadletters", "-w", str(ws), "--json"])
    assert json.loads(r.stdout)["counts"] == {"unknown_unit": 1}


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                    reason="Mosquitto not installed (scripts/setup.sh --test installs it)")
def test_replay_through_broker(tmp_path, shared_data):
    d = tmp_path / "broker"
    script = str(REPO / "scripts" / "mosquitto.sh")
    port = subprocess.run([script, "start", str(d)], check=True, capture_output=True, text=True).stdout.strip()
    try:
        ws = tmp_path / "ws"
        runner.invoke(app, ["init", str(ws)])
        start, end = "2016-01-01T00:00:00+08:00", "2016-01-02T00:00:00+08:00"
        r = runner.invoke(app, ["twin", "replay", _air(shared_data), "-w", str(ws), "--broker", f"127.0.0.1:{port}",
                                "--ingest", "--per-message", "12", "--start", start, "--end", end])
        assert r.exit_code == 0, r.output
        rows, values = _csv_counts(shared_data, start, end)
        assert HistoryStore(ws / "twin" / "history").count() == {"rows": rows, "values": values,
                                                                 "missing": rows - values}
    finally:
        subprocess.run([script, "stop", str(d)], check=False)


@pytest.fixture()
def restore_arrow_pool():
    """MQTT ingest switches pyarrow to the system pool for the whole process: put the default back after."""
    import pyarrow as pa

    before = pa.default_memory_pool()
    yield
    pa.set_memory_pool(before)


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                    reason="Mosquitto not installed (scripts/setup.sh --test installs it)")
def test_columnar_replay_stores_what_the_update_replay_stores(tmp_path, shared_data, restore_arrow_pool):
    """``--payload columnar`` through a real broker: the same readings as ``--payload updates`` (the default),
    value for value, in half a day of all 12 stations, with its missing values (sent as null)."""
    import pyarrow as pa

    d = tmp_path / "broker"
    script = str(REPO / "scripts" / "mosquitto.sh")
    port = subprocess.run([script, "start", str(d)], check=True, capture_output=True, text=True).stdout.strip()
    start, end = "2016-02-01T00:00:00+08:00", "2016-02-01T12:00:00+08:00"
    stored = {}
    try:
        for payload in ("updates", "columnar"):
            ws = tmp_path / f"ws-{payload}"
            runner.invoke(app, ["init", str(ws)])
            r = runner.invoke(app, ["twin", "replay", _air(shared_data), "-w", str(ws), "--broker",
                                    f"127.0.0.1:{port}", "--ingest", "--payload", payload, "--start", start,
                                    "--end", end, "--client-id", f"replay-{payload}"])
            assert r.exit_code == 0, r.output
            assert "all acknowledged by the broker: True" in r.output
            # one message per station-hour as updates (the default); one per hour (12 stations) as columnar
            assert f"published {12 * 12 if payload == 'updates' else 12:,} messages" in r.output, r.output
            stored[payload] = HistoryStore(ws / "twin" / "history").query(fast=False)
        assert pa.default_memory_pool().backend_name == "system"  # the ingest's pool (issue 13: RSS)
    finally:
        subprocess.run([script, "stop", str(d)], check=False)
    rows, values = _csv_counts(shared_data, start, end)
    upd, col = stored["updates"], stored["columnar"]
    assert len(upd) == rows and int(upd["value"].notna().sum()) == values < rows  # some readings are missing
    pd.testing.assert_frame_equal(col, upd)


def test_replay_payload_errors(tmp_path, shared_data):
    ws = tmp_path / "ws"
    runner.invoke(app, ["init", str(ws)])
    args = ["twin", "replay", _air(shared_data), "-w", str(ws), "--start", "2016-02-01T00:00:00+08:00",
            "--end", "2016-02-01T02:00:00+08:00"]
    r = runner.invoke(app, [*args, "--payload", "xml"])
    assert r.exit_code == 2 and "payload" in r.output and "columnar" in r.output, r.output
    r = runner.invoke(app, [*args, "--payload", "columnar", "--per-message", "0"])
    assert r.exit_code == 2, r.output
    # in-process, columnar messages of 5 rows (not a multiple of the 12 stations: messages span two hours)
    r = runner.invoke(app, [*args, "--payload", "columnar", "--per-message", "5"])
    assert r.exit_code == 0, r.output
    rows, values = _csv_counts(shared_data, "2016-02-01T00:00:00+08:00", "2016-02-01T02:00:00+08:00")
    assert HistoryStore(ws / "twin" / "history").count() == {"rows": rows, "values": values,
                                                             "missing": rows - values}


def test_forecast_from_history(tmp_path, shared_data):
    """`twin forecast` reads the stored history and scores the learned model against the seasonal-naive
    baseline (the scoring itself is tested in the forecast module's tests)."""
    ws = tmp_path / "ws"
    runner.invoke(app, ["init", str(ws)])
    r = runner.invoke(app, ["twin", "replay", _air(shared_data), "-w", str(ws), "--station", "Dongsi",
                            "--start", "2015-11-01T00:00:00+08:00", "--end", "2015-12-01T00:00:00+08:00"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["twin", "forecast", "-w", str(ws), "-e", "urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi",
                            "-p", "pm25", "--horizon", "2", "--json"])
    assert r.exit_code == 0, r.output
    s = pd.DataFrame(json.loads(r.stdout))
    assert {"seasonal_naive", "ridge"} <= set(s["model"]) and set(s["horizon"]) == {"1h", "2h"}
    base = s[s.model == "seasonal_naive"]
    assert (base["skill"] == 0).all() and (base["n"] > 100).all()  # a week of hourly test points
