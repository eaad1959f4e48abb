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
