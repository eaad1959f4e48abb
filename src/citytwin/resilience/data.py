"""Column names and group helpers for real city panels (pure functions, no I/O).

:data:`JCDASHENG_COLUMNS` maps the Chinese headers of the 287-city yearbook panel
(``city_sustainability_jcdasheng``, 2004–2012) to short English names; :func:`tidy_city_panel`
renames them and adds GDP per capita; :func:`city_regions` gives each city its NBS 2011 region
(east / central / west / northeast) through :mod:`citytwin.economy.groups`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from citytwin.economy.groups import assign_groups, city_provinces, regions_nbs2011
from citytwin.foundation.errors import InputError

JCDASHENG_COLUMNS: dict[str, str] = {
    "城市": "city", "年份": "year",
    "地区生产总值_当年价格_全市_万元": "gdp",  # 10^4 yuan, current prices
    "规模以上工业总产值_全市_万元": "industry_output",
    "社会消费品零售额_全市_万元": "retail",
    "外商实际投资额_全市_万美元": "fdi",
    "第三产业占GDP的比重_全市_百分比": "tertiary_share",
    "财政收入 市 占GDP比重": "fiscal_share",
    "年末总人口_全市_万人": "population",  # 10^4 people
    "医院、卫生院数_全市_个": "hospitals",
    "医院、卫生院床位数_全市_张": "beds",
    "每千人拥有卫生技术人员数 市": "health_workers_per_1000",
    "普通中小学在校学生数_市_人": "students",
    "工业二氧化硫排放量_全市_吨": "so2",
    "工业氮氧化物排放量_全市_吨": "nox",
    "生活垃圾无害化处理率_全市_百分比": "waste_treatment",
    "人均公共绿化面积_市辖区_平方米": "green_area_pc",
    "绿化覆盖率_市辖区_百分比%": "green_coverage",
    "公厕数量": "toilets",
    "Score": "score_authors",
}

# Panel names not in today's boundaries: renamed (思茅 -> 普洱, 2007), misspelt (毫州 for 亳州),
# abolished (巢湖, 2011, into Hefei; 莱芜, 2019, into Jinan): city -> city, or -> province.
CITY_ALIASES: dict[str, str] = {"思茅市": "普洱市", "毫州市": "亳州市", "巢湖市": "安徽省", "莱芜市": "山东省"}


def tidy_city_panel(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename the yearbook columns (:data:`JCDASHENG_COLUMNS`) and add ``gdp_pc`` (yuan per person)."""
    missing = [c for c in ("城市", "年份", "地区生产总值_当年价格_全市_万元") if c not in frame.columns]
    if missing:
        raise InputError(f"not the city yearbook panel: no column(s) {missing}", field=missing[0])
    f = frame.rename(columns=JCDASHENG_COLUMNS)
    f["gdp_pc"] = f["gdp"] / f["population"]  # (10^4 yuan) / (10^4 people) = yuan per person
    return f


def city_regions(cities: Iterable[str], lookup: pd.DataFrame, *, name: str = "name", province: str = "province",
                 aliases: Mapping[str, str] | None = None) -> pd.Series:
    """NBS 2011 region (``east``, ``central``, ``west``, ``northeast``) of each city name.

    ``lookup`` is a city table with a name and a province column (e.g. the cnmaps centroids CSV);
    names not found raise :class:`InputError` listing them (add ``aliases``).
    """
    names = list(cities)
    prov = city_provinces(names, lookup, name=name, province=province,
                          aliases=CITY_ALIASES if aliases is None else aliases, on_unknown="error")
    reg = assign_groups(prov.groups, regions_nbs2011(), on_unknown="error")
    return pd.Series(np.asarray(reg.groups, dtype=object), index=range(len(names)), name="region")


# State Council 2014 (国发〔2014〕51号) city size classes by urban resident population (10^4 people):
# lower bounds, largest first.
SIZE_CLASSES_2014: tuple[tuple[float, str], ...] = (
    (1000, "super-large"), (500, "mega"), (300, "large-I"), (100, "large-II"), (50, "medium"), (20, "small-I"),
    (0, "small-II"),
)


def city_size_class(population_10k: pd.Series | Iterable[float]) -> pd.Series:
    """City size class (State Council 2014 standard) from the urban resident population in 10^4 people.

    Bounds are inclusive below (``[1000, ∞)`` super-large, ``[500, 1000)`` mega, ``[300, 500)`` large I,
    ``[100, 300)`` large II, ``[50, 100)`` medium, ``[20, 50)`` small I, below 20 small II). Missing
    stays missing; a negative value raises :class:`InputError` naming its position.
    """
    s = pd.Series(population_10k, dtype=float).reset_index(drop=True)
    neg = s < 0
    if neg.any():
        i = int(np.flatnonzero(neg.to_numpy())[0])
        raise InputError(f"negative population {s.iloc[i]}", row=i + 1, field="population")
    out = pd.Series([None] * len(s), dtype=object, name="size_class")
    for bound, label in reversed(SIZE_CLASSES_2014):
        out[s >= bound] = label
    return out
