"""The live twin's workflows: reading observation files, history queries, daily AQI, AQI alerts,
the alert hub's alerts, forecasts (backtest, issue and store, verify) and the in-process replay.

``citytwin twin ...`` is a thin layer over these functions (and over
:func:`citytwin.workflows.runtime.open_runtime` for ingest and serving).
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError
from citytwin.workflows.common import WorkspaceLike, open_ws

if TYPE_CHECKING:
    import pandas as pd

    from citytwin.foundation.mqtt import MqttAuth
    from citytwin.twin.alerts import AlertBook
    from citytwin.twin.entities import Entity
    from citytwin.workflows.forecasting import IssueReport, VerifyReport
    from citytwin.workflows.runtime import TwinRuntime

__all__ = [
    "DEFAULT_TZ",
    "POLLUTANTS",
    "ForecastIssue",
    "ReplayTotals",
    "aqi_alerts",
    "backtest_forecast",
    "daily_aqi",
    "history_frame",
    "hub_alerts",
    "issue_forecasts",
    "parse_time",
    "parse_times",
    "publish_replay",
    "read_observations",
    "replay_in_process",
    "replay_messages",
    "twin_root",
    "verify_forecasts",
    "wait_ingested",
]

POLLUTANTS = ["pm25", "pm10", "so2", "no2", "co", "o3"]
"""The properties daily AQI is computed from."""


def twin_root(workspace: WorkspaceLike | None) -> Path:
    """The twin folder of a workspace (``WORKSPACE/twin``)."""
    return open_ws(workspace).root / "twin"


def parse_time(text: str) -> pd.Timestamp:
    """An ISO 8601 time as a UTC timestamp (no zone = UTC).

    Examples
    --------
    >>> str(parse_time("2015-12-01T00:00:00+08:00"))
    '2015-11-30 16:00:00+00:00'
    """
    import pandas as pd

    try:
        t = pd.Timestamp(text)
    except ValueError as exc:
        raise InputError(f"not a time: {text!r}", hint="use ISO 8601, e.g. 2015-12-01T00:00:00+08:00") from exc
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


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
    >>> import pandas as pd
    >>> parse_times(pd.Series(["2015-12-01 00:00", "2015-12-01T00:00:00Z"])).astype(str).tolist()
    ['2015-11-30 16:00:00+00:00', '2015-12-01 00:00:00+00:00']
    """
    from zoneinfo import ZoneInfoNotFoundError

    import pandas as pd

    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except (ZoneInfoNotFoundError, ValueError, KeyError) as exc:
        raise InputError(f"unknown time zone {tz!r}", field="tz", hint="an IANA name, e.g. Asia/Shanghai or UTC") \
            from exc
    s = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(s):
        t = s if getattr(s.dt, "tz", None) is not None else s.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        utc: pd.Series = t.dt.tz_convert("UTC")
        return utc
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
                      stations: list[str] | None = None, tz: str = DEFAULT_TZ) -> tuple[pd.DataFrame, list[Entity]]:
    """Read an observation file or folder -> (long frame, entities to register).

    Accepts the UCI Beijing CSVs (a file or the folder of 12), or a long table (CSV / Parquet)
    with ``entity, property, time, value, unit`` (optional ``type, lon, lat``). Naive times are
    local times in ``tz`` (:func:`parse_times`). An entity's type is the ``type`` column, else the
    type in its NGSI-LD id (``urn:ngsi-ld:TYPE:ID``), else :data:`DEFAULT_AIR_TYPE` when the file
    measures an AQI pollutant and :data:`DEFAULT_DEVICE_TYPE` otherwise.

    Parameters
    ----------
    path
        File, or folder of ``*.csv`` files.
    start, end
        Keep observations in ``[start, end)`` (ISO 8601; no zone = UTC).
    stations
        Beijing station names to keep (UCI files only).

    Raises
    ------
    InputError
        When there is no file, a file cannot be read, or a long table lacks a column.
    """
    import pandas as pd

    from citytwin.twin import entities as E
    from citytwin.twin import feeds as F

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
    if F.is_beijing_frame(df):
        if stations:
            df = df[df["station"].isin(stations)]
        if start or end:  # cut the wide rows first (a day more on each side; exact cut below)
            local = pd.to_datetime(df[["year", "month", "day", "hour"]].astype("int64"))
            keep = pd.Series(True, index=df.index)
            if start:
                keep &= local >= parse_time(start).tz_convert(F.BEIJING_TZ).tz_localize(None) - pd.Timedelta(days=1)
            if end:
                keep &= local < parse_time(end).tz_convert(F.BEIJING_TZ).tz_localize(None) + pd.Timedelta(days=1)
            df = df[keep]
        long = F.beijing_long(df)
        ents = [F.beijing_entity(s) for s in sorted(df["station"].unique())]
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
        long = long[long["time"] >= parse_time(start)]
    if end:
        long = long[long["time"] < parse_time(end)]
    return long.reset_index(drop=True), ents


def history_frame(workspace: WorkspaceLike | None, entities: list[str] | None = None,
                  properties: list[str] | None = None, start: str | None = None,
                  end: str | None = None) -> pd.DataFrame:
    """Observations of the workspace's twin history (long frame), filtered."""
    from citytwin.workflows.runtime import open_runtime

    rt = open_runtime(twin_root(workspace))
    try:
        return rt.stores.history.query(entities=entities or None, properties=properties or None, start=start,
                                       end=end)
    finally:
        rt.close()


def daily_aqi(workspace: WorkspaceLike | None = None, file: Path | None = None, entities: list[str] | None = None,
              start: str | None = None, end: str | None = None, tz: str = DEFAULT_TZ) -> pd.DataFrame:
    """Daily AQI (HJ 633-2012) per entity and calendar day in ``tz``, from an observation ``file`` (naive
    times there are local times in ``tz``) or the workspace's history.

    Raises
    ------
    InputError
        When there are no pollutant observations.
    """
    from citytwin.twin import aqi

    if file is not None:
        long, _ = read_observations(file, start=start, end=end, tz=tz)
        if entities:
            long = long[long["entity"].isin(entities)]
    else:
        long = history_frame(workspace, entities, POLLUTANTS, start, end)
    if long.empty:
        raise InputError("no pollutant observations found", hint="replay data first, or pass --file")
    return aqi.daily_aqi(long, invalid="missing", tz=tz)


def aqi_alerts(daily: pd.DataFrame, book: AlertBook, *, min_level: int = 5,
               rule: str = "aqi_daily_heavy") -> AlertBook:
    """Raise alerts on heavy-pollution days (level >= 5: 重度污染 or 严重污染) in day order.

    Consecutive heavy days of one entity make one alert (deduplicated, ``count`` = days);
    the first day below the level resolves it.
    """
    import pandas as pd

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


def hub_alerts(workspace: WorkspaceLike | None, entity: list[str] | None = None, status: list[str] | None = None,
               rule: str | None = None, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Alerts of the workspace's persistent hub as a frame (oldest first), filtered.

    ``start``/``end`` keep the alerts whose episode overlaps ``[start, end)``.
    """
    import pandas as pd

    from citytwin.twin.alerts import AlertBook
    from citytwin.workflows.alerting import AlertHub, hub_path

    path = hub_path(twin_root(workspace))
    hub = AlertHub(path) if path is not None else AlertHub()
    try:
        al = hub.alerts(status=status or None, rule=rule)
    finally:
        hub.close()
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


def backtest_forecast(workspace: WorkspaceLike | None = None, file: Path | None = None, entity: str = "",
                      prop: str = "pm25", start: str | None = None, end: str | None = None,
                      horizon: int = 6) -> Any:
    """Backtest of one series (seasonal-naive baseline and the learned model): MAE per model and horizon.

    The series comes from an observation ``file`` or the workspace's history; the last quarter of
    the period is held out (:mod:`citytwin.twin.forecast`).

    Raises
    ------
    InputError
        When there are no observations for the entity and property.
    """
    import pandas as pd

    try:
        from citytwin.twin import forecast as fc
    except ImportError as exc:  # written by another part of the project
        raise InputError("forecasting is not available in this build", hint=str(exc)) from exc
    if file is not None:
        long, _ = read_observations(file, start=start, end=end)
        long = long[(long["entity"] == entity) & (long["property"] == prop)] if entity else \
            long[long["property"] == prop]
    else:
        long = history_frame(workspace, [entity] if entity else None, [prop], start, end)
    if long.empty:
        raise InputError("no observations for that entity and property")
    # naive UTC times: citytwin.twin.forecast works on tz-naive grids
    long = long.assign(time=pd.to_datetime(long["time"], utc=True).dt.tz_localize(None))
    series = long.set_index("time")["value"] if long["entity"].nunique() == 1 else \
        long.pivot_table(index="time", columns="entity", values="value")
    fn = getattr(fc, "compare", None) or getattr(fc, "evaluate", None) or getattr(fc, "score", None)
    if fn is None:
        raise InputError("citytwin.twin.forecast offers no compare/evaluate/score function")
    return fn(series, horizon=horizon)


@dataclass
class ForecastIssue:
    """Forecasts issued and stored by :func:`issue_forecasts`: the report and the stored rows."""

    report: IssueReport
    forecasts: pd.DataFrame


def issue_forecasts(workspace: WorkspaceLike | None, entity: str = "", prop: str = "pm25", horizon: int = 6,
                    models: Sequence[str] | None = None, at: str | None = None,
                    train_days: float = 28.0) -> ForecastIssue:
    """Issue live forecasts from the workspace history for the next 1..``horizon`` hours and store them
    (scored later against the actuals: :func:`verify_forecasts`)."""
    from citytwin.workflows.forecasting import DEFAULT_MODELS
    from citytwin.workflows.runtime import open_runtime

    rt = open_runtime(twin_root(workspace))
    try:
        rep = rt.issue_forecasts(property=prop, entities=[entity] if entity else None,
                                 models=tuple(models or DEFAULT_MODELS),
                                 horizons=[f"{h}h" for h in range(1, horizon + 1)], train_days=train_days, at=at)
        assert rt.forecasts is not None
        df = rt.forecasts.query(properties=prop, entities=entity or None, issued_start=rep.issued_at,
                                latest_issue=True)
    finally:
        rt.close()
    return ForecastIssue(rep, df)


def verify_forecasts(workspace: WorkspaceLike | None) -> VerifyReport:
    """Score the stored forecasts of the workspace's twin whose actuals have arrived."""
    from citytwin.workflows.runtime import open_runtime

    rt = open_runtime(twin_root(workspace))
    try:
        return rt.verify_forecasts()
    finally:
        rt.close()


@dataclass
class ReplayTotals:
    """What an in-process replay stored: messages sent, observations accepted and rejected, seconds taken."""

    messages: int
    accepted: int
    rejected: int
    seconds: float


def replay_in_process(rt: TwinRuntime, msgs: Sequence[tuple[Any, str, bytes]], offsets: Iterable[float], *,
                      batch_size: int = 2000, clock: Callable[[], float] = _time.monotonic,
                      sleep: Callable[[float], None] = _time.sleep) -> ReplayTotals:
    """Feed ``(time, topic, payload)`` messages into ``rt``'s ingest pipeline at their schedule ``offsets``
    (seconds from the start; :func:`citytwin.twin.feeds.replay_schedule`), in batches of at most
    ``batch_size``; a batch is flushed before each wait. ``clock`` and ``sleep`` are injectable."""
    batch: list[tuple[str, bytes]] = []
    w0 = clock()
    for (_, topic, payload), off in zip(msgs, offsets, strict=True):
        if off > 0 and w0 + off > clock():
            if batch:
                rt.ingestor.ingest(batch, source="replay")
                batch = []
            sleep(max(0.0, w0 + off - clock()))
        batch.append((topic, payload))
        if len(batch) >= batch_size:
            rt.ingestor.ingest(batch, source="replay")
            batch = []
    if batch:
        rt.ingestor.ingest(batch, source="replay")
    tot = rt.ingestor.totals
    return ReplayTotals(len(msgs), tot.accepted, tot.rejected, clock() - w0)


#: Payload forms of a replay (docs/twin.md, "Replay"): NGSI-LD entity updates, or the columnar batch payload.
REPLAY_PAYLOADS = ("updates", "columnar")
#: Most rows of one columnar replay message when ``per_message`` is not given (~100 KiB of JSON for 12
#: properties, far below the ingest's payload limit).
COLUMNAR_MAX_ROWS = 1000


def replay_messages(long: pd.DataFrame, *, per_message: int | None = None, speed: float = 0.0,
                    payload: str = "updates") -> tuple[list[tuple[Any, str, bytes]], Any]:
    """The MQTT messages ``(time, topic, payload)`` of a long observation frame and their schedule
    (seconds from the start at ``speed`` × real time; 0 = as fast as possible).

    Parameters
    ----------
    long : pandas.DataFrame
        Observations (entity, type, property, time, value, unit), as :func:`read_observations` returns.
    per_message : int, optional
        Entity rows per message. None: 1 for ``updates`` (one entity and time per message, on its entity's
        topic), and for ``columnar`` the number of entities (one message per time step when every entity
        reports at each step), at most :data:`COLUMNAR_MAX_ROWS`.
    speed : float
        Pace of the schedule.
    payload : {"updates", "columnar"}
        ``updates``: NGSI-LD entity updates (one object, or a JSON array on ``{prefix}/batch`` when
        ``per_message > 1``), what any device may send; ``columnar``: the columnar batch payload on
        ``{prefix}/batch`` (:func:`citytwin.twin.columnar.columnar_messages_from_long`), what a gateway
        forwarding many sensors sends, cheaper to encode, carry and parse.

    Raises
    ------
    InputError
        An unknown ``payload``; for ``columnar``, rows of one message that do not all have the same
        properties (the hint says to replay those as updates).
    """
    import pandas as pd

    from citytwin.twin import feeds as F

    if payload not in REPLAY_PAYLOADS:
        raise InputError(f"unknown replay payload {payload!r}", field="payload",
                         hint=f"one of {', '.join(REPLAY_PAYLOADS)}")
    if per_message is not None and per_message < 1:
        raise InputError(f"per_message must be at least 1, not {per_message}", field="per_message")
    if payload == "columnar":
        from citytwin.twin.columnar import columnar_messages_from_long

        rows = per_message or max(1, min(int(long["entity"].nunique()), COLUMNAR_MAX_ROWS))
        msgs = list(columnar_messages_from_long(long, per_message=rows))
    else:
        msgs = list(F.messages_from_long(long, per_message=per_message or 1))
    offsets = F.replay_schedule(pd.Series([m[0] for m in msgs]).to_numpy(), speed)
    return msgs, offsets


def publish_replay(msgs: Sequence[tuple[Any, str, bytes]], offsets: Iterable[float], host: str, port: int, *,
                   client_id: str = "citytwin-replay", timeout: float = 600,
                   auth: MqttAuth | None = None) -> tuple[int, bool]:
    """Publish the messages to an MQTT broker at their schedule (QoS 1); returns (messages published,
    whether the broker acknowledged all of them within ``timeout`` seconds). ``auth``: credentials and
    TLS (None: from the environment)."""
    from citytwin.foundation.mqtt import MqttPublisher, publish_stream

    pub = MqttPublisher(host, port, client_id=client_id, auth=auth)
    try:
        n = publish_stream(pub, ((float(o), t, p) for o, (_, t, p) in zip(offsets, msgs, strict=True)))
        ok = pub.wait_all(timeout=timeout)
    finally:
        pub.close()
    return n, ok


def wait_ingested(rt: TwinRuntime, expected: int, *, timeout: float = 600,
                  clock: Callable[[], float] = _time.monotonic,
                  sleep: Callable[[float], None] = _time.sleep) -> tuple[int, int]:
    """Wait until ``rt`` has accepted or rejected ``expected`` observations (or ``timeout`` seconds have
    passed); returns (accepted, rejected)."""
    deadline = clock() + timeout
    while rt.ingestor.totals.accepted + rt.ingestor.totals.rejected < expected and clock() < deadline:
        sleep(0.05)
    tot = rt.ingestor.totals
    return tot.accepted, tot.rejected
