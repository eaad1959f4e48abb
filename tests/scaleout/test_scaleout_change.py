"""Land change on Dask: the whole-layer overlap check split over the stripes, read once (issue 19).

Each first-stage stripe checks the pairs of its own features (``self_overlap_pairs(prep, first)``) and one
task (``_verdicts``) reads them as ``check_layer`` reads the whole layer's: the same pairs, the same error,
the same accepted overlaps. The stripes are also run in this process here (the worker cache is a dict
per process), so that what each computes can be compared with the whole-layer check.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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


def test_stripes_checks_are_the_whole_layer_check(tmp_path: Path, change_snapshots,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The pairs the stripes find, concatenated and sorted by first feature, are the whole layer's (in
    the order the verdict reads them), and the verdict raises the error ``check_layer`` raises."""
    import geopandas as gpd

    from citytwin.planning import overlay
    from citytwin.planning.overlay import _check_layer, self_overlap_pairs
    from citytwin.workflows import scaleout_change as sc

    monkeypatch.setattr(overlay, "PMAP_THREADS", None)  # a stripe sets its worker's threads: undone after
    fb, fa = _overlapping(change_snapshots, tmp_path)
    kw = {"before": str(fb), "after": str(fa), "column": "landuse", "after_column": None, "classes": None,
          "stripes": 6, "job": "test-checks", "tol": 0.5}
    firsts = [sc._change_stripe(k, **kw) for k in range(6)]
    checks = [f[2] for f in firsts]
    _, pa = _check_layer(str(fa), gpd.read_parquet(fa), check_overlaps=False)
    whole = self_overlap_pairs(pa)
    assert len(whole[0]) > 10  # the moved features overlap their neighbours
    i, j, share = (np.concatenate([c[1][n] for c in checks]) for n in range(3))
    order = np.argsort(i, kind="stable")
    for got, want in zip((i[order], j[order], share[order]), whole, strict=True):
        np.testing.assert_array_equal(got, want)
    assert sum(len(c[0][0]) for c in checks) == 0  # the "before" grid has none
    # accepted (tolerance 0.5): the counts one process puts in its warning
    one = gpd.read_parquet(fa)
    from citytwin.planning.overlay import check_layer

    checked = check_layer(str(fa), one, overlap_tolerance=0.5)
    verdict = sc._verdicts(checks, before=str(fb), after=str(fa), tol=0.5)
    assert verdict == ((0, 0.0), (checked.attrs["accepted_overlaps"], checked.attrs["largest_overlap_share"]))
    # refused (default tolerance): the same error, naming the same rows
    with pytest.raises(InputError) as want_err:
        check_layer(str(fa), one)
    with pytest.raises(InputError) as got_err:
        sc._verdicts(checks, before=str(fb), after=str(fa), tol=None)
    assert str(got_err.value) == str(want_err.value) and got_err.value.row == want_err.value.row


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
