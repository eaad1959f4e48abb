"""Normalisation and objective weighting of indicators (B1): entropy, CRITIC, PCA, TOPSIS, combined.

Pure numpy functions over a matrix ``X`` (rows: alternatives / city-years; columns: indicators) and a
boolean vector ``positive`` (True: benefit indicator, more is better). The conventions, with the
published cases they reproduce (tests/economy/test_weights.py):

* **Entropy** (Shannon; Elsayed, Dawood & Karthikeyan 2017): ``p_ij = z_ij / sum_i z_ij``,
  ``e_j = -k sum_i p_ij ln p_ij`` with ``k = 1 / ln(n)`` (n rows; for a pooled panel n = mT) and
  ``0 ln 0 = 0``; ``w_j = (1 - e_j) / sum (1 - e_j)``. ``z`` is the sum-normalised raw value (as in
  Elsayed) or the min-max normalised value, optionally as ``scale * z + shift`` (the variants used in
  Chinese papers: ``+0.0001``, ``+0.01``, ``0.998 z + 0.002``).
* **CRITIC** (Diakoulaki et al. 1995; Tuş & Adalı 2019): min-max normalise, ``C_j = s_j sum_k (1 - r_jk)``
  with ``s_j`` the standard deviation and ``r`` Pearson's correlation; ``w = C / sum C``.
* **TOPSIS** (Hwang & Yoon 1981; the example of Opricovic & Tzeng 2004): vector normalisation
  ``x / sqrt(sum x^2)`` (direction applied when choosing the ideal) or min-max (direction applied in
  the normalisation); closeness ``C = d- / (d+ + d-)``.
* **PCA**: principal components of the correlation matrix, KMO and Bartlett's test of sphericity.

Examples
--------
>>> import numpy as np
>>> X = np.array([[1.0, 3000], [2, 3750], [5, 4500]])
>>> topsis(X, np.array([0.5, 0.5]), np.array([False, True]), normalisation="minmax").closeness.round(3)
array([0.5  , 0.617, 0.5  ])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats

from citytwin.economy import sums as S
from citytwin.foundation.errors import InputError

Normalisation = Literal["minmax", "sum"]
#: the rows of each period (index arrays, in period order) of a pooled panel: every column sum is taken per
#: block and the blocks' sums added in order (:mod:`citytwin.economy.sums`), as the pooled index on Dask
#: adds its periods' partial sums; ``None``: one block of all rows
Blocks = Sequence[np.ndarray] | None


def _split(A: np.ndarray, blocks: Blocks) -> list[np.ndarray]:
    """The rows of ``A`` per block (:data:`Blocks`): a view where a block's rows follow one another."""
    if blocks is None:
        return [A]
    return [A[int(b[0]):int(b[-1]) + 1] if len(b) and int(b[-1]) - int(b[0]) + 1 == len(b) else A[b] for b in blocks]


def _as_matrix(X: np.ndarray) -> np.ndarray:
    A = np.asarray(X, dtype=float)
    if A.ndim != 2 or A.shape[0] < 2 or A.shape[1] < 1:
        raise InputError(f"need a matrix with at least 2 rows and 1 column, got shape {A.shape}")
    if not np.isfinite(A).all():
        raise InputError("the matrix holds missing or infinite values",
                         hint="apply a missing-value policy before weighting")
    return A


def constant_columns(X: np.ndarray) -> np.ndarray:
    """Boolean mask of columns whose values are all equal."""
    A = np.asarray(X, dtype=float)
    return np.asarray(np.ptp(A, axis=0) == 0)


def minmax(X: np.ndarray, positive: np.ndarray, *, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    """Min-max normalisation with direction, then ``scale * z + shift``.

    Benefit: ``(x - min) / (max - min)``; cost: ``(max - x) / (max - min)``. A constant column has no
    spread; it becomes 1 everywhere (so it carries no information: entropy 1, CRITIC 0).

    Examples
    --------
    >>> minmax(np.array([[1.0, 10], [3, 0]]), np.array([True, False]))
    array([[0., 0.],
           [1., 1.]])
    """
    A = _as_matrix(X)
    return minmax_between(A, A.min(axis=0), A.max(axis=0), positive, scale=scale, shift=shift)


def minmax_between(A: np.ndarray, lo: np.ndarray, hi: np.ndarray, positive: np.ndarray, *, scale: float = 1.0,
                   shift: float = 0.0) -> np.ndarray:
    """:func:`minmax` with given column bounds (a pooled panel's, for the rows of one of its periods)."""
    rng = hi - lo
    safe = np.where(rng == 0, 1.0, rng)
    pos = np.asarray(positive, dtype=bool)
    Z = np.where(pos, (A - lo) / safe, (hi - A) / safe)
    Z[:, rng == 0] = 1.0
    return np.asarray(scale * Z + shift)


def sum_normalise(X: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Proportions ``x / sum x`` (benefit) or ``(1/x) / sum (1/x)`` (cost).

    Raises
    ------
    InputError
        On a negative value (proportions of negative numbers have no meaning; use min-max), or a zero in
        a cost indicator (no reciprocal).
    """
    A = _as_matrix(X)
    if (A < 0).any():
        j = int(np.flatnonzero((A < 0).any(axis=0))[0])
        raise InputError(f"sum normalisation needs values >= 0; column {j + 1} has negative values",
                         field=str(j), hint="use normalisation: minmax (or a shift) for indicators that can be negative")
    pos = np.asarray(positive, dtype=bool)
    if (~pos).any() and (A[:, ~pos] == 0).any():
        raise InputError("sum normalisation of a negative (cost) indicator uses 1/x; a value is 0",
                         hint="use normalisation: minmax")
    B = np.where(pos, A, 1.0 / np.where(A == 0, 1.0, A))
    s = B.sum(axis=0)
    s = np.where(s == 0, 1.0, s)
    return B / s


@dataclass
class EntropyResult:
    """Entropy weighting: entropy ``e``, diversity ``d = 1 - e`` and weights ``w`` per indicator."""

    e: np.ndarray
    d: np.ndarray
    w: np.ndarray
    k: float
    normalised: np.ndarray = field(repr=False)


def entropy_weights(X: np.ndarray, positive: np.ndarray | None = None, *, normalisation: Normalisation = "minmax",
                    scale: float = 1.0, shift: float = 0.0, k: float | None = None,
                    blocks: Blocks = None) -> EntropyResult:
    """Entropy weights of the columns of ``X``.

    Parameters
    ----------
    X
        n x m matrix (n alternatives or pooled city-years).
    positive
        Benefit mask (default: all benefit).
    normalisation
        ``"minmax"`` (then ``scale * z + shift``) or ``"sum"`` (raw proportions; ``scale``/``shift`` are
        applied to the raw values first, ``x * scale + shift``).
    k
        The entropy constant; default ``1 / ln(n)``.
    blocks
        The rows of each period of a pooled panel (:data:`Blocks`): the column sums are added per period.

    Notes
    -----
    ``0 ln 0`` is taken as 0 (its limit). A column with no spread has ``e = 1`` and weight 0; if every
    column has none, weights are equal (and the caller reports it).

    Examples
    --------
    >>> r = entropy_weights(np.array([[1.0, 5], [2, 5], [3, 5]]))
    >>> r.w.round(3).tolist()
    [1.0, 0.0]
    """
    A = _as_matrix(X)
    pos = np.ones(A.shape[1], bool) if positive is None else np.asarray(positive, dtype=bool)
    n = A.shape[0]
    if normalisation == "minmax":
        Z = minmax(A, pos, scale=scale, shift=shift)
    elif normalisation == "sum":
        Z = sum_normalise(A * scale + shift, pos)
    else:
        raise InputError(f"unknown normalisation {normalisation!r}", hint="use minmax or sum")
    if (Z < 0).any():
        raise InputError("normalised values are negative (check scale and shift)")
    parts = _split(Z, blocks)
    col = S.total([S.colsum(z) for z in parts])
    L = S.total([S.plogp_colsum(z, col) for z in parts])
    e, d, w, kk = entropy_from_sums(col, L, n, k, const=constant_columns(A))
    return EntropyResult(e=e, d=d, w=w, k=kk, normalised=Z)


def entropy_from_sums(col: np.ndarray, L: np.ndarray, n: int, k: float | None = None, *,
                      const: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Entropy ``e``, diversity ``d``, weights ``w`` and ``k`` from the column sums ``col`` of the normalised
    values and the sums ``L`` of ``p ln p`` (:func:`citytwin.economy.sums.plogp_colsum`) over ``n`` rows.
    A column summing to 0 has ``p = 1/n`` in every row: ``L = ln(1/n)``; a constant one (``const``) has
    ``e = 1`` exactly (its ``n`` terms ``(1/n) ln(1/n)`` need not add up to ``ln(1/n)`` in floating point).
    Shared with the pooled index on Dask."""
    L = np.where(col == 0, np.log(1.0 / n), L)
    kk = 1.0 / np.log(n) if k is None else float(k)
    e = np.clip(-kk * L, 0.0, 1.0)
    if const is not None:
        e = np.where(const, 1.0, e)
    d = 1.0 - e
    w = d / d.sum() if d.sum() > 0 else np.full(len(d), 1.0 / len(d))
    return e, d, w, kk


@dataclass
class CriticResult:
    """CRITIC: standard deviation, conflict ``sum(1 - r)``, information ``C`` and weights per indicator."""

    sigma: np.ndarray
    conflict: np.ndarray
    information: np.ndarray
    w: np.ndarray
    corr: np.ndarray = field(repr=False)


def critic_weights(X: np.ndarray, positive: np.ndarray | None = None, *, ddof: int = 1,
                   blocks: Blocks = None) -> CriticResult:
    """CRITIC weights (Diakoulaki, Mavrotas & Papayannakis 1995).

    Min-max normalise with direction, ``C_j = s_j * sum_k (1 - r_jk)``, ``w = C / sum C``. The weights
    do not depend on ``ddof`` (it scales every ``s_j`` alike). A constant column has ``s = 0`` and its
    correlations are undefined: it is left out of the conflict sums and its weight is 0. The standard
    deviations and correlations come from :func:`citytwin.economy.sums.covariance` (per block of ``blocks``).

    Examples
    --------
    >>> critic_weights(np.array([[1.0, 2, 3], [2, 1, 3], [3, 5, 3]])).w.round(3).tolist()
    [0.49, 0.51, 0.0]
    """
    A = _as_matrix(X)
    pos = np.ones(A.shape[1], bool) if positive is None else np.asarray(positive, dtype=bool)
    Z = minmax(A, pos)
    const = constant_columns(A)
    Z[:, const] = 0.0
    C = S.covariance(_split(Z, blocks), ddof)
    R = S.correlation(C) if A.shape[1] > 1 else np.ones((1, 1))
    return critic_from_correlation(np.sqrt(np.diag(C)), R, const)


def critic_from_correlation(sigma: np.ndarray, R: np.ndarray, const: np.ndarray) -> CriticResult:
    """CRITIC weights from the standard deviations and the correlation matrix of the normalised indicators.

    ``R`` may hold NaN where a constant column (``const``) has no correlation: those become 0 (the
    diagonal 1). Shared by :func:`critic_weights` and the pooled index on Dask, which computes
    ``sigma`` and ``R`` from partial sums.
    """
    R = np.atleast_2d(np.nan_to_num(np.asarray(R, dtype=float), nan=0.0))
    np.fill_diagonal(R, 1.0)
    const = np.asarray(const, dtype=bool)
    conflict = (1.0 - R)[~const].sum(axis=0)  # a constant column carries no conflict either
    C = sigma * conflict
    w = C / C.sum() if C.sum() > 0 else np.full(len(sigma), 1.0 / len(sigma))
    return CriticResult(sigma=sigma, conflict=conflict, information=C, w=w, corr=R)


@dataclass
class TopsisResult:
    """TOPSIS distances to the ideal (``d_plus``) and anti-ideal (``d_minus``) and closeness ``C``."""

    d_plus: np.ndarray
    d_minus: np.ndarray
    closeness: np.ndarray
    ideal: np.ndarray
    anti_ideal: np.ndarray


def topsis(X: np.ndarray, w: np.ndarray, positive: np.ndarray | None = None, *,
           normalisation: Literal["vector", "minmax"] = "vector", blocks: Blocks = None) -> TopsisResult:
    """TOPSIS closeness coefficients.

    ``vector``: ``r = x / sqrt(sum x^2)``, weighted; the ideal takes the max of benefit and the min of cost
    columns. ``minmax``: direction is applied by the normalisation, so the ideal is the column max.
    ``blocks``: the sums of squares per period (:data:`Blocks`).

    Examples
    --------
    >>> X = np.array([[1.0, 3000], [2, 3750], [5, 4500]])
    >>> topsis(X, np.array([0.5, 0.5]), np.array([False, True])).closeness.round(4).tolist()
    [0.7621, 0.7222, 0.2379]
    """
    A = _as_matrix(X)
    pos = np.ones(A.shape[1], bool) if positive is None else np.asarray(positive, dtype=bool)
    ww = np.asarray(w, dtype=float)
    if ww.shape != (A.shape[1],):
        raise InputError(f"{ww.size} weights for {A.shape[1]} indicators")
    if normalisation == "vector":
        norm = np.sqrt(S.total([S.colsum(a ** 2) for a in _split(A, blocks)]))
        V = A / np.where(norm == 0, 1.0, norm) * ww
        ideal = np.where(pos, V.max(axis=0), V.min(axis=0))
        anti = np.where(pos, V.min(axis=0), V.max(axis=0))
    elif normalisation == "minmax":
        V = minmax(A, pos) * ww
        ideal, anti = V.max(axis=0), V.min(axis=0)
    else:
        raise InputError(f"unknown TOPSIS normalisation {normalisation!r}", hint="use vector or minmax")
    return topsis_closeness(V, ideal, anti)


def topsis_closeness(V: np.ndarray, ideal: np.ndarray, anti: np.ndarray) -> TopsisResult:
    """Distances of the weighted normalised rows ``V`` to ``ideal`` and ``anti`` and the closeness
    ``d- / (d+ + d-)`` (0.5 where both are 0). Row by row: shared by :func:`topsis` and the pooled
    index on Dask (each partition's rows, with the panel's ideal and anti-ideal)."""
    dp = np.sqrt(S.rowsum((V - ideal) ** 2))
    dm = np.sqrt(S.rowsum((V - anti) ** 2))
    tot = dp + dm
    C = np.where(tot == 0, 0.5, dm / np.where(tot == 0, 1.0, tot))
    return TopsisResult(d_plus=dp, d_minus=dm, closeness=C, ideal=ideal, anti_ideal=anti)


def kmo(R: np.ndarray) -> tuple[float, np.ndarray]:
    """Kaiser-Meyer-Olkin measure of sampling adequacy from a correlation matrix.

    ``KMO = sum r^2 / (sum r^2 + sum q^2)`` over off-diagonal pairs, ``q`` the partial correlations
    ``-S_ij / sqrt(S_ii S_jj)`` with ``S = R^-1`` (pseudo-inverse when singular). Returns the overall
    value and one per variable.
    """
    R = np.asarray(R, dtype=float)
    S = np.linalg.pinv(R)
    dg = np.sqrt(np.abs(np.diag(S)))
    Q = -S / np.outer(dg, dg)
    off = ~np.eye(R.shape[0], dtype=bool)
    r2 = np.where(off, R ** 2, 0.0)
    q2 = np.where(off, Q ** 2, 0.0)
    overall = float(r2.sum() / (r2.sum() + q2.sum()))
    per = r2.sum(axis=0) / (r2.sum(axis=0) + q2.sum(axis=0))
    return overall, per


def bartlett_sphericity(R: np.ndarray, n: int) -> tuple[float, int, float]:
    """Bartlett's test that a correlation matrix is the identity: ``(chi2, dof, p)``.

    ``chi2 = -(n - 1 - (2p + 5) / 6) ln |R|`` with ``p (p - 1) / 2`` degrees of freedom.
    """
    R = np.asarray(R, dtype=float)
    p = R.shape[0]
    sign, logdet = np.linalg.slogdet(R)
    if sign <= 0:
        return float("inf"), p * (p - 1) // 2, 0.0
    chi2 = -(n - 1 - (2 * p + 5) / 6.0) * logdet
    dof = p * (p - 1) // 2
    return float(chi2), dof, float(stats.chi2.sf(chi2, dof))


@dataclass
class PCAResult:
    """PCA on the correlation matrix, with the weights derived from it and the adequacy tests."""

    eigenvalues: np.ndarray
    explained: np.ndarray
    loadings: np.ndarray
    n_components: int
    w: np.ndarray
    kmo: float
    kmo_per_variable: np.ndarray
    bartlett_chi2: float
    bartlett_dof: int
    bartlett_p: float


def pca_weights(X: np.ndarray, positive: np.ndarray | None = None, *, min_eigenvalue: float = 1.0,
                min_cumulative: float | None = None, blocks: Blocks = None) -> PCAResult:
    """Indicator weights from principal components of the (direction-adjusted) correlation matrix.

    Components are kept by the Kaiser rule (eigenvalue >= ``min_eigenvalue``) or, when
    ``min_cumulative`` is given, until that share of variance is explained. The weight of indicator j is
    ``|sum_k lambda_k u_jk| / sum_j |...|`` over kept components, ``u_k`` the unit eigenvectors with the
    sign fixed so that their sum is positive (the "comprehensive score coefficient" of Chinese
    practice: ``sum_k (lambda_k / sum lambda) * loading_jk / sqrt(lambda_k)``, normalised). The correlation
    matrix comes from :func:`citytwin.economy.sums.covariance` (per block of ``blocks``).

    Examples
    --------
    >>> rng = np.random.default_rng(0); f = rng.normal(size=200)
    >>> X = np.c_[f + rng.normal(size=200) * .3, f + rng.normal(size=200) * .3, rng.normal(size=200)]
    >>> r = pca_weights(X); r.n_components, round(r.kmo, 2) < 0.6
    (1, True)
    """
    A = _as_matrix(X)
    pos = np.ones(A.shape[1], bool) if positive is None else np.asarray(positive, dtype=bool)
    if A.shape[1] < 2:
        raise InputError("PCA needs at least 2 indicators")
    if constant_columns(A).any():
        raise InputError("PCA: an indicator is constant (its correlation is undefined)",
                         hint="remove constant indicators")
    Z = np.where(pos, A, -A)
    return pca_from_correlation(S.correlation(S.covariance(_split(Z, blocks))), A.shape[0],
                                min_eigenvalue=min_eigenvalue, min_cumulative=min_cumulative)


def pca_from_correlation(R: np.ndarray, n: int, *, min_eigenvalue: float = 1.0,
                         min_cumulative: float | None = None) -> PCAResult:
    """:func:`pca_weights` from the correlation matrix ``R`` of the direction-adjusted indicators of
    ``n`` rows (the eigendecomposition, the sign convention, retention, KMO and Bartlett). Shared with
    the pooled index on Dask, which computes ``R`` from partial sums."""
    R = np.asarray(R, dtype=float)
    vals, vecs = np.linalg.eigh(R)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    vecs = vecs * np.where(vecs.sum(axis=0) < 0, -1.0, 1.0)
    explained = vals / vals.sum()
    if min_cumulative is not None:
        m = int(np.searchsorted(np.cumsum(explained), min_cumulative) + 1)
    else:
        m = max(1, int((vals >= min_eigenvalue).sum()))
    m = min(m, len(vals))
    loadings = vecs * np.sqrt(np.clip(vals, 0, None))
    coef = (vecs[:, :m] * vals[:m]).sum(axis=1) / vals[:m].sum()
    w = np.abs(coef) / np.abs(coef).sum()
    k_all, k_per = kmo(R)
    chi2, dof, p = bartlett_sphericity(R, n)
    return PCAResult(eigenvalues=vals, explained=explained, loadings=loadings, n_components=m, w=w,
                     kmo=k_all, kmo_per_variable=k_per, bartlett_chi2=chi2, bartlett_dof=dof, bartlett_p=p)


def combine_weights(a: np.ndarray, b: np.ndarray, *, method: Literal["linear", "multiplicative"] = "linear",
                    alpha: float = 0.5) -> np.ndarray:
    """Combine two weight vectors (e.g. subjective expert and objective entropy weights).

    ``linear``: ``alpha * a + (1 - alpha) * b``; ``multiplicative``: ``a * b / sum(a * b)``.

    Examples
    --------
    >>> combine_weights(np.array([.5, .5]), np.array([.2, .8]), method="multiplicative").round(2).tolist()
    [0.2, 0.8]
    """
    a = np.asarray(a, dtype=float) / np.sum(a)
    b = np.asarray(b, dtype=float) / np.sum(b)
    if a.shape != b.shape:
        raise InputError(f"cannot combine {a.size} weights with {b.size}")
    if method == "linear":
        if not 0.0 <= alpha <= 1.0:
            raise InputError(f"alpha must lie in [0, 1], got {alpha}", field="alpha")
        return alpha * a + (1 - alpha) * b
    if method == "multiplicative":
        ab = a * b
        if ab.sum() == 0:
            raise InputError("multiplicative combination: the weight vectors do not overlap")
        return ab / ab.sum()
    raise InputError(f"unknown combination {method!r}", hint="use linear or multiplicative")
