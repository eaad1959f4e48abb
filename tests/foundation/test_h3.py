"""H3 cells: the one interface (``spacelink.h3_cells_arrow``), h3numba and the h3-py fallback, checked against h3-py 4.5.

The reference is ``h3.latlng_to_cell`` (the h3 C library), run side by side on the same points;
the compiled path must give the identical index string, with no tolerance. The special points
(pentagons at every resolution, icosahedron face edges and centres, poles, ±180°, the equator)
are the cases where a differently rounded formula lands in the neighbouring cell. NULL handling is
compared with ``spacelink.h3_cells(..., invalid="none")``. The DuckDB function ``h3_cell`` (the
staged ingest's) calls the same interface.
"""

from __future__ import annotations

import math

import duckdb
import h3
import numpy as np
import pyarrow as pa
import pytest

from citytwin.foundation import h3numba, h3tables, spacelink
from citytwin.foundation.errors import InputError

RANDOM_RESOLUTIONS = (0, 1, 5, 8, 9, 10, 15)
CITIES = [(116.397, 39.908), (114.0579, 22.5431), (24.9384, 60.1699)]  # Beijing, Shenzhen, Helsinki


def ref_cells(lon: np.ndarray, lat: np.ndarray, res: int) -> list[str]:
    return [h3.latlng_to_cell(float(b), float(a), res) for a, b in zip(lon, lat, strict=True)]


@pytest.fixture(params=["h3numba", "h3-py"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The engine ``spacelink.h3_cells_arrow`` uses: h3numba, or h3-py with numba unimportable."""
    import sys

    import citytwin.foundation

    if request.param == "h3-py":
        monkeypatch.setitem(sys.modules, "citytwin.foundation.h3numba", None)  # import raises ImportError
        monkeypatch.delattr(citytwin.foundation, "h3numba", raising=False)
    assert spacelink.h3_engine() == request.param
    return str(request.param)


def _special_points() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    pts: list[tuple[float, float]] = list(CITIES)
    # the 12 pentagons: centres at every resolution, exactly and jittered by 1e-12 .. 1e-4 degrees
    for res in range(16):
        for cell in h3.get_pentagons(res):
            la, lo = h3.cell_to_latlng(cell)
            pts.append((lo, la))
            for eps in (1e-12, 1e-9, 1e-7, 1e-5, 1e-4):
                for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)):
                    pts.append((lo + dx * eps, la + dy * eps))
    # poles, antimeridian, equator
    for lo in np.linspace(-180.0, 180.0, 73):
        pts += [(lo, 90.0), (lo, -90.0), (lo, 89.9999999), (lo, -89.9999999), (lo, 0.0), (lo, 1e-12), (lo, -1e-12)]
    for la in np.linspace(-90.0, 90.0, 181):
        pts += [(180.0, la), (-180.0, la), (179.9999999, la), (-179.9999999, la), (0.0, la)]
    # icosahedron face edges: points along the 30 great-circle arcs between adjacent vertices
    # (the res-0 pentagon centres), on the arc and 1e-9 rad either side of it; and the face centres
    verts = []
    for cell in h3.get_pentagons(0):
        la, lo = (math.radians(v) for v in h3.cell_to_latlng(cell))
        verts.append(np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)]))
    for i in range(12):
        for j in range(i + 1, 12):
            if math.degrees(math.acos(float(np.dot(verts[i], verts[j])))) > 64:  # not an edge
                continue
            normal = np.cross(verts[i], verts[j])
            normal /= np.linalg.norm(normal)
            for t in np.linspace(0.0, 1.0, 41):
                p = (1 - t) * verts[i] + t * verts[j]
                for off in (0.0, 1e-9, -1e-9):
                    q = p / np.linalg.norm(p) + off * normal
                    pts.append((math.degrees(math.atan2(q[1], q[0])),
                                math.degrees(math.asin(max(-1.0, min(1.0, q[2] / np.linalg.norm(q)))))))
    for x, y, z in h3tables.FACE_CENTER:
        lo, la = math.degrees(math.atan2(y, x)), math.degrees(math.asin(z))
        pts += [(lo, la), (lo + 1e-9, la), (lo, la - 1e-7)]
    # a random scatter around each city
    for lo, la in CITIES:
        pts += list(zip(lo + rng.normal(0, 0.05, 200), la + rng.normal(0, 0.05, 200), strict=True))
    arr = np.array(pts, dtype=float)
    return arr[:, 0], arr[:, 1]


def test_interface_special_points_match_h3(engine: str) -> None:
    lon, lat = _special_points()
    assert len(lon) > 10_000
    for res in (0, 1, 4, 7, 9, 10, 15):
        got = spacelink.h3_cells_arrow(lon, lat, res)
        assert isinstance(got, pa.StringArray)
        assert got.to_pylist() == ref_cells(lon, lat, res), res


def test_interface_cities_and_invalid_coordinates(engine: str) -> None:
    lon, lat = np.array([c[0] for c in CITIES]), np.array([c[1] for c in CITIES])
    # literal value from spacelink's own doctest (h3-py), Beijing at res 9
    assert spacelink.h3_cells_arrow(lon, lat, 9).to_pylist()[0] == "8931aa42803ffff"
    bad_lon = np.array([np.nan, 1.0, np.inf, -np.inf, 1.0, 180.0000001, -181.0, 10.0, 180.0, -180.0, 0.0])
    bad_lat = np.array([1.0, np.nan, 1.0, 1.0, -np.inf, 0.0, 0.0, 90.0000001, 90.0, -90.0, -91.0])
    got = spacelink.h3_cells_arrow(bad_lon, bad_lat, 9).to_pylist()
    assert got[:8] == [None] * 8 and got[-1] is None
    assert got[8:10] == [h3.latlng_to_cell(90.0, 180.0, 9), h3.latlng_to_cell(-90.0, -180.0, 9)]
    assert got == list(spacelink.h3_cells(bad_lon, bad_lat, 9, invalid="none"))
    # Arrow nulls in either column, integer columns, chunked arrays, nothing
    arr = spacelink.h3_cells_arrow(pa.array([None, 1.0, None, 1.0]), pa.array([1.0, None, None, 2.0]), 5)
    assert arr.to_pylist() == [None, None, None, h3.latlng_to_cell(2.0, 1.0, 5)]
    ints = spacelink.h3_cells_arrow(pa.array([116, 117], pa.int32()), pa.chunked_array([[39.5], [40.0]]), 9)
    assert ints.to_pylist() == [h3.latlng_to_cell(39.5, 116, 9), h3.latlng_to_cell(40.0, 117, 9)]
    assert spacelink.h3_cells_arrow(np.array([]), np.array([]), 9).to_pylist() == []


@pytest.mark.parametrize("bad", [16, -1, "9", 9.0, None, True])
def test_interface_bad_resolution_raises(engine: str, bad: object) -> None:
    with pytest.raises(InputError, match="resolution"):
        spacelink.h3_cells_arrow(np.array([1.0]), np.array([1.0]), bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="resolution"):
        spacelink.h3_cells(np.array([1.0]), np.array([1.0]), bad)  # type: ignore[arg-type]


def test_duckdb_function_h3_cell_calls_the_interface(engine: str) -> None:
    # the staged ingest's DuckDB function: several vectors' worth of rows, NULLs in either column,
    # out-of-range values, row order kept

    from citytwin.foundation.ingest.connection import register_udfs

    con = duckdb.connect()
    con.execute("SET threads=2")
    register_udfs(con)
    rng = np.random.default_rng(11)
    n = 10_000
    lon = rng.uniform(-185, 185, n)
    lat = rng.uniform(-92, 92, n)
    lon[::97] = np.nan
    frame = pa.table({"id": np.arange(n), "lon": pa.array(lon, from_pandas=True), "lat": lat})
    con.register("pts", frame)
    rows = con.sql("SELECT id, h3_cell(lon, lat, 8) FROM pts ORDER BY id").fetchall()
    assert [r[0] for r in rows] == list(range(n))
    want = [h3.latlng_to_cell(b, a, 8) if abs(a) <= 180 and abs(b) <= 90 else None
            for a, b in zip(lon, lat, strict=True)]  # NaN compares False: None
    assert [r[1] for r in rows] == want
    assert sum(r[1] is None for r in rows) > n // 97


def test_face_candidate_table_is_reproducible() -> None:
    # regenerate the 10-degree grid of candidate faces as documented in h3tables and compare
    centres = np.array(h3tables.FACE_CENTER)
    step, margin, ns, delta = h3tables.GRID_STEP, 0.3, 40, 0.012
    table = []
    for ia in range(180 // step):
        lats = np.radians(np.clip(np.linspace(-90 + ia * step - margin, -90 + (ia + 1) * step + margin, ns), -90, 90))
        for io in range(360 // step):
            lons = np.radians(np.linspace(-180 + io * step - margin, -180 + (io + 1) * step + margin, ns))
            la, lo = np.meshgrid(lats, lons)
            p = np.stack([np.cos(lo) * np.cos(la), np.sin(lo) * np.cos(la), np.sin(la)], -1).reshape(-1, 1, 3)
            d = ((centres[None] - p) ** 2).sum(-1)
            faces = np.flatnonzero((d - d.min(1, keepdims=True)).min(0) <= delta)
            table.append(len(faces) | sum(int(f) << (3 + 5 * k) for k, f in enumerate(faces)))
    assert tuple(table) == h3tables.FACE_CANDIDATES


# ---------------------------------------------------------------------------------------------
# h3numba: the C library's operations compiled (the one fast path)
# ---------------------------------------------------------------------------------------------
def assert_numba_same(lon: np.ndarray, lat: np.ndarray, res: int) -> None:
    got, want = h3numba.cells_array(lon, lat, res).to_pylist(), ref_cells(lon, lat, res)
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, (f"res {res}: {len(bad)} of {len(lon)} differ, e.g. lon={lon[bad[0]]!r} "
                     f"lat={lat[bad[0]]!r}: numba {got[bad[0]]} h3 {want[bad[0]]}")


def test_numba_random_points_match_h3() -> None:
    rng = np.random.default_rng(20261122)
    n = 200_000
    lon = rng.uniform(-180.0, 180.0, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    for res in RANDOM_RESOLUTIONS:
        assert_numba_same(lon, lat, res)


def test_numba_special_points_match_h3_at_every_resolution() -> None:
    lon, lat = _special_points()
    for res in range(16):
        assert_numba_same(lon, lat, res)


def test_numba_int_form_equals_strings() -> None:
    lon, lat = _special_points()
    for res in (0, 7, 15):
        strings = h3numba.cells_array(lon, lat, res).to_pylist()
        assert [f"{c:x}" for c in h3numba.cells_int(lon, lat, res)] == strings


def test_numba_invalid_coordinates_give_null_like_spacelink() -> None:
    lon = np.array([np.nan, 1.0, np.inf, -np.inf, 1.0, 180.0000001, -181.0, 10.0, 180.0, -180.0, 0.0])
    lat = np.array([1.0, np.nan, 1.0, 1.0, -np.inf, 0.0, 0.0, 90.0000001, 90.0, -90.0, -91.0])
    got = h3numba.cells_array(lon, lat, 9).to_pylist()
    assert got == list(spacelink.h3_cells(lon, lat, 9, invalid="none"))
    assert list(h3numba.cells_int(lon, lat, 9) < 0) == [g is None for g in got]
    # Arrow nulls (in either column), integer and float32 columns, chunked arrays
    arr = h3numba.cells_array(pa.array([None, 1.0, None, 1.0]), pa.array([1.0, None, None, 2.0]), 5)
    assert arr.to_pylist() == [None, None, None, h3.latlng_to_cell(2.0, 1.0, 5)]
    assert arr.null_count == 3
    ints = h3numba.cells_array(pa.array([116, 117], pa.int32()), pa.chunked_array([[39.5], [40.0]]), 9).to_pylist()
    assert ints == [h3.latlng_to_cell(39.5, 116, 9), h3.latlng_to_cell(40.0, 117, 9)]
    f32 = h3numba.cells_array(pa.array([116.25], pa.float32()), pa.array([39.5], pa.float32()), 9).to_pylist()
    assert f32 == [h3.latlng_to_cell(39.5, 116.25, 9)]
    assert h3numba.cells_array(np.array([]), np.array([]), 9).to_pylist() == []


@pytest.mark.parametrize("bad", [16, -1, "9", 9.0, None, True])
def test_numba_bad_resolution_raises(bad: object) -> None:
    with pytest.raises(InputError, match="resolution"):
        h3numba.cells_array(np.array([1.0]), np.array([1.0]), bad)  # type: ignore[arg-type]


def test_numba_length_mismatch_raises() -> None:
    with pytest.raises(InputError, match="length"):
        h3numba.cells_int(np.array([1.0, 2.0]), np.array([1.0]), 9)


def test_numba_threads_from_many_python_threads() -> None:
    """One thread or all, from several Python threads at once: the same cells, no abort (the lock
    serialises parallel calls, which numba's workqueue layer cannot take), and each caller's own
    numba thread count is left as it was."""
    import threading

    import numba

    rng = np.random.default_rng(7)
    lon, lat = rng.uniform(-180, 180, 20_000), rng.uniform(-90, 90, 20_000)
    want = h3numba.cells_array(lon, lat, 8).to_pylist()
    assert want == ref_cells(lon[:500], lat[:500], 8) + want[500:]
    before = numba.get_num_threads()
    got: list[list[str | None]] = []
    counts: list[int] = []

    def work(threads: int | None) -> None:
        mine = numba.get_num_threads()
        got.append(h3numba.cells_array(lon, lat, 8, threads=threads).to_pylist())
        counts.append(numba.get_num_threads() - mine)

    pool = [threading.Thread(target=work, args=(t,)) for t in (1, None, 1, 2, 64)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert got == [want] * len(pool) and counts == [0] * len(pool)
    assert numba.get_num_threads() == before


def test_numba_many_python_threads_with_workqueue_layer() -> None:
    """The same under numba's ``workqueue`` threading layer (its fallback where libgomp and TBB are
    missing), which aborts the process on concurrent parallel calls: the lock prevents that."""
    import os
    import subprocess
    import sys

    script = ("import importlib.util as u, sys, numba; s = u.spec_from_file_location('t', sys.argv[1]); "
              "t = u.module_from_spec(s); s.loader.exec_module(t); "
              "t.test_numba_threads_from_many_python_threads(); print(numba.threading_layer())")
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    out = subprocess.run([sys.executable, "-c", script, __file__], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("workqueue")
