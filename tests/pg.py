"""A throw-away PostgreSQL 15 cluster for the tests, and the ``backend`` switch (one suite, two backends).

``pg_cluster`` (session) runs Debian's PostgreSQL binaries (``initdb`` + ``pg_ctl``; as root through
``runuser -u postgres``) on a free loopback port with its own data and socket folder in a temporary
directory, makes a template database with the PostGIS extension, and stops and removes everything at
the end of the session. Each test that asks for a database gets a fresh one, copied from the template
(``CREATE DATABASE … TEMPLATE``: milliseconds), dropped after the test.

``backend`` (function, parametrised ``sqlite`` / ``postgresql``): with ``postgresql`` it sets
``$CITYTWIN_DATABASE`` to a fresh database, so every workspace the test opens keeps its records there;
with ``sqlite`` nothing changes (the embedded default). A test module opts in with
``pytestmark = pytest.mark.usefixtures("backend")``. Without the PostgreSQL binaries the
``postgresql`` cases are skipped with the reason (CI installs them: ``scripts/setup.sh --test``);
with ``CITYTWIN_REQUIRE_POSTGRES=1`` that is an error instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BACKENDS = ("sqlite", "postgresql")
ENV_REQUIRE = "CITYTWIN_REQUIRE_POSTGRES"
TEMPLATE = "citytwin_template"


def pg_bindir() -> Path | None:
    """The folder of PostgreSQL 15's server binaries (another major version if 15 is absent), or None."""
    for pattern in ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/*/bin"):
        for d in sorted(glob.glob(pattern), reverse=True):
            if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
                return Path(d)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and (Path(found).parent / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    """A running throw-away cluster: ``url(db)`` names one of its databases."""

    bindir: Path
    root: Path
    port: int
    user: str = "citytwin"
    postgis: bool = False

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{db}"

    def sql(self, statement: str, db: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(db), autocommit=True) as con:
            con.execute(statement)  # type: ignore[arg-type]

    def fresh_database(self) -> str:
        """A new database copied from the template (PostGIS available); returns its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
        return self.url(name)

    def drop(self, url: str) -> None:
        from citytwin.foundation import records

        records.dispose(url)
        self.sql(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a client tool of the cluster's version (``pg_dump``, ``psql`` …)."""
        return subprocess.run([str(self.bindir / tool), *args], capture_output=True, text=True, timeout=120,
                              check=True)


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_cluster() -> PgCluster:
    """Start a cluster in a new temporary folder (caller stops it with :func:`stop_cluster`)."""
    bindir = pg_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    root = Path(tempfile.mkdtemp(prefix="citytwin-pg-"))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    port = _free_port()
    cluster = PgCluster(bindir, root, port)
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", cluster.user, "-A", "trust",
                                 "-E", "UTF8", "--locale=C.UTF-8"]), check=True, capture_output=True, timeout=120)
    _pg_ctl_start(cluster)
    cluster.sql(f"CREATE DATABASE {TEMPLATE}")
    try:
        cluster.sql("CREATE EXTENSION postgis", db=TEMPLATE)
        cluster.postgis = True
    except Exception:  # PostGIS not installed: the records work without it
        cluster.postgis = False
    return cluster


def _pg_ctl_start(cluster: PgCluster, extra: str = "") -> None:
    """Start the cluster whose data folder is ``ROOT/data`` on its port, its socket in ``ROOT/sock``."""
    sock = cluster.root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(sock, "postgres", "postgres")
    opts = (f"-p {cluster.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
            f" -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB {extra}").strip()
    subprocess.run(_as_postgres([str(cluster.bindir / "pg_ctl"), "-D", str(cluster.root / "data"), "-o", opts,
                                 "-l", str(cluster.root / "log"), "-w", "-t", "60", "start"]),
                   check=True, capture_output=True, timeout=90)


def start_replica(primary: PgCluster, name: str = "citytwin_replica") -> PgCluster:
    """A streaming hot standby of ``primary`` in a new temporary folder, on its own port: ``pg_basebackup -R``
    (WAL streamed during the copy; ``standby.signal`` and ``primary_conninfo`` written), then started with
    ``hot_standby=on``; ``name`` is its ``cluster_name`` (its ``application_name`` in the primary's
    ``pg_stat_replication``). Stop it with :func:`stop_cluster`."""
    root = Path(tempfile.mkdtemp(prefix="citytwin-pg-replica-"))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    replica = PgCluster(primary.bindir, root, _free_port(), primary.user, primary.postgis)
    subprocess.run(_as_postgres([str(primary.bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                                 "-U", primary.user, "-D", str(root / "data"), "-R", "-X", "stream", "-c", "fast",
                                 "--no-sync"]), check=True, capture_output=True, timeout=120)
    try:
        _pg_ctl_start(replica, f"-c hot_standby=on -c cluster_name={name}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return replica


def stop_cluster(cluster: PgCluster) -> None:
    subprocess.run(_as_postgres([str(cluster.bindir / "pg_ctl"), "-D", str(cluster.root / "data"), "-m",
                                 "immediate", "-w", "stop"]), capture_output=True, timeout=60)
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster for the session (skipped, with the reason, where PostgreSQL is not installed)."""
    if pg_bindir() is None:
        msg = "PostgreSQL server binaries not found (install postgresql and postgis: scripts/setup.sh --test)"
        if os.environ.get(ENV_REQUIRE, "") not in ("", "0"):
            pytest.fail(f"{msg}; ${ENV_REQUIRE} is set")
        pytest.skip(msg)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture()
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh database (PostGIS available) for one test; dropped after it."""
    url = pg_cluster.fresh_database()
    try:
        yield url
    finally:
        pg_cluster.drop(url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``sqlite`` (the embedded default) or ``postgresql`` (``$CITYTWIN_DATABASE`` = a fresh database)."""
    if request.param == "postgresql":
        monkeypatch.setenv("CITYTWIN_DATABASE", request.getfixturevalue("pg_url"))
    else:
        monkeypatch.delenv("CITYTWIN_DATABASE", raising=False)
    return str(request.param)
