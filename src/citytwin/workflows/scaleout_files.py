"""The Parquet inputs of the Dask workflows (:mod:`citytwin.workflows.scaleout`, ``scaleout_index``):
the files the workers read themselves, found from a file, a folder or glob of parts, a dataset, or an
``s3://`` URL (one object, a prefix or a glob: listed by :mod:`citytwin.foundation.objectstore`)."""

from __future__ import annotations

import glob
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.foundation.objectstore import filesystem, is_url, list_parquet, storage_errors

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.parquet as pq

    from citytwin.foundation.workspace import Workspace

__all__ = ["parquet_file", "parquet_files", "parquet_periods", "read_parquet", "system_pool"]


def parquet_file(path: str) -> pq.ParquetFile:
    """A :class:`pyarrow.parquet.ParquetFile` of a local file, or of an ``s3://`` object read through s3fs
    by this process (a worker: its metadata, then the row groups asked for).

    Raises
    ------
    InputError
        Naming ``path``: not Parquet, or (an object) no such bucket or object, no credentials, no endpoint.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if not is_url(path):
            return pq.ParquetFile(path)
        fs, key = filesystem(path)
        with storage_errors(path):
            return pq.ParquetFile(fs.open(key, "rb"))
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot read Parquet: {exc}", file=path) from exc


def read_parquet(path: str, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_parquet(path, **kwargs)`` of a local file or an ``s3://`` object (through s3fs, the
    store's errors naming the URL)."""
    import pandas as pd

    if not is_url(path):
        return pd.read_parquet(path, **kwargs)
    fs, key = filesystem(path)
    with storage_errors(path):
        return pd.read_parquet(key, filesystem=fs, **kwargs)


def parquet_files(source: str, ws: Workspace | None, what: str, *, objects: bool = False) -> list[str]:
    """The Parquet files of ``source``: a file, a folder or glob of parts, a dataset of ``ws``, or a URL.

    With ``objects`` (a caller whose workers read through s3fs: the points-per-zone join, the index and
    disparity on Dask), a URL
    (``s3://bucket/parts/``, ``s3://bucket/parts/*.parquet``, one object) gives ``s3://`` URLs of its
    ``.parquet`` objects in name order, listed with s3fs (credentials and endpoint from the
    environment: :mod:`citytwin.foundation.objectstore`); the workers then read the objects themselves.
    Without it a URL is refused (the caller reads local paths).
    A dataset's files are found through :meth:`Workspace.parquet_glob` (access checked and audited;
    refused to a role that sees personal columns masked). Files in name order (a dataset's part order).

    Raises
    ------
    InputError
        When ``source`` names no Parquet file (a CSV must be ingested or written as Parquet first); for a
        URL also no such bucket, no credentials or an endpoint that does not answer (naming the URL), or
        a URL without ``objects``.
    """
    if is_url(source):
        if not objects:
            raise InputError(f"object-storage URLs are not read here: the {what} must be local files or a dataset",
                             file=source, hint="s3:// inputs are read by Dask workers: add --dask "
                                               "(docs/scaleout.md), or copy the files to a local folder")
        return list_parquet(source, what)
    p = Path(source)
    if p.is_dir():
        files = sorted(str(f) for f in p.glob("*.parquet"))
    elif p.is_file():
        if p.suffix.lower() != ".parquet":
            raise InputError(f"{what} on Dask is read by the workers from Parquet, not {p.suffix or 'this file'}",
                             file=source, hint="ingest it (`citytwin ingest`) and give the dataset, or write Parquet")
        files = [str(p)]
    elif any(ch in source for ch in "*?["):
        files = sorted(glob.glob(source))
    elif ws is not None:
        files = sorted(glob.glob(ws.parquet_glob(source)))
    else:
        raise InputError(f"{source!r} is not a file, and no workspace was given to look it up as a dataset",
                         field=what, hint="pass a Parquet file or folder, or --workspace DIR with a dataset name")
    if not files:
        raise InputError(f"no Parquet files in {source!r}", file=source, field=what)
    return files


def parquet_periods(files: list[str], time: str) -> tuple[list[Any], list[int], int]:
    """The periods of a Parquet panel (its distinct non-missing values of ``time``, sorted, as
    ``pandas.read_parquet(f, columns=[time])`` gives them), each file's first row in the panel, and the
    rows without a period. From the files' metadata alone where every row group's statistics give one
    value and no missing one (an integer or text column: the usual layout of a file or row group per
    period); else the ``time`` columns are read. ``s3://`` objects are read through s3fs by this process
    (run it on a worker: :func:`citytwin.workflows.scaleout_index.index` does).
    """
    import pandas as pd
    import pyarrow as pa

    values: set[Any] = set()
    bases: list[int] = []
    total = 0
    read = False
    for f in files:
        pf = parquet_file(f)
        md = pf.metadata
        bases.append(total)
        total += md.num_rows
        col = pf.schema_arrow.get_field_index(time)
        typ = pf.schema_arrow.field(col).type if col >= 0 else None
        if typ is None or not (pa.types.is_integer(typ) or pa.types.is_string(typ) or pa.types.is_large_string(typ)):
            read = True
            break
        for g in range(md.num_row_groups):
            st = md.row_group(g).column(col).statistics
            if st is None or not st.has_min_max or not st.has_null_count or st.null_count or st.min != st.max:
                read = True
                break
            values.add(st.min)
        if read:
            break
    if not read:
        return sorted(values), bases, 0
    t = pd.concat([read_parquet(f, columns=[time]) for f in files], ignore_index=True)[time]
    bases = [0]
    for f in files[:-1]:
        bases.append(bases[-1] + parquet_file(f).metadata.num_rows)
    return sorted(t.dropna().unique().tolist()), bases, int(t.isna().sum())


_POOL_LOCK = threading.Lock()
_POOL_STATE: list[Any] = [0, None]  # [how many threads are inside system_pool(), the pool to restore]


@contextmanager
def system_pool() -> Iterator[None]:
    """Inside, Arrow allocates from glibc's malloc (``pyarrow.system_memory_pool()``), the allocator NumPy and
    pandas use, instead of its default pool (mimalloc in the wheels); the default is restored on leaving.

    A worker that reads Parquet into Arrow buffers and then makes NumPy arrays (the index's periods) then
    takes both from one heap: memory a read gave back serves the next arrays, and a fresh worker takes less
    new memory from the kernel (on this VM each new page costs a fault, dearer when two workers take pages at
    once). Arrow has one default pool per process: threads inside at once share one setting (a counter: the
    last to leave restores it); another thread's Arrow allocations meanwhile also come from glibc (correct,
    only another allocator). Buffers keep the pool they were allocated from, whenever they are freed.
    """
    import pyarrow as pa

    with _POOL_LOCK:
        if _POOL_STATE[0] == 0:
            _POOL_STATE[1] = pa.default_memory_pool()
            pa.set_memory_pool(pa.system_memory_pool())
        _POOL_STATE[0] += 1
    try:
        yield
    finally:
        with _POOL_LOCK:
            _POOL_STATE[0] -= 1
            if _POOL_STATE[0] == 0:
                pa.set_memory_pool(_POOL_STATE[1])
                _POOL_STATE[1] = None
