"""The ingest returns freed memory to the OS (issue 13: RSS flat over a long MQTT ingest)."""

from __future__ import annotations

import psutil
import pytest

from citytwin.workflows.runtime import malloc_stats, open_runtime, release_free_memory


def test_release_runs_at_most_every_period(tmp_path):
    rt = open_runtime(tmp_path / "twin")
    try:
        now = [100.0]
        rt.enable_memory_release(60.0, clock=lambda: now[0])
        hooks = [h for h in rt.ingestor.on_commit if h is rt._release_hook]
        assert len(hooks) == 1  # enabling again replaces the hook (open_runtime enabled it once already)
        for t in (100.0, 130.0, 159.9):
            now[0] = t
            hooks[0](None, 0, 0)
        assert rt.memory_releases == 0
        now[0] = 160.0
        hooks[0](None, 0, 0)
        now[0] = 219.0
        hooks[0](None, 0, 0)
        assert rt.memory_releases == 1
        now[0] = 220.0
        hooks[0](None, 0, 0)
        assert rt.memory_releases == 2
    finally:
        rt.close()


@pytest.mark.skipif(malloc_stats() is None, reason="glibc only (malloc_trim, mallinfo2)")
def test_release_returns_held_free_memory():
    # 60 MiB of 4 KiB blocks (above pymalloc's 512 bytes: they come from malloc), then one block kept at the
    # top: freeing the others leaves free memory below it that free() cannot give back, malloc_trim can.
    proc = psutil.Process()
    blocks = [bytes(4096) for _ in range(15_000)]
    keep = bytes(4096)
    before = malloc_stats()
    rss_full = proc.memory_info().rss
    del blocks
    held = malloc_stats()
    assert held is not None and before is not None
    assert held["free"] - before["free"] > 50 * 2**20  # the allocator holds it, free
    rss_held = proc.memory_info().rss
    assert rss_held > rss_full - 10 * 2**20  # ... and it is still part of the RSS
    release_free_memory()
    assert proc.memory_info().rss < rss_held - 40 * 2**20
    assert len(keep) == 4096


@pytest.fixture()
def restore_arrow_pool():
    """The pool switch is process-wide: put pyarrow's default pool back after the test."""
    import pyarrow as pa

    before = pa.default_memory_pool()
    yield
    pa.set_memory_pool(before)


def test_system_pool_switch(restore_arrow_pool):
    import pyarrow as pa

    from citytwin.workflows.runtime import use_system_memory_pool

    was = pa.default_memory_pool().backend_name
    assert use_system_memory_pool() == was
    assert pa.default_memory_pool().backend_name == "system"
    assert use_system_memory_pool() == "system"  # a second call changes nothing
    buf = pa.py_buffer(b"x" * 10)  # new buffers come from the system pool
    assert pa.array([1, 2, 3]).buffers()[1].size > 0 and buf.size == 10


@pytest.mark.skipif(malloc_stats() is None, reason="glibc only (malloc_trim, mallinfo2)")
def test_release_returns_arrow_system_pool_memory(restore_arrow_pool):
    # Issue 13: with Arrow on the system pool its freed buffers sit in glibc's heap, where malloc_trim (the
    # runtime's release) returns them; 60 MiB of 16 KiB Arrow buffers, one more kept above them.
    import pyarrow as pa

    from citytwin.workflows.runtime import use_system_memory_pool

    use_system_memory_pool()
    proc = psutil.Process()
    release_free_memory()
    base = malloc_stats()
    bufs = [pa.allocate_buffer(16384) for _ in range(3840)]
    for b in bufs:  # touch every page: allocated memory joins the RSS only when written
        memoryview(b).cast("B")[::4096] = b"\x01" * 4
    keep = pa.allocate_buffer(16384)
    full = malloc_stats()
    assert base is not None and full is not None
    assert full["in_use"] - base["in_use"] > 55 * 2**20  # Arrow's buffers are in glibc's heap now
    del bufs, b
    held = malloc_stats()
    assert held is not None and held["free"] - full["free"] > 50 * 2**20  # freed into glibc, held there
    rss_held = proc.memory_info().rss
    release_free_memory()
    assert proc.memory_info().rss < rss_held - 40 * 2**20
    assert keep.size == 16384


@pytest.mark.parametrize("command", [["twin", "ingest", "--broker", "no-port"], ["twin", "serve", "-w", "{missing}"]])
def test_ingest_entry_points_put_arrow_on_malloc(tmp_path, command):
    """`citytwin twin ingest|serve` set ARROW_DEFAULT_MEMORY_POOL=system before pyarrow is first imported (so
    that Arrow's C++ allocations use malloc too), and keep an operator's own value. A fresh interpreter each:
    the variable is read at pyarrow's first import. The commands stop at once on the bad argument, after that."""
    import os
    import subprocess
    import sys

    argv = [a.replace("{missing}", str(tmp_path / "nothing")) for a in command]
    code = ("import os, sys\nfrom citytwin.cli.main import app\nassert 'pyarrow' not in sys.modules\n"
            f"sys.argv = ['citytwin', *{argv!r}]\ntry:\n    app()\nfinally:\n    import pyarrow as pa\n"
            "    print('POOL', os.environ.get('ARROW_DEFAULT_MEMORY_POOL'), pa.default_memory_pool().backend_name)")
    for preset, want in ((None, "system system"), ("mimalloc", "mimalloc mimalloc")):
        env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
        if preset:
            env["ARROW_DEFAULT_MEMORY_POOL"] = preset
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr  # the bad argument: a clear error, exit 2
        assert f"POOL {want}" in r.stdout, (r.stdout, r.stderr)
