"""Open data (A6): export datasets in open formats and describe the catalog as DCAT JSON-LD."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlparse

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


#: Licence names (lower case) -> licence IRIs. Others become a ``dct:LicenseDocument`` with its label.
LICENCE_IRIS: dict[str, str] = {
    "cc-by-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "cc-by-sa-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "cc0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "cc0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "odbl": "https://opendatacommons.org/licenses/odbl/1-0/",
    "odbl-1.0": "https://opendatacommons.org/licenses/odbl/1-0/",
    "odbl 1.0": "https://opendatacommons.org/licenses/odbl/1-0/",
    "pddl-1.0": "https://opendatacommons.org/licenses/pddl/1-0/",
    "mit": "https://spdx.org/licenses/MIT.html",
    "apache-2.0": "https://spdx.org/licenses/Apache-2.0.html",
}
#: citytwin classification -> EU access-rights vocabulary.
ACCESS_RIGHTS: dict[str, str] = {
    "public": "http://publications.europa.eu/resource/authority/access-right/PUBLIC",
    "internal": "http://publications.europa.eu/resource/authority/access-right/RESTRICTED",
    "sensitive": "http://publications.europa.eu/resource/authority/access-right/NON_PUBLIC",
}
PARQUET_MEDIA_TYPE = "https://www.iana.org/assignments/media-types/application/vnd.apache.parquet"
PARQUET_FILE_TYPE = "http://publications.europa.eu/resource/authority/file-type/PARQUET"
XSD = "http://www.w3.org/2001/XMLSchema#"


def licence_node(licence: str | None) -> dict[str, Any] | None:
    """A licence as a JSON-LD node: its IRI when known (or given as one), else a labelled document.

    Examples
    --------
    >>> licence_node("CC-BY-4.0")
    {'@id': 'https://creativecommons.org/licenses/by/4.0/'}
    >>> licence_node("城市开放许可")
    {'@type': 'dct:LicenseDocument', 'rdfs:label': '城市开放许可'}
    """
    if not licence:
        return None
    text = licence.strip()
    if urlparse(text).scheme in ("http", "https"):
        return {"@id": text}
    iri = LICENCE_IRIS.get(text.lower())
    if iri:
        return {"@id": iri}
    return {"@type": "dct:LicenseDocument", "rdfs:label": text}


def typed_date(value: str | None) -> dict[str, str] | None:
    """A date or time as a typed JSON-LD literal (``xsd:dateTime``, ``xsd:date``, ``xsd:gYearMonth``, ``xsd:gYear``).

    Examples
    --------
    >>> typed_date("2024-04-01T09:00:00+00:00"), typed_date("2004")
    ({'@value': '2024-04-01T09:00:00+00:00', '@type': 'xsd:dateTime'}, {'@value': '2004', '@type': 'xsd:gYear'})
    """
    if value is None or str(value).strip() == "":
        return None
    v = str(value).strip()
    if re.fullmatch(r"\d{4}", v):
        return {"@value": v, "@type": "xsd:gYear"}
    if re.fullmatch(r"\d{4}-\d{2}", v):
        return {"@value": v, "@type": "xsd:gYearMonth"}
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        return {"@value": v, "@type": "xsd:date"}
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}:?\d{2})?", v)
    if m:
        t = m.group(2) if m.group(2).count(":") == 2 else m.group(2) + ":00"
        return {"@value": f"{m.group(1)}T{t}{m.group(3) or ''}", "@type": "xsd:dateTime"}
    return {"@value": v}  # not a date form we know: kept as text, untyped


def dcat_catalog(ws: Workspace, base: str | None = None) -> dict[str, Any]:
    """The datasets this user may see, as a DCAT JSON-LD catalog (lineage as ``prov:wasDerivedFrom``).

    Parameters
    ----------
    ws
        The workspace (its user decides which datasets are listed).
    base
        Absolute IRI under which the workspace is published (e.g. ``https://data.city.example/ws/``);
        default: the workspace folder's ``file://`` URI. Every ``@id``, ``accessURL`` and
        ``downloadURL`` is absolute under it: a dataset is ``BASE/dataset/NAME``, a version
        ``BASE/dataset/NAME/vN``, a schema ``BASE/schema/NAME``.

    Licences, access rights (EU access-right vocabulary), media and file types are IRIs; dates are
    typed literals.
    """
    root = base or ws.root.as_uri() + "/"
    if urlparse(root).scheme == "" or (not urlparse(root).netloc and urlparse(root).scheme != "file"):
        raise InputError(f"base {base!r} is not an absolute IRI", field="base",
                         hint="e.g. https://data.city.example/citytwin/")
    if not root.endswith("/"):
        root += "/"

    def ds_iri(name: str, version: int | None = None) -> str:
        return urljoin(root, f"dataset/{quote(name)}" + (f"/v{version}" if version else ""))

    items = []
    for d in ws.datasets():
        c = d.current
        vdir = ws.root / c.path
        files = sorted(vdir.glob("*.parquet"))
        dist: dict[str, Any] = {
            "@id": ds_iri(d.name, c.version) + "/parquet",
            "@type": "dcat:Distribution",
            "dcat:mediaType": {"@id": PARQUET_MEDIA_TYPE},
            "dct:format": {"@id": PARQUET_FILE_TYPE},
            "dct:title": "GeoParquet" if c.extent else "Parquet",
            "dcat:accessURL": {"@id": urljoin(root, quote(c.path) + "/")},
            "dcat:downloadURL": [{"@id": urljoin(root, quote(str(f.relative_to(ws.root))))} for f in files],
            "dcat:byteSize": {"@value": str(sum(f.stat().st_size for f in files)),
                              "@type": "xsd:nonNegativeInteger"},
            "dct:issued": typed_date(c.created),
        }
        item: dict[str, Any] = {
            "@id": ds_iri(d.name),
            "@type": "dcat:Dataset",
            "dct:identifier": d.name,
            "dct:title": d.name,
            "dct:description": d.description or f"{d.schema} dataset",
            "dct:issued": typed_date(d.created),
            "dct:modified": typed_date(d.updated),
            "dct:accessRights": {"@id": ACCESS_RIGHTS[d.classification]},
            "citytwin:classification": d.classification,
            "dct:conformsTo": {"@id": urljoin(root, f"schema/{quote(d.schema)}")},
            "dcat:version": str(d.current_version),
            "dcat:hasCurrentVersion": {"@id": ds_iri(d.name, c.version)},
            "dcat:distribution": [dist],
            "citytwin:rows": c.rows_kept,
            "citytwin:rowsQuarantined": c.rows_quarantined,
            "dcat:keyword": [d.schema, d.kind],
        }
        lic = licence_node(d.licence)
        if lic:
            item["dct:license"] = lic
            dist["dct:license"] = lic
        if d.department:
            item["dct:publisher"] = {"@type": "foaf:Agent", "foaf:name": d.department}
        if d.owner:
            item["dct:creator"] = {"@type": "foaf:Agent", "foaf:name": d.owner}
        if d.source:
            if urlparse(d.source).scheme in ("http", "https"):
                item["dct:source"] = {"@id": d.source}
            else:
                item["citytwin:sourceFile"] = d.source
        if c.extent:
            x0, y0, x1, y1 = c.extent
            item["dct:spatial"] = {"@type": "dct:Location", "dcat:bbox": {
                "@value": f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))",
                "@type": "http://www.opengis.net/ont/geosparql#wktLiteral"}}
        if c.time_min or c.time_max:
            period: dict[str, Any] = {"@type": "dct:PeriodOfTime"}
            if c.time_min:
                period["dcat:startDate"] = typed_date(c.time_min)
            if c.time_max:
                period["dcat:endDate"] = typed_date(c.time_max)
            item["dct:temporal"] = period
        inputs = ws.catalog.inputs_of(d.name, d.current_version)
        if inputs:
            item["prov:wasDerivedFrom"] = [{"@id": ds_iri(n, v)} for n, v in inputs]
        if d.stale:
            item["citytwin:staleInputs"] = [f"{s['dataset']} v{s['used_version']} (now v{s['current_version']})"
                                           for s in d.stale]
        items.append({k: v for k, v in item.items() if v is not None})
    ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="catalog.export", rows=len(items))
    return {
        "@context": {"dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/",
                     "prov": "http://www.w3.org/ns/prov#", "foaf": "http://xmlns.com/foaf/0.1/",
                     "rdfs": "http://www.w3.org/2000/01/rdf-schema#", "xsd": XSD,
                     "citytwin": "https://citytwin.invalid/ns#"},
        "@id": urljoin(root, "catalog"),
        "@type": "dcat:Catalog",
        "dct:title": f"citytwin catalog {ws.root.name}",
        "dct:issued": typed_date(ws.settings.get("created")),
        "citytwin:version": citytwin.__version__,
        "dcat:dataset": items,
    }
