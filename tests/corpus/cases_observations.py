"""Corpus cases of sensor observation files (issue 12): long and wide tables, times, units, ids
that are not URNs, coordinate columns of Chinese maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from registry import case

OBS = "sensor_observation"
HOURS = [f"2015-12-01 {h:02d}:00" for h in range(4)]


def _long(values: list[float] | None = None, *, entity: str = "S1", prop: str = "pm25", unit: str = "µg/m³",
          times: list[str] | None = None) -> pd.DataFrame:
    times = times or HOURS
    values = values if values is not None else [35.0, 40.0, 52.5, 61.0][: len(times)]
    return pd.DataFrame({"entity": entity, "property": prop, "time": times, "value": values, "unit": unit})


def _write(folder: Path, df: pd.DataFrame, name: str = "obs.csv") -> list[Path]:
    p = folder / name
    if name.endswith(".parquet"):
        df.to_parquet(p)
    else:
        df.to_csv(p, index=False)
    return [p]


def _values(prop: str, expected: list[float]) -> Any:
    def check(ws: Any, r: Any) -> None:
        df = ws.read(r.dataset)
        got = df[df["property"] == prop].sort_values(["entity", "time"])["value"].to_numpy(dtype=float)
        np.testing.assert_allclose(got, expected)
    return check


@case("obs_long_clean", "observations", "a clean long observation table (entity, property, time, value, unit)",
      expect="kept", rows=4, ingest={"schema": OBS}, check=_values("pm25", [35.0, 40.0, 52.5, 61.0]))
def _clean(folder: Path) -> list[Path]:
    return _write(folder, _long())


@case("obs_ids_not_urn_no_type", "observations", "station ids like 'S1' (not URNs) and no type column",
      expect="kept", rows=8, ingest={"schema": OBS})
def _not_urn(folder: Path) -> list[Path]:
    return _write(folder, pd.concat([_long(), _long(entity="东四")], ignore_index=True))


@case("obs_bad_time", "observations", "one observation whose time is '31/31/2015'", expect="quarantined", rows=3,
      quarantined=1, reason="not a date-time", ingest={"schema": OBS})
def _bad_time(folder: Path) -> list[Path]:
    return _write(folder, _long(times=[*HOURS[:3], "31/31/2015"]))


@case("obs_duplicate_time", "observations", "the same entity, property and hour twice", expect="quarantined",
      rows=3, quarantined=1, reason="duplicate", ingest={"schema": OBS})
def _dup(folder: Path) -> list[Path]:
    return _write(folder, _long(times=[HOURS[0], HOURS[1], HOURS[1], HOURS[3]]))


@case("obs_negative_pm25", "observations", "a negative PM2.5 concentration", expect="quarantined", rows=3,
      quarantined=1, reason="outside", ingest={"schema": OBS})
def _negative(folder: Path) -> list[Path]:
    return _write(folder, _long([35.0, -5.0, 52.5, 61.0]))


@case("obs_unit_mg", "observations", "PM2.5 given in mg/m³: converted to µg/m³", expect="kept", rows=4,
      ingest={"schema": OBS}, check=_values("pm25", [35.0, 40.0, 52.5, 61.0]))
def _mg(folder: Path) -> list[Path]:
    return _write(folder, _long([0.035, 0.040, 0.0525, 0.061], unit="mg/m³"))


@case("obs_missing_entity", "observations", "an observation without its station", expect="quarantined", rows=3,
      quarantined=1, reason="entity", ingest={"schema": OBS})
def _no_entity(folder: Path) -> list[Path]:
    df = _long()
    df.loc[2, "entity"] = None
    return _write(folder, df)


@case("obs_header_only", "observations", "an observation file with a header and no rows", expect="error",
      reason="no records", ingest={"schema": OBS})
def _header_only(folder: Path) -> list[Path]:
    p = folder / "obs.csv"
    p.write_text("entity,property,time,value,unit\n", encoding="utf-8")
    return [p]


@case("obs_no_time_column", "observations", "an observation table without any time column", expect="error",
      reason="time", ingest={"schema": OBS})
def _no_time(folder: Path) -> list[Path]:
    return _write(folder, _long().drop(columns=["time"]))


@case("obs_wide_beijing_like", "observations", "a wide file (year/month/day/hour, one column per pollutant)",
      expect="kept", rows=8, ingest={"schema": OBS}, check=_values("pm25", [10.0, 12.0, 15.0, 9.0]))
def _wide(folder: Path) -> list[Path]:
    df = pd.DataFrame({"No": [1, 2, 3, 4], "year": 2015, "month": 12, "day": 1, "hour": [0, 1, 2, 3],
                       "PM2.5": [10.0, 12.0, 15.0, 9.0], "PM10": [20.0, 22.0, 25.0, 19.0], "station": "Dongsi"})
    return _write(folder, df)


@case("obs_gcj02_station_coordinates", "observations", "station coordinates in lng_gcj02/lat_gcj02 columns",
      expect="kept", rows=4, ingest={"schema": OBS})
def _gcj_coords(folder: Path) -> list[Path]:
    return _write(folder, _long().assign(lng_gcj02=116.417, lat_gcj02=39.929))


@case("obs_parquet_long", "observations", "the clean long table as Parquet", expect="kept", rows=4,
      ingest={"schema": OBS}, check=_values("pm25", [35.0, 40.0, 52.5, 61.0]))
def _parquet(folder: Path) -> list[Path]:
    return _write(folder, _long(), "obs.parquet")


@case("obs_value_text", "observations", "a value written as 'n/a' in one row", expect="quarantined", rows=3,
      quarantined=1, reason="not a number", ingest={"schema": OBS})
def _value_text(folder: Path) -> list[Path]:
    df = _long().astype({"value": object})
    df.loc[1, "value"] = "n/a?"
    return _write(folder, df)


# air_beijing_multisite/PRSA_Data_Wanliu_….csv (tried as a new user, `-s sensor_observation` without
# `--unit`): its CO column is in µg/m³, the property's unit mg/m³. Every CO reading was quarantined
# ("co: outside [0, 150]", 32,739 of them) with nothing saying why; the reason now names the unit and
# the --unit to pass. (Stored as mg/m³ they would be 1,000 times too large: quarantine stays right.)
@case("obs_wide_co_in_micrograms", "observations", "a wide air file whose CO is in µg/m³ (Beijing): "
      "quarantined with the --unit to pass", expect="quarantined", rows=2, quarantined=2,
      reason="co: outside [0, 150] (in µg/m³? pass --unit CO=µg/m³)", ingest={"schema": OBS})
def _co_micro(folder: Path) -> list[Path]:
    return _write(folder, pd.DataFrame({"station": "Wanliu", "time": HOURS[:2], "PM2.5": [8.0, 11.0],
                                        "CO": [300.0, 1200.0]}))


@case("obs_wide_co_in_micrograms_unit", "observations", "the same file with --unit CO=µg/m³: CO stored in mg/m³",
      expect="kept", rows=4, ingest={"schema": OBS, "units_map": {"CO": "µg/m³"}},
      check=_values("co", [0.3, 1.2]))
def _co_micro_unit(folder: Path) -> list[Path]:
    return _co_micro(folder)
