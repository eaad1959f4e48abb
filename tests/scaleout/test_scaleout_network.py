"""The street network's parts for life circles at scale: node coordinates decoded from GeoParquet WKB
(:func:`citytwin.spatial.network.read_network_nodes`) equal :func:`~citytwin.spatial.network.network_nodes`
on the GeoDataFrame, on the fast path and on every fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Polygon

from citytwin.spatial.network import network_nodes
from citytwin.workflows.scaleout_life import read_network_nodes


def _same(path: Path, fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        if fast:  # no GeoDataFrame read on the fast path
            m.setattr("geopandas.read_parquet", lambda *a, **k: pytest.fail("not decoded"))
        ids, xy, crs = read_network_nodes(path)
    ids2, xy2, crs2 = network_nodes(gpd.read_parquet(path))
    assert np.array_equal(ids, ids2) and ids.dtype == ids2.dtype
    assert np.array_equal(xy, xy2) and xy.dtype == xy2.dtype  # the same doubles, not close ones
    assert crs.equals(crs2)


@pytest.mark.parametrize("case", ["metric", "duplicates", "geographic", "string_ids", "polygon", "row_groups"])
def test_nodes_decoded_from_wkb_equal_the_geodataframe_path(tmp_path: Path, case: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n = 500
    x, y = 385_000 + rng.uniform(0, 5000, n), 6_670_000 + rng.uniform(0, 5000, n)
    ids: np.ndarray = np.arange(n) * 7
    if case == "duplicates":
        ids[10], ids[20] = ids[5], ids[6]  # first occurrence kept, in table order
    if case == "string_ids":
        ids = np.array([f"n{i}" for i in range(n)], dtype=object)
    g = gpd.GeoDataFrame({"id": ids}, geometry=gpd.points_from_xy(x, y), crs=3067)
    if case == "geographic":
        g = g.to_crs(4326)  # reprojected to UTM by network_nodes: the general path
    if case == "polygon":
        g.loc[3, "geometry"] = Polygon([(385_000, 6_670_000), (385_010, 6_670_000), (385_010, 6_670_010)])
    f = tmp_path / "nodes.parquet"
    g.to_parquet(f, row_group_size=64 if case == "row_groups" else None)
    _same(f, case not in ("geographic", "polygon"), monkeypatch)
    if case == "metric":
        assert read_network_nodes(f)[1][0].tolist() == [x[0], y[0]]


def _grid(tmp_path: Path, side: int = 50, seed: int = 5, short_edge: bool = False) -> dict[str, str]:
    """A perturbed grid of 100 m blocks (GeoParquet nodes with string-free int ids in shuffled order, an edge
    list): a cut (two components), a far edge across the bands (longer than any halo), a lone pair of nodes,
    homes and POIs (one of each off the network)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    ids = np.arange(side * side)
    x, y = ids % side * 100.0 + rng.uniform(-20, 20, len(ids)), ids // side * 100.0 + rng.uniform(-20, 20, len(ids))
    u = np.concatenate([ids[ids % side < side - 1], ids[ids // side < side - 1]])
    v = np.concatenate([u[: (side - 1) * side] + 1, u[(side - 1) * side:] + side])
    keep = (rng.random(len(u)) > 0.1) & ~((u % side == 9) & (v == u + 1)) & ~((u // side == 30) & (v == u + side))
    u, v = u[keep], v[keep]
    length = np.hypot(x[u] - x[v], y[u] - y[v]) * rng.uniform(1.0, 1.2, len(u))
    # a far edge (a ferry, a bridge) joining the cut-off corner to the east; a lone pair of nodes
    far = (31 * side + 2, 5 * side + side - 3)
    u, v = np.append(u, [far[0], side * side]), np.append(v, [far[1], side * side + 1])
    x, y = np.append(x, [20_000.0, 20_050.0]), np.append(y, [0.0, 0.0])
    length = np.append(length, [np.hypot(x[far[0]] - x[far[1]], y[far[0]] - y[far[1]]) * 1.05, 50.0])
    if short_edge:
        length[5] = 1.0
    node_ids = np.arange(len(x)) * 3 + 1000  # not positions: the id lookup is by value
    perm = rng.permutation(len(x))
    gpd.GeoDataFrame({"id": node_ids[perm]}, geometry=gpd.points_from_xy(x[perm], y[perm]), crs=32650
                     ).to_parquet(tmp_path / "nodes.parquet")
    pd.DataFrame({"u": node_ids[u], "v": node_ids[v], "length": length}).to_parquet(tmp_path / "edges.parquet",
                                                                                   row_group_size=500)
    span = side * 100.0
    hx, hy = rng.uniform(-50, span, 800), rng.uniform(-50, span, 800)
    hx[0] = span + 5000  # off the network
    gpd.GeoDataFrame({"id": np.arange(800), "use": "residential"}, geometry=gpd.points_from_xy(hx, hy), crs=32650
                     ).to_crs(4326).to_parquet(tmp_path / "homes.parquet")
    cats = ["school", "clinic", "grocery", "park"]
    px, py = rng.uniform(0, span, 120), rng.uniform(0, span, 120)
    px[0] = -5000.0
    pcat = rng.choice(cats[:3], 120)
    # schools: west of x = 1,500 m anywhere, east of it exactly on nodes (snapping distance 0), so the
    # eastern part holds only sources without an offset while the whole network's search has some
    east = (pcat == "school") & (px > 1500)
    on = rng.integers(0, side * side, int(east.sum()))
    on = on[x[on] > 1500][: int(east.sum())]
    east_i = np.flatnonzero(east)[: len(on)]
    px[east_i], py[east_i] = x[on], y[on]
    pcat[np.flatnonzero(east)[len(on):]] = "clinic"
    gpd.GeoDataFrame({"id": np.arange(120), "category": pcat},
                     geometry=gpd.points_from_xy(px, py), crs=32650).to_parquet(tmp_path / "pois.parquet")
    return {"pois": str(tmp_path / "pois.parquet"), "buildings": str(tmp_path / "homes.parquet"),
            "streets": str(tmp_path / "edges.parquet"), "nodes": str(tmp_path / "nodes.parquet")}


@pytest.mark.parametrize("radius", [400.0, 1500.0])
def test_partitioned_search_equals_one_process(tmp_path: Path, dask_address: str, radius: float) -> None:
    """Each worker a west-east part of the network with a ``radius`` halo: homes (distances, gaps,
    components), coverage and report equal one process's life circle with the same ``max_distance``."""
    import pandas as pd

    from citytwin.spatial.lifecircle import life_circle, residential_buildings
    from citytwin.spatial.network import build_network
    from citytwin.workflows import scaleout

    files = _grid(tmp_path)
    cats = ["school", "clinic", "grocery", "park"]
    net = build_network(gpd.read_parquet(files["nodes"]), pd.read_parquet(files["streets"]))
    ref = life_circle(residential_buildings(gpd.read_parquet(files["buildings"])), gpd.read_parquet(files["pois"]),
                      net, categories=cats, max_distance=radius)
    two = scaleout.life_circles(dask=dask_address, categories=cats, max_distance=radius, partitions=True, **files)
    pd.testing.assert_frame_equal(pd.DataFrame(ref.homes.drop(columns="geometry")),
                                  pd.DataFrame(two.homes.drop(columns="geometry")), check_exact=True)
    assert ref.homes.geometry.equals(two.homes.geometry)
    pd.testing.assert_frame_equal(ref.coverage, two.coverage, check_exact=True)
    assert {k: v for k, v in two.report.items() if k != "dask"} == ref.report
    assert two.report["dask"]["split"].startswith("network in west-east parts")
    # what the case holds: components (the far edge joins the cut-off corner; the lone pair), distances found and
    # missing beyond the radius, a home off the network, a category with no POI
    assert ref.report["network"]["components"] >= 3
    d = two.homes["dist_school"]
    assert d.notna().sum() > 100 and d.dropna().max() <= radius and d.isna().sum() > 1
    assert two.homes["off_network"].sum() == 1 and two.homes["dist_park"].isna().all()
    ref_all = life_circle(residential_buildings(gpd.read_parquet(files["buildings"])), gpd.read_parquet(files["pois"]),
                          net, categories=cats)  # unbounded: the bounded distances are the same where found
    found = d.notna()
    assert np.array_equal(d[found].to_numpy(), ref_all.homes["dist_school"][found].to_numpy())


def test_partitioned_search_refuses_what_it_cannot_do_exactly(tmp_path: Path, dask_address: str) -> None:
    from citytwin.foundation.errors import InputError
    from citytwin.workflows import scaleout

    files = _grid(tmp_path, short_edge=True)
    with pytest.raises(InputError, match="shorter than the"):
        scaleout.life_circles(dask=dask_address, categories=["school"], max_distance=500.0, partitions=True, **files)
    with pytest.raises(InputError, match="search radius"):
        scaleout.life_circles(dask=dask_address, categories=["school"], partitions=True, **files)


def test_lifecircle_command_in_parts(tmp_path: Path, dask_address: str) -> None:
    """``spatial lifecircle --dask ... --partition-radius R``: the Python result; without --dask a JSON error."""
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from citytwin.cli.main import app
    from citytwin.workflows import scaleout

    files = _grid(tmp_path)
    args = ["spatial", "lifecircle", "--pois", files["pois"], "--buildings", files["buildings"], "--streets",
            files["streets"], "--nodes", files["nodes"], "--json"]
    runner = CliRunner()
    res = runner.invoke(app, [*args, "--dask", dask_address, "--partition-radius", "600"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    ref = scaleout.life_circles(dask=dask_address, max_distance=600.0, partitions=True, **files)
    pd.testing.assert_frame_equal(pd.DataFrame(got["coverage"]), ref.coverage, check_dtype=False)
    assert got["report"]["dask"]["split"].startswith("network in west-east parts")
    bad = runner.invoke(app, [*args, "--partition-radius", "600"])
    assert bad.exit_code == 2 and json.loads(bad.stdout)["field"] == "--partition-radius"


def _awkward(folder: Path) -> tuple[dict[str, str], list[str]]:
    """The life-circle grid (conftest.life_grid) made awkward for the split preparation: homes as polygons
    (their table travels as WKB; one a point), a home and a POI without geometry (dropped on each side), POIs in EPSG:3857
    (reprojected: a note), string POI ids, a node twice at one place under two ids with a home on that place
    (the k-d tree must pick the node one process picks), and a second POI off the network."""
    import pandas as pd
    from tests.scaleout.conftest import life_grid

    files, cats = life_grid(folder)
    nodes = gpd.read_parquet(files["nodes"])
    twin = nodes.iloc[[77]].assign(id=10_000)  # same point, another id (after the first: a later graph index)
    gpd.GeoDataFrame(pd.concat([nodes, twin], ignore_index=True), crs=nodes.crs).to_parquet(files["nodes"])
    homes = gpd.read_parquet(files["buildings"]).to_crs(32650)  # the network's CRS: the twin's point exactly
    homes["geometry"] = homes.geometry.buffer(6.0, quad_segs=2)
    homes.loc[1, "geometry"] = twin.geometry.iloc[0]
    homes.loc[2, "geometry"] = None
    homes.to_parquet(files["buildings"])
    pois = gpd.read_parquet(files["pois"])
    pois.loc[3, "geometry"] = None
    pois.loc[4, "geometry"] = gpd.points_from_xy([-3000.0], [100.0])[0]
    pois.assign(id=[f"p{i}" for i in pois["id"]]).to_crs(3857).to_parquet(files["pois"])
    return files, cats


def test_split_preparation_equals_one_process(tmp_path: Path, dask_address: str) -> None:
    """The Parquet network whole on each worker, its preparation shared by two workers (homes and POIs
    checked beside the graph, snapped beside the k-d tree, put together on the graph's worker): homes,
    coverage and report (notes and dropped rows in one process's order) equal one process's."""
    import pandas as pd

    from citytwin.spatial.lifecircle import life_circle, residential_buildings
    from citytwin.spatial.network import build_network
    from citytwin.workflows import scaleout

    files, cats = _awkward(tmp_path)
    net = build_network(gpd.read_parquet(files["nodes"]), pd.read_parquet(files["streets"]))
    ref = life_circle(residential_buildings(gpd.read_parquet(files["buildings"]), include_unknown=True),
                      gpd.read_parquet(files["pois"]), net, categories=cats)
    two = scaleout.life_circles(dask=dask_address, categories=cats, **files)
    pd.testing.assert_frame_equal(pd.DataFrame(ref.homes.drop(columns="geometry")),
                                  pd.DataFrame(two.homes.drop(columns="geometry")), check_exact=True)
    assert ref.homes.geometry.equals(two.homes.geometry) and two.homes.crs == ref.homes.crs
    pd.testing.assert_frame_equal(ref.coverage, two.coverage, check_exact=True)
    assert {k: v for k, v in two.report.items() if k != "dask"} == ref.report
    assert two.report["dask"]["tasks"] == len(cats) + 15
    # what the case holds: both sides dropped a row, the POIs were reprojected, two POIs off the network
    rep = ref.report
    assert rep["dropped"] == {"homes_without_geometry": 1, "pois_without_geometry": 1, "pois_off_network": 2}
    assert [n.split(":")[0] for n in rep["notes"]] == ["homes", "pois", "pois", "pois", "homes"]
    assert "reprojected from EPSG:3857" in rep["notes"][2]
    home = two.homes.set_index("home_id").loc[1]  # on the node that is there twice: a tie the tree decides
    assert home["snap_m"] == 0.0 and home["node"] in (77, 10_000)


@pytest.mark.parametrize("case", ["points", "empty", "polygons", "nan", "3d"])
def test_homes_geometry_travels_exactly(case: str) -> None:
    """The homes' geometry sent to the client as coordinates where every one is a finite 2D point, else as
    WKB: the same geometries either way."""
    import shapely

    from citytwin.workflows.scaleout_life import geometry_from_payload, geometry_payload

    rng = np.random.default_rng(5)
    x, y = rng.uniform(24, 25, 50), rng.uniform(60, 61, 50)
    geoms = {"points": shapely.points(x, y), "empty": shapely.points(np.empty((0, 2))),
             "polygons": shapely.buffer(shapely.points(x, y), 0.001),
             "nan": shapely.points(np.where(np.arange(50) == 3, np.nan, x), y),
             "3d": shapely.points(x, y, np.ones(50))}[case]
    g = gpd.GeoSeries(geoms, crs=4326)
    kind, _, _ = payload = geometry_payload(g)
    assert kind == ("xy" if case in ("points", "empty") else "wkb")
    back = geometry_from_payload(payload)
    assert back.crs == g.crs and len(back) == len(g)
    assert shapely.to_wkb(back.to_numpy()).tolist() == shapely.to_wkb(g.to_numpy()).tolist()  # byte for byte


def test_split_graph_worker_killed_after_the_first_search_result_identical(tmp_path: Path, dask_address: str) -> None:
    """The graph's worker (graph, homes and POIs checked, the put-together preparation) killed once the first search
    is done: what it held is computed again (its nanny restarts it, or the other worker takes it over) and
    the result equals one process's."""
    import os
    import signal

    import pandas as pd
    from distributed import Client

    from citytwin.spatial.lifecircle import life_circle, residential_buildings
    from citytwin.spatial.network import build_network
    from citytwin.workflows import scaleout

    files, cats = _awkward(tmp_path)
    net = build_network(gpd.read_parquet(files["nodes"]), pd.read_parquet(files["streets"]))
    ref = life_circle(residential_buildings(gpd.read_parquet(files["buildings"]), include_unknown=True),
                      gpd.read_parquet(files["pois"]), net, categories=cats)
    watcher = Client(dask_address, set_as_default=False)
    killed: list[int] = []
    try:
        pids = watcher.run(os.getpid)

        def kill_graph_worker(done: int, total: int) -> None:
            if done == 1 and not killed:
                killed.append(pids[sorted(pids)[1]])  # life_split's second worker: the graph's
                os.kill(killed[0], signal.SIGKILL)

        two = scaleout.life_circles(dask=dask_address, categories=cats, progress=kill_graph_worker, **files)
    finally:
        watcher.close()
    assert killed, "no worker was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    pd.testing.assert_frame_equal(pd.DataFrame(ref.homes.drop(columns="geometry")),
                                  pd.DataFrame(two.homes.drop(columns="geometry")), check_exact=True)
    assert ref.homes.geometry.equals(two.homes.geometry)
    pd.testing.assert_frame_equal(ref.coverage, two.coverage, check_exact=True)
    assert {k: v for k, v in two.report.items() if k != "dask"} == ref.report


def test_node_ids_in_order_are_their_own_graph_index() -> None:
    """Ids 0..n-1 in order take the range check instead of the lookup: the same graph, components and errors
    (the first unknown edge's row) as ids looked up (the same network numbered from 1)."""
    import pandas as pd

    from citytwin.foundation.errors import InputError
    from citytwin.spatial.network import network_graph, node_positions

    rng = np.random.default_rng(8)
    n = 500
    u, v = rng.integers(0, n, 3000), rng.integers(0, n, 3000)
    length = rng.uniform(1, 50, 3000)
    g0, c0 = network_graph(np.arange(n), pd.DataFrame({"u": u, "v": v, "length": length}))
    g1, c1 = network_graph(np.arange(1, n + 1), pd.DataFrame({"u": u + 1, "v": v + 1, "length": length}))
    assert (g0 != g1).nnz == 0 and np.array_equal(g0.indices, g1.indices) and np.array_equal(g0.data, g1.data)
    assert np.array_equal(c0, c1)
    assert node_positions(np.arange(4), np.array([3, 4, -1, 0])).tolist() == \
        [3, -1, -1, 0]
    assert node_positions(np.arange(4), np.array([3.0, 1.0])).tolist() == [3, 1]  # not integers: looked up
    for bad in (n, -1):
        uu = u.copy()
        uu[7] = bad
        with pytest.raises(InputError) as exc:
            network_graph(np.arange(n), pd.DataFrame({"u": uu, "v": v, "length": length}))
        assert exc.value.row == 8 and "1 edge(s) name nodes not in the node table" in str(exc.value)


def test_split_preparation_order_leaves_no_worker_waiting(tmp_path: Path, dask_address: str) -> None:
    """Session 17: ``life_split``'s preparation in the order that keeps both workers computing, read from the
    scheduler's task stream: the homes' worker reads them first (no CRS needed) and checks them before it
    builds the graph (so the snapping never waits for the graph); the nodes' worker takes the CRS before the
    tree (the homes' check waits for it: Dask gives tasks submitted together the same priority), and reads
    and checks the POIs itself. Results equal one process's (the test above)."""
    import time

    from distributed import Client

    from citytwin.workflows import scaleout

    files, cats = _awkward(tmp_path)
    with Client(dask_address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)  # a test above killed one: its nanny starts another
        client.get_task_stream(start=time.time())  # the scheduler's task-stream plugin, before the job
        t0 = time.time()
        scaleout.life_circles(dask=dask_address, categories=cats, **files)
        stream = client.get_task_stream(start=t0)
    # life_split's tasks by their number: 0 nodes, 1 homes read, 2 CRS, 3 homes checked, 4 homes' points,
    # 5 graph, 6 POIs, 7 k-d tree, 8 snapping
    ran: dict[int, tuple[str, float, float]] = {}
    for rec in stream:
        key = str(rec["key"])
        if key.startswith("citytwin-life-") and not key.startswith("citytwin-life-layout"):
            ss = [s for s in rec["startstops"] if s["action"] == "compute"][-1]
            ran[int(key.rsplit("-", 1)[1])] = (rec["worker"], ss["start"], ss["stop"])
    nodes_w, homes_w = ran[0][0], ran[1][0]
    assert nodes_w != homes_w
    assert {ran[i][0] for i in (0, 2, 6, 7, 8)} == {nodes_w}  # nodes, CRS, POIs, tree, snapping
    assert {ran[i][0] for i in (1, 3, 4, 5)} == {homes_w}  # homes read, checked, their points, graph
    on_homes_w = sorted((s, i) for i, (w, s, _) in ran.items() if w == homes_w)
    assert on_homes_w[0][1] == 1  # the homes read first there
    # by their starts (the task stream's times carry each worker's clock offset, re-estimated at heartbeats)
    assert ran[3][1] < ran[5][1]  # checked before the graph
    assert ran[2][1] < ran[7][1]  # the CRS before the tree (the homes' check waits for it)


@pytest.mark.parametrize("workers", [2, 3])
def test_split_searches_start_once_every_other_worker_holds_the_graph(tmp_path: Path, dask_address: str,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      workers: int) -> None:
    """Session 18: a search holds the GIL (scipy's Dijkstra), so a worker that searches sends nothing until
    the search ends. Every worker that did not build the graph holds the graph and the searches' inputs
    (``_hold``: both fetched) before any search runs on the graph's worker: its searches are submitted only
    once every hold has finished, and the other workers' searches read their hold (nothing fetched). Recorded
    at submission (no clock compared across processes); results equal one process's on 2 and 3 workers."""
    import pandas as pd
    from distributed import Client

    from citytwin.spatial.lifecircle import life_circle, residential_buildings
    from citytwin.spatial.network import build_network
    from citytwin.workflows import scaleout

    files, cats = _awkward(tmp_path)
    cats = [*cats, "bank", "library"]  # 7 searches: more than one a worker on 3 workers
    futures: dict[str, Any] = {}
    # key -> (function, its workers, its futures' keys, the state of every earlier task when it was submitted)
    by_key: dict[str, tuple[str, list[str], list[str], dict[str, str]]] = {}
    real = Client.submit

    def recording(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        fut = real(self, fn, *args, **kwargs)
        if getattr(fn, "__module__", "").endswith("scaleout_life"):
            states = {k: f.status for k, f in futures.items()}
            by_key[str(fut.key)] = (fn.__name__, list(kwargs.get("workers", [])),
                                    [str(a.key) for a in args if hasattr(a, "key")], states)
            futures[str(fut.key)] = fut
        return fut

    monkeypatch.setattr(Client, "submit", recording)
    two = scaleout.life_circles(dask=dask_address if workers == 2 else f"local:{workers}", categories=cats, **files)
    monkeypatch.undo()
    name_of = {key: v[0] for key, v in by_key.items()}
    (graph_w,) = next(v[1] for v in by_key.values() if v[0] == "_life_graph")
    holds = {key: v for key, v in by_key.items() if v[0] == "_hold"}
    assert len(holds) == workers - 1 and graph_w not in {w for v in holds.values() for w in v[1]}
    for _, where, deps, _ in holds.values():  # each hold: the graph (fetched as soon as built) and the inputs
        assert sorted(name_of[d] for d in deps) == ["_hold_graph", "_search_inputs"]
        (early,) = (by_key[d] for d in deps if name_of[d] == "_hold_graph")
        assert early[1] == where and [name_of[d] for d in early[2]] == ["_graph_only"]
    on_graph_w = [v for v in by_key.values() if v[0] == "_life_search"]
    elsewhere = [v for v in by_key.values() if v[0] == "_held_search"]
    assert len(on_graph_w) + len(elsewhere) == len(cats) and on_graph_w and elsewhere
    for _, where, _, states in on_graph_w:
        assert where == [graph_w]
        assert all(states.get(h) == "finished" for h in holds), "a search on the graph's worker before a hold"
    for _, where, deps, _ in elsewhere:  # its worker's hold: read there, nothing fetched
        (h,) = deps
        assert name_of[h] == "_hold" and holds[h][1] == where
    ref_net = build_network(gpd.read_parquet(files["nodes"]), pd.read_parquet(files["streets"]))
    ref = life_circle(residential_buildings(gpd.read_parquet(files["buildings"]), include_unknown=True),
                      gpd.read_parquet(files["pois"]), ref_net, categories=cats)
    pd.testing.assert_frame_equal(pd.DataFrame(ref.homes.drop(columns="geometry")),
                                  pd.DataFrame(two.homes.drop(columns="geometry")), check_exact=True)
    assert ref.homes.geometry.equals(two.homes.geometry)
    pd.testing.assert_frame_equal(ref.coverage, two.coverage, check_exact=True)
    assert {k: v for k, v in two.report.items() if k != "dask"} == ref.report
    assert two.report["dask"]["tasks"] == 13 + 2 * (workers - 1) + len(cats)
