"""Comparison of two simulation runs (F5): differences with confidence intervals over paired seeds, change
per edge, and an HTML report with maps (:func:`compare`). Run folders are written by
:func:`citytwin.workflows.simulation.run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.simulation import results
from citytwin.workflows.simulation import _read_json, _staging, _write_json


def compare(base_run: Path, variant_run: Path, out: Path, *, level: float = 0.95) -> dict[str, Any]:
    """Differences variant - base of two run folders (paired by seed) with ``level`` intervals ->
    ``out/differences.csv``, ``out/edges.csv`` (change per edge), ``out/compare.json`` and
    ``out/report.html`` (table and maps of edges by change in speed and in CO2)."""
    frames = []
    for p in (base_run, variant_run):
        if not (Path(p) / "runs.csv").is_file():
            raise InputError("not a run folder (no runs.csv)", file=str(p), hint="give folders written by "
                             "`citytwin sim run` or `citytwin sim signals`")
        frames.append(pd.read_csv(Path(p) / "runs.csv"))
    diffs = results.compare_runs(frames[0], frames[1], level=level)
    table = results.differences_frame(diffs)
    eb, ev = (pd.read_csv(Path(p) / "edges.csv") for p in (base_run, variant_run))
    edges = eb.merge(ev, on="edge", how="outer", suffixes=("_base", "_variant"))
    edges["speed_change"] = edges["speed_variant"] - edges["speed_base"]
    edges["co2_change_kg"] = edges["co2_kg_variant"].fillna(0) - edges["co2_kg_base"].fillna(0)
    edges["entered_change"] = edges["entered_variant"].fillna(0) - edges["entered_base"].fillna(0)
    sb = _read_json(Path(base_run) / "summary.json", "summary.json")
    sv = _read_json(Path(variant_run) / "summary.json", "summary.json")
    with _staging(out) as tmp:
        table.to_csv(tmp / "differences.csv", index=False)
        edges.to_csv(tmp / "edges.csv", index=False)
        summary = {"base": str(base_run), "variant": str(variant_run), "level": level,
                   "differences": table.to_dict(orient="records")}
        _write_json(tmp / "compare.json", summary)
        (tmp / "report.html").write_text(_report_html(table, edges, [sb.get("net"), sv.get("net")], level),
                                         encoding="utf-8")
    return summary


def _edge_map(edges: pd.DataFrame, nets: Sequence[str | None], col: str, title: str) -> str:
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import sumolib
    from matplotlib.collections import LineCollection

    shapes: dict[str, list[tuple[float, float]]] = {}
    for n in nets:
        if n and Path(n).is_file():
            for e in sumolib.net.readNet(n).getEdges():
                shapes.setdefault(e.getID(), e.getShape())
    vals = edges.set_index("edge")[col]
    segs = [shapes[e] for e in vals.index if e in shapes]
    colours = np.array([vals[e] for e in vals.index if e in shapes], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 5))
    lim = float(np.nanmax(np.abs(colours))) if len(colours) and np.isfinite(colours).any() else 1.0
    lc = LineCollection(segs, cmap="coolwarm", linewidths=2)
    lc.set_array(np.nan_to_num(colours))
    lc.set_clim(-lim or -1, lim or 1)
    ax.add_collection(lc)
    ax.autoscale()
    ax.set_aspect("equal")
    ax.set_title(title)
    fig.colorbar(lc, ax=ax)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f'<img alt="{title}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def _report_html(table: pd.DataFrame, edges: pd.DataFrame, nets: Sequence[str | None], level: float) -> str:
    from html import escape

    rows = "".join(
        f"<tr><td>{escape(str(r.metric))}</td><td>{r.base:.4g}</td><td>{r.variant:.4g}</td><td>{r.diff:+.4g}</td>"
        f"<td>[{r.ci_low:.4g}, {r.ci_high:.4g}]</td><td>{r.n_seeds}</td></tr>" for r in table.itertuples())
    maps = (_edge_map(edges, nets, "speed_change", "change in mean speed (m/s)")
            + _edge_map(edges, nets, "co2_change_kg", "change in CO2 (kg)"))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>citytwin scenario comparison</title></head>"
            f"<body><h1>Scenario comparison</h1><p>variant - base, {int(level * 100)} % intervals over paired "
            f"seeds</p><table border='1'><tr><th>metric</th><th>base</th><th>variant</th><th>difference</th>"
            f"<th>interval</th><th>seeds</th></tr>{rows}</table><h2>Maps</h2>{maps}</body></html>\n")

