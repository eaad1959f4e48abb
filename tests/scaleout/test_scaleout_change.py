"""Land change on Dask: the whole-layer overlap check split over the stripes, read once (issue 19).

Each first-stage stripe checks the pairs of its own features (``self_overlap_pairs(prep, first)``) and one
task (``_verdicts``) reads them as ``check_layer`` reads the whole layer's: the same pairs, the same accepted
overlaps, and for a refused one the same error (one process's checks run then). The stripes are also run in this process here (the worker cache is a dict
per process), so that what each computes can be compared with the whole-layer check.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError


def _overlapping(make: Callable[..., tuple[Path, Path]], tmp_path: Path, crs: int = 4326, shift: float = 0.4
                 ) -> tuple[Path, Path]:
    """The generated snapshots with some "after" features moved onto their neighbours (overlaps of up to
    ``shift`` of a feature), in ``crs``."""
    import geopandas as gpd
    import shapely

    fb, fa = make(tmp_path, n=1600)
    a = gpd.read_parquet(fa)
    moved = np.arange(7, len(a), 97)
    d = 0.001 * shift
    a.loc[moved, "geometry"] = shapely.transform(a.geometry.values[moved], lambda xy: xy + np.array([d, 0.0]))
    b = gpd.read_parquet(fb)
    out = tmp_path / f"moved-{crs}"
    out.mkdir()
    fb2, fa2 = out / "before.parquet", out / "after.parquet"
    b.to_crs(crs).to_parquet(fb2)
    a.to_crs(crs).to_parquet(fa2)
    return fb2, fa2


def _in_process(fb: Path, fa: Path, stripes: int, job: str, tol: float | None = None, workers: int = 2,
                classes: list[str] | None = None, second: bool = False,
                after_checks: Callable[[], None] | None = None) -> dict[str, Any]:
    """The tasks of ``scaleout_change.land_change`` run in this process, in its order (checks by rows, tree
    order, plan, first stage; with ``second`` the verdict and the second stage), with what each gave;
    ``after_checks()`` is called between the checks and the rest."""
    from citytwin.workflows import scaleout_change as sc

    kw = {"before": str(fb), "after": str(fa), "column": "landuse", "after_column": None, "classes": classes,
          "job": job, "tol": tol}
    sizes = [sc._rows_of(str(f), job) for f in (fb, fa)]
    parts = [(side, int(r[0]), int(r[-1]) + 1) for side, m in enumerate(sizes)
             for r in np.array_split(np.arange(m), 2 * workers)]
    checks = [sc._check_chunk(p, **kw) for p in parts]
    cb = [c for c, p in zip(checks, parts, strict=True) if p[0] == 0]
    ca = [c for c, p in zip(checks, parts, strict=True) if p[0] == 1]
    out: dict[str, Any] = {"parts": parts, "checks": checks}
    if any(c["failed"] for c in checks):
        return out
    if after_checks is not None:
        after_checks()
    rank = sc._tree_order_task(ca)
    plan = sc._plan(cb, ca, stripes=stripes, **kw)
    out.update(rank=rank, plan=plan,
               firsts=[sc._change_stripe(k, plan, rank, stripes=stripes, **kw) for k in range(stripes)])
    if second:
        verdict = sc._verdicts([f[2] for f in out["firsts"]], **{k: v for k, v in kw.items() if k != "job"})
        pairs = [f[1] for f in out["firsts"]]
        out["seconds"] = [sc._change_stripe(k, plan, rank, stripes=stripes, pairs=pairs, verdicts=verdict, **kw)
                          for k in range(stripes)]
    return out


def test_stripes_checks_are_the_whole_layer_check(tmp_path: Path, change_snapshots,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The pairs the stripes find, concatenated, are the whole layer's (sorted by both features: the stripes
    no longer put them in the whole layer's tree order, which only the error's choice of pair needs, and a
    refused overlap has one process's checks name it), and the verdict raises the error ``check_layer``
    raises."""
    import geopandas as gpd

    from citytwin.planning import overlay
    from citytwin.planning.overlay import _check_layer, self_overlap_pairs
    from citytwin.workflows import scaleout_change as sc

    monkeypatch.setattr(overlay, "PMAP_THREADS", None)  # a stripe sets its worker's threads: undone after
    fb, fa = _overlapping(change_snapshots, tmp_path)
    firsts = _in_process(fb, fa, 6, "test-checks", tol=0.5)["firsts"]
    checks = [f[2] for f in firsts]
    _, pa = _check_layer(str(fa), gpd.read_parquet(fa), check_overlaps=False)
    whole = self_overlap_pairs(pa)
    assert len(whole[0]) > 10  # the moved features overlap their neighbours
    i, j, share = (np.concatenate([c[1][n] for c in checks]) for n in range(3))
    order, want_order = np.lexsort((j, i)), np.lexsort((whole[1], whole[0]))
    for got, want in zip((i[order], j[order], share[order]), (w[want_order] for w in whole), strict=True):
        np.testing.assert_array_equal(got, want)
    assert sum(len(c[0][0]) for c in checks) == 0  # the "before" grid has none
    # accepted (tolerance 0.5): the counts one process puts in its warning
    one = gpd.read_parquet(fa)
    from citytwin.planning.overlay import check_layer

    checked = check_layer(str(fa), one, overlap_tolerance=0.5)
    kw = {"before": str(fb), "after": str(fa), "column": "landuse", "after_column": None, "classes": None}
    verdict = sc._verdicts(checks, **kw, tol=0.5)
    assert verdict == ((0, 0.0), (checked.attrs["accepted_overlaps"], checked.attrs["largest_overlap_share"]))
    # refused (default tolerance): the same error, naming the same rows
    with pytest.raises(InputError) as want_err:
        check_layer(str(fa), one)
    with pytest.raises(InputError) as got_err:
        sc._verdicts(checks, **kw, tol=None)
    assert str(got_err.value) == str(want_err.value) and got_err.value.row == want_err.value.row


def test_a_stripe_decodes_no_row_its_worker_checked(tmp_path: Path, change_snapshots,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks leave the checked rows on their worker (here: this process checks every row), so the
    stripes of both stages decode nothing again; the pieces they send are those of a run on a fresh
    process cache, where every stripe decodes its rows."""
    from citytwin.planning import overlay
    from citytwin.workflows import scaleout_change as sc

    monkeypatch.setattr(overlay, "PMAP_THREADS", None)  # a stripe sets its worker's threads: undone after
    fb, fa = _overlapping(change_snapshots, tmp_path)
    decoded: list[int] = []
    rows = sc._Source.rows

    def counting(self: Any, idx: np.ndarray) -> Any:
        decoded.append(len(idx))
        return rows(self, idx)

    def count() -> None:
        monkeypatch.setattr(sc._Source, "rows", counting)

    run = _in_process(fb, fa, 4, "test-decoded", tol=0.5, second=True, after_checks=count)
    assert not any(decoded), decoded  # (the working CRS is read from an empty selection)
    # the same stripes where no check ran: every row decoded by a stripe, the same pieces
    from citytwin.foundation import scaleout as fs

    fresh = _in_process(fb, fa, 4, "test-decoded", tol=0.5, second=True, after_checks=fs._CACHE.clear)
    assert sum(decoded) >= 2 * 1600
    for got, want in zip([f[0] for f in run["firsts"]] + run["seconds"],
                         [f[0] for f in fresh["firsts"]] + fresh["seconds"], strict=True):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_a_stripe_tree_in_one_process_order_gives_the_whole_tree_query() -> None:
    """A query of a tree over a stripe's candidates, its pairs sorted by input and then by each feature's
    place in the whole layer's tree (``_tree_order``: a tree of the boxes), gives the whole tree's pairs in
    their order (GEOS's STR tree is queried depth first)."""
    import shapely

    from citytwin.workflows.scaleout_change import _near, _tree_order

    rng = np.random.default_rng(7)
    x, y = rng.random(5000) * 100, rng.random(5000) * 100
    layer = shapely.box(x, y, x + rng.random(5000) * 3, y + rng.random(5000) * 3)
    layer[17] = shapely.Polygon()  # not indexed
    qx = rng.random(800) * 100
    queries = shapely.box(qx, qx * 0, qx + 2, qx * 0 + 100)
    want_i, want_j = shapely.STRtree(layer).query(queries, predicate="intersects")
    assert (np.diff(want_j)[np.diff(want_i) == 0] < 0).any()  # the whole tree's order is not the features' order
    rank = _tree_order([shapely.bounds(layer)])
    cand = _near(shapely.bounds(layer), shapely.bounds(queries))
    il, jl = shapely.STRtree(layer[cand]).query(queries, predicate="intersects")
    order = np.lexsort((rank[cand[jl]], il))
    np.testing.assert_array_equal(il[order], want_i)
    np.testing.assert_array_equal(cand[jl[order]], want_j)


@pytest.mark.parametrize("crs", [4326, 3067])
def test_land_change_with_accepted_overlaps_equals_one_process(tmp_path: Path, dask_address: str, crs: int,
                                                                change_snapshots) -> None:
    """Overlaps accepted by the tolerance change which features are cut (areas cannot decide): the second
    stage gets the verdict. In a projected CRS the workers send the pieces in WGS84 (as finish_change
    gives them). Pieces, geometries, matrix, rates and warnings equal one process's."""
    import geopandas as gpd

    from citytwin.planning.change import land_change
    from citytwin.workflows import scaleout_change

    fb, fa = _overlapping(change_snapshots, tmp_path, crs)
    one = land_change(gpd.read_parquet(fb), gpd.read_parquet(fa), years=5, names=(str(fb), str(fa)),
                      overlap_tolerance=0.5)
    two = scaleout_change.land_change(str(fb), str(fa), years=5, dask=dask_address, stripes=5,
                                      overlap_tolerance=0.5)
    assert len(one.warnings) == 1 and two.warnings == one.warnings
    pd.testing.assert_frame_equal(pd.DataFrame(one.pieces.drop(columns="geometry")),
                                  pd.DataFrame(two.pieces.drop(columns="geometry")), check_exact=True)
    assert one.pieces.crs == two.pieces.crs
    assert one.pieces.geometry.geom_equals_exact(two.pieces.geometry, tolerance=0).all()
    pd.testing.assert_frame_equal(one.matrix, two.matrix, check_exact=True)
    pd.testing.assert_frame_equal(one.rates, two.rates, check_exact=True)


def test_land_change_errors_are_one_process_errors(tmp_path: Path, dask_address: str, change_snapshots) -> None:
    """An overlap refused, and a bad class together with an overlap in "before" (one process names the
    overlap first): the Dask run raises the error one process raises."""
    import geopandas as gpd

    from citytwin.planning.change import land_change
    from citytwin.workflows import scaleout_change

    fb, fa = _overlapping(change_snapshots, tmp_path)
    with pytest.raises(InputError) as want:
        land_change(gpd.read_parquet(fb), gpd.read_parquet(fa), names=(str(fb), str(fa)))
    with pytest.raises(InputError) as got:
        scaleout_change.land_change(str(fb), str(fa), dask=dask_address, stripes=4)
    assert str(got.value) == str(want.value) and "overlap" in str(got.value)
    # "after" as "before" (its overlaps said first), and a class the list does not know
    with pytest.raises(InputError) as want:
        land_change(gpd.read_parquet(fa), gpd.read_parquet(fb), names=(str(fa), str(fb)), classes=["farm"])
    with pytest.raises(InputError) as got:
        scaleout_change.land_change(str(fa), str(fb), dask=dask_address, stripes=4, classes=["farm"])
    assert str(got.value) == str(want.value) and "overlap" in str(got.value)
    with pytest.raises(InputError) as got:
        scaleout_change.land_change(str(fb), str(fb), dask=dask_address, stripes=4, classes=["farm"])
    assert "unknown land-use class" in str(got.value)


def _crossing(make: Callable[..., tuple[Path, Path]], tmp_path: Path) -> tuple[Path, Path]:
    """The generated snapshots with the southern row of "before" squares made one long rectangle (one
    feature across every stripe) and an "after" feature drawn as a bow tie (invalid: repaired by the check)."""
    import geopandas as gpd
    import shapely

    fb, fa = make(tmp_path, n=1600)
    b, a = gpd.read_parquet(fb), gpd.read_parquet(fa)
    row = np.flatnonzero(np.isclose(b.geometry.bounds["miny"].to_numpy(), 60.0))
    b.loc[row[0], "geometry"] = shapely.box(*b.geometry.values[row].total_bounds)
    b = b.drop(index=row[1:]).reset_index(drop=True)
    p = shapely.get_coordinates(a.geometry.values[900])
    a.loc[900, "geometry"] = shapely.Polygon(p[[0, 2, 1, 3]])  # its corners in a bow tie (inside it)
    out = tmp_path / "crossing"
    out.mkdir()
    b.to_parquet(out / "before.parquet")
    a.to_parquet(out / "after.parquet")
    return out / "before.parquet", out / "after.parquet"


def test_a_feature_across_stripes_and_a_repaired_one_equal_one_process(tmp_path: Path, dask_address: str,
                                                                      change_snapshots) -> None:
    """A "before" feature across every stripe (cut against all its neighbours by one stripe, read by the
    others as a neighbour) and an invalid "after" feature, repaired once by the check of its rows and sent to
    the stripes as WKB: pieces, geometries, matrix and rates equal one process's."""
    import geopandas as gpd
    import shapely

    from citytwin.planning.change import land_change
    from citytwin.workflows import scaleout_change

    fb, fa = _crossing(change_snapshots, tmp_path)
    assert not shapely.is_valid(gpd.read_parquet(fa).geometry.values[900])
    run = _in_process(fb, fa, 5, "test-crossing")
    assert [len(c["changed"]) for c in run["checks"]] == [0, 0, 0, 0, 0, 0, 1, 0]  # checked once, by its rows
    long = int(np.argmax(shapely.area(gpd.read_parquet(fb).geometry.values)))
    assert run["plan"]["stripe_b"][long] in range(5)
    one = land_change(gpd.read_parquet(fb), gpd.read_parquet(fa), years=5, names=(str(fb), str(fa)))
    two = scaleout_change.land_change(str(fb), str(fa), years=5, dask=dask_address, stripes=5)
    assert (one.pieces["before_feature"] == long).sum() > 30  # cut against a whole row of neighbours
    pd.testing.assert_frame_equal(pd.DataFrame(one.pieces.drop(columns="geometry")),
                                  pd.DataFrame(two.pieces.drop(columns="geometry")), check_exact=True)
    assert one.pieces.geometry.geom_equals_exact(two.pieces.geometry, tolerance=0).all()
    pd.testing.assert_frame_equal(one.matrix, two.matrix, check_exact=True)
    pd.testing.assert_frame_equal(one.rates, two.rates, check_exact=True)


@pytest.mark.parametrize("case", ["class", "geometry"])
def test_a_check_failing_in_one_part_is_one_process_error(tmp_path: Path, dask_address: str, change_snapshots,
                                                          case: str) -> None:
    """A bad feature in the eastern rows of one snapshot (an unknown class; a point): only the check of its
    rows fails, and the Dask run raises one process's error, naming the file, the row and the field."""
    import geopandas as gpd
    import shapely

    from citytwin.planning.change import land_change
    from citytwin.workflows import scaleout_change

    fb, fa = change_snapshots(tmp_path, n=1600)
    a = gpd.read_parquet(fa)
    if case == "class":
        a.loc[1234, "landuse"] = "airport"
    else:
        a.loc[1234, "geometry"] = shapely.Point(25.0, 60.2)
    a.to_parquet(fa)
    classes = ["farm", "forest", "construction", "water"]
    run = _in_process(fb, fa, 4, f"test-fail-{case}", classes=classes)
    assert [c["failed"] for c in run["checks"]] == [False] * 7 + [True]
    with pytest.raises(InputError) as want:
        land_change(gpd.read_parquet(fb), gpd.read_parquet(fa), names=(str(fb), str(fa)), classes=classes)
    with pytest.raises(InputError) as got:
        scaleout_change.land_change(str(fb), str(fa), dask=dask_address, stripes=4, classes=classes)
    assert str(got.value) == str(want.value)
    assert (got.value.file, got.value.row, got.value.field) == (str(fa), 1235, "landuse" if case == "class" else "geometry")


def test_a_worker_killed_mid_job_is_retried_and_the_result_identical(tmp_path: Path, dask_address: str,
                                                                     change_snapshots) -> None:
    """A worker killed while the second stage runs: its tasks (and the results it held: plan, tree orders,
    pairs) are redone on the other worker or its restarted process, which decodes its rows afresh; the
    result equals one process's."""
    import os
    import signal

    import geopandas as gpd
    from distributed import Client

    from citytwin.planning.change import land_change
    from citytwin.workflows import scaleout_change

    fb, fa = change_snapshots(tmp_path, n=2500)
    one = land_change(gpd.read_parquet(fb), gpd.read_parquet(fa), years=5, names=(str(fb), str(fa)))
    watcher = Client(dask_address, set_as_default=False)
    killed: list[int] = []
    try:
        pids = watcher.run(os.getpid)

        def kill_one(done: int, total: int) -> None:
            if done == 1 and not killed:  # the first stripe's pieces are in: kill a busy worker (else any)
                busy = [a for a, keys in watcher.processing().items() if keys] or list(pids)
                killed.append(pids[busy[0]])
                os.kill(pids[busy[0]], signal.SIGKILL)

        two = scaleout_change.land_change(str(fb), str(fa), years=5, dask=dask_address, progress=kill_one)
    finally:
        watcher.close()
    assert killed, "no worker was killed"
    pd.testing.assert_frame_equal(pd.DataFrame(one.pieces.drop(columns="geometry")),
                                  pd.DataFrame(two.pieces.drop(columns="geometry")), check_exact=True)
    assert one.pieces.geometry.geom_equals_exact(two.pieces.geometry, tolerance=0).all()
    pd.testing.assert_frame_equal(one.matrix, two.matrix, check_exact=True)


def test_an_empty_snapshot_is_one_process_error(tmp_path: Path, dask_address: str, change_snapshots) -> None:
    import geopandas as gpd

    from citytwin.planning.change import land_change
    from citytwin.workflows import scaleout_change

    fb, _ = change_snapshots(tmp_path, n=100)
    empty = tmp_path / "empty.parquet"
    gpd.GeoDataFrame({"landuse": []}, geometry=[], crs=4326).to_parquet(empty)
    with pytest.raises(InputError) as want:
        land_change(gpd.read_parquet(fb), gpd.read_parquet(empty), names=(str(fb), str(empty)))
    with pytest.raises(InputError) as got:
        scaleout_change.land_change(str(fb), str(empty), dask=dask_address)
    assert str(got.value) == str(want.value) and "empty" in str(got.value)


def test_snapshots_in_two_crs_one_not_geoparquet_equal_one_process(tmp_path: Path, dask_address: str,
                                                                    change_snapshots) -> None:
    """"before" a GeoPackage in EPSG:3067 (read whole by each worker), "after" GeoParquet in EPSG:4326 with
    accepted overlaps: "after" is cut in the working CRS (3067) and its overlaps checked in its own, the
    checks keep both on their worker; the result equals one process's (files read as the workflow reads them)."""
    from citytwin.planning.change import land_change
    from citytwin.workflows import scaleout_change
    from citytwin.workflows.common import read_layer_file

    fb, fa = _overlapping(change_snapshots, tmp_path)
    gpkg = tmp_path / "before-3067.gpkg"
    read_layer_file(fb).to_crs(3067).to_file(gpkg)
    one = land_change(read_layer_file(gpkg), read_layer_file(fa), years=5, names=(str(gpkg), str(fa)),
                      overlap_tolerance=0.5)
    two = scaleout_change.land_change(str(gpkg), str(fa), years=5, dask=dask_address, stripes=3,
                                      overlap_tolerance=0.5)
    assert len(one.warnings) == 1 and two.warnings == one.warnings
    pd.testing.assert_frame_equal(pd.DataFrame(one.pieces.drop(columns="geometry")),
                                  pd.DataFrame(two.pieces.drop(columns="geometry")), check_exact=True)
    assert one.pieces.geometry.geom_equals_exact(two.pieces.geometry, tolerance=0).all()
    pd.testing.assert_frame_equal(one.matrix, two.matrix, check_exact=True)
    pd.testing.assert_frame_equal(one.rates, two.rates, check_exact=True)


def test_rare_collections_nest_and_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's thresholds are raised while any block runs and restored when the last one ends
    (in any order); a collector switched off (threshold 0) is left so."""
    import gc

    from citytwin.foundation import collector as sc

    old = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        outer, inner = sc.rare_collections(), sc.rare_collections()
        outer.__enter__()
        assert gc.get_threshold() == (sc.GC_THRESHOLD0, 10, 10)
        inner.__enter__()
        outer.__exit__(None, None, None)  # the first to start ends first: the other still runs
        assert gc.get_threshold() == (sc.GC_THRESHOLD0, 10, 10)
        inner.__exit__(None, None, None)
        assert gc.get_threshold() == (700, 10, 10)
        with pytest.raises(ValueError), sc.rare_collections():
            raise ValueError("a failing task")
        assert gc.get_threshold() == (700, 10, 10)
        gc.set_threshold(0, 10, 10)
        with sc.rare_collections():
            assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*old)
