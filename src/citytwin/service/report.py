"""Views and reports of the operations center over HTTP (H1, H2).

* ``GET /views/{view}``: what a view of the web app shows (economy, space, twin, catalog) as JSON,
  gathered by :func:`citytwin.workflows.report.view_data` as the signed-in user (reads checked,
  masked and audited);
* ``GET /reports/{view}?f=html|pdf``: the same view as a self-contained HTML report or a PDF
  (Chromium's print-to-PDF), as ``citytwin report VIEW`` writes it.

Both need a bearer token (:func:`citytwin.service.apiauth.user_workspace`); the twin view needs a
role cleared for the twin's classification (403 otherwise). The service holds no analysis logic.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from citytwin.foundation.workspace import Workspace
from citytwin.service.apiauth import user_workspace

__all__ = ["router"]

router = APIRouter(tags=["views and reports"])

WsDep = Annotated[Workspace, Depends(user_workspace)]


def _twin_parts(request: Request) -> tuple[Any, Any]:
    rt = getattr(request.app.state, "twin", None)
    return (None, None) if rt is None else (rt.stores, rt.alerts)


@router.get("/views/{view}", summary="What a view of the operations center shows (economy, space, twin, catalog)")
def view(view: str, request: Request, ws: WsDep,
         at: Annotated[str | None, Query(description="twin view: the stations at this past time (ISO 8601)")] = None
         ) -> Response:
    from citytwin.workflows.report import dumps, view_data
    from citytwin.workflows.twin import parse_time

    stores, hub = _twin_parts(request)
    when = None if at is None else parse_time(at)
    return Response(dumps(view_data(ws, view, stores=stores, hub=hub, at=when)), media_type="application/json")


@router.get("/reports/{view}", summary="A view as an HTML report or a PDF (maps, charts, tables)",
            response_class=Response, responses={200: {"content": {"text/html": {}, "application/pdf": {}}}})
def report(view: str, request: Request, ws: WsDep,
           f: Annotated[str, Query(pattern="^(html|pdf)$", description="html or pdf")] = "html") -> Response:
    from citytwin.workflows.report import VIEWS, html_to_pdf, render_html

    if view not in VIEWS:
        from citytwin.foundation.errors import NotFoundError

        raise NotFoundError(f"no report {view!r}", hint=f"reports: {', '.join(VIEWS)}")
    stores, hub = _twin_parts(request)
    text = render_html(ws, view, stores=stores, hub=hub)
    if f == "html":
        return HTMLResponse(text)
    with tempfile.TemporaryDirectory(prefix="citytwin-report-") as tmp:
        pdf = html_to_pdf(text, Path(tmp) / f"{view}.pdf").read_bytes()
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="citytwin-{view}.pdf"'})
