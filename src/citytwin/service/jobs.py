"""Analyses as jobs, OGC API – Processes style.

* ``GET /processes`` and ``GET /processes/{id}`` — the analyses offered
  (:data:`citytwin.workflows.jobs.PROCESSES`: economy index, disparity, spatial structure);
* ``POST /processes/{id}/execution`` with ``{"inputs": {...}}`` — starts a job (always
  asynchronous): 201, ``Location: /jobs/{jobId}`` and the status document;
* ``GET /jobs`` / ``GET /jobs/{id}`` — status (``accepted``, ``running``, ``successful``, ``failed``,
  ``dismissed``), ``progress`` 0–100 and ``message``;
* ``GET /jobs/{id}/results`` — the results (derived datasets with lineage); 404 until successful;
* ``DELETE /jobs/{id}`` — cancel (the job stops at its next progress report) and dismiss.

Jobs are kept in the workspace's records (the catalog's ``jobs`` table, SQLite or PostgreSQL), so a
restarted ``citytwin serve`` lists past jobs and their results; jobs that were queued or running
when their process stopped are marked failed, with the reason, when the next one starts.

Starting and cancelling need a role that may write (integrator, steward, admin); a job reads and
writes the workspace as the user who started it. A user sees (and cancels) only the jobs they
started; admins and stewards see every job. The service holds no analysis logic: each process
calls workflow functions (:mod:`citytwin.workflows.jobs`) in a worker thread.
"""

from __future__ import annotations

import threading
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse

from citytwin.foundation.catalog import runner_alive, runner_id
from citytwin.foundation.errors import CitytwinError, NotFoundError
from citytwin.foundation.workspace import Workspace
from citytwin.service.apiauth import ApiGuard, require_user
from citytwin.service.auth import Principal
from citytwin.workflows.jobs import PROCESSES, Cancelled, check_inputs

router = APIRouter(tags=["processes"])

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Job:
    """One run of a process."""

    id: str
    process: str
    user: str
    inputs: dict[str, Any]
    created: datetime
    status: str = "accepted"
    progress: float = 0.0
    message: str = "queued"
    started: datetime | None = None
    finished: datetime | None = None
    results: dict[str, Any] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def record(self, runner: str | None) -> dict[str, Any]:
        """The job as a row of the catalog's ``jobs`` table."""
        return {"id": self.id, "process": self.process, "user": self.user, "inputs": self.inputs,
                "status": self.status, "progress": self.progress, "message": self.message,
                "created": self.created.isoformat(), "started": self.started and self.started.isoformat(),
                "finished": self.finished and self.finished.isoformat(), "results": self.results, "runner": runner}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Job:
        """A past job read back from the catalog."""
        def t(v: str | None) -> datetime | None:
            return datetime.fromisoformat(v) if v else None

        return cls(r["id"], r["process"], r["user"], r["inputs"], datetime.fromisoformat(r["created"]), r["status"],
                   float(r["progress"]), r["message"] or "", t(r["started"]), t(r["finished"]), r["results"])

    def doc(self, base: str = "") -> dict[str, Any]:
        """The OGC status document."""
        links = [{"href": f"{base}/jobs/{self.id}", "rel": "self", "type": "application/json"}]
        if self.status == "successful":
            links.append({"href": f"{base}/jobs/{self.id}/results", "rel": "results", "type": "application/json"})
        return {"jobID": self.id, "processID": self.process, "type": "process", "status": self.status,
                "progress": round(self.progress), "message": self.message, "user": self.user,
                "created": self.created.isoformat(), "started": self.started and self.started.isoformat(),
                "finished": self.finished and self.finished.isoformat(), "links": links}


class JobRunner:
    """Runs jobs in worker threads; their status is kept in the catalog (and the live ones in memory)."""

    def __init__(self, ws: Workspace, *, workers: int = 1, clock: Clock = _utcnow, keep: int = 500) -> None:
        self.ws = ws
        self.clock = clock
        self.keep = keep
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="citytwin-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.runner = runner_id()
        ws.catalog.fail_interrupted_jobs(runner_alive)

    def _save(self, job: Job) -> None:
        self.ws.catalog.put_job(job.record(self.runner))

    def submit(self, process: str, inputs: dict[str, Any], user_ws: Workspace) -> Job:
        """Check the inputs and queue a job run as ``user_ws``'s user."""
        proc = PROCESSES.get(process)
        if proc is None:
            raise NotFoundError(f"no process {process!r}", hint=f"processes: {', '.join(PROCESSES)}")
        checked = check_inputs(proc, inputs)
        job = Job(uuid.uuid4().hex, process, user_ws.user.name, checked, self.clock())
        self._save(job)
        with self._lock:
            self._jobs[job.id] = job
            done = [j for j in self._jobs.values() if j.finished is not None]
            for old in done[:max(0, len(self._jobs) - self.keep)]:
                del self._jobs[old.id]
        self._pool.submit(self._run, job, user_ws)
        return job

    def _run(self, job: Job, ws: Workspace) -> None:
        proc = PROCESSES[job.process]

        def progress(pct: float, message: str) -> None:
            if job.cancel.is_set():
                raise Cancelled
            before = round(job.progress)
            job.progress = max(job.progress, min(100.0, float(pct)))
            job.message = message
            if round(job.progress) != before:  # the record follows whole percents
                self._save(job)

        if job.cancel.is_set():
            return
        job.status, job.started, job.message = "running", self.clock(), "started"
        self._save(job)
        try:
            results = proc.run(ws, job.inputs, progress)
        except Cancelled:
            job.status, job.message = "dismissed", "cancelled"
        except CitytwinError as exc:
            job.status, job.message = "failed", str(exc)[:2000]
        except Exception as exc:  # a bug: the job fails with its message; the trace goes to the log
            job.status, job.message = "failed", f"{type(exc).__name__}: {exc}"[:2000]
            traceback.print_exc()
        else:
            job.results, job.status, job.progress, job.message = results, "successful", 100.0, "done"
        finally:
            job.finished = self.clock()
            self._save(job)
        ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="job", outcome=job.status,
                         detail=f"{job.process} {job.id}: {job.message}"[:500])

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            job = next((j for j in self.jobs() if j.id == job_id), None)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        return job

    def jobs(self) -> list[Job]:
        """The newest jobs (``keep`` of them), past runs of the service included, oldest first."""
        with self._lock:
            live = dict(self._jobs)
        return [live.get(r["id"]) or Job.from_record(r) for r in self.ws.catalog.jobs(self.keep)]

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop; a queued job never starts."""
        job = self.get(job_id)
        job.cancel.set()
        if job.status == "accepted":
            job.status, job.message, job.finished = "dismissed", "cancelled before it started", self.clock()
            self._save(job)
        return job

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Wait until a job finishes (tests and the CLI)."""
        import time

        job = self.get(job_id)
        end = time.monotonic() + timeout
        while job.finished is None and time.monotonic() < end:
            time.sleep(0.05)
        return job

    def close(self) -> None:
        for j in self.jobs():
            j.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


#: roles that see (and may cancel) every user's jobs; others see their own
JOB_OVERSEERS = ("admin", "steward")


def _own(job: Job, principal: Principal) -> Job:
    """The job, if the caller started it or oversees jobs (else 404: others' jobs are not disclosed)."""
    if job.user != principal.user.name and principal.user.role not in JOB_OVERSEERS:
        raise NotFoundError(f"no job {job.id!r}")
    return job


def _runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.jobs
    return runner


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


PrincipalDep = Annotated[Principal, Depends(require_user)]


@router.get("/processes", summary="Analyses that can run as jobs")
def processes(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    base = _base(request)
    return {"processes": [{"id": p.id, "title": p.title, "description": p.description, "version": "1",
                           "links": [{"href": f"{base}/processes/{p.id}", "rel": "self"}]}
                          for p in PROCESSES.values()]}


@router.get("/processes/{process_id}", summary="One process: its inputs and outputs")
def process(process_id: str, principal: PrincipalDep) -> dict[str, Any]:
    p = PROCESSES.get(process_id)
    if p is None:
        raise NotFoundError(f"no process {process_id!r}", hint=f"processes: {', '.join(PROCESSES)}")
    return p.describe()


@router.post("/processes/{process_id}/execution", status_code=201, summary="Start a job (asynchronous)",
             responses={201: {"description": "Job accepted; Location names it"}})
def execute(process_id: str, request: Request, principal: PrincipalDep,
            body: Annotated[dict[str, Any], Body(examples=[{"inputs": {"resolution": 9}}])]) -> JSONResponse:
    guard: ApiGuard = request.app.state.api_guard
    inputs = body.get("inputs", {})
    job = _runner(request).submit(process_id, inputs, guard.workspace(principal.user))
    return JSONResponse(job.doc(_base(request)), status_code=201, headers={"Location": f"/jobs/{job.id}"})


@router.get("/jobs", summary="Jobs (the newest 500, past runs of the service included)")
def jobs(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    base = _base(request)
    return {"jobs": [j.doc(base) for j in _runner(request).jobs()
                     if j.user == principal.user.name or principal.user.role in JOB_OVERSEERS]}


@router.get("/jobs/{job_id}", summary="Status, progress (0–100) and message of a job")
def job_status(job_id: str, request: Request, principal: PrincipalDep) -> dict[str, Any]:
    return _own(_runner(request).get(job_id), principal).doc(_base(request))


@router.get("/jobs/{job_id}/results", summary="Results of a successful job (derived datasets)")
def job_results(job_id: str, request: Request, principal: PrincipalDep) -> dict[str, Any]:
    job = _own(_runner(request).get(job_id), principal)
    if job.status != "successful" or job.results is None:
        raise NotFoundError(f"job {job_id} has no results: it is {job.status} ({job.message})")
    return job.results


@router.delete("/jobs/{job_id}", summary="Cancel and dismiss a job")
def job_cancel(job_id: str, request: Request, principal: PrincipalDep) -> dict[str, Any]:
    runner = _runner(request)
    _own(runner.get(job_id), principal)
    return runner.cancel(job_id).doc(_base(request))
