"""`citytwin cases list/show/escalate`: JSON output (valid, errors too), masking by role, exit code 2
without a traceback on bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.cases import CaseStore

runner = CliRunner()


def test_list_show_escalate(workspace) -> None:  # type: ignore[no-untyped-def]
    workspace.add_user("ana", "analyst")
    past = datetime(2020, 1, 1, tzinfo=UTC)
    st = CaseStore.of(workspace, lambda: past)
    cid = st.open_case(description="漏水 call 13812345678", reporter_phone="13812345678", department="水务",
                       deadline=past + timedelta(hours=1))
    w = ["-w", str(workspace.root)]
    res = runner.invoke(app, ["cases", "list", *w, "-u", "ana", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows[0]["id"] == cid and rows[0]["reporter_phone"] == "138****5678"
    res = runner.invoke(app, ["cases", "show", str(cid), *w, "-u", "admin", "--json"])
    rec = json.loads(res.output)
    assert rec["case"]["reporter_phone"] == "13812345678" and rec["history"][0]["kind"] == "opened"
    res = runner.invoke(app, ["cases", "escalate", *w, "-u", "admin", "--json"])  # the wall clock: years late
    esc = json.loads(res.output)
    assert esc[0]["case"] == cid and esc[0]["to"] > 1
    res = runner.invoke(app, ["cases", "escalate", *w, "-u", "ana", "--json"])  # no role check: analysts may write
    assert res.exit_code == 0
    res = runner.invoke(app, ["cases", "show", "999", *w, "--json"])
    assert res.exit_code == 2 and json.loads(res.output)["error"] == "no case 999"
    res = runner.invoke(app, ["cases", "list", "--json"], env={"CITYTWIN_WORKSPACE": ""})
    assert res.exit_code == 2 and "no workspace" in json.loads(res.output)["error"]
    res = runner.invoke(app, ["cases", "show", "999", *w])
    assert res.exit_code == 2 and "Traceback" not in res.output and "no case 999" in res.output


def test_demand_command(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from citytwin.workflows.participation import submit_complaint

    t = [datetime(2026, 3, 9, tzinfo=UTC)]
    st = CaseStore.of(workspace, lambda: t[0])
    for i in range(6):
        submit_complaint(st, description=f"工地噪音扰民 {i}", lat=39.90 + 0.0001 * i, lon=116.40, duplicate_radius_m=0)
    for i in range(3):
        submit_complaint(st, description="路灯坏了", lat=39.95, lon=116.30 + 0.01 * i)
    res = runner.invoke(app, ["cases", "demand", "--out", str(tmp_path / "d"), "-w", str(workspace.root), "--json",
                              "--now", "2026-03-10T00:00:00+00:00"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    cells = __import__("pandas").read_csv(tmp_path / "d" / "cells.csv")
    assert cells["count"].sum() == 9
    assert s["topics"][0]["topic"] in ("工地", "噪音", "扰民") and s["topics"][0]["n_recent"] == 6
    res = runner.invoke(app, ["cases", "demand", "--out", str(tmp_path / "d"), "-w", str(workspace.root), "--json",
                              "--now", "yesterday"])
    assert res.exit_code == 2 and json.loads(res.output)["field"] == "now"
