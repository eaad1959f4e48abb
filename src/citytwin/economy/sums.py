"""Sums in one fixed order, so that the pooled index gives the same bits in one process and on Dask (issue 19).

Floating-point addition is not associative: numpy's ``sum`` adds a contiguous run pairwise and a strided
one element after element, so the same numbers summed over another memory layout, in blocks of another
length, or with their partial sums added in another order round differently in the last bits. The
pooled index (:func:`citytwin.economy.index.composite_index`, one process, and
:func:`citytwin.workflows.scaleout_index.index`, one shard of periods per Dask worker) reduces every
global quantity the same way through these functions:

* each column of a block (the rows of one period, in the panel's order) is summed on its own as one
  contiguous 1-D array (:func:`colsum`, :func:`cross`, :func:`plogp_colsum`), whatever the layout of
  the block;
* the blocks' partial sums are added one after the other, in period order (:func:`total`), so neither
  the number of workers nor the periods each one holds changes a bit;
* each row's sum (a score, a dimension's share, a TOPSIS distance) adds the row's values left to right
  (:func:`rowsum`).

Min and max need none of this (they are exact in any order).

Examples
--------
>>> import numpy as np
>>> M = np.array([[1e16, 1.0], [1.0, 2.0], [-1e16, 3.0]])
>>> total([colsum(M[:2]), colsum(M[2:])]).tolist()
[0.0, 6.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["colsum", "correlation", "covariance", "cross", "plogp_colsum", "rowsum", "total"]


def colsum(M: np.ndarray) -> np.ndarray:
    """The sum of each column of ``M`` (n x m), each as one contiguous 1-D array: the same bits for the same
    values in any memory layout (numpy adds a contiguous run pairwise, a strided one element by element)."""
    F = np.asarray(M, dtype=float)
    if F.ndim == 2 and F.shape[0] > 1 and F.strides[0] != F.itemsize:  # columns not contiguous: a copy that makes them so
        F = np.asfortranarray(F)
    return np.array([F[:, j].sum() for j in range(F.shape[1])], dtype=float)


def rowsum(M: np.ndarray) -> np.ndarray:
    """The sum of each row of ``M`` (n x m): its columns added one after the other, left to right, whatever the
    layout (what numpy's ``sum(axis=1)`` does on the column-major matrices pandas gives, at no copy)."""
    A = np.asarray(M, dtype=float)
    if A.shape[1] == 0:
        return np.zeros(A.shape[0])
    acc = A[:, 0].copy()
    for j in range(1, A.shape[1]):
        acc += A[:, j]
    return acc


def total(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The partial sums ``parts`` (one per period, in period order) added one after the other."""
    if not parts:
        raise ValueError("no partial sums to add")
    acc = np.array(parts[0], dtype=float, copy=True)
    for p in parts[1:]:
        acc = acc + p
    return acc


def cross(D: np.ndarray) -> np.ndarray:
    """``DᵀD`` (m x m) with each entry the :func:`colsum` of a product of two columns (not BLAS, whose
    order of addition depends on its threads and kernels: the client and the workers run with others)."""
    F = np.asfortranarray(D, dtype=float)
    m = F.shape[1]
    out = np.empty((m, m))
    for j in range(m):
        s = colsum(F[:, j:] * F[:, j:j + 1])
        out[j, j:] = s
        out[j:, j] = s
    return out


def covariance(blocks: Sequence[np.ndarray], ddof: int = 1) -> np.ndarray:
    """The covariance matrix (``ddof``) of the rows of ``blocks`` together (one block per period, in period
    order), in two passes as the Dask workers make them: the column sums (the mean), then the centred
    cross-products (:func:`cross`). Per entry, so a subset of the columns gives the same bits."""
    n = sum(len(b) for b in blocks)
    mean = total([colsum(b) for b in blocks]) / n
    return np.asarray(total([cross(b - mean) for b in blocks]) / (n - ddof))


def correlation(C: np.ndarray) -> np.ndarray:
    """``numpy.corrcoef`` from a covariance matrix (NaN where a column has no spread, clipped to [-1, 1])."""
    d = np.sqrt(np.diag(C))
    with np.errstate(divide="ignore", invalid="ignore"):
        R = C / d[:, None] / d[None, :]
    return np.asarray(np.clip(R, -1, 1))


def plogp_colsum(Z: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Entropy's ``sum p ln p`` per column over a block, ``p = z / col`` (``col`` the pooled column sums;
    ``0 ln 0 = 0``; a column summing to 0 gives 0 here, see :func:`citytwin.economy.weights.entropy_from_sums`)."""
    # a column at a time: the same operations on each value and the same contiguous sum per column as over
    # the whole block (colsum), with temporaries of one column instead of four of the block's size (fresh
    # memory from the kernel for each, page-faulted in: docs/scaleout.md, session 16)
    Z = np.asarray(Z, dtype=float)
    div = np.where(col == 0, 1.0, col)
    out = np.empty(Z.shape[1], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j in range(Z.shape[1]):
            p = Z[:, j] / div[j]
            out[j] = np.where(p > 0, p * np.log(p), 0.0).sum()
    return out
