"""Open data (A6): export datasets in open formats and describe the catalog as DCAT JSON-LD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

import citytwin
from citytwin.foundation.errors import InputError
from citytwin.foundation.workspace import Workspace

OPEN_FORMATS = {".csv": "text/csv", ".geojson": "application/geo+json", ".json": "application/json",
                ".parquet": "application/vnd.apache.parquet", ".gpkg": "application/geopackage+sqlite3"}


def export_dataset(ws: Workspace, name: str, out: str | Path, *, version: int | None = None) -> int:
    """Write a dataset version to ``out`` (format from its suffix); returns the record count.

    The read goes through the workspace, so access rules, masking and audit apply.
    """
    p = Path(out)
    suffix = p.suffix.lower()
    if suffix not in OPEN_FORMATS:
        raise InputError(f"unsupported export format {suffix!r}", hint=f"use one of {', '.join(OPEN_FORMATS)}")
    df = ws.read(name, version)
    p.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        out_df = pd.DataFrame(df.drop(columns="geometry")) if isinstance(df, gpd.GeoDataFrame) else df
        if isinstance(df, gpd.GeoDataFrame):
            out_df = out_df.assign(wkt=df.geometry.to_wkt())
        out_df.to_csv(p, index=False, encoding="utf-8")
    elif suffix in (".geojson", ".json", ".gpkg"):
        if not isinstance(df, gpd.GeoDataFrame):
            if suffix == ".json":
                df.to_json(p, orient="records", force_ascii=False, date_format="iso")
                return len(df)
            raise InputError(f"dataset {name!r} has no geometry; export it as .csv or .parquet")
        g = df.copy()
        for c in g.columns:
            if str(g[c].dtype).startswith("datetime"):
                g[c] = g[c].astype(str)
        g.to_file(p, driver="GeoJSON" if suffix != ".gpkg" else "GPKG")
    else:
        df.to_parquet(p, index=False)
    ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="export", dataset=name, version=version,
                     rows=len(df), detail=str(p))
    return len(df)


def dcat_catalog(ws: Workspace) -> dict[str, Any]:
    """The datasets this user may see, as a DCAT-style JSON-LD catalog (with lineage as prov:wasDerivedFrom)."""
    items = []
    for d in ws.datasets():
        c = d.current
        item: dict[str, Any] = {
            "@type": "dcat:Dataset",
            "dct:identifier": d.name,
            "dct:title": d.name,
            "dct:description": d.description or f"{d.schema} dataset",
            "dct:publisher": d.department,
            "dct:creator": d.owner,
            "dct:license": d.licence,
            "dct:source": d.source,
            "dct:issued": d.created,
            "dct:modified": d.updated,
            "dct:accessRights": d.classification,
            "dct:conformsTo": f"citytwin:schema/{d.schema}",
            "adms:version": str(d.current_version),
            "dcat:distribution": [{
                "@type": "dcat:Distribution",
                "dcat:mediaType": "application/vnd.apache.parquet",
                "dct:format": "GeoParquet" if c.extent else "Parquet",
                "dcat:accessURL": c.path,
                "dcat:byteSize": None,
            }],
            "citytwin:rows": c.rows_kept,
            "citytwin:rowsQuarantined": c.rows_quarantined,
            "dcat:keyword": [d.schema, d.kind],
        }
        if c.extent:
            x0, y0, x1, y1 = c.extent
            item["dct:spatial"] = {"@type": "dct:Location",
                                   "dcat:bbox": f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"}
        if c.time_min or c.time_max:
            item["dct:temporal"] = {"@type": "dct:PeriodOfTime", "dcat:startDate": c.time_min,
                                    "dcat:endDate": c.time_max}
        inputs = ws.catalog.inputs_of(d.name, d.current_version)
        if inputs:
            item["prov:wasDerivedFrom"] = [f"{n}@v{v}" for n, v in inputs]
        items.append(item)
    ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="catalog.export", rows=len(items))
    return {
        "@context": {"dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/",
                     "adms": "http://www.w3.org/ns/adms#", "prov": "http://www.w3.org/ns/prov#",
                     "citytwin": "https://citytwin.invalid/ns#"},
        "@type": "dcat:Catalog",
        "dct:title": f"citytwin catalog {ws.root.name}",
        "dct:issued": ws.settings.get("created"),
        "citytwin:version": citytwin.__version__,
        "dcat:dataset": items,
    }
