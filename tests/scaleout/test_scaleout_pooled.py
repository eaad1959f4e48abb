"""Pooled TOPSIS, CRITIC, PCA and combined indices on a 2-worker Dask cluster = the single-process run.

The real city panel (287 cities x 2004-2012) is split into 3 Parquet parts; the Dask run reduces
per-period partial sums (min/max, column sums, centred cross-products, sums of squares, TOPSIS ideal
points) on the client. Sums are added in another order than one process adds them, so weights and
scores are compared to 1e-10 (they agree to about 1e-14 here); ranks, ids and periods exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.scaleout.conftest import NEGATIVE

from citytwin.foundation.errors import InputError

TOL = 1e-10


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
    pd.testing.assert_frame_equal(one.scores[["城市", "年份", "rank"]], two.scores[["城市", "年份", "rank"]],
                                  check_exact=True)
    for c in [c for c in one.scores.columns if c == "score" or c.startswith("dim:")]:
        np.testing.assert_allclose(two.scores[c], one.scores[c], rtol=0, atol=TOL, err_msg=c)
    assert one.weights.columns.tolist() == two.weights.columns.tolist()
    for c in one.weights.columns:
        if pd.api.types.is_float_dtype(one.weights[c]):
            np.testing.assert_allclose(two.weights[c], one.weights[c], rtol=0, atol=TOL, err_msg=c)
        else:
            assert one.weights[c].tolist() == two.weights[c].tolist(), c
    assert two.weights["weight"].sum() == pytest.approx(1.0, abs=1e-12)
    assert two.options["n_rows"] == one.options["n_rows"] == 1989
    if "pca" in (method, options.get("topsis_weights")):
        d1, d2 = one.diagnostics["pooled"], two.diagnostics["pooled"]
        assert d1["n_components"] == d2["n_components"] and d1["bartlett_dof"] == d2["bartlett_dof"]
        np.testing.assert_allclose(d2["eigenvalues"], d1["eigenvalues"], rtol=0, atol=1e-6)  # rounded to 6
        for k in ("kmo", "bartlett_chi2"):
            assert d2[k] == pytest.approx(d1[k], rel=1e-10), k
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
    (numbers to 1e-10, ranks exactly), where pooled PCA was refused before."""
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
        a, b = pd.read_csv(tmp_path / "one" / f), pd.read_csv(tmp_path / "two" / f)
        assert a.columns.tolist() == b.columns.tolist()
        for c in a.columns:
            if pd.api.types.is_float_dtype(a[c]):
                np.testing.assert_allclose(b[c], a[c], rtol=0, atol=TOL, err_msg=f"{f}:{c}")
            else:
                assert a[c].tolist() == b[c].tolist(), f"{f}:{c}"


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
    pd.testing.assert_frame_equal(one.scores[["城市", "年份", "rank"]], two.scores[["城市", "年份", "rank"]])
    np.testing.assert_allclose(two.scores["score"], one.scores["score"], rtol=0, atol=TOL)
    np.testing.assert_allclose(two.weights["weight"], one.weights["weight"], rtol=0, atol=TOL)
