"""Simulation seeds on Dask: one SUMO run per task gives the single-process runs (SUMO is deterministic)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.simulation.grid import build  # the 3 x 3 grid scenario of the simulation tests

from citytwin.foundation.errors import InputError
from citytwin.simulation.results import METRICS


def test_seeds_on_dask_equal_one_process(tmp_path: Path, dask_address: str) -> None:
    from citytwin.workflows import scaleout
    from citytwin.workflows.simulation import run

    sc = build(tmp_path / "grid")
    one = run(sc, tmp_path / "one", seeds=3, control="webster")
    seen: list[tuple[int, int]] = []
    two = scaleout.sim_run(sc, tmp_path / "two", dask=dask_address, seeds=3, control="webster",
                           progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (3, 3)
    a = pd.read_csv(tmp_path / "one" / "runs.csv").drop(columns=list(scaleout.TIMING_COLUMNS), errors="ignore")
    b = pd.read_csv(tmp_path / "two" / "runs.csv").drop(columns=list(scaleout.TIMING_COLUMNS), errors="ignore")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for table in ("edges", "edges_intervals"):
        ea, eb = pd.read_csv(tmp_path / "one" / f"{table}.csv"), pd.read_csv(tmp_path / "two" / f"{table}.csv")
        assert list(ea.columns) == list(eb.columns) and ea["edge"].tolist() == eb["edge"].tolist(), table
        num = ea.select_dtypes("number").columns
        np.testing.assert_allclose(eb[num].to_numpy(), ea[num].to_numpy(), rtol=1e-9, atol=1e-12)
    for k in ("seeds", "all_inserted", "webster", *METRICS, *(f"{m}_ci95" for m in METRICS)):
        assert two[k] == one[k], k
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["dask"]["tasks"] == 3


def test_a_failed_seed_writes_nothing(tmp_path: Path, dask_address: str) -> None:
    from citytwin.workflows import scaleout

    sc = build(tmp_path / "grid")
    with pytest.raises(InputError, match="plan"):
        scaleout.sim_run(sc, tmp_path / "out", dask=dask_address, seeds=2, control="webster",
                         plan=tmp_path / "missing.json")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["grid"]


def test_an_output_folder_in_use_is_refused_as_one_process_does(tmp_path: Path) -> None:
    from citytwin.workflows import scaleout

    sc = build(tmp_path / "grid")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="exists and is not empty"):
        scaleout.sim_run(sc, tmp_path / "out", dask="local:1")
    assert (tmp_path / "out" / "keep.txt").read_text(encoding="utf-8") == "x"
