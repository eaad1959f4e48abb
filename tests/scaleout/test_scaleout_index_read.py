"""How an index worker reads its periods (issue 19, session 14): the frame ``pandas.read_parquet`` gives, read
into glibc's heap (``pyarrow.system_memory_pool``) without a copy of the number columns into one block.

A fresh worker's first index job paid a third of its CPU in the kernel for new memory (docs/scaleout.md,
"Session 14"); reading into the heap NumPy uses, and not copying the values once more, takes less of it.
These tests hold the values (exactly the frame of ``pandas.read_parquet``, missing values and text ids
included) and that the read's buffers come from glibc while Arrow's default pool is left as it was.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from citytwin.economy.spec import parse_spec
from citytwin.workflows import scaleout_index as si
from citytwin.workflows.scaleout_files import system_pool

COLS = [f"x{j}" for j in range(5)]


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """Two layouts of one panel (400 units x 4 years, a few missing values, ids of varying length): a file per
    year; and the rows shuffled into 2 files of 150-row groups (periods mixed within row groups)."""
    rng = np.random.default_rng(14)
    frames = []
    for y in range(4):
        f = pd.DataFrame(rng.lognormal(0, 3, (400, len(COLS))) * 10.0 ** rng.uniform(-6, 9, len(COLS)), columns=COLS)
        f.loc[rng.choice(400, 7, replace=False), "x2"] = np.nan
        f.insert(0, "year", 2010 + y)
        f.insert(0, "unit", [f"unit-{i}" * (1 + i % 3) for i in range(400)])
        frames.append(f)
    whole = pd.concat(frames, ignore_index=True)
    root = tmp_path_factory.mktemp("read")
    by_year, mixed = root / "by_year", root / "mixed"
    by_year.mkdir()
    mixed.mkdir()
    for y, f in whole.groupby("year"):
        f.to_parquet(by_year / f"y{y}.parquet", index=False)
    shuffled = whole.sample(frac=1.0, random_state=1).reset_index(drop=True)
    for i, rows in enumerate(np.array_split(np.arange(len(shuffled)), 2)):
        shuffled.iloc[rows].to_parquet(mixed / f"part-{i}.parquet", index=False, row_group_size=150)
    spec = {"id": "unit", "time": "year", "missing": "drop", "indicators": [{"column": c} for c in COLS]}
    return by_year, mixed, spec


@pytest.mark.parametrize("layout", ["by_year", "mixed"])
def test_a_period_read_is_the_frame_pandas_reads(panel: tuple[Path, Path, dict[str, Any]], layout: str) -> None:
    by_year, mixed, spec = panel
    folder = by_year if layout == "by_year" else mixed
    files = sorted(str(f) for f in folder.glob("*.parquet"))
    sp = parse_spec(spec)
    periods, pieces = si._plan(files, "year")
    cols = ["unit", "year", *COLS]
    base = 0
    every = []
    for f in files:
        t = pd.read_parquet(f, columns=cols)
        t.index = t.index + base
        base += len(t)
        every.append(t)
    panel_frame = pd.concat(every)
    for period, pc in zip(periods, pieces, strict=True):
        frame, rows = si._read_period(period, pc, files=files, spec=sp)
        want = panel_frame[panel_frame["year"] == period]
        pd.testing.assert_frame_equal(frame, want.reset_index(drop=True), check_exact=True)
        np.testing.assert_array_equal(rows, want.index.to_numpy())


def test_a_period_is_read_into_glibcs_heap_and_the_default_pool_is_left(panel: tuple[Path, Path, dict[str, Any]]) -> None:
    by_year, _, spec = panel
    files = sorted(str(f) for f in by_year.glob("*.parquet"))
    periods, pieces = si._plan(files, "year")
    before = pa.default_memory_pool().backend_name
    held0 = pa.system_memory_pool().bytes_allocated()
    frame, _ = si._read_period(periods[0], pieces[0], files=files, spec=parse_spec(spec))
    # the number columns are the read's buffers, from glibc (no copy into a pandas block of another heap)
    assert pa.system_memory_pool().bytes_allocated() - held0 >= frame[COLS].to_numpy().nbytes
    assert pa.default_memory_pool().backend_name == before
    del frame


def test_the_system_pool_is_set_while_any_thread_is_inside() -> None:
    default = pa.default_memory_pool().backend_name
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with system_pool():
            inside.set()
            leave.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(30)
    with system_pool():
        with system_pool():
            assert pa.default_memory_pool().backend_name == "system"
        assert pa.default_memory_pool().backend_name == "system"
    assert pa.default_memory_pool().backend_name == "system"  # the other thread is still inside
    leave.set()
    t.join(30)
    assert pa.default_memory_pool().backend_name == default
    with pytest.raises(ValueError), system_pool():
        raise ValueError("left by an error")
    assert pa.default_memory_pool().backend_name == default


@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (0.99, 0.01)])
def test_the_normalisation_written_over_the_values_has_the_same_bits(scale: float, shift: float) -> None:
    """A worker normalises a period over its prepared values when no later pass needs them (entropy): the bits
    of :func:`citytwin.economy.weights.minmax_between`, constant columns, cost columns and -0.0 included."""
    from citytwin.economy.weights import minmax_between

    rng = np.random.default_rng(5)
    X = np.asfortranarray(rng.lognormal(0, 3, (2000, 6)) * 10.0 ** rng.uniform(-6, 9, 6))
    X[:, 3] = 7.5  # constant
    X[:5, 4] = -0.0
    X[5:, 4] = np.abs(X[5:, 4])
    lo, hi = X.min(axis=0), X.max(axis=0)
    lo[4] = 0.0
    pos = np.array([True, False, True, True, True, False])
    want = minmax_between(X, lo, hi, pos, scale=scale, shift=shift)
    got = si._norm_into(X.copy(order="F"), lo, hi, pos, scale, shift)
    np.testing.assert_array_equal(want.view(np.int64), np.ascontiguousarray(got).view(np.int64))


def test_a_prepared_period_is_normalised_over_its_values_when_no_pass_needs_them(
        panel: tuple[Path, Path, dict[str, Any]]) -> None:
    from citytwin.economy.weights import minmax_between

    by_year, _, spec = panel
    files = sorted(str(f) for f in by_year.glob("*.parquet"))
    periods, pieces = si._plan(files, "year")
    shard = si._prepare_shard([(periods[0], pieces[0])], files=files, spec=parse_spec(spec), source="panel")
    p = shard.periods[0]
    X = p.raw()
    lo, hi, pos = X.min(axis=0), X.max(axis=0), np.ones(X.shape[1], dtype=bool)
    want = minmax_between(X, lo, hi, pos)
    Z = si._normed(p, lo, hi, pos, 1.0, 0.0, last_raw=True)
    assert Z is X and p.X is None  # written over the prepared values: no second matrix
    np.testing.assert_array_equal(want.view(np.int64), np.ascontiguousarray(Z).view(np.int64))
