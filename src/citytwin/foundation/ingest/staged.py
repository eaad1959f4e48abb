"""The staged pipeline: every record numbered and checked into a table, bad ones to quarantine.

Runs when the streamed pass stopped (a record to quarantine, a duplicate key, a read problem) or
for administrative-code linking: the validation query (:func:`~citytwin.foundation.ingest.query.build_sql`,
with raw records) fills the table ``staged``; CSV rows the parser could not split are recorded
with their true line; duplicate keys after the first get a reason; city names are resolved to
administrative codes and records with only a code get the unit's representative point and H3 cell;
then the kept records and the quarantine (file, row, field, reason, raw record) are written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from citytwin.foundation import geoparquet, readers
from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest import blocks
from citytwin.foundation.ingest.connection import connect
from citytwin.foundation.ingest.exprs import all_reasons
from citytwin.foundation.ingest.options import Outcome, PipelineOptions
from citytwin.foundation.ingest.parquet import PARQUET_WRITE
from citytwin.foundation.ingest.plan import Plan, note_columns, plan_columns
from citytwin.foundation.ingest.query import build_sql
from citytwin.foundation.schemas import Schema
from citytwin.foundation.sql import ident as q
from citytwin.foundation.sql import literal as lit

__all__ = ["run_staged"]


def _true_rows(accepted: list[int], rejected_rows: list[int]) -> list[int]:
    """Map 1-based indices among parsed records to data rows, given the rows the parser rejected."""
    if not rejected_rows:
        return accepted
    rej = np.sort(np.asarray(rejected_rows))
    s = rej - np.arange(len(rej))  # accepted index at which each reject is passed
    acc = np.asarray(accepted)
    out: list[int] = (acc + np.searchsorted(s, acc, side="right")).tolist()
    return out


def run_staged(files: list[Path], sch: Schema, opts: PipelineOptions, staging: Path,
               say: Callable[[str], None]) -> Outcome:
    """The staged pipeline: every record numbered and checked into a table, then written.

    Used when the streamed pass met a record to quarantine (or for administrative-code linking):
    it reports every bad record with its file and row and the reason.
    """
    con = connect(staging, opts)
    try:
        return _staged_run(con, files, sch, opts, staging, say)
    finally:
        con.close()


#: from this many output columns on, a file is "wide" for the query optimizer (see _staged_run)
WIDE_COLUMNS = 256


def _staged_run(con: duckdb.DuckDBPyConnection, files: list[Path], sch: Schema, opts: PipelineOptions,
                staging: Path, say: Callable[[str], None]) -> Outcome:
    h3_res = opts.h3_res
    geometry_policy = opts.geometry_policy
    notes: list[str] = []
    columns_meta: dict[str, dict[str, Any]] = {}
    layout = "long"
    con.execute("CREATE TABLE rejects(_file INTEGER, _row BIGINT, _field VARCHAR, _reason VARCHAR, "
                "_record VARCHAR)")
    created = False
    for i, path in enumerate(files):
        say(f"reading {path.name}")
        src = readers.open_source(con, path, sheet=opts.sheet, layer=opts.layer, encoding=opts.encoding,
                                  staging=staging, delimiter=None, header=opts.header)
        notes += [f"{path.name}: {n}" for n in src.notes]
        plan = plan_columns(src, sch, user_units=opts.units_map, crs=opts.crs, geometry_policy=geometry_policy,
                            column_map=opts.column_map)
        notes += [f"{path.name}: {n}" for n in plan.notes]
        layout = plan.layout
        view = f"({src.sql})" if src.sql else f"src_{i}"
        if not src.sql:
            con.register(view, src.relation)
        if len(plan.columns) > WIDE_COLUMNS:
            # DuckDB's common-subexpression pass grows faster than linearly with the expressions of a
            # wide file (2,000 columns: 13 CPU-s with it, 4.5 without); its gain is nil here
            con.execute("SET disabled_optimizers = 'common_subexpressions'")
        try:
            # a wide file in column blocks (bounded memory for any width), others in one query
            sql = _block_select(con, plan, view, i, geometry_policy, h3_res) if blocks.blockable(plan) else \
                build_sql(plan, view, i, h3_resolution=h3_res, geometry_policy=geometry_policy)
            created = _stage(con, sql, created)
        except duckdb.Error as exc:
            if src.format != "csv" or src.csv_rejects:
                raise readers.csv_error(path, exc) if src.format == "csv" else InputError(
                    f"cannot read: {readers.duck_message(exc)}", file=str(path),
                    hint="the attribute text is probably in another encoding: pass --encoding (e.g. gbk)"
                    if "string of size" in str(exc) else None) from exc
            # malformed rows: read again, keeping the rows that split and recording the others
            if created:
                con.execute(f"DELETE FROM staged WHERE _file = {i}")
            src = readers.open_source(con, path, encoding=opts.encoding, staging=staging, csv_rejects=True,
                                      header=opts.header)
            view = f"({src.sql})" if src.sql else view
            if not src.sql:
                con.register(view, src.relation)
            plan = plan_columns(src, sch, user_units=opts.units_map, crs=opts.crs, geometry_policy=geometry_policy,
                            column_map=opts.column_map)
            try:
                sql = _block_select(con, plan, view, i, geometry_policy, h3_res) if blocks.blockable(plan) else \
                    build_sql(plan, view, i, h3_resolution=h3_res, geometry_policy=geometry_policy)
                created = _stage(con, sql, created)
            except duckdb.Error as exc2:
                raise readers.csv_error(path, exc2) from exc2
        if src.csv_rejects:
            rej = readers.csv_rejects(con)
            hdr = 1
            rej_rows = [r["line"] - hdr for r in rej]
            if rej:
                bad = con.sql(f"SELECT DISTINCT _row FROM staged WHERE _file={i} AND _reason IS NOT NULL").fetchall()
                acc = [int(r[0]) for r in bad]
                fixed = _true_rows(acc, rej_rows)
                for a, b in zip(acc, fixed, strict=True):
                    if a != b:
                        con.execute(f"UPDATE staged SET _row={b} WHERE _file={i} AND _row={a}")
                con.executemany("INSERT INTO rejects VALUES (?, ?, ?, ?, ?)", [
                    (i, r["line"] - hdr, r["field"], f"{r['field'] or 'row'}: {r['message']}",
                     json.dumps({"line": r["raw"]}, ensure_ascii=False)) for r in rej])
                notes.append(f"{path.name}: {len(rej)} row(s) the CSV parser could not split")
        if src.temp_table:
            con.execute(f"DROP TABLE IF EXISTS {src.temp_table}")
        for t in [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary AND "
                                            "table_name LIKE '\\_block\\_%' ESCAPE '\\'").fetchall()]:
            con.execute(f"DROP TABLE {q(t)}")
        note_columns(columns_meta, plan, h3_res)
    if not created:
        raise InputError("nothing to read")
    # admin codes from city names (A2), before the key check: two spellings of one unit (北京, 北京市)
    # are one key
    cols_now = con.sql("SELECT * FROM staged LIMIT 0").columns
    name_col = "city" if "city" in cols_now else "name" if "name" in cols_now else None
    if "adcode" in cols_now and name_col is not None:
        _fill_adcodes(con, notes, name_col)
    say("checking keys")
    key = [k for k in sch.key if k in set(cols_now)]
    if layout == "wide" and sch.name == "sensor_observation":
        key = ["entity", "property", "time"]
    unit_key = name_col is not None and name_col in key and "adcode" in cols_now
    if unit_key:
        # the unit is its administrative code where the name resolved to one, else its name
        _unit_column(con, str(name_col))
        key = ["_unit" if k == name_col else k for k in key]
    if key:
        kcols = ", ".join(q(k) for k in key)
        kdesc = ", ".join(str(name_col) if k == "_unit" else k for k in key)
        notnull = " AND ".join(f"{q(k)} IS NOT NULL" for k in key)
        # a hash aggregate finds the duplicated keys (cheap); only their records are then ranked
        con.execute(f"""
            CREATE TABLE dupkeys AS SELECT {kcols}, min(_file * 10000000000 + _row) AS first_pos
            FROM staged WHERE _reason IS NULL AND {notnull} GROUP BY ALL HAVING count(*) > 1""")
        join = " AND ".join(f"s.{q(k)} = d.{q(k)}" for k in key)
        con.execute(f"""
            CREATE TABLE dups AS SELECT s._file, s._row, {', '.join(f's.{q(k)}' for k in key)},
                   CAST(d.first_pos // 10000000000 AS INTEGER) AS first_file, d.first_pos % 10000000000 AS first_row
            FROM staged s JOIN dupkeys d ON {join}
            WHERE s._reason IS NULL AND s._file * 10000000000 + s._row <> d.first_pos""")
        ndup = con.sql("SELECT count(*) FROM dups").fetchone()[0]  # type: ignore[index]
        if ndup and unit_key:
            # name both spellings: the record's and the first's, and the code that makes them one
            nc = q(str(name_col))
            vals = ", ".join(f"CAST(s.{nc} AS VARCHAR)" if k == "_unit" else f"CAST(s.{q(k)} AS VARCHAR)" for k in key)
            con.execute(f"""
                CREATE TABLE dupnames AS SELECT d._file, d._row, CAST(f.{nc} AS VARCHAR) AS first_name
                FROM dups d JOIN staged f ON f._file = d.first_file AND f._row = d.first_row""")
            con.execute(f"""
                UPDATE staged s SET _reason =
                    'duplicate key ({kdesc}) = ' || concat_ws(', ', {vals})
                    || CASE WHEN n.first_name IS DISTINCT FROM CAST(s.{nc} AS VARCHAR) THEN
                       ': ' || CAST(s.{nc} AS VARCHAR) || ' and ' || n.first_name || ' are one administrative unit ('
                       || s._unit || ')' ELSE '' END
                    || ' (first at ' || CASE WHEN d.first_file = d._file THEN '' ELSE 'file ' || (d.first_file + 1) || ' ' END
                    || 'row ' || d.first_row || ')'
                FROM dups d, dupnames n WHERE s._file = d._file AND s._row = d._row AND n._file = d._file
                    AND n._row = d._row""")
        elif ndup:
            join = " AND ".join(f"s.{q(k)} = d.{q(k)}" for k in key)
            con.execute(f"""
                UPDATE staged s SET _reason =
                    'duplicate key ({kdesc}) = ' || concat_ws(', ', {', '.join(f'CAST(d.{q(k)} AS VARCHAR)' for k in key)})
                    || ' (first at ' || CASE WHEN d.first_file = d._file THEN '' ELSE 'file ' || (d.first_file + 1) || ' ' END
                    || 'row ' || d.first_row || ')'
                FROM dups d WHERE s._file = d._file AND s._row = d._row AND {join}""")
        if ndup:
            notes.append(f"{ndup} record(s) with a duplicate key ({kdesc}) quarantined; the first kept")
    if unit_key:
        con.execute("ALTER TABLE staged DROP COLUMN _unit")
    cols_now = con.sql("SELECT * FROM staged LIMIT 0").columns
    had_geometry = "geometry" in cols_now
    fallback = "adcode" in cols_now and con.sql(
        "SELECT count(*) FROM staged WHERE _reason IS NULL AND adcode IS NOT NULL"
        + (" AND geometry IS NULL" if had_geometry else "")).fetchone()[0]  # type: ignore[index]
    if fallback and (not had_geometry or sch.geometry is not None):
        _admin_geometry(con, h3_res, had_geometry)
        cols_now = con.sql("SELECT * FROM staged LIMIT 0").columns
        n = con.sql(f"SELECT count(*) FILTER (WHERE geometry_source = 'admin_point'), count(*) FILTER (WHERE "
                    f"geometry_source = {lit(COUNTY_OF_CODE)}), count(*) FROM staged WHERE _reason IS NULL").fetchone()
        assert n is not None
        if n[0]:
            notes.append(f"{n[0]} of {n[2]} record(s) without usable coordinates placed at the representative point "
                         "of their administrative unit (adcode): geometry_source = 'admin_point'")
        if n[1]:
            notes.append(f"{n[1]} of {n[2]} record(s) without usable coordinates carry a 9-digit township or "
                         "12-digit village code: placed at the representative point of its county (the code's "
                         f"first 6 digits), geometry_source = {COUNTY_OF_CODE!r}")
        columns_meta["geometry"] = {"name": "geometry", "type": "GEOMETRY", "crs": "EPSG:4326",
                                    "source": ("the record's coordinates, else " if had_geometry else "")
                                    + "representative point of the administrative unit (adcode)"}
        columns_meta["geometry_source"] = {"name": "geometry_source", "type": "VARCHAR",
                                           "description": "coordinates / admin_point / admin_point:county_of_code "
                                                          "(where the point came from: the record's coordinates, "
                                                          "its unit's point, or the point of the county of its "
                                                          "township or village code)"}
        if h3_res is not None:
            columns_meta["h3"] = {"name": "h3", "type": "VARCHAR", "h3_resolution": h3_res}
    say("writing")
    out_dir = staging / "data"
    out_dir.mkdir()
    drop = ["_file", "_row", "_reason", "_record", "_column"]
    keep_cols = [c for c in cols_now if c not in drop]
    file_names = [str(p) for p in files]
    con.execute(f"""COPY (SELECT {', '.join(q(c) for c in keep_cols)} FROM staged WHERE _reason IS NULL)
                 TO '{out_dir / 'part-0.parquet'}' ({PARQUET_WRITE})""")
    if "geometry" in keep_cols:  # GeoParquet 1.1, covering, Hilbert order (points: see geoparquet.INGEST_POINTS)
        geoparquet.cover_file(con, out_dir / "part-0.parquet", PARQUET_WRITE, points=geoparquet.INGEST_POINTS)
    qfile = staging / "quarantine.parquet"
    fname_case = "CASE _file " + " ".join(f"WHEN {i} THEN {lit(n)}" for i, n in enumerate(file_names)) + " END"
    con.execute(f"""COPY (
        SELECT {fname_case} AS file, _row AS row,
               coalesce(_column, split_part(_reason, ':', 1)) AS field,
               _reason AS reason, _record AS record
        FROM staged WHERE _reason IS NOT NULL
        UNION ALL
        SELECT {fname_case} AS file, _row AS row, _field AS field, _reason AS reason, _record AS record
        FROM rejects ORDER BY file, row) TO '{qfile}' (FORMAT parquet)""")
    stats = con.sql("SELECT count(*) FILTER (WHERE _reason IS NULL), count(*) FILTER (WHERE _reason IS NOT NULL)"
                    " FROM staged").fetchone()
    n_rej = con.sql("SELECT count(*) FROM rejects").fetchone()[0]  # type: ignore[index]
    assert stats is not None
    kept, quarantined = int(stats[0]), int(stats[1]) + int(n_rej)
    reasons = dict(con.sql("""SELECT CASE WHEN reason LIKE 'duplicate key%' THEN 'duplicate key'
                              ELSE left(regexp_replace(split_part(reason, '; ', 1), ': .*?(not |outside|in the future|required|invalid|empty|missing|unknown|cannot)', ': \\1'), 60) END AS r,
                              count(*) FROM read_parquet(?) GROUP BY r ORDER BY 2 DESC LIMIT 20""",
                           params=[str(qfile)]).fetchall())
    extent = None
    if "geometry" in keep_cols:
        e = con.sql("SELECT min(ST_XMin(geometry)), min(ST_YMin(geometry)), max(ST_XMax(geometry)), "
                    "max(ST_YMax(geometry)) FROM staged WHERE _reason IS NULL").fetchone()
        extent = [float(x) for x in e] if e and e[0] is not None else None
    tmin = tmax = None
    tcol = next((c for c in ("time", "created", "year") if c in keep_cols), None)
    if tcol:
        r = con.sql(f"SELECT CAST(min({q(tcol)}) AS VARCHAR), CAST(max({q(tcol)}) AS VARCHAR) FROM staged "
                    "WHERE _reason IS NULL").fetchone()
        tmin, tmax = (r[0], r[1]) if r else (None, None)
    return Outcome(out_dir=out_dir, qfile=qfile, kept=kept, quarantined=quarantined, reasons=reasons,
                    extent=extent, tmin=tmin, tmax=tmax, keep_cols=keep_cols, columns_meta=columns_meta,
                    notes=notes, layout=layout, pipeline="staged")


def _block_select(con: duckdb.DuckDBPyConnection, plan: Plan, view: str, file_index: int,
                  geometry_policy: str, h3_res: int | None) -> str:
    """A wide plan's checked records (as :func:`build_sql` gives them) from column blocks (:mod:`.blocks`):
    each block's query fills a temporary table in row order. Long records: the SELECT returned joins
    them by position, with every block's reasons and the raw record of a record with any; the first
    block carries the coordinates or geometry and adds the point geometry and H3 cells. Melted
    sensor files: the SELECT returned appends the blocks' observations."""
    parts = blocks.column_blocks(plan)
    for k, sub in enumerate(parts):
        geo = sub.lonlat is not None or sub.geometry is not None
        sql = build_sql(sub, view, file_index, h3_resolution=h3_res if geo else None, geometry_policy=geometry_policy)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _block_{k} AS {sql}")
    n = len(parts)
    if blocks.by_rows(plan):
        return " UNION ALL BY NAME ".join(f"SELECT * FROM _block_{k}" for k in range(n))
    internal = {"_file", "_row", "_reason", "_column", "_record"}
    first = [c for c in con.sql("SELECT * FROM _block_0 LIMIT 0").columns if c not in internal]
    home = {c.name: k for k, sub in enumerate(parts) for c in sub.columns}
    cols = ["b0._file", "b0._row"] + [f"b{home.get(c, 0)}.{q(c)}" for c in blocks.output_order(plan, first)]
    reasons = [f"b{k}._reason" for k in range(n)]
    return (f"SELECT {', '.join(cols)}, {all_reasons(reasons)} AS _reason, CAST(NULL AS VARCHAR) AS _column, "
            f"coalesce({', '.join(f'b{k}._record' for k in range(n))}) AS _record FROM "
            + " POSITIONAL JOIN ".join(f"_block_{k} b{k}" for k in range(n)))


def _stage(con: duckdb.DuckDBPyConnection, sql: str, created: bool) -> bool:
    if created:
        con.execute(f"INSERT INTO staged BY NAME {sql}")
    else:
        con.execute(f"CREATE TABLE staged AS {sql}")
    return True


#: ``geometry_source`` of a record placed at the point of the county of its 9-digit township or
#: 12-digit village statistical code (the code's first 6 digits)
COUNTY_OF_CODE = "admin_point:county_of_code"


def _admin_geometry(con: duckdb.DuckDBPyConnection, h3_res: int | None, had_geometry: bool = False) -> None:
    """A7: records with an administrative code but no coordinates get the unit's representative point.

    ``geometry_source`` says which records did (``admin_point``), which got the point of the county
    of their 9-digit township or 12-digit village code (:data:`COUNTY_OF_CODE`, the code's first 6
    digits) and which kept their own coordinates (``coordinates``); records with neither get NULL.

    The points' H3 cells come from :func:`citytwin.foundation.spacelink.h3_cells_arrow` (computed
    once per unit, ~3,300 of them, and joined like the coordinates).
    """
    import pandas as pd

    from citytwin.foundation import spacelink
    from citytwin.foundation.boundaries import admin_points

    frame = admin_points()[["adcode", "lon", "lat"]].drop_duplicates("adcode")  # 500000: province and prefecture
    cq = frame[frame["adcode"] == "500000"].assign(adcode="500100")  # 重庆市 at prefecture level (foundation.admin)
    pts = pa.Table.from_pandas(pd.concat([frame, cq], ignore_index=True), preserve_index=False)
    cells = ""
    if h3_res is not None:
        pts = pts.append_column("h3", spacelink.h3_cells_arrow(pts.column("lon"), pts.column("lat"), h3_res))
        cells = ", p.h3 AS h3"
    con.register("_admin_points", pts)
    # 9- and 12-digit statistical codes (420600000000) name the unit of their first 6 digits (the
    # stored code stays as the file gives it); a township's or village's code (digits after the
    # sixth not all 0, e.g. 110101001001) gets the point of its county, and says so
    code6 = ("CASE WHEN regexp_full_match(CAST(s.adcode AS VARCHAR), '[0-9]{6}([0-9]{3}){0,2}') "
             "THEN left(CAST(s.adcode AS VARCHAR), 6) END")
    admin = (f"CASE WHEN regexp_full_match(CAST(s.adcode AS VARCHAR), '[0-9]{{6}}([0-9]{{3}}){{1,2}}') AND "
             f"NOT regexp_full_match(substr(CAST(s.adcode AS VARCHAR), 7), '0+') THEN {lit(COUNTY_OF_CODE)} "
             "ELSE 'admin_point' END")
    if had_geometry:
        has_h3 = "h3" in con.sql("SELECT * FROM staged LIMIT 0").columns
        cells = (", CASE WHEN s.geometry IS NOT NULL THEN s.h3 ELSE p.h3 END AS h3" if h3_res is not None and has_h3
                 else "")
        drop = "geometry, h3" if cells else "geometry"
        con.execute(f"""CREATE OR REPLACE TABLE staged AS
            SELECT s.* EXCLUDE ({drop}),
                   CASE WHEN s.geometry IS NOT NULL THEN s.geometry WHEN p.lon IS NOT NULL THEN ST_Point(p.lon, p.lat)
                   END AS geometry{cells},
                   CASE WHEN s.geometry IS NOT NULL THEN 'coordinates' WHEN p.lon IS NOT NULL THEN {admin}
                   END AS geometry_source
            FROM staged s LEFT JOIN _admin_points p ON {code6} = p.adcode ORDER BY _file, _row""")
        return
    con.execute(f"""CREATE OR REPLACE TABLE staged AS
        SELECT s.*, CASE WHEN p.lon IS NOT NULL THEN ST_Point(p.lon, p.lat) END AS geometry{cells},
               CASE WHEN p.lon IS NOT NULL THEN {admin} END AS geometry_source
        FROM staged s LEFT JOIN _admin_points p ON {code6} = p.adcode ORDER BY _file, _row""")


def _unit_column(con: duckdb.DuckDBPyConnection, name_col: str) -> None:
    """Add ``_unit``: the administrative code a name spells (exact or suffix match: 北京 and 北京市
    are 110100), else the name itself.

    Former names and predecessors (锦西市 → 葫芦岛市, 万县市 → 重庆市) keep their name: in a
    historical panel they are rows of other units, not other spellings.
    """
    import pandas as pd

    from citytwin.foundation.admin import AdminResolver

    names = con.sql(f"SELECT DISTINCT CAST({q(name_col)} AS VARCHAR) AS n FROM staged "
                    f"WHERE {q(name_col)} IS NOT NULL").df()["n"]
    res = AdminResolver.default().resolve(names, level="any") if len(names) else None
    units = pd.DataFrame({"n": names.to_numpy(), "u": [
        c if k in ("exact", "suffix") else None for c, k in zip(res["adcode"], res["match_kind"], strict=True)]
        if res is not None else []})
    con.register("_units", units)
    con.execute(f"ALTER TABLE staged ADD COLUMN _unit VARCHAR; "
                f"UPDATE staged s SET _unit = coalesce(u.u, u.n) FROM _units u WHERE CAST(s.{q(name_col)} AS VARCHAR) = u.n")
    con.unregister("_units")


def _check_given_adcodes(con: duckdb.DuckDBPyConnection, notes: list[str], name_col: str) -> None:
    """Note the administrative codes a file gives that name no known unit (kept as the file gives
    them, without a point), with what the record's name resolves to (a typo such as 480900 for 茂名,
    440900, shows at once)."""
    from citytwin.foundation.admin import AdminResolver

    has_point = "geometry IS NOT NULL" if "geometry" in con.sql("SELECT * FROM staged LIMIT 0").columns else "FALSE"
    given = con.sql(f"SELECT CAST(adcode AS VARCHAR) AS code, any_value(CAST({q(name_col)} AS VARCHAR)) AS name, "
                    f"count(*) AS n, count(*) FILTER (WHERE {has_point}) AS located FROM staged "
                    "WHERE adcode IS NOT NULL AND _reason IS NULL GROUP BY 1").df()
    if given.empty:
        return
    resolver = AdminResolver.default()
    known = resolver.code_to_name(given["code"].tolist())["adcode"].notna().to_numpy()
    bad = given[~known]
    if bad.empty:
        return
    named = resolver.resolve(bad["name"].fillna(""), None, level="any")["adcode"].tolist()
    items = [f"{c} ({n}" + (f"; its name resolves to {r}" if r else "") + ")"
             for c, n, r in zip(bad["code"], bad["name"], named, strict=True)]
    # a record with its own coordinates keeps its point: only the others are left without one
    total, located = int(bad["n"].sum()), int(bad["located"].sum())
    where = ("without a point" if located == 0 else "each placed at its own coordinates" if located == total
             else f"{located} placed at their own coordinates, {total - located} without a point")
    notes.append(f"{total} record(s) carry an administrative code that names no known unit (kept as "
                 f"given; {where}): {', '.join(items[:10])}{' …' if len(items) > 10 else ''}")


def _fill_adcodes(con: duckdb.DuckDBPyConnection, notes: list[str], name_col: str = "city") -> None:
    """Resolve city names to administrative codes where the file gave none."""
    try:
        from citytwin.foundation.admin import AdminResolver
    except ImportError:  # pragma: no cover - resolver not installed
        return
    import pandas as pd

    _check_given_adcodes(con, notes, name_col)
    names = con.sql(f"SELECT DISTINCT {q(name_col)} AS city, " +
                    ("province" if "province" in con.sql("SELECT * FROM staged LIMIT 0").columns else "NULL") +
                    f" AS province FROM staged WHERE adcode IS NULL AND {q(name_col)} IS NOT NULL").df()
    if names.empty:
        return
    res = AdminResolver.default().resolve(names["city"], names["province"] if names["province"].notna().any()
                                          else None, level="any")
    table = pd.DataFrame({"city": names["city"].to_numpy(), "code": res["adcode"].to_numpy(),
                          "kind": res["match_kind"].to_numpy()})
    con.register("_adcodes", table)
    con.execute(f"UPDATE staged s SET adcode = a.code FROM _adcodes a WHERE s.{q(name_col)} = a.city "
                "AND s.adcode IS NULL AND a.code IS NOT NULL")
    unresolved = sorted(table.loc[table["code"].isna(), "city"].astype(str))
    if unresolved:
        notes.append(f"{len(unresolved)} city name(s) not resolved to an administrative code (kept, adcode "
                     f"missing): {', '.join(unresolved[:20])}{' …' if len(unresolved) > 20 else ''}")
