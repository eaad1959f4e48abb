"""Fixtures of the browser tests: one demo workspace and one ``citytwin serve`` per session, Chromium.

The demo workspace is built once per session in a temporary folder (``citytwin demo``'s
:func:`~citytwin.workflows.demo.build_demo`); a ``viewer`` user is added and ``helsinki_buildings`` is
classified ``sensitive`` so that a role without clearance has a layer it must not see. Three
air-quality stations are registered in the live twin with clean readings at fixed times (no wall
clock). ``citytwin serve`` runs as a separate process on a free loopback port, with its MQTT ingest
in-process (``--broker``) from a real Mosquitto broker started for the session (``scripts/mosquitto.sh``,
one full-access test account, anonymous clients refused); without Mosquitto the server runs without a
broker and the test that publishes to it is skipped, with that reason.

Chromium is Debian's ``/usr/bin/chromium`` driven by Python Playwright (its own browser download is
blocked here); the tests are skipped, with that reason, only when it is missing.

Screenshots go to ``$CITYTWIN_SCREENSHOTS`` when set (``docs/img`` for the user guide), else to a
temporary folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
AQ = "urn:ngsi-ld:AirQualityObserved:"
#: stations of the live twin (Beijing monitoring sites) and their clean PM2.5 reading at T0
STATIONS = {"Dongsi": (116.417, 39.929, 35.0), "Tiantan": (116.407, 39.886, 60.0), "Guanyuan": (116.339, 39.929,
                                                                                                  120.0)}
T0 = "2015-12-01T08:00:00+08:00"
REPO = Path(__file__).resolve().parents[2]
HAVE_MOSQUITTO = shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``citytwin serve``: its address, workspace folder and one token per user."""

    url: str
    root: Path
    tokens: dict[str, str] = field(default_factory=dict)
    #: (host, port) of the MQTT broker the server ingests from; None without Mosquitto
    broker: tuple[str, int] | None = None

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh --test)")
    return CHROMIUM


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("CITYTWIN_SCREENSHOTS")
    out = Path(env) if env else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace (built once per session) with a viewer, an operator and a sensitive layer."""
    from citytwin.foundation.workspace import Workspace
    from citytwin.workflows.demo import build_demo

    root = tmp_path_factory.mktemp("web") / "demo"
    build_demo(root)
    ws = Workspace.open(root, user="admin")
    ws.add_user("viewer", "viewer", "transport")
    ws.add_user("operator", "integrator", "environment")
    ws.set_classification("helsinki_buildings", "sensitive")
    return root


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int] | None]:
    """A Mosquitto broker on a free loopback port with one test account (in the environment, which
    ``citytwin serve`` and the test's publisher read); None when Mosquitto is not installed."""
    if not HAVE_MOSQUITTO:
        yield None
        return
    d = tmp_path_factory.mktemp("broker")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CITYTWIN_MQTT_USERNAME", "citytwin-web-test")
        mp.setenv("CITYTWIN_MQTT_PASSWORD", secrets.token_urlsafe(16))
        out = subprocess.run([str(REPO / "scripts" / "mosquitto.sh"), "start", str(d)], check=True,
                             capture_output=True, text=True)
        try:
            yield "127.0.0.1", int(out.stdout.strip())
        finally:
            subprocess.run([str(REPO / "scripts" / "mosquitto.sh"), "stop", str(d)], check=False)


@pytest.fixture(scope="session")
def web_server(demo_root: Path, chromium_path: str, mqtt_broker: tuple[str, int] | None) -> Iterator[Server]:
    import httpx

    from citytwin.foundation.workspace import Workspace
    from citytwin.service.server import WEB_DIR

    if not (WEB_DIR / "vendor" / "maplibre-gl.js").exists():
        pytest.fail(f"{WEB_DIR / 'vendor'} lacks MapLibre/ECharts: run scripts/setup.sh (npm ci in web/)")
    root = demo_root
    ws = Workspace.open(root, user="admin")
    srv = Server("", root, broker=mqtt_broker)
    for user in ("admin", "viewer", "operator", "resident"):
        srv.tokens[user] = ws.catalog.issue_token(user)[1]
    port = _free_port()
    srv.url = f"http://127.0.0.1:{port}"
    log = (root.parent / "serve.log").open("wb")
    cmd = [sys.executable, "-m", "citytwin.cli.main", "serve", "-w", str(root), "--port", str(port)]
    if mqtt_broker is not None:  # the MQTT ingest runs in the server's process
        cmd += ["--broker", f"{mqtt_broker[0]}:{mqtt_broker[1]}"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{srv.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("citytwin serve did not start: " + (root.parent / "serve.log").read_text()[-2000:])
            time.sleep(0.3)
        with httpx.Client(base_url=srv.url, headers=srv.headers("operator"), timeout=30) as c:
            for name, (lon, lat, pm25) in STATIONS.items():
                r = c.post("/ngsi-ld/v1/entities", json={
                    "id": AQ + name, "type": "AirQualityObserved", "name": name,
                    "location": {"type": "Point", "coordinates": [lon, lat]}, "observedAt": T0, "pm25": pm25})
                assert r.status_code == 201, r.text
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Watched:
    """A signed-in page of the operations center, with every request and console error it made recorded."""

    page: Any
    server: Server
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def sign_in(self, user: str) -> None:
        page = self.page
        page.goto(self.server.url + "/")
        page.fill("#login-user", user)
        page.fill("#login-token", self.server.tokens[user])
        page.click("#login-submit")
        page.wait_for_selector("#main:not([hidden])", timeout=30_000)
        self.wait_map()

    def wait_map(self, timeout: float = 60_000) -> None:
        """Until the map has loaded its style and every tile in view."""
        self.page.wait_for_function("window.citytwin.map && window.citytwin.map.loaded() && "
                                    "window.citytwin.map.areTilesLoaded()", timeout=timeout)


@pytest.fixture()
def new_page(browser: Any, web_server: Server) -> Iterator[Any]:
    """A factory of pages that let through only requests to the local server (others recorded, aborted)."""
    contexts: list[Any] = []

    def make(lang: str = "en") -> Watched:
        ctx = browser.new_context(viewport={"width": 1400, "height": 850}, locale="en-US")
        contexts.append(ctx)
        ctx.add_init_script(f"localStorage.setItem('citytwin.lang', '{lang}')")
        page = ctx.new_page()
        w = Watched(page, web_server)
        local = web_server.url + "/"

        def route(r: Any) -> None:
            url = r.request.url
            w.requests.append(url)
            if url.startswith(local) or url.startswith(("blob:", "data:")):
                r.continue_()
            else:
                w.blocked.append(url)
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: w.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: w.errors.append(f"page error: {e}"))
        return w

    yield make
    for c in contexts:
        c.close()
