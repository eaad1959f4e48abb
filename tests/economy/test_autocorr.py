"""Spatial weights, Moran's I, LISA and Getis-Ord (B4): REFERENCES.md cases and esda side by side.

esda's local statistics are numba functions compiled on first use (~40 s on the 2-core CI
machine): they run once per session in the ``esda_local`` fixture.
"""

from __future__ import annotations

import warnings

import geopandas as gpd
import libpysal
import numpy as np
import pytest
from libpysal.examples import get_path
from shapely.geometry import box

from citytwin.economy.autocorr import getis_ord, local_moran, moran, spatial_weights
from citytwin.foundation.errors import InputError

P_LOCAL = 999
SEED = 20261121


def _stl() -> tuple[np.ndarray, libpysal.weights.W]:
    w = libpysal.io.open(get_path("stl.gal")).read()
    y = np.array(libpysal.io.open(get_path("stl_hom.txt")).by_col["HR8893"], dtype=float)
    return y, w


def test_moran_stl_reference_and_esda() -> None:
    import esda

    y, w = _stl()
    r = moran(y, w, permutations=999, seed=SEED)
    # REFERENCES.md [P]: I = 0.24365582621771659, E[I] = -0.012987
    assert pytest.approx(0.24365582621771659, abs=1e-14) == r.I
    assert pytest.approx(-0.012987, abs=5e-7) == r.EI
    np.random.seed(SEED)  # esda draws from numpy's global RandomState; ours from RandomState(seed)
    e = esda.Moran(y, libpysal.io.open(get_path("stl.gal")).read(), permutations=999)
    for ours, theirs in [(r.I, e.I), (r.VI_norm, e.VI_norm), (r.VI_rand, e.VI_rand), (r.z_norm, e.z_norm),
                         (r.z_rand, e.z_rand), (r.p_norm, e.p_norm), (r.p_rand, e.p_rand), (r.EI_sim, e.EI_sim),
                         (r.z_sim, e.z_sim)]:
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    assert r.p_sim == e.p_sim  # same draws -> same pseudo p-value exactly


def test_moran_sids2_reference() -> None:
    import esda

    w = libpysal.io.open(get_path("sids2.gal")).read()
    y = np.array(libpysal.io.open(get_path("sids2.dbf")).by_col("SIDR74"), dtype=float)
    r = moran(y, w, permutations=0)
    assert round(r.I, 4) == 0.2477  # REFERENCES.md [P] (matches GeoDa)
    assert pytest.approx(esda.Moran(y, w, permutations=0).I, abs=1e-14) == r.I
    assert np.isnan(r.p_sim)


def test_moran_on_weights_built_from_boundaries_equals_esda() -> None:
    import esda

    g = gpd.read_file(get_path("sids2.shp"))
    for kind, extra in [("queen", {}), ("rook", {}), ("knn", {"k": 5}), ("distance", {})]:
        w = spatial_weights(g, kind, ids="FIPSNO", **extra)  # type: ignore[arg-type]
        assert w.id_order == list(g["FIPSNO"]) and not w.islands
        y = g["SIDR74"].to_numpy(dtype=float)
        r = moran(y, w, permutations=0)
        assert pytest.approx(esda.Moran(y, w, permutations=0).I, abs=1e-14) == r.I, kind
    # queen ⊇ rook, and distance with the default threshold leaves nobody alone
    q, rk = spatial_weights(g, "queen"), spatial_weights(g, "rook")
    assert all(set(rk.neighbors[i]) <= set(q.neighbors[i]) for i in q.id_order)
    assert sum(q.cardinalities.values()) >= sum(rk.cardinalities.values())


@pytest.fixture(scope="session")
def esda_lisa() -> object:
    import esda

    y, _ = _stl()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return esda.Moran_Local(y, libpysal.io.open(get_path("stl.gal")).read(), permutations=P_LOCAL, seed=SEED)


@pytest.mark.slow  # esda compiles its numba permutation engine on first use (~40 s on 2 shared cores)
def test_local_moran_equals_esda(esda_lisa: object) -> None:
    y, w = _stl()
    ours = local_moran(y, w, permutations=P_LOCAL, seed=SEED, draws="esda")
    e = esda_lisa
    np.testing.assert_allclose(ours["Ii"], e.Is, rtol=0, atol=1e-13)  # type: ignore[attr-defined]
    np.testing.assert_allclose(ours["EI"], e.EI, rtol=0, atol=1e-13)  # type: ignore[attr-defined]
    np.testing.assert_allclose(ours["VI"], e.VI, rtol=0, atol=1e-13)  # type: ignore[attr-defined]
    assert (ours["q"].to_numpy() == e.q).all()  # type: ignore[attr-defined]
    # Same seed -> the same permutation draws as esda.crand. A permuted statistic that ties the
    # observed one exactly can fall either side by one ulp (different summation order), so we allow
    # at most one count of difference per unit: |Δp| <= 1/(P+1).
    dp = np.abs(ours["p_sim"].to_numpy() - e.p_sim)  # type: ignore[attr-defined]
    assert dp.max() <= 1.0 / (P_LOCAL + 1) + 1e-12
    assert (dp == 0).mean() > 0.9
    np.testing.assert_allclose(ours["EI_sim"], e.EI_sim, atol=1e-4)  # type: ignore[attr-defined]
    np.testing.assert_allclose(ours["z_sim"], e.z_sim, atol=1e-2)  # type: ignore[attr-defined]
    assert set(ours["quadrant"]) <= {"HH", "LH", "LL", "HL"}
    assert (ours.loc[ours["p_sim"] > 0.05, "cluster"] == "ns").all()
    # The default draws="fast" uses other random draws (partial Fisher-Yates): same statistic,
    # p-values equal up to Monte Carlo error. With P = 999 the s.e. of a difference of two
    # independent pseudo p-values is <= sqrt(2 * .25 / 1000) = 0.022; we allow 0.08 (> 3.5 s.e.).
    fast = local_moran(y, w, permutations=P_LOCAL, seed=SEED)
    np.testing.assert_allclose(fast["Ii"], ours["Ii"], rtol=0, atol=0)
    assert np.abs(fast["p_sim"].to_numpy() - e.p_sim).max() < 0.08  # type: ignore[attr-defined]
    assert np.corrcoef(fast["p_sim"], e.p_sim)[0, 1] > 0.98  # type: ignore[attr-defined]


def test_fast_draws_are_uniform_samples_without_replacement() -> None:
    from citytwin.stats.autocorr import _perm_ids_fast

    ids = _perm_ids_fast(5, 21, 20000, 3)  # 5 distinct ids out of 0..19 per permutation
    assert ids.min() == 0 and ids.max() == 19
    assert all(len(set(row)) == 5 for row in ids[:2000])
    # every id appears in position j with probability 1/20: chi-square over the 20 x 5 cells
    counts = np.stack([np.bincount(ids[:, j], minlength=20) for j in range(5)])
    from scipy.stats import chisquare

    assert chisquare(counts.ravel()).pvalue > 1e-3
    assert (_perm_ids_fast(5, 21, 10, 3) == ids[:10]).all()  # reproducible with the seed


@pytest.mark.parametrize("star", [True, False])
def test_getis_ord_equals_esda(star: bool) -> None:
    import esda

    from citytwin.stats.autocorr import _perm_ids

    y, w = _stl()
    ours = getis_ord(y, w, star=star, permutations=P_LOCAL, seed=SEED, draws="esda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # permutations=0: esda's analytic part only (its numba permutation engine would cost another
        # ~40 s compile per statistic); p_sim is checked below against the definition instead.
        e = esda.G_Local(y, libpysal.io.open(get_path("stl.gal")).read(), star=star, permutations=0)
    np.testing.assert_allclose(ours["G"], e.Gs, rtol=1e-13)
    np.testing.assert_allclose(ours["EG"], e.EGs, rtol=1e-13)
    np.testing.assert_allclose(ours["VG"], e.VGs, rtol=1e-12)
    np.testing.assert_allclose(ours["z"], e.Zs, rtol=1e-12)
    np.testing.assert_allclose(ours["p_norm"], e.p_norm, rtol=1e-10, atol=1e-15)
    # p_sim from the definition of conditional permutation (esda.crand): unit i keeps its value and
    # weights; its neighbours are replaced by the permutation draws (ids >= i shifted by one).
    A = w.sparse.toarray()
    if star:
        A = A + np.eye(w.n)
    ids = _perm_ids(int((A > 0).sum(axis=1).max()), w.n, P_LOCAL, SEED)
    for i in [0, 17, 40, 77]:
        nb = np.flatnonzero((A[i] > 0) & (np.arange(w.n) != i))
        wts = A[i, nb] / A[i].sum()
        others = np.delete(np.arange(w.n), i)
        draws = y[others[ids[:, : nb.size]]] @ wts
        sims = (draws + (A[i, i] / A[i].sum()) * y[i]) / y.sum() if star else draws / (y.sum() - y[i])
        larger = int((sims >= ours["G"].iloc[i]).sum())
        larger = min(larger, P_LOCAL - larger)
        assert ours["p_sim"].iloc[i] == pytest.approx((larger + 1) / (P_LOCAL + 1), abs=1.0 / (P_LOCAL + 1))
        assert ours["EG_sim"].iloc[i] == pytest.approx(sims.mean(), rel=1e-12)
    hot = ours["hotspot"]
    assert set(hot) <= {"hot", "cold", "ns"} and (hot[ours["p_sim"] > 0.05] == "ns").all()


def _with_island() -> gpd.GeoDataFrame:
    cells = [box(x, y, x + 1, y + 1) for x in range(3) for y in range(3)] + [box(10, 10, 11, 11)]
    return gpd.GeoDataFrame({"code": [f"u{i}" for i in range(10)]}, geometry=cells)


def test_islands_reported_raised_or_attached() -> None:
    g = _with_island()
    with pytest.warns(UserWarning, match="1 island"):
        w = spatial_weights(g, "queen", ids="code")
    assert w.islands == ["u9"]
    with pytest.raises(InputError, match="without neighbours: \\['u9'\\]"):
        spatial_weights(g, "queen", ids="code", islands="raise")
    wn = spatial_weights(g, "queen", ids="code", islands="nearest")
    assert not wn.islands
    assert wn.neighbors["u9"] == ["u8"]  # the cell at (2..3, 2..3) is the nearest to (10..11, 10..11)
    assert "u9" in wn.neighbors["u8"]  # attached symmetrically


def test_island_local_results_differ_from_esda_on_purpose() -> None:
    g = _with_island()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = spatial_weights(g, "queen", ids="code")
    y = np.arange(10, dtype=float)
    lm = local_moran(y, w, permutations=99, seed=1)
    # esda gives an island a lag of 0 and p_sim = 1/(P+1) ("significant"); we report NaN and "island".
    assert np.isnan(lm.loc["u9", "p_sim"]) and lm.loc["u9", "quadrant"] == "island"
    assert lm.loc["u9", "cluster"] == "island"
    assert lm.drop(index="u9")["p_sim"].notna().all()
    r = moran(y, w, permutations=9, seed=1)
    assert r.islands == ["u9"] and np.isfinite(r.I)


def test_bad_input() -> None:
    y, w = _stl()
    with pytest.raises(InputError, match="constant"):
        moran(np.ones(w.n), w)
    with pytest.raises(InputError, match="constant"):
        local_moran(np.ones(w.n), w)
    with pytest.raises(InputError, match="missing or infinite"):
        moran(np.where(np.arange(w.n) == 3, np.nan, y), w)
    with pytest.raises(InputError, match="weights have 78 units but y has 77"):
        moran(y[:-1], w)
    with pytest.raises(InputError, match="negative"):
        getis_ord(y - y.mean(), w)
    with pytest.raises(InputError, match="unknown weights kind"):
        spatial_weights(_with_island(), "hexagon")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="k=20"):
        spatial_weights(_with_island(), "knn", k=20)


def test_real_city_boundaries_weights(shared_data) -> None:  # type: ignore[no-untyped-def]
    g = gpd.read_file(shared_data / "city_boundaries_cnmaps" / "china_cities_amap_simplified_0.01deg.geojson")
    with pytest.warns(UserWarning, match="island"):
        w = spatial_weights(g, "queen", ids="adcode")
    names = dict(zip(g["adcode"], g["name"], strict=True))
    assert {names[i] for i in w.islands} == {"三沙市", "台湾省"}  # offshore units have no land border
    wk = spatial_weights(g, "knn", k=6, ids="adcode")  # lon/lat projected to AEQD metres
    assert all(c == 6 for c in wk.cardinalities.values())
    wd = spatial_weights(g, "distance", ids="adcode")  # default: smallest band without islands
    assert not wd.islands


def _island_pair() -> gpd.GeoDataFrame:
    # a 3 x 3 block and an offshore pair B1, B2 that are each other's nearest unit (issue 12)
    cells = [box(x, y, x + 1, y + 1) for x in range(3) for y in range(3)]
    cells += [box(10, 10, 11, 11), box(12, 10, 13, 11)]
    return gpd.GeoDataFrame({"code": [f"u{i}" for i in range(9)] + ["B1", "B2"]}, geometry=cells)


def test_island_pair_attached_once_and_symmetric_against_libpysal() -> None:
    import esda
    from libpysal.weights import KNN, Queen, W

    g = _island_pair()
    w = spatial_weights(g, "queen", ids="code", islands="nearest")
    # expected from libpysal alone: Queen on the same geometry, plus each island's KNN(k=1)
    # neighbour on the representative points, joined symmetrically, every link once
    q = Queen.from_dataframe(g, ids="code", use_index=False, silence_warnings=True)
    pts = g.geometry.representative_point()
    knn = KNN(np.column_stack([pts.x, pts.y]), k=1, ids=list(g["code"]))
    expected = {u: set(q.neighbors[u]) for u in g["code"]}
    for u in q.islands:
        v = knn.neighbors[u][0]
        expected[u].add(v)
        expected[v].add(u)
    assert {u: set(v) for u, v in w.neighbors.items()} == expected
    assert w.neighbors["B1"] == ["B2"] and w.neighbors["B2"] == ["B1"]  # not ['B2', 'B2']
    assert all(len(v) == len(set(v)) for v in w.neighbors.values())
    assert all(x == 1.0 for ws in w.weights.values() for x in ws)
    a = w.sparse
    assert (a != a.T).nnz == 0 and a.max() == 1.0
    # LISA and G* of the pair equal esda's on the libpysal W built from the expected links
    wx = W({u: sorted(v) for u, v in expected.items()}, id_order=list(g["code"]), silence_warnings=True)
    y = np.arange(11, dtype=float) ** 1.5
    lm = local_moran(y, w, permutations=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = esda.Moran_Local(y, wx, permutations=0)
        gs = esda.G_Local(y, wx, star=True, permutations=0)
    np.testing.assert_allclose(lm["Ii"], e.Is, rtol=0, atol=1e-13)
    np.testing.assert_allclose(getis_ord(y, w, permutations=0)["G"], gs.Gs, rtol=1e-13)
