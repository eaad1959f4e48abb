"""HTTP routes of the live twin's forecasts: issue, list, verify, scores.

The steps themselves (issue forecasts from the history, store them, score them when the actuals
arrive) are :mod:`citytwin.workflows.forecasting`; the routes call them through the twin runtime.

Routes (installed by :func:`install`): ``GET /twin/v1/forecasts``, ``POST /twin/v1/forecasts``
(issue), ``POST /twin/v1/forecasts/verify``, ``GET /twin/v1/forecasts/scores``.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from citytwin.service.ngsi import ERRORS
from citytwin.twin import forecast as fc
from citytwin.workflows.forecasting import ALL, DEFAULT_MODELS, VerifyReport, actuals, naive_utc

# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

router = APIRouter()


def _rt(request: Request) -> Any:
    return request.app.state.twin


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_timedelta64_dtype(out[c]):
            out[c] = [_fmt_td(x) for x in out[c]]
        elif pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = [None if pd.isna(x) else pd.Timestamp(x).isoformat() for x in out[c]]
    out = out.replace([np.inf, -np.inf], np.nan)
    return out.astype(object).where(out.notna(), None).to_dict(orient="records")  # type: ignore[return-value]


def _fmt_td(td: Any) -> str | None:
    return None if pd.isna(td) else fc.fmt_td(pd.Timedelta(td))


@router.get("/twin/v1/forecasts", responses=ERRORS)
def get_forecasts(request: Request, entity: str | None = None, property: str | None = None,
                  model: str | None = None, latest: bool = True, issuedAfter: str | None = None,
                  limit: int = Query(10_000, ge=1, le=1_000_000)) -> Any:
    """Stored forecasts (by default the latest issue per entity and property), with the actual and
    error where the actual has arrived."""
    rt = _rt(request)
    df = rt.forecasts.query(entities=entity, properties=property, models=model, issued_start=issuedAfter,
                            latest_issue=latest)
    if df.empty:
        return {"count": 0, "forecasts": []}
    df = df.head(limit)
    naive = df.assign(issued_at=naive_utc(df["issued_at"]), target_time=naive_utc(df["target_time"]))
    steps = naive["steps"].where(naive["steps"] > 0, 1).astype(int)
    act = actuals(rt.stores.history, naive.assign(step=naive["horizon"] / steps))
    v = fc.verify(naive, act)
    v["issued_at"] = v["issued_at"].dt.tz_localize("UTC")
    v["target_time"] = v["target_time"].dt.tz_localize("UTC")
    return {"count": len(v), "forecasts": _records(v)}


@router.post("/twin/v1/forecasts", responses=ERRORS)
def post_forecasts(request: Request, property: str = "pm25", model: Annotated[list[str] | None, Query()] = None,
                   entity: Annotated[list[str] | None, Query()] = None, horizon: int = Query(6, ge=1, le=48),
                   trainDays: float = Query(28.0, gt=0), at: str | None = None) -> Any:
    """Issue forecasts now (1..horizon hours) from the history and store them."""
    rep = _rt(request).issue_forecasts(property=property, models=tuple(model or DEFAULT_MODELS),
                                       entities=entity, horizons=[f"{h}h" for h in range(1, horizon + 1)],
                                       train_days=trainDays, at=at)
    return JSONResponse(rep.to_dict(), status_code=201 if rep.stored else 200)


@router.post("/twin/v1/forecasts/verify", responses=ERRORS)
def post_verify(request: Request) -> Any:
    """Verify now: score every stored forecast whose actual has arrived."""
    rep = _rt(request).verify_forecasts()
    return _verify_json(rep.scores, rep)


@router.get("/twin/v1/forecasts/scores", responses=ERRORS)
def get_scores(request: Request, entity: str | None = None, property: str | None = None) -> Any:
    """The score table of the last verification (``entity=(all)`` for the totals)."""
    s = _rt(request).forecasts.scores()
    if not s.empty:
        if entity is not None:
            s = s[s["entity"] == entity]
        if property is not None:
            s = s[s["property"] == property]
    return _verify_json(s, None)


def _verify_json(s: pd.DataFrame, rep: VerifyReport | None) -> dict[str, Any]:
    losses = [] if s.empty else _records(
        s[(s["entity"] == ALL) & (s["model"] != fc.BASELINE) & (s["skill"] < 0)][["property", "model", "horizon",
                                                                                    "skill"]])
    out: dict[str, Any] = {"scores": _records(s), "worse_than_baseline": losses}
    if rep is not None:
        out.update(verified=rep.verified, pending=rep.pending,
                   next_due=None if rep.next_due is None else rep.next_due.isoformat())
    return out


def install(app: Any, dependencies: list[Any] | None = None) -> None:
    """Add the forecast routes to a FastAPI app (``state.twin`` must be a TwinRuntime; ``dependencies``: e.g. the
    token check of :mod:`citytwin.service.auth`)."""
    app.include_router(router, dependencies=dependencies)
