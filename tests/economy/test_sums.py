"""economy.sums: the same bits for the same values in any memory layout, block order fixed by the caller."""

from __future__ import annotations

import numpy as np
import pytest

from citytwin.economy import sums as S
from citytwin.economy.weights import critic_weights, entropy_weights


@pytest.fixture(scope="module")
def wide() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.lognormal(0, 3, (20_000, 11)) * 10.0 ** rng.uniform(-6, 12, 11)


def _layouts(M: np.ndarray) -> list[np.ndarray]:
    big = np.asfortranarray(np.vstack([M, M]))
    return [np.ascontiguousarray(M), np.asfortranarray(M), big[: len(M)], np.ascontiguousarray(M)[:, ::-1][:, ::-1]]


def test_colsum_rowsum_cross_do_not_depend_on_the_layout(wide: np.ndarray) -> None:
    ref = [S.colsum(wide), S.rowsum(wide), S.cross(wide - wide.mean(axis=0))]
    for A in _layouts(wide):
        got = [S.colsum(A), S.rowsum(A), S.cross(A - wide.mean(axis=0))]
        for r, g in zip(ref, got, strict=True):
            assert np.array_equal(r, g)
    # what they stand for, to rounding: numpy's own sums and products
    np.testing.assert_allclose(S.colsum(wide), wide.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(S.rowsum(wide), wide.sum(axis=1), rtol=1e-12)
    D = wide - wide.mean(axis=0)
    np.testing.assert_allclose(S.cross(D), D.T @ D, rtol=1e-9, atol=0)
    np.testing.assert_allclose(S.covariance([wide[:7000], wide[7000:]]), np.cov(wide, rowvar=False), rtol=1e-9)


def test_a_subset_of_columns_gives_the_same_bits(wide: np.ndarray) -> None:
    """Each entry on its own: PCA's kept columns on Dask are a subset of the full covariance."""
    keep = np.array([0, 3, 4, 9])
    C = S.covariance([wide[:5000], wide[5000:]])
    assert np.array_equal(C[np.ix_(keep, keep)], S.covariance([wide[:5000, keep], wide[5000:, keep]]))


def test_total_adds_in_the_order_given() -> None:
    parts = [np.array([1e16]), np.array([1.0]), np.array([-1e16]), np.array([1.0])]
    assert S.total(parts).tolist() == [1.0]  # ((1e16 + 1) - 1e16) + 1: the 1 lost in the first sum
    assert S.total([parts[0], parts[2], parts[1], parts[3]]).tolist() == [2.0]
    with pytest.raises(ValueError):
        S.total([])


def test_blocks_as_views_or_copies_and_the_weights(wide: np.ndarray) -> None:
    """The weights with period blocks: the same bits whether a block's rows follow one another (a view) or
    not (a copy), and close to one block of all rows."""
    pos = np.arange(wide.shape[1]) % 3 != 0
    blocks = [np.arange(i, i + 4000) for i in range(0, 20_000, 4000)]
    perm = np.random.default_rng(1).permutation(len(wide))
    shuffled = np.empty_like(wide)
    shuffled[perm] = wide  # row i of wide is row perm[i] of shuffled
    moved = [perm[b] for b in blocks]  # the same rows, scattered, in the same order within each block
    for fn in (entropy_weights, critic_weights):
        a, b = fn(wide, pos, blocks=blocks), fn(shuffled, pos, blocks=moved)
        assert np.array_equal(a.w, b.w)
        np.testing.assert_allclose(a.w, fn(wide, pos).w, rtol=0, atol=1e-14)  # (1 - e) cancels: absolute
