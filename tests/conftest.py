"""Shared test fixtures: where the real data is, a fresh workspace; a fixed console width.

Real data: ``../shared/data`` beside the checkout, or the folder named by ``$CITYTWIN_SHARED_DATA``.
Every test that uses the ``shared_data`` fixture (directly or through another fixture) or carries
``@pytest.mark.shared_data`` is marked ``shared_data``; without the data those tests are skipped with
the reason, so a contributor without it still runs the rest (``-m "not shared_data"`` selects the
data-free part). With ``CITYTWIN_REQUIRE_SHARED_DATA=1`` (set by ``.ci/run``) missing data is an
error instead of a skip.

Console width: rich and typer size their consoles from ``COLUMNS``/``TERMINAL_WIDTH`` or the
terminal, so a message wrapped at 80 columns in one terminal and not in another made CLI tests depend
on the terminal. Here the caller's ``COLUMNS``, ``LINES``, ``TERMINAL_WIDTH`` and colour switches are
dropped before any test module imports the CLI (consoles made at import then ask at print time), and
every ``CliRunner.invoke`` runs with a fixed wide console (:data:`CLI_ENV`; a test's own ``env=`` wins).

Threads left running: a test that opens a runtime, an app, a catalog, an MQTT or Dask client must close
it. ``CITYTWIN_TEST_THREADS=1`` names, in the terminal summary, each test that started a thread still
alive when the session ends (``CITYTWIN_TEST_THREADS=FILE`` also writes the list to FILE); run it on one
test folder at a time, e.g. ``CITYTWIN_TEST_THREADS=1 pytest -q tests/twin``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# the PostgreSQL fixtures (tests/pg.py: pg_cluster, pg_url, backend) are shared by every test folder
_pg_spec = importlib.util.spec_from_file_location("citytwin_tests_pg", Path(__file__).with_name("pg.py"))
assert _pg_spec is not None and _pg_spec.loader is not None
pg = sys.modules["citytwin_tests_pg"] = importlib.util.module_from_spec(_pg_spec)
_pg_spec.loader.exec_module(pg)
pg_cluster, pg_url, backend = pg.pg_cluster, pg.pg_url, pg.backend

#: environment of every ``CliRunner.invoke``: a console this wide keeps messages that name long temporary
#: paths on one line, whatever the terminal the tests run in
CLI_ENV = {"COLUMNS": "500", "LINES": "50", "TERMINAL_WIDTH": "500"}
for _var in ("COLUMNS", "LINES", "TERMINAL_WIDTH", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
    os.environ.pop(_var, None)
os.environ.pop("CITYTWIN_DATABASE", None)  # the records' backend is the test's choice (tests/pg.py: backend)

REPO = Path(__file__).resolve().parents[1]
ENV_SHARED_DATA = "CITYTWIN_SHARED_DATA"
ENV_REQUIRE_SHARED_DATA = "CITYTWIN_REQUIRE_SHARED_DATA"
SHARED_DATA = Path(os.environ.get(ENV_SHARED_DATA) or (REPO.parent / "shared" / "data")).resolve()
_MISSING = (f"real data not found at {SHARED_DATA} (the checkout sits beside shared/data, or set "
            f"${ENV_SHARED_DATA})")


def _require_data() -> bool:
    return os.environ.get(ENV_REQUIRE_SHARED_DATA, "") not in ("", "0")


def pytest_report_header(config: pytest.Config) -> str:
    """Say where the real data is read from, and what happens without it."""
    if SHARED_DATA.is_dir():
        return f"shared_data: {SHARED_DATA}"
    return f"shared_data: {'MISSING' if _require_data() else 'absent, tests marked shared_data skipped'}: {_MISSING}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs the real data ``shared_data``; skip them when it is absent."""
    present = SHARED_DATA.is_dir()
    skip = pytest.mark.skip(reason=f"shared_data: {_MISSING}")
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()) and item.get_closest_marker("shared_data") is None:
            item.add_marker(pytest.mark.shared_data)
        if item.get_closest_marker("shared_data") is not None and not present and not _require_data():
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _fixed_cli_console() -> Iterator[None]:
    """Every ``CliRunner`` (typer's and click's) invokes with :data:`CLI_ENV` in its environment."""
    import click.testing
    import typer.testing

    with pytest.MonkeyPatch.context() as mp:
        runner_classes: list[Any] = [typer.testing.CliRunner, click.testing.CliRunner]
        for runner_class in runner_classes:  # typer's does not derive from click's
            mp.setattr(runner_class, "make_env", _with_cli_env(runner_class.make_env))
        yield


def _with_cli_env(make_env: Callable[[Any, Mapping[str, str | None] | None], Mapping[str, str | None]]
                  ) -> Callable[..., Mapping[str, str | None]]:
    def make_fixed_env(self: Any, overrides: Mapping[str, str | None] | None = None) -> Mapping[str, str | None]:
        return make_env(self, {**CLI_ENV, **(overrides or {})})

    return make_fixed_env


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (real public data; never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        if _require_data():
            pytest.fail(f"{_MISSING}; ${ENV_REQUIRE_SHARED_DATA} is set")
        pytest.skip(_MISSING)
    return SHARED_DATA


@pytest.fixture()
def workspace(tmp_path: Path, request: pytest.FixtureRequest):
    """A new, empty workspace owned by an admin user named 'admin' (records on the test's ``backend``)."""
    from citytwin.foundation.workspace import Workspace

    if "backend" in request.fixturenames:
        request.getfixturevalue("backend")

    return Workspace.init(tmp_path / "ws", owner="admin")


#: ``CITYTWIN_TEST_THREADS=1``: name the tests that leave threads running (:func:`pytest_runtest_protocol`); any
#: other value but ``0`` is also a file the findings are written to
ENV_TEST_THREADS = "CITYTWIN_TEST_THREADS"
#: threads a test started, by the test's node id (thread objects only: a finished thread is dropped at the end)
_STARTED_BY: dict[str, list[threading.Thread]] = {}


def _threads_check() -> str:
    return os.environ.get(ENV_TEST_THREADS, "")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """With ``CITYTWIN_TEST_THREADS`` set, record the threads alive after a test's teardown that were not alive
    before its setup (an opt-in check: it costs one ``threading.enumerate`` per test).

    A thread a module- or session-scoped fixture starts is recorded at the first test that uses it; only
    the threads still alive when the session ends are reported (:func:`pytest_terminal_summary`), so one
    that fixture's teardown stops is not. Process-wide pools that live as long as the process by design
    (:data:`_PROCESS_POOLS`) are reported apart from the leaks.
    """
    if _threads_check() in ("", "0"):
        yield
        return
    before = set(threading.enumerate())
    yield
    new = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    if new:
        _STARTED_BY.setdefault(item.nodeid, []).extend(new)


#: name prefixes of threads meant to live as long as the process: the history store's writer pool
#: (foundation/timeseries/history.py), the one PROJ thread of the ingest's UDFs (ingest/connection.py),
#: fsspec's IO loop, tqdm's monitor and distributed's offload thread (each library starts its own once per
#: process); schemathesis' event loop and fsspec's loop's executor are found by :func:`_process_wide`
_PROCESS_POOLS = ("citytwin-history_", "citytwin-proj_", "fsspecIO", "tqdm_monitor", "Dask-Offload")


def _schemathesis_loop() -> int | None:
    """The thread id of the one event loop schemathesis runs every ASGI app on (its ``asgi._PORTAL``, closed at
    interpreter exit; its pytest plugin ends each app's lifespan with the test), if it started one."""
    asgi = sys.modules.get("schemathesis.python.asgi")
    portal = getattr(asgi, "_PORTAL", None)
    if portal is None:
        return None
    name = f"asyncio-portal-{id(portal):x}"  # anyio's name of a portal's thread
    return next((t.ident for t in threading.enumerate() if t.name == name), None)


def _fsspec_executor() -> set[threading.Thread]:
    """The threads of the default executor of fsspec's one event loop (s3fs resolves host names there)."""
    asyn = sys.modules.get("fsspec.asyn")
    loop = (getattr(asyn, "loop", None) or [None])[0]
    return set(getattr(getattr(loop, "_default_executor", None), "_threads", ()))


def _process_wide(t: threading.Thread, loop: int | None, fsspec: set[threading.Thread]) -> bool:
    """True for a thread of :data:`_PROCESS_POOLS`, schemathesis' event-loop thread and its AnyIO workers, or
    a thread of fsspec's loop's executor."""
    if t.name.startswith(_PROCESS_POOLS) or t in fsspec:
        return True
    return loop is not None and (t.ident == loop or getattr(getattr(t, "loop", None), "_thread_id", None) == loop)


def _leaks() -> tuple[list[str], list[str]]:
    """``nodeid: thread names`` of the threads started by a test and alive now: (leaks, process-wide pools)."""
    leaks: list[str] = []
    pools: list[str] = []
    loop, fsspec = _schemathesis_loop(), _fsspec_executor()
    for nodeid, threads in _STARTED_BY.items():
        alive = [t for t in threads if t.is_alive()]
        for out, group in ((leaks, [t for t in alive if not _process_wide(t, loop, fsspec)]),
                           (pools, [t for t in alive if _process_wide(t, loop, fsspec)])):
            if group:
                out.append(f"{nodeid}: " + ", ".join(
                    f"{t.name}{'' if t.daemon else ' (non-daemon)'}" for t in sorted(group, key=lambda t: t.name)))
    return leaks, pools


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Name the tests whose threads are still alive (``CITYTWIN_TEST_THREADS``)."""
    check = _threads_check()
    if check in ("", "0"):
        return
    leaks, pools = _leaks()
    lines = [f"threads started by a test and alive at the end ({len(leaks)} tests):", *leaks,
             f"process-wide pools, by the test that started them ({len(pools)}):", *pools]
    terminalreporter.section("threads left running")
    for line in lines:
        terminalreporter.write_line(line)
    if check != "1":
        Path(check).write_text("\n".join(lines) + "\n", encoding="utf-8")


@contextmanager
def served(app: Any, **client: Any) -> Iterator[Any]:
    """A ``TestClient(app, **client)`` entered (the app's lifespan runs); at the end, even when the test failed,
    :func:`citytwin.service.app.close_app`: the app's writer threads stopped, the twin runtime it opened closed."""
    from fastapi.testclient import TestClient

    from citytwin.service.app import close_app

    try:
        with TestClient(app, **client) as c:
            yield c
    finally:
        close_app(app)


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the test process with pytest's exit status once pytest is done, skipping the native libraries'
    static destructors.

    Why: a full run (1,563 tests) once ended "terminate called without an active exception" and SIGABRT (exit
    134) *after* every test had passed and the summary was printed: ``std::terminate`` from a native thread
    pool torn down at interpreter exit while one of its threads was alive, DuckDB's known abort when a
    connection is still referenced from another thread at shutdown (duckdb/duckdb#13904, intermittent, "when
    we run too many tests together"). The results are all reported by then; an abort there says nothing
    about them and would fail CI at random. The Python threads still alive are named on stderr, so the one
    holding a native resource can be found (``CITYTWIN_TEST_SOFT_EXIT=1`` keeps the normal exit;
    ``CITYTWIN_TEST_THREADS=1`` names the test that started each).
    """
    if not _EXIT_STATUS or os.environ.get("CITYTWIN_TEST_SOFT_EXIT") == "1":
        return
    alive = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if alive:
        print(f"threads alive at exit ({len(alive)}): {', '.join(sorted(alive)[:20])}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])
