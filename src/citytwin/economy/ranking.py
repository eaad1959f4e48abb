"""Ranks and tiers (B2), and an index rank against a reference rank (seed 000, Table 1).

* :func:`rank_by` ranks a score within each year (1 = best; ties share the best rank, "min" method).
* :class:`ThresholdTable` is a tier table that names its source and edition. There is no standard
  across editions of the Chinese city digital-economy reports (the "85 points = first tier" rule
  quoted in seed 000 could not be confirmed), so tiers are always configurable:
  :func:`assign_tiers` takes a threshold table, or ``natural_breaks`` (Fisher-Jenks via mapclassify)
  or ``quantiles``, applied year by year.
* :func:`rank_gap` compares an index rank with a reference rank (e.g. GDP rank): positive
  ``places_above`` means the city ranks higher on the index than on the reference.

Examples
--------
>>> import pandas as pd
>>> t = pd.DataFrame({"city": ["贵阳", "珠海"], "de_rank": [25, 30], "gdp_rank": [52, 72]})
>>> rank_gap(t, "de_rank", "gdp_rank")["places_above"].tolist()
[27, 42]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError


def rank_by(frame: pd.DataFrame, score: str, *, by: str | None = None, ascending: bool = False,
            method: Literal["min", "dense", "first", "average", "max"] = "min") -> pd.Series:
    """Rank ``score`` within each group of ``by`` (e.g. year); 1 = best (highest unless ``ascending``).

    Examples
    --------
    >>> f = pd.DataFrame({"y": [1, 1, 1, 2, 2], "s": [3.0, 5, 5, 1, 2]})
    >>> rank_by(f, "s", by="y").tolist()
    [3, 1, 1, 2, 1]
    """
    if score not in frame.columns:
        raise InputError(f"no column {score!r} to rank", field=score)
    s = frame[score]
    r = s.groupby(frame[by]).rank(ascending=ascending, method=method) if by else s.rank(
        ascending=ascending, method=method)
    return r.astype("Int64")


@dataclass(frozen=True)
class ThresholdTable:
    """Tiers by lower bounds, naming where the table comes from.

    Attributes
    ----------
    source
        The publication the thresholds come from.
    edition
        Its edition / year (tiers differ between editions).
    bounds
        ``(lower_bound, label)`` pairs; a value gets the label of the highest bound it reaches.
    below
        Label for values below every bound.
    note
        Caveats (e.g. "only the first-tier cut-off is published").
    """

    source: str
    edition: str
    bounds: tuple[tuple[float, str], ...]
    below: str = "below"
    note: str = ""
    labels: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.source or not self.edition:
            raise InputError("a threshold table must name its source and edition",
                             hint="ThresholdTable(source=..., edition=..., bounds=[(85, 'tier 1'), ...])")
        if not self.bounds:
            raise InputError("a threshold table needs at least one bound")
        b = tuple(sorted(((float(x), str(lab)) for x, lab in self.bounds), reverse=True))
        object.__setattr__(self, "bounds", b)
        object.__setattr__(self, "labels", (*tuple(lab for _, lab in b), self.below))

    def classify(self, values: Sequence[float] | np.ndarray | pd.Series) -> list[str | None]:
        out: list[str | None] = []
        for v in np.asarray(values, dtype=float):
            if np.isnan(v):
                out.append(None)
                continue
            out.append(next((lab for lo, lab in self.bounds if v >= lo), self.below))
        return out


#: The single cut-off quoted in seed 000 (a city scoring >= 85 is a "first-tier" digital-economy city).
#: Quoted from the 2019-2020 report as cited there; the other cut-offs are not published in the seed.
SEED000_FIRST_TIER = ThresholdTable(
    source="《中国城市数字经济发展报告（2019—2020）》 as quoted in seed 000 (刘一丝, 以数字经济发展驱动城市空间布局整合与更新, §2)",
    edition="2019-2020 (as quoted; not confirmed against the report itself)",
    bounds=((85.0, "一线 first tier"),), below="其他 other",
    note="only the first-tier cut-off (85 points) is quoted; lower tiers are not",
)


def assign_tiers(frame: pd.DataFrame, score: str, *, by: str | None = None,
                 method: Literal["thresholds", "natural_breaks", "quantiles"] = "natural_breaks",
                 table: ThresholdTable | None = None, k: int = 4,
                 labels: Sequence[str] | None = None) -> tuple[pd.Series, dict[str, object]]:
    """Assign a tier to each row, within each ``by`` group (e.g. year).

    Parameters
    ----------
    method
        ``thresholds`` (needs ``table``), ``natural_breaks`` (Fisher-Jenks, deterministic) or
        ``quantiles`` (``k`` equal-count classes).
    labels
        Labels for the ``k`` classes, best first (default ``"tier 1"`` ... ``"tier k"``).

    Returns
    -------
    (tiers, info)
        ``tiers``: the tier label per row; ``info``: the method, source and the class upper bounds per
        group (to be recorded with the result).

    Examples
    --------
    >>> f = pd.DataFrame({"s": [1.0, 1.1, 1.2, 5, 5.1, 9, 9.2]})
    >>> assign_tiers(f, "s", k=3)[0].tolist()
    ['tier 3', 'tier 3', 'tier 3', 'tier 2', 'tier 2', 'tier 1', 'tier 1']
    """
    if score not in frame.columns:
        raise InputError(f"no column {score!r} to classify", field=score)
    info: dict[str, object] = {"method": method}
    out = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    if method == "thresholds":
        if table is None:
            raise InputError("tiers by thresholds need a ThresholdTable", field="table")
        info.update(source=table.source, edition=table.edition, bounds=[list(b) for b in table.bounds],
                    below=table.below, note=table.note)
        out[:] = table.classify(frame[score])
        return out, info
    if method not in ("natural_breaks", "quantiles"):
        raise InputError(f"unknown tier method {method!r}", hint="use thresholds, natural_breaks or quantiles")
    if k < 2:
        raise InputError(f"k must be >= 2, got {k}", field="k")
    labs = list(labels) if labels is not None else [f"tier {i + 1}" for i in range(k)]
    if len(labs) != k:
        raise InputError(f"{len(labs)} labels for {k} tiers", field="labels")
    import mapclassify  # here, not at import: its numba compilation costs seconds every `economy index` run

    info.update(source="mapclassify.FisherJenks" if method == "natural_breaks" else "mapclassify.Quantiles",
                k=k, labels=labs, bins={})
    groups = frame.groupby(by, sort=True).groups.items() if by else [("all", frame.index)]
    bins: dict[str, list[float]] = {}
    for key, idx in groups:
        y = frame.loc[idx, score].astype(float)
        ok = y.notna()
        yy = y[ok].to_numpy()
        if len(np.unique(yy)) < k:
            raise InputError(f"{'group ' + str(key) + ': ' if by else ''}{len(np.unique(yy))} distinct scores "
                             f"cannot form {k} tiers", field="k")
        cls = mapclassify.FisherJenks(yy, k=k) if method == "natural_breaks" else mapclassify.Quantiles(yy, k=k)
        yb = np.asarray(cls.yb)
        nclass = len(cls.bins)
        # mapclassify counts classes from the lowest; tier 1 is the best (highest) class.
        out.loc[y[ok].index] = [labs[nclass - 1 - int(c)] for c in yb]
        bins[str(key)] = [float(b) for b in cls.bins]
    info["bins"] = bins
    return out, info


def rank_gap(frame: pd.DataFrame, rank: str, reference_rank: str) -> pd.DataFrame:
    """Places a city stands higher on ``rank`` than on ``reference_rank`` (e.g. GDP rank).

    ``places_above = reference_rank - rank``: positive means the index rank is better (smaller) than
    the reference rank.
    """
    for c in (rank, reference_rank):
        if c not in frame.columns:
            raise InputError(f"no column {c!r}", field=c)
    out = frame.copy()
    out["places_above"] = (out[reference_rank] - out[rank]).astype("Int64")
    return out
