"""Resilience measures (C1).

Forms (E = the value, e.g. employment or GDP; r a unit, N the reference economy):

- **Sensitivity** (Martin 2012): ``SI_r = (ΔE_r / E_r) / (ΔE_N / E_N)`` over the shock (contraction)
  window; > 1 means the unit fell more than the reference.
- **Resistance** and **recovery** (Martin, Sunley, Gardiner & Tyler 2016):
  ``(ΔE_r − ΔE_r^exp) / |ΔE_r^exp|`` with ``ΔE_r^exp = E_r(start) · ΔE_N / E_N`` the change the unit
  would have had at the reference's rate. Resistance uses the shock window ``start → end``, recovery
  the window ``end → recovery_end`` (default: the last period). > 0: better than the reference.
- **Growth deviation** (the year-by-year form used for Chinese cities): for every unit and period,
  ``(g_rt − g_Nt) / |g_Nt|`` with ``g`` the growth rate on the previous observed period; periods in
  the shock window are labelled ``resistance``, those after it ``recovery``, those before ``pre``.

The reference is ``"national"`` or a column of the panel holding the reference value of each period
(the same in every row of a period). ``"national"`` is the sum over units, chain-linked: each
period's growth is taken over the units present in both periods (so that cities entering or leaving
an unbalanced panel do not count as growth or fall), starting from the first period's total.

**Shock detection** (when no window is given): on the reference series, the run of consecutive
periods of decline with the largest cumulative fall (start = the peak before it, end = its trough).
If the reference never declines (as Chinese GDP), the run of consecutive periods whose growth is
below the series' mean growth with the largest cumulative shortfall (a growth slowdown).

Bad input: a shock window outside the data, or with start ≥ end, raises :class:`InputError`; a unit
missing the start or end period gets NaN and a ``note`` saying which period is missing (nothing is
dropped silently); non-numeric values raise :class:`InputError` naming the row and field.

:func:`multidimensional_index` builds the resistance/recovery, adaptation/adjustment and
innovation/transformation index with :func:`citytwin.economy.index.composite_index`.

Examples
--------
>>> round(sensitivity(1000, 950, 10_000, 9_700), 4), round(resistance(1000, 950, 10_000, 9_700), 4)
(1.6667, -0.6667)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.resilience.panel import check_columns

Method = Literal["martin", "growth-deviation"]
METHODS: tuple[str, ...] = ("martin", "growth-deviation")
DIMENSIONS: tuple[str, ...] = ("resistance_recovery", "adaptation_adjustment", "innovation_transformation")


def sensitivity(e_start: float, e_end: float, ref_start: float, ref_end: float) -> float:
    """Martin (2012) sensitivity index: the unit's relative change over the reference's."""
    g_ref = (ref_end - ref_start) / ref_start
    if g_ref == 0:
        return float("nan")
    return float(((e_end - e_start) / e_start) / g_ref)


def resistance(e_start: float, e_end: float, ref_start: float, ref_end: float) -> float:
    """Martin et al. (2016) resistance (or recovery, over the recovery window)."""
    expected = e_start * (ref_end - ref_start) / ref_start
    if expected == 0:
        return float("nan")
    return float(((e_end - e_start) - expected) / abs(expected))


@dataclass
class MeasureResult:
    """Resilience measures: ``table`` (one row per unit, or per unit and period), the shock window and
    how it was chosen, the reference series, and warnings."""

    table: pd.DataFrame
    shock: tuple[Any, Any]
    shock_rule: str
    reference: pd.Series
    method: str
    warnings: list[str] = field(default_factory=list)


def detect_shock(reference: pd.Series) -> tuple[Any, Any, str]:
    """The shock window of a reference series indexed by period (see the module docstring)."""
    s = reference.dropna().sort_index()
    if len(s) < 3:
        raise InputError("at least three periods of the reference series are needed to detect a shock",
                         hint="give the window with --shock START:END")
    g = s.pct_change().iloc[1:]
    periods = list(s.index)

    def best_run(flag: np.ndarray, loss: np.ndarray) -> tuple[int, int] | None:
        best, cur_start, cur = None, None, 0.0
        best_v = 0.0
        for i, f in enumerate(flag):
            if f:
                if cur_start is None:
                    cur_start, cur = i, 0.0
                cur += loss[i]
                if cur > best_v:
                    best_v, best = cur, (cur_start, i)
            else:
                cur_start = None
        return best

    gv = g.to_numpy()
    run = best_run(gv < 0, -gv)
    if run is not None:
        rule = "largest cumulative fall of the reference (consecutive declines)"
    else:
        m = float(np.mean(gv))
        run = best_run(gv < m, m - gv)
        rule = "largest cumulative growth shortfall below the reference's mean growth (no decline)"
        if run is None:
            raise InputError("no shock can be detected: the reference grows at a constant rate",
                             hint="give the window with --shock START:END")
    return periods[run[0]], periods[run[1] + 1], rule


def _reference(frame: pd.DataFrame, unit: str, time: str, value: str, reference: str,
               source: str | None) -> pd.Series:
    if reference == "national":
        wide = frame.pivot(index=unit, columns=time, values=value).sort_index(axis=1)
        periods = list(wide.columns)
        level = [float(wide[periods[0]].sum())]
        for a, b in itertools.pairwise(periods):
            both = wide[[a, b]].dropna()
            sa = float(both[a].sum())
            level.append(level[-1] * float(both[b].sum()) / sa if sa else float("nan"))
        return pd.Series(level, index=periods, name="reference")
    check_columns(frame, [reference], numeric=[reference], source=source)
    per = frame.groupby(time)[reference].agg(["min", "max"])
    bad = per[(per["max"] - per["min"]).abs() > 1e-9 * per["max"].abs().clip(lower=1)]
    if len(bad):
        raise InputError(f"the reference column differs between rows of period {bad.index[0]!r}", file=source,
                         field=reference, hint="the reference column must hold one value per period")
    return per["min"].sort_index()


def resilience_measures(
    frame: pd.DataFrame,
    *,
    unit: str,
    time: str,
    value: str,
    reference: str = "national",
    shock: tuple[Any, Any] | None = None,
    recovery_end: Any = None,
    method: Method | str = "martin",
    source: str | None = None,
) -> MeasureResult:
    """Resilience of each unit against a reference economy.

    Parameters
    ----------
    frame
        The panel (one row per unit and period).
    unit, time, value
        Columns: unit id, period (sortable, e.g. year), the value (employment, GDP ...).
    reference
        ``"national"`` (sum over units) or a column holding the reference value per period.
    shock
        ``(start, end)`` periods of the contraction; detected from the reference when ``None``.
    recovery_end
        Last period of the recovery window (default: the last period of the data).
    method
        ``martin`` (one row per unit: sensitivity, resistance, recovery) or ``growth-deviation``
        (one row per unit and period).
    source
        Name of the input, for error messages.

    Returns
    -------
    MeasureResult
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}", hint=f"one of {', '.join(METHODS)}")
    check_columns(frame, [unit, time, value], numeric=[value], source=source)
    f = frame[[unit, time, value] + ([reference] if reference != "national" else [])].copy()
    f[value] = pd.to_numeric(f[value], errors="coerce").astype(float)
    dup = f.duplicated([unit, time])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(f"duplicate ({unit}, {time}) = ({f[unit].iloc[i]!r}, {f[time].iloc[i]!r})",
                         file=source, row=i + 1, field=unit)
    ref = _reference(f, unit, time, value, reference, source)
    periods = list(ref.index)
    warnings: list[str] = []
    if shock is None:
        start, end, rule = detect_shock(ref)
    else:
        start, end = shock
        rule = "given"
        for p in (start, end):
            if p not in set(periods):
                raise InputError(f"shock period {p!r} is outside the data (periods {periods[0]}–{periods[-1]})",
                                 file=source, field=time, hint="choose a window inside the data")
        if not start < end:
            raise InputError(f"the shock window {start}:{end} must start before it ends", field=time)
    rec_end = periods[-1] if recovery_end is None else recovery_end
    if rec_end not in set(periods):
        raise InputError(f"recovery end {rec_end!r} is outside the data", field=time)
    wide = f.pivot(index=unit, columns=time, values=value)
    if method == "martin":
        if reference == "national":
            # the national total over the units present at both ends, so that missing units do not count as a fall
            def ref_pair(a: Any, b: Any) -> tuple[float, float]:
                both = wide[[a, b]].dropna()
                return float(both[a].sum()), float(both[b].sum())
        else:
            def ref_pair(a: Any, b: Any) -> tuple[float, float]:
                return float(ref[a]), float(ref[b])
        rs, re = ref_pair(start, end)
        has_rec = rec_end > end
        qs, qe = ref_pair(end, rec_end) if has_rec else (np.nan, np.nan)
        rows = []
        for u, r in wide.iterrows():
            note = [f"no value in {p}" for p in dict.fromkeys([start, end] + ([rec_end] if has_rec else []))
                    if pd.isna(r.get(p))]
            a, b = float(r.get(start, np.nan)), float(r.get(end, np.nan))
            c = float(r.get(rec_end, np.nan)) if has_rec else np.nan
            rows.append({unit: u, "period": f"{start}:{end}", "value_start": a, "value_end": b,
                         "sensitivity": sensitivity(a, b, rs, re), "resistance": resistance(a, b, rs, re),
                         "recovery_period": f"{end}:{rec_end}" if has_rec else None,
                         "recovery": resistance(b, c, qs, qe) if has_rec else np.nan,
                         "note": "; ".join(note)})
        table = pd.DataFrame(rows)
        if not has_rec:
            warnings.append(f"no recovery window: the shock ends in the last period ({end})")
    else:
        long = f.sort_values([unit, time])
        prev = long.groupby(unit)[value].shift(1)
        prev_t = long.groupby(unit)[time].shift(1)
        long = long.assign(growth=long[value] / prev - 1, previous_period=prev_t)
        g_ref = ref.pct_change()
        long["reference_growth"] = long[time].map(g_ref)
        pos = {p: i for i, p in enumerate(periods)}
        step = long[time].map(pos) - long["previous_period"].map(pos)
        gap = step.notna() & (step != 1)
        if gap.any():
            warnings.append(f"{int(gap.sum())} growth rate(s) left missing: the previous year is missing "
                            "for that unit")
            long.loc[gap, "growth"] = np.nan
        long["resilience"] = (long["growth"] - long["reference_growth"]) / long["reference_growth"].abs()
        long["phase"] = np.where(long[time] <= start, "pre",
                                 np.where(long[time] <= end, "resistance",
                                          np.where(long[time] <= rec_end, "recovery", "after")))
        long["note"] = np.where(gap, "previous period missing",
                                np.where(long["growth"].isna(), "first period or missing value", ""))
        table = long.rename(columns={time: "period"})[[unit, "period", value, "growth", "reference_growth",
                                                       "resilience", "phase", "note"]].reset_index(drop=True)
    n_note = int((table["note"] != "").sum())
    if n_note and method == "martin":
        warnings.append(f"{n_note} unit(s) without a value in a window period: measures left missing (see note)")
    return MeasureResult(table=table, shock=(start, end), shock_rule=rule, reference=ref, method=str(method),
                         warnings=warnings)


def multidimensional_index(
    frame: pd.DataFrame,
    dimensions: Mapping[str, Sequence[str | Mapping[str, Any]]],
    *,
    id: str,
    time: str | None = None,
    method: str = "entropy",
    missing: str = "error",
    **options: Any,
) -> Any:
    """Multi-dimensional resilience index with the economy module's index methods.

    Parameters
    ----------
    frame
        The panel.
    dimensions
        Dimension name -> indicators (a column name, or a spec mapping such as
        ``{"column": "so2", "direction": "negative"}``). The usual dimensions are :data:`DIMENSIONS`
        (resistance/recovery, adaptation/adjustment, innovation/transformation); others are allowed.
    id, time
        Unit and period columns.
    method
        Any of :data:`citytwin.economy.index.METHODS` (entropy, topsis, critic, pca, ...).
    missing
        The spec's missing-value policy (``error``, ``drop``, ``mean``, ``median``, ``interpolate``).
    options
        Passed to :func:`citytwin.economy.index.composite_index`.

    Returns
    -------
    citytwin.economy.index.IndexResult
        Scores (with ``dim:<name>`` contributions for additive methods) and weights.
    """
    from citytwin.economy.index import composite_index

    if not dimensions:
        raise InputError("no dimensions given for the resilience index")
    spec: dict[str, Any] = {"id": id, "missing": missing, "dimensions": [
        {"name": name, "indicators": [{"column": i} if isinstance(i, str) else dict(i) for i in inds]}
        for name, inds in dimensions.items()]}
    if time is not None:
        spec["time"] = time
    return composite_index(frame, spec, method, **options)
