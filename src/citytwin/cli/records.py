"""``citytwin records``: the workspace's records database (:mod:`citytwin.foundation.records_move`)."""

from __future__ import annotations

from typing import Annotated

import typer

from citytwin.cli.common import (
    JsonOpt,
    UserOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    out_console,
    print_json,
)
from citytwin.cli.common import progress as progress_bar
from citytwin.foundation.errors import CitytwinError

app = typer.Typer(help="The workspace's records (catalog, cases, projects): move them to PostgreSQL.",
                  no_args_is_help=True)


@app.command("move")
@handle_errors
def move(
    to: Annotated[str, typer.Option("--to", help="PostgreSQL database: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB "
                                                 "(the password better in ~/.pgpass).")],
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    replace: Annotated[bool, typer.Option("--replace", help="Delete the records the target already holds "
                                                            "first (else a target with records is refused).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Move an embedded workspace's records (catalog with users, tokens, audit and jobs; cases; projects)
    from its SQLite files into a PostgreSQL database, in one transaction, ids kept; then the workspace
    uses that database (its `database` setting) and the SQLite files are kept as NAME.moved.
    Stop `citytwin serve` and `twin ingest` first.

    Example: citytwin records move -w ./ws --to postgresql://citytwin@127.0.0.1:5432/citytwin
    """
    from citytwin.foundation.records_move import move_records

    if workspace is None:
        raise CitytwinError("no workspace given", hint="pass --workspace DIR or set CITYTWIN_WORKSPACE")
    say = out_console(as_json)
    last = {"table": ""}
    with progress_bar("moving records") as advance:
        seen = {"done": 0}

        def shown(store: str, table: str, done: int, total: int) -> None:
            advance(done - seen["done"], total=total)
            seen["done"] = done
            if table != last["table"]:
                last["table"] = table
                say.print(f"copying {store}.{table} …", highlight=False, soft_wrap=True)

        result = move_records(workspace, to, user=user, replace=replace, progress=shown)
    if as_json:
        print_json(result.to_dict())
        return
    for t in result.tables:
        console.print(f"{t.store:<9} {t.table:<14} {t.rows:>9} rows", highlight=False)
    console.print(f"moved {result.rows} rows to [bold]{result.target}[/]; the workspace now uses it", highlight=False,
                  soft_wrap=True)
    for path in result.kept:
        console.print(f"kept {path} (no longer used)", highlight=False, soft_wrap=True)
    for item in result.left:
        console.print(f"[yellow]not moved[/] (no citytwin store's table): {item}", highlight=False, soft_wrap=True)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
