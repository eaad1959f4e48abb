"""Routing of residents' reports to departments (G2): a text classifier trained on the city's own
labelled history, evaluated on held-out rows against the standard peer (TF-IDF + linear SVM).

The model: TF-IDF of words and word pairs (sublinear counts; Chinese segmented with jieba, see
:func:`citytwin.participation.text.tokenize`) joined with TF-IDF of character 2–4-grams (weight 0.5:
robust to spelling variants and to segmentation errors in Chinese), and a linear SVM with ``C=10``
(less regularised than the baseline's ``C=1``: the classes of a city's routing table are nearly
separable, and rare departments are lost under strong regularisation).

The baseline (:func:`baseline_pipeline`) is scikit-learn's plain ``TfidfVectorizer()`` +
``LinearSVC()``; :func:`train_router` scores both on the same split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from citytwin.foundation.errors import InputError
from citytwin.participation.text import tokenize

#: Weight of the character n-gram block relative to the word block.
CHAR_WEIGHT = 0.5
#: The SVM's C (inverse regularisation).
SVM_C = 10.0


def _identity(x: str) -> str:
    return x


def router_pipeline() -> Any:
    """The (unfitted) scikit-learn pipeline of the router (see the module docstring)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.svm import LinearSVC

    words = TfidfVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False, ngram_range=(1, 2),
                            sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    union = FeatureUnion([("words", words), ("chars", chars)],
                         transformer_weights={"words": 1.0, "chars": CHAR_WEIGHT})
    return Pipeline([("features", union), ("svm", LinearSVC(C=SVM_C))])


def baseline_pipeline() -> Any:
    """The peer: ``TfidfVectorizer()`` + ``LinearSVC()`` with scikit-learn's defaults (on Chinese
    text, jieba tokens: the default pattern would keep whole sentences as one word)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    return Pipeline([("tfidf", TfidfVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False)),
                     ("svm", LinearSVC())])


@dataclass
class RouterResult:
    """A trained router and its held-out scores.

    ``model`` is refitted on all rows after scoring; ``accuracy`` and ``macro_f1`` are those of the
    model fitted on the training rows only, on the held-out rows (``baseline_*`` likewise for the
    baseline on the same split).
    """

    model: Any
    labels: list[str]
    n_train: int
    n_test: int
    accuracy: float
    macro_f1: float
    baseline_accuracy: float
    baseline_macro_f1: float
    test_size: float
    seed: int
    per_label: dict[str, dict[str, float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready scores (no model)."""
        return {"labels": self.labels, "n_train": self.n_train, "n_test": self.n_test,
                "accuracy": self.accuracy, "macro_f1": self.macro_f1,
                "baseline": {"model": "TfidfVectorizer() + LinearSVC()", "accuracy": self.baseline_accuracy,
                             "macro_f1": self.baseline_macro_f1},
                "test_size": self.test_size, "seed": self.seed, "per_label": self.per_label,
                "warnings": self.warnings}


def _check(texts: Sequence[str], labels: Sequence[object]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if len(texts) != len(labels):
        raise InputError(f"{len(texts)} texts but {len(labels)} labels")
    t = np.asarray([str(x) for x in texts], dtype=object)
    lab = np.asarray(["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in labels],
                     dtype=object)
    keep = (lab != "") & np.asarray([bool(x.strip()) for x in t], dtype=bool)
    warnings: list[str] = []
    if (~keep).any():
        warnings.append(f"{int((~keep).sum())} rows without text or label left out")
    t, lab = t[keep], lab[keep]
    if len(set(lab)) < 2:
        raise InputError("routing needs at least two labels with text", field="label")
    return t, lab, warnings


def train_router(texts: Sequence[str], labels: Sequence[object], *, test_size: float = 0.3,
                 seed: int = 0) -> RouterResult:
    """Train the router and score it and the baseline on the same held-out rows.

    Rows without text or label are left out (counted in ``warnings``). The split is stratified
    by label when every label has at least two rows, else random. Labels seen once stay in the
    training part.

    Raises
    ------
    InputError
        Fewer than two labels, or too few rows to hold any out.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
    from sklearn.model_selection import train_test_split

    t, lab, warnings = _check(texts, labels)
    if not 0 < test_size < 1:
        raise InputError(f"test_size must be in (0, 1), got {test_size}", field="test_size")
    idx = np.arange(len(t))
    labs, counts = np.unique(lab, return_counts=True)
    single = set(labs[counts < 2])
    pool = np.asarray([i for i in idx if lab[i] not in single])
    forced = np.asarray([i for i in idx if lab[i] in single], dtype=int)
    if single:
        warnings.append(f"{len(single)} labels with one row kept for training only: {sorted(single)[:5]}")
    if len(pool) < 4:
        raise InputError(f"only {len(t)} usable rows: too few to hold any out", hint="give more labelled rows")
    try:
        tr, te = train_test_split(pool, test_size=test_size, random_state=seed, stratify=lab[pool])
    except ValueError:
        tr, te = train_test_split(pool, test_size=test_size, random_state=seed)
    tr = np.concatenate([tr, forced])
    model = _fit(router_pipeline(), t[tr], lab[tr], warnings, "router")
    pred = model.predict(t[te])
    base = _fit(baseline_pipeline(), t[tr], lab[tr], warnings, "baseline")
    bpred = base.predict(t[te])
    present = sorted(set(lab[te]))
    p, r, f, s = precision_recall_fscore_support(lab[te], pred, labels=present, zero_division=0)
    per = {str(k): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
           for i, k in enumerate(present)}
    full = _fit(router_pipeline(), t, lab, warnings, "router (all rows)")
    return RouterResult(
        model=full, labels=[str(x) for x in labs], n_train=len(tr), n_test=len(te),
        accuracy=float(accuracy_score(lab[te], pred)),
        macro_f1=float(f1_score(lab[te], pred, average="macro", labels=present, zero_division=0)),
        baseline_accuracy=float(accuracy_score(lab[te], bpred)),
        baseline_macro_f1=float(f1_score(lab[te], bpred, average="macro", labels=present, zero_division=0)),
        test_size=test_size, seed=seed, per_label=per, warnings=warnings)


def _fit(pipe: Any, x: Any, y: Any, notes: list[str], what: str) -> Any:
    """``pipe.fit(x, y)``, with liblinear's convergence warning said in ``notes`` (the result's
    warnings, which the CLI prints) instead of on stderr as a library warning."""
    import warnings as pywarnings

    from sklearn.exceptions import ConvergenceWarning

    with pywarnings.catch_warnings(record=True) as caught:
        pywarnings.simplefilter("always", ConvergenceWarning)
        pipe.fit(x, y)
    for c in caught:
        if issubclass(c.category, ConvergenceWarning):
            note = f"{what}: the linear SVM stopped at liblinear's iteration limit (not fully converged)"
            if note not in notes:
                notes.append(note)
        else:
            pywarnings.warn(c.message, c.category, stacklevel=2)
    return pipe


def route(model: Any, texts: Sequence[str]) -> list[str]:
    """The department label of each text (in order)."""
    if len(texts) == 0:
        return []
    return [str(x) for x in model.predict(np.asarray([str(x) for x in texts], dtype=object))]
