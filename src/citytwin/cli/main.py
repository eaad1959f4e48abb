"""Entry point of the ``citytwin`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from citytwin.cli import economy, spatial, twin
from citytwin.cli.common import console, handle_errors
from citytwin.foundation.workspace import Workspace

app = typer.Typer(
    name="citytwin",
    help="citytwin: a city's digital foundation and operations platform.\n\n"
    "Start with `citytwin demo` (builds a demo workspace from real data), or\n"
    "`citytwin init ./ws` then `citytwin ingest FILE --dataset NAME --schema SCHEMA -w ./ws`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(economy.app, name="economy")
app.add_typer(spatial.app, name="spatial")
app.add_typer(twin.app, name="twin")


@app.command()
@handle_errors
def init(directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")]) -> None:
    """Create a workspace folder.

    Example: citytwin init ./ws
    """
    ws = Workspace.init(directory)
    console.print(f"created workspace [bold]{ws.root}[/] (owner {ws.user.name}, role admin)")


def _register_resilience() -> None:
    from citytwin.cli import resilience  # C1–C3

    app.add_typer(resilience.app, name="resilience")


_register_resilience()


def _register_foundation() -> None:
    from citytwin.cli import foundation as f  # noqa: F401  (registers its commands on `app`)


_register_foundation()

if __name__ == "__main__":
    app()
