"""What every workflow shares: a workspace given as an object or as a folder, opened when needed; a GIS
layer read from a file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from citytwin.foundation.errors import CitytwinError, InputError

if TYPE_CHECKING:
    import geopandas as gpd

    from citytwin.foundation.workspace import Workspace

WorkspaceLike: TypeAlias = "Workspace | str | Path"
"""A workspace, or the folder of one (opened as the default user)."""


def open_ws(workspace: WorkspaceLike | None, user: str | None = None) -> Workspace:
    """The workspace ``workspace`` (opened as ``user`` when given as a folder).

    Raises
    ------
    CitytwinError
        When no workspace was given.
    """
    if workspace is None:
        raise CitytwinError("no workspace given", hint="pass --workspace DIR or set CITYTWIN_WORKSPACE")
    from citytwin.foundation.workspace import Workspace

    if isinstance(workspace, Workspace):
        return workspace
    return Workspace.open(workspace, user=user)


def maybe_ws(workspace: WorkspaceLike | None, user: str | None = None) -> Workspace | None:
    """:func:`open_ws`, or ``None`` when no workspace was given."""
    return None if workspace is None else open_ws(workspace, user)


def read_layer_file(path: str | Path) -> gpd.GeoDataFrame:
    """A GIS layer from a file: GeoParquet by its suffix, else anything GeoPandas reads (GeoPackage,
    GeoJSON, Shapefile ...). Used by the planning workflows and by their Dask workers.

    Raises
    ------
    InputError
        The file cannot be read (the reader's reason, naming the file).
    """
    import geopandas as gpd

    p = Path(path)
    try:
        return gpd.read_parquet(p) if p.suffix.lower() == ".parquet" else gpd.read_file(p)
    except Exception as exc:
        raise InputError(f"cannot read layer: {exc}", file=str(p)) from exc
