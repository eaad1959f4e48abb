"""The served API (real uvicorn on a loopback port): a 400 MB chunked body is refused with 413 while it
is being read, and the event loop is never blocked: an SSE client keeps receiving alert events while
another client's batch is being committed (issue 13, issue 11 item 5)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from citytwin.service.app import create_app, open_runtime

AQ = "urn:ngsi-ld:AirQualityObserved:"
MB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def served(twin_ws) -> Iterator[tuple[str, Any, dict[str, str]]]:
    rt = open_runtime(twin_ws.root)
    rt.stores.state.put_entity(AQ + "Dongsi", "AirQualityObserved", 116.4, 39.9, {})
    app = create_app(runtime=rt)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{port}", rt, twin_ws.headers("integrator")
    server.should_exit = True
    th.join(10)
    rt.close()


def test_400mb_chunked_body_is_refused_while_reading(served):
    base, rt, headers = served
    port = int(base.rsplit(":", 1)[1])
    limit = rt.max_body
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (f"POST /twin/v1/observations HTTP/1.1\r\nHost: x\r\nAuthorization: {headers['Authorization']}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    sock.sendall(head)
    chunk = b"%x\r\n" % MB + b" " * MB + b"\r\n"
    sent = 0
    answer = b""
    try:
        while sent < 400 * MB:
            sock.setblocking(False)
            try:
                answer = sock.recv(65536)
            except BlockingIOError:
                answer = b""
            sock.setblocking(True)
            if answer:
                break
            sock.sendall(chunk)
            sent += MB
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(10)
    try:
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # refused once the limit was passed: far less than 400 MB was ever sent (socket buffers aside)
    assert sent < limit + 64 * MB, (sent, limit)
    assert rt.stores.deadletters.counts() == {"oversized": 1}


def test_sse_keeps_receiving_while_a_batch_commits(served):
    """A commit hook that takes 1.5 s (a slow disk) runs inside the commit: with the commit on the event
    loop no event could reach the stream meanwhile; off the loop, events raised during it arrive."""
    base, rt, headers = served
    window: dict[str, float] = {}

    def slow_disk(rep: Any, lo: int, hi: int) -> None:
        window["start"] = time.monotonic()
        time.sleep(1.5)
        window["end"] = time.monotonic()

    rt.ingestor.on_commit.append(slow_disk)
    arrivals: list[float] = []
    stop = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c, \
                c.stream("GET", "/twin/v1/alerts/stream", params={"timeout": 20}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("event:"):
                    arrivals.append(time.monotonic())
                if stop.is_set():
                    return

    def raise_alerts() -> None:
        i = 0
        while not stop.is_set():
            rt.alerts.raise_alert("test_rule", f"{AQ}E{i}", severity="warning", message="tick")
            i += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=listen, daemon=True), threading.Thread(target=raise_alerts, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    batch = [{"id": AQ + "Dongsi", "observedAt": f"2015-12-{1 + i // 24:02d}T{i % 24:02d}:00:00Z", "pm25": i % 500}
             for i in range(24 * 28)]
    with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
        r = c.post("/twin/v1/observations", content=json.dumps(batch), headers={"content-type": "application/json"})
        health_during = None
        assert r.status_code == 201 and r.json()["accepted"] == len(batch)
        health_during = c.get("/health").status_code
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(25)
    assert health_during == 200
    assert {"start", "end"} <= set(window)
    during = [t for t in arrivals if window["start"] + 0.2 < t < window["end"]]
    assert len(during) >= 3, (len(arrivals), window)  # events every 50 ms: about 25 expected
