"""Spatial dataset versions served from PostGIS: publishing a version, and the bbox and tile queries.

When a workspace's records are on PostgreSQL and PostGIS serving is switched on (``CITYTWIN_POSTGIS=1``
in the environment, or the workspace setting ``postgis: true``; the environment wins, ``0`` switches
it off), the operations center answers ``/collections/{id}/items?bbox=`` and
``/tiles/{dataset}/{z}/{x}/{y}.mvt`` from PostGIS instead of DuckDB over the GeoParquet files.

* **One table per version**: ``citytwin_data."<dataset>__v<version>"`` (a longer name is shortened
  with a hash), holding exactly what the version's files hold — every column, with the geometry as
  ``geometry(Geometry, 4326)`` and each record's position in the version (``__citytwin_fid``, the
  ``_fid`` of the DuckDB path) — and a GiST index on the geometry. ``citytwin_data.published`` lists
  the versions published (dataset, version, table, rows, columns). A version never changes, so its
  table never does.
* **Publishing** reads the version's GeoParquet with DuckDB in record batches and loads them with
  psycopg ``COPY`` (geometry as hex EWKB); DuckDB's ``postgres`` extension is not installed offline
  here. The table, its index and its ``published`` row are made in **one transaction**: a failure
  leaves nothing behind, and nothing is visible before the commit. Where serving is switched on, a
  spatial version is published **at its catalog commit** (ingest, derived datasets:
  :func:`publish_on_commit`); a publish that fails there does not undo the commit — it is said in the
  commit's notes and an ``error`` audit row, and the version is published by its first request (or
  ``citytwin records publish-postgis``), as versions from before serving was switched on are.
* **Reads** apply the same rules as :meth:`~citytwin.foundation.workspace.Workspace.read`: the
  access check (refusals audited), the personal columns of
  :meth:`~citytwin.foundation.workspace.Workspace.pii_columns` masked with
  :func:`~citytwin.foundation.access.mask_frame`, one ``read`` audit row (``engine=postgis``). The
  tile query leaves out the columns the caller chooses (the tile route's own rule). All values are
  bound parameters; names go through :func:`psycopg.sql.Identifier`.

Examples
--------
>>> table_name("helsinki_buildings", 3)
'helsinki_buildings__v3'
>>> len(table_name("a" * 63, 12)) <= 63
True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from citytwin.foundation import access, records
from citytwin.foundation.errors import AccessDenied, CitytwinError, InputError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from citytwin.foundation.workspace import Workspace

__all__ = ["ENV_POSTGIS", "SCHEMA", "Published", "configured", "publish", "publish_datasets", "publish_on_commit",
           "published", "read_bbox", "status", "switched_on", "table_name", "tile"]

#: environment variable switching PostGIS serving on (``1``) or off (``0``), over the workspace setting
ENV_POSTGIS = "CITYTWIN_POSTGIS"
#: the PostgreSQL schema of the published tables
SCHEMA = "citytwin_data"
FID = "__citytwin_fid"
GEOM = "__citytwin_geom"
#: DuckDB column types -> PostgreSQL types (anything else is refused, naming the column)
_PG_TYPES = {"VARCHAR": "text", "BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint",
             "TINYINT": "smallint", "UTINYINT": "smallint", "USMALLINT": "integer", "UINTEGER": "bigint",
             "UBIGINT": "numeric", "HUGEINT": "numeric", "DOUBLE": "double precision", "FLOAT": "real",
             "BOOLEAN": "boolean", "DATE": "date", "TIMESTAMP": "timestamp", "TIMESTAMP_NS": "timestamp",
             "TIMESTAMP_MS": "timestamp", "TIMESTAMP_S": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamptz",
             "TIME": "time", "BLOB": "bytea", "UUID": "uuid", "INTERVAL": "interval"}

_STORE = records.Store("postgis", (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA};"
    f" CREATE TABLE IF NOT EXISTS {SCHEMA}.published (dataset TEXT NOT NULL, version INTEGER NOT NULL,"
    " table_name TEXT NOT NULL UNIQUE, geometry TEXT NOT NULL, rows_loaded INTEGER NOT NULL, columns TEXT NOT NULL,"
    " published TEXT NOT NULL, published_by TEXT, PRIMARY KEY (dataset, version))",
))
_DBS: dict[str, records.Database] = {}


@dataclass(frozen=True)
class Published:
    """A version published in PostGIS: its table, geometry column and ``(column, PostgreSQL type)`` list."""

    dataset: str
    version: int
    table: str
    geometry: str
    rows: int
    columns: list[tuple[str, str]]


def table_name(dataset: str, version: int) -> str:
    """The table of a version (at most 63 bytes, PostgreSQL's limit; a longer name gets a hash)."""
    name = f"{dataset}__v{version}"
    if len(name.encode()) <= 63:
        return name
    h = hashlib.sha256(dataset.encode()).hexdigest()[:8]
    tail = f"_{h}__v{version}"
    return dataset.encode()[:63 - len(tail)].decode(errors="ignore") + tail


def switched_on(settings: dict[str, Any]) -> bool:
    """Whether PostGIS serving is asked for: ``$CITYTWIN_POSTGIS``, else the workspace setting ``postgis``."""
    env = os.environ.get(ENV_POSTGIS, "").strip().lower()
    return env in ("1", "true", "yes", "on") if env else bool(settings.get("postgis", False))


def status(url: str) -> str:
    """What a deployment's check says of PostGIS serving on ``url`` (an error when it cannot serve)."""
    if not records.is_postgres(url):
        raise CitytwinError("PostGIS serving is switched on but the records are not on PostgreSQL",
                            hint="set CITYTWIN_DATABASE=postgresql://… (docs/deployment.md), or CITYTWIN_POSTGIS=0")
    _db(url)  # PostGIS installed, the published list migrated
    with _db(url).connect() as con:
        n = con.execute(f"SELECT count(*), count(DISTINCT dataset) FROM {SCHEMA}.published").fetchone()
    return (f"features and tiles from PostGIS: {int(n[0])} version(s) of {int(n[1])} dataset(s) published"
            " (new versions at their commit, older ones on their first request; `citytwin records publish-postgis`"
            " loads them now)")


def configured(ws: Workspace) -> str | None:
    """The PostgreSQL URL the spatial reads go to, or None where PostGIS serving is off (the default).

    On: ``$CITYTWIN_POSTGIS`` is ``1``/``true``/``yes``, or it is unset and the workspace setting
    ``postgis`` is true. Switched on with the records in SQLite, it is an error (there is no
    PostgreSQL to serve from).
    """
    if not switched_on(ws.settings):
        return None
    url = ws.catalog.url
    if not records.is_postgres(url):
        raise CitytwinError("PostGIS serving is switched on (CITYTWIN_POSTGIS or the workspace's `postgis`"
                            " setting) but the records are not on PostgreSQL",
                            hint="set CITYTWIN_DATABASE=postgresql://… (docs/deployment.md), or switch it off"
                                 " with CITYTWIN_POSTGIS=0")
    return url


def _pg_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    return (psycopg.Error,)


def _db(url: str) -> records.Database:
    db = _DBS.get(url)
    if db is None:
        with records.Database(url, _STORE).connect() as con:
            ok = con.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone()
        if ok is None:
            raise CitytwinError(f"the database {records.redact(url)} has no PostGIS extension",
                                hint="as a superuser: CREATE EXTENSION postgis (docs/deployment.md)")
        db = _DBS[url] = records.open_store(url, _STORE)
    return db


_FOUND: dict[tuple[str, str, int], Published] = {}


def published(url: str, dataset: str, version: int) -> Published | None:
    """The published table of a version, or None (a version once published is remembered: it never changes)."""
    hit = _FOUND.get((url, dataset, version))
    if hit is not None:
        return hit
    with _db(url).connect() as con:
        r = con.execute(f"SELECT table_name, geometry, rows_loaded, columns FROM {SCHEMA}.published"
                        " WHERE dataset = ? AND version = ?", (dataset, version)).fetchone()
    if r is None:
        return None
    found = _FOUND[(url, dataset, version)] = Published(dataset, version, str(r[0]), str(r[1]), int(r[2]),
                                                        [(str(c), str(t)) for c, t in json.loads(r[3])])
    return found


def _geometry_of(columns: Sequence[dict[str, Any]]) -> str | None:
    return next((str(c["name"]) for c in columns if str(c.get("type", "")).upper().startswith("GEOMETRY")), None)


def publish(ws: Workspace, dataset: str, version: int | None = None, *, by: str | None = None,
            batch_rows: int = 50_000) -> Published:
    """Publish a version (default: the current one) of a spatial dataset as a PostGIS table.

    The caller must be able to read the dataset (checked and refused as for a read). Publishing an
    already published version returns it unchanged. Table, GiST index and ``published`` row are
    written in one transaction (under the store's lock): on any failure nothing is left.

    Raises
    ------
    InputError
        The dataset has no geometry, or a column of a type PostGIS tables do not take.
    """
    from psycopg import sql

    from citytwin.foundation import duck

    url = configured(ws) or ws.catalog.url
    if not records.is_postgres(url):
        raise CitytwinError("publishing to PostGIS needs the records on PostgreSQL",
                            hint="set CITYTWIN_DATABASE=postgresql://… (docs/deployment.md)")
    info = ws.info(dataset)
    v = version or info.current_version
    vi = next((x for x in info.versions if x.version == v), None)
    if vi is None:
        raise InputError(f"dataset {dataset!r} has no version {v}", field="version")
    geom = _geometry_of(vi.columns)
    if geom is None:
        raise InputError(f"dataset {dataset!r} has no geometry: only spatial datasets are published to PostGIS",
                         field="dataset")
    db = _db(url)
    found = published(url, dataset, v)
    if found is not None:
        return found
    glob = str(ws.root / vi.path / "*.parquet")
    dcon = duck.connect(spatial=False)
    try:
        desc = [(str(r[0]), str(r[1])) for r in dcon.execute("DESCRIBE SELECT * FROM read_parquet(?)", [glob]).fetchall()]
        cols: list[tuple[str, str]] = []
        from citytwin.foundation.readsql import covering

        cover = covering(glob, geom)  # the GeoParquet bbox covering is not data: PostGIS has its GiST index
        hidden = {p[0] for p in cover.values()} if cover else set()
        for c, t in desc:
            if c == geom or c in hidden:
                continue
            pt = _PG_TYPES.get(t.upper()) or ("numeric" if t.upper().startswith("DECIMAL") else None)
            if pt is None:
                pt = "jsonb" if t.upper().startswith(("STRUCT", "MAP")) or t.endswith("[]") else None
            if pt is None:
                raise InputError(f"column {c!r} of {dataset!r} v{v} has type {t}, which is not published to PostGIS",
                                 field=c)
            cols.append((c, pt))
        table = table_name(dataset, v)
        tid = sql.Identifier(SCHEMA, table)
        defs = [sql.SQL("{} bigint NOT NULL").format(sql.Identifier(FID))]
        defs += [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in cols]
        defs.append(sql.SQL("{} geometry(Geometry, 4326)").format(sql.Identifier(geom)))
        names = [FID, *(c for c, _ in cols), geom]
        select = ", ".join('"' + c.replace('"', '""') + '"' for c in (*(c for c, _ in cols), geom))
        reader = dcon.execute(f"SELECT {select} FROM read_parquet(?)", [glob]).to_arrow_reader(batch_rows)
        with db.connect() as con, con.transaction():
            raw = con.raw
            exists = raw.execute(sql.SQL("SELECT 1 FROM {}.published WHERE dataset = %s AND version = %s").format(
                sql.Identifier(SCHEMA)), (dataset, v)).fetchone()
            if exists is not None:  # published meanwhile by another process
                return published(url, dataset, v) or _missing(dataset, v)
            raw.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tid))  # left by a publish before the registry
            raw.execute(sql.SQL("CREATE TABLE {} ({})").format(tid, sql.SQL(", ").join(defs)))
            n = 0
            plain = [c for c, _ in cols]
            # CSV written by Arrow where every type reads back exactly from its text (shortest float
            # text, NULL unquoted vs "" quoted); psycopg's rows otherwise (nested, binary types)
            as_csv = all(t in _CSV_TYPES for _c, t in cols)
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN" + (" WITH (FORMAT csv)" if as_csv else "")).format(
                tid, sql.SQL(", ").join(map(sql.Identifier, names)))
            with raw.cursor() as cur, cur.copy(copy_sql) as copy:
                for batch in reader:
                    if as_csv:
                        copy.write(_csv_chunk(batch, n, plain, geom))
                    else:
                        for row in _rows(batch, n, plain, geom, {c for c, t in cols if t == "jsonb"}):
                            copy.write_row(row)
                    n += batch.num_rows
            raw.execute(sql.SQL("CREATE INDEX {} ON {} USING GIST ({})").format(
                sql.Identifier(f"{table[:50]}_gist"), tid, sql.Identifier(geom)))
            raw.execute(sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
                sql.Identifier(f"{table[:50]}_fid"), tid, sql.Identifier(FID)))
            raw.execute(sql.SQL("ANALYZE {}").format(tid))
            con.execute(f"INSERT INTO {SCHEMA}.published(dataset, version, table_name, geometry, rows_loaded,"
                        " columns, published, published_by) VALUES (?,?,?,?,?,?,now()::text,?)",
                        (dataset, v, table, geom, n, json.dumps(cols), by or ws.user.name))
    finally:
        dcon.close()
    ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="publish.postgis", dataset=dataset, version=v,
                     rows=n, detail=f"{SCHEMA}.{table}" + (f" (for {by})" if by else ""))
    return Published(dataset, v, table, geom, n, cols)


def publish_on_commit(ws: Workspace, dataset: str, version: int, say: Callable[[str], None]) -> Published | None:
    """Publish a version just committed to the catalog, where PostGIS serving is switched on (else None).

    Called by :meth:`~citytwin.foundation.workspace.Workspace.commit_version` once the version is
    recorded and current. A dataset without geometry is not published. A failure (PostgreSQL down, a
    column type PostGIS tables do not take, serving switched on with SQLite records ...) does not undo
    the commit: it is said through ``say`` (the commit's notes) and in an ``error`` audit row naming the
    reason, and None is returned; the version is then published by its first ``items?bbox=`` or tile
    request, or by ``citytwin records publish-postgis``.
    """
    try:
        url = configured(ws)
        if url is None:
            return None
        vi = next((x for x in ws.info(dataset).versions if x.version == version), None)
        if vi is None or _geometry_of(vi.columns) is None:
            return None
        pub = publish(ws, dataset, version, by=ws.user.name)
    except Exception as exc:  # the commit stands whatever failed here; the reason is said
        why = exc.message if isinstance(exc, CitytwinError) else f"{type(exc).__name__}: {exc}"
        say(f"version {version} is stored, but publishing it to PostGIS failed ({why}); it is published on its "
            f"first request, or now with `citytwin records publish-postgis {dataset}`")
        ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="publish.postgis", dataset=dataset,
                         version=version, outcome="error", detail=f"at commit: {why}"[:2000])
        return None
    say(f"published to PostGIS as {SCHEMA}.{pub.table} ({pub.rows:,} rows)")
    return pub


def _missing(dataset: str, version: int) -> Published:
    raise CitytwinError(f"{dataset!r} v{version} was published and then removed while publishing")


_CSV_TYPES = {"text", "bigint", "integer", "smallint", "double precision", "real", "boolean", "date", "timestamp",
              "timestamptz", "numeric"}


def _hex_ewkb(column: pa.Array | pa.ChunkedArray) -> Any:
    import shapely

    g = shapely.from_wkb(column.to_numpy(zero_copy_only=False))
    return g, shapely.to_wkb(shapely.set_srid(g, 4326), hex=True, include_srid=True)


def _csv_chunk(batch: pa.RecordBatch, start: int, cols: list[str], geom: str) -> bytes:
    """The COPY CSV of one record batch: position, plain values, geometry as hex EWKB (SRID 4326)."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    g, hexes = _hex_ewkb(batch.column(geom))
    hexes = [None if gj is None else h for gj, h in zip(g, hexes, strict=True)]
    arrays = [pa.array(range(start, start + batch.num_rows), type=pa.int64()), *(batch.column(c) for c in cols),
              pa.array(hexes, type=pa.string())]
    buf = io.BytesIO()
    pacsv.write_csv(pa.RecordBatch.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))]), buf,
                    pacsv.WriteOptions(include_header=False))
    return buf.getvalue()


def _rows(batch: pa.RecordBatch, start: int, cols: list[str], geom: str, as_json: set[str]) -> Any:
    """The COPY rows of one record batch: position, plain values, geometry as hex EWKB (SRID 4326)."""
    values = [batch.column(c).to_pylist() for c in cols]
    for i, c in enumerate(cols):
        if c in as_json:
            values[i] = [None if x is None else json.dumps(x, default=str) for x in values[i]]
    g, hexes = _hex_ewkb(batch.column(geom))
    for j in range(batch.num_rows):
        yield (start + j, *(v[j] for v in values), None if g[j] is None else hexes[j])


def _published_for(ws: Workspace, url: str, dataset: str, version: int) -> Published:
    """The version's table, published now (as the caller) if it is not yet."""
    return published(url, dataset, version) or publish(ws, dataset, version, by=ws.user.name)


_SCHEMAS: dict[str, Any] = {}


def _arrow_schema(glob: str) -> pa.Schema:
    """The Arrow schema a DuckDB read of the version returns (so both engines give the same frame)."""
    s = _SCHEMAS.get(glob)
    if s is None:
        from citytwin.foundation import readsql

        cur = readsql.cursor()
        try:
            s = cur.execute("SELECT * FROM read_parquet(?) LIMIT 0", [glob]).to_arrow_table().schema
        finally:
            cur.close()
        _SCHEMAS[glob] = s
    return s


def read_bbox(ws: Workspace, name: str, version: int | None, bbox: tuple[float, float, float, float],
              position: str) -> pd.DataFrame:
    """:meth:`Workspace.read` ``(name, version, bbox=bbox, position=position)`` answered by PostGIS.

    The same access check (refusal audited as ``read`` ``denied``), the same masking of personal
    columns, the same ``read`` audit row (``engine=postgis`` in its detail), the same frame: the
    records whose geometry intersects the box (GiST ``&&`` then ``ST_Intersects``), in position order.
    """
    import pyarrow as pa
    from psycopg import sql

    from citytwin.foundation.readsql import arrow_to_frame, check_bbox

    url = configured(ws)
    if url is None:
        raise CitytwinError("PostGIS serving is not configured")
    box = check_bbox(bbox)
    _info, vi = ws._version(name, version)  # the access check of Workspace.read, refusal audited
    pii = ws.pii_columns(name, vi.version)
    masked = {} if ws.user.r.sees_personal_data else pii
    pub = _published_for(ws, url, name, vi.version)
    if pub.geometry in masked:
        msg = (f"may not filter on column {pub.geometry!r}: it holds personal data that this role sees masked")
        ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="read", dataset=name, version=vi.version,
                         outcome="denied", detail=msg)
        raise AccessDenied(msg)
    glob = str(ws.root / vi.path / "*.parquet")
    schema = _arrow_schema(glob)
    # the GeoParquet bbox covering serves filters only and is never data (as in Workspace.read)
    from citytwin.foundation.readsql import covering

    cover = covering(glob, pub.geometry)
    hidden = {p[0] for p in cover.values()} if cover else set()
    plain = [f.name for f in schema if f.name != pub.geometry and f.name not in hidden]
    if position in schema.names:
        raise InputError(f"position column {position!r} is a column of {name!r}", field="position")
    g = sql.Identifier(pub.geometry)
    q = sql.SQL("SELECT {}, {}, ST_AsBinary({}) FROM {} WHERE {} && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"
                " AND ST_Intersects({}, ST_MakeEnvelope(%s, %s, %s, %s, 4326)) ORDER BY {}").format(
        sql.Identifier(FID), sql.SQL(", ").join(map(sql.Identifier, plain)) if plain else sql.SQL("NULL"), g,
        sql.Identifier(SCHEMA, pub.table), g, g, sql.Identifier(FID))
    try:
        with _db(url).connect() as con:
            rows = con.raw.execute(q, (*box, *box)).fetchall()
    except _pg_errors() as exc:
        ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="read", dataset=name, version=vi.version,
                         outcome="error", detail=f"engine=postgis: {str(exc)[:450]}")
        raise CitytwinError(f"cannot read dataset {name!r} from PostGIS: {str(exc).strip()}",
                            hint="`citytwin doctor` checks the database; CITYTWIN_POSTGIS=0 serves from the files") from None
    jsonb = {c for c, t in pub.columns if t == "jsonb"}
    data: dict[str, pa.Array] = {}
    for i, c in enumerate(plain):
        vals = [r[1 + i] for r in rows] if plain else []
        if c in jsonb:
            vals = [None if x is None else (json.loads(x) if isinstance(x, str) else x) for x in vals]
        data[c] = pa.array(vals, type=schema.field(c).type)
    gi = 1 + max(len(plain), 1)
    data[pub.geometry] = pa.array([None if r[gi] is None else bytes(r[gi]) for r in rows], type=pa.binary())
    order = [f.name for f in schema if f.name not in hidden]
    table = pa.table({c: data[c] for c in order}).add_column(0, position, pa.array([int(r[0]) for r in rows],
                                                                                    type=pa.int64()))
    df = access.mask_frame(arrow_to_frame(table), masked)
    ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="read", dataset=name, version=vi.version,
                     rows=len(df), detail="engine=postgis" + (f"; masked={sorted(masked)}" if masked else ""))
    return df


def tile(ws: Workspace, dataset: str, version: int, props: Sequence[str], z: int, x: int, y: int,
         box: tuple[float, float, float, float], *, extent: int = 4096, buffer: int = 64) -> bytes:
    """One Mapbox vector tile of a version from PostGIS (``ST_AsMVT``/``ST_AsMVTGeom`` in EPSG:3857).

    The caller has checked access and chosen ``props`` (the property columns, personal ones left
    out); ``box`` is the WGS84 box the features must intersect (the tile with its buffer margin).
    The layer is named after the dataset. Empty tile: ``b""``.
    """
    from psycopg import sql

    url = configured(ws)
    if url is None:
        raise CitytwinError("PostGIS serving is not configured")
    pub = _published_for(ws, url, dataset, version)
    known = {c for c, _ in pub.columns}
    unknown = [p for p in props if p not in known]
    if unknown:
        raise InputError(f"columns {unknown} are not in the published table of {dataset!r} v{version}", field="props")
    g = sql.Identifier(pub.geometry)
    cols = sql.SQL("").join(sql.SQL("{}, ").format(sql.Identifier(p)) for p in props)
    q = sql.SQL(
        "WITH env AS (SELECT ST_TileEnvelope(%s, %s, %s) AS e), "
        "t AS (SELECT {}ST_AsMVTGeom(ST_Transform({}, 3857), env.e, %s, %s, true) AS geom FROM {}, env "
        "WHERE {} && ST_MakeEnvelope(%s, %s, %s, %s, 4326) AND ST_Intersects({}, ST_MakeEnvelope(%s, %s, %s, %s, 4326))) "
        "SELECT ST_AsMVT(t, %s, %s, 'geom') FROM t WHERE geom IS NOT NULL").format(
        cols, g, sql.Identifier(SCHEMA, pub.table), g, g)
    try:
        with _db(url).connect() as con:
            row = con.raw.execute(q, (z, x, y, extent, buffer, *box, *box, dataset, extent)).fetchone()
    except _pg_errors() as exc:
        raise CitytwinError(f"cannot make tile {z}/{x}/{y} of {dataset!r} from PostGIS: {str(exc).strip()}",
                            hint="`citytwin doctor` checks the database; CITYTWIN_POSTGIS=0 serves from the files") from None
    return bytes(row[0]) if row is not None and row[0] is not None else b""


def publish_datasets(ws: Workspace, names: Sequence[str] = ()) -> list[Published]:
    """Publish the current version of each named dataset (default: every spatial dataset the user may
    read) to PostGIS; an admin or steward's task (refused and audited otherwise).

    Raises
    ------
    InputError
        A named dataset has no geometry.
    """
    from citytwin.foundation.catalog import CLASSIFIERS

    if ws.user.role not in CLASSIFIERS:
        msg = (f"user {ws.user.name!r} (role {ws.user.role}) may not publish datasets to PostGIS"
               f" (needs role {' or '.join(CLASSIFIERS)})")
        ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="publish.postgis", outcome="denied", detail=msg)
        raise AccessDenied(msg)
    infos = [ws.info(n) for n in names] if names else [d for d in ws.datasets() if _geometry_of(d.current.columns)]
    return [publish(ws, d.name, d.current_version) for d in infos]
