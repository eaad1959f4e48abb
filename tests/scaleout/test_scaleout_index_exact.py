"""The pooled index on Dask is bit-identical to one process (issue 19), for any number of workers and any layout.

A generated panel of 36,000 unit-years whose 12 indicators span magnitudes from 1e-6 to 1e12 (lognormal
with a wide spread), so that sums taken in another order (one column sum over all rows against
per-period sums added on the client, or a strided against a contiguous sum) round differently: before
:mod:`citytwin.economy.sums` (main at 2a5433f) every test here failed, the weights differing by up to 1e-13
(PCA; entropy 1e-14, CRITIC 3e-16) and the scores by up to 1e-13 (ranks still equal at this size).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

UNITS, YEARS, COLS = 3000, 12, 12


@pytest.fixture(scope="module")
def wide_panel(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict[str, Any], Path, Path]:
    """The panel (rows by year, units in order), its spec (2 dimensions, 3 cost indicators), and two Parquet
    layouts of it: a file per year; and its rows shuffled into 3 files of 700-row groups (every period in
    every file, spread over many row groups)."""
    rng = np.random.default_rng(19)
    scale = 10.0 ** rng.uniform(-6, 12, COLS)
    base = rng.lognormal(0, 2.5, (UNITS, COLS)) * scale
    frames = []
    for y in range(YEARS):
        vals = base * (1.03 ** y) * rng.lognormal(0, 0.4, (UNITS, COLS))
        f = pd.DataFrame(vals, columns=[f"x{j}" for j in range(COLS)])
        f.insert(0, "year", 2000 + y)
        f.insert(0, "unit", [f"u{i:05d}" for i in range(UNITS)])
        frames.append(f)
    panel = pd.concat(frames, ignore_index=True)
    root = tmp_path_factory.mktemp("wide")
    by_year, shuffled = root / "by_year", root / "shuffled"
    by_year.mkdir()
    shuffled.mkdir()
    for y, f in panel.groupby("year", sort=True):
        f.to_parquet(by_year / f"year-{y}.parquet", index=False)
    mixed = panel.sample(frac=1.0, random_state=3).reset_index(drop=True)
    for i, rows in enumerate(np.array_split(np.arange(len(mixed)), 3)):
        mixed.iloc[rows].to_parquet(shuffled / f"part-{i}.parquet", index=False, row_group_size=700)

    def ind(j: int) -> dict[str, Any]:
        return {"column": f"x{j}", "direction": "negative" if j % 4 == 3 else "positive", "weight": 1.0 + j % 3}

    spec = {"id": "unit", "time": "year", "dimensions": [
        {"name": "a", "weight": 0.6, "indicators": [ind(j) for j in range(0, 7)]},
        {"name": "b", "weight": 0.4, "indicators": [ind(j) for j in range(7, COLS)]}]}
    return panel, spec, by_year, shuffled


def _same(one: Any, two: Any) -> None:
    pd.testing.assert_frame_equal(one.scores, two.scores, check_exact=True)
    pd.testing.assert_frame_equal(one.weights, two.weights, check_exact=True)
    assert one.diagnostics == two.diagnostics
    assert one.options.get("entropy_k") == two.options.get("entropy_k")


CASES: list[tuple[str, dict[str, Any]]] = [
    ("entropy", {}),
    ("critic", {}),
    ("pca", {}),
    ("topsis", {}),  # vector normalisation (pooled sums of squares), entropy weights
    ("combined", {"combine_with": "entropy", "alpha": 0.3, "scale": 0.99, "shift": 0.01}),
]


@pytest.mark.parametrize(("method", "options"), CASES, ids=[c[0] for c in CASES])
def test_pooled_index_on_dask_is_bit_identical_to_one_process(wide_panel, dask_address: str, method: str,
                                                              options: dict[str, Any]) -> None:
    from citytwin.economy.index import composite_index
    from citytwin.workflows import scaleout

    panel, spec, by_year, _ = wide_panel
    one = composite_index(panel, spec, method, **options)
    _same(one, scaleout.index(str(by_year), spec, method, dask=dask_address, **options))


def test_the_rows_layout_does_not_change_a_bit(wide_panel, dask_address: str) -> None:
    """Periods interleaved in every file and row group: one process over the shuffled panel and Dask over its
    Parquet parts give the same bits (each period's rows are summed in the panel's order on both; the same
    rows in another order may round otherwise, as any sum does)."""
    from citytwin.economy.index import composite_index
    from citytwin.workflows import scaleout

    panel, spec, _, shuffled = wide_panel
    mixed = pd.concat([pd.read_parquet(f) for f in sorted(shuffled.glob("*.parquet"))], ignore_index=True)
    one = composite_index(mixed, spec, "critic")
    _same(one, scaleout.index(str(shuffled), spec, "critic", dask=dask_address))
    assert len(one.scores) == len(panel)


@pytest.mark.parametrize("workers", [1, 3])
def test_the_number_of_workers_does_not_change_a_bit(wide_panel, workers: int) -> None:
    """``local:1`` (all periods in one shard) and ``local:3`` (another partition of the 12 periods)."""
    from citytwin.economy.index import composite_index
    from citytwin.workflows import scaleout

    panel, spec, by_year, _ = wide_panel
    for method in ("entropy", "pca"):
        _same(composite_index(panel, spec, method), scaleout.index(str(by_year), spec, method, dask=f"local:{workers}"))
