"""Global and local Moran's I (LISA) and local Getis-Ord G / G*: one implementation for economy and spatial.

What comes from where
---------------------
* The statistics and their analytical moments are **esda**'s: ``esda.Moran`` (global I, normal and
  randomisation inference, and its permutation test), ``esda.Moran_Local`` (``Is``, ``EI``, ``VI``
  and quadrants ``q``) and ``esda.G_Local`` (``Gs``, ``EGs``, ``VGs``, ``Zs``, ``p_norm``), called
  on a copy of the weights (esda sets ``w.transform`` on the W it gets).
* The **conditional permutations** of the local statistics are ours (a numba kernel): it keeps
  running sums instead of esda's ``n × permutations`` matrix, and the default ``draws="fast"``
  samples each permutation's neighbours by a partial Fisher-Yates shuffle instead of shuffling
  all n − 1 ids. Measured faster than ``esda.Moran_Local`` on the same machine and seed by
  ``bench/economy_disparity.py`` (ratio printed there; docs/benchmarks.md); with
  ``draws="esda"`` and the same ``seed`` the draws are esda's (``esda.crand``), and
  ``tests/economy/test_autocorr.py::test_local_moran_equals_esda`` checks p-values one to one.

Island convention (one, for every caller)
-----------------------------------------
A unit without neighbours (no link other than to itself) keeps esda's statistic (a lag of 0, so
Moran's ``Ii = 0``; its quadrant number ``q`` by esda's rule), but its permutation inference is
``NaN`` (esda gives it a pseudo p-value of ``1/(permutations+1)``, i.e. spuriously "significant"),
its ``quadrant`` and ``cluster`` are ``"island"``. For G*, an island counts itself only (self
weight 1 before the transform; esda's row-maximum self weight would be 0 there), so its ``G`` is
``y_i / sum(y)``; its ``p_sim`` is ``NaN``. ``spatial_weights(..., islands="nearest")`` in
``citytwin.economy.autocorr`` joins islands to their nearest unit instead.

Weights are a libpysal ``W`` (aligned with ``y`` in ``W.id_order``) or a square scipy sparse
matrix (e.g. H3 ring weights, ``citytwin.spatial.centers``); they are not modified.

Examples
--------
>>> import numpy as np, libpysal
>>> w = libpysal.weights.lat2W(3, 3)
>>> r = moran(np.arange(9.0), w, permutations=0)
>>> round(r.I, 4)
0.5556
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from citytwin.foundation.errors import InputError
from citytwin.stats.values import check_values

try:  # numba is installed with the project's PySAL stack; fall back to pure python loops otherwise
    from numba import njit
except ImportError:  # pragma: no cover
    def njit(*args: Any, **kwargs: Any) -> Any:  # type: ignore[no-redef]
        if args and callable(args[0]):
            return args[0]
        return lambda f: f

__all__ = ["LocalArrays", "MoranResult", "getis_ord", "local_moran", "local_moran_arrays", "moran"]


def _matrix(w: Any, n: int, transform: str) -> sp.csr_matrix:
    """CSR weights in W.id_order (or as given), transformed ('r' row-standardised, 'b' binary, 'o' as given)."""
    if sp.issparse(w):
        a = sp.csr_matrix(w, dtype=float, copy=True)
        if a.shape != (n, n):
            raise InputError(f"weights are {a.shape[0]} x {a.shape[1]} but y has {n} values", field="w")
    elif hasattr(w, "sparse"):
        if w.n != n:
            raise InputError(f"weights have {w.n} units but y has {n} values", field="w",
                             hint="align y with W.id_order")
        a = sp.csr_matrix(w.sparse, dtype=float, copy=True)
    else:
        raise InputError("weights must be a libpysal W or a scipy sparse matrix", field="w")
    t = transform.lower()
    if t == "b":
        a.data[:] = 1.0
    elif t == "r":
        rs = np.asarray(a.sum(axis=1)).ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            a = sp.csr_matrix(sp.diags(np.where(rs > 0, 1.0 / rs, 0.0)) @ a)
    elif t != "o":
        raise InputError(f"unknown transform {transform!r}", field="transform", hint="use r, b or o")
    return a


def _to_w(a: sp.csr_matrix) -> Any:
    """A fresh libpysal W (ids 0..n-1) holding the weights of ``a``: esda may transform it freely."""
    import libpysal.weights as lw

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lw.WSP(sp.csr_matrix(a)).to_W(silence_warnings=True)


def _ids(w: Any, n: int, ids: Any) -> pd.Index:
    if ids is not None:
        return pd.Index(list(ids), name="id")
    return pd.Index(list(w.id_order) if hasattr(w, "id_order") else range(n), name="id")


def _standardise(y: Any, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    arr = check_values(y, name=name, nonnegative=False, min_n=3)
    sd = arr.std()
    if not sd > 0:
        raise InputError("values are constant: spatial autocorrelation is undefined", field=name)
    return arr, (arr - arr.mean()) / sd


@contextlib.contextmanager
def _global_seed(seed: int | None) -> Iterator[None]:
    """Seed numpy's global RandomState (esda.Moran draws from it) and restore it afterwards."""
    if seed is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# --------------------------------------------------------------------------------------- global
@dataclass(frozen=True)
class MoranResult:
    """Global Moran's I with normal/randomisation moments and a permutation test.

    ``p_norm``/``p_rand`` are two-sided (as esda's default); ``p_sim`` is esda's folded one-sided
    pseudo p-value ``(min(larger, P-larger)+1)/(P+1)``; NaN when ``permutations == 0``.
    """

    I: float  # noqa: E741
    EI: float
    VI_norm: float
    z_norm: float
    p_norm: float
    VI_rand: float
    z_rand: float
    p_rand: float
    p_sim: float
    EI_sim: float
    z_sim: float
    n: int
    permutations: int
    islands: list[Any] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "islands"} | {
            "n_islands": len(self.islands)}


def moran(
    y: Any, w: Any, *, permutations: int = 999, seed: int | None = None, transform: str = "r"
) -> MoranResult:
    """Global Moran's I (``esda.Moran`` on a copy of ``w``).

    Parameters
    ----------
    y
        Values aligned with ``w.id_order`` (no NaN; not constant).
    w
        libpysal W (see ``citytwin.economy.autocorr.spatial_weights``) or scipy sparse matrix; not modified.
    permutations
        Random permutations for ``p_sim`` (0: none). With ``seed`` the draws equal
        ``numpy.random.seed(seed); esda.Moran(...)``; numpy's global random state is restored after.
    seed
        Seed of numpy's legacy global ``RandomState`` (the stream esda uses).
    transform
        ``"r"`` row-standardised (default), ``"b"`` binary, ``"o"`` as given.

    Examples
    --------
    >>> import libpysal
    >>> r = moran([1.0, 2, 3, 4, 5, 6, 7, 8, 9], libpysal.weights.lat2W(3, 3), permutations=99, seed=1)
    >>> round(r.EI, 4), r.p_sim < 0.05
    (-0.125, True)
    """
    import esda

    arr, _ = _standardise(y)
    n = arr.size
    a = _matrix(w, n, "o")
    if _matrix(a, n, transform).sum() == 0:
        raise InputError("weights have no links", field="w")
    with warnings.catch_warnings(), _global_seed(seed):
        warnings.simplefilter("ignore")
        e = esda.Moran(arr, _to_w(a), transformation=transform, permutations=permutations)
    nan = float("nan")
    sims = permutations > 0
    islands = list(getattr(w, "islands", []) or []) if not sp.issparse(w) else [
        int(i) for i in np.flatnonzero(np.diff(a.indptr) == 0)]
    return MoranResult(I=float(e.I), EI=float(e.EI), VI_norm=float(e.VI_norm), z_norm=float(e.z_norm),
                       p_norm=float(e.p_norm), VI_rand=float(e.VI_rand), z_rand=float(e.z_rand),
                       p_rand=float(e.p_rand), p_sim=float(e.p_sim) if sims else nan,
                       EI_sim=float(e.EI_sim) if sims else nan, z_sim=float(e.z_sim) if sims else nan,
                       n=n, permutations=permutations, islands=islands)


# ---------------------------------------------------------------------------- local, permutations
@njit(cache=True)
def _perm_ids(max_card: int, n: int, k: int, seed: int) -> np.ndarray:  # pragma: no cover - numba
    # Same draws as esda.crand.vec_permutations (numba's generator, seeded the same way).
    np.random.seed(seed)
    out = np.empty((k, max_card), dtype=np.int64)
    for r in range(k):
        out[r] = np.random.choice(n - 1, size=max_card, replace=False)
    return out


@njit(cache=True)
def _perm_ids_fast(max_card: int, n: int, k: int, seed: int) -> np.ndarray:  # pragma: no cover - numba
    # k samples of max_card distinct ids from 0..n-2 by partial Fisher-Yates on a running pool:
    # max_card draws per sample instead of a full permutation of n-1 (what esda does).
    np.random.seed(seed)
    m = n - 1
    pool = np.arange(m)
    out = np.empty((k, max_card), dtype=np.int64)
    for r in range(k):
        for j in range(max_card):
            t = j + np.random.randint(0, m - j)
            tmp = pool[j]
            pool[j] = pool[t]
            pool[t] = tmp
            out[r, j] = pool[j]
    return out


@njit(cache=True)
def _local_perm(z, indptr, data, selfw, obs, ids, scaling, kind):  # pragma: no cover
    # kind 0: Moran's Ii = zi*(sum w zj + wii zi)*scaling; 1: G = sum w yj/(scaling - yi); 2: G* = (..)/scaling
    n = z.shape[0]
    P = ids.shape[0]
    p_sim = np.full(n, np.nan)
    mean = np.full(n, np.nan)
    sd = np.full(n, np.nan)
    for i in range(n):
        s = indptr[i]
        c = indptr[i + 1] - s
        if c == 0:
            continue
        zi = z[i]
        cnt = 0
        s1 = 0.0
        s2 = 0.0
        for r in range(P):
            acc = 0.0
            for j in range(c):
                idx = ids[r, j]
                if idx >= i:
                    idx += 1
                acc += z[idx] * data[s + j]
            if kind == 0:
                st = zi * (acc + selfw[i] * zi) * scaling
            elif kind == 1:
                st = acc / (scaling - zi)
            else:
                st = (acc + selfw[i] * zi) / scaling
            if st >= obs[i]:
                cnt += 1
            s1 += st
            s2 += st * st
        if P - cnt < cnt:
            cnt = P - cnt
        p_sim[i] = (cnt + 1.0) / (P + 1.0)
        m = s1 / P
        mean[i] = m
        v = s2 / P - m * m
        sd[i] = np.sqrt(v) if v > 0 else 0.0
    return p_sim, mean, sd


def _permute_local(
    zvals: np.ndarray, a: sp.csr_matrix, obs: np.ndarray, permutations: int, seed: int | None,
    scaling: float, kind: int, draws: str = "fast",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = a.copy()
    selfw = a.diagonal().astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.setdiag(0)
        a.eliminate_zeros()
    n = zvals.size
    card = np.diff(a.indptr)
    max_card = int(card.max()) if card.size else 0
    if max_card == 0:
        nan = np.full(n, np.nan)
        return nan, nan, nan
    if seed is None:
        seed = int(np.random.default_rng().integers(12345, 12345000))
    if draws not in ("fast", "esda"):
        raise InputError(f"unknown draws {draws!r}", field="draws", hint="fast or esda")
    if max_card > n - 1:
        raise InputError("a unit has more neighbours than other units", field="w")
    gen = _perm_ids if draws == "esda" else _perm_ids_fast
    ids = gen(max_card, n, permutations, int(seed))
    return _local_perm(zvals.astype(float), a.indptr.astype(np.int64), a.data.astype(float), selfw,
                       obs.astype(float), ids, float(scaling), kind)


_QUAD = np.array(["HH", "LH", "LL", "HL"])


@dataclass(frozen=True)
class LocalArrays:
    """Local Moran's I per unit as arrays (esda's statistic and moments, our permutation inference)."""

    Is: np.ndarray
    EI: np.ndarray
    VI: np.ndarray
    q: np.ndarray  #: 1 HH, 2 LH, 3 LL, 4 HL (esda)
    island: np.ndarray  #: no neighbour
    p_sim: np.ndarray | None  #: None without permutations; NaN for islands
    EI_sim: np.ndarray | None
    sd_sim: np.ndarray | None


def local_moran_arrays(
    y: Any, w: Any, *, permutations: int = 999, seed: int | None = None, transform: str = "r",
    draws: Literal["fast", "esda"] = "fast",
) -> LocalArrays:
    """Local Moran's I: ``esda.Moran_Local`` (``permutations=0``) plus our conditional permutations.

    See :func:`local_moran` for the parameters; the island convention is the module's.
    """
    import esda

    arr, _ = _standardise(y)
    n = arr.size
    a = _matrix(w, n, "o")
    _matrix(a, n, transform)  # checks the transform name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = esda.Moran_Local(arr, _to_w(a), transformation=transform, permutations=0)
    aw = sp.csr_matrix(e.w.sparse, dtype=float)
    off = aw.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        off.setdiag(0)
    off.eliminate_zeros()
    island = np.diff(off.indptr) == 0
    p = m = sd = None
    if permutations:
        ez = np.asarray(e.z, dtype=float)
        p, m, sd = _permute_local(ez, aw, np.asarray(e.Is, dtype=float), permutations, seed,
                                  (n - 1) / float(e.den), 0, draws)
    return LocalArrays(Is=np.asarray(e.Is, dtype=float), EI=np.asarray(e.EI, dtype=float),
                       VI=np.asarray(e.VI, dtype=float), q=np.asarray(e.q, dtype=np.int64), island=island,
                       p_sim=p, EI_sim=m, sd_sim=sd)


def local_moran(
    y: Any, w: Any, *, permutations: int = 999, seed: int | None = None, transform: str = "r",
    alpha: float = 0.05, ids: Any = None, draws: Literal["fast", "esda"] = "fast",
) -> pd.DataFrame:
    """Local Moran's I (LISA) with conditional-permutation pseudo p-values.

    Parameters
    ----------
    draws
        ``"fast"`` (default): each permutation samples a unit's random neighbours by a partial
        Fisher-Yates shuffle (cost independent of n). ``"esda"``: the exact draws of
        ``esda.crand`` for the same ``seed`` (a full shuffle of n−1 ids per permutation; slower),
        so that p-values can be compared one to one with esda.

    Returns
    -------
    DataFrame indexed like ``w.id_order`` (or ``ids``) with ``Ii, EI, VI`` (total randomisation
    moments, Sokal 1998), ``p_sim`` (esda's folded pseudo p), ``EI_sim, z_sim, p_z_sim``,
    ``q`` (1 HH, 2 LH, 3 LL, 4 HL as esda), ``quadrant`` (``HH``/``LH``/``LL``/``HL``, ``"island"``)
    and ``cluster`` (quadrant where ``p_sim <= alpha``, else ``"ns"``; ``"island"``).

    Examples
    --------
    >>> import libpysal
    >>> df = local_moran([1.0, 2, 3, 4, 5, 6, 7, 8, 9], libpysal.weights.lat2W(3, 3), permutations=99, seed=1)
    >>> df["quadrant"].tolist()[:3]
    ['LL', 'LL', 'LL']
    """
    r = local_moran_arrays(y, w, permutations=permutations, seed=seed, transform=transform, draws=draws)
    quad = _QUAD[r.q - 1].astype(object)
    quad[r.island] = "island"
    out = pd.DataFrame({"Ii": r.Is, "EI": r.EI, "VI": r.VI, "q": r.q, "quadrant": quad},
                       index=_ids(w, r.Is.size, ids))
    if r.p_sim is not None and r.EI_sim is not None and r.sd_sim is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            zs = (r.Is - r.EI_sim) / r.sd_sim
        out["p_sim"], out["EI_sim"], out["z_sim"] = r.p_sim, r.EI_sim, zs
        out["p_z_sim"] = stats.norm.sf(np.abs(zs))
        sig = out["p_sim"].to_numpy() <= alpha
        out["cluster"] = np.where(sig, quad, "ns")
        out.loc[r.island, "cluster"] = "island"
    return out


def getis_ord(
    y: Any, w: Any, *, star: bool = True, permutations: int = 999, seed: int | None = None,
    transform: str = "r", alpha: float = 0.05, ids: Any = None, draws: Literal["fast", "esda"] = "fast",
) -> pd.DataFrame:
    """Local Getis-Ord G (``star=False``) or G* (``star=True``: each unit counts itself, weight 1).

    ``esda.G_Local`` (``permutations=0``) on the weights with the self weights set here (1 on the
    diagonal for G* when ``w`` has none, islands included; none for G), then our conditional
    permutations. ``y`` must be non-negative (G is a ratio of sums). Returns a DataFrame with ``G``
    (the statistic), ``EG``, ``VG``, ``z`` (normal approximation), ``p_norm`` (one-sided, as esda),
    ``p_sim``, ``EG_sim``, ``z_sim`` and ``hotspot`` (``"hot"``/``"cold"`` where p_sim <= alpha,
    else ``"ns"``). ``transform``: ``"r"`` row-standardised or ``"b"`` binary. ``draws`` as in
    :func:`local_moran`.

    Examples
    --------
    >>> import libpysal
    >>> df = getis_ord([1.0, 2, 3, 4, 5, 6, 7, 8, 9], libpysal.weights.lat2W(3, 3), permutations=0)
    >>> bool(df["z"].iloc[-1] > 0)
    True
    """
    import esda

    arr = check_values(y, min_n=3)
    if not arr.std() > 0:
        raise InputError("values are constant: Getis-Ord G is undefined", field="y")
    if transform.lower() not in ("r", "b"):
        raise InputError(f"unknown transform {transform!r}", field="transform", hint="use r or b")
    n = arr.size
    a = _matrix(w, n, "o")
    if star and (a.diagonal() == 0).all():
        a = sp.csr_matrix(a + sp.identity(n, format="csr"))
    if not star:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a.setdiag(0)
            a.eliminate_zeros()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = esda.G_Local(arr, _to_w(a), transform=transform.upper(), star=star, permutations=0)
    G = np.asarray(e.Gs, dtype=float)
    zsc = np.asarray(e.Zs, dtype=float)
    out = pd.DataFrame({"G": G, "EG": np.asarray(e.EGs, dtype=float) * np.ones(n),
                        "VG": np.asarray(e.VGs, dtype=float) * np.ones(n), "z": zsc,
                        "p_norm": np.asarray(e.p_norm, dtype=float)}, index=_ids(w, n, ids))
    if permutations:
        aw = sp.csr_matrix(e.w.sparse, dtype=float)
        p, m, sd = _permute_local(arr, aw, G, permutations, seed, float(arr.sum()), 2 if star else 1, draws)
        out["p_sim"], out["EG_sim"] = p, m
        with np.errstate(divide="ignore", invalid="ignore"):
            out["z_sim"] = (G - m) / sd
        sig = out["p_sim"].to_numpy() <= alpha
        out["hotspot"] = np.where(sig & (zsc > 0), "hot", np.where(sig & (zsc < 0), "cold", "ns"))
    return out
