"""Land change (E5) on Dask (issue 19): two snapshots cut in west-east stripes, the result of one process.

Apart from :mod:`citytwin.workflows.scaleout` to keep the planning code it calls out of the other
Dask workflows' imports; ``workflows.planning.change(dask=...)`` (``citytwin plan change --dask``) calls
it. See :func:`land_change` and docs/scaleout.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.foundation.scaleout import Progress, cluster, parse_dask, run_futures, task_keys, worker_cache

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["land_change"]


def _one_process_checks(before: str, after: str, b: Any, a: Any, column: str, after_column: str | None,
                        classes: list[str] | None, tol: float) -> None:
    """The checks of :func:`citytwin.planning.change.land_change` in its order (each layer's, overlaps
    included, then the classes): run on a worker only when a check failed, so that the error raised is
    the one one process raises (an overlap in "before" is said before a bad class)."""
    from citytwin.planning.change import _classes
    from citytwin.planning.overlay import check_layer, equal_area_crs

    cb, ca = check_layer(before, b, overlap_tolerance=tol), check_layer(after, a, overlap_tolerance=tol)
    _classes(cb, column, before, classes)
    _classes(ca, after_column or column, after, classes)
    equal_area_crs(cb, ca)


def _change_layers(before: str, after: str, column: str, after_column: str | None, classes: list[str] | None,
                   tol: float | None = None) -> dict[str, Any]:
    """Both snapshots read and checked on a worker (once per job), as ``land_change`` prepares them
    (``tol``: its ``overlap_tolerance``, None for the default), but for the overlaps within each layer:
    those the stripes check, each its features' pairs (:func:`_change_stripe`, :func:`_verdicts`)."""
    import numpy as np
    import shapely

    from citytwin.planning.change import NONE_CLASS, _classes  # the class check land_change applies
    from citytwin.planning.overlay import SELF_OVERLAP_TOLERANCE, _check_layer, _ring_arrays, equal_area_crs
    from citytwin.workflows.common import read_layer_file  # as workflows.planning reads a layer file

    tolerance = tol or SELF_OVERLAP_TOLERANCE
    rb, ra = read_layer_file(before), read_layer_file(after)
    try:
        if not 0 < tolerance < 1:
            raise InputError(f"overlap tolerance must be in (0, 1), got {tolerance}", field="overlap_tolerance")
        b, pb = _check_layer(before, rb, check_overlaps=False)
        a, pa = _check_layer(after, ra, check_overlaps=False)
        cb, ca = _classes(b, column, before, classes), _classes(a, after_column or column, after, classes)
        ea = equal_area_crs(b, a)
    except InputError:
        _one_process_checks(before, after, rb, ra, column, after_column, classes, tolerance)
        raise
    work = b.crs
    gb = np.asarray(b.geometry.values, dtype=object)
    same_crs = bool(a.crs.is_exact_same(work))  # as GeoDataFrame.to_crs decides there is nothing to do
    ga = np.asarray(a.to_crs(work).geometry.values, dtype=object)
    pb.tree, pa.tree = shapely.STRtree(gb), shapely.STRtree(pa.geoms)  # as check_layer builds them
    return {# the vertex arrays intersect_pairs needs, computed once per job (check_layer has them already)
            "rings": (pb.rings, pa.rings if same_crs else _ring_arrays(ga)),
            "cb": cb, "ca": ca, "ea": ea, "classes": np.unique(np.r_[cb, ca, [NONE_CLASS]].astype(str)), "work": work, "gb": gb, "ga": ga, "prep": (pb, pa),
            "tb": pb.tree, "ta": pa.tree if same_crs else shapely.STRtree(ga)}


def _stripe(geoms: np.ndarray, x0: float, x1: float, n: int) -> np.ndarray:
    """The stripe (of ``n`` between ``x0`` and ``x1``) holding each geometry's bounding-box centre."""
    import numpy as np
    import shapely

    b = shapely.bounds(geoms)
    cx = (b[:, 0] + b[:, 2]) / 2
    return np.asarray(np.clip(((cx - x0) / max(x1 - x0, 1e-300) * n).astype(np.int64), 0, n - 1))


def _change_stripe(k: int, *, before: str, after: str, column: str, after_column: str | None,
                   classes: list[str] | None, stripes: int, job: str, tol: float | None = None,
                   pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
                   verdicts: tuple[tuple[int, float], tuple[int, float]] | None = None) -> Any:
    """The pieces of the features whose bounding-box centre lies in stripe ``k`` (each feature in one stripe),
    as numeric arrays (:func:`_pack`), with their place in one process's table (``order``).

    Without ``pairs`` (first stage): the "before" features' intersections with every neighbour, the
    stripe's pairs ``(before, after, planar area of the piece)``, and the overlaps within each snapshot of
    the pairs whose first feature lies in the stripe (:func:`~citytwin.planning.overlay.self_overlap_pairs`:
    the whole-layer check, split). With ``pairs`` (every stripe's) and ``verdicts`` (second stage, after
    :func:`_verdicts`): what is left of the stripe's "before" and "after" features, their coverage summed
    from the first stage's pieces' areas (each intersection is cut once, in the first stage).
    """
    import geopandas as gpd
    import numpy as np
    import shapely

    from citytwin.foundation.scaleout import worker_threads
    from citytwin.planning import overlay
    from citytwin.planning.change import NONE_CLASS
    from citytwin.planning.overlay import (
        SELF_OVERLAP_TOLERANCE,
        ea_areas,
        intersect_pairs,
        polygonal,
        self_overlap_pairs,
        subtract_all,
    )

    overlay.PMAP_THREADS = worker_threads()  # GEOS on the worker's threads, not on every core
    L = worker_cache(("change", job), lambda: _change_layers(before, after, column, after_column, classes, tol))
    gb, ga, cb, ca = L["gb"], L["ga"], L["cb"], L["ca"]
    allb = shapely.bounds(np.concatenate([gb, ga]))
    x0, x1 = float(allb[:, 0].min()), float(allb[:, 2].max())
    span = max(len(gb), len(ga)) + 1

    table = L["classes"]

    def frame(fc: Any, tc: Any, bf: Any, af: Any, geoms: np.ndarray, section: int, feature: np.ndarray
              ) -> dict[str, Any]:
        # "order": the piece's place in one process's table (section, then feature; stable within a feature)
        g = np.asarray(geoms, dtype=object)
        area = ea_areas(g, L["work"], L["ea"]) if len(g) else np.empty(0)
        # pieces of no area (features their intersections cover) are dropped by finish_change: not sent back
        keep = area > 0
        # in WGS84 as finish_change gives them (GeoSeries.to_crs, point by point: the same coordinates as
        # the client's to_crs of all pieces; nothing to do when the snapshots are in EPSG:4326)
        g = np.asarray(gpd.GeoSeries(g[keep], crs=L["work"]).to_crs(4326).values, dtype=object)

        def col(v: Any, dtype: Any) -> np.ndarray:
            return np.asarray(v[keep] if isinstance(v, np.ndarray) else np.full(len(g), v), dtype=dtype)

        # classes as their numbers in the class table (no string objects to pickle), the rest numbers too
        return {"from": np.searchsorted(table, col(fc, object).astype(str)).astype(np.int32),
                "to": np.searchsorted(table, col(tc, object).astype(str)).astype(np.int32),
                "bf": col(bf, np.int64), "af": col(af, np.int64), "area": area[keep],
                "order": section * span + col(feature, np.int64), "geoms": g}

    def leftovers(geoms: np.ndarray, own: np.ndarray, hit: np.ndarray, other_idx: np.ndarray, other: np.ndarray,
                  inter_area: np.ndarray, other_overlaps: Any) -> np.ndarray:
        # as land_change: a feature its intersection pieces cover leaves nothing; only the others are cut
        area_own = shapely.area(geoms[own])
        covered = np.bincount(hit, weights=inter_area, minlength=len(own))
        cut = (np.flatnonzero(area_own - covered > SELF_OVERLAP_TOLERANCE * area_own) if not other_overlaps
               else np.arange(len(own)))
        left = np.empty(len(own), dtype=object)
        left[:] = shapely.Polygon()
        if len(cut):
            pos = np.full(len(own), -1)
            pos[cut] = np.arange(len(cut))
            sel = pos[hit] >= 0
            left[cut] = polygonal(subtract_all(geoms[own][cut], pos[hit[sel]], other_idx[sel], other))
        return left

    own_b = np.flatnonzero(_stripe(gb, x0, x1, stripes) == k)
    own_a = np.flatnonzero(_stripe(ga, x0, x1, stripes) == k)
    if pairs is None:
        # pairs of the owned "before" features, in the order one process finds them (by before, then tree order)
        il, jj = L["ta"].query(gb[own_b], predicate="intersects")
        ii = own_b[il]
        # cut as land_change cuts them (intersect_pairs: the convex fast path, GEOS for the others): the
        # same function on the same pair gives the same piece in any task
        inter = intersect_pairs(gb, ga, ii, jj, L["rings"])
        # the overlaps within each snapshot, of the pairs whose first feature is the stripe's (each pair is
        # checked once, by one stripe; in the snapshot's own CRS, as check_layer checks it)
        pb, pa = L["prep"]
        checks = (self_overlap_pairs(pb, own_b), self_overlap_pairs(pa, own_a))
        return _pack([frame(cb[ii], ca[jj], ii, jj, inter, 0, ii)]), (ii, jj, shapely.area(inter)), checks
    assert verdicts is not None
    (accepted_b, _), (accepted_a, _) = verdicts
    # what is left of the "before" features: their pairs are this stripe's of the first stage
    ii, jj, area_b = pairs[k]
    left_b = leftovers(gb, own_b, np.searchsorted(own_b, ii), jj, ga, area_b, accepted_a)
    local = np.full(len(ga), -1)
    local[own_a] = np.arange(len(own_a))
    pi, pj, parea = (np.concatenate([p[n] for p in pairs]) for n in range(3))
    sel = local[pj] >= 0
    # the "after" features' pieces in ascending "before" order: the order one process sums and subtracts them
    order = np.lexsort((pi[sel], pj[sel]))
    jl, ib, area_a = local[pj[sel]][order], pi[sel][order], parea[sel][order]
    left_a = leftovers(ga, own_a, jl, ib, gb, area_a, accepted_b)
    return _pack([frame(cb[own_b], NONE_CLASS, own_b, -1, left_b, 1, own_b),
                  frame(NONE_CLASS, ca[own_a], -1, own_a, left_a, 2, own_a)])


#: the numeric columns a stripe sends back, and the names finish_change knows them by
_COLUMNS = {"bf": "before_feature", "af": "after_feature", "area": "area_m2"}


def _pack(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """A stripe's pieces as numeric arrays only (what pickles without a Python object per piece, unlike
    shapely's pickle, WKB one object at a time): the polygons as ragged coordinate arrays
    (``shapely.to_ragged_array``: exact coordinates), the few other pieces (multipolygons) as WKB."""
    import numpy as np
    import shapely

    out: dict[str, Any] = {k: np.concatenate([f[k] for f in frames])
                           for k in ("from", "to", "bf", "af", "area", "order")}
    g = np.concatenate([f["geoms"] for f in frames])
    poly = shapely.get_type_id(g) == 3
    out["poly"] = poly
    out["ragged"] = shapely.to_ragged_array(g[poly])[1:] if poly.any() else None
    out["wkb"] = shapely.to_wkb(g[~poly]) if (~poly).any() else np.empty(0, dtype=object)
    return out


def _unpack(parts: list[dict[str, Any]], table: np.ndarray) -> pd.DataFrame:
    """The pieces of every stripe in one process's order (one concatenation, one stable argsort of
    ``order``), as ``land_change`` has them before ``finish_change``."""
    import numpy as np
    import pandas as pd
    import shapely

    col = {k: np.concatenate([p[k] for p in parts]) for k in ("from", "to", "bf", "af", "area", "order", "poly")}
    geoms = np.empty(len(col["order"]), dtype=object)
    rag = [p["ragged"] for p in parts if p["ragged"] is not None]
    if rag:  # the parts' ragged arrays joined: ring offsets shifted by the coordinates before, polygons by the rings
        coords, rings, polys = [], [], []
        nc = nr = 0
        for xy, (ring_off, poly_off) in rag:
            coords.append(xy)
            rings.append(ring_off[:-1] + nc)
            polys.append(poly_off[:-1] + nr)
            nc += len(xy)
            nr += len(ring_off) - 1
        geoms[col["poly"]] = shapely.from_ragged_array(
            shapely.GeometryType.POLYGON, np.concatenate(coords),
            (np.concatenate([*rings, [nc]]), np.concatenate([*polys, [nr]])))
    if not col["poly"].all():
        geoms[~col["poly"]] = shapely.from_wkb(np.concatenate([p["wkb"] for p in parts]))
    order = np.argsort(col["order"], kind="stable")
    frame = pd.DataFrame({"from_class": table[col["from"][order]], "to_class": table[col["to"][order]],
                          **{name: col[k][order] for k, name in _COLUMNS.items() if k != "area"},
                          "geometry": geoms[order], "area_m2": col["area"][order]})
    return frame


def _verdicts(checks: list[Any], *, before: str, after: str, tol: float | None) -> tuple[tuple[int, float], ...]:
    """The overlap check of each snapshot from its stripes' pairs (:func:`_change_stripe`'s first stage):
    ``((pairs accepted, largest share) of "before", (…) of "after")``, or the error one process raises (the
    pairs concatenated and stably sorted by their first feature are those of the whole layer's check)."""
    import numpy as np

    from citytwin.planning.overlay import SELF_OVERLAP_TOLERANCE, overlap_verdict

    out = []
    for side, name in enumerate((before, after)):
        i, j, share = (np.concatenate([c[side][n] for c in checks]) for n in range(3))
        order = np.argsort(i, kind="stable")
        out.append(overlap_verdict(name, name, i[order], j[order], share[order], tol or SELF_OVERLAP_TOLERANCE))
    return tuple(out)


def _first(pair: tuple[Any, ...]) -> Any:
    return pair[0]


def _second(pair: tuple[Any, ...]) -> Any:
    return pair[1]


def _third(pair: tuple[Any, ...]) -> Any:
    return pair[2]


def land_change(before: str, after: str, *, dask: str, column: str = "landuse", years: float = 1.0,
                after_column: str | None = None, classes: Sequence[str] | None = None, stripes: int | None = None,
                overlap_tolerance: float | None = None, progress: Progress | None = None) -> Any:
    """:func:`citytwin.planning.change.land_change` of two snapshot files on Dask, split in stripes.

    Every feature belongs to the stripe (west to east) of its bounding-box centre; a task cuts the pieces
    of its features only: their intersections with every neighbour, what the neighbours leave of them
    (two stages: the "before" features' intersections, then what is left of the "before" and "after"
    features, their coverage summed from the first stage's pieces). Pieces travel as numeric arrays (classes
    as numbers, polygons as ragged coordinate arrays, already in WGS84) with their place in one process's
    table (the client: one concatenation, one argsort, one ``shapely.from_ragged_array``); pieces of no
    area are not sent. No piece is clipped at a stripe edge, each is cut once and exactly as one
    process cuts it, so the pieces, their equal-area areas, the transition matrix and the rates equal the
    single-process result (test).

    Each worker reads both snapshots and runs ``check_layer``'s per-feature checks (CRS, polygons,
    validity and repairs) and the class check once per job; the overlap check within each snapshot —
    the costly part of ``check_layer`` — is split: each first-stage stripe checks the pairs whose first
    feature is its own, and one small task (:func:`_verdicts`) reads them as ``check_layer`` does (the same
    error naming both rows; with ``overlap_tolerance`` the same accepted overlaps and warnings), before the
    second stage, which needs to know whether overlaps were accepted.
    """
    from pyproj import CRS

    from citytwin.planning.change import finish_change

    parse_dask(dask)
    if not years > 0:
        raise InputError(f"years between snapshots must be > 0, got {years}", field="years")
    for f in (before, after):
        if not Path(f).is_file():
            raise InputError("on Dask the workers read the snapshots from files; file not found", file=f,
                             hint="give the snapshot files (GeoParquet, GeoPackage, GeoJSON ...); a catalog "
                                  "dataset is read by one process: run without --dask")
    with cluster(dask) as client:
        n = stripes or max(2, 4 * len(client.scheduler_info(n_workers=-1).get("workers", {})))
        job = uuid.uuid4().hex
        kw: dict[str, Any] = {"before": before, "after": after, "column": column, "after_column": after_column,
                              "classes": list(classes) if classes is not None else None, "stripes": n, "job": job,
                              "tol": overlap_tolerance}
        # stage 1: the "before" side's intersections and the overlap checks of every stripe; then the
        # checks' verdict (one small task); stage 2: what is left of each side, from stage 1's pairs (small
        # arrays, taken out where they were computed and sent to the other workers)
        first = client.map(_change_stripe, list(range(n)), pure=False, key=task_keys("citytwin-change-b", n), **kw)
        pairs = client.map(_second, first, pure=False, key=task_keys("citytwin-change-pairs", n))
        checks = client.map(_third, first, pure=False, key=task_keys("citytwin-change-checks", n))
        verdict = client.submit(_verdicts, checks, pure=False, key=task_keys("citytwin-change-verdict", 1)[0],
                                before=before, after=after, tol=overlap_tolerance)
        second = client.map(_change_stripe, list(range(n)), pure=False, key=task_keys("citytwin-change-a", n),
                            pairs=pairs, verdicts=verdict, **kw)
        pieces_b = client.map(_first, first, pure=False, key=task_keys("citytwin-change-pieces", n))
        parts = run_futures(client, [*pieces_b, *second, verdict], progress=progress)
        accepted = parts.pop()
        ea, table = client.submit(_crs_of, before, after, column, after_column, classes, job, overlap_tolerance,
                                  pure=False).result()

    # one process's order: intersections by "before" feature, then what is left of each "before" feature,
    # then of each "after" one (a feature's pieces come from one stripe, in its order: a stable argsort)
    pieces = _unpack(parts, table)
    warnings = [_overlap_warning(nm, n_, share) for nm, (n_, share) in zip((before, after), accepted, strict=True) if n_]
    # from here as land_change finishes (the pieces came in WGS84, which finish_change then has nothing to do for)
    return finish_change(pieces, CRS.from_epsg(4326), ea, years, warnings)


def _overlap_warning(name: str, pairs: Any, share: Any) -> str:
    """The warning :func:`citytwin.planning.change.land_change` gives for overlaps it accepted in a snapshot
    (worded as there; the Dask test compares the two runs' warnings)."""
    return (f"snapshot {name!r}: {int(pairs)} pair(s) of its features overlap (up to {float(share):.3g} of the "
            "smaller one; accepted by the overlap tolerance): that land is counted once per feature, so the matrix "
            "sums to more than the union")


def _crs_of(before: str, after: str, column: str, after_column: str | None, classes: Sequence[str] | None,
            job: str, tol: float | None = None) -> Any:
    L = worker_cache(("change", job), lambda: _change_layers(before, after, column, after_column,
                                                             list(classes) if classes is not None else None, tol))
    return L["ea"], L["classes"]
