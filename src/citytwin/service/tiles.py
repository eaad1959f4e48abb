"""Mapbox vector tiles of any spatial dataset, made by DuckDB spatial (``ST_AsMVT``).

* ``GET /tiles/{dataset}/{z}/{x}/{y}.mvt`` — one tile (layer named after the dataset; the
  geometry in tile coordinates, extent 4096, buffer 64; properties: the dataset's plain columns
  but those this role sees masked, which are left out). ``ETag`` names the dataset version (and
  whether personal columns were left out); ``If-None-Match`` with it answers 304. Tiles are kept in
  an in-memory LRU cache keyed by dataset version and z/x/y, so a new version is never served
  from an old tile.
* ``GET /tiles/{dataset}.json`` — TileJSON 3.0 (tile URL template, bounds, zooms, layer fields).

Every tile request checks the caller's access to the dataset (403 for a role without clearance,
audited as ``read.tile`` ``denied``) and is one audit row (``api.read``, naming the tile); a tile not
in the cache is made from the files opened through
:meth:`~citytwin.foundation.workspace.Workspace.stats_glob` (access checked again, audited as
``read.stats``). Where PostGIS serving is configured (:mod:`citytwin.foundation.postgis`), a tile
not in the cache comes from the version's PostGIS table instead, with the same columns.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from citytwin.foundation import access, duck, postgis
from citytwin.foundation.catalog import DatasetInfo
from citytwin.foundation.errors import InputError
from citytwin.foundation.readsql import bbox_sql, covering
from citytwin.foundation.sql import ident as quote_ident
from citytwin.foundation.workspace import Workspace
from citytwin.service.apiauth import user_workspace

router = APIRouter(tags=["tiles"])

MVT = "application/vnd.mapbox-vector-tile"
MAX_ZOOM = 22
EXTENT = 4096
BUFFER = 64
#: column types carried as tile properties, and the type ST_AsMVT gets them as
_PLAIN = {"VARCHAR": "VARCHAR", "BIGINT": "BIGINT", "INTEGER": "INTEGER", "SMALLINT": "INTEGER",
          "TINYINT": "INTEGER", "UTINYINT": "INTEGER", "USMALLINT": "INTEGER", "UINTEGER": "BIGINT",
          "DOUBLE": "DOUBLE", "FLOAT": "FLOAT", "BOOLEAN": "BOOLEAN"}

WsDep = Annotated[Workspace, Depends(user_workspace)]


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """WGS84 bounds (west, south, east, north) of a web-mercator tile.

    Examples
    --------
    >>> tile_bounds(0, 0, 0)[0], round(tile_bounds(0, 0, 0)[3], 4)
    (-180.0, 85.0511)
    """
    n = 2.0 ** z

    def lat(yy: float) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * yy / n))))

    return x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0, lat(y)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The tile (x, y) holding a WGS84 point at zoom ``z``.

    Examples
    --------
    >>> tile_of(24.944, 60.170, 15)
    (18654, 9484)
    """
    n = 2 ** z
    r = math.radians(lat)
    return int((lon + 180.0) / 360.0 * n), int((1 - math.asinh(math.tan(r)) / math.pi) / 2 * n)


def tile_sql(glob: str, geom: str, props: list[tuple[str, str]], layer: str,
             cover: dict[str, list[str]] | None = None) -> str:
    """The DuckDB query of one tile (parameters: west, south, east, north, z, x, y).

    ``props``: property columns and their DuckDB types (cast to a type ``ST_AsMVT`` takes). The
    features are chosen by the bounding-box filter of dataset reads
    (:func:`~citytwin.foundation.readsql.bbox_sql`; ``cover``: the files' GeoParquet bbox covering).
    """
    g = quote_ident(geom)
    where = bbox_sql(geom, cover, ("$1", "$2", "$3", "$4"))
    cols = "".join(f"{quote_ident(c)}::{_PLAIN[t]} AS {quote_ident(c)}, " for c, t in props)
    merc = f"ST_Transform({g}::GEOMETRY, 'EPSG:4326', 'EPSG:3857', always_xy := true)"
    lit = "'" + glob.replace("'", "''") + "'"
    lname = "'" + layer.replace("'", "''") + "'"
    return (f"WITH env AS (SELECT ST_TileEnvelope($5, $6, $7) AS e), "
            f"t AS (SELECT {cols}ST_AsMVTGeom({merc}, ST_Extent(env.e), {EXTENT}, {BUFFER}, true) AS geom "
            f"FROM read_parquet({lit}), env "
            f"WHERE {g} IS NOT NULL AND {where}) "
            f"SELECT ST_AsMVT(t, {lname}, {EXTENT}, 'geom') FROM t WHERE geom IS NOT NULL")


class TileMaker:
    """Makes tiles with one shared DuckDB connection (a cursor per query) and an LRU cache
    (at most ``capacity`` tiles and ``max_bytes`` bytes)."""

    def __init__(self, capacity: int = 4096, max_bytes: int = 128 * 2**20) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self._cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._describe: dict[str, list[tuple[str, str]]] = {}
        self._pii: dict[tuple[str, int], dict[str, str]] = {}
        self._info: dict[tuple[str, int], DatasetInfo] = {}
        self.hits = 0
        self.misses = 0

    def _connection(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._con is None:
                self._con = duck.connect()
            return self._con

    def columns(self, glob: str) -> list[tuple[str, str]]:
        """Names and DuckDB types of a Parquet version's columns (cached: a version never changes)."""
        cols = self._describe.get(glob)
        if cols is None:
            cur = self._connection().cursor()
            try:
                cols = [(str(r[0]), str(r[1])) for r in
                        cur.execute("DESCRIBE SELECT * FROM read_parquet(?)", [glob]).fetchall()]
            finally:
                cur.close()
            self._describe[glob] = cols
        return cols

    def pii(self, info: DatasetInfo) -> dict[str, str]:
        """The personal-data columns of a dataset's current version, from its catalog record (the rule of
        :meth:`~citytwin.foundation.workspace.Workspace.pii_columns`), cached: a version never changes."""
        key = (info.name, info.current_version)
        found = self._pii.get(key)
        if found is None:
            cols = info.current.columns
            found = access.detect_pii([c["name"] for c in cols], {c["name"]: c["pii"] for c in cols if c.get("pii")})
            with self._lock:
                if len(self._pii) > 4096:
                    self._pii.clear()
                self._pii[key] = found
        return found

    def info(self, ws: Workspace, dataset: str, *, audit: bool = True) -> DatasetInfo:
        """The dataset's record if ``ws``'s user may read it (a refusal audited as ``read.tile``, then 403;
        ``audit=False``: not audited, the caller asks again with it).

        One indexed catalog read per call (:meth:`~citytwin.foundation.catalog.Catalog.head`: its
        classification, department and current version, as they are now); the rest of the record
        (columns) is kept per version, which never changes.
        """
        head = ws.catalog.head(dataset)
        if head is None:
            return _readable(ws, dataset)  # raises its NotFoundError
        classification, department, version = head
        try:
            access.require_read(ws.user, dataset, classification, department)
        except access.AccessDenied as exc:
            if audit:
                _denied(ws, dataset, exc)
            raise
        found = self._info.get((dataset, version))
        if found is None or found.classification != classification or found.department != department:
            found = _readable(ws, dataset)
            with self._lock:
                if len(self._info) > 4096:
                    self._info.clear()
                self._info[(dataset, found.current_version)] = found
        return found

    def cached(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            b = self._cache.get(key)
            if b is not None:
                self._cache.move_to_end(key)
                self.hits += 1
            return b

    def make(self, key: tuple[Any, ...], sql: str, z: int, x: int, y: int,
             run: Callable[[tuple[float, float, float, float]], bytes] | None = None) -> bytes:
        """Run the tile query (or take it from the cache); ``run``: make it another way (PostGIS) from
        the WGS84 box the features must meet."""
        b = self.cached(key)
        if b is not None:
            return b
        w, s, e, n = tile_bounds(z, x, y)
        # a margin for the tile buffer, so features just outside still draw their edge
        mx, my = (e - w) * BUFFER / EXTENT, (n - s) * BUFFER / EXTENT
        if run is not None:
            b = run((w - mx, s - my, e + mx, n + my))
        else:
            cur = self._connection().cursor()
            try:
                row = cur.execute(sql, [w - mx, s - my, e + mx, n + my, z, x, y]).fetchone()
            finally:
                cur.close()
            b = bytes(row[0]) if row is not None and row[0] is not None else b""
        with self._lock:
            self.misses += 1
            old = self._cache.pop(key, None)
            self.bytes += len(b) - (0 if old is None else len(old))
            self._cache[key] = b
            while len(self._cache) > self.capacity or (self.bytes > self.max_bytes and len(self._cache) > 1):
                self.bytes -= len(self._cache.popitem(last=False)[1])
        return b

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def maker(state: Any) -> TileMaker:
    """The app's :class:`TileMaker` (``app.state.tiles``; made on first use)."""
    tm: TileMaker | None = getattr(state, "tiles", None)
    if tm is None:
        tm = state.tiles = TileMaker()
    return tm


def _geometry(info: DatasetInfo) -> str:
    for c in info.current.columns:
        if str(c.get("type", "")).upper().startswith("GEOMETRY"):
            return str(c["name"])
    raise InputError(f"dataset {info.name!r} has no geometry, so it has no tiles", field="dataset",
                     hint="tiles are made of spatial datasets (see /collections: itemType feature)")


def check_tile(z: int, x: int, y: int) -> None:
    if not 0 <= z <= MAX_ZOOM:
        raise InputError(f"zoom {z} is outside 0..{MAX_ZOOM}", field="z")
    n = 2 ** z
    if not (0 <= x < n and 0 <= y < n):
        raise InputError(f"tile {z}/{x}/{y} does not exist: x and y must be in 0..{n - 1} at zoom {z}",
                         field="x/y")


def _etag(name: str, version: int, masked: dict[str, str], z: int, x: int, y: int) -> str:
    m = hashlib.sha256(",".join(sorted(masked)).encode()).hexdigest()[:8] if masked else "all"
    return f'"{name}-v{version}-{m}-{z}-{x}-{y}"'


def _if_none_match(inm: str | None, etag: str) -> bool:
    if not inm:
        return False
    tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
    return "*" in tags or etag in tags


@router.get("/tiles/{dataset}/{z}/{x}/{y}.mvt", summary="A vector tile of a spatial dataset",
            responses={200: {"content": {MVT: {}}}, 304: {"description": "Not modified (ETag matched)"}})
async def tile(dataset: str, request: Request, ws: WsDep,
               z: Annotated[int, Path(ge=0, le=MAX_ZOOM)], x: Annotated[int, Path(ge=0)],
               y: Annotated[int, Path(ge=0)]) -> Response:
    """A cached tile is answered on the event loop when the catalog read is a pooled SQLite one
    (microseconds); a tile to make (DuckDB or PostGIS), or a catalog on PostgreSQL, in a worker thread."""
    check_tile(z, x, y)
    tm = maker(request.app.state)
    inm = request.headers.get("if-none-match")
    found: Response | _Wanted | None = None
    if getattr(ws.catalog, "inline_reads", False):
        try:
            found = lookup(ws, dataset, tm, z, x, y, inm, audit=False)
        except access.AccessDenied:  # asked again in a worker thread, which audits the refusal
            found = None
    if found is None:
        found = await run_in_threadpool(lookup, ws, dataset, tm, z, x, y, inm)
    if isinstance(found, Response):
        return found
    return await make_later(ws, dataset, tm, found)


@dataclass
class _Wanted:
    """A tile that is not in the cache: what :func:`_make` needs."""

    info: DatasetInfo
    key: tuple[Any, ...]
    masked: dict[str, str]
    headers: dict[str, str]
    z: int
    x: int
    y: int


def lookup(ws: Workspace, dataset: str, tm: TileMaker, z: int, x: int, y: int,
            if_none_match: str | None, *, audit: bool = True) -> Response | _Wanted:
    """The access check, ETag and cache of one tile: its response (200 from the cache, or 304), or what
    making it needs (``audit``: of a refusal, see :meth:`TileMaker.info`)."""
    info = tm.info(ws, dataset, audit=audit)
    version = info.current_version
    masked = {} if ws.user.r.sees_personal_data else tm.pii(info)
    etag = _etag(dataset, version, masked, z, x, y)
    headers = {"ETag": etag, "Cache-Control": "private, max-age=0, must-revalidate"}
    if _if_none_match(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    engine = "postgis" if postgis.configured(ws) is not None else "duckdb"
    key = (dataset, version, tuple(sorted(masked)), z, x, y, engine)
    body = tm.cached(key)
    if body is not None:
        return Response(body, media_type=MVT, headers=headers)
    return _Wanted(info, key, masked, headers, z, x, y)


async def make_later(ws: Workspace, dataset: str, tm: TileMaker, w: _Wanted) -> Response:
    """:func:`_make` in a worker thread (it reads files or PostGIS)."""
    return await run_in_threadpool(_make, ws, dataset, tm, w)


def _make(ws: Workspace, dataset: str, tm: TileMaker, w: _Wanted) -> Response:
    """A tile not in the cache, made from the files opened through ``stats_glob`` (access checked again,
    audited as ``read.stats``) or from the version's PostGIS table."""
    info, key, z, x, y = w.info, w.key, w.z, w.x, w.y
    version = info.current_version
    geom = _geometry(info)
    glob, masked2 = ws.stats_glob(dataset, version)
    hide = set(w.masked) | set(masked2)
    props = [(c, t.upper()) for c, t in tm.columns(glob) if c != geom and c not in hide and t.upper() in _PLAIN]
    if key[-1] == "postgis":  # the same columns, from the version's PostGIS table
        body = tm.make(key, "", z, x, y, run=lambda box: postgis.tile(
            ws, dataset, version, [c for c, _ in props], z, x, y, box, extent=EXTENT, buffer=BUFFER))
    else:
        body = tm.make(key, tile_sql(glob, geom, props, dataset, covering(glob, geom)), z, x, y)
    return Response(body, media_type=MVT, headers=w.headers)


def _readable(ws: Workspace, dataset: str) -> DatasetInfo:
    """The dataset's record if the caller may read it; a refusal is audited with the dataset (then 403).

    A cached tile is served after this check and the request's own audit row (which names the tile);
    a tile made afresh adds a ``read.stats`` row.
    """
    try:
        return ws.info(dataset)
    except access.AccessDenied as exc:
        _denied(ws, dataset, exc)
        raise


def _denied(ws: Workspace, dataset: str, exc: access.AccessDenied) -> None:
    ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="read.tile", dataset=dataset,
                     outcome="denied", detail=str(exc)[:500])


@router.get("/tiles/{dataset}.json", summary="TileJSON of a spatial dataset's vector tiles")
def tilejson(dataset: str, request: Request, ws: WsDep) -> JSONResponse:
    info = _readable(ws, dataset)
    geom = _geometry(info)
    glob, masked = ws.stats_glob(dataset)
    fields = {c: t for c, t in maker(request.app.state).columns(glob) if c != geom and c not in masked and t.upper() in _PLAIN}
    v = info.current
    bounds = v.extent or [-180.0, -85.0511, 180.0, 85.0511]
    base = str(request.base_url).rstrip("/")
    return JSONResponse({
        "tilejson": "3.0.0", "name": dataset, "description": info.description, "version": f"{v.version}",
        "scheme": "xyz", "tiles": [f"{base}/tiles/{dataset}/{{z}}/{{x}}/{{y}}.mvt"],
        "minzoom": 0, "maxzoom": MAX_ZOOM, "bounds": bounds,
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, 12],
        "vector_layers": [{"id": dataset, "fields": fields, "minzoom": 0, "maxzoom": MAX_ZOOM}],
    })
