"""`citytwin spatial ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="spatial commands.", no_args_is_help=True)
