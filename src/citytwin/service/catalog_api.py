"""Catalog records, quality reports, lineage and quarantine counts of the datasets, over HTTP.

* ``GET /catalog`` — records of the datasets the caller may see;
* ``GET /catalog/{id}`` — one record with its versions (and stale inputs);
* ``GET /catalog/{id}/quality`` — the quality report (:func:`citytwin.foundation.quality.quality_report`);
* ``GET /catalog/{id}/lineage`` — the upstream lineage tree and the datasets built on it;
* ``GET /catalog/{id}/quarantine`` — quarantine counts per reason and field (no raw records).

Each needs read access to the dataset (403 otherwise) and is audited.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from citytwin.foundation.catalog import DatasetInfo
from citytwin.foundation.workspace import Workspace
from citytwin.service.apiauth import user_workspace

router = APIRouter(tags=["catalog"])

WsDep = Annotated[Workspace, Depends(user_workspace)]


def record(info: DatasetInfo) -> dict[str, Any]:
    """A catalog record as JSON (the current version's counts up front)."""
    d = info.to_dict()
    cur = info.current
    d["rows"] = cur.rows_kept
    d["rows_quarantined"] = cur.rows_quarantined
    d["extent"] = cur.extent
    return d


@router.get("/catalog", summary="Catalog records of the datasets the caller may see")
def catalog(ws: WsDep) -> dict[str, Any]:
    return {"datasets": [record(d) for d in ws.datasets()]}


@router.get("/catalog/{dataset}", summary="One catalog record with its versions")
def catalog_record(dataset: str, ws: WsDep) -> dict[str, Any]:
    return record(ws.info(dataset))


@router.get("/catalog/{dataset}/quality", summary="Quality report of a dataset's current version")
def quality(dataset: str, ws: WsDep) -> dict[str, Any]:
    from citytwin.foundation.quality import quality_report

    return quality_report(ws, dataset).to_dict()


@router.get("/catalog/{dataset}/lineage", summary="Lineage of a dataset's current version")
def lineage(dataset: str, ws: WsDep) -> dict[str, Any]:
    ws.info(dataset)  # access check
    return ws.catalog.lineage(dataset)


@router.get("/catalog/{dataset}/quarantine", summary="Quarantine counts of a dataset's current version")
def quarantine(dataset: str, ws: WsDep) -> dict[str, Any]:
    q = ws.quarantine(dataset)
    by_reason = q.groupby("reason").size().sort_values(ascending=False) if len(q) else None
    by_field = q.groupby("field").size().sort_values(ascending=False) if len(q) else None
    return {"dataset": dataset, "rows": len(q),
            "reasons": {} if by_reason is None else {str(k): int(v) for k, v in by_reason.items()},
            "fields": {} if by_field is None else {str(k): int(v) for k, v in by_field.items()}}
