"""Anomaly checks on sensor series: physical range, stuck sensor, spikes, disagreement with neighbours.

Every check takes long observations (``entity``, ``property``, ``time``, ``value``) and returns a
DataFrame of flags, one row per flagged observation:

``entity``, ``property``, ``time``, ``value``, ``check`` (``range`` / ``stuck`` / ``spike`` / ``step`` /
``neighbours``), ``score`` (how far out: robust z, run length …) and ``reason`` (a sentence).

Nothing is dropped or changed: flags are advice for quality control and alerting. Missing values
are never flagged (they are missing, not anomalous) and never bridge a run or a difference.

Robust z-scores use the median and the MAD scaled by 1.4826 (consistent with the standard deviation
for normal data); when the MAD is 0 (more than half of the differences equal) the mean absolute
deviation times 1.2533 is used instead, and when that is 0 too nothing is flagged.

Examples
--------
>>> import pandas as pd
>>> t = pd.date_range("2024-01-01", periods=8, freq="h")
>>> obs = pd.DataFrame({"entity": "s1", "property": "pm25", "time": t,
...                     "value": [10, 12, 11, 400, 12, 13, 12, -3]})
>>> physical_range(obs)[["time", "reason"]].to_dict("records")[0]["reason"]
'pm25 -3 below the physical minimum 0'
>>> spikes(obs, threshold=5)["time"].dt.hour.tolist()
[3]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError

FLAG_COLUMNS = ["entity", "property", "time", "value", "check", "score", "reason"]

#: Plausible physical ranges (inclusive) for common properties, µg/m³ except CO in mg/m³. Upper
#: bounds are generous instrument limits, not pollution limits (Beijing hourly PM2.5 reached ~1,000).
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "pm25": (0.0, 2000.0),
    "pm10": (0.0, 3000.0),
    "so2": (0.0, 3000.0),
    "no2": (0.0, 2000.0),
    "co": (0.0, 100.0),
    "o3": (0.0, 1500.0),
    "aqi": (0.0, 500.0),
    "temperature": (-60.0, 60.0),
    "relativeHumidity": (0.0, 100.0),
    "speed": (0.0, 200.0),
    "flow": (0.0, float("inf")),
    "intensity": (0.0, float("inf")),
}
_MAD_K = 1.4826
_MEANAD_K = 1.2533


def _long(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("entity", "property", "time", "value") if c not in df.columns]
    if missing:
        raise InputError(f"observation frame lacks column(s) {', '.join(missing)}", field=missing[0],
                         hint="columns: entity, property, time, value")
    value = pd.to_numeric(df["value"], errors="coerce").astype(float)
    bad = value.isna() & df["value"].notna()
    if bad.any():
        raise InputError(f"non-numeric value {df['value'][bad].iloc[0]!r}", field="value")
    out = pd.DataFrame({"entity": df["entity"].to_numpy(), "property": df["property"].to_numpy(),
                        "time": pd.to_datetime(df["time"]).to_numpy(), "value": value.to_numpy()})
    return out.sort_values(["entity", "property", "time"], kind="stable").reset_index(drop=True)


def _flags(rows: pd.DataFrame, check: str, score: np.ndarray | pd.Series, reason: pd.Series | list[str]
           ) -> pd.DataFrame:
    out = rows[["entity", "property", "time", "value"]].copy()
    out["check"] = check
    out["score"] = np.asarray(score, dtype=float)
    out["reason"] = list(reason)
    return out.reset_index(drop=True)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("value", "score") else "object")
                         for c in FLAG_COLUMNS})


def physical_range(df: pd.DataFrame, ranges: Mapping[str, tuple[float, float]] | None = None
                   ) -> pd.DataFrame:
    """Flag values outside a property's plausible range.

    Parameters
    ----------
    ranges
        ``{property: (min, max)}``; defaults to :data:`DEFAULT_RANGES`. Properties without a range
        are not checked.
    """
    obs = _long(df)
    rng = dict(DEFAULT_RANGES if ranges is None else ranges)
    lo = obs["property"].map({k: v[0] for k, v in rng.items()}).astype(float)
    hi = obs["property"].map({k: v[1] for k, v in rng.items()}).astype(float)
    below = obs["value"] < lo
    above = obs["value"] > hi
    sel = (below | above).to_numpy()
    if not sel.any():
        return _empty()
    rows = obs[sel]
    reason = [
        f"{p} {v:g} below the physical minimum {a:g}" if v < a else f"{p} {v:g} above the physical maximum {b:g}"
        for p, v, a, b in zip(rows["property"], rows["value"], lo[sel], hi[sel], strict=True)
    ]
    score = np.where(rows["value"] < lo[sel], lo[sel] - rows["value"], rows["value"] - hi[sel])
    return _flags(rows, "range", score, reason)


def stuck(df: pd.DataFrame, *, min_steps: int = 6, tolerance: float = 0.0,
          ignore_values: Sequence[float] = ()) -> pd.DataFrame:
    """Flag runs of the same value for ``min_steps`` or more consecutive observations.

    Parameters
    ----------
    min_steps
        Shortest run that counts as stuck (a run of 6 equal hourly readings by default).
    tolerance
        Values within ``tolerance`` of the run's first value count as equal.
    ignore_values
        Values that may legitimately repeat (0 vehicles at night, 0 mm of rain).

    Every observation of a stuck run is flagged; ``score`` is the run length. A missing value ends a
    run.

    Examples
    --------
    >>> import pandas as pd
    >>> obs = pd.DataFrame({"entity": "s", "property": "o3", "value": [5, 7, 7, 7, 7, 8],
    ...                     "time": pd.date_range("2024-01-01", periods=6, freq="h")})
    >>> stuck(obs, min_steps=4)["score"].tolist()
    [4.0, 4.0, 4.0, 4.0]
    """
    if min_steps < 2:
        raise InputError("min_steps must be >= 2", field="min_steps")
    obs = _long(df)
    v = obs["value"].to_numpy()
    grp = (obs["entity"].astype(str) + "\x00" + obs["property"].astype(str)).to_numpy()
    same = np.zeros(len(obs), dtype=bool)
    same[1:] = (grp[1:] == grp[:-1]) & (np.abs(v[1:] - v[:-1]) <= tolerance) & ~np.isnan(v[1:]) & ~np.isnan(v[:-1])
    run = np.cumsum(~same)
    length = pd.Series(run).map(pd.Series(run).value_counts()).to_numpy()
    sel = (length >= min_steps) & ~np.isnan(v)
    if len(ignore_values):
        sel &= ~np.isin(v, np.asarray(ignore_values, dtype=float))
    if not sel.any():
        return _empty()
    rows = obs[sel]
    start = obs.groupby(run)["time"].transform("min")[sel]
    reason = [f"{p} stuck at {val:g} for {n} readings since {s}" for p, val, n, s in
              zip(rows["property"], rows["value"], length[sel], start, strict=True)]
    return _flags(rows, "stuck", length[sel], reason)


def _robust_scale(x: pd.Series) -> float:
    x = x.dropna()
    if x.empty:
        return float("nan")
    med = float(x.median())
    mad = float((x - med).abs().median()) * _MAD_K
    if mad > 0:
        return mad
    meanad = float((x - x.mean()).abs().mean()) * _MEANAD_K
    return meanad if meanad > 0 else float("nan")


def spikes(df: pd.DataFrame, *, threshold: float = 6.0, window: int | None = None,
           min_abs: float = 0.0) -> pd.DataFrame:
    """Flag spikes and step changes from robust z-scores of first differences.

    The differences ``d_t = x_t − x_{t−1}`` of each entity's series (consecutive observations;
    a missing value gives no difference) are scaled by their median and MAD, over the whole series or
    a centred rolling ``window`` of differences. A point whose jump in (``d_t``) and jump out
    (``d_{t+1}``) both exceed ``threshold`` with opposite signs is a ``spike``; a single large jump is a
    ``step`` (level shift, e.g. recalibration). Jumps smaller than ``min_abs`` are never flagged.
    ``score`` is the robust z of the jump in.
    """
    if threshold <= 0:
        raise InputError("threshold must be positive", field="threshold")
    obs = _long(df)
    key = [obs["entity"], obs["property"]]
    d = obs.groupby(key, sort=False)["value"].diff()
    if window is None:
        med = d.groupby(key, sort=False).transform("median")
        scale = d.groupby(key, sort=False).transform(_robust_scale)
    else:
        if window < 5:
            raise InputError("window must be >= 5 differences", field="window")
        roll = d.groupby(key, sort=False).rolling(window, center=True, min_periods=max(5, window // 4))
        med = roll.median().reset_index(level=[0, 1], drop=True).sort_index()
        mad = (d - med).abs().groupby(key, sort=False).rolling(window, center=True,
                                                               min_periods=max(5, window // 4))
        scale = mad.median().reset_index(level=[0, 1], drop=True).sort_index() * _MAD_K
        scale = scale.where(scale > 0)
    z = ((d - med) / scale).to_numpy()
    big = (np.abs(z) > threshold) & (np.abs(d.to_numpy()) >= min_abs)
    nxt_same = np.r_[(obs["entity"].to_numpy()[1:] == obs["entity"].to_numpy()[:-1])
                     & (obs["property"].to_numpy()[1:] == obs["property"].to_numpy()[:-1]), False]
    big_next = np.r_[big[1:], False] & nxt_same
    z_next = np.r_[z[1:], np.nan]
    spike = big & big_next & (np.sign(z) != np.sign(z_next))
    # the jump back out of a spike is not a step of its own
    back = np.r_[False, spike[:-1]]
    step = big & ~spike & ~back
    out = []
    if spike.any():
        r = obs[spike]
        dv = d.to_numpy()[spike]
        out.append(_flags(r, "spike", z[spike], [
            f"{p} spike to {v:g} (jump {j:+g}, robust z {s:+.1f}, then back)"
            for p, v, j, s in zip(r["property"], r["value"], dv, z[spike], strict=True)]))
    if step.any():
        r = obs[step]
        dv = d.to_numpy()[step]
        out.append(_flags(r, "step", z[step], [
            f"{p} level shift to {v:g} (jump {j:+g}, robust z {s:+.1f})"
            for p, v, j, s in zip(r["property"], r["value"], dv, z[step], strict=True)]))
    if not out:
        return _empty()
    return pd.concat(out, ignore_index=True).sort_values(["entity", "property", "time"], ignore_index=True)


def neighbours_from_distance(distance: pd.DataFrame, max_distance: float) -> dict[str, list[str]]:
    """Adjacency from a square distance matrix (labels = entities): pairs closer than ``max_distance``.

    Zero off-diagonal entries are read as "no link" (the usual encoding of sparse distance matrices).

    Examples
    --------
    >>> import pandas as pd
    >>> m = pd.DataFrame([[0, 1.0, 5.0], [1.0, 0, 0], [5.0, 0, 0]], index=list("abc"), columns=list("abc"))
    >>> neighbours_from_distance(m, 2.0)
    {'a': ['b'], 'b': ['a'], 'c': []}
    """
    if distance.shape[0] != distance.shape[1]:
        raise InputError("distance matrix must be square", field="distance")
    vals = distance.to_numpy(dtype=float)
    link = (vals > 0) & (vals <= max_distance)
    labels = [str(x) for x in distance.index]
    cols = [str(x) for x in distance.columns]
    return {labels[i]: [cols[j] for j in np.flatnonzero(link[i]) if j != i] for i in range(len(labels))}


def neighbour_disagreement(df: pd.DataFrame, adjacency: Mapping[str, Sequence[str]], *,
                           threshold: float = 5.0, min_neighbours: int = 2, min_abs: float = 0.0,
                           relative: float = 0.0) -> pd.DataFrame:
    """Flag values that disagree with the median of their neighbours at the same time.

    For each entity, property and time, ``r = x − median(neighbours' x)`` over neighbours with a value
    at that time (at least ``min_neighbours``). ``r`` is scaled robustly per entity and property; a
    value is flagged when ``|r|/scale > threshold``, ``|r| >= min_abs`` and ``|r| >= relative ·
    |median|``. Neighbours are given as an adjacency dict (``{entity: [neighbour, …]}``, see
    :func:`neighbours_from_distance`). Times are matched exactly: resample first if sensors report
    at different instants.
    """
    obs = _long(df)
    obs["entity"] = obs["entity"].astype(str)
    adj = {str(k): [str(x) for x in v] for k, v in adjacency.items()}
    unknown = sorted(set(adj) - set(obs["entity"]))
    if len(unknown) == len(adj):
        raise InputError("no entity of the adjacency occurs in the observations", field="adjacency")
    pairs = pd.DataFrame([(e, n) for e, ns in adj.items() for n in ns if n != e],
                         columns=["entity", "neighbour"])
    if pairs.empty:
        return _empty()
    nb = obs.rename(columns={"entity": "neighbour", "value": "nv"})[["neighbour", "property", "time", "nv"]]
    j = obs.merge(pairs, on="entity").merge(nb, on=["neighbour", "property", "time"])
    j = j.dropna(subset=["nv"])
    agg = j.groupby(["entity", "property", "time"]).agg(nmed=("nv", "median"), n=("nv", "size"))
    x = obs.set_index(["entity", "property", "time"]).join(agg, how="inner")
    x = x[(x["n"] >= min_neighbours) & x["value"].notna()].reset_index()
    if x.empty:
        return _empty()
    x["r"] = x["value"] - x["nmed"]
    scale = x.groupby(["entity", "property"])["r"].transform(_robust_scale)
    center = x.groupby(["entity", "property"])["r"].transform("median")
    # Scale only: a station that always reads a bit higher than its neighbours is a bias, not a fault
    # of the moment; the centre is removed so that its bias is not flagged every hour.
    x["z"] = (x["r"] - center) / scale
    sel = ((x["z"].abs() > threshold) & (x["r"].abs() >= min_abs)
           & (x["r"].abs() >= relative * x["nmed"].abs())).to_numpy()
    if not sel.any():
        return _empty()
    rows = x[sel]
    reason = [f"{p} {v:g} vs neighbours' median {m:g} ({int(n)} neighbours, robust z {z:+.1f})"
              for p, v, m, n, z in zip(rows["property"], rows["value"], rows["nmed"], rows["n"], rows["z"],
                                       strict=True)]
    return _flags(rows, "neighbours", rows["z"], reason)


def detect(df: pd.DataFrame, *, ranges: Mapping[str, tuple[float, float]] | None = None,
           stuck_steps: int = 6, stuck_ignore: Sequence[float] = (), spike_threshold: float = 6.0,
           adjacency: Mapping[str, Sequence[str]] | None = None, neighbour_threshold: float = 5.0
           ) -> pd.DataFrame:
    """Run all checks (neighbours only when ``adjacency`` is given) and concatenate their flags.

    Values outside the physical range are left out of the other checks (they would distort them).
    """
    obs = _long(df)
    parts = [physical_range(obs, ranges)]
    if not parts[0].empty:
        bad = parts[0].set_index(["entity", "property", "time"]).index
        keep = ~obs.set_index(["entity", "property", "time"]).index.isin(bad)
        obs = obs[keep]
    parts.append(stuck(obs, min_steps=stuck_steps, ignore_values=stuck_ignore))
    parts.append(spikes(obs, threshold=spike_threshold))
    if adjacency is not None:
        parts.append(neighbour_disagreement(obs, adjacency, threshold=neighbour_threshold))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    return pd.concat(parts, ignore_index=True).sort_values(["entity", "property", "time", "check"],
                                                           ignore_index=True)
