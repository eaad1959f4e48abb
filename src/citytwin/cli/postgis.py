"""``citytwin records publish-postgis``: publish spatial datasets' current versions as PostGIS tables
(:mod:`citytwin.foundation.postgis`), for the operations center's features and tiles."""

from __future__ import annotations

from typing import Annotated

import typer

from citytwin.cli.common import (
    JsonOpt,
    UserOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    open_workspace,
    print_json,
)

app = typer.Typer()


@app.command("publish-postgis")
@handle_errors
def publish_postgis(
    datasets: Annotated[list[str] | None, typer.Argument(help="Datasets to publish (default: every spatial one).")
                        ] = None,
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Publish the current version of spatial datasets into PostGIS (records on PostgreSQL; admins
    and stewards). A version already published is left as it is.

    Example: CITYTWIN_DATABASE=postgresql://citytwin@127.0.0.1/citytwin citytwin records publish-postgis helsinki_pois -w ./ws
    """
    from citytwin.foundation.postgis import SCHEMA, publish_datasets

    ws = open_workspace(workspace, user)
    done = publish_datasets(ws, datasets or [])
    rows = [{"dataset": p.dataset, "version": p.version, "table": f"{SCHEMA}.{p.table}", "rows": p.rows} for p in done]
    if as_json:
        print_json({"published": rows})
        return
    for r in rows:
        console.print(f"{r['dataset']} v{r['version']} -> {r['table']} ({r['rows']:,} rows)", highlight=False)
    if not rows:
        console.print("no spatial dataset to publish")
