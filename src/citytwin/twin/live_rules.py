"""Rules evaluated on the live twin: over a recent window of observations, hourly AQI derived on the fly.

The live runtime (:meth:`citytwin.service.app.TwinRuntime.enable_auto_alerts`) calls
:func:`window_candidates` after each committed ingest batch with the observations of the entities
that batch touched, over a recent window, and feeds the result to the alert hub's ``sync``
(idempotent: one alert per episode, resolved when the condition ends).

A rule whose ``property`` is ``aqi`` reads the **hourly AQI** of HJ 633-2012
(:func:`citytwin.twin.aqi.hourly_aqi`, computed from the pollutants ``pm25 pm10 so2 no2 co o3``);
any other rule reads the raw observations of its property. Times are returned in UTC.

Default rules (:data:`DEFAULT_LIVE_RULES`):

* ``aqi_heavy_2h`` — hourly AQI above 200 (重度污染 or worse) for at least 2 consecutive hours;
* ``aqi_severe_1h`` — hourly AQI above 300 (严重污染) in any hour
  (:data:`citytwin.twin.rules.AQI_SEVERE_HOURLY`).

Rules relative to an entity's own level (``relative_to``) are not allowed here: a quantile over a
sliding window would move with every batch.

Examples
--------
>>> import pandas as pd
>>> t = pd.date_range("2015-12-01 00:00", periods=5, freq="h", tz="Asia/Shanghai")
>>> obs = pd.DataFrame({"entity": "s1", "property": "pm25", "time": t,
...                     "value": [100.0, 260.0, 280.0, 120.0, 300.0]})
>>> [(c.rule, c.start.isoformat(), c.steps, c.ongoing) for c in window_candidates([AQI_HEAVY_2H], obs)]
[('aqi_heavy_2h', '2015-11-30T17:00:00+00:00', 2, False)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.twin import aqi as aqi_mod
from citytwin.twin.rules import AQI_SEVERE_HOURLY, AlertCandidate, ThresholdRule, evaluate

#: Hourly AQI above 200 (HJ 633-2012 level 5, 重度污染, or worse) for at least 2 consecutive hours.
AQI_HEAVY_2H = ThresholdRule(
    "aqi_heavy_2h", "aqi", ">", 200, min_steps=2, step="1h", severity="warning",
    message="hourly AQI above {threshold:g} (重度污染 or worse) for {steps} h at {entity}, peak {peak:g}")

#: The rules the live twin evaluates by default.
DEFAULT_LIVE_RULES: tuple[ThresholdRule, ...] = (AQI_HEAVY_2H, AQI_SEVERE_HOURLY)

#: Properties a rule on ``aqi`` needs.
AQI_INPUTS: tuple[str, ...] = tuple(aqi_mod.POLLUTANTS)


def check_live_rules(rules: Iterable[ThresholdRule]) -> tuple[ThresholdRule, ...]:
    """Validate rules for live evaluation (unique names, no ``relative_to``); returns them as a tuple."""
    out = tuple(rules)
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise InputError(f"duplicate rule names in {names}", field="rules")
    for r in out:
        if not isinstance(r, ThresholdRule):
            raise InputError(f"not a ThresholdRule: {r!r}", field="rules")
        if r.relative_to is not None:
            raise InputError(f"rule {r.name!r}: relative thresholds are not evaluated live", field="relative_to",
                             hint="use an absolute threshold, or evaluate it on demand over a long period")
    return out


def needed_properties(rules: Iterable[ThresholdRule]) -> list[str]:
    """Observed properties the rules read (``aqi`` stands for the six pollutants)."""
    props: set[str] = set()
    for r in rules:
        props.update(AQI_INPUTS if r.property == "aqi" else (r.property,))
    return sorted(props)


def _utc_naive(t: pd.Series, tz: str) -> pd.Series:
    t = pd.to_datetime(t)
    if getattr(t.dt, "tz", None) is None:
        t = t.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    return t.dt.tz_convert("UTC").dt.tz_localize(None)


def _as_utc(c: AlertCandidate) -> AlertCandidate:
    def u(x: pd.Timestamp) -> pd.Timestamp:
        return pd.Timestamp(x).tz_localize("UTC")

    return dataclasses.replace(c, start=u(c.start), end=u(c.end), peak_time=u(c.peak_time),
                               detected_at=None if c.detected_at is None else u(c.detected_at))


def hourly_aqi_series(obs: pd.DataFrame, *, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Hourly AQI as a long frame ``entity, property='aqi', time (UTC, naive), value``.

    Hours after an entity's last hour with a pollutant reading are dropped (not known yet, not "below").
    """
    pol = obs[obs["property"].isin(AQI_INPUTS)]
    if pol.empty:
        return pd.DataFrame({"entity": [], "property": [], "time": pd.Series([], dtype="datetime64[ns]"),
                             "value": []})
    if "unit" in pol.columns:  # values already in the table's unit need no conversion (saves unit parsing)
        canon = pol["property"].map(aqi_mod.load_table().units)
        pol = pol.assign(unit=pol["unit"].where(pol["unit"] != canon))
    h = aqi_mod.hourly_aqi(pol, tz=tz, invalid="missing")
    h = h.assign(time=_utc_naive(h["time"], tz), value=h["aqi"].astype("Float64").astype(float))
    h = h.dropna(subset=["time"])
    # the last hour with a reading: the AQI grid runs to the end of the local day (and the O3 8-h
    # mean spills into those empty hours), which is not known yet
    seen = pol.dropna(subset=["value"])
    last = _utc_naive(seen["time"], tz).dt.floor("h").groupby(seen["entity"].to_numpy()).max()
    h = h[h["time"] <= h["entity"].map(last)]
    return h.assign(property="aqi")[["entity", "property", "time", "value"]].reset_index(drop=True)


def window_candidates(rules: Sequence[ThresholdRule], obs: pd.DataFrame, *, start: pd.Timestamp | None = None,
                      tz: str = "Asia/Shanghai") -> list[AlertCandidate]:
    """Evaluate rules over a window of observations; candidates with times in UTC (tz-aware).

    Parameters
    ----------
    rules
        Threshold rules; ``property == "aqi"`` means the hourly AQI derived from the pollutants.
    obs
        Long observations ``entity, property, time, value[, unit]`` (history rows). For AQI rules,
        give a day more before ``start``: the hourly AQI uses up to 24 h of past readings (SO2 above
        800 µg/m³, O3 8-hour mean).
    start
        First time evaluated (rows before it only feed the AQI's moving means).
    tz
        Local time zone of naive times and of the AQI's hours (HJ 633-2012: China Standard Time).

    Returns
    -------
    list of AlertCandidate
        Runs that hold for ``min_steps``; ``ongoing`` when they reach the entity's last known step.
    """
    rules = check_live_rules(rules)
    if obs.empty or not rules:
        return []
    s0 = None if start is None else pd.Timestamp(start)
    if s0 is not None:
        s0 = (s0.tz_localize(tz) if s0.tz is None else s0).tz_convert("UTC").tz_localize(None)
    series: dict[str, pd.DataFrame] = {}
    out: list[AlertCandidate] = []
    for r in rules:
        if r.property not in series:
            if r.property == "aqi":
                f = hourly_aqi_series(obs, tz=tz)
            else:
                raw = obs[obs["property"] == r.property]
                f = raw.assign(time=_utc_naive(raw["time"], tz))[["entity", "property", "time", "value"]]
            series[r.property] = f if s0 is None else f[f["time"] >= s0]
        f = series[r.property]
        if len(f):
            out.extend(_as_utc(c) for c in evaluate(r, f))
    return out
