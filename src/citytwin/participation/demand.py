"""Demand maps (G3): where residents ask for what.

- :func:`counts_by_cell` / :func:`counts_by_district`: reports per H3 cell or district, optionally
  per topic and period;
- :func:`hot_spots`: Getis-Ord G* (:func:`citytwin.stats.autocorr.getis_ord`) of the counts per H3
  cell, the neighbours being the cells that touch (``h3.grid_disk(cell, 1)``); the cells with reports
  and their empty neighbours take part, so that a cluster stands out from its surroundings;
- :func:`hot_topics`: emerging hot topics, "hot issue" mining of citizen messages. A *cluster* is the
  messages that share a topic word in one area cell (H3 at ``area_res``) — similar in text and place —
  counted in the recent window of ``window_days`` (similar in time) and in the window before it.
  Its heat is stated as::

      heat = n_recent × (n_recent + 1) / (n_previous + 1)

  (how many residents raise it now, times its growth; a steady topic has heat ≈ its count, a new one
  grows with its square). Clusters with fewer than ``min_count`` recent messages are left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.participation.text import content_words


def _need(df: pd.DataFrame, *cols: str) -> None:
    for c in cols:
        if c not in df.columns:
            raise InputError(f"no column {c!r}", field=c, hint=f"columns: {', '.join(map(str, df.columns))}")


def cells(df: pd.DataFrame, *, lat: str = "lat", lon: str = "lon", res: int = 9) -> pd.Series:
    """The H3 cell of every row (``None`` where a coordinate is missing or out of range)."""
    import h3

    _need(df, lat, lon)
    y = pd.to_numeric(df[lat], errors="coerce").to_numpy()
    x = pd.to_numeric(df[lon], errors="coerce").to_numpy()
    ok = np.isfinite(y) & np.isfinite(x) & (np.abs(y) <= 90) & (np.abs(x) <= 180)
    out = np.full(len(df), None, dtype=object)
    out[ok] = [h3.latlng_to_cell(a, b, res) for a, b in zip(y[ok], x[ok], strict=True)]
    return pd.Series(out, index=df.index, name="h3")


def counts_by_cell(df: pd.DataFrame, *, lat: str = "lat", lon: str = "lon", res: int = 9,
                   by: list[str] | None = None, time: str | None = None, freq: str | None = None) -> pd.DataFrame:
    """Reports per H3 cell (and per ``by`` columns, and per period of ``freq`` on ``time``).

    Rows without a place are left out. Columns: ``h3``, the ``by`` columns, ``period`` (when
    ``freq``), ``count``; sorted by count, descending.
    """
    d = pd.DataFrame({"h3": cells(df, lat=lat, lon=lon, res=res)})
    keys = ["h3"]
    for c in by or []:
        _need(df, c)
        d[c] = df[c].to_numpy()
        keys.append(c)
    if freq:
        if not time:
            raise InputError("counting per period needs a time column", field="time")
        _need(df, time)
        d["period"] = pd.to_datetime(df[time], utc=True, errors="coerce", format="mixed").dt.tz_localize(None).dt.to_period(freq).astype(str)
        keys.append("period")
    d = d[d["h3"].notna()]
    out = d.groupby(keys, dropna=False).size().rename("count").reset_index()
    return out.sort_values(["count", *keys], ascending=[False] + [True] * len(keys), kind="stable").reset_index(drop=True)


def counts_by_district(df: pd.DataFrame, district: str, *, by: list[str] | None = None) -> pd.DataFrame:
    """Reports per district (and per ``by`` columns); missing districts count as ``None``."""
    _need(df, district, *(by or []))
    keys = [district, *(by or [])]
    out = df.groupby(keys, dropna=False).size().rename("count").reset_index()
    return out.sort_values(["count", *keys], ascending=[False] + [True] * len(keys), kind="stable").reset_index(drop=True)


def hot_spots(counts: pd.DataFrame, *, cell: str = "h3", count: str = "count", permutations: int = 999,
              seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Getis-Ord G* of the counts per H3 cell over touching cells (see the module docstring).

    Returns one row per cell (with the added empty neighbours) with ``count``, ``G``, ``z``,
    ``p_sim`` and ``hotspot`` (hot / cold / ns).
    """
    import h3
    import scipy.sparse as sp

    from citytwin.stats.autocorr import getis_ord

    _need(counts, cell, count)
    c = counts.groupby(cell)[count].sum()
    allcells = set(c.index)
    for h in c.index:
        allcells.update(h3.grid_disk(h, 1))
    ids = sorted(allcells)
    pos = {h: i for i, h in enumerate(ids)}
    rows, cols = [], []
    for h in ids:
        for nb in h3.grid_disk(h, 1):
            if nb != h and nb in pos:
                rows.append(pos[h])
                cols.append(pos[nb])
    w = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), len(ids)))
    y = np.array([float(c.get(h, 0.0)) for h in ids])
    g = getis_ord(y, w, star=True, permutations=permutations, seed=seed, alpha=alpha, ids=ids)
    g = g.reset_index().rename(columns={"id": cell})
    g.insert(1, count, y)
    return g


def hot_topics(df: pd.DataFrame, *, text: str, time: str, now: Any, lat: str | None = "lat", lon: str | None = "lon",
               window_days: float = 7.0, area_res: int = 7, min_count: int = 3, top: int = 20) -> pd.DataFrame:
    """Emerging hot topics, ranked by heat (formula in the module docstring).

    ``now`` is the end of the recent window (given, never the wall clock). Rows without a place
    form one area ``None`` (city-wide). Columns: ``topic``, ``area``, ``n_recent``, ``n_previous``,
    ``heat``, ``example`` (the latest message of the cluster).
    """
    _need(df, text, time)
    t = pd.to_datetime(df[time], utc=True, errors="coerce", format="mixed")
    end = pd.Timestamp(now)
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    w = pd.Timedelta(days=window_days)
    recent = (t > end - w) & (t <= end)
    previous = (t > end - 2 * w) & (t <= end - w)
    keep = (recent | previous).to_numpy()
    sub = df.loc[keep]
    if lat and lon and lat in df.columns and lon in df.columns:
        area = cells(sub, lat=lat, lon=lon, res=area_res).to_numpy()
    else:
        area = np.full(len(sub), None, dtype=object)
    words = [sorted(set(content_words(x))) for x in sub[text].tolist()]
    d = pd.DataFrame({"words": words, "area": area, "recent": recent.to_numpy()[keep],
                      "time": t.to_numpy()[keep], "msg": sub[text].astype(str).to_numpy()})
    d = d.explode("words").dropna(subset=["words"]).rename(columns={"words": "topic"})
    if d.empty:
        return pd.DataFrame(columns=["topic", "area", "n_recent", "n_previous", "heat", "example"])
    d["area"] = d["area"].astype(object).where(d["area"].notna(), "")
    g = d.groupby(["topic", "area"], sort=False)
    out = pd.DataFrame({"n_recent": g["recent"].sum().astype(int),
                        "n_previous": (g["recent"].size() - g["recent"].sum()).astype(int)})
    out = out[out["n_recent"] >= min_count]
    if out.empty:
        return pd.DataFrame(columns=["topic", "area", "n_recent", "n_previous", "heat", "example"])
    out["heat"] = out["n_recent"] * (out["n_recent"] + 1) / (out["n_previous"] + 1)
    out = out.reset_index().sort_values(["heat", "n_recent", "topic"], ascending=[False, False, True]).head(top)
    latest = d[d["recent"]].sort_values("time").groupby(["topic", "area"])["msg"].last()
    out["example"] = [latest.get((a, b)) for a, b in zip(out["topic"], out["area"], strict=True)]
    out["area"] = out["area"].replace("", None)
    return out.reset_index(drop=True)
