"""Renewal project lifecycle (E3): stages, legal transitions, and outcomes by difference-in-differences.

Stages: planning -> financing -> construction -> monitoring -> evaluation -> feedback. A project moves
one stage forward, may go back from financing to planning (funding refused) and from evaluation to
monitoring (more data needed), and from feedback back to planning (a new round); anything else is
refused. The records themselves live in :mod:`citytwin.foundation.projects`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError

STAGES: tuple[str, ...] = ("planning", "financing", "construction", "monitoring", "evaluation", "feedback")
#: stage -> the stages it may move to
TRANSITIONS: dict[str, frozenset[str]] = {
    "planning": frozenset({"financing"}),
    "financing": frozenset({"construction", "planning"}),
    "construction": frozenset({"monitoring"}),
    "monitoring": frozenset({"evaluation"}),
    "evaluation": frozenset({"feedback", "monitoring"}),
    "feedback": frozenset({"planning"}),
}


class TransitionError(InputError):
    """A stage change the lifecycle does not allow."""


def check_transition(current: str, new: str) -> None:
    """Raise :class:`TransitionError` unless ``current -> new`` is allowed.

    Examples
    --------
    >>> check_transition("planning", "financing")
    >>> check_transition("planning", "construction")
    Traceback (most recent call last):
    ...
    citytwin.planning.lifecycle.TransitionError: field 'stage': cannot move from planning to construction ...
    """
    if new not in STAGES:
        raise InputError(f"unknown stage {new!r}", field="stage", hint=f"stages: {', '.join(STAGES)}")
    if current not in STAGES:
        raise InputError(f"unknown current stage {current!r}", field="stage")
    if new not in TRANSITIONS[current]:
        raise TransitionError(f"cannot move from {current} to {new} (allowed: "
                              f"{', '.join(sorted(TRANSITIONS[current]))})", field="stage")


@dataclass
class DidResult:
    """Difference-in-differences estimate: ``effect`` with its standard error, ``ci`` (95 %), ``p``,
    the number of observations and clusters, and the four cell means."""

    effect: float
    se: float
    ci: tuple[float, float]
    p: float
    nobs: int
    clusters: int | None
    means: dict[str, float]


def did(frame: pd.DataFrame, *, outcome: str, treated: str, post: str, cluster: str | None = None) -> DidResult:
    """Two-group, two-period difference-in-differences by OLS ``y ~ treated + post + treated:post``
    (statsmodels), standard errors clustered on ``cluster`` (e.g. the area) when given, else HC1.
    """
    import statsmodels.api as sm

    for c in (outcome, treated, post, *([cluster] if cluster else [])):
        if c not in frame.columns:
            raise InputError(f"no column {c!r}", field=c)
    d = frame[[outcome, treated, post, *([cluster] if cluster else [])]].dropna()
    y = pd.to_numeric(d[outcome], errors="coerce").to_numpy(dtype=float)
    tr = d[treated].astype(bool).to_numpy().astype(float)
    po = d[post].astype(bool).to_numpy().astype(float)
    cells = {(a, b): ((tr == a) & (po == b)).sum() for a in (0, 1) for b in (0, 1)}
    if min(cells.values()) == 0:
        raise InputError("difference-in-differences needs treated and comparison observations before and after",
                         field=treated)
    X = sm.add_constant(np.column_stack([tr, po, tr * po]))
    model = sm.OLS(y, X)
    if cluster:
        groups = pd.factorize(d[cluster])[0]
        fit = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
        n_cl: int | None = int(groups.max() + 1)
    else:
        fit = model.fit(cov_type="HC1")
        n_cl = None
    lo, hi = fit.conf_int()[3]
    means = {f"{'treated' if a else 'comparison'}_{'after' if b else 'before'}":
             float(y[(tr == a) & (po == b)].mean()) for a in (0, 1) for b in (0, 1)}
    return DidResult(effect=float(fit.params[3]), se=float(fit.bse[3]), ci=(float(lo), float(hi)),
                     p=float(fit.pvalues[3]), nobs=len(y), clusters=n_cl, means=means)
