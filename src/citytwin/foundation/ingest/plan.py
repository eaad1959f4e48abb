"""The ingest plan: a source's columns matched to a schema, with the SQL of each value and its checks.

:func:`plan_columns` matches headers to schema fields (aliases, unit suffixes such as ``_万元``,
time from year/month/day parts, wide sensor files melted into observations, WKT or GIS geometry)
and gives a :class:`Plan`: one :class:`Column` per output column with its value expression, its
checks and its catalog facts. :func:`citytwin.foundation.ingest.query.build_sql` turns a plan into
the validation query.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from citytwin.foundation import readers, units
from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest.exprs import (
    clean_numeric,
    clean_text,
    key_check,
    required_check,
    rule_checks,
    typed,
)
from citytwin.foundation.properties import find_property
from citytwin.foundation.schemas import Field, Schema, normalize_header
from citytwin.foundation.sql import ident as q
from citytwin.foundation.sql import literal as lit

__all__ = ["Column", "Plan", "find_coordinate_columns", "lazy_text", "match_columns", "note_columns", "plan_columns"]

#: DuckDB types read as numbers
DUCK_NUMERIC = ("DOUBLE", "FLOAT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT",
                "UINTEGER", "DECIMAL")
#: columns of a wide sensor file that are row counters, not measured values
IGNORED_WIDE = {"no", "index", "id", "序号", "unnamed0"}
#: header names of the parts a time is built from
TIME_PARTS = {
    "year": ("year", "年", "年份", "yr"),
    "month": ("month", "月", "月份", "mon"),
    "day": ("day", "日", "date"),
    "hour": ("hour", "时", "小时", "hr"),
    "minute": ("minute", "分", "min"),
}


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
    #: its range): the checks then run on the other rows only (see :func:`~citytwin.foundation.ingest.query.build_sql`)
    guard: str | None = None


def match_columns(schema: Schema, columns: Sequence[str]) -> dict[str, tuple[str, str | None]]:
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
    """The output columns of one source, its layout (long, or wide and melted) and its geometry."""

    columns: list[Column]
    layout: str = "long"
    melt: list[tuple[str, str, float, str | None, str]] = field(default_factory=list)  # col, prop, factor, unit, kind
    notes: list[str] = field(default_factory=list)
    geometry: str | None = None  # expression producing GEOMETRY
    lonlat: tuple[str, str] | None = None  # output column names of lon/lat
    unit_column: str | None = None  # long sensor layout: per-row unit column
    raw: dict[str, str] = field(default_factory=dict)  # source column -> cleaned raw expression
    decimal_comma: bool = False  # numbers written "1,5" (see readers.detect_decimal_comma)
    reason_column: str | None = None  # source column with the reader's reason for a record (Source.reason_column)


def plan_columns(src: readers.Source, schema: Schema, *, user_units: dict[str, str] | None = None,
                 crs: str | None = None, geometry_policy: str = "quarantine",
                 column_map: dict[str, str] | None = None) -> Plan:
    """Map a source's columns onto a schema and build the SQL for values and checks.

    ``column_map`` (``{field: column}``, from ``--map FIELD=COLUMN``, ``IngestOptions(column_map=...)``
    or a schema's ``map``) names the source column of a field whose header the aliases do not know;
    it wins over the aliases.
    """
    _refuse_data_as_header(src)
    user_units = dict(user_units or {})
    cmap = {**dict(schema.column_map), **(column_map or {})}
    matched = match_columns(schema, src.columns)
    for fname, col in cmap.items():
        if fname not in schema.field_names:
            raise InputError(f"--map names field {fname!r}, which schema {schema.name!r} does not have",
                             file=str(src.path), hint=f"fields: {', '.join(schema.field_names) or '(none)'}")
        if col not in src.columns:
            raise InputError(f"--map {fname}={col}: the file has no column {col!r}", file=str(src.path),
                             hint=f"columns: {', '.join(src.columns)}")
        matched = {k: v for k, v in matched.items() if v[0] != col}
        matched[fname] = (col, units.split_unit_suffix(col)[1])
    dc = src.decimal_comma
    plan = Plan(columns=[], decimal_comma=dc, reason_column=src.reason_column)
    crs = _check_crs(crs, src)
    if {"lon", "lat"} <= set(schema.field_names) and not ({"lon", "lat"} <= set(matched)):
        found = find_coordinate_columns(src, [c for c in src.columns if c not in {m for m, _ in matched.values()}],
                                        have=matched)
        if found is not None:
            lon_c, lat_c, hint = found
            matched["lon"], matched["lat"] = (lon_c, None), (lat_c, None)
            how = f"coordinates read from columns {lon_c!r} (longitude) and {lat_c!r} (latitude), recognised by name and values"
            if hint is not None and crs is None:
                crs = hint
                how += f"; CRS {hint} taken from the column names"
            elif hint is not None and crs is not None and normalize_header(crs) != normalize_header(hint):
                how += f"; the column names say {hint}, the CRS given ({crs}) is used"
            plan.notes.append(how)
    used = {c for c, _ in matched.values()}
    text = src.text
    # raw values are computed once per record in the first query stage, as columns "r:<col>"
    raw_of: dict[str, str] = {c: q("r:" + c) for c in src.columns if c != "geometry"}
    rel_types = dict(zip(src.relation.columns, [str(t) for t in src.relation.types], strict=True))

    def is_text(c: str) -> bool:
        return text or rel_types.get(c, "") == "VARCHAR"

    plan.raw = {c: (clean_text(c) if is_text(c) else q(c)) for c in src.columns if c != "geometry"}

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
                likely = suggest_columns(src, f, [c for c in src.columns if c not in used and c != "geometry"])
                guess = (f"; likely: {', '.join(f'{c} ({why})' for c, why in likely)} "
                         f"(pass --map {f.name}={likely[0][0]})"
                         if likely else f"; pass --map {f.name}=COLUMN to name it")
                raise InputError(
                    f"required field {f.name!r} of schema {schema.name!r} not found in the header",
                    file=str(src.path),
                    hint=f"columns are: {', '.join(src.columns)}; {f.name!r} is recognised as one of: "
                         f"{aliases}{guess}")
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
        val, checks, dtype = typed(f, raw, text=is_text(col), factor=factor, decimal_comma=dc)
        if f.required:
            checks.insert(0, required_check(f.name, raw))
        elif f.name in schema.key:
            # a record without its key cannot be told apart from others (nor updated, nor joined)
            checks.insert(0, key_check(f.name, raw))
        checks += rule_checks(f, val)
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
        mixed: list[str] = []
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
                val, checks, dtype = typed(f, raw_of[c], text=is_text(c), factor=fac, decimal_comma=dc)
                plan.columns.append(Column(name, val, checks, dtype, unit=unit_out, source=c, source_unit=label))
            else:
                plan.columns.append(Column(name, raw_of[c], [], styp if styp != "TYPED" else "ANY", source=c))
                n, k = src.type_stats.get(c, (0, 0))
                if text and 0 < k < n:
                    mixed.append(f"{c!r} ({n - k} of {n} sampled values not numbers)")
        if mixed:
            plan.notes.append(f"{len(mixed)} column(s) kept as text because some values are not numbers: "
                              f"{'; '.join(mixed[:20])}{' …' if len(mixed) > 20 else ''} (declare them in a "
                              "schema to read them as numbers and quarantine the rest)")
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
        b = src.bounds
        if crs is None and src.crs is None and b is not None and (
                min(b[0], b[2]) < -180 or max(b[0], b[2]) > 180 or min(b[1], b[3]) < -90 or max(b[1], b[3]) > 90):
            raise InputError(
                f"the file does not say its coordinate reference system (no .prj), and its coordinates "
                f"(x {b[0]:.6g} to {b[2]:.6g}, y {b[1]:.6g} to {b[3]:.6g}) are not longitude/latitude degrees",
                file=str(src.path), field="crs",
                hint="they look like projected metres: pass the CRS, e.g. --crs EPSG:4547 (CGCS2000 / 3-degree "
                     "Gauss-Kruger CM 114E) or --crs EPSG:32650 (UTM 50N)")
        real = {k: v for k, v in src.geometry_types.items() if k != "missing"}
        if len(real) > 1:
            plan.notes.append("mixed geometry types: " + ", ".join(f"{v} {k}" for k, v in
                                                                   sorted(real.items(), key=lambda kv: (-kv[1], kv[0]))))
        src_crs = (crs or src.crs or "EPSG:4326")
        g = "ST_GeomFromWKB(_src.geometry)"
        pseudo = _pseudo_crs(src_crs)
        if pseudo is None and not _is_wgs84(src_crs):
            g = f"ST_Transform({g}, {lit(_crs_for_duck(src_crs))}, 'EPSG:4326', always_xy := true)"
        if pseudo == "GCJ-02":
            g = "ST_GeomFromWKB(gcj02_wkb_to_wgs84(_src.geometry))"
            plan.notes.append("geometry converted from GCJ-02 to WGS84")
        elif pseudo == "BD-09":
            g = "ST_GeomFromWKB(bd09_wkb_to_wgs84(_src.geometry))"
            plan.notes.append("geometry converted from BD-09 to WGS84")
        plan.geometry = g
    elif schema.geometry == "point":
        have = {col.name: col for col in plan.columns}
        if "lon" in have and "lat" in have:
            plan.lonlat = ("lon", "lat")
            pseudo = _pseudo_crs(crs)
            if crs is None or pseudo is not None or _is_wgs84(crs):
                # degrees: a latitude beyond ±90 with a longitude within ±90 is a swapped pair
                lo, la = have["lon"].expr, have["lat"].expr
                have["lat"].checks.append(
                    f"CASE WHEN abs({la}) > 90 AND abs({la}) <= 180 AND abs({lo}) <= 90 THEN "
                    f"'lat: the coordinates look swapped (lon ' || CAST({lo} AS VARCHAR) || ', lat ' || "
                    f"CAST({la} AS VARCHAR) || '): is the latitude in the longitude column?' END")
            if pseudo == "GCJ-02":
                lon_expr, lat_expr = have["lon"].expr, have["lat"].expr
                for ll in (have["lon"], have["lat"]):
                    ll.expr = f"gcj02_to_wgs84_{ll.name}({lon_expr}, {lat_expr})"
                plan.notes.append("coordinates converted from GCJ-02 to WGS84")
            elif crs and not _is_wgs84(crs):
                _transform_lonlat(have["lon"], have["lat"], crs, projected=pseudo is None)
                plan.notes.append(f"coordinates converted from {crs} to WGS84")
    if schema.geometry and "geometry" in schema.field_names and schema.field("geometry").required \
            and plan.geometry is None:
        raise InputError(f"schema {schema.name!r} needs geometry, and the file has none", file=str(src.path),
                         hint="use a GIS format (GeoJSON, GeoPackage, Shapefile, GeoParquet) or schema 'table'")
    plan.notes.append(f"geometry policy: {geometry_policy}") if plan.geometry else None
    # text columns read only as numbers are cleaned lazily: a value that already parses as a finite
    # number is kept as it is (casting ignores surrounding spaces), the rest is cleaned as text
    users_of: dict[str, list[Column]] = {}  # raw reference -> output columns that read it (one pass)
    for col_ in plan.columns:
        for ref in set(_RAW_REF.findall(" ".join([col_.expr, *col_.checks]))):
            users_of.setdefault(ref, []).append(col_)
    melted_of: dict[str, list[tuple[str, str, float, str | None, str]]] = {}
    for m in plan.melt:
        melted_of.setdefault(m[0], []).append(m)
    for c in list(plan.raw):
        if is_text(c) and _numeric_only(users_of.get(q("r:" + c), []), melted_of.get(c, []), c):
            plan.raw[c] = clean_numeric(c)
    return plan


_RAW_REF = re.compile(r'"r:(?:[^"]|"")*"')


def _numeric_only(users: list[Column], melted: list[tuple[str, str, float, str | None, str]], col: str) -> bool:
    """Whether source column ``col`` only feeds plain numeric fields (``users``: the output columns that
    read it; ``melted``: its melted values)."""
    if not users and not melted:
        return False
    own = [c for c in users if c.source == col]
    plain = all(c.type in ("DOUBLE", "BIGINT") and "regexp_extract" not in c.expr and "make_timestamp" not in c.expr
                for c in own)
    # another column may read this one only through an own column's number (the check of swapped
    # coordinates reads the longitude's value in the latitude's check): without it, a longitude read
    # as text costs ~0.5 CPU-µs per row in the streamed pass
    raw = q("r:" + col)
    for other in users:
        if other.source != col:
            text = " ".join([other.expr, *other.checks])
            for c in own:
                text = text.replace(c.expr, "")
            if not own or raw in text:
                return False
    return plain and all(m[4] == "number" for m in melted)


def lazy_text(plan: Plan) -> tuple[set[str], dict[str, bool]]:
    """Text columns whose cleaning the Arrow path can do after the query: (source columns, output
    column -> whether it is required).

    A source column qualifies when it is cleaned as plain text (:func:`clean_text`) and feeds only
    outputs that are that cleaned text, checked at most for being present. Read uncleaned, such a
    column gives the same checks on every value the cleaning leaves alone; :func:`copy_arrow`
    finds the others exactly (:func:`cleannumba.dirty_mask`), cleans them with :func:`clean_text`, and
    hands over to the staged pipeline if a required value turns out missing. Columns with other
    checks (choices, ranges) or used in other expressions (times, melted values) stay in SQL.
    """
    sources: set[str] = set()
    outputs: dict[str, bool] = {}
    for c, e in plan.raw.items():
        raw = q("r:" + c)
        if e != clean_text(c) or any(m[0] == c for m in plan.melt) or (plan.geometry and raw in plan.geometry):
            continue
        users = [col for col in plan.columns if raw in col.expr or any(raw in chk for chk in col.checks)]
        if not users or not all(u.expr == raw and u.type == "VARCHAR"
                                and u.checks in ([], [required_check(u.name, raw)], [key_check(u.name, raw)])
                                for u in users):
            continue
        sources.add(c)
        outputs.update({u.name: bool(u.checks) for u in users})
    return sources, outputs


def suggest_columns(src: readers.Source, f: Field, candidates: list[str], *,
                    sample: int = 200) -> list[tuple[str, str]]:
    """Columns of ``src`` whose values look like field ``f``'s (for the error of a missing required field).

    Years: whole numbers 1900–2100 (4 digits); other numbers: values inside the field's range; times
    and dates: values that parse as such. At most three, each with what its values look like.
    """
    from citytwin.foundation.ingest.exprs import clean_text, number, timestamp

    if f.type not in ("int", "float", "timestamp", "date") or not candidates:
        return []
    out: list[tuple[str, str]] = []
    for c in candidates[:200]:
        v = f"({clean_text(c)})"
        if f.type in ("int", "float"):
            x = number(v, src.decimal_comma)
            lo = f.min if f.min is not None else -math.inf
            hi = f.max if f.max is not None else math.inf
            ok = f"{x} BETWEEN {lo!r} AND {hi!r}" if (f.min is not None or f.max is not None) else f"{x} IS NOT NULL"
            if f.type == "int":
                ok += f" AND {x} = round({x})"
        else:
            ok = f"{timestamp(f'CAST({v} AS VARCHAR)')} IS NOT NULL"
        try:
            r = src.relation.limit(sample).aggregate(
                f"count({v}), count(*) FILTER (WHERE {ok}), min({v}), max({v})").fetchone()
        except duckdb.Error:
            continue
        if r and r[0] and r[1] == r[0]:
            out.append((c, f"values {r[2]}…{r[3]}"))
        if len(out) >= 3:
            break
    return out


_NUMBER_NAME = re.compile(r"[+-]?\d+(?:\.\d+)?")


def _refuse_data_as_header(src: readers.Source) -> None:
    """A clear error for a CSV without a header line read with one: every column name is a number
    and some repeat (DuckDB names the repeats ``2_1``, ``0_1`` …), as no header does. Read as a header,
    the first record would be lost and the columns named after its values."""
    if src.format != "csv" or len(src.columns) < 2:
        return
    names = [c for c in src.columns if c != "geometry"]
    bases = []
    for c in names:
        base = c
        m = re.fullmatch(r"(.+)_\d+", c)
        if m and m.group(1) in names:
            base = m.group(1)
        if not _NUMBER_NAME.fullmatch(base.strip()):
            return
        bases.append(base)
    if len(set(bases)) == len(bases):
        return
    shown = ", ".join(bases[:8]) + (" …" if len(bases) > 8 else "")
    raise InputError(f"the first line looks like data, not a header: every column name is a number and some "
                     f"repeat ({shown})", file=str(src.path),
                     hint="pass --no-header to read it as data (columns named by position: column0…, or column00… "
                          "from 10 columns on; IngestOptions(header=False) in Python), or add a header line")


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


#: header stems of longitude and latitude columns (compared after :func:`normalize_header` and with
#: any CRS hint removed), besides the schema's own aliases
LON_STEMS = ("lon", "lng", "long", "longitude", "经度", "x", "东经", "xcoord", "x坐标", "坐标x", "point_x", "pointx",
             "lonwgs", "centroidlon")
LAT_STEMS = ("lat", "latitude", "纬度", "y", "北纬", "ycoord", "y坐标", "坐标y", "point_y", "pointy", "centroidlat")
#: CRS hints in a coordinate column's name (``lng_gcj02``, ``经度(BD09)``, ``longitude_wgs84``)
CRS_HINTS = (("gcj02", "GCJ-02"), ("gcj", "GCJ-02"), ("火星", "GCJ-02"), ("高德", "GCJ-02"), ("amap", "GCJ-02"),
             ("gaode", "GCJ-02"), ("mars", "GCJ-02"), ("bd09ll", "BD-09"),
             ("bd09", "BD-09"), ("baidu", "BD-09"), ("百度", "BD-09"), ("wgs84", "EPSG:4326"),
             ("wgs", "EPSG:4326"), ("cgcs2000", "EPSG:4490"))


def _split_hint(header: str) -> tuple[str, str | None]:
    """A header without its CRS hint, and the hint (``("lng", "GCJ-02")`` for ``lng_gcj02``)."""
    key = normalize_header(header)
    for token, crs in CRS_HINTS:
        if key.startswith(token) and len(key) > len(token):
            return key[len(token):], crs
        if key.endswith(token) and len(key) > len(token):
            return key[: -len(token)], crs
    return key, None


def find_coordinate_columns(src: readers.Source, candidates: Sequence[str], *,
                            have: dict[str, tuple[str, str | None]] | None = None) -> tuple[str, str, str | None] | None:
    """Longitude and latitude columns among ``candidates``, recognised by name and confirmed by values.

    A name is a coordinate name when, without a CRS hint (``_gcj02``, ``_bd09``, ``_wgs84`` …),
    it is one of :data:`LON_STEMS` / :data:`LAT_STEMS` (``lng_gcj02``, ``经度``, ``x``,
    ``longitude_wgs84``). The values confirm it: the first non-empty ones must be numbers.

    Returns
    -------
    tuple or None
        ``(lon column, lat column, CRS hint or None)``.
    """
    have = have or {}
    lon_keys = {normalize_header(x) for x in LON_STEMS}
    lat_keys = {normalize_header(x) for x in LAT_STEMS}
    lon_c = have["lon"][0] if "lon" in have else None
    lat_c = have["lat"][0] if "lat" in have else None
    hints: list[str] = []
    for c in candidates:
        stem, hint = _split_hint(c)
        if lon_c is None and stem in lon_keys:
            lon_c = c
        elif lat_c is None and stem in lat_keys:
            lat_c = c
        else:
            continue
        if hint:
            hints.append(hint)
    if lon_c is None or lat_c is None or not _numeric_values(src, lon_c) or not _numeric_values(src, lat_c):
        return None
    hint = hints[0] if hints and all(h == hints[0] for h in hints) else None
    return lon_c, lat_c, hint


def _numeric_values(src: readers.Source, col: str, n: int = 50) -> bool:
    """Whether the first ``n`` non-empty values of ``col`` are (mostly) numbers."""
    try:
        rows = src.relation.filter(f"{q(col)} IS NOT NULL AND trim(CAST({q(col)} AS VARCHAR)) <> ''").project(
            f"TRY_CAST(trim(CAST({q(col)} AS VARCHAR)) AS DOUBLE)").limit(n).fetchall()
    except duckdb.Error:
        return False
    return not rows or sum(r[0] is not None for r in rows) * 2 >= len(rows)


def _pseudo_crs(crs: str | None) -> str | None:
    """``"GCJ-02"`` / ``"BD-09"`` for the pseudo-CRS names, else None."""
    if not crs:
        return None
    from citytwin.foundation.spacelink import _PSEUDO

    return _PSEUDO.get(crs.strip().lower().replace(" ", ""))


def _check_crs(crs: str | None, src: readers.Source) -> str | None:
    """The user's ``--crs``, checked: an unknown CRS is an error naming it (never silently ignored)."""
    if crs is None:
        return None
    from citytwin.foundation.spacelink import parse_crs

    try:
        parse_crs(crs)
    except InputError as exc:
        raise InputError(f"unknown CRS {crs!r}", file=str(src.path), field="crs", hint=exc.hint) from exc
    return crs


def _transform_lonlat(lon: Column, lat: Column, crs: str, *, projected: bool) -> None:
    """Make ``lon``/``lat`` the WGS84 degrees of x/y given in ``crs`` (EPSG code or BD-09).

    The range checks then apply to the transformed values: projected metres are not degrees.
    """
    x, y = lon.expr, lat.expr
    for col, fn in ((lon, "to_wgs84_lon"), (lat, "to_wgs84_lat")):
        val = f"{fn}({x}, {y}, {lit(crs)})"
        lo, hi = (-180, 180) if col.name == "lon" else (-90, 90)
        if projected:
            col.checks = [c for c in col.checks if "outside" not in c and "below" not in c and "above" not in c]
            col.guard = None
        col.checks.append(f"CASE WHEN {x} IS NOT NULL AND {y} IS NOT NULL AND ({val} IS NULL OR NOT isfinite({val}) "
                          f"OR {val} NOT BETWEEN {lo} AND {hi}) THEN {lit(col.name + ': ')} || "
                          f"CAST({x if col.name == 'lon' else y} AS VARCHAR) || "
                          f"{lit(f' in {crs} does not transform to a WGS84 coordinate inside [{lo}, {hi}]')} END")
        col.expr = val


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


def note_columns(columns_meta: dict[str, dict[str, Any]], plan: Plan, h3_res: int | None) -> None:
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
