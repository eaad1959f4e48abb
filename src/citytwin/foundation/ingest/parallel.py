"""Ingest of many files on Dask: one file per task, each writing its own Parquet part (issue 19).

:func:`run_parallel` is the third way :func:`~citytwin.foundation.ingest.ingest` fills its staging
folder (``ingest(..., dask="local:2")``). Every file is one task: on a worker it runs the same
pipelines as one process does (the streamed pass, else the staged pipeline, :func:`ingest_file`) into
``STAGING/task-NNNNN/``; the worker reads the source file itself (an ``s3://`` object: the worker copies it
into ``STAGING/sources/NNNNN/`` and ingests the copy; quarantine and errors name the URL). The client then merges what the
tasks left: the parts are moved, in file order, into ``STAGING/data/``, quarantine files are
concatenated in file order, counts and reasons summed, and the version is committed once by
:func:`~citytwin.foundation.ingest.run.ingest`, exactly as for one process.

Each task also gives what the client would otherwise read the merged records for: its records' time
range (the values and their text, as the one-process pipelines record it), its file's SHA-256, and the
text columns its streamed pass flagged as possibly personal (the commit scans only their union).

What one file cannot know is checked after all tasks: duplicate keys across files. Each task gives
the span of its keys (:class:`KeySpan`: per key column its distinct values, or its min and max); when
one key column's values are shared by no two files (one station a file, or consecutive time ranges),
no key can repeat and the records are not read again; otherwise the client counts repeated keys over
the merged parts (DuckDB). Where there are some, the staged pipeline redoes the ingest in this process (it quarantines each duplicate after the
first, naming file and row) and a note says so. The kept records, the quarantine and the catalog
facts are those of the single-process run (``tests/scaleout/test_ingest.py`` compares them).

Nothing is half-written: a task that fails raises after the other tasks have finished, and the
caller removes the staging folder; the catalog is unchanged. A task run again after its worker died
starts from an empty ``task-NNNNN`` folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from citytwin.foundation.ingest.options import Outcome, PipelineOptions
from citytwin.foundation.schemas import Schema
from citytwin.foundation.sql import ident as q
from citytwin.foundation.sql import literal as lit

__all__ = ["file_sha256", "ingest_file", "name_sources", "run_parallel", "source_copy"]


#: a key column's distinct values are returned by a task when it has at most this many (else its min/max)
SPAN_DISTINCT = 1000


@dataclass(frozen=True)
class KeySpan:
    """What one task's records hold in each key column (rows with the whole key only): the distinct values
    where there are at most :data:`SPAN_DISTINCT`, else None, and the min and max. Keys can repeat across
    files only where every key column's values meet: one column whose values no two files share rules
    repeats out without reading the records again (:func:`_spans_disjoint`)."""

    columns: tuple[str, ...]
    distinct: tuple[tuple[Any, ...] | None, ...]
    bounds: tuple[tuple[Any, Any], ...]


def _key_columns(sch: Schema, keep_cols: list[str], layout: str) -> list[str]:
    """The key the records are checked on across files (the wide sensor table: entity, property, time)."""
    if layout == "wide" and sch.name == "sensor_observation":
        return ["entity", "property", "time"]
    return [k for k in sch.key if k in keep_cols]


@dataclass(frozen=True)
class TimeSpan:
    """A task's earliest and latest record time (the values, to compare across tasks) and those values as
    the one-process pipelines record them (``CAST(... AS VARCHAR)``, in the client's DuckDB time zone)."""

    low: Any
    high: Any
    low_text: str
    high_text: str


def _time_column(keep_cols: list[str]) -> str | None:
    """The column whose range the catalog records (as the one-process pipelines choose it)."""
    return next((c for c in ("time", "created", "year") if c in keep_cols), None)


def _task_spans(out: Outcome, sch: Schema, threads: int | None, timezone: str | None
                ) -> tuple[KeySpan | None, TimeSpan | None]:
    """The :class:`KeySpan` and :class:`TimeSpan` of a task's parts (None: no key or time column, or no
    record with a whole key or a time), in one DuckDB connection."""
    import duckdb

    parts = sorted(out.out_dir.glob("*.parquet"))
    if not parts:
        return None, None
    scan = "read_parquet([" + ", ".join(lit(str(p)) for p in parts) + "])"
    con = duckdb.connect(config={"threads": threads or 1})
    try:
        tspan = None
        tcol = _time_column(out.keep_cols)
        if tcol is not None:
            if timezone:
                con.execute(f"SET TimeZone = {lit(timezone)}")
            t = q(tcol)
            r = con.sql(f"SELECT min({t}), max({t}), CAST(min({t}) AS VARCHAR), CAST(max({t}) AS VARCHAR) "
                        f"FROM {scan}").fetchone()
            tspan = TimeSpan(*r) if r and r[0] is not None else None
        return _key_span(con, scan, _key_columns(sch, out.keep_cols, out.layout)), tspan
    finally:
        con.close()


def _key_span(con: Any, scan: str, key: list[str]) -> KeySpan | None:
    """The :class:`KeySpan` of the records ``scan`` reads (None: no key, or no record with a whole key)."""
    if not key:
        return None
    notnull = " AND ".join(f"{q(k)} IS NOT NULL" for k in key)
    row = con.sql("SELECT count(*), " + ", ".join(f"min({q(k)}), max({q(k)}), count(DISTINCT {q(k)})"
                                                     for k in key) + f" FROM {scan} WHERE {notnull}").fetchone()
    if not row or not row[0]:
        return None
    distinct: list[tuple[Any, ...] | None] = []
    for n, k in enumerate(key):
        few = row[3 + 3 * n] <= SPAN_DISTINCT
        distinct.append(tuple(r[0] for r in con.sql(f"SELECT DISTINCT {q(k)} FROM {scan} WHERE {notnull}"
                                                    ).fetchall()) if few else None)
    return KeySpan(tuple(key), tuple(distinct), tuple((row[1 + 3 * n], row[2 + 3 * n]) for n in range(len(key))))


def _spans_disjoint(spans: list[KeySpan | None]) -> bool:
    """True when no key can occur in two tasks' records: some key column whose values no two tasks share
    (distinct values compared as sets, else min/max ranges that do not meet). False when undecided
    (NaN, values that do not compare): the records are then checked (:func:`_duplicate_keys`)."""
    have = [s for s in spans if s is not None]
    if len(have) < 2:
        return True
    if len({s.columns for s in have}) > 1:
        return False
    for c in range(len(have[0].columns)):
        try:
            sets = [s.distinct[c] for s in have]
            if all(v is not None for v in sets):
                vals = [x for v in sets if v is not None for x in v]
                if not any(x != x for x in vals) and len(set(vals)) == len(vals):
                    return True
            b = sorted((s.bounds[c] for s in have), key=lambda r: r[0])
            if all(b[i][1] < b[i + 1][0] for i in range(len(b) - 1)):
                return True
        except TypeError:  # values of different types, or None: undecided on this column
            continue
    return False


def source_copy(staging: Path, i: int, url: str) -> Path:
    """Where the task of file ``i`` copies object ``url`` (in the staging folder, under its own name)."""
    return staging / "sources" / f"{i:05d}" / url.rstrip("/").rsplit("/", 1)[-1]


def name_sources(qfile: Path, urls: dict[str, str]) -> None:
    """The quarantine ``qfile`` names the URLs of copied objects (``urls``: copy's path -> URL), as one
    process names the file it read."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not qfile.exists() or not urls:
        return
    t = pq.read_table(qfile)
    if "file" not in t.column_names or not t.num_rows:
        return
    col = t.column("file")
    for local, url in urls.items():
        col = pc.if_else(pc.equal(col, pa.scalar(local, col.type)), pa.scalar(url, col.type), col)
    pq.write_table(t.set_column(t.column_names.index("file"), "file", col), qfile)


def ingest_file(task: tuple[int, str], *, sch: Schema, opts: PipelineOptions, staging: str,
                timezone: str | None = None) -> tuple[Outcome, KeySpan | None, TimeSpan | None, str]:
    """One task: ingest file ``task[1]`` into ``staging/task-{task[0]:05d}`` (streamed, else staged), the
    :class:`KeySpan` of its records (so the client checks keys across files without reading them), their
    :class:`TimeSpan` (``timezone``: the client's DuckDB time zone) and the file's SHA-256 (for the catalog;
    an ``s3://`` object's as its copy was written).

    Runs on a worker; the folder is emptied first, so a task run again after a worker died starts clean.
    An object on S3 is first copied by the worker into the staging folder (:func:`source_copy`,
    :func:`citytwin.foundation.objectstore.fetch`), and that copy ingested; the quarantine and errors
    name the URL.
    """
    from citytwin.foundation.errors import CitytwinError
    from citytwin.foundation.objectstore import fetch, is_url
    from citytwin.foundation.scaleout import worker_threads

    i, path = task
    if opts.threads is None:  # DuckDB gets the worker's threads, not every core of the machine
        opts = replace(opts, threads=worker_threads())
    root = Path(staging)
    if not root.is_dir():  # the job was given up and its staging removed: write nothing
        raise FileNotFoundError(f"staging folder {root} is gone")
    work = root / f"task-{i:05d}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    url = path if is_url(path) else None
    sha: str | None = None
    if url is not None:
        local = source_copy(root, i, url)
        sha = fetch(url, local)
        path = str(local)
    try:
        out = _ingest_one(Path(path), sch, opts, work)
    except CitytwinError as exc:
        if url is None:
            raise
        raise type(exc)(exc.message.replace(path, url), hint=exc.hint) from None
    if url is not None:
        name_sources(out.qfile, {path: url})
    return (out, *_task_spans(out, sch, opts.threads, timezone), sha if sha is not None else file_sha256(Path(path)))


def _ingest_one(path: Path, sch: Schema, opts: PipelineOptions, work: Path) -> Outcome:
    from citytwin.foundation.ingest.staged import run_staged
    from citytwin.foundation.ingest.streamed import run_streamed

    files = [path]
    out, note = run_streamed(files, sch, opts, work, lambda _m: None)
    if out is None:
        for sub in ("data", "spill", "quarantine.parquet"):
            target = work / sub
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        out = run_staged(files, sch, opts, work, lambda _m: None)
        if note:
            out.notes.append(f"{files[0].name}: {note}")
    shutil.rmtree(work / "spill", ignore_errors=True)
    return out


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, hex (what the catalog records of a source file; one process and the tasks)."""
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _duplicate_keys(parts: list[Path], sch: Schema, keep_cols: list[str], layout: str) -> int:
    """How many keys occur more than once across the merged parts (0 without a key)."""
    import duckdb

    key = _key_columns(sch, keep_cols, layout)
    if not key or not parts:
        return 0
    scan = "read_parquet([" + ", ".join(lit(str(p)) for p in parts) + "])"
    notnull = " AND ".join(f"{q(k)} IS NOT NULL" for k in key)
    con = duckdb.connect()
    try:
        row = con.sql(f"SELECT count(*) FROM (SELECT 1 FROM {scan} WHERE {notnull} GROUP BY "
                      f"{', '.join(q(k) for k in key)} HAVING count(*) > 1)").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def _time_range(parts: list[Path], keep_cols: list[str], spans: list[TimeSpan | None]
                ) -> tuple[str | None, str | None]:
    """The time range as the one-process pipelines record it: from the tasks' spans (the text of the
    smallest and the largest value), else (values that do not compare) the same SQL over the merged parts."""
    import duckdb

    tcol = _time_column(keep_cols)
    if tcol is None or not parts:
        return None, None
    have = [s_ for s_ in spans if s_ is not None]
    if not have:
        return None, None
    try:
        return min(have, key=lambda s_: s_.low).low_text, max(have, key=lambda s_: s_.high).high_text
    except TypeError:
        pass
    scan = "read_parquet([" + ", ".join(lit(str(p)) for p in parts) + "])"
    con = duckdb.connect()
    try:
        r = con.sql(f"SELECT CAST(min({q(tcol)}) AS VARCHAR), CAST(max({q(tcol)}) AS VARCHAR) FROM {scan}").fetchone()
    finally:
        con.close()
    return (r[0], r[1]) if r else (None, None)


def _assign(sizes: list[int], workers: list[str]) -> list[str | None]:
    """A worker for each file (of ``sizes`` bytes), the largest files first to the worker with the fewest
    bytes so far: the workers get even shares of bytes (a preference: another worker runs a task if its
    own is gone)."""
    if not workers:
        return [None] * len(sizes)
    load = dict.fromkeys(workers, 0)
    home: list[str | None] = [None] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        w = min(workers, key=lambda w: load[w])
        home[i] = w
        load[w] += sizes[i]
    return home


def _sizes(files: Sequence[Path | str]) -> list[int]:
    """Each file's bytes (0 where it is no file: its task then says why); an object's from its listing."""
    from citytwin.foundation.objectstore import object_sizes

    urls = [f for f in files if isinstance(f, str)]
    objects = dict(zip(urls, object_sizes(urls), strict=True)) if urls else {}
    return [objects[f] if isinstance(f, str) else f.stat().st_size if f.is_file() else 0 for f in files]


def run_parallel(files: Sequence[Path | str], sch: Schema, opts: PipelineOptions, staging: Path,
                 say: Callable[[str], None], dask: str, progress: Callable[[int, int], None] | None = None
                 ) -> tuple[Outcome | None, str | None, dict[str, tuple[Path, str]]]:
    """Ingest ``files`` on the Dask cluster ``dask``, one task per file, and merge into ``staging``.

    ``files`` are local paths or ``s3://`` URLs (str); a URL is copied by its task's worker into the
    staging folder (:func:`source_copy`) and the copy ingested.

    Returns the merged :class:`Outcome`, or ``(None, why)`` when keys repeat across files (the caller
    then runs the staged pipeline over all files, which quarantines them as one process would), and
    for each URL its copy and SHA-256 (the caller's staged pipeline reads the copies).

    Raises
    ------
    CitytwinError
        The first task's error (a file that cannot be read), after every task has finished.
    """
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from citytwin.foundation.scaleout import cluster, parse_dask, run_futures, task_keys

    spec = parse_dask(dask)
    sizes = _sizes(files)  # an object that cannot be listed is said before the cluster starts
    con = duckdb.connect()
    try:  # the time zone the one-process pipelines write the time range in (the tasks cast in it)
        timezone = str(con.execute("SELECT current_setting('TimeZone')").fetchone()[0])  # type: ignore[index]
    finally:
        con.close()
    say(f"starting Dask ({spec})")
    with cluster(spec) as client:
        say(f"{len(files)} file(s) as Dask tasks on {spec}")
        home = _assign(sizes, sorted(client.scheduler_info(n_workers=-1).get("workers", {})))
        keys = task_keys("citytwin-ingest", len(files))
        futures = [client.submit(ingest_file, (i, p if isinstance(p, str) else str(p.resolve())), pure=False, key=keys[i],
                                 sch=sch, opts=opts,
                                 staging=str(staging), timezone=timezone, workers=[home[i]] if home[i] else None,
                                 allow_other_workers=True)
                   for i, p in enumerate(files)]
        done = run_futures(client, futures, progress=progress)
    outs = [o for o, *_ in done]
    copies = {p: (source_copy(staging, i, p), d[3]) for i, (p, d) in enumerate(zip(files, done, strict=True))
              if isinstance(p, str)}
    say("merging parts")
    layouts = {o.layout for o in outs}
    cols = {tuple(o.keep_cols) for o in outs if o.kept}
    if len(layouts) > 1 or len(cols) > 1:
        return None, "the files give different columns; records checked in one process by the staged pipeline", copies
    out_dir = staging / "data"
    out_dir.mkdir(exist_ok=True)
    parts: list[Path] = []
    for i, o in enumerate(outs):
        for j, part in enumerate(sorted(o.out_dir.glob("*.parquet"))):
            target = out_dir / f"part-{i:05d}-{j:04d}.parquet"  # zero-padded: read in name order = file order
            part.replace(target)
            parts.append(target)
    keep_cols = list(next(iter(cols))) if cols else outs[0].keep_cols
    layout = outs[0].layout
    # the records are read again only when the tasks' key values meet (files that share some key value)
    dups = 0 if _spans_disjoint([d[1] for d in done]) else _duplicate_keys(parts, sch, keep_cols, layout)
    if dups:
        return None, (f"{dups:,} key(s) repeat across files (the Dask tasks see one file each); records "
                      "checked in one process by the staged pipeline"), copies
    qtables = [pq.read_table(o.qfile) for o in outs if o.qfile.exists()]
    qfile = staging / "quarantine.parquet"
    pq.write_table(pa.concat_tables(qtables, promote_options="permissive") if qtables else pa.table({}), qfile)
    reasons: dict[str, int] = {}
    columns_meta: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for o in outs:
        for r, n in o.reasons.items():
            reasons[r] = reasons.get(r, 0) + n
        for k, v in o.columns_meta.items():
            columns_meta.setdefault(k, v)
        notes += o.notes
    for i in range(len(outs)):
        shutil.rmtree(staging / f"task-{i:05d}", ignore_errors=True)
    boxes = [o.extent for o in outs if o.extent]
    extent = ([min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
               max(b[3] for b in boxes)] if boxes else None)
    tmin, tmax = _time_range(parts, keep_cols, [d[2] for d in done])
    kinds = sorted({o.pipeline for o in outs})
    # the columns that may hold personal data, screened value by value by every task (None: some task's
    # pipeline did not screen; the commit then screens the version)
    screened = [o.personal_candidates for o in outs]
    personal = sorted({c for sc in screened if sc is not None for c in sc}) if None not in screened else None
    return Outcome(out_dir=out_dir, qfile=qfile, kept=sum(o.kept for o in outs),
                   quarantined=sum(o.quarantined for o in outs), reasons=reasons, extent=extent, tmin=tmin, tmax=tmax,
                   keep_cols=keep_cols, columns_meta=columns_meta, notes=notes, layout=layout,
                   pipeline=f"dask {spec} ({len(files)} tasks: {'+'.join(kinds)})", personal_candidates=personal,
                   sha256=",".join(d[3] for d in done)), None, copies
