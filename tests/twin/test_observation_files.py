"""Issue 12: observation files of `twin aqi --file` / replay: naive times are local (Asia/Shanghai by
default, `--tz`), the AQI day boundary is the local midnight, and a long table without URN ids or a
`type` column gets a documented default type instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.errors import InputError
from citytwin.twin import aqi
from citytwin.workflows.twin import DEFAULT_AIR_TYPE, DEFAULT_DEVICE_TYPE, parse_times, read_observations


def _day_file(tmp_path: Path, times: list[str], values: list[float], ids: str = "S1") -> Path:
    p = tmp_path / "obs.csv"
    pd.DataFrame({"entity": ids, "property": "pm25", "time": times, "value": values,
                  "unit": "µg/m³"}).to_csv(p, index=False)
    return p


def test_naive_times_are_local(tmp_path: Path) -> None:
    t = parse_times(pd.Series(["2015-12-01 00:00", "2015-12-01T00:00:00+08:00", "2015-12-01T00:00:00Z"]))
    assert t.astype(str).tolist() == ["2015-11-30 16:00:00+00:00", "2015-11-30 16:00:00+00:00",
                                      "2015-12-01 00:00:00+00:00"]
    assert parse_times(pd.Series(["2015-12-01 00:00"]), "UTC").astype(str).tolist() == ["2015-12-01 00:00:00+00:00"]
    with pytest.raises(InputError, match="not a time") as ei:
        parse_times(pd.Series(["2015-12-01 00:00", "yesterday"]))
    assert ei.value.row == 2
    with pytest.raises(InputError, match="unknown time zone"):
        parse_times(pd.Series(["2015-12-01 00:00"]), "Mars/Olympus")


def test_aqi_day_boundary_is_local_midnight(tmp_path: Path) -> None:
    """24 local hours of 2015-12-01 at 100 µg/m³ and the next local day at 300: two days, each with
    its own AQI. Read as UTC (before), eight hours of each day slid into the other."""
    hours = pd.date_range("2015-12-01 00:00", periods=48, freq="h")
    vals = [100.0] * 24 + [300.0] * 24
    p = _day_file(tmp_path, hours.strftime("%Y-%m-%d %H:%M").tolist(), vals)
    long, _ = read_observations(p)
    d = aqi.daily_aqi(long, invalid="missing")
    by_day = {str(k)[:10]: int(v) for k, v in zip(d["date"], d["aqi"], strict=True)}
    # HJ 633-2012, 24-h PM2.5: 100 µg/m³ lies in [75, 115] → IAQI 100 + 25/40 × 50 = 131.25 → 132;
    # 300 in [250, 350] → 300 + 50/100 × 100 = 350. Read as UTC (before), the local days mixed:
    # 2015-11-30 (8 h of 100), 2015-12-01 (16 h of 100 and 8 h of 300) and 2015-12-02.
    assert by_day == {"2015-12-01": 132, "2015-12-02": 350}
    res = CliRunner().invoke(app, ["twin", "aqi", "--file", str(p), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["date"][:10] for r in rows] == ["2015-12-01", "2015-12-02"]
    assert {r["tz"] for r in rows} == {"Asia/Shanghai"}
    # the same file read as UTC days: the first local day loses its first eight hours
    res_utc = CliRunner().invoke(app, ["twin", "aqi", "--file", str(p), "--json", "--tz", "UTC"])
    assert res_utc.exit_code == 0 and {r["tz"] for r in json.loads(res_utc.stdout)} == {"UTC"}


def test_long_table_without_urn_or_type(tmp_path: Path) -> None:
    """Ids like 'S1' without a type column crashed (IndexError on the URN split)."""
    hours = pd.date_range("2015-12-01 00:00", periods=24, freq="h").strftime("%Y-%m-%d %H:%M").tolist()
    p = _day_file(tmp_path, hours * 2, [50.0] * 48, ids="S1")
    df = pd.read_csv(p)
    df.loc[24:, "entity"] = "station-2"
    df.to_csv(p, index=False)
    _, ents = read_observations(p)
    assert {e.type for e in ents} == {DEFAULT_AIR_TYPE}
    res = CliRunner().invoke(app, ["twin", "aqi", "--file", str(p), "--json"])
    assert res.exit_code == 0, res.output
    assert {r["entity"] for r in json.loads(res.stdout)} == {"S1", "station-2"}
    # not air quality: a generic device; a URN id keeps its type
    q = tmp_path / "noise.csv"
    pd.DataFrame({"entity": ["n1", "urn:ngsi-ld:NoiseLevelObserved:n2"], "property": "LAeq",
                  "time": ["2015-12-01 00:00"] * 2, "value": [55.0, 60.0]}).to_csv(q, index=False)
    _, ents = read_observations(q)
    assert sorted(e.type for e in ents) == sorted([DEFAULT_DEVICE_TYPE, "NoiseLevelObserved"])


def test_bad_time_in_file_is_a_clear_cli_error(tmp_path: Path) -> None:
    p = _day_file(tmp_path, ["2015-12-01 00:00", "31/31/2015"], [1.0, 2.0])
    res = CliRunner().invoke(app, ["twin", "aqi", "--file", str(p), "--json"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "not a time" in res.output and "31/31/2015" in res.output and "row 2" in res.output
