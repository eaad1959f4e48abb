"""Threshold-for-duration rules over time series (AQI above 200 for 3 hours, traffic congestion …).

A rule holds when a property compares to a threshold (``>``, ``>=``, ``<``, ``<=``) at consecutive
time steps for at least ``min_steps`` steps. Each maximal run of such steps is one
:class:`AlertCandidate` with its start, end, peak value and peak time. A missing or absent step
breaks a run (missing stays missing: an unknown value is never taken as "still above") unless
``max_gap`` allows a number of missing steps inside it.

The threshold may be absolute, or relative to each entity's own level (``relative_to=0.85``: the
threshold times the entity's 85th percentile; for congestion, "speed below 50 % of the usual
free-flow speed").

Examples
--------
>>> import pandas as pd
>>> t = pd.date_range("2024-01-01", periods=6, freq="h")
>>> obs = pd.DataFrame({"entity": "s1", "property": "aqi", "time": t, "value": [150, 210, 250, 230, 190, 205]})
>>> rule = ThresholdRule("aqi_heavy", "aqi", ">", 200, min_steps=3, step="1h", severity="warning")
>>> [(c.start.hour, c.end.hour, c.peak, c.steps) for c in evaluate(rule, obs)]
[(1, 3, 250.0, 3)]
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError

Op = Literal[">", ">=", "<", "<="]
_OPS: dict[str, Callable[[Any, Any], Any]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                              "<=": operator.le}


@dataclass(frozen=True)
class ThresholdRule:
    """A threshold that must hold for a duration.

    Parameters
    ----------
    name
        Rule identifier (alerts are deduplicated by rule name and entity).
    property
        Property the rule reads (``aqi``, ``pm25``, ``speed``, ``flow`` …).
    op
        ``>``, ``>=``, ``<`` or ``<=``; the peak is the maximum for ``>``/``>=``, the minimum otherwise.
    threshold
        Absolute threshold, or a factor of the entity's ``relative_to`` quantile.
    min_steps
        Consecutive steps needed (``AQI > 200 for >= 3 hours`` with hourly data: 3).
    step
        Expected time between observations (``1h``, ``5min``, ``1D``); a larger jump breaks a run.
    max_gap
        Missing steps tolerated inside a run (default 0).
    relative_to
        Quantile (0..1) of each entity's values that ``threshold`` multiplies; ``None`` = absolute.
    severity
        Free label carried to the alert (``info``, ``warning``, ``critical`` …).
    message
        Template for the alert text; may use ``{entity}``, ``{property}``, ``{peak}``, ``{threshold}``,
        ``{steps}``, ``{start}``, ``{end}``.
    """

    name: str
    property: str
    op: Op
    threshold: float
    min_steps: int = 1
    step: str = "1h"
    max_gap: int = 0
    relative_to: float | None = None
    severity: str = "warning"
    message: str = "{property} {op} {threshold:g} for {steps} steps at {entity} (peak {peak:g})"

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise InputError(f"rule {self.name!r}: unknown operator {self.op!r}", field="op",
                             hint="use >, >=, < or <=")
        if self.min_steps < 1:
            raise InputError(f"rule {self.name!r}: min_steps must be >= 1", field="min_steps")
        if self.max_gap < 0:
            raise InputError(f"rule {self.name!r}: max_gap must be >= 0", field="max_gap")
        if self.relative_to is not None and not 0 < self.relative_to <= 1:
            raise InputError(f"rule {self.name!r}: relative_to must be a quantile in (0, 1]",
                             field="relative_to")
        try:
            td = pd.Timedelta(self.step)
        except ValueError as exc:
            raise InputError(f"rule {self.name!r}: bad step {self.step!r}", field="step") from exc
        if td <= pd.Timedelta(0):
            raise InputError(f"rule {self.name!r}: step must be positive", field="step")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for configuration files and the HTTP API)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ThresholdRule:
        """Build a rule from :meth:`to_dict` output (unknown keys raise InputError)."""
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise InputError(f"unknown rule field(s) {', '.join(sorted(extra))}", field=sorted(extra)[0])
        return cls(**d)


@dataclass(frozen=True)
class AlertCandidate:
    """One run of a rule holding at one entity (input to :class:`citytwin.twin.alerts.AlertBook`).

    ``detected_at`` is when the run became long enough to count (start + (min_steps − 1) steps);
    ``ongoing`` says the run reaches the end of the data.
    """

    rule: str
    entity: str
    property: str
    start: pd.Timestamp
    end: pd.Timestamp
    peak: float
    peak_time: pd.Timestamp
    steps: int
    threshold: float
    severity: str
    ongoing: bool
    message: str
    op: str = ">"
    detected_at: pd.Timestamp | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @builtins.property
    def lower_is_worse(self) -> bool:
        """True for ``<``/``<=`` rules (the peak is a minimum)."""
        return self.op in ("<", "<=")

    def to_record(self) -> dict[str, Any]:
        """JSON-friendly dict (times as ISO strings)."""
        d = asdict(self)
        for k in ("start", "end", "peak_time", "detected_at"):
            d[k] = None if d[k] is None else pd.Timestamp(d[k]).isoformat()
        return d


def _series(rule: ThresholdRule, df: pd.DataFrame) -> pd.DataFrame:
    if "time" not in df.columns and "date" in df.columns:  # daily_aqi output
        df = df.rename(columns={"date": "time"})
    for col in ("entity", "time"):
        if col not in df.columns:
            raise InputError(f"frame lacks column {col!r}", field=col)
    if "property" in df.columns and "value" in df.columns:
        sub = df.loc[df["property"] == rule.property, ["entity", "time", "value"]]
    elif rule.property in df.columns:
        sub = df[["entity", "time", rule.property]].rename(columns={rule.property: "value"})
    else:
        raise InputError(f"rule {rule.name!r}: no {rule.property!r} values in the frame", field="property",
                         hint="give a long frame (entity, property, time, value) or a column named "
                              f"{rule.property!r}")
    out = pd.DataFrame({"entity": sub["entity"].astype(str).to_numpy(),
                        "time": pd.to_datetime(sub["time"]).to_numpy(),
                        "value": pd.to_numeric(sub["value"], errors="coerce").astype(float).to_numpy()})
    return out.sort_values(["entity", "time"], kind="stable").drop_duplicates(["entity", "time"], keep="last")


def evaluate(rule: ThresholdRule, df: pd.DataFrame, *, now: pd.Timestamp | None = None) -> list[AlertCandidate]:
    """All runs where ``rule`` holds for at least ``min_steps`` steps, per entity.

    Parameters
    ----------
    rule
        The rule.
    df
        Long observations (``entity``, ``property``, ``time``, ``value``) or a frame with ``entity``,
        ``time`` (or ``date``) and a column named ``rule.property`` (e.g. the output of
        ``hourly_aqi`` or ``daily_aqi``).
    now
        End of the data; a run reaching the entity's last step at or after ``now - step`` is
        ``ongoing`` (default: each entity's last time).

    Returns
    -------
    list of AlertCandidate
        Sorted by entity and start.
    """
    s = _series(rule, df)
    if s.empty:
        return []
    step = pd.Timedelta(rule.step)
    cmp = _OPS[rule.op]
    thr = pd.Series(float(rule.threshold), index=s.index)
    if rule.relative_to is not None:
        q = s.groupby("entity")["value"].transform("quantile", float(rule.relative_to))
        thr = q * float(rule.threshold)
    s = s.assign(thr=thr.to_numpy())
    present = s["value"].notna().to_numpy()
    hold = cmp(s["value"], s["thr"]).fillna(False).to_numpy(dtype=bool) & present
    last_time = s.groupby("entity")["time"].max()
    last_break = s.loc[present & ~hold].groupby("entity")["time"].max()
    s = s.loc[hold]
    if s.empty:
        return []
    # A new run starts where the entity changes or the time jump exceeds (max_gap + 1) steps.
    ent = s["entity"].to_numpy()
    tm = s["time"].to_numpy()
    dt = np.diff(tm).astype("timedelta64[ns]").astype(np.int64)
    limit = (rule.max_gap + 1) * step.value
    brk = np.r_[True, (ent[1:] != ent[:-1]) | (dt > limit)]
    s = s.assign(run=np.cumsum(brk)).reset_index(drop=True)
    maximise = rule.op in (">", ">=")
    by = s.groupby("run", sort=True)
    runs = by.agg(entity=("entity", "first"), start=("time", "min"), end=("time", "max"),
                  thr=("thr", "first"))
    runs["steps"] = ((runs["end"] - runs["start"]) / step).round().astype(int) + 1
    peak_idx = by["value"].idxmax() if maximise else by["value"].idxmin()
    runs["peak"] = s.loc[peak_idx.to_numpy(), "value"].to_numpy()
    runs["peak_time"] = s.loc[peak_idx.to_numpy(), "time"].to_numpy()
    runs = runs[runs["steps"] >= rule.min_steps]
    # Ongoing: nothing after the run contradicts it, and it reaches the end of the data (or `now`)
    # within the tolerated gap.
    horizon = (pd.Series(pd.Timestamp(now), index=runs.index) if now is not None
               else runs["entity"].map(last_time))
    broken = pd.to_datetime(runs["entity"].map(last_break.to_dict())) > runs["end"]
    ongoing = ~broken.fillna(False).astype(bool) & (runs["end"] >= horizon - step * rule.max_gap)
    out: list[AlertCandidate] = []
    for r, on in zip(runs.itertuples(index=False), ongoing.to_numpy(), strict=True):
        start, end, peak = pd.Timestamp(r.start), pd.Timestamp(r.end), float(r.peak)
        thr_used = float(r.thr)
        msg = rule.message.format(entity=r.entity, property=rule.property, op=rule.op, threshold=thr_used,
                                  peak=peak, steps=r.steps, start=start, end=end)
        out.append(AlertCandidate(rule.name, str(r.entity), rule.property, start, end, peak,
                                  pd.Timestamp(r.peak_time), int(r.steps), thr_used, rule.severity,
                                  bool(on), msg, op=rule.op,
                                  detected_at=start + step * (rule.min_steps - 1)))
    return out


def evaluate_all(rules: Iterable[ThresholdRule], df: pd.DataFrame, *,
                 now: pd.Timestamp | None = None) -> list[AlertCandidate]:
    """Evaluate several rules (rules whose property is absent from ``df`` are skipped)."""
    out: list[AlertCandidate] = []
    props = set(df["property"].unique()) if "property" in df.columns else set(df.columns)
    for rule in rules:
        if rule.property in props:
            out.extend(evaluate(rule, df, now=now))
    return out


def candidates_frame(candidates: Iterable[AlertCandidate]) -> pd.DataFrame:
    """Candidates as a DataFrame (one row each)."""
    rows = [asdict(c) for c in candidates]
    cols = list(AlertCandidate.__dataclass_fields__)
    return pd.DataFrame(rows, columns=cols)


#: Ready-made rules. AQI levels follow HJ 633-2012 Table 2.
AQI_HEAVY_HOURLY = ThresholdRule(
    "aqi_heavy_3h", "aqi", ">", 200, min_steps=3, step="1h", severity="warning",
    message="AQI above {threshold:g} (重度污染) for {steps} h at {entity}, peak {peak:g}")
AQI_SEVERE_HOURLY = ThresholdRule(
    "aqi_severe_1h", "aqi", ">", 300, min_steps=1, step="1h", severity="critical",
    message="AQI above {threshold:g} (严重污染) at {entity}, peak {peak:g}")
AQI_HEAVY_DAILY = ThresholdRule(
    "aqi_heavy_day", "aqi", ">", 200, min_steps=1, step="1D", severity="warning",
    message="daily AQI above {threshold:g} (重度污染 or worse) at {entity} for {steps} day(s), peak {peak:g}")


def high_flow_rule(name: str = "high_flow", property: str = "flow", *, quantile: float = 0.95,
                   factor: float = 1.0, min_steps: int = 3, step: str = "5min",
                   severity: str = "warning") -> ThresholdRule:
    """Flow (counts per interval) above ``factor`` times the entity's ``quantile`` for a while.

    Examples
    --------
    >>> high_flow_rule(min_steps=6).relative_to
    0.95
    """
    return ThresholdRule(name, property, ">", factor, min_steps=min_steps, step=step,
                         relative_to=quantile, severity=severity,
                         message="{property} above {threshold:.1f} for {steps} intervals at {entity} "
                                 "(highest {peak:g})")


def congestion_rule(name: str = "congestion", property: str = "speed", *, fraction: float = 0.5,
                    quantile: float = 0.85, min_steps: int = 3, step: str = "5min",
                    severity: str = "warning") -> ThresholdRule:
    """Speed below ``fraction`` of the entity's usual free-flow speed (its ``quantile``) for a while.

    Examples
    --------
    >>> congestion_rule(min_steps=6).threshold
    0.5
    """
    return ThresholdRule(name, property, "<", fraction, min_steps=min_steps, step=step,
                         relative_to=quantile, severity=severity,
                         message="{property} below {threshold:.1f} for {steps} intervals at {entity} "
                                 "(lowest {peak:g})")
