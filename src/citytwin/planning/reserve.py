"""Strategic reserve land (E1, 战略留白): population forecasts, construction-land demand, the elastic
interval, the reserve per planning year, and zoning of reserve areas among candidate land.

No standard formula exists for the reserve ratio or the elastic interval (../shared/REFERENCES.md,
"E Planning"); the method used here is stated and every assumption is a parameter:

- population is forecast by a linear trend, a logistic curve and a grey GM(1,1) model
  (:func:`forecast_population`); the spread of the three gives the elastic interval;
- construction-land demand = population x per-capita construction land (m²/person, bounded by
  GB 50137-2011's ranges per climate zone, :data:`GB50137_PER_CAPITA`);
- the reserve is either given (an amount or a ratio of the planned construction land) or the elastic
  part of the demand (high minus central); ``ratio = reserve / planned total``; a reserve that may
  only grow never falls from one planning year to the next; it is not activatable before
  ``activation_year``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from citytwin.foundation.errors import InputError

#: GB 50137-2011 (城市用地分类与规划建设用地标准), table 4.2.1: the planned per-capita construction land
#: lies within 65.0–115.0 m²/person in climate zones I, II, VI, VII and 65.0–110.0 in III, IV, V.
GB50137_PER_CAPITA: dict[str, tuple[float, float]] = {
    "I": (65.0, 115.0), "II": (65.0, 115.0), "VI": (65.0, 115.0), "VII": (65.0, 115.0),
    "III": (65.0, 110.0), "IV": (65.0, 110.0), "V": (65.0, 110.0),
}
#: GB 50137-2011 §4.3: per-capita land of single classes (m²/person): residential R by climate zone group,
#: public administration and services A (at least), roads and transport S (at least), green and squares G
#: (at least, of which parks at least 8.0).
GB50137_CLASS_PER_CAPITA: dict[str, tuple[float, float | None]] = {
    "R_I_II_VI_VII": (28.0, 38.0), "R_III_IV_V": (23.0, 36.0), "A": (5.5, None), "S": (12.0, None),
    "G": (10.0, None),
}


@dataclass
class GreyModel:
    """A fitted GM(1,1): ``a`` (development coefficient), ``b`` (grey input), fitted values, posterior
    error ratio ``C`` and small-error probability ``P`` (Deng's accuracy checks)."""

    a: float
    b: float
    x0: np.ndarray
    fitted: np.ndarray
    C: float
    P: float

    def predict(self, k: np.ndarray) -> np.ndarray:
        """Restored values ``x̂(0)`` at 0-based positions ``k`` (0 is the first observation)."""
        k = np.asarray(k, dtype=float)
        c = self.x0[0] - self.b / self.a
        x1 = c * np.exp(-self.a * k) + self.b / self.a
        x1_prev = c * np.exp(-self.a * (k - 1)) + self.b / self.a
        return np.where(k == 0, self.x0[0], x1 - x1_prev)


def gm11(x0: Sequence[float] | np.ndarray) -> GreyModel:
    """Fit a grey GM(1,1) model (Deng 1982): 1-AGO, mean sequence ``z(k) = (x1(k) + x1(k-1)) / 2``,
    ``[a, b]`` by least squares of ``x0(k) + a z(k) = b``, time response
    ``x̂1(k+1) = (x0(1) - b/a) e^{-ak} + b/a``.

    Examples
    --------
    >>> m = gm11([2.874, 3.278, 3.337, 3.390, 3.679])
    >>> round(m.a, 4), round(m.b, 4)
    (-0.0372, 3.0654)
    """
    x = np.asarray(x0, dtype=float)
    if x.ndim != 1 or len(x) < 4:
        raise InputError("GM(1,1) needs at least 4 values", field="population")
    if not np.all(np.isfinite(x)) or (x <= 0).any():
        raise InputError("GM(1,1) needs positive finite values", field="population")
    x1 = np.cumsum(x)
    z = 0.5 * (x1[1:] + x1[:-1])
    B = np.column_stack([-z, np.ones(len(z))])
    (a, b), *_ = np.linalg.lstsq(B, x[1:], rcond=None)
    if a == 0:
        raise InputError("GM(1,1): development coefficient is 0 (a constant series)", field="population")
    m = GreyModel(a=float(a), b=float(b), x0=x, fitted=np.empty(0), C=np.nan, P=np.nan)
    m.fitted = m.predict(np.arange(len(x)))
    resid = x - m.fitted
    s1, s2 = x.std(), resid.std()
    m.C = float(s2 / s1) if s1 > 0 else np.nan
    m.P = float(np.mean(np.abs(resid - resid.mean()) < 0.6745 * s1))
    return m


def _logistic(t: np.ndarray, K: float, r: float, t0: float) -> np.ndarray:
    return K / (1.0 + np.exp(-r * (t - t0)))


def forecast_population(years: Sequence[int] | np.ndarray, population: Sequence[float] | np.ndarray,
                        target_years: Sequence[int] | np.ndarray, *,
                        capacity: float | None = None) -> pd.DataFrame:
    """Population of ``target_years`` by three methods: ``trend`` (OLS line), ``logistic`` (least squares,
    carrying capacity ``capacity`` if given, else fitted) and ``gm11`` (on consecutive annual data);
    ``low``, ``high``, ``central`` (their mean) and ``spread`` per year.
    """
    from scipy.optimize import curve_fit

    t = np.asarray(years, dtype=float)
    y = np.asarray(population, dtype=float)
    if len(t) != len(y) or len(t) < 4:
        raise InputError("population forecasts need at least 4 (year, population) pairs", field="population")
    order = np.argsort(t)
    t, y = t[order], y[order]
    if np.any(np.diff(t) != 1):
        raise InputError("population years must be consecutive (one value per year)", field="year")
    tt = np.asarray(target_years, dtype=float)
    slope, icpt = np.polyfit(t, y, 1)
    trend = icpt + slope * tt
    p0 = [capacity or y.max() * 1.5, 0.05, t.mean()]
    try:
        if capacity is not None:
            (r, t0), _ = curve_fit(lambda x, r, t0: _logistic(x, capacity, r, t0), t, y, p0=p0[1:], maxfev=20000)
            logi = _logistic(tt, capacity, r, t0)
        else:
            (K, r, t0), _ = curve_fit(_logistic, t, y, p0=p0, maxfev=20000,
                                      bounds=([y.max(), 0.0, t.min() - 500], [y.max() * 100, 5.0, t.max() + 500]))
            logi = _logistic(tt, K, r, t0)
    except RuntimeError as exc:
        raise InputError(f"the logistic curve does not fit the population series: {exc}", field="population",
                         hint="give --capacity, the carrying capacity") from exc
    g = gm11(y).predict(tt - t[0])
    out = pd.DataFrame({"year": tt.astype(int), "trend": trend, "logistic": logi, "gm11": g})
    m = out[["trend", "logistic", "gm11"]]
    out["low"], out["high"], out["central"] = m.min(axis=1), m.max(axis=1), m.mean(axis=1)
    out["spread"] = out["high"] - out["low"]
    return out


@dataclass
class ReserveParams:
    """Every assumption of the reserve method (printed with the result).

    Attributes
    ----------
    planned_total_km2
        Planned construction land (the base of the ratio).
    reserve_km2, reserve_ratio
        A given reserve (amount, or ratio of ``planned_total_km2``); if neither, the elastic part of
        the demand (high minus central) is reserved.
    per_capita_m2, climate_zone
        Per-capita construction land and the GB 50137-2011 climate zone its range is checked against.
    activation_year
        Reserve land is not activated before this year.
    may_only_grow
        The reserve may not fall from one planning year to the next.
    """

    planned_total_km2: float
    reserve_km2: float | None = None
    reserve_ratio: float | None = None
    per_capita_m2: float = 100.0
    climate_zone: str = "II"
    activation_year: int | None = None
    may_only_grow: bool = True
    notes: list[str] = field(default_factory=list)


def check_per_capita(per_capita_m2: float, climate_zone: str) -> list[str]:
    """Warnings when the per-capita land is outside GB 50137-2011's range for the zone."""
    if climate_zone not in GB50137_PER_CAPITA:
        raise InputError(f"unknown climate zone {climate_zone!r}", field="climate_zone",
                         hint=f"GB 50137-2011 zones: {', '.join(GB50137_PER_CAPITA)}")
    lo, hi = GB50137_PER_CAPITA[climate_zone]
    if not lo <= per_capita_m2 <= hi:
        return [f"per-capita construction land {per_capita_m2} m² is outside GB 50137-2011's "
                f"{lo}–{hi} m²/person for climate zone {climate_zone}"]
    return []


@dataclass
class ReserveResult:
    """The reserve per planning year (``table``) and the parameters and warnings behind it."""

    table: pd.DataFrame
    params: dict[str, Any]
    warnings: list[str]


def reserve_land(params: ReserveParams, forecast: pd.DataFrame | None = None,
                 years: Sequence[int] | None = None) -> ReserveResult:
    """Reserve amount, ratio and growth per planning year.

    ``forecast`` (from :func:`forecast_population`, population in persons) gives the demand columns
    ``demand_low/central/high_km2``; without it ``years`` lists the planning years and the reserve
    must be given.

    Examples
    --------
    Beijing 2020 (战略留白): 132 km² kept out of 2,760 km² of construction land, not activated before 2035.

    >>> r = reserve_land(ReserveParams(planned_total_km2=2760, reserve_km2=132, activation_year=2035),
    ...                  years=[2020, 2035])
    >>> r.table["ratio_pct"].round(2).tolist(), r.table["activatable"].tolist()
    ([4.78, 4.78], [False, True])
    """
    if not params.planned_total_km2 > 0:
        raise InputError("planned construction land must be > 0", field="planned_total_km2")
    if params.reserve_km2 is not None and params.reserve_ratio is not None:
        raise InputError("give the reserve as an amount or as a ratio, not both", field="reserve_km2")
    warnings = check_per_capita(params.per_capita_m2, params.climate_zone)
    if forecast is not None:
        t = forecast[["year"]].copy()
        for c in ("low", "central", "high"):
            t[f"population_{c}"] = forecast[c].to_numpy()
            t[f"demand_{c}_km2"] = forecast[c].to_numpy() * params.per_capita_m2 / 1e6
    elif years is not None:
        t = pd.DataFrame({"year": list(years)})
    else:
        raise InputError("give a population forecast or the planning years", field="years")
    if params.reserve_km2 is not None:
        reserve = np.full(len(t), float(params.reserve_km2))
        method = "given amount"
    elif params.reserve_ratio is not None:
        reserve = np.full(len(t), params.reserve_ratio * params.planned_total_km2)
        method = "given ratio"
    elif forecast is not None:
        reserve = (t["demand_high_km2"] - t["demand_central_km2"]).to_numpy()
        method = "elastic interval (high - central demand)"
    else:
        raise InputError("no reserve given and no forecast to derive it from", field="reserve_km2")
    if (reserve < 0).any():
        raise InputError("the reserve is negative", field="reserve_km2")
    if params.may_only_grow:
        reserve = np.maximum.accumulate(reserve)
    t["reserve_km2"] = reserve
    t["ratio_pct"] = 100.0 * reserve / params.planned_total_km2
    prev = np.r_[np.nan, reserve[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        t["growth_pct"] = 100.0 * (reserve - prev) / prev
    t["activatable"] = (t["year"] >= params.activation_year) if params.activation_year is not None else True
    p = asdict(params)
    p["method"] = method
    return ReserveResult(table=t.reset_index(drop=True), params=p, warnings=warnings)


@dataclass
class ZoningResult:
    """Reserve zones: ``zones`` (one row per contiguous zone: ``zone, area_m2, suitability, selected``),
    ``candidates`` (each candidate with its suitability, the area left after exclusions and its zone)."""

    zones: gpd.GeoDataFrame
    candidates: gpd.GeoDataFrame
    crs: str


def zone_reserve(candidates: gpd.GeoDataFrame, criteria: Mapping[str, tuple[float, str]], *,
                 exclude: gpd.GeoDataFrame | None = None, min_area_m2: float = 0.0,
                 target_m2: float | None = None) -> ZoningResult:
    """Zone reserve land among candidate parcels.

    Parameters
    ----------
    candidates
        Candidate land (polygons with the criteria columns).
    criteria
        ``{column: (weight, "benefit" | "cost")}``; suitability = sum of weight x min-max score.
    exclude
        Constraint polygons (ecological red lines, basic farmland): removed from the candidates.
    min_area_m2
        Minimum contiguous size of a zone (touching candidates form one zone).
    target_m2
        Select zones by mean suitability, best first, until this area is reached (default: all).
    """
    from citytwin.planning.overlay import check_layer, equal_area_crs, polygonal

    cand = check_layer("candidates", candidates)
    ea = equal_area_crs(cand)
    c = cand.to_crs(ea).reset_index(drop=True)
    score = np.zeros(len(c))
    wsum = sum(w for w, _ in criteria.values())
    if not criteria or wsum <= 0:
        raise InputError("give at least one criterion with a positive weight", field="criteria")
    for col, (w, direction) in criteria.items():
        if col not in c.columns:
            raise InputError(f"candidates have no column {col!r}", field=col)
        if direction not in ("benefit", "cost"):
            raise InputError(f"criterion {col!r}: direction must be benefit or cost", field=col)
        v = pd.to_numeric(c[col], errors="coerce").to_numpy(dtype=float)
        if np.isnan(v).any():
            raise InputError(f"criterion {col!r} has a missing value", row=int(np.flatnonzero(np.isnan(v))[0]) + 1,
                             field=col)
        rng = v.max() - v.min()
        z = (v - v.min()) / rng if rng > 0 else np.ones_like(v)
        score += (w / wsum) * (z if direction == "benefit" else 1 - z)
    geoms = np.asarray(c.geometry.values, dtype=object)
    if exclude is not None and len(exclude):
        ex = check_layer("exclude", exclude, check_overlaps=False).to_crs(ea)
        mask = shapely.union_all(np.asarray(ex.geometry.values, dtype=object))
        geoms = polygonal(shapely.difference(geoms, mask))
    c = c.set_geometry(gpd.GeoSeries(geoms, crs=ea))
    c["suitability"] = score
    c["area_m2"] = shapely.area(geoms)
    c = c[c["area_m2"] > 0].reset_index(drop=True)
    g = np.asarray(c.geometry.values, dtype=object)
    # contiguous zones: connected components of touching/intersecting candidates
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    i, j = shapely.STRtree(g).query(g, predicate="intersects")
    n_comp, labels = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(len(g), len(g))))
    c["zone"] = labels
    zones = c.dissolve(by="zone", aggfunc={"area_m2": "sum"}).reset_index()
    wmean = c.groupby("zone").apply(lambda d: np.average(d["suitability"], weights=d["area_m2"]),
                                    include_groups=False)
    zones["suitability"] = zones["zone"].map(wmean)
    zones = zones[zones["area_m2"] >= min_area_m2].sort_values("suitability", ascending=False)
    total = zones["area_m2"].cumsum()
    if target_m2 is None:
        zones["selected"] = True
    else:
        zones["selected"] = (total - zones["area_m2"]) < target_m2
    c["zone"] = np.where(c["zone"].isin(zones["zone"]), c["zone"], -1)
    del n_comp
    return ZoningResult(zones=zones.reset_index(drop=True).to_crs(4326), candidates=c.to_crs(4326),
                        crs=ea.srs)
