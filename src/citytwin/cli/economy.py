"""`citytwin economy ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="economy commands.", no_args_is_help=True)
