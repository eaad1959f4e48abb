"""Land change (E5) on Dask (issue 19): two snapshots cut in west-east stripes, the result of one process.

Apart from :mod:`citytwin.workflows.scaleout` to keep the planning code it calls out of the other
Dask workflows' imports; ``workflows.planning.change(dask=...)`` (``citytwin plan change --dask``) calls
it. See :func:`land_change` and docs/scaleout.md.

The job, as tasks:

1. **checks** (:func:`_check_chunk`, two row ranges per worker and snapshot): each feature is decoded and
   checked once (polygons, validity and repairs, the class), giving its bounding box in its own and in the
   working CRS, the layer's WGS84 extent and the repaired geometries (as WKB; usually none). The checked
   features stay on the worker (:class:`_Layer`): its stripe tasks decode only the rows they need that
   were checked elsewhere.
2. **order** (:func:`_tree_order`): where each "after" feature comes in a query of the spatial index one
   process builds over "after" in the working CRS (GEOS's STR tree over all its boxes): one process's
   pieces come in that order, which a stripe's own, smaller index then reproduces.
3. **plan** (:func:`_plan`): the stripe of each feature, the equal-area CRS, the class table; a failed check
   makes it run one process's checks, which raise one process's error (file, row, field).
4. **stripes**, two stages as before (:func:`_change_stripe`): a stripe decodes only its features and their
   neighbours (each worker reads the files' raw columns once, decodes rows when a task needs them).
5. **verdict** on the overlaps within each snapshot (:func:`_verdicts`), between the two stages (one
   process's checks when an overlap is refused, for its error).

Pieces come back as WKB in one buffer with their place in one process's table; the client decodes the
first stage's while the second runs. The tasks and the client's part run with the garbage collector's young
collections made rare (:func:`citytwin.foundation.collector.rare_collections`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from citytwin.foundation.collector import collecting_rarely
from citytwin.foundation.errors import InputError
from citytwin.foundation.objectstore import is_url
from citytwin.foundation.scaleout import Progress, cluster, parse_dask, run_futures, task_keys, worker_cache

if TYPE_CHECKING:
    import geopandas as gpd
    import numpy as np
    import pandas as pd

__all__ = ["land_change"]

F = TypeVar("F", bound=Callable[..., Any])

# ------------------------------------------------------------------------------------------ reading
def _read_whole(path: str) -> gpd.GeoDataFrame:
    """A snapshot read whole, as one process reads it (a file, or an ``s3://`` GeoParquet object)."""
    from citytwin.workflows.common import read_layer_file  # as workflows.planning reads a layer file

    if is_url(path):
        from citytwin.foundation.objectstore import read_geoparquet

        return read_geoparquet(path)
    return read_layer_file(path)


class _Source:
    """A snapshot file on a worker: GeoParquet is read once as Arrow (the raw columns: no geometry decoded)
    and its rows decoded when a task asks for them (as ``geopandas.read_parquet`` decodes them); any other
    format GeoPandas reads is read whole."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.table: Any = None
        self.meta: Any = None
        self.frame: Any = None
        if path.lower().endswith(".parquet"):
            try:
                self._arrow()
            except InputError:
                raise
            except Exception:
                self.table = None
        if self.table is None:
            self.frame = _read_whole(path)
        self.n = len(self.frame) if self.frame is not None else self.table.num_rows

    def _arrow(self) -> None:
        import pyarrow.parquet as pq
        from geopandas.io import arrow as gio

        if is_url(self.path):
            from citytwin.foundation.objectstore import filesystem, storage_errors

            fs, p = filesystem(self.path)
            with storage_errors(self.path):
                table = pq.read_table(p, filesystem=fs)
        else:
            table = pq.read_table(self.path)
        # GeoPandas' own conversion (private: a GeoPandas without it reads the file whole, in __init__)
        if not hasattr(gio, "_arrow_to_geopandas"):
            raise AttributeError("geopandas.io.arrow._arrow_to_geopandas")
        meta = gio._validate_and_decode_metadata(table.schema.metadata)
        # each geometry column's CRS parsed once, as that conversion parses it (PROJJSON with a datum
        # ensemble takes PROJ about 13 ms; once per task and decoded part before): the conversion then
        # takes the CRS object as it is
        frame = gio._arrow_to_geopandas(table.slice(0, 0), meta)
        for col, spec in meta["columns"].items():
            if col in frame.columns:
                spec["crs"] = frame[col].crs
        self.meta = meta
        self.table = table

    def rows(self, idx: np.ndarray) -> gpd.GeoDataFrame:
        """Rows ``idx`` (positions) as a GeoDataFrame, geometries and values as a whole read gives them."""
        import numpy as np

        if self.frame is not None:
            return self.frame.iloc[np.asarray(idx, dtype=np.int64)]
        from geopandas.io import arrow as gio

        return gio._arrow_to_geopandas(self.table.take(np.asarray(idx, dtype=np.int64)), self.meta)


def _source(path: str, job: str) -> _Source:
    return worker_cache(("change-src", job, path), lambda: _Source(path))


# ------------------------------------------------------------------------------------------- checks
def _one_process_checks(before: str, after: str, column: str, after_column: str | None,
                        classes: list[str] | None, tol: float) -> None:
    """The checks of :func:`citytwin.planning.change.land_change` in its order (each layer's, overlaps
    included, then the classes), on the whole snapshots: run on a worker only when a check failed, so that
    the error raised is the one one process raises (an overlap in "before" is said before a bad class)."""
    from citytwin.planning.change import _classes
    from citytwin.planning.overlay import check_layer, equal_area_crs

    rb, ra = _read_whole(before), _read_whole(after)
    cb, ca = check_layer(before, rb, overlap_tolerance=tol), check_layer(after, ra, overlap_tolerance=tol)
    _classes(cb, column, before, classes)
    _classes(ca, after_column or column, after, classes)
    equal_area_crs(cb, ca)


@collecting_rarely
def _check_chunk(part: tuple[int, int, int], *, before: str, after: str, column: str, after_column: str | None,
                 classes: list[str] | None, job: str, tol: float | None) -> dict[str, Any]:
    """``check_layer``'s per-feature checks (geometry, polygons, validity and repairs) and the class check
    of rows ``r0:r1`` of one snapshot (``part = (side, r0, r1)``, side 0 "before", 1 "after"): their bounds
    in the snapshot's CRS and in the working CRS (the first snapshot's), the WGS84 extent, the classes, and
    the repaired geometries as WKB. ``{"failed": True}`` when a check fails (the plan then runs one
    process's checks for its error). The checked geometries (and those in the working CRS) and classes stay
    in this worker's :class:`_Layer`: a stripe task here does not decode, repair or reproject them again."""
    import numpy as np
    import shapely

    from citytwin.planning.change import _classes
    from citytwin.planning.overlay import SELF_OVERLAP_TOLERANCE, _check_layer, _wgs84_bounds

    side, r0, r1 = part
    name = (before, after)[side]
    src = _source(name, job)
    frame = src.rows(np.arange(r0, r1))
    tolerance = tol or SELF_OVERLAP_TOLERANCE
    try:
        if not 0 < tolerance < 1:
            raise InputError("bad overlap tolerance")
        checked, _ = _check_layer(name, frame, check_overlaps=False)
        cls = _classes(checked, (column, after_column or column)[side], name, classes)
        wgs = _wgs84_bounds(checked)
    except InputError:
        return {"failed": True}
    geoms = np.asarray(checked.geometry.values, dtype=object)
    orig = np.asarray(frame.geometry.values, dtype=object)
    changed = np.flatnonzero([g is not o for g, o in zip(geoms, orig, strict=True)])
    out: dict[str, Any] = {"failed": False, "bounds": shapely.bounds(geoms), "wgs84": wgs, "classes": np.unique(cls),
                           "changed": changed + r0, "wkb": shapely.to_wkb(geoms[changed])}
    work = _work_crs(before, job) if side == 1 else checked.crs
    if work is None:  # the first snapshot has no CRS: its own check fails, and one process says so
        return {"failed": True}
    in_work = None
    if side == 1 and not checked.crs.is_exact_same(work):  # as GeoDataFrame.to_crs decides there is something to do
        in_work = np.asarray(checked.to_crs(work).geometry.values, dtype=object)
        out["work_bounds"] = shapely.bounds(in_work)
    _layer(name, (column, after_column or column)[side], side, job).put(np.arange(r0, r1), geoms, cls, in_work, work)
    return out


def _work_crs(before: str, job: str) -> Any:
    """The working CRS: the first snapshot's (from its metadata; no geometry decoded)."""
    import numpy as np

    return _source(before, job).rows(np.arange(0)).crs


def _tree_order(bounds: list[np.ndarray]) -> np.ndarray:
    """Each feature's place in the depth-first order of the STR tree one process builds over the layer
    (``shapely.STRtree`` of its geometries: GEOS indexes their bounding boxes, so a tree of the boxes is the
    same tree). A query visits the tree depth first, so the features it finds come in this order: a
    stripe's query of a tree of its own candidates, sorted by it, gives one process's pairs in their order."""
    import numpy as np
    import shapely

    b = np.concatenate(bounds)
    ok = ~np.isnan(b).any(axis=1)  # empty geometries are not indexed
    boxes = np.full(len(b), None, dtype=object)
    boxes[ok] = shapely.box(b[ok, 0], b[ok, 1], b[ok, 2], b[ok, 3])
    rank = np.full(len(b), -1, dtype=np.int64)
    if ok.any():
        found = shapely.STRtree(boxes).query(shapely.box(*np.nanmin(b[ok, :2], axis=0), *np.nanmax(b[ok, 2:], axis=0)))
        rank[found] = np.arange(len(found))
    return rank


@collecting_rarely
def _tree_order_task(checks: list[dict[str, Any]]) -> np.ndarray | None:
    """:func:`_tree_order` of "after" in the working CRS, the tree one process queries for the pairs of
    "before" and "after" features (None after a failed check: the plan raises)."""
    if not checks or any(c["failed"] for c in checks):
        return None
    return _tree_order([c.get("work_bounds", c["bounds"]) for c in checks])


def _plan(checks_b: list[dict[str, Any]], checks_a: list[dict[str, Any]], *, before: str, after: str, column: str,
          after_column: str | None, classes: list[str] | None, tol: float | None, stripes: int, job: str
          ) -> dict[str, Any]:
    """What every stripe needs: the stripe of each feature (of its bounding-box centre in the working CRS,
    west to east, each stripe about as many features), the boxes, the repaired geometries, the equal-area CRS and the class table. Raises one
    process's error when a check failed."""
    import numpy as np

    from citytwin.planning.change import NONE_CLASS
    from citytwin.planning.overlay import SELF_OVERLAP_TOLERANCE, equal_area_crs_of_bounds

    if not checks_b or not checks_a or any(c["failed"] for c in (*checks_b, *checks_a)):  # (no rows: an empty layer)
        _one_process_checks(before, after, column, after_column, classes, tol or SELF_OVERLAP_TOLERANCE)
        raise InputError("a snapshot did not pass its checks", file=before)  # not reached: one process raises
    bb = np.concatenate([c["bounds"] for c in checks_b])
    ba = np.concatenate([c["bounds"] for c in checks_a])
    baw = np.concatenate([c.get("work_bounds", c["bounds"]) for c in checks_a])

    def extent(checks: list[dict[str, Any]]) -> np.ndarray:  # the layer's WGS84 bounds, as _wgs84_bounds gives them
        w = np.array([c["wgs84"] for c in checks])
        ok = ~np.isnan(w).any(axis=1)
        if not ok.any():
            return np.full(4, np.nan)
        return np.concatenate([w[ok, :2].min(axis=0), w[ok, 2:].max(axis=0)])

    ea = equal_area_crs_of_bounds(np.array([extent(checks_b), extent(checks_a)]))
    # west-east stripes of about as many features each (both snapshots together): the edges are quantiles
    # of the box centres; a feature of no geometry (no box) goes to the first stripe
    centres = np.concatenate([bb[:, 0] + bb[:, 2], baw[:, 0] + baw[:, 2]]) / 2
    edges = np.quantile(centres[~np.isnan(centres)], np.linspace(0, 1, stripes + 1)[1:-1])

    def stripe(b: np.ndarray) -> np.ndarray:
        cx = (b[:, 0] + b[:, 2]) / 2
        return np.where(np.isnan(cx), 0, np.searchsorted(edges, cx, side="right")).astype(np.int64)

    def repaired(checks: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        return (np.concatenate([c["changed"] for c in checks]),
                np.concatenate([c["wkb"] for c in checks]) if checks else np.empty(0, dtype=object))

    table = np.unique(np.concatenate([*(c["classes"] for c in (*checks_b, *checks_a)), [NONE_CLASS]]).astype(str))
    return {"ea": ea, "classes": table, "stripe_b": stripe(bb), "stripe_a": stripe(baw), "bounds_b": bb,
            "bounds_a": ba, "bounds_aw": baw, "same_crs": not any("work_bounds" in c for c in checks_a),
            "repaired_b": repaired(checks_b), "repaired_a": repaired(checks_a)}


# ---------------------------------------------------------------------------------- decoded features
class _Layer:
    """A snapshot's features on a worker, decoded and checked once: geometries in the snapshot's CRS and in
    the working CRS (full-length arrays, filled by rows), classes as text and as their place in the plan's
    class table. The check of a part of the rows puts them here (:meth:`put`); a stripe task decodes the
    rows it needs that no check on this worker had (:meth:`ensure`, after :meth:`setup`)."""

    def __init__(self, src: _Source, column: str) -> None:
        import numpy as np

        self.src, self.column = src, column
        self.work: Any = None  # the working CRS when this snapshot is reprojected to it
        self.fix: dict[int, Any] | None = None
        self.table: np.ndarray | None = None
        self.own = np.full(src.n, None, dtype=object)
        self.geo = self.own
        self.cls = np.full(src.n, None, dtype=object)
        self.codes = np.full(src.n, -1, dtype=np.int32)
        self.have = np.zeros(src.n, dtype=bool)

    def _reproject_to(self, work: Any) -> None:
        import numpy as np

        if self.work is None:
            self.work = work
            self.geo = np.full(self.src.n, None, dtype=object)
            self.have[:] = False  # (rows put without their working-CRS geometries: decoded again)

    def put(self, rows: np.ndarray, geoms: np.ndarray, cls: np.ndarray, in_work: np.ndarray | None,
            work: Any) -> None:
        """Rows checked by :func:`_check_chunk`: their geometries as checked (repaired), their classes, and
        with ``in_work`` the same geometries in the working CRS ``work``."""
        if in_work is not None:
            self._reproject_to(work)
            self.geo[rows] = in_work
        self.own[rows] = geoms
        self.cls[rows] = cls
        self.have[rows] = True

    def setup(self, repaired: tuple[np.ndarray, np.ndarray], work: Any, table: np.ndarray) -> None:
        """What the plan says: the repaired geometries (WKB, by row), the working CRS (None: this
        snapshot's own) and the class table."""
        if self.fix is None:
            self.fix = dict(zip(repaired[0].tolist(), repaired[1], strict=True))
            self.table = table
        if work is not None:
            self._reproject_to(work)

    def ensure(self, rows: np.ndarray) -> None:
        """Rows ``rows`` decoded, repaired as ``check_layer`` repairs them, reprojected to the working CRS."""
        import geopandas as gpd
        import numpy as np
        import shapely

        assert self.fix is not None, "setup() first"
        need = np.flatnonzero(_mask(self.src.n, rows) & ~self.have)
        if not len(need):
            return
        f = self.src.rows(need)
        g = np.asarray(f.geometry.values, dtype=object).copy()
        fix = [k for k, r in enumerate(need.tolist()) if r in self.fix]
        if fix:
            g[fix] = shapely.from_wkb(np.array([self.fix[int(need[k])] for k in fix], dtype=object))
        self.own[need] = g
        if self.work is not None:
            self.geo[need] = np.asarray(gpd.GeoSeries(g, crs=f.crs).to_crs(self.work).values, dtype=object)
        self.cls[need] = f[self.column].astype(str).to_numpy()
        self.have[need] = True

    def code(self, rows: np.ndarray) -> np.ndarray:
        """The classes of decoded rows ``rows`` as their places in the plan's class table."""
        import numpy as np

        assert self.table is not None, "setup() first"
        miss = np.flatnonzero(_mask(self.src.n, rows[self.codes[rows] < 0]))
        if len(miss):
            self.codes[miss] = np.searchsorted(self.table, self.cls[miss].astype(str))
        out: np.ndarray = self.codes[rows]
        return out


def _layer(path: str, column: str, side: int, job: str) -> _Layer:
    """This worker's :class:`_Layer` of one snapshot of the job."""
    return worker_cache(("change-layer", job, side), lambda: _Layer(_source(path, job), column))


def _layers(kw: dict[str, Any], plan: dict[str, Any]) -> tuple[_Layer, _Layer, Any]:
    """This worker's two :class:`_Layer` of the job, set up from the plan, and the working CRS."""
    work = _work_crs(kw["before"], kw["job"])
    lb = _layer(kw["before"], kw["column"], 0, kw["job"])
    la = _layer(kw["after"], kw["after_column"] or kw["column"], 1, kw["job"])
    lb.setup(plan["repaired_b"], None, plan["classes"])
    la.setup(plan["repaired_a"], None if plan["same_crs"] else work, plan["classes"])
    return lb, la, work


def _mask(n: int, *rows: np.ndarray) -> np.ndarray:
    """A mask of ``n`` rows, true at ``rows`` (a set of rows without sorting them: the sets here are a
    large share of a layer)."""
    import numpy as np

    mask = np.zeros(n, dtype=bool)
    for r in rows:
        mask[r] = True
    return mask


def _near(bounds: np.ndarray, of: np.ndarray) -> np.ndarray:
    """The features (ascending) whose box meets the box around the boxes ``of``: every feature that can
    meet one of them (empty geometries, whose box is NaN, never do)."""
    import numpy as np

    of = of[~np.isnan(of).any(axis=1)]
    if not len(of):
        return np.zeros(0, dtype=np.int64)
    lo, hi = of[:, :2].min(axis=0), of[:, 2:].max(axis=0)
    return np.flatnonzero((bounds[:, 0] <= hi[0]) & (bounds[:, 2] >= lo[0]) & (bounds[:, 1] <= hi[1])
                          & (bounds[:, 3] >= lo[1]))


def _prepared(geoms: np.ndarray) -> Any:
    """What the overlay computes once for a set of features (their rings and convexity, a tree of them),
    shared by a stripe's intersections and overlap checks."""
    import shapely

    from citytwin.planning.overlay import _Prepared, _ring_arrays

    return _Prepared(geoms=geoms, rings=_ring_arrays(geoms), tree=shapely.STRtree(geoms))


def _overlap_pairs(prep: Any, cand: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``self_overlap_pairs`` of the whole layer restricted to the pairs whose first feature is in ``own``,
    from ``prep`` (:func:`_prepared`) of the features ``cand`` (ascending; ``own`` and every feature whose box
    meets theirs), sorted by first and then second feature. The verdict reads only their number and largest
    share; when one is refused, one process's checks name the pair (:func:`_verdicts`)."""
    import numpy as np

    from citytwin.planning.overlay import self_overlap_pairs

    i, j, share = self_overlap_pairs(prep, np.searchsorted(cand, own))
    i, j = cand[i], cand[j]
    order = np.lexsort((j, i))
    return i[order], j[order], share[order]


# ------------------------------------------------------------------------------------------ stripes
@collecting_rarely
def _change_stripe(k: int, plan: dict[str, Any], rank: np.ndarray, *, before: str, after: str, column: str,
                   after_column: str | None, classes: list[str] | None, stripes: int, job: str,
                   tol: float | None = None, pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
                   verdicts: tuple[tuple[int, float], tuple[int, float]] | None = None) -> Any:
    """The pieces of the features whose bounding-box centre lies in stripe ``k`` (each feature in one
    stripe), packed (:func:`_pack`) with their place in one process's table (``order``).

    ``rank``: the tree order of "after" in the working CRS (:func:`_tree_order`). Without ``pairs`` (first
    stage): the "before" features' intersections with every neighbour, the stripe's pairs ``(before, after,
    planar area of the piece)``, and the overlaps within each snapshot of the pairs whose first feature lies
    in the stripe (the whole-layer check, split). With ``pairs`` (every stripe's) and ``verdicts`` (second
    stage, after :func:`_verdicts`): what is left of the stripe's "before" and "after" features, their
    coverage summed from the first stage's pieces' areas (each intersection is cut once, in the first stage).
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
        subtract_all,
    )

    overlay.PMAP_THREADS = worker_threads()  # GEOS on the worker's threads, not on every core
    kw = {"before": before, "after": after, "column": column, "after_column": after_column, "job": job}
    lb, la, work = _layers(kw, plan)
    bb, ba, baw = plan["bounds_b"], plan["bounds_a"], plan["bounds_aw"]
    span = max(lb.src.n, la.src.n) + 1
    ea = plan["ea"]
    none = int(np.searchsorted(plan["classes"], NONE_CLASS))

    def frame(fc: Any, tc: Any, bf: Any, af: Any, geoms: np.ndarray, section: int, feature: np.ndarray
              ) -> dict[str, Any]:
        # "order": the piece's place in one process's table (section, then feature; stable within a feature);
        # "from", "to": the classes' places in the plan's class table
        g = np.asarray(geoms, dtype=object)
        area = ea_areas(g, work, ea) if len(g) else np.empty(0)
        keep = area > 0  # pieces of no area (features their intersections cover) are dropped by finish_change
        # in WGS84 as finish_change gives them (GeoSeries.to_crs, point by point: the same coordinates as the
        # client's to_crs of all pieces; nothing to do when the snapshots are in EPSG:4326)
        g = np.asarray(gpd.GeoSeries(g[keep], crs=work).to_crs(4326).values, dtype=object)

        def col(v: Any, dtype: Any) -> np.ndarray:
            return np.asarray(v[keep] if isinstance(v, np.ndarray) else np.full(len(g), v), dtype=dtype)

        return {"from": col(fc, np.int32), "to": col(tc, np.int32), "bf": col(bf, np.int64), "af": col(af, np.int64),
                "area": area[keep], "order": section * span + col(feature, np.int64), "geoms": g}

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

    own_b = np.flatnonzero(plan["stripe_b"] == k)
    own_a = np.flatnonzero(plan["stripe_a"] == k)
    if pairs is None:
        # the stripe's features and their neighbours; the "after" features that may meet its "before" ones
        near_b = np.flatnonzero(_mask(len(bb), _near(bb, bb[own_b]), own_b))
        near_a = np.flatnonzero(_mask(len(ba), _near(ba, ba[own_a]), own_a))
        cand = _near(baw, bb[own_b])
        lb.ensure(near_b)
        la.ensure(np.r_[cand, near_a])
        # rings and trees once per set of features: "before" is in the working CRS; "after" too unless it
        # is reprojected (its overlaps are then checked in its own CRS, as check_layer checks them)
        pb = _prepared(lb.own[near_b])
        cand = np.flatnonzero(_mask(len(ba), cand, near_a)) if la.work is None else cand  # (a larger tree finds the same pairs)
        pa = _prepared(la.geo[cand])
        pa_own, cand_own = (pa, cand) if la.work is None else (_prepared(la.own[near_a]), near_a)
        at = np.searchsorted(near_b, own_b)
        il, jl = pa.tree.query(pb.geoms[at], predicate="intersects")
        order = np.lexsort((rank[cand[jl]], il))  # by "before" feature, then as one process's tree finds them
        il, jl = il[order], jl[order]
        # cut as land_change cuts them (intersect_pairs: the convex fast path, GEOS for the others): the
        # same function on the same pair gives the same piece in any task
        inter = intersect_pairs(pb.geoms, pa.geoms, at[il], jl, (pb.rings, pa.rings))
        ii, jj = own_b[il], cand[jl]
        # the overlaps within each snapshot, of the pairs whose first feature is the stripe's (each pair is
        # checked once, by one stripe)
        checks = (_overlap_pairs(pb, near_b, own_b), _overlap_pairs(pa_own, cand_own, own_a))
        return (_pack([frame(lb.code(ii), la.code(jj), ii, jj, inter, 0, ii)]), (ii, jj, shapely.area(inter)),
                checks)
    assert verdicts is not None
    (accepted_b, _), (accepted_a, _) = verdicts
    # what is left of the "before" features: their pairs are this stripe's of the first stage
    ii, jj, area_b = pairs[k]
    pi, pj, parea = (np.concatenate([p[n] for p in pairs]) for n in range(3))
    local = np.full(la.src.n, -1)
    local[own_a] = np.arange(len(own_a))
    sel = local[pj] >= 0
    lb.ensure(np.r_[own_b, pi[sel]])
    la.ensure(np.r_[own_a, jj])
    left_b = leftovers(lb.geo, own_b, np.searchsorted(own_b, ii), jj, la.geo, area_b, accepted_a)
    # the "after" features' pieces in ascending "before" order: the order one process sums and subtracts them
    order = np.lexsort((pi[sel], pj[sel]))
    jl, ib, area_a = local[pj[sel]][order], pi[sel][order], parea[sel][order]
    left_a = leftovers(la.geo, own_a, jl, ib, lb.geo, area_a, accepted_b)
    return _pack([frame(lb.code(own_b), none, own_b, -1, left_b, 1, own_b),
                  frame(none, la.code(own_a), -1, own_a, left_a, 2, own_a)])


#: the numeric columns a stripe sends back, and the names finish_change knows them by
_COLUMNS = {"bf": "before_feature", "af": "after_feature", "area": "area_m2"}


def _pack(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """A stripe's pieces as numeric arrays only (what pickles without a Python object per piece): the
    geometries as their WKB in one byte buffer with offsets (exact coordinates)."""
    import numpy as np
    import shapely

    out: dict[str, Any] = {k: np.concatenate([f[k] for f in frames])
                           for k in ("from", "to", "bf", "af", "area", "order")}
    wkb = shapely.to_wkb(np.concatenate([f["geoms"] for f in frames]))
    out["offsets"] = np.r_[0, np.cumsum([len(w) for w in wkb], dtype=np.int64)]
    out["wkb"] = np.frombuffer(b"".join(wkb), dtype=np.uint8)
    return out


def _decode(part: dict[str, Any]) -> np.ndarray:
    """The geometries of a task's pieces, from their WKB in one buffer (:func:`_pack`)."""
    import pyarrow as pa
    import shapely

    wkb = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(part["offsets"]) - 1,
                                           [None, pa.py_buffer(part["offsets"]), pa.py_buffer(part["wkb"])])
    out: np.ndarray = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
    return out


def _unpack(parts: list[dict[str, Any]], table: np.ndarray, geoms: list[np.ndarray]) -> pd.DataFrame:
    """The pieces of every stripe in one process's order (one concatenation, one stable argsort of
    ``order``; ``geoms``: each part's geometries (:func:`_decode`), put in that order), as ``land_change``
    has them before ``finish_change``."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    col = {k: np.concatenate([p[k] for p in parts]) for k in ("from", "to", "bf", "af", "area", "order")}
    order = np.argsort(col["order"], kind="stable")
    every = np.concatenate([np.empty(0, dtype=object), *geoms])
    names = pa.array(table, type=pa.large_string())

    # the dtype pandas gives a column of Python strings (as in the frame one process builds)
    dtype = pd.DataFrame({"c": np.array(["x"], dtype=object)})["c"].dtype

    def classes(codes: np.ndarray) -> Any:  # class names from their numbers, without a Python string each
        text = pa.DictionaryArray.from_arrays(pa.array(codes[order]), names).cast(pa.large_string())
        return text.to_numpy(zero_copy_only=False) if isinstance(dtype, np.dtype) else pd.array(text, dtype=dtype)

    return pd.DataFrame({"from_class": classes(col["from"]), "to_class": classes(col["to"]),
                         **{name: col[k][order] for k, name in _COLUMNS.items() if k != "area"},
                         "geometry": every[order], "area_m2": col["area"][order]})


def _verdicts(checks: list[Any], *, before: str, after: str, column: str, after_column: str | None,
              classes: list[str] | None, tol: float | None) -> tuple[tuple[int, float], ...]:
    """The overlap check of each snapshot from its stripes' pairs (:func:`_change_stripe`'s first stage):
    ``((pairs accepted, largest share) of "before", (…) of "after")`` (the pairs of all stripes are those of
    the whole layer's check). A pair overlapping by more than the tolerance: one process's checks run here
    and raise its error (which pair it names follows one process's tree; an overlap in "before" is said
    before anything wrong in "after")."""
    import numpy as np

    from citytwin.planning.overlay import SELF_OVERLAP_TOLERANCE

    tolerance = tol or SELF_OVERLAP_TOLERANCE
    out = []
    for side in (0, 1):
        share = np.concatenate([c[side][2] for c in checks])
        if (share > tolerance).any():
            _one_process_checks(before, after, column, after_column, classes, tolerance)
            raise InputError("a snapshot's features overlap", file=(before, after)[side])  # not reached
        out.append((len(share), float(share.max()) if len(share) else 0.0))
    return tuple(out)


def _first(pair: tuple[Any, ...]) -> Any:
    return pair[0]


def _second(pair: tuple[Any, ...]) -> Any:
    return pair[1]


def _third(pair: tuple[Any, ...]) -> Any:
    return pair[2]


def _ea_and_classes(plan: dict[str, Any]) -> tuple[Any, np.ndarray]:
    return plan["ea"], plan["classes"]


def _rows_of(path: str, job: str) -> int:
    return _source(path, job).n


def _check_inputs(paths: Sequence[str]) -> None:
    """Each snapshot is a file, or one ``s3://`` GeoParquet object (the store's errors name the URL)."""
    from citytwin.foundation.objectstore import object_sizes

    for f in paths:
        if is_url(f):
            if not f.lower().endswith(".parquet"):
                raise InputError("on Dask a snapshot on object storage is one GeoParquet object", file=f,
                                 hint="give s3://BUCKET/…/snapshot.parquet")
            try:  # no such bucket or object, no credentials, no endpoint: said here, naming the object
                object_sizes([f])
            except InputError as exc:
                if exc.file == f:
                    raise
                where = f"file {exc.file}: "
                raise InputError(exc.message[len(where):] if exc.message.startswith(where) else exc.message,
                                 file=f, hint=exc.hint) from None
        elif not Path(f).is_file():
            raise InputError("on Dask the workers read the snapshots from files; file not found", file=f,
                             hint="give the snapshot files (GeoParquet, GeoPackage, GeoJSON ...) or s3:// GeoParquet "
                                  "objects; a catalog dataset is read by one process: run without --dask")


@collecting_rarely  # here too: the client decodes the pieces, and a local cluster's scheduler runs here
def land_change(before: str, after: str, *, dask: str, column: str = "landuse", years: float = 1.0,
                after_column: str | None = None, classes: Sequence[str] | None = None, stripes: int | None = None,
                overlap_tolerance: float | None = None, progress: Progress | None = None) -> Any:
    """:func:`citytwin.planning.change.land_change` of two snapshot files on Dask, split in stripes.

    ``before`` and ``after`` are files (GeoParquet, or anything GeoPandas reads) or ``s3://`` GeoParquet
    objects (read by the workers: :mod:`citytwin.foundation.objectstore`). Every feature is checked once,
    by the task of its rows (a failed check: one process's error, naming file, row and field); every
    feature belongs to the stripe (west to east) of its bounding-box centre, and a stripe task decodes its
    features and their neighbours only (those no check on its worker decoded), cutting the pieces of its features: their intersections with
    every neighbour, then what the neighbours leave of them (two stages, each intersection cut once). A
    stripe's spatial index holds its candidates only; the pairs are put in the order one process's index
    over the whole layer finds them (:func:`_tree_order`), so the pieces and their order are one process's,
    and so are the overlap checks and their errors. No piece is clipped at a stripe edge, each is cut once and exactly
    as one process cuts it, so the pieces, their equal-area areas, the transition matrix and the rates equal
    the single-process result (tests). Pieces of no area are not sent; the others come back as WKB with
    their place in one process's table, already in WGS84.
    """
    import numpy as np
    from pyproj import CRS

    from citytwin.planning.change import finish_change

    parse_dask(dask)
    if not years > 0:
        raise InputError(f"years between snapshots must be > 0, got {years}", field="years")
    _check_inputs([before, after])
    with cluster(dask) as client:
        addresses = sorted(client.scheduler_info(n_workers=-1).get("workers", {}))
        workers = max(1, len(addresses))
        # as many stripes for 1 worker as for 2 (the same work), two a worker beyond
        n = stripes or max(4, 2 * workers)

        def on(k: int, m: int) -> dict[str, Any]:
            # task k of m preferably on worker k * workers // m (neighbouring stripes on one worker, and both
            # stages of a stripe where its features are decoded); any worker when that one is gone
            return {"workers": [addresses[k * workers // m]], "allow_other_workers": True} if addresses else {}

        job = uuid.uuid4().hex
        kw: dict[str, Any] = {"before": before, "after": after, "column": column, "after_column": after_column,
                              "classes": list(classes) if classes is not None else None, "job": job,
                              "tol": overlap_tolerance}
        sizes = run_futures(client, [client.submit(_rows_of, f, job, pure=False, key=k)
                                     for f, k in zip((before, after), task_keys("citytwin-change-rows", 2),
                                                     strict=True)])
        # 1. the per-feature checks, by rows (each feature once); 2. the tree order; 3. the plan
        parts = [(side, int(r[0]), int(r[-1]) + 1) for side, m in enumerate(sizes)
                 for r in np.array_split(np.arange(m), max(1, min(m, 2 * workers))) if len(r)]
        checks = [client.submit(_check_chunk, p, pure=False, key=key, **on(i, len(parts)), **kw)
                  for i, (p, key) in enumerate(zip(parts, task_keys("citytwin-change-check", len(parts)), strict=True))]
        cb, ca = [c for c, p in zip(checks, parts, strict=True) if p[0] == 0], [
            c for c, p in zip(checks, parts, strict=True) if p[0] == 1]
        rank = client.submit(_tree_order_task, ca, pure=False, key=task_keys("citytwin-change-order", 1)[0])
        plan = client.submit(_plan, cb, ca, pure=False, key=task_keys("citytwin-change-plan", 1)[0], stripes=n,
                             **kw)
        kw_s = {**kw, "stripes": n}
        # 4. stage 1: the "before" side's intersections and the overlap checks of every stripe; 5. the checks'
        # verdict (one small task); stage 2: what is left of each side, from stage 1's pairs
        first = [client.submit(_change_stripe, k, pure=False, key=key, plan=plan, rank=rank, **on(k, n), **kw_s)
                 for k, key in enumerate(task_keys("citytwin-change-b", n))]
        pairs = client.map(_second, first, pure=False, key=task_keys("citytwin-change-pairs", n))
        overlaps = client.map(_third, first, pure=False, key=task_keys("citytwin-change-checks", n))
        verdict = client.submit(_verdicts, overlaps, pure=False, key=task_keys("citytwin-change-verdict", 1)[0],
                                **{k: v for k, v in kw.items() if k != "job"})
        second = [client.submit(_change_stripe, k, pure=False, key=key, plan=plan, rank=rank, pairs=pairs,
                                verdicts=verdict, **on(k, n), **kw_s) for k, key in enumerate(task_keys("citytwin-change-a", n))]
        pieces_b = client.map(_first, first, pure=False, key=task_keys("citytwin-change-pieces", n))
        facts = client.submit(_ea_and_classes, plan, pure=False, key=task_keys("citytwin-change-facts", 1)[0])
        total = 2 * n + 2

        def from_(base: int) -> Progress | None:  # the progress of the whole job
            return None if progress is None else (lambda done, _: progress(base + done, total))

        # the first stage's pieces decoded here while the workers run the second stage
        out = run_futures(client, pieces_b, progress=from_(0))
        decoded = [_decode(p) for p in out]
        out += run_futures(client, [*second, verdict, facts], progress=from_(n))
        ea, table = out.pop()
        accepted = out.pop()

    # one process's order: intersections by "before" feature, then what is left of each "before" feature,
    # then of each "after" one (a feature's pieces come from one stripe, in its order: a stable argsort)
    pieces = _unpack(out, table, decoded + [_decode(p) for p in out[n:]])
    warnings = [_overlap_warning(nm, n_, share) for nm, (n_, share) in zip((before, after), accepted, strict=True) if n_]
    # from here as land_change finishes (the pieces came in WGS84, which finish_change then has nothing to do for)
    return finish_change(pieces, CRS.from_epsg(4326), ea, years, warnings)


def _overlap_warning(name: str, pairs: Any, share: Any) -> str:
    """The warning :func:`citytwin.planning.change.land_change` gives for overlaps it accepted in a snapshot
    (worded as there; the Dask test compares the two runs' warnings)."""
    return (f"snapshot {name!r}: {int(pairs)} pair(s) of its features overlap (up to {float(share):.3g} of the "
            "smaller one; accepted by the overlap tolerance): that land is counted once per feature, so the matrix "
            "sums to more than the union")
