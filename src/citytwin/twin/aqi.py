"""Air quality index per China's HJ 633-2012, from a versioned breakpoint table.

The table ships as ``citytwin/twin/data/hj633_2012.yaml`` (HJ 633-2012, Tables 1 and 2); nothing is
taken from third-party AQI packages (``python-aqi`` uses US breakpoints, ``aqi-hub`` a wrong SO2
column).

Rules implemented (HJ 633-2012 unless said otherwise):

* IAQI by linear interpolation between the breakpoints of Table 1, **rounded up** to an integer.
* SO2 1-hour above 800 µg/m³ and O3 8-hour above 800 µg/m³ have no IAQI of their own: the pollutant's
  IAQI is the one of the other averaging period (SO2 24-hour, O3 1-hour) when it is known, else missing.
* AQI = max of the IAQIs; the primary pollutant(s) are those whose IAQI equals the AQI, named only
  when AQI > 50; pollutants with IAQI > 100 are "exceeding" (超标污染物).
* Concentrations above the highest breakpoint of a period give IAQI 500 (the table ends there; this
  cap is citytwin's choice, the AQI is reported as 500, 严重污染, and the item is listed in
  ``beyond_scale``).
* Daily (日报): 24-hour means of PM2.5, PM10, SO2, NO2, CO, the daily maximum 1-hour O3 and the
  daily maximum 8-hour moving average of O3. Validity (GB 3095-2012 Table 4 and HJ 663-2013): a
  24-hour mean needs at least 20 valid hours; an 8-hour O3 mean needs at least 6 valid hours; the
  daily maximum 8-hour O3 needs at least 14 valid 8-hour means among the 17 windows that end at
  8:00 … 24:00, unless the maximum found already exceeds the Grade II limit (160 µg/m³), in which
  case it stands. The daily maximum 1-hour O3 needs 20 valid hours too (citytwin's choice, as for
  the 24-hour means). A pollutant without a valid value is missing, never zero; a day is
  ``complete``, ``partial`` (AQI over the valid pollutants) or ``insufficient`` (no AQI).
* Hourly (实时报): 1-hour SO2, NO2, CO and O3 on their 1-hour breakpoints, the 8-hour moving average
  of O3 ending at the hour (≥ 6 valid hours), and the 1-hour PM2.5 and PM10 on the 24-hour
  breakpoints (the standard has no 1-hour PM breakpoints; this is the practice of China's real-time
  publishing platform). SO2 1-hour above 800 falls back to the 24-hour moving mean (≥ 20 hours).

Hours are labelled by their start (``2013-03-01 07:00`` is 07:00–08:00); a calendar day is
00:00–24:00 of the timestamps as given (tz-aware times are converted to ``tz`` first).

Examples
--------
>>> r = aqi({"pm25": 120, "pm10": 180, "so2": 65, "no2": 150, "co": 8, "o3_8h": 200})
>>> r.aqi, r.category.zh, r.primary
(158, '中度污染', ('pm25',))
>>> iaqi("pm25", 45)
63
>>> iaqi("so2", 900, "1h") is None, iaqi("so2", 900, "1h", alternate=65)
(True, 58)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from citytwin.foundation.errors import InputError
from citytwin.foundation.units import factor

TABLE_PATH = Path(__file__).with_name("data") / "hj633_2012.yaml"
POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "so2", "no2", "co", "o3")
PERIODS: tuple[str, ...] = ("1h", "8h", "24h")
Period = Literal["1h", "8h", "24h"]

#: Display names of the AQI items (pollutant and averaging period).
ITEM_NAMES: dict[str, tuple[str, str]] = {
    "pm25": ("PM2.5", "细颗粒物(PM2.5)"),
    "pm10": ("PM10", "可吸入颗粒物(PM10)"),
    "so2": ("SO2", "二氧化硫"),
    "no2": ("NO2", "二氧化氮"),
    "co": ("CO", "一氧化碳"),
    "o3_1h": ("O3 1-hour", "臭氧1小时"),
    "o3_8h": ("O3 8-hour", "臭氧8小时"),
}
DAILY_ITEMS: tuple[str, ...] = ("pm25", "pm10", "so2", "no2", "co", "o3_8h", "o3_1h")
HOURLY_ITEMS: tuple[str, ...] = ("pm25", "pm10", "so2", "no2", "co", "o3_1h", "o3_8h")
_EPS = 1e-9  # guards the rounding-up against floating-point noise (115.00000000001 -> 115)


@dataclass(frozen=True)
class Category:
    """An AQI level of HJ 633-2012 Table 2."""

    level: int
    level_zh: str
    zh: str
    en: str
    color: str
    max: float


@dataclass(frozen=True)
class BreakpointTable:
    """A versioned IAQI breakpoint table (see ``data/hj633_2012.yaml``)."""

    standard: str
    version: str
    iaqi: tuple[float, ...]
    breakpoints: dict[tuple[str, str], tuple[float, ...]]
    units: dict[str, str]
    switch: dict[str, tuple[str, float, str]]
    categories: tuple[Category, ...]
    primary_above: float
    exceedance_above: float
    source: str

    def periods(self, pollutant: str) -> tuple[str, ...]:
        """Averaging periods the table defines for ``pollutant``."""
        return tuple(p for (q, p) in self.breakpoints if q == pollutant)


@lru_cache(maxsize=4)
def load_table(path: str | None = None) -> BreakpointTable:
    """Load a breakpoint table (default: the shipped HJ 633-2012 table).

    Examples
    --------
    >>> t = load_table()
    >>> t.standard, t.breakpoints[("pm25", "24h")][:3]
    ('HJ 633-2012', (0.0, 35.0, 75.0))
    """
    p = Path(path) if path else TABLE_PATH
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read breakpoint table: {exc}", file=str(p)) from exc
    levels = tuple(float(v) for v in raw["iaqi"])
    bps: dict[tuple[str, str], tuple[float, ...]] = {}
    units: dict[str, str] = {}
    for pol, spec in raw["breakpoints"].items():
        units[pol] = spec["unit"]
        for per in PERIODS:
            if per in spec:
                vals = tuple(float(v) for v in spec[per])
                if len(vals) > len(levels) or any(b <= a for a, b in itertools.pairwise(vals)):
                    raise InputError(f"breakpoints of {pol} {per} must increase and be at most "
                                     f"{len(levels)}", file=str(p), field=f"{pol}.{per}")
                bps[(pol, per)] = vals
    switch = {pol: (s["from"], float(s["above"]), s["to"]) for pol, s in raw.get("switch", {}).items()}
    cats = tuple(
        Category(int(c["level"]), c["level_zh"], c["zh"], c["en"], c["color"], float(c["max"]))
        for c in raw["categories"]
    )
    return BreakpointTable(
        standard=str(raw["standard"]), version=str(raw.get("table_version", raw.get("version"))),
        iaqi=levels, breakpoints=bps, units=units, switch=switch, categories=cats,
        primary_above=float(raw.get("primary_pollutant_above", 50)),
        exceedance_above=float(raw.get("exceedance_above", 100)), source=str(p),
    )


def _check_period(table: BreakpointTable, pollutant: str, period: str) -> tuple[float, ...]:
    if pollutant not in table.units:
        raise InputError(f"unknown pollutant {pollutant!r}", field="pollutant",
                         hint=f"one of {', '.join(table.units)}")
    try:
        return table.breakpoints[(pollutant, period)]
    except KeyError:
        raise InputError(
            f"{table.standard} has no {period} breakpoints for {pollutant}", field="period",
            hint=f"{pollutant} has {', '.join(table.periods(pollutant))}",
        ) from None


def iaqi_array(pollutant: str, period: str, concentration: Any,
               table: BreakpointTable | None = None) -> np.ndarray:
    """IAQI of an array of concentrations (float array, NaN where missing or undefined).

    Concentrations beyond the last breakpoint of a switching period (SO2 1-hour, O3 8-hour > 800)
    give NaN; beyond the last breakpoint otherwise give 500. Negative values raise.

    Examples
    --------
    >>> iaqi_array("pm25", "24h", [45, np.nan, 0, 600]).tolist()
    [63.0, nan, 0.0, 500.0]
    """
    t = table or load_table()
    bp = np.asarray(_check_period(t, pollutant, period))
    c = np.asarray(concentration, dtype=float)
    if np.any(c < 0):
        raise InputError(f"negative {pollutant} concentration {float(np.nanmin(c))}", field=pollutant)
    lv = np.asarray(t.iaqi[: len(bp)])
    seg = np.clip(np.searchsorted(bp, c, side="right") - 1, 0, len(bp) - 2)
    lo_b, hi_b, lo_i, hi_i = bp[seg], bp[seg + 1], lv[seg], lv[seg + 1]
    with np.errstate(invalid="ignore"):
        raw = (hi_i - lo_i) / (hi_b - lo_b) * (c - lo_b) + lo_i
        out = np.ceil(raw - _EPS) + 0.0  # + 0.0 turns -0.0 into 0.0
    beyond = c > bp[-1]
    sw = t.switch.get(pollutant)
    if sw is not None and sw[0] == period:
        out = np.where(c > sw[1], np.nan, out)
    else:
        out = np.where(beyond, t.iaqi[-1], out)
    return np.where(np.isnan(c), np.nan, out)


def iaqi(pollutant: str, concentration: float | None, period: Period = "24h", *,
         alternate: float | None = None, table: BreakpointTable | None = None) -> int | None:
    """Individual air quality index (分指数) of one concentration, rounded up.

    Parameters
    ----------
    pollutant
        ``pm25``, ``pm10``, ``so2``, ``no2``, ``co`` or ``o3``.
    concentration
        µg/m³ (CO: mg/m³); ``None`` or NaN gives ``None``.
    period
        Averaging period: ``24h``, ``1h`` or ``8h`` (as defined for the pollutant in Table 1).
    alternate
        Concentration over the other averaging period, used by the switch rules: for SO2 1-hour
        above 800 the 24-hour mean, for O3 8-hour above 800 the 1-hour value.

    Raises
    ------
    InputError
        Unknown pollutant, a period the table does not define for it, or a negative value.

    Examples
    --------
    >>> iaqi("pm25", 120), iaqi("o3", 200, "8h"), iaqi("co", 8)
    (158, 137, 120)
    >>> iaqi("o3", 900, "8h", alternate=850)
    325
    >>> iaqi("pm10", None) is None
    True
    """
    t = table or load_table()
    _check_period(t, pollutant, period)
    if concentration is None or (isinstance(concentration, float) and math.isnan(concentration)):
        return None
    v = float(iaqi_array(pollutant, period, [concentration], t)[0])
    if math.isnan(v):
        sw = t.switch.get(pollutant)
        if sw is not None and alternate is not None and sw[0] == period:
            return iaqi(pollutant, alternate, sw[2], table=t)  # type: ignore[arg-type]
        return None
    return int(v)


def category(aqi_value: float | None, table: BreakpointTable | None = None) -> Category | None:
    """The HJ 633-2012 level of an AQI value (``None`` when missing).

    Examples
    --------
    >>> category(158).zh, category(201).en, category(50).level
    ('中度污染', 'Heavily polluted', 1)
    """
    if aqi_value is None or (isinstance(aqi_value, float) and math.isnan(aqi_value)):
        return None
    t = table or load_table()
    for c in t.categories:
        if aqi_value <= c.max:
            return c
    return t.categories[-1]


@dataclass(frozen=True)
class AqiResult:
    """AQI of one place and period.

    Attributes
    ----------
    aqi
        The AQI (``None`` when no pollutant has a value).
    category
        HJ 633-2012 level (Chinese and English names, colour).
    primary
        Items whose IAQI equals the AQI, only when AQI > 50 (首要污染物).
    iaqi
        IAQI per item (``pm25``, ``pm10``, ``so2``, ``no2``, ``co``, ``o3_8h``, ``o3_1h``).
    exceeding
        Items with IAQI > 100 (超标污染物).
    beyond_scale
        Items whose concentration is above the table's last breakpoint (IAQI capped at 500).
    notes
        Switch rules applied and items left missing.
    """

    aqi: int | None
    category: Category | None
    primary: tuple[str, ...]
    iaqi: dict[str, int | None]
    exceeding: tuple[str, ...] = ()
    beyond_scale: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def level(self) -> int | None:
        """AQI level 1..6."""
        return self.category.level if self.category else None

    @property
    def primary_names(self) -> tuple[str, ...]:
        """Display names of the primary pollutants (``PM2.5`` …)."""
        return tuple(ITEM_NAMES.get(i, (i, i))[0] for i in self.primary)


def _item_key(key: str, period: str) -> tuple[str, str, str]:
    """Map an input key to (item name, pollutant, averaging period)."""
    k = key.lower().replace(".", "").replace("-", "_")
    pol, _, per = k.partition("_")
    if pol not in POLLUTANTS:
        raise InputError(f"unknown pollutant key {key!r}", field=key,
                         hint="use pm25, pm10, so2, no2, co, o3, optionally with _1h, _8h or _24h")
    if not per:
        if pol == "o3":
            per = "8h" if period in ("24h", "8h") else "1h"
        elif pol in ("pm25", "pm10"):
            per = "24h"  # the only PM breakpoints; hourly values are read on them (real-time practice)
        else:
            per = period if period != "8h" else "24h"
    if per not in PERIODS:
        raise InputError(f"unknown averaging period in {key!r}", field=key)
    if pol in ("pm25", "pm10") and per == "1h":
        per = "24h"  # a 1-hour PM value is read on the 24-hour breakpoints (real-time practice)
    item = f"o3_{per}" if pol == "o3" else pol
    return item, pol, per


def aqi(concentrations: Mapping[str, float | None], *, period: Period = "24h",
        table: BreakpointTable | None = None) -> AqiResult:
    """AQI, category and primary pollutant from a set of concentrations.

    Parameters
    ----------
    concentrations
        Keys ``pm25``, ``pm10``, ``so2``, ``no2``, ``co``, ``o3``, optionally with an averaging
        period (``so2_1h``, ``o3_8h``, ``o3_1h``, ``co_24h`` …). Keys without a period take ``period``
        (``o3`` means the 8-hour value for a daily AQI and the 1-hour value for an hourly one; PM
        values are always read on the 24-hour breakpoints). Missing values (``None``/NaN) stay
        missing. µg/m³, CO mg/m³.
    period
        ``24h`` for a daily AQI (日报), ``1h`` for a real-time one (实时报).

    Examples
    --------
    >>> r = aqi({"pm25": 45})
    >>> r.aqi, r.category.en, r.primary_names
    (63, 'Good', ('PM2.5',))
    >>> aqi({"o3_8h": 900, "o3_1h": 850}).iaqi
    {'o3_8h': None, 'o3_1h': 325}
    """
    t = table or load_table()
    given: dict[tuple[str, str], float | None] = {}
    for key, c in concentrations.items():
        _, pol, per = _item_key(key, period)
        given[(pol, per)] = None if c is None else float(c)
    # One item per pollutant (two for O3: 1-hour and 8-hour); the value of the other period of SO2
    # serves as the fallback of the switch rule.
    chosen: dict[str, tuple[str, str, float | None, float | None]] = {}
    for pol in POLLUTANTS:
        pers = [p for (q, p) in given if q == pol]
        if not pers:
            continue
        if pol == "o3":
            for per in ("8h", "1h"):
                if per in pers:
                    # O3 8-hour above 800 has no IAQI; the O3 1-hour item, when given, stands for it.
                    chosen[f"o3_{per}"] = (pol, per, given[(pol, per)], None)
            continue
        want = "24h" if period in ("24h", "8h") else "1h"
        per = want if want in pers else pers[0]
        alt = given.get(("so2", "24h")) if pol == "so2" and per == "1h" else None
        chosen[pol] = (pol, per, given[(pol, per)], alt)
    out: dict[str, int | None] = {}
    notes: list[str] = []
    beyond: list[str] = []
    for item, (pol, per, cf, alt) in chosen.items():
        out[item] = iaqi(pol, cf, per, alternate=alt, table=t)  # type: ignore[arg-type]
        if cf is not None and not math.isnan(cf):
            bp = t.breakpoints[(pol, per)]
            sw = t.switch.get(pol)
            if sw is not None and sw[0] == per and cf > sw[1]:
                notes.append(f"{item} {cf:g} > {sw[1]:g}: reported by its {sw[2]} IAQI ({t.standard})")
            elif cf > bp[-1]:
                beyond.append(item)
        if out[item] is None:
            notes.append(f"{item}: no IAQI")
    present = [v for v in out.values() if v is not None]
    a = max(present) if present else None
    cat = category(a, t)
    primary = tuple(k for k, v in out.items() if a is not None and v == a and a > t.primary_above)
    exceeding = tuple(k for k, v in out.items() if v is not None and v > t.exceedance_above)
    return AqiResult(a, cat, primary, out, exceeding, tuple(beyond), tuple(notes))


# ---------------------------------------------------------------------------------------------
# Vectorised AQI over long observation frames
# ---------------------------------------------------------------------------------------------

_REQUIRED = ("entity", "property", "time", "value")


def _hourly_grid(df: pd.DataFrame, tz: str, table: BreakpointTable, invalid: str) -> pd.DataFrame:
    """Hourly means per entity on a complete hourly grid (one column per pollutant)."""
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"observation frame lacks column(s) {', '.join(missing)}", field=missing[0],
                         hint="columns: entity, property, time, value, unit")
    obs = df.loc[df["property"].isin(POLLUTANTS), [c for c in (*_REQUIRED, "unit") if c in df.columns]]
    obs = obs.reset_index(drop=True)  # unit groups are addressed by label below: labels must be unique
    if obs.empty:
        raise InputError("no pollutant observations (properties pm25, pm10, so2, no2, co, o3)",
                         field="property")
    value = pd.to_numeric(obs["value"], errors="coerce").astype(float)
    bad_type = value.isna() & obs["value"].notna()
    if bad_type.any():
        raise InputError(f"non-numeric value {obs['value'][bad_type].iloc[0]!r}", field="value",
                         row=int(np.flatnonzero(bad_type.to_numpy())[0]) + 1)
    if "unit" in obs.columns:
        for key, idx in obs.groupby(["property", "unit"], dropna=True, sort=False).groups.items():
            prop_unit: tuple[Any, Any] = key  # type: ignore[assignment]
            f = factor(str(prop_unit[1]), table.units[str(prop_unit[0])])
            if f != 1.0:
                value.loc[idx] = value.loc[idx] * f
    neg = value < 0
    if neg.any():
        if invalid == "raise":
            first = obs[neg].iloc[0]
            raise InputError(f"negative concentration {first['value']} for {first['property']} at "
                             f"{first['entity']} {first['time']}", field="value",
                             hint="clean it first (citytwin.twin.anomaly), or pass invalid='missing'")
        value = value.mask(neg)
    time = pd.to_datetime(obs["time"])
    if getattr(time.dt, "tz", None) is not None:
        time = time.dt.tz_convert(tz).dt.tz_localize(None)
    frame = pd.DataFrame({"entity": obs["entity"].to_numpy(), "property": obs["property"].to_numpy(),
                          "time": time.dt.floor("h").to_numpy(), "value": value.to_numpy()})
    wide = frame.pivot_table(index=["entity", "time"], columns="property", values="value",
                             aggfunc="mean", dropna=False, observed=True)
    wide = wide.reindex(columns=list(POLLUTANTS))
    wide.columns.name = None
    parts = []
    for ent, g in wide.groupby(level=0, sort=True):
        g = g.droplevel(0)
        full = pd.date_range(g.index.min().floor("D"), g.index.max().floor("D") + pd.Timedelta(hours=23),
                             freq="h")
        g = g.reindex(full)
        g.index.name = "time"
        g.insert(0, "entity", ent)
        parts.append(g.reset_index())
    return pd.concat(parts, ignore_index=True)


def _summarise(frame: pd.DataFrame, items: tuple[str, ...], iaqis: dict[str, np.ndarray],
               table: BreakpointTable) -> pd.DataFrame:
    mat = np.column_stack([iaqis[i] for i in items])
    has = ~np.isnan(mat).all(axis=1)
    a = np.full(len(frame), np.nan)
    a[has] = np.nanmax(mat[has], axis=1)
    primary = np.full(len(frame), "", dtype=object)
    for j, item in enumerate(items):
        m = (mat[:, j] == a) & (a > table.primary_above)
        primary = np.where(m & (primary != ""), primary + "," + item, np.where(m, item, primary))
    bins = [-np.inf] + [c.max for c in table.categories]
    codes = pd.cut(pd.Series(a), bins=bins, labels=False, right=True)
    cats = table.categories
    lvl = codes.map(lambda k: cats[int(k)].level if pd.notna(k) else pd.NA)
    frame["aqi"] = pd.array(np.where(has, a, np.nan), dtype="Float64").astype("Int64")
    frame["level"] = lvl.astype("Int64")
    frame["category_zh"] = codes.map(lambda k: cats[int(k)].zh if pd.notna(k) else pd.NA).astype("string")
    frame["category_en"] = codes.map(lambda k: cats[int(k)].en if pd.notna(k) else pd.NA).astype("string")
    frame["primary"] = pd.Series(primary, index=frame.index).replace("", pd.NA).astype("string")
    for item in items:
        frame[f"iaqi_{item}"] = pd.array(iaqis[item], dtype="Float64").astype("Int64")
    return frame


def hourly_aqi(df: pd.DataFrame, *, tz: str = "Asia/Shanghai", invalid: str = "raise",
               table: BreakpointTable | None = None) -> pd.DataFrame:
    """Real-time (hourly) AQI per entity and hour.

    Parameters
    ----------
    df
        Long observations: ``entity``, ``property`` (``pm25``, ``pm10``, ``so2``, ``no2``, ``co``,
        ``o3``; other properties are ignored), ``time``, ``value`` and optionally ``unit`` (converted
        to µg/m³, CO mg/m³; a missing unit means those). Several readings within an hour are averaged.
    tz
        Time zone tz-aware times are converted to before hours and days are formed.
    invalid
        ``raise`` (default) on negative concentrations, or ``missing`` to treat them as missing.

    Returns
    -------
    DataFrame
        ``entity``, ``time``, ``aqi``, ``level``, ``category_zh``, ``category_en``, ``primary``
        (comma-separated items or NA), ``iaqi_<item>`` and the concentrations used (``c_<item>``).
        Hours without any value have NA AQI (never 0).

    Examples
    --------
    >>> obs = pd.DataFrame({"entity": "s1", "property": ["pm25", "o3"], "time": "2024-01-01 10:00",
    ...                     "value": [120.0, 90.0], "unit": ["µg/m³", "µg/m³"]})
    >>> hourly_aqi(obs).dropna(subset=["aqi"])[["aqi", "category_zh", "primary"]].to_dict("records")
    [{'aqi': 158, 'category_zh': '中度污染', 'primary': 'pm25'}]
    """
    if invalid not in ("raise", "missing"):
        raise InputError(f"invalid must be 'raise' or 'missing', not {invalid!r}", field="invalid")
    t = table or load_table()
    g = _hourly_grid(df, tz, t, invalid)
    by = g.groupby("entity", sort=False)
    o3_8h = by["o3"].transform(lambda s: s.rolling(8, min_periods=6).mean())
    so2_24 = by["so2"].transform(lambda s: s.rolling(24, min_periods=20).mean())
    conc = {"pm25": g["pm25"], "pm10": g["pm10"], "so2": g["so2"], "no2": g["no2"], "co": g["co"],
            "o3_1h": g["o3"], "o3_8h": o3_8h}
    so2 = iaqi_array("so2", "1h", g["so2"], t)
    so2 = np.where(np.isnan(so2) & (g["so2"].to_numpy() > t.switch["so2"][1]),
                   iaqi_array("so2", "24h", so2_24, t), so2)
    o38 = iaqi_array("o3", "8h", o3_8h, t)
    iaqis = {
        "pm25": iaqi_array("pm25", "24h", g["pm25"], t),
        "pm10": iaqi_array("pm10", "24h", g["pm10"], t),
        "so2": so2,
        "no2": iaqi_array("no2", "1h", g["no2"], t),
        "co": iaqi_array("co", "1h", g["co"], t),
        "o3_1h": iaqi_array("o3", "1h", g["o3"], t),
        # O3 8-hour above 800 has no IAQI: the O3 1-hour item (always evaluated) stands for it.
        "o3_8h": o38,
    }
    # An hour with no reading of any pollutant has no AQI, even where a moving mean (O3 8-hour,
    # SO2 24-hour) still reaches into it from earlier hours.
    empty = ~g[list(POLLUTANTS)].notna().any(axis=1).to_numpy()
    iaqis = {k: np.where(empty, np.nan, np.asarray(v, dtype=float)) for k, v in iaqis.items()}
    for item, c in conc.items():
        g[f"c_{item}"] = np.where(empty, np.nan, np.asarray(c, dtype=float))
    out = _summarise(g.drop(columns=list(POLLUTANTS)), HOURLY_ITEMS, iaqis, t)
    return out


#: Validity rules of daily values (GB 3095-2012 Table 4; HJ 663-2013 for the O3 daily maximum).
MIN_HOURS_24H = 20
MIN_HOURS_8H = 6
MIN_WINDOWS_O3_8H = 14
O3_8H_GRADE2_LIMIT = 160.0


def daily_aqi(df: pd.DataFrame, *, tz: str = "Asia/Shanghai", invalid: str = "raise",
              min_hours: int = MIN_HOURS_24H, require_all: bool = False,
              table: BreakpointTable | None = None) -> pd.DataFrame:
    """Daily AQI (日报) per entity and calendar day.

    Daily concentrations: 24-hour means of PM2.5, PM10, SO2, NO2 and CO (at least ``min_hours``
    valid hours, 20 per GB 3095-2012), the daily maximum 1-hour O3 (at least ``min_hours`` valid
    hours, citytwin's choice) and the daily maximum 8-hour moving average of O3 over the 17 windows
    ending 08:00 … 24:00 (each window needs 6 valid hours; at least 14 valid windows, or a maximum
    above 160 µg/m³ — HJ 663-2013). Hourly readings are first averaged to hours.

    Parameters
    ----------
    df
        Long observations, as for :func:`hourly_aqi`.
    require_all
        If True, a day lacking any of the seven items gets no AQI (``insufficient``); by default the
        AQI is the maximum over the valid items and the day is marked ``partial``.

    Returns
    -------
    DataFrame
        ``entity``, ``date``, ``aqi`` (Int64, NA when insufficient), ``level``, ``category_zh``,
        ``category_en``, ``primary``, ``status`` (``complete`` / ``partial`` / ``insufficient``),
        ``missing`` (items without a valid daily value), ``iaqi_<item>``, ``c_<item>`` (the daily
        concentrations) and ``hours_<pollutant>`` (valid hours).

    Examples
    --------
    >>> hours = pd.date_range("2024-01-01", periods=24, freq="h")
    >>> obs = pd.DataFrame({"entity": "s1", "property": "pm25", "time": hours, "value": 120.0})
    >>> d = daily_aqi(obs)
    >>> d[["aqi", "category_zh", "primary", "status"]].to_dict("records")
    [{'aqi': 158, 'category_zh': '中度污染', 'primary': 'pm25', 'status': 'partial'}]
    """
    if invalid not in ("raise", "missing"):
        raise InputError(f"invalid must be 'raise' or 'missing', not {invalid!r}", field="invalid")
    if not 1 <= min_hours <= 24:
        raise InputError(f"min_hours must be 1..24, not {min_hours}", field="min_hours")
    t = table or load_table()
    g = _hourly_grid(df, tz, t, invalid)
    g["date"] = g["time"].dt.floor("D")
    g["hour"] = g["time"].dt.hour
    by_ent = g.groupby("entity", sort=False)
    # 8-hour moving mean ending at (and including) each hour; windows ending 08:00..24:00 of a day are
    # those whose last hour starts at 07:00..23:00, i.e. lie wholly inside the day.
    g["o3_8h"] = by_ent["o3"].transform(lambda s: s.rolling(8, min_periods=MIN_HOURS_8H).mean())
    g.loc[g["hour"] < 7, "o3_8h"] = np.nan
    day = g.groupby(["entity", "date"], sort=True)
    means = day[["pm25", "pm10", "so2", "no2", "co"]].mean()
    counts = day[list(POLLUTANTS)].count()
    o3_max = day["o3"].max()
    o38_max = day["o3_8h"].max()
    o38_n = day["o3_8h"].count()
    out = pd.DataFrame(index=means.index)
    conc: dict[str, np.ndarray] = {}
    for pol in ("pm25", "pm10", "so2", "no2", "co"):
        conc[pol] = means[pol].where(counts[pol] >= min_hours).to_numpy(dtype=float)
    conc["o3_1h"] = o3_max.where(counts["o3"] >= min_hours).to_numpy(dtype=float)
    conc["o3_8h"] = o38_max.where((o38_n >= MIN_WINDOWS_O3_8H) | (o38_max > O3_8H_GRADE2_LIMIT)).to_numpy(
        dtype=float)
    iaqis = {pol: iaqi_array(pol, "24h", conc[pol], t) for pol in ("pm25", "pm10", "so2", "no2", "co")}
    iaqis["o3_1h"] = iaqi_array("o3", "1h", conc["o3_1h"], t)
    # O3 8-hour above 800: no IAQI from it; the O3 1-hour item stands (HJ 633-2012 Table 1 note 2).
    iaqis["o3_8h"] = iaqi_array("o3", "8h", conc["o3_8h"], t)
    missing_mat = np.column_stack([np.isnan(conc[i]) for i in DAILY_ITEMS])
    n_missing = missing_mat.sum(axis=1)
    if require_all:
        for i in DAILY_ITEMS:
            iaqis[i] = np.where(n_missing > 0, np.nan, iaqis[i])
    out = out.reset_index()
    for item in DAILY_ITEMS:
        out[f"c_{item}"] = conc[item]
    for pol in POLLUTANTS:
        out[f"hours_{pol}"] = counts[pol].to_numpy()
    out = _summarise(out, DAILY_ITEMS, iaqis, t)
    miss = np.full(len(out), "", dtype=object)
    for j, item in enumerate(DAILY_ITEMS):
        m = missing_mat[:, j]
        miss = np.where(m & (miss != ""), miss + "," + item, np.where(m, item, miss))
    out["status"] = pd.array(np.where(out["aqi"].isna().to_numpy(), "insufficient",
                                      np.where(n_missing > 0, "partial", "complete")), dtype="string")
    out["missing"] = pd.Series(miss, index=out.index).replace("", pd.NA).astype("string")
    lead = ["entity", "date", "aqi", "level", "category_zh", "category_en", "primary", "status", "missing"]
    return out[lead + [c for c in out.columns if c not in lead]]
