"""``citytwin serve``: the operations center (HTTP API + web app) of a workspace, in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from citytwin.cli.common import console, err_console, handle_errors

app = typer.Typer()

DEFAULT_DEMO = Path("citytwin-demo")


@app.command()
@handle_errors
def serve(
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w", envvar="CITYTWIN_WORKSPACE",
                                                   help="Workspace folder (or $CITYTWIN_WORKSPACE).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    broker: Annotated[str | None, typer.Option("--broker", help="MQTT broker HOST:PORT to ingest from.")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Build the demo workspace first if it is missing "
                                                      "(default folder ./citytwin-demo) and print an admin token.")]
    = False,
) -> None:
    """Serve the operations center: the HTTP API (datasets, tiles, jobs, live twin) and the web app.

    Every API route but /health and /auth/login needs 'Authorization: Bearer TOKEN' (`citytwin user
    token NAME`); every request is audited. Open the printed address in a browser.

    Example: citytwin serve --demo
    """
    from citytwin.foundation.errors import InputError
    from citytwin.foundation.mqtt import parse_broker
    from citytwin.foundation.workspace import MARKER, Workspace
    from citytwin.service.app import serve as serve_app
    from citytwin.service.server import create_server_app

    if not 0 < port < 65536:
        raise InputError(f"port {port} is not in 1..65535", field="--port")
    root = workspace or (DEFAULT_DEMO if demo else None)
    if root is None:
        raise InputError("no workspace given", field="--workspace",
                         hint="pass -w DIR, set CITYTWIN_WORKSPACE, or use --demo")
    token = None
    if demo:
        if not (root / MARKER).exists():
            from citytwin.workflows.demo import build_demo

            err_console.print(f"building the demo workspace in {root} (once) ...", highlight=False)
            build_demo(root, fresh=False, step=lambda msg: err_console.print(f"  {msg}", highlight=False))
        ws = Workspace.open(root, user="admin")
        _, token = ws.catalog.issue_token("admin", "citytwin serve --demo")
        ws.catalog.audit(user="admin", role="admin", action="token.issue", detail="admin: citytwin serve --demo")
    else:
        from citytwin.service.app import _open_workspace

        ws = _open_workspace(root)
    app_ = create_server_app(ws, broker=parse_broker(broker) if broker else None)
    url = f"http://{host}:{port}/"
    console.print(f"citytwin operations center: {url}  (API: {url}docs)", highlight=False, soft_wrap=True)
    if token:
        console.print(f"sign in as admin with token {token}", highlight=False, soft_wrap=True)
    serve_app(app_, host, port)  # no access log: requests are in the audit log
