"""Ingest benchmark (issue 2, A1): citytwin ``ingest`` against DuckDB's own CSV/Parquet readers.

Measures rows/s and peak memory (RSS) of

* the Beijing multi-site air data (12 CSV files, 420,768 source rows, melted by citytwin into
  observations = rows x 11 value columns), and
* generated POI files (``poi_id, name, category, lon, lat``; 8 categories) at several sizes,
  as CSV and as Parquet,

each as a ratio to DuckDB reading the same file(s) in the same run:

* ``duck_table``: ``CREATE TABLE t AS SELECT * FROM read_csv([...])`` (or ``read_parquet``);
* ``duck_parquet``: ``COPY (SELECT * FROM read_csv([...])) TO 'x.parquet' (FORMAT parquet,
  COMPRESSION zstd)``.

The headline ratio uses ``duck_parquet``: citytwin's end product is a (Geo)Parquet version
written with zstd, so "read the file and write it as Parquet" is the like-for-like floor.
The ratio against ``duck_table`` is reported too.

The runs of one input are interleaved (DuckDB, citytwin, DuckDB, citytwin ... ``--repeat`` rounds,
the fastest of each counts), so both sides see the same drift of the neighbours' load. DuckDB is
also timed with citytwin's writer settings (zstd level 1, small dictionaries), reported beside the
headline ratio. A POI CSV with unordered ids shows the duplicate-key check's hash aggregate (the
ingest skips it when a one-column key arrives strictly ascending).

Every measured run happens in its own child process (this script re-invoked with
``--child``); its peak RSS is the child's own ``VmHWM`` (peak resident set since exec, read
from ``/proc/self/status`` as it ends), so runs of different sizes do not contaminate each
other (``ru_maxrss`` from ``os.wait4`` is kept in the JSON too, but Linux lets it include the
parent's RSS at fork). An ``idle`` child that
only imports citytwin, DuckDB and the spatial extension gives the fixed floor of every run.
Citytwin runs also report where the time went (each SQL statement of the ingest pipeline,
the file hash, the catalog commit), from a timing proxy around the DuckDB connection.

Usage::

    python bench/ingest_bench.py --quick        # POI 100k/300k/1M (about 2 min on 2 busy cores)
    python bench/ingest_bench.py                # POI 1M/3M/10M (the issue's size)
    python bench/ingest_bench.py --sizes 2000000 --no-beijing
    python bench/ingest_bench.py --repeat 3      # each run 3 times, fastest counts (default 2)

Writes a table to stdout and ``bench/out/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
AIR_DIR = Path(os.environ.get("CITYTWIN_SHARED_DATA", "/work/shared/data")) / "air_beijing_multisite"
CATEGORIES = ["restaurant", "shop", "school", "hospital", "bank", "hotel", "park", "bus_stop"]
QUICK_SIZES = [100_000, 300_000, 1_000_000]
FULL_SIZES = [1_000_000, 3_000_000, 10_000_000]


# ---------------------------------------------------------------------------
# machine facts
# ---------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """nproc, memory, CPU model, load average and versions."""
    import duckdb
    import h3
    import pyarrow

    mem_kb = 0
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        ct_version = version("citytwin")
    except Exception:  # not installed as a distribution
        ct_version = "?"
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "cpu": cpu,
        "loadavg_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "h3": getattr(h3, "__version__", "?"),
        "citytwin": ct_version,
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------------------
# child side: one measured run
# ---------------------------------------------------------------------------
class _TimedRel:
    """A relation whose fetches are timed (ingest calls ``con.sql(...).fetchone()`` etc.)."""

    def __init__(self, rel: Any, sql: str, log: list[tuple[str, float]]) -> None:
        self._rel, self._sql, self._log = rel, sql, log

    def _timed(self, meth: str, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        out = getattr(self._rel, meth)(*a, **k)
        self._log.append((self._sql, time.perf_counter() - t))
        return out

    def fetchone(self) -> Any:
        return self._timed("fetchone")

    def fetchall(self) -> Any:
        return self._timed("fetchall")

    def df(self) -> Any:
        return self._timed("df")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._rel, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **k: Any) -> Any:  # relation -> relation methods (limit, aggregate, project ...)
            out = attr(*a, **k)
            return _TimedRel(out, f"{self._sql} .{name}()", self._log) if hasattr(out, "fetchone") else out

        return call


class _TimedCon:
    """A DuckDB connection proxy that logs the wall time of every statement."""

    def __init__(self, con: Any, log: list[tuple[str, float]]) -> None:
        self._con, self._log = con, log

    def execute(self, sql: str, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        out = self._con.execute(sql, *a, **k)
        self._log.append((sql, time.perf_counter() - t))
        return out

    def executemany(self, sql: str, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        out = self._con.executemany(sql, *a, **k)
        self._log.append((sql, time.perf_counter() - t))
        return out

    def sql(self, sql: str, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        rel = self._con.sql(sql, *a, **k)
        self._log.append(("plan: " + sql, time.perf_counter() - t))
        return _TimedRel(rel, sql, self._log) if rel is not None else rel

    def register(self, name: str, obj: Any) -> Any:
        t = time.perf_counter()
        out = self._con.register(name, obj._rel if isinstance(obj, _TimedRel) else obj)
        self._log.append(("__register", time.perf_counter() - t))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _stage_name(sql: str) -> str:
    """A short name for an ingest SQL statement."""
    s = " ".join(sql.split())
    rules = [
        (r"^COPY \(SELECT \* EXCLUDE \(_file, _row, _reason", "streamed pass: read + map + check (+ h3) -> parquet"),
        (r"^SELECT \* EXCLUDE \(_file, _row, _reason", "streamed pass, points (Arrow path): query start"),
        (r"GROUP BY hash\(", "duplicate-key check (hash aggregate over the written parquet)"),
        (r"parquet_kv_metadata", "extent (GeoParquet bbox metadata)"),
        (r"CAST\(NULL AS VARCHAR\) AS file", "empty quarantine file"),
        (r"^LOAD ", "load spatial (streamed pass: only when geometry)"),
        (r"^plan: ", "plan queries (lazy relations: binding sniffs the CSV)"),
        (r"\.aggregate\(\)", "infer column types (sampled aggregate, readers.infer_types)"),
        (r"^CREATE TABLE staged AS|^INSERT INTO staged", "stage: read + map + check (+ h3) -> staged table"),
        (r"^CREATE TABLE dups", "duplicate-key window over staged"),
        (r"^UPDATE staged s SET _reasons", "mark duplicates"),
        (r"^COPY \(SELECT .* FROM staged WHERE len\(_reasons\) = 0 ORDER BY", "write kept rows (ORDER BY) -> parquet"),
        (r"^COPY \( SELECT .* AS file", "write quarantine -> parquet"),
        (r"DESCRIBE SELECT \* FROM read_csv", "sniff CSV types (DESCRIBE read_csv)"),
        (r"ST_XMin", "extent (min/max over staged)"),
        (r"CAST\(min\(", "time range (min/max over staged)"),
        (r"count\(\*\) FILTER", "kept/quarantined counts"),
        (r"read_parquet\(\?\)", "reason summary (quarantine file)"),
        (r"LIMIT 0", "column lists (LIMIT 0)"),
        (r"^SET |^CREATE TABLE rejects|^DROP TABLE|^LOAD ", "settings"),
    ]
    for pat, name in rules:
        if re.search(pat, s):
            return name
    return "other: " + s[:60]


def _child_citytwin(spec: dict[str, Any]) -> dict[str, Any]:
    import citytwin.foundation.ingest as ing
    from citytwin.foundation import duck
    from citytwin.foundation.ingest import run as ing_run
    from citytwin.foundation.ingest import streamed as ing_streamed
    from citytwin.foundation.workspace import Workspace

    log: list[tuple[str, float]] = []
    real_connect = duck.connect

    def timed_connect(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        con = real_connect(*a, **k)
        log.append(("__connect", time.perf_counter() - t))
        return _TimedCon(con, log)

    real_sha = ing_run._sha256

    def timed_sha(p: Path) -> str:
        t = time.perf_counter()
        out = real_sha(p)
        log.append(("__sha256", time.perf_counter() - t))
        return out

    real_arrow = ing_streamed.copy_arrow

    def timed_arrow(*a: Any, **k: Any) -> Any:
        t, n = time.perf_counter(), len(log)
        out = real_arrow(*a, **k)
        inner = sum(sec for _, sec in log[n:])  # the query's own start is logged by the connection
        log.append(("__arrow", time.perf_counter() - t - inner))
        return out

    from citytwin.foundation import workspace as ws_mod

    real_detect = ws_mod.detect_personal_columns

    def timed_detect(*a: Any, **k: Any) -> Any:
        t, n = time.perf_counter(), len(log)
        out = real_detect(*a, **k)
        inner = sum(sec for _, sec in log[n:])  # its DuckDB statements are logged by the connection
        log.append(("__personal", time.perf_counter() - t - inner))
        return out

    ws_mod.detect_personal_columns = timed_detect
    duck.connect = timed_connect
    ing_run._sha256 = timed_sha
    ing_streamed.copy_arrow = timed_arrow
    work = Path(spec["tmp"])
    ws = Workspace.init(work / "ws", owner="admin")
    real_commit = ws.commit_version

    def timed_commit(**k: Any) -> int:
        t, n = time.perf_counter(), len(log)
        out = real_commit(**k)
        inner = sum(sec for _, sec in log[n:])  # the personal-data scan and SQL inside, logged apart
        log.append(("__commit", time.perf_counter() - t - inner))
        return out

    ws.commit_version = timed_commit
    t0 = time.perf_counter()
    r = ing.ingest(ws, spec["paths"], dataset=spec["dataset"], schema=spec["schema"],
                   units_map=spec.get("units_map"), h3=spec.get("h3", True),
                   memory_limit=spec.get("memory_limit"), stream=spec.get("stream", True))
    seconds = time.perf_counter() - t0
    stages: dict[str, float] = {}
    for sql, sec in log:
        name = {"__sha256": "sha256 of source files", "__commit": "catalog commit (move files, record)",
                "__personal": "personal-data scan at commit (its SQL listed apart)",
                "__connect": "connect (+ load spatial)", "__register": "register source relation",
                "__arrow": "streamed pass, points (Arrow path): read + check -> geometry, h3 -> parquet"}.get(
            sql, _stage_name(sql))
        stages[name] = stages.get(name, 0.0) + sec
    sha = stages.pop("sha256 of source files", 0.0)
    stages["python / other"] = seconds - sum(stages.values())
    # the source hash runs in a thread alongside the pipeline: reported, not part of the sum
    stages["(in a thread, overlapped) sha256 of source files"] = sha
    pipeline = ws.catalog.get(spec["dataset"]).current.params.get("pipeline")
    out_bytes = sum(f.stat().st_size for f in (work / "ws").rglob("*.parquet"))
    shutil.rmtree(work / "ws", ignore_errors=True)
    return {"seconds": seconds, "rows_read": r.rows_read, "rows_kept": r.rows_kept,
            "rows_quarantined": r.rows_quarantined, "record_unit": r.record_unit, "pipeline": pipeline,
            "stages": dict(sorted(stages.items(), key=lambda kv: -kv[1])), "out_bytes": out_bytes}


def _child_duck(spec: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()  # DuckDB defaults: all cores, memory_limit 80% of RAM
    paths = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in spec["paths"]) + "]"
    reader = "read_parquet" if spec["format"] == "parquet" else "read_csv"
    out = Path(spec["tmp"]) / "duck.parquet"
    t0 = time.perf_counter()
    if spec["mode"] == "table":
        con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}({paths})")
        seconds = time.perf_counter() - t0
        rows = con.sql("SELECT count(*) FROM t").fetchone()[0]  # type: ignore[index]
    elif spec["mode"] == "parquet_l1":  # the writer settings citytwin's ingest uses (ingest.PARQUET_WRITE)
        con.execute(f"COPY (SELECT * FROM {reader}({paths})) TO '{out}' (FORMAT parquet, COMPRESSION zstd, "
                    "COMPRESSION_LEVEL 1, DICTIONARY_SIZE_LIMIT 4096)")
        seconds = time.perf_counter() - t0
        rows = con.sql(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]  # type: ignore[index]
    else:
        con.execute(f"COPY (SELECT * FROM {reader}({paths})) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
        seconds = time.perf_counter() - t0
        rows = con.sql(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]  # type: ignore[index]
    out_bytes = out.stat().st_size if out.exists() else 0
    out.unlink(missing_ok=True)
    return {"seconds": seconds, "rows_read": int(rows), "out_bytes": out_bytes}


def _child_idle(spec: dict[str, Any]) -> dict[str, Any]:
    import citytwin.foundation.ingest  # noqa: F401  (what every citytwin run imports)
    from citytwin.foundation import duck

    duck.connect().close()
    return {"seconds": 0.0, "rows_read": 0}


def child_main(spec_file: str, out_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    kind = spec["kind"]
    fn = {"citytwin": _child_citytwin, "duck": _child_duck, "idle": _child_idle}[kind]
    res = fn(spec)
    res["vm_hwm_mib"] = _vm_hwm_mib()
    Path(out_file).write_text(json.dumps(res))


def _vm_hwm_mib() -> float | None:
    """This process's peak RSS since exec (``VmHWM``), in MiB; None off Linux.

    ``ru_maxrss`` from ``wait4`` is not enough on its own: Linux carries the parent's RSS at
    fork over into the child's maximum, so a parent that has read data would inflate it.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------
REPEAT = 2  # each measured run is repeated; the fastest counts (set by --repeat)


def run_child(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Run ``spec`` ``REPEAT`` times, each in a fresh process; keep the fastest run.

    The other runs' times are kept in ``all_seconds``; ``peak_rss_mib`` is the highest of all runs
    (memory is reported conservatively). Repeating evens out disk flushes and the neighbours' load
    on this shared machine, for DuckDB's runs and citytwin's alike.
    """
    runs = [_run_child_once(spec, tmp) for _ in range(max(1, REPEAT if spec.get("kind") != "idle" else 1))]
    best = min(runs, key=lambda r: r["seconds"])
    best["all_seconds"] = [r["seconds"] for r in runs]
    best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    return best


def run_children(specs: list[dict[str, Any]], tmp: Path) -> list[dict[str, Any]]:
    """Run every spec ``REPEAT`` times in interleaved rounds (A B C, A B C ...); keep each one's fastest.

    Interleaving puts DuckDB's baseline and citytwin's runs under the same drift of the neighbours'
    load on this shared machine (back-to-back repeats let a slow minute fall on one side only).
    ``all_seconds`` keeps every run's time; ``peak_rss_mib`` is the highest of all runs.
    """
    rounds = [[_run_child_once(spec, tmp) for spec in specs] for _ in range(max(1, REPEAT))]
    out = []
    for i in range(len(specs)):
        runs = [r[i] for r in rounds]
        best = min(runs, key=lambda r: r["seconds"])
        best["all_seconds"] = [r["seconds"] for r in runs]
        best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
        out.append(best)
    return out


def _run_child_once(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Run ``spec`` in a fresh process; return its result plus wall time and peak RSS (MiB)."""
    work = Path(tempfile.mkdtemp(dir=tmp))
    spec = dict(spec, tmp=str(work))
    sf, of = work / "spec.json", work / "out.json"
    sf.write_text(json.dumps(spec))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", str(sf), str(of)])
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child run failed ({proc.returncode}): {spec}")
    res: dict[str, Any] = json.loads(of.read_text())
    shutil.rmtree(work, ignore_errors=True)
    res["wall_s"] = wall
    res["ru_maxrss_mib"] = usage.ru_maxrss / 1024  # Linux: KiB; includes the parent's RSS at fork
    res["peak_rss_mib"] = res["vm_hwm_mib"] if res.get("vm_hwm_mib") else res["ru_maxrss_mib"]
    res["loadavg_1m"] = os.getloadavg()[0]
    return res


def generate_poi(n: int, folder: Path, *, unordered: bool = False) -> tuple[Path, Path]:
    """Write ``n`` POI rows as CSV and Parquet with DuckDB (deterministic, inside Beijing's box).

    Ids ascend with the row (``P000000000``, ``P000000001`` ...), as in a database export;
    ``unordered`` permutes them (``i * 7919 mod n``), so the ingest's duplicate-key check cannot
    take its shortcut for ascending keys and runs its hash aggregate.
    """
    import duckdb

    tag = "_unordered" if unordered else ""
    csv, pq = folder / f"poi_{n}{tag}.csv", folder / f"poi_{n}{tag}.parquet"
    cats = "[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "]"
    pid = f"(i * 7919) % {n}" if unordered else "i"
    sel = (f"SELECT 'P' || lpad(CAST({pid} AS VARCHAR), 9, '0') AS poi_id, 'POI ' || i AS name, "
           f"{cats}[(i % 8) + 1] AS category, "
           f"round(115.7 + (hash(i) % 1000000) / 1e6 * 1.7, 6) AS lon, "
           f"round(39.4 + (hash(i * 7 + 3) % 1000000) / 1e6 * 1.6, 6) AS lat FROM range({n}) t(i)")
    con = duckdb.connect()
    con.execute("SET enable_progress_bar=false")
    con.execute(f"COPY ({sel}) TO '{csv}' (HEADER, DELIMITER ',')")
    con.execute(f"COPY (SELECT * FROM read_csv('{csv}')) TO '{pq}' (FORMAT parquet, COMPRESSION zstd)")
    con.close()
    return csv, pq


def _rate(rows: int, sec: float) -> float:
    return rows / sec if sec > 0 else float("nan")


def fmt_row(label: str, r: dict[str, Any], rows: int, base: float | None, base_t: float | None) -> str:
    rate = _rate(rows, r["seconds"])
    ratio = f"{rate / base:5.2f}" if base else "    -"
    ratio_t = f"{rate / base_t:5.2f}" if base_t else "    -"
    return (f"  {label:<34} {r['seconds']:8.2f} s {rate / 1e6:8.3f} M/s  ratio(parquet) {ratio}  "
            f"ratio(table) {ratio_t}  peak RSS {r['peak_rss_mib']:7.0f} MiB  load {r['loadavg_1m']:.1f}")


def print_stages(r: dict[str, Any]) -> None:
    total = r["seconds"]
    if r.get("pipeline"):
        print(f"      pipeline: {r['pipeline']}")
    for name, sec in r["stages"].items():
        if sec >= 0.01 * total:
            print(f"      {sec:7.2f} s {100 * sec / total:5.1f}%  {name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"POI sizes {QUICK_SIZES}")
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="comma-separated POI sizes (default 1M,3M,10M)")
    ap.add_argument("--no-beijing", action="store_true", help="skip the Beijing air files")
    ap.add_argument("--no-poi", action="store_true", help="skip the generated POI files")
    ap.add_argument("--no-parquet", action="store_true", help="skip the POI Parquet variant")
    ap.add_argument("--no-unordered", action="store_true",
                    help="skip the POI CSV whose ids are not in ascending order (duplicate check by hash aggregate)")
    ap.add_argument("--dirty", action="store_true",
                    help="also a POI CSV with one bad value in its middle row: the streamed pass stops there "
                         "and the staged pipeline redoes the file (vs stream=False, the staged pipeline alone)")
    ap.add_argument("--tmp", type=Path, default=None, help="temp folder (default: system temp)")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "ingest.json")
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement; the fastest counts")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child_main(*a.child)
        return 0
    globals()["REPEAT"] = a.repeat
    sizes = a.sizes or (QUICK_SIZES if a.quick else FULL_SIZES)
    info = machine()
    print(f"machine: nproc={info['nproc']} memory={info['memory_gib']} GiB cpu={info['cpu']}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in info['loadavg_start'])} "
          "(other jobs share this machine; ratios are measured in the same run)")
    print(f"python {info['python']} duckdb {info['duckdb']} pyarrow {info['pyarrow']} h3 {info['h3']} "
          f"citytwin {info['citytwin']}")
    print("ratio = citytwin rows/s / DuckDB rows/s; 'parquet' baseline = COPY read_csv(...) TO parquet zstd "
          "(headline), 'table' = CREATE TABLE AS read_csv(...)")
    results: dict[str, Any] = {"machine": info, "sizes": sizes, "beijing": None, "poi": []}
    tmp = Path(tempfile.mkdtemp(prefix="ct_ingest_bench_", dir=a.tmp))
    try:
        idle = run_child({"kind": "idle"}, tmp)
        results["idle_peak_rss_mib"] = idle["peak_rss_mib"]
        print(f"idle child (imports citytwin + duckdb + spatial, no work): peak RSS {idle['peak_rss_mib']:.0f} MiB")

        if not a.no_beijing:
            files = sorted(str(p) for p in AIR_DIR.glob("*.csv"))
            if len(files) != 12:
                print(f"Beijing air data not found under {AIR_DIR}; skipped")
            else:
                print(f"\nBeijing multi-site air: {len(files)} CSV files, "
                      f"{sum(Path(f).stat().st_size for f in files) / 2**20:.1f} MiB")
                dt, dp, dl, ct = run_children([
                    {"kind": "duck", "format": "csv", "mode": "table", "paths": files},
                    {"kind": "duck", "format": "csv", "mode": "parquet", "paths": files},
                    {"kind": "duck", "format": "csv", "mode": "parquet_l1", "paths": files},
                    {"kind": "citytwin", "paths": files, "dataset": "air", "schema": "sensor_observation",
                     "units_map": {"CO": "µg/m³"}}], tmp)
                src_rows = dt["rows_read"]
                bp, bt = _rate(src_rows, dp["seconds"]), _rate(src_rows, dt["seconds"])
                print(f"  source rows {src_rows:,}; citytwin observations {ct['rows_read']:,} "
                      f"(kept {ct['rows_kept']:,}, quarantined {ct['rows_quarantined']:,})")
                print(fmt_row("duckdb read_csv -> parquet", dp, src_rows, bp, bt))
                print(fmt_row("duckdb read_csv -> table", dt, src_rows, bp, bt))
                print(fmt_row("duckdb -> parquet, zstd level 1", dl, src_rows, bp, bt))
                print(fmt_row("citytwin ingest (source rows)", ct, src_rows, bp, bt))
                print(f"  citytwin observations/s: {_rate(ct['rows_read'], ct['seconds']) / 1e6:.3f} M/s")
                print("    citytwin stages:")
                print_stages(ct)
                results["beijing"] = {"files": len(files), "source_rows": src_rows, "duck_table": dt,
                                      "duck_parquet": dp, "duck_parquet_l1": dl, "citytwin": ct,
                                      "ratio_vs_parquet_l1": _rate(src_rows, ct["seconds"]) / _rate(src_rows, dl["seconds"]),
                                      "ratio_vs_parquet": _rate(src_rows, ct["seconds"]) / bp,
                                      "ratio_vs_table": _rate(src_rows, ct["seconds"]) / bt}

        if not a.no_poi:
            for n in sizes:
                t = time.perf_counter()
                csv, pq = generate_poi(n, tmp)
                print(f"\nPOI {n:,} rows: CSV {csv.stat().st_size / 2**20:.0f} MiB, Parquet "
                      f"{pq.stat().st_size / 2**20:.0f} MiB (generated in {time.perf_counter() - t:.1f} s)")
                entry: dict[str, Any] = {"rows": n, "csv_mib": csv.stat().st_size / 2**20,
                                         "parquet_mib": pq.stat().st_size / 2**20}
                variants: list[tuple[str, Path]] = [("csv", csv)] + ([] if a.no_parquet else [("parquet", pq)])
                for fmt, path in variants:
                    h3s = (False, True) if fmt == "csv" else (True,)
                    unordered = None
                    extra: list[dict[str, Any]] = []
                    if fmt == "csv" and not a.no_unordered:
                        unordered, upq = generate_poi(n, tmp, unordered=True)
                        upq.unlink()
                        extra = [{"kind": "citytwin", "paths": [str(unordered)], "dataset": "poi", "schema": "poi",
                                  "h3": True}]
                    dt, dp, dl, *cts = run_children(
                        [{"kind": "duck", "format": fmt, "mode": "table", "paths": [str(path)]},
                         {"kind": "duck", "format": fmt, "mode": "parquet", "paths": [str(path)]},
                         {"kind": "duck", "format": fmt, "mode": "parquet_l1", "paths": [str(path)]}]
                        + [{"kind": "citytwin", "paths": [str(path)], "dataset": "poi", "schema": "poi", "h3": h3}
                           for h3 in h3s] + extra, tmp)
                    bp, bt = _rate(n, dp["seconds"]), _rate(n, dt["seconds"])
                    reader = "read_parquet" if fmt == "parquet" else "read_csv"
                    print(fmt_row(f"duckdb {reader} -> parquet", dp, n, bp, bt))
                    print(fmt_row(f"duckdb {reader} -> table", dt, n, bp, bt))
                    print(fmt_row("duckdb -> parquet, zstd level 1", dl, n, bp, bt))
                    part: dict[str, Any] = {"duck_table": dt, "duck_parquet": dp, "duck_parquet_l1": dl}
                    for h3, ct in zip(h3s, cts[:len(h3s)], strict=True):
                        assert ct["rows_read"] == n, (ct["rows_read"], n)
                        key = "citytwin_h3" if h3 else "citytwin_no_h3"
                        print(fmt_row(f"citytwin ingest {fmt} h3={h3}", ct, n, bp, bt))
                        print(f"      ratio vs DuckDB with citytwin's writer settings (zstd level 1): "
                              f"{_rate(n, ct['seconds']) / _rate(n, dl['seconds']):.2f}")
                        print_stages(ct)
                        ct["ratio_vs_parquet"] = _rate(n, ct["seconds"]) / bp
                        ct["ratio_vs_table"] = _rate(n, ct["seconds"]) / bt
                        ct["ratio_vs_parquet_l1"] = _rate(n, ct["seconds"]) / _rate(n, dl["seconds"])
                        part[key] = ct
                    if unordered is not None:
                        cu = cts[-1]
                        print(fmt_row("citytwin csv h3=True, ids unordered", cu, n, bp, bt))
                        print_stages(cu)
                        cu["ratio_vs_parquet"] = _rate(n, cu["seconds"]) / bp
                        part["citytwin_h3_unordered"] = cu
                        unordered.unlink()
                    entry[fmt] = part
                if a.dirty:
                    bad = tmp / f"poi_{n}_dirty.csv"
                    with csv.open("rb") as src_fh, bad.open("wb") as dst:
                        for i, line in enumerate(src_fh):
                            if i == n // 2 + 1:  # data row n/2 + 1 (1-based): lon is not a number
                                parts = line.split(b",")
                                parts[3] = b"east"
                                line = b",".join(parts)
                            dst.write(line)
                    dirty: dict[str, Any] = {}
                    for stream in (True, False):
                        ct = run_child({"kind": "citytwin", "paths": [str(bad)], "dataset": "poi", "schema": "poi",
                                        "h3": False, "stream": stream}, tmp)
                        assert ct["rows_quarantined"] == 1, ct
                        print(fmt_row(f"citytwin dirty csv stream={stream}", ct, n, entry["csv"]["duck_parquet"]
                                      and _rate(n, entry["csv"]["duck_parquet"]["seconds"]), None))
                        print_stages(ct)
                        dirty[f"stream_{stream}"] = ct
                    entry["dirty_csv"] = dirty
                    bad.unlink()
                results["poi"].append(entry)
                csv.unlink()
                pq.unlink()
                results["machine"]["loadavg_end"] = list(os.getloadavg())
                a.out.parent.mkdir(parents=True, exist_ok=True)
                a.out.write_text(json.dumps(results, indent=1))
            summary(results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1))
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in results['machine']['loadavg_end'])}")
    print(f"wrote {a.out}")
    return 0


def summary(results: dict[str, Any]) -> None:
    """Peak RSS and ratio per size: is memory flat as the file grows?"""
    print("\nsummary: POI rows -> ratio vs DuckDB COPY-to-parquet / peak RSS MiB "
          f"(idle child {results.get('idle_peak_rss_mib', 0):.0f} MiB)")
    print(f"  {'rows':>11} {'ct csv no-h3':>18} {'ct csv h3':>18} {'ct parquet h3':>18} "
          f"{'duck csv->pq':>13} {'duck csv->tbl':>13}")
    for e in results["poi"]:
        def cell(fmt: str, key: str, e: dict[str, Any] = e) -> str:
            r = e.get(fmt, {}).get(key)
            return f"{r['ratio_vs_parquet']:5.2f} / {r['peak_rss_mib']:6.0f}" if r else "-"
        c = e["csv"]
        print(f"  {e['rows']:>11,} {cell('csv', 'citytwin_no_h3'):>18} {cell('csv', 'citytwin_h3'):>18} "
              f"{cell('parquet', 'citytwin_h3'):>18} {c['duck_parquet']['peak_rss_mib']:13.0f} "
              f"{c['duck_table']['peak_rss_mib']:13.0f}")


if __name__ == "__main__":
    raise SystemExit(main())
