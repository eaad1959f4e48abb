"""B1 weighting methods against the published cases of shared/REFERENCES.md and peer libraries.

Peers: pymcdm / scikit-criteria (MCDM peers) and factor_analyzer (KMO, Bartlett) are not installed
(and not added), so entropy, CRITIC and TOPSIS are checked against the published numbers; PCA against
statsmodels' and scikit-learn's PCA run side by side; KMO and Bartlett against an independent route
(partial correlations from OLS residuals, the determinant from eigenvalues).
"""

from __future__ import annotations

import numpy as np
import pytest

from citytwin.economy import weights as W
from citytwin.foundation.errors import InputError

# Elsayed, Dawood & Karthikeyan (2017): 12 alternatives x 5 criteria, all benefit.
ELSAYED = np.array([[7, 312, 1891, 6613, 163], [72, 88, 728, 941804, 1078], [10, 252, 2594, 3466, 117471],
                    [10, 145, 980, 2371, 86329], [65, 54, 350, 501, 29897], [29, 48, 380, 912, 34051],
                    [7, 476, 3300, 78470, 2212], [70, 87, 650, 733, 819000], [4, 86, 591, 3015, 103],
                    [12, 79, 579, 3240, 96098], [21, 45, 261, 1253, 453], [1, 72, 530, 4333, 0.1048]], float)


def test_entropy_elsayed_sum_normalisation() -> None:
    # Published to 6 decimals: tolerance 5e-7 (half a unit of the last printed digit).
    r = W.entropy_weights(ELSAYED, normalisation="sum")
    np.testing.assert_allclose(r.e, [0.807441, 0.873223, 0.869097, 0.174789, 0.441391], atol=5e-7)
    np.testing.assert_allclose(r.w, [0.104991, 0.069124, 0.071373, 0.449937, 0.304575], atol=5e-7)
    assert r.k == pytest.approx(1 / np.log(12))


@pytest.mark.parametrize(("scale", "shift", "expected"), [
    (1.0, 0.0, [0.100087, 0.130043, 0.111524, 0.394900, 0.263447]),      # no shift, 0 ln 0 = 0
    (1.0, 0.0001, [0.100215, 0.130160, 0.111642, 0.394631, 0.263353]),
    (1.0, 0.01, [0.109802, 0.138298, 0.120272, 0.373265, 0.258364]),
    (0.998, 0.002, [0.102374, 0.132102, 0.113642, 0.389797, 0.262085]),
])
def test_entropy_minmax_variants(scale: float, shift: float, expected: list[float]) -> None:
    r = W.entropy_weights(ELSAYED, normalisation="minmax", scale=scale, shift=shift)
    np.testing.assert_allclose(r.w, expected, atol=5e-7)


def test_entropy_cost_indicator_minmax_reverses() -> None:
    # A cost indicator min-max normalised is (max - x) / (max - min): the same entropy as the benefit
    # version of -x.
    X = ELSAYED[:, :2]
    a = W.entropy_weights(X, np.array([True, False]))
    b = W.entropy_weights(np.c_[X[:, 0], -X[:, 1]], np.array([True, True]))
    np.testing.assert_allclose(a.w, b.w, rtol=1e-12)


def test_critic_tus_adali() -> None:
    X = np.array([[5000, 3, 3, 4, 3, 2], [680, 5, 3, 2, 2, 1], [2000, 3, 2, 3, 4, 3], [600, 4, 3, 1, 2, 2],
                  [800, 2, 4, 3, 3, 4]], float)
    r = W.critic_weights(X)
    # Published to 3 decimals: tolerance 5e-4.
    np.testing.assert_allclose(r.w, [0.157, 0.249, 0.168, 0.121, 0.154, 0.151], atol=5e-4)
    np.testing.assert_allclose(W.critic_weights(X, ddof=0).w, r.w, rtol=1e-12)  # ddof cancels


OPRICOVIC = np.array([[1.0, 3000], [2, 3750], [5, 4500]])


def test_topsis_opricovic_vector() -> None:
    r = W.topsis(OPRICOVIC, np.array([0.5, 0.5]), np.array([False, True]), normalisation="vector")
    np.testing.assert_allclose(r.closeness, [0.7621, 0.7222, 0.2379], atol=5e-5)


def test_topsis_opricovic_minmax() -> None:
    r = W.topsis(OPRICOVIC, np.array([0.5, 0.5]), np.array([False, True]), normalisation="minmax")
    np.testing.assert_allclose(r.closeness, [0.500, 0.617, 0.500], atol=5e-4)


def _factor_data(n: int = 300, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f1, f2 = rng.normal(size=n), rng.normal(size=n)
    return np.c_[f1 + .5 * rng.normal(size=n), f1 + .6 * rng.normal(size=n), f1 + f2 + .4 * rng.normal(size=n),
                 f2 + .5 * rng.normal(size=n), f2 + .7 * rng.normal(size=n), rng.normal(size=n)]


def test_pca_against_statsmodels_and_sklearn() -> None:
    from sklearn.decomposition import PCA as SkPCA
    from statsmodels.multivariate.pca import PCA as SmPCA

    X = _factor_data()
    r = W.pca_weights(X)
    sm = SmPCA(X, standardize=True, demean=True, method="eig")
    # statsmodels' eigenvalues are those of Z'Z with Z standardised (ddof 0): n times the correlation's.
    np.testing.assert_allclose(r.eigenvalues, np.sort(sm.eigenvals)[::-1] / len(X), rtol=1e-10)
    Z = (X - X.mean(0)) / X.std(0)
    sk = SkPCA().fit(Z)
    np.testing.assert_allclose(r.explained, sk.explained_variance_ratio_, rtol=1e-10)
    assert r.n_components == int((r.eigenvalues >= 1).sum()) == 2
    assert r.w.sum() == pytest.approx(1.0) and (r.w >= 0).all()
    # Comprehensive coefficient, by hand from sklearn's components (sign-fixed to a positive sum).
    comps = sk.components_[:2].T * np.where(sk.components_[:2].sum(axis=1) < 0, -1, 1)
    lam = sk.explained_variance_[:2] * (len(X) - 1) / len(X)
    coef = np.abs((comps * lam).sum(axis=1) / lam.sum())
    np.testing.assert_allclose(r.w, coef / coef.sum(), rtol=1e-8)


def test_kmo_and_bartlett_independent_route() -> None:
    X = _factor_data()
    r = W.pca_weights(X)
    n, p = X.shape
    R = np.corrcoef(X, rowvar=False)
    # Partial correlation of i, j given the rest = correlation of OLS residuals.
    Q = np.eye(p)
    for i in range(p):
        for j in range(i + 1, p):
            rest = [k for k in range(p) if k not in (i, j)]
            A = np.c_[np.ones(n), X[:, rest]]
            ei = X[:, i] - A @ np.linalg.lstsq(A, X[:, i], rcond=None)[0]
            ej = X[:, j] - A @ np.linalg.lstsq(A, X[:, j], rcond=None)[0]
            Q[i, j] = Q[j, i] = np.corrcoef(ei, ej)[0, 1]
    off = ~np.eye(p, dtype=bool)
    kmo = (R[off] ** 2).sum() / ((R[off] ** 2).sum() + (Q[off] ** 2).sum())
    assert r.kmo == pytest.approx(kmo, rel=1e-9)
    logdet = np.log(np.linalg.eigvalsh(R)).sum()
    chi2 = -(n - 1 - (2 * p + 5) / 6) * logdet
    assert r.bartlett_chi2 == pytest.approx(chi2, rel=1e-9)
    assert r.bartlett_dof == 15 and r.bartlett_p < 1e-10
    # Identity correlation: chi2 0, p 1.
    assert W.bartlett_sphericity(np.eye(4), 100)[0] == pytest.approx(0.0, abs=1e-12)


def test_constant_column_gets_zero_weight() -> None:
    X = np.c_[ELSAYED[:, :3], np.full(12, 7.0)]
    e = W.entropy_weights(X)
    assert e.w[3] == 0 and e.e[3] == pytest.approx(1.0)
    c = W.critic_weights(X)
    assert c.w[3] == 0
    np.testing.assert_allclose(c.w[:3], W.critic_weights(X[:, :3]).w, rtol=1e-12)
    with pytest.raises(InputError, match="constant"):
        W.pca_weights(X)


def test_sum_normalisation_refuses_negative_values() -> None:
    X = ELSAYED[:, :2].copy()
    X[3, 1] = -1
    with pytest.raises(InputError, match="negative"):
        W.entropy_weights(X, normalisation="sum")
    W.entropy_weights(X, normalisation="minmax")  # min-max handles negative values


def test_combine_weights() -> None:
    a, b = np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.25, 0.25])
    np.testing.assert_allclose(W.combine_weights(a, b, alpha=0.4), 0.4 * a + 0.6 * b)
    m = W.combine_weights(a, b, method="multiplicative")
    np.testing.assert_allclose(m, a * b / (a * b).sum())
    with pytest.raises(InputError):
        W.combine_weights(a, b, alpha=1.5)
