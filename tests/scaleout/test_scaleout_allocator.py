"""The workers of ``--dask local:N`` allocate as one process does (glibc's adaptive mmap threshold).

Dask's nannies set ``MALLOC_TRIM_THRESHOLD_=65536`` in every worker by default, which turns glibc's adaptive
mmap threshold off: every array over 128 KiB is then a fresh ``mmap``, page-faulted in again at each use
(a third of the index's and the kernel densities' CPU on the workers, in the kernel). The local clusters of
:func:`citytwin.foundation.scaleout.cluster` leave glibc's own setting, as in one process: an array freed
and allocated again reuses the memory it had.
"""

from __future__ import annotations

import pytest


def _refaults() -> int:
    """Page faults of the third of three 3 MB arrays made and freed in turn in this thread (the first is
    mmapped; freeing it raises glibc's adaptive threshold; the second comes from the heap; the third reuses it).
    Under 4 MB: NumPy asks for huge pages from 4 MB on, which would fault in 2 MB at a time."""
    import resource

    import numpy as np

    for _ in range(2):
        a = np.ones(375_000)
        del a
    f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    a = np.ones(375_000)
    del a
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0


def test_local_workers_reuse_freed_memory_as_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from citytwin.foundation.scaleout import cluster

    # a LocalCluster started with Dask's defaults earlier in this process leaves the variable in os.environ
    # (the nanny sets it there before spawning), and a later worker would inherit it
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with cluster("local:1") as client:
        (faults,) = client.run(_refaults).values()
        (dask_default,) = client.run(_refaults_trimmed).values()
    assert faults < 100, faults  # 3 MB is 733 pages: reused, not faulted in again
    assert dask_default > 600, dask_default  # the control: Dask's setting faults every page in again


def _refaults_trimmed() -> int:
    """:func:`_refaults` in a child process with Dask's default ``MALLOC_TRIM_THRESHOLD_`` (glibc reads it at start)."""
    import os
    import subprocess
    import sys

    code = f"import {__name__} as m; print(m._refaults())"
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    return int(out.stdout.split()[-1])
