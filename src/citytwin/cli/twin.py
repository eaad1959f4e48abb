"""`citytwin twin ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="twin commands.", no_args_is_help=True)
