"""Topics of free text (G1): what residents' comments and survey answers are about, beyond keywords.

Method: the answers' terms (:func:`terms`: content words, Chinese cut by jieba in search mode so
that a long compound also gives the words inside it, other text lower-cased words, stop words and
the words of a suggestion's frame (:data:`~citytwin.participation.text.GENERAL_WORDS`) dropped) weighted by TF-IDF
(scikit-learn's ``TfidfVectorizer``, sub-linear term frequency, rows L2-normalised), factorised by
non-negative matrix factorisation (scikit-learn's ``NMF``, ``init="nndsvda"``, fixed
``random_state``): each topic is a non-negative mix of terms, each answer a non-negative mix of
topics. An answer belongs to the topic of its largest weight; answers with no content word belong to
none.

Number of topics ``k``: given, or chosen by a stated rule — topic stability (Greene, O'Callaghan &
Cunningham 2014, "How many topics? Stability analysis for topic models"): for each ``k`` in
``2..max_k`` (and below the number of distinct answers), NMF on 10 seeded random samples of 80 % of
the answers is compared with NMF on all of them by the average Jaccard of each topic's top 10 terms
(topics matched one to one); the most stable ``k`` wins, a tie goes to the smaller. (The mean
silhouette was tried first and rejected: on short answers it grows with ``k``.) Above 2,000
answers the rule runs on a seeded sample of 2,000; the topics themselves on all answers.
Fewer than :data:`MIN_DOCS` answers with content words, or fewer than two distinct terms, give no
topics (``reason`` says why).

Per topic: its top terms with their weights in the topic (normalised to sum 1 over the topic),
the number and share of answers it holds (share of all answers given, empty ones included), and
example answers (those with the largest weight of the topic, earliest first on ties).

Examples
--------
>>> docs = ["more trees in the park", "plant trees and flowers in the park", "park benches and trees",
...         "too many cars parking", "cars parked on the sidewalk", "parking cars block the road"]
>>> r = topic_summary(docs, k=2, assignment=True)
>>> r["k"], r["rule"], r["assignment"]
(2, 'given', [2, 2, 2, 1, 1, 1])
>>> [(t["topic"], t["terms"][0][0], t["share"]) for t in r["topics"]]
[(1, 'cars', 0.5), (2, 'park', 0.5)]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from citytwin.participation.text import GENERAL_WORDS, content_words

__all__ = ["MIN_DOCS", "terms", "topic_summary"]

_ONE_AT_A_TIME = threading.Lock()
#: fewest answers with content words for a topic summary
MIN_DOCS = 4
def terms(text: object) -> list[str]:
    """The terms topics are made of: content words (jieba search mode for Chinese) without
    :data:`~citytwin.participation.text.GENERAL_WORDS`.

    Examples
    --------
    >>> terms("建议建设地下停车场，解决停车难"), terms("We need more parking spaces")
    (['建设', '地下', '停车', '车场', '停车场', '解决', '停车', '停车难'], ['parking', 'spaces'])
    """
    return [w for w in content_words(text, search=True) if w not in GENERAL_WORDS]


def _matrix(tokens: Sequence[list[str]]) -> tuple[Any, list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer=lambda d: d, sublinear_tf=True, norm="l2")
    x = vec.fit_transform(tokens)
    return x, [str(t) for t in vec.get_feature_names_out()]


def _nmf(x: Any, k: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import NMF

    model = NMF(n_components=k, init="nndsvda", random_state=random_state, max_iter=500, tol=1e-4)
    w = model.fit_transform(x)
    return np.asarray(w), np.asarray(model.components_)


def _top(h: np.ndarray, depth: int) -> list[list[int]]:
    return [np.argsort(-row, kind="stable")[:depth].tolist() for row in h]


def _average_jaccard(a: list[int], b: list[int]) -> float:
    """Average Jaccard of two ranked term lists over the depths 1..len (Greene et al.'s AJ)."""
    return float(np.mean([len(set(a[:d]) & set(b[:d])) / len(set(a[:d]) | set(b[:d])) for d in range(1, len(a) + 1)]))


def _agreement(a: list[list[int]], b: list[list[int]]) -> float:
    """Agreement of two topic models: mean AJ of their top terms, topics matched one to one (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    sim = np.array([[_average_jaccard(x, y) for y in b] for x in a])
    r, c = linear_sum_assignment(-sim)
    return float(sim[r, c].mean())


def _choose_k(x: Any, ks: Sequence[int], random_state: int, *, runs: int = 10, frac: float = 0.8,
              depth: int = 10) -> tuple[int, dict[int, float]]:
    """The most stable ``k`` of ``ks`` (Greene, O'Callaghan & Cunningham 2014): NMF on ``runs`` random
    samples of ``frac`` of the answers (seeded) against NMF on all of them, agreement of each topic's
    top ``depth`` terms (average Jaccard over the depths, topics matched one to one), averaged; ties
    go to the smaller k."""
    rng = np.random.default_rng(random_state)
    n = x.shape[0]
    m = max(2, round(frac * n))
    samples = [np.sort(rng.choice(n, size=m, replace=False)) for _ in range(runs)]
    scores: dict[int, float] = {}
    for k in ks:
        _, h = _nmf(x, k, random_state)
        ref = _top(h, depth)
        agree = []
        for idx in samples:
            _, hs = _nmf(x[idx], k, random_state)
            agree.append(_agreement(ref, _top(hs, depth)))
        scores[k] = float(np.mean(agree))
    best = max(scores.values())
    return min(k for k, s in scores.items() if s >= best - 1e-9), scores


def topic_summary(texts: Sequence[object], *, k: int | None = None, max_k: int = 8, top_terms: int = 8,
                  examples: int = 3, random_state: int = 0, assignment: bool = False) -> dict[str, Any]:
    """Topics of ``texts`` (NMF over TF-IDF of their content words; see the module docstring).

    Parameters
    ----------
    texts
        The answers or comments (missing values count as empty answers).
    k
        The number of topics; None: chosen by the stability rule over ``2..max_k``.
    max_k
        The largest ``k`` the rule tries.
    top_terms
        Terms listed per topic.
    examples
        Example answers per topic.
    random_state
        The seed of NMF's initialisation and of the stability rule's samples (results are reproducible).
    assignment
        Also return ``assignment``: each text's topic number (0 for none), in the order given.

    Returns
    -------
    dict
        ``method``, ``k``, ``rule`` (``given``, ``stability`` or ``none``), ``stability`` (per k tried),
        ``answers`` (all), ``answers_with_terms``, ``reason`` (when there are no topics) and ``topics``:
        a list of ``{"topic", "terms": [[term, weight]...], "answers", "share", "examples"}``, largest first.
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    docs = ["" if t is None or (isinstance(t, float) and t != t) else str(t) for t in texts]
    tokens = [terms(t) for t in docs]
    keep = [i for i, t in enumerate(tokens) if t]
    out: dict[str, Any] = {"method": "NMF over TF-IDF of content words (jieba for Chinese)",
                           "random_state": random_state, "answers": len(docs), "answers_with_terms": len(keep),
                           "k": 0, "rule": "none", "stability": {}, "topics": []}
    distinct = len({" ".join(tokens[i]) for i in keep})
    if assignment:
        out["assignment"] = [0] * len(docs)
    if len(keep) < MIN_DOCS or distinct < 2:
        out["reason"] = f"{len(keep)} answers with content words ({distinct} distinct): topics need {MIN_DOCS} or more"
        return out
    # many small factorisations: one BLAS thread (threads of a small QR only contend: 3.5x slower on 2 loaded
    # cores). The limit is process-wide, so one summary at a time: overlapping limits would restore wrongly.
    with _ONE_AT_A_TIME, threadpool_limits(limits=1, user_api="blas"):
        return _summarise(out, docs, tokens, keep, distinct, k=k, max_k=max_k, top_terms=top_terms,
                          examples=examples, random_state=random_state, assignment=assignment)


def _summarise(out: dict[str, Any], docs: list[str], tokens: list[list[str]], keep: list[int], distinct: int, *,
               k: int | None, max_k: int, top_terms: int, examples: int, random_state: int,
               assignment: bool) -> dict[str, Any]:
    x, vocab = _matrix([tokens[i] for i in keep])
    if len(vocab) < 2:
        out["reason"] = "fewer than two distinct terms"
        return out
    limit = min(max_k, distinct - 1 if k is None else distinct, len(vocab))
    if k is None:
        ks = list(range(2, max(limit, 2) + 1))
        sel = x if x.shape[0] <= 2000 else x[np.sort(np.random.default_rng(random_state).choice(x.shape[0], 2000,
                                                                                              replace=False))]
        kk, scores = _choose_k(sel, ks, random_state)
        out.update(rule="stability", stability={str(a): round(b, 4) for a, b in scores.items()})
    else:
        kk = min(k, limit)
        out["rule"] = "given" if kk == k else f"given {k}, capped at {kk} (distinct answers/terms)"
    w, h = _nmf(x, kk, random_state)
    labels = w.argmax(axis=1)
    labels[w.max(axis=1) <= 0] = -1
    topics: list[dict[str, Any]] = []
    for j in range(kk):
        members = np.flatnonzero(labels == j)
        if not len(members):
            continue
        row = h[j]
        total = float(row.sum()) or 1.0
        order = np.argsort(-row, kind="stable")[:top_terms]
        best = members[np.argsort(-w[members, j], kind="stable")][:examples]
        topics.append({"_j": j, "terms": [[vocab[i], round(float(row[i]) / total, 4)] for i in order if row[i] > 0],
                       "answers": len(members), "share": round(len(members) / len(docs), 4),
                       "examples": [docs[keep[i]] for i in best]})
    topics.sort(key=lambda t: (-t["answers"], t["terms"][0][0] if t["terms"] else ""))  # largest first, then by term
    number = {t["_j"]: i + 1 for i, t in enumerate(topics)}
    if assignment:
        for pos, lab in zip(keep, labels.tolist(), strict=True):
            out["assignment"][pos] = number.get(lab, 0)
    out.update(k=kk, topics=[{"topic": number[t["_j"]], **{a: b for a, b in t.items() if a != "_j"}}
                             for t in topics])
    return out
