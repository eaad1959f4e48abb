"""The operations center's views as data and as reports (H1, H2).

One function, :func:`view_data`, gathers what a view of the operations center shows — economy,
space, twin or catalog — from the workspace (every read checked, masked and audited as the user
the workspace was opened for). The web operations center draws it with MapLibre and ECharts
(``GET /views/{view}``); :func:`render_html` draws the same data as a self-contained HTML report
(tables, charts and maps as PNG images made with matplotlib/geopandas) and :func:`write_report`
writes it as HTML or, through Chromium's print-to-PDF, as PDF (``citytwin report VIEW``,
``GET /reports/{view}?f=html|pdf``).

Nothing here computes a new result: the views show stored derived datasets (written by the
economy and spatial workflows, e.g. by ``citytwin demo``), the package's reference tables, the
twin's live state and alert book, and the catalog's records, quality and lineage.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import AccessDenied, CitytwinError, InputError

if TYPE_CHECKING:
    import pandas as pd

    from citytwin.foundation.timeseries import TwinStores
    from citytwin.foundation.workspace import Workspace
    from citytwin.workflows.alerting import AlertHub

__all__ = ["VIEWS", "ReportFile", "chromium_path", "html_to_pdf", "render_html", "view_data", "write_report"]

VIEWS = ("economy", "space", "twin", "catalog")
"""The views of the operations center that have a report."""

#: Where Chromium is looked for (``CITYTWIN_CHROMIUM`` first).
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")

#: The demo workspace's layers each view reads (when present and readable by the user).
ECONOMY_CITIES = "seed000_table1_digital_economy_vs_gdp"
PREFECTURES = "china_prefectures"
INDEX_DATASET = "columbus_index"
DAGUM_DATASET = "mexico_dagum"
CENTERS = "helsinki_centers"
COVERAGE = "helsinki_lifecircle_coverage"
POIS_PER_CELL = "helsinki_poi_per_h3"


def _clean(v: Any) -> Any:
    """A JSON-safe scalar (NaN/NaT -> None, numpy -> Python)."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        with contextlib.suppress(ValueError, AttributeError):
            v = v.item()
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if hasattr(v, "isoformat"):
        try:
            return v.isoformat()
        except ValueError:
            return None
    if isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    cols = [c for c in frame.columns if c != "geometry"]
    return [{c: _clean(v) for c, v in zip(cols, row, strict=True)} for row in frame[cols].itertuples(index=False)]


def _geojson(frame: Any, props: list[str], *, simplify: float = 0.0) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of a GeoDataFrame's ``props`` (geometry simplified by ``simplify`` degrees)."""
    from shapely.geometry import mapping

    feats = []
    for _, row in frame.iterrows():
        g = row["geometry"]
        if g is None or g.is_empty:
            continue
        if simplify:
            g = g.simplify(simplify, preserve_topology=True)
        feats.append({"type": "Feature", "geometry": mapping(g), "properties": {p: _clean(row[p]) for p in props}})
    return {"type": "FeatureCollection", "features": feats}


def _readable(ws: Workspace, name: str) -> bool:
    """Whether the dataset exists and the workspace's user may read it (no audit row: nothing is read)."""
    from citytwin.foundation import access

    if not ws.catalog.exists(name):
        return False
    info = ws.catalog.get(name)
    return access.can_read(ws.user, info.classification, info.department)


# -- economy ----------------------------------------------------------------------------------

def _economy(ws: Workspace) -> dict[str, Any]:
    import pandas as pd

    from citytwin.economy import data as econ_data
    from citytwin.economy.ranking import assign_tiers, rank_gap

    out: dict[str, Any] = {"view": "economy"}
    t1 = econ_data.load(ECONOMY_CITIES)
    gap = rank_gap(t1, "de_rank_2020", "gdp_rank_2020")
    years = sorted(int(c.rsplit("_", 1)[1]) for c in t1.columns if c.startswith("de_score_"))
    cities = []
    for r in gap.itertuples(index=False):
        cities.append({"city": r.city, "city_en": r.city_en, "de_rank": _clean(r.de_rank_2020),
                       "gdp_rank": _clean(r.gdp_rank_2020), "places_above": _clean(r.places_above),
                       "gdp": _clean(r.gdp_2020), "de_scale": _clean(r.de_scale_2020),
                       "series": {"de_score": [_clean(getattr(r, f"de_score_{y}")) for y in years]}})
    out["cities"] = {"years": years, "rows": cities, "source": econ_data.source_of(ECONOMY_CITIES).strip()}
    if _readable(ws, PREFECTURES):
        pref = ws.read(PREFECTURES, columns=["adcode", "name", "geometry"])
        byname = {c["city"]: c for c in cities}
        pref = pref.assign(city=pref["name"].astype(str).str.replace(r"市$", "", regex=True))
        pref = pref[pref["city"].isin(byname)]
        pref = pref.assign(de_score=[byname[c]["series"]["de_score"][-1] for c in pref["city"]],
                           city_en=[byname[c]["city_en"] for c in pref["city"]])
        out["cities"]["geojson"] = _geojson(pref, ["adcode", "name", "city", "city_en", "de_score"], simplify=0.01)
    if _readable(ws, INDEX_DATASET):
        idx = ws.read(INDEX_DATASET).sort_values("rank")
        tiers, _ = assign_tiers(idx, "score", method="quantiles", k=4)
        idx = idx.assign(tier=tiers.to_numpy())
        out["index"] = {"dataset": INDEX_DATASET, "rows": _records(idx),
                        "description": ws.info(INDEX_DATASET).description}
    if _readable(ws, DAGUM_DATASET):
        dag = ws.read(DAGUM_DATASET).sort_values("year")
        out["disparity"] = {"dataset": DAGUM_DATASET, "rows": _records(dag),
                            "description": ws.info(DAGUM_DATASET).description}
    del pd
    return out


# -- space ------------------------------------------------------------------------------------

def _space(ws: Workspace) -> dict[str, Any]:
    out: dict[str, Any] = {"view": "space"}
    if _readable(ws, CENTERS):
        cen = ws.read(CENTERS)
        out["centers"] = {"dataset": CENTERS, "rows": _records(cen),
                          "geojson": _geojson(cen, [c for c in ("center_id", "rank", "activity", "share", "level")
                                                    if c in cen.columns])}
    if _readable(ws, COVERAGE):
        cov = ws.read(COVERAGE)
        out["coverage"] = {"dataset": COVERAGE, "rows": _records(cov),
                           "parameters": ws.catalog.lineage(COVERAGE).get("params")}
        if "homes_unreachable" in cov.columns:
            gaps = cov[cov["share_covered"] < 0.8] if "share_covered" in cov.columns else cov.iloc[0:0]
            out["coverage"]["gaps"] = [str(c) for c in gaps["category"]]
    if _readable(ws, POIS_PER_CELL):
        cells = ws.read(POIS_PER_CELL)
        mix = cells.groupby("category")["count"].sum().sort_values(ascending=False)
        out["mix"] = {"dataset": POIS_PER_CELL, "cells": int(cells["h3"].nunique()),
                      "rows": [{"category": str(k), "count": int(v)} for k, v in mix.items()]}
    # a stored snapshot comparison (`citytwin spatial compare ... --name NAME`: NAME, NAME_indices)
    names = {d.name for d in ws.datasets()}
    comp = sorted(n for n in names if n.endswith("compare"))
    if comp:
        out["compare"] = {"dataset": comp[0], "rows": _records(ws.read(comp[0]))[:200]}
        if f"{comp[0]}_indices" in names:
            out["compare"]["indices"] = _records(ws.read(f"{comp[0]}_indices"))
    return out


# -- twin -------------------------------------------------------------------------------------

def _station_aqi(attrs: dict[str, Any]) -> tuple[int | None, dict[str, Any] | None]:
    """IAQI of the latest PM2.5 (or PM10) reading on the 24-hour breakpoints of HJ 633-2012."""
    from citytwin.twin.aqi import category, iaqi

    for prop in ("pm25", "pm10"):
        a = attrs.get(prop)
        if a and a.get("value") is not None:
            v = iaqi(prop, float(a["value"]))
            c = category(v)
            return v, None if c is None else {"level": c.level, "zh": c.zh, "en": c.en}
    return None, None


def _attrs_at(stores: TwinStores, at: Any, window: str = "3h") -> dict[str, dict[str, Any]]:
    """The latest PM2.5/PM10 readings per entity in the ``window`` up to ``at`` (from the history store)."""
    import pandas as pd

    end = pd.Timestamp(at)
    end = end.tz_localize("UTC") if end.tzinfo is None else end
    df = stores.history.query(properties=["pm25", "pm10"], start=end - pd.Timedelta(window),
                              end=end + pd.Timedelta("1us"))
    out: dict[str, dict[str, Any]] = {}
    if df.empty:
        return out
    df = df.dropna(subset=["value"]).sort_values("time")
    for (ent, prop), g in df.groupby(["entity", "property"]):
        last = g.iloc[-1]
        out.setdefault(str(ent), {})[str(prop)] = {"value": float(last["value"]), "unit": last.get("unit"),
                                                   "observed_us": int(pd.Timestamp(last["time"]).value // 1000)}
    return out


def _twin(stores: TwinStores | None, hub: AlertHub | None, at: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"view": "twin", "stations": [], "alerts": [], "at": None if at is None else str(at)}
    if stores is not None:
        past = None if at is None else _attrs_at(stores, at)
        for e in stores.state.query(limit=10000):
            if past is not None:
                e = {**e, "attrs": past.get(e["id"], {})}
            v, cat = _station_aqi(e["attrs"])
            out["stations"].append({"id": e["id"], "type": e["type"], "lon": e["lon"], "lat": e["lat"],
                                    "name": e["static"].get("name") if isinstance(e["static"], dict) else None,
                                    "aqi": v, "category": cat,
                                    "attrs": {k: {"value": _clean(a["value"]), "unit": a["unit"],
                                                  "observed_us": a["observed_us"]} for k, a in e["attrs"].items()}})
        span = stores.history.span()
        out["span"] = None if span is None else [_clean(span[0]), _clean(span[1])]
    if hub is not None:
        out["alerts"] = [a.to_record() for a in hub.book.alerts()][-200:]
    return out


#: Quality figures per (workspace, dataset, version): a version never changes, so they are computed once
#: per process (only shown to users who may read the dataset).
_QUALITY: dict[tuple[str, str, int], dict[str, Any]] = {}


# -- catalog ----------------------------------------------------------------------------------

def _catalog(ws: Workspace) -> dict[str, Any]:
    from citytwin.foundation import access
    from citytwin.foundation.quality import quality_report

    rows, edges = [], []
    for d in ws.datasets():
        if not access.can_read(ws.user, d.classification, d.department):
            continue
        rec = {"name": d.name, "schema": d.schema, "kind": d.kind, "classification": d.classification,
               "department": d.department, "description": d.description, "licence": d.licence,
               "version": d.current_version, "rows": None, "quarantined": None, "quality": None}
        key = (str(ws.root), d.name, d.current_version)
        if key not in _QUALITY:
            try:
                q = quality_report(ws, d.name)
                _QUALITY[key] = {"rows": q.rows, "quarantined": q.rows_quarantined, "quality": _clean(q.score)}
            except (CitytwinError, OSError, ValueError):
                _QUALITY[key] = {}
        rec.update(_QUALITY[key])
        rows.append(rec)
        for src, _ver in ws.catalog.inputs_of(d.name, d.current_version):
            edges.append({"source": src, "target": d.name})
    names = {r["name"] for r in rows}
    return {"view": "catalog", "datasets": rows,
            "lineage": [e for e in edges if e["source"] in names and e["target"] in names]}


def view_data(ws: Workspace, view: str, *, stores: TwinStores | None = None,
              hub: AlertHub | None = None, at: Any = None) -> dict[str, Any]:
    """What the operations center's ``view`` shows, as JSON-ready data.

    Parameters
    ----------
    ws
        The workspace, opened as the user who looks (reads are checked, masked and audited).
    view
        One of :data:`VIEWS`.
    stores, hub
        The live twin's stores and alert hub (the twin view); None: the view has no stations/alerts.
    at
        The twin view at a past time (ISO 8601): each station's latest PM2.5/PM10 in the 3 hours up to
        ``at`` from the history store, instead of the live state.

    Raises
    ------
    InputError
        An unknown view.
    """
    if view == "economy":
        return _economy(ws)
    if view == "space":
        return _space(ws)
    if view == "twin":
        from citytwin.foundation import access
        from citytwin.foundation.catalog import check_classification

        # the twin's classification: workspace setting twin_classification (as citytwin.service.auth reads it)
        cls = check_classification(str(ws.settings.get("twin_classification", "internal")))
        if not access.can_read(ws.user, cls, None):
            raise AccessDenied(f"role {ws.user.role!r} may not read the live twin")
        return _twin(stores, hub, at)
    if view == "catalog":
        return _catalog(ws)
    raise InputError(f"unknown view {view!r}", field="view", hint=f"use one of {', '.join(VIEWS)}")


# -- HTML report --------------------------------------------------------------------------------

TITLES = {"economy": "Digital economy and disparities · 数字经济与区域差异",
          "space": "Urban spatial structure · 城市空间结构",
          "twin": "Live twin: air quality and alerts · 实时孪生：空气质量与告警",
          "catalog": "Data catalog, quality and lineage · 数据目录、质量与血缘"}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return '<img alt="figure" src="data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode() + '">'


def _fig(w: float = 6.4, h: float = 3.4) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "WenQuanYi Zen Hei", "DejaVu Sans"]
    return plt.subplots(figsize=(w, h))


def _table(rows: list[dict[str, Any]], cols: list[str] | None = None, limit: int = 60) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = cols or list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows[:limit])
    more = f"<p>… {len(rows) - limit} more rows</p>" if len(rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _geo_map(geojson: dict[str, Any], column: str | None, *, base: list[Any] | None = None,
             title: str = "") -> str:
    import geopandas as gpd

    fig, ax = _fig(6.4, 4.6)
    for layer, kw in base or []:
        if len(layer):
            layer.plot(ax=ax, **kw)
    g = gpd.GeoDataFrame.from_features(geojson["features"], crs="EPSG:4326")
    if len(g):
        if column and column in g.columns:
            g.plot(ax=ax, column=column, cmap="viridis", legend=True, edgecolor="#333", linewidth=0.3)
        else:
            g.plot(ax=ax, color="#d62728", alpha=0.5, edgecolor="#900")
    ax.set_title(title)
    ax.set_axis_off()
    return _png(fig)


def _economy_html(ws: Workspace, d: dict[str, Any]) -> list[str]:
    parts = []
    cities = d["cities"]
    rows = cities["rows"]
    parts.append("<h2>Digital-economy rank vs GDP rank · 数字经济排名与GDP排名</h2>")
    fig, ax = _fig()
    ax.scatter([r["gdp_rank"] for r in rows], [r["de_rank"] for r in rows], color="#1f77b4")
    for r in rows:
        ax.annotate(r["city_en"], (r["gdp_rank"], r["de_rank"]), fontsize=8)
    hi = max(max(r["gdp_rank"] for r in rows), max(r["de_rank"] for r in rows)) + 2
    ax.plot([0, hi], [0, hi], color="#999", linestyle="--", linewidth=0.8)
    ax.set_xlabel("GDP rank 2020")
    ax.set_ylabel("digital-economy rank 2020")
    parts.append(_png(fig))
    parts.append(_table([{"city": r["city"], "city_en": r["city_en"], "de_rank": r["de_rank"],
                          "gdp_rank": r["gdp_rank"], "places_above": r["places_above"],
                          **{f"de_score_{y}": v for y, v in zip(cities["years"], r["series"]["de_score"],
                                                                strict=True)}} for r in rows]))
    parts.append(f"<p class=src>{html.escape(cities['source'])}</p>")
    if "geojson" in cities:
        parts.append("<h2>Cities by digital-economy score 2020 · 城市数字经济得分</h2>")
        parts.append(_geo_map(cities["geojson"], "de_score"))
    if "index" in d:
        idx = d["index"]
        parts.append(f"<h2>Index ranks and tiers · 指数排名与梯队 ({html.escape(idx['dataset'])})</h2>")
        fig, ax = _fig()
        top = idx["rows"][:20]
        ax.barh([str(r.get("POLYID", i)) for i, r in enumerate(top)][::-1], [r["score"] for r in top][::-1])
        ax.set_xlabel("score")
        parts.append(_png(fig))
        parts.append(_table(idx["rows"]))
    if "disparity" in d:
        dis = d["disparity"]
        parts.append(f"<h2>Disparity and its decomposition · 区域差异及其分解 ({html.escape(dis['dataset'])})</h2>")
        fig, ax = _fig()
        yrs = [r["year"] for r in dis["rows"]]
        bottom = [0.0] * len(yrs)
        for comp in ("within", "net_between", "transvariation"):
            vals = [r[comp] or 0.0 for r in dis["rows"]]
            ax.bar(yrs, vals, bottom=bottom, width=6, label=comp)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.plot(yrs, [r["gini"] for r in dis["rows"]], color="black", marker="o", label="Gini")
        ax.legend(fontsize=8)
        parts.append(_png(fig))
        parts.append(_table(dis["rows"]))
    return parts


def _space_html(ws: Workspace, d: dict[str, Any]) -> list[str]:
    parts = []
    base = []
    for name, kw in (("helsinki_landuse", {"color": "#cfe8c8", "linewidth": 0}),
                     ("helsinki_streets", {"color": "#999", "linewidth": 0.3}),
                     ("helsinki_buildings", {"color": "#b5a58f", "linewidth": 0})):
        if _readable(ws, name):
            base.append((ws.read(name, columns=["geometry"]), kw))
    if "centers" in d:
        parts.append("<h2>Centers of activity · 活动中心</h2>")
        parts.append(_geo_map(d["centers"]["geojson"], None, base=base))
        parts.append(_table(d["centers"]["rows"]))
    if "mix" in d:
        parts.append(f"<h2>Functional mix · 功能混合 ({d['mix']['cells']} H3 cells)</h2>")
        fig, ax = _fig()
        rows = d["mix"]["rows"]
        ax.bar([r["category"] for r in rows], [r["count"] for r in rows], color="#2ca02c")
        ax.tick_params(axis="x", rotation=60, labelsize=8)
        parts.append(_png(fig))
    if "coverage" in d:
        cov = d["coverage"]
        parts.append("<h2>15-minute life-circle coverage and gaps · 15分钟生活圈覆盖与缺口</h2>")
        fig, ax = _fig()
        rows = cov["rows"]
        ax.barh([r["category"] for r in rows][::-1], [r.get("share_covered") or 0 for r in rows][::-1],
                color="#ff7f0e")
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of homes covered")
        parts.append(_png(fig))
        parts.append(_table(rows))
        if cov.get("gaps"):
            parts.append("<p>Gaps (under 80 % of homes covered): " + html.escape(", ".join(cov["gaps"])) + "</p>")
    if "compare" in d:
        parts.append(f"<h2>Snapshot comparison · 快照对比 ({html.escape(d['compare']['dataset'])})</h2>")
        parts.append(_table(d["compare"]["rows"]) + _table(d["compare"].get("indices", [])))
    return parts


def _twin_html(d: dict[str, Any]) -> list[str]:
    parts = ["<h2>Stations by AQI · 站点空气质量指数</h2>"]
    st = [s for s in d["stations"] if s["lon"] is not None]
    if st:
        fig, ax = _fig(6.4, 4.6)
        sc = ax.scatter([s["lon"] for s in st], [s["lat"] for s in st], c=[s["aqi"] or 0 for s in st],
                        cmap="RdYlGn_r", vmin=0, vmax=300, s=60, edgecolor="#333")
        for s in st:
            ax.annotate(s["id"].rsplit(":", 1)[-1], (s["lon"], s["lat"]), fontsize=7)
        fig.colorbar(sc, ax=ax, label="AQI (PM2.5/PM10 IAQI)")
        parts.append(_png(fig))
    parts.append(_table([{"id": s["id"], "aqi": s["aqi"], "level": (s["category"] or {}).get("en"),
                          "pm25": (s["attrs"].get("pm25") or {}).get("value")} for s in d["stations"]]))
    parts.append("<h2>Alerts · 告警</h2>")
    parts.append(_table(d["alerts"], [c for c in ("id", "rule", "entity", "severity", "status", "raised_at",
                                                  "message") if not d["alerts"] or c in d["alerts"][0]]))
    return parts


def _catalog_html(d: dict[str, Any]) -> list[str]:
    parts = ["<h2>Datasets, quality, quarantine · 数据集、质量、隔离</h2>"]
    rows = d["datasets"]
    fig, ax = _fig()
    ax.barh([r["name"] for r in rows][::-1], [r["quality"] or 0 for r in rows][::-1], color="#9467bd")
    ax.set_xlim(0, 1)
    ax.set_xlabel("quality score")
    parts.append(_png(fig))
    parts.append(_table(rows, ["name", "kind", "schema", "classification", "version", "rows", "quarantined",
                               "quality"]))
    parts.append("<h2>Lineage · 数据血缘</h2>")
    if d["lineage"]:
        fig, ax = _fig(6.4, 4.2)
        pos = _layers_layout(d["lineage"])
        for e in d["lineage"]:
            ax.annotate("", xy=pos[e["target"]], xytext=pos[e["source"]],
                        arrowprops={"arrowstyle": "->", "color": "#888", "shrinkA": 6, "shrinkB": 6})
        for name, (x, y) in pos.items():
            ax.plot([x], [y], "o", color="#aec7e8", markersize=9, markeredgecolor="#333")
            ax.annotate(name, (x, y), xytext=(6, 3), textcoords="offset points", fontsize=7)
        ax.set_xlim(-0.3, max(x for x, _ in pos.values()) + 1.2)
        ax.set_axis_off()
        parts.append(_png(fig))
    parts.append(_table(d["lineage"]))
    return parts


def _layers_layout(edges: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Positions of a lineage graph's datasets: each one column right of its deepest input."""
    nodes = sorted({e["source"] for e in edges} | {e["target"] for e in edges})
    inputs: dict[str, list[str]] = {n: [] for n in nodes}
    for e in edges:
        inputs[e["target"]].append(e["source"])
    depth: dict[str, int] = {}

    def level(n: str, seen: frozenset[str] = frozenset()) -> int:
        if n not in depth:
            ins = [i for i in inputs[n] if i not in seen]
            depth[n] = 1 + max((level(i, seen | {n}) for i in ins), default=-1)
        return depth[n]

    cols: dict[int, list[str]] = {}
    for n in nodes:
        cols.setdefault(level(n), []).append(n)
    return {n: (float(x), float(-y)) for x, col in cols.items() for y, n in enumerate(col)}


CSS = """body{font-family:'Noto Sans CJK SC','WenQuanYi Zen Hei',sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:11px;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f0f0f0}img{max-width:100%;page-break-inside:avoid}.src{font-size:10px;color:#666}"""


def render_html(ws: Workspace, view: str, data: dict[str, Any] | None = None, *,
                stores: TwinStores | None = None, hub: AlertHub | None = None) -> str:
    """A self-contained HTML report of ``view`` (images inline as PNG; no request leaves the file)."""
    d = view_data(ws, view, stores=stores, hub=hub) if data is None else data
    if view == "economy":
        parts = _economy_html(ws, d)
    elif view == "space":
        parts = _space_html(ws, d)
    elif view == "twin":
        parts = _twin_html(d)
    else:
        parts = _catalog_html(d)
    title = TITLES[view]
    head = (f"<!doctype html><html lang=zh><head><meta charset=utf-8><title>citytwin · {html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>citytwin · {html.escape(title)}</h1>"
            f"<p>Workspace {html.escape(ws.root.name)} · seen as {html.escape(ws.user.name)} "
            f"({html.escape(ws.user.role)})</p>")
    return head + "\n".join(parts) + "</body></html>"


# -- PDF ---------------------------------------------------------------------------------------

def chromium_path() -> str | None:
    """Chromium's executable (``CITYTWIN_CHROMIUM`` or a usual path), or None."""
    env = os.environ.get("CITYTWIN_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for c in CHROMIUM_CANDIDATES:
        if Path(c).exists():
            return c
    return shutil.which("chromium")


def html_to_pdf(html_text: str, out: Path, *, timeout: float = 120.0) -> Path:
    """Print an HTML document to PDF with headless Chromium (its print-to-PDF).

    Raises
    ------
    CitytwinError
        Chromium is missing or fails.
    """
    exe = chromium_path()
    if exe is None:
        raise CitytwinError("PDF reports need Chromium, which was not found",
                            hint="install Debian's chromium (scripts/setup.sh --test) or set CITYTWIN_CHROMIUM,"
                                 " or write an .html report")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="citytwin-pdf-") as tmp:
        src = Path(tmp) / "report.html"
        src.write_text(html_text, encoding="utf-8")
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--no-pdf-header-footer",
               f"--user-data-dir={tmp}/profile", f"--print-to-pdf={out}", src.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CitytwinError(f"Chromium did not print the report within {timeout:.0f} s") from exc
        if not out.exists() or out.stat().st_size == 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise CitytwinError("Chromium could not print the report to PDF: " + " / ".join(tail))
    return out


@dataclass
class ReportFile:
    """A written report: its path, view and format."""

    path: Path
    view: str
    format: str


def write_report(ws: Workspace, view: str, out: str | Path, *, stores: TwinStores | None = None,
                 hub: AlertHub | None = None, step: Callable[[str], None] | None = None) -> ReportFile:
    """Write ``view`` as an HTML (``.html``) or PDF (``.pdf``) report to ``out``.

    For the twin view without ``stores``, the workspace's twin folder (``WS/twin``) is opened when it exists.

    Raises
    ------
    InputError
        Unknown view or an extension other than ``.html``/``.htm``/``.pdf``.
    """
    say = step or (lambda _m: None)
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("html", "htm", "pdf"):
        raise InputError(f"report file {out} must end in .html or .pdf", field="out")
    if view not in VIEWS:
        raise InputError(f"unknown view {view!r}", field="view", hint=f"use one of {', '.join(VIEWS)}")
    opened = None
    if view == "twin" and stores is None and (ws.root / "twin").exists():
        from citytwin.workflows.runtime import open_runtime

        opened = open_runtime(ws.root / "twin")
        stores, hub = opened.stores, opened.alerts
    try:
        say(f"gathering the {view} view")
        text = render_html(ws, view, stores=stores, hub=hub)
    finally:
        if opened is not None:
            opened.close()
    if fmt == "pdf":
        say("printing to PDF with Chromium")
        html_to_pdf(text, out)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return ReportFile(out, view, "pdf" if fmt == "pdf" else "html")


def dumps(data: dict[str, Any]) -> str:
    """Strict JSON of view data (no NaN)."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False, default=_clean)



