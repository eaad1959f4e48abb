"""Entry point of the ``citytwin`` command.

Builds the command tree from the CLI modules; none of them imports a heavy library at import
time (each command imports what it uses), so ``citytwin --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from citytwin.cli import cases as _cases
from citytwin.cli import consult as _consult
from citytwin.cli import doctor as _doctor
from citytwin.cli import economy, resilience, spatial, twin
from citytwin.cli import foundation as _foundation
from citytwin.cli import plan as _plan
from citytwin.cli import postgis as _postgis
from citytwin.cli import records as _records
from citytwin.cli import report as _report
from citytwin.cli import serve as _serve
from citytwin.cli import sim as _sim
from citytwin.cli.common import JsonUsageGroup, console, handle_errors

app = typer.Typer(
    name="citytwin",
    help="citytwin: a city's digital foundation and operations platform.\n\n"
    "Start with `citytwin demo` (builds a demo workspace from real data), or\n"
    "`citytwin init ./ws` then `citytwin ingest FILE --dataset NAME --schema SCHEMA -w ./ws`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=JsonUsageGroup,  # usage errors as JSON under --json, for every command
)
app.add_typer(economy.app, name="economy")
app.add_typer(spatial.app, name="spatial")
app.add_typer(twin.app, name="twin")
app.add_typer(resilience.app, name="resilience")
app.add_typer(_plan.app, name="plan")
app.add_typer(_cases.app, name="cases")
app.add_typer(_consult.app, name="consult")
app.add_typer(_sim.app, name="sim")
app.add_typer(_records.app, name="records")
_records.app.registered_commands.extend(_postgis.app.registered_commands)  # records publish-postgis


@app.command()
@handle_errors
def init(directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")],
         database: Annotated[str | None, typer.Option(
             "--database", help="Keep the records in this database (postgresql://USER@HOST/DB; recorded in the "
                                "workspace) instead of the folder's SQLite file.")] = None) -> None:
    """Create a workspace folder.

    Example: citytwin init ./ws
    """
    from citytwin.foundation.workspace import Workspace

    ws = Workspace.init(directory, database=database)
    console.print(f"created workspace [bold]{ws.root}[/] (owner {ws.user.name}, role admin)")


def register(commands: typer.Typer) -> None:
    """Copy the top-level commands and groups of ``commands`` (a module's Typer) onto the main app."""
    app.registered_commands.extend(commands.registered_commands)
    app.registered_groups.extend(commands.registered_groups)


register(_foundation.app)
register(_report.app)
register(_serve.app)
register(_doctor.app)

if __name__ == "__main__":
    app()
