"""MQTT transport (paho-mqtt 2.2): an at-least-once ingest client and a replay publisher.

Ingest (:class:`MqttIngest`) guarantees that no acknowledged message is lost:

* QoS 1 subscription, MQTT v5 persistent session (``clean_start=False``, session expiry
  "never") under a fixed client id, so the broker keeps queueing while the ingest process
  is down and redelivers what was not acknowledged;
* manual acknowledgement: messages are collected into a batch; the batch is handed to
  ``handler`` (which must store it durably, e.g. :meth:`Ingestor.ingest`) and only when the
  handler returns are the messages' PUBACKs sent. The handler runs in a store thread while
  the network thread receives the next batch (one batch stored at a time; PUBACKs in order,
  from the network thread). A crash before the PUBACK means redelivery,
  and the history store's idempotent key ``(entity, property, time)`` makes the redelivered
  copy count once;
* on a lost connection the unflushed batch is dropped (it was not acknowledged: the broker
  redelivers it) and the client reconnects with backoff;
* the handler must turn every message it cannot store into a dead letter (the twin's parser
  does: malformed, too deep, implausible ...), so an exception from it is a store failure
  (disk full, read-only folder): the batch is retried ``store_retries`` times, then ingest
  **stops** with :attr:`MqttIngest.failure` set and logged, leaving the batch unacknowledged
  in the broker's session, instead of taking redeliveries in a loop.

Broker settings that matter (``scripts/mosquitto.sh`` writes them): ``persistence true`` so
queued messages survive a broker restart, ``max_queued_messages 0`` (no cap on what is
queued for an offline session: mosquitto's default of 1000 drops the rest) and
``max_inflight_messages 0``. With a broker limiting in-flight messages to N, batches hold at
most N messages and are flushed by time (``max_delay``); nothing is lost, only slower.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from citytwin.foundation.errors import CitytwinError, InputError
from citytwin.foundation.mqtt_receive import _ReceiveClient

log = logging.getLogger(__name__)
SESSION_NEVER_EXPIRES = 0xFFFFFFFF
#: a connection the broker ends within this many seconds of making it is short; ``TAKEOVER_RUN`` short ones in a row
#: are what two clients with one client id look like (Mosquitto 2.0 closes the older connection without a reason
#: code, and each client's reconnect takes the session back: connections of ~0.1 s, two audit rows each, messages
#: going to either): the ingest then says so once and waits ``TAKEOVER_BACKOFF`` s before each reconnect until a
#: connection lasts
TAKEOVER_S = 10.0
TAKEOVER_RUN = 3
TAKEOVER_BACKOFF = 5.0
Handler = Callable[[Sequence[tuple[str, bytes]]], Any]


def parse_broker(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``, port 1883) -> (host, port).

    Examples
    --------
    >>> parse_broker("127.0.0.1:18830")
    ('127.0.0.1', 18830)
    """
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "1883")
    try:
        p = int(port)
    except ValueError as exc:
        raise InputError(f"broker {text!r} is not HOST:PORT", field="broker") from exc
    if not host or not 0 < p < 65536:
        raise InputError(f"broker {text!r} is not HOST:PORT", field="broker")
    return host, p


#: environment variables read by :meth:`MqttAuth.from_env`
ENV_USERNAME, ENV_PASSWORD = "CITYTWIN_MQTT_USERNAME", "CITYTWIN_MQTT_PASSWORD"
ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY = "CITYTWIN_MQTT_TLS_CA", "CITYTWIN_MQTT_TLS_CERT", "CITYTWIN_MQTT_TLS_KEY"


@dataclass(frozen=True)
class MqttAuth:
    """Credentials and TLS of an MQTT client (all optional).

    Parameters
    ----------
    username, password
        The account (``citytwin twin devices credentials NAME`` issues them). With the broker
        ``scripts/mosquitto.sh`` configures (``use_username_as_clientid true``) the username is
        also the client id, so no other account can take over this client's session.
    tls_ca
        CA certificate (PEM) that signed the broker's certificate: TLS is on when it is given.
    tls_cert, tls_key
        Client certificate and key (PEM), for brokers that require them.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, role: str | None = None,
                 fallback: MqttAuth | None = None, **given: str | None) -> MqttAuth:
        """Values ``given`` (e.g. CLI options) or, where None, from ``CITYTWIN_MQTT_USERNAME``,
        ``CITYTWIN_MQTT_PASSWORD``, ``CITYTWIN_MQTT_TLS_CA``, ``…_TLS_CERT``, ``…_TLS_KEY``.

        With ``role="alerts"`` the account comes from ``CITYTWIN_MQTT_ALERTS_USERNAME`` /
        ``…_ALERTS_PASSWORD`` (the alert publisher needs its own account where client ids are
        tied to usernames); without those, from ``fallback`` (or the plain variables). TLS is shared.

        Examples
        --------
        >>> MqttAuth.from_env({"CITYTWIN_MQTT_USERNAME": "u", "CITYTWIN_MQTT_PASSWORD": "p"}, username="v")
        MqttAuth(username='v', tls_ca=None, tls_cert=None, tls_key=None)
        >>> MqttAuth.from_env({"CITYTWIN_MQTT_USERNAME": "u", "CITYTWIN_MQTT_ALERTS_USERNAME": "a"},
        ...                   role="alerts").username
        'a'
        """
        e = os.environ if env is None else env
        names = {"username": ENV_USERNAME, "password": ENV_PASSWORD, "tls_ca": ENV_TLS_CA,
                 "tls_cert": ENV_TLS_CERT, "tls_key": ENV_TLS_KEY}
        if role is not None:
            tag = f"CITYTWIN_MQTT_{role.upper()}_"
            own = {k: e.get(tag + k.upper()) or None for k in ("username", "password")}
            if own["username"] is not None:
                given = {**own, **{k: v for k, v in given.items() if v is not None}}
            elif fallback is not None:
                return fallback
        vals = {k: given.get(k) if given.get(k) is not None else (e.get(v) or None) for k, v in names.items()}
        return cls(**vals)

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None

    def apply(self, client: mqtt.Client) -> None:
        """Set the credentials and TLS on a paho client (before it connects)."""
        if self.password is not None and self.username is None:
            raise InputError("an MQTT password needs a username", field="username",
                             hint=f"pass --username or set {ENV_USERNAME}")
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InputError("a TLS client certificate needs its key (and the key its certificate)",
                             field="tls_key" if self.tls_key is None else "tls_cert")
        if self.tls_cert is not None and self.tls_ca is None:
            raise InputError("a TLS client certificate needs the broker's CA (--tls-ca)", field="tls_ca")
        if self.tls_ca is not None:
            for what, path in (("tls_ca", self.tls_ca), ("tls_cert", self.tls_cert), ("tls_key", self.tls_key)):
                if path is not None and not os.path.isfile(path):
                    raise InputError(f"{what} file {path} does not exist", file=path, field=what)
            try:
                client.tls_set(ca_certs=self.tls_ca, certfile=self.tls_cert, keyfile=self.tls_key,
                               cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (ssl.SSLError, ValueError) as exc:
                raise InputError(f"TLS files not usable: {exc}", file=self.tls_ca, field="tls_ca") from exc


class MqttConnectError(CitytwinError, ConnectionError):
    """The broker could not be reached, or refused the client (credentials, TLS, ACL); the CLI prints it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="check --broker, the MQTT credentials (--username, $CITYTWIN_MQTT_PASSWORD) "
                                       "and TLS options (--tls-ca), and the broker's log")


def _client(client_id: str, auth: MqttAuth | None, **kw: Any) -> mqtt.Client:
    """A paho MQTT v5 client with ``auth`` applied (None: :meth:`MqttAuth.from_env`)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **kw)
    (MqttAuth.from_env() if auth is None else auth).apply(client)
    return client


def _refusal(reason: Any) -> str:
    text = str(reason)
    if text in ("Not authorized", "Bad user name or password"):
        return (f"the broker refused the connection: {text} (check the MQTT username/password, "
                f"{ENV_USERNAME}/{ENV_PASSWORD}, and the broker's password file)")
    return f"the broker refused the connection: {text}"


def _connect_props(session_expiry: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call,unused-ignore]
    props.SessionExpiryInterval = session_expiry
    props.ReceiveMaximum = 65535
    return props


@dataclass
class IngestStats:
    """Counters of an ingest client."""

    received: int = 0
    acked: int = 0
    batches: int = 0
    dropped_unacked: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)


class _StoreFailed(Exception):
    """The handler kept failing on a batch (its ``__cause__``)."""


class IngestFailed(CitytwinError):
    """MQTT ingest stopped because a batch could not be stored (see :attr:`MqttIngest.failure`)."""


class MqttIngest:
    """Subscribe with QoS 1 and a persistent session; store each batch, then acknowledge it.

    Parameters
    ----------
    host, port
        Broker address.
    handler
        Called with a batch of ``(topic, payload)``; must store it durably before returning.
        If it raises, the batch is not acknowledged (it will be redelivered) and the client
        disconnects and reconnects.
    topics
        Subscriptions (QoS 1), default ``citytwin/#``.
    client_id
        Fixed id of the persistent session; two ingest processes need two ids (or a shared
        subscription ``$share/group/citytwin/#``).
    max_batch
        Messages per batch.
    max_delay
        Seconds a message may wait in a batch before the batch is flushed.
    min_batch
        While no batch is being stored, a batch of this many messages goes to the store at once (a burst is not
        held for ``max_delay``; slower traffic is batched by time). Default ``max_batch // 8``.
    auth
        Credentials and TLS (None: from the environment, :meth:`MqttAuth.from_env`).
    on_event
        Called as ``on_event(action, outcome, username, detail)`` on each connect (``mqtt.connect``) and
        subscription (``mqtt.subscribe``), accepted (``ok``) or refused (``denied``), on each connection the
        broker ended (``mqtt.disconnect``, ``error``) and once for ``TAKEOVER_RUN`` such connections in a row that
        each lasted less than ``TAKEOVER_S`` (``mqtt.takeover``: another client with this client id): the runtime
        writes them to the catalog's audit log.
    store_retries
        Attempts after a failed ``handler`` call before ingest stops (see :attr:`failure`).
    """

    def __init__(self, host: str, port: int, handler: Handler, *, topics: Sequence[str] = ("citytwin/#",),
                 client_id: str = "citytwin-ingest", max_batch: int = 2000, max_delay: float = 0.1,
                 keepalive: int = 30, session_expiry: int = SESSION_NEVER_EXPIRES, auth: MqttAuth | None = None,
                 on_event: Callable[[str, str, str | None, str], None] | None = None,
                 store_retries: int = 2, min_batch: int | None = None) -> None:
        self.host, self.port = host, port
        self.handler = handler
        self.topics = list(topics)
        self.client_id = client_id
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.min_batch = max(1, max_batch // 8) if min_batch is None else max(1, min(min_batch, max_batch))
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.stats = IngestStats()
        self.store_retries = store_retries
        #: why ingest stopped by itself (a store failure), or None
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[tuple[int, int, str, bytes]] = []
        self._first_t = 0.0
        self._work: queue.Queue[tuple[int, list[tuple[int, int, str, bytes]]] | None] = queue.Queue()
        self._done: queue.Queue[tuple[int, list[tuple[int, int, str, bytes]], _StoreFailed | None]] = queue.Queue()
        self._inflight = 0  # batches handed to the store thread and not yet acknowledged
        self._gen = 0  # connection generation (acks only for batches received on the current one)
        self._connected = threading.Event()
        self.auth = MqttAuth.from_env() if auth is None else auth
        self.on_event = on_event
        self._refused: str | None = None
        self._last_event: tuple[str, str] | None = None
        self.clock: Callable[[], float] = time.monotonic
        self._up_at: float | None = None  # when the current connection was made
        self._short = 0  # connections in a row the broker ended within TAKEOVER_S of making them
        self._said: tuple[str, float] = ("", 0.0)  # the connection problem last logged as a warning, and when
        self.client = _ReceiveClient(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                     manual_ack=True)
        self.auth.apply(self.client)
        self.client.on_message = self._on_message
        self.client.fast = self._on_publish
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    # -- callbacks (run in the loop thread) ----------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        who = f"{self.client_id} at {self.host}:{self.port}{' (TLS)' if self.auth.tls else ''}"
        if reason.is_failure:
            self.stats.errors.append(f"connect refused: {reason}")
            self._refused = _refusal(reason)
            self._event("mqtt.connect", "denied", f"{who}: {reason}")
            return
        self._refused = None
        self._up_at = self.clock()
        self._event("mqtt.connect", "ok", who)
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        bad = [r for r in reasons if r.is_failure]
        if bad:
            self.stats.errors.append(f"subscribe refused: {bad}")
            self._refused = f"the broker refused the subscription to {', '.join(self.topics)}: {bad[0]}"
            self._event("mqtt.subscribe", "denied", f"{', '.join(self.topics)}: {bad}")
            return
        self._event("mqtt.subscribe", "ok", ", ".join(self.topics))
        self._connected.set()

    def _event(self, action: str, outcome: str, detail: str) -> None:
        # a refusal repeated by the reconnect loop is recorded once, until something else happens
        last, self._last_event = self._last_event, (action, outcome)
        if outcome != "ok" and last == (action, outcome):
            return
        if self.on_event is not None:
            try:
                self.on_event(action, outcome, self.auth.username, detail)
            except Exception as exc:  # an audit failure must not kill the network loop
                log.error("mqtt audit hook failed: %s", exc)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        up, self._up_at = self._up_at, None
        if up is None:  # a connection the broker never accepted (refused: that is audited, once, as mqtt.connect)
            return
        if not self._stop.is_set() and getattr(reason, "is_failure", False):
            # the connection was lost or ended by the broker (Mosquitto 2.0 just closes it when another client
            # connects with this client id, which is the account's username on a broker that ties them: paho
            # then says "Unspecified error"): audited, then reconnected
            detail = f"{self.client_id} at {self.host}:{self.port}: connection lost ({reason})"
            log.warning("MQTT ingest disconnected by the broker: %s", detail)
            self._event("mqtt.disconnect", "error", detail)
            self._short = self._short + 1 if self.clock() - up < TAKEOVER_S else 0
            if self._short == TAKEOVER_RUN:
                why = (f"{self.client_id} at {self.host}:{self.port}: the broker ended {TAKEOVER_RUN} connections in a "
                       f"row within {TAKEOVER_S:.0f} s of making them: another client is probably connected with the "
                       f"client id {self.client_id!r} (two ingests with one account or one --client-id take the "
                       f"session from each other, and messages go to either), or the network drops the connection; "
                       f"stop the other client or give it its own account. Reconnecting every "
                       f"{TAKEOVER_BACKOFF:.0f} s until a connection lasts")
                log.error("MQTT ingest: %s", why)
                self.stats.errors.append(why[:300])
                self._event("mqtt.takeover", "error", why)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not self._pending:
            self._first_t = time.monotonic()
        self._pending.append((msg.mid, msg.qos, msg.topic, bytes(msg.payload)))
        self.stats.received += 1

    def _on_publish(self, mid: int, topic: str, payload: bytes) -> None:
        """A QoS 1 message taken by the client's short path (:class:`_ReceiveClient`), as ``_on_message`` takes it."""
        if not self._pending:
            self._first_t = time.monotonic()
        self._pending.append((mid, 1, topic, payload))
        self.stats.received += 1

    # -- loop --------------------------------------------------------------------------
    def _store(self, batch: list[tuple[int, int, str, bytes]]) -> None:
        """Hand a batch to the handler, retrying; _StoreFailed when it keeps failing."""
        msgs = [(t, p) for _, _, t, p in batch]
        for attempt in range(self.store_retries + 1):
            try:
                self.handler(msgs)
                return
            except Exception as exc:
                self.stats.errors.append(repr(exc)[:300])
                if attempt == self.store_retries or self._stop.is_set():
                    raise _StoreFailed(exc) from exc
                self._stop.wait(0.2 * 2 ** attempt)

    def _ack(self, batch: list[tuple[int, int, str, bytes]]) -> None:
        client = self.client
        if isinstance(client, _ReceiveClient) and all(qos <= 1 for _, qos, _, _ in batch):
            client.ack_many([mid for mid, qos, _, _ in batch if qos == 1])  # one write, the same PUBACKs in order
        else:
            for mid, qos, _, _ in batch:
                if qos > 0:
                    client.ack(mid, qos)
        self.stats.acked += len(batch)
        self.stats.batches += 1

    def _flush(self) -> None:
        """Store the pending batch in this thread, then acknowledge it (the final flush at stop)."""
        batch = self._pending
        self._store(batch)
        self._pending = []
        self._ack(batch)

    def _writer(self) -> None:
        """The store thread: stores handed-off batches one at a time, in order."""
        while True:
            item = self._work.get()
            if item is None:
                return
            gen, batch = item
            err: _StoreFailed | None = None
            try:
                self._store(batch)
            except _StoreFailed as exc:
                err = exc
            except BaseException as exc:  # reported to the loop thread, which stops
                err = _StoreFailed(exc)
                err.__cause__ = exc
            self._done.put((gen, batch, err))
            if isinstance(self.client, _ReceiveClient):  # its PUBACKs go out now, not at the loop's next timeout
                self.client.wake()

    def _collect(self, wait: float = 0.0) -> None:
        """Acknowledge the batches the store thread finished (in order; only those received on the current
        connection: after a reconnect the broker redelivers the others, stored twice and counted once)."""
        while self._inflight:
            try:
                gen, batch, err = self._done.get(timeout=wait) if wait > 0 else self._done.get_nowait()
            except queue.Empty:
                return
            self._inflight -= 1
            if err is not None:
                self._pending = batch + self._pending  # for the log: what stays unacknowledged
                raise err
            if gen == self._gen:
                self._ack(batch)
            else:
                self.stats.dropped_unacked += len(batch)
            wait = 0.0

    def _drop_pending(self) -> None:
        self.stats.dropped_unacked += len(self._pending)
        self._pending = []

    def connect(self) -> None:
        self.client.connect(self.host, self.port, keepalive=self.keepalive, clean_start=False,
                            properties=_connect_props(self.session_expiry))

    def run(self) -> None:
        """Run until :meth:`stop` (blocking). Reconnects on connection loss.

        Receiving and storing overlap: a due batch goes to a store thread while this thread keeps receiving
        the next one; at most one batch is being stored, and while it is, the next batch grows up to
        ``max_batch`` (then receiving pauses until the store is done). Acknowledgements are sent from this
        thread, in order, once a batch is stored (the store thread wakes it).
        """
        self._work = queue.Queue()
        self._done = queue.Queue()
        self._inflight = 0
        writer = threading.Thread(target=self._writer, name="citytwin-mqtt-store", daemon=True)
        writer.start()
        backoff = 0.1
        connected_once = False
        try:
            while not self._stop.is_set():
                try:
                    if not connected_once:
                        self.connect()
                        connected_once = True
                    self._collect()
                    if self._inflight and len(self._pending) >= self.max_batch:
                        # the next batch is full while one is stored: wait for it (keepalive goes on)
                        self._collect(wait=0.05)
                        self.client.loop_misc()
                        self.client.loop_write()
                        continue
                    rc = self.client.loop(timeout=0.02)
                    # drain what is already buffered without waiting on select again
                    n = 0
                    while (rc == MQTTErrorCode.MQTT_ERR_SUCCESS and n < 512
                           and len(self._pending) < (self.max_batch if self._inflight else self.min_batch)
                           and self._readable()):
                        rc = self.client.loop_read()
                        n += 1
                    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        raise ConnectionError(f"mqtt loop: {rc}")
                    if self._pending and not self._inflight and (
                            len(self._pending) >= self.min_batch or time.monotonic() - self._first_t >= self.max_delay):
                        # (the client reads the socket in chunks: a chunk may take the batch past max_batch)
                        batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
                        self._work.put((self._gen, batch))
                        self._inflight += 1
                    self.client.loop_write()
                    if self._connected.is_set():  # (not while the broker refuses: each refusal waits longer, to 2 s)
                        backoff = 0.1
                except _StoreFailed as exc:  # not a connection problem: stop, the broker keeps the batch
                    self.failure = exc.__cause__
                    log.error("MQTT ingest stopped: %s (%d messages left unacknowledged in the broker's session)",
                              exc.__cause__, len(self._pending))
                    self._connected.clear()
                    self._stop.set()
                    break
                except Exception as exc:  # connection loss: nothing of the pending batch was acked
                    self.stats.errors.append(repr(exc)[:300])
                    self._drop_pending()
                    self._gen += 1  # a batch being stored now is not acknowledged on the next connection
                    self._connected.clear()
                    if self._stop.is_set():
                        break
                    wait = TAKEOVER_BACKOFF if self._short >= TAKEOVER_RUN else backoff
                    # said at once, then while it repeats once a minute (a broker away for hours: not every 2 s)
                    said, now = f"{exc}", time.monotonic()
                    quiet = said == self._said[0] and now - self._said[1] < 60.0
                    log.log(logging.DEBUG if quiet else logging.WARNING,
                            "mqtt connection problem (%s); reconnecting in %.1fs", exc, wait)
                    if not quiet:
                        self._said = (said, now)
                    self._stop.wait(wait)
                    backoff = min(backoff * 2, 2.0)
                    try:
                        if connected_once:
                            self.client.reconnect()
                        else:
                            self.connect()
                            connected_once = True
                        self.stats.reconnects += 1
                    except OSError:
                        pass
            # final flush: the batch being stored, then what was received, then a clean disconnect (session kept)
            try:
                if self.failure is None:
                    while self._inflight:
                        self._collect(wait=0.5)
                    if self._pending and self._connected.is_set():
                        self._flush()
                    self.client.loop_write()
                    self._acks_taken()
            except _StoreFailed as exc:
                self.failure = exc.__cause__
                log.error("MQTT ingest stopped: %s", exc.__cause__)
        finally:
            self._work.put(None)
            self._drop_pending()
            try:
                self.client.disconnect()
                self.client.loop(timeout=0.1)
            except OSError:
                pass
            writer.join(30)

    def _acks_taken(self, timeout: float = 2.0) -> bool:
        """Ping the broker and wait for its answer (at most ``timeout`` s) before the clean disconnect.

        A broker handles a connection's packets in order, so once the PINGRESP is here it has taken every PUBACK
        sent before it. Without this, a new connection under the same client id right after a stop can take the
        session over before the broker has read the last PUBACKs (dropped with the old connection), and
        acknowledged messages are delivered again (Mosquitto 2.0, ``tests/twin/test_mqtt_receive.py``)."""
        c = self.client
        if not self._connected.is_set() or c._send_pingreq() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        deadline = time.monotonic() + timeout
        while c._ping_t and time.monotonic() < deadline:
            if c.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return False
        return not c._ping_t

    def _readable(self) -> bool:
        sock = self.client.socket()
        if sock is None:
            return False
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted, which select cannot see
        if pending is not None and pending() > 0:
            return True
        r, _, _ = select.select([sock], [], [], 0)
        return bool(r)

    def start(self, wait_connected: float = 10.0, *, background: bool = False) -> MqttIngest:
        """Run in a background thread; wait until connected and subscribed (SUBACK received).

        The broker keeps messages for this client id only once its session exists, i.e. after
        the first subscription: start ingest before the feed, once; from then on it may stop
        and restart without losing anything.

        ``background``: where the broker cannot be reached or refuses the connection within ``wait_connected``
        seconds, say so in the log and go on connecting in the background (every 2 s; a refusal is audited once)
        instead of raising: a server then serves its API while the broker is away, and its ingest starts when the
        broker answers (:attr:`connected`).
        """
        self._thread = threading.Thread(target=self.run, name="citytwin-mqtt-ingest", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + wait_connected
        while not self._connected.wait(0.05):
            if self.failure is not None:
                raise IngestFailed(f"MQTT ingest stopped: {self.failure}") from self.failure
            if (self._refused is not None and not background) or time.monotonic() > deadline \
                    or not self._thread.is_alive():
                why = self._refused or (self.stats.errors[-1] if self.stats.errors else "no answer")
                if background and self._thread.is_alive():
                    log.warning("MQTT broker %s:%s not connected (%s): serving without it, connecting in the "
                                "background", self.host, self.port, why)
                    return self
                self._stop.set()
                raise MqttConnectError(f"could not connect to MQTT broker {self.host}:{self.port}: {why}")
        return self

    @property
    def connected(self) -> bool:
        """Whether the ingest is connected and subscribed now."""
        return self._connected.is_set()

    @property
    def refused(self) -> str | None:
        """Why the broker refused the last connection attempt (None: it did not, or a later one succeeded)."""
        return self._refused

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


class MqttPublisher:
    """QoS 1 publisher with a persistent session (unacknowledged messages are resent after a reconnect).

    Parameters
    ----------
    host, port
        Broker address.
    client_id
        Fixed id so that, after a broker restart, in-flight messages are resent under the same session.
    max_inflight
        Unacknowledged messages allowed at once; :meth:`publish` waits for acknowledgements
        beyond that. (The window is kept here, not in paho, whose own queue costs O(n) per
        acknowledgement.)
    auth
        Credentials and TLS (None: from the environment, :meth:`MqttAuth.from_env`).
    """

    def __init__(self, host: str, port: int, *, client_id: str = "citytwin-replay", max_inflight: int = 5000,
                 keepalive: int = 30, auth: MqttAuth | None = None, background: bool = False) -> None:
        self.auth = MqttAuth.from_env() if auth is None else auth
        self.client = _client(client_id, self.auth)
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.max_inflight = max(1, max_inflight)
        self._window: deque[mqtt.MQTTMessageInfo] = deque()
        self.sent = 0
        self._acked_popped = 0
        self._connected = threading.Event()
        self._refused: str | None = None

        def on_connect(c: mqtt.Client, u: Any, f: Any, r: Any, p: Any) -> None:
            if r.is_failure:
                self._refused = _refusal(r)
            else:
                self._connected.set()

        self.client.on_connect = on_connect
        self.client.on_disconnect = lambda c, u, f, r, p: self._connected.clear()
        if background:  # (a server's alert publisher: paho's loop connects, and reconnects, by itself; messages
            # published meanwhile wait in paho's queue)
            self.client.connect_async(host, port, keepalive=keepalive, clean_start=False,
                                      properties=_connect_props(SESSION_NEVER_EXPIRES))
            self.client.loop_start()
            return
        try:
            self.client.connect(host, port, keepalive=keepalive, clean_start=False,
                                properties=_connect_props(SESSION_NEVER_EXPIRES))
        except ssl.SSLError as exc:
            raise MqttConnectError(f"could not connect to MQTT broker {host}:{port}: TLS failed: {exc}") from exc
        except OSError as exc:
            raise MqttConnectError(f"could not connect to MQTT broker {host}:{port}: {exc}") from exc
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self._connected.wait(0.05) and self._refused is None and time.monotonic() < deadline:
            pass
        if not self._connected.is_set():
            self.client.loop_stop()
            raise MqttConnectError(f"could not connect to MQTT broker {host}:{port}: {self._refused or 'no answer'}")

    def _pop_acked(self) -> None:
        w = self._window
        while w and _acked(w[0]):
            w.popleft()
            self._acked_popped += 1

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Publish one message (waits while ``max_inflight`` messages are unacknowledged).

        ``retain`` asks the broker to keep it as the topic's last message for future subscribers.
        """
        if len(self._window) >= self.max_inflight:
            self._pop_acked()
            while len(self._window) >= self.max_inflight:
                time.sleep(0.0005)
                self._pop_acked()
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        self.sent += 1
        if qos > 0:
            self._window.append(info)
        else:
            self._acked_popped += 1
        return info

    def publish_many(self, messages: Iterable[tuple[str, bytes]], qos: int = 1) -> int:
        n = 0
        for topic, payload in messages:
            self.publish(topic, payload, qos)
            n += 1
        return n

    def acknowledged(self) -> int:
        """Messages the broker has acknowledged so far."""
        self._pop_acked()
        return self._acked_popped + sum(1 for i in self._window if _acked(i))

    def wait_all(self, timeout: float = 60.0) -> bool:
        """Wait until every published message is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self._pop_acked()
            if not self._window:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _acked(info: mqtt.MQTTMessageInfo) -> bool:
    # ``is_published()`` raises for a message published while disconnected (rc NO_CONN) even after
    # paho has sent it on reconnect and the broker acknowledged it; the flag itself is reliable.
    return bool(getattr(info, "_published", False))


def publish_stream(publisher: MqttPublisher, stream: Iterable[tuple[float, str, bytes]], *,
                   sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                   on_progress: Callable[[int], None] | None = None) -> int:
    """Publish ``(send offset s, topic, payload)`` items, each not before its offset from the start."""
    t0 = clock()
    n = 0
    for offset, topic, payload in stream:
        if offset > 0:
            wait = t0 + offset - clock()
            if wait > 0:
                sleep(wait)
        publisher.publish(topic, payload)
        n += 1
        if on_progress is not None and n % 1000 == 0:
            on_progress(1000)
    return n
