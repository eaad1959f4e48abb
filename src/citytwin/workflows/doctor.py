"""``citytwin doctor``: check the pieces of a deployment and say what is wrong and what to do.

Each check gives ``ok``, ``warn`` or ``fail`` with a detail and, unless ok, what to do:

* ``workspace`` — the folder exists, is a workspace, is owner-only and writable;
* ``records`` — the records database (SQLite file or PostgreSQL by URL) is reachable and migrated to
  this citytwin's schema (the version of each store);
* ``postgis`` — with PostgreSQL records: whether the PostGIS extension is installed in that database;
* ``replication`` — with PostgreSQL records on a primary that has standbys: each one's state and how far
  behind it is (``pg_stat_replication``); records given as a hot standby's URL fail (citytwin writes its
  records to the primary);
* ``replica`` — for each ``--replica URL``: a hot standby, streaming WAL from its primary, holding the
  same schema versions, and how far its replay is behind the primary (bytes and seconds);
* ``serving`` — where PostGIS serving is switched on (``$CITYTWIN_POSTGIS`` or the ``postgis`` setting):
  that it can serve (records on PostgreSQL, PostGIS installed) and how many versions are published;
* ``embedded`` — a warning when the workspace's records are still in its SQLite file while
  ``$CITYTWIN_DATABASE`` (or ``--database``) points to PostgreSQL (move them: ``citytwin records move``);
* ``mqtt`` — the broker given by URL (``mqtt://[USER[:PASSWORD]@]HOST:PORT``, ``mqtts://`` for TLS, or
  ``HOST:PORT``; credentials and TLS files otherwise from ``$CITYTWIN_MQTT_MONITOR_*`` or ``$CITYTWIN_MQTT_*``)
  accepts a connection, without touching another client's session; with a ``monitor`` account, how many
  messages it holds for disconnected persistent sessions;
* ``chromium`` — Chromium for PDF reports;
* ``disk`` — free space where the workspace is.

A check never raises: its failure is its result.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from citytwin.foundation import records
from citytwin.foundation.errors import CitytwinError

__all__ = ["ENV_BROKER", "Check", "check_broker", "check_records", "check_replica", "run_checks"]

#: environment variable naming the MQTT broker (a URL or HOST:PORT)
ENV_BROKER = "CITYTWIN_MQTT_BROKER"
MARKER = "citytwin.json"
#: free disk below this fails, below ``DISK_WARN`` warns (bytes)
DISK_FAIL, DISK_WARN = 1 << 30, 5 << 30
#: a standby whose replay is more than this behind its primary's WAL warns (bytes: one WAL segment)
REPLICA_WARN_BYTES = 16 << 20


@dataclass
class Check:
    """One check's result."""

    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _guard(name: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except CitytwinError as exc:
        return Check(name, "fail", exc.message, exc.hint)
    except Exception as exc:  # a check's failure is its result, never a traceback
        return Check(name, "fail", f"{type(exc).__name__}: {exc}")


def check_workspace(root: Path) -> Check:
    """The workspace folder: exists, is a workspace, owner-only, writable."""
    if not root.is_dir():
        return Check("workspace", "fail", f"{root} does not exist",
                     f"create it with `citytwin init {root}` or pass the right --workspace")
    if not (root / MARKER).exists():
        return Check("workspace", "fail", f"{root} is not a citytwin workspace (no {MARKER})",
                     f"create one with `citytwin init {root}`")
    mode = stat.S_IMODE(root.stat().st_mode)
    try:
        probe = root / "tmp" / f".doctor-{uuid.uuid4().hex}"
        probe.parent.mkdir(exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return Check("workspace", "fail", f"{root} is not writable by this user: {exc.strerror}",
                     "run citytwin as the workspace's owner (the service account) or fix the folder's owner")
    if mode & 0o077:
        return Check("workspace", "warn", f"{root} is readable by others (mode {mode:o})",
                     f"chmod 700 {root} (the workspace holds personal data)")
    return Check("workspace", "ok", f"{root} (mode {mode:o}, writable)")


def _settings(root: Path) -> dict[str, Any]:
    try:
        loaded = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def check_records(url: str) -> list[Check]:
    """The records database is reachable and migrated; with PostgreSQL, whether PostGIS is there."""
    from citytwin.foundation.cases import CASES_STORE
    from citytwin.foundation.catalog import CATALOG_STORE
    from citytwin.foundation.projects import PROJECTS_STORE

    shown = records.redact(url)
    db = records.Database(url, CATALOG_STORE)
    if db.dialect == "sqlite" and (db.path is None or not db.path.exists()):
        return [Check("records", "fail", f"no records database at {shown}",
                      "check --database / CITYTWIN_DATABASE, or create the workspace with `citytwin init`")]
    # on SQLite the case and project stores are files of their own, made when first used
    stores = (CATALOG_STORE, CASES_STORE, PROJECTS_STORE) if db.dialect == "postgresql" else (CATALOG_STORE,)
    with db.connect() as con:
        if db.dialect == "sqlite":
            server = f"SQLite {con.execute('SELECT sqlite_version()').fetchone()[0]}"
        else:
            server = f"PostgreSQL {con.execute('SHOW server_version').fetchone()[0]}"
        have = {store.name: records.Database(url, store).schema_version() for store in stores}
        if db.dialect == "sqlite":
            old = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='datasets'").fetchone()
        else:
            old = con.execute("SELECT to_regclass('datasets')").fetchone()[0]
        postgis = None
        standby = False
        standbys: list[Any] = []
        if db.dialect == "postgresql":
            installed = con.execute("SELECT extversion FROM pg_extension WHERE extname='postgis'").fetchone()
            available = con.execute("SELECT default_version FROM pg_available_extensions WHERE name='postgis'"
                                    ).fetchone()
            postgis = (installed[0] if installed else None, available[0] if available else None)
            standby = bool(con.execute("SELECT pg_is_in_recovery()").fetchone()[0])
            if not standby:
                standbys = con.execute(
                    "SELECT application_name, host(client_addr), state, sync_state,"
                    " EXTRACT(EPOCH FROM replay_lag)::float8,"
                    " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8"
                    " FROM pg_stat_replication ORDER BY application_name").fetchall()
    want = {s.name: s.version for s in stores}
    behind = [f"{k} {v} of {want[k]}" for k, v in have.items() if 0 < v < want[k]]
    ahead = [f"{k} {v} (this citytwin knows {want[k]})" for k, v in have.items() if v > want[k]]
    versions = ", ".join(f"{k} {v}" for k, v in have.items() if v)
    out: list[Check] = []
    if standby:
        out.append(Check("records", "fail", f"{shown} ({server}) is a read-only hot standby (a replica): "
                         "citytwin writes its records to the primary",
                         "set --database / CITYTWIN_DATABASE to the primary's URL; check a replica with "
                         "`citytwin doctor --replica URL`"))
    elif ahead:
        out.append(Check("records", "fail", f"{shown} ({server}) was written by a newer citytwin: {', '.join(ahead)}",
                         "upgrade citytwin on this machine"))
    elif not have["catalog"] and old:
        out.append(Check("records", "warn", f"{shown} ({server}) holds a catalog from before schema versions",
                         "open the workspace once with this citytwin (migrations run when it opens)"))
    elif not have["catalog"]:
        out.append(Check("records", "fail", f"{shown} ({server}) holds no citytwin catalog",
                         "create the workspace with `citytwin init DIR --database URL`"))
    elif behind:
        out.append(Check("records", "warn", f"{shown} ({server}) schema behind: {', '.join(behind)}",
                         "open the workspace once with this citytwin (migrations run when it opens)"))
    else:
        out.append(Check("records", "ok", f"{shown} ({server}), schema versions: {versions}"))
    if standbys:
        out.append(_replication(standbys))
    if postgis is not None:
        inst, avail = postgis
        if inst:
            out.append(Check("postgis", "ok", f"PostGIS {inst} installed"))
        elif avail:
            out.append(Check("postgis", "warn", f"PostGIS {avail} is available but not installed in this database",
                             "run `CREATE EXTENSION postgis;` in it as its owner"))
        else:
            out.append(Check("postgis", "warn", "PostGIS is not available on this server",
                             "install it (Debian: apt install postgresql-15-postgis-3), then CREATE EXTENSION postgis"))
    return out


def _replication(rows: list[Any]) -> Check:
    """The ``replication`` check of a primary from its ``pg_stat_replication`` rows."""
    parts, worst = [], "ok"
    for name, addr, state, sync, lag_s, behind in rows:
        if state is None:  # the role may not read other sessions' replication details
            parts.append(f"{name or '?'}: connected (state not visible to this role)")
            worst = "warn"
            continue
        lag = f", replay lag {lag_s:.3f} s" if lag_s is not None else ""
        gap = f", {int(behind):,} bytes behind" if behind is not None else ""
        parts.append(f"{name or '?'} ({addr or 'local'}) {state}, {sync}{lag}{gap}")
        if state != "streaming" or (behind is not None and behind > REPLICA_WARN_BYTES):
            worst = "warn"
    detail = f"{len(rows)} standby(s): " + "; ".join(parts)
    fix = None if worst == "ok" else ("a standby that is not streaming or far behind serves old records: check "
                                      "its log and network (grant pg_read_all_stats to see every detail)")
    return Check("replication", worst, detail, fix)


def check_replica(url: str, primary: str | None) -> Check:
    """A hot standby at ``url``: in recovery, receiving WAL, the same schema versions as this citytwin's,
    and how far its replay is behind ``primary`` (the records database, when it is PostgreSQL)."""
    from citytwin.foundation.catalog import CATALOG_STORE

    shown = records.redact(url)
    if not records.is_postgres(url):
        return Check("replica", "fail", f"{shown} is not a postgresql:// URL",
                     "give the replica's URL: postgresql://USER@HOST:PORT/DB")
    head = None
    if primary and records.is_postgres(primary):
        try:  # the primary's WAL position now (its own failure is the records check's)
            with records.Database(primary, CATALOG_STORE).connect() as con:
                head = str(con.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
        except Exception:
            head = None
    db = records.Database(url, CATALOG_STORE)
    try:
        state = _standby_state(db, head)
    except CitytwinError as exc:  # not reachable
        return Check("replica", "fail", exc.message.replace("the records database", "the replica"),
                     "check the URL, that the standby runs, accepts connections (hot_standby = on) and lets "
                     "this user in (pg_hba.conf)")
    server, standby, replay_s, receiver, behind = state
    if not standby:
        return Check("replica", "fail", f"{shown} ({server}) is not a standby: it accepts writes (a primary, or "
                     "a promoted replica)", "give a hot standby's URL (pg_is_in_recovery() is true there)")
    version = db.schema_version()  # read-only: the schema_version row, as the primary wrote it
    parts = [f"{shown} ({server}) hot standby"]
    status, fix = "ok", None
    if receiver is None or receiver[0] != "streaming":
        parts.append("not streaming WAL from a primary" + (f" (receiver {receiver[0]})" if receiver else ""))
        status, fix = "warn", "check the standby's primary_conninfo, its log and the primary's pg_hba.conf"
    else:
        parts.append(f"streaming from {receiver[1]}:{receiver[2]}" if receiver[1] else "streaming")
    if behind is not None:
        parts.append(f"replay {max(int(behind), 0):,} bytes behind the primary")
        if behind > REPLICA_WARN_BYTES:
            status, fix = "warn", "the standby is far behind: its reads show old records (disk, network, load?)"
    if replay_s is not None:
        parts.append(f"last replayed commit {replay_s:.1f} s ago (grows while the primary is idle)")
    parts.append(f"catalog schema {version}")
    if version != CATALOG_STORE.version:
        status, fix = "warn", ("the standby's catalog schema is not this citytwin's: not replayed yet (see how far "
                               "behind it is), or the URL names another database")
    return Check("replica", status, ", ".join(parts), fix)


def _standby_state(db: records.Database, head: str | None) -> tuple[str, bool, float | None, Any, float | None]:
    """A server's version, whether it is in recovery, seconds since its last replayed commit, its WAL
    receiver's (status, sender host, port) and how many bytes it has to replay up to ``head``."""
    with db.connect() as con:
        server = f"PostgreSQL {con.execute('SHOW server_version').fetchone()[0]}"
        standby, replay_s = con.execute(
            "SELECT pg_is_in_recovery(), EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8"
        ).fetchone()
        if not standby:
            return server, False, None, None, None
        receiver = con.execute("SELECT status, sender_host, sender_port FROM pg_stat_wal_receiver").fetchone()
        behind = None
        if head is not None:
            behind = float(con.execute("SELECT pg_wal_lsn_diff(?::pg_lsn, pg_last_wal_replay_lsn())::float8",
                                       (head,)).fetchone()[0])
    return server, True, replay_s, receiver, behind


def parse_broker_url(text: str) -> dict[str, Any]:
    """``mqtt[s]://[USER[:PASSWORD]@]HOST[:PORT]`` or ``HOST:PORT`` -> host, port, tls, username, password.

    Examples
    --------
    >>> parse_broker_url("mqtts://dev:pw@broker.example")
    {'host': 'broker.example', 'port': 8883, 'tls': True, 'username': 'dev', 'password': 'pw'}
    >>> parse_broker_url("127.0.0.1:1883")["port"]
    1883
    """
    from citytwin.foundation.errors import InputError

    url = text if "://" in text else f"mqtt://{text}"
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise InputError(f"broker {text!r} is not mqtt://HOST:PORT, mqtts://HOST:PORT or HOST:PORT", field="broker")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise InputError(f"broker {text!r} has no valid port", field="broker") from None
    return {"host": parts.hostname, "port": port, "tls": tls,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None}


#: queued messages (stored, not retained) above which a broker with disconnected persistent sessions warns
BROKER_QUEUE_WARN = 100_000
_SYS = "$SYS/broker/"
_SYS_TOPICS = ("store/messages/count", "store/messages/bytes", "retained messages/count", "clients/disconnected")


def check_broker(text: str | None, *, timeout: float = 10.0, queue_warn: int = BROKER_QUEUE_WARN) -> Check:
    """Connect to the MQTT broker (credentials and TLS as configured), read its statistics if allowed, and
    disconnect, without touching another client's session.

    The account is ``$CITYTWIN_MQTT_MONITOR_USERNAME`` / ``…_PASSWORD`` (a ``monitor`` account: it may read
    the broker's ``$SYS/broker/#`` statistics and nothing else), else the plain ``$CITYTWIN_MQTT_*`` ones; a URL's
    user and password come first. Where the broker ties client ids to usernames (``use_username_as_clientid``,
    as ``scripts/mosquitto.sh --auth`` configures it), connecting with the ingest's account *is* connecting as
    the ingest: a clean start would discard its session and the messages queued for it. So the doctor
    connects without a clean start, with the session expiry the ingest sets, acknowledges nothing and
    subscribes to nothing when the broker says a session was there (it then warns: the ingest, if running, was
    disconnected for a moment and reconnects; what it had not acknowledged is delivered again). A session
    of its own (none was there) is subscribed to the statistics and ended at the disconnect.

    With the statistics: a warning when messages are queued (``queue_warn`` or more, not counting retained ones)
    while clients with persistent sessions are disconnected — a stopped ingest, or a client that left its
    session behind: Mosquitto writes every queued message at each autosave, stalling the broker meanwhile.
    """
    if not text:
        return Check("mqtt", "warn", "no MQTT broker configured",
                     f"set {ENV_BROKER}=mqtt://HOST:PORT (or pass --broker) to check the live ingest's broker")
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from citytwin.foundation.mqtt import SESSION_NEVER_EXPIRES, MqttAuth

    b = parse_broker_url(text)
    given = {k: b[k] for k in ("username", "password") if b[k]}
    auth = MqttAuth.from_env(**given) if given else MqttAuth.from_env(role="monitor", fallback=MqttAuth.from_env())
    if b["tls"] and not auth.tls:
        auth = MqttAuth(auth.username, auth.password, tls_ca=_system_ca(), tls_cert=auth.tls_cert,
                        tls_key=auth.tls_key)
    shown = f"{'mqtts' if auth.tls else 'mqtt'}://{b['host']}:{b['port']}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"citytwin-doctor-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5, manual_ack=True)  # nothing delivered to it is acknowledged
    auth.apply(client)
    done, subscribed = threading.Event(), threading.Event()
    result: dict[str, Any] = {}
    stats: dict[str, str] = {}

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        result["reason"], result["taken"] = reason, bool(flags.session_present)
        done.set()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        if msg.topic.startswith(_SYS):
            stats[msg.topic[len(_SYS):]] = msg.payload.decode("utf-8", "replace")
            if len(stats) == len(_SYS_TOPICS):
                subscribed.set()

    client.on_connect, client.on_message = on_connect, on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call,unused-ignore]
    props.SessionExpiryInterval = SESSION_NEVER_EXPIRES  # what the ingest sets: its session is left as it was
    try:
        client.connect(b["host"], b["port"], keepalive=10, clean_start=False, properties=props)
    except OSError as exc:
        return Check("mqtt", "fail", f"cannot reach {shown}: {exc.strerror or exc}",
                     "check the broker's address and port and that it runs (systemctl status mosquitto)")
    client.loop_start()
    end = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call,unused-ignore]
    end.SessionExpiryInterval = 0
    try:
        if not done.wait(timeout):
            return Check("mqtt", "fail", f"{shown} did not answer within {timeout:g} s",
                         "check the port (TLS or not) and any firewall between")
        if not result["reason"].is_failure and not result["taken"]:
            client.subscribe([(_SYS + t, 0) for t in _SYS_TOPICS])
            subscribed.wait(min(timeout, 1.0))  # retained: they come at once where the account may read them
    finally:
        if result.get("taken"):
            client.disconnect()  # the session stays, with the expiry it had
        else:
            client.disconnect(properties=end)  # the doctor's own session: ended
        client.loop_stop()
    reason = result["reason"]
    if reason.is_failure:
        return Check("mqtt", "fail", f"{shown} refused the connection: {reason}",
                     "check the MQTT username and password (CITYTWIN_MQTT_USERNAME / CITYTWIN_MQTT_PASSWORD) "
                     "and the broker's password file (`citytwin twin devices broker-files`)")
    who = f" as {auth.username}" if auth.username else " anonymously"
    base = f"{shown} accepted a connection{who}{' over TLS' if auth.tls else ''}"
    if result["taken"]:
        return Check("mqtt", "warn", f"{base}, whose client id already had a session on the broker (the broker ties "
                     "client ids to usernames: this is another client's account, e.g. the ingest's); the doctor "
                     "kept that session, acknowledged nothing and read no statistics, but a client using it was "
                     "disconnected for a moment",
                     "give the doctor its own account: citytwin twin devices add --service monitor, then "
                     "CITYTWIN_MQTT_MONITOR_USERNAME / CITYTWIN_MQTT_MONITOR_PASSWORD from "
                     "`citytwin twin devices credentials citytwin-monitor --json`")
    return _queue_check(base, stats, queue_warn)


def _queue_check(base: str, stats: dict[str, str], queue_warn: int) -> Check:
    """The broker's queue from its ``$SYS`` statistics (see :func:`check_broker`)."""
    try:
        count, size, retained, away = (int(float(stats[t])) for t in _SYS_TOPICS)
    except (KeyError, ValueError):
        return Check("mqtt", "ok", f"{base} (its statistics not readable by this account)")
    queued = max(count - retained, 0)
    detail = (f"{base}; {queued:,} messages queued or in flight ({size / 2**20:,.1f} MiB stored), "
              f"{away:,} disconnected clients with persistent sessions")
    if away and queued >= queue_warn:
        return Check("mqtt", "warn", detail + ": the broker writes every queued message at each autosave, and "
                     "stops forwarding while it does (stalls that grow with the queue)",
                     "start the ingest if it is stopped; otherwise a client left a persistent session behind: "
                     "end it (connect with its client id and a clean start) or set persistent_client_expiration "
                     "in mosquitto.conf")
    return Check("mqtt", "ok", detail)


def _system_ca() -> str | None:
    import ssl

    paths = ssl.get_default_verify_paths()
    return paths.cafile or None


def check_chromium() -> Check:
    from citytwin.workflows.report import chromium_path

    exe = chromium_path()
    if exe is None:
        return Check("chromium", "warn", "Chromium not found: reports can be made as HTML but not as PDF",
                     "install it (Debian: apt install chromium) or set CITYTWIN_CHROMIUM to its path")
    return Check("chromium", "ok", exe)


def check_disk(root: Path) -> Check:
    where = root if root.exists() else Path.cwd()
    free = shutil.disk_usage(where).free
    detail = f"{free / 2**30:.1f} GiB free at {where}"
    if free < DISK_FAIL:
        return Check("disk", "fail", detail, "free space: ingest stages data in WS/tmp before it commits")
    if free < DISK_WARN:
        return Check("disk", "warn", detail, "free space soon: ingest and history compaction need room")
    return Check("disk", "ok", detail)


def check_twin(root: Path) -> Check | None:
    """Which process keeps the twin's alerts (``foundation.timeseries.writerlock``): the live process that evaluates
    its rules; None where the workspace has no twin alerts yet."""
    from citytwin.foundation.timeseries.writerlock import WriterLock

    store = root / "twin" / "alerts.sqlite"
    if not store.exists():
        return None
    holder = WriterLock(store.with_name(store.name + ".lock")).holder()
    if holder is None:
        return Check("twin", "warn", "no running process keeps the twin's alerts: readings that arrive now raise none",
                     "start the live process: citytwin serve --broker HOST:PORT (docs/deployment.md, section 3)")
    return Check("twin", "ok", f"the twin's alerts are kept by {holder}")


def run_checks(workspace: Path | None, *, database: str | None = None, broker: str | None = None,
               timeout: float = 10.0, replicas: Sequence[str] = ()) -> list[Check]:
    """All checks of a deployment (the workspace folder, if given, supplies the database setting;
    ``replicas``: URLs of hot standbys of the records database, each checked against it)."""
    root = Path(workspace).resolve() if workspace else None
    out: list[Check] = []
    if root is not None:
        out.append(_guard("workspace", lambda: check_workspace(root)))
    setting = _settings(root).get("database") if root is not None else None
    url = None
    if database or os.environ.get(records.ENV_DATABASE) or setting or root is not None:
        url = records.resolve_url(database, setting, (root or Path.cwd()) / "catalog.sqlite")
    if url is None:
        out.append(Check("records", "fail", "no workspace and no records database given",
                         "pass --workspace DIR and/or --database URL (or set CITYTWIN_DATABASE)"))
    else:
        try:
            out.extend(check_records(url))
        except CitytwinError as exc:
            out.append(Check("records", "fail", exc.message, exc.hint))
        except Exception as exc:
            out.append(Check("records", "fail", f"{records.redact(url)}: {type(exc).__name__}: {exc}"))
    from citytwin.foundation import postgis

    if url is not None and postgis.switched_on(_settings(root) if root is not None else {}):
        out.append(_guard("serving", lambda: Check("serving", "ok", postgis.status(url or ""))))
    own = root / "catalog.sqlite" if root is not None and not setting else None  # records still embedded
    if own is not None and own.exists() and url != f"sqlite:///{own}" and records.is_postgres(url or ""):
        which = "--database" if database else records.ENV_DATABASE
        out.append(Check("embedded", "warn", f"the workspace's records are still in SQLite ({own}) while {which} "
                         f"points to {records.redact(url or '')}: citytwin uses the latter for this workspace",
                         f"move them there: citytwin records move -w {root} --to URL; or drop {which}"))
    out.extend(_guard("replica", functools.partial(check_replica, r, url)) for r in replicas)
    if root is not None and (twin := check_twin(root)) is not None:
        out.append(twin)
    out.append(_guard("mqtt", lambda: check_broker(broker or os.environ.get(ENV_BROKER), timeout=timeout)))
    out.append(_guard("chromium", check_chromium))
    out.append(_guard("disk", lambda: check_disk(root or Path.cwd())))
    return out
