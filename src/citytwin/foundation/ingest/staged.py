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

from citytwin.foundation import readers
from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest.connection import connect
from citytwin.foundation.ingest.options import Outcome, PipelineOptions
from citytwin.foundation.ingest.parquet import PARQUET_WRITE
from citytwin.foundation.ingest.plan import note_columns, plan_columns
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
    return (acc + np.searchsorted(s, acc, side="right")).tolist()


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
        sql = build_sql(plan, view, i, h3_resolution=h3_res, geometry_policy=geometry_policy)
        if len(plan.columns) > WIDE_COLUMNS:
            # DuckDB's common-subexpression pass grows faster than linearly with the expressions of a
            # wide file (2,000 columns: 13 CPU-s with it, 4.5 without); its gain is nil here
            con.execute("SET disabled_optimizers = 'common_subexpressions'")
        try:
            created = _stage(con, sql, created)
        except duckdb.Error as exc:
            if src.format != "csv" or src.csv_rejects:
                raise readers.csv_error(path, exc) if src.format == "csv" else InputError(
                    f"cannot read: {readers.duck_message(exc)}", file=str(path)) from exc
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
            sql = build_sql(plan, view, i, h3_resolution=h3_res, geometry_policy=geometry_policy)
            try:
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
        note_columns(columns_meta, plan, h3_res)
    if not created:
        raise InputError("nothing to read")
    say("checking keys")
    key = [k for k in sch.key if k in {c for c in con.sql("SELECT * FROM staged LIMIT 0").columns}]
    if layout == "wide" and sch.name == "sensor_observation":
        key = ["entity", "property", "time"]
    if key:
        kcols = ", ".join(q(k) for k in key)
        kdesc = ", ".join(key)
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
        if ndup:
            join = " AND ".join(f"s.{q(k)} = d.{q(k)}" for k in key)
            con.execute(f"""
                UPDATE staged s SET _reason =
                    'duplicate key ({kdesc}) = ' || concat_ws(', ', {', '.join(f'CAST(d.{q(k)} AS VARCHAR)' for k in key)})
                    || ' (first at ' || CASE WHEN d.first_file = d._file THEN '' ELSE 'file ' || (d.first_file + 1) || ' ' END
                    || 'row ' || d.first_row || ')'
                FROM dups d WHERE s._file = d._file AND s._row = d._row AND {join}""")
            notes.append(f"{ndup} record(s) with a duplicate key ({kdesc}) quarantined; the first kept")
    # admin codes from city names (A2)
    cols_now = con.sql("SELECT * FROM staged LIMIT 0").columns
    if "adcode" in cols_now and ({"city", "name"} & set(cols_now)):
        _fill_adcodes(con, notes, "city" if "city" in cols_now else "name")
    if "adcode" in cols_now and "geometry" not in cols_now and \
            con.sql("SELECT count(adcode) FROM staged").fetchone()[0]:  # type: ignore[index]
        _admin_geometry(con, h3_res)
        cols_now = con.sql("SELECT * FROM staged LIMIT 0").columns
        columns_meta["geometry"] = {"name": "geometry", "type": "GEOMETRY", "crs": "EPSG:4326",
                                    "source": "representative point of the administrative unit (adcode)"}
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


def _stage(con: duckdb.DuckDBPyConnection, sql: str, created: bool) -> bool:
    if created:
        con.execute(f"INSERT INTO staged BY NAME {sql}")
    else:
        con.execute(f"CREATE TABLE staged AS {sql}")
    return True


def _admin_geometry(con: duckdb.DuckDBPyConnection, h3_res: int | None) -> None:
    """A7: records with an administrative code but no coordinates get the unit's representative point.

    The points' H3 cells come from :func:`citytwin.foundation.spacelink.h3_cells_arrow` (computed
    once per unit, ~3,300 of them, and joined like the coordinates).
    """
    from citytwin.foundation import spacelink
    from citytwin.foundation.boundaries import admin_points

    pts = pa.table(admin_points()[["adcode", "lon", "lat"]])
    cells = ""
    if h3_res is not None:
        pts = pts.append_column("h3", spacelink.h3_cells_arrow(pts.column("lon"), pts.column("lat"), h3_res))
        cells = ", p.h3 AS h3"
    con.register("_admin_points", pts)
    con.execute(f"""CREATE OR REPLACE TABLE staged AS
        SELECT s.*, CASE WHEN p.lon IS NOT NULL THEN ST_Point(p.lon, p.lat) END AS geometry{cells}
        FROM staged s LEFT JOIN _admin_points p ON CAST(s.adcode AS VARCHAR) = p.adcode ORDER BY _file, _row""")


def _fill_adcodes(con: duckdb.DuckDBPyConnection, notes: list[str], name_col: str = "city") -> None:
    """Resolve city names to administrative codes where the file gave none."""
    try:
        from citytwin.foundation.admin import AdminResolver
    except ImportError:  # pragma: no cover - resolver not installed
        return
    import pandas as pd

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
