"""Predict and verify in the live twin: issue forecasts from the history, store them, score them later.

The steps (wired by :class:`citytwin.workflows.runtime.TwinRuntime`; the CLI and the HTTP routes of
:mod:`citytwin.service.forecasting` call them):

1. :func:`issue` reads the last ``train_days`` of history of one property, fits the learned model
   (:class:`citytwin.twin.forecast.Forecaster`; the baselines need no fit) on data up to the issue
   time — the last full grid time of the history — and stores the forecasts for the next 1–6 steps
   of every model in the :class:`~citytwin.foundation.timeseries.forecasts.ForecastStore`.
2. :func:`verify` joins every stored forecast with the actual from the history once it exists (the
   mean of the readings in the target's grid interval, as the forecasts are made on that grid),
   and writes the scores per model, horizon and entity, and over all entities (``entity`` =
   ``"(all)"``): ``n``, MAE, RMSE, bias and the skill ``1 − MAE / MAE(seasonal naive)`` on the
   cases that every model forecast. Targets without an actual are not scored (``pending``).
   Verification recomputes the table from all stored forecasts, so it is idempotent and a late or
   corrected reading is taken into account at the next run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.foundation.timeseries import HistoryStore
from citytwin.foundation.timeseries.forecasts import ForecastStore
from citytwin.foundation.timeseries.history import to_us
from citytwin.twin import forecast as fc

__all__ = ["ALL", "DEFAULT_MODELS", "SCORE_COLUMNS", "IssueReport", "VerifyReport", "actuals", "issue", "naive_utc",
           "verify"]

ALL = "(all)"
DEFAULT_MODELS: tuple[str, ...] = ("seasonal_naive", "persistence", "gbrt")
SCORE_COLUMNS = ["entity", "property", "model", "horizon", "steps", "n", "mae", "rmse", "bias", "baseline_mae",
                 "skill"]


@dataclass
class IssueReport:
    """What :func:`issue` stored."""

    property: str
    issued_at: pd.Timestamp | None
    stored: int = 0
    models: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # model -> why it issued nothing
    entities: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"property": self.property, "issued_at": None if self.issued_at is None else
                self.issued_at.isoformat(), "stored": self.stored, "models": self.models,
                "skipped": self.skipped, "entities": self.entities}


@dataclass
class VerifyReport:
    """Result of :func:`verify`: the score table, and how many forecasts were scored / still pending."""

    scores: pd.DataFrame
    verified: int
    pending: int
    next_due: pd.Timestamp | None  # earliest target time still without an actual
    pending_times: pd.Series = field(default_factory=lambda: pd.Series(dtype="datetime64[ns, UTC]"))

    def due_after(self, t: pd.Timestamp) -> pd.Timestamp | None:
        """Earliest pending target time after ``t`` (targets at or before ``t`` with no actual yet may
        never get one: a missing reading)."""
        later = self.pending_times[self.pending_times > t]
        return None if later.empty else pd.Timestamp(later.min())

    def losses(self, baseline: str = fc.BASELINE) -> pd.DataFrame:
        """Rows (over all entities) where a model is worse than the baseline (skill < 0)."""
        s = self.scores
        if s.empty:
            return s
        return s[(s["entity"] == ALL) & (s["model"] != baseline) & (s["skill"] < 0)]


def naive_utc(t: pd.Series) -> pd.Series:
    t = pd.to_datetime(t, utc=True)
    return t.dt.tz_localize(None).astype("datetime64[ns]")


def issue(history: HistoryStore, store: ForecastStore, *, property: str = "pm25",
          entities: Sequence[str] | None = None, models: Sequence[str] = DEFAULT_MODELS,
          horizons: Sequence[str | int] = fc.DEFAULT_HORIZONS, freq: str = "1h", season: str = "1D",
          train_days: float = 28.0, at: Any = None) -> IssueReport:
    """Issue forecasts from the history and store them (see the module docstring).

    Parameters
    ----------
    models
        Models to issue; the seasonal-naive baseline is always added (skill is measured against it).
    at
        Issue at this time (UTC; default: the last observation of ``property``). The issue time is
        ``at`` floored to the grid; only data up to it is used.
    train_days
        Days of history read for fitting and features.
    """
    models = [fc.BASELINE, *[m for m in models if m != fc.BASELINE]]  # the baseline is always issued
    unknown = [m for m in models if m not in fc.MODELS]
    if unknown:
        raise InputError(f"unknown forecast model {unknown[0]!r}", field="model", hint=", ".join(fc.MODELS))
    try:
        step = pd.Timedelta(freq)
    except ValueError as exc:
        raise InputError(f"bad frequency {freq!r}", field="freq") from exc
    if at is None:
        span = history.span(properties=property, entities=list(entities) if entities else None)
        if span is None:
            raise InputError(f"no {property} observations in the history yet", field="property",
                             hint="ingest or replay data first")
        at_ts = span[1]
    else:
        at_us = to_us(at)  # an InputError for text that is not a time the history can hold
        assert at_us is not None
        at_ts = pd.Timestamp(at_us, unit="us", tz="UTC")
    issued = at_ts.floor(step)
    obs = history.query(entities=list(entities) if entities else None, properties=property,
                        start=issued - pd.Timedelta(days=train_days), end=issued + step)
    rep = IssueReport(property, issued)
    obs = obs[obs["value"].notna()]
    if obs.empty:
        raise InputError(f"no {property} observations in the {train_days:g} days before {issued}",
                         field="property")
    obs = obs.assign(time=naive_utc(obs["time"]))[["entity", "property", "time", "value"]]
    grid = fc.to_grid(obs, property=property, freq=freq)
    grid = grid.reindex(pd.date_range(grid.index[0], issued.tz_localize(None), freq=step, name="time"))
    rep.entities = grid.shape[1]
    out = []
    for m in models:
        f = fc.Forecaster(m, freq=freq, season=season, horizons=horizons, property=property)
        try:
            f.fit(grid=grid)
        except InputError as exc:
            rep.skipped[m] = exc.message if hasattr(exc, "message") else str(exc)
            continue
        r = f.predict(grid=grid, property=property)
        if r.empty:
            rep.skipped[m] = "no forecast: inputs missing at the issue time"
            continue
        out.append(r)
        rep.models.append(m)
    if out:
        rec = pd.concat(out, ignore_index=True)
        rep.stored = store.append(rec)  # naive times are UTC
    return rep


def actuals(history: HistoryStore, fcs: pd.DataFrame) -> pd.DataFrame:
    """Grid means of the readings at the forecasts' target intervals (naive UTC ``time``)."""
    parts = []
    for (prop, step), g in fcs.groupby(["property", "step"]):
        lo, hi = g["target_time"].min(), g["target_time"].max() + step
        obs = history.query(entities=sorted(g["entity"].unique()), properties=str(prop), start=lo, end=hi)
        obs = obs[obs["value"].notna()]
        if obs.empty:
            continue
        t = naive_utc(obs["time"]).dt.floor(step)
        parts.append(obs.assign(time=t).groupby(["entity", "property", "time"], as_index=False)["value"].mean())
    if not parts:
        return pd.DataFrame(columns=["entity", "property", "time", "value"])
    return pd.DataFrame(pd.concat(parts, ignore_index=True))


def verify(history: HistoryStore, store: ForecastStore, *, baseline: str = fc.BASELINE) -> VerifyReport:
    """Score every stored forecast whose actual has arrived; write and return the score table."""
    fcs = store.query()
    if fcs.empty:
        store.write_scores(pd.DataFrame(columns=SCORE_COLUMNS))
        return VerifyReport(pd.DataFrame(columns=SCORE_COLUMNS), 0, 0, None)
    fcs = fcs.assign(issued_at=naive_utc(fcs["issued_at"]), target_time=naive_utc(fcs["target_time"]))
    steps = fcs["steps"].where(fcs["steps"] > 0, 1).astype(int)
    fcs["step"] = fcs["horizon"] / steps
    act = actuals(history, fcs)
    v = fc.verify(fcs.drop(columns=["step"]), act)
    known = v["actual"].notna()
    pending = v.loc[~known, "target_time"].dt.tz_localize("UTC").reset_index(drop=True)
    next_due = None if pending.empty else pd.Timestamp(pending.min())
    if not known.any():
        empty = pd.DataFrame(columns=SCORE_COLUMNS)
        store.write_scores(empty)
        return VerifyReport(empty, 0, int((~known).sum()), next_due, pending)
    frames = []
    for prop, g in fcs.groupby("property"):
        ga = act[act["property"] == prop]
        if ga.empty:
            continue
        recs = g.drop(columns=["step"])
        try:
            per = fc.score(recs, ga, baseline=baseline, by=("entity",))
            tot = fc.score(recs, ga, baseline=baseline).assign(entity=ALL)
        except InputError:
            continue  # nothing of this property verifiable yet
        frames.append(pd.concat([tot, per], ignore_index=True).assign(property=prop))
    scores = pd.concat(frames, ignore_index=True)[SCORE_COLUMNS] if frames else pd.DataFrame(columns=SCORE_COLUMNS)
    store.write_scores(scores)
    return VerifyReport(scores, int(known.sum()), int((~known).sum()), next_due, pending)
