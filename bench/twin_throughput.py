"""Live twin throughput with the shipped defaults: observations/s through MQTT and HTTP, single-reading HTTP
requests, ingest memory, and query latency under load.

Shipped defaults (what ``citytwin twin serve`` runs): **automatic alerts on** (the default live rules
evaluated after every committed batch, :class:`citytwin.twin.live_rules.LiveRuleEngine`), forecast
auto-verification on, **auth on** (a real bearer token of an integrator, checked against the
workspace catalog, one audit row per request), **the broker with TLS and credentials** (Mosquitto's TLS 1.2+
listener, certificates made by ``scripts/mosquitto.sh --tls``, one account; every client of the run, the raw
subscriber included, connects over TLS). ``--no-alerts`` measures the same without the rules (the
configuration of the older figures, for comparison); ``--no-tls`` with plain TCP to the broker (the
configuration of the figures before session 13).

Each figure is set against a raw ceiling measured in the same run:

* MQTT end to end (publisher process -> Mosquitto -> ingest process: parse, validate, fsynced
  Parquet history, live state, rules, ack; timed until the last message is acknowledged) vs
  **broker -> plain paho subscriber** (the same messages: count, payloads, topics, QoS 1, the same
  publisher; a paho client with manual acknowledgement that copies, acknowledges and counts each
  message; ``--raw-rounds`` rounds, the median counts) and vs **Parquet append alone**
  (``HistoryStore.append`` of pre-built columns, same batch size, fsync on);
* HTTP batch upsert end to end (client -> uvicorn -> same pipeline, with a bearer token checked
  against the workspace catalog and one audit row per request) vs Parquet append alone and the raw
  subscriber, from one sequential client and from ``--http-clients N`` concurrent ones (each the
  updates of its stations, in time order), and vs the same server with ``auth=False`` (no token
  check, no audit: the cost of security);
* p50/p99 latency of a state query (one entity, latest values; SQLite) and a history query
  (one station, one day, all properties; DuckDB over Parquet) while MQTT ingest runs, vs the
  same queries on the idle store after the run.

Data: the UCI Beijing multi-site air data (12 stations, hourly, 12 properties per station-hour).
``--quick`` replays one month (107,136 readings); the default replays the full 4 years
(12 x 35,064 x 12 = 5,049,216 readings). Messages carry one hour of all 12 stations
(``citytwin/batch``, 144 readings) unless ``--per-message`` says otherwise.

Also: **single-reading HTTP posts** (``POST /twin/v1/observations``, one entity, one property, the
next hour; sequential client) as requests/s with p50/p99 latency, and the **RSS of the ingest
process** at start and end (``--soak-minutes M``: publish time-shifted copies of the data for M
minutes, each pass later than the last and none in the future, at ``--soak-rate`` readings/s or slower
when the passes that fit before now would not last M minutes; the RSS is sampled every 5 s and printed
at the start and each quarter of the soak, with its slope in MiB/min over the run and its second half;
the ingest reports from inside every 10 s its C heap in use and held free (glibc ``mallinfo2``), Arrow's
pool, its Python memory blocks and how often it returned freed memory to the OS, so that growth of the RSS can
be told from growth of what is in use; and the free memory held in glibc's main arena and in its per-thread
arenas, from ``malloc_info``). It ends with a verdict, **flat** or **not flat**, by
:func:`rss_verdict`: flat when the RSS's slope over the second half is within ±0.25 MiB/min and the median
RSS of the last quarter is at most 5 MiB above that of the second quarter (docs/twin.md, "RSS over 30 minutes",
says why these bounds).

``--payload columnar`` sends the same readings as the columnar batch payload (docs/twin.md, "Columnar
batch payload": one object of columns per message of 12 stations) instead of JSON arrays of NGSI-LD
entity updates; the raw subscriber then gets those columnar messages.

Goals (issue 13): >= 20,000 obs/s end to end and >= 0.25 of the raw paho subscriber rate with alerts
on; >= 500 single-reading requests/s with p99 < 100 ms; RSS flat.

The figures depend on the machine: on a 2-core machine shared with other work, compare the ratios
of one run, not absolute rates across runs.

Run:  python bench/twin_throughput.py --quick                    (about a minute)
      python bench/twin_throughput.py --quick --payload columnar (the same with columnar payloads)
      python bench/twin_throughput.py --quick --skip-http --soak-minutes 30   (plus a 30-minute RSS soak)
      python bench/twin_throughput.py --months 6 --in-process 3  (the pipeline alone: updates vs columnar CPU)
      python bench/twin_throughput.py                            (full data; several minutes)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
import pyarrow as pa

from citytwin.foundation.mqtt import MqttPublisher
from citytwin.foundation.timeseries import HistoryStore, StateStore
from citytwin.foundation.workspace import Workspace
from citytwin.service.app import open_runtime
from citytwin.twin import entities as E
from citytwin.twin import feeds as F
from citytwin.twin.columnar import columnar_messages_from_long
from citytwin.workflows.runtime import malloc_arenas, malloc_stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # bench/loadgen.py: the open-loop HTTP load generator
from children import die_with_parent, exit_on_sigterm  # bench/children.py: no child outlives the bench

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "air_beijing_multisite"
SCRIPT = REPO / "scripts" / "mosquitto.sh"
MSGS: list[tuple[str, bytes]] = []  # filled before forking: children inherit it
READINGS_PER_MESSAGE = 144


def machine() -> str:
    vm = psutil.virtual_memory()
    load = os.getloadavg()
    return (f"{platform.machine()}, {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
            f"{vm.total / 2**30:.1f} GiB RAM, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, "
            f"Python {platform.python_version()}")


def load_long(quick: bool, months: int | None) -> pd.DataFrame:
    w = pd.concat([pd.read_csv(f) for f in sorted(DATA.glob("*.csv"))], ignore_index=True)
    if quick:
        w = w[(w.year == 2015) & (w.month == 12)]
    elif months:
        t = pd.to_datetime(w[["year", "month", "day", "hour"]])
        w = w[t < t.min() + pd.DateOffset(months=months)]
    return F.beijing_long(w)


def stations() -> list[E.Entity]:
    return [F.beijing_entity(s) for s in F.BEIJING_STATIONS]


# -- child processes -----------------------------------------------------------------------------------

def _publisher(host: str, port: int, cid: str, go: mp.Event, t_done: mp.Value) -> None:
    die_with_parent()
    pub = MqttPublisher(host, port, client_id=cid, max_inflight=2000)
    go.wait()
    for topic, payload in MSGS:
        pub.publish(topic, payload)
    pub.wait_all(3600)
    t_done.value = time.time()
    pub.close()


def _raw_subscriber(host: str, port: int, cid: str, ready: mp.Event, got: Any, t_last: Any, stop: mp.Event) -> None:
    """The raw ceiling: a plain paho-mqtt client, subscribed like the ingest (QoS 1, MQTT v5, persistent session,
    manual acknowledgement, same account), that copies each payload, acknowledges it at once and counts it;
    ``t_last`` is the wall time of the latest message. At ``stop`` it ends its session (:func:`end_session`): a
    session left behind, subscribed to ``citytwin/#`` and never expiring, would have the broker (no cap on queued
    messages) keep every later message of the run for it, and write them all at each autosave (docs/twin.md,
    "Session 16: the store thread's gap every ~31 s")."""
    die_with_parent()
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from citytwin.foundation.mqtt import SESSION_NEVER_EXPIRES, MqttAuth

    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5, manual_ack=True)
    MqttAuth.from_env().apply(client)

    def on_message(c: Any, u: Any, msg: Any) -> None:
        bytes(msg.payload)
        c.ack(msg.mid, msg.qos)
        got.value += 1
        t_last.value = time.time()

    client.on_message = on_message
    client.on_connect = lambda c, u, f, r, p: c.subscribe("citytwin/#", qos=1)
    client.on_subscribe = lambda c, u, mid, r, p: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_NEVER_EXPIRES
    props.ReceiveMaximum = 65535
    client.connect(host, port, keepalive=30, clean_start=False, properties=props)
    client.loop_start()
    subscribed.wait(30)
    ready.set()
    stop.wait()
    end_session(client)
    client.loop_stop()


def end_session(client: Any) -> None:
    """Disconnect a paho MQTT v5 client and end its session on the broker (DISCONNECT with session expiry 0), so
    that the broker stops queueing messages for it: its subscriptions end with it."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0
    client.disconnect(properties=props)


def _sqlite_used() -> int:
    """Bytes SQLite has allocated in this process (``sqlite3_memory_used``: page caches, schemas, statements),
    or -1 where the C function cannot be reached. Part of the C heap in use that the soak prints."""
    import _sqlite3
    import ctypes

    try:
        f = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    except (OSError, AttributeError):
        return -1
    f.restype = ctypes.c_int64
    return int(f())


def _ingest(root: str, host: str, port: int, cid: str, ready: mp.Event, done: mp.Value, stop: mp.Event,
            alerts: bool = True, acked: Any = None, mem: Any = None, system_pool: bool = True) -> None:
    """The ingest process, wired as ``citytwin twin serve`` wires it. ``mem`` (a shared array of 8 doubles), when
    given, gets every 10 s what the soak reports besides the RSS: C heap in use and held free (glibc
    ``mallinfo2``, MiB), Arrow's pool (MiB), Python memory blocks allocated (``sys.getallocatedblocks``; not
    ``len(gc.get_objects())``, which took references to tuples that other threads were still building: 3
    "SystemError: tupleobject.c bad argument to internal function" in a 30-minute soak's rule hook), memory
    releases so far, the largest commit so far (messages, readings), SQLite's own allocations (MiB), and from
    glibc's ``malloc_info`` the free memory held in the main arena, in all thread arenas, in the thread arena
    holding the most (MiB), the number of arenas and the free memory in the thread arenas' top chunks (MiB).
    ``system_pool`` False keeps Arrow's default pool (mimalloc) instead of the C library's, which
    ``start_mqtt`` switches to (``--arrow-pool default``: the comparison of issue 13). Spawned (``--arrow-pool
    system``) it runs in a fresh interpreter, as ``citytwin twin serve`` does."""
    die_with_parent()
    rt = open_runtime(root, max_payload=8 * 2**20)
    if alerts:  # as `citytwin twin serve` wires it
        rt.enable_auto_verify()
        rt.enable_auto_alerts()
    largest = [0, 0]  # the largest commit so far: messages, readings (a backlog makes big batches)

    def note(rep: Any, lo: int, hi: int) -> None:
        largest[0], largest[1] = max(largest[0], rep.messages), max(largest[1], rep.accepted + rep.rejected)

    rt.ingestor.on_commit.append(note)
    rt.start_mqtt(host, port, client_id=cid, system_pool=system_pool)  # the shipped batch policy (2000, 0.1 s)
    print(f"  [ingest] Arrow memory pool: {pa.default_memory_pool().backend_name}", file=sys.stderr)
    ready.set()
    t_mem = 0.0
    while not stop.wait(0.01):
        if mem is not None and time.monotonic() - t_mem >= 10:
            t_mem = time.monotonic()
            ms = malloc_stats() or {"in_use": -2**20, "free": -2**20}
            ar = malloc_arenas() or []
            thread_free = sorted((a["free"] for a in ar if a["arena"] != 0), reverse=True) or [0]
            mem[:] = [ms["in_use"] / 2**20, ms["free"] / 2**20, pa.total_allocated_bytes() / 2**20,
                      sys.getallocatedblocks(), rt.memory_releases, largest[0], largest[1], _sqlite_used() / 2**20,
                      sum(a["free"] for a in ar if a["arena"] == 0) / 2**20, sum(thread_free) / 2**20,
                      thread_free[0] / 2**20, len(ar), sum(a["top"] for a in ar if a["arena"] != 0) / 2**20]
        t = rt.ingestor.totals
        done.value = t.accepted + t.rejected
        if acked is not None and rt.mqtt is not None:
            acked.value = rt.mqtt.stats.acked  # messages stored, evaluated by the rules and acknowledged
    if rt.ingestor.hook_errors:
        print("  hook errors:", rt.ingestor.hook_errors[:3], file=sys.stderr)
    print(f"  [ingest] CPU-s per thread since it started: {thread_cpu()}; MQTT batches stored "
          f"{rt.mqtt.stats.batches if rt.mqtt is not None else 0:,}", file=sys.stderr)
    if rt.auto_alerts is not None:
        print(f"  [ingest] rules evaluated on {rt.auto_alerts.batches:,} batches in {rt.auto_alerts.seconds:.1f} s; "
              f"{len(rt.alerts.book):,} alerts", file=sys.stderr)
    rt.close()


def thread_cpu() -> str:
    """CPU-s of this process's threads since each started, by role: the MQTT network thread, the store thread (parse,
    history, state, rules), the alert publisher's paho thread, the history's writer threads, the rest (start-up)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    roles: dict[str, float] = {}
    for t in psutil.Process().threads():
        name = names.get(t.id, "")
        role = ("network" if name == "citytwin-mqtt-ingest" else "store" if name == "citytwin-mqtt-store"
                else "alert publisher" if name.startswith("paho-mqtt-client") else "history writers"
                if name.startswith("citytwin-history") else "other")
        roles[role] = roles.get(role, 0.0) + t.user_time + t.system_time
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(roles.items(), key=lambda kv: -kv[1]))


def _soak_publisher(host: str, port: int, cid: str, go: mp.Event, stop: mp.Event, long_path: str,
                    passes: mp.Value, done: mp.Value, rate: float, columnar: bool) -> None:
    """Publish the data again and again, each pass shifted to new times, at ``rate`` readings/s (0: as fast as the
    ingest stores them), until ``stop``. A pass starts only when the ingest has stored all but one pass (the
    broker's queue stays short: the ingest's memory is measured, not the broker's backlog).

    Times: pass k is the data moved forward by ``k x its span`` (whole days), as a live feed moves: never
    overlapping another pass, always later than what the rules engine keeps (older readings would be
    evaluated as late arrivals, a different path), and never in the future (the parser refuses those): from a
    month of 2015 that is about 130 passes, which :func:`soak` paces over the soak's minutes."""
    die_with_parent()
    long = pd.read_pickle(long_path)
    t_min, t_max = long["time"].min(), long["time"].max()
    span = (t_max - t_min + pd.Timedelta("1h")).ceil("D")
    pub = MqttPublisher(host, port, client_id=cid, max_inflight=2000)
    go.wait()
    k = 1
    first = done.value
    t0 = time.monotonic()
    sent = 0
    limit = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1)
    while not stop.is_set():
        while done.value - first < (k - 2) * len(long) and not stop.is_set():
            time.sleep(0.05)
        shift = k * span
        if t_max + shift > limit:
            print("  [soak] passes reached the present: publishing stops", file=sys.stderr)
            break
        gen = (columnar_messages_from_long if columnar else F.messages_from_long)
        for _, topic, payload in gen(long.assign(time=long["time"] + shift), per_message=12):
            if rate > 0:
                due = t0 + sent / rate
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            pub.publish(topic, payload)
            sent += READINGS_PER_MESSAGE
            if stop.is_set():
                break
        pub.wait_all(3600)
        passes.value = k
        k += 1
    pub.close()


# -- measurements ----------------------------------------------------------------------------------------

class Latencies:
    """Runs state and history queries in a loop from this process, recording latencies (ms)."""

    def __init__(self, root: Path, days: list[pd.Timestamp], ent_ids: list[str]) -> None:
        self.root, self.days, self.ents = root, days, ent_ids
        self.state_ms: list[float] = []
        self.hist_ms: list[float] = []
        self._stop = threading.Event()
        self._t: threading.Thread | None = None

    def run_once(self, st: StateStore, h: HistoryStore, rng: random.Random) -> None:
        e = rng.choice(self.ents)
        t0 = time.perf_counter()
        st.get(e)
        self.state_ms.append((time.perf_counter() - t0) * 1e3)
        d = rng.choice(self.days)
        t0 = time.perf_counter()
        h.query(entities=e, start=d, end=d + pd.Timedelta(days=1))
        self.hist_ms.append((time.perf_counter() - t0) * 1e3)

    def loop(self, pause: float = 0.02) -> None:
        st, h = StateStore(self.root / "state.sqlite"), HistoryStore(self.root / "history")
        rng = random.Random(1)
        while not self._stop.is_set():
            try:
                self.run_once(st, h, rng)
            except Exception as exc:  # a day not written yet: skip
                print("  query error:", repr(exc)[:120], file=sys.stderr)
            time.sleep(pause)

    def start(self) -> Latencies:
        self._t = threading.Thread(target=self.loop, daemon=True)
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._t:
            self._t.join()


def pct(v: list[float], q: float) -> float:
    return float(np.percentile(v, q)) if v else float("nan")


def bench_parquet_append(long: pd.DataFrame, batch: int) -> float:
    """Observations/s of HistoryStore.append alone (columns pre-built, same batch size, fsync on)."""
    d = Path(tempfile.mkdtemp(prefix="ct-append-"))
    h = HistoryStore(d)
    order = long.sort_values(["time", "entity"], kind="stable")
    cols = {"entity": order["entity"].tolist(), "type": order["type"].tolist(),
            "property": order["property"].tolist(),
            "time_us": (order["time"].astype("int64") // 1000).to_numpy() if order["time"].dt.unit == "ns"
            else order["time"].dt.as_unit("us").astype("int64").to_numpy(),
            "value": order["value"].to_numpy(), "unit": order["unit"].tolist()}
    n = len(order)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        h.append({k: v[i:i + batch] for k, v in cols.items()})
    dt = time.perf_counter() - t0
    h.close()
    shutil.rmtree(d, ignore_errors=True)
    return n / dt


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run_http(hroot: Path, shares: list[list[bytes]], n_obs: int, *, token: str | None, auth: bool, alerts: bool,
             singles: list[bytes] | None = None) -> tuple[float, list[float], float]:
    """Serve ``hroot`` with uvicorn in a child process, post the bodies of each of ``shares`` from its own client at
    the same time (a thread and a keep-alive connection each, its bodies in order; one share: one sequential client);
    seconds taken, the latencies (ms) of the ``singles`` posted one by one afterwards, and the server's CPU-s (user +
    system) over the batch posts."""
    rt = open_runtime(hroot)
    rt.register(stations())
    rt.close()
    hport = free_port()
    srv = subprocess.Popen([sys.executable, "-c",
                            "import uvicorn, citytwin.service.app as a; from citytwin.service.app import create_app; "
                            f"app = create_app({str(hroot)!r}, auth={auth}, auto_alerts={alerts}, "
                            f"auto_verify={alerts}); "
                            # as citytwin twin serve runs it (service.app.serve: the start's objects frozen out of
                            # the collector, young collections rare, uvicorn with httptools, uvloop, no access
                            # log); an older citytwin has no serve
                            f"a.serve(app, '127.0.0.1', {hport}) if hasattr(a, 'serve') else "
                            f"uvicorn.run(app, host='127.0.0.1', port={hport}, log_level='warning')"],
                           preexec_fn=die_with_parent)
    try:
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        base = f"http://127.0.0.1:{hport}"
        client = httpx.Client(base_url=base, timeout=120)
        for _ in range(200):
            try:
                client.get("/health")
                break
            except httpx.TransportError:
                time.sleep(0.1)

        def post_share(bodies: list[bytes]) -> None:
            with httpx.Client(base_url=base, timeout=120) as c:
                for b in bodies:
                    r = c.post("/ngsi-ld/v1/entityOperations/upsert", content=b, headers=headers)
                    assert r.status_code == 201, r.text[:300]

        srv_p = psutil.Process(srv.pid)
        cpu0 = sum(srv_p.cpu_times()[:2])
        t0 = time.time()
        if len(shares) == 1:
            for b in shares[0]:
                r = client.post("/ngsi-ld/v1/entityOperations/upsert", content=b, headers=headers)
                assert r.status_code == 201, r.text[:300]
        else:
            with ThreadPoolExecutor(len(shares)) as ex:
                list(ex.map(post_share, shares))  # (raises what a client raised)
        took = time.time() - t0
        srv_cpu = sum(srv_p.cpu_times()[:2]) - cpu0
        lat: list[float] = []
        for b in singles or []:
            t1 = time.perf_counter()
            r = client.post("/twin/v1/observations", content=b, headers=headers)
            lat.append((time.perf_counter() - t1) * 1e3)
            assert r.status_code == 201, r.text[:300]
        hh = HistoryStore(hroot / "history")
        assert hh.count()["rows"] == n_obs + len(singles or [])
        hh.close()
        return took, lat, srv_cpu
    finally:
        srv.terminate()
        srv.wait(20)


# -- single readings: open-loop load from a second process ------------------------------------------------

def run_single_ramp(ctx: Any, twin_root: Path, token: str, rates: list[float], seconds: float, conns: int,
                    alerts: bool) -> list[dict[str, Any]]:
    """Serve ``twin_root`` as ``citytwin twin serve`` ships (auth, auto-alerts, auto-verify; uvicorn with
    httptools and uvloop, :data:`citytwin.service.app.UVICORN`) and load it with single-reading posts from a
    second process (``bench/loadgen.py``: open loop, raw asyncio streams on uvloop, ``conns`` keep-alive
    connections) at each rate in turn; print achieved rate, p50, p99, the server's CPU per request and the
    CPU share of server and load generator per step (``ctx`` is unused: loadgen forks its own process)."""
    rt = open_runtime(twin_root)
    rt.register(stations())
    rt.close()
    ids = [e.id for e in stations()]
    base = pd.Timestamp("2016-01-01T00:00:00Z")
    total = int(sum(r * seconds for r in rates)) + 10
    rng = np.random.default_rng(1)
    auth = {"Authorization": f"Bearer {token}"}
    reqs = [loadgen.post_request("/twin/v1/observations", json.dumps(
        {"id": ids[i % len(ids)], "type": "AirQualityObserved",
         "observedAt": (base + pd.Timedelta(minutes=i // len(ids))).isoformat(),
         "pm25": float(rng.integers(5, 400))}).encode(), auth) for i in range(total)]
    hport = free_port()
    srv = subprocess.Popen([sys.executable, "-c",
                            "import uvicorn, citytwin.service.app as a; from citytwin.service.app import create_app; "
                            f"app = create_app({str(twin_root)!r}, auth=True, auto_alerts={alerts}, "
                            f"auto_verify={alerts}); "
                            # as citytwin twin serve runs it (service.app.serve); an older citytwin has no serve:
                            # uvicorn picks httptools and uvloop when installed
                            f"a.serve(app, '127.0.0.1', {hport}) if hasattr(a, 'serve') else "
                            f"uvicorn.run(app, host='127.0.0.1', port={hport}, log_level='warning')"],
                           preexec_fn=die_with_parent)
    rows: list[dict[str, Any]] = []
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{hport}", timeout=120)
        for _ in range(300):
            try:
                client.get("/health")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        used = 0
        for rate in rates:
            n = int(rate * seconds)
            h0 = client.get("/health").json()
            row = loadgen.run(hport, reqs[used:used + n], rate, seconds, conns=conns, ok=(201,), server_pid=srv.pid)
            h1 = client.get("/health").json()
            used += n
            if "http_posts" in h1:  # requests per durable write (the group commit's group size)
                a, b = h0["http_posts"], h1["http_posts"]
                row["group"] = (b["requests"] - a["requests"]) / max(1, b["commits"] - a["commits"])
            elif "commits" in h1:
                row["group"] = (h1["commit_calls"] - h0["commit_calls"]) / max(1, h1["commits"] - h0["commits"])
            rows.append(row)
            print(f"[HTTP single] offered {rate:,.0f} req/s for {seconds:g} s over {conns} connections: answered "
                  f"{row['achieved']:,.0f} req/s, p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms (from send "
                  f"{row['p99_from_send']:.1f}), "
                  f"not 201: {row['errors'] or 0} (n={row['n']:,}); server {row['server_cpu_ms_per_req']:.2f} ms "
                  f"CPU/req, CPU share server {row['server_cpu']:.2f} client {row['client_cpu']:.2f}; "
                  f"{row.get('group', float('nan')):.1f} requests per commit; "
                  f"load avg {os.getloadavg()[0]:.1f}", flush=True)
            if row["p99"] > 2000:
                break
        health = client.get("/health").json()
        print(f"[HTTP single] stored {health['accepted']:,} readings; machine load {os.getloadavg()[0]:.1f}")
    finally:
        srv.terminate()
        srv.wait(20)
    crossed = next((r["rate"] for r in rows if r["p99"] >= 100), None)
    ok = [r for r in rows if r["p99"] < 100]
    print(f"[HTTP single] highest offered rate with p99 < 100 ms: "
          f"{max(r['rate'] for r in ok) if ok else 'none':}; p99 crosses 100 ms at "
          f"{'not within the ramp' if crossed is None else f'{crossed:,.0f} req/s'}")
    return rows


def _cpu(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return float("nan")


#: :func:`rss_verdict`'s bounds: the second half's slope (MiB/min) and the last quarter's median over the second's
FLAT_SLOPE = 0.25
FLAT_RISE = 5.0


def rss_verdict(mins: np.ndarray, rss: np.ndarray) -> tuple[bool, str]:
    """Whether an RSS series (minutes, MiB; sampled evenly) is flat, and the figures that decide it.

    Flat: the least-squares slope over the second half is within ±``FLAT_SLOPE`` MiB/min, and the median of the
    last quarter is at most ``FLAT_RISE`` MiB above the median of the second quarter (medians: the once-a-minute
    memory release makes a sawtooth of a few MiB). The first quarter is left out (bounded structures fill).

    Examples
    --------
    >>> m = np.arange(0, 30, 5 / 60)
    >>> rss_verdict(m, 260 + 3 * (m % 1))[0], rss_verdict(m, 260 + 1.26 * m)[0]
    (True, False)
    """
    end = float(mins[-1])
    half = mins >= end / 2
    slope = float(np.polyfit(mins[half], rss[half], 1)[0]) if half.sum() >= 2 else float("nan")
    q2 = float(np.median(rss[(mins >= end / 4) & (mins < end / 2)]))
    q4 = float(np.median(rss[mins >= 3 * end / 4]))
    flat = abs(slope) <= FLAT_SLOPE and q4 - q2 <= FLAT_RISE
    return flat, (f"second-half slope {slope:+.2f} MiB/min (bound ±{FLAT_SLOPE:g}), median RSS last quarter "
                  f"{q4:.0f} MiB vs second quarter {q2:.0f} MiB ({q4 - q2:+.1f}, bound +{FLAT_RISE:g})")


def soak(ctx: Any, proc: psutil.Process, long: pd.DataFrame, work: Path, host: str, port: int, minutes: float,
         done: Any, rate: float, columnar: bool, mem: Any = None) -> None:
    """Publish time-shifted copies of the data for ``minutes`` at ``rate`` readings/s; print the ingest RSS at the
    start and at each quarter of the run, and its slope (MiB/min) over the whole run and over the second half."""
    path = work / "long.pkl"
    long.to_pickle(path)
    span = (long["time"].max() - long["time"].min() + pd.Timedelta("1h")).ceil("D")
    room = int((pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1) - long["time"].max()) / span) * len(long)
    if rate <= 0 or rate * minutes * 60 > room:  # the passes must last the whole soak: pace them
        rate = room / (minutes * 60)
        print(f"[soak] {room:,} readings of time-shifted passes fit between the data and now: offered at "
              f"{rate:,.0f} readings/s to last {minutes:g} min")
    go, stop, passes = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
    pub = ctx.Process(target=_soak_publisher, args=(host, port, "soak-pub", go, stop, str(path), passes, done, rate,
                                                    columnar))
    pub.start()
    t0 = time.time()
    n0 = done.value
    go.set()
    samples: list[tuple[float, float]] = []
    inner: list[tuple[float, list[float]]] = []  # (min, the ingest's own figures: see _ingest's ``mem``)
    marks = [minutes * q / 4 for q in range(5)]
    t_say = 0.0
    while time.time() - t0 < minutes * 60:
        samples.append(((time.time() - t0) / 60, proc.memory_info().rss / 2**20))
        if mem is not None:
            inner.append((samples[-1][0], list(mem[:])))
        if samples[-1][0] - t_say >= 2.5 or len(samples) == 1:  # progress (a long soak can be watched as it goes)
            t_say = samples[-1][0]
            v = inner[-1][1] if inner else [float("nan")] * 13
            print(f"  [soak] {t_say:.1f} min: RSS {samples[-1][1]:.0f} MiB, C heap in use/free {v[0]:.0f}/{v[1]:.0f}"
                  f" MiB (SQLite's {v[7]:.1f}; free in the main arena {v[8]:.1f}, in {v[11] - 1:.0f} thread arenas "
                  f"{v[9]:.1f} (tops {v[12]:.1f}), the most in one {v[10]:.1f}), Arrow {v[2]:.0f} MiB, {done.value - n0:,} readings; largest commit so far {v[5]:,.0f} "
                  f"messages, {v[6]:,.0f} readings", file=sys.stderr, flush=True)
        time.sleep(5)
    samples.append(((time.time() - t0) / 60, proc.memory_info().rss / 2**20))
    stop.set()
    pub.join()
    mins = np.array([m for m, _ in samples])
    rss = np.array([r for _, r in samples])
    half = mins >= mins[-1] / 2
    slope_half = float(np.polyfit(mins[half], rss[half], 1)[0]) if half.sum() >= 2 else float("nan")
    slope_all = float(np.polyfit(mins, rss, 1)[0]) if len(mins) >= 2 else float("nan")
    n = done.value - n0
    at = [(m, float(rss[int(np.argmin(np.abs(mins - m)))])) for m in marks]
    print(f"[soak] {minutes:g} min at {'as fast as stored' if rate <= 0 else f'{rate:,.0f} readings/s offered'} "
          f"({'columnar' if columnar else 'entity-update'} payloads): {n:,} more readings ({n / (minutes * 60):,.0f}/s "
          f"stored, {passes.value} passes); ingest RSS " + ", ".join(f"{r:.0f} MiB at {m:g} min" for m, r in at)
          + f" (max {rss.max():.0f}); slope {slope_all:+.2f} MiB/min over the run, {slope_half:+.2f} over the second "
          "half")
    print("[soak] RSS (min, MiB): " + ", ".join(f"{m:.1f}:{r:.0f}" for m, r in samples[:: max(1, len(samples) // 12)]))
    flat, why = rss_verdict(mins, rss)
    print(f"[soak] verdict: {'flat' if flat else 'NOT flat'}: {why}; load average "
          f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    if inner:
        print("[soak] inside the ingest (min: C heap in use / held free MiB, SQLite's part of it MiB, Arrow pool MiB, "
              "Python blocks, memory releases, largest commit so far in messages): "
              + "; ".join(f"{m:.1f}: {v[0]:.0f}/{v[1]:.0f}, {v[7]:.1f}, {v[2]:.0f}, {v[3]:,.0f}, {v[4]:.0f}, {v[5]:,.0f}"
                          for m, v in inner[:: max(1, len(inner) // 12)]))
        im = np.array([m for m, _ in inner])
        use = np.array([v[0] for _, v in inner])
        h = im >= im[-1] / 2
        if h.sum() >= 2:
            print(f"[soak] C heap in use: slope {float(np.polyfit(im[h], use[h], 1)[0]):+.2f} MiB/min over the second "
                  "half")
            print("[soak] held free by arena (min: main / thread arenas (their top chunks) / the most in one, MiB): "
                  + "; ".join(f"{m:.1f}: {v[8]:.1f}/{v[9]:.1f} ({v[12]:.1f})/{v[10]:.1f}" for m, v in inner[:: max(1, len(inner) // 12)]))
            for k, name in ((8, "main arena"), (9, "thread arenas")):
                f = np.array([v[k] for _, v in inner])
                print(f"[soak] held free in the {name}: slope {float(np.polyfit(im[h], f[h], 1)[0]):+.2f} MiB/min over "
                      "the second half")


def run_in_process(long: pd.DataFrame, rounds: int, batch: int) -> None:
    """The ingest pipeline alone, in this process (no broker, no paho): the same readings as entity updates and
    as the columnar payload (the peer), ``batch`` messages per ``Ingestor.ingest`` (the MQTT ingest's
    ``max_batch``), shipped hooks (auto-alerts, forecast verification) and GC threshold; a fresh twin per round,
    the two forms alternating. CPU-s of the process per million readings (median of the rounds) and their ratio."""
    from citytwin.workflows.runtime import collect_rarely

    forms = {"updates": [(t, p) for _, t, p in F.messages_from_long(long, per_message=12)],
             "columnar": [(t, p) for _, t, p in columnar_messages_from_long(long, per_message=12)]}
    collect_rarely()
    cpu: dict[str, list[float]] = {k: [] for k in forms}
    for r in range(rounds):
        for name, msgs in forms.items():
            work = Path(tempfile.mkdtemp(prefix="ct-bench-inproc-"))
            try:
                rt = open_runtime(work / "twin")
                rt.register(stations())
                rt.enable_auto_verify()
                rt.enable_auto_alerts()
                c0 = time.process_time()
                for i in range(0, len(msgs), batch):
                    rt.ingestor.ingest(msgs[i:i + batch], source="mqtt")
                c = time.process_time() - c0
                assert rt.ingestor.totals.accepted == len(long), rt.ingestor.totals
                rt.close()
            finally:
                shutil.rmtree(work, ignore_errors=True)
            cpu[name].append(c / len(long) * 1e6)
            print(f"[in-process] round {r + 1} {name}: {c:.2f} CPU-s = {cpu[name][-1]:.2f} CPU-s per million readings")
    med = {k: float(np.median(v)) for k, v in cpu.items()}
    print(f"[in-process] median CPU-s per million readings: entity updates {med['updates']:.2f}, columnar "
          f"{med['columnar']:.2f}; updates / columnar {med['updates'] / med['columnar']:.2f}")


def main() -> None:
    exit_on_sigterm()  # a stopped bench stops its broker and children (its finally blocks run)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one month (Dec 2015) instead of four years")
    ap.add_argument("--months", type=int, default=None, help="first N months instead of four years")
    ap.add_argument("--per-message", type=int, default=12, help="entity updates per MQTT message")
    ap.add_argument("--http-batch", type=int, default=240, help="entity updates per HTTP upsert request")
    ap.add_argument("--http-clients", type=int, default=4,
                    help="after the sequential client, post the same updates again (a fresh twin) from this many "
                         "concurrent clients, client c those of every N-th station from the c-th, in time order (N "
                         "gateways); 1: the sequential client only")
    ap.add_argument("--raw-rounds", type=int, default=5,
                    help="rounds of the broker -> plain paho subscriber ceiling (each: the same messages)")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-http-baseline", action="store_true", help="no HTTP run without auth")
    ap.add_argument("--no-alerts", action="store_true", help="automatic alerts off (not the shipped default)")
    ap.add_argument("--no-tls", action="store_true",
                    help="plain TCP to the broker (default: TLS 1.2+ with credentials, as a deployment runs it)")
    ap.add_argument("--singles", type=int, default=0,
                    help="sequential single-reading HTTP posts after the batch run (the older measure)")
    ap.add_argument("--single-rates", default="50,100,200,300,400,500,700",
                    help="offered rates (requests/s) of the single-reading ramp, in order; empty: no ramp")
    ap.add_argument("--single-seconds", type=float, default=8.0, help="seconds per step of the single-reading ramp")
    ap.add_argument("--single-conns", type=int, default=64, help="client connections of the single-reading ramp")
    ap.add_argument("--single-only", action="store_true", help="run only the single-reading ramp")
    ap.add_argument("--soak-minutes", type=float, default=0.0,
                    help="after the MQTT run, keep publishing time-shifted copies for this long, sampling ingest RSS")
    ap.add_argument("--soak-rate", type=float, default=20_000,
                    help="readings/s offered during the soak (0: as fast as the ingest stores them)")
    ap.add_argument("--payload", choices=("updates", "columnar"), default="updates",
                    help="MQTT payloads: JSON arrays of NGSI-LD entity updates, or the columnar batch payload "
                         "(docs/twin.md); the raw subscriber gets the same messages")
    ap.add_argument("--arrow-pool", choices=("system", "switch", "default"), default="system",
                    help="Arrow memory pool of the MQTT ingest process: system = a fresh process with "
                         "ARROW_DEFAULT_MEMORY_POOL=system, as `citytwin twin serve|ingest` ship; switch = forked, "
                         "pyarrow's pool switched to the system's at start_mqtt (an embedding program); default "
                         "= forked, pyarrow's default (mimalloc), for the comparison")
    ap.add_argument("--in-process", type=int, default=0, metavar="ROUNDS",
                    help="only the ingest pipeline in this process, ROUNDS rounds of each payload form: CPU-s per "
                         "million readings, entity updates against columnar")
    args = ap.parse_args()
    alerts = not args.no_alerts
    tls = not args.no_tls
    print(f"configuration: auto-alerts {'ON (shipped default)' if alerts else 'OFF'}, auth ON for HTTP, MQTT "
          f"{'TLS and credentials' if tls else 'plain TCP with credentials (--no-tls)'} for every client, MQTT "
          f"ingest's Arrow pool {args.arrow_pool}")
    print(f"machine: {machine()}")
    rates = [float(x) for x in args.single_rates.split(",") if x.strip()]
    if args.single_only:
        work = Path(tempfile.mkdtemp(prefix="ct-bench-"))
        try:
            ws = Workspace.init(work / "single-ws", owner="bench")
            ws.add_user("gateway", "integrator")
            token = ws.catalog.issue_token("gateway", label="bench")[1]
            rows = run_single_ramp(mp.get_context("fork"), ws.root / "twin", token, rates, args.single_seconds,
                                   args.single_conns, alerts)
            audited = sum(1 for r in ws.catalog.audit_log("twin", limit=10**7) if r["action"] == "twin.write")
            print(f"[HTTP single] audit rows: {audited:,} for {sum(int(r['n']) for r in rows):,} requests")
            print(f"machine after run: {machine()}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    t0 = time.perf_counter()
    long = load_long(args.quick, args.months)
    if args.in_process:
        print(f"data: {len(long):,} readings; prepared in {time.perf_counter() - t0:.0f} s")
        run_in_process(long, args.in_process, 2000)
        print(f"machine after run: {machine()}")
        return
    n_obs = len(long)
    columnar = args.payload == "columnar"
    gen = columnar_messages_from_long if columnar else F.messages_from_long
    MSGS.extend((t, p) for _, t, p in gen(long, per_message=args.per_message))
    print(f"payload: {'columnar batch payload' if columnar else 'NGSI-LD entity updates'} on citytwin/batch")
    obs_per_msg = n_obs / len(MSGS)
    print(f"data: {n_obs:,} readings ({int(long.value.notna().sum()):,} non-missing), {len(MSGS):,} MQTT messages "
          f"of {obs_per_msg:.0f} readings ({sum(len(p) for _, p in MSGS) / 2**20:.0f} MiB JSON); "
          f"prepared in {time.perf_counter() - t0:.0f} s")
    work = Path(tempfile.mkdtemp(prefix="ct-bench-"))
    bdir = work / "broker"
    # the broker refuses anonymous clients: one account for the bench's clients (scripts/mosquitto.sh)
    os.environ.setdefault("CITYTWIN_MQTT_USERNAME", "citytwin-bench")
    os.environ.setdefault("CITYTWIN_MQTT_PASSWORD", random.SystemRandom().randbytes(16).hex())
    port = int(subprocess.run([str(SCRIPT), "start", str(bdir), *(["--tls"] if tls else [])], check=True,
                              capture_output=True, text=True).stdout.strip())
    if tls:  # every client of the run (publisher, raw subscriber, ingest: forked) connects over TLS with the CA
        port = int((bdir / "tls_port").read_text())
        os.environ["CITYTWIN_MQTT_TLS_CA"] = str(bdir / "tls" / "ca.crt")
    host = "127.0.0.1"
    ctx = mp.get_context("fork")
    results: dict[str, float] = {}
    try:
        # 1. raw ceiling: broker -> plain paho subscriber, the same messages (count, payloads, QoS 1) as the
        #    end-to-end run, in rounds (each a fresh publisher process, as the end-to-end run has); median round
        ready, stop = ctx.Event(), ctx.Event()
        got, t_last = ctx.Value("q", 0, lock=False), ctx.Value("d", 0.0, lock=False)
        sub = ctx.Process(target=_raw_subscriber, args=(host, port, "raw-sub", ready, got, t_last, stop))
        sub.start()
        ready.wait(30)
        sub_p = psutil.Process(sub.pid)
        sub_cpu0 = sum(sub_p.cpu_times()[:2])
        raw_rounds: list[float] = []
        for r in range(args.raw_rounds):
            go, t_pub = ctx.Event(), ctx.Value("d", 0.0)
            pub = ctx.Process(target=_publisher, args=(host, port, f"raw-pub-{r}", go, t_pub))
            pub.start()
            time.sleep(0.5)
            want = (r + 1) * len(MSGS)
            t0 = time.time()
            go.set()
            while got.value < want:
                time.sleep(0.002)
            raw_rounds.append(t_last.value - t0)
            pub.join()
        raw_cpu = sum(sub_p.cpu_times()[:2]) - sub_cpu0  # user + system seconds of the subscriber process
        stop.set()
        sub.join()
        raw_s = float(np.median(raw_rounds))
        results["raw_mqtt_obs_cpu"] = args.raw_rounds * n_obs / raw_cpu
        results["raw_mqtt_msgs"] = len(MSGS) / raw_s
        results["raw_mqtt_obs"] = n_obs / raw_s
        print(f"[ceiling] broker -> plain paho subscriber (QoS 1, manual ack, same {len(MSGS):,} messages, "
              f"{args.raw_rounds} rounds of {', '.join(f'{x:.2f}' for x in raw_rounds)} s): median "
              f"{len(MSGS) / raw_s:,.0f} msg/s = {n_obs / raw_s:,.0f} readings/s; all rounds together "
              f"{args.raw_rounds * n_obs / sum(raw_rounds):,.0f} readings/s; subscriber CPU {raw_cpu:.2f} s = "
              f"{results['raw_mqtt_obs_cpu']:,.0f} readings per CPU-second")

        # 2. raw ceiling: Parquet append alone
        app_rate = bench_parquet_append(long, batch=int(500 * obs_per_msg))
        results["raw_append_obs"] = app_rate
        print(f"[ceiling] Parquet append alone (HistoryStore.append, fsync, {int(500 * obs_per_msg):,}-reading "
              f"batches): {app_rate:,.0f} readings/s")

        # 3. MQTT end to end, with queries under load
        root = work / "mqtt-twin"
        rt = open_runtime(root)
        rt.register(stations())
        rt.close()
        # the ingest process: "system" starts it as `citytwin twin serve|ingest` start, a fresh interpreter with
        # ARROW_DEFAULT_MEMORY_POOL=system set before pyarrow is imported (spawned: nothing inherited from this
        # process); "switch" and "default" fork it from this process, whose Arrow is on mimalloc, and then
        # switch its Python-side pool at start_mqtt (what an embedding program gets) or not
        ictx = mp.get_context("spawn") if args.arrow_pool == "system" else ctx
        ready, stop, go = ictx.Event(), ictx.Event(), ctx.Event()
        done, t_pub, acked = ictx.Value("q", 0), ctx.Value("d", 0.0), ictx.Value("q", 0)
        mem = ictx.Array("d", 13) if args.soak_minutes > 0 else None
        ing = ictx.Process(target=_ingest, args=(str(root), host, port, "e2e-ingest", ready, done, stop, alerts,
                                                 acked, mem, args.arrow_pool != "default"))
        if args.arrow_pool == "system":
            os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # read by the child's first import of pyarrow
        ing.start()
        os.environ.pop("ARROW_DEFAULT_MEMORY_POOL", None)
        ready.wait(60)
        proc = psutil.Process(ing.pid)
        rss0 = proc.memory_info().rss / 2**20
        pub = ctx.Process(target=_publisher, args=(host, port, "e2e-pub", go, t_pub))
        pub.start()
        time.sleep(1.0)
        days = sorted(pd.to_datetime(long["time"]).dt.floor("D").unique())
        lat = Latencies(root, [pd.Timestamp(d) for d in days[: max(1, len(days) // 20)]],
                        [e.id for e in stations()])
        cpu0 = sum(proc.cpu_times()[:2])
        t0 = time.time()
        go.set()
        started_q = False
        while acked.value < len(MSGS):
            if not started_q and done.value > n_obs // 20:
                lat.start()
                started_q = True
            time.sleep(0.005)
        e2e_s = time.time() - t0
        e2e_cpu = sum(proc.cpu_times()[:2]) - cpu0  # the ingest process's user + system seconds
        results["mqtt_obs_cpu"] = n_obs / e2e_cpu
        rss1 = proc.memory_info().rss / 2**20
        lat.stop()
        pub.join()
        if args.soak_minutes > 0:
            soak(ctx, proc, long, work, host, port, args.soak_minutes, done, args.soak_rate, columnar, mem)
        stop.set()
        ing.join()
        h = HistoryStore(root / "history")
        c = h.count()
        assert c["rows"] == n_obs or args.soak_minutes > 0, c
        results["mqtt_obs"] = n_obs / e2e_s
        results["mqtt_s"] = e2e_s
        print(f"[MQTT e2e] {n_obs / e2e_s:,.0f} readings/s ({len(MSGS) / e2e_s:,.0f} msg/s, {e2e_s:.1f} s); stored "
              f"{c['rows']:,} rows, {c['values']:,} values = {c['values'] / max(1, int(long.value.notna().sum())):.4f}"
              f" of the non-missing readings; ratio to broker->subscriber ceiling "
              f"{results['mqtt_obs'] / results['raw_mqtt_obs']:.2f}, to Parquet append ceiling "
              f"{results['mqtt_obs'] / app_rate:.2f}")
        print(f"[MQTT e2e, CPU] ingest process {e2e_cpu:.2f} CPU-s = {results['mqtt_obs_cpu']:,.0f} readings per "
              f"CPU-second; ratio to the plain paho subscriber per CPU-second "
              f"{results['mqtt_obs_cpu'] / results['raw_mqtt_obs_cpu']:.2f} (less sensitive to the machine's load "
              f"than the wall-clock ratio)")
        print(f"[memory] ingest process RSS {rss0:.0f} MiB after start, {rss1:.0f} MiB after {n_obs:,} readings")
        # idle latencies on the same store (the baseline of the latency ratios)
        idle = Latencies(root, lat.days, lat.ents)
        st = StateStore(root / "state.sqlite")
        rng = random.Random(2)
        for _ in range(max(200, len(lat.hist_ms))):
            idle.run_once(st, h, rng)
        for name, under, base in (("state query (1 entity, latest)", lat.state_ms, idle.state_ms),
                                  ("history query (1 station, 1 day)", lat.hist_ms, idle.hist_ms)):
            print(f"[latency] {name}: under load p50 {pct(under, 50):.1f} ms, p99 {pct(under, 99):.1f} ms "
                  f"(n={len(under)}); idle p50 {pct(base, 50):.1f} ms, p99 {pct(base, 99):.1f} ms; "
                  f"p99 ratio load/idle {pct(under, 99) / pct(base, 99):.2f}")
        t_c = time.perf_counter()
        h.compact()
        print(f"[history] compaction of {len(h.days()):,} day partitions: {time.perf_counter() - t_c:.1f} s; "
              f"{h.physical_rows():,} rows on disk after")
        idle2 = Latencies(root, lat.days, lat.ents)
        for _ in range(200):
            idle2.run_once(st, h, rng)
        print(f"[latency] history query after compaction: p50 {pct(idle2.hist_ms, 50):.1f} ms, "
              f"p99 {pct(idle2.hist_ms, 99):.1f} ms")
        h.close()

        # 4. HTTP batch upsert end to end: secured (token, role check, one audit row per request) and,
        #    as its baseline, the same server with auth off outside any workspace (no check, no audit)
        if not args.skip_http:
            updates: list[dict] = []
            for _, p in MSGS:
                items = json.loads(p)
                for it in items if isinstance(items, list) else [items]:
                    it["type"] = "AirQualityObserved"
                    updates.append(it)

            def chunks(ups: list[dict]) -> list[bytes]:
                return [json.dumps(ups[i:i + args.http_batch], ensure_ascii=False).encode()
                        for i in range(0, len(ups), args.http_batch)]

            bodies = chunks(updates)
            # N clients: N gateways, each posting the updates of its own stations (every N-th), in time order
            order = {e.id: i for i, e in enumerate(stations())}
            n_cl = max(1, args.http_clients)
            shares = [chunks([u for u in updates if order[u["id"]] % n_cl == c]) for c in range(n_cl)]
            last = pd.Timestamp(long["time"].max())
            ids = [e.id for e in stations()]
            rng = np.random.default_rng(1)
            singles = [json.dumps({"id": ids[i % len(ids)], "type": "AirQualityObserved",
                                   "observedAt": (last + pd.Timedelta(hours=1 + i // len(ids))).isoformat(),
                                   "pm25": float(rng.integers(5, 400))}).encode() for i in range(args.singles)]
            per_req = round(n_obs / len(updates) * args.http_batch)  # readings per request
            # the sequential client, then (--http-clients N > 1) N concurrent ones: each on a fresh workspace and twin
            for run in ([[bodies], shares] if n_cl > 1 else [[bodies]]):
                ws = Workspace.init(work / f"http-ws-{len(run)}", owner="bench")
                ws.add_user("gateway", "integrator")
                token = ws.catalog.issue_token("gateway", label="bench")[1]
                sing = singles if len(run) == 1 else []
                took, ms, srv_cpu = run_http(ws.root / "twin", run, n_obs, token=token, auth=True, alerts=alerts,
                                             singles=sing)
                audited = sum(1 for r in ws.catalog.audit_log("twin", limit=10**7) if r["action"] == "twin.write")
                n_req = sum(map(len, run))
                assert audited == n_req + len(sing), (audited, n_req, len(sing))
                key = "http_obs" if len(run) == 1 else "http_obs_n"
                results[key] = n_obs / took
                results[key + "_cpu"] = n_obs / srv_cpu
                if len(run) == 1:
                    http_s, single_ms = took, ms
                who = "sequential client" if len(run) == 1 else \
                    f"{n_cl} concurrent clients, each its stations' updates in time order (keep-alive connections)"
                print(f"[HTTP e2e] batch upsert with auth ({args.http_batch} entity updates = {per_req:,} readings "
                      f"per request, {n_req:,} requests, {who}, bearer token, {audited:,} audit rows): "
                      f"{n_obs / took:,.0f} readings/s ({took:.1f} s, {1000 * took / n_req:.1f} ms/request); "
                      f"server {srv_cpu:.2f} CPU-s = {n_obs / srv_cpu:,.0f} readings per CPU-second; ratio to Parquet "
                      f"append ceiling {results[key] / app_rate:.2f}, to the broker->subscriber ceiling "
                      f"{results[key] / results['raw_mqtt_obs']:.2f}; load {os.getloadavg()[0]:.1f}")
            if single_ms:
                results["single_rps"] = len(single_ms) / (sum(single_ms) / 1e3)
                results["single_p99"] = pct(single_ms, 99)
                print(f"[HTTP single] {len(single_ms):,} single-reading posts (POST /twin/v1/observations, one entity, "
                      f"one property, sequential client, bearer token): {results['single_rps']:,.0f} requests/s, "
                      f"p50 {pct(single_ms, 50):.1f} ms, p99 {results['single_p99']:.1f} ms")
            if rates:
                ws2 = Workspace.init(work / "single-ws", owner="bench")
                ws2.add_user("gateway", "integrator")
                ramp = run_single_ramp(ctx, ws2.root / "twin", ws2.catalog.issue_token("gateway")[1], rates,
                                       args.single_seconds, args.single_conns, alerts)
                ok = [r for r in ramp if r["p99"] < 100 and r["achieved"] >= 0.95 * r["rate"]]
                best = max(ok, key=lambda r: r["achieved"]) if ok else {"achieved": 0.0, "p99": float("nan")}
                results["single_rps"], results["single_p99"] = best["achieved"], best["p99"]
            if not args.skip_http_baseline:
                base_s, _, _ = run_http(work / "http-twin-noauth", [bodies], n_obs, token=None, auth=False, alerts=alerts)
                results["http_noauth_obs"] = n_obs / base_s
                print(f"[HTTP e2e] same without auth (auth=False, no audit): {n_obs / base_s:,.0f} readings/s "
                      f"({base_s:.1f} s, {1000 * base_s / len(bodies):.1f} ms/request); auth costs "
                      f"{1000 * (http_s - base_s) / len(bodies):+.2f} ms/request, throughput ratio auth/no-auth "
                      f"{results['http_obs'] / results['http_noauth_obs']:.2f}")
        goal = 20_000

        def met(ok: bool) -> str:
            return "met" if ok else "NOT met"

        ratio = results["mqtt_obs"] / results["raw_mqtt_obs"]
        print(f"goals (auto-alerts {'on' if alerts else 'OFF'}): >= {goal:,} readings/s end to end: MQTT "
              f"{met(results['mqtt_obs'] >= goal)}" + ("" if args.skip_http else f", HTTP {met(results['http_obs'] >= goal)}")
              + f"; MQTT >= 0.25 of raw paho subscriber: {ratio:.2f} {met(ratio >= 0.25)}"
              + ("" if args.skip_http else
                 "; HTTP batch >= 0.25 of it: " + ", ".join(
                     f"{who} {results[k] / results['raw_mqtt_obs']:.2f} {met(results[k] >= 0.25 * results['raw_mqtt_obs'])}"
                     for k, who in (("http_obs", "sequential"), ("http_obs_n", f"{args.http_clients} clients"))
                     if k in results))
              + ("" if results["mqtt_s"] >= 1.0 else  # the first batch's wait and the last ack are a third of it
                 f" (a {results['mqtt_s']:.1f} s run: too short to judge the ratio; --months 6 is the measure)")
              + ("" if "single_rps" not in results else
                 f"; single-reading >= 500 requests/s with p99 < 100 ms: {met(results['single_rps'] >= 500)}, "
                 f"{met(results['single_p99'] < 100)}"))
        print(f"machine after run: {machine()}")
    finally:
        for child in mp.active_children():  # stopped early (SIGTERM, Ctrl-C, an error): no child left running
            child.terminate()
            child.join(10)
        subprocess.run([str(SCRIPT), "stop", str(bdir)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
