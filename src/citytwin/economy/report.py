"""A self-contained HTML report of a composite index (B1-B3): weights, scores, ranks, tiers, groups, map.

:func:`render_report` returns the HTML as a string (the CLI writes it). Charts are drawn with
matplotlib and embedded inline (SVG with text kept as text, so Chinese names are drawn by the browser's
fonts; the map as a base64 PNG): no CDN, no external file, it opens offline.

Examples
--------
>>> import pandas as pd
>>> from citytwin.economy.index import composite_index
>>> panel = pd.DataFrame({"city": list("abcd"), "x": [1.0, 2, 3, 4], "y": [4.0, 1, 2, 3]})
>>> r = composite_index(panel, {"id": "city", "indicators": ["x", "y"]})
>>> html = render_report(r, title="demo")
>>> html.startswith("<!DOCTYPE html>") and "<svg" in html and "http" not in html.split("</style>")[0]
True
"""

from __future__ import annotations

import base64
import html as _html
import io
import json
import warnings as _warnings
from typing import Any

import numpy as np
import pandas as pd

from citytwin.economy.groups import unit_keys
from citytwin.economy.index import IndexResult

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Microsoft YaHei",sans-serif;
margin:2em auto;max-width:1100px;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.warn{background:#fff6e0;border-left:4px solid #e0a000;padding:.4em .8em}.muted{color:#777;font-size:.85em}
figure{margin:1em 0}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
"""


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    plt = _plt()
    buf = io.StringIO()
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")  # missing CJK glyphs: the text is kept as text, the browser draws it
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    s = buf.getvalue()
    return s[s.index("<svg"):]


def _png(fig: Any, dpi: int = 110) -> str:
    plt = _plt()
    buf = io.BytesIO()
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return '<img alt="map" style="max-width:100%" src="data:image/png;base64,' + \
        base64.b64encode(buf.getvalue()).decode() + '">'


def _table(df: pd.DataFrame, max_rows: int = 40, floatfmt: str = "{:.4f}") -> str:
    d = df.head(max_rows)
    head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in d.columns)
    body = []
    for _, row in d.iterrows():
        cells = []
        for v in row:
            if isinstance(v, float | np.floating):
                cells.append("" if np.isnan(v) else floatfmt.format(v))
            else:
                cells.append(_html.escape("" if v is None or v is pd.NA else str(v)))
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    more = f'<p class="muted">{len(df) - max_rows} more rows not shown</p>' if len(df) > max_rows else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _weights_chart(result: IndexResult) -> str:
    plt = _plt()
    plt.rcParams["svg.fonttype"] = "none"
    w = result.weights.groupby("indicator", sort=False)["weight"].mean().sort_values()
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(w) + 1))
    ax.barh(range(len(w)), w.to_numpy(), color="#3b75af")
    ax.set_yticks(range(len(w)), [str(x) for x in w.index])
    ax.set_xlabel("weight")
    ax.set_title(f"Indicator weights ({result.options['method']})")
    return _svg(fig)


def _top_chart(latest: pd.DataFrame, id_col: str, n: int = 20) -> str:
    plt = _plt()
    plt.rcParams["svg.fonttype"] = "none"
    top = latest.nsmallest(n, "rank")[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(top) + 1))
    ax.barh(range(len(top)), top["score"].to_numpy(), color="#e07b39")
    ax.set_yticks(range(len(top)), [str(x) for x in top[id_col]])
    ax.set_xlabel("score")
    ax.set_title(f"Top {len(top)}")
    return _svg(fig)


def _years_chart(scores: pd.DataFrame, time_col: str) -> str:
    plt = _plt()
    plt.rcParams["svg.fonttype"] = "none"
    years = sorted(scores[time_col].unique())
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.boxplot([scores.loc[scores[time_col] == y, "score"].to_numpy() for y in years], tick_labels=[str(y) for y in years])
    ax.set_ylabel("score")
    ax.set_title("Distribution of scores by year")
    return _svg(fig)


def _groups_chart(groups: pd.DataFrame, group_col: str, time_col: str, value: str) -> str:
    plt = _plt()
    plt.rcParams["svg.fonttype"] = "none"
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for g, sub in groups.groupby(group_col, sort=True):
        ax.plot(sub[time_col], sub[value], marker="o", label=str(g))
    ax.set_ylabel(value)
    ax.legend(fontsize=8)
    ax.set_title(f"Group scores ({value})")
    return _svg(fig)


def _map(latest: pd.DataFrame, id_col: str, boundaries: Any, boundary_key: str) -> tuple[str, int]:
    plt = _plt()
    b = boundaries.copy()
    # one resolver (foundation.admin) for both sides: 恩施州 meets 恩施土家族苗族自治州
    b["_k"] = unit_keys(b[boundary_key])
    s = latest.assign(_k=unit_keys(latest[id_col]))[["_k", "score"]]
    m = b.merge(s, on="_k", how="left")
    fig, ax = plt.subplots(figsize=(9, 7))
    if m["score"].isna().any():  # geopandas warns on an empty frame
        m[m["score"].isna()].plot(ax=ax, color="#eeeeee", edgecolor="#bbbbbb", linewidth=0.2)
    if m["score"].notna().any():
        m[m["score"].notna()].plot(ax=ax, column="score", cmap="viridis", legend=True, edgecolor="#555555",
                                   linewidth=0.2, legend_kwds={"shrink": 0.6, "label": "score"})
    ax.set_axis_off()
    return _png(fig), int(m["score"].notna().sum())


def render_report(result: IndexResult, *, title: str = "Composite index report",
                  tiers: pd.Series | None = None, tier_info: dict[str, Any] | None = None,
                  groups: pd.DataFrame | None = None, group_col: str = "group",
                  rank_gap: pd.DataFrame | None = None, boundaries: Any = None,
                  boundary_key: str = "name", attribution: list[str] | None = None,
                  notes: list[str] | None = None) -> str:
    """Render the HTML report.

    Parameters
    ----------
    result
        An :class:`~citytwin.economy.index.IndexResult`.
    tiers, tier_info
        Tier label per row of ``result.scores`` and the tier method record (from
        :func:`~citytwin.economy.ranking.assign_tiers`).
    groups
        Group scores (from :func:`~citytwin.economy.groups.group_scores`), with ``group_col``.
    rank_gap
        A table of index rank against a reference rank (from :func:`~citytwin.economy.ranking.rank_gap`).
    boundaries
        A GeoDataFrame of city boundaries; ``boundary_key`` names the column matching the city ids.
        The map shows the latest year's score.
    attribution
        Data sources and licences to print (e.g. the panel and the boundary source).
    """
    sc = result.scores.copy()
    idc, tc = result.id_col, result.time_col
    if tiers is not None:
        sc["tier"] = tiers.to_numpy()
    latest_year = sc[tc].max() if tc else None
    latest = sc[sc[tc] == latest_year] if tc else sc
    parts = [f"<!DOCTYPE html><html lang='zh'><head><meta charset='utf-8'><title>{_html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{_html.escape(title)}</h1>"]
    o = result.options
    parts.append(f"<p>Method <b>{_html.escape(str(o['method']))}</b>, scope {_html.escape(str(o['scope']))}, "
                 f"{o['n_indicators']} indicators, {o['n_rows']} rows"
                 + (f", latest year {latest_year}" if tc else "") + ".</p>")
    if result.warnings:
        parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(
            f"<li>{_html.escape(w)}</li>" for w in result.warnings) + "</ul></div>")
    parts.append("<h2>Weights</h2>")
    parts.append(f"<figure>{_weights_chart(result)}</figure>")
    wcols = [c for c in ("indicator", "dimension", "direction", "transform", "weight", "e", "d", "sigma",
                         "conflict", "kmo") if c in result.weights.columns]
    wt = result.weights.groupby(["indicator"], sort=False)[[c for c in wcols if c != "indicator" and
                                                           result.weights[c].dtype.kind == "f"]].mean()
    meta = result.weights.drop_duplicates("indicator").set_index("indicator")[
        [c for c in ("dimension", "direction", "transform") if c in result.weights.columns]]
    parts.append(_table(meta.join(wt).reset_index(), max_rows=200))
    if result.diagnostics:
        parts.append("<h3>Diagnostics</h3><pre>" + _html.escape(json.dumps(result.diagnostics, indent=1,
                                                                        default=str)[:4000]) + "</pre>")
    parts.append("<h2>Scores and ranks</h2>")
    parts.append(f"<figure>{_top_chart(latest, idc)}</figure>")
    if tc and sc[tc].nunique() > 1:
        parts.append(f"<figure>{_years_chart(sc, tc)}</figure>")
    cols = [idc] + ([tc] if tc else []) + ["score", "rank"] + (["tier"] if tiers is not None else [])
    parts.append(_table(latest.sort_values("rank")[cols], max_rows=50))
    if tiers is not None:
        parts.append("<h2>Tiers</h2>")
        parts.append("<pre>" + _html.escape(json.dumps(tier_info or {}, ensure_ascii=False, indent=1,
                                                       default=str)[:3000]) + "</pre>")
        counts = latest.groupby("tier").size().rename("cities").reset_index()
        parts.append(_table(counts))
    if groups is not None and len(groups):
        parts.append("<h2>Groups</h2>")
        value = "weighted_mean" if "weighted_mean" in groups.columns else "mean"
        if tc and tc in groups.columns and groups[tc].nunique() > 1:
            parts.append(f"<figure>{_groups_chart(groups, group_col, tc, value)}</figure>")
        parts.append(_table(groups, max_rows=80))
        if groups.attrs.get("n_ungrouped"):
            parts.append(f"<p class='warn'>{groups.attrs['n_ungrouped']} rows had no group.</p>")
    if rank_gap is not None:
        parts.append("<h2>Index rank against reference rank</h2>")
        parts.append(_table(rank_gap, max_rows=100))
    if boundaries is not None:
        img, n = _map(latest, idc, boundaries, boundary_key)
        parts.append(f"<h2>Map{'' if latest_year is None else f' ({latest_year})'}</h2>"
                     f"<p class='muted'>{n} of {len(boundaries)} boundaries matched a city.</p>{img}")
    parts.append("<h2>Options</h2><pre>" + _html.escape(json.dumps(
        {k: v for k, v in o.items() if k != "spec"}, ensure_ascii=False, indent=1, default=str)) + "</pre>")
    for n_ in notes or []:
        parts.append(f"<p>{_html.escape(n_)}</p>")
    if attribution:
        parts.append("<h2>Data sources</h2><ul>" + "".join(f"<li>{_html.escape(a)}</li>" for a in attribution)
                     + "</ul>")
    parts.append("<p class='muted'>Generated by citytwin.economy.</p></body></html>")
    return "\n".join(parts)
