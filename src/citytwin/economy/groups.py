"""Groups of cities (B3): regions, north/south, city clusters, user tables; weighted group scores.

Every membership table is a :class:`MembershipTable` that names the document it comes from. Shipped:

* :func:`regions_nbs2011` — east / central / west / northeast by province (NBS, 2011-06-13).
* :func:`north_south` — north / south by province (the Qinling-Huaihe convention at province level).
* :func:`city_clusters` — prefecture members of city clusters whose plans list them (长三角, 京津冀,
  珠三角, 成渝, 哈长), each row naming its planning document; :func:`clusters_13th_fyp` lists the 19
  clusters of the 13th Five-Year Plan.

Cities are tied to provinces by :func:`city_provinces` from a lookup table (e.g. the centroid CSV of the
city boundaries: ``name``, ``province``), with aliases for renamed / merged / misspelt cities; names
that cannot be matched are reported, never silently dropped.

Examples
--------
>>> import pandas as pd
>>> reg = regions_nbs2011()
>>> reg.lookup(["广东省", "山西", "黑龙江省"])
['east', 'central', 'northeast']
>>> f = pd.DataFrame({"g": ["a", "a", "b"], "s": [1.0, 3.0, 5.0], "pop": [3.0, 1.0, 2.0]})
>>> group_scores(f, "s", "g", weight="pop")[["g", "mean", "weighted_mean"]].values.tolist()
[['a', 2.0, 1.5], ['b', 5.0, 5.0]]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from citytwin.economy import data as _data
from citytwin.foundation.admin import normalise_name
from citytwin.foundation.errors import InputError

_PROVINCE_SUFFIX = re.compile(r"(省|市|壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区)$")


def province_short(name: str) -> str:
    """Short province name: ``广西壮族自治区`` -> ``广西``, ``北京市`` -> ``北京``, ``山西省`` -> ``山西``."""
    return _PROVINCE_SUFFIX.sub("", normalise_name(name))


def city_key(name: str) -> str:
    """A city name for display joins: without a trailing 市 / 地区 / 盟 (``贵阳市`` -> ``贵阳``).

    Group membership does not match on it: :func:`unit_keys` resolves names with the one
    administrative-code resolver (:class:`citytwin.foundation.admin.AdminResolver`).
    """
    s = normalise_name(name)
    return re.sub(r"(市|地区|盟)$", "", s) if len(s) > 2 else s


def unit_keys(names: Iterable[Any], level: str = "city") -> list[str]:
    """The key each name is matched on in group tables: its administrative code where
    :class:`~citytwin.foundation.admin.AdminResolver` resolves it (so 北京, 北京市, ``北京\u200b市``
    and 110100 are one city; 恩施州 is 恩施土家族苗族自治州; 襄樊市 is 襄阳市), else the normalised name
    (:func:`city_key` / :func:`province_short`, marked ``name:``).

    Examples
    --------
    >>> unit_keys(["北京", "北京市", "恩施州", "恩施土家族苗族自治州", "火星市"])
    ['110100', '110100', '422800', '422800', 'name:火星']
    >>> unit_keys(["广西", "广西壮族自治区"], level="province")
    ['450000', '450000']
    """
    from citytwin.foundation.admin import AdminResolver

    ns = ["" if n is None or (isinstance(n, float) and np.isnan(n)) else str(n) for n in names]
    if not ns:
        return []
    lv = "province" if level == "province" else "prefecture"
    uniq = list(dict.fromkeys(ns))
    res = AdminResolver.default().resolve(pd.Series(uniq, dtype=object), level=lv)
    short = province_short if level == "province" else city_key
    key = {n: (c if isinstance(c, str) and c else "name:" + short(n))
           for n, c in zip(uniq, res["adcode"].tolist(), strict=True)}
    return [key[n] for n in ns]


@dataclass(frozen=True)
class MembershipTable:
    """Which group each member (province or city) belongs to, and where that comes from.

    Attributes
    ----------
    name
        Name of the grouping (e.g. ``"region_nbs2011"``).
    source
        The document the membership comes from (required).
    members
        DataFrame with ``member`` and ``group`` columns (plus optional ``partial``, ``document``).
    level
        ``"province"`` or ``"city"``: what the members are.
    """

    name: str
    source: str
    members: pd.DataFrame
    level: str = "city"
    _index: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.source:
            raise InputError(f"membership table {self.name!r} must name its source document", field="source")
        for c in ("member", "group"):
            if c not in self.members.columns:
                raise InputError(f"membership table {self.name!r} needs a {c!r} column", field=c)
        idx: dict[str, list[str]] = {}
        for k, g in zip(unit_keys(self.members["member"], self.level), self.members["group"], strict=True):
            idx.setdefault(k, []).append(str(g))
        object.__setattr__(self, "_index", idx)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(self.members["group"].astype(str)))

    def lookup(self, names: Iterable[str]) -> list[str | None]:
        """The (first) group of each name, ``None`` when the name is not a member."""
        out: list[str | None] = []
        for k in unit_keys(list(names), self.level):
            hit = self._index.get(k)
            out.append(hit[0] if hit else None)
        return out

    def lookup_all(self, names: Iterable[str]) -> list[list[str]]:
        """Every group of each name (a city can belong to several clusters)."""
        return [list(self._index.get(k, [])) for k in unit_keys(list(names), self.level)]


def membership_table(frame: pd.DataFrame, *, member: str, group: str, source: str, name: str = "user",
                     level: str = "city") -> MembershipTable:
    """A user-supplied membership table (e.g. read from CSV by the CLI); ``source`` is required."""
    for c in (member, group):
        if c not in frame.columns:
            raise InputError(f"membership table has no column {c!r}", field=c,
                             hint=f"columns: {list(frame.columns)}")
    m = frame[[member, group]].rename(columns={member: "member", group: "group"}).dropna()
    return MembershipTable(name=name, source=source, members=m.reset_index(drop=True), level=level)


def _regions_frame() -> pd.DataFrame:
    return _data.load("regions_nbs2011")


def regions_nbs2011(language: str = "en") -> MembershipTable:
    """East / central / west / northeast by province (NBS 2011). ``language``: ``en`` or ``zh`` labels."""
    f = _regions_frame()
    col = "region_en" if language == "en" else "region"
    return MembershipTable(name="region_nbs2011",
                           source="国家统计局《东西中部和东北地区划分方法》2011-06-13",
                           members=pd.DataFrame({"member": f["province"], "group": f[col]}), level="province")


def north_south() -> MembershipTable:
    """North / south by province (Qinling-Huaihe convention at province level; see the shipped CSV)."""
    f = _regions_frame()
    return MembershipTable(name="north_south",
                           source="Qinling-Huaihe line at province level (15 northern / 16 southern provinces), "
                                  "as in 盛来运 等 (管理世界 2018)",
                           members=pd.DataFrame({"member": f["province"], "group": f["north_south"]}),
                           level="province")


def city_clusters() -> MembershipTable:
    """Prefecture members of the city clusters whose planning documents list them."""
    f = _data.load("city_cluster_members")
    m = pd.DataFrame({"member": f["city"], "group": f["cluster"], "document": f["document"],
                      "partial": f["partial"].fillna("")})
    docs = "; ".join(dict.fromkeys(f["document"]))
    return MembershipTable(name="city_cluster", source=docs, members=m, level="city")


def clusters_13th_fyp() -> pd.DataFrame:
    """The 19 city clusters of the 13th Five-Year Plan with their role in it."""
    return _data.load("city_clusters_13th_fyp")


@dataclass
class Assignment:
    """Groups assigned to rows, and the names that could not be assigned."""

    groups: pd.Series
    unknown: list[str]
    warnings: list[str]


def city_provinces(cities: Iterable[str], lookup: pd.DataFrame, *, name: str = "name",
                   province: str = "province", aliases: Mapping[str, str] | None = None,
                   on_unknown: str = "report") -> Assignment:
    """Province of each city name from a lookup table (e.g. the boundary centroids CSV).

    Parameters
    ----------
    cities
        City names as they appear in the panel (``贵阳市`` or ``贵阳``).
    lookup
        A table with a city-name column and a province column.
    aliases
        Old / misspelt name -> name in the lookup (e.g. ``{"思茅市": "普洱市"}``), or -> a province
        directly (a value that is a province of the lookup table), for cities that no longer exist
        (``{"巢湖市": "安徽省"}``).
    on_unknown
        ``"report"`` (default: ``None`` for that city, listed in ``unknown`` and the warnings) or
        ``"error"`` (raise :class:`InputError` naming them).
    """
    for c in (name, province):
        if c not in lookup.columns:
            raise InputError(f"the city lookup table has no column {c!r}", field=c)
    table: dict[str, str] = {}
    for k, p in zip(unit_keys(lookup[name]), lookup[province], strict=True):
        table.setdefault(k, str(p))
    al_items = list((aliases or {}).items())
    al = dict(zip(unit_keys([k for k, _ in al_items]), [v for _, v in al_items], strict=True))
    provinces = set(table.values()) | {province_short(p) for p in table.values()}
    names = [str(c) for c in cities]
    out: list[str | None] = []
    unknown: list[str] = []
    for c, k in zip(names, unit_keys(names), strict=True):
        if k in al:
            target = al[k]
            if target in provinces:
                out.append(target)
                continue
            k = unit_keys([target])[0]
        p = table.get(k)
        if p is None and k not in unknown:
            unknown.append(c)
        out.append(p)
    uniq_unknown = sorted(set(unknown))
    warnings = []
    if uniq_unknown:
        if on_unknown == "error":
            raise InputError(f"{len(uniq_unknown)} city name(s) not found in the lookup: {uniq_unknown[:20]}",
                             field=name, hint="add aliases for renamed, merged or misspelt cities")
        warnings.append(f"{len(uniq_unknown)} city name(s) have no province and no group: {uniq_unknown[:20]}")
    return Assignment(groups=pd.Series(out, dtype=object), unknown=uniq_unknown, warnings=warnings)


def assign_groups(keys: Iterable[str], table: MembershipTable, *, on_unknown: str = "report") -> Assignment:
    """Group of each key (a province for province-level tables, a city otherwise).

    Unknown keys give ``None`` and are listed (``on_unknown="error"`` raises instead).
    """
    ks = [None if (k is None or (isinstance(k, float) and np.isnan(k))) else str(k) for k in keys]
    gs = table.lookup([k or "" for k in ks])
    unknown = sorted({k for k, g in zip(ks, gs, strict=True) if g is None and k is not None})
    warnings = []
    if unknown:
        if on_unknown == "error":
            raise InputError(f"{len(unknown)} {table.level}(s) not in {table.name!r}: {unknown[:20]}",
                             hint=f"the table comes from {table.source}")
        if table.level == "province":
            warnings.append(f"{len(unknown)} province(s) not in {table.name!r}: {unknown[:20]}")
    return Assignment(groups=pd.Series(gs, dtype=object), unknown=unknown, warnings=warnings)


def group_scores(frame: pd.DataFrame, value: str, group: str, *, by: str | None = None,
                 weight: str | None = None) -> pd.DataFrame:
    """Mean and (optionally) weighted mean of ``value`` per group (and per ``by``, e.g. year).

    Rows whose group is missing are left out and counted in ``n_ungrouped`` of the result's attrs.
    Weighted mean: ``sum(w * v) / sum(w)`` (e.g. population-weighted); rows with a missing or negative
    weight raise :class:`InputError`.
    """
    need = [value, group] + ([by] if by else []) + ([weight] if weight else [])
    absent = [c for c in need if c not in frame.columns]
    if absent:
        raise InputError(f"no column(s) {absent}", field=absent[0])
    f = frame[need].copy()
    n_ungrouped = int(f[group].isna().sum())
    f = f[f[group].notna()]
    if weight:
        wv = pd.to_numeric(f[weight], errors="coerce")
        if wv.isna().any() or (wv < 0).any():
            raise InputError(f"weights in {weight!r} must be numbers >= 0 (missing or negative found)",
                             field=weight)
        f["_wv"] = wv * f[value]
        f["_w"] = wv
    keys = ([by] if by else []) + [group]
    g = f.groupby(keys, sort=True)
    out = g[value].agg(n="count", mean="mean", median="median", min="min", max="max").reset_index()
    if weight:
        sums = g[["_wv", "_w"]].sum().reset_index()
        out["weighted_mean"] = (sums["_wv"] / sums["_w"].replace(0, np.nan)).to_numpy()
        out["total_weight"] = sums["_w"].to_numpy()
    out.attrs["n_ungrouped"] = n_ungrouped
    return out
