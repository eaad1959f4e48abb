"""Indicator specifications for composite indices (B1) and preparing a panel for them.

A specification says which columns of a city panel enter an index, grouped into (possibly nested)
dimensions, each with a direction (``positive``: more is better; ``negative``: less is better), an
optional transform (``log`` or ``log1p``), an optional expert weight, and how missing values are
handled. The CLI parses it from YAML; the domain takes a plain ``dict`` (or an :class:`IndexSpec`).

Minimal form::

    id: city
    time: year
    indicators:
      - {column: gdp, direction: positive}
      - {column: so2, direction: negative, transform: log}

Hierarchical form (dimensions may nest; ``weight`` is an expert weight, normalised within its level)::

    id: city
    time: year
    missing: interpolate        # error (default) | drop | mean | median | interpolate
    dimensions:
      - name: economy
        weight: 0.6
        indicators:
          - {column: gdp, direction: positive, transform: log, weight: 2}
          - {column: retail, direction: positive, weight: 1}
      - name: environment
        weight: 0.4
        indicators:
          - {column: so2, direction: negative}

Examples
--------
>>> spec = parse_spec({"id": "city", "time": "year",
...                    "indicators": [{"column": "gdp"}, {"column": "so2", "direction": "negative"}]})
>>> [i.column for i in spec.indicators], spec.indicators[1].positive
(['gdp', 'so2'], False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.stats.values import numeric_column

Direction = Literal["positive", "negative"]
Transform = Literal["log", "log1p"]
MissingPolicy = Literal["error", "drop", "mean", "median", "interpolate"]

DIRECTIONS: tuple[str, ...] = ("positive", "negative")
TRANSFORMS: tuple[str, ...] = ("log", "log1p")
MISSING_POLICIES: tuple[str, ...] = ("error", "drop", "mean", "median", "interpolate")
_DIRECTION_ALIASES = {"positive": "positive", "benefit": "positive", "+": "positive", "正": "positive",
                      "正向": "positive", "negative": "negative", "cost": "negative", "-": "negative",
                      "负": "negative", "负向": "negative", "逆向": "negative"}


@dataclass(frozen=True)
class Indicator:
    """One indicator (a column of the panel).

    Attributes
    ----------
    column
        Column name in the panel.
    direction
        ``positive`` (benefit) or ``negative`` (cost).
    name
        Display name (defaults to ``column``).
    dimension
        Path of the dimension it belongs to (``"a/b"`` for nested dimensions), or ``None``.
    transform
        ``None``, ``"log"`` (natural log, values must be > 0) or ``"log1p"`` (ln(1 + x), values > -1).
    weight
        Expert weight: the product of the normalised weights down its dimension path (``None`` when
        the spec gives none).
    """

    column: str
    direction: Direction = "positive"
    name: str | None = None
    dimension: str | None = None
    transform: Transform | None = None
    weight: float | None = None

    @property
    def positive(self) -> bool:
        return self.direction == "positive"

    @property
    def label(self) -> str:
        return self.name or self.column


@dataclass(frozen=True)
class IndexSpec:
    """A parsed indicator specification (see the module docstring for the YAML form)."""

    id: str
    indicators: tuple[Indicator, ...]
    time: str | None = None
    missing: MissingPolicy = "error"
    name: str = "index"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def columns(self) -> list[str]:
        return [i.column for i in self.indicators]

    @property
    def dimensions(self) -> list[str]:
        """Dimension paths in spec order (empty when the spec is flat)."""
        out: list[str] = []
        for i in self.indicators:
            if i.dimension is not None and i.dimension not in out:
                out.append(i.dimension)
        return out

    @property
    def has_expert_weights(self) -> bool:
        return all(i.weight is not None for i in self.indicators)

    def expert_weights(self) -> np.ndarray:
        """Expert weights in indicator order, normalised to sum 1."""
        if not self.has_expert_weights:
            missing = [i.column for i in self.indicators if i.weight is None]
            raise InputError(f"the spec gives no expert weight for {missing}", field="weight",
                             hint="give every indicator (and dimension) a `weight:` for method `expert`")
        w = np.array([float(i.weight or 0.0) for i in self.indicators])
        return w / w.sum()


def _direction(value: Any, where: str) -> Direction:
    key = str(value).strip().lower() if value is not None else "positive"
    if key not in _DIRECTION_ALIASES:
        raise InputError(f"{where}: unknown direction {value!r}", field="direction",
                         hint="use positive or negative")
    return _DIRECTION_ALIASES[key]  # type: ignore[return-value]


def _weight(value: Any, where: str) -> float | None:
    if value is None:
        return None
    try:
        w = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: weight {value!r} is not a number", field="weight") from None
    if not np.isfinite(w) or w < 0:
        raise InputError(f"{where}: weight {value!r} must be a finite number >= 0", field="weight")
    return w


def _indicator(obj: Any, dimension: str | None, where: str) -> Indicator:
    if isinstance(obj, str):
        obj = {"column": obj}
    if not isinstance(obj, Mapping) or "column" not in obj:
        raise InputError(f"{where}: an indicator needs a `column:`", field="column")
    unknown = set(obj) - {"column", "direction", "name", "transform", "weight"}
    if unknown:
        raise InputError(f"{where}: unknown indicator keys {sorted(unknown)}",
                         hint="keys: column, direction, name, transform, weight")
    transform = obj.get("transform")
    if transform is not None and transform not in TRANSFORMS:
        raise InputError(f"{where}: unknown transform {transform!r}", field="transform",
                         hint=f"use one of {', '.join(TRANSFORMS)} (or leave it out)")
    return Indicator(column=str(obj["column"]), direction=_direction(obj.get("direction"), where),
                     name=obj.get("name"), dimension=dimension, transform=transform,
                     weight=_weight(obj.get("weight"), where))


def _share(ws: list[float | None]) -> list[float | None]:
    """Weights normalised within one level; all ``None`` unless every weight is given."""
    if not ws or any(w is None for w in ws):
        return [None] * len(ws)
    tot = sum(float(w or 0.0) for w in ws)
    return [float(w or 0.0) / tot if tot > 0 else None for w in ws]


def _walk(dims: Sequence[Any], prefix: str | None, parent: float | None) -> list[Indicator]:
    """Flatten nested dimensions. An indicator's expert weight is the product of the weights down its
    path, each normalised within its level; ``None`` when any weight on the path is missing."""
    for d in dims:
        if not isinstance(d, Mapping) or "name" not in d:
            raise InputError("a dimension needs a `name:`", field="dimensions")
    shares = _share([_weight(d.get("weight"), f"dimension {d['name']!r}") for d in dims])
    out: list[Indicator] = []
    for d, sh in zip(dims, shares, strict=True):
        path = str(d["name"]) if prefix is None else f"{prefix}/{d['name']}"
        dw = None if (sh is None or parent is None) else sh * parent
        inds = [_indicator(i, path, f"dimension {path!r}, indicator {k + 1}")
                for k, i in enumerate(d.get("indicators") or [])]
        for ind, ish in zip(inds, _share([i.weight for i in inds]), strict=True):
            w = None if (dw is None or ish is None) else dw * ish
            out.append(Indicator(ind.column, ind.direction, ind.name, ind.dimension, ind.transform, w))
        if d.get("dimensions"):
            out.extend(_walk(d["dimensions"], path, dw))
        if not inds and not d.get("dimensions"):
            raise InputError(f"dimension {path!r} has no indicators", field="indicators")
    return out


def parse_spec(obj: Mapping[str, Any] | IndexSpec) -> IndexSpec:
    """Validate a specification given as a dict (e.g. parsed YAML).

    Raises
    ------
    InputError
        On a missing ``id``, no indicators, an unknown direction / transform / missing policy, a
        negative weight, or a column named twice.

    Examples
    --------
    >>> s = parse_spec({"id": "c", "dimensions": [
    ...     {"name": "a", "weight": 3, "indicators": [{"column": "x", "weight": 1}, {"column": "y", "weight": 1}]},
    ...     {"name": "b", "weight": 1, "indicators": [{"column": "z", "weight": 5}]}]})
    >>> [round(i.weight, 3) for i in s.indicators], s.dimensions
    ([0.375, 0.375, 0.25], ['a', 'b'])
    """
    if isinstance(obj, IndexSpec):
        return obj
    if not isinstance(obj, Mapping):
        raise InputError("an indicator specification must be a mapping (YAML dict)")
    unknown = set(obj) - {"id", "time", "indicators", "dimensions", "missing", "name", "description"}
    if unknown:
        raise InputError(f"unknown keys in the specification: {sorted(unknown)}",
                         hint="keys: id, time, name, missing, indicators, dimensions")
    if not obj.get("id"):
        raise InputError("the specification needs `id:` (the column naming the city)", field="id")
    missing = obj.get("missing", "error")
    if missing not in MISSING_POLICIES:
        raise InputError(f"unknown missing-value policy {missing!r}", field="missing",
                         hint=f"use one of {', '.join(MISSING_POLICIES)}")
    indicators: list[Indicator] = []
    flat = obj.get("indicators") or []
    for k, ind in enumerate(flat):
        indicators.append(_indicator(ind, None, f"indicator {k + 1}"))
    if obj.get("dimensions"):
        indicators.extend(_walk(obj["dimensions"], None, 1.0))
    if not indicators:
        raise InputError("the specification names no indicators", field="indicators",
                         hint="add `indicators: [{column: C, direction: positive}]`")
    cols = [i.column for i in indicators]
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise InputError(f"columns named more than once in the specification: {dup}", field="indicators")
    # Flat expert weights: normalise so that they sum to 1 (only when all are given).
    if all(i.weight is not None for i in indicators):
        tot = sum(float(i.weight or 0.0) for i in indicators)
        if tot <= 0:
            raise InputError("expert weights sum to 0", field="weight")
        indicators = [Indicator(i.column, i.direction, i.name, i.dimension, i.transform,
                                float(i.weight or 0.0) / tot) for i in indicators]
    return IndexSpec(id=str(obj["id"]), time=str(obj["time"]) if obj.get("time") else None,
                     indicators=tuple(indicators), missing=missing, name=str(obj.get("name") or "index"),
                     raw=dict(obj))


@dataclass
class Prepared:
    """A panel ready for weighting: one row per (id, time), one column per indicator (after transforms)."""

    keys: pd.DataFrame
    values: pd.DataFrame
    warnings: list[str]
    dropped_rows: int = 0
    matrix: np.ndarray | None = None
    """``values`` as one column-major float matrix (the frame's own block, not a copy; columns in the spec's
    order), or ``None`` where the missing-value policy made a new frame: a caller that lets ``values`` go may
    take it as its own matrix (writable) instead of copying the frame's read-only view"""


def prepare(frame: pd.DataFrame, spec: IndexSpec, *, source: str | None = None) -> Prepared:
    """Check a panel against a spec, coerce to numbers, apply transforms and the missing-value policy.

    Parameters
    ----------
    frame
        The panel (one row per city, or per city-year).
    spec
        A parsed specification.
    source
        File or dataset name, used in error messages.

    Raises
    ------
    InputError
        Columns named by the spec are missing from the panel (all of them are listed); a value is not a
        number (the first such row is named); an indicator is entirely missing; a (id, time) pair
        occurs twice; ``log`` meets a value <= 0; missing values under policy ``error``.

    Notes
    -----
    Policies: ``drop`` removes rows with any missing indicator (counted in the warnings); ``mean`` /
    ``median`` fill with the mean / median of the same year (of the whole column without ``time``);
    ``interpolate`` fills linearly within each city over time, then the nearest year at the ends.
    Every fill is reported in the warnings.
    """
    need = [spec.id] + ([spec.time] if spec.time else []) + spec.columns
    absent = [c for c in need if c not in frame.columns]
    if absent:
        raise InputError(f"the panel has no column(s) {absent}", file=source, field=absent[0],
                         hint=f"columns present: {list(map(str, frame.columns))[:30]}")
    if len(frame) == 0:
        raise InputError("the panel has no rows", file=source)
    keys = frame[[spec.id] + ([spec.time] if spec.time else [])].reset_index(drop=True)
    if keys[spec.id].isna().any():
        row = int(np.flatnonzero(keys[spec.id].isna().to_numpy())[0]) + 1
        raise InputError(f"missing city id in column {spec.id!r}", file=source, row=row, field=spec.id)
    dup = keys.duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0]) + 1
        raise InputError(f"duplicate {'(id, time)' if spec.time else 'id'} {tuple(keys.iloc[row - 1])}",
                         file=source, row=row, field=spec.id,
                         hint="one row per city (and year) is expected; aggregate duplicates first")
    warnings: list[str] = []
    if spec.time:
        units, periods = keys[spec.id].nunique(), keys[spec.time].nunique()
        absent_cells = units * periods - len(keys)
        if absent_cells > 0:
            grid = pd.MultiIndex.from_product([sorted(keys[spec.id].unique(), key=str),
                                               sorted(keys[spec.time].unique(), key=str)])
            have = pd.MultiIndex.from_frame(keys)
            gaps = grid.difference(have)[:5]
            warnings.append(f"{absent_cells} of the {units} x {periods} unit-period cells have no row (e.g. "
                            + ", ".join(f"{a} {b}" for a, b in gaps) + "): those units are scored only in the "
                            "periods they have, and pooled weights use what is there")
    arrays: dict[str, np.ndarray] = {}
    cols = [ind.column for ind in spec.indicators]
    # the values written into one column-major matrix, which the frame then holds as its block (what pandas'
    # consolidation of the columns made, without that copy: each copy is fresh memory the kernel faults in)
    M = np.empty((len(keys), len(cols)), order="F") if len(set(cols)) == len(cols) else None
    for j, ind in enumerate(spec.indicators):
        x = numeric_column(frame[ind.column], name=ind.column, source=source)  # the one rule (stats.values)
        x = np.where(np.isinf(x), np.nan, x)
        finite = ~np.isnan(x)
        if not finite.any():
            raise InputError(f"indicator {ind.column!r} has no values (all missing)", file=source,
                             field=ind.column, hint="remove it from the specification or fill the column")
        if ind.transform == "log":
            low = finite & (np.where(finite, x, 1.0) <= 0)
            if low.any():
                row = int(np.flatnonzero(low)[0]) + 1
                raise InputError(f"indicator {ind.column!r}: log of a value <= 0 ({x[row - 1]})",
                                 file=source, row=row, field=ind.column, hint="use transform: log1p")
            x = np.log(x)
        elif ind.transform == "log1p":
            low = finite & (np.where(finite, x, 0.0) <= -1)
            if low.any():
                row = int(np.flatnonzero(low)[0]) + 1
                raise InputError(f"indicator {ind.column!r}: log1p of a value <= -1", file=source, row=row,
                                 field=ind.column)
            x = np.log1p(x)
        if M is None:
            arrays[ind.column] = x
        else:
            M[:, j] = x
    vals = (pd.DataFrame(arrays, index=keys.index) if M is None
            else pd.DataFrame(M, columns=pd.Index(cols), index=keys.index, copy=False))
    whole = vals
    n_missing = vals.isna().sum()
    dropped = 0
    if n_missing.any():
        where = {str(c): int(n) for c, n in n_missing.items() if n}
        if spec.missing == "error":
            first_col = next(iter(where))
            row = int(np.flatnonzero(vals[first_col].isna().to_numpy())[0]) + 1
            raise InputError(f"missing values in indicators {where}", file=source, row=row, field=first_col,
                             hint="set `missing:` in the spec to drop, mean, median or interpolate")
        if spec.missing == "drop":
            keep = vals.notna().all(axis=1)
            dropped = int((~keep).sum())
            vals, keys = vals[keep].reset_index(drop=True), keys[keep].reset_index(drop=True)
            warnings.append(f"dropped {dropped} row(s) with missing indicator values {where}")
            if len(vals) == 0:
                raise InputError("no rows left after dropping rows with missing values", file=source)
        elif spec.missing in ("mean", "median"):
            if spec.time:
                grp = vals.groupby(keys[spec.time])
                fill = grp.transform(spec.missing)
                vals = vals.fillna(fill)
            vals = vals.fillna(vals.agg(spec.missing))
            warnings.append(f"filled {sum(where.values())} missing value(s) with the "
                            f"{'same-year ' if spec.time else ''}{spec.missing}: {where}")
        elif spec.missing == "interpolate":
            if not spec.time:
                raise InputError("missing: interpolate needs `time:` in the specification", field="missing")
            order = keys.sort_values([spec.id, spec.time]).index
            v = vals.loc[order]
            v = v.groupby(keys.loc[order, spec.id].to_numpy(), group_keys=False).apply(
                lambda g: g.interpolate(limit_direction="both"))
            vals = v.loc[keys.index]
            still = vals.isna().sum()
            if still.any():
                vals = vals.fillna(vals.groupby(keys[spec.time]).transform("mean"))
                warnings.append(f"{int(still.sum())} value(s) of cities with no observation of an indicator "
                                "were filled with the same-year mean")
            warnings.append(f"interpolated {sum(where.values())} missing value(s) within cities over time: "
                            f"{where}")
    return Prepared(keys=keys, values=vals, warnings=warnings, dropped_rows=dropped,
                    matrix=M if vals is whole else None)
