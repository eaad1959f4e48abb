"""Text handling shared by routing, consultation summaries and hot-topic mining (G1–G3).

Chinese runs are segmented with ``jieba``; other text is lower-cased and split into words. Both
kinds may be mixed in one message (``"路灯 street light 坏了"``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\W_]+", re.UNICODE)

#: Words too common to name a topic (English and Chinese function words).
_EN_STOP = ("a an the and or of to in on at for from by with is are was were be been it this that there not no "
            "please my our your we i you they he she has have had do does did very can could would will")
STOPWORDS: frozenset[str] = frozenset(
    [*_EN_STOP.split(), "的", "了", "和", "是", "在", "我", "有", "也", "就", "都", "而", "及", "与", "着", "或", "一个", "没有",
       "我们", "你们", "他们", "这", "那", "很", "请", "把", "被", "让", "给", "对", "从", "到", "还", "又", "吧",
       "吗", "呢", "啊", "已经", "一直", "非常", "这个", "那个", "什么", "希望", "能", "要", "会", "问题",
     # the frame of a complaint rather than its topic
     "处理", "尽快", "附近", "相关", "部门", "反映", "一下", "居民", "意见", "地点", "好几天", "一带", "管一管", "住在",
     "情况", "投诉", "举报", "市民", "来信",
     # how often, not what (else "经常" ranks as a hot topic across unrelated problems)
     "经常", "总是", "老是", "常常", "时常", "often", "always", "again"]
)


#: words of a suggestion's frame rather than its theme (besides :data:`STOPWORDS`): left out of
#: keywords and topics, kept for routing, duplicates and hot topics
GENERAL_WORDS: frozenset[str] = frozenset(
    ["too", "more", "most", "less", "few", "many", "much", "need", "needs", "make", "new", "every", "still", "add",
     "put", "would", "also", "just", "some", "any", "all", "get", "like", "should",
     "里", "上", "下", "太", "没", "不", "更", "多", "少", "过", "向", "一些", "需要", "应该", "建议", "增加", "减少",
     "不要", "不够", "现有", "一直", "时间", "觉得", "可以", "可能", "应当", "不能"])


@lru_cache(maxsize=1)
def _jieba() -> Any:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds Chinese characters.

    Examples
    --------
    >>> has_cjk("路灯不亮"), has_cjk("street light out")
    (True, False)
    """
    return _CJK.search(text) is not None


def tokenize(text: object) -> list[str]:
    """Words of ``text``: Chinese runs segmented with jieba, other runs lower-cased words.

    Punctuation and whitespace are dropped; a missing value gives no words.

    Examples
    --------
    >>> tokenize("Street Light out: 工地噪音扰民")
    ['street', 'light', 'out', '工地', '噪音', '扰民']
    """
    if text is None or (isinstance(text, float) and text != text):
        return []
    s = str(text)
    out: list[str] = []
    for m in _WORD.finditer(s):
        run = m.group()
        if _CJK.fullmatch(run):
            out.extend(w for w in _jieba().lcut(run) if w.strip())
        else:
            out.append(run.lower())
    return out


def content_words(text: object, *, search: bool = False) -> list[str]:
    """:func:`tokenize` without stop words, single Latin letters and pure numbers.

    With ``search``, Chinese runs are cut in jieba's search mode: a long word also gives the
    dictionary words inside it (``停车难`` -> ``停车``, ``停车难``), so that texts that say the same
    thing in different compounds share terms (topics, :mod:`citytwin.participation.topics`).

    Examples
    --------
    >>> content_words("解决停车难"), content_words("解决停车难", search=True)
    (['解决', '停车难'], ['解决', '停车', '停车难'])
    """
    words = tokenize(text) if not search else _search_tokens(text)
    return [w for w in words if w not in STOPWORDS and not w.isdigit() and (len(w) > 1 or has_cjk(w))]


def _search_tokens(text: object) -> list[str]:
    if text is None or (isinstance(text, float) and text != text):
        return []
    out: list[str] = []
    for m in _WORD.finditer(str(text)):
        run = m.group()
        if _CJK.fullmatch(run):
            out.extend(w for w in _jieba().lcut_for_search(run) if w.strip())
        else:
            out.append(run.lower())
    return out


def join_text(columns: Sequence[Sequence[object]]) -> list[str]:
    """Row-wise join of several text columns with a space (missing values become empty)."""
    if not columns:
        return []
    n = len(columns[0])
    out = []
    for i in range(n):
        parts = []
        for col in columns:
            v = col[i]
            if v is None or (isinstance(v, float) and v != v):
                continue
            parts.append(str(v))
        out.append(" ".join(parts))
    return out


def keywords(texts: Iterable[object], top: int = 20) -> list[tuple[str, int]]:
    """The ``top`` most frequent content words over ``texts`` but :data:`GENERAL_WORDS`, with their
    counts (ties by word).

    Examples
    --------
    >>> keywords(["工地噪音扰民", "夜间噪音", "noise at night"], top=1)
    [('噪音', 2)]
    """
    c: Counter[str] = Counter()
    for t in texts:
        c.update(w for w in content_words(t) if w not in GENERAL_WORDS)
    return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
