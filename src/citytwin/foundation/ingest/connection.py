"""The DuckDB connection of an ingest: memory limit, spill folder, and the Python functions its query calls.

The functions (arrow UDFs): ``gcj02_to_wgs84_lon/lat`` and ``gcj02_wkb_to_wgs84`` (GCJ-02 data,
:mod:`citytwin.foundation.coords`), ``unit_factor_to``/``unit_factor``/``unit_target``/
``unit_problem`` (units given in values or per row, :mod:`citytwin.foundation.units`) and
``h3_cell(lon, lat, resolution)`` (:func:`citytwin.foundation.spacelink.h3_cells_arrow`, the one H3
interface: h3numba, or h3-py where numba cannot be imported).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from citytwin.foundation import duck, units
from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest.options import STAGED_MEMORY, STREAM_MEMORY, PipelineOptions
from citytwin.foundation.properties import PROPERTIES

__all__ = ["connect", "register_udfs"]


def connect(staging: Path, opts: PipelineOptions, *, spatial: bool = True,
            streamed: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for one pipeline: its memory limit, spilling to ``staging/spill``, the UDFs.

    ``spatial=False`` leaves out the spatial extension (~0.3 s to load; the streamed pass loads it
    when a source or the output has geometry).
    """
    con = duck.connect(threads=opts.threads, spatial=spatial)
    spill = staging / "spill"
    spill.mkdir(exist_ok=True)
    # the streamed pass only buffers row groups and one hash table: a small limit keeps its memory
    # flat (it spills); the staged table needs more to stay fast
    limit = opts.memory_limit or (STREAM_MEMORY if streamed else STAGED_MEMORY)
    con.execute(f"SET memory_limit='{limit}'; SET temp_directory='{spill}'; "
                "SET preserve_insertion_order=true")
    register_udfs(con)
    return con


#: PROJ transformers of the ``to_wgs84_*`` functions, per CRS, used only by the one thread of
#: :func:`_proj_pool`. DuckDB calls Python functions from its own (non-Python) threads, whose Python
#: thread state lives for one call only: pyproj's per-thread PROJ context died with it, and the next
#: call crashed the process. PROJ work is therefore handed to one long-lived Python thread.
_TRANSFORMERS: dict[str, Any] = {}
_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def _proj_pool() -> ThreadPoolExecutor:
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="citytwin-proj"))
        return _POOL[0]


def _proj_transform(crs: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x/y in ``crs`` to WGS84 lon/lat (runs on the thread of :func:`_proj_pool` only)."""
    if crs not in _TRANSFORMERS:
        from pyproj import Transformer

        _TRANSFORMERS[crs] = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    tx, ty = _TRANSFORMERS[crs].transform(x, y)
    return np.asarray(tx, dtype=float), np.asarray(ty, dtype=float)


def _udf(con: duckdb.DuckDBPyConnection, name: str, fn: Callable[..., Any], params: list[Any], ret: Any,
         **kw: Any) -> None:
    """Register an arrow-vectorised Python UDF (the stubs do not know the string spellings of the options)."""
    con.create_function(name, fn, params, ret, **kw)


def register_udfs(con: duckdb.DuckDBPyConnection) -> None:
    """Register the ingest's Python functions on ``con`` (see the module docstring)."""
    d = duckdb.sqltype

    def _gcj(lon: pa.Array, lat: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        from citytwin.foundation import coords

        lo = lon.to_numpy(zero_copy_only=False).astype(float)
        la = lat.to_numpy(zero_copy_only=False).astype(float)
        return coords.gcj02_to_wgs84(lo, la)

    _udf(con, "gcj02_to_wgs84_lon", lambda a, b: pa.array(_gcj(a, b)[0]), [d("DOUBLE"), d("DOUBLE")],
                        d("DOUBLE"), type="arrow", null_handling="special")
    _udf(con, "gcj02_to_wgs84_lat", lambda a, b: pa.array(_gcj(a, b)[1]), [d("DOUBLE"), d("DOUBLE")],
                        d("DOUBLE"), type="arrow", null_handling="special")

    def _to_wgs84(x: pa.Array, y: pa.Array, crs: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        # x/y in any CRS (EPSG code, GCJ-02, BD-09; the plan checked it with spacelink.parse_crs).
        # DuckDB calls this from its own threads, and PROJ crashed when they shared it: one
        # Transformer per thread and CRS, and PROJ used under a lock
        from citytwin.foundation import coords, spacelink

        xs = x.to_numpy(zero_copy_only=False).astype(float)
        ys = y.to_numpy(zero_copy_only=False).astype(float)
        name = next((c for c in crs.to_pylist() if c is not None), None)
        if name is None or len(xs) == 0:
            return xs, ys
        ok = np.isfinite(xs) & np.isfinite(ys)
        ox, oy = np.full(len(xs), np.nan), np.full(len(xs), np.nan)
        if ok.any():
            pseudo = spacelink._PSEUDO.get(name.strip().lower().replace(" ", ""))
            if pseudo == "GCJ-02":
                tx, ty = coords.gcj02_to_wgs84(xs[ok], ys[ok])
            elif pseudo == "BD-09":
                tx, ty = coords.bd09_to_wgs84(xs[ok], ys[ok])
            else:
                tx, ty = _proj_pool().submit(_proj_transform, name, xs[ok], ys[ok]).result()
            ox[ok], oy[ok] = tx, ty
        return ox, oy

    def _nan_to_null(a: np.ndarray) -> pa.Array:
        return pa.array(a, mask=~np.isfinite(a))

    _udf(con, "to_wgs84_lon", lambda a, b, c: _nan_to_null(_to_wgs84(a, b, c)[0]),
         [d("DOUBLE"), d("DOUBLE"), d("VARCHAR")], d("DOUBLE"), type="arrow", null_handling="special")
    _udf(con, "to_wgs84_lat", lambda a, b, c: _nan_to_null(_to_wgs84(a, b, c)[1]),
         [d("DOUBLE"), d("DOUBLE"), d("VARCHAR")], d("DOUBLE"), type="arrow", null_handling="special")

    def _wkb_to_wgs84(wkb: pa.Array, datum: str) -> pa.Array:
        import shapely

        from citytwin.foundation import coords

        geoms = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
        inverse = coords.gcj02_to_wgs84 if datum == "GCJ-02" else coords.bd09_to_wgs84

        def tf(xy: np.ndarray) -> np.ndarray:
            x, y = inverse(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        return pa.array(shapely.to_wkb(shapely.transform(geoms, tf)), pa.binary())

    _udf(con, "gcj02_wkb_to_wgs84", lambda w: _wkb_to_wgs84(w, "GCJ-02"), [d("BLOB")], d("BLOB"), type="arrow",
                        null_handling="special")
    _udf(con, "bd09_wkb_to_wgs84", lambda w: _wkb_to_wgs84(w, "BD-09"), [d("BLOB")], d("BLOB"), type="arrow",
         null_handling="special")

    def _pairs(prop: pa.Array, unit: pa.Array) -> tuple[list[Any], list[Any]]:
        return prop.to_pylist(), unit.to_pylist()

    def _resolve(p: str | None, u: str | None) -> tuple[float | None, str | None, str | None]:
        known = PROPERTIES.get(p or "")
        if u is None or u == "":
            return (1.0, known.unit if known else None, None) if known else (1.0, None, None)
        try:
            if known is None or known.unit is None:
                units.parse(u)
                return 1.0, u, None
            return units.factor(u, known.unit), known.unit, None
        except InputError as exc:
            return None, None, f"unit: {exc.message}"

    cache: dict[tuple[Any, Any], tuple[float | None, str | None, str | None]] = {}

    def lookup(prop: pa.Array, unit: pa.Array, i: int) -> list[Any]:
        out = []
        for p, u in zip(*_pairs(prop, unit), strict=True):
            k = (p, u)
            if k not in cache:
                cache[k] = _resolve(p, u)
            out.append(cache[k][i])
        return out

    to_cache: dict[tuple[Any, Any], float | None] = {}

    def factor_to(unit: pa.Array, target: pa.Array) -> pa.Array:
        out: list[float | None] = []
        for u, t in zip(unit.to_pylist(), target.to_pylist(), strict=True):
            if (u, t) not in to_cache:
                try:
                    to_cache[(u, t)] = units.factor(u, t) if u and t else None
                except InputError:
                    to_cache[(u, t)] = None
            out.append(to_cache[(u, t)])
        return pa.array(out, pa.float64())

    _udf(con, "unit_factor_to", factor_to, [d("VARCHAR"), d("VARCHAR")], d("DOUBLE"), type="arrow",
                        null_handling="special")
    _udf(con, "unit_factor", lambda p, u: pa.array(lookup(p, u, 0), pa.float64()),
                        [d("VARCHAR"), d("VARCHAR")], d("DOUBLE"), type="arrow", null_handling="special")
    _udf(con, "unit_target", lambda p, u: pa.array(lookup(p, u, 1), pa.string()),
                        [d("VARCHAR"), d("VARCHAR")], d("VARCHAR"), type="arrow", null_handling="special")
    _udf(con, "unit_problem", lambda p, u: pa.array(lookup(p, u, 2), pa.string()),
                        [d("VARCHAR"), d("VARCHAR")], d("VARCHAR"), type="arrow", null_handling="special")

    def range_problem(prop: pa.Array, value: pa.Array) -> pa.Array:
        # a long sensor table's value outside its property's physical range (as wide files check it)
        out: list[str | None] = []
        for p, v in zip(prop.to_pylist(), value.to_pylist(), strict=True):
            known = PROPERTIES.get(p or "")
            if known is None or v is None or v != v:
                out.append(None)
            elif (known.min is not None and v < known.min) or (known.max is not None and v > known.max):
                lo = "-inf" if known.min is None else f"{known.min:g}"
                hi = "inf" if known.max is None else f"{known.max:g}"
                out.append(f"{p}: {v:g} {known.unit or ''} outside [{lo}, {hi}]".replace("  ", " "))
            else:
                out.append(None)
        return pa.array(out, pa.string())

    _udf(con, "property_range_problem", range_problem, [d("VARCHAR"), d("DOUBLE")], d("VARCHAR"), type="arrow",
         null_handling="special")

    def h3_cell(lon: pa.Array, lat: pa.Array, resolution: pa.Array) -> pa.Array:
        from citytwin.foundation import spacelink

        if len(lon) == 0:
            return pa.array([], pa.string())
        # one thread: DuckDB already runs this on several of its own
        return spacelink.h3_cells_arrow(lon, lat, int(resolution[0].as_py()), threads=1)

    _udf(con, "h3_cell", h3_cell, [d("DOUBLE"), d("DOUBLE"), d("INTEGER")], d("VARCHAR"), type="arrow",
         null_handling="special")
