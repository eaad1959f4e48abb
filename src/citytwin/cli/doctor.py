"""``citytwin doctor``: check a deployment's pieces (workspace, records database and its replicas, PostGIS,
MQTT broker, Chromium, disk) and say what is wrong; exit 1 if a check fails (:mod:`citytwin.workflows.doctor`)."""

from __future__ import annotations

from typing import Annotated

import typer

from citytwin.cli.common import JsonOpt, WorkspaceOpt, console, handle_errors, print_json

app = typer.Typer()

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


@app.command()
@handle_errors
def doctor(
    workspace: WorkspaceOpt = None,
    database: Annotated[str | None, typer.Option(
        "--database", help="Records database URL (postgresql://… or a SQLite path; else $CITYTWIN_DATABASE, "
                           "else the workspace's setting).")] = None,
    broker: Annotated[str | None, typer.Option(
        "--broker", help="MQTT broker: mqtt://[USER[:PASSWORD]@]HOST:PORT, mqtts://… or HOST:PORT "
                         "(else $CITYTWIN_MQTT_BROKER).")] = None,
    replica: Annotated[list[str] | None, typer.Option(
        "--replica", help="A hot standby of the records database (postgresql://…): streaming? how far behind? "
                          "(may be given several times).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Check a deployment: workspace folder, records database (reachable, migrated), PostGIS, MQTT
    broker, Chromium for PDF reports, disk space; with --replica, each hot standby's replication. Each check says ok, warn or fail and what to do;
    exits 1 if any fails.

    Example: citytwin doctor -w /srv/citytwin --broker mqtt://127.0.0.1:1883
    """
    from citytwin.workflows.doctor import run_checks

    checks = run_checks(workspace, database=database, broker=broker, timeout=timeout, replicas=replica or ())
    failed = any(c.status == "fail" for c in checks)
    if as_json:
        print_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    else:
        for c in checks:
            console.print(f"[{_STYLE[c.status]}]{c.status:>4}[/] {c.name:<10} {c.detail}", highlight=False,
                          soft_wrap=True)
            if c.fix:
                console.print(f"{'':16}-> {c.fix}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
