"""OGC API – Features style access to the workspace's datasets.

Routes (every one behind a bearer token, audited; a dataset the caller's role may not read answers
403, personal fields come masked for roles that do not see personal data):

* ``GET /collections`` — the catalog datasets the caller may see;
* ``GET /collections/{id}`` — one collection (extent, columns, links);
* ``GET /collections/{id}/items`` — features as GeoJSON (default) or CSV (``f=csv`` or
  ``Accept: text/csv``), filtered by ``bbox=minx,miny,maxx,maxy`` (WGS84) and ``datetime``
  (an instant or an interval ``start/end``, ``..`` open) on the dataset's first time column,
  paged with ``limit`` and ``offset`` (``next``/``prev`` links, ``numberMatched``);
* ``GET /collections/{id}/items/{fid}`` — one feature; ``fid`` is the record's position in the
  dataset version (0-based), stable for a version.

Every read goes through :meth:`citytwin.foundation.workspace.Workspace.read` (access check,
masking, audit). The service holds no analysis logic.
"""

from __future__ import annotations

import io
import json
import math
from typing import Annotated, Any
from urllib.parse import urlencode

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from citytwin.foundation import postgis
from citytwin.foundation.catalog import DatasetInfo
from citytwin.foundation.errors import InputError, NotFoundError
from citytwin.foundation.workspace import Workspace
from citytwin.service.apiauth import user_workspace

router = APIRouter(tags=["features"])

MAX_LIMIT = 10_000
GEOJSON = "application/geo+json"

WsDep = Annotated[Workspace, Depends(user_workspace)]


def _time_column(info: DatasetInfo) -> str | None:
    for c in info.current.columns:
        t = str(c.get("type", "")).upper()
        if t.startswith(("TIMESTAMP", "DATETIME64")) or t == "DATE":
            return str(c["name"])
    return None


def _geometry_column(info: DatasetInfo) -> str | None:
    for c in info.current.columns:
        if str(c.get("type", "")).upper().startswith("GEOMETRY"):
            return str(c["name"])
    return None


def collection_doc(info: DatasetInfo, base: str) -> dict[str, Any]:
    """The OGC collection document of a dataset (its current version)."""
    v = info.current
    cid = info.name
    spatial = {"bbox": [v.extent], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"} if v.extent else None
    temporal = {"interval": [[v.time_min, v.time_max]]} if (v.time_min or v.time_max) else None
    geom = _geometry_column(info)
    links = [
        {"href": f"{base}/collections/{cid}", "rel": "self", "type": "application/json"},
        {"href": f"{base}/collections/{cid}/items", "rel": "items", "type": GEOJSON},
        {"href": f"{base}/collections/{cid}/items?f=csv", "rel": "items", "type": "text/csv"},
        {"href": f"{base}/catalog/{cid}", "rel": "describedby", "type": "application/json"},
    ]
    if geom:
        links.append({"href": f"{base}/tiles/{cid}.json", "rel": "tiles", "type": "application/json"})
    return {"id": cid, "title": info.description or cid, "description": info.description,
            "itemType": "feature" if geom else "record", "extent": {"spatial": spatial, "temporal": temporal},
            "version": v.version, "kind": info.kind, "schema": info.schema, "classification": info.classification,
            "department": info.department, "rows": v.rows_kept, "geometry": geom, "time": _time_column(info),
            "columns": [{"name": c["name"], "type": c.get("type"), "unit": c.get("unit")} for c in v.columns],
            "links": links}


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/collections", summary="Datasets the caller may see, as OGC API – Features collections")
def collections(request: Request, ws: WsDep) -> dict[str, Any]:
    base = _base(request)
    return {"collections": [collection_doc(d, base) for d in ws.datasets()],
            "links": [{"href": f"{base}/collections", "rel": "self", "type": "application/json"}]}


@router.get("/collections/{collection_id}", summary="One collection")
def collection(collection_id: str, request: Request, ws: WsDep) -> dict[str, Any]:
    return collection_doc(ws.info(collection_id), _base(request))


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``minx,miny,maxx,maxy`` (WGS84 degrees) -> a tuple; an :class:`InputError` when malformed.

    Examples
    --------
    >>> parse_bbox("24.9,60.1,25,60.2")
    (24.9, 60.1, 25.0, 60.2)
    """
    if text is None or text == "":
        return None
    parts = text.split(",")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"bbox {text!r} is not four numbers", field="bbox",
                         hint="bbox=minx,miny,maxx,maxy in WGS84 degrees") from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[0] > vals[2] or vals[1] > vals[3]:
        raise InputError(f"bbox {text!r} is not minx,miny,maxx,maxy with min <= max", field="bbox",
                         hint="bbox=minx,miny,maxx,maxy in WGS84 degrees")
    return vals[0], vals[1], vals[2], vals[3]


def parse_datetime(text: str | None) -> tuple[pd.Timestamp | None, pd.Timestamp | None] | None:
    """An OGC ``datetime``: an instant or ``start/end`` (``..`` or empty: open) -> UTC bounds.

    Examples
    --------
    >>> parse_datetime("2020-01-01T00:00:00Z/..")
    (Timestamp('2020-01-01 00:00:00+0000', tz='UTC'), None)
    """
    if text is None or text == "":
        return None

    def one(s: str) -> pd.Timestamp | None:
        if s in ("", ".."):
            return None
        try:
            t = pd.Timestamp(s)
        except (ValueError, TypeError, OverflowError):
            raise InputError(f"datetime {text!r}: {s!r} is not an RFC 3339 time", field="datetime",
                             hint="e.g. 2020-01-01T00:00:00Z or 2020-01-01T00:00:00Z/..") from None
        if pd.isna(t):
            raise InputError(f"datetime {text!r} is not a time", field="datetime")
        return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")

    if "/" in text:
        a, _, b = text.partition("/")
        lo, hi = one(a), one(b)
        if lo is not None and hi is not None and lo > hi:
            raise InputError(f"datetime {text!r}: start after end", field="datetime")
        return lo, hi
    t = one(text)
    if t is None:
        raise InputError(f"datetime {text!r} is not a time", field="datetime")
    return t, t


def _filtered(ws: Workspace, info: DatasetInfo, bbox: tuple[float, float, float, float] | None,
              when: tuple[pd.Timestamp | None, pd.Timestamp | None] | None,
              upto: int | None = None) -> tuple[pd.DataFrame, int]:
    """The dataset read as the caller (checked, masked, audited), with ``_fid`` and the filters applied,
    and the number of features matched.

    Without a filter only the first ``upto`` records are read (the number matched is the version's
    row count). ``bbox`` is filtered inside DuckDB (:meth:`Workspace.read` with ``bbox``: only the
    records in the box leave it), or in PostGIS where configured (:func:`~citytwin.foundation.postgis.read_bbox`); ``datetime`` then here, on what the box kept. ``_fid`` is each
    record's position in the version in every case.
    """
    geom = _geometry_column(info)
    tcol = _time_column(info)
    if bbox is not None and geom is None:
        raise InputError(f"collection {info.name!r} has no geometry to filter by bbox", field="bbox")
    if when is not None and tcol is None:
        raise InputError(f"collection {info.name!r} has no time column to filter by datetime", field="datetime")
    if bbox is None and when is None:
        df = ws.read(info.name, info.current_version, limit=upto)
        df.insert(0, "_fid", range(len(df)))
        total = info.current.rows_kept
        return df, int(total) if total is not None else len(df)
    if bbox is not None and postgis.configured(ws) is not None:  # the same checks, masking and audit, in PostGIS
        df = postgis.read_bbox(ws, info.name, info.current_version, bbox, "_fid")
    else:
        df = ws.read(info.name, info.current_version, bbox=bbox, position="_fid")
    if when is not None and tcol is not None and len(df):
        t = pd.to_datetime(df[tcol], utc=True, errors="coerce")
        keep = t.notna()
        if when[0] is not None:
            keep &= t >= when[0]
        if when[1] is not None:
            keep &= t <= when[1]
        df = df[keep.to_numpy()]
    return df, len(df)


def features(df: pd.DataFrame, geom: str | None) -> list[dict[str, Any]]:
    """GeoJSON features of a frame with ``_fid`` (missing values -> null, times -> ISO 8601)."""
    from shapely.geometry import mapping

    props = df.drop(columns=[c for c in ("_fid", geom) if c is not None and c in df.columns])
    records = json.loads(pd.DataFrame(props).to_json(orient="records", date_format="iso", default_handler=str))
    geoms = df[geom].tolist() if geom is not None and geom in df.columns else [None] * len(df)
    out = []
    for fid, rec, g in zip(df["_fid"].tolist(), records, geoms, strict=True):
        gj = None if g is None or getattr(g, "is_empty", True) else mapping(g)
        out.append({"type": "Feature", "id": int(fid), "geometry": gj, "properties": rec})
    return out


def _csv(df: pd.DataFrame, geom: str | None) -> str:
    out = pd.DataFrame({("fid" if c == "_fid" else c): df[c].to_numpy() for c in df.columns})
    if geom is not None and geom in out.columns:
        out[geom] = [None if g is None or g.is_empty else g.wkt for g in out[geom]]
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    return buf.getvalue()


def _wants_csv(request: Request, f: str | None) -> bool:
    if f is not None:
        fl = f.lower()
        if fl not in ("csv", "json", "geojson"):
            raise InputError(f"unknown format f={f!r}", field="f", hint="use f=json (GeoJSON) or f=csv")
        return fl == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "json" not in accept


@router.get("/collections/{collection_id}/items", summary="Features of a collection (GeoJSON or CSV), paged",
            responses={200: {"content": {GEOJSON: {}, "text/csv": {}}}})
def items(collection_id: str, request: Request, ws: WsDep,
          bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in WGS84 degrees")] = None,
          datetime: Annotated[str | None, Query(description="an instant or start/end (.. open)")] = None,
          limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
          offset: Annotated[int, Query(ge=0)] = 0,
          f: Annotated[str | None, Query(description="json (GeoJSON, default) or csv")] = None) -> Response:
    info = ws.info(collection_id)
    box_ = parse_bbox(bbox)
    when = parse_datetime(datetime)
    csv = _wants_csv(request, f)
    df, matched = _filtered(ws, info, box_, when, upto=offset + limit)
    page = df.iloc[offset:offset + limit]
    geom = _geometry_column(info)
    if csv:
        return Response(_csv(page, geom), media_type="text/csv; charset=utf-8",
                        headers={"OGC-NumberMatched": str(matched)})
    base = f"{_base(request)}/collections/{collection_id}/items"
    q: dict[str, Any] = {k: v for k, v in (("bbox", bbox), ("datetime", datetime)) if v}

    def link(rel: str, off: int) -> dict[str, Any]:
        return {"href": f"{base}?{urlencode({**q, 'limit': limit, 'offset': off})}", "rel": rel, "type": GEOJSON}

    links = [link("self", offset)]
    if offset + limit < matched:
        links.append(link("next", offset + limit))
    if offset > 0:
        links.append(link("prev", max(0, offset - limit)))
    body = {"type": "FeatureCollection", "features": features(page, geom), "numberMatched": matched,
            "numberReturned": len(page), "links": links}
    return JSONResponse(body, media_type=GEOJSON)


@router.get("/collections/{collection_id}/items/{fid}", summary="One feature by its position in the dataset",
            responses={200: {"content": {GEOJSON: {}}}})
def item(collection_id: str, fid: int, request: Request, ws: WsDep) -> Response:
    info = ws.info(collection_id)
    df, total = _filtered(ws, info, None, None, upto=max(fid, 0) + 1)
    if fid < 0 or fid >= len(df):
        raise NotFoundError(f"collection {collection_id!r} has no feature {fid}",
                            hint=f"features are numbered 0..{total - 1}")
    feat = features(df.iloc[fid:fid + 1], _geometry_column(info))[0]
    feat["links"] = [{"href": f"{_base(request)}/collections/{collection_id}/items/{fid}", "rel": "self",
                      "type": GEOJSON},
                     {"href": f"{_base(request)}/collections/{collection_id}", "rel": "collection",
                      "type": "application/json"}]
    return JSONResponse(feat, media_type=GEOJSON)
