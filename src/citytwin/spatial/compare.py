"""D2 flattening and D4 recentralization: compare two snapshots; innovation-district typing.

Two snapshots (two dates, or a plan against today) each give a :class:`CentersResult`. Centers are
matched by shared H3 cells: a center of the second snapshot sharing no cell with any center of the
first is **emerging**; one of the first with no successor has **declined**. The hierarchy change is
read from the indices: more centers, lower UCI, higher rank-size exponent (centers closer in size),
lower primacy and a higher share outside the main center all point to decentralization and
flattening.

Comparable snapshots only: both must be on the same H3 resolution and share grid cells (the same
study area, or overlapping ones); otherwise :func:`compare_snapshots` raises ``InputError``
(matching centers by cells, or differencing UCI over different areas, would mean nothing).

Findings (MISSION D1/D2/D4; one rule, documented here and in docs/spatial.md):

* ``recentralizing`` (D4, emerging vitality centers): at least one emerging center **and** the
  share of activity inside centers does not fall: activity gathers again, in new centers.
* ``decentralizing`` (D1, dispersal): not recentralizing, and the structure spreads: more centers,
  a lower UCI or a higher share outside the main center. The two are exclusive by construction:
  a lower UCI that comes with emerging centers holding more of the activity is recentralization
  into new centers, not dispersal.
* ``flattening`` (D2, the hierarchy compressing): ``True``/``False`` from the rank-size exponent
  (up) and primacy (down), using whichever is defined in both snapshots; ``"undetermined"`` when
  neither is (fewer than 3 centers for the exponent and fewer than 2 for primacy).

:func:`add_cluster` is the documented, reproducible transformation used to build a second snapshot
from real data (a planned new center): ``n`` POIs drawn with a fixed seed uniformly in a disc of
``radius_m`` around a point, with categories cycling through a given list.

Innovation-district typing (after Katz & Wagner 2014, Brookings): a center is

* ``anchor_plus`` when it holds at least ``min_anchors`` anchor institutions (POI categories
  ``university``, ``research``, ``hospital``);
* ``brownfield_renewal`` when at least ``min_brownfield_share`` of its land-use area is old
  industrial land (``landuse`` in industrial, railway, brownfield, port, depot, construction);
* ``urbanized_science_park`` when offices (and research) make at least ``min_office_share`` of its
  activity POIs and it has at least ``min_offices`` of them;
* ``none`` otherwise. The first matching rule gives ``district_type``; every matching rule is listed
  in ``district_types``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import Geod

from citytwin.foundation.errors import InputError
from citytwin.spatial.centers import CentersResult
from citytwin.spatial.geo import id_column, require_crs
from citytwin.spatial.grid import point_cells

ANCHORS: tuple[str, ...] = ("university", "research", "hospital")
BROWNFIELD_LANDUSE: tuple[str, ...] = ("industrial", "railway", "brownfield", "port", "depot", "construction")
SCIENCE_PARK: tuple[str, ...] = ("office", "research")


def add_cluster(pois: gpd.GeoDataFrame, lon: float, lat: float, n: int, *, radius_m: float = 100.0,
                categories: Sequence[str] = ("office", "restaurant", "shop", "grocery"), seed: int = 0,
                category_col: str = "category") -> gpd.GeoDataFrame:
    """``pois`` plus ``n`` synthetic POIs in a disc around (lon, lat): a reproducible new center.

    New rows get negative ids in the layer's id column (``osm_id``, or ``poi_id`` for catalog
    datasets; -1, -2, ... below any existing negative id; ``"synthetic:<k>"`` numbered on when the
    ids are strings), ``synthetic = True`` and categories cycling through ``categories``; the other columns are empty.

    Examples
    --------
    >>> base = gpd.GeoDataFrame({"osm_id": [1], "category": ["shop"]},
    ...                         geometry=gpd.points_from_xy([24.94], [60.17]), crs=4326)
    >>> out = add_cluster(base, 24.95, 60.175, 3, seed=1)
    >>> len(out), out["synthetic"].tolist(), out["category"].tolist()[1:]
    (4, [False, True, True, True], ['office', 'restaurant', 'shop'])
    """
    require_crs(pois, "pois")
    if n < 0 or radius_m < 0:
        raise InputError("n and radius_m must be non-negative", field="n/radius_m")
    rng = np.random.default_rng(seed)
    r = radius_m * np.sqrt(rng.random(n))
    az = rng.uniform(0, 360, n)
    lons, lats, _ = Geod(ellps="WGS84").fwd(np.full(n, lon), np.full(n, lat), az, r)
    idc = id_column(pois) or "osm_id"
    numeric = idc in pois.columns and pd.api.types.is_numeric_dtype(pois[idc])
    start = min(0, int(pois[idc].min())) if numeric and len(pois) else 0
    ids = np.arange(start - 1, start - 1 - n, -1, dtype=np.int64)
    if idc in pois.columns and not numeric:
        # string ids (catalog datasets): a prefix that cannot collide with OSM ids
        k = int(pois[idc].astype(str).str.startswith("synthetic:").sum())
        new_ids: Any = [f"synthetic:{k + i + 1}" for i in range(n)]
    else:
        new_ids = ids
    new = gpd.GeoDataFrame(
        {idc: new_ids, category_col: [categories[i % len(categories)] for i in range(n)], "synthetic": True},
        geometry=gpd.points_from_xy(lons, lats), crs=4326).to_crs(pois.crs)
    base = pois.copy()
    base["synthetic"] = base["synthetic"].fillna(False).astype(bool) if "synthetic" in base.columns else False
    return gpd.GeoDataFrame(pd.concat([base, new], ignore_index=True), crs=pois.crs)


@dataclass
class SnapshotComparison:
    """Outcome of :func:`compare_snapshots`.

    Attributes
    ----------
    centers
        Centers of both snapshots: ``snapshot`` (a/b), ``center_id``, ``status`` (persisting /
        emerging / declined), ``matched`` (ids in the other snapshot), activity, rank, level, geometry.
    indices
        One row per index: value in a, value in b, change.
    findings
        Counts and flags: ``new_centers``, ``lost_centers``, ``decentralizing``, ``recentralizing``
        (never both true), ``flattening`` (``True``, ``False`` or ``"undetermined"``), ``resolution``.
    """

    centers: gpd.GeoDataFrame
    indices: pd.DataFrame
    findings: dict[str, Any] = field(default_factory=dict)


def _cell_sets(res: CentersResult) -> dict[int, set[str]]:
    c = res.cells[res.cells["center_id"] > 0]
    return {int(k): set(v) for k, v in c.groupby("center_id")["cell"]}


def _resolution(res: CentersResult, name: str) -> int:
    import h3

    cells = res.cells["cell"] if "cell" in res.cells.columns else pd.Series([], dtype=object)
    if len(cells) == 0:
        raise InputError(f"snapshot {name} has no grid cells", field=name)
    r = {int(h3.get_resolution(c)) for c in cells.iloc[:1000]}
    if len(r) != 1:
        raise InputError(f"snapshot {name} mixes H3 resolutions {sorted(r)}", field=name)
    return r.pop()


def compare_snapshots(a: CentersResult, b: CentersResult) -> SnapshotComparison:
    """Compare the centers and polycentricity indices of snapshot ``a`` (before) and ``b`` (after).

    Raises ``InputError`` when the snapshots are on different H3 resolutions or share no grid cell
    (see the module docstring); the findings follow the module docstring's rule.
    """
    ra, rb = _resolution(a, "a"), _resolution(b, "b")
    if ra != rb:
        raise InputError(f"snapshots on different H3 resolutions ({ra} and {rb}): centers and indices are not "
                         "comparable", field="resolution", hint="find the centers of both at the same resolution")
    if not set(a.cells["cell"]) & set(b.cells["cell"]):
        raise InputError("the snapshots share no grid cell (different study areas): not comparable",
                         field="cells", hint="use the same study area (find_centers(..., area=...)) for both")
    sa, sb = _cell_sets(a), _cell_sets(b)
    rows = []
    for snap, res, own, other in (("a", a, sa, sb), ("b", b, sb, sa)):
        for _, c in res.centers.iterrows():
            cid = int(c["center_id"])
            matched = sorted(k for k, cells in other.items() if cells & own.get(cid, set()))
            status = "persisting" if matched else ("emerging" if snap == "b" else "declined")
            rows.append({"snapshot": snap, "center_id": cid, "status": status,
                         "matched": ",".join(map(str, matched)), "activity": float(c["activity"]),
                         "rank": int(c["rank"]), "level": int(c["level"]), "n_cells": int(c["n_cells"]),
                         "lon": float(c["lon"]), "lat": float(c["lat"]), "geometry": c.geometry})
    centers = (gpd.GeoDataFrame(rows, geometry="geometry", crs=4326) if rows else
               gpd.GeoDataFrame({"snapshot": pd.Series([], dtype=object)}, geometry=gpd.GeoSeries([], crs=4326)))
    keys = ["n_centers", "n_subcenters", "uci", "rank_size_exponent", "primacy", "share_outside_main",
            "share_in_centers", "total_activity"]
    ind = pd.DataFrame({"index": keys, "a": [a.indices.get(k) for k in keys], "b": [b.indices.get(k) for k in keys]})
    ind["change"] = pd.to_numeric(ind["b"], errors="coerce") - pd.to_numeric(ind["a"], errors="coerce")
    ch = ind.set_index("index")["change"]
    new = int(((centers["snapshot"] == "b") & (centers["status"] == "emerging")).sum()) if rows else 0
    lost = int(((centers["snapshot"] == "a") & (centers["status"] == "declined")).sum()) if rows else 0
    recentral = bool(new > 0 and not (ch["share_in_centers"] < 0))
    spreading = bool(ch["n_centers"] > 0 or ch["uci"] < 0 or ch["share_outside_main"] > 0)
    exp_ok, pri_ok = bool(np.isfinite(ch["rank_size_exponent"])), bool(np.isfinite(ch["primacy"]))
    flattening: bool | str = ("undetermined" if not (exp_ok or pri_ok) else
                              bool((exp_ok and ch["rank_size_exponent"] > 0) or (pri_ok and ch["primacy"] < 0)))
    findings = {
        "new_centers": new, "lost_centers": lost,
        "decentralizing": spreading and not recentral,
        "flattening": flattening,
        "recentralizing": recentral,
        "resolution": ra,
    }
    return SnapshotComparison(centers=centers, indices=ind, findings=findings)


def innovation_districts(centers: CentersResult, pois: gpd.GeoDataFrame, landuse: gpd.GeoDataFrame | None = None,
                         *, resolution: int | None = None, category_col: str = "category",
                         min_anchors: int = 1, min_brownfield_share: float = 0.2, min_office_share: float = 0.4,
                         min_offices: int = 10) -> gpd.GeoDataFrame:
    """Type every center as an innovation district candidate (see the module docstring).

    Parameters
    ----------
    centers
        Result of :func:`citytwin.spatial.centers.find_centers` (its cells carry the H3 resolution).
    pois
        Categorised POIs of the same snapshot.
    landuse
        Optional land-use polygons with a ``landuse`` (OSM) or ``land_use`` (catalog schema) column.

    Returns
    -------
    The centers with ``n_anchors``, ``brownfield_share``, ``office_share``, ``n_offices``,
    ``district_type`` and ``district_types``.
    """
    require_crs(pois, "pois")
    out = centers.centers.copy()
    if len(out) == 0:
        for c in ("n_anchors", "brownfield_share", "office_share", "n_offices"):
            out[c] = pd.Series([], dtype=float)
        out["district_type"] = pd.Series([], dtype=object)
        out["district_types"] = pd.Series([], dtype=object)
        return out
    cells = centers.cells
    res = resolution if resolution is not None else int(__import__("h3").get_resolution(cells["cell"].iloc[0]))
    cell_center = dict(zip(cells["cell"], cells["center_id"], strict=True))
    pc = pd.Series(point_cells(pois, res), index=pois.index).map(cell_center).fillna(-1).astype(int)
    cats = pois[category_col].astype(str)
    activity = ~cats.isin(["street_furniture", "other"])
    bshare = {}
    lu_col = next((c for c in ("landuse", "land_use") if landuse is not None and c in landuse.columns), None)
    if landuse is not None and len(landuse) and lu_col is not None:
        lu = landuse.rename(columns={lu_col: "landuse"}).to_crs(4326)
        lu = lu[lu.geometry.notna() & ~lu.geometry.is_empty]
        lu = lu.set_geometry(lu.geometry.make_valid())
        for _, c in out.iterrows():
            clip = lu[lu.intersects(c.geometry)]
            if len(clip) == 0:
                bshare[int(c["center_id"])] = 0.0
                continue
            proj = gpd.GeoDataFrame(clip[["landuse"]], geometry=clip.geometry.intersection(c.geometry), crs=4326)
            proj = proj.to_crs(proj.estimate_utm_crs())
            area = proj.geometry.area
            bshare[int(c["center_id"])] = float(area[proj["landuse"].isin(BROWNFIELD_LANDUSE)].sum()
                                                 / area.sum()) if area.sum() > 0 else 0.0
    rows = []
    for _, c in out.iterrows():
        cid = int(c["center_id"])
        inside = (pc == cid).to_numpy()
        n_anchor = int(cats[inside].isin(ANCHORS).sum())
        n_act = int((inside & activity.to_numpy()).sum())
        n_off = int(cats[inside].isin(SCIENCE_PARK).sum())
        osh = n_off / n_act if n_act else 0.0
        bs = bshare.get(cid, 0.0)
        types = []
        if n_anchor >= min_anchors:
            types.append("anchor_plus")
        if bs >= min_brownfield_share:
            types.append("brownfield_renewal")
        if osh >= min_office_share and n_off >= min_offices:
            types.append("urbanized_science_park")
        rows.append({"n_anchors": n_anchor, "brownfield_share": bs, "office_share": osh, "n_offices": n_off,
                     "district_type": types[0] if types else "none", "district_types": ",".join(types)})
    extra = pd.DataFrame(rows, index=out.index)
    return gpd.GeoDataFrame(pd.concat([out, extra], axis=1), geometry="geometry", crs=out.crs)
