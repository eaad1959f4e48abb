"""Units: parse unit labels (Chinese and English) and convert values with pint.

Chinese statistical yearbooks write units as 万元, 亿元, 万人, 万美元, 平方公里, 吨 …,
usually as a suffix of the column header (``地区生产总值_万元``, ``人口（万人）``).
This module turns such a label into a pint unit and gives the factor to a
canonical unit of the same dimension.

Examples
--------
>>> factor("万元", "CNY")
10000.0
>>> canonical("万元"), canonical("平方米")
('CNY', 'm**2')
>>> factor("µg/m³", "mg/m³")
0.001
>>> split_unit_suffix("地区生产总值_当年价格_全市_万元")
('地区生产总值_当年价格_全市', '万元')
"""

from __future__ import annotations

import re
import tokenize
from functools import lru_cache
from typing import Any

import pint

from citytwin.foundation.errors import InputError

_DEFINITIONS = """
CNY = [currency_cny] = yuan = RMB
USD = [currency_usd] = dollar_us
person = [population] = persons = capita
household = [households]
item = [count] = items = unit_count
"""

# Chinese labels and common spellings -> pint expressions.
ALIASES: dict[str, str] = {
    "元": "CNY",
    "万元": "1e4 * CNY",
    "亿元": "1e8 * CNY",
    "千元": "1e3 * CNY",
    "百万元": "1e6 * CNY",
    "美元": "USD",
    "万美元": "1e4 * USD",
    "亿美元": "1e8 * USD",
    "人": "person",
    "万人": "1e4 * person",
    "千人": "1e3 * person",
    "户": "household",
    "万户": "1e4 * household",
    "个": "item",
    "张": "item",
    "所": "item",
    "座": "item",
    "辆": "item",
    "件": "item",
    "次": "item",
    "家": "item",
    "吨": "tonne",
    "万吨": "1e4 * tonne",
    "千克": "kg",
    "公斤": "kg",
    "平方米": "m**2",
    "平方公里": "km**2",
    "平方千米": "km**2",
    "公顷": "hectare",
    "亩": "666.6667 * m**2",
    "公里": "km",
    "千米": "km",
    "米": "m",
    "百分比": "percent",
    "百分比%": "percent",
    "%": "percent",
    "‰": "permille",
    "ug/m3": "microgram / m**3",
    "µg/m³": "microgram / m**3",
    "μg/m³": "microgram / m**3",
    "μg/m3": "microgram / m**3",
    "µg/m3": "microgram / m**3",
    "微克/立方米": "microgram / m**3",
    "mg/m3": "milligram / m**3",
    "mg/m³": "milligram / m**3",
    "毫克/立方米": "milligram / m**3",
    "km/h": "km / hour",
    "千米/小时": "km / hour",
    "pcu/h": "item / hour",
    "veh/h": "item / hour",
    "°c": "degC",
    "°": "degree",
    "℃": "degC",
    "degc": "degC",
    "hpa": "hectopascal",
    "mm": "millimeter",
    "m/s": "m / s",
    "kwh": "kilowatt_hour",
    "千瓦时": "kilowatt_hour",
    "万千瓦时": "1e4 * kilowatt_hour",
    "亿千瓦时": "1e8 * kilowatt_hour",
}

# Canonical unit per dimensionality (what values are stored in). Only the scaled Chinese
# statistical units are normalised (万元 -> 元, 万人 -> 人, 万吨 -> 吨, 万千瓦时 -> kWh); an area in m²
# stays in m² and one in km² in km², since both are standard and per-capita areas are quoted in m².
# Sensor properties and schema fields declare their own canonical unit.
_CANONICAL_BY_DIM = {
    "[currency_cny]": "CNY",
    "[currency_usd]": "USD",
    "[population]": "person",
    "[households]": "household",
    "[count]": "item",
    "[mass]": "tonne",
    "[length] ** 2 * [mass] / [time] ** 2": "kilowatt_hour",
}

_PAREN_SUFFIX = re.compile(r"^(?P<stem>.*?)[\s_]*[（(](?P<label>[^()（）]+)[)）]\s*$")
_UNDER_SUFFIX = re.compile(r"^(?P<stem>.*)_(?P<label>[^_]+?)\s*$")


@lru_cache(maxsize=1)
def registry() -> pint.UnitRegistry[Any]:
    """Return the shared unit registry (pint, with currency and population units added).

    pint's parsed definition files are cached in the citytwin cache folder (first build about
    0.3-0.7 s, later processes about 0.03 s); a folder that cannot be written only loses the cache.
    """
    from citytwin.foundation.boundaries import cache_dir

    ureg: pint.UnitRegistry[Any]
    try:
        folder = cache_dir() / "pint"
        folder.mkdir(parents=True, exist_ok=True)
        ureg = pint.UnitRegistry(autoconvert_offset_to_baseunit=True, cache_folder=folder)
    except OSError:
        ureg = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
    for line in _DEFINITIONS.strip().splitlines():
        ureg.define(line.strip())
    return ureg


def _expression(label: str) -> str:
    key = label.strip()
    for candidate in (key, key.lower(), key.replace(" ", "")):
        if candidate in ALIASES:
            return ALIASES[candidate]
    return key


@lru_cache(maxsize=1024)
def parse(label: str) -> pint.Quantity[Any]:
    """Parse a unit label into a pint quantity (``1e4 CNY`` for ``万元``).

    Raises
    ------
    InputError
        If the label is not a known unit.
    """
    ureg = registry()
    expr = _expression(label)
    try:
        q = ureg.Quantity(1, expr) if not re.match(r"^[\d.e+-]+\s*\*", expr) else ureg(expr)
        if not isinstance(q, ureg.Quantity):  # a bare number
            raise pint.UndefinedUnitError(label)
        return q
    except (pint.UndefinedUnitError, pint.DefinitionSyntaxError, AttributeError, TypeError, ValueError,
            SyntaxError, tokenize.TokenError) as exc:  # TokenError: an unbalanced bracket ("(元/人")
        raise InputError(f"unknown unit {label!r}", hint="use a unit such as 万元, 万人, µg/m³, mg/m³, km") from exc


def is_unit(label: str) -> bool:
    """Return True if ``label`` parses as a unit."""
    try:
        parse(label)
    except InputError:
        return False
    return True


def factor(source: str, target: str) -> float:
    """Multiplier converting values in unit ``source`` to unit ``target``.

    Raises
    ------
    InputError
        If either unit is unknown or their dimensions differ (e.g. 元 to 人).
    """
    s, t = parse(source), parse(target)
    if s.dimensionality != t.dimensionality:
        raise InputError(
            f"unit {source!r} ({s.dimensionality}) cannot be converted to {target!r} ({t.dimensionality})"
        )
    if "degC" in str(s.units) or "degC" in str(t.units):
        if str(s.units) != str(t.units):
            raise InputError(f"offset units {source!r} -> {target!r} need an offset, not a factor")
        return 1.0
    return float((s / t).to_base_units().magnitude)


def canonical(label: str) -> str:
    """The canonical unit (what citytwin stores) for a unit label's dimension.

    Scale-free units (percent, degrees Celsius, …) are their own canonical unit.
    """
    q = parse(label)
    dim = str(q.dimensionality)
    if dim in _CANONICAL_BY_DIM:
        return _CANONICAL_BY_DIM[dim]
    return _expression(label)


def _is_suffix_unit(label: str) -> bool:
    # Only well-known unit labels count as a header suffix: pint knows "hour", "year" and
    # "day", which are common words at the end of column names.
    key = label.strip()
    return key in ALIASES or key.lower() in ALIASES or ("/" in key and is_unit(key))


def split_unit_suffix(header: str) -> tuple[str, str | None]:
    """Split ``"GDP_万元"`` or ``"人口（万人）"`` into the stem and a unit label, if the suffix is a unit."""
    text = header.strip()
    # a bracketed suffix first: "插值_常住人口（万人）" is 插值_常住人口 in 万人, not 插值 in "常住人口（万人）"
    for rx in (_PAREN_SUFFIX, _UNDER_SUFFIX):
        m = rx.match(text)
        if m:
            label = m.group("label").strip()
            if label and _is_suffix_unit(label):
                return m.group("stem").strip(" _") or text, label
    return text, None
