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


def _change_layers(before: str, after: str, column: str, after_column: str | None, classes: list[str] | None,
                   tol: float | None = None) -> dict[str, Any]:
    """Both snapshots read and checked on a worker (once per job), as ``land_change`` prepares them
    (``tol``: its ``overlap_tolerance``, None for the default)."""
    import numpy as np
    import shapely

    from citytwin.planning.change import _classes  # the class check land_change applies
    from citytwin.planning.overlay import SELF_OVERLAP_TOLERANCE, _check_layer, _ring_arrays, equal_area_crs
    from citytwin.workflows.common import read_layer_file  # as workflows.planning reads a layer file

    b, pb = _check_layer(before, read_layer_file(before), overlap_tolerance=tol or SELF_OVERLAP_TOLERANCE)
    a, pa = _check_layer(after, read_layer_file(after), overlap_tolerance=tol or SELF_OVERLAP_TOLERANCE)
    work = b.crs
    gb = np.asarray(b.geometry.values, dtype=object)
    same_crs = bool(a.crs.is_exact_same(work))  # as GeoDataFrame.to_crs decides there is nothing to do
    ga = np.asarray(a.to_crs(work).geometry.values, dtype=object)
    return {# the vertex arrays intersect_pairs needs, computed once per job (check_layer has them already)
            "rings": (pb.rings, pa.rings if same_crs else _ring_arrays(ga)),
            "cb": _classes(b, column, before, classes), "ca": _classes(a, after_column or column, after, classes),
            "ea": equal_area_crs(b, a), "work": work, "gb": gb, "ga": ga,
            # overlaps accepted in the other snapshot: areas cannot decide what is covered (as land_change)
            "ob": a.attrs.get("accepted_overlaps"), "oa": b.attrs.get("accepted_overlaps"),
            "shares": (b.attrs.get("largest_overlap_share"), a.attrs.get("largest_overlap_share")),
            "tb": shapely.STRtree(gb), "ta": shapely.STRtree(ga)}


def _stripe(geoms: np.ndarray, x0: float, x1: float, n: int) -> np.ndarray:
    """The stripe (of ``n`` between ``x0`` and ``x1``) holding each geometry's bounding-box centre."""
    import numpy as np
    import shapely

    b = shapely.bounds(geoms)
    cx = (b[:, 0] + b[:, 2]) / 2
    return np.asarray(np.clip(((cx - x0) / max(x1 - x0, 1e-300) * n).astype(np.int64), 0, n - 1))


def _change_stripe(k: int, *, before: str, after: str, column: str, after_column: str | None,
                   classes: list[str] | None, stripes: int, job: str, tol: float | None = None,
                   pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
                   ) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """The pieces of the features whose bounding-box centre lies in stripe ``k`` (each feature in one stripe),
    geometry as WKB, with their place in one process's table (``order``).

    Without ``pairs`` (first stage): the "before" features' intersections with every neighbour and what
    the neighbours leave of them, and the stripe's pairs ``(before, after, planar area of the piece)``.
    With ``pairs`` (every stripe's, second stage): what is left of the "after" features, their coverage
    summed from those pieces' areas (each intersection is cut once, in the first stage).
    """
    import numpy as np
    import pandas as pd
    import shapely

    from citytwin.planning.change import NONE_CLASS
    from citytwin.planning.overlay import (
        SELF_OVERLAP_TOLERANCE,
        ea_areas,
        intersect_pairs,
        polygonal,
        subtract_all,
    )

    L = worker_cache(("change", job), lambda: _change_layers(before, after, column, after_column, classes, tol))
    gb, ga, cb, ca = L["gb"], L["ga"], L["cb"], L["ca"]
    allb = shapely.bounds(np.concatenate([gb, ga]))
    x0, x1 = float(allb[:, 0].min()), float(allb[:, 2].max())
    span = max(len(gb), len(ga)) + 1

    def frame(fc: Any, tc: Any, bf: Any, af: Any, geoms: np.ndarray, section: int, feature: np.ndarray
              ) -> pd.DataFrame:
        # the geometry as WKB (shapely's pickle is WKB too, one object at a time: 7x slower at 400k pieces);
        # "order": the piece's place in one process's table (section, then feature; stable within a feature)
        g = np.asarray(geoms, dtype=object)
        out = pd.DataFrame({"from_class": fc, "to_class": tc, "before_feature": bf, "after_feature": af,
                            "geometry": shapely.to_wkb(g) if len(g) else np.empty(0, dtype=object),
                            "area_m2": ea_areas(g, L["work"], L["ea"]) if len(g) else np.empty(0),
                            "order": section * span + np.asarray(feature, dtype=np.int64)})
        # pieces of no area (features their intersections cover) are dropped by finish_change: not sent back
        return out[out["area_m2"].to_numpy() > 0]

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

    if pairs is None:
        own_b = np.flatnonzero(_stripe(gb, x0, x1, stripes) == k)
        # pairs of the owned "before" features, in the order one process finds them (by before, then tree order)
        il, jj = L["ta"].query(gb[own_b], predicate="intersects")
        ii = own_b[il]
        # cut as land_change cuts them (intersect_pairs: the convex fast path, GEOS for the others): the
        # same function on the same pair gives the same piece in any task
        inter = intersect_pairs(gb, ga, ii, jj, L["rings"])
        area = shapely.area(inter)
        left_b = leftovers(gb, own_b, il, jj, ga, area, L["ob"])
        return (pd.concat([frame(cb[ii], ca[jj], ii, jj, inter, 0, ii),
                           frame(cb[own_b], NONE_CLASS, own_b, -1, left_b, 1, own_b)], ignore_index=True),
                (ii, jj, area))
    own_a = np.flatnonzero(_stripe(ga, x0, x1, stripes) == k)
    local = np.full(len(ga), -1)
    local[own_a] = np.arange(len(own_a))
    pi, pj, parea = (np.concatenate([p[n] for p in pairs]) for n in range(3))
    sel = local[pj] >= 0
    # the "after" features' pieces in ascending "before" order: the order one process sums and subtracts them
    order = np.lexsort((pi[sel], pj[sel]))
    jl, ib, area_a = local[pj[sel]][order], pi[sel][order], parea[sel][order]
    left_a = leftovers(ga, own_a, jl, ib, gb, area_a, L["oa"])
    return frame(NONE_CLASS, ca[own_a], -1, own_a, left_a, 2, own_a), None


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _second(pair: tuple[Any, Any]) -> Any:
    return pair[1]


def land_change(before: str, after: str, *, dask: str, column: str = "landuse", years: float = 1.0,
                after_column: str | None = None, classes: Sequence[str] | None = None, stripes: int | None = None,
                overlap_tolerance: float | None = None, progress: Progress | None = None) -> Any:
    """:func:`citytwin.planning.change.land_change` of two snapshot files on Dask, split in stripes.

    Every feature belongs to the stripe (west to east) of its bounding-box centre; a task cuts the pieces
    of its features only: their intersections with every neighbour, what the neighbours leave of them
    (two stages: the "before" features' intersections and leftovers, then the "after" features' leftovers,
    their coverage summed from the first stage's pieces). Pieces travel as WKB with their place in one
    process's table (the client: one concatenation, one argsort, one ``shapely.from_wkb``); pieces of no
    area are not sent. No piece is clipped at a stripe edge, each is cut once and exactly as one process cuts it, so the
    pieces, their equal-area areas, the transition matrix and the rates equal the single-process result
    (test). Each worker reads and checks both snapshots once per job (``check_layer``: repairs and the
    within-layer overlap test run on the whole layers, replicated: the part not split yet), with
    ``overlap_tolerance`` as one process (the same warnings when overlaps are accepted).
    """
    import numpy as np
    import pandas as pd
    import shapely

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
        # stage 1: the "before" side of every stripe; stage 2: the "after" side, from stage 1's pairs (small
        # arrays, taken out where they were computed and sent to the other workers)
        first = client.map(_change_stripe, list(range(n)), pure=False, key=task_keys("citytwin-change-b", n), **kw)
        pairs = client.map(_second, first, pure=False, key=task_keys("citytwin-change-pairs", n))
        second = client.map(_change_stripe, list(range(n)), pure=False, key=task_keys("citytwin-change-a", n),
                            pairs=pairs, **kw)
        pieces_b = client.map(_first, first, pure=False, key=task_keys("citytwin-change-pieces", n))
        pieces_a = client.map(_first, second, pure=False, key=task_keys("citytwin-change-left", n))
        parts = run_futures(client, [*pieces_b, *pieces_a], progress=progress)
        work, ea, accepted = client.submit(lambda: _crs_of(before, after, column, after_column, classes, job,
                                                           overlap_tolerance), pure=False).result()

    # one process's order: intersections by "before" feature, then what is left of each "before" feature,
    # then of each "after" one (a feature's pieces come from one stripe, in its order: a stable argsort)
    pieces = pd.concat(parts, ignore_index=True)
    pieces = pieces.take(np.argsort(pieces.pop("order").to_numpy(), kind="stable")).reset_index(drop=True)
    pieces["geometry"] = shapely.from_wkb(pieces["geometry"].to_numpy())
    warnings = [_overlap_warning(nm, n_, share) for nm, (n_, share) in zip((before, after), accepted, strict=True) if n_]
    return finish_change(pieces, work, ea, years, warnings)  # from here as land_change finishes


def _overlap_warning(name: str, pairs: Any, share: Any) -> str:
    """The warning :func:`citytwin.planning.change.land_change` gives for overlaps it accepted in a snapshot
    (worded as there; the Dask test compares the two runs' warnings)."""
    return (f"snapshot {name!r}: {int(pairs)} pair(s) of its features overlap (up to {float(share):.3g} of the "
            "smaller one; accepted by the overlap tolerance): that land is counted once per feature, so the matrix "
            "sums to more than the union")


def _crs_of(before: str, after: str, column: str, after_column: str | None, classes: Sequence[str] | None,
            job: str, tol: float | None = None) -> tuple[Any, Any, list[tuple[Any, Any]]]:
    L = worker_cache(("change", job), lambda: _change_layers(before, after, column, after_column,
                                                             list(classes) if classes is not None else None, tol))
    # the overlaps accepted within each snapshot: (pairs, largest share), before then after
    return L["work"], L["ea"], [(L["oa"], L["shares"][0]), (L["ob"], L["shares"][1])]
