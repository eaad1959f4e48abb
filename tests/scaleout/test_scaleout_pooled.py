"""Pooled TOPSIS, CRITIC, PCA and combined indices on a 2-worker Dask cluster = the single-process run, bit for bit.

The real city panel (287 cities x 2004-2012) is split into 3 Parquet parts; the Dask run reduces
per-period partial sums (min/max, column sums, centred cross-products, sums of squares, TOPSIS ideal
points) on the client. One process takes every pooled sum the same way (per period, then the periods
in order: :mod:`citytwin.economy.sums`), so weights, scores, ranks and diagnostics are compared exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.scaleout.conftest import NEGATIVE

from citytwin.foundation.errors import InputError


@pytest.fixture(scope="module")
def panel_parts(city_panel) -> tuple[pd.DataFrame, Path, dict]:
    """The real city panel as 3 Parquet parts (conftest), with 2 dimensions and 2 cost indicators."""
    panel, folder, cols = city_panel

    def ind(j: int, c: str) -> dict[str, Any]:
        return {"column": c, "direction": "negative" if c in NEGATIVE else "positive", "weight": 1.0 + (j % 3)}

    spec = {"id": "城市", "time": "年份", "dimensions": [
        {"name": "economy", "weight": 0.7, "indicators": [ind(j, c) for j, c in enumerate(cols) if c not in NEGATIVE]},
        {"name": "environment", "weight": 0.3, "indicators": [ind(j, c) for j, c in enumerate(cols) if c in NEGATIVE]}]}
    return panel, folder, spec


CASES: list[tuple[str, dict[str, Any]]] = [
    ("critic", {}),
    ("pca", {}),
    ("pca", {"pca_min_cumulative": 0.8}),
    ("topsis", {}),  # vector normalisation, entropy weights
    ("topsis", {"topsis_normalisation": "minmax", "topsis_weights": "critic"}),
    ("topsis", {"topsis_weights": "pca"}),
    ("combined", {"combine_with": "critic", "combine_method": "multiplicative"}),
    ("combined", {"combine_with": "entropy", "alpha": 0.3}),
    # entropy's passes on the shifted values, the scores on the plain min-max ones: the workers keep the
    # prepared values for the scores (without scale or shift they let them go after entropy's first pass)
    ("entropy", {"scale": 0.99, "shift": 0.01}),
]


@pytest.mark.shared_data
@pytest.mark.parametrize(("method", "options"), CASES, ids=[f"{m}-{'-'.join(map(str, o.values())) or 'default'}"
                                                          for m, o in CASES])
def test_pooled_method_on_dask_equals_one_process(panel_parts, dask_address: str, method: str,
                                                  options: dict[str, Any]) -> None:
    from citytwin.economy.index import composite_index
    from citytwin.workflows import scaleout

    panel, folder, spec = panel_parts
    one = composite_index(panel, spec, method, **options)
    two = scaleout.index(str(folder), spec, method, dask=dask_address, **options)
    assert one.scores.columns.tolist() == two.scores.columns.tolist()
    pd.testing.assert_frame_equal(one.scores, two.scores, check_exact=True)  # scores, dimensions, ranks: every bit
    pd.testing.assert_frame_equal(one.weights, two.weights, check_exact=True)
    assert two.weights["weight"].sum() == pytest.approx(1.0, abs=1e-12)
    assert two.options["n_rows"] == one.options["n_rows"] == 1989
    assert one.diagnostics == two.diagnostics  # PCA's eigenvalues, KMO, Bartlett: equal
    for k in ("topsis_normalisation", "topsis_weights", "combine_with", "entropy_k"):
        assert two.options.get(k) == one.options.get(k), k


@pytest.mark.shared_data
def test_per_year_topsis_options_reach_the_workers(panel_parts, dask_address: str) -> None:
    """``topsis_normalisation``/``topsis_weights`` used to be dropped on the per-year path."""
    from citytwin.economy.index import composite_index
    from citytwin.workflows import scaleout

    panel, folder, spec = panel_parts
    opts: dict[str, Any] = {"topsis_normalisation": "minmax", "topsis_weights": "critic"}
    one = composite_index(panel, spec, "topsis", scope="per_year", **opts)
    two = scaleout.index(str(folder), spec, "topsis", scope="per_year", dask=dask_address, **opts)
    pd.testing.assert_frame_equal(one.scores, two.scores, check_exact=True)
    vector = composite_index(panel, spec, "topsis", scope="per_year")
    assert not np.allclose(vector.scores["score"], two.scores["score"])  # the options made a difference


def test_sum_normalised_entropy_is_refused_pooled(tmp_path: Path) -> None:
    from citytwin.workflows import scaleout

    pd.DataFrame({"c": ["a", "b"], "y": [1, 1], "x": [1.0, 2.0]}).to_parquet(tmp_path / "p.parquet")
    spec = {"id": "c", "time": "y", "indicators": [{"column": "x"}]}
    with pytest.raises(InputError, match="sum normalisation") as e:
        scaleout.index(str(tmp_path / "p.parquet"), spec, "topsis", normalisation="sum", dask="local:1")
    assert e.value.field == "normalisation"


@pytest.mark.shared_data
def test_cli_pooled_pca_index_on_dask_equals_one_process(panel_parts, dask_address: str, tmp_path: Path) -> None:
    """``citytwin economy index --method pca --dask``: scores.csv and weights.csv as one process writes them
    (every number exactly), where pooled PCA was refused before."""
    import yaml
    from typer.testing import CliRunner

    from citytwin.cli.main import app

    panel, folder, spec = panel_parts
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    panel.to_parquet(tmp_path / "panel.parquet")
    runner = CliRunner()
    for name, src, extra in (("one", tmp_path / "panel.parquet", []), ("two", folder, ["--dask", dask_address])):
        res = runner.invoke(app, ["economy", "index", str(src), "--spec", str(tmp_path / "spec.yaml"), "--method", "pca",
                                  "--out", str(tmp_path / name), *extra])
        assert res.exit_code == 0, res.output
    for f in ("scores.csv", "weights.csv"):
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f


@pytest.mark.shared_data
def test_a_worker_killed_after_the_first_pass_its_shard_is_prepared_again_and_the_result_identical(
        panel_parts, dask_address: str) -> None:
    """Each worker keeps its shard of periods between the passes: killed after the min/max pass, the shard
    is read and prepared again on a worker (its nanny restarts it, or the other one takes it over)."""
    import os
    import signal

    from distributed import Client

    from citytwin.economy.index import composite_index
    from citytwin.workflows import scaleout

    panel, folder, spec = panel_parts
    one = composite_index(panel, spec, "critic")
    watcher = Client(dask_address, set_as_default=False)
    killed: list[int] = []
    try:
        pids = watcher.run(os.getpid)

        def kill_one(done: int, total: int) -> None:  # progress of the min/max pass: one task per shard
            if done == 1 and not killed:
                killed.append(next(iter(pids.values())))
                os.kill(killed[0], signal.SIGKILL)

        two = scaleout.index(str(folder), spec, "critic", dask=dask_address, progress=kill_one)
    finally:
        watcher.close()
    assert killed, "no worker was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    pd.testing.assert_frame_equal(one.scores, two.scores, check_exact=True)
    pd.testing.assert_frame_equal(one.weights, two.weights, check_exact=True)
