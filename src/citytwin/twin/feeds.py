"""Feeds of real sensor data as twin messages: the Beijing multi-site air data (UCI, 12 stations)
as entities and long observations, NGSI-LD messages built from a long table, and a replay schedule.

Split from :mod:`citytwin.twin.entities` (which keeps the message model and the parser).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from citytwin.twin.entities import DEFAULT_TOPIC_PREFIX, Entity, entity_id, format_time_us, topic_for

# -- Beijing multi-site air data (UCI, 12 stations, hourly, 2013-03-01 .. 2017-02-28) -------------------

BEIJING_COLUMNS: dict[str, tuple[str, str]] = {
    # source column -> (SDM property, source unit)
    "PM2.5": ("pm25", "µg/m³"), "PM10": ("pm10", "µg/m³"), "SO2": ("so2", "µg/m³"), "NO2": ("no2", "µg/m³"),
    "CO": ("co", "µg/m³"), "O3": ("o3", "µg/m³"), "TEMP": ("temperature", "℃"),
    "PRES": ("atmosphericPressure", "hPa"), "DEWP": ("dewPoint", "℃"), "RAIN": ("precipitation", "mm"),
    "WSPM": ("windSpeed", "m/s"), "wd": ("windDirection", "degree"),
}
COMPASS = {d: i * 22.5 for i, d in enumerate(
    ["N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW"])}
# Approximate station coordinates (WGS84) of the 12 national monitoring stations in the UCI data,
# from the Ministry of Ecology and Environment station list as commonly cited; good to ~100 m.
BEIJING_STATIONS: dict[str, tuple[float, float]] = {
    "Aotizhongxin": (116.397, 39.982), "Changping": (116.230, 40.217), "Dingling": (116.220, 40.292),
    "Dongsi": (116.417, 39.929), "Guanyuan": (116.339, 39.929), "Gucheng": (116.184, 39.914),
    "Huairou": (116.628, 40.328), "Nongzhanguan": (116.461, 39.937), "Shunyi": (116.655, 40.127),
    "Tiantan": (116.407, 39.886), "Wanliu": (116.287, 39.987), "Wanshouxigong": (116.352, 39.878),
}
BEIJING_TZ = "Asia/Shanghai"


def beijing_entity(station: str) -> Entity:
    """The AirQualityObserved entity of a Beijing station (id ``urn:ngsi-ld:AirQualityObserved:Beijing-{station}``)."""
    lon, lat = BEIJING_STATIONS.get(station, (None, None))
    return Entity(entity_id("AirQualityObserved", f"Beijing-{station}"), "AirQualityObserved", lon, lat,
                  {"name": station, "address": {"addressLocality": "Beijing", "addressCountry": "CN"}})


def is_beijing_frame(df: pd.DataFrame) -> bool:
    """True if ``df`` has the UCI Beijing wide columns."""
    return {"year", "month", "day", "hour", "station", "PM2.5"}.issubset(df.columns)


def beijing_long(df: pd.DataFrame) -> pd.DataFrame:
    """UCI Beijing wide rows -> long observations (entity, type, property, time UTC, value, unit).

    Values stay in the source unit (CO in µg/m³) and the unit column says so; the ingest
    converts to the canonical unit. Missing values (NaN) stay rows with a NaN value.
    Wind direction (compass point, e.g. ``NNW``) becomes degrees from north.

    Examples
    --------
    >>> w = pd.DataFrame({"year": [2015], "month": [12], "day": [1], "hour": [8], "station": ["Dongsi"],
    ...                   "PM2.5": [301.0], "CO": [float("nan")], "wd": ["NNW"]})
    >>> beijing_long(w)[["property", "value", "unit"]].values.tolist()
    [['pm25', 301.0, 'µg/m³'], ['co', nan, 'µg/m³'], ['windDirection', 337.5, 'degree']]
    """
    local = pd.to_datetime(df[["year", "month", "day", "hour"]].astype("int64"))
    time = local.dt.tz_localize(BEIJING_TZ).dt.tz_convert("UTC")
    ents = df["station"].map(lambda s: entity_id("AirQualityObserved", f"Beijing-{s}"))
    parts = []
    for col, (prop, unit) in BEIJING_COLUMNS.items():
        if col not in df.columns:
            continue
        vals = df[col].map(COMPASS).astype("float64") if col == "wd" else pd.to_numeric(df[col]).astype("float64")
        parts.append(pd.DataFrame({"entity": ents.to_numpy(), "type": "AirQualityObserved", "property": prop,
                                   "time": time.to_numpy(), "value": vals.to_numpy(), "unit": unit,
                                   "_row": np.arange(len(df))}))
    out = pd.concat(parts, ignore_index=True)
    out["time"] = pd.to_datetime(out["time"], utc=True)
    return out.sort_values(["_row"], kind="stable").drop(columns="_row").reset_index(drop=True)


def messages_from_long(long: pd.DataFrame, *, prefix: str = DEFAULT_TOPIC_PREFIX,
                       per_message: int = 1) -> Iterator[tuple[int, str, bytes]]:
    """Group long observations into MQTT messages, in time order: ``(time µs, topic, payload)``.

    One message per entity and timestamp (all its properties); with ``per_message > 1``,
    that many entity updates go together as a JSON array on ``{prefix}/batch``. NaN values
    are sent as JSON ``null``. ``long`` needs entity, property, time, value, unit.
    """
    df = long.sort_values(["time", "entity"], kind="stable")
    t_us = df["time"].dt.tz_convert("UTC").astype("int64").to_numpy() // 1000 if df["time"].dt.unit == "ns" \
        else df["time"].dt.tz_convert("UTC").dt.as_unit("us").astype("int64").to_numpy()
    ents = df["entity"].to_numpy()
    props = df["property"].to_numpy()
    vals = df["value"].to_numpy(dtype="float64")
    unts = df["unit"].to_numpy()
    batch: list[dict[str, Any]] = []
    batch_t = 0
    n = len(df)
    i = 0
    while i < n:
        j = i
        e, t = ents[i], t_us[i]
        doc: dict[str, Any] = {"id": e, "observedAt": format_time_us(int(t))}
        while j < n and ents[j] == e and t_us[j] == t:
            v = vals[j]
            doc[props[j]] = {"value": None if math.isnan(v) else float(v), "unit": unts[j]}
            j += 1
        i = j
        if per_message <= 1:
            yield int(t), topic_for(e, prefix), json.dumps(doc, ensure_ascii=False).encode()
        else:
            if not batch:
                batch_t = int(t)
            batch.append(doc)
            if len(batch) >= per_message:
                yield batch_t, f"{prefix}/batch", json.dumps(batch, ensure_ascii=False).encode()
                batch = []
    if batch:
        yield batch_t, f"{prefix}/batch", json.dumps(batch, ensure_ascii=False).encode()


def replay_schedule(times_us: np.ndarray, speed: float) -> np.ndarray:
    """Wall-clock send offsets (seconds from start) for event times replayed at ``speed``× real time.

    ``speed <= 0`` or ``inf`` means as fast as possible (all zero).

    Examples
    --------
    >>> replay_schedule(np.array([0, 3_600_000_000, 7_200_000_000]), 3600.0).tolist()
    [0.0, 1.0, 2.0]
    """
    t = np.asarray(times_us, dtype="float64")
    if len(t) == 0 or speed <= 0 or not math.isfinite(speed):
        return np.zeros(len(t))
    return (t - t[0]) / 1e6 / speed
