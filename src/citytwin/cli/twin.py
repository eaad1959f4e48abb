"""`citytwin twin ...` commands: replay, ingest, serve, history, aqi, alerts, forecast, deadletters.

Thin layer: read files, open the twin stores of a workspace (``WORKSPACE/twin``), call the
foundation (stores, MQTT) and the twin domain (entities, AQI, alerts), print.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from citytwin.cli import devices
from citytwin.cli.common import (
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

app = typer.Typer(help="Live digital twin: replay and ingest sensor feeds (MQTT/HTTP), history, AQI, alerts.",
                  no_args_is_help=True)
app.add_typer(devices.app, name="devices")

BrokerOpt = Annotated[str | None, typer.Option("--broker", help="MQTT broker HOST:PORT (none: in-process).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
StartOpt = Annotated[str | None, typer.Option("--start", help="Start time (ISO 8601; no zone = UTC).")]
EndOpt = Annotated[str | None, typer.Option("--end", help="End time, exclusive.")]
AutoAlertsOpt = Annotated[bool, typer.Option("--auto-alerts/--no-auto-alerts", help="Evaluate the default alert "
                                             "rules (hourly AQI > 200 for 2 h, > 300) after each ingest batch; "
                                             "alerts go to the workspace's alert hub (and MQTT).")]


def twin_root(workspace: Path | None) -> Path:
    """The twin folder of a workspace."""
    ws = open_workspace(workspace)
    return ws.root / "twin"


#: the zone naive times of observation files are read in (``--tz``)
DEFAULT_TZ = "Asia/Shanghai"
#: entity type of a long table's entity whose id is not an NGSI-LD URN and that has no ``type`` column:
#: air-quality stations when the file measures an AQI pollutant, else a generic device
DEFAULT_AIR_TYPE = "AirQualityObserved"
DEFAULT_DEVICE_TYPE = "Device"
_OFFSET = r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"


def parse_times(values: pd.Series, tz: str = DEFAULT_TZ, *, file: str | None = None,
                field: str = "time") -> pd.Series:
    """Times of an observation file as UTC: naive times are local times in ``tz``.

    A value with its own offset (``2015-12-01T08:00:00+08:00``, ``…Z``) keeps it; a naive one
    (``2015-12-01 08:00``) is a wall-clock time in ``tz`` (default Asia/Shanghai, as the docs say:
    it was read as UTC, and a day's AQI then mixed two local days). A time that does not exist or is
    ambiguous in ``tz`` (daylight saving) and a value that is not a time are errors naming the row.

    Examples
    --------
    >>> parse_times(pd.Series(["2015-12-01 00:00", "2015-12-01T00:00:00Z"])).astype(str).tolist()
    ['2015-11-30 16:00:00+00:00', '2015-12-01 00:00:00+00:00']
    """
    from zoneinfo import ZoneInfoNotFoundError

    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except (ZoneInfoNotFoundError, ValueError, KeyError) as exc:
        raise InputError(f"unknown time zone {tz!r}", field="tz", hint="an IANA name, e.g. Asia/Shanghai or UTC") \
            from exc
    s = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(s):
        t = s if getattr(s.dt, "tz", None) is not None else s.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        return t.dt.tz_convert("UTC")
    text = s.astype("string").str.strip()
    aware = text.str.contains(_OFFSET, regex=True, na=False)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    try:
        if aware.any():
            out[aware] = pd.to_datetime(text[aware], utc=True, format="mixed", errors="coerce")
        naive = ~aware & text.notna()
        if naive.any():
            local = pd.to_datetime(text[naive], format="mixed", errors="coerce")
            out[naive] = local.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    except (ValueError, TypeError) as exc:
        raise InputError(f"cannot read the times: {exc}", file=file, field=field) from exc
    bad = out.isna() & text.notna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(f"not a time in {tz}: {text.iloc[i]!r}", file=file, row=i + 1, field=field,
                         hint="ISO 8601, e.g. 2015-12-01 08:00 (local) or 2015-12-01T00:00:00Z")
    return out


def read_observations(path: Path, *, start: str | None = None, end: str | None = None,
                      stations: list[str] | None = None, tz: str = DEFAULT_TZ) -> tuple[pd.DataFrame, list[Any]]:
    """Read an observation file or folder -> (long frame, entities to register).

    Accepts the UCI Beijing CSVs (a file or the folder of 12), or a long table (CSV / Parquet)
    with ``entity, property, time, value, unit`` (optional ``type, lon, lat``). Naive times are
    local times in ``tz`` (:func:`parse_times`). An entity's type is the ``type`` column, else the
    type in its NGSI-LD id (``urn:ngsi-ld:TYPE:ID``), else :data:`DEFAULT_AIR_TYPE` when the file
    measures an AQI pollutant and :data:`DEFAULT_DEVICE_TYPE` otherwise.
    """
    from citytwin.twin import entities as E

    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files or not all(f.exists() for f in files):
        raise InputError(f"no observation file at {path}", file=str(path))
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f) if f.suffix.lower() == ".parquet" else pd.read_csv(f))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {f}: {exc}", file=str(f)) from exc
    df = pd.concat(frames, ignore_index=True)
    if E.is_beijing_frame(df):
        if stations:
            df = df[df["station"].isin(stations)]
        if start or end:  # cut the wide rows first (a day more on each side; exact cut below)
            local = pd.to_datetime(df[["year", "month", "day", "hour"]].astype("int64"))
            keep = pd.Series(True, index=df.index)
            if start:
                keep &= local >= _ts(start).tz_convert(E.BEIJING_TZ).tz_localize(None) - pd.Timedelta(days=1)
            if end:
                keep &= local < _ts(end).tz_convert(E.BEIJING_TZ).tz_localize(None) + pd.Timedelta(days=1)
            df = df[keep]
        long = E.beijing_long(df)
        ents = [E.beijing_entity(s) for s in sorted(df["station"].unique())]
    else:
        need = {"entity", "property", "time", "value"}
        if not need.issubset(df.columns):
            raise InputError(f"columns {sorted(need - set(df.columns))} missing", file=str(path),
                             hint="a long table needs entity, property, time, value, unit (or UCI Beijing CSVs)")
        long = df.copy().reset_index(drop=True)
        long["time"] = parse_times(long["time"], tz, file=str(path))
        if "unit" not in long:
            long["unit"] = None
        ents = []
        air = bool(long["property"].astype(str).isin(["pm25", "pm10", "so2", "no2", "co", "o3"]).any())
        fallback = DEFAULT_AIR_TYPE if air else DEFAULT_DEVICE_TYPE
        for eid, g in long.groupby("entity", sort=True):
            parts = str(eid).split(":")
            if "type" in g and pd.notna(g["type"].iloc[0]) and str(g["type"].iloc[0]).strip():
                etype = str(g["type"].iloc[0]).strip()
            elif len(parts) >= 4 and parts[0].lower() == "urn" and parts[1].lower() == "ngsi-ld" and parts[2]:
                etype = parts[2]
            else:
                etype = fallback
            lon = float(g["lon"].iloc[0]) if "lon" in g and pd.notna(g["lon"].iloc[0]) else None
            lat = float(g["lat"].iloc[0]) if "lat" in g and pd.notna(g["lat"].iloc[0]) else None
            ents.append(E.Entity(str(eid), etype, lon, lat))
    if start:
        long = long[long["time"] >= _ts(start)]
    if end:
        long = long[long["time"] < _ts(end)]
    return long.reset_index(drop=True), ents


def _ts(text: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(text)
    except ValueError as exc:
        raise InputError(f"not a time: {text!r}", hint="use ISO 8601, e.g. 2015-12-01T00:00:00+08:00") from exc
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


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
    per_message: Annotated[int, typer.Option("--per-message", help="Entity updates per MQTT message "
                                                                   "(>1: JSON array on citytwin/batch).")] = 1,
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
    --end 2016-01-01 --broker 127.0.0.1:1883 --speed 3600 --ingest
    """
    from citytwin.foundation.mqtt import MqttPublisher, parse_broker, publish_stream
    from citytwin.service.app import open_runtime
    from citytwin.twin import entities as E

    long, ents = read_observations(file, start=start, end=end, stations=station)
    if long.empty:
        raise InputError("no observations in the chosen period", hint="check --start/--end")
    rt = open_runtime(twin_root(workspace)) if workspace else None
    if rt is not None:
        rt.register(ents)
        if auto_alerts:
            rt.enable_auto_alerts()
    msgs = list(E.messages_from_long(long, per_message=per_message))
    offsets = E.replay_schedule(pd.Series([m[0] for m in msgs]).to_numpy(), speed)
    t0 = time.perf_counter()
    if broker is None:
        if rt is None:
            raise InputError("in-process replay needs a workspace", hint="pass -w DIR, or --broker HOST:PORT")
        batch: list[tuple[str, bytes]] = []
        w0 = time.monotonic()
        for (_, topic, payload), off in zip(msgs, offsets, strict=True):
            if off > 0 and w0 + off > time.monotonic():
                if batch:
                    rt.ingestor.ingest(batch, source="replay")
                    batch = []
                time.sleep(max(0.0, w0 + off - time.monotonic()))
            batch.append((topic, payload))
            if len(batch) >= 2000:
                rt.ingestor.ingest(batch, source="replay")
                batch = []
        if batch:
            rt.ingestor.ingest(batch, source="replay")
        tot = rt.ingestor.totals
        dt = time.perf_counter() - t0
        console.print(f"replayed {len(msgs):,} messages in-process: {tot.accepted:,} observations stored, "
                      f"{tot.rejected:,} rejected, {dt:.1f} s ({tot.accepted / max(dt, 1e-9):,.0f} obs/s)")
        rt.close()
        return
    host, port = parse_broker(broker)
    auth = mqtt_auth(username, password, tls_ca, tls_cert, tls_key)
    run_ingest = ingest if ingest is not None else False
    if run_ingest:
        if rt is None:
            raise InputError("--ingest needs a workspace", hint="pass -w DIR")
        rt.start_mqtt(host, port, client_id=f"{client_id}-ingest", auth=auth)
    pub = MqttPublisher(host, port, client_id=client_id, auth=auth)
    n = publish_stream(pub, ((float(o), t, p) for o, (_, t, p) in zip(offsets, msgs, strict=True)))
    ok = pub.wait_all(timeout=600)
    pub.close()
    dt = time.perf_counter() - t0
    console.print(f"published {n:,} messages ({len(long):,} readings) to {host}:{port} in {dt:.1f} s; "
                  f"all acknowledged by the broker: {ok}")
    if rt is not None and run_ingest:
        expected = len(long)
        deadline = time.monotonic() + 600
        while rt.ingestor.totals.accepted + rt.ingestor.totals.rejected < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        tot = rt.ingestor.totals
        console.print(f"ingested {tot.accepted:,} observations, {tot.rejected:,} rejected")
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
    import json

    from citytwin.foundation.mqtt import parse_broker
    from citytwin.service.app import open_runtime

    host, port = parse_broker(broker)
    rt = open_runtime(twin_root(workspace), prefix=prefix)
    if auto_alerts:
        rt.enable_auto_alerts()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
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
    import uvicorn

    from citytwin.foundation.mqtt import parse_broker
    from citytwin.service.app import create_app
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
    uvicorn.run(app_, host=host, port=port, log_level="warning")


def _history_frame(workspace: Path | None, entity: list[str] | None, prop: list[str] | None, start: str | None,
                   end: str | None) -> pd.DataFrame:
    from citytwin.service.app import open_runtime

    rt = open_runtime(twin_root(workspace))
    try:
        return rt.stores.history.query(entities=entity or None, properties=prop or None, start=start, end=end)
    finally:
        rt.close()


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
    from citytwin.service.app import open_runtime

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


def _daily(workspace: Path | None, file: Path | None, entity: list[str] | None, start: str | None,
           end: str | None, tz: str = DEFAULT_TZ) -> pd.DataFrame:
    from citytwin.twin import aqi

    if file is not None:
        long, _ = read_observations(file, start=start, end=end, tz=tz)
        if entity:
            long = long[long["entity"].isin(entity)]
    else:
        long = _history_frame(workspace, entity, ["pm25", "pm10", "so2", "no2", "co", "o3"], start, end)
    if long.empty:
        raise InputError("no pollutant observations found", hint="replay data first, or pass --file")
    return aqi.daily_aqi(long, invalid="missing", tz=tz)


FileOpt = Annotated[Path | None, typer.Option("--file", help="Read observations from this file/folder instead "
                                                             "of the workspace history.")]
TzOpt = Annotated[str, typer.Option("--tz", help="Time zone of the days, and of naive times in --file "
                                                 "(IANA name).")]


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
    d = _daily(workspace, file, entity, start, end, tz).assign(tz=tz)
    cols = [c for c in ("entity", "date", "tz", "aqi", "category_zh", "category_en", "primary", "status") if c in d]
    _print_frame(d[cols], as_json)


def aqi_alerts(daily: pd.DataFrame, book: Any, *, min_level: int = 5, rule: str = "aqi_daily_heavy") -> Any:
    """Raise alerts on heavy-pollution days (level >= 5: 重度污染 or 严重污染) in day order.

    Consecutive heavy days of one entity make one alert (deduplicated, ``count`` = days);
    the first day below the level resolves it.
    """
    rows: list[dict[str, Any]] = daily.sort_values(["date", "entity"]).to_dict("records")  # type: ignore[assignment]
    for row in rows:
        lvl = row["level"]
        live = book.find(rule, row["entity"])
        at = pd.Timestamp(row["date"])
        if pd.notna(lvl) and int(lvl) >= min_level:
            book.raise_alert(rule, row["entity"], at=at, severity="critical" if int(lvl) >= 6 else "major",
                             property="aqi", peak=float(row["aqi"]), start=at, end=at + pd.Timedelta(days=1),
                             message=f"daily AQI {int(row['aqi'])} ({row['category_zh']}), primary {row['primary']}")
        elif live is not None and pd.notna(lvl):
            book.resolve(live.id, by="system", at=at)
    return book


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

    Without --file: the workspace's alert hub (WORKSPACE/twin/alerts.json), filtered by --entity,
    --status, --rule and the period (alerts whose episode overlaps [--start, --end)). With --file:
    heavy-pollution days (daily AQI level >= --min-level) of that file as a throwaway alert book.
    """
    from citytwin.twin.alerts import AlertBook

    if file is not None:
        book = aqi_alerts(_daily(workspace, file, entity, start, end), AlertBook(), min_level=min_level)
        df = book.frame()
    else:
        df = hub_alerts(workspace, entity, status, rule, start, end)
    cols = [c for c in ("entity", "rule", "status", "severity", "opened_at", "resolved_at", "start", "end", "count",
                        "peak", "message") if c in df]
    _print_frame(df[cols], as_json)


def hub_alerts(workspace: Path | None, entity: list[str] | None, status: list[str] | None, rule: str | None,
               start: str | None, end: str | None) -> pd.DataFrame:
    """Alerts of the workspace's persistent hub as a frame (oldest first), filtered."""
    from citytwin.service.alerting import AlertHub
    from citytwin.twin.alerts import AlertBook

    root = twin_root(workspace)
    hub = AlertHub(root / "alerts.json") if (root / "alerts.json").exists() else None
    book = hub.book if hub is not None else AlertBook()
    al = book.alerts(status=status or None, rule=rule)
    if entity:
        al = [a for a in al if a.entity in set(entity)]

    def ts(x: Any) -> pd.Timestamp | None:
        if x is None:
            return None
        t = pd.Timestamp(x)
        return t.tz_localize("UTC") if t.tz is None else t

    s0, e0 = ts(start), ts(end)
    if s0 is not None:
        al = [a for a in al if ts(a.end or a.last_seen) >= s0]  # type: ignore[operator]
    if e0 is not None:
        al = [a for a in al if ts(a.start or a.opened_at) < e0]  # type: ignore[operator]
    return AlertBook(al).frame()


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
    try:
        from citytwin.twin import forecast as fc
    except ImportError as exc:  # written by another part of the project
        raise InputError("forecasting is not available in this build", hint=str(exc)) from exc
    if file is not None:
        long, _ = read_observations(file, start=start, end=end)
        long = long[(long["entity"] == entity) & (long["property"] == prop)] if entity else \
            long[long["property"] == prop]
    else:
        long = _history_frame(workspace, [entity] if entity else None, [prop], start, end)
    if long.empty:
        raise InputError("no observations for that entity and property")
    # naive UTC times: citytwin.twin.forecast works on tz-naive grids
    long = long.assign(time=pd.to_datetime(long["time"], utc=True).dt.tz_localize(None))
    series = long.set_index("time")["value"] if long["entity"].nunique() == 1 else \
        long.pivot_table(index="time", columns="entity", values="value")
    fn = getattr(fc, "compare", None) or getattr(fc, "evaluate", None) or getattr(fc, "score", None)
    if fn is None:
        raise InputError("citytwin.twin.forecast offers no compare/evaluate/score function")
    result = fn(series, horizon=horizon)
    if isinstance(result, pd.DataFrame):
        _print_frame(result, as_json)
    elif as_json:
        print_json(result)
    else:
        console.print(result)


def _issue_and_store(workspace: Path | None, entity: str, prop: str, horizon: int, model: list[str] | None,
                     at: str | None, train_days: float, as_json: bool) -> None:
    from citytwin.service.app import open_runtime
    from citytwin.service.forecasting import DEFAULT_MODELS

    rt = open_runtime(twin_root(workspace))
    try:
        rep = rt.issue_forecasts(property=prop, entities=[entity] if entity else None,
                                 models=tuple(model or DEFAULT_MODELS),
                                 horizons=[f"{h}h" for h in range(1, horizon + 1)], train_days=train_days, at=at)
        assert rt.forecasts is not None
        df = rt.forecasts.query(properties=prop, entities=entity or None, issued_start=rep.issued_at,
                                latest_issue=True)
    finally:
        rt.close()
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
    secs = int(pd.Timedelta(h).total_seconds())
    return f"{secs // 3600}h" if secs % 3600 == 0 else f"{secs // 60}min" if secs % 60 == 0 else f"{secs}s"


def _json_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
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
    from citytwin.service.app import open_runtime
    from citytwin.service.forecasting import ALL

    rt = open_runtime(twin_root(workspace))
    try:
        rep = rt.verify_forecasts()
    finally:
        rt.close()
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
    from citytwin.service.app import open_runtime

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
    from citytwin.service.app import open_runtime

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
