"""`citytwin report VIEW`: a view of the operations center as an HTML or PDF report (H2).

Thin layer: parse options, call :func:`citytwin.workflows.report.write_report`, print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from citytwin.cli.common import (
    JsonOpt,
    UserOpt,
    WorkspaceOpt,
    handle_errors,
    open_workspace,
    out_console,
    print_json,
)

app = typer.Typer(no_args_is_help=True)


@app.command("report")
@handle_errors
def report_cmd(
    view: Annotated[str, typer.Argument(help="economy | space | twin | catalog")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report file: FILE.html or FILE.pdf (PDF via Chromium).")],
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a view of the operations center (maps, charts, tables) as an HTML or PDF report.

    Example: citytwin report economy -w ./citytwin-demo --out economy.pdf
    """
    from citytwin.workflows.report import write_report

    ws = open_workspace(workspace, user)
    con = out_console(as_json)
    rep = write_report(ws, view, out, step=lambda m: con.print(f"[dim]{m}…[/]", highlight=False))
    if as_json:
        print_json({"view": rep.view, "format": rep.format, "path": str(rep.path)})
    else:
        con.print(f"{rep.view} report ({rep.format}): {rep.path}", highlight=False, soft_wrap=True)
