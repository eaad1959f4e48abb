"""DuckDB connections with the spatial extension loaded offline.

``INSTALL spatial`` downloads and cannot work offline; the PyPI wheel
``duckdb-extension-spatial`` (pinned to the DuckDB version) carries the real
extension file, which we load from its path with auto-install switched off.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

_CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    # DuckDB (>= 1.3) keeps blocks of every file it has read in an "external file cache", freed only under memory
    # pressure (memory_limit is 80 % of RAM). For local Parquet the OS page cache does that job already, and in a
    # long-running process that reads ever new files (the twin's history store, the service) it grew by ~40 KiB per
    # file read, never returned (tests/foundation/test_duck.py).
    "enable_external_file_cache": False,
}


def spatial_extension_path() -> Path:
    """Return the path of the spatial extension shipped in ``duckdb-extension-spatial``."""
    import duckdb_extension_spatial

    base = Path(duckdb_extension_spatial.__file__).parent / "extensions"
    path = base / f"v{duckdb.__version__}" / "spatial.duckdb_extension"
    if not path.exists():
        found = sorted(base.glob("*/spatial.duckdb_extension"))
        if not found:
            raise RuntimeError(f"spatial extension not found under {base}")
        path = found[-1]
    return path


def connect(database: str | Path = ":memory:", *, spatial: bool = True, threads: int | None = None,
            read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB connection, with the spatial extension loaded unless ``spatial=False``.

    Examples
    --------
    >>> con = connect()
    >>> con.sql("SELECT ST_AsText(ST_Point(1, 2))").fetchone()[0]
    'POINT (1 2)'
    """
    config: dict[str, str | bool | int | float | list[str]] = dict(_CONFIG)
    if threads:
        config["threads"] = threads
    con = duckdb.connect(str(database), read_only=read_only, config=config)
    if spatial:
        con.execute(f"LOAD '{spatial_extension_path()}'")
    return con
