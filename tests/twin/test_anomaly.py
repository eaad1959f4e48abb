"""Anomaly checks: synthetic cases for the logic, and a real sensor fault in the Beijing data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.twin.anomaly import (
    FLAG_COLUMNS,
    detect,
    neighbour_disagreement,
    neighbours_from_distance,
    physical_range,
    spikes,
    stuck,
)


def _obs(values: list[float], entity: str = "s1", prop: str = "pm25") -> pd.DataFrame:
    t = pd.date_range("2024-01-01", periods=len(values), freq="h")
    return pd.DataFrame({"entity": entity, "property": prop, "time": t, "value": values})


def test_physical_range() -> None:
    obs = pd.concat([_obs([10, -1, 2500]), _obs([5, 120], prop="relativeHumidity"), _obs([9e9], prop="other")])
    f = physical_range(obs)
    assert list(f.columns) == FLAG_COLUMNS
    assert f["value"].tolist() == [-1, 2500, 120]
    assert f["reason"].str.contains("below|above").all()
    assert physical_range(obs, {"other": (0, 1)})["value"].tolist() == [9e9]


def test_stuck_runs_missing_and_ignored_values() -> None:
    obs = _obs([1, 5, 5, 5, 5, 5, np.nan, 5, 5, 0, 0, 0, 0, 0])
    f = stuck(obs, min_steps=5)
    assert f["time"].dt.hour.tolist() == [1, 2, 3, 4, 5, 9, 10, 11, 12, 13]  # NaN ends the run of 5s
    assert stuck(obs, min_steps=5, ignore_values=[0])["value"].tolist() == [5.0] * 5
    assert stuck(obs, min_steps=6).empty
    # tolerance: values within 0.1 count as equal
    assert len(stuck(_obs([3.0, 3.05, 3.02, 3.08]), min_steps=4, tolerance=0.1)) == 4
    with pytest.raises(InputError, match="min_steps"):
        stuck(obs, min_steps=1)


def test_spike_versus_step() -> None:
    rng = np.random.default_rng(0)
    base = 50 + rng.normal(0, 1, 200)
    spike = base.copy()
    spike[100] += 40  # one reading out and back
    f = spikes(_obs(list(spike)))
    assert f["check"].tolist() == ["spike"] and f["time"].dt.hour.tolist() == [100 % 24]
    shift = base.copy()
    shift[120:] += 30  # recalibration: a level shift
    f = spikes(_obs(list(shift)))
    assert f["check"].tolist() == ["step"] and f["time"].iloc[0] == pd.Timestamp("2024-01-01") + pd.Timedelta(
        hours=120)
    assert spikes(_obs(list(spike)), min_abs=50).empty
    # rolling window gives the same single spike here
    f = spikes(_obs(list(spike)), window=48)
    assert f["check"].tolist() == ["spike"]


def test_spikes_with_constant_series_flags_nothing() -> None:
    assert spikes(_obs([7.0] * 20)).empty


def test_neighbours() -> None:
    t = 50
    rng = np.random.default_rng(1)
    common = 40 + 10 * np.sin(np.arange(t) / 5)
    frames = [_obs(list(common + rng.normal(0, 1, t) + bias), e) for e, bias in (("a", 0), ("b", 0.5),
                                                                                  ("c", -0.5), ("d", 0))]
    frames[3].loc[25, "value"] += 30  # d disagrees at one hour
    obs = pd.concat(frames)
    adj = {e: [x for x in "abcd" if x != e] for e in "abcd"}
    f = neighbour_disagreement(obs, adj)
    assert f[["entity", "check"]].values.tolist() == [["d", "neighbours"]]
    assert f["time"].iloc[0] == pd.Timestamp("2024-01-01") + pd.Timedelta(hours=25)
    # a constant bias is removed (residuals are centred per entity): e reads 8 higher, always
    biased = pd.concat([obs, _obs(list(common + rng.normal(0, 1, t) + 8), "e")])
    f = neighbour_disagreement(biased, {"e": ["a", "b", "c"]})
    assert f.empty
    # too few neighbours -> nothing checked
    assert neighbour_disagreement(obs, {"d": ["a"]}).empty
    dist = pd.DataFrame([[0, 1, 1, 9], [1, 0, 1, 9], [1, 1, 0, 9], [9, 9, 9, 0]], index=list("abcd"),
                        columns=list("abcd"))
    assert neighbours_from_distance(dist, 2) == {"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"], "d": []}
    with pytest.raises(InputError, match="no entity of the adjacency"):
        neighbour_disagreement(obs, {"x": ["y"]})


def test_bad_frames() -> None:
    with pytest.raises(InputError, match="lacks column"):
        stuck(pd.DataFrame({"entity": ["a"], "value": [1]}))
    with pytest.raises(InputError, match="non-numeric"):
        physical_range(_obs([1.0]).assign(value="x"))


def test_real_stuck_ozone_at_dongsi(shared_data: Path) -> None:
    """Dongsi's O3 reads 1071 µg/m³ for 12 hours on 16–17 August 2013: a stuck (saturated) sensor."""
    names = {"O3": "o3", "NO2": "no2"}
    frames = []
    for station in ("Dongsi", "Tiantan", "Guanyuan", "Wanshouxigong"):
        w = pd.read_csv(shared_data / f"air_beijing_multisite/PRSA_Data_{station}_20130301-20170228.csv",
                        skiprows=range(1, 3900), nrows=400)  # 10..27 August 2013
        w["time"] = pd.to_datetime(w[["year", "month", "day", "hour"]])
        frames.append(w.melt(id_vars=["station", "time"], value_vars=list(names), var_name="property",
                             value_name="value").rename(columns={"station": "entity"}))
    obs = pd.concat(frames, ignore_index=True)
    obs["property"] = obs["property"].map(names)
    f = stuck(obs, min_steps=6)
    dongsi = f[(f["entity"] == "Dongsi") & (f["value"] == 1071)]
    assert len(dongsi) == 12
    assert dongsi["time"].min() == pd.Timestamp("2013-08-16 17:00")
    adj = {s: [x for x in ("Dongsi", "Tiantan", "Guanyuan", "Wanshouxigong") if x != s] for s in
           ("Dongsi", "Tiantan", "Guanyuan", "Wanshouxigong")}
    nb = neighbour_disagreement(obs, adj)
    o3 = nb[(nb["entity"] == "Dongsi") & (nb["property"] == "o3")]
    assert (o3["value"] == 1071).sum() >= 12  # every stuck hour disagrees with the 3 neighbours
    all_flags = detect(obs, adjacency=adj)
    assert {"stuck", "neighbours"} <= set(all_flags.loc[all_flags["value"] == 1071, "check"])
