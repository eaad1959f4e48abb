"""`citytwin cases ...` commands: routing model (G2), complaints and incidents in the case store (F7),
demand maps (G3).

Thin layer: parse options, call :mod:`citytwin.workflows.participation`, print. With ``--json`` the
output is JSON, errors included (``{"error": ..., "hint": ...}``, exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from citytwin.cli.common import (
    JsonOpt,
    UserOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    open_workspace,
    print_json,
)

app = typer.Typer(help="Complaints and incidents: routing model, case store, escalation, demand maps.",
                  no_args_is_help=True)


FileArg = Annotated[Path, typer.Argument(help="CSV or XLSX file.")]
TextOpt = Annotated[list[str], typer.Option("--text", help="Text column (repeat for several: joined with a space).")]
SheetOpt = Annotated[str | None, typer.Option("--sheet", help="Sheet of an XLSX file (default: the first).")]


@app.command("train-router")
@handle_errors
def train_router_cmd(
    file: FileArg,
    text: TextOpt,
    label: Annotated[str, typer.Option("--label", help="Column with the department (the class to learn).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write.")],
    test_size: Annotated[float, typer.Option("--test-size", help="Share of rows held out for scoring.")] = 0.3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out split.")] = 0,
    sheet: SheetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the routing model on labelled reports; prints held-out accuracy and macro-F1.

    Example: citytwin cases train-router 311.csv --text complaint_type --text descriptor --label agency --out router.joblib
    """
    from citytwin.workflows.participation import train_router

    s = train_router(file, text=text, label=label, out=out, test_size=test_size, seed=seed, sheet=sheet)
    if as_json:
        print_json(s)
        return
    for w in s["warnings"]:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    b = s["baseline"]
    console.print(f"trained on {s['n_train']} rows, {len(s['labels'])} labels; held out {s['n_test']} rows", highlight=False)
    console.print(f"accuracy {s['accuracy']:.4f}  macro-F1 {s['macro_f1']:.4f}  "
                  f"(baseline TF-IDF + LinearSVC: accuracy {b['accuracy']:.4f}, macro-F1 {b['macro_f1']:.4f})",
                  highlight=False)
    console.print(f"model written to {s['model']}", highlight=False)


@app.command("route")
@handle_errors
def route_cmd(
    file: FileArg,
    model: Annotated[Path, typer.Option("--model", "-m", help="Model file from train-router.")],
    text: TextOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write (input rows in order + label).")],
    sheet: SheetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Route every row of a file to a department (adds a `label` column).

    Example: citytwin cases route new.csv --model router.joblib --text complaint_type --text descriptor --out routed.csv
    """
    from citytwin.workflows.participation import route

    s = route(file, model=model, text=text, out=out, sheet=sheet)
    if as_json:
        print_json(s)
        return
    console.print(f"routed {s['rows']} rows -> {s['out']}", highlight=False)
    for k, v in s["labels"].items():
        console.print(f"  {k}: {v}", highlight=False)


@app.command("list")
@handle_errors
def list_cmd(
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    kind: Annotated[str | None, typer.Option("--kind", help="complaint or incident.")] = None,
    status: Annotated[list[str] | None, typer.Option("--status", help="Status filter (repeatable).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many cases.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List cases, newest first (reporters' personal data masked unless your role sees it)."""
    from citytwin.foundation.cases import CaseStore

    rows = CaseStore.of(open_workspace(workspace, user)).cases(kind=kind, status=status, limit=limit)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        late = f" escalation {r['escalation']}" if r["escalation"] else ""
        console.print(f"#{r['id']} {r['kind']} {r['status']} {r['department'] or '-'} due {r['deadline'] or '-'}{late}: "
                      f"{(r['description'] or '')[:60]}", highlight=False, markup=False)


@app.command("show")
@handle_errors
def show_cmd(case_id: Annotated[int, typer.Argument(help="Case id.")], workspace: WorkspaceOpt = None,
             user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """One case with its history, tasks and links."""
    from citytwin.foundation.cases import CaseStore

    st = CaseStore.of(open_workspace(workspace, user))
    rec: dict[str, Any] = {"case": st.get(case_id), "history": st.history(case_id), "tasks": st.tasks(case_id),
           "links": st.links(case_id)}
    if as_json:
        print_json(rec)
        return
    for k, v in rec["case"].items():
        console.print(f"{k}: {v}", highlight=False, markup=False)
    for e in rec["history"]:
        console.print(f"  {e['ts']} {e['actor']} {e['kind']} {e['from_status'] or ''}->{e['to_status'] or ''} "
                      f"{e['text'] or ''}", highlight=False, markup=False)


@app.command("escalate")
@handle_errors
def escalate_cmd(workspace: WorkspaceOpt = None, user: UserOpt = None,
                 step_hours: Annotated[float, typer.Option("--step-hours", help="Hours per further level.")] = 24.0,
                 as_json: JsonOpt = False) -> None:
    """Escalate every unresolved case past its deadline."""
    from citytwin.foundation.cases import CaseStore

    changed = CaseStore.of(open_workspace(workspace, user)).escalate_overdue(step_hours=step_hours)
    if as_json:
        print_json(changed)
        return
    console.print(f"{len(changed)} cases escalated", highlight=False)
    for c in changed:
        console.print(f"  #{c['case']} level {c['from']} -> {c['to']} ({c['department'] or '-'})", highlight=False)


@app.command("incident-from-alert")
@handle_errors
def incident_cmd(alert_file: Annotated[Path, typer.Argument(help="JSON file with one twin alert record.")],
                 workspace: WorkspaceOpt = None, user: UserOpt = None,
                 lat: Annotated[float | None, typer.Option("--lat", help="Latitude of the alert's sensor.")] = None,
                 lon: Annotated[float | None, typer.Option("--lon", help="Longitude of the alert's sensor.")] = None,
                 as_json: JsonOpt = False) -> None:
    """Open an incident (tasks per department, links to the alert and nearby complaints) from a twin alert."""
    import json

    from citytwin.foundation.cases import CaseStore
    from citytwin.foundation.errors import InputError
    from citytwin.workflows.participation import open_incident_from_alert

    try:
        alert = json.loads(alert_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read alert {alert_file}: {exc}", file=str(alert_file)) from None
    if not isinstance(alert, dict):
        raise InputError("the alert file must hold one JSON object", file=str(alert_file))
    loc = (lat, lon) if lat is not None and lon is not None else None
    r = open_incident_from_alert(CaseStore.of(open_workspace(workspace, user)), alert, location=loc)
    if as_json:
        print_json(r)
        return
    console.print(f"incident #{r['id']} {'opened' if r['opened'] else 'already open'}", highlight=False)


@app.command("demand")
@handle_errors
def demand_cmd(out: Annotated[Path, typer.Option("--out", "-o", help="Folder for cells.csv, hot_spots.csv, topics.csv.")],
               workspace: WorkspaceOpt = None, user: UserOpt = None,
               res: Annotated[int, typer.Option("--res", help="H3 resolution of the cells.")] = 9,
               window_days: Annotated[float, typer.Option("--window-days", help="Recent window of hot topics.")] = 7.0,
               now: Annotated[str | None, typer.Option("--now", help="End of the recent window, ISO 8601 "
                                                       "(default: the current time).")] = None,
               as_json: JsonOpt = False) -> None:
    """Demand maps of the stored complaints: counts per H3 cell, Getis-Ord hot spots, emerging hot topics."""
    from datetime import UTC, datetime

    from citytwin.foundation.cases import CaseStore
    from citytwin.foundation.errors import InputError
    from citytwin.workflows.participation import demand

    end = None
    if now:
        try:
            end = datetime.fromisoformat(now)
        except ValueError:
            raise InputError(f"bad --now {now!r}", field="now", hint="ISO 8601, e.g. 2026-03-09T00:00:00+08:00") from None
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
    maps = demand(CaseStore.of(open_workspace(workspace, user)), res=res, window_days=window_days, now=end)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in maps.items():
        frame.to_csv(out / f"{name}.csv", index=False)
    spots = maps["hot_spots"]
    hot = int((spots["hotspot"] == "hot").sum()) if "hotspot" in spots.columns else 0
    topics: list[dict[str, Any]] = [{str(k): v for k, v in r.items()} for r in maps["topics"].head(10).to_dict("records")]
    s: dict[str, Any] = {"out": str(out), "cells": len(maps["cells"]), "hot_cells": hot, "topics": topics}
    if as_json:
        print_json(s)
        return
    console.print(f"{s['cells']} cell rows, {s['hot_cells']} hot cells -> {out}", highlight=False)
    for t in s["topics"]:
        console.print(f"  {t['topic']} ({t['area']}): {t['n_recent']} now, {t['n_previous']} before, heat {t['heat']:.1f}",
                      highlight=False, markup=False)
