"""Self-contained HTML report of the spatial structure: maps (matplotlib PNG, inline base64) and tables.

No CDN, no basemap tiles: the base map is drawn from the data itself (street edges in light grey).
Builds a string; writing it to a file is the caller's job (the CLI).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from citytwin.spatial.centers import CentersResult
from citytwin.spatial.compare import SnapshotComparison
from citytwin.spatial.jobs_housing import JobsHousingResult
from citytwin.spatial.lifecircle import LifeCircleResult

ATTRIBUTION = "Map data © OpenStreetMap contributors (ODbL 1.0)."


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _base(ax: Any, streets: gpd.GeoDataFrame | None) -> None:
    if streets is not None and len(streets):
        streets.to_crs(3857).plot(ax=ax, color="#cccccc", linewidth=0.4, zorder=0)
    ax.set_axis_off()


def map_layer(gdf: gpd.GeoDataFrame, column: str | None, title: str, *, streets: gpd.GeoDataFrame | None = None,
              cmap: str = "viridis", categorical: bool = False, overlay: Sequence[tuple[gpd.GeoDataFrame, dict]] = (),
              legend: bool = True) -> str:
    """One map as a base64 PNG: ``gdf`` coloured by ``column`` over the street base map.

    Examples
    --------
    >>> g = gpd.GeoDataFrame({"v": [1, 2]}, geometry=gpd.points_from_xy([24.94, 24.95], [60.17, 60.17]), crs=4326)
    >>> map_layer(g, "v", "test")[:8]
    'iVBORw0K'
    """
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot(1, 1, 1)
    _base(ax, streets)
    g = gdf.to_crs(3857)
    if len(g):
        kw: dict[str, Any] = {"ax": ax, "alpha": 0.8, "zorder": 1}
        if column is not None:
            kw.update(column=column, cmap=cmap, legend=legend, categorical=categorical)
            if g[column].isna().any():  # geopandas warns ("GeoSeries ... is empty") when nothing is missing
                kw["missing_kwds"] = {"color": "#eeeeee", "label": "no data"}
            if not categorical and legend:
                kw["legend_kwds"] = {"shrink": 0.6, "label": column}
        g.plot(**kw)
    for extra, style in overlay:
        if len(extra):
            extra.to_crs(3857).plot(ax=ax, zorder=2, **style)
    ax.set_title(title, fontsize=11)
    return _png(fig)


def _table(df: pd.DataFrame | dict[str, Any], digits: int = 4) -> str:
    if isinstance(df, dict):
        df = pd.DataFrame({"indicator": list(df.keys()), "value": list(df.values())})
    d = df.copy()
    for c in d.columns:
        if pd.api.types.is_float_dtype(d[c]):
            d[c] = d[c].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}")
    if "geometry" in d.columns:
        d = d.drop(columns="geometry")
    return d.to_html(index=False, escape=True, border=0, classes="t")


@dataclass
class Section:
    """A report section: heading, text, maps (base64 PNGs) and HTML tables."""

    title: str
    text: str = ""
    images: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)


def centers_section(res: CentersResult, streets: gpd.GeoDataFrame | None = None) -> Section:
    img = map_layer(res.cells, "density", "Activity density (per km²) and centers", streets=streets,
                    cmap="YlOrRd", overlay=[(res.centers, {"facecolor": "none", "edgecolor": "blue", "linewidth": 2})])
    img2 = map_layer(res.cells, "gi_z", "Getis-Ord Gi* z-score", streets=streets, cmap="coolwarm")
    text = (f"{res.indices['n_centers']} center(s) by method '{res.report.get('method')}'. "
            "UCI: 0 = polycentric, 1 = monocentric; rank-size exponent with the rank − ½ correction.")
    return Section("D1 Centers and polycentricity", text, [img, img2],
                   [_table(res.indices), _table(res.centers)])


def mix_section(mix: gpd.GeoDataFrame, streets: gpd.GeoDataFrame | None = None) -> Section:
    img = map_layer(mix, "entropy_norm", "Functional mix: entropy / ln K", streets=streets, cmap="viridis")
    img2 = map_layer(mix, "label", "Composite-function label", streets=streets, categorical=True, cmap="tab20")
    k = len(mix.attrs.get("classes", []))
    cols = ["cell", "n_pois", "entropy_norm", "gini_simpson", "dominant", "label"]
    top = mix.sort_values("entropy_norm", ascending=False)[[c for c in cols if c in mix.columns]].head(15)
    return Section("D3 Functional mix", f"K = {k} classes. Highest-mix cells:", [img, img2], [_table(top)])


def lifecircle_section(lc: LifeCircleResult, streets: gpd.GeoDataFrame | None = None,
                       pois: gpd.GeoDataFrame | None = None) -> Section:
    homes = lc.homes.copy()
    homes["geometry"] = homes.geometry.representative_point()
    over: list[tuple[gpd.GeoDataFrame, dict]] = []
    if pois is not None and len(pois):
        over.append((gpd.GeoDataFrame(geometry=pois.geometry.representative_point(), crs=pois.crs),
                     {"color": "black", "markersize": 4, "marker": "x"}))
    img = map_layer(homes, "n_missing", f"Daily services missing within {lc.threshold_m:.0f} m (homes)",
                    streets=streets, cmap="Reds", overlay=over)
    gaps = lc.gaps(15)
    cols = ["gap_rank", "home_id", "n_missing", "n_unreachable", "mean_excess_m"]
    return Section("D5 Life circles", f"Threshold {lc.threshold_m:.0f} m of network walking distance.", [img],
                   [_table(lc.coverage), _table(pd.DataFrame(gaps[cols]))])


def jobs_section(jh: JobsHousingResult, streets: gpd.GeoDataFrame | None = None) -> Section:
    cells = jh.cells.copy()
    cells["log10_jhr"] = np.log10(cells["jhr"].where(cells["jhr"] > 0))
    img = map_layer(cells, "log10_jhr", "Job-housing ratio (log10; 0 = balanced)", streets=streets, cmap="PuOr")
    return Section("D6 Job-housing balance", "Proxies: floor area per home / per job (see docs/spatial.md).",
                   [img], [_table(jh.indices)])


def comparison_section(cmp: SnapshotComparison, streets: gpd.GeoDataFrame | None = None) -> Section:
    b = cmp.centers[cmp.centers["snapshot"] == "b"]
    a = cmp.centers[cmp.centers["snapshot"] == "a"]
    img = map_layer(b, "status", "Centers after (colour) and before (outline)", streets=streets, categorical=True,
                    cmap="Set1", overlay=[(a, {"facecolor": "none", "edgecolor": "black", "linewidth": 1.5})])
    return Section("D2/D4 Snapshot comparison", ", ".join(f"{k}: {v}" for k, v in cmp.findings.items()), [img],
                   [_table(cmp.indices), _table(cmp.centers)])


def districts_section(districts: gpd.GeoDataFrame) -> Section:
    cols = ["center_id", "activity", "n_anchors", "brownfield_share", "office_share", "n_offices",
            "district_type", "district_types"]
    return Section("D4 Innovation-district candidates", "Rules: anchor-plus, brownfield renewal, urbanized "
                   "science park (docs/spatial.md).", [], [_table(pd.DataFrame(districts[cols]))])


def render_html(title: str, sections: Sequence[Section], notes: Sequence[str] = ()) -> str:
    """The whole report as one self-contained HTML page."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:auto;"
        "padding:1em}}table.t{{border-collapse:collapse;font-size:12px;margin:.5em 0}}table.t td,table.t th"
        "{{border:1px solid #ccc;padding:2px 6px}}img{{max-width:100%}}.maps{{display:flex;flex-wrap:wrap;gap:8px}}"
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2><p>{html.escape(s.text)}</p><div class='maps'>")
        parts.extend(f"<img alt='{html.escape(s.title)} map' src='data:image/png;base64,{i}'>" for i in s.images)
        parts.append("</div>")
        parts.extend(s.tables)
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append(f"<p><small>{html.escape(ATTRIBUTION)} Generated by citytwin.spatial.</small></p></body></html>")
    return "".join(parts)
