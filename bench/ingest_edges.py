"""Ingest at the edges (issue 12): time and peak memory of files whose shape, not size, is the problem.

* a wide CSV: ROWS rows × COLS numeric columns (default 156 × 5,000; a real panel had 156 × 2,976),
  ingested with schema ``table`` (every column's type inferred);
* a workbook whose used range reaches the last row (1,048,576): a small table and one formatted cell
  at the bottom (before the fix: 218 s and 5.7 GB for 2 rows).

Each case runs in a fresh process; peak RSS is that process's ``ru_maxrss``; CPU seconds are the
process's user + system time (imports included), which a busy shared machine distorts less than
wall seconds.

    .venv/bin/python bench/ingest_edges.py [--cols 5000] [--rows 156]
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


def _one(kind: str, path: str) -> None:
    """Child process: ingest one file, print seconds, peak RSS and the counts as JSON."""
    from citytwin.foundation.ingest import ingest
    from citytwin.foundation.workspace import Workspace

    with tempfile.TemporaryDirectory() as d:
        ws = Workspace.init(Path(d) / "ws", owner="admin")
        t0 = time.perf_counter()
        r = ingest(ws, [Path(path)], dataset="edge", schema="city_panel" if kind == "xlsx" else "table", h3=False)
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
        for kind, path, what in (("csv", csv, f"wide CSV {a.rows} x {a.cols}"),
                                 ("xlsx", xlsx, "workbook, used range to row 1,048,576")):
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(path)], capture_output=True,
                                 text=True, check=False)
            if out.returncode:
                print(f"{what}: FAILED\n{out.stderr.strip()[-3000:]}")
                continue
            print(f"{what}: {out.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
