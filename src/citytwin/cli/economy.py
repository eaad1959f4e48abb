"""`citytwin economy ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="economy commands.", no_args_is_help=True)


# Disparity commands live in their own module (keep these two lines).
from citytwin.cli import economy_disparity as _disparity  # noqa: E402

_disparity.register(app)
