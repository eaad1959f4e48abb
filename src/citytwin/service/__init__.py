"""citytwin.service: the HTTP API (FastAPI; NGSI-LD-style routes, alerts, forecasts) and, later,
the web operations center. ``create_app`` builds the app of a workspace's twin (``citytwin twin serve``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from citytwin import lazy_exports

#: submodule -> the public names it defines (imported on first use: see :func:`citytwin.lazy_exports`)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "app": ("create_app",),
}

__all__ = ["create_app"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from citytwin.service.app import create_app
