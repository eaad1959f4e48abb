"""citytwin: a city's digital foundation and operations platform.

Layers (dependencies point down only)::

    service, cli
      ^
    economy, resilience, spatial, planning, twin, participation   (pure functions, no I/O)
      ^
    foundation   (storage, catalog, schemas, ingest, quality, access control)

The public API of each domain package is its ``__all__`` (e.g. ``from citytwin.economy import
composite_index``). Those names are imported lazily, on first use, so that importing a package (or
running ``citytwin --help``) does not load pandas, numba, mapclassify or FastAPI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__"]


def lazy_exports(package: str, exports: Mapping[str, tuple[str, ...]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` of a package whose public names live in submodules.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : Mapping[str, tuple[str, ...]]
        Submodule (relative to ``package``) -> the public names it defines.

    Returns
    -------
    tuple
        ``(__getattr__, __dir__)``: the first imports the submodule of a public name on first access.

    Examples
    --------
    >>> getattr_, dir_ = lazy_exports("citytwin.twin", {"feeds": ("replay_schedule",)})
    >>> getattr_("replay_schedule").__name__, "replay_schedule" in dir_()
    ('replay_schedule', True)
    >>> getattr_("nothing")
    Traceback (most recent call last):
    AttributeError: module 'citytwin.twin' has no attribute 'nothing'
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        vars(importlib.import_module(package))[name] = value  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(importlib.import_module(package)), *where})

    return __getattr__, __dir__
