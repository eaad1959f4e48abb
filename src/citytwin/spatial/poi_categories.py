"""POI categories of Chinese map platforms (AMap/高德, Baidu/百度, Tencent/腾讯) → citytwin's classes.

The classes are those of the life circle (:data:`citytwin.spatial.lifecircle.DAILY_SERVICES`:
school, kindergarten, clinic, pharmacy, grocery, park, elderly_care, transit_stop) and of functional
mix and centers (the OSM categories of :data:`citytwin.foundation.osm.POI_RULES`: hospital,
university, research, restaurant, culture, sport, public_service, office, hotel, shop,
street_furniture). The mapping is a shipped, editable table, ``spatial/data/poi_categories_cn.csv``
(``platform, category, class, note``): ``category`` is a category path whose levels are separated
by ``:`` (``;``, ``：``, ``；``, ``|`` and ``>`` are read the same way, so AMap's ``type`` field
``餐饮服务;中餐厅;中餐厅`` works as it is). A POI's category takes the class of the **longest**
path of the table it starts with (``科教文化服务:学校:幼儿园`` → kindergarten before
``科教文化服务:学校`` → school); a POI no path fits stays unmapped (None, and reported).

Examples
--------
>>> classify_cn(["运动健身:网球场", "医疗保健:综合医院", "餐饮服务;中餐厅;中餐厅", "购物服务:超市",
...              "科教文化服务:学校:幼儿园", "火星服务:飞船"]).tolist()
['sport', 'hospital', 'restaurant', 'grocery', 'kindergarten', None]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd

from citytwin.foundation.errors import InputError

__all__ = ["PLATFORMS", "TABLE", "classify_cn", "load_table", "looks_chinese"]

#: the shipped table (package data)
TABLE = "poi_categories_cn.csv"
#: platforms of the shipped table (``any`` rows apply to all)
PLATFORMS = ("amap", "baidu", "tencent", "any")
_SEP = re.compile(r"\s*[:;：；|>]\s*")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in _SEP.split(str(path).strip()) if p)


def load_table(path: str | Path | None = None) -> pd.DataFrame:
    """The category table (``platform, category, class, note``), the shipped one unless ``path``.

    Raises
    ------
    InputError
        When a user table lacks a column or has an empty category or class (naming its row).
    """
    if path is None:
        return _shipped().copy()
    try:
        t = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the POI category table: {exc}", file=str(path)) from exc
    return _checked(t, str(path))


@lru_cache(maxsize=1)
def _shipped() -> pd.DataFrame:
    with resources.files("citytwin.spatial").joinpath("data", TABLE).open(encoding="utf-8") as fh:
        t = pd.read_csv(fh, dtype=str, keep_default_na=False)
    return _checked(t, TABLE)


def _checked(t: pd.DataFrame, name: str) -> pd.DataFrame:
    for c in ("platform", "category", "class"):
        if c not in t.columns:
            raise InputError(f"the POI category table has no {c!r} column", file=name, field=c,
                             hint="columns: platform, category, class[, note]")
    for i, (cat, cls) in enumerate(zip(t["category"], t["class"], strict=True), start=2):
        if not str(cat).strip() or not str(cls).strip():
            raise InputError("empty category or class", file=name, row=i)
    t = t.assign(platform=t["platform"].str.strip().str.lower(), category=t["category"].str.strip(),
                 **{"class": t["class"].str.strip()})
    return t.reset_index(drop=True)


def looks_chinese(categories: Iterable[object]) -> bool:
    """Whether most non-empty categories contain Chinese characters (map-platform categories)."""
    vals = [str(v) for v in categories if v is not None and str(v).strip() and str(v) != "nan"]
    return bool(vals) and sum(bool(_CJK.search(v)) for v in vals) * 2 > len(vals)


def classify_cn(categories: Iterable[object], platform: str | None = None,
                table: pd.DataFrame | None = None) -> pd.Series:
    """The citytwin class of each Chinese map-platform category (None where no path fits).

    Parameters
    ----------
    categories
        Category paths as the platform gives them (``运动健身:网球场``, ``餐饮服务;中餐厅;中餐厅``).
    platform
        ``amap``, ``baidu`` or ``tencent`` to use that platform's rows (and ``any`` rows) only;
        default: every row (the platforms' top levels hardly overlap).
    table
        A table as :func:`load_table` gives it (default: the shipped one).
    """
    t = _shipped() if table is None else table
    if platform is not None:
        p = platform.strip().lower()
        if p not in set(t["platform"]) | {"any"}:
            raise InputError(f"unknown platform {platform!r}", field="platform",
                             hint=f"one of: {', '.join(sorted(set(t['platform'])))}")
        t = t[t["platform"].isin([p, "any"])]
    rules: dict[tuple[str, ...], str] = {}
    for cat, cls in zip(t["category"], t["class"], strict=True):
        rules.setdefault(_parts(cat), cls)
    longest = max((len(k) for k in rules), default=0)
    vals = list(categories)
    out: list[str | None] = []
    cache: dict[str, str | None] = {}
    for v in vals:
        key = "" if v is None else str(v)
        if key not in cache:
            parts = _parts(key)
            hit = None
            for n in range(min(len(parts), longest), 0, -1):
                hit = rules.get(parts[:n])
                if hit is not None:
                    break
            cache[key] = hit
        out.append(cache[key])
    return pd.Series(out, dtype=object)
