"""What an ingest is asked to do (:class:`IngestOptions`) and what it did (:class:`IngestResult`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict

__all__ = ["STAGED_MEMORY", "STREAM_MEMORY", "IngestKwargs", "IngestOptions", "IngestResult", "Outcome",
           "PipelineOptions"]


@dataclass(frozen=True)
class IngestOptions:
    """How to read, link and record the files of one ingest (everything but the files, dataset and schema).

    Every field has a default; ``ingest(ws, paths, dataset=..., schema=..., options=IngestOptions(...))``
    and the same fields as keyword arguments of :func:`citytwin.foundation.ingest.ingest` are
    equivalent.

    Attributes
    ----------
    department, classification, description, source, licence
        Catalog facts of the new version: owning department, classification (``public``,
        ``internal``, ``confidential``, ``secret``), free text, where the data came from (default:
        the file names) and its licence.
    sheet, layer
        Excel sheet or GIS layer to read (default: the first).
    encoding
        Text encoding of CSV files (default: detected; UTF-8 or GBK).
    units_map
        ``{column: unit}`` for columns whose unit the header does not say.
    column_map
        ``{field: column}`` for schema fields whose header the aliases do not know (``{"year":
        "年度标识"}``; the CLI's ``--map year=年度标识``, a schema YAML's ``map:``).
    crs
        Source CRS when the file does not say (``EPSG:xxxx``, or ``gcj02`` for Chinese web-map data).
    h3
        Add an ``h3`` cell column to records with geometry (the workspace's resolution).
    repair_geometry
        Repair invalid geometries with ``ST_MakeValid`` instead of quarantining them.
    header
        Whether a CSV's first line is a header.
    memory_limit
        DuckDB memory limit (e.g. ``"512MB"``); beyond it DuckDB spills to the staging folder.
        Default: :data:`STREAM_MEMORY` for the streamed pass, :data:`STAGED_MEMORY` for the staged one.
    threads
        DuckDB threads (default: all cores).
    progress
        Called with a short message at each step (for a progress display).
    stream
        Try the streamed pass first (default): clean files go from source to Parquet in one
        parallel scan. ``False`` runs the staged pipeline directly (every record numbered in a
        table first), which is what a file with records to quarantine gets anyway.
    dask, task_progress
        Run one task per file on Dask (``"local:N"`` or ``"tcp://HOST:PORT"``,
        :mod:`citytwin.foundation.ingest.parallel`); ``task_progress(done, total)`` as tasks finish.

    Examples
    --------
    >>> IngestOptions(crs="gcj02", h3=False).crs
    'gcj02'
    """

    department: str | None = None
    classification: str = "internal"
    sheet: str | None = None
    layer: str | None = None
    encoding: str | None = None
    units_map: dict[str, str] | None = None
    column_map: dict[str, str] | None = None
    crs: str | None = None
    description: str = ""
    source: str | None = None
    licence: str | None = None
    h3: bool = True
    repair_geometry: bool = False
    header: bool = True
    memory_limit: str | None = None
    threads: int | None = None
    progress: Callable[[str], None] | None = None
    stream: bool = True
    dask: str | None = None
    task_progress: Callable[[int, int], None] | None = None


class IngestKwargs(TypedDict, total=False):
    """The fields of :class:`IngestOptions` as keyword arguments of ``ingest()`` (type checkers see them)."""

    department: str | None
    classification: str
    sheet: str | None
    layer: str | None
    encoding: str | None
    units_map: dict[str, str] | None
    column_map: dict[str, str] | None
    crs: str | None
    description: str
    source: str | None
    licence: str | None
    h3: bool
    repair_geometry: bool
    header: bool
    memory_limit: str | None
    threads: int | None
    progress: Callable[[str], None] | None
    stream: bool
    dask: str | None
    task_progress: Callable[[int, int], None] | None


#: the names ``ingest()`` accepts as keyword arguments besides ``dataset``, ``schema`` and ``options``
OPTION_NAMES = frozenset(f.name for f in fields(IngestOptions))


@dataclass
class IngestResult:
    """What an ingest did.

    ``rows_read == rows_kept + rows_quarantined``; for wide sensor files the records are
    observations (rows × value columns, ``record_unit == "observations"``).
    """

    dataset: str
    version: int
    schema: str
    files: list[str]
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    reasons: dict[str, int]
    columns: list[dict[str, Any]]
    notes: list[str]
    seconds: float
    record_unit: str = "rows"

    def to_dict(self) -> dict[str, Any]:
        """The result as a plain dict (for ``--json`` output)."""
        return dict(self.__dict__)


@dataclass
class PipelineOptions:
    """What the streamed and the staged pipeline need of the options (resolved against the workspace)."""

    sheet: str | None
    layer: str | None
    encoding: str | None
    units_map: dict[str, str] | None
    crs: str | None
    h3_res: int | None
    geometry_policy: str
    header: bool
    memory_limit: str | None
    threads: int | None
    column_map: dict[str, str] | None = None


@dataclass
class Outcome:
    """What a pipeline left in the staging folder, for the catalog."""

    out_dir: Path
    qfile: Path
    kept: int
    quarantined: int
    reasons: dict[str, int]
    extent: list[float] | None
    tmin: str | None
    tmax: str | None
    keep_cols: list[str]
    columns_meta: dict[str, dict[str, Any]]
    notes: list[str]
    layout: str
    pipeline: str
    #: text columns that may hold personal data, found by the streamed pass's own scan of every value
    #: (:func:`citytwin.foundation.cleannumba.may_hold_personal_data`); None where nothing was
    #: scanned: the commit then screens every text column
    personal_candidates: list[str] | None = None
    #: the source files' SHA-256 (comma-separated) where the pipeline computed them (the Dask tasks)
    sha256: str | None = None


# DuckDB memory limit of the streamed pass (unless ingest(memory_limit=...)). Measured on 10M POIs
# with H3 (2 cores): 256MB throttles the ordered Parquet write (30 s, peak 513 MiB), 512MB does
# not (22 s, 636 MiB), 1GB gains little more (20 s, 715 MiB).
STREAM_MEMORY = "512MB"
STAGED_MEMORY = "1GB"  # ... and of the staged pipeline
