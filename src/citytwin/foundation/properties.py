"""Observed properties of sensors: canonical names (Smart Data Models), units and physical ranges.

Wide sensor files (one column per pollutant or variable) are melted at ingest into
one observation per value, named and converted here.
"""

from __future__ import annotations

from dataclasses import dataclass

from citytwin.foundation.schemas import normalize_header


@dataclass(frozen=True)
class Property:
    name: str
    unit: str | None
    min: float | None = None
    max: float | None = None
    aliases: tuple[str, ...] = ()
    text: bool = False  # categorical value mapped to a number (e.g. compass direction)


PROPERTIES: dict[str, Property] = {p.name: p for p in (
    # AirQualityObserved (Smart Data Models); CO in mg/m³ as China reports it (HJ 633-2012)
    Property("pm25", "µg/m³", 0, 2000, ("pm2.5", "pm2_5", "pm25", "细颗粒物")),
    Property("pm10", "µg/m³", 0, 3000, ("pm10", "可吸入颗粒物")),
    Property("so2", "µg/m³", 0, 5000, ("so2", "二氧化硫")),
    Property("no2", "µg/m³", 0, 3000, ("no2", "二氧化氮")),
    Property("co", "mg/m³", 0, 150, ("co", "一氧化碳")),
    Property("o3", "µg/m³", 0, 2000, ("o3", "臭氧")),
    Property("temperature", "°C", -60, 60, ("temp", "temperature", "气温", "温度")),
    Property("atmosphericPressure", "hPa", 800, 1100, ("pres", "pressure", "气压")),
    Property("dewPoint", "°C", -80, 40, ("dewp", "dewpoint", "露点")),
    Property("precipitation", "mm", 0, 500, ("rain", "precipitation", "降水", "降水量")),
    Property("windSpeed", "m/s", 0, 80, ("wspm", "windspeed", "wind_speed", "风速")),
    Property("windDirection", "°", 0, 360, ("wd", "winddirection", "风向"), text=True),
    # TrafficFlowObserved
    Property("intensity", "item / hour", 0, 20000, ("flow", "intensity", "volume", "流量")),
    Property("averageVehicleSpeed", "km/h", 0, 250, ("speed", "averagevehiclespeed", "车速")),
    Property("occupancy", None, 0, 1, ("occupancy", "占有率")),
)}

_BY_ALIAS = {normalize_header(a): p for p in PROPERTIES.values() for a in (p.name, *p.aliases)}

#: Properties of live readings that file ingest does not melt from wide files (so they are not in
#: :data:`PROPERTIES` and its alias table) but that have a physical range all the same.
LIVE_ONLY: dict[str, Property] = {p.name: p for p in (
    Property("relativeHumidity", None, 0, 1),  # a ratio: a payload in percent gives unit "percent"
    Property("airQualityIndex", None, 0, 500),  # HJ 633-2012 IAQI/AQI scale tops out at 500
    Property("averageVehicleLength", "m", 0, 30),
    Property("averageHeadwayTime", "s", 0, 86400),
    Property("congested", None, 0, 1),
)}

COMPASS = {d: i * 22.5 for i, d in enumerate(
    ["N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW"])}


def physical_range(name: str) -> tuple[float | None, float | None] | None:
    """``(min, max)`` a reading of property ``name`` can physically take (in its canonical unit), or None.

    The live twin dead-letters readings outside it (reason ``implausible``; docs/twin.md).

    Examples
    --------
    >>> physical_range("pm25"), physical_range("relativeHumidity"), physical_range("nonsense")
    ((0, 2000), (0, 1), None)
    """
    p = PROPERTIES.get(name) or LIVE_ONLY.get(name)
    return None if p is None or (p.min is None and p.max is None) else (p.min, p.max)


def find_property(header: str) -> Property | None:
    """The known property a column header names, if any (``PM2.5`` -> ``pm25``)."""
    return _BY_ALIAS.get(normalize_header(header))
