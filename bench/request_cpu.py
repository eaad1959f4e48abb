"""Server CPU per HTTP batch upsert request, by thread: the real server (``service.app.serve(create_app(...))``, as
``bench/twin_throughput.py`` and ``citytwin twin serve`` run it, auth on), one sequential client posting the ``--quick``
month's entity updates (the bench's messages) as bodies of ``--batch`` updates. After 3 requests not counted, the
server's user + system CPU over the rest is read from ``/proc/PID/task/*/stat`` (every thread, by name: the event
loop ``MainThread``, the ``AnyIO worker thread`` that decodes, parses and commits, the history writers, the audit
writer, the compactor), per request, with the load. Run it at a few sizes (1, 24, 240, 2,400 updates) with and
without ``--alerts`` to split a request's fixed cost from its cost per reading (docs/twin.md, "Session 17: a
request's fixed cost").

``--handler none`` answers the upsert with a fixed 201 right after reading the body, on the event loop; ``--handler
hop`` the same from a worker thread: what the HTTP layer (uvicorn, the middleware, the token and role check, the audit
row) and the hand-off to the worker thread cost without the upsert.

Compare two versions of the code by alternating runs (``PYTHONPATH=/path/to/other/src`` for the other)::

    .venv/bin/python bench/request_cpu.py --batch 240 --alerts
    .venv/bin/python bench/request_cpu.py --batch 2400 --months 4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx

import citytwin
from citytwin.foundation.workspace import Workspace
from citytwin.service.app import open_runtime
from citytwin.twin import feeds as F
from twin_throughput import free_port, load_long, stations

TICK = os.sysconf("SC_CLK_TCK")
UPSERT = "/ngsi-ld/v1/entityOperations/upsert"
_HANDLERS = {
    "none": ("from citytwin.service import ngsi\nfrom starlette.responses import JSONResponse\n"
             "async def _fixed(request):\n    await ngsi.read_body(request)\n"
             "    return JSONResponse(['x'], status_code=201)\nngsi.batch_upsert = _fixed\n"),
    "hop": ("from citytwin.service import ngsi\nfrom starlette.responses import JSONResponse\n"
            "ngsi._batch_upsert = lambda request, raw: JSONResponse(['x'], status_code=201)\n"),
}


def _tasks(pid: int) -> dict[int, tuple[int, int]]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            f = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(f[11]), int(f[12]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=240, help="entity updates per request")
    ap.add_argument("--alerts", action="store_true", help="auto-alerts and auto-verify on (the shipped hooks)")
    ap.add_argument("--no-auth", action="store_true")
    ap.add_argument("--months", type=int, default=None, help="months of data instead of --quick's one")
    ap.add_argument("--limit", type=int, default=0, help="at most this many requests (small bodies)")
    ap.add_argument("--handler", choices=["upsert", *_HANDLERS], default="upsert")
    args = ap.parse_args()

    updates = []
    for _, _t, p in F.messages_from_long(load_long(args.months is None, args.months), per_message=12):
        for it in json.loads(p):
            it["type"] = "AirQualityObserved"
            updates.append(it)
    bodies = [json.dumps(updates[i:i + args.batch], ensure_ascii=False).encode()
              for i in range(0, len(updates), args.batch)]
    if args.limit:
        bodies = bodies[:args.limit]
    readings = sum(b.count(b'"value"') for b in bodies[3:]) / max(1, len(bodies) - 3)
    work = Path(tempfile.mkdtemp(prefix="ct-request-cpu-"))
    srv = None
    try:
        ws = Workspace.init(work / "ws", owner="bench")
        ws.add_user("gateway", "integrator")
        token = ws.catalog.issue_token("gateway", label="bench")[1]
        hroot = ws.root / "twin"
        rt = open_runtime(hroot)
        rt.register(stations())
        rt.close()
        port = free_port()
        dump = work / "threads.json"
        code = ("import json, signal, threading\nimport citytwin.service.app as a\n"
                f"signal.signal(signal.SIGUSR1, lambda *x: open({str(dump)!r}, 'w').write(json.dumps("
                "{t.native_id: t.name for t in threading.enumerate()})))\n"
                f"app = a.create_app({str(hroot)!r}, auth={not args.no_auth}, auto_alerts={args.alerts}, "
                f"auto_verify={args.alerts})\n" + _HANDLERS.get(args.handler, "")
                + f"a.serve(app, '127.0.0.1', {port})")
        srv = subprocess.Popen([sys.executable, "-c", code])
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            for _ in range(300):
                try:
                    c.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            for i, b in enumerate(bodies):
                if i == 3:  # the first three not counted (first files, first connections)
                    t0, w0 = _tasks(srv.pid), time.time()
                r = c.post(UPSERT, content=b, headers=headers)
                assert r.status_code == 201, r.text[:300]
            took = time.time() - w0
            time.sleep(0.3)
            t1 = _tasks(srv.pid)
        os.kill(srv.pid, signal.SIGUSR1)
        time.sleep(0.3)
        names = {int(k): v for k, v in json.loads(dump.read_text()).items()}
        n = len(bodies) - 3
        user = sum(t1[t][0] - t0.get(t, (0, 0))[0] for t in t1) / TICK
        system = sum(t1[t][1] - t0.get(t, (0, 0))[1] for t in t1) / TICK
        by: dict[str, float] = {}
        for t in t1:
            name = names.get(t, "(ended)").rstrip("0123456789_")
            by[name] = by.get(name, 0.0) + (sum(t1[t]) - sum(t0.get(t, (0, 0)))) / TICK
        print(f"code: {Path(citytwin.__file__).parent}; {time.strftime('%H:%M:%S', time.gmtime())} UTC, "
              f"load {os.getloadavg()[0]:.1f}")
        print(f"batch {args.batch} ({readings:,.0f} readings a request), alerts {'on' if args.alerts else 'off'}, "
              f"handler {args.handler}: {n} requests in {took:.2f} s; server {user + system:.2f} CPU-s = "
              f"{1000 * (user + system) / n:.2f} ms a request (user {1000 * user / n:.2f}, system "
              f"{1000 * system / n:.2f}); by thread, ms a request: "
              + ", ".join(f"{k} {1000 * v / n:.2f}" for k, v in sorted(by.items(), key=lambda x: -x[1]) if v))
    finally:
        if srv is not None:
            srv.terminate()
            srv.wait(20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
