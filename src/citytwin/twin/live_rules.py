"""Rules evaluated on the live twin: over a recent window of observations, hourly AQI derived on the fly.

The live runtime (:meth:`citytwin.service.app.TwinRuntime.enable_auto_alerts`) calls
:func:`window_candidates` after each committed ingest batch with the observations of the entities
that batch touched, over a recent window, and feeds the result to the alert hub's ``sync``
(idempotent: one alert per episode, resolved when the condition ends).

A rule whose ``property`` is ``aqi`` reads the **hourly AQI** of HJ 633-2012
(:func:`citytwin.twin.aqi.hourly_aqi`, computed from the pollutants ``pm25 pm10 so2 no2 co o3``);
any other rule reads the raw observations of its property. Times are returned in UTC.

Default rules (:data:`DEFAULT_LIVE_RULES`):

* ``aqi_heavy_2h`` — hourly AQI above 200 (重度污染 or worse) for at least 2 consecutive hours;
* ``aqi_severe_1h`` — hourly AQI above 300 (严重污染) in any hour
  (:data:`citytwin.twin.rules.AQI_SEVERE_HOURLY`).

Rules relative to an entity's own level (``relative_to``) are not allowed here: a quantile over a
sliding window would move with every batch.

Examples
--------
>>> import pandas as pd
>>> t = pd.date_range("2015-12-01 00:00", periods=5, freq="h", tz="Asia/Shanghai")
>>> obs = pd.DataFrame({"entity": "s1", "property": "pm25", "time": t,
...                     "value": [100.0, 260.0, 280.0, 120.0, 300.0]})
>>> [(c.rule, c.start.isoformat(), c.steps, c.ongoing) for c in window_candidates([AQI_HEAVY_2H], obs)]
[('aqi_heavy_2h', '2015-11-30T17:00:00+00:00', 2, False)]
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.foundation.timeseries.ingest import CODES, factorized
from citytwin.foundation.units import factor as unit_factor
from citytwin.twin import aqi as aqi_mod
from citytwin.twin.live_eval import (  # (the numpy evaluation)
    _HOUR_US,
    AQI_INPUTS,
    aqi_arrays,
    aqi_arrays_many,
    holding_entities,
    series_candidates,
    series_candidates_many,
    series_candidates_rules,
)
from citytwin.twin.rules import AQI_SEVERE_HOURLY, AlertCandidate, ThresholdRule, evaluate

#: Hourly AQI above 200 (HJ 633-2012 level 5, 重度污染, or worse) for at least 2 consecutive hours.
AQI_HEAVY_2H = ThresholdRule(
    "aqi_heavy_2h", "aqi", ">", 200, min_steps=2, step="1h", severity="warning",
    message="hourly AQI above {threshold:g} (重度污染 or worse) for {steps} h at {entity}, peak {peak:g}")

#: The rules the live twin evaluates by default.
DEFAULT_LIVE_RULES: tuple[ThresholdRule, ...] = (AQI_HEAVY_2H, AQI_SEVERE_HOURLY)



def check_live_rules(rules: Iterable[ThresholdRule]) -> tuple[ThresholdRule, ...]:
    """Validate rules for live evaluation (unique names, no ``relative_to``); returns them as a tuple."""
    out = tuple(rules)
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise InputError(f"duplicate rule names in {names}", field="rules")
    for r in out:
        if not isinstance(r, ThresholdRule):
            raise InputError(f"not a ThresholdRule: {r!r}", field="rules")
        if r.relative_to is not None:
            raise InputError(f"rule {r.name!r}: relative thresholds are not evaluated live", field="relative_to",
                             hint="use an absolute threshold, or evaluate it on demand over a long period")
    return out


def needed_properties(rules: Iterable[ThresholdRule]) -> list[str]:
    """Observed properties the rules read (``aqi`` stands for the six pollutants)."""
    props: set[str] = set()
    for r in rules:
        props.update(AQI_INPUTS if r.property == "aqi" else (r.property,))
    return sorted(props)


def _utc_naive(t: pd.Series, tz: str) -> pd.Series:
    t = pd.to_datetime(t)
    if getattr(t.dt, "tz", None) is None:
        t = t.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    return t.dt.tz_convert("UTC").dt.tz_localize(None)


def _as_utc(c: AlertCandidate) -> AlertCandidate:
    def u(x: pd.Timestamp) -> pd.Timestamp:
        return pd.Timestamp(x).tz_localize("UTC")

    return dataclasses.replace(c, start=u(c.start), end=u(c.end), peak_time=u(c.peak_time),
                               detected_at=None if c.detected_at is None else u(c.detected_at))


def hourly_aqi_series(obs: pd.DataFrame, *, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Hourly AQI as a long frame ``entity, property='aqi', time (UTC, naive), value``.

    Hours after an entity's last hour with a pollutant reading are dropped (not known yet, not "below").
    """
    pol = obs[obs["property"].isin(AQI_INPUTS)]
    if pol.empty:
        return pd.DataFrame({"entity": [], "property": [], "time": pd.Series([], dtype="datetime64[ns]"),
                             "value": []})
    if "unit" in pol.columns:  # values already in the table's unit need no conversion (saves unit parsing)
        canon = pol["property"].map(aqi_mod.load_table().units)
        pol = pol.assign(unit=pol["unit"].where(pol["unit"] != canon))
    h = aqi_mod.hourly_aqi(pol, tz=tz, invalid="missing")
    h = h.assign(time=_utc_naive(h["time"], tz), value=h["aqi"].astype("Float64").astype(float))
    h = h.dropna(subset=["time"])
    # the last hour with a reading: the AQI grid runs to the end of the local day (and the O3 8-h
    # mean spills into those empty hours), which is not known yet
    seen = pol.dropna(subset=["value"])
    last = _utc_naive(seen["time"], tz).dt.floor("h").groupby(seen["entity"].to_numpy()).max()
    h = h[h["time"] <= h["entity"].map(last)]
    return h.assign(property="aqi")[["entity", "property", "time", "value"]].reset_index(drop=True)


def window_candidates(rules: Sequence[ThresholdRule], obs: pd.DataFrame, *, start: pd.Timestamp | None = None,
                      tz: str = "Asia/Shanghai") -> list[AlertCandidate]:
    """Evaluate rules over a window of observations; candidates with times in UTC (tz-aware).

    Parameters
    ----------
    rules
        Threshold rules; ``property == "aqi"`` means the hourly AQI derived from the pollutants.
    obs
        Long observations ``entity, property, time, value[, unit]`` (history rows). For AQI rules,
        give a day more before ``start``: the hourly AQI uses up to 24 h of past readings (SO2 above
        800 µg/m³, O3 8-hour mean).
    start
        First time evaluated (rows before it only feed the AQI's moving means).
    tz
        Local time zone of naive times and of the AQI's hours (HJ 633-2012: China Standard Time).

    Returns
    -------
    list of AlertCandidate
        Runs that hold for ``min_steps``; ``ongoing`` when they reach the entity's last known step.
    """
    rules = check_live_rules(rules)
    if obs.empty or not rules:
        return []
    s0 = None if start is None else pd.Timestamp(start)
    if s0 is not None:
        s0 = (s0.tz_localize(tz) if s0.tz is None else s0).tz_convert("UTC").tz_localize(None)
    series: dict[str, pd.DataFrame] = {}
    out: list[AlertCandidate] = []
    for r in rules:
        if r.property not in series:
            if r.property == "aqi":
                f = hourly_aqi_series(obs, tz=tz)
            else:
                raw = obs[obs["property"] == r.property]
                f = raw.assign(time=_utc_naive(raw["time"], tz))[["entity", "property", "time", "value"]]
            series[r.property] = f if s0 is None else f[f["time"] >= s0]
        f = series[r.property]
        if len(f):
            out.extend(_as_utc(c) for c in evaluate(r, f))
    return out


# ---------------------------------------------------------------------------------------------
# Incremental engine
# ---------------------------------------------------------------------------------------------

def _us(t: pd.Timestamp) -> int:
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    return int(ts.value // 1000)


@dataclasses.dataclass
class _Tail:
    """What the engine keeps of one entity: its recent readings of the rules' properties.

    ``cover_from``: every stored reading of the entity at or after this time (µs) is here.
    ``data``: property -> (time µs sorted unique, value as sent, factor to the AQI table's unit).
    """

    cover_from: int
    data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]

    def latest(self) -> int | None:
        last = [int(t[-1]) for t, _, _ in self.data.values() if len(t)]
        return max(last) if last else None

    def merge(self, prop: str, t: np.ndarray, v: np.ndarray, f: np.ndarray) -> None:
        """Add readings; a later one of the same time replaces an earlier one (as the history store reads)."""
        if prop in self.data:
            t0, v0, f0 = self.data[prop]
            if len(t) and (not len(t0) or t[0] > t0[-1]) and (len(t) < 2 or bool((t[1:] > t[:-1]).all())):
                # (the usual commit: readings after the kept ones, in order, no time twice) appended: what the
                # sort and the dedup below give for them
                self.data[prop] = (np.concatenate([t0, t]), np.concatenate([v0, v]), np.concatenate([f0, f]))
                return
            t, v, f = np.concatenate([t0, t]), np.concatenate([v0, v]), np.concatenate([f0, f])
        order = np.argsort(t, kind="stable")
        t, v, f = t[order], v[order], f[order]
        keep = np.r_[t[1:] != t[:-1], True] if len(t) else np.zeros(0, dtype=bool)
        self.data[prop] = (t[keep], v[keep], f[keep])

    def trim(self, before: int) -> None:
        """Forget readings before ``before`` (µs)."""
        if before <= self.cover_from:
            return
        for p, (t, v, f) in list(self.data.items()):
            i = int(t.searchsorted(before))  # (side="left"; the method: np.searchsorted's dispatch is ~2 µs a call)
            if i:
                self.data[p] = (t[i:], v[i:], f[i:])
        self.cover_from = before


@dataclasses.dataclass
class LiveUpdate:
    """What one batch changed: candidates to sync for the touched entities, and finished runs found in the past.

    ``current`` are evaluated up to each entity's latest reading (sync them with ``entities``: a live
    alert of those entities without an ongoing candidate has ended). ``past`` come from windows around
    readings far older than what the engine keeps (sync them with no entities: they end nothing live).
    """

    current: list[AlertCandidate]
    entities: list[str]
    past: list[AlertCandidate]


HistoryReader = Callable[[list[str], int, int | None], pd.DataFrame]


class LiveRuleEngine:
    """Rules evaluated incrementally on the live twin: only the entities and hours a batch touched.

    The engine keeps, per entity, the readings of the rules' properties over the last ``keep``
    (default ``lookback`` + a day of AQI warm-up + a day), sorted numpy arrays per property. For a
    batch it merges the batch's readings into those arrays and evaluates each touched entity over
    ``[earliest reading of the batch, floored to the hour, − lookback, its latest reading]`` with
    numpy (hourly means by ``bincount``, the O3 8-hour and SO2 24-hour moving means by cumulative
    sums, the IAQIs of :func:`citytwin.twin.aqi.iaqi_array`, runs by :func:`series_candidates`). The
    result equals :func:`window_candidates` over the same window (tests compare both, and a
    replayed day batch by batch against one evaluation of the whole day). The touched entities are evaluated
    together (:meth:`_evaluate_many`: one AQI grid, one index of candidate times per rule), which gives what
    evaluating them one by one gave (``batch_eval = False``; ``tests/twin/test_live_batch.py``).

    History is read only

    * the first time an entity is seen (its last ``lookback`` + warm-up; the entities a batch brings for the
      first time are read in one query);
    * for a reading older than what is kept: within ``max_lookback`` of it, the gap is read and the
      window reaches back to it; further back (a reading of 1800 in 2015), only a window around the
      reading (``[t − lookback − warm-up, t + 24 h + lookback]``, widened while a run reaches its
      end, up to ``max_lookback``) is read and evaluated on its own (``past`` candidates: finished
      runs; a run still going at the end of that bounded window is not reported);
    * when a run reaches the window's start and ``known`` has no alert it continues: read further
      back, up to ``max_lookback`` (as :class:`~citytwin.workflows.alerting.AutoAlerts` did).

    Parameters
    ----------
    rules
        Live rules (default :data:`DEFAULT_LIVE_RULES`).
    history
        ``history(entities, start_us, end_us_or_None)`` -> long observations (``entity, property,
        time, value, unit``); e.g. a :class:`~citytwin.foundation.timeseries.HistoryStore` query.
    lookback, max_lookback, tz
        As in :class:`~citytwin.workflows.alerting.AutoAlerts`.
    keep
        How much of each entity's recent readings stays in memory (at least lookback + warm-up + step).
    complete
        The history held no reading when the engine started and every reading stored since reaches
        :meth:`update` (one writer, the engine's hook on every commit: what
        :class:`~citytwin.workflows.alerting.AutoAlerts` sets for an empty history). Then an entity seen
        for the first time has nothing in history but the batch, and its first read is skipped (it would
        read back the batch just committed: for a replayed month, the whole month).
    """

    def __init__(self, rules: Iterable[ThresholdRule] | None = None, *, history: HistoryReader | None = None,
                 lookback: str = "24h", max_lookback: str = "31D", tz: str = "Asia/Shanghai",
                 keep: str | None = None, complete: bool = False) -> None:
        self.rules = check_live_rules(DEFAULT_LIVE_RULES if rules is None else rules)
        self.complete = bool(complete)
        try:
            lb, mx = pd.Timedelta(lookback), pd.Timedelta(max_lookback)
        except ValueError as exc:
            raise InputError(f"bad lookback {lookback!r} / {max_lookback!r}", field="lookback") from exc
        if lb <= pd.Timedelta(0) or mx < lb:
            raise InputError("lookback must be positive and at most max_lookback", field="lookback")
        self.history = history
        self.tz = tz
        self.lookback_us = int(lb.value // 1000)
        self.max_lookback_us = int(mx.value // 1000)
        self.properties = needed_properties(self.rules)
        self.warmup_us = 24 * _HOUR_US if any(r.property == "aqi" for r in self.rules) else 0
        if any(p in AQI_INPUTS for p in self.properties):
            aqi_mod.load_table()  # the breakpoint table (a YAML file, cached): read now, not in the first batch
        step_us = max((int(pd.Timedelta(r.step).value // 1000) for r in self.rules), default=_HOUR_US)
        floor_keep = self.lookback_us + self.warmup_us + step_us
        self.keep_us = max(floor_keep, int(pd.Timedelta(keep).value // 1000) if keep else floor_keep + 24 * _HOUR_US)
        self.tails: dict[str, _Tail] = {}
        self._factors: dict[tuple[str, str], float] = {}
        self.history_reads = 0
        self._pre: dict[str, tuple[int, dict[str, tuple[np.ndarray, ...]]]] = {}
        self._pnames: list[str] = []  # property of each code in the columns of the batch being merged
        self._ecodes: tuple[np.ndarray, np.ndarray] | None = None  # and its entities as codes (ingest.CODES)
        #: evaluate a batch's entities together (:meth:`_evaluate_many`); False: one by one (:meth:`_evaluate`, the
        #: reference ``tests/twin/test_live_batch.py`` compares with)
        self.batch_eval = True
        #: merge a batch's readings into the tails by slices of the batch sorted by entity and property once;
        #: False: one mask per entity and property (the reference ``tests/twin/test_live_batch.py`` compares with)
        self.segment_merge = True
        #: the rules over one property evaluated together (:func:`series_candidates_rules`: its series laid end to end
        #: once); False: rule by rule, runs looked for where the rule holds (the reference the tests compare with)
        self.joint_rules = True
        #: (with segment_merge) whether each group's times rise checked for all groups of the batch at once, and an
        #: append made here; False: :meth:`_Tail.merge` checks each group (the reference the tests compare with)
        self.group_checks = True
        self._by_name: tuple[tuple[ThresholdRule, ...] | None, dict[str, tuple[ThresholdRule, pd.Timedelta]]] = (
            None, {})

    # -- input -------------------------------------------------------------------------------
    def _factor(self, prop: str, unit: Any) -> float:
        if prop not in AQI_INPUTS or unit is None or (isinstance(unit, float) and np.isnan(unit)):
            return 1.0
        key = (prop, str(unit))
        f = self._factors.get(key)
        if f is None:
            canon = aqi_mod.load_table().units[prop]
            f = 1.0 if key[1] == canon else float(unit_factor(key[1], canon))
            self._factors[key] = f
        return f

    def _columns(self, batch: Any) -> dict[str, np.ndarray]:
        """Batch as arrays ``entity, property, time_us, value, factor, pcode`` (rule properties only; from the ingest's
        columns with codes, ``entity`` and ``unit`` only where their codes are not given, and no ``property``)."""
        if isinstance(batch, pd.DataFrame):
            if "time_us" in batch.columns:
                t = batch["time_us"].to_numpy(dtype=np.int64)
            else:
                tt = pd.to_datetime(batch["time"])
                if getattr(tt.dt, "tz", None) is None:
                    tt = tt.dt.tz_localize(self.tz)
                t = tt.dt.tz_convert("UTC").dt.as_unit("us").astype("int64").to_numpy()
            cols = {"entity": batch["entity"].astype(str).to_numpy(dtype=object),
                    "property": batch["property"].to_numpy(dtype=object), "time_us": t,
                    "value": pd.to_numeric(batch["value"], errors="coerce").to_numpy(dtype=float),
                    "unit": batch["unit"].to_numpy(dtype=object) if "unit" in batch.columns
                    else np.full(len(batch), None, dtype=object)}
        else:
            n = len(batch["entity"])
            cols = {"entity": np.asarray(batch["entity"], dtype=object),
                    "property": np.asarray(batch["property"], dtype=object),
                    "time_us": np.asarray(batch["time_us"], dtype=np.int64),
                    "value": np.array(batch["value"], dtype=float),  # None -> NaN
                    "unit": np.asarray(batch.get("unit", [None] * n), dtype=object)}
        # properties as codes (one hash pass over the column, or the ingest's codes; object comparisons per
        # property cost more); entities and units too when the ingest gave their codes
        given = isinstance(batch, Mapping) and isinstance(batch.get(CODES), Mapping)
        codes, names = factorized(batch if given else cols, "property")
        ecodes = factorized(batch, "entity") if given and "entity" in batch[CODES] else None
        ucodes = factorized(batch, "unit") if given and "unit" in batch[CODES] else None
        wanted = np.array([str(n) in self.properties for n in names], dtype=bool)
        keep = wanted[codes] if len(names) else np.zeros(len(codes), dtype=bool)
        unit_all = cols["unit"]
        if given:  # the string columns whose codes the ingest gave are not used: not copied (a third of this time)
            for k in ("property", "entity" if ecodes is not None else "", "unit" if ucodes is not None else ""):
                cols.pop(k, None)
        if not keep.all():
            cols = {k: v[keep] for k, v in cols.items()}
            codes = codes[keep]
            ecodes = None if ecodes is None else (ecodes[0][keep], ecodes[1])
            ucodes = None if ucodes is None else (ucodes[0][keep], ucodes[1])
        fac = np.ones(len(cols["time_us"]))
        for c, p in enumerate(names):  # a few properties, usually one unit each: masks, not a loop per row
            if not wanted[c] or p not in AQI_INPUTS:
                continue
            m = codes == c
            uniq = (pd.unique(unit_all[keep][m]) if ucodes is None
                    else ucodes[1][_present(ucodes[0][m], len(ucodes[1]))])
            if len(uniq) == 1:
                fac[m] = self._factor(str(p), uniq[0])
            else:
                fac[m] = [self._factor(str(p), u) for u in unit_all[keep][m]]
        cols["factor"] = fac
        self._ecodes = ecodes
        cols["pcode"] = codes.astype(np.int64)
        self._pnames = [str(n) for n in names]
        return cols

    def _read(self, entity: str, start_us: int, end_us: int | None) -> dict[str, tuple[np.ndarray, ...]]:
        pre = self._pre.get(entity)
        if pre is not None and end_us is None and start_us >= pre[0]:  # read already, with the batch's others
            out: dict[str, tuple[np.ndarray, ...]] = {}
            for p, (t, v, f) in pre[1].items():
                m = t >= start_us
                out[p] = (t[m], v[m], f[m])
            return out
        if self.history is None:
            return {}
        self.history_reads += 1
        df = self.history([entity], start_us, end_us)
        if df is None or not len(df):
            return {}
        return self._by_property(self._columns(df))

    @staticmethod
    def _by_property(c: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, ...]]:
        out: dict[str, tuple[np.ndarray, ...]] = {}
        for p in np.unique(c["property"]):
            m = c["property"] == p
            out[str(p)] = (c["time_us"][m], c["value"][m], c["factor"][m])
        return out

    def _prefetch(self, ents: Sequence[str], starts: Sequence[int]) -> None:
        """Read the history of several entities seen for the first time in one query (from the earliest start,
        to the end): what :meth:`_load` would read for each of them, one read instead of one per entity."""
        self._pre = {}
        if self.history is None or len(ents) < 2:
            return
        lo = min(starts)
        self.history_reads += 1
        df = self.history(list(ents), lo, None)
        if df is None or not len(df):
            self._pre = {e: (lo, {}) for e in ents}
            return
        c = self._columns(df)
        for e in ents:
            m = c["entity"] == e
            self._pre[e] = (lo, self._by_property({k: v[m] for k, v in c.items()}))

    def _load(self, tail: _Tail, entity: str, start_us: int) -> None:
        """Read ``[start_us, tail.cover_from)`` from history into the tail (history first: the tail is newer)."""
        if start_us >= tail.cover_from:
            return
        end = None if tail.cover_from >= np.iinfo(np.int64).max else tail.cover_from
        old = self._read(entity, start_us, end)
        for p, (t, v, f) in old.items():
            if end is not None:
                m = t < end
                t, v, f = t[m], v[m], f[m]
            if p in tail.data:
                t0, v0, f0 = tail.data[p]
                tail.data[p] = (np.concatenate([t, t0]), np.concatenate([v, v0]), np.concatenate([f, f0]))
            else:
                tail.merge(p, t, v, f)
        tail.cover_from = start_us

    # -- evaluation ----------------------------------------------------------------------------
    def _series(self, data: Mapping[str, tuple[np.ndarray, ...]], prop: str,
                start_us: int) -> tuple[np.ndarray, np.ndarray]:
        """The series a rule on ``prop`` reads, from ``start_us``: (times µs UTC, values)."""
        if prop != "aqi":
            t, v, _ = data.get(prop, (np.zeros(0, np.int64), np.zeros(0), np.zeros(0)))
            i = int(np.searchsorted(t, start_us, side="left"))
            return t[i:], v[i:]
        return aqi_arrays(data, start_us, self.warmup_us, self.tz)

    def _evaluate(self, entity: str, data: Mapping[str, tuple[np.ndarray, ...]],
                  start_us: int) -> list[AlertCandidate]:
        series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        out: list[AlertCandidate] = []
        for r in self.rules:
            if r.property not in series:
                series[r.property] = self._series(data, r.property, start_us)
            t, v = series[r.property]
            if len(t):
                out.extend(series_candidates(r, entity, t, v))
        return out

    def _evaluate_many(self, items: Sequence[tuple[str, Mapping[str, tuple[np.ndarray, ...]], int]]
                       ) -> list[list[AlertCandidate]]:
        """:meth:`_evaluate` of several entities (entity, kept readings, start µs): the AQI of all of them as one grid
        (:func:`aqi_arrays_many`), the rules over one property run on its series laid end to end once
        (:func:`series_candidates_rules`; ``joint_rules = False``: rule by rule, runs looked for only in the series
        where the rule's condition holds, :func:`series_candidates_many`)."""
        out: list[list[AlertCandidate]] = [[] for _ in items]
        series: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        if self.joint_rules:  # the rules over one property: its series laid end to end once for all of them
            by_prop: dict[str, list[ThresholdRule]] = {}
            for r in self.rules:
                by_prop.setdefault(r.property, []).append(r)
            ents = [e for e, _, _ in items]
            found: dict[str, list[list[AlertCandidate]]] = {}
            for prop, rules in by_prop.items():
                ser = (aqi_arrays_many([(d, s) for _, d, s in items], self.warmup_us, self.tz) if prop == "aqi" else
                       [self._series(d, prop, s) for _, d, s in items])
                for r, made in zip(rules, series_candidates_rules(rules, ents, ser), strict=True):
                    found[r.name] = made
            for r in self.rules:  # in the rules' order, as below
                for k, cands in enumerate(found[r.name]):
                    out[k].extend(cands)
            return out
        for r in self.rules:
            if r.property not in series:
                series[r.property] = (aqi_arrays_many([(d, s) for _, d, s in items], self.warmup_us, self.tz)
                                      if r.property == "aqi" else
                                      [self._series(d, r.property, s) for _, d, s in items])
            ser = series[r.property]
            hold = holding_entities(r, ser)
            made = series_candidates_many(r, [items[k][0] for k in hold], [ser[k] for k in hold])
            for k, cands in zip(hold, made, strict=True):
                out[k].extend(cands)
        return out

    def _follow_back(self, entity: str, tail: _Tail, start_us: int, cands: list[AlertCandidate],
                     known: Callable[[str, str], list[Any]] | None, floor_us: int,
                     span_us: int) -> list[AlertCandidate]:
        if self._by_name[0] is not self.rules:  # each rule and its step (parsing a step string costs ~10 µs)
            self._by_name = (self.rules, {r.name: (r, pd.Timedelta(r.step)) for r in self.rules})
        by_name = self._by_name[1]
        while True:
            unknown = False
            out = list(cands)
            for i, c in enumerate(cands):
                rule, step = by_name[c.rule]
                if (pd.Timestamp(c.start).value - step.value) // 1000 >= start_us:  # _us(c.start - step), exact
                    continue
                mine = known(c.rule, c.entity) if known else []
                if any(a.start is not None and a.start == c.start for a in mine):
                    continue  # recorded with this very start: it began there
                reach = c.start - step
                # the last such alert (oldest first): looked for from the end
                prev = next((a for a in reversed(mine) if a.start is not None and a.start < c.start
                             and (a.live or (a.end is not None and a.end >= reach))), None)
                if prev is not None:
                    out[i] = _continued(rule, c, prev, step)
                else:
                    unknown = True
            if not unknown or start_us <= floor_us:
                return out
            # an unknown run older than the window: look further back, first in what is kept
            kept = tail.cover_from + self.warmup_us
            if kept < start_us:
                start_us = max(floor_us, kept)
            elif self.history is None:
                return out
            else:
                start_us = max(floor_us, start_us - 4 * max(span_us, _HOUR_US))
                self._load(tail, entity, start_us - self.warmup_us)
            cands = self._evaluate(entity, tail.data, start_us)

    def update(self, batch: Any, *, known: Callable[[str, str], list[Any]] | None = None) -> LiveUpdate:
        """Merge a committed batch and evaluate the entities it touched.

        Parameters
        ----------
        batch
            Long observations: a DataFrame (``entity, property, time|time_us, value[, unit]``) or the
            ingest's columns (``entity, property, time_us, value, unit`` lists).
        known
            ``known(rule, entity)`` -> alerts recorded for them, oldest first (e.g.
            ``AlertBook.alerts(rule=..., entity=...)``): a run that reaches the window's start and
            continues a known alert takes its start and peak.
        """
        cols = self._columns(batch)
        pnames = self._pnames  # (a history read while merging makes columns of its own)
        if not len(cols["time_us"]):
            return LiveUpdate([], [], [])
        given = self._ecodes  # the entities as the ingest's codes, when it gave them
        codes, ents = factorized(cols if given is None else {CODES: {"entity": given}}, "entity", sort=True)
        # by entity, then (segment_merge) by property, each group's readings in the batch's order (stable)
        order = np.lexsort((cols["pcode"], codes)) if self.segment_merge else np.argsort(codes, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(ents)))]
        big = int(np.iinfo(np.int64).max)
        fresh_k = [] if self.complete else [k for k, e in enumerate(ents) if str(e) not in self.tails]
        self._prefetch([str(ents[k]) for k in fresh_k],
                       [(int(cols["time_us"][order[bounds[k]:bounds[k + 1]]].min()) // _HOUR_US) * _HOUR_US
                        - self.lookback_us - self.warmup_us for k in fresh_k])
        try:
            return self._update(cols, ents, order, bounds, known, big, pnames)
        finally:
            self._pre = {}

    def _update(self, cols: dict[str, np.ndarray], ents: Any, order: np.ndarray, bounds: np.ndarray,
                known: Callable[[str, str], list[Any]] | None, big: int, pnames: list[str]) -> LiveUpdate:
        current: list[AlertCandidate] = []
        past: list[AlertCandidate] = []
        touched: list[str] = []
        evals: list[tuple[str, _Tail, int]] = []  # the touched entities to evaluate, in order, and their windows
        seg = self.segment_merge
        if seg:  # the batch in (entity, property) order once: each entity's and property's readings are a slice
            t_all, v_all, f_all, p_all = (cols[c][order] for c in ("time_us", "value", "factor", "pcode"))
            if self.group_checks:  # each (entity, property) group's start, property and whether its times rise, at once
                cross = p_all[1:] != p_all[:-1]
                cross[bounds[1:-1] - 1] = True  # (where a new entity starts)
                gs = np.flatnonzero(np.r_[True, cross])
                flat = np.r_[(t_all[1:] <= t_all[:-1]) & ~cross, False]  # a time not after the one before, in a group
                g_bad, g_start = np.add.reduceat(flat, gs).tolist(), gs.tolist()
                g_prop, g_end = p_all[gs].tolist(), [*g_start[1:], len(t_all)]
        for k, ent in enumerate(ents):
            ent = str(ent)
            a, b = int(bounds[k]), int(bounds[k + 1])
            idx = order[a:b]
            t_b = t_all[a:b] if seg else cols["time_us"][idx]
            lo_us = int(t_b.min())
            start_us = (lo_us // _HOUR_US) * _HOUR_US - self.lookback_us
            tail = self.tails.get(ent)
            fresh = tail is None
            if tail is None:  # (complete: everything of it is in the batch, nothing to read)
                tail = self.tails[ent] = _Tail(-big if self.complete else big, {})
            old_mask = np.zeros(len(idx), dtype=bool)
            if not fresh and start_us - self.warmup_us < tail.cover_from:
                if tail.cover_from - lo_us > self.max_lookback_us:
                    # far older than what is kept: evaluate a bounded window around those readings alone
                    old_mask = t_b < tail.cover_from - self.max_lookback_us
                    past.extend(self._past(ent, t_b[old_mask]))
                    rest = t_b[~old_mask]
                    start_us = ((int(rest.min()) // _HOUR_US) * _HOUR_US - self.lookback_us) if len(rest) else big
                if start_us != big:
                    self._load(tail, ent, start_us - self.warmup_us)
            if fresh:  # its history (the batch is in it already, merged again below: the same values)
                self._load(tail, ent, start_us - self.warmup_us)
            if seg and self.group_checks and not old_mask.any():
                # what _Tail.merge does with each group, its "in order, no time twice" checked above for all groups
                for g in range(bisect.bisect_left(g_start, a), bisect.bisect_left(g_start, b)):
                    s0, s1, prop = g_start[g], g_end[g], pnames[g_prop[g]]
                    have = tail.data.get(prop)
                    if have is not None and not g_bad[g] and (not len(have[0]) or t_all[s0] > have[0][-1]):
                        tail.data[prop] = (np.concatenate([have[0], t_all[s0:s1]]),
                                           np.concatenate([have[1], v_all[s0:s1]]),
                                           np.concatenate([have[2], f_all[s0:s1]]))
                    else:
                        tail.merge(prop, t_all[s0:s1], v_all[s0:s1], f_all[s0:s1])
                evals.append((ent, tail, start_us))
                continue
            if seg and not old_mask.any():
                pc = p_all[a:b]
                cut = np.flatnonzero(pc[1:] != pc[:-1]).tolist()
                for s0, s1 in zip([0, *(x + 1 for x in cut)], [*(x + 1 for x in cut), b - a], strict=True):
                    tail.merge(pnames[int(pc[s0])], t_all[a + s0:a + s1], v_all[a + s0:a + s1], f_all[a + s0:a + s1])
                evals.append((ent, tail, start_us))
                continue
            pc = cols["pcode"][idx]
            for c in _present(pc, len(pnames)):
                m = (pc == c) & ~old_mask
                if m.any():
                    j = idx[m]
                    tail.merge(pnames[c], cols["time_us"][j], cols["value"][j], cols["factor"][j])
            evals.append((ent, tail, start_us))
        # every touched entity's window evaluated at once (one AQI grid, one comparison per rule), then each
        # entity's follow-back and trim in order: what evaluating, following back and trimming one entity after the
        # other gave (they share nothing: each reads its own tail, and history and the known alerts do not change)
        found = (self._evaluate_many([(e, t.data, s) for e, t, s in evals if s != big])
                 if self.batch_eval else None)
        n = 0
        for ent, tail, start_us in evals:
            if start_us != big:
                latest = tail.latest()
                cands = self._evaluate(ent, tail.data, start_us) if found is None else found[n]
                n += 1
                floor_us = start_us - self.max_lookback_us + self.lookback_us
                span = (latest if latest is not None else start_us) - start_us
                current.extend(self._follow_back(ent, tail, start_us, cands, known, floor_us, span))
                touched.append(ent)
            if start_us == big or latest is None:
                # (else the latest reading as before the follow-back: what it may read from history lies before every
                # reading the tail held, so the latest did not change; tests/twin/test_live_batch.py checks each trim)
                latest = tail.latest()
            if latest is not None:
                tail.trim(latest - self.keep_us)
        return LiveUpdate(current, touched, past)

    def _past(self, entity: str, times: np.ndarray) -> list[AlertCandidate]:
        """Finished runs around readings far older than the kept tail (a bounded window of history)."""
        if self.history is None or not len(times):
            return []
        out: list[AlertCandidate] = []
        lim = {r.name: (r.max_gap + 1) * int(pd.Timedelta(r.step).value // 1000) for r in self.rules}
        t_sorted = np.sort(times)
        # clusters of readings less than the window apart
        cut = np.flatnonzero(np.diff(t_sorted) > self.lookback_us + self.warmup_us + 24 * _HOUR_US) + 1
        for grp in np.split(t_sorted, cut):
            start_us = (int(grp[0]) // _HOUR_US) * _HOUR_US - self.lookback_us
            end_us = (int(grp[-1]) // _HOUR_US + 24) * _HOUR_US + self.lookback_us
            limit = start_us + self.max_lookback_us
            while True:
                data = self._read(entity, start_us - self.warmup_us, end_us)
                # the entity has later readings (those kept): a run that stops more than its allowed
                # gap before the window's end is over, whatever comes next
                cands = [dataclasses.replace(c, ongoing=False) if c.ongoing and _us(c.end) + lim[c.rule] < end_us
                         else c for c in self._evaluate(entity, data, start_us)]
                if not any(c.ongoing for c in cands) or end_us >= limit:
                    out.extend(c for c in cands if not c.ongoing)
                    break
                end_us = min(limit, end_us + 4 * (end_us - start_us))
        return out


def _present(codes: np.ndarray, n: int) -> list[int]:
    """``np.unique(codes).tolist()``: for codes in ``[0, n)`` by counting them (not a sort of the codes, per entity
    and batch), else by ``np.unique`` itself."""
    if not len(codes) or int(codes.min()) < 0 or int(codes.max()) >= n:
        return list(np.unique(codes).tolist())
    return list(np.flatnonzero(np.bincount(codes, minlength=n)).tolist())


def _continued(rule: ThresholdRule, c: AlertCandidate, a: Any, step: pd.Timedelta | None = None) -> AlertCandidate:
    """Candidate ``c`` as the continuation of the known alert ``a`` (its start and peak); ``step``: the rule's step
    parsed already (the follow-back's, once per rule set: a parse costs ~10 µs)."""
    if step is None:
        step = pd.Timedelta(rule.step)
    a_start = pd.Timestamp(a.start)
    peak = c.peak if a.peak is None else (min(c.peak, a.peak) if c.lower_is_worse else max(c.peak, a.peak))
    n = round((c.end - a_start) / step) + 1
    msg = rule.message.format(entity=c.entity, property=c.property, op=c.op, threshold=c.threshold,
                              peak=peak, steps=n, start=a_start, end=c.end)
    pk_t = c.peak_time if peak == c.peak or a.peak_time is None else pd.Timestamp(a.peak_time)
    return dataclasses.replace(c, start=a_start, peak=peak, peak_time=pk_t, steps=n, message=msg,
                               detected_at=None)
