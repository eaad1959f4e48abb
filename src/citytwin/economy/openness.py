"""Data-openness scores (A6): profiles on the four dimensions of the open-data index cited in seed 000.

Seed 000 measures city data openness with the 中国开放数林指数 (China Open Data Index, Fudan DMG,
reported in 《中国地方政府数据开放报告》), whose four dimensions are 准备度 readiness, 平台层 platform,
数据层 data and 利用层 utilisation. Its weights change between editions and are not reproduced here:
:func:`score_profiles` takes the weights as a parameter (equal by default) and records them.

:func:`catalog_profile` computes citytwin's own profile from plain facts about a catalog (the CLI
gathers them from ``Workspace.datasets()``). Its operationalisation is citytwin's, not the index's:

=============  ==============================================================================
readiness      share of datasets with a declared licence; share with an owning department
platform       share of public datasets held in an open format; metadata completeness
data           share of datasets that are public; share of public datasets updated recently
utilisation    share of public datasets used as the input of another dataset (lineage)
=============  ==============================================================================

each sub-measure in [0, 1], a dimension the mean of its sub-measures times 100.

Examples
--------
>>> import pandas as pd
>>> p = pd.DataFrame({"city": ["a", "b"], "readiness": [80, 40], "platform": [60, 50],
...                   "data": [70, 20], "utilisation": [30, 10]})
>>> score_profiles(p, id_col="city")[["city", "score", "rank"]].values.tolist()
[['a', 60.0, 1], ['b', 30.0, 2]]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError

DIMENSIONS: tuple[str, ...] = ("readiness", "platform", "data", "utilisation")
OPEN_FORMATS: frozenset[str] = frozenset({"csv", "json", "geojson", "parquet", "geoparquet", "gpkg", "xml",
                                          "txt", "tsv", "ods", "fgb", "flatgeobuf", "shp", "kml", "gml"})
METADATA_FIELDS: tuple[str, ...] = ("description", "source", "licence", "department", "owner")


def _weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    if weights is None:
        return {d: 0.25 for d in DIMENSIONS}
    unknown = set(weights) - set(DIMENSIONS)
    if unknown:
        raise InputError(f"unknown openness dimension(s) {sorted(unknown)}", field="weights",
                         hint=f"dimensions: {', '.join(DIMENSIONS)}")
    w = {d: float(weights.get(d, 0.0)) for d in DIMENSIONS}
    if any(v < 0 or not np.isfinite(v) for v in w.values()) or sum(w.values()) <= 0:
        raise InputError(f"openness weights must be >= 0 and not all 0: {w}", field="weights")
    tot = sum(w.values())
    return {d: v / tot for d, v in w.items()}


def score_profiles(profiles: pd.DataFrame, *, id_col: str = "name",
                   weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Weighted openness score (0-100) and rank of each profile.

    Parameters
    ----------
    profiles
        One row per city / platform with columns ``readiness``, ``platform``, ``data``, ``utilisation``
        (each 0-100).
    weights
        Dimension weights (normalised to sum 1); equal by default. The weights used are in
        ``result.attrs["weights"]``.

    Raises
    ------
    InputError
        A dimension column is missing, or a value is outside [0, 100] or missing.
    """
    need = [id_col, *DIMENSIONS]
    absent = [c for c in need if c not in profiles.columns]
    if absent:
        raise InputError(f"openness profiles lack column(s) {absent}", field=absent[0])
    w = _weights(weights)
    vals = profiles[list(DIMENSIONS)].apply(pd.to_numeric, errors="coerce")
    bad = vals.isna() | (vals < 0) | (vals > 100)
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raise InputError(f"openness value {profiles.iloc[r][DIMENSIONS[c]]!r} must be a number in [0, 100]",
                         row=int(r) + 1, field=DIMENSIONS[c])
    out = profiles[[id_col]].copy()
    for d in DIMENSIONS:
        out[d] = vals[d]
    out["score"] = sum(vals[d] * w[d] for d in DIMENSIONS)
    out["rank"] = out["score"].rank(ascending=False, method="min").astype(int)
    out.attrs["weights"] = w
    return out


@dataclass
class OpennessProfile:
    """An openness profile: the four dimensions (0-100), the weighted score, and how they were computed."""

    readiness: float
    platform: float
    data: float
    utilisation: float
    score: float
    weights: dict[str, float]
    measures: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"readiness": self.readiness, "platform": self.platform, "data": self.data,
                "utilisation": self.utilisation, "score": self.score, "weights": self.weights,
                "measures": self.measures, "counts": self.counts, "warnings": self.warnings}


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def catalog_profile(facts: Iterable[Mapping[str, Any]], *, now: datetime | None = None,
                    recent_days: int = 365, weights: Mapping[str, float] | None = None) -> OpennessProfile:
    """Openness profile of a catalog from facts about its datasets.

    Parameters
    ----------
    facts
        One mapping per dataset with keys ``name``, ``classification`` (public / internal / sensitive),
        ``formats`` (list of format names, e.g. ``["parquet"]``), ``licence``, ``description``,
        ``source``, ``department``, ``owner``, ``updated`` (ISO time) and ``used_by`` (number of datasets
        derived from it). Missing keys count as absent.
    now
        Reference time for recency (default: now, UTC).
    recent_days
        A dataset updated within this many days counts as recent.
    weights
        Dimension weights (equal by default).

    Examples
    --------
    >>> f = [{"name": "a", "classification": "public", "formats": ["parquet"], "licence": "CC BY 4.0",
    ...       "description": "x", "source": "y", "department": "stats", "owner": "o",
    ...       "updated": "2026-01-01", "used_by": 1},
    ...      {"name": "b", "classification": "internal", "formats": ["parquet"]}]
    >>> p = catalog_profile(f, now=datetime(2026, 6, 1, tzinfo=UTC))
    >>> p.readiness, p.platform, p.data, p.utilisation, p.score
    (50.0, 75.0, 75.0, 100.0, 75.0)
    """
    rows = [dict(f) for f in facts]
    w = _weights(weights)
    warnings: list[str] = []
    if not rows:
        warnings.append("the catalog holds no datasets: every dimension is 0")
        return OpennessProfile(0.0, 0.0, 0.0, 0.0, 0.0, w, {}, {"datasets": 0, "public": 0}, warnings)
    ref = now or datetime.now(UTC)
    for r in rows:
        cls = r.get("classification")
        if cls not in ("public", "internal", "sensitive"):
            raise InputError(f"dataset {r.get('name')!r}: unknown classification {cls!r}", field="classification")
    public = [r for r in rows if r["classification"] == "public"]
    n, npub = len(rows), len(public)

    def share(items: list[dict[str, Any]], pred: Any) -> float:
        return float(np.mean([bool(pred(x)) for x in items])) if items else 0.0

    has_licence = share(rows, lambda r: r.get("licence"))
    has_department = share(rows, lambda r: r.get("department"))
    open_format = share(public, lambda r: any(str(f).lower() in OPEN_FORMATS for f in (r.get("formats") or [])))
    metadata = float(np.mean([np.mean([bool(r.get(k)) for k in METADATA_FIELDS]) for r in rows]))
    public_share = npub / n

    def recent(r: dict[str, Any]) -> bool:
        t = _parse_time(r.get("updated"))
        return t is not None and (ref - t).days <= recent_days

    recency = share(public, recent)
    used = share(public, lambda r: int(r.get("used_by") or 0) > 0)
    if not public:
        warnings.append("no public dataset: platform, recency and utilisation measures are 0")
    measures = {"licence_declared": has_licence, "department_declared": has_department,
                "public_open_format": open_format, "metadata_completeness": metadata,
                "public_share": public_share, "public_recent": recency, "public_used": used}
    dims = {"readiness": 100 * (has_licence + has_department) / 2,
            "platform": 100 * (open_format + metadata) / 2,
            "data": 100 * (public_share + recency) / 2,
            "utilisation": 100 * used}
    dims = {k: round(float(v), 6) for k, v in dims.items()}
    score = round(sum(dims[d] * w[d] for d in DIMENSIONS), 6)
    return OpennessProfile(dims["readiness"], dims["platform"], dims["data"], dims["utilisation"], score, w,
                           {k: round(v, 6) for k, v in measures.items()}, {"datasets": n, "public": npub},
                           warnings)
