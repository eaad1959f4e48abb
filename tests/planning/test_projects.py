"""E3 project lifecycle: illegal transitions refused (and audited), outcome by DiD recovers a planted effect."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.workspace import Workspace
from citytwin.planning.lifecycle import STAGES, TransitionError, check_transition, did
from citytwin.workflows.planning import outcome, project_store

#: one suite, two backends: each test runs on SQLite (the embedded default) and PostgreSQL (tests/pg.py)
pytestmark = pytest.mark.usefixtures("backend")

runner = CliRunner()


def test_transitions() -> None:
    for a, b in pairwise(STAGES):
        check_transition(a, b)
    check_transition("feedback", "planning")
    for a, b in [("planning", "construction"), ("construction", "financing"), ("monitoring", "feedback"),
                 ("feedback", "evaluation")]:
        with pytest.raises(TransitionError, match=f"cannot move from {a} to {b}"):
            check_transition(a, b)


def _panel(effect: float, seed: int = 1) -> pd.DataFrame:
    """Areas x months of an indicator: area effects, a common trend, noise, and ``effect`` added to the
    treated areas after the project (the planted effect)."""
    rng = np.random.default_rng(seed)
    rows = []
    for area in range(40):
        treated = area < 10
        base = rng.normal(50, 5)
        for month in range(24):
            post = month >= 12
            y = base + 0.3 * month + rng.normal(0, 2) + (effect if treated and post else 0.0)
            rows.append({"area": f"a{area}", "month": month, "treated": int(treated), "post": int(post), "y": y})
    return pd.DataFrame(rows)


def test_did_recovers_planted_effect() -> None:
    r = did(_panel(4.0), outcome="y", treated="treated", post="post", cluster="area")
    assert r.ci[0] < 4.0 < r.ci[1]
    assert r.effect == pytest.approx(4.0, abs=1.0)
    assert r.clusters == 40 and r.p < 0.001
    # the estimate is the difference of the four cell means
    m = r.means
    assert r.effect == pytest.approx((m["treated_after"] - m["treated_before"])
                                     - (m["comparison_after"] - m["comparison_before"]))
    null = did(_panel(0.0, seed=2), outcome="y", treated="treated", post="post", cluster="area")
    assert null.ci[0] < 0 < null.ci[1]


def test_store_lifecycle_audit_and_outcome(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", owner="alice")
    ticks = iter(f"2026-01-{d:02d}T00:00:00+00:00" for d in range(1, 30))
    store = project_store(ws)
    store.clock = lambda: next(ticks)
    store.create("p1", name="Old town", owner="district", budget=2e7, targets={"y": 3.0})
    with pytest.raises(TransitionError):
        store.move("p1", "construction")
    rec = store.move("p1", "financing")
    assert rec["stage"] == "financing"
    assert [h["to_stage"] for h in rec["history"]] == ["planning", "financing"]
    assert rec["history"][1]["ts"] == "2026-01-02T00:00:00+00:00"  # the refused move took no tick
    log = ws.catalog.audit_log()
    actions = [(a["action"], a["outcome"]) for a in log]
    assert ("project.move", "error") in actions and ("project.move", "ok") in actions
    data = tmp_path / "obs.csv"
    _panel(4.0).to_csv(data, index=False)
    res = outcome("p1", str(data), outcome_col="y", treated="treated", post="post", cluster="area", workspace=ws)
    assert res["ci95"][0] < 4.0 < res["ci95"][1] and res["target"] == 3.0
    assert store.get("p1")["milestones"][0]["indicator"] == "y"


def test_cli_refuses_illegal_transition(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", owner="alice")
    base = ["-w", str(ws.root), "--json"]
    res = runner.invoke(app, ["plan", "project", "create", "p1", "--name", "x", "--owner", "o", *base])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["plan", "project", "move", "p1", "evaluation", *base])
    assert res.exit_code == 2
    assert "cannot move from planning to evaluation" in json.loads(res.stdout)["error"]
    res = runner.invoke(app, ["plan", "project", "show", "p1", *base])
    assert json.loads(res.stdout)["stage"] == "planning"
