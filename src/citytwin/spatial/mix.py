"""D3 functional mix: entropy and Simpson mix of POI / land-use categories per H3 cell or block.

Indices (shares p_k of the K classes of the classification in a cell):

* entropy ``H = -sum p_k ln p_k`` and normalised entropy ``H / ln K`` where K is the number of
  classes in the *classification* (not the number present in the cell), so that values are
  comparable across cells; shares (0.5, 0.3, 0.2) give 0.93723 with K = 3 and 0.63976 with K = 5;
* Gini-Simpson ``1 - sum p_k^2`` (probability that two random POIs differ in category) and the
  Simpson concentration ``sum p_k^2``.

Composite-function label of a cell (the rule used in Chinese POI studies of functional zones): a
category with at least ``single_share`` (50 %) of the cell's POIs makes it ``single:<category>``;
otherwise the categories with at least ``part_share`` (20 %) make ``composite:<a>+<b>``, and a cell
with no such category is ``mixed``.

Peers: momepy (``shannon``, ``simpson``) computes the same entropy and Simpson indices over a graph
of neighbouring elements; we keep our own grouped computation (a few numpy lines) because momepy
does not normalise by the classification's K and works on a spatial graph, not on H3 cells.
``tests/spatial/test_mix.py::test_against_momepy_on_helsinki`` checks equality (1e-12) on the real
Helsinki POIs.
"""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.spatial.geo import InputReport, id_column, require_crs, valid_geometries
from citytwin.spatial.grid import cells_frame, point_cells

#: Categories left out of the mix by default (not activities).
NON_ACTIVITY: tuple[str, ...] = ("street_furniture", "other")


def entropy(shares: Sequence[float] | np.ndarray, n_classes: int | None = None) -> float:
    """Shannon entropy of shares; normalised by ``ln n_classes`` when given.

    Examples
    --------
    >>> round(entropy([0.5, 0.3, 0.2], 3), 5)
    0.93723
    >>> round(entropy([0.5, 0.3, 0.2], 5), 5)
    0.63976
    """
    return float(entropy_rows(np.asarray(shares, dtype=float)[None, :], n_classes)[0])


def entropy_rows(counts: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Entropy of each row of a counts (or shares) matrix; rows summing to 0 give NaN."""
    c = np.asarray(counts, dtype=float)
    tot = c.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = c / tot
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    h = np.where(tot[:, 0] > 0, h, np.nan)
    if n_classes is not None:
        if n_classes < 2:
            raise InputError("the classification needs at least 2 classes to normalise entropy",
                             field="n_classes")
        h = h / np.log(n_classes)
    return h


def simpson_rows(counts: np.ndarray) -> np.ndarray:
    """Simpson concentration ``sum p^2`` of each row (NaN for empty rows).

    Examples
    --------
    >>> simpson_rows(np.array([[5, 3, 2]])).round(2).tolist()
    [0.38]
    """
    c = np.asarray(counts, dtype=float)
    tot = c.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = ((c / tot[:, None]) ** 2).sum(axis=1)
    return np.where(tot > 0, s, np.nan)


def composite_label(shares: pd.Series, single_share: float = 0.5, part_share: float = 0.2) -> str:
    """``single:<cat>``, ``composite:<a>+<b>...`` or ``mixed`` from one cell's shares.

    Examples
    --------
    >>> composite_label(pd.Series({"shop": 0.6, "office": 0.4}))
    'single:shop'
    >>> composite_label(pd.Series({"shop": 0.4, "office": 0.35, "park": 0.25}))
    'composite:shop+office+park'
    """
    s = shares[shares > 0].sort_values(ascending=False)
    if len(s) == 0:
        return "empty"
    if s.iloc[0] >= single_share:
        return f"single:{s.index[0]}"
    parts = [str(k) for k, v in s.items() if v >= part_share]
    return "composite:" + "+".join(parts) if parts else "mixed"


def functional_mix(pois: gpd.GeoDataFrame, *, resolution: int = 9, category_col: str = "category",
                   classes: Sequence[str] | None = None, zone_col: str | None = None,
                   exclude: Sequence[str] = NON_ACTIVITY, min_pois: int = 1, single_share: float = 0.5,
                   part_share: float = 0.2) -> gpd.GeoDataFrame:
    """Mix indices per H3 cell (or per ``zone_col`` block) of categorised POIs or land-use features.

    Parameters
    ----------
    pois
        Points or polygons with a category column (polygons count once, at a representative point).
    resolution
        H3 resolution (9: cells of ~0.1 km2) when ``zone_col`` is not given.
    classes
        The classification (its size is K for the normalised entropy). Default: every category
        present in ``pois`` after ``exclude``.
    zone_col
        Use this column (block / parcel id) instead of H3 cells; the result then has no geometry
        of its own but the union of the features of each zone.
    exclude
        Categories left out (default street furniture and unclassified).
    min_pois
        Cells with fewer POIs are kept but get NaN indices (too few to judge).

    Returns
    -------
    GeoDataFrame, one row per cell: ``n_pois``, one count column per class (``n_<class>``),
    ``n_classes_present``, ``entropy``, ``entropy_norm``, ``gini_simpson``, ``simpson``,
    ``dominant``, ``dominant_share``, ``label``; attribute ``attrs["report"]`` says what was dropped.

    Examples
    --------
    >>> pts = gpd.GeoDataFrame({"category": ["shop"] * 5 + ["office"] * 3 + ["park"] * 2},
    ...                        geometry=gpd.points_from_xy([24.94] * 10, [60.17] * 10), crs=4326)
    >>> m = functional_mix(pts, classes=["shop", "office", "park"])
    >>> round(float(m["entropy_norm"].iloc[0]), 5), m["label"].iloc[0]
    (0.93723, 'single:shop')
    """
    report = InputReport()
    require_crs(pois, "pois")
    if category_col not in pois.columns:
        raise InputError(f"no column {category_col!r}", field=category_col)
    pois = valid_geometries(pois, id_column(pois), "pois", report)
    if classes is not None:  # Chinese map-platform categories (运动健身:网球场) to the given classes
        from citytwin.spatial.lifecircle import map_chinese_categories

        pois = map_chinese_categories(pois, category_col, list(classes), report)
    cat = pois[category_col].astype("string")
    keep = cat.notna() & ~cat.isin(list(exclude))
    if (~keep).any():
        report.note(f"{int((~keep).sum())} feature(s) in excluded or empty categories left out")
    pois = pois[keep.to_numpy()]
    cls = list(classes) if classes is not None else sorted(pois[category_col].astype(str).unique())
    unknown = sorted(set(pois[category_col].astype(str)) - set(cls))
    if unknown:
        report.note(f"categories not in the classification left out: {', '.join(unknown)}")
        pois = pois[pois[category_col].astype(str).isin(cls)]
    k = len(cls)
    cols = ["n_pois"] + [f"n_{c}" for c in cls] + ["n_classes_present", "entropy", "entropy_norm",
                                                   "gini_simpson", "simpson", "dominant", "dominant_share", "label"]
    if len(pois) == 0:
        report.note("no POIs in the area (empty result)")
        out = gpd.GeoDataFrame({c: pd.Series([], dtype=float) for c in ["cell", *cols]},
                               geometry=gpd.GeoSeries([], crs=4326), crs=4326)
        out.attrs["report"] = report.as_dict()
        return out
    if zone_col is None:
        zone = pd.Series(point_cells(pois, resolution), index=pois.index, name="cell")
    else:
        if zone_col not in pois.columns:
            raise InputError(f"no column {zone_col!r}", field=zone_col)
        zone = pois[zone_col].rename("cell")
    counts = pd.crosstab(zone, pois[category_col].astype(str)).reindex(columns=cls, fill_value=0)
    c = counts.to_numpy(dtype=float)
    n = c.sum(axis=1)
    ok = n >= min_pois
    df = pd.DataFrame(index=counts.index)
    df["n_pois"] = n.astype(int)
    for i, name in enumerate(cls):
        df[f"n_{name}"] = c[:, i].astype(int)
    df["n_classes_present"] = (c > 0).sum(axis=1)
    df["entropy"] = np.where(ok, entropy_rows(c), np.nan)
    df["entropy_norm"] = np.where(ok, entropy_rows(c, k), np.nan) if k >= 2 else np.nan
    simp = simpson_rows(c)
    df["simpson"] = np.where(ok, simp, np.nan)
    df["gini_simpson"] = np.where(ok, 1 - simp, np.nan)
    shares = counts.div(np.maximum(n, 1), axis=0)
    df["dominant"] = shares.idxmax(axis=1)
    df["dominant_share"] = shares.max(axis=1)
    df["label"] = [composite_label(shares.loc[i], single_share, part_share) if o else "too_few"
                   for i, o in zip(shares.index, ok, strict=True)]
    if zone_col is None:
        out = cells_frame(df.index, df)
    else:
        geom = pois.to_crs(4326).dissolve(by=zone_col).geometry.envelope
        out = gpd.GeoDataFrame(df.reset_index(), geometry=geom.reindex(df.index).to_numpy(), crs=4326)
    out.attrs["report"] = report.as_dict()
    out.attrs["classes"] = cls
    return out
