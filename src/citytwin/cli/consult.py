"""`citytwin consult ...` commands: consultations on plans (G1) — create, verify residents, comment,
answer (votes and surveys), moderate, results.

Thin layer over :class:`citytwin.foundation.cases.CaseStore` and
:func:`citytwin.workflows.participation.consultation_results`; ``--json`` output is JSON, errors too.
"""

from __future__ import annotations

import json
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

app = typer.Typer(help="Consultations on plans: comments on the map, votes, surveys, moderation, results.",
                  no_args_is_help=True)

IdArg = Annotated[int, typer.Argument(help="Consultation id.")]


def _store(workspace: Path | None, user: str | None) -> Any:
    from citytwin.foundation.cases import CaseStore

    return CaseStore.of(open_workspace(workspace, user))


def _out(obj: Any, as_json: bool, line: str) -> None:
    if as_json:
        print_json(obj)
    else:
        console.print(line, highlight=False, markup=False)


def _time(value: str, option: str) -> Any:
    from datetime import UTC, datetime

    from citytwin.foundation.errors import InputError

    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"bad {option} {value!r}", field=option, hint="ISO 8601, e.g. 2026-03-01T00:00:00+08:00") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@app.command("create")
@handle_errors
def create_cmd(spec: Annotated[Path, typer.Argument(help="JSON: title, starts, ends, plan (GeoJSON), documents, "
                                                       "questions [{kind, text, options, scale_max}].")],
               workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Create a consultation from a JSON file."""
    from citytwin.foundation.errors import InputError

    try:
        d = json.loads(spec.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {spec}: {exc}", file=str(spec)) from None
    for k in ("title", "starts", "ends"):
        if not isinstance(d, dict) or not d.get(k):
            raise InputError(f"{spec} has no {k!r}", file=str(spec), field=k)
    cid = _store(workspace, user).create_consultation(
        d["title"], starts=_time(d["starts"], "starts"), ends=_time(d["ends"], "ends"), plan=d.get("plan"),
        documents=d.get("documents", []), questions=d.get("questions", []))
    _out({"consultation": cid}, as_json, f"consultation #{cid} created")


@app.command("verify")
@handle_errors
def verify_cmd(resident: Annotated[str, typer.Argument(help="Resident's account name.")],
               workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Mark a resident as verified (may vote and answer surveys)."""
    _store(workspace, user).verify_resident(resident)
    _out({"verified": resident}, as_json, f"{resident} verified")


@app.command("comment")
@handle_errors
def comment_cmd(consultation: IdArg, author: Annotated[str, typer.Option("--author", help="Resident.")],
                text: Annotated[str, typer.Option("--text", help="The comment.")],
                lon: Annotated[float | None, typer.Option("--lon", help="Longitude of the point commented on.")] = None,
                lat: Annotated[float | None, typer.Option("--lat", help="Latitude of the point commented on.")] = None,
                reply_to: Annotated[int | None, typer.Option("--reply-to", help="Comment replied to.")] = None,
                workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Comment on a consultation's plan (at a point, or in general), or reply to a comment."""
    geom = {"type": "Point", "coordinates": [lon, lat]} if lon is not None and lat is not None else None
    mid = _store(workspace, user).comment(consultation, author, text, geometry=geom, parent=reply_to)
    _out({"comment": mid}, as_json, f"comment #{mid}")


@app.command("answer")
@handle_errors
def answer_cmd(question: Annotated[int, typer.Argument(help="Question id.")],
               resident: Annotated[str, typer.Option("--resident", help="Verified resident.")],
               value: Annotated[str, typer.Option("--value", help="Option, JSON list of options, 1..N or text.")],
               workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Vote or answer a survey question (one answer per resident per question)."""
    try:
        v: Any = json.loads(value)
        if not isinstance(v, list | int) or isinstance(v, bool):
            v = value
    except ValueError:
        v = value
    _store(workspace, user).answer(question, resident, v)
    _out({"question": question, "resident": resident}, as_json, "answer recorded")


@app.command("hide")
@handle_errors
def hide_cmd(comment: Annotated[int, typer.Argument(help="Comment id.")],
             reason: Annotated[str, typer.Option("--reason", help="Why (kept and audited).")],
             workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Moderation: hide a comment with a reason."""
    _store(workspace, user).hide_comment(comment, reason)
    _out({"hidden": comment}, as_json, f"comment #{comment} hidden")


@app.command("results")
@handle_errors
def results_cmd(consultation: IdArg, workspace: WorkspaceOpt = None, user: UserOpt = None,
                out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write results.json and "
                                                         "comments.geojson to this folder.")] = None,
                as_json: JsonOpt = False) -> None:
    """Counts, vote and survey tables, keywords and topics of the comments (jieba for Chinese)."""
    from citytwin.workflows.participation import consultation_results

    st = _store(workspace, user)
    r = consultation_results(st, consultation)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(r, ensure_ascii=False, indent=2), encoding="utf-8")
        feats = [{"type": "Feature", "geometry": c["geometry"],
                  "properties": {"id": c["id"], "author": c["author"], "text": c["text"], "created": c["created"]}}
                 for c in st.comments(consultation) if c["geometry"]]
        (out / "comments.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats},
                                                         ensure_ascii=False), encoding="utf-8")
    if as_json:
        print_json(r)
        return
    console.print(f"{r['title']}: {r['comments']} comments ({r['hidden_comments']} hidden)", highlight=False,
                  markup=False)
    for q in r["questions"]:
        console.print(f"  Q{q['question']} {q['text']}: {q['responses']} responses {q.get('counts', '')}",
                      highlight=False, markup=False)
    console.print("  keywords: " + ", ".join(f"{w} ({n})" for w, n in r["keywords"]), highlight=False, markup=False)
    for t in r["topics"]["topics"]:
        console.print(f"  topic {t['topic']} ({t['share']:.0%}): " + ", ".join(w for w, _ in t["terms"][:6]),
                      highlight=False, markup=False)
