"""Land-change monitoring (E5): compare two land-use snapshots.

The two snapshots are intersected feature by feature (in the first snapshot's CRS) and measured in an
equal-area CRS (:func:`citytwin.planning.overlay.equal_area_crs`); each piece carries its class before and after.
Land covered by only one snapshot is kept with the class ``"(none)"`` on the other side, so the
transition matrix sums to the area of the union of both snapshots. Annual rates per class are the
single land-use dynamic degree ``K = (after - before) / before / years`` (the usual 土地利用动态度) and
the compound rate ``(after / before) ** (1 / years) - 1``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from citytwin.foundation.errors import InputError
from citytwin.planning.overlay import (
    SELF_OVERLAP_TOLERANCE,
    ConflictResult,
    Rule,
    check_layer,
    ea_areas,
    equal_area_crs,
    find_conflicts,
    intersect_pairs,
    polygonal,
    subtract_all,
)

NONE_CLASS = "(none)"


@dataclass
class ChangeResult:
    """Land change between two snapshots.

    Attributes
    ----------
    pieces
        Every piece of the overlay: ``from_class, to_class, before_feature, after_feature, area_m2,
        changed, geometry`` (WGS84).
    changes
        The changed pieces only (``from_class != to_class``).
    matrix
        Transition matrix of areas in m² (rows: from, columns: to); sums to the union's area.
    rates
        Per class: ``area_before_m2, area_after_m2, change_m2, dynamic_degree, annual_rate``.
    crs
        The equal-area CRS of the areas.
    years
        Years between the snapshots.
    warnings
        What the result should be read with (overlaps within a snapshot accepted by ``overlap_tolerance``).
    """

    pieces: gpd.GeoDataFrame
    changes: gpd.GeoDataFrame
    matrix: pd.DataFrame
    rates: pd.DataFrame
    crs: str
    years: float
    warnings: list[str] = field(default_factory=list)


def _classes(frame: gpd.GeoDataFrame, column: str, name: str, known: Collection[str] | None) -> np.ndarray:
    if column not in frame.columns:
        raise InputError(f"snapshot {name!r} has no class column {column!r}", file=name, field=column)
    values = frame[column]
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0]) + 1
        raise InputError("land-use class is missing", file=name, row=row, field=column)
    cls = values.astype(str).to_numpy()
    if known is not None:
        bad = np.flatnonzero(~np.isin(cls, list(known)))
        if len(bad):
            raise InputError(f"unknown land-use class {cls[bad[0]]!r} ({len(bad)} feature(s))", file=name,
                             row=int(bad[0]) + 1, field=column,
                             hint=f"known classes: {', '.join(sorted(known))}")
    return cls


def land_change(before: gpd.GeoDataFrame, after: gpd.GeoDataFrame, *, column: str = "landuse",
                years: float = 1.0, classes: Collection[str] | None = None, crs: CRS | None = None,
                after_column: str | None = None, names: tuple[str, str] = ("before", "after"),
                overlap_tolerance: float = SELF_OVERLAP_TOLERANCE) -> ChangeResult:
    """Change pieces, the transition matrix and annual rates between two land-use snapshots.

    Parameters
    ----------
    before, after
        Land-use polygons (no overlaps within a snapshot; any CRS).
    column, after_column
        The class column (``after_column`` defaults to ``column``).
    years
        Years between the snapshots (> 0).
    classes
        The allowed class codes; an unknown class is an error naming the row.
    overlap_tolerance
        Overlaps within a snapshot accepted up to this share of the smaller polygon
        (:func:`citytwin.planning.overlay.check_layer`); land in such an overlap is counted once per
        feature, so the matrix then sums to more than the union's area (``warnings`` says by how many pairs).
    """
    if not years > 0:
        raise InputError(f"years between snapshots must be > 0, got {years}", field="years")
    b = check_layer(names[0], before, overlap_tolerance=overlap_tolerance)
    a = check_layer(names[1], after, overlap_tolerance=overlap_tolerance)
    warnings = [f"snapshot {nm!r}: {int(f.attrs['accepted_overlaps'])} pair(s) of its features overlap (up to "
                f"{float(f.attrs['largest_overlap_share']):.3g} of the smaller one; accepted by the overlap "
                "tolerance): that land is counted once per feature, so the matrix sums to more than the union"
                for nm, f in ((names[0], b), (names[1], a)) if f.attrs.get("accepted_overlaps")]
    cb = _classes(b, column, names[0], classes)
    ca = _classes(a, after_column or column, names[1], classes)
    ea = crs or equal_area_crs(b, a)
    work = b.crs  # cut in the first snapshot's CRS, measure in the equal-area one
    gb = np.asarray(b.geometry.values, dtype=object)
    ga = np.asarray(a.to_crs(work).geometry.values, dtype=object)
    ii, jj = shapely.STRtree(ga).query(gb, predicate="intersects")
    inter = intersect_pairs(gb, ga, ii, jj)
    frames = [pd.DataFrame({"from_class": cb[ii], "to_class": ca[jj], "before_feature": ii,
                            "after_feature": jj, "geometry": inter})]
    inter_area = shapely.area(inter)
    for geoms, cls, idx_hit, side in ((gb, cb, ii, "before"), (ga, ca, jj, "after")):
        other_idx = jj if side == "before" else ii
        other = ga if side == "before" else gb
        # a feature whose intersection pieces cover its area (the other snapshot's features do not overlap)
        # leaves nothing: only the others are cut (GEOS difference)
        own = shapely.area(geoms)
        covered = np.bincount(idx_hit, weights=inter_area, minlength=len(geoms))
        other_overlaps = (a if side == "before" else b).attrs.get("accepted_overlaps")
        cut = (np.flatnonzero(own - covered > SELF_OVERLAP_TOLERANCE * own) if not other_overlaps
               else np.arange(len(geoms)))  # with overlaps in the other snapshot, areas cannot decide
        left = np.empty(len(geoms), dtype=object)
        left[:] = shapely.Polygon()
        if len(cut):
            pos = np.full(len(geoms), -1)
            pos[cut] = np.arange(len(cut))
            sel = pos[idx_hit] >= 0
            left[cut] = polygonal(subtract_all(geoms[cut], pos[idx_hit[sel]], other_idx[sel], other))
        n = np.arange(len(geoms))
        frames.append(pd.DataFrame({
            "from_class": cls if side == "before" else NONE_CLASS,
            "to_class": NONE_CLASS if side == "before" else cls,
            "before_feature": n if side == "before" else -1,
            "after_feature": -1 if side == "before" else n, "geometry": left}))
    pieces = pd.concat(frames, ignore_index=True)
    pieces["area_m2"] = ea_areas(np.asarray(pieces["geometry"].to_numpy(), dtype=object), work, ea)
    return finish_change(pieces, work, ea, years, warnings)


def finish_change(pieces: pd.DataFrame, work: Any, ea: CRS, years: float,
                  warnings: list[str] | None = None) -> ChangeResult:
    """The result of :func:`land_change` from its measured pieces (``area_m2`` in CRS ``ea``, geometry in
    ``work``): pieces of no area dropped, the transition matrix, the rates per class (dynamic degree and
    annual rate over ``years``). Shared by the single-process and the Dask (stripes) runs."""
    pieces = pieces[pieces["area_m2"] > 0].reset_index(drop=True)
    pieces["changed"] = pieces["from_class"] != pieces["to_class"]
    gdf = gpd.GeoDataFrame(pieces, geometry="geometry", crs=work)
    gdf = gdf[["from_class", "to_class", "before_feature", "after_feature", "area_m2", "changed", "geometry"]]
    matrix = gdf.pivot_table(index="from_class", columns="to_class", values="area_m2", aggfunc="sum",
                             fill_value=0.0)
    before_area = gdf[gdf["from_class"] != NONE_CLASS].groupby("from_class")["area_m2"].sum()
    after_area = gdf[gdf["to_class"] != NONE_CLASS].groupby("to_class")["area_m2"].sum()
    rates = pd.DataFrame({"area_before_m2": before_area, "area_after_m2": after_area}).fillna(0.0)
    rates.index.name = "class"
    rates["change_m2"] = rates["area_after_m2"] - rates["area_before_m2"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rates["dynamic_degree"] = np.where(rates["area_before_m2"] > 0,
                                           rates["change_m2"] / rates["area_before_m2"] / years, np.nan)
        rates["annual_rate"] = np.where(rates["area_before_m2"] > 0,
                                        (rates["area_after_m2"] / rates["area_before_m2"]) ** (1 / years) - 1,
                                        np.nan)
    out = gdf.to_crs(4326)
    changes = out[out["changed"]].reset_index(drop=True)
    return ChangeResult(pieces=out, changes=changes, matrix=matrix, rates=rates.reset_index(), crs=ea.srs,
                        years=float(years), warnings=list(warnings or []))


def flag_changes(result: ChangeResult, plan_layers: Mapping[str, gpd.GeoDataFrame],
                 rules: Sequence[Rule]) -> ConflictResult:
    """The changes that break plan rules: ``rules`` name the change pieces as layer ``"change"``
    (columns ``from_class``, ``to_class`` usable in ``where``), e.g. ``{name: new_build_in_red_line,
    layer: change, overlaps: redline, where: {to_class: construction}}``."""
    crs = CRS.from_proj4(result.crs)
    if len(result.changes) == 0:
        empty = gpd.GeoDataFrame({"rule": [], "kind": [], "layer": [], "other": [], "feature": [],
                                  "other_feature": [], "area_m2": []}, geometry=[], crs=4326)
        summary = pd.DataFrame({"rule": [r.name for r in rules], "n": 0, "area_m2": 0.0})
        return ConflictResult(empty, summary, summary.assign(layer="change", other=""), result.crs)
    checked = {"change": result.changes, **{n: check_layer(n, f) for n, f in plan_layers.items()}}
    return find_conflicts(checked, rules, crs=crs, check=False)


def change_hotspots(result: ChangeResult, *, resolution: int = 9, permutations: int = 999, seed: int = 0,
                    alpha: float = 0.05) -> pd.DataFrame:
    """Hot spots of change: the changed share of each H3 cell and its local Getis-Ord G*
    (:func:`citytwin.stats.autocorr.getis_ord`, esda with conditional permutations) over the cells'
    first-ring neighbours (binary weights, row-standardised).

    Each piece counts in the cell of its representative point (an approximation for pieces larger
    than a cell). Returns one row per cell: ``h3, changed_m2, total_m2, share, G, z, p_sim, hotspot``.
    """
    import h3
    import scipy.sparse as sp

    from citytwin.stats.autocorr import getis_ord

    pieces = result.pieces
    if len(pieces) < 3:
        raise InputError("too few pieces for hot spots (need 3 or more)")
    pts = shapely.point_on_surface(np.asarray(pieces.geometry.values, dtype=object))
    cells = np.array([h3.latlng_to_cell(y, x, resolution) for x, y in shapely.get_coordinates(pts)])
    frame = pd.DataFrame({"h3": cells, "total_m2": pieces["area_m2"].to_numpy(),
                          "changed_m2": np.where(pieces["changed"].to_numpy(), pieces["area_m2"].to_numpy(), 0.0)})
    agg = frame.groupby("h3", sort=True)[["changed_m2", "total_m2"]].sum().reset_index()
    agg["share"] = agg["changed_m2"] / agg["total_m2"]
    if len(agg) < 3 or not agg["share"].std() > 0:
        agg["G"], agg["z"], agg["p_sim"], agg["hotspot"] = np.nan, np.nan, np.nan, "ns"
        return agg
    pos = {c: i for i, c in enumerate(agg["h3"])}
    rows, cols = [], []
    for c, i in pos.items():
        for nb in h3.grid_disk(c, 1):
            j = pos.get(nb)
            if j is not None and j != i:
                rows.append(i)
                cols.append(j)
    w = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(agg), len(agg)))
    g = getis_ord(agg["share"].to_numpy(), w, star=True, permutations=permutations, seed=seed, alpha=alpha)
    for c in ("G", "z", "p_sim", "hotspot"):
        agg[c] = g[c].to_numpy() if c in g.columns else np.nan
    return agg
