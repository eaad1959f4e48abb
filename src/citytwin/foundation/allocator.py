"""The C library's allocator (glibc malloc) of a long-lived process: its figures and its release.

Light (``ctypes`` only). Everything here is a no-op, or returns None, where the C library is not glibc.

* :func:`malloc_stats` (``mallinfo2``) and :func:`malloc_arenas` (``malloc_info``, per arena): what the
  ingest's soak reports (``bench/twin_throughput.py --soak-minutes``).
* :func:`malloc_trim`: return free memory to the operating system (``malloc_trim(0)``; what the runtime's
  once-a-minute release calls).

docs/twin.md, "Session 14: the soak's held-free memory", says where the ingest's free memory sits and why one
malloc arena (``MALLOC_ARENA_MAX=1``) was tried and not kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from typing import Any

__all__ = ["malloc_arenas", "malloc_stats", "malloc_trim"]

class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc() -> Any:
    """The C library when it is glibc (``malloc_trim`` and ``mallinfo2`` exist), else None."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(lib, "malloc_trim") and hasattr(lib, "mallinfo2")):
        return None
    lib.mallinfo2.restype = _Mallinfo2
    lib.malloc_trim.argtypes = [ctypes.c_size_t]
    lib.malloc_trim.restype = ctypes.c_int
    if hasattr(lib, "malloc_info") and hasattr(lib, "open_memstream"):
        lib.open_memstream.restype = ctypes.c_void_p
        lib.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t)]
        lib.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        lib.fclose.argtypes = [ctypes.c_void_p]
        lib.free.argtypes = [ctypes.c_void_p]
    return lib


_LIBC = _libc()


def malloc_stats() -> dict[str, int] | None:
    """The C heap (glibc ``mallinfo2``, all arenas): ``in_use`` bytes allocated, ``free`` bytes the allocator
    holds without use (part of the RSS until returned), ``mmapped`` bytes in direct mappings; None where the C
    library is not glibc. Arrow's own pool is apart: ``pyarrow.total_allocated_bytes()``."""
    if _LIBC is None:
        return None
    m = _LIBC.mallinfo2()
    return {"in_use": int(m.uordblks), "free": int(m.fordblks), "mmapped": int(m.hblkhd)}


def malloc_arenas() -> list[dict[str, int]] | None:
    """Each glibc arena's figures from ``malloc_info``: ``system`` bytes it has from the OS, ``free`` bytes held
    free in it (its bins and fast bins *and its top chunk*, which glibc counts there), ``top`` the part of it in
    the top chunk (the free end of the heap), ``chunks`` free chunks (the top included). Arena 0 is the main
    one (``brk`` heap); the others are the per-thread arenas (64 MiB reservations). None where the C library is not glibc. What the soak reads to tell which arena holds free
    memory between two releases (docs/twin.md, "Session 14")."""
    if _LIBC is None or not hasattr(_LIBC, "malloc_info") or not hasattr(_LIBC, "open_memstream"):
        return None
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = _LIBC.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        return None
    try:
        _LIBC.malloc_info(0, stream)
    finally:
        _LIBC.fclose(stream)
    try:
        xml = ctypes.string_at(buf, size.value).decode("ascii", "replace")
    finally:
        _LIBC.free(buf)
    out: list[dict[str, int]] = []
    for nr, body in re.findall(r'<heap nr="(\d+)">(.*?)</heap>', xml, re.S):
        totals = {t: (int(c), int(s)) for t, c, s in re.findall(r'<total type="(\w+)" count="(\d+)" size="(\d+)"/>',
                                                                 body)}
        system = re.search(r'<system type="current" size="(\d+)"/>', body)
        fast, rest = totals.get("fast", (0, 0)), totals.get("rest", (0, 0))
        binned = sum(int(t) for t in re.findall(r'<(?:size|unsorted) from="\d+" to="\d+" total="(\d+)"', body))
        out.append({"arena": int(nr), "system": int(system.group(1)) if system else 0,
                    "free": fast[1] + rest[1], "top": max(fast[1] + rest[1] - binned, 0),
                    "chunks": fast[0] + rest[0]})
    return out


def malloc_trim() -> bool:
    """``malloc_trim(0)``: give the free pages of the C heap back to the operating system; whether any were.

    What it reaches (glibc 2.36, checked in ``tests/twin/test_malloc_arenas.py``): in the main arena the free
    pages inside free chunks and the free end of the heap (its top chunk); in a per-thread arena only the
    pages inside free chunks, **not its top chunk**, which shrinks only when a ``free`` in that arena finds it
    above the trim threshold (raised with glibc's dynamic mmap threshold up to 64 MiB)."""
    return bool(_LIBC.malloc_trim(0)) if _LIBC is not None else False
