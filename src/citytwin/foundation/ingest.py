"""Ingest (A1, A2, A4, A7): read a file, map it to a schema, validate, link to space, store a version.

The whole pipeline is one DuckDB query per file, streamed and spilled to disk, so memory
stays flat as files grow:

1. a reader (:mod:`citytwin.foundation.readers`) gives raw records with their source row;
2. headers are mapped to schema fields (aliases, unit suffixes such as ``_万元``);
3. each field is cast, unit-converted and checked (type, range, required, choices, future
   time, geometry validity); every failed check writes a reason ``field: what is wrong``;
4. records with a reason go to quarantine with file, row, field, reason and the raw record;
   the others are kept; duplicate keys are quarantined after the first occurrence;
5. coordinates become point geometry (GCJ-02 converted when asked) and H3 cells;
6. the kept records are written as (Geo)Parquet into a staging folder that becomes the next
   version only when complete; the catalog records counts, units, extent and time range.

Nothing is half-written: a file that cannot be read at all raises :class:`InputError` and
leaves no version behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from citytwin.foundation import access, duck, h3sql, readers, units
from citytwin.foundation.catalog import check_classification, check_name
from citytwin.foundation.errors import CitytwinError, InputError
from citytwin.foundation.properties import COMPASS, PROPERTIES, find_property
from citytwin.foundation.schemas import Field, Schema, normalize_header
from citytwin.foundation.workspace import Workspace

MISSING_TOKENS = ("", "na", "n/a", "nan", "null", "none", "-", "--", "—", "－", "/", "#n/a", "nil", "无")
DUCK_NUMERIC = ("DOUBLE", "FLOAT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT",
                "UINTEGER", "DECIMAL")
TIME_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M",
                "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%Y/%m/%d",
                "%Y-%m-%d", "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日", "%Y%m%d"]
#: how every dataset version is written. zstd level 1 rather than DuckDB's default 3, and dictionary
#: encoding only for columns whose dictionary stays under 4 KB (categories, units, station ids):
#: DuckDB otherwise builds a dictionary for every high-cardinality column (ids, names, geometry, H3)
#: before giving it up. Measured on 3M POIs with geometry and H3 (2 cores): writing takes 35 % less
#: CPU, files are ~10 % larger (bench/ingest_bench.py reports both DuckDB baselines).
PARQUET_WRITE = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, DICTIONARY_SIZE_LIMIT 4096, ROW_GROUP_SIZE 122880"
IGNORED_WIDE = {"no", "index", "id", "序号", "unnamed0"}
TIME_PARTS = {
    "year": ("year", "年", "年份", "yr"),
    "month": ("month", "月", "月份", "mon"),
    "day": ("day", "日", "date"),
    "hour": ("hour", "时", "小时", "hr"),
    "minute": ("minute", "分", "min"),
}


def q(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: Any) -> str:
    """A SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return "'" + str(value).replace("'", "''") + "'"


@dataclass
class Column:
    """An output column: its SQL value expression, SQL check expressions and catalog facts."""

    name: str
    expr: str
    checks: list[str] = field(default_factory=list)
    type: str = "VARCHAR"
    unit: str | None = None
    source: str | None = None
    source_unit: str | None = None
    pii: str | None = None
    #: an expression over ``expr`` that is TRUE only where none of ``checks`` fires (a value inside
    #: its range): the checks then run on the other rows only (see :func:`build_sql`)
    guard: str | None = None


@dataclass
class IngestResult:
    """What an ingest did."""

    dataset: str
    version: int
    schema: str
    files: list[str]
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    reasons: dict[str, int]
    columns: list[dict[str, Any]]
    notes: list[str]
    seconds: float
    record_unit: str = "rows"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------
# planning: source columns -> output columns with checks
# ---------------------------------------------------------------------------
WHITESPACE = " \t\u00a0\u3000"  # trimmed from text values: space, tab, no-break and ideographic space


def _clean(col: str) -> str:
    """Trimmed text, or NULL for a missing-value token.

    Cheap guards keep this fast on clean data: ``trim`` (which copies the string, and costs DuckDB
    ~370 ns per value with a character list) runs only when the value starts or ends with a
    character that may be whitespace, and the token lookup only for strings of at most four bytes
    (every token is that short; a CASE evaluates each branch on its own rows only).
    """
    tokens = "[" + ", ".join(lit(t) for t in MISSING_TOKENS) + "]"
    x = f"CAST({q(col)} AS VARCHAR)"
    # first byte below '!' (space, tab, control) or non-ASCII; last character one of WHITESPACE
    edge = " OR ".join([f"{x} < '!'", f"{x} >= '\u0080'"] + [f"{x} LIKE {lit('%' + w)}" for w in WHITESPACE])
    t = f"(CASE WHEN {edge} THEN trim({x}, {lit(WHITESPACE)}) ELSE {x} END)"
    return f"CASE WHEN strlen({t}) > 4 THEN {t} WHEN list_contains({tokens}, lower({t})) THEN NULL ELSE {t} END"


def _clean_numeric(col: str) -> str:
    """:func:`_clean` for a column read only as numbers: skipped where the value casts to a finite number."""
    x = f"CAST({q(col)} AS VARCHAR)"
    return f"CASE WHEN isfinite(TRY_CAST({x} AS DOUBLE)) THEN {x} ELSE {_clean(col)} END"


def _num(raw: str) -> str:
    """A number from text, allowing thousands separators ("1,234.5")."""
    return f"COALESCE(TRY_CAST({raw} AS DOUBLE), TRY_CAST(replace({raw}, ',', '') AS DOUBLE))"


def _enum_list(values: Sequence[str | None]) -> str:
    """A constant list of text as a list of ENUM values (plain VARCHAR if every value is NULL).

    The melted property and unit columns repeat a few constants on every observation. Typed as an
    ENUM, DuckDB's Parquet writer writes them from their enum indexes, where VARCHAR values are
    hashed into the column's dictionary one by one: the Beijing air data's streamed pass (5M
    observations) takes ~25 % less CPU. The Parquet columns are the same strings either way.
    """
    text = "[" + ", ".join(lit(v) for v in values) + "]"
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    if not distinct:
        return text
    return f"CAST({text} AS ENUM({', '.join(lit(v) for v in distinct)})[])"


def _timestamp(raw: str) -> str:
    fmts = "[" + ", ".join(lit(f) for f in TIME_FORMATS) + "]"
    return f"COALESCE(TRY_CAST({raw} AS TIMESTAMP), try_strptime({raw}, {fmts}))"


def _typed(f: Field, raw: str, *, text: bool, factor: float = 1.0) -> tuple[str, list[str], str]:
    """(value expression, type checks, duck type) for field ``f`` from raw expression ``raw``."""
    name = f.name
    checks: list[str] = []
    if f.type in ("float", "int"):
        base = _num(raw) if text else f"TRY_CAST({raw} AS DOUBLE)"
        val = base if factor == 1.0 else f"({base} * {factor!r})"
        if text and f.unit:
            # a value may carry its own unit ("12.13 m", "3 km"): converted to the field's unit
            num = f"regexp_extract({raw}, '^\\s*([-+]?[0-9][0-9,]*\\.?[0-9]*(?:[eE][-+]?[0-9]+)?)\\s*(.*?)\\s*$', 1)"
            suffix = f"regexp_extract({raw}, '^\\s*([-+]?[0-9][0-9,]*\\.?[0-9]*(?:[eE][-+]?[0-9]+)?)\\s*(.*?)\\s*$', 2)"
            base = (f"CASE WHEN {suffix} = '' THEN {_num(raw)} "
                    f"ELSE TRY_CAST(replace({num}, ',', '') AS DOUBLE) * unit_factor_to({suffix}, {lit(f.unit)}) END")
            val = base if factor == 1.0 else (f"CASE WHEN {suffix} = '' THEN {_num(raw)} * {factor!r} "
                                              f"ELSE {base} END")
        checks.append(f"CASE WHEN {raw} IS NOT NULL AND {base} IS NULL THEN "
                      f"{lit(name + ': not a number: ')} || left(CAST({raw} AS VARCHAR), 60) END")
        if f.type == "int":
            checks.append(f"CASE WHEN {val} IS NOT NULL AND {val} <> round({val}) THEN "
                          f"{lit(name + ': not a whole number: ')} || CAST({raw} AS VARCHAR) END")
            return f"CAST(round({val}) AS BIGINT)", checks, "BIGINT"
        return val, checks, "DOUBLE"
    if f.type == "timestamp":
        val = _timestamp(f"CAST({raw} AS VARCHAR)") if text else f"TRY_CAST({raw} AS TIMESTAMP)"
        checks.append(f"CASE WHEN {raw} IS NOT NULL AND {val} IS NULL THEN "
                      f"{lit(name + ': not a date-time: ')} || left(CAST({raw} AS VARCHAR), 60) END")
        checks.append(f"CASE WHEN {val} > now()::TIMESTAMP + INTERVAL 1 DAY THEN "
                      f"{lit(name + ': in the future: ')} || CAST({val} AS VARCHAR) END")
        return val, checks, "TIMESTAMP"
    if f.type == "date":
        val = f"CAST({_timestamp(f'CAST({raw} AS VARCHAR)')} AS DATE)" if text else f"TRY_CAST({raw} AS DATE)"
        checks.append(f"CASE WHEN {raw} IS NOT NULL AND {val} IS NULL THEN "
                      f"{lit(name + ': not a date: ')} || left(CAST({raw} AS VARCHAR), 60) END")
        return val, checks, "DATE"
    if f.type == "bool":
        val = (f"CASE WHEN lower({raw}) IN ('1','true','yes','y','是','t') THEN TRUE "
               f"WHEN lower({raw}) IN ('0','false','no','n','否','f') THEN FALSE END") if text else \
            f"TRY_CAST({raw} AS BOOLEAN)"
        checks.append(f"CASE WHEN {raw} IS NOT NULL AND {val} IS NULL THEN "
                      f"{lit(name + ': not yes/no: ')} || left(CAST({raw} AS VARCHAR), 60) END")
        return val, checks, "BOOLEAN"
    return (raw if text else f"CAST({raw} AS VARCHAR)"), checks, "VARCHAR"


def _rule_checks(f: Field, val: str) -> list[str]:
    checks = []
    if f.min is not None or f.max is not None:
        lo = "-inf" if f.min is None else f"{f.min:g}"
        hi = "inf" if f.max is None else f"{f.max:g}"
        cond = " OR ".join(x for x in (
            f"{val} < {f.min!r}" if f.min is not None else "",
            f"{val} > {f.max!r}" if f.max is not None else "") if x)
        checks.append(f"CASE WHEN {cond} THEN {lit(f.name + ': ')} || CAST({val} AS VARCHAR) || "
                      f"{lit(f' outside [{lo}, {hi}]')} END")
    if f.choices:
        allowed = ", ".join(lit(c) for c in f.choices)
        checks.append(f"CASE WHEN {val} IS NOT NULL AND {val} NOT IN ({allowed}) THEN "
                      f"{lit(f.name + ': not one of ' + '/'.join(f.choices) + ': ')} || {val} END")
    return checks


def _required(name: str, raw: str) -> str:
    return f"CASE WHEN {raw} IS NULL THEN {lit(name + ': required value missing')} END"


def _match_columns(schema: Schema, columns: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """field -> (source column, unit label from the header). The best alias wins a contest."""
    best: dict[str, tuple[int, str, str | None]] = {}
    for col in columns:
        if col in ("_row", "geometry"):
            continue
        for header, unit_label in ((col, None), units.split_unit_suffix(col)):
            fname = schema.match_header(header)
            if fname is None:
                continue
            f = schema.field(fname)
            keys = [normalize_header(x) for x in (f.name, *f.aliases)]
            rank = keys.index(normalize_header(header)) if normalize_header(header) in keys else 99
            if fname not in best or rank < best[fname][0]:
                best[fname] = (rank, col, unit_label)
            break
    return {k: (v[1], v[2]) for k, v in best.items()}


@dataclass
class Plan:
    columns: list[Column]
    layout: str = "long"
    melt: list[tuple[str, str, float, str | None, str]] = field(default_factory=list)  # col, prop, factor, unit, kind
    notes: list[str] = field(default_factory=list)
    geometry: str | None = None  # expression producing GEOMETRY
    lonlat: tuple[str, str] | None = None  # output column names of lon/lat
    unit_column: str | None = None  # long sensor layout: per-row unit column
    raw: dict[str, str] = field(default_factory=dict)  # source column -> cleaned raw expression


def plan_columns(src: readers.Source, schema: Schema, *, user_units: dict[str, str] | None = None,
                 crs: str | None = None, geometry_policy: str = "quarantine") -> Plan:
    """Map a source's columns onto a schema and build the SQL for values and checks."""
    user_units = dict(user_units or {})
    matched = _match_columns(schema, src.columns)
    used = {c for c, _ in matched.values()}
    plan = Plan(columns=[])
    text = src.text
    # raw values are computed once per record in the first query stage, as columns "r:<col>"
    raw_of: dict[str, str] = {c: q("r:" + c) for c in src.columns if c != "geometry"}
    rel_types = dict(zip(src.relation.columns, [str(t) for t in src.relation.types], strict=True))

    def is_text(c: str) -> bool:
        return text or rel_types.get(c, "") == "VARCHAR"

    plan.raw = {c: (_clean(c) if is_text(c) else q(c)) for c in src.columns if c != "geometry"}

    # unknown user unit columns
    for col in user_units:
        if col not in src.columns:
            raise InputError(f"--unit names column {col!r}, which the file does not have", file=str(src.path),
                             hint=f"columns: {', '.join(src.columns)}")

    derived: set[str] = set()
    # time from parts (year/month/day/hour) for observation-like schemas
    if "time" in schema.field_names and "time" not in matched:
        parts = {}
        for part, names in TIME_PARTS.items():
            for c in src.columns:
                if c not in used and normalize_header(c) in {normalize_header(n) for n in names}:
                    parts[part] = c
                    break
        if {"year", "month", "day"} <= set(parts):
            args = [f"TRY_CAST({raw_of[parts[p]]} AS BIGINT)" if p in parts else "0"
                    for p in ("year", "month", "day", "hour", "minute")]
            expr = f"try(make_timestamp({', '.join(args)}, 0.0))"
            anyraw = " OR ".join(f"{raw_of[parts[p]]} IS NULL" for p in parts)
            checks = [f"CASE WHEN {anyraw} THEN 'time: a date part (year/month/day/hour) is missing' "
                      f"WHEN {expr} IS NULL THEN 'time: not a valid date from parts ' || "
                      + " || '-' || ".join(f"coalesce(CAST({raw_of[parts[p]]} AS VARCHAR), '?')" for p in parts)
                      + " END",
                      f"CASE WHEN {expr} > now()::TIMESTAMP + INTERVAL 1 DAY THEN 'time: in the future' END"]
            plan.columns.append(Column("time", expr, checks, "TIMESTAMP", source="+".join(parts.values())))
            used.update(parts.values())
            derived.add("time")
            plan.notes.append(f"time built from {', '.join(f'{k}={v}' for k, v in parts.items())}")

    # wide sensor files: melt value columns into property/value
    wide = (schema.name == "sensor_observation" or schema.layout == "wide_observations") and \
        "value" not in matched and "property" not in matched
    for f in schema.fields:
        if f.name in derived:
            continue
        if wide and f.name in ("property", "value", "unit"):
            continue
        if f.type == "geometry":
            continue
        if f.name not in matched:
            if f.required:
                aliases = ", ".join((f.name, *f.aliases))
                raise InputError(
                    f"required field {f.name!r} of schema {schema.name!r} not found in the header",
                    file=str(src.path),
                    hint=f"columns are: {', '.join(src.columns)}; {f.name!r} is recognised as one of: {aliases}")
            continue
        col, header_unit = matched[f.name]
        raw = raw_of[col]
        factor = 1.0
        unit_label = user_units.get(col) or header_unit
        out_unit = f.unit
        if f.type in ("float", "int") and unit_label:
            target = f.unit or units.canonical(unit_label)
            try:
                factor = units.factor(unit_label, target)
            except InputError as exc:
                raise InputError(f"{exc.message} (field {f.name!r})", file=str(src.path), field=col) from exc
            out_unit = target
        val, checks, dtype = _typed(f, raw, text=is_text(col), factor=factor)
        if f.required:
            checks.insert(0, _required(f.name, raw))
        checks += _rule_checks(f, val)
        guard = None
        if f.type == "float" and f.min is not None and f.max is not None and not f.choices:
            # a value inside its range is present and a number: no check fires. (Not for int fields:
            # their value is rounded, and their whole-number check looks at the value before that.)
            guard = f"{val} BETWEEN {f.min!r} AND {f.max!r}"
        plan.columns.append(Column(f.name, val, checks, dtype, unit=out_unit, source=col, source_unit=unit_label,
                                   pii=f.pii, guard=guard))
        used.add(col)

    # an administrative code the file lacks is resolved from the unit's name after staging
    names_now = {c.name for c in plan.columns}
    if "adcode" in schema.field_names and "adcode" not in names_now and ({"city", "name"} & names_now):
        plan.columns.append(Column("adcode", "CAST(NULL AS VARCHAR)", [], "VARCHAR",
                                   source="(resolved from the name)"))
    if schema.name == "sensor_observation" and not wide and "unit" in matched:
        plan.unit_column = "unit"

    # extra columns
    extras = [c for c in src.columns if c not in used and c != "geometry"]
    if wide:
        # text types matter only for columns that are not known properties (sampled on demand)
        unknown = [c for c in extras if normalize_header(c) not in IGNORED_WIDE and find_property(c) is None
                   and find_property(units.split_unit_suffix(c)[0]) is None]
        sniffed = src.types_of(unknown) if text else {}
        for c in extras:
            if normalize_header(c) in IGNORED_WIDE:
                plan.notes.append(f"column {c!r} not used (row counter)")
                continue
            prop = find_property(c)
            stem, header_unit = units.split_unit_suffix(c)
            if prop is None:
                prop = find_property(stem)
            label = user_units.get(c) or header_unit
            if prop is not None and prop.text:
                plan.melt.append((c, prop.name, 1.0, prop.unit, "compass"))
                continue
            wtyp = sniffed.get(c, "VARCHAR") if text else "DOUBLE"
            if prop is None and not any(wtyp.startswith(t) for t in DUCK_NUMERIC):
                plan.notes.append(f"column {c!r} not used (not a measured value)")
                continue
            wtarget: str | None = prop.unit if prop is not None else (units.canonical(label) if label else None)
            fac = 1.0
            if label and wtarget:
                try:
                    fac = units.factor(label, wtarget)
                except InputError as exc:
                    raise InputError(f"{exc.message}", file=str(src.path), field=c) from exc
            name = prop.name if prop is not None else stem
            plan.melt.append((c, name, fac, wtarget, "number"))
        if not plan.melt:
            raise InputError("no measured-value columns found for sensor observations", file=str(src.path),
                             hint="a long file needs property and value columns; a wide file one numeric "
                                  "column per property")
        plan.layout = "wide"
    elif schema.extra == "keep":
        sniffed = src.types_of(extras) if text else {}
        for c in extras:
            stem, header_unit = units.split_unit_suffix(c)
            label = user_units.get(c) or header_unit
            styp = (sniffed.get(c, "VARCHAR") if text else "TYPED")
            numeric = any(styp.startswith(t) for t in DUCK_NUMERIC) or (label is not None and text)
            name = stem if label else c
            if name in {col.name for col in plan.columns}:
                name = c
            if text and numeric:
                fac = 1.0
                unit_out = None
                if label:
                    unit_out = units.canonical(label)
                    fac = units.factor(label, unit_out)
                f = Field(name, "float")
                val, checks, dtype = _typed(f, raw_of[c], text=is_text(c), factor=fac)
                plan.columns.append(Column(name, val, checks, dtype, unit=unit_out, source=c, source_unit=label))
            else:
                plan.columns.append(Column(name, raw_of[c], [], styp if styp != "TYPED" else "ANY", source=c))
    else:
        if extras:
            plan.notes.append(f"columns not in schema {schema.name!r} left out: {', '.join(extras)}")

    # geometry as WKT text in a column (e.g. "coord": "POLYGON((...))")
    if ("geometry" not in src.columns and schema.geometry is not None) or schema.name == "table":
        wkt = _find_wkt_column(src, [c for c in src.columns if c not in used])
        if wkt is not None and "geometry" not in src.columns:
            plan.geometry = f"ST_GeomFromText(CAST(_src.{q(wkt)} AS VARCHAR))"
            plan.columns = [c for c in plan.columns if c.source != wkt]
            plan.raw.pop(wkt, None)
            plan.notes.append(f"geometry read as WKT from column {wkt!r}")
    # geometry
    if "geometry" in src.columns:
        src_crs = (crs or src.crs or "EPSG:4326")
        g = "ST_GeomFromWKB(_src.geometry)"
        gcj = normalize_header(src_crs) in ("gcj02", "gcj")
        if not gcj and not _is_wgs84(src_crs):
            g = f"ST_Transform({g}, {lit(_crs_for_duck(src_crs))}, 'EPSG:4326', always_xy := true)"
        if gcj:
            g = "ST_GeomFromWKB(gcj02_wkb_to_wgs84(_src.geometry))"
            plan.notes.append("geometry converted from GCJ-02 to WGS84")
        plan.geometry = g
    elif schema.geometry == "point":
        have = {col.name: col for col in plan.columns}
        if "lon" in have and "lat" in have:
            plan.lonlat = ("lon", "lat")
            if crs and normalize_header(crs) in ("gcj02", "gcj"):
                lon_expr, lat_expr = have["lon"].expr, have["lat"].expr
                for ll in (have["lon"], have["lat"]):
                    ll.expr = f"gcj02_to_wgs84_{ll.name}({lon_expr}, {lat_expr})"
                plan.notes.append("coordinates converted from GCJ-02 to WGS84")
    if schema.geometry and "geometry" in schema.field_names and schema.field("geometry").required \
            and plan.geometry is None:
        raise InputError(f"schema {schema.name!r} needs geometry, and the file has none", file=str(src.path),
                         hint="use a GIS format (GeoJSON, GeoPackage, Shapefile, GeoParquet) or schema 'table'")
    plan.notes.append(f"geometry policy: {geometry_policy}") if plan.geometry else None
    # text columns read only as numbers are cleaned lazily: a value that already parses as a finite
    # number is kept as it is (casting ignores surrounding spaces), the rest is cleaned as text
    for c in list(plan.raw):
        if is_text(c) and _numeric_only(plan, q("r:" + c), c):
            plan.raw[c] = _clean_numeric(c)
    return plan


def _numeric_only(plan: Plan, ref: str, col: str) -> bool:
    """Whether source column ``col`` (raw name ``ref``) only feeds plain numeric fields."""
    users = [c for c in plan.columns if ref in c.expr or any(ref in chk for chk in c.checks)]
    melted = [m for m in plan.melt if m[0] == col]
    if not users and not melted:
        return False
    plain = all(c.type in ("DOUBLE", "BIGINT") and "regexp_extract" not in c.expr and "make_timestamp" not in c.expr
                and c.source == col for c in users)
    return plain and all(m[4] == "number" for m in melted)


def _lazy_text(plan: Plan) -> tuple[set[str], dict[str, bool]]:
    """Text columns whose cleaning the Arrow path can do after the query: (source columns, output
    column -> whether it is required).

    A source column qualifies when it is cleaned as plain text (:func:`_clean`) and feeds only
    outputs that are that cleaned text, checked at most for being present. Read uncleaned, such a
    column gives the same checks on every value the cleaning leaves alone; :func:`_copy_arrow`
    finds the others exactly (:func:`cleannumba.dirty_mask`), cleans them with :func:`_clean`, and
    hands over to the staged pipeline if a required value turns out missing. Columns with other
    checks (choices, ranges) or used in other expressions (times, melted values) stay in SQL.
    """
    sources: set[str] = set()
    outputs: dict[str, bool] = {}
    for c, e in plan.raw.items():
        raw = q("r:" + c)
        if e != _clean(c) or any(m[0] == c for m in plan.melt) or (plan.geometry and raw in plan.geometry):
            continue
        users = [col for col in plan.columns if raw in col.expr or any(raw in chk for chk in col.checks)]
        if not users or not all(u.expr == raw and u.type == "VARCHAR" and u.checks in ([], [_required(u.name, raw)])
                                for u in users):
            continue
        sources.add(c)
        outputs.update({u.name: bool(u.checks) for u in users})
    return sources, outputs


WKT_COLUMNS = ("geometry", "geom", "wkt", "the_geom", "coord", "coords", "shape", "boundary", "几何")


def _find_wkt_column(src: readers.Source, candidates: list[str]) -> str | None:
    """A text column holding WKT geometry (by its name, confirmed by its first values)."""
    for c in candidates:
        if normalize_header(c) not in {normalize_header(w) for w in WKT_COLUMNS}:
            continue
        try:
            vals = src.relation.filter(f"{q(c)} IS NOT NULL").project(f"CAST({q(c)} AS VARCHAR)").limit(3).fetchall()
        except duckdb.Error:
            continue
        if vals and all(str(v[0]).lstrip().upper().startswith(
                ("POINT", "LINESTRING", "POLYGON", "MULTI", "GEOMETRYCOLLECTION")) for v in vals):
            return c
    return None


def _is_wgs84(crs: str) -> bool:
    c = crs.upper().replace(" ", "")
    return c in ("EPSG:4326", "OGC:CRS84", "CRS84", "WGS84", "EPSG:4490") or "CRS84" in c or c.endswith("4326")


def _crs_for_duck(crs: str) -> str:
    try:
        from pyproj import CRS

        c = CRS.from_user_input(crs)
        auth = c.to_authority()
        return f"{auth[0]}:{auth[1]}" if auth else c.to_proj4()
    except Exception as exc:  # pyproj raises several types
        raise InputError(f"unknown coordinate reference system {crs!r}") from exc


# ---------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------
def build_sql(plan: Plan, view: str, file_index: int, *, h3_resolution: int | None,
              geometry_policy: str, records: bool = True, point_geometry: bool = True,
              lazy: Collection[str] = ()) -> str:
    """The SELECT that turns raw records of ``view`` into checked output records.

    Stages keep every expression small (DuckDB plans deeply nested repeated expressions slowly):
    raw cleaned text ``"r:col"`` -> typed values ``"v:field"`` -> checks over those names.
    ``records=False`` leaves out the raw record kept for quarantine (``_record`` is NULL): the
    streamed pass never quarantines, and carrying the record costs a third of its time.
    ``point_geometry=False`` leaves out the point geometry built from lon/lat (the streamed pass
    adds it to the Arrow chunks, see :func:`_copy_arrow`). Source columns in ``lazy`` are read
    uncleaned (see :func:`_lazy_text`: the Arrow path cleans them).
    """
    # numeric-only text columns (see plan_columns) in the streamed pass: cast once, in a stage of its
    # own ("f:col"), and use that number where it is finite (exactly what the cleaning and _num give
    # there); the rest is cleaned and parsed as before. The staged pass keeps the plain form, whose
    # source record (_src) must not carry the extra column.
    fast = [n for n, e in plan.raw.items() if not records and e == _clean_numeric(n)]
    raws = dict(plan.raw)
    for n in fast:
        raws[n] = f"CASE WHEN isfinite({q('f:' + n)}) THEN CAST({q(n)} AS VARCHAR) ELSE {_clean(n)} END"
        view = f"(SELECT *, TRY_CAST(CAST({q(n)} AS VARCHAR) AS DOUBLE) AS {q('f:' + n)} FROM {view})"

    def fnum(text: str) -> str:
        for n in fast:
            f = q("f:" + n)
            text = text.replace(_num(q("r:" + n)), f"(CASE WHEN isfinite({f}) THEN {f} ELSE {_num(q('r:' + n))} END)")
        return text

    l0 = ", ".join([*(q("f:" + n) for n in fast), *(
        f"{f'CAST({q(n)} AS VARCHAR)' if n in lazy else e} AS {q('r:' + n)}" for n, e in raws.items())])
    src = "src" if records else "CAST(NULL AS VARCHAR)"
    # the streamed pass only asks whether a record has a reason: the first one will do
    cat = _concat if records else _first
    stage0 = f"SELECT _row, {src} AS _src{', ' + l0 if l0 else ''} FROM {view} src"
    exprs = {c.name: fnum(c.expr) for c in plan.columns}
    l1 = ", ".join(f"{exprs[c.name]} AS {q('v:' + c.name)}" for c in plan.columns)
    stage1 = f"SELECT *{', ' + l1 if l1 else ''} FROM ({stage0})"
    sel = [f"{file_index} AS _file", "_row"]
    checks: list[str] = []
    for c in plan.columns:
        sel.append(f"{q('v:' + c.name)} AS {q(c.name)}")
        mine = [fnum(chk).replace(exprs[c.name], q("v:" + c.name)) for chk in c.checks]
        if c.guard and mine:
            # one comparison clears the common row (in range) of every check of this column
            # (~0.5 CPU-s less on 10M POIs' lon/lat); the same reasons elsewhere
            guard = fnum(c.guard).replace(exprs[c.name], q("v:" + c.name))
            mine = [f"CASE WHEN {guard} THEN NULL ELSE {cat(mine)} END"]
        checks += mine
    melt_raw = [q("r:" + m[0]) for m in plan.melt] + [q("f:" + m[0]) for m in plan.melt if m[0] in fast]
    inner = (f"SELECT {', '.join(sel + melt_raw)}, {cat(checks)} AS _reason, _src FROM ({stage1})")
    if plan.geometry:
        g = f"try({plan.geometry})"
        if geometry_policy == "repair":
            g = f"CASE WHEN ST_IsValid({g}) THEN {g} ELSE ST_MakeValid({g}) END"
        geo_check = ("CASE WHEN geometry IS NULL THEN 'geometry: missing or unreadable' "
                     "WHEN ST_IsEmpty(geometry) THEN 'geometry: empty' "
                     "WHEN NOT ST_IsValid(geometry) THEN 'geometry: invalid (e.g. a self-intersecting ring); "
                     "pass --repair-geometry to fix it with ST_MakeValid' END")
        inner = (f"SELECT * EXCLUDE (_reason), {cat(['_reason', geo_check])} AS _reason "
                 f"FROM (SELECT *, {g} AS geometry FROM ({inner}))")
    if plan.lonlat and point_geometry:
        lon, lat = plan.lonlat
        inner = (f"SELECT *, CASE WHEN {q(lon)} IS NOT NULL AND {q(lat)} IS NOT NULL THEN ST_Point({q(lon)}, {q(lat)})"
                 f" END AS geometry FROM ({inner})")
    # H3 cells in SQL arithmetic (h3sql: vectorised, on all cores), from lon/lat or the centroid.
    # Measured against h3ronpy (Rust, vectorised, releases the GIL) in an arrow UDF, 10M POIs on
    # 2 cores: 22 s vs 20-22 s wall, 45 vs 38-40 CPU-s; the Python UDF (h3-py loop) 40 s. We keep
    # the SQL: no extra dependency, exact to h3-py (tests), and no Python glue holding the GIL,
    # so it scales with cores where a UDF's per-chunk Python code would serialise.
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
                parsed.append(f"{fnum(_num(raw))} AS {w}")
                v = w if fac == 1.0 else f"({w} * {fac!r})"
                p = PROPERTIES.get(prop)
                rng = ""
                if p is not None and (p.min is not None or p.max is not None):
                    rng = (f" WHEN {v} < {p.min!r} OR {v} > {p.max!r} THEN {lit(prop + ': ')} || CAST({v} AS VARCHAR)"
                           f" || {lit(' ' + (p.unit or '') + f' outside [{p.min:g}, {p.max:g}]')}")
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
                    f"unnest({_enum_list(props)}) AS property, unnest(_vals) AS value, "
                    f"unnest({_enum_list(unit_list)}) AS unit, _reason, "
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
        inner = (f"SELECT * EXCLUDE (value, unit, _reason), value * unit_factor(property, unit) AS value, "
                 f"unit_target(property, unit) AS unit, "
                 f"{cat(['_reason', 'unit_problem(property, unit)'])} AS _reason FROM ({inner})")
    drop = ", ".join(["_src", *melt_raw])
    out = f"SELECT * EXCLUDE ({drop}), CAST(NULL AS VARCHAR) AS _column, {record} FROM ({inner})"
    if h3_from is None or h3_resolution is None:
        return out
    out = h3sql.wrap_select(out, q(h3_from[0]), q(h3_from[1]), h3_resolution, out="h3")
    if h3_from[0].startswith("__c_"):
        out = f"SELECT * EXCLUDE (__c_lon, __c_lat) FROM ({out})"
    return out


# ---------------------------------------------------------------------------
# UDFs
# ---------------------------------------------------------------------------
def _udf(con: duckdb.DuckDBPyConnection, name: str, fn: Callable[..., Any], params: list[Any], ret: Any,
         **kw: Any) -> None:
    """Register an arrow-vectorised Python UDF (the stubs do not know the string spellings of the options)."""
    con.create_function(name, fn, params, ret, **kw)


def _register_udfs(con: duckdb.DuckDBPyConnection) -> None:
    d = duckdb.sqltype

    def _gcj(lon: pa.Array, lat: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        from citytwin.foundation import spacelink

        lo = lon.to_numpy(zero_copy_only=False).astype(float)
        la = lat.to_numpy(zero_copy_only=False).astype(float)
        return spacelink.gcj02_to_wgs84(lo, la)

    _udf(con, "gcj02_to_wgs84_lon", lambda a, b: pa.array(_gcj(a, b)[0]), [d("DOUBLE"), d("DOUBLE")],
                        d("DOUBLE"), type="arrow", null_handling="special")
    _udf(con, "gcj02_to_wgs84_lat", lambda a, b: pa.array(_gcj(a, b)[1]), [d("DOUBLE"), d("DOUBLE")],
                        d("DOUBLE"), type="arrow", null_handling="special")

    def gcj_wkb(wkb: pa.Array) -> pa.Array:
        import shapely

        from citytwin.foundation import spacelink

        geoms = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))

        def tf(coords: np.ndarray) -> np.ndarray:
            x, y = spacelink.gcj02_to_wgs84(coords[:, 0], coords[:, 1])
            return np.column_stack([x, y])

        return pa.array(shapely.to_wkb(shapely.transform(geoms, tf)), pa.binary())

    _udf(con, "gcj02_wkb_to_wgs84", gcj_wkb, [d("BLOB")], d("BLOB"), type="arrow",
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


# ---------------------------------------------------------------------------
# the pipeline
# ---------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _true_rows(accepted: list[int], rejected_rows: list[int]) -> list[int]:
    """Map 1-based indices among parsed records to data rows, given the rows the parser rejected."""
    if not rejected_rows:
        return accepted
    rej = np.sort(np.asarray(rejected_rows))
    s = rej - np.arange(len(rej))  # accepted index at which each reject is passed
    acc = np.asarray(accepted)
    return (acc + np.searchsorted(s, acc, side="right")).tolist()


def ingest(
    ws: Workspace,
    paths: str | Path | Sequence[str | Path],
    *,
    dataset: str,
    schema: str,
    department: str | None = None,
    classification: str = "internal",
    sheet: str | None = None,
    layer: str | None = None,
    encoding: str | None = None,
    units_map: dict[str, str] | None = None,
    crs: str | None = None,
    description: str = "",
    source: str | None = None,
    licence: str | None = None,
    h3: bool = True,
    repair_geometry: bool = False,
    header: bool = True,
    memory_limit: str | None = None,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    stream: bool = True,
) -> IngestResult:
    """Ingest one or more files into ``dataset`` as its next version.

    Parameters
    ----------
    ws
        The workspace (its user must be allowed to write).
    paths
        A file, or several files of the same kind (e.g. one CSV per station).
    dataset, schema
        Dataset name and schema name (:func:`citytwin.foundation.schemas.get_schema`).
    units_map
        ``{column: unit}`` for columns whose unit the header does not say.
    crs
        Source CRS when the file does not say (``EPSG:xxxx``, or ``gcj02`` for Chinese web-map data).
    h3
        Add an ``h3`` cell column to records with geometry (workspace resolution).
    repair_geometry
        Repair invalid geometries with ``ST_MakeValid`` instead of quarantining them.
    stream
        Try the streamed pass first (default): clean files go from source to Parquet in one
        parallel scan. ``False`` runs the staged pipeline directly (every record numbered in a
        table first), which is what a file with records to quarantine gets anyway.
    memory_limit
        DuckDB memory limit (e.g. ``"512MB"``); beyond it DuckDB spills to the staging folder.
        Default: ``STREAM_MEMORY`` for the streamed pass, ``STAGED_MEMORY`` for the staged one.

    Returns
    -------
    IngestResult
        ``rows_read == rows_kept + rows_quarantined``. For wide sensor files the records are
        observations (rows × value columns).

    Raises
    ------
    InputError
        When a file cannot be read at all; nothing is written then.
    """
    t0 = time.perf_counter()
    check_name(dataset)
    check_classification(classification)
    access.require_write(ws.user, dataset)
    sch = ws.schema(schema)
    files = [Path(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
    if not files:
        raise InputError("no files given")
    say = progress or (lambda _m: None)
    geometry_policy = "repair" if repair_geometry else "quarantine"
    opts = _Options(sheet=sheet, layer=layer, encoding=encoding, units_map=units_map, crs=crs,
                    h3_res=int(ws.settings.get("h3_resolution", 9)) if h3 else None,
                    geometry_policy=geometry_policy, header=header, memory_limit=memory_limit, threads=threads)
    file_names = [str(p) for p in files]
    staging = ws.staging_dir()
    # the source files' SHA-256 (for the catalog) is computed alongside: hashlib releases the GIL
    hasher = ThreadPoolExecutor(max_workers=1)
    digest = hasher.submit(lambda: ",".join(_sha256(p) for p in files if p.is_file()))
    try:
        out: _Outcome | None = None
        fallback_note = None
        if stream:
            say("streaming")
            out, fallback_note = _streamed(files, sch, opts, staging, say)
        if out is None:
            for sub in ("data", "spill", "quarantine.parquet"):
                target = staging / sub
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            out = _staged(files, sch, opts, staging, say)
            if fallback_note:
                out.notes.append(fallback_note)
        rows_read = out.kept + out.quarantined
        if rows_read == 0:
            raise InputError("no records found (the file has a header but no data rows)",
                             file=", ".join(file_names))
        columns = [out.columns_meta.get(c, {"name": c}) for c in out.keep_cols]
        if out.layout == "wide":
            columns += [v for k, v in out.columns_meta.items() if k.startswith("value:")]
        params = {"schema": schema, "sheet": sheet, "layer": layer, "encoding": encoding, "units": units_map,
                  "crs": crs, "h3": opts.h3_res, "geometry_policy": geometry_policy, "layout": out.layout,
                  "notes": out.notes, "reasons": out.reasons, "pipeline": out.pipeline}
        say("committing")
        shutil.rmtree(staging / "spill", ignore_errors=True)
        version = ws.commit_version(
            name=dataset, schema=schema, staging=out.out_dir, quarantine=out.qfile, kind="ingested",
            department=department, classification=classification, description=description,
            source=source or ", ".join(file_names), licence=licence, source_path=", ".join(file_names),
            source_sha256=digest.result(), rows_read=rows_read, rows_kept=out.kept,
            rows_quarantined=out.quarantined, columns=columns, extent=out.extent, time_min=out.tmin,
            time_max=out.tmax, params=params)
    except CitytwinError:
        ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="ingest", dataset=dataset, outcome="error",
                         detail=", ".join(str(p) for p in files))
        raise
    finally:
        digest.cancel()
        hasher.shutdown(wait=True)
        shutil.rmtree(staging, ignore_errors=True)
    return IngestResult(dataset=dataset, version=version, schema=schema, files=file_names, rows_read=rows_read,
                        rows_kept=out.kept, rows_quarantined=out.quarantined, reasons=out.reasons, columns=columns,
                        notes=out.notes, seconds=time.perf_counter() - t0,
                        record_unit="observations" if out.layout == "wide" else "rows")


@dataclass
class _Options:
    """Ingest options shared by the streamed and the staged pipeline."""

    sheet: str | None
    layer: str | None
    encoding: str | None
    units_map: dict[str, str] | None
    crs: str | None
    h3_res: int | None
    geometry_policy: str
    header: bool
    memory_limit: str | None
    threads: int | None


@dataclass
class _Outcome:
    """What a pipeline left in the staging folder, for the catalog."""

    out_dir: Path
    qfile: Path
    kept: int
    quarantined: int
    reasons: dict[str, int]
    extent: list[float] | None
    tmin: str | None
    tmax: str | None
    keep_cols: list[str]
    columns_meta: dict[str, dict[str, Any]]
    notes: list[str]
    layout: str
    pipeline: str


# DuckDB memory limit of the streamed pass (unless ingest(memory_limit=...)). Measured on 10M POIs
# with H3 (2 cores): 256MB throttles the ordered Parquet write (30 s, peak 513 MiB), 512MB does
# not (22 s, 636 MiB), 1GB gains little more (20 s, 715 MiB).
STREAM_MEMORY = "512MB"
STAGED_MEMORY = "1GB"  # ... and of the staged pipeline


def _connect(staging: Path, opts: _Options, *, spatial: bool = True,
             streamed: bool = False) -> duckdb.DuckDBPyConnection:
    con = duck.connect(threads=opts.threads, spatial=spatial)
    spill = staging / "spill"
    spill.mkdir(exist_ok=True)
    # the streamed pass only buffers row groups and one hash table: a small limit keeps its memory
    # flat (it spills); the staged table needs more to stay fast
    limit = opts.memory_limit or (STREAM_MEMORY if streamed else STAGED_MEMORY)
    con.execute(f"SET memory_limit='{limit}'; SET temp_directory='{spill}'; "
                "SET preserve_insertion_order=true")
    _register_udfs(con)
    return con


def _note_columns(columns_meta: dict[str, dict[str, Any]], plan: Plan, h3_res: int | None) -> None:
    """Catalog facts of the output columns of ``plan`` (first file wins)."""
    for c in plan.columns:
        columns_meta.setdefault(c.name, {"name": c.name, "type": c.type, "unit": c.unit, "source": c.source,
                                         "source_unit": c.source_unit, "pii": c.pii})
    if plan.geometry or plan.lonlat:
        columns_meta["geometry"] = {"name": "geometry", "type": "GEOMETRY", "crs": "EPSG:4326"}
        if h3_res is not None:
            columns_meta["h3"] = {"name": "h3", "type": "VARCHAR", "h3_resolution": h3_res}
    if plan.layout == "wide":
        for m in plan.melt:
            columns_meta.setdefault(f"value:{m[1]}", {"name": "value", "property": m[1], "unit": m[3],
                                                      "source": m[0]})
        for nm, tp in (("property", "VARCHAR"), ("value", "DOUBLE"), ("unit", "VARCHAR")):
            columns_meta.setdefault(nm, {"name": nm, "type": tp})


_QUARANTINE_NEEDED = "citytwin: a record needs quarantine"


class _Fallback(Exception):
    """The streamed pass cannot finish cleanly: the staged pipeline takes over."""


def _csv_groups(files: list[Path], opts: _Options) -> list[list[Path]]:
    """Files read in one scan: UTF-8 CSVs with the same first line (header) as the first of the group."""
    groups: list[list[Path]] = []
    head: bytes | None = None
    for f in files:
        line = None
        if readers.detect_format(f) == "csv" and f.exists() and f.stat().st_size and opts.encoding is None:
            with f.open("rb") as fh:
                line = fh.readline()
            if readers.detect_encoding(f) != "utf-8" or line.startswith(b"\xef\xbb\xbf"):
                line = None
        if groups and line is not None and line == head:
            groups[-1].append(f)
        else:
            groups.append([f])
            head = line
    return groups


def _streamed(files: list[Path], sch: Schema, opts: _Options, staging: Path,
              say: Callable[[str], None]) -> tuple[_Outcome | None, str | None]:
    """One pass per file (or per group of same-header CSVs): read, check and write the kept records.

    The fast path for clean files: no staged table, no row numbers, DuckDB streams from the
    source straight into the version's Parquet on all cores, in file order (point records through
    Arrow, see :func:`_copy_arrow`). The first record
    that would need quarantine aborts the pass (``error()`` in the query), as does a duplicate key
    found afterwards in the written files; the staged pipeline (:func:`_staged`) then redoes the
    ingest and reports every record with its file and row. Returns ``(None, why)`` then.
    """
    # the spatial extension takes ~0.3 s to load: only when a source or the output has geometry
    con = _connect(staging, opts, spatial=False, streamed=True)
    spatial = False
    # H3 cells of points from h3numba (~0.3 CPU-µs per point) for inputs large enough to repay
    # loading numba (~0.7 CPU-s per process); smaller ones get them in SQL (h3sql, ~2.1 µs per point)
    points_fast = opts.h3_res is not None and importlib.util.find_spec("numba") is not None and \
        _rows_estimate(files) >= NUMBA_MIN_ROWS
    # a one-column key whose values arrive strictly ascending (ids exported in order) has no duplicates:
    # the Arrow path watches for that, and the hash aggregate over the written files is then skipped
    key_order = _KeyOrder(sch.key[0]) if len(sch.key) == 1 else None
    if points_fast and any(readers.detect_format(f) in ("csv", "parquet", "xlsx", "xls", "json") for f in files):
        # load numba (~0.7 s) in a thread while DuckDB sniffs and reads
        threading.Thread(target=_warm_numba, name="citytwin-numba", daemon=True).start()

    def need_spatial() -> None:
        nonlocal spatial
        if not spatial:
            con.execute(f"LOAD '{duck.spatial_extension_path()}'")
            spatial = True

    out_dir = staging / "data"
    out_dir.mkdir(exist_ok=True)
    notes: list[str] = []
    columns_meta: dict[str, dict[str, Any]] = {}
    parts: list[Path] = []
    kept = 0
    layout = "long"
    plans: list[Plan] = []
    try:
        for gi, group in enumerate(_csv_groups(files, opts)):
            path = group[0]
            say(f"reading {path.name}" + (f" and {len(group) - 1} more" if len(group) > 1 else ""))
            if readers.detect_format(path) not in ("csv", "xlsx", "xls", "json") and not _plain_parquet(group):
                need_spatial()
            src = readers.open_source(con, path, sheet=opts.sheet, layer=opts.layer, encoding=opts.encoding,
                                      staging=staging, delimiter=None, header=opts.header, stream=True,
                                      more=group[1:])
            plan = plan_columns(src, sch, user_units=opts.units_map, crs=opts.crs,
                                geometry_policy=opts.geometry_policy)
            if any(c.name == "adcode" for c in plan.columns):
                raise _Fallback("administrative codes are resolved on the staged table")
            # point records go through Arrow (see _copy_arrow): geometry and H3 cells added outside SQL,
            # H3 by h3numba (without numba: in SQL). Other records stay in DuckDB's COPY, which writes
            # them as fast (Beijing air, 5M observations: 2.1-2.4 s either way) without the round trip.
            points = plan.lonlat is not None and not plan.geometry
            h3_in_sql = points and opts.h3_res is not None and not points_fast
            if plan.geometry:
                need_spatial()
            for f in group:
                notes += [f"{f.name}: {n}" for n in src.notes + plan.notes]
            layout = plan.layout
            plans.append(plan)
            view = f"({src.sql})" if src.sql else f"src_{gi}"
            if not src.sql:
                con.register(view, src.relation)
            # text cleaned after the query (numba finds the values that need it) where numba is in use
            lazy_src, lazy_out = _lazy_text(plan) if points and points_fast else (set(), {})
            sql = build_sql(plan, view, gi, h3_resolution=None if points and not h3_in_sql else opts.h3_res,
                            geometry_policy=opts.geometry_policy, records=False, point_geometry=not points,
                            lazy=lazy_src)
            guarded = (f"SELECT * EXCLUDE (_file, _row, _reason, _record, _column) FROM ({sql}) "
                       f"WHERE CASE WHEN _reason IS NULL THEN TRUE ELSE error({lit(_QUARANTINE_NEEDED)}) END")
            # zero-padded: the dataset's files are read in name order
            part = out_dir / f"part-{gi:05d}.parquet"
            say(f"writing {part.name}")
            written = None
            if points:
                written = _copy_arrow(con, guarded, part, lonlat=plan.lonlat,
                                      h3_res=None if h3_in_sql else opts.h3_res, key_order=key_order,
                                      lazy_text=lazy_out)
            if written is None:  # not points, or column types pyarrow cannot write as DuckDB does
                if key_order is not None:
                    key_order.ascending = False
                if points:
                    need_spatial()
                    sql = build_sql(plan, view, gi, h3_resolution=opts.h3_res, geometry_policy=opts.geometry_policy,
                                    records=False)
                    guarded = (f"SELECT * EXCLUDE (_file, _row, _reason, _record, _column) FROM ({sql}) WHERE "
                               f"CASE WHEN _reason IS NULL THEN TRUE ELSE error({lit(_QUARANTINE_NEEDED)}) END")
                res = con.execute(f"COPY ({guarded}) TO '{part}' ({PARQUET_WRITE})").fetchone()
                written = int(res[0]) if res else 0
            kept += written
            parts.append(part)
            _note_columns(columns_meta, plan, opts.h3_res)
        files_sql = "[" + ", ".join(lit(str(p)) for p in parts) + "]"
        keep_cols = list(con.sql(f"SELECT * FROM read_parquet({files_sql}) LIMIT 0").columns)
        scan = f"read_parquet({files_sql})"
        say("checking keys")
        key = [k for k in sch.key if k in keep_cols]
        where = ""
        if layout == "wide" and sch.name == "sensor_observation":
            key = ["entity", "time"]
            props = {tuple(m[1] for m in p.melt) for p in plans}
            if len(props) != 1:
                key = ["entity", "property", "time"]
            else:  # every source row gave one observation of each property: check source rows
                where = f" AND property = {lit(next(iter(props))[0])}"
        if key_order is not None and key_order.ascending and key == [key_order.column] and kept:
            key = []  # every part went through the Arrow path with the key strictly ascending
        if key:
            notnull = " AND ".join(f"{q(k)} IS NOT NULL" for k in key)
            # grouping by a 64-bit hash of the key is cheaper than by the key; a collision (p ~ n²/2^65)
            # only sends the ingest to the staged pipeline, which compares the keys themselves
            dup = con.sql(f"SELECT count(*) FROM (SELECT 1 FROM {scan} WHERE {notnull}{where} GROUP BY "
                          f"hash({', '.join(q(k) for k in key)}) HAVING count(*) > 1)").fetchone()
            if dup and dup[0]:
                raise _Fallback(f"duplicate keys ({', '.join(key)})")
        extent = None
        if "geometry" in keep_cols:
            boxes = []
            for p in parts:
                meta = con.sql("SELECT value FROM parquet_kv_metadata(?) WHERE key = 'geo'",
                               params=[str(p)]).fetchone()
                bbox = json.loads(meta[0]).get("columns", {}).get("geometry", {}).get("bbox") if meta else None
                if bbox and len(bbox) == 4:
                    boxes.append([float(x) for x in bbox])
            if boxes:
                extent = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                          max(b[3] for b in boxes)]
        tmin = tmax = None
        tcol = next((c for c in ("time", "created", "year") if c in keep_cols), None)
        if tcol and kept:
            r = con.sql(f"SELECT CAST(min({q(tcol)}) AS VARCHAR), CAST(max({q(tcol)}) AS VARCHAR) "
                        f"FROM {scan}").fetchone()
            tmin, tmax = (r[0], r[1]) if r else (None, None)
        qfile = staging / "quarantine.parquet"
        con.execute(f"COPY (SELECT CAST(NULL AS VARCHAR) AS file, CAST(NULL AS BIGINT) AS row, "
                    f"CAST(NULL AS VARCHAR) AS field, CAST(NULL AS VARCHAR) AS reason, "
                    f"CAST(NULL AS VARCHAR) AS record WHERE FALSE) TO '{qfile}' (FORMAT parquet)")
    except _Fallback as exc:
        return None, f"streamed pass stopped ({exc}); records checked and numbered in the staged pipeline"
    except (duckdb.Error, InputError) as exc:
        # a record to quarantine (the guard's error), or a read problem (ragged rows, bad bytes...):
        # the staged pipeline numbers the records and reports each one, or raises the full error
        why = "a record needs quarantine" if _QUARANTINE_NEEDED in str(exc) else str(exc).splitlines()[0][:200]
        return None, f"streamed pass stopped ({why}); records checked and numbered in the staged pipeline"
    finally:
        con.close()
    return _Outcome(out_dir=out_dir, qfile=qfile, kept=kept, quarantined=0, reasons={}, extent=extent,
                    tmin=tmin, tmax=tmax, keep_cols=keep_cols, columns_meta=columns_meta, notes=notes,
                    layout=layout, pipeline="streamed"), None


#: rows per chunk of records written in one go through Arrow (~35 MB for POIs): large enough that
#: the per-chunk overheads vanish, small enough to keep memory flat
POINT_CHUNK = 1 << 19
#: rows per Arrow batch read from the checked records
PIPE_BATCH = 1 << 16
#: chunks of the Arrow path handed on and not yet written (see :func:`_copy_arrow`)
PIPE_DEPTH = 2
#: a text column is dictionary-encoded when its first chunk has at most this many distinct values
DICTIONARY_MAX_VALUES = 1000
#: zstd level of the WKB point column in the Arrow path. Its bytes are a repeated 9-byte header and
#: random coordinate bits: level -3 writes it in ~40 % of level 1's CPU for 1 byte more per point
#: (measured on 2M Beijing POIs: 1.33 -> 0.53 CPU-s per 10M points, 14.0 -> 15.0 bytes per point).
GEOMETRY_ZSTD_LEVEL = -3


def _arrow_write_options(columns: list[str], floats: list[str]) -> dict[str, Any]:
    """pyarrow ``ParquetWriter`` options of the Arrow path (:func:`_copy_arrow`).

    zstd level 1 as :data:`PARQUET_WRITE`, the geometry at :data:`GEOMETRY_ZSTD_LEVEL`;
    ``BYTE_STREAM_SPLIT`` for floating-point columns (coordinates, measurements): zstd then sees the
    exponent bytes of all values together and the noisy mantissa bytes apart, so it compresses them
    smaller (6.8 -> 6.2 bytes per coordinate) in ~60 % of the CPU (DuckDB, pyarrow and GeoPandas
    read it); min/max statistics for every column but the geometry and the H3 cell (neither is
    sorted, so their row-group ranges prune nothing; string statistics cost ~0.1 CPU-s per 10M values).
    """
    return {
        "compression": "zstd",
        "compression_level": {c: GEOMETRY_ZSTD_LEVEL if c == "geometry" else 1 for c in columns},
        "column_encoding": {c: "BYTE_STREAM_SPLIT" for c in floats} or None,
        "write_statistics": [c for c in columns if c not in ("geometry", "h3")],
    }


#: point inputs with at least this many rows (estimated) get their H3 cells from h3numba
NUMBA_MIN_ROWS = 400_000


def _rows_estimate(files: list[Path]) -> int:
    """Rows of the input: Parquet footers, else ~50 bytes per row (a POI CSV line)."""
    n = 0
    for f in files:
        try:
            if readers.detect_format(f) == "parquet":
                import pyarrow.parquet as pq

                n += pq.read_metadata(f).num_rows
            else:
                n += f.stat().st_size // 50
        except Exception:  # unreadable here: the reader reports it properly
            continue
    return n


def _plain_parquet(files: list[Path]) -> bool:
    """Parquet files without GeoParquet metadata (no spatial extension needed to read them)."""
    import pyarrow.parquet as pq

    try:
        return all(readers.detect_format(f) == "parquet" and b"geo" not in (pq.read_metadata(f).metadata or {})
                   for f in files)
    except Exception:  # unreadable here: the reader reports it properly
        return False


def _clean_lazy(table: pa.Table, name: str, required: bool) -> pa.Table:
    """``table`` with the values of text column ``name`` cleaned as :func:`_clean` would have."""
    import pyarrow.compute as pc

    from citytwin.foundation import cleannumba

    column = table.column(name)
    mask = cleannumba.dirty_mask(column, whitespace=WHITESPACE, tokens=MISSING_TOKENS)
    if not mask.any():
        return table
    con = duckdb.connect()
    try:
        con.register("dirty", pa.table({"v": column.take(pa.array(np.flatnonzero(mask)))}))
        cleaned = con.sql(f"SELECT {_clean('v')} AS v FROM dirty").to_arrow_table().column(0).combine_chunks()
    finally:
        con.close()
    if required and cleaned.null_count:
        raise _Fallback("a record needs quarantine")
    fixed = pc.replace_with_mask(column.combine_chunks(), pa.array(mask), cleaned)
    return table.set_column(table.schema.get_field_index(name), name, fixed)


def _warm_numba() -> None:
    """Import numba and load h3numba's compiled functions (~0.7 s, from numba's cache)."""
    try:
        from citytwin.foundation import h3numba

        h3numba.cells_array(np.array([116.4]), np.array([39.9]), 9)
    except Exception:  # a warm-up only: the real call reports any problem
        pass


def _writable(t: pa.DataType) -> bool:
    """Whether pyarrow writes Arrow type ``t`` to Parquet as DuckDB reads it back (same SQL type)."""
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_date32(t):
        return True
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return True
    return pa.types.is_timestamp(t) and t.unit == "us"


@dataclass
class _KeyOrder:
    """Whether the values of a one-column key seen so far are strictly ascending (so all distinct)."""

    column: str
    ascending: bool = True
    last: Any = None

    def see(self, values: pa.ChunkedArray) -> None:
        """Take the next values of the key column, in row order."""
        import pyarrow.compute as pc

        if not self.ascending or len(values) == 0:
            return
        v = values.combine_chunks()
        if v.null_count or (self.last is not None and not pc.greater(v[0], self.last).as_py()) or \
                (len(v) > 1 and not pc.all(pc.greater(v.slice(1), v.slice(0, len(v) - 1))).as_py()):
            self.ascending = False
            return
        self.last = v[len(v) - 1]


def _copy_arrow(con: duckdb.DuckDBPyConnection, checked_sql: str, path: Path, *,
                lonlat: tuple[str, str] | None = None, h3_res: int | None = None,
                key_order: _KeyOrder | None = None, lazy_text: dict[str, bool] | None = None) -> int | None:
    """Write the checked records of ``checked_sql`` to ``path`` with pyarrow; for points, add geometry and H3.

    The records stream out of DuckDB as Arrow (the query runs on all threads, ahead of the reader
    by the streaming buffer) in chunks of :data:`POINT_CHUNK` rows. With ``lonlat``, each chunk
    gets its point geometry (:func:`spacelink.points_wkb`) and, with ``h3_res``, its H3 cells
    (:func:`h3numba.cells_array`, GIL released) in a thread of its own, and a pyarrow
    ``ParquetWriter`` writes it in another, while the next chunks are read; for points the
    GeoParquet ``geo`` metadata (bbox of the whole file) is added at the end. Row order is kept;
    memory stays bounded by :data:`PIPE_DEPTH` chunks in flight.
    Returns the number of rows written, or None (nothing written) when a column has a type that
    pyarrow would write differently from DuckDB (:func:`_writable`): the caller then uses ``COPY``.
    ``key_order`` sees the key column of every chunk (see :func:`_streamed`'s duplicate check).
    ``lazy_text`` names text columns the query left uncleaned (:func:`_lazy_text`; True where the
    value is required): their values that need cleaning are found by :func:`cleannumba.dirty_mask`
    and cleaned by :func:`_clean` in DuckDB; a required one that becomes missing raises
    :class:`_Fallback` (the staged pipeline quarantines it).
    An error raised by ``checked_sql`` (the quarantine guard) propagates.

    Each step replaces a slower one, measured on 3M POIs (2 cores, DuckDB 1.5.5, pyarrow 26):

    * H3 in SQL (:func:`h3sql.wrap_select`, ~150 vectorised operations per point) costs ~2.1
      CPU-µs per point, h3numba ~0.3 (the same operations compiled; same cells, tests). A DuckDB
      Python UDF is no way around it: DuckDB's arrow UDF glue alone costs ~0.7 CPU-µs per row.
    * DuckDB's point → WKB serialisation costs ~0.35 CPU-µs per row, numpy's ~0.02.
    * DuckDB's Parquet writer spends 3.5 CPU-s on these 3M rows (7 columns, zstd level 1), pyarrow's
      1.4 for the same encodings and size: dictionary pages for the text columns with few values
      (:data:`DICTIONARY_MAX_VALUES`). Per-column settings (:func:`_arrow_write_options`) take
      another ~1 CPU-s off 10M points at the same file size.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if (lonlat and h3_res is not None) or lazy_text:
        try:  # numba is imported when needed; see _warm_numba
            from citytwin.foundation import cleannumba, h3numba  # noqa: F401 (cleannumba: for _clean_lazy)
        except Exception:  # numba unusable here (e.g. no writable cache folder): cells in SQL instead
            return None
    # DuckDB runs a streamed query ahead of its reader only as far as this buffer (default ~1 MB,
    # which leaves it nearly single-threaded); 64 MB keeps all threads busy at bounded memory
    con.execute("SET streaming_buffer_size = '64MB'")
    reader = con.execute(checked_sql).to_arrow_reader(PIPE_BATCH)
    if not all(_writable(t) for t in reader.schema.types):
        reader.close()
        return None
    names = reader.schema.names
    boxes: list[list[float]] = []
    if lonlat:
        from citytwin.foundation import spacelink

    def complete(batches: list[pa.RecordBatch]) -> pa.Table:
        """The chunk, with its lazy text cleaned, its point geometry (WKB) and H3 cells for points."""
        table = pa.Table.from_batches(batches, schema=reader.schema)
        for name, required in (lazy_text or {}).items():
            table = _clean_lazy(table, name, required)
        if key_order is not None:
            if key_order.column in table.column_names:
                key_order.see(table.column(key_order.column))
            else:
                key_order.ascending = False
        if not lonlat:
            return table
        x = table.column(lonlat[0]).to_numpy()
        y = table.column(lonlat[1]).to_numpy()
        wkb, bbox = spacelink.points_wkb(x, y)
        if bbox:
            boxes.append(bbox)
        table = table.append_column("geometry", wkb)
        if h3_res is None:  # no cells, or cells from the query (h3sql) already in the chunk
            return table.select([*[c for c in names if c != "h3"], "geometry", *(["h3"] if "h3" in names else [])])
        table = table.append_column("h3", h3numba.cells_array(x, y, h3_res, threads=1))
        return table.select([*names, "geometry", "h3"])

    writer: pq.ParquetWriter | None = None
    # three stages in three threads, each in chunk order: this thread reads DuckDB's Arrow batches,
    # one thread completes chunks (geometry, H3), one writes them; at most PIPE_DEPTH chunks are
    # between reader and file, so memory stays flat. The reader alone is DuckDB's critical path
    # (its export to Arrow runs in the fetching thread), so it does nothing else.
    completer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citytwin-points")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citytwin-writer")
    inflight: deque[Future[int]] = deque()
    written = 0

    def write(done: Future[pa.Table]) -> int:
        nonlocal writer
        table = done.result()
        if writer is None:
            # dictionary pages for text columns with few distinct values in the first chunk (categories,
            # stations, units); trying a dictionary on every column and giving it up costs 25 % more CPU
            text = [c for c, t in zip(table.column_names, table.schema.types, strict=True)
                    if c != "h3" and (pa.types.is_string(t) or pa.types.is_large_string(t))]
            few = [c for c in text if pc.count_distinct(table.column(c)).as_py() <= DICTIONARY_MAX_VALUES]
            floats = [c for c, t in zip(table.column_names, table.schema.types, strict=True)
                      if pa.types.is_floating(t)]
            writer = pq.ParquetWriter(path, table.schema, store_schema=False, use_dictionary=few,
                                      **_arrow_write_options(table.column_names, floats))
        writer.write_table(table, row_group_size=122_880)
        return int(table.num_rows)

    def put(batches: list[pa.RecordBatch]) -> None:
        nonlocal written
        inflight.append(pool.submit(write, completer.submit(complete, batches)))
        while len(inflight) > PIPE_DEPTH:
            written += inflight.popleft().result()

    try:
        chunk: list[pa.RecordBatch] = []
        size = 0
        for batch in reader:
            chunk.append(batch)
            size += batch.num_rows
            if size >= POINT_CHUNK:
                put(chunk)
                chunk, size = [], 0
        if chunk or not (inflight or written):
            put(chunk)
        while inflight:
            written += inflight.popleft().result()
        assert writer is not None
        if lonlat:
            # the GeoParquet metadata DuckDB's spatial writer gives a GEOMETRY column of points
            meta: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Point"] if boxes else []}
            if boxes:
                meta["bbox"] = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                                max(b[3] for b in boxes)]
            writer.add_key_value_metadata({"geo": json.dumps(
                {"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": meta}},
                separators=(",", ":"))})
    finally:
        completer.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)
        if writer is not None:
            writer.close()
        reader.close()
        pa.default_memory_pool().release_unused()
    return written


def _staged(files: list[Path], sch: Schema, opts: _Options, staging: Path, say: Callable[[str], None]) -> _Outcome:
    """The staged pipeline: every record numbered and checked into a table, then written.

    Used when the streamed pass met a record to quarantine (or for administrative-code linking):
    it reports every bad record with its file and row and the reason.
    """
    con = _connect(staging, opts)
    try:
        return _staged_run(con, files, sch, opts, staging, say)
    finally:
        con.close()


def _staged_run(con: duckdb.DuckDBPyConnection, files: list[Path], sch: Schema, opts: _Options, staging: Path,
                say: Callable[[str], None]) -> _Outcome:
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
        plan = plan_columns(src, sch, user_units=opts.units_map, crs=opts.crs, geometry_policy=geometry_policy)
        notes += [f"{path.name}: {n}" for n in plan.notes]
        layout = plan.layout
        view = f"({src.sql})" if src.sql else f"src_{i}"
        if not src.sql:
            con.register(view, src.relation)
        sql = build_sql(plan, view, i, h3_resolution=h3_res, geometry_policy=geometry_policy)
        try:
            created = _stage(con, sql, created)
        except duckdb.Error as exc:
            if src.format != "csv" or src.csv_rejects:
                raise readers._csv_error(path, exc) if src.format == "csv" else InputError(
                    f"cannot read: {str(exc).splitlines()[0]}", file=str(path)) from exc
            # malformed rows: read again, keeping the rows that split and recording the others
            if created:
                con.execute(f"DELETE FROM staged WHERE _file = {i}")
            src = readers.open_source(con, path, encoding=opts.encoding, staging=staging, csv_rejects=True,
                                      header=opts.header)
            view = f"({src.sql})" if src.sql else view
            if not src.sql:
                con.register(view, src.relation)
            plan = plan_columns(src, sch, user_units=opts.units_map, crs=opts.crs, geometry_policy=geometry_policy)
            sql = build_sql(plan, view, i, h3_resolution=h3_res, geometry_policy=geometry_policy)
            try:
                created = _stage(con, sql, created)
            except duckdb.Error as exc2:
                raise readers._csv_error(path, exc2) from exc2
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
        _note_columns(columns_meta, plan, h3_res)
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
    return _Outcome(out_dir=out_dir, qfile=qfile, kept=kept, quarantined=quarantined, reasons=reasons,
                    extent=extent, tmin=tmin, tmax=tmax, keep_cols=keep_cols, columns_meta=columns_meta,
                    notes=notes, layout=layout, pipeline="staged")


def _first(parts: list[str]) -> str:
    """SQL: the first non-null reason text, or NULL (cheaper than :func:`_concat`: no string built)."""
    if not parts:
        return "CAST(NULL AS VARCHAR)"
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


def _concat(parts: list[str]) -> str:
    """SQL: the non-null reason texts joined by '; ', or NULL when there are none."""
    if not parts:
        return "CAST(NULL AS VARCHAR)"
    return f"NULLIF(concat_ws('; ', {', '.join(parts)}), '')"


def _stage(con: duckdb.DuckDBPyConnection, sql: str, created: bool) -> bool:
    if created:
        con.execute(f"INSERT INTO staged BY NAME {sql}")
    else:
        con.execute(f"CREATE TABLE staged AS {sql}")
    return True


def _admin_geometry(con: duckdb.DuckDBPyConnection, h3_res: int | None) -> None:
    """A7: records with an administrative code but no coordinates get the unit's representative point."""
    from citytwin.foundation.boundaries import admin_points

    pts = admin_points()[["adcode", "lon", "lat"]]
    con.register("_admin_points", pts)
    sql = ("SELECT s.*, p.lon AS __a_lon, p.lat AS __a_lat, "
           "CASE WHEN p.lon IS NOT NULL THEN ST_Point(p.lon, p.lat) END AS geometry "
           "FROM staged s LEFT JOIN _admin_points p ON CAST(s.adcode AS VARCHAR) = p.adcode")
    if h3_res is not None:
        sql = h3sql.wrap_select(sql, "__a_lon", "__a_lat", h3_res, out="h3")
    con.execute(f"""CREATE OR REPLACE TABLE staged AS
        SELECT * EXCLUDE (__a_lon, __a_lat) FROM ({sql}) ORDER BY _file, _row""")


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
