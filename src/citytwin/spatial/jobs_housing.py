"""D6 job-housing balance and commuting indicators from buildings / POIs (documented proxies).

Where no employment or commuting survey exists, jobs and homes are estimated from OSM:

* **homes** = residential floor area / ``m2_per_home`` (75 m2); floor area = footprint x levels
  (``building:levels``, default ``default_levels`` = 4 in a city center); untyped buildings
  (``use == "unknown"``) count with ``unknown_residential_share`` (0.5) of their floor area as
  homes and the rest as workplace floor area;
* **jobs** = non-residential floor area / ``m2_per_job`` (30 m2, an office-density rule of thumb),
  plus ``jobs_per_poi`` for every job POI (office, shop, restaurant, hotel, public service,
  university, research, hospital, clinic, school) that lies outside any building with floor area.

Per H3 cell: ``jobs``, ``homes``, ``jhr`` (jobs / homes; NaN without homes) and the balance
``1 - |J - H| / (J + H)`` (1 = balanced). Citywide: the dissimilarity index
``D = 1/2 sum |j_i/J - h_i/H|`` (share of jobs that would have to move to match homes), the
mean commute under random assignment ``T_rand = sum h_i j_k d_ik / (H J)`` and the minimum
possible mean commute ``T_min`` (Hamilton's excess-commuting benchmark: a transportation problem
solved by linear programming on cell-centre distances, totals scaled to the same sum). Observed
flows, when a commuting matrix exists, can be compared against both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.optimize import linprog
from scipy.spatial.distance import cdist

from citytwin.foundation.errors import InputError
from citytwin.spatial.geo import InputReport, id_column, require_crs, valid_geometries, with_use
from citytwin.spatial.grid import cell_xy, cells_frame, point_cells

JOB_CATEGORIES: tuple[str, ...] = ("office", "shop", "restaurant", "hotel", "public_service", "university",
                                   "research", "hospital", "clinic", "school", "culture", "grocery", "pharmacy")


@dataclass
class JobsHousingResult:
    """Per-cell balance (``cells``) and citywide indicators (``indices``)."""

    cells: gpd.GeoDataFrame
    indices: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def min_commute(homes: np.ndarray, jobs: np.ndarray, dist: np.ndarray) -> float:
    """Minimum mean commute: assign homes to jobs (totals equalised) minimising total distance.

    Examples
    --------
    >>> d = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> min_commute(np.array([1.0, 1.0]), np.array([2.0, 0.0]), d)
    0.5
    """
    h = np.asarray(homes, dtype=float)
    j = np.asarray(jobs, dtype=float)
    if h.sum() <= 0 or j.sum() <= 0:
        return float("nan")
    j = j * h.sum() / j.sum()
    n, m = len(h), len(j)
    a_eq = np.zeros((n + m, n * m))
    for i in range(n):
        a_eq[i, i * m:(i + 1) * m] = 1
    for k in range(m):
        a_eq[n + k, k::m] = 1
    res = linprog(dist.ravel(), A_eq=a_eq, b_eq=np.concatenate([h, j]), bounds=(0, None), method="highs")
    if not res.success:
        return float("nan")
    return float(res.fun / h.sum())


def jobs_housing(buildings: gpd.GeoDataFrame, pois: gpd.GeoDataFrame | None = None, *, resolution: int = 9,
                 m2_per_home: float = 75.0, m2_per_job: float = 30.0, default_levels: float = 4.0,
                 unknown_residential_share: float = 0.5, jobs_per_poi: float = 1.0,
                 category_col: str = "category", max_cells_lp: int = 400) -> JobsHousingResult:
    """Job-housing balance per H3 cell and citywide commuting benchmarks (see the module docstring).

    Parameters
    ----------
    buildings
        Footprints with ``use`` (residential / nonresidential / unknown; derived from ``building``
        when absent) and optional ``building:levels`` (or ``levels``, the catalog schema's name).
    pois
        Optional categorised POIs (jobs outside building footprints).
    max_cells_lp
        Skip ``T_min`` (NaN, reported) above this many cells (the LP grows with cells squared).
    """
    report = InputReport()
    require_crs(buildings, "buildings")
    buildings = with_use(buildings)
    b = valid_geometries(buildings, id_column(buildings), "buildings", report)
    if len(b) == 0:
        raise InputError("no buildings with geometry in the area (empty area)", field="buildings")
    bm = b.to_crs(b.estimate_utm_crs())
    area = bm.geometry.area.to_numpy()
    lcol = next((c for c in ("building:levels", "levels") if c in b.columns), None)
    lv = pd.to_numeric(b[lcol], errors="coerce") if lcol else pd.Series(np.nan, index=b.index)
    n_default = int(lv.isna().sum())
    if n_default:
        report.note(f"{n_default} building(s) without building:levels: {default_levels} assumed")
    floor = area * lv.fillna(default_levels).clip(lower=1).to_numpy()
    use = b["use"].to_numpy()
    res_share = np.where(use == "residential", 1.0, np.where(use == "unknown", unknown_residential_share, 0.0))
    homes = floor * res_share / m2_per_home
    jobs = floor * (1 - res_share) / m2_per_job
    cells = point_cells(b, resolution)
    df = pd.DataFrame({"cell": cells, "homes": homes, "jobs": jobs}).groupby("cell").sum()
    n_poi_jobs = 0
    if pois is not None and len(pois):
        require_crs(pois, "pois")
        p = valid_geometries(pois, id_column(pois), "pois", report)
        p = p[p[category_col].isin(JOB_CATEGORIES)] if category_col in p.columns else p.iloc[0:0]
        if len(p):
            pts = p.to_crs(4326)
            pts = gpd.GeoDataFrame(geometry=pts.geometry.representative_point(), crs=4326)
            inside = gpd.sjoin(pts, b.to_crs(4326)[["geometry"]], how="left", predicate="within")
            outside = ~inside.groupby(level=0)["index_right"].apply(lambda s: s.notna().any())
            po = pts[outside.reindex(pts.index).fillna(True).to_numpy()]
            n_poi_jobs = len(po)
            pj = pd.Series(jobs_per_poi, index=point_cells(po, resolution)).groupby(level=0).sum()
            df = df.reindex(df.index.union(pj.index)).fillna(0.0)
            df["jobs"] += pj.reindex(df.index).fillna(0.0)
    df["jhr"] = np.where(df["homes"] > 0, df["jobs"] / df["homes"].where(df["homes"] > 0), np.nan)
    tot = df["jobs"] + df["homes"]
    df["balance"] = np.where(tot > 0, 1 - (df["jobs"] - df["homes"]).abs() / tot.where(tot > 0), np.nan)
    out = cells_frame(df.index, df)
    J, H = float(df["jobs"].sum()), float(df["homes"].sum())
    ind: dict[str, Any] = {"jobs": J, "homes": H, "jhr": J / H if H > 0 else float("nan")}
    if J > 0 and H > 0:
        ind["dissimilarity"] = float(0.5 * np.abs(df["jobs"] / J - df["homes"] / H).sum())
        xy = cell_xy(list(df.index))
        lat0 = np.radians(xy[:, 1].mean())
        km = np.column_stack([xy[:, 0] * 111.320 * np.cos(lat0), xy[:, 1] * 110.574])
        d = cdist(km, km)
        # within-cell trips: mean distance between two random points of a hexagon ~ 0.5 x edge length
        import h3

        edge = np.array([h3.average_hexagon_edge_length(resolution, unit="km")] * len(df))
        d = d + np.diag(0.5 * edge)
        h, j = df["homes"].to_numpy(), df["jobs"].to_numpy()
        ind["t_random_km"] = float(h @ d @ j / (H * J))
        if len(df) <= max_cells_lp:
            ind["t_min_km"] = min_commute(h, j, d)
        else:
            ind["t_min_km"] = float("nan")
            report.note(f"t_min skipped: {len(df)} cells > max_cells_lp={max_cells_lp}")
    rep = report.as_dict()
    rep.update({"m2_per_home": m2_per_home, "m2_per_job": m2_per_job, "default_levels": default_levels,
                "unknown_residential_share": unknown_residential_share, "jobs_per_poi": jobs_per_poi,
                "poi_jobs_outside_buildings": n_poi_jobs, "resolution": resolution})
    return JobsHousingResult(cells=out, indices=ind, report=rep)
