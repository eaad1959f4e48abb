"""`citytwin economy disparity ...` (registered on the economy app)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the disparity commands to the economy app."""
