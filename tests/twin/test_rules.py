"""Threshold-for-duration rules: runs, gaps, peaks, relative thresholds, real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.twin.aqi import daily_aqi, hourly_aqi
from citytwin.twin.rules import (
    AQI_HEAVY_DAILY,
    AQI_HEAVY_HOURLY,
    ThresholdRule,
    candidates_frame,
    congestion_rule,
    evaluate,
    evaluate_all,
    high_flow_rule,
)


def _obs(values: list[float], entity: str = "s1", prop: str = "aqi", freq: str = "1h") -> pd.DataFrame:
    t = pd.date_range("2024-01-01", periods=len(values), freq=freq)
    return pd.DataFrame({"entity": entity, "property": prop, "time": t, "value": values})


def test_run_needs_min_steps_and_reports_peak() -> None:
    rule = ThresholdRule("r", "aqi", ">", 200, min_steps=3, step="1h")
    obs = _obs([210, 220, 150, 201, 260, 240, 230, 100])
    (c,) = evaluate(rule, obs)  # the 2-hour run at the start is too short
    assert (c.start.hour, c.end.hour, c.steps, c.peak, c.peak_time.hour) == (3, 6, 4, 260.0, 4)
    assert not c.ongoing
    assert c.detected_at == pd.Timestamp("2024-01-01 05:00")  # third hour of the run
    assert "peak 260" in c.message


def test_strict_and_inclusive_operators() -> None:
    obs = _obs([200, 200, 200])
    assert evaluate(ThresholdRule("r", "aqi", ">", 200, min_steps=1), obs) == []
    assert len(evaluate(ThresholdRule("r", "aqi", ">=", 200, min_steps=3), obs)) == 1


def test_missing_breaks_a_run_unless_gap_allowed() -> None:
    obs = _obs([250, 250, np.nan, 250, 250])
    rule = ThresholdRule("r", "aqi", ">", 200, min_steps=4)
    assert evaluate(rule, obs) == []  # unknown is not "still above"
    (c,) = evaluate(ThresholdRule("r", "aqi", ">", 200, min_steps=4, max_gap=1), obs)
    assert c.steps == 5 and c.ongoing
    # an absent row (not NaN) is a gap too
    assert evaluate(rule, obs.dropna()) == []


def test_ongoing_and_now() -> None:
    obs = _obs([100, 250, 260, 270])
    (c,) = evaluate(ThresholdRule("r", "aqi", ">", 200, min_steps=2), obs)
    assert c.ongoing
    (c,) = evaluate(ThresholdRule("r", "aqi", ">", 200, min_steps=2), obs, now=pd.Timestamp("2024-01-02"))
    assert not c.ongoing  # data stopped a day before `now`


def test_entities_are_separate() -> None:
    obs = pd.concat([_obs([250, 250, 250], "a"), _obs([250, 100, 250], "b")])
    cands = evaluate(ThresholdRule("r", "aqi", ">", 200, min_steps=2), obs)
    assert [c.entity for c in cands] == ["a"]


def test_relative_threshold_and_wide_frames() -> None:
    # speeds of two roads with different free-flow levels; congestion = below 50 % of the 85th percentile
    a = _obs([60.0] * 10 + [20, 20, 20, 60], "a", "speed", "5min")
    b = _obs([30.0] * 10 + [20, 20, 20, 30], "b", "speed", "5min")
    cands = evaluate(congestion_rule(min_steps=3), pd.concat([a, b]))
    assert [(c.entity, c.steps, c.peak, c.threshold) for c in cands] == [("a", 3, 20.0, 30.0)]
    assert cands[0].lower_is_worse
    wide = pd.concat([a, b]).rename(columns={"value": "speed"}).drop(columns="property")
    assert evaluate(congestion_rule(min_steps=3), wide) == cands


def test_bad_rules_and_frames() -> None:
    with pytest.raises(InputError, match="operator"):
        ThresholdRule("r", "aqi", "!=", 1)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="min_steps"):
        ThresholdRule("r", "aqi", ">", 1, min_steps=0)
    with pytest.raises(InputError, match="bad step"):
        ThresholdRule("r", "aqi", ">", 1, step="soon")
    with pytest.raises(InputError, match="unknown rule field"):
        ThresholdRule.from_dict({"name": "r", "property": "aqi", "op": ">", "threshold": 1, "colour": "red"})
    rule = ThresholdRule("r", "pm25", ">", 1)
    assert ThresholdRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(InputError, match="no 'pm25' values"):
        evaluate(rule, pd.DataFrame({"entity": ["s"], "time": ["2024-01-01"], "aqi": [3]}))


def test_heavy_pollution_rules_on_beijing(shared_data: Path) -> None:
    wide = pd.read_csv(shared_data / "air_beijing_multisite/PRSA_Data_Dongsi_20130301-20170228.csv",
                       nrows=24 * 60)  # March and April 2013
    wide["time"] = pd.to_datetime(wide[["year", "month", "day", "hour"]])
    names = {"PM2.5": "pm25", "PM10": "pm10", "SO2": "so2", "NO2": "no2", "CO": "co", "O3": "o3"}
    long = wide.melt(id_vars=["station", "time"], value_vars=list(names), var_name="property",
                     value_name="value").rename(columns={"station": "entity"})
    long["property"] = long["property"].map(names)
    long["unit"] = "µg/m³"
    daily = daily_aqi(long)
    days = evaluate(AQI_HEAVY_DAILY, daily)  # reads the `date` column of daily_aqi
    daily = daily.rename(columns={"date": "time"})
    heavy_days = set(daily.loc[daily["aqi"] > 200, "time"])
    covered = {c.start + pd.Timedelta(days=i) for c in days for i in range(c.steps)}
    assert covered == heavy_days and len(heavy_days) > 5
    hourly = hourly_aqi(long)
    runs = evaluate_all([AQI_HEAVY_HOURLY, high_flow_rule()], hourly)  # flow rule skipped: no flow here
    assert runs and all(c.steps >= 3 and c.peak > 200 for c in runs)
    assert candidates_frame(runs)["rule"].eq("aqi_heavy_3h").all()


def test_high_flow_on_shenzhen(shared_data: Path) -> None:
    # The Shenzhen series are small integer counts per 5 minutes (not speeds): use the flow rule.
    v = pd.read_csv(shared_data / "traffic_shenzhen_tppgcn/sz_speed.csv", header=None, nrows=288 * 3)
    t = pd.date_range("2024-01-01", periods=len(v), freq="5min")
    long = (v.set_axis(t).rename_axis("time").melt(ignore_index=False, var_name="entity", value_name="value")
            .reset_index().assign(property="flow"))
    cands = evaluate(high_flow_rule(min_steps=6), long)
    assert cands
    q95 = long.groupby("entity")["value"].quantile(0.95)
    for c in cands:
        assert c.threshold == pytest.approx(q95[int(c.entity)])
        run = long[(long["entity"] == int(c.entity)) & long["time"].between(c.start, c.end)]
        assert len(run) == c.steps >= 6 and (run["value"] > c.threshold).all()
        assert run["value"].max() == c.peak
