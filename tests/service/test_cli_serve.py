"""`citytwin serve`: one process serving the API and the web app (a real uvicorn server here)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tests.conftest import CLI_ENV
from tests.service.conftest import ServiceWorkspace
from typer.testing import CliRunner

from citytwin.cli.main import app


def test_serve_needs_a_workspace(tmp_path: Path) -> None:
    env = {**CLI_ENV, "CITYTWIN_WORKSPACE": ""}
    r = CliRunner().invoke(app, ["serve"], env=env)
    assert r.exit_code == 2 and "no workspace given" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["serve", "-w", str(tmp_path / "none")], env=env)
    assert r.exit_code == 2 and "not a citytwin workspace" in r.output
    r = CliRunner().invoke(app, ["serve", "-w", str(tmp_path), "--port", "0"], env=env)
    assert r.exit_code == 2 and "--port" in r.output


def test_serve_runs_one_process(service_ws: ServiceWorkspace) -> None:
    """``--demo`` on an existing workspace builds nothing, and prints the address and an admin token."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("citytwin")
    proc = subprocess.Popen([str(exe), "serve", "--demo", "-w", str(service_ws.ws.root), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **CLI_ENV})
    base = f"http://127.0.0.1:{port}"
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().decode() for _ in range(2)]
        assert f"http://127.0.0.1:{port}/" in lines[0], lines
        token = lines[1].split("token ")[-1].strip()
        end = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < end, "the server did not start"
            time.sleep(0.3)
        h = service_ws.headers("viewer")
        assert httpx.get(f"{base}/collections", timeout=30).status_code == 401
        ids = {c["id"] for c in httpx.get(f"{base}/collections", headers=h, timeout=30).json()["collections"]}
        assert "helsinki_buildings" in ids and "secret_sites" not in ids
        assert httpx.get(f"{base}/tiles/helsinki_buildings/15/18654/9484.mvt", headers=h, timeout=30).content
        assert httpx.get(f"{base}/ngsi-ld/v1/entities", headers=h, timeout=30).status_code == 200
        assert "citytwin" in httpx.get(f"{base}/", follow_redirects=True, timeout=30).text
        me = httpx.post(f"{base}/auth/login", json={"user": "admin", "token": token}, timeout=30).json()
        assert me["role"] == "admin" and "secret_sites" in me["datasets"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
