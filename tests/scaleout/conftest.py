"""Fixtures of the scale-out tests: one 2-worker Dask cluster per module (processes, 1 thread each)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """``tcp://…`` of a LocalCluster of 2 worker processes, as ``--dask local:2`` starts it.

    The workflows are given its address (``tcp://HOST:PORT``, the option for an existing cluster) so
    that a module starts the cluster once; ``test_local_spec_starts_and_closes_its_cluster`` runs
    ``local:2`` itself.
    """
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
