"""Fixtures of the twin tests: a workspace whose twin API is served with tokens, one per role."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from citytwin.foundation.workspace import Workspace

#: one user per role; the workspace owner ``admin`` is the admin
USERS = {"integrator": "ops", "viewer": "vera", "public": "resident", "analyst": "ana", "steward": "sam",
         "admin": "admin"}


@dataclass
class TwinWorkspace:
    """A workspace, its twin folder and an API token per role (``tokens[role]``)."""

    ws: Workspace
    tokens: dict[str, str]

    @property
    def root(self) -> Path:
        """The twin folder (``WORKSPACE/twin``): ``create_app`` finds the workspace from it."""
        return self.ws.root / "twin"

    def headers(self, role: str = "integrator") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture()
def twin_ws(workspace: Workspace) -> TwinWorkspace:
    """A workspace with users ops (integrator), vera (viewer), resident (public), ana (analyst),
    sam (steward) and admin, each with one API token."""
    tokens = {}
    for role, name in USERS.items():
        if name != "admin":
            workspace.add_user(name, role)
        tokens[role] = workspace.catalog.issue_token(name, label="test")[1]
    return TwinWorkspace(workspace, tokens)


@pytest.fixture(autouse=True)
def mqtt_dev_account(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A fresh broker account for each test: ``scripts/mosquitto.sh start`` (anonymous access off)
    creates it from these variables and every MQTT client of citytwin logs in with them."""
    user, password = "citytwin-test", secrets.token_urlsafe(16)
    monkeypatch.setenv("CITYTWIN_MQTT_USERNAME", user)
    monkeypatch.setenv("CITYTWIN_MQTT_PASSWORD", password)
    return user, password


def wait_until(cond: Callable[[], object], timeout: float = 30.0, step: float = 0.02) -> bool:
    """Poll ``cond`` until it is true or ``timeout`` seconds have passed; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A Mosquitto broker of its own for one test (scripts/mosquitto.sh: the project's configuration), its
    host and port; stopped after the test."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "mosquitto.sh"
    d = tmp_path / "broker"
    port = int(subprocess.run([str(script), "start", str(d)], check=True, capture_output=True, text=True)
               .stdout.strip())
    yield "127.0.0.1", port
    subprocess.run([str(script), "stop", str(d)], check=False)
