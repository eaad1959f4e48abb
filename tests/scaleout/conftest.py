"""Fixtures of the scale-out tests: one 2-worker Dask cluster per module (processes, 1 thread each), the
real city panel as Parquet parts, and generated land-use snapshots."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

BUCKET = "city"  #: the bucket of the object-storage tests (moto's S3 server)
N_POINTS = 4000  #: points of the object-storage tests's zones join
PANEL = "city_sustainability_jcdasheng/1999-2018_Cities_data.xlsx"
#: the panel's cost indicators (direction negative)
NEGATIVE = frozenset({"工业二氧化硫排放量_全市_吨", "工业氮氧化物排放量_全市_吨"})


def local_cluster() -> Iterator[str]:
    """Start a LocalCluster of 2 worker processes (1 thread each), yield its address, close it (a fixture's body)."""
    from distributed import LocalCluster

    from citytwin.foundation.scaleout import NO_DASHBOARD

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, **NO_DASHBOARD,
                           silence_logs=logging.ERROR)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """``tcp://…`` of a LocalCluster of 2 worker processes, as ``--dask local:2`` starts it.

    The workflows are given its address (``tcp://HOST:PORT``, the option for an existing cluster) so
    that a module starts the cluster once; ``test_local_spec_starts_and_closes_its_cluster`` runs
    ``local:2`` itself.
    """
    yield from local_cluster()


@pytest.fixture(scope="session")
def city_panel(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path, list[str]]:
    """The real city panel (287 cities x 2004-2012, 1,989 rows, 17 indicators), the folder of its 3 Parquet
    parts (rows in order), and its indicator columns (:data:`NEGATIVE` are costs)."""
    panel = pd.read_excel(shared_data / PANEL, sheet_name="new")
    folder = tmp_path_factory.mktemp("panel")
    for i, rows in enumerate(np.array_split(np.arange(len(panel)), 3)):
        panel.iloc[rows].to_parquet(folder / f"part-{i}.parquet")
    return panel, folder, [c for c in panel.columns if c not in ("城市", "年份", "Score")]


def _snapshots(folder: Path, n: int = 1600) -> tuple[Path, Path]:
    """Two land-use snapshots: a grid of squares and a shifted grid of rotated rectangles (classes at random)."""
    import geopandas as gpd
    import shapely

    side = int(np.ceil(np.sqrt(n)))
    d = 0.001
    ij = np.arange(side * side)[:n]
    x, y = 24.5 + (ij % side) * d, 60.0 + (ij // side) * d * 0.5
    a = shapely.box(x, y, x + d, y + d * 0.5)
    cx, cy = x + d / 3 + d * 0.45, y + d / 7 + d * 0.225
    hx, hy = np.array([-1, 1, 1, -1, -1]) * d * 0.45, np.array([-1, -1, 1, 1, -1]) * d * 0.225
    th = np.deg2rad(7)
    px = cx[:, None] + hx * np.cos(th) - hy * np.sin(th)
    py = cy[:, None] + hx * np.sin(th) + hy * np.cos(th)
    b = shapely.polygons(np.stack([px, py], axis=-1))
    rng = np.random.default_rng(3)
    classes = np.array(["farm", "forest", "construction", "water"])
    fb, fa = folder / "before.parquet", folder / "after.parquet"
    gpd.GeoDataFrame({"landuse": classes[rng.integers(0, 4, n)]}, geometry=a, crs=4326).to_parquet(fb)
    gpd.GeoDataFrame({"landuse": classes[rng.integers(0, 4, n)]}, geometry=b, crs=4326).to_parquet(fa)
    return fb, fa


@pytest.fixture
def change_snapshots() -> Callable[..., tuple[Path, Path]]:
    """``make(folder, n=1600) -> (before, after)``: two land-use snapshots as GeoParquet files in ``folder``."""
    return _snapshots


def life_grid(folder: Path) -> tuple[dict[str, str], list[str]]:
    """Life-circle layers of a perturbed 40 x 40 grid (the bench's large networks in small) written to
    ``folder`` — GeoParquet nodes, homes and POIs, a plain Parquet edge list; two components, a POI and a
    home off the network, a category with no POI — and the categories: (layer files by argument, categories)."""
    import geopandas as gpd

    rng = np.random.default_rng(11)
    side = 40
    ids = np.arange(side * side)
    x, y = ids % side * 100.0 + rng.uniform(-20, 20, len(ids)), ids // side * 100.0 + rng.uniform(-20, 20, len(ids))
    u = np.concatenate([ids[ids % side < side - 1], ids[ids // side < side - 1]])
    v = np.concatenate([u[: len(u) // 2] + 1, u[len(u) // 2:] + side])
    keep = (rng.random(len(u)) > 0.1) & ~((ids[u] % side == 19) & (v == u + 1))  # a cut at column 19/20
    pd.DataFrame({"u": u[keep], "v": v[keep], "length": np.hypot(x[u] - x[v], y[u] - y[v])[keep] * 1.1}
                 ).to_parquet(folder / "edges.parquet")
    gpd.GeoDataFrame({"id": ids}, geometry=gpd.points_from_xy(x, y), crs=32650).to_parquet(folder / "nodes.parquet")
    hx, hy = rng.uniform(0, 3900, 500), rng.uniform(0, 3900, 500)
    hx[0] = 9000.0  # off the network
    gpd.GeoDataFrame({"id": np.arange(500), "use": "residential"}, geometry=gpd.points_from_xy(hx, hy),
                     crs=32650).to_crs(4326).to_parquet(folder / "homes.parquet")
    cats = ["school", "clinic", "grocery", "park", "pharmacy"]
    px, py = rng.uniform(0, 1900, 60), rng.uniform(0, 3900, 60)  # all west of the cut
    px[0] = -5000.0
    gpd.GeoDataFrame({"id": np.arange(60), "category": rng.choice(cats[:4], 60)}, geometry=gpd.points_from_xy(px, py),
                     crs=32650).to_parquet(folder / "pois.parquet")
    files = {k: str(folder / f"{k}.parquet") for k in ("pois", "nodes")}
    files.update(streets=str(folder / "edges.parquet"), buildings=str(folder / "homes.parquet"))
    return files, cats


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A moto S3 server on a free loopback port, the environment pointing at it (module-wide, so that
    the Dask workers started in this module inherit it), and the test's files: local and uploaded."""
    import geopandas as gpd
    import s3fs
    from moto.server import ThreadedMotoServer
    from shapely.geometry import box

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"AWS_ACCESS_KEY_ID": "citytwin-test", "AWS_SECRET_ACCESS_KEY": "citytwin-secret",
                     "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_DEFAULT_REGION": "us-east-1",
                     "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
                     "AWS_CONFIG_FILE": "/nonexistent/config"}.items():
            mp.setenv(k, v)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("CITYTWIN_STORAGE_OPTIONS", raising=False)
        root = tmp_path_factory.mktemp("objects")
        rng = np.random.default_rng(19)
        x, y = rng.random(N_POINTS), rng.random(N_POINTS)
        pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs=4326)
        (root / "pts").mkdir()
        for i, rows in enumerate(np.array_split(np.arange(N_POINTS), 4)):
            pts.iloc[rows].to_parquet(root / "pts" / f"part-{i}.parquet")
        gpd.GeoDataFrame({"zone": ["sw", "se", "nw", "ne"]},
                         geometry=[box(0, 0, .5, .5), box(.5, 0, 1, .5), box(0, .5, .5, 1), box(.5, .5, 1, 1)],
                         crs=4326).to_parquet(root / "quadrants.parquet")
        east, north = x >= .5, y >= .5
        expected = {"sw": int((~east & ~north).sum()), "se": int((east & ~north).sum()),
                    "nw": int((~east & north).sum()), "ne": int((east & north).sum())}
        # POIs as Parquet parts, each with some rows out of range (quarantined)
        (root / "poi").mkdir()
        for i in range(3):
            n = 1500
            df = pd.DataFrame({"poi_id": [f"P{i}{k:05d}" for k in range(n)], "name": [f"poi {i}-{k}" for k in range(n)],
                               "category": rng.choice(["shop", "bank", "school"], n),
                               "lon": rng.uniform(116.0, 117.0, n).round(7), "lat": rng.uniform(39.5, 40.5, n).round(7)})
            df.loc[df.index % 331 == 7, "lat"] = 95.0
            df.to_parquet(root / "poi" / f"poi-{i}.parquet", index=False)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.makedirs(BUCKET, exist_ok=True)  # moto keeps its buckets per process: another module may have made it
        for f in sorted(root.rglob("*.parquet")):
            fs.put_file(str(f), f"{BUCKET}/{f.relative_to(root).as_posix()}")
        fs.pipe(f"{BUCKET}/empty/readme.txt", b"no parquet here")
        fs.pipe(f"{BUCKET}/broken/part-0.parquet", b"this is not parquet")
        try:
            yield {"root": root, "endpoint": f"http://{host}:{port}", "expected": expected, "fs": fs}
        finally:
            server.stop()


@pytest.fixture(scope="module")
def address(s3: dict[str, Any]) -> Iterator[str]:
    """A LocalCluster of 2 worker processes started after the environment points at the S3 server."""
    yield from local_cluster()


@pytest.fixture
def client_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The objects this process (the Dask client) opens or downloads through s3fs, recorded."""
    import s3fs

    seen: list[str] = []
    for name in ("_open", "_cat_file", "_get_file"):
        real = getattr(s3fs.S3FileSystem, name)

        def recording(self: Any, path: str, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            seen.append(path)
            return _real(self, path, *args, **kwargs)

        monkeypatch.setattr(s3fs.S3FileSystem, name, recording)
    return seen
