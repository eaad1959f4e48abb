"""Multi-plan coordination (E4): overlay plan layers and find conflicts by configurable rules.

The polygons are cut in one working CRS (the first layer's; the others are reprojected to it) and
every area is computed in one Lambert azimuthal equal-area projection centred on the layers' joint
extent (:func:`equal_area_crs`, stated in every result), so ``area_m2`` is a ground area. The
rules are records ``{name, layer, overlaps: OTHER}`` (the parts of LAYER's features inside OTHER's
features, one polygon per intersecting pair) or ``{name, layer, outside: OTHER | [OTHER, ...]}`` (the
part of each LAYER feature outside the union of the OTHER layers' features); an optional ``where:
{column: value | [values]}`` keeps only some of LAYER's features (e.g. construction land) and
``other_where`` some of OTHER's.

Pure functions over GeoDataFrames: no I/O (the workflow reads and writes).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from citytwin.foundation.errors import InputError

#: Relative overlap (of the smaller polygon's area) above which two polygons of one layer overlap.
SELF_OVERLAP_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Rule:
    """A conflict rule: ``kind`` is ``"overlaps"`` or ``"outside"``; ``others`` the other layer(s)."""

    name: str
    layer: str
    kind: str
    others: tuple[str, ...]
    where: dict[str, list[Any]] = field(default_factory=dict)
    other_where: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class ConflictResult:
    """Conflicts of a set of rules.

    Attributes
    ----------
    conflicts
        One row per conflict polygon: ``rule, kind, layer, other, feature, other_feature, area_m2,
        geometry`` (geometry in WGS84, EPSG:4326; ``other_feature`` is -1 for ``outside`` rules).
    summary
        Per rule: ``rule, n, area_m2``.
    pairs
        Per rule and pair of layers: ``rule, layer, other, n, area_m2``.
    crs
        The equal-area CRS the areas were computed in (PROJ string).
    """

    conflicts: gpd.GeoDataFrame
    summary: pd.DataFrame
    pairs: pd.DataFrame
    crs: str


def equal_area_crs(*frames: gpd.GeoDataFrame) -> CRS:
    """A Lambert azimuthal equal-area CRS centred on the joint WGS84 extent of ``frames``.

    Examples
    --------
    >>> g = gpd.GeoDataFrame(geometry=[shapely.box(24.9, 60.1, 25.0, 60.2)], crs=4326)
    >>> equal_area_crs(g).srs
    '+proj=laea +lat_0=60.15 +lon_0=24.95 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs +type=crs'
    """
    bounds = np.array([f.to_crs(4326).total_bounds for f in frames if len(f)])
    if not len(bounds):
        raise InputError("no features to choose an equal-area projection from")
    x0, y0 = bounds[:, 0].min(), bounds[:, 1].min()
    x1, y1 = bounds[:, 2].max(), bounds[:, 3].max()
    lon, lat = round((x0 + x1) / 2, 6), round((y0 + y1) / 2, 6)
    return CRS.from_proj4(f"+proj=laea +lat_0={lat:g} +lon_0={lon:g} +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs")


def pmap(func: Any, *arrays: np.ndarray, chunk: int = 4_096, **kwargs: Any) -> np.ndarray:
    """``func(*arrays, **kwargs)`` (a vectorised shapely function) in chunks on all cores: shapely
    releases the GIL inside GEOS, so threads run the chunks in parallel. The same result as one call."""
    n = len(arrays[0]) if arrays else 0
    workers = min(os.cpu_count() or 1, max(1, n // chunk))
    if workers <= 1:
        return np.asarray(func(*arrays, **kwargs))
    bounds = np.linspace(0, n, workers * 4 + 1).astype(int)
    with ThreadPoolExecutor(workers) as ex:
        parts = list(ex.map(lambda se: func(*[a[se[0]:se[1]] for a in arrays], **kwargs),
                            itertools.pairwise(bounds)))
    return np.concatenate(parts)


def subtract_all(geoms: np.ndarray, hit: np.ndarray, other_idx: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``geoms[k]`` minus every ``other[other_idx[m]]`` with ``hit[m] == k`` (for every ``k``), in
    vectorised rounds: round ``r`` subtracts the ``r``-th neighbour of every feature that has one."""
    left = np.empty(len(geoms), dtype=object)
    left[:] = list(geoms)
    if not len(hit):
        return left
    order = np.argsort(hit, kind="stable")
    h, o = hit[order], other_idx[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    rank = np.arange(len(h)) - np.repeat(starts, np.diff(np.r_[starts, len(h)]))
    for r in range(int(rank.max()) + 1):
        sel = rank == r
        left[h[sel]] = pmap(shapely.difference, left[h[sel]], other[o[sel]])
    return left


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Only the polygonal parts of each geometry (points and lines of a collection dropped; an empty
    polygon where nothing polygonal is left)."""
    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    tid = shapely.get_type_id(geoms)
    out[~np.isin(tid, (3, 6, 7))] = shapely.Polygon()  # points and lines (neighbours that only touch)
    for i in np.flatnonzero(tid == 7):
        parts = shapely.get_parts(geoms[i])
        parts = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
        out[i] = shapely.union_all(parts) if len(parts) else shapely.Polygon()
    return out


def check_layer(name: str, frame: gpd.GeoDataFrame, *, source: str | None = None,
                check_overlaps: bool = True) -> gpd.GeoDataFrame:
    """A plan layer checked and made usable: polygons only, invalid geometries repaired
    (``shapely.make_valid``, polygonal part kept), a CRS required, no two features overlapping.

    Raises
    ------
    InputError
        The layer is empty, has no CRS, has a feature that is not a polygon, or two of its features
        overlap (both rows named).
    """
    src = source or name
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry is None:
        raise InputError(f"layer {name!r} has no geometry column", file=src)
    if len(frame) == 0:
        raise InputError(f"layer {name!r} is empty", file=src, hint="a plan layer needs at least one polygon")
    if frame.crs is None:
        raise InputError(f"layer {name!r} has no CRS", file=src,
                         hint="set the layer's CRS (e.g. EPSG:4326) in the source file")
    geoms = np.asarray(frame.geometry.values, dtype=object)
    missing = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if len(missing):
        raise InputError(f"layer {name!r}: feature has no geometry", file=src, row=int(missing[0]) + 1,
                         field="geometry")
    tid = shapely.get_type_id(geoms)
    bad = np.flatnonzero(~np.isin(tid, (3, 6)) & (tid != 7))
    if len(bad):
        raise InputError(f"layer {name!r}: feature is a {shapely.get_type_id(geoms[bad[0]])} geometry, "
                         f"not a polygon", file=src, row=int(bad[0]) + 1, field="geometry")
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        geoms = geoms.copy()
        geoms[invalid] = polygonal(shapely.make_valid(geoms[invalid]))
    geoms = polygonal(geoms)
    out = frame.set_geometry(gpd.GeoSeries(geoms, index=frame.index, crs=frame.crs))
    out.attrs["repaired"] = int(invalid.sum())
    if check_overlaps:
        _check_self_overlap(name, out, src)
    return out


def _check_self_overlap(name: str, frame: gpd.GeoDataFrame, src: str) -> None:
    geoms = np.asarray(frame.geometry.values, dtype=object)
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms)  # pairs of overlapping bounding boxes; filtered below
    keep = i < j
    i, j = i[keep], j[keep]
    if not len(i):
        return
    # the overlap of two polygons is at most the overlap of their bounding boxes: pairs whose boxes
    # overlap by no more than the tolerance (neighbours sharing an edge) need no geometry; of the
    # others, those whose interiors meet (DE-9IM) are measured. Overlaps below the tolerance (shared
    # edges off by a rounding error) are not overlaps.
    areas = shapely.area(geoms)
    bb = shapely.bounds(geoms)
    bw = np.clip(np.minimum(bb[i, 2], bb[j, 2]) - np.maximum(bb[i, 0], bb[j, 0]), 0, None)
    bh = np.clip(np.minimum(bb[i, 3], bb[j, 3]) - np.maximum(bb[i, 1], bb[j, 1]), 0, None)
    tol = SELF_OVERLAP_TOLERANCE * np.maximum(np.minimum(areas[i], areas[j]), 1e-300)
    keep = bw * bh > tol
    i, j, tol = i[keep], j[keep], tol[keep]
    inner = pmap(shapely.relate_pattern, geoms[i], geoms[j], pattern="T********")
    i, j, tol = i[inner], j[inner], tol[inner]
    inter = shapely.area(pmap(shapely.intersection, geoms[i], geoms[j]))
    hit = np.flatnonzero(inter > tol)
    if len(hit):
        a, b = int(i[hit[0]]) + 1, int(j[hit[0]]) + 1
        raise InputError(f"layer {name!r}: features {a} and {b} overlap ({len(hit)} overlapping pair(s) in all)",
                         file=src, row=a, field="geometry",
                         hint="a plan layer's polygons must not overlap; dissolve or clip them first")


def parse_rules(records: Any, layers: Sequence[str] | None = None, *, source: str = "rules") -> list[Rule]:
    """Rules from their records (the parsed YAML list); every layer named must be in ``layers``."""
    if not isinstance(records, list) or not records:
        raise InputError("the rules file must be a non-empty list of rules", file=source,
                         hint="e.g. [{name: r1, layer: A, overlaps: B}, {name: r2, layer: A, outside: C}]")
    rules: list[Rule] = []
    seen: set[str] = set()
    for n, rec in enumerate(records, start=1):
        if not isinstance(rec, dict):
            raise InputError("a rule must be a mapping", file=source, row=n)
        unknown = set(rec) - {"name", "layer", "overlaps", "outside", "where", "other_where"}
        if unknown:
            raise InputError(f"unknown key(s) {sorted(unknown)}", file=source, row=n, field=sorted(unknown)[0])
        name = str(rec.get("name") or f"rule{n}")
        if name in seen:
            raise InputError(f"rule name {name!r} is used twice", file=source, row=n, field="name")
        seen.add(name)
        if "layer" not in rec:
            raise InputError("a rule needs a layer", file=source, row=n, field="layer")
        kinds = [k for k in ("overlaps", "outside") if k in rec]
        if len(kinds) != 1:
            raise InputError("a rule needs exactly one of overlaps or outside", file=source, row=n)
        kind = kinds[0]
        others_raw = rec[kind]
        others = tuple(str(o) for o in (others_raw if isinstance(others_raw, list) else [others_raw]))
        if not others:
            raise InputError(f"{kind} names no layer", file=source, row=n, field=kind)
        if kind == "overlaps" and len(others) != 1:
            raise InputError("overlaps names one layer (one rule per pair)", file=source, row=n, field=kind)
        layer = str(rec["layer"])
        if layers is not None:
            for ln, fld in [(layer, "layer"), *[(o, kind) for o in others]]:
                if ln not in layers:
                    raise InputError(f"rule {name!r} names layer {ln!r}, which was not given "
                                     f"(layers: {', '.join(layers)})", file=source, row=n, field=fld,
                                     hint=f"add --layer {ln}=DATASET_OR_FILE or fix the rule")
        rules.append(Rule(name=name, layer=layer, kind=kind, others=others,
                          where=_where(rec.get("where"), source, n, "where"),
                          other_where=_where(rec.get("other_where"), source, n, "other_where")))
    return rules


def _where(value: Any, source: str, row: int, fld: str) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{fld} must be a mapping column: value(s)", file=source, row=row, field=fld)
    return {str(k): (list(v) if isinstance(v, list | tuple) else [v]) for k, v in value.items()}


def _select(frame: gpd.GeoDataFrame, where: Mapping[str, list[Any]], layer: str, rule: str) -> np.ndarray:
    mask = np.ones(len(frame), bool)
    for col, values in where.items():
        if col not in frame.columns:
            raise InputError(f"rule {rule!r}: layer {layer!r} has no column {col!r}", field=col)
        mask &= frame[col].isin(values).to_numpy()
    return mask


def find_conflicts(layers: Mapping[str, gpd.GeoDataFrame], rules: Sequence[Rule], *,
                   crs: CRS | None = None, check: bool = True) -> ConflictResult:
    """Conflict polygons of ``rules`` over ``layers`` with their areas in an equal-area CRS.

    Parameters
    ----------
    layers
        Plan layers by name (any CRS; each is checked with :func:`check_layer` unless ``check`` is
        false, and reprojected).
    rules
        From :func:`parse_rules`.
    crs
        The equal-area CRS (default: :func:`equal_area_crs` of all layers).
    """
    for r in rules:
        for ln in (r.layer, *r.others):
            if ln not in layers:
                raise InputError(f"rule {r.name!r} names layer {ln!r}, which was not given", field="layer")
    checked = {n: check_layer(n, f) if check else f for n, f in layers.items()}
    ea = crs or equal_area_crs(*checked.values())
    # topology in one working CRS (the first layer's: edges stay as drawn, no slivers where layers share a
    # CRS), areas in the equal-area CRS
    work = next(iter(checked.values())).crs
    proj = {n: f.to_crs(work) for n, f in checked.items()}
    geo = {n: np.asarray(f.geometry.values, dtype=object) for n, f in proj.items()}
    parts: list[pd.DataFrame] = []
    for r in rules:
        a_mask = _select(proj[r.layer], r.where, r.layer, r.name)
        a_idx = np.flatnonzero(a_mask)
        a = geo[r.layer][a_idx]
        if r.kind == "overlaps":
            other = r.others[0]
            b_idx_all = np.flatnonzero(_select(proj[other], r.other_where, other, r.name))
            b = geo[other][b_idx_all]
            ii, jj = shapely.STRtree(b).query(a, predicate="intersects")
            g = polygonal(pmap(shapely.intersection, a[ii], b[jj])) if len(ii) else np.array([], dtype=object)
            rows = pd.DataFrame({"rule": r.name, "kind": r.kind, "layer": r.layer, "other": other,
                                 "feature": a_idx[ii], "other_feature": b_idx_all[jj], "geometry": g})
        else:
            b_list = [geo[o][_select(proj[o], r.other_where, o, r.name)] for o in r.others]
            b = np.concatenate(b_list) if b_list else np.array([], dtype=object)
            ii, jj = shapely.STRtree(b).query(a, predicate="intersects")
            g = polygonal(subtract_all(a, ii, jj, b))
            rows = pd.DataFrame({"rule": r.name, "kind": r.kind, "layer": r.layer, "other": "+".join(r.others),
                                 "feature": a_idx, "other_feature": -1, "geometry": g})
        g_ea = gpd.GeoSeries(np.asarray(rows["geometry"].to_numpy(), dtype=object), crs=work).to_crs(ea)
        rows["area_m2"] = g_ea.area.to_numpy() if len(rows) else []
        parts.append(rows[rows["area_m2"] > 0])
    cols = ["rule", "kind", "layer", "other", "feature", "other_feature", "area_m2", "geometry"]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    frame = frame[cols]
    frame["feature"] = frame["feature"].astype("int64")
    frame["other_feature"] = frame["other_feature"].astype("int64")
    frame["area_m2"] = frame["area_m2"].astype("float64")
    conflicts = gpd.GeoDataFrame(frame, geometry="geometry", crs=work).to_crs(4326)
    rule_names = [r.name for r in rules]
    summary = (conflicts.groupby("rule", sort=False).agg(n=("area_m2", "size"), area_m2=("area_m2", "sum"))
               .reindex(rule_names).fillna({"n": 0, "area_m2": 0.0}).reset_index())
    summary["n"] = summary["n"].astype("int64")
    pairs = (pd.DataFrame(conflicts.drop(columns="geometry"))
             .groupby(["rule", "layer", "other"], sort=False)
             .agg(n=("area_m2", "size"), area_m2=("area_m2", "sum")).reset_index())
    return ConflictResult(conflicts=conflicts, summary=summary, pairs=pairs, crs=ea.srs)
