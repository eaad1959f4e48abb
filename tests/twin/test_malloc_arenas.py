"""One glibc malloc arena in the ingest process (issue 13, session 14: the soak's held-free memory).

Each check that depends on glibc's arenas runs in a fresh interpreter: ``M_ARENA_MAX`` only governs arenas made
after it, and the pytest process has had threads (and arenas) long before.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from citytwin.foundation import allocator
from citytwin.foundation.allocator import limit_malloc_arenas, malloc_arenas

glibc = pytest.mark.skipif(malloc_arenas() is None, reason="glibc only (mallopt, malloc_info)")

#: A fresh interpreter: optionally the limit first, then six threads that each allocate from malloc (blocks of
#: 4 KiB, above pymalloc's 512 bytes), then how many arenas glibc has.
_THREADS = """
import sys, threading
from citytwin.foundation.allocator import limit_malloc_arenas, malloc_arenas
if sys.argv[1] == "limit":
    print("SET", limit_malloc_arenas())
go = threading.Barrier(6)
def work():
    go.wait()  # all six alive at once: none can take over an arena another has left
    blocks = [bytes(4096) for _ in range(200)]
    go.wait()
ts = [threading.Thread(target=work) for _ in range(6)]
for t in ts: t.start()
for t in ts: t.join()
print("ARENAS", len(malloc_arenas()))
"""

#: A thread fills 12 MiB of malloc blocks and frees them from the last (they merge into the free end, the top
#: chunk, of its arena); first an 8 MiB block is freed, which raises glibc's dynamic trim threshold to 16 MiB
#: so that free() itself keeps the 12 MiB. Then the main thread calls the runtime's release (malloc_trim(0))
#: and prints the RSS (MiB) held after the frees and after the release.
_TOP = """
import ctypes, sys, threading, psutil
from citytwin.foundation.allocator import limit_malloc_arenas, malloc_trim
if sys.argv[1] == "limit":
    limit_malloc_arenas()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
rss = lambda: psutil.Process().memory_info().rss / 2**20
ptrs = [0] * 60
def work():
    libc.free(libc.malloc(8 << 20))
    for i in range(60):
        ptrs[i] = libc.malloc(200_000)
        ctypes.memset(ptrs[i], 1, 200_000)
    for i in range(59, -1, -1):
        libc.free(ptrs[i])
t = threading.Thread(target=work)
before = rss()
t.start(); t.join()
held = rss()
malloc_trim()
print("RSS", held - before, rss() - before)
"""


def _run(code: str, arg: str, **env: str) -> str:
    e = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    e.update(env)
    r = subprocess.run([sys.executable, "-c", code, arg], env=e, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@glibc
def test_limit_makes_one_arena_for_all_threads():
    assert "ARENAS 1" in _run(_THREADS, "limit")
    out = _run(_THREADS, "none")  # glibc's default: an arena per thread (up to 8 per core)
    assert int(out.split("ARENAS")[1]) > 1, out


@glibc
def test_operator_setting_is_kept():
    # MALLOC_ARENA_MAX / the glibc.malloc.arena_max tunable: the limit leaves them and says so (False)
    out = _run(_THREADS, "limit", MALLOC_ARENA_MAX="3")
    assert "SET False" in out and int(out.split("ARENAS")[1]) == 3, out
    out = _run(_THREADS, "limit", GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    assert "SET False" in out and int(out.split("ARENAS")[1]) == 2, out


def test_limit_respects_environment_without_calling_mallopt(monkeypatch):
    calls = []

    class Lib:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(allocator, "_LIBC", Lib())
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert limit_malloc_arenas() is True and calls == [(allocator.M_ARENA_MAX, allocator.INGEST_ARENAS)]
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False and len(calls) == 1
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=2")
    assert limit_malloc_arenas() is False and len(calls) == 1
    monkeypatch.setattr(allocator, "_LIBC", None)
    monkeypatch.delenv("GLIBC_TUNABLES")
    assert limit_malloc_arenas() is False  # not glibc: nothing to set


@glibc
def test_release_returns_a_threads_free_top_only_with_one_arena():
    # Why the limit: malloc_trim(0) gives back the free end (top chunk) of the main arena, not of a thread's
    # arena. In a thread's own arena the 12 MiB stay resident after the release; with one arena they go.
    held, after = (float(x) for x in _run(_TOP, "none").split("RSS")[1].split())
    assert held > 10 and after > 10, (held, after)  # glibc's behaviour that the limit answers
    held, after = (float(x) for x in _run(_TOP, "limit").split("RSS")[1].split())
    assert held > 10 and after < 3, (held, after)


def test_runtime_start_limits_arenas(tmp_path, monkeypatch):
    # start_mqtt (a program that embeds the runtime) sets the limit before its threads start
    from citytwin.workflows import runtime as rt_mod

    seen = []
    monkeypatch.setattr(rt_mod, "limit_malloc_arenas", lambda: seen.append(True) or True)
    rt = rt_mod.open_runtime(tmp_path / "twin")
    try:
        with pytest.raises(Exception):  # noqa: B017 - nothing listens there; the limit came first
            rt.start_mqtt("127.0.0.1", 1, publish_alerts=False, system_pool=False)
        assert seen == [True]
    finally:
        rt.close()
