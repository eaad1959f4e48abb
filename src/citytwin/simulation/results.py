"""Run metrics from SUMO's trip records and differences between scenarios with confidence intervals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: the metrics of one run (keys of :func:`run_metrics`), with their units
METRICS: dict[str, str] = {
    "mean_travel_time_s": "s", "mean_delay_s": "s", "mean_waiting_time_s": "s", "mean_queue_veh": "veh",
    "throughput_veh_h": "veh/h", "vehicle_km": "km", "co2_kg": "kg", "nox_g": "g", "pmx_g": "g",
    "fuel_l": "l", "vehicles_inserted": "veh", "vehicles_arrived": "veh",
}


def run_metrics(trips: pd.DataFrame, *, inserted: int, sim_seconds: float,
                halting: pd.Series | None = None, emissions: Mapping[str, float] | None = None) -> dict[str, float]:
    """Metrics of one run from its trip records (one row per arrived vehicle).

    Parameters
    ----------
    trips
        Columns ``duration`` (s), ``timeLoss`` (s, delay against free flow), ``waitingTime`` (s),
        ``routeLength`` (m); without ``emissions`` also ``CO2_abs``, ``NOx_abs``, ``PMx_abs`` (mg) and
        ``fuel_abs`` (mg, SUMO >= 1.20 reports fuel in mg) per trip (SUMO's emission device).
    inserted
        Vehicles SUMO inserted.
    sim_seconds
        Simulated time, for the throughput.
    halting
        Halting vehicles at each step (SUMO's summary output): its mean is the mean queue.
    emissions
        Totals of the run in mg (``CO2_abs``, ``NOx_abs``, ``PMx_abs``, ``fuel_abs``: SUMO's emission edge
        data summed over all lanes, junctions included); when given, the emission metrics come from them
        (every vehicle's emissions while in the network) instead of the trip records (arrived vehicles).

    Examples
    --------
    >>> trips = pd.DataFrame({"duration": [60.0, 80.0], "timeLoss": [10.0, 30.0], "waitingTime": [0.0, 12.0],
    ...                       "routeLength": [500.0, 700.0]})
    >>> m = run_metrics(trips, inserted=2, sim_seconds=1800, emissions={"CO2_abs": 2.5e6, "fuel_abs": 7.45e5})
    >>> m["mean_travel_time_s"], m["throughput_veh_h"], m["vehicle_km"], m["co2_kg"], m["fuel_l"]
    (70.0, 4.0, 1.2, 2.5, 1.0)
    """
    n = len(trips)

    def mean(col: str) -> float:
        return float(trips[col].mean()) if n else float("nan")

    def total(col: str, scale: float) -> float:
        if emissions is not None and col != "routeLength":
            return float(emissions[col]) / scale if col in emissions else float("nan")
        return float(trips[col].sum()) / scale if col in trips else float("nan")

    return {
        "mean_travel_time_s": mean("duration"),
        "mean_delay_s": mean("timeLoss"),
        "mean_waiting_time_s": mean("waitingTime"),
        "mean_queue_veh": float(halting.mean()) if halting is not None and len(halting) else float("nan"),
        "throughput_veh_h": n / sim_seconds * 3600.0 if sim_seconds > 0 else float("nan"),
        "vehicle_km": total("routeLength", 1000.0),
        "co2_kg": total("CO2_abs", 1e6),
        "nox_g": total("NOx_abs", 1e3),
        "pmx_g": total("PMx_abs", 1e3),
        # petrol at 745 g/l (HBEFA's fuel density for gasoline); SUMO reports fuel mass
        "fuel_l": total("fuel_abs", 745e3),
        "vehicles_inserted": float(inserted),
        "vehicles_arrived": float(n),
    }


@dataclass(frozen=True)
class Difference:
    """Variant minus base of one metric over paired seeds, with a t confidence interval."""

    metric: str
    base: float
    variant: float
    diff: float
    ci_low: float
    ci_high: float
    n_seeds: int
    relative: float


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t interval of ``values`` (NaN interval for fewer than two values)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - half, m + half


def compare_runs(base: pd.DataFrame, variant: pd.DataFrame, *, level: float = 0.95,
                 metrics: Mapping[str, str] | None = None) -> list[Difference]:
    """Differences variant - base per metric, paired by ``seed`` where both ran the same seeds (else as
    two independent samples, Welch interval).

    Parameters
    ----------
    base, variant
        One row per run: ``seed`` and the metric columns.
    """
    out = []
    for m in (metrics or METRICS):
        if m not in base or m not in variant:
            continue
        b, v = base.set_index("seed")[m].astype(float), variant.set_index("seed")[m].astype(float)
        paired = sorted(set(b.index) & set(v.index))
        if paired and len(paired) == len(b) == len(v):
            d, lo, hi = mean_ci((v.loc[paired] - b.loc[paired]).to_numpy(), level)
        else:
            d = float(v.mean() - b.mean())
            se = float(np.sqrt(v.var(ddof=1) / len(v) + b.var(ddof=1) / len(b))) if min(len(v), len(b)) > 1 \
                else float("nan")
            half = float(stats.norm.ppf(0.5 + level / 2) * se)
            lo, hi = d - half, d + half
        bm = float(b.mean())
        out.append(Difference(metric=m, base=bm, variant=float(v.mean()), diff=d, ci_low=lo, ci_high=hi,
                              n_seeds=len(paired) or min(len(b), len(v)),
                              relative=d / bm if bm else float("nan")))
    return out


def differences_frame(diffs: list[Difference]) -> pd.DataFrame:
    """The differences as a frame (one row per metric)."""
    return pd.DataFrame([asdict(d) for d in diffs])
