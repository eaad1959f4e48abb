"""``ingest()``: options -> the streamed pass, else the staged pipeline -> one committed version.

The flow of one ingest (see the package docstring): the options are resolved against the
workspace (:class:`~citytwin.foundation.ingest.options.PipelineOptions`); the streamed pass
(:mod:`.streamed`) tries to write every record in one scan; where a record needs quarantine it
hands over to the staged pipeline (:mod:`.staged`); the staging folder then becomes the dataset's
next version in the catalog, or nothing is kept.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Unpack

from citytwin.foundation import access
from citytwin.foundation.catalog import check_classification, check_name
from citytwin.foundation.errors import CitytwinError, InputError
from citytwin.foundation.ingest.options import (
    OPTION_NAMES,
    IngestKwargs,
    IngestOptions,
    IngestResult,
    Outcome,
    PipelineOptions,
)
from citytwin.foundation.ingest.parallel import file_sha256, name_sources
from citytwin.foundation.ingest.staged import run_staged
from citytwin.foundation.ingest.streamed import run_streamed
from citytwin.foundation.workspace import Workspace

__all__ = ["ingest"]


def _inputs(paths: Sequence[str | Path], dask: str | None) -> list[Path | str]:
    """Local paths as :class:`Path`; ``s3://`` URLs (an object, a prefix or a glob) as the objects they list.

    Raises
    ------
    InputError
        For a URL without ``dask`` (the workers read the objects), or one that lists nothing.
    """
    from citytwin.foundation.objectstore import is_url, list_objects

    files: list[Path | str] = []
    for p in paths:
        if not is_url(p):
            files.append(Path(p))
        elif not dask:
            raise InputError("object-storage URLs are ingested on Dask: each worker reads its objects", file=str(p),
                             field="--dask", hint="add --dask local:N (or tcp://HOST:PORT)")
        else:
            files += list_objects(str(p), "files")
    return files


def _local(files: list[Path | str], copies: dict[str, tuple[Path, str]]) -> list[Path]:
    """The files as local paths: an object's copy in the staging folder (one process reads them)."""
    return [copies[p][0] if isinstance(p, str) else p for p in files]


def _local_digests(files: list[Path | str]) -> dict[Path, str]:
    """The SHA-256 of each local file (objects are hashed by the task that copies them)."""
    return {p: file_sha256(p) for p in files if isinstance(p, Path) and p.is_file()}


def _digests(files: list[Path | str], local: dict[Path, str], copies: dict[str, tuple[Path, str]]) -> str:
    """The files' SHA-256 in file order (an object's from the worker that copied it)."""
    return ",".join(copies[p][1] if isinstance(p, str) else local[p] for p in files if isinstance(p, str) or p in local)


def ingest(ws: Workspace, paths: str | Path | Sequence[str | Path], *, dataset: str, schema: str,
           options: IngestOptions | None = None, **kwargs: Unpack[IngestKwargs]) -> IngestResult:
    """Ingest one or more files into ``dataset`` as its next version.

    Parameters
    ----------
    ws
        The workspace (its user must be allowed to write).
    paths
        A file, or several files of the same kind (e.g. one CSV per station).
    dataset, schema
        Dataset name and schema name (:func:`citytwin.foundation.schemas.get_schema`).
    options
        How to read, link and record the files (:class:`IngestOptions`; default: its defaults).
    **kwargs
        Any field of :class:`IngestOptions` (``crs="gcj02"``, ``h3=False``, ``stream=False`` …),
        overriding ``options``: the keyword form every caller used before the options object.

    Returns
    -------
    IngestResult
        ``rows_read == rows_kept + rows_quarantined``. For wide sensor files the records are
        observations (rows × value columns).

    Raises
    ------
    InputError
        When a file cannot be read at all; nothing is written then.
    TypeError
        For a keyword argument that is not a field of :class:`IngestOptions`.
    """
    unknown = sorted(set(kwargs) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"ingest() got unexpected keyword argument(s): {', '.join(unknown)}")
    o = replace(options or IngestOptions(), **kwargs)
    if o.dask:
        from citytwin.foundation.scaleout import parse_dask

        parse_dask(o.dask)  # a bad --dask value is said before anything is read
    t0 = time.perf_counter()
    check_name(dataset)
    check_classification(o.classification)
    access.require_write(ws.user, dataset)
    sch = ws.schema(schema)
    files = _inputs([paths] if isinstance(paths, str | Path) else paths, o.dask)
    if not files:
        raise InputError("no files given")
    say = o.progress or (lambda _m: None)
    geometry_policy = "repair" if o.repair_geometry else "quarantine"
    opts = PipelineOptions(sheet=o.sheet, layer=o.layer, encoding=o.encoding, units_map=o.units_map, crs=o.crs,
                           h3_res=int(ws.settings.get("h3_resolution", 9)) if o.h3 else None,
                           geometry_policy=geometry_policy, header=o.header, memory_limit=o.memory_limit,
                           threads=o.threads, column_map=o.column_map)
    file_names = [str(p) for p in files]
    staging = ws.staging_dir()
    # the source files' SHA-256 (for the catalog) is computed alongside: hashlib releases the GIL (on Dask
    # each task hashes its file)
    hasher = ThreadPoolExecutor(max_workers=1)
    digest = None if o.dask else hasher.submit(_local_digests, files)
    copies: dict[str, tuple[Path, str]] = {}  # s3:// URL -> its copy in the staging folder, its SHA-256
    try:
        out: Outcome | None = None
        fallback_note = None
        if o.dask:
            from citytwin.foundation.ingest.parallel import run_parallel

            out, fallback_note, copies = run_parallel(files, sch, opts, staging, say, o.dask, o.task_progress)
        elif o.stream:
            say("streaming")
            out, fallback_note = run_streamed(_local(files, copies), sch, opts, staging, say)
        if out is None:
            for sub in ("data", "spill", "quarantine.parquet"):
                target = staging / sub
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            out = run_staged(_local(files, copies), sch, opts, staging, say)
            name_sources(out.qfile, {str(c): u for u, (c, _) in copies.items()})
            if fallback_note:
                out.notes.append(fallback_note)
        rows_read = out.kept + out.quarantined
        if rows_read == 0:
            raise InputError("no records found (the file has a header but no data rows)",
                             file=", ".join(file_names))
        columns = [out.columns_meta.get(c, {"name": c}) for c in out.keep_cols]
        if out.layout == "wide":
            columns += [v for k, v in out.columns_meta.items() if k.startswith("value:")]
        params = {"schema": schema, "sheet": o.sheet, "layer": o.layer, "encoding": o.encoding, "units": o.units_map,
                  "crs": o.crs, "h3": opts.h3_res, "geometry_policy": geometry_policy, "layout": out.layout,
                  "notes": out.notes, "reasons": out.reasons, "pipeline": out.pipeline}
        say("committing")
        shutil.rmtree(staging / "spill", ignore_errors=True)
        version = ws.commit_version(
            name=dataset, schema=schema, staging=out.out_dir, quarantine=out.qfile, kind="ingested",
            department=o.department, classification=o.classification, description=o.description,
            source=o.source or ", ".join(file_names), licence=o.licence, source_path=", ".join(file_names),
            source_sha256=out.sha256 or _digests(
                files, digest.result() if digest is not None else _local_digests(files), copies),
            rows_read=rows_read, rows_kept=out.kept,
            rows_quarantined=out.quarantined, columns=columns, extent=out.extent, time_min=out.tmin,
            time_max=out.tmax, params=params, personal_candidates=out.personal_candidates)
    except CitytwinError:
        ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="ingest", dataset=dataset, outcome="error",
                         detail=", ".join(str(p) for p in files))
        raise
    finally:
        if digest is not None:
            digest.cancel()
        hasher.shutdown(wait=True)
        shutil.rmtree(staging, ignore_errors=True)
    return IngestResult(dataset=dataset, version=version, schema=schema, files=file_names, rows_read=rows_read,
                        rows_kept=out.kept, rows_quarantined=out.quarantined, reasons=out.reasons, columns=columns,
                        notes=out.notes, seconds=time.perf_counter() - t0,
                        record_unit="observations" if out.layout == "wide" else "rows")
