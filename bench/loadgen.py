"""A cheap open-loop HTTP/1.1 load generator for the service benchmarks (service_latency, twin_throughput).

It runs in its own process (so its CPU is not the server's, and is measured apart), on uvloop when
installed, with raw asyncio streams: ``conns`` keep-alive connections, no pipelining (one request in
flight per connection), requests built once as bytes. Open loop: request ``i`` is due at
``t0 + i / rate`` whether or not earlier ones were answered; a due request waits for a free
connection, and its latency counts from the time it was due, so queueing in the server (or for a
connection) is included and a slow server is not hidden by a waiting client.

>>> req = get_request("/health", {"Authorization": "Bearer x"})
>>> req.startswith(b"GET /health HTTP/1.1") and req.endswith(b"\\r\\n\\r\\n")
True
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import resource
import time
from typing import Any


def get_request(path: str, headers: dict[str, str] | None = None) -> bytes:
    """The bytes of a ``GET`` request (keep-alive)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n{head}\r\n".encode()


def post_request(path: str, body: bytes, headers: dict[str, str] | None = None,
                 content_type: str = "application/json") -> bytes:
    """The bytes of a ``POST`` request with ``body``."""
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\n{head}Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = -1
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length > 0:
        await reader.readexactly(length)
    return status


async def _load(port: int, requests: list[bytes], rate: float, n: int, conns: int,
                ok: tuple[int, ...]) -> dict[str, Any]:
    clock = time.perf_counter  # uvloop's loop.time() has millisecond steps
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    lat: list[float] = []
    sent: list[float] = []  # from the send to the answer (without the wait for a connection or the client)
    bad: dict[int, int] = {}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                job = await queue.get()
                if job is None:
                    return
                due, req = job
                t_send = clock()
                try:
                    writer.write(req)
                    status = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    status = 599
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                if status not in ok:
                    bad[status] = bad.get(status, 0) + 1
                t_end = clock()
                lat.append((t_end - due) * 1e3)
                sent.append((t_end - t_send) * 1e3)
        finally:
            writer.close()

    tasks = [asyncio.create_task(worker()) for _ in range(conns)]
    await asyncio.sleep(0.2)  # connections open
    t0 = clock() + 0.01
    i = 0
    while i < n:
        now = clock()
        due = t0 + i / rate
        if due > now:
            await asyncio.sleep(due - now)
            continue
        while i < n and t0 + i / rate <= now:  # everything due by now
            queue.put_nowait((t0 + i / rate, requests[i % len(requests)]))
            i += 1
    for _ in tasks:
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    return {"lat": lat, "sent": sent, "bad": bad, "wall": clock() - t0}


def _child(port: int, requests: list[bytes], rate: float, n: int, conns: int, ok: tuple[int, ...], out: Any) -> None:
    factory: Any = asyncio.new_event_loop
    loop_name = "asyncio"
    try:
        import uvloop

        factory, loop_name = uvloop.new_event_loop, "uvloop"
    except ImportError:  # the standard loop: more client CPU, said in the result
        pass
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    with asyncio.Runner(loop_factory=factory) as runner:
        res = runner.run(_load(port, requests, rate, n, conns, ok))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    res["client_cpu_s"] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    res["loop"] = loop_name
    out.put(res)


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; NaN if empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def run(port: int, requests: list[bytes], rate: float, seconds: float, *, conns: int = 64,
        ok: tuple[int, ...] = (200,), server_pid: int | None = None) -> dict[str, Any]:
    """Offer ``rate`` requests/s for ``seconds`` from a child process; requests cycle through ``requests``.

    Returns ``rate``, ``n``, ``achieved`` (answers/s), ``p50``, ``p99`` (ms from the due time),
    ``p99_from_send`` (ms from the request's send: without its wait for a free connection or for the
    client process itself, which a loaded machine may hold back),
    ``errors`` (answers whose status is not in ``ok``, by status), ``client_cpu`` (the load generator's
    CPU seconds per wall second: 1.0 is one core) and, with ``server_pid``, ``server_cpu`` (same unit)
    and ``server_cpu_ms_per_req``.
    """
    n = max(1, int(rate * seconds))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    cpu0 = _cpu(server_pid)
    p = ctx.Process(target=_child, args=(port, requests, rate, n, conns, ok, q))
    p.start()
    res = q.get()
    p.join()
    cpu1 = _cpu(server_pid)
    lat, wall = res["lat"], res["wall"]
    row = {"rate": rate, "n": len(lat), "achieved": len(lat) / wall, "p50": pct(lat, 50), "p99": pct(lat, 99),
           "p99_from_send": pct(res["sent"], 99),
           "errors": res["bad"], "client_cpu": res["client_cpu_s"] / wall, "client_loop": res["loop"]}
    if server_pid is not None:
        row["server_cpu"] = (cpu1 - cpu0) / wall
        row["server_cpu_ms_per_req"] = (cpu1 - cpu0) * 1e3 / max(1, len(lat))
    return row


def _cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of a process and its threads so far (0 if none)."""
    if pid is None:
        return 0.0
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return float("nan")
