"""Construction-site monitoring (F7) with the twin's rules: noise and dust over the permit's limits,
work outside the permitted hours (local time), runs worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.participation.construction import site_violations

SITE = {"id": "site7", "sensors": ["noise7", "dust7"], "noise_db": 75, "dust_pm10": 150, "activity_db": 55,
        "start_hour": 7, "end_hour": 19, "tz": "Asia/Shanghai", "min_steps": 2}


def frame() -> pd.DataFrame:
    t = pd.date_range("2026-03-02 00:00", periods=24, freq="h", tz="Asia/Shanghai")
    noise = [40.0] * 24
    noise[10:13] = [80, 82, 79]      # 10:00–12:00 local: over 75 dB for 3 steps (allowed hours, too loud)
    noise[14] = 90                   # one step only: below min_steps
    noise[21:24] = [60, 62, 58]      # 21:00–23:00 local: working after hours (above 55 dB)
    noise[5:8] = [60, 61, 62]        # 05:00, 06:00 outside; 07:00 inside -> a run of 2 outside
    pm10 = [80.0] * 24
    pm10[15:17] = [160, 170]         # 15:00–16:00 dust over 150
    rows = [("noise7", "noise", a, v) for a, v in zip(t, noise, strict=True)]
    rows += [("dust7", "pm10", a, v) for a, v in zip(t, pm10, strict=True)]
    rows += [("other", "noise", a, 99.0) for a in t]  # another site's sensor: ignored
    return pd.DataFrame(rows, columns=["entity", "property", "time", "value"])


def test_violations_by_hand() -> None:
    v = site_violations(frame(), [SITE])
    local = v.assign(start=v["start"].dt.tz_convert("Asia/Shanghai").dt.hour,
                     end=v["end"].dt.tz_convert("Asia/Shanghai").dt.hour)
    got = sorted(zip(local["kind"], local["start"], local["end"], local["peak"], local["steps"], strict=True))
    assert got == [("dust", 15, 16, 170.0, 2), ("hours", 5, 6, 61.0, 2), ("hours", 21, 23, 62.0, 3),
                   ("noise", 10, 12, 82.0, 3)]
    assert set(v["site"]) == {"site7"} and set(v["entity"]) == {"noise7", "dust7"}


def test_needs_time_zone() -> None:
    f = frame()
    f["time"] = f["time"].dt.tz_localize(None)
    with pytest.raises(InputError, match="time zone"):
        site_violations(f, [SITE])


def test_violation_opens_construction_incident(workspace) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from citytwin.foundation.cases import CaseStore
    from citytwin.participation.incidents import alerts_from_site_violations
    from citytwin.workflows.participation import open_incident_from_alert

    v = site_violations(frame(), [SITE])
    alerts = alerts_from_site_violations(v[v["kind"] == "hours"], {"site7": (39.9, 116.4)})
    st = CaseStore.of(workspace, lambda: datetime(2026, 3, 3, tzinfo=UTC))
    r = open_incident_from_alert(st, alerts[0])
    inc = st.get(r["id"])
    assert inc["category"] == "construction_works" and inc["lat"] == 39.9
    assert [t["department"] for t in st.tasks(r["id"])] == ["construction", "environment"]
    assert {"kind": "sensor", "ref": "site7"} in st.links(r["id"])
