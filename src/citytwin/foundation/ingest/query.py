"""The validation query: a :class:`~citytwin.foundation.ingest.plan.Plan` as one DuckDB SELECT.

Raw records in, checked records out: every value typed and unit-converted, every failed check a
reason in ``_reason``, wide files melted, point geometry and H3 cells added. Both pipelines run
this query (:mod:`.streamed` without the raw records, :mod:`.staged` with them for quarantine).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from citytwin.foundation.ingest.exprs import (
    all_reasons,
    clean_numeric,
    clean_text,
    enum_list,
    first_reason,
    number,
)
from citytwin.foundation.ingest.plan import Column, Plan
from citytwin.foundation.properties import COMPASS, PROPERTIES
from citytwin.foundation.sql import ident as q
from citytwin.foundation.sql import literal as lit

__all__ = ["RANGE_CHECK", "build_sql"]

#: WHEN clauses of the geometry check: coordinates outside WGS84's range (after any transform), with
#: a hint where they look swapped (latitude first, as in (39.9, 116.4) for Beijing)
RANGE_CHECK = (
    "WHEN ST_XMin(geometry) < -180 OR ST_XMax(geometry) > 180 OR ST_YMin(geometry) < -90 OR ST_YMax(geometry) > 90 "
    "THEN 'geometry: coordinates outside the WGS84 range (x ' || round(ST_XMin(geometry), 6) || ' to ' || "
    "round(ST_XMax(geometry), 6) || ', y ' || round(ST_YMin(geometry), 6) || ' to ' || round(ST_YMax(geometry), 6) || "
    "')' || CASE WHEN ST_YMax(geometry) > 90 AND ST_YMax(geometry) <= 180 AND ST_XMin(geometry) >= -90 "
    "AND ST_XMax(geometry) <= 90 THEN '; the coordinates look swapped (latitude, longitude): GeoJSON and WKT "
    "give longitude first' ELSE '; wrong CRS? pass --crs' END"
)

_RAW_REF = re.compile(r'"r:(?:[^"]|"")*"')
_SRC_REF = re.compile(r'_src\.("(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_]*)')


def build_sql(plan: Plan, view: str, file_index: int, *, h3_resolution: int | None,
              geometry_policy: str, records: bool = True, point_geometry: bool = True,
              lazy: Collection[str] = ()) -> str:
    """The SELECT that turns raw records of ``view`` into checked output records.

    Stages keep every expression small (DuckDB plans deeply nested repeated expressions slowly):
    raw cleaned text ``"r:col"`` -> typed values ``"v:field"`` -> checks over those names.
    ``records=False`` leaves out the raw record kept for quarantine (``_record`` is NULL): the
    streamed pass never quarantines, and carrying the record costs a third of its time.
    ``point_geometry=False`` leaves out the point geometry built from lon/lat (the streamed pass
    adds it to the Arrow chunks, see :func:`~citytwin.foundation.ingest.streamed.copy_arrow`). Source columns in ``lazy`` are read
    uncleaned (see :func:`~citytwin.foundation.ingest.plan.lazy_text`: the Arrow path cleans them).
    """
    # numeric-only text columns (see plan_columns) in the streamed pass: cast once, in a stage of its
    # own ("f:col"), and use that number where it is finite (exactly what the cleaning and number give
    # there); the rest is cleaned and parsed as before. The staged pass keeps the plain form, whose
    # source record (_src) must not carry the extra column.
    # (not with a decimal comma: there "1.500" casts to 1.5 but means 1500)
    fast = [n for n, e in plan.raw.items() if not records and e == clean_numeric(n) and not plan.decimal_comma]
    raws = dict(plan.raw)
    for n in fast:
        raws[n] = f"CASE WHEN isfinite({q('f:' + n)}) THEN CAST({q(n)} AS VARCHAR) ELSE {clean_text(n)} END"
    if fast:
        # one projection for all of them (one nested SELECT each would exceed DuckDB's expression
        # depth limit for files ~1,000 columns wide)
        casts = ", ".join(f"TRY_CAST(CAST({q(n)} AS VARCHAR) AS DOUBLE) AS {q('f:' + n)}" for n in fast)
        view = f"(SELECT *, {casts} FROM {view})"
    fast_set = set(fast)

    def fnum(text: str, source: str | None = None) -> str:
        # the fast number of the source column(s) the expression reads; ``source`` (when known)
        # saves looking for every fast column in every expression of a wide file
        for n in ([source] if source is not None and source in fast_set else [] if source is not None else fast):
            f = q("f:" + n)
            text = text.replace(number(q("r:" + n)), f"(CASE WHEN isfinite({f}) THEN {f} ELSE {number(q('r:' + n))} END)")
        return text

    l0 = ", ".join([*(q("f:" + n) for n in fast), *(
        f"{f'CAST({q(n)} AS VARCHAR)' if n in lazy else e} AS {q('r:' + n)}" for n, e in raws.items())])
    src = "src" if records else "CAST(NULL AS VARCHAR)"
    if not records and plan.geometry and "_src." in plan.geometry:
        # the geometry reads the source record's geometry (or WKT) column: the streamed pass carries
        # that column alone (GIS layers and WKT columns stream too)
        refs = dict.fromkeys(_SRC_REF.findall(plan.geometry))
        src = "struct_pack(" + ", ".join(f"{r} := src.{r}" for r in refs) + ")"
    # the streamed pass only asks whether a record has a reason: the first one will do
    cat = all_reasons if records else first_reason
    if plan.reason_column:  # the reader's reason (e.g. an Excel formula without a cached value)
        l0 = ", ".join([f"{q(plan.reason_column)} AS _reader_reason", *([l0] if l0 else [])])
    stage0 = f"SELECT _row, {src} AS _src{', ' + l0 if l0 else ''} FROM {view} src"
    # in a wide file, a column's expressions read its own source column only (derived ones such as
    # time from parts or GCJ-02 coordinates read others: every fast column is tried for them)
    wide = len(fast) > 64

    def src_of(c: Column) -> str | None:
        return c.source if wide and c.source in plan.raw and len(set(_RAW_REF.findall(c.expr))) == 1 else None

    exprs = {c.name: fnum(c.expr, src_of(c)) for c in plan.columns}
    l1 = ", ".join(f"{exprs[c.name]} AS {q('v:' + c.name)}" for c in plan.columns)
    stage1 = f"SELECT *{', ' + l1 if l1 else ''} FROM ({stage0})"
    sel = [f"{file_index} AS _file", "_row"]
    checks: list[str] = []
    for c in plan.columns:
        sel.append(f"{q('v:' + c.name)} AS {q(c.name)}")
        mine = [fnum(chk, src_of(c)).replace(exprs[c.name], q("v:" + c.name)) for chk in c.checks]
        if c.guard and mine:
            # one comparison clears the common row (in range) of every check of this column
            # (~0.5 CPU-s less on 10M POIs' lon/lat); the same reasons elsewhere
            guard = fnum(c.guard, src_of(c)).replace(exprs[c.name], q("v:" + c.name))
            mine = [f"CASE WHEN {guard} THEN NULL ELSE {cat(mine)} END"]
        checks += mine
    if plan.reason_column:  # first: the quarantine's field is the first reason's
        checks.insert(0, "_reader_reason")
    melt_raw = [q("r:" + m[0]) for m in plan.melt] + [q("f:" + m[0]) for m in plan.melt if m[0] in fast]
    inner = (f"SELECT {', '.join(sel + melt_raw)}, {cat(checks)} AS _reason, _src FROM ({stage1})")
    if plan.geometry:
        g = f"try({plan.geometry})"
        if geometry_policy == "repair":
            g = f"CASE WHEN ST_IsValid({g}) THEN {g} ELSE ST_MakeValid({g}) END"
        geo_check = ("CASE WHEN geometry IS NULL THEN 'geometry: missing or unreadable' "
                     "WHEN ST_IsEmpty(geometry) THEN 'geometry: empty' "
                     f"{RANGE_CHECK} "
                     "WHEN NOT ST_IsValid(geometry) THEN 'geometry: invalid (e.g. a self-intersecting ring); "
                     "pass --repair-geometry to fix it with ST_MakeValid' END")
        inner = (f"SELECT * EXCLUDE (_reason), {cat(['_reason', geo_check])} AS _reason "
                 f"FROM (SELECT *, {g} AS geometry FROM ({inner}))")
    if plan.lonlat and point_geometry:
        lon, lat = plan.lonlat
        inner = (f"SELECT *, CASE WHEN {q(lon)} IS NOT NULL AND {q(lat)} IS NOT NULL THEN ST_Point({q(lon)}, {q(lat)})"
                 f" END AS geometry FROM ({inner})")
    # H3 cells from lon/lat or the centroid, by the DuckDB function h3_cell (see connection.py:
    # spacelink.h3_cells_arrow, the one H3 interface, in an arrow UDF); the streamed pass of point
    # records adds them to its Arrow chunks instead (streamed.copy_arrow), without the UDF's glue
    h3_from: tuple[str, str] | None = None
    if h3_resolution is not None and plan.lonlat:
        h3_from = plan.lonlat
    elif h3_resolution is not None and plan.geometry:
        inner = (f"SELECT * EXCLUDE (__centroid), ST_X(__centroid) AS __c_lon, ST_Y(__centroid) AS __c_lat FROM "
                 f"(SELECT *, CASE WHEN geometry IS NOT NULL AND NOT ST_IsEmpty(geometry) THEN ST_Centroid(geometry) "
                 f"END AS __centroid FROM ({inner}))")
        h3_from = ("__c_lon", "__c_lat")
    if plan.layout == "wide":
        # melt: one observation per value column
        props = [m[1] for m in plan.melt]
        unit_list = [m[3] for m in plan.melt]
        vals = []
        reasons = []
        parsed = []  # each value parsed once, in its own stage ("w:i"); values and checks refer to it
        for i, (col, prop, fac, _unit, kind) in enumerate(plan.melt):
            raw = q("r:" + col)
            w = q(f"w:{i}")
            if kind == "compass":
                cases = " ".join(f"WHEN {lit(k)} THEN {v}" for k, v in COMPASS.items())
                parsed.append(f"(CASE upper({raw}) {cases} END) AS {w}")
                v = w
                bad = (f"CASE WHEN {raw} IS NOT NULL AND {w} IS NULL THEN {lit(prop + ': not a compass direction: ')}"
                       f" || {raw} END")
            else:
                parsed.append(f"{fnum(number(raw, plan.decimal_comma), col)} AS {w}")
                v = w if fac == 1.0 else f"({w} * {fac!r})"
                p = PROPERTIES.get(prop)
                rng = ""
                if p is not None and (p.min is not None or p.max is not None):
                    unit_hint = ""
                    if fac == 1.0 and p.unit and p.unit.startswith("mg/"):
                        # a column in µg/m³ read as mg/m³ (Beijing's CO): every value 1,000 times too large
                        micro = "µg/" + p.unit[3:]
                        unit_hint = (f" || CASE WHEN {v} / 1000 BETWEEN {p.min!r} AND {p.max!r} THEN "
                                     f"{lit(f' (in {micro}? pass --unit {col}={micro})')} ELSE '' END")
                    rng = (f" WHEN {v} < {p.min!r} OR {v} > {p.max!r} THEN {lit(prop + ': ')} || CAST({v} AS VARCHAR)"
                           f" || {lit(' ' + (p.unit or '') + f' outside [{p.min:g}, {p.max:g}]')}{unit_hint}")
                bad = (f"CASE WHEN {raw} IS NOT NULL AND {w} IS NULL THEN {lit(prop + ': not a number: ')} || "
                       f"left(CAST({raw} AS VARCHAR), 60){rng} END")
            vals.append(v)
            reasons.append(bad)
        inner = f"SELECT *, {', '.join(parsed)} FROM ({inner})"
        keep = [q(c.name) for c in plan.columns]
        if not records:
            # no quarantine records to build: one reason per source row, then melt the values alone
            per_row = (f"SELECT _file, _row, {', '.join(keep)}, {cat(['_reason', *reasons])} AS _reason, "
                       f"[{', '.join(vals)}] AS _vals FROM ({inner})")
            return (f"SELECT _file, _row, {', '.join(keep)}, "
                    f"unnest({enum_list(props)}) AS property, unnest(_vals) AS value, "
                    f"unnest({enum_list(unit_list)}) AS unit, _reason, "
                    f"CAST(NULL AS VARCHAR) AS _column, CAST(NULL AS VARCHAR) AS _record FROM ({per_row})")
        per_row = (f"SELECT _file, _row, {', '.join(keep)}, _reason, [{', '.join(vals)}] AS _vals, "
                   f"list_filter([{', '.join(reasons)}], x -> TRUE) AS _vreasons, _src FROM ({inner})")
        record = ("CASE WHEN _reason IS NOT NULL OR len(list_filter(_vreasons, x -> x IS NOT NULL)) > 0 "
                  "THEN CAST(to_json(_src) AS VARCHAR) END")
        melt = (f"SELECT _file, _row, {', '.join(keep)}, _reason, {record} AS _record, "
                f"unnest([{', '.join(lit(p) for p in props)}]) AS property, "
                f"unnest(_vals) AS value, "
                f"unnest([{', '.join(lit(u) for u in unit_list)}]) AS unit, "
                f"unnest([{', '.join(lit(m[0]) for m in plan.melt)}]) AS _column, "
                f"unnest(_vreasons) AS _value_reason FROM ({per_row})")
        return (f"SELECT _file, _row, {', '.join(keep)}, property, value, unit, "
                f"{cat(['_reason', '_value_reason'])} AS _reason,"
                f" _column, CASE WHEN _value_reason IS NOT NULL OR _reason IS NOT NULL THEN _record END AS _record "
                f"FROM ({melt})")
    record = "CASE WHEN _reason IS NOT NULL THEN CAST(to_json(_src) AS VARCHAR) END AS _record"
    if plan.unit_column:
        # long sensor file: per-row unit converted to the property's canonical unit
        # (and checked against the property's physical range, as wide files are)
        in_range = "property_range_problem(property, value * unit_factor(property, unit))"
        inner = (f"SELECT * EXCLUDE (value, unit, _reason), value * unit_factor(property, unit) AS value, "
                 f"unit_target(property, unit) AS unit, "
                 f"{cat(['_reason', 'unit_problem(property, unit)', in_range])} AS _reason FROM ({inner})")
    drop = ", ".join(["_src", *melt_raw])
    out = f"SELECT * EXCLUDE ({drop}), CAST(NULL AS VARCHAR) AS _column, {record} FROM ({inner})"
    if h3_from is None or h3_resolution is None:
        return out
    out = f"SELECT *, h3_cell({q(h3_from[0])}, {q(h3_from[1])}, {int(h3_resolution)}) AS h3 FROM ({out})"
    if h3_from[0].startswith("__c_"):
        out = f"SELECT * EXCLUDE (__c_lon, __c_lat) FROM ({out})"
    return out
