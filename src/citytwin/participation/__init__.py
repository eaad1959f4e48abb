"""citytwin.participation: public participation and case handling (G1–G3, F7), pure functions, no I/O.

Modules: ``text`` (tokens with jieba for Chinese, keywords), ``topics`` (topics of free text: NMF
over TF-IDF), ``router`` (routing reports to
departments, scored against TF-IDF + LinearSVC), ``cases`` (deadlines, escalation, duplicates),
``incidents`` (an incident from a twin alert, complaints nearby), ``demand`` (counts per H3 cell and
district, Getis-Ord hot spots, emerging hot topics), ``construction`` (sites against permitted hours and
noise/dust limits with the twin's rules). The records live in
:mod:`citytwin.foundation.cases`, the pipelines in :mod:`citytwin.workflows.participation`, the Open311
API in :mod:`citytwin.service.open311`. See docs/participation.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from citytwin import lazy_exports

#: submodule -> the public names it defines (imported on first use: see :func:`citytwin.lazy_exports`)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "text": ("keywords", "tokenize"),
    "router": ("RouterResult", "baseline_pipeline", "route", "router_pipeline", "train_router"),
    "cases": ("DuplicateRule", "deadline_for", "find_duplicate"),
    "incidents": ("IncidentSpec", "incident_from_alert", "nearby"),
    "demand": ("counts_by_cell", "counts_by_district", "hot_spots", "hot_topics"),
    "construction": ("site_violations",),
    "topics": ("topic_summary",),
}

__all__ = ["DuplicateRule", "IncidentSpec", "RouterResult", "baseline_pipeline", "counts_by_cell",
           "counts_by_district", "deadline_for", "find_duplicate", "hot_spots", "hot_topics", "incident_from_alert",
           "keywords", "nearby", "route", "router_pipeline", "site_violations", "tokenize", "topic_summary",
           "train_router"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from citytwin.participation.cases import DuplicateRule, deadline_for, find_duplicate
    from citytwin.participation.construction import site_violations
    from citytwin.participation.demand import counts_by_cell, counts_by_district, hot_spots, hot_topics
    from citytwin.participation.incidents import IncidentSpec, incident_from_alert, nearby
    from citytwin.participation.router import (
        RouterResult,
        baseline_pipeline,
        route,
        router_pipeline,
        train_router,
    )
    from citytwin.participation.text import keywords, tokenize
    from citytwin.participation.topics import topic_summary
