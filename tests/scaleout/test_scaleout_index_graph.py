"""The pooled index's job submitted whole (docs/scaleout.md, sessions 17-18): each pass's tasks pool the previous pass's
results on the workers and the client waits once; the paths the exact tests do not reach (weights given, errors raised
while pooling, a first pass run again after the prepared values were let go)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError

UNITS, YEARS, COLS = 400, 6, 5


@pytest.fixture(scope="module")
def small_panel(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict[str, Any], Path]:
    """A panel of 400 units x 6 years x 5 indicators (one a cost), a Parquet file per year."""
    rng = np.random.default_rng(17)
    frames = []
    for y in range(YEARS):
        f = pd.DataFrame(rng.lognormal(0, 1.5, (UNITS, COLS)) * 10.0 ** np.arange(COLS),
                         columns=[f"x{j}" for j in range(COLS)])
        f.insert(0, "year", 2010 + y)
        f.insert(0, "unit", [f"u{i:04d}" for i in range(UNITS)])
        frames.append(f)
    panel = pd.concat(frames, ignore_index=True)
    folder = tmp_path_factory.mktemp("graph")
    for y, f in panel.groupby("year", sort=True):
        f.to_parquet(folder / f"year-{y}.parquet", index=False)
    spec = {"id": "unit", "time": "year", "indicators": [
        {"column": f"x{j}", "direction": "negative" if j == 3 else "positive", "weight": 1.0 + j} for j in range(COLS)]}
    return panel, spec, folder


@pytest.mark.parametrize(("method", "options"), [("entropy", {}), ("equal", {}), ("expert", {}),
                                                 ("topsis", {"topsis_weights": "equal"})],
                         ids=["entropy", "equal", "expert", "topsis-equal"])
def test_the_client_waits_once_and_the_result_is_one_process_s(small_panel, dask_address: str, method: str,
                                                               options: dict[str, Any],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pass and reduce task is submitted before the client waits, and it waits once (for the scores and the
    pooled results it reports); weights given (equal, expert) make no task. Bit for bit one process's result."""
    from citytwin.economy.index import composite_index
    from citytwin.foundation import scaleout as fs
    from citytwin.workflows import scaleout, scaleout_index, scaleout_index_passes

    waits: list[int] = []

    def counted(client: Any, futures: Any, **kw: Any) -> list[Any]:
        waits.append(len(futures))
        return fs.run_futures(client, futures, **kw)

    monkeypatch.setattr(scaleout_index_passes, "run_futures", counted)
    monkeypatch.setattr(scaleout_index, "run_futures", counted)
    panel, spec, folder = small_panel
    one = composite_index(panel, spec, method, **options)
    two = scaleout.index(str(folder), spec, method, dask=dask_address, **options)
    pd.testing.assert_frame_equal(one.scores, two.scores, check_exact=True)
    pd.testing.assert_frame_equal(one.weights, two.weights, check_exact=True)
    assert one.options.get("entropy_k") == two.options.get("entropy_k")
    assert one.warnings == two.warnings
    # one wait, for the score task of each shard (2 workers): they carry the pooled results the client reports
    assert waits == [2]


def test_a_reduce_task_s_error_is_one_process_s(small_panel, dask_address: str) -> None:
    """An error found by a reduce task on a worker (entropy's normalised values negative) is raised here as one
    process raises it."""
    from citytwin.economy.index import composite_index
    from citytwin.workflows import scaleout

    panel, spec, folder = small_panel
    with pytest.raises(InputError) as one:
        composite_index(panel, spec, "entropy", shift=-2.0)
    with pytest.raises(InputError) as two:
        scaleout.index(str(folder), spec, "entropy", shift=-2.0, dask=dask_address)
    assert str(two.value) == str(one.value)


def test_one_row_is_refused_by_the_first_reduce_task(tmp_path: Path, dask_address: str) -> None:
    from citytwin.workflows import scaleout

    pd.DataFrame({"unit": ["a"], "year": [2010], "x0": [1.0], "x1": [2.0]}).to_parquet(tmp_path / "p.parquet")
    spec = {"id": "unit", "time": "year", "indicators": [{"column": "x0"}, {"column": "x1"}]}
    with pytest.raises(InputError, match="at least 2 rows"):
        scaleout.index(str(tmp_path / "p.parquet"), spec, "entropy", dask=dask_address)


def test_the_first_pass_run_again_after_the_prepared_values_were_let_go_gives_the_same_bits() -> None:
    """A worker lost mid-job: the scheduler may run the min/max pass again on a shard whose prepared values
    entropy's pass has overwritten with the normalised ones (``_normed(last_raw=True)``); the period gives the
    min/max it gave first (without the kept min/max the pass raises: the values are gone)."""
    from citytwin.workflows.scaleout_index_passes import _minmax_part, _normed, _Period

    rng = np.random.default_rng(5)
    X = np.asfortranarray(rng.lognormal(0, 1, (50, 4)))
    p = _Period(pd.DataFrame({"unit": [f"u{i}" for i in range(50)], "year": 2010}), X, ["w"], 0,
                np.arange(50, dtype=np.int64))
    first = _minmax_part(p)
    expect = X.min(axis=0).copy(), X.max(axis=0).copy()
    _normed(p, first[0], first[1], np.array([True, False, True, True]), 1.0, 0.0, last_raw=True)
    assert p.X is None  # the prepared values were let go (overwritten in place)
    again = _minmax_part(p)
    assert np.array_equal(again[0], expect[0]) and np.array_equal(again[1], expect[1])
    assert again[2:] == (50, ["w"])
