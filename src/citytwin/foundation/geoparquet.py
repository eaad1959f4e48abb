"""GeoParquet 1.1 writing: a bbox *covering* column, rows in a spatial order, small row groups.

A bounding-box read (:mod:`~citytwin.foundation.readsql`) filters first on the covering's four
fields; DuckDB compares the box with each row group's min/max statistics of those fields and skips
the row groups that lie outside. That only skips much when the rows of one row group lie close
together: so the rows are written in the order of the Hilbert curve through the centres of their
bounding boxes (:func:`hilbert_order`), in row groups of :data:`ROW_GROUP_ROWS` rows.

The covering is a struct column ``bbox`` (``xmin, ymin, xmax, ymax``, doubles; ``geometry_bbox``
if the table already has a ``bbox`` column) named in the ``geo`` metadata
(``"covering": {"bbox": {"xmin": ["bbox", "xmin"], ...}}``). Readers that do not know the
covering read it as one more column (a plain Parquet reader: a struct); GeoPandas 1.x knows it
(``read_parquet(bbox=)`` filters on it) and leaves it out, as citytwin's own reads do
(:meth:`~citytwin.foundation.workspace.Workspace.read`).

Examples
--------
>>> import numpy as np
>>> hilbert_order(np.array([0.9, 0.1, 0.1, 0.9]), np.array([0.1, 0.1, 0.9, 0.9]),
...               np.array([0.9, 0.1, 0.1, 0.9]), np.array([0.1, 0.1, 0.9, 0.9])).tolist()
[1, 2, 3, 0]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from citytwin.foundation.sql import ident, literal

__all__ = ["COVERING_FIELDS", "HILBERT_BITS", "INGEST_POINTS", "POINT_ORDER_BITS", "ROW_GROUP_ROWS", "bbox_struct", "cover_file", "covering_name",
           "covering_paths", "geo_metadata", "hilbert_keys", "hilbert_order", "point_covering", "point_order",
           "write_spatial"]

#: rows per row group of a spatial dataset: a small box reads a few of them (at 1M points, 16)
ROW_GROUP_ROWS = 65_536
#: bits per axis of the Hilbert curve (a 65,536 x 65,536 grid over the dataset's extent)
HILBERT_BITS = 16
#: the covering struct's fields, in order
COVERING_FIELDS = ("xmin", "ymin", "xmax", "ymax")
#: whether the ingest writes point layers with the covering (streamed Arrow path: the coordinates,
#: each chunk of more than one row group in Hilbert order, see ``ingest.streamed.ORDER_POINTS``;
#: WKT points and the staged pipeline: :func:`cover_file` with ``points``). **Off**: measured on 2M
#: POIs (``bench/point_covering.py``, ``bench/ingest_bench.py``, 2 shared cores) it costs ~20 % more
#: CPU and brings the ingest's ratio to DuckDB from ~0.55 to ~0.3 (issue 12's goal is 0.5); without
#: the order the covering alone gains a bbox read little and makes the file ~70 % larger
INGEST_POINTS = False


def covering_name(geometry: str, columns: list[str]) -> str:
    """The covering column's name: ``bbox``, or ``{geometry}_bbox`` where ``bbox`` is taken.

    Examples
    --------
    >>> covering_name("geometry", ["id", "geometry"]), covering_name("geometry", ["bbox", "geometry"])
    ('bbox', 'geometry_bbox')
    """
    name = "bbox"
    while name in columns:
        name = f"{geometry}_{name}"
    return name


def bbox_struct(bounds: np.ndarray) -> pa.StructArray:
    """The covering column from an ``(n, 4)`` array of bounds (NaN rows — missing or empty geometry — null).

    Examples
    --------
    >>> bbox_struct(np.array([[1.0, 2.0, 3.0, 4.0], [np.nan] * 4])).to_pylist()
    [{'xmin': 1.0, 'ymin': 2.0, 'xmax': 3.0, 'ymax': 4.0}, None]
    """
    b = np.asarray(bounds, dtype=np.float64).reshape(-1, 4)
    missing = np.isnan(b).any(axis=1)
    mask = pa.array(missing) if missing.any() else None
    return pa.StructArray.from_arrays([pa.array(b[:, i]) for i in range(4)], names=list(COVERING_FIELDS),
                                      mask=mask)


def point_covering(x: np.ndarray, y: np.ndarray) -> pa.StructArray:
    """The covering column of points: ``xmin = xmax = x``, ``ymin = ymax = y`` (no bounds to compute).

    A row with a missing or non-finite coordinate (whose point geometry is null) gets a null covering.

    Examples
    --------
    >>> point_covering(np.array([1.0, np.nan]), np.array([2.0, 3.0])).to_pylist()
    [{'xmin': 1.0, 'ymin': 2.0, 'xmax': 1.0, 'ymax': 2.0}, None]
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    bad = ~(np.isfinite(xs) & np.isfinite(ys))
    ax, ay = pa.array(xs), pa.array(ys)
    return pa.StructArray.from_arrays([ax, ay, ax, ay], names=list(COVERING_FIELDS),
                                      mask=pa.array(bad) if bad.any() else None)


def covering_paths(name: str) -> list[str]:
    """The Parquet column paths of covering column ``name``'s fields (for per-column writer options).

    Examples
    --------
    >>> covering_paths("bbox")
    ['bbox.xmin', 'bbox.ymin', 'bbox.xmax', 'bbox.ymax']
    """
    return [f"{name}.{f}" for f in COVERING_FIELDS]


#: bits per axis of the Hilbert key that orders a chunk of ingested points (:func:`point_order`): a
#: 128 x 128 grid over the chunk's extent, ~30 points per cell in a chunk of 512k points and ~500
#: cells per row group; finer keys make row groups hardly more compact (mean row-group box 0.14-0.15
#: of the chunk's extent with 7 to 16 bits, 1/8 at best for 8 row groups) and cost more to compute
POINT_ORDER_BITS = 7


def point_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row order (indices) of points along the Hilbert curve over their own extent (missing ones last).

    The keys are :func:`hilbert_keys`' on a grid of :data:`POINT_ORDER_BITS` bits per axis, computed
    by :mod:`citytwin.foundation.hilbertnumba` where numba can be imported, else by numpy (the same
    keys); they fit 16 bits, so numpy sorts them stably by radix sort in linear time, and the points
    of one cell keep their order in the file. Costs ~0.05 CPU-µs per point (keys and sort).

    Examples
    --------
    >>> point_order(np.array([0.9, 0.1, 0.1, 0.9]), np.array([0.1, 0.1, 0.9, 0.9])).tolist()
    [1, 2, 3, 0]
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if not ok.any():
        return np.arange(len(xs))
    extent = (float(xs[ok].min()), float(ys[ok].min()), float(xs[ok].max()), float(ys[ok].max()))
    try:
        from citytwin.foundation import hilbertnumba

        keys = hilbertnumba.keys(xs, ys, extent, POINT_ORDER_BITS)
    except Exception:  # numba unusable here (not installed, no writable cache folder): the same keys in numpy
        keys = hilbert_keys(xs, ys, extent, POINT_ORDER_BITS)
    keys[~ok] = 1 << (2 * POINT_ORDER_BITS)  # after every cell (infinite coordinates too: null geometry)
    return np.argsort(keys.astype(np.uint16), kind="stable")


def hilbert_keys(x: np.ndarray, y: np.ndarray, extent: tuple[float, float, float, float],
                 bits: int = HILBERT_BITS) -> np.ndarray:
    """Distance along the Hilbert curve (uint64) of points ``x, y`` on a ``2**bits`` grid over ``extent``.

    NaN coordinates get the largest key (they sort last).
    """
    n = 1 << bits
    x0, y0, x1, y1 = extent
    sx = (n - 1) / (x1 - x0) if x1 > x0 else 0.0
    sy = (n - 1) / (y1 - y0) if y1 > y0 else 0.0
    bad = np.isnan(x) | np.isnan(y)
    xi = np.clip(np.nan_to_num((np.asarray(x, dtype=np.float64) - x0) * sx), 0, n - 1).astype(np.uint64)
    yi = np.clip(np.nan_to_num((np.asarray(y, dtype=np.float64) - y0) * sy), 0, n - 1).astype(np.uint64)
    d = np.zeros(len(xi), dtype=np.uint64)
    last = np.uint64(n - 1)
    s = n >> 1
    while s > 0:
        us = np.uint64(s)
        rx = (xi & us) > 0
        ry = (yi & us) > 0
        d += us * us * ((3 * rx.astype(np.uint64)) ^ ry.astype(np.uint64))
        # rotate the quadrant so that the curve's sub-squares join end to end
        flip = rx & ~ry
        xi = np.where(flip, last - xi, xi)
        yi = np.where(flip, last - yi, yi)
        swap = ~ry
        xi, yi = np.where(swap, yi, xi), np.where(swap, xi, yi)
        s >>= 1
    d[bad] = np.iinfo(np.uint64).max
    return d


def hilbert_order(xmin: np.ndarray, ymin: np.ndarray, xmax: np.ndarray, ymax: np.ndarray) -> np.ndarray:
    """Row order (indices) along the Hilbert curve through the centres of the bounding boxes (stable)."""
    cx, cy = (xmin + xmax) / 2.0, (ymin + ymax) / 2.0
    ok = ~(np.isnan(cx) | np.isnan(cy))
    if not ok.any():
        return np.arange(len(cx))
    extent = (float(cx[ok].min()), float(cy[ok].min()), float(cx[ok].max()), float(cy[ok].max()))
    return np.argsort(hilbert_keys(cx, cy, extent), kind="stable")


def geo_metadata(column: str, types: list[str], bbox: list[float] | None = None,
                 covering: str | None = None) -> dict[str, Any]:
    """GeoParquet ``geo`` metadata of one WKB geometry column in CRS84 (1.1.0 with a ``covering``, else 1.0.0).

    Examples
    --------
    >>> geo_metadata("geometry", ["Point"], covering="bbox")["columns"]["geometry"]["covering"]["bbox"]["xmin"]
    ['bbox', 'xmin']
    """
    col: dict[str, Any] = {"encoding": "WKB", "geometry_types": sorted(set(types))}
    if bbox is not None:
        col["bbox"] = [float(v) for v in bbox]
    if covering is not None:
        col["covering"] = {"bbox": {f: [covering, f] for f in COVERING_FIELDS}}
    return {"version": "1.1.0" if covering is not None else "1.0.0", "primary_column": column,
            "columns": {column: col}}


def write_spatial(table: pa.Table, path: str | Path, geometry: str, bounds: np.ndarray, types: list[str], *,
                  row_group_rows: int = ROW_GROUP_ROWS) -> pa.Table:
    """Write ``table`` (WKB column ``geometry``, its per-row ``bounds``) as GeoParquet 1.1 with a covering.

    Tables of more than one row group are written in Hilbert order (:func:`hilbert_order`);
    smaller ones keep their row order (one row group: nothing to skip, and small results read back
    in the order they were written). Returns the table as written (covering included).
    """
    b = np.asarray(bounds, dtype=np.float64).reshape(-1, 4)
    if table.num_rows > row_group_rows:
        order = hilbert_order(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
        table = table.take(pa.array(order))
        b = b[order]
    name = covering_name(geometry, table.column_names)
    table = table.append_column(name, bbox_struct(b))
    ok = ~np.isnan(b).any(axis=1)
    extent = [float(b[ok, 0].min()), float(b[ok, 1].min()), float(b[ok, 2].max()), float(b[ok, 3].max())] \
        if ok.any() else None
    meta = dict(table.schema.metadata or {})
    meta[b"geo"] = json.dumps(geo_metadata(geometry, types, extent, covering=name)).encode()
    table = table.replace_schema_metadata(meta)
    pq.write_table(table, str(path), row_group_size=row_group_rows, compression="zstd", compression_level=1,
                   write_statistics=[c for c in table.column_names if c != geometry] + [f"{name}.{f}"
                                                                                         for f in COVERING_FIELDS])
    return table


def cover_file(con: duckdb.DuckDBPyConnection, path: Path, write_options: str, *,
               row_group_rows: int | None = None, points: bool = False) -> str | None:
    """Rewrite a GeoParquet 1.0 file that DuckDB wrote (ingest's ``COPY``) as GeoParquet 1.1 with a covering.

    ``con`` has the spatial extension loaded (and the caller's memory limit and spill folder: the
    sort spills). The geometry column ``geometry`` becomes WKB with the ``geo`` metadata of
    :func:`geo_metadata` (the types and bbox DuckDB recorded, and the covering ``bbox``); a file of
    more than one row group is written in the order of DuckDB's ``ST_Hilbert`` over its extent
    (missing geometry last), smaller ones in their order. ``write_options``: the ``COPY`` options
    (their ``ROW_GROUP_SIZE`` is replaced). A file with only points is left as it is unless
    ``points`` (their covering repeats the coordinates). ``row_group_rows``: default
    :data:`ROW_GROUP_ROWS`. Returns the covering column's name if the file was rewritten, else None.
    """
    row_group_rows = row_group_rows or ROW_GROUP_ROWS
    row = con.execute("SELECT value FROM parquet_kv_metadata(?) WHERE key = 'geo'", [str(path)]).fetchone()
    if row is None:
        return None
    value = row[0]
    geo = json.loads(bytes(value).decode() if isinstance(value, bytes | bytearray) else str(value))
    col = geo.get("columns", {}).get("geometry")
    if col is None or "covering" in col:
        return None
    types = [str(t) for t in col.get("geometry_types", [])]
    if not points and types and all(t.removesuffix(" Z") == "Point" for t in types):
        return None
    names = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]
    cover = covering_name("geometry", names)
    bbox = col.get("bbox")
    rows = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()
    order = ""
    if bbox and len(bbox) == 4 and rows is not None and int(rows[0]) > row_group_rows:
        env = ", ".join(repr(float(v)) for v in bbox)
        order = f" ORDER BY ST_Hilbert(geometry, ST_Extent(ST_MakeEnvelope({env}))) NULLS LAST"
    meta = json.dumps(geo_metadata("geometry", types, [float(v) for v in bbox] if bbox else None, covering=cover),
                      separators=(",", ":"))
    opts = ", ".join(o for o in (x.strip() for x in write_options.split(","))
                     if not o.upper().startswith("ROW_GROUP_SIZE"))
    tmp = path.with_name(path.name + ".covered")
    fields = ", ".join(f"{f} := ST_{f[0].upper()}{f[1:].capitalize()}(geometry)" for f in COVERING_FIELDS)
    con.execute(f"COPY (SELECT * REPLACE (ST_AsWKB(geometry) AS geometry), "
                f"CASE WHEN geometry IS NOT NULL AND NOT ST_IsEmpty(geometry) THEN struct_pack({fields}) END "
                f"AS {ident(cover)} FROM read_parquet({literal(str(path))}){order}) TO {literal(str(tmp))} "
                f"({opts}, ROW_GROUP_SIZE {int(row_group_rows)}, KV_METADATA {{geo: {literal(meta)}}})")
    tmp.replace(path)
    return cover
