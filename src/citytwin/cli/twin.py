"""`citytwin twin ...` commands: replay, ingest, serve, history, aqi, alerts, forecast, deadletters.

Thin layer: parse options, call :mod:`citytwin.workflows.twin` (observation files, replay, daily
AQI, alerts, forecasts) and :func:`citytwin.workflows.runtime.open_runtime` (the twin's stores,
ingest, MQTT and alert hub in ``WORKSPACE/twin``), print.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from citytwin.cli import devices
from citytwin.cli.common import (
    JsonOpt,
    UserOpt,
    WorkspaceOpt,
    console,
    err_console,
    handle_errors,
    open_workspace,
    print_json,
)
from citytwin.cli.devices import MqttPasswordOpt, MqttUsernameOpt, TlsCaOpt, TlsCertOpt, TlsKeyOpt, mqtt_auth
from citytwin.foundation.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(help="Live digital twin: replay and ingest sensor feeds (MQTT/HTTP), history, AQI, alerts.",
                  no_args_is_help=True)
app.add_typer(devices.app, name="devices")

BrokerOpt = Annotated[str | None, typer.Option("--broker", help="MQTT broker HOST:PORT (none: in-process).")]
StartOpt = Annotated[str | None, typer.Option("--start", help="Start time (ISO 8601; no zone = UTC).")]
EndOpt = Annotated[str | None, typer.Option("--end", help="End time, exclusive.")]
AutoAlertsOpt = Annotated[bool, typer.Option("--auto-alerts/--no-auto-alerts", help="Evaluate the default alert "
                                             "rules (hourly AQI > 200 for 2 h, > 300) after each ingest batch; "
                                             "alerts go to the workspace's alert hub (and MQTT).")]


def _arrow_on_malloc() -> None:
    """Arrow allocates from the C library's malloc in a long-lived ingest process (issue 13: RSS flat).

    Why here: ``ARROW_DEFAULT_MEMORY_POOL`` is read once, when pyarrow is first imported, and only then does it
    also cover the allocations Arrow's C++ makes from its own default pool (Parquet pages, decompression);
    :func:`citytwin.workflows.runtime.use_system_memory_pool`, which ``start_mqtt`` calls, switches only the
    pool the Python API uses. The mimalloc pool kept freed buffers that its ``release_unused`` did not return;
    glibc's are returned by ``malloc_trim`` once a minute (``release_free_memory``). A value the operator set
    is kept (the runtime's switch then respects it too)."""
    import os
    import sys

    if "pyarrow" not in sys.modules:
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


@app.command()
@handle_errors
def replay(
    file: Annotated[Path, typer.Argument(help="Observation file or folder (UCI Beijing CSVs or a long table).")],
    workspace: WorkspaceOpt = None,
    broker: BrokerOpt = None,
    speed: Annotated[float, typer.Option("--speed", help="N× real time; 0 = as fast as possible.")] = 0.0,
    start: StartOpt = None,
    end: EndOpt = None,
    station: Annotated[list[str] | None, typer.Option("--station", help="Beijing station(s) only.")] = None,
    per_message: Annotated[int | None, typer.Option("--per-message", min=1, help="Entity rows per MQTT message "
                                                    "(updates: >1 sends a JSON array on citytwin/batch; default "
                                                    "1; columnar: default one message per time step, at most "
                                                    "1,000 rows).")] = None,
    payload: Annotated[str, typer.Option("--payload", help="updates: NGSI-LD entity updates, as any device "
                                         "sends them; columnar: the columnar batch payload of a gateway (one "
                                         "object of columns per message: cheaper to send and to ingest; the rows "
                                         "of a message must share their properties).")] = "updates",
    ingest: Annotated[bool | None, typer.Option("--ingest/--no-ingest", help="Also run MQTT ingest into the "
                                                "workspace in this process (default: only without --broker).")]
    = None,
    client_id: Annotated[str, typer.Option(help="MQTT client id of the publisher.")] = "citytwin-replay",
    auto_alerts: AutoAlertsOpt = True,
    username: MqttUsernameOpt = None,
    password: MqttPasswordOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    """Feed observations as a live feed: through an MQTT broker, or in-process into the workspace.

    Example: citytwin twin replay ../shared/data/air_beijing_multisite -w ./ws --start 2015-12-01
    --end 2016-01-01 --broker 127.0.0.1:1883 --speed 3600 --ingest [--payload columnar]
    """
    from citytwin.foundation.mqtt import parse_broker
    from citytwin.workflows.runtime import open_runtime
    from citytwin.workflows.twin import (
        publish_replay,
        read_observations,
        replay_in_process,
        replay_messages,
        twin_root,
        wait_ingested,
    )

    long, ents = read_observations(file, start=start, end=end, stations=station)
    if long.empty:
        raise InputError("no observations in the chosen period", hint="check --start/--end")
    rt = open_runtime(twin_root(workspace)) if workspace else None
    try:  # closed on an error too: a CLI test runs in process, and MQTT ingest may be running
        if rt is not None:
            rt.register(ents)
            if auto_alerts and (broker is None or ingest):  # only where this process ingests (one process per twin
                rt.enable_auto_alerts()                      # changes its alerts: a publisher needs no lock)
        msgs, offsets = replay_messages(long, per_message=per_message, speed=speed, payload=payload)
        t0 = time.perf_counter()
        if broker is None:
            if rt is None:
                raise InputError("in-process replay needs a workspace", hint="pass -w DIR, or --broker HOST:PORT")
            done = replay_in_process(rt, msgs, offsets)
            dt = time.perf_counter() - t0
            console.print(f"replayed {len(msgs):,} messages in-process: {done.accepted:,} observations stored, "
                          f"{done.rejected:,} rejected, {dt:.1f} s ({done.accepted / max(dt, 1e-9):,.0f} obs/s)")
            return
        host, port = parse_broker(broker)
        auth = mqtt_auth(username, password, tls_ca, tls_cert, tls_key)
        run_ingest = ingest if ingest is not None else False
        if run_ingest:
            if rt is None:
                raise InputError("--ingest needs a workspace", hint="pass -w DIR")
            rt.start_mqtt(host, port, client_id=f"{client_id}-ingest", auth=auth)
        n, ok = publish_replay(msgs, offsets, host, port, client_id=client_id, auth=auth)
        dt = time.perf_counter() - t0
        console.print(f"published {n:,} messages ({len(long):,} readings) to {host}:{port} in {dt:.1f} s; "
                      f"all acknowledged by the broker: {ok}")
        if rt is not None and run_ingest:
            accepted, rejected = wait_ingested(rt, len(long))
            console.print(f"ingested {accepted:,} observations, {rejected:,} rejected")
    finally:
        if rt is not None:
            rt.close()


@app.command("ingest")
@handle_errors
def ingest_cmd(
    workspace: WorkspaceOpt = None,
    broker: Annotated[str, typer.Option("--broker", help="MQTT broker HOST:PORT.")] = "127.0.0.1:1883",
    client_id: Annotated[str, typer.Option(help="Persistent-session client id.")] = "citytwin-ingest",
    prefix: Annotated[str, typer.Option(help="Topic prefix.")] = "citytwin",
    max_batch: Annotated[int, typer.Option(help="Messages per durable batch.")] = 2000,
    max_delay: Annotated[float, typer.Option(help="Seconds before a partial batch is flushed.")] = 0.1,
    status_file: Annotated[Path | None, typer.Option(help="Write counters here 5 times a second (JSON).")] = None,
    crash_after_batches: Annotated[int, typer.Option(hidden=True, help="Fault testing: SIGKILL this process "
                                                     "after storing this many batches, before acknowledging.")] = 0,
    auto_alerts: AutoAlertsOpt = True,
    username: MqttUsernameOpt = None,
    password: MqttPasswordOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    """Run MQTT ingest into the workspace's twin (QoS 1, persistent session, ack after durable write).

    Stops on SIGTERM / Ctrl-C. Example: citytwin twin ingest -w ./ws --broker 127.0.0.1:1883
    """
    _arrow_on_malloc()
    import json

    from citytwin.foundation.mqtt import parse_broker
    from citytwin.workflows.runtime import open_runtime
    from citytwin.workflows.twin import twin_root

    host, port = parse_broker(broker)
    rt = open_runtime(twin_root(workspace), prefix=prefix)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:  # closed when the start fails too (a CLI test runs in process)
        if auto_alerts:  # (refused where another process keeps the twin's alerts: writerlock)
            rt.enable_auto_alerts()
        m = rt.start_mqtt(host, port, client_id=client_id, prefix=prefix, max_batch=max_batch, max_delay=max_delay,
                          auth=mqtt_auth(username, password, tls_ca, tls_cert, tls_key))
        if crash_after_batches > 0:
            import os

            store = m.handler
            done = [0]

            def crashing(batch: Any) -> Any:
                out = store(batch)
                done[0] += 1
                if done[0] >= crash_after_batches:  # stored durably, not yet acknowledged
                    os.kill(os.getpid(), signal.SIGKILL)
                return out

            m.handler = crashing
        err_console.print(f"ingesting from {host}:{port} ({prefix}/#) as {client_id}")
        while not stop.wait(0.2):
            if status_file is not None:
                t = rt.ingestor.totals
                status_file.write_text(json.dumps({"received": m.stats.received, "acked": m.stats.acked,
                                                   "accepted": t.accepted, "rejected": t.rejected}))
    finally:
        rt.close()


@app.command("classify")
@handle_errors
def classify(
    classification: Annotated[str, typer.Argument(help="public | internal | sensitive")],
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
) -> None:
    """Set the live twin's data classification (admins), which the HTTP API enforces on reads.

    Example: citytwin twin classify public -w ./ws   (then every role, `public` included, may read it)
    """
    from citytwin.foundation.catalog import check_classification
    from citytwin.service.auth import SETTING

    ws = open_workspace(workspace, user)
    ws.set_setting(SETTING, check_classification(classification))
    console.print(f"twin: {classification} (applies when `citytwin twin serve` next starts)")


@app.command()
@handle_errors
def serve(
    workspace: WorkspaceOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    broker: BrokerOpt = None,
    client_id: Annotated[str, typer.Option(help="MQTT client id.")] = "citytwin-ingest",
    auto_verify: Annotated[bool, typer.Option("--auto-verify/--no-auto-verify", help="Score stored forecasts "
                                              "as soon as an ingest batch brings their actual.")] = True,
    auto_alerts: AutoAlertsOpt = True,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve WITHOUT authentication (anyone who can "
                                          "reach the port may read and write the twin): a local demo only.")]
    = False,
    username: MqttUsernameOpt = None,
    password: MqttPasswordOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    alerts_username: Annotated[str | None, typer.Option(envvar="CITYTWIN_MQTT_ALERTS_USERNAME", help="MQTT "
                                                        "account of the alert publisher (default: --username).")]
    = None,
    alerts_password: Annotated[str | None, typer.Option(envvar="CITYTWIN_MQTT_ALERTS_PASSWORD", show_default=False,
                                                        help="Its password.")] = None,
) -> None:
    """Serve the NGSI-LD-style API (and MQTT ingest with --broker; alerts are then published to it too).

    Every endpoint but /health needs 'Authorization: Bearer TOKEN' (issue one with `citytwin user token
    NAME`); reads need a role cleared for the twin's classification, writes an integrator, steward or
    admin; every request is audited (`citytwin audit --dataset twin`).

    Example: citytwin twin serve -w ./ws --port 8000 --broker 127.0.0.1:1883
    """
    _arrow_on_malloc()
    from citytwin.foundation.mqtt import parse_broker
    from citytwin.service.app import create_app
    from citytwin.service.app import serve as serve_app
    from citytwin.service.auth import twin_classification

    ws = open_workspace(workspace)
    if no_auth:
        err_console.print(f"[bold red]WARNING: authentication is OFF.[/] Anyone who can reach http://{host}:{port} "
                          "can read and write this twin (requests are still audited, as an anonymous caller). "
                          "Use --no-auth only for a local demo.", highlight=False)
    else:
        live = [t for t in ws.catalog.tokens() if not t["revoked"]]
        err_console.print(f"auth on: twin classification {twin_classification(ws.settings)}, "
                          f"{len(live)} active API token(s)"
                          + ("" if live else " - issue one with `citytwin user token NAME`"), highlight=False)
    app_ = create_app(ws.root / "twin", broker=parse_broker(broker) if broker else None, client_id=client_id,
                      auto_verify=auto_verify, auto_alerts=auto_alerts, workspace=ws, auth=not no_auth,
                      mqtt_auth=mqtt_auth(username, password, tls_ca, tls_cert, tls_key),
                      mqtt_alerts_auth=None if alerts_username is None else mqtt_auth(
                          alerts_username, alerts_password, tls_ca, tls_cert, tls_key))
    serve_app(app_, host, port)


@app.command()
@handle_errors
def history(
    workspace: WorkspaceOpt = None,
    entity: Annotated[list[str] | None, typer.Option("--entity", "-e", help="Entity id(s).")] = None,
    prop: Annotated[list[str] | None, typer.Option("--property", "-p", help="Property(ies).")] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    interval: Annotated[str | None, typer.Option(help="Aggregate per interval ('1 hour', 'PT15M').")] = None,
    max_points: Annotated[int | None, typer.Option(help="Downsample to about this many points.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Query the history: raw observations, per-interval aggregates, or a downsampled series."""
    from citytwin.workflows.runtime import open_runtime
    from citytwin.workflows.twin import twin_root

    rt = open_runtime(twin_root(workspace))
    try:
        h = rt.stores.history
        filt: dict[str, Any] = {"entities": entity or None, "properties": prop or None, "start": start, "end": end}
        if max_points:
            df = h.downsample(max_points=max_points, **filt)
        elif interval:
            df = h.aggregate(interval, **filt)
        else:
            df = h.query(**filt)
    finally:
        rt.close()
    _print_frame(df, as_json)


def _print_frame(df: pd.DataFrame, as_json: bool, limit: int = 50) -> None:
    import pandas as pd

    if as_json:
        out = df.copy()
        for c in out.columns:
            if pd.api.types.is_datetime64_any_dtype(out[c]):
                out[c] = out[c].astype(str)
        print_json(out.astype(object).where(out.notna(), None).to_dict(orient="records"))
        return
    from rich.table import Table

    t = Table(show_lines=False)
    for c in df.columns:
        t.add_column(str(c))
    for row in df.head(limit).itertuples(index=False):
        t.add_row(*["" if pd.isna(v) else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row])
    console.print(t)
    if len(df) > limit:
        console.print(f"... {len(df) - limit:,} more rows ({len(df):,} in all; --json prints all)")


#: the zone naive times of observation files are read in, and of the AQI's days (``--tz``)
DEFAULT_TZ = "Asia/Shanghai"
TzOpt = Annotated[str, typer.Option("--tz", help="Time zone of the days, and of naive times in --file "
                                                 "(IANA name).")]
FileOpt = Annotated[Path | None, typer.Option("--file", help="Read observations from this file/folder instead "
                                                             "of the workspace history.")]


@app.command("aqi")
@handle_errors
def aqi_cmd(
    workspace: WorkspaceOpt = None,
    file: FileOpt = None,
    entity: Annotated[list[str] | None, typer.Option("--entity", "-e")] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    as_json: JsonOpt = False,
    tz: TzOpt = DEFAULT_TZ,
) -> None:
    """Daily AQI (HJ 633-2012) per entity and local day from the history (or a file).

    Days are calendar days in --tz (default Asia/Shanghai), stated in each row's ``tz``; naive times
    in --file are local times in that zone.

    Example: citytwin twin aqi -w ./ws --start 2015-12-01 --end 2016-01-01
    """
    from citytwin.workflows.twin import daily_aqi

    d = daily_aqi(workspace, file, entity, start, end, tz).assign(tz=tz)
    cols = [c for c in ("entity", "date", "tz", "aqi", "category_zh", "category_en", "primary", "status") if c in d]
    _print_frame(d[cols], as_json)


@app.command()
@handle_errors
def alerts(
    workspace: WorkspaceOpt = None,
    file: FileOpt = None,
    entity: Annotated[list[str] | None, typer.Option("--entity", "-e")] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    min_level: Annotated[int, typer.Option(help="With --file: AQI level that raises an alert (5 = 重度污染).")] = 5,
    status: Annotated[list[str] | None, typer.Option("--status", help="Without --file: only alerts in this "
                                                     "state (open, acknowledged, resolved).")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Without --file: only this rule.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The twin's alerts (persistent hub, raised by the rules on ingest and over HTTP), with their lifecycle.

    Without --file: the workspace's alert hub (WORKSPACE/twin/alerts.sqlite), filtered by --entity,
    --status, --rule and the period (alerts whose episode overlaps [--start, --end)). With --file:
    heavy-pollution days (daily AQI level >= --min-level) of that file as a throwaway alert book.
    """
    from citytwin.twin.alerts import AlertBook
    from citytwin.workflows.twin import aqi_alerts, daily_aqi, hub_alerts

    if file is not None:
        book = aqi_alerts(daily_aqi(workspace, file, entity, start, end), AlertBook(), min_level=min_level)
        df = book.frame()
    else:
        df = hub_alerts(workspace, entity, status, rule, start, end)
    cols = [c for c in ("entity", "rule", "status", "severity", "opened_at", "resolved_at", "start", "end", "count",
                        "peak", "message") if c in df]
    _print_frame(df[cols], as_json)


@app.command()
@handle_errors
def forecast(
    workspace: WorkspaceOpt = None,
    file: FileOpt = None,
    entity: Annotated[str, typer.Option("--entity", "-e", help="Entity id.")] = "",
    prop: Annotated[str, typer.Option("--property", "-p", help="Property to forecast.")] = "pm25",
    start: StartOpt = None,
    end: EndOpt = None,
    horizon: Annotated[int, typer.Option(help="Steps ahead (hours for hourly data).")] = 6,
    store: Annotated[bool, typer.Option("--store", help="Issue live forecasts from the workspace history for "
                                        "the next 1..horizon hours and store them for verification "
                                        "(`citytwin twin verify`), instead of a backtest.")] = False,
    model: Annotated[list[str] | None, typer.Option("--model", help="With --store: models to issue "
                                                    "(default seasonal_naive, persistence, gbrt).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="With --store: issue as of this time "
                                           "(default: the last observation).")] = None,
    train_days: Annotated[float, typer.Option(help="With --store: days of history to learn from.")] = 28.0,
    as_json: JsonOpt = False,
) -> None:
    """Short-term forecast of one series (seasonal-naive baseline and the learned model), scored.

    Without --store: a backtest (the last quarter of the period held out) printed as MAE per model and
    horizon. With --store: live forecasts issued from the history and stored; they are scored against
    the actuals when these arrive (`citytwin twin verify`).
    """
    if store:
        _issue_and_store(workspace, entity, prop, horizon, model, at, train_days, as_json)
        return
    import pandas as pd

    from citytwin.workflows.twin import backtest_forecast

    result = backtest_forecast(workspace, file, entity, prop, start, end, horizon)
    if isinstance(result, pd.DataFrame):
        _print_frame(result, as_json)
    elif as_json:
        print_json(result)
    else:
        console.print(result)


def _issue_and_store(workspace: Path | None, entity: str, prop: str, horizon: int, model: list[str] | None,
                     at: str | None, train_days: float, as_json: bool) -> None:
    from citytwin.workflows.twin import issue_forecasts

    issued = issue_forecasts(workspace, entity, prop, horizon, model, at, train_days)
    rep, df = issued.report, issued.forecasts
    if as_json:
        print_json({"report": rep.to_dict(), "forecasts": _json_rows(df)})
        return
    console.print(f"issued at {rep.issued_at}: {rep.stored} forecasts stored ({', '.join(rep.models)}) for "
                  f"{rep.entities} entit{'y' if rep.entities == 1 else 'ies'}")
    for m, why in rep.skipped.items():
        console.print(f"[yellow]{m}: no forecast ({why})[/yellow]")
    if len(df):
        t = df.assign(horizon=df["horizon"].astype(str)).pivot_table(
            index=["entity", "target_time"], columns="model", values="value").reset_index()
        t.columns.name = None
        _print_frame(t, False, limit=200)


def _fmt_horizon(h: Any) -> str:
    import pandas as pd

    secs = int(pd.Timedelta(h).total_seconds())
    return f"{secs // 3600}h" if secs % 3600 == 0 else f"{secs // 60}min" if secs % 60 == 0 else f"{secs}s"


def _json_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    import pandas as pd

    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]) or pd.api.types.is_timedelta64_dtype(out[c]):
            out[c] = out[c].astype(str)
    return out.astype(object).where(out.notna(), None).to_dict(orient="records")  # type: ignore[return-value]


@app.command()
@handle_errors
def verify(
    workspace: WorkspaceOpt = None,
    entity: Annotated[str | None, typer.Option("--entity", "-e", help="Also show this entity's rows "
                                               "(default: totals over all entities).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score the stored forecasts whose actuals have arrived: MAE per model and horizon, skill vs seasonal naive.

    Says plainly where a learned model is worse than the baseline (skill < 0).
    """
    from citytwin.service.forecasting import ALL
    from citytwin.workflows.twin import verify_forecasts

    rep = verify_forecasts(workspace)
    s = rep.scores
    if as_json:
        print_json({"verified": rep.verified, "pending": rep.pending,
                    "next_due": None if rep.next_due is None else str(rep.next_due),
                    "scores": _json_rows(s), "worse_than_baseline": _json_rows(rep.losses())})
        return
    console.print(f"{rep.verified:,} forecasts verified, {rep.pending:,} waiting for their actual"
                  + (f" (next due {rep.next_due})" if rep.next_due is not None else ""))
    if s.empty:
        console.print("nothing to score yet: no stored forecast has its actual in the history")
        return
    show = s[s["entity"] == (entity or ALL)]
    show = show.assign(horizon=[_fmt_horizon(h) for h in show["horizon"]])
    _print_frame(show[["entity", "property", "model", "horizon", "n", "mae", "baseline_mae", "skill"]], False, 500)
    lost = rep.losses()
    for r in lost.itertuples():
        console.print(f"[bold red]{r.model} is WORSE than the seasonal-naive baseline for {r.property} at "
                      f"{_fmt_horizon(r.horizon)} (skill {r.skill:.3f}, MAE {r.mae:.4g} vs {r.baseline_mae:.4g}, n={r.n})"
                      "[/bold red]")
    if lost.empty:
        console.print("every model beats or ties the seasonal-naive baseline on the cases scored so far")
    few = int(show["n"].min())
    if few < 30:
        console.print(f"[yellow]caution: as few as {few} scored case(s) per model and horizon; "
                      "MAE on so few cases says little[/yellow]")


@app.command()
@handle_errors
def compact(
    workspace: WorkspaceOpt = None,
    day: Annotated[str | None, typer.Option(help="Only this UTC day (YYYY-MM-DD).")] = None,
) -> None:
    """Rewrite history day partitions as one deduplicated file each (faster queries, duplicates gone)."""
    from citytwin.workflows.runtime import open_runtime
    from citytwin.workflows.twin import twin_root

    rt = open_runtime(twin_root(workspace))
    try:
        h = rt.stores.history
        before = h.physical_rows()
        n = h.compact(day)
        console.print(f"compacted {n:,} day partition(s): {before:,} -> {h.physical_rows():,} rows on disk, "
                      f"{h.count()['rows']:,} observations")
    finally:
        rt.close()


@app.command()
@handle_errors
def deadletters(
    workspace: WorkspaceOpt = None,
    reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Rejected input (MQTT and HTTP) with the reason, newest first."""
    from citytwin.workflows.runtime import open_runtime
    from citytwin.workflows.twin import twin_root

    rt = open_runtime(twin_root(workspace))
    try:
        counts = rt.stores.deadletters.counts()
        df = rt.stores.deadletters.frame(reason=reason, limit=limit)
    finally:
        rt.close()
    if as_json:
        print_json({"counts": counts, "items": df.drop(columns=["received_us"], errors="ignore")
                   .astype(str).to_dict(orient="records")})
        return
    console.print(counts)
    if len(df):
        _print_frame(df[["received_at", "source", "reason", "entity", "property", "detail"]], False, limit)
