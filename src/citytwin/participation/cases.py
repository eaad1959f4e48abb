"""Case handling rules shared by complaints (G2) and incidents (F7): deadlines, escalation,
duplicate detection. Pure functions over records and DataFrames; the records themselves live in
:mod:`citytwin.foundation.cases`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from citytwin.foundation.cases import STATUSES, TRANSITIONS, can_move, escalation_level
from citytwin.participation.text import content_words

__all__ = ["DEFAULT_DEADLINE_HOURS", "STATUSES", "TRANSITIONS", "DuplicateRule", "can_move", "deadline_for",
           "escalation_level", "find_duplicate", "haversine_m", "topic_similarity"]

#: Hours to resolve, per category, when the city gives none (a common service-level table).
DEFAULT_DEADLINE_HOURS: dict[str, float] = {"emergency": 4, "incident": 24, "default": 72}


def deadline_for(category: str | None, opened: datetime, hours: Mapping[str, float] | None = None) -> datetime:
    """When a case of ``category`` opened at ``opened`` is due: ``hours[category]``, else
    ``hours["default"]`` (72 h in :data:`DEFAULT_DEADLINE_HOURS`).

    Examples
    --------
    >>> from datetime import datetime
    >>> deadline_for("pothole", datetime(2026, 1, 1), {"pothole": 48, "default": 72}).isoformat()
    '2026-01-03T00:00:00'
    """
    table = dict(DEFAULT_DEADLINE_HOURS)
    table.update(hours or {})
    h = table.get(category or "", table["default"])
    return opened + timedelta(hours=float(h))


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (mean Earth radius 6,371,008.8 m).

    Examples
    --------
    >>> round(haversine_m(39.9, 116.4, 39.9, 116.401))
    85
    """
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))


def topic_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the content words of two texts (0–1)."""
    wa, wb = set(content_words(a)), set(content_words(b))
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


@dataclass(frozen=True)
class DuplicateRule:
    """Two reports are of the same problem when they are within ``radius_m`` metres and ``hours``
    of each other and have the same service code, or texts at least ``min_similarity`` alike."""

    radius_m: float = 100.0
    hours: float = 72.0
    min_similarity: float = 0.5


def find_duplicate(new: Mapping[str, Any], existing: Sequence[Mapping[str, Any]],
                   rule: DuplicateRule = DuplicateRule()) -> Any | None:
    """The id of the earliest existing case that ``new`` duplicates under ``rule``, else ``None``.

    Records are mappings with ``id``, ``lat``, ``lon``, ``created`` (datetime), ``service_code`` and
    ``description``; records without a place are never duplicates.
    """
    lat, lon = new.get("lat"), new.get("lon")
    if lat is None or lon is None:
        return None
    best: tuple[datetime, Any] | None = None
    for e in existing:
        if e.get("lat") is None or e.get("lon") is None:
            continue
        if abs((new["created"] - e["created"]).total_seconds()) > rule.hours * 3600:
            continue
        if haversine_m(float(lat), float(lon), float(e["lat"]), float(e["lon"])) > rule.radius_m:
            continue
        same_code = bool(new.get("service_code")) and new.get("service_code") == e.get("service_code")
        if not same_code and topic_similarity(str(new.get("description") or ""),
                                              str(e.get("description") or "")) < rule.min_similarity:
            continue
        if best is None or e["created"] < best[0]:
            best = (e["created"], e.get("duplicate_of") or e["id"])
    return None if best is None else best[1]
