"""Construction sites watched by the twin (F7): noise and dust against the permit's thresholds, and
work outside the permitted hours, with the twin's threshold rules (:mod:`citytwin.twin.rules`).

A site's permit: ``noise_db`` (limit, e.g. 70 dB(A) by day), ``dust_pm10`` (µg/m³), the permitted
hours ``[start_hour, end_hour)`` in the site's time zone, ``activity_db`` (noise above which the site
counts as working) and ``min_steps`` (consecutive observations needed). Observations are the long
frame of the twin (``entity``, ``property``, ``time``, ``value``) of the site's sensors, with the
properties ``noise`` and ``pm10``.

- ``noise``: noise above ``noise_db`` for ``min_steps`` steps (any hour);
- ``dust``: PM10 above ``dust_pm10`` for ``min_steps`` steps;
- ``hours``: noise above ``activity_db`` for ``min_steps`` steps outside the permitted hours (values
  inside the permitted hours are set missing, so a run never crosses into them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError

COLUMNS = ["site", "kind", "entity", "start", "end", "peak", "steps", "threshold"]


def site_violations(obs: pd.DataFrame, sites: Sequence[Mapping[str, Any]], *, step: str = "1h") -> pd.DataFrame:
    """Violations of each site's permit (see the module docstring), one row per run.

    ``sites``: dicts with ``id``, ``sensors`` (entity ids), ``noise_db``, ``dust_pm10``,
    ``start_hour``, ``end_hour``, ``activity_db``, ``tz`` (default ``Asia/Shanghai``) and
    ``min_steps`` (default 2). Times in ``obs`` must carry a time zone.
    """
    from citytwin.twin.rules import ThresholdRule, evaluate

    for c in ("entity", "property", "time", "value"):
        if c not in obs.columns:
            raise InputError(f"observations lack column {c!r}", field=c)
    t = pd.to_datetime(obs["time"])
    if getattr(t.dt, "tz", None) is None:
        raise InputError("observation times need a time zone (permitted hours are local)", field="time")
    rows: list[dict[str, Any]] = []
    for s in sites:
        sid = str(s.get("id") or "")
        if not sid:
            raise InputError("a site needs an 'id'", field="id")
        mine = obs[obs["entity"].isin(list(s.get("sensors", [])))].copy()
        mine["time"] = t[mine.index].dt.tz_convert("UTC").dt.tz_localize(None)
        n = int(s.get("min_steps", 2))
        checks: list[tuple[str, Any, pd.DataFrame]] = []
        if s.get("noise_db") is not None:
            checks.append(("noise", ThresholdRule(f"{sid}_noise", "noise", ">", float(s["noise_db"]), min_steps=n,
                                                  step=step), mine))
        if s.get("dust_pm10") is not None:
            checks.append(("dust", ThresholdRule(f"{sid}_dust", "pm10", ">", float(s["dust_pm10"]), min_steps=n,
                                                 step=step), mine))
        if s.get("activity_db") is not None and s.get("start_hour") is not None and s.get("end_hour") is not None:
            local = t[mine.index].dt.tz_convert(str(s.get("tz", "Asia/Shanghai"))).dt.hour
            a, b = int(s["start_hour"]), int(s["end_hour"])
            inside = (local >= a) & (local < b) if a <= b else (local >= a) | (local < b)
            off = mine.copy()
            off.loc[inside.to_numpy(), "value"] = np.nan
            checks.append(("hours", ThresholdRule(f"{sid}_hours", "noise", ">", float(s["activity_db"]), min_steps=n,
                                                  step=step), off))
        for kind, rule, frame in checks:
            for cand in evaluate(rule, frame):
                rows.append({"site": sid, "kind": kind, "entity": cand.entity,
                             "start": pd.Timestamp(cand.start).tz_localize("UTC"),
                             "end": pd.Timestamp(cand.end).tz_localize("UTC"), "peak": cand.peak, "steps": cand.steps,
                             "threshold": cand.threshold})
    out = pd.DataFrame(rows, columns=COLUMNS)
    return out.sort_values(["site", "start", "kind"], kind="stable").reset_index(drop=True)
