r"""The SQL of structured reads of a dataset version (:meth:`~citytwin.foundation.workspace.Workspace.read`).

A read is ``SELECT columns FROM read_parquet(?)`` with filters given as data — ``(column, op,
value)`` tuples and a WGS84 bounding box — never as SQL text: names are checked against the
version's columns and quoted (:func:`~citytwin.foundation.sql.ident`), values are bound parameters.

The bounding box is pushed down to DuckDB. When the files carry a GeoParquet 1.1 *covering* (a
``bbox`` struct column named in the ``geo`` metadata), its fields filter first, so row groups whose
statistics lie outside the box are skipped unread; then the geometry's own extent
(``ST_Intersects_Extent``, a cheap test on the bounding box) and only for those left the exact
``ST_Intersects``. The result equals GeoPandas' ``intersects`` with the same box (boundary
included; ``tests/foundation/test_read_bbox.py``).

Spatial SQL needs DuckDB's spatial extension, whose load costs about half a second: reads share one
connection per process (:func:`cursor`, a cursor per query) instead of opening one each time.

Examples
--------
>>> select_sql(["a", "b"], ["b"], [("a", ">", 1), ("b", "in", ["x", "y"])], 5)
('SELECT "b" FROM read_parquet(?) WHERE "a" > ? AND "b" IN (?, ?) LIMIT 5', [1, 'x', 'y'])
>>> sql, params = select_sql(["id", "geometry"], ["id"], None, None, bbox=(24.9, 60.1, 25.0, 60.2))
>>> print(sql.replace(" AND ", "\n  AND "))
SELECT "id" FROM read_parquet(?) WHERE ST_Intersects_Extent("geometry", ST_MakeEnvelope(?, ?, ?, ?))
  AND ST_Intersects("geometry", ST_MakeEnvelope(?, ?, ?, ?))
>>> params
[24.9, 60.1, 25.0, 60.2, 24.9, 60.1, 25.0, 60.2]
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb

from citytwin.foundation import duck
from citytwin.foundation.errors import AccessDenied, InputError
from citytwin.foundation.sql import ident

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["FILTER_OPS", "BBox", "Filter", "arrow_to_frame", "bbox_sql", "check_bbox", "covering", "cursor", "positions",
           "select_sql"]

#: A read filter: ``(column, op, value)``.
Filter = tuple[str, str, Any]
#: A bounding box ``(min lon, min lat, max lon, max lat)`` in WGS84 degrees.
BBox = tuple[float, float, float, float]
#: Operators allowed in read filters, and their SQL.
FILTER_OPS: dict[str, str] = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">",
                              ">=": ">=", "in": "IN", "not in": "NOT IN", "is null": "IS NULL",
                              "is not null": "IS NOT NULL"}
#: names of the two columns a read with ``position`` selects besides the data (file, row in file)
POS_FILE, POS_ROW = "__citytwin_file", "__citytwin_row"

_lock = threading.Lock()
_shared: tuple[int, duckdb.DuckDBPyConnection] | None = None
_coverings: dict[str, dict[str, list[str]] | None] = {}
_offsets: dict[str, dict[str, int]] = {}


def cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of the process's shared DuckDB connection (spatial extension loaded once).

    Each query gets its own cursor (close it after use); a forked child opens its own connection.
    """
    global _shared
    with _lock:
        if _shared is None or _shared[0] != os.getpid():
            con = duck.connect()
            con.execute("SET enable_progress_bar = false")  # a server's reads print nothing
            _shared = (os.getpid(), con)
        return _shared[1].cursor()


def check_bbox(bbox: object) -> BBox:
    """``bbox`` as four finite floats with min <= max; an :class:`InputError` otherwise.

    Examples
    --------
    >>> check_bbox([24.9, 60.1, 25, 60.2])
    (24.9, 60.1, 25.0, 60.2)
    """
    try:
        vals = [float(v) for v in bbox]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise InputError(f"bbox {bbox!r} is not four numbers", field="bbox",
                         hint="(min lon, min lat, max lon, max lat) in WGS84 degrees") from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[0] > vals[2] or vals[1] > vals[3]:
        raise InputError(f"bbox {bbox!r} is not min lon, min lat, max lon, max lat with min <= max",
                         field="bbox", hint="(min lon, min lat, max lon, max lat) in WGS84 degrees")
    return vals[0], vals[1], vals[2], vals[3]


def covering(glob: str, geometry: str) -> dict[str, list[str]] | None:
    """The GeoParquet 1.1 bbox covering of ``geometry`` in a version's files, if every file has one.

    ``{"xmin": ["bbox", "xmin"], ...}``: the struct column and field of each bound. Cached per glob
    (a version's files never change).
    """
    key = f"{glob}\0{geometry}"
    if key in _coverings:
        return _coverings[key]
    cur = cursor()
    try:
        rows = cur.execute("SELECT file_name, value FROM parquet_kv_metadata(?) WHERE key = 'geo'",
                           [glob]).fetchall()
        files = cur.execute("SELECT count(*) FROM glob(?)", [glob]).fetchone()
    finally:
        cur.close()
    found: dict[str, list[str]] | None = None
    if rows and files is not None and len(rows) == int(files[0]):
        covs: list[dict[str, list[str]] | None] = []
        for _f, value in rows:
            try:
                meta = json.loads(bytes(value).decode() if isinstance(value, bytes | bytearray) else str(value))
                cov = meta["columns"][geometry]["covering"]["bbox"]
                covs.append({k: [str(p) for p in cov[k]] for k in ("xmin", "ymin", "xmax", "ymax")})
            except (KeyError, TypeError, ValueError):
                covs.append(None)
        if covs and all(c is not None and c == covs[0] for c in covs):
            found = covs[0]
    _coverings[key] = found
    return found


def bbox_sql(geometry: str, cover: dict[str, list[str]] | None = None,
             marks: tuple[str, str, str, str] = ("?", "?", "?", "?")) -> str:
    """The predicate of a bounding-box filter on column ``geometry``.

    ``marks``: the parameter markers of min x, min y, max x, max y; each is used twice (three times
    with a ``cover``), in that order — with ``?`` the parameters are the box repeated.

    Examples
    --------
    >>> bbox_sql("geom", {"xmin": ["bbox", "xmin"], "ymin": ["bbox", "ymin"], "xmax": ["bbox", "xmax"],
    ...                   "ymax": ["bbox", "ymax"]}, ("$1", "$2", "$3", "$4"))  # doctest: +NORMALIZE_WHITESPACE
    '"bbox"."xmax" >= $1 AND "bbox"."ymax" >= $2 AND "bbox"."xmin" <= $3 AND "bbox"."ymin" <= $4 AND
     ST_Intersects_Extent("geom", ST_MakeEnvelope($1, $2, $3, $4)) AND ST_Intersects("geom", ST_MakeEnvelope($1, $2,
     $3, $4))'
    """
    g = ident(geometry)
    x0, y0, x1, y1 = marks
    env = f"ST_MakeEnvelope({x0}, {y0}, {x1}, {y1})"
    exact = f"ST_Intersects_Extent({g}, {env}) AND ST_Intersects({g}, {env})"
    if cover is None:
        return exact

    def path(k: str) -> str:
        return ".".join(ident(p) for p in cover[k])

    return (f"{path('xmax')} >= {x0} AND {path('ymax')} >= {y0} AND {path('xmin')} <= {x1} AND "
            f"{path('ymin')} <= {y1} AND {exact}")


def select_sql(available: Sequence[str], columns: Sequence[str] | None, where: Sequence[Filter] | None,
               limit: int | None, *, masked: dict[str, str] | None = None, bbox: BBox | None = None,
               geometry: str = "geometry", cover: dict[str, list[str]] | None = None,
               position: bool = False, hidden: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """The SQL and bound parameters of a structured read over ``read_parquet(?)``.

    Column names are checked against ``available`` and quoted; values are parameters. The first
    parameter is left for the Parquet path. ``bbox`` filters on column ``geometry``
    (:func:`bbox_sql`; ``cover``: its GeoParquet covering). With ``position`` the query also selects
    each record's file and row in that file (columns :data:`POS_FILE`, :data:`POS_ROW`; see
    :func:`positions`). ``hidden``: columns of the files that a read of all columns leaves out (the
    covering; not in ``available``).

    Examples
    --------
    >>> select_sql(["a"], None, "a = 1 UNION SELECT * FROM secret", None)
    Traceback (most recent call last):
    ...
    citytwin.foundation.errors.InputError: field 'where': SQL text is not accepted as a filter
      hint: pass a list of (column, op, value), e.g. [("year", ">=", 2020)]
    """
    known = set(available)

    def col(c: object, what: str) -> str:
        if not isinstance(c, str) or c not in known:
            raise InputError(f"unknown column {c!r} in {what}", field=what,
                             hint=f"columns: {', '.join(available)}")
        return ident(c)

    if isinstance(columns, str):
        raise InputError("columns must be a list of column names, not a string", field="columns",
                         hint=f'e.g. columns=["{available[0] if available else "name"}"]')
    if position:
        cols = ", ".join(col(c, "columns") for c in (columns or available))
        cols += f", filename AS {ident(POS_FILE)}, file_row_number AS {ident(POS_ROW)}"
        sql = f"SELECT {cols} FROM read_parquet(?, filename = true, file_row_number = true)"
    else:
        cols = ", ".join(col(c, "columns") for c in columns) if columns else \
            f"* EXCLUDE ({', '.join(ident(h) for h in hidden)})" if hidden else "*"
        sql = f"SELECT {cols} FROM read_parquet(?)"
    params: list[Any] = []
    conds = []
    if where is not None:
        if isinstance(where, str):
            raise InputError("SQL text is not accepted as a filter", field="where",
                             hint='pass a list of (column, op, value), e.g. [("year", ">=", 2020)]')
        for f in where:
            if not isinstance(f, tuple | list) or len(f) not in (2, 3):
                raise InputError(f"filter {f!r} is not (column, op, value)", field="where")
            c, op, value = (f[0], f[1], f[2] if len(f) == 3 else None)
            q = col(c, "where")
            if masked and c in masked:
                raise AccessDenied(f"may not filter on column {c!r}: it holds personal data ({masked[c]})"
                                   " that this role sees masked")
            o = str(op).strip().lower() if isinstance(op, str) else op
            if o not in FILTER_OPS:
                raise InputError(f"operator {op!r} is not allowed", field="where",
                                 hint=f"use one of {', '.join(FILTER_OPS)}")
            sql_op = FILTER_OPS[o]
            if sql_op in ("IS NULL", "IS NOT NULL"):
                conds.append(f"{q} {sql_op}")
            elif sql_op in ("IN", "NOT IN"):
                if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
                    raise InputError(f"operator {op!r} needs a list of values, got {value!r}", field="where")
                vals = list(value)
                if not vals:
                    conds.append("FALSE" if sql_op == "IN" else "TRUE")
                else:
                    conds.append(f"{q} {sql_op} ({', '.join('?' for _ in vals)})")
                    params.extend(vals)
            else:
                if value is None or isinstance(value, list | tuple | set | dict):
                    raise InputError(f"operator {op!r} needs one value, got {value!r}", field="where",
                                     hint="use 'is null' to test for missing values")
                conds.append(f"{q} {sql_op} ?")
                params.append(value)
    if bbox is not None:
        box = check_bbox(bbox)
        col(geometry, "bbox")
        if masked and geometry in masked:
            raise AccessDenied(f"may not filter on column {geometry!r}: it holds personal data that this role"
                               " sees masked")
        conds.append(bbox_sql(geometry, cover))
        params.extend(list(box) * (3 if cover is not None else 2))
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InputError(f"limit must be a whole number >= 0, got {limit!r}", field="limit")
        sql += f" LIMIT {int(limit)}"
    return sql, params


def positions(cur: duckdb.DuckDBPyConnection, glob: str, files: Sequence[str], rows: Sequence[int]) -> list[int]:
    """Each record's position in the whole version (0-based, in the order a plain read returns them)
    from its file and row in that file (the two columns a ``position`` read selects)."""
    offsets = _offsets.get(glob)
    if offsets is None:
        offsets, total = {}, 0
        for (name,) in cur.execute("SELECT file FROM glob(?)", [glob]).fetchall():
            offsets[str(name)] = total
            n = cur.execute("SELECT count(*) FROM read_parquet(?)", [str(name)]).fetchone()
            total += int(n[0]) if n is not None else 0
        _offsets[glob] = offsets
    return [offsets[str(f)] + int(r) for f, r in zip(files, rows, strict=True)]


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """A read's Arrow table as a frame: a GeoDataFrame (EPSG:4326) when it has a WKB ``geometry`` column.

    Shared by :meth:`~citytwin.foundation.workspace.Workspace.read` and the PostGIS bbox read
    (:func:`citytwin.foundation.postgis.read_bbox`), so both engines give the same frame.
    """
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import shapely

    df = table.to_pandas()
    if "geometry" in df.columns:
        # a column of missing geometries only may come back as float NaN: missing is None for shapely
        wkb = df["geometry"].to_numpy(dtype=object)
        geom = shapely.from_wkb(np.where(pd.isna(wkb), None, wkb))
        out: pd.DataFrame = gpd.GeoDataFrame(df.drop(columns=["geometry"]), geometry=geom, crs="EPSG:4326")
        return out
    frame: pd.DataFrame = df
    return frame
