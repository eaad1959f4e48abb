"""Benchmark: the digital-economy pipeline (B1-B4) on a generated city panel, seconds per stage.

Panel: ``cities`` x ``years`` x ``indicators`` (default 300 x 20 x 40 = 6,000 city-years), lognormal
indicators with a common city factor and a trend, 1/4 of them negative (cost) indicators, cities on a
lattice (15 x 20 for 300) (rook contiguity) and assigned to the four NBS regions by position.

Stages (citytwin): prepare + pooled entropy index, TOPSIS, CRITIC, PCA (with KMO/Bartlett), ranks per
year, natural-break tiers per year, region assignment, population-weighted group scores, Dagum Gini
by region per year and global Moran's I with 999 permutations per year (both only if
``citytwin.economy.dagum`` / ``citytwin.economy.autocorr`` exist).

Peers measured in the same run on the same data, with the ratio citytwin / peer:

* entropy: a direct pandas transcription (the "spreadsheet" method, per-column loops as commonly written),
  also used to check that the weights agree;
* PCA: ``sklearn.decomposition.PCA`` on the standardised matrix (eigen-decomposition only);
* Moran's I: ``esda.Moran`` with the same permutations.

Usage::

    python bench/economy_pipeline.py --quick     # 60 cities x 8 years x 12 indicators
    python bench/economy_pipeline.py             # 300 x 20 x 40
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd


def machine() -> str:
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:  # pragma: no cover
        mem = "?"
    return f"nproc={os.cpu_count()}, memory={mem}"


def make_panel(cities: int, years: int, indicators: int, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    city_f = rng.normal(size=cities)
    cols = [f"x{j:02d}" for j in range(indicators)]
    load = rng.uniform(0.3, 1.0, size=indicators)
    neg = set(cols[: indicators // 4])
    data = np.empty((cities * years, indicators))
    keys = []
    for t in range(years):
        noise = rng.normal(scale=0.6, size=(cities, indicators))
        data[t * cities:(t + 1) * cities] = np.exp(3 + np.outer(city_f, load) + 0.03 * t + noise)
        keys += [(f"c{i:04d}", 2000 + t) for i in range(cities)]
    df = pd.DataFrame(data, columns=cols)
    df.insert(0, "year", [k[1] for k in keys])
    df.insert(0, "city", [k[0] for k in keys])
    df["pop"] = np.tile(rng.uniform(50, 1500, size=cities), years)
    spec = {"id": "city", "time": "year",
            "indicators": [{"column": c, "direction": "negative" if c in neg else "positive"} for c in cols]}
    return df, spec


def pandas_entropy(df: pd.DataFrame, spec: dict[str, Any]) -> pd.Series:
    """A direct transcription of the pooled entropy method as commonly written with pandas."""
    w = {}
    n = len(df)
    for ind in spec["indicators"]:
        x = df[ind["column"]]
        z = (x - x.min()) / (x.max() - x.min()) if ind["direction"] == "positive" else (x.max() - x) / (
            x.max() - x.min())
        p = z / z.sum()
        e = -(p[p > 0] * np.log(p[p > 0])).sum() / np.log(n)
        w[ind["column"]] = 1 - e
    s = pd.Series(w)
    return s / s.sum()


def timed(label: str, fn: Callable[[], Any], out: dict[str, float]) -> Any:
    t0 = time.perf_counter()
    r = fn()
    out[label] = time.perf_counter() - t0
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="60 cities x 8 years x 12 indicators")
    ap.add_argument("--cities", type=int, default=300)
    ap.add_argument("--years", type=int, default=20)
    ap.add_argument("--indicators", type=int, default=40)
    ap.add_argument("--permutations", type=int, default=999)
    a = ap.parse_args()
    if a.quick:
        a.cities, a.years, a.indicators = 60, 8, 12
    # cities on a rows_ x cols_ lattice, the divisor pair closest to square (300 -> 15 x 20)
    rows_ = max(d for d in range(1, int(np.sqrt(a.cities)) + 1) if a.cities % d == 0)
    cols_ = a.cities // rows_

    from citytwin.economy.groups import group_scores
    from citytwin.economy.index import composite_index
    from citytwin.economy.ranking import assign_tiers

    df, spec = make_panel(a.cities, a.years, a.indicators)
    print(f"economy pipeline: {a.cities} cities x {a.years} years x {a.indicators} indicators "
          f"= {len(df):,} city-years; {machine()}")
    t: dict[str, float] = {}
    peer: dict[str, float] = {}
    res = timed("index entropy (pooled)", lambda: composite_index(df, spec), t)
    pw = timed("index entropy (pooled)", lambda: pandas_entropy(df, spec), peer)
    agree = float(np.abs(res.weights["weight"].to_numpy() - pw.to_numpy()).max())
    timed("index topsis", lambda: composite_index(df, spec, "topsis"), t)
    timed("index critic", lambda: composite_index(df, spec, "critic"), t)
    pca = timed("index pca (+KMO, Bartlett)", lambda: composite_index(df, spec, "pca"), t)

    def sk_pca() -> Any:
        from sklearn.decomposition import PCA

        X = df[[i["column"] for i in spec["indicators"]]].to_numpy()
        return PCA().fit((X - X.mean(0)) / X.std(0))

    timed("index pca (+KMO, Bartlett)", sk_pca, peer)
    scores = res.scores.copy()
    timed("ranks per year", lambda: scores.assign(r2=scores.groupby("year")["score"].rank(ascending=False)), t)
    timed("tiers (natural breaks, per year)",
          lambda: assign_tiers(scores, "score", by="year", method="natural_breaks", k=5), t)
    idx = np.array([int(c[1:]) for c in scores["city"]])
    r_, c_ = idx // cols_, idx % cols_
    region = np.where(r_ < rows_ // 2, np.where(c_ < cols_ // 2, "east", "central"),
                      np.where(c_ < cols_ // 2, "northeast", "west"))
    scores["region"] = region
    scores["pop"] = df["pop"].to_numpy()
    timed("group scores (pop-weighted)", lambda: group_scores(scores, "score", "region", by="year", weight="pop"), t)
    notes = []
    try:
        from citytwin.economy.dagum import dagum_gini

        def dag() -> None:
            for _, s in scores.groupby("year"):
                dagum_gini(s["score"].to_numpy(), s["region"].to_numpy())

        timed("Dagum Gini by region (every year)", dag, t)
    except ImportError:
        notes.append("citytwin.economy.dagum not available: Dagum stage skipped")
    try:
        import esda
        import libpysal

        from citytwin.economy.autocorr import moran

        w = libpysal.weights.lat2W(rows_, cols_, rook=True)
        ys = [s.sort_values("city")["score"].to_numpy() for _, s in scores.groupby("year")]

        def ours() -> None:
            for k, y in enumerate(ys):
                moran(y, w, permutations=a.permutations, seed=k)

        def theirs() -> None:
            wr = libpysal.weights.lat2W(rows_, cols_, rook=True)
            wr.transform = "r"
            for k, y in enumerate(ys):
                np.random.seed(k)
                esda.Moran(y, wr, permutations=a.permutations)

        label = f"Moran's I, {a.permutations} permutations (every year)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            timed(label, ours, t)
            timed(label, theirs, peer)
    except ImportError:
        notes.append("citytwin.economy.autocorr not available: Moran stage skipped")
    total = sum(t.values())
    width = max(len(k) for k in t) + 2
    print(f"{'stage':{width}s} {'citytwin s':>11s} {'peer s':>9s} {'ratio':>7s}")
    for k, v in t.items():
        p = peer.get(k)
        ratio = f"{v / p:7.2f}" if p else "      -"
        print(f"{k:{width}s} {v:11.3f} {(f'{p:9.3f}' if p else '        -')} {ratio}")
    print(f"{'total':{width}s} {total:11.3f}")
    print("peers: entropy = direct pandas transcription (max |weight difference| "
          f"{agree:.2e}); pca = sklearn PCA (eigen-decomposition only; ours adds KMO, Bartlett and scores); "
          "Moran = esda.Moran, same permutations")
    print(f"pca diagnostics: KMO {pca.diagnostics['pooled']['kmo']:.3f}, "
          f"components kept {pca.diagnostics['pooled']['n_components']}")
    for n_ in notes:
        print("note:", n_)


if __name__ == "__main__":
    main()
