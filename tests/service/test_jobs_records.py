"""Jobs outlive the service: they are rows of the records database (SQLite or PostgreSQL), a new
runner (a restarted ``citytwin serve``) lists them with their results, and jobs whose process died
while they were queued or running are marked failed with the reason."""

from __future__ import annotations

import socket
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from citytwin.foundation.workspace import Workspace
from citytwin.service.jobs import JobRunner
from citytwin.workflows import jobs as wjobs

#: one suite, two backends
pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture()
def table_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process of our own (a fake for the runner's logic) that stores one derived dataset."""
    import pandas as pd

    def run(ws: Any, inputs: dict[str, Any], progress: wjobs.Progress) -> dict[str, Any]:
        progress(50, "writing")
        v = ws.write_derived(inputs["name"], pd.DataFrame({"a": [1, 2, 3]}), inputs=[], parameters=inputs)
        return {"datasets": [{"dataset": inputs["name"], "version": v}]}

    monkeypatch.setitem(wjobs.PROCESSES, "table", wjobs.Process(
        "table", "table", "test", {"name": {"schema": {"type": "string"}}}, run))


def test_a_restarted_runner_lists_past_jobs(workspace: Workspace, table_process: None) -> None:
    first = JobRunner(workspace)
    job = first.submit("table", {"name": "t1"}, workspace)
    done = first.wait(job.id, timeout=120)
    assert done.status == "successful", done.message
    first.close()
    again = JobRunner(Workspace.open(workspace.root, user="admin"))  # the service started again
    past = again.get(job.id)
    assert (past.status, past.process, past.user, past.inputs) == ("successful", "table", "admin", {"name": "t1"})
    assert past.results == done.results and past.progress == 100
    assert past.doc()["finished"] == done.doc()["finished"]
    assert [j.id for j in again.jobs()] == [job.id]
    again.close()


def test_jobs_of_a_dead_process_are_marked_failed(workspace: Workspace) -> None:
    gone = _dead_pid()
    now = datetime(2026, 3, 1, tzinfo=UTC).isoformat()
    base = {"process": "table", "user": "admin", "inputs": {}, "progress": 40.0, "message": "step",
            "created": now, "started": now, "finished": None, "results": None}
    ws = workspace
    ws.catalog.put_job({**base, "id": "dead", "status": "running", "runner": f"{socket.gethostname()}:{gone}:x"})
    ws.catalog.put_job({**base, "id": "queued", "status": "accepted", "runner": None})
    ws.catalog.put_job({**base, "id": "other-host", "status": "running", "runner": "elsewhere.example:1:x"})
    ws.catalog.put_job({**base, "id": "done", "status": "successful", "finished": now, "runner": None,
                        "results": {"datasets": []}})
    runner = JobRunner(ws)
    st = {j.id: (j.status, j.message) for j in runner.jobs()}
    assert st["dead"][0] == st["queued"][0] == "failed"
    assert st["dead"][1].startswith("interrupted: the service running this job stopped")
    assert st["other-host"] == ("running", "step")  # that host's service marks its own
    assert st["done"] == ("successful", "step")
    runner.close()


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid
