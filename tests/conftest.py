"""Shared test fixtures: where the real data is, a fresh workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (real public data; never copied into the repo)."""
    if not SHARED_DATA.exists():
        pytest.fail(f"real data not found at {SHARED_DATA}: the checkout must sit beside shared/")
    return SHARED_DATA


@pytest.fixture()
def workspace(tmp_path: Path):
    """A new, empty workspace owned by an admin user named 'admin'."""
    from citytwin.foundation.workspace import Workspace

    return Workspace.init(tmp_path / "ws", owner="admin")
