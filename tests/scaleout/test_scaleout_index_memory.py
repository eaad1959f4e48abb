"""Fewer period-sized temporaries in the index's passes (issue 19, session 16), the same bits.

At 4.8M unit-years a period's matrix is 54 MB: above glibc's largest mmap threshold (32 MiB), every such
array is fresh memory the kernel faults in, and two workers taking pages at once pay about twice per page
(docs/scaleout.md, sessions 14 and 16). ``plogp_colsum`` now works a column at a time, the scores are summed
a column of ``contrib`` at a time, and ``prepare`` writes the values into the one matrix its frame holds
(which a worker takes as its own). These tests hold every bit against the block-wise formulas they replace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from citytwin.economy import sums
from citytwin.economy.spec import parse_spec, prepare
from citytwin.workflows import scaleout_index as si


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=float).view(np.int64)


def _block(seed: int, n: int = 3001, k: int = 7, order: str = "F") -> np.ndarray:
    """Min-max normalised values spanning many magnitudes, with exact zeros, ones and a constant column."""
    rng = np.random.default_rng(seed)
    Z = rng.random((n, k)) ** rng.uniform(0.2, 40, k)
    Z[rng.choice(n, n // 10, replace=False), 1] = 0.0
    Z[:, 2] = 1.0
    Z[:7, 3] = 0.0
    return np.asarray(Z, order=order)  # type: ignore[call-overload]


def _plogp_block(Z: np.ndarray, col: np.ndarray) -> np.ndarray:
    """The formula before session 16 (the whole block at once), for the comparison."""
    P = Z / np.where(col == 0, 1.0, col)
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums.colsum(np.where(P > 0, P * np.log(P), 0.0))


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plogp_a_column_at_a_time_has_the_bits_of_the_block(seed: int, order: str) -> None:
    Z = _block(seed, order=order)
    col = sums.colsum(Z) * 3.7
    col[4] = 0.0  # a column summing to 0 (divided by 1)
    np.testing.assert_array_equal(_bits(sums.plogp_colsum(Z, col)), _bits(_plogp_block(Z, col)))
    one = Z[:1]
    np.testing.assert_array_equal(_bits(sums.plogp_colsum(one, col)), _bits(_plogp_block(one, col)))


def _scored_block(Z: np.ndarray, w: np.ndarray, score_scale: float, zero: np.ndarray,
                  dims: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The scores before session 16: the period's ``contrib`` matrix, then its row sums."""
    contrib = Z * w * score_scale
    contrib[:, zero] = 0.0
    return sums.rowsum(contrib), {d: sums.rowsum(contrib[:, m]) for d, m in dims.items()}


@pytest.mark.parametrize("score_scale", [1.0, 100.0, 0.37])
def test_the_scores_a_column_at_a_time_have_the_bits_of_the_block(score_scale: float) -> None:
    Z = _block(3)
    k = Z.shape[1]
    w = np.random.default_rng(4).dirichlet(np.ones(k))
    zero = np.zeros(k, dtype=bool)
    zero[2] = True
    dims = {"a": np.array([True, False, True, True, False, False, True]),
            "b": np.array([False, True, False, False, True, True, False]),
            "none": np.zeros(k, dtype=bool)}
    want, want_d = _scored_block(Z, w, score_scale, zero, dims)
    got, got_d = si._weighted_rowsums(Z, w, score_scale, zero, dims)
    np.testing.assert_array_equal(_bits(got), _bits(want))
    assert list(got_d) == list(want_d)
    for d in dims:
        np.testing.assert_array_equal(_bits(got_d[d]), _bits(want_d[d]))
    first_zero = zero.copy()
    first_zero[0] = True  # the first column zeroed: the sums start from 0.0
    np.testing.assert_array_equal(_bits(si._weighted_rowsums(Z, w, score_scale, first_zero, {})[0]),
                                  _bits(_scored_block(Z, w, score_scale, first_zero, {})[0]))


def _panel(missing: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    rng = np.random.default_rng(16)
    cols = [f"x{j}" for j in range(5)]
    f = pd.DataFrame(rng.lognormal(0, 3, (300, 5)), columns=cols)
    f["x1"] = f["x1"].round().astype("int64")  # an integer column becomes float as before
    if missing:
        f.loc[3, "x3"] = np.inf  # infinite: missing
        f.loc[[5, 9], "x2"] = np.nan
    f.insert(0, "year", 2020)
    f.insert(0, "unit", [f"u{i}" for i in range(300)])
    spec = {"id": "unit", "time": "year", "missing": "mean",
            "indicators": [{"column": "x4"}, {"column": "x0", "transform": "log"}, {"column": "x1"},
                           {"column": "x2", "transform": "log1p"}, {"column": "x3"}]}
    return f, spec


@pytest.mark.parametrize("missing", [False, True])
def test_prepare_gives_the_values_of_a_frame_of_its_columns(missing: bool) -> None:
    """The prepared frame equals the frame made from the columns one by one (as before), in the spec's order,
    column-major; its matrix is the frame's own block where no missing value was filled."""
    frame, spec = _panel(missing)
    sp = parse_spec(spec)
    prep = prepare(frame, sp, source="t")
    arrays = {}
    for ind in sp.indicators:
        x = frame[ind.column].to_numpy(dtype=float)
        x = np.where(np.isinf(x), np.nan, x)
        arrays[ind.column] = {"log": np.log, "log1p": np.log1p}.get(ind.transform or "", lambda v: v)(x)
    want = pd.DataFrame(arrays)
    if missing:  # the policy's fill, as prepare makes it (the same year's mean)
        want = want.fillna(want.groupby(frame["year"]).transform("mean"))
    pd.testing.assert_frame_equal(prep.values, want, check_exact=True)
    X = prep.values[sp.columns].to_numpy(dtype=float)
    assert X.flags.f_contiguous
    if missing:
        assert prep.matrix is None  # the policy made a new frame
    else:
        assert prep.matrix is not None and prep.matrix.flags.writeable
        np.testing.assert_array_equal(_bits(prep.matrix), _bits(want.to_numpy()))
        assert np.shares_memory(prep.matrix, X)  # the frame's block, not a copy


def test_a_worker_takes_prepares_matrix_as_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The period's matrix is prepare's (no copy), writable, with the values of the frame's columns."""
    import citytwin.economy.spec as spec_module

    made: list[Any] = []

    def recording(*a: Any, **k: Any) -> Any:
        made.append(prepare(*a, **k))
        return made[-1]

    monkeypatch.setattr(spec_module, "prepare", recording)
    frame, spec = _panel(False)
    frame.to_parquet(tmp_path / "p.parquet", index=False)
    files = [str(tmp_path / "p.parquet")]
    sp = parse_spec(spec)
    periods, pieces = si._plan(files, "year")
    p = si._prepare_shard([(periods[0], pieces[0])], files=files, spec=sp, source="t").periods[0]
    want = prepare(frame, sp, source="t").values[sp.columns].to_numpy(dtype=float)
    X = p.raw()
    assert len(made) == 1 and X is made[0].matrix  # not a copy
    assert X.flags.writeable and X.flags.f_contiguous
    np.testing.assert_array_equal(_bits(X), _bits(want))


def test_consecutive_positions_travel_as_a_run() -> None:
    """A period's rows at consecutive panel positions (whole row groups) are sent as ``(first, count)``; the
    client's frame is the one it makes from every position, in either order of the pieces and for rows that
    are not a run."""
    assert si._run(np.arange(5, 9)) == (5, 4)
    assert si._run(np.array([5, 7, 6, 8])) is None and si._run(np.array([5, 6, 8])) is None
    assert si._run(np.empty(0, dtype=np.int64)) is None and si._run(np.array([3])) == (3, 1)

    def piece(period: int, rows: np.ndarray, runs: bool) -> Any:
        n = len(rows)
        values = {"score": np.linspace(0, 1, n) + period, "rank": np.arange(1, n + 1, dtype=np.int32)}
        span = si._run(rows) if runs else None
        return si._Scored(values, pd.Series([f"u{r}" for r in rows], name="unit"),
                          pd.Series([period], name="year"), None if span else rows, span)

    layouts = [[np.arange(0, 4), np.arange(4, 10)], [np.arange(6, 10), np.arange(0, 6)],
               [np.array([0, 2, 4, 6]), np.array([1, 3, 5, 7, 8, 9])], [np.arange(0, 4), np.array([5, 4, 6, 7, 8, 9])]]
    for rows in layouts:
        want = si._scores_frame([piece(2000 + i, r, False) for i, r in enumerate(rows)], [[0, 1]])
        got = si._scores_frame([piece(2000 + i, r, True) for i, r in enumerate(rows)], [[0, 1]])
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert want["unit"].tolist() == [f"u{r}" for r in np.sort(np.concatenate(rows))]


def test_a_worker_sends_no_positions_for_whole_row_groups(tmp_path: Path) -> None:
    frame, spec = _panel(False)
    frame.to_parquet(tmp_path / "p.parquet", index=False, row_group_size=100)
    files = [str(tmp_path / "p.parquet")]
    sp = parse_spec(spec)
    periods, pieces = si._plan(files, "year")
    shard = si._prepare_shard([(periods[0], pieces[0])], files=files, spec=sp, source="t")
    p = shard.periods[0]
    k = p.raw().shape[1]
    s = si._score_part(p, lo=p.raw().min(axis=0), hi=p.raw().max(axis=0), pos=np.ones(k, dtype=bool),
                       w=np.full(k, 1 / k), score_scale=1.0, dims={})
    assert s.rows is None and s.span == (0, 300) and len(s) == 300


def test_the_scores_travel_as_numeric_buffers_and_come_back_as_one_process_s_columns() -> None:
    """A period's scores travel as NumPy arrays (the rank as 32-bit integers where none is missing, else its ``Int64``
    array); the client's columns are the ``Int64`` ranks and the float scores one process's frame holds."""
    from citytwin.economy.ranking import rank_by

    score = np.array([0.5, np.nan, 0.25, 0.75, 0.5])
    for s in (score, np.nan_to_num(score)):
        rank = rank_by(pd.DataFrame({"score": s}), "score")
        buf = si._rank_buffer(rank)
        assert isinstance(buf, np.ndarray) == (not rank.isna().any())
        if isinstance(buf, np.ndarray):
            assert buf.dtype == np.int32
        for pieces in ([buf], [buf, buf], [buf, si._rank_buffer(rank.iloc[:0])]):
            want = pd.concat([rank] * sum(len(p) > 0 for p in pieces), ignore_index=True)
            pd.testing.assert_series_equal(pd.Series(si._rank_column(pieces)), want, check_names=False, check_exact=True)
    # a piece with a missing rank among pieces without: Int64 with the missing value where it was
    no_na = si._rank_buffer(rank_by(pd.DataFrame({"score": [1.0, 2.0]}), "score"))
    with_na = si._rank_buffer(rank_by(pd.DataFrame({"score": [np.nan, 2.0]}), "score"))
    got = pd.Series(si._rank_column([no_na, with_na]))
    assert got.dtype == "Int64" and got.tolist()[:3] == [2, 1, pd.NA] and got.iloc[3] == 1
