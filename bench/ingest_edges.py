"""Ingest at the edges (issue 12): time and peak memory of files whose shape, not size, is the problem.

* a wide CSV: ROWS rows × COLS numeric columns (default 156 × 5,000; a real panel had 156 × 2,976),
  ingested with schema ``table`` (every column's type inferred);
* a workbook whose used range reaches the last row (1,048,576): a small table and one formatted cell
  at the bottom (before the fix: 218 s and 5.7 GB for 2 rows);
* wide files with space (``--space-cols``, default 2,000 columns × ROWS rows): POIs with lon/lat
  columns (schema ``poi``, points and H3 cells) and parcels with a WKT polygon column (schema
  ``table``), in column blocks whose first block carries the coordinates or geometry; with
  ``--one-query`` also as one query over all columns (blocks off: the way they ran before), the
  peer measured in the same run.

Each case runs in a fresh process; peak RSS is that process's ``ru_maxrss``; CPU seconds are the
process's user + system time (imports included), which a busy shared machine distorts less than
wall seconds.

    .venv/bin/python bench/ingest_edges.py [--cols 5000] [--rows 156] [--space-cols 2000] [--one-query]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _wide_csv(path: Path, rows: int, cols: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(",".join(f"indicator_{j}" for j in range(cols)) + "\n")
        for i in range(rows):
            fh.write(",".join(f"{(i * 7 + j) % 1000 / 8:g}" for j in range(cols)) + "\n")


def _tall_workbook(path: Path) -> None:
    import openpyxl
    from openpyxl.styles import Font

    wb = openpyxl.Workbook()
    sh = wb.active
    assert sh is not None
    sh.append(["城市", "年份", "地区生产总值_亿元"])
    sh.append(["北京市", 2020, 36102.6])
    sh.append(["上海市", 2020, 38700.6])
    sh.cell(1_048_576, 1).font = Font(bold=True)  # the used range now reaches the last row
    wb.save(path)


def _space_csv(path: Path, rows: int, cols: int, kind: str) -> None:
    """POIs (``kind`` "points": lon/lat last) or parcels ("wkt": a WKT polygon last) with ``cols`` numeric columns."""
    with path.open("w", encoding="utf-8") as fh:
        last = "lon,lat" if kind == "points" else "wkt"
        fh.write("poi_id," + ",".join(f"indicator_{j}" for j in range(cols)) + f",{last}\n")
        for i in range(rows):
            x, y = 116.3 + i * 0.001, 39.85 + i * 0.001
            geo = (f"{x:.6f},{y:.6f}" if kind == "points" else
                   f'"POLYGON (({x} {y}, {x + 0.0005} {y}, {x + 0.0005} {y + 0.0004}, {x} {y}))"')
            fh.write(f"{i}," + ",".join(f"{(i * 7 + j) % 1000 / 8:g}" for j in range(cols)) + f",{geo}\n")


def _one(kind: str, path: str) -> None:
    """Child process: ingest one file, print seconds, peak RSS and the counts as JSON."""
    from citytwin.foundation.ingest import blocks, ingest
    from citytwin.foundation.workspace import Workspace

    if kind.endswith("-one"):  # one query over all columns: blocks off
        blocks.COLUMN_BLOCK = 10**9
        kind = kind[:-4]
    schema = {"xlsx": "city_panel", "points": "poi"}.get(kind, "table")
    with tempfile.TemporaryDirectory() as d:
        ws = Workspace.init(Path(d) / "ws", owner="admin")
        t0 = time.perf_counter()
        r = ingest(ws, [Path(path)], dataset="edge", schema=schema, h3=kind in ("points", "wkt"))
        secs = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rss = ru.ru_maxrss / 1024
    cpu = ru.ru_utime + ru.ru_stime  # on a busy shared machine CPU seconds say more than wall seconds
    print(json.dumps({"seconds": round(secs, 2), "cpu_seconds": round(cpu, 1), "peak_rss_mib": round(rss),
                      "rows_kept": r.rows_kept,
                      "columns": len(r.columns), "pipeline": r.notes[-1][:60] if r.notes else ""}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cols", type=int, default=5000)
    ap.add_argument("--rows", type=int, default=156)
    ap.add_argument("--space-cols", type=int, default=2000)
    ap.add_argument("--one-query", action="store_true", help="also run the space files as one query (blocks off)")
    ap.add_argument("--only-space", action="store_true", help="run the space files only")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _one(*a.child)
        return
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at start, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as d:
        csv = Path(d) / "wide.csv"
        _wide_csv(csv, a.rows, a.cols)
        xlsx = Path(d) / "tall.xlsx"
        _tall_workbook(xlsx)
        runs = [] if a.only_space else [("csv", csv, f"wide CSV {a.rows} x {a.cols}"),
                                        ("xlsx", xlsx, "workbook, used range to row 1,048,576")]
        for kind in ("points", "wkt"):
            f = Path(d) / f"{kind}.csv"
            _space_csv(f, a.rows, a.space_cols, kind)
            what = f"{'POIs with lon/lat' if kind == 'points' else 'parcels with WKT'} {a.rows} x {a.space_cols}"
            runs.append((kind, f, what + ", blocks"))
            if a.one_query:
                runs.append((kind + "-one", f, what + ", one query"))
        for kind, path, what in runs:
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(path)], capture_output=True,
                                 text=True, check=False)
            if out.returncode:
                print(f"{what}: FAILED\n{out.stderr.strip()[-3000:]}")
                continue
            print(f"{what}: {out.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
