"""SQL expression fragments of the ingest's validation query: cleaning, parsing, typed values, checks.

Each function returns DuckDB SQL text over a raw value expression; :mod:`.plan` assembles them per
column and :mod:`.query` into the query. A check is a ``CASE`` that gives the reason text
(``field: what is wrong``) or NULL.
"""

from __future__ import annotations

from collections.abc import Sequence

from citytwin.foundation.schemas import Field
from citytwin.foundation.sql import ident as q
from citytwin.foundation.sql import literal as lit

__all__ = ["MISSING_TOKENS", "TIME_FORMATS", "WHITESPACE", "all_reasons", "clean_numeric", "clean_text", "enum_list",
           "first_reason", "key_check", "number", "required_check", "rule_checks", "timestamp", "typed"]

#: text values read as missing (after trimming; compared in lower case; at most 8 UTF-8 bytes, see
#: :data:`citytwin.foundation.cleannumba.TOKEN_BYTES`). Statistical yearbooks write "…", "……", "*"
#: and "暂无"/"暂缺" (not yet available) where a figure is missing.
MISSING_TOKENS = ("", "na", "n/a", "nan", "null", "none", "-", "--", "—", "－", "/", "#n/a", "nil", "无",
                  "…", "……", "...", "*", "暂无", "暂缺", "—-", "——")

#: full-width digits and signs (as typed with a Chinese input method) and their ASCII forms
FULLWIDTH = "０１２３４５６７８９．，－＋ｅＥ"
ASCII_FORMS = "0123456789.,-+eE"
#: a number with thousands separators: "1,234,567.8" (not "1,5", which is no thousands grouping)
THOUSANDS = r"[+-]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?([eE][+-]?[0-9]+)?"
#: the same with a decimal comma: "1.234.567,8"
THOUSANDS_DC = r"[+-]?[0-9]{1,3}(\.[0-9]{3})+(,[0-9]*)?([eE][+-]?[0-9]+)?"


TIME_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M",
                "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%Y/%m/%d",
                "%Y-%m-%d", "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日", "%Y%m%d"]

#: trimmed from text values
WHITESPACE = " \t\u00a0\u3000"  # trimmed from text values: space, tab, no-break and ideographic space


def clean_text(col: str) -> str:
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
    return f"CASE WHEN strlen({t}) > 8 THEN {t} WHEN list_contains({tokens}, lower({t})) THEN NULL ELSE {t} END"


def clean_numeric(col: str) -> str:
    """:func:`clean_text` for a column read only as numbers: skipped where the value casts to a finite number."""
    x = f"CAST({q(col)} AS VARCHAR)"
    return f"CASE WHEN isfinite(TRY_CAST({x} AS DOUBLE)) THEN {x} ELSE {clean_text(col)} END"


def _plain_number(x: str, decimal_comma: bool) -> str:
    if not decimal_comma:
        return (f"COALESCE(TRY_CAST({x} AS DOUBLE), CASE WHEN regexp_full_match({x}, {lit(THOUSANDS)}) "
                f"THEN TRY_CAST(replace({x}, ',', '') AS DOUBLE) END)")
    # a decimal-comma file: "1,5" is 1.5 and "1.234,5" is 1234.5; "1.5" is ambiguous there (a dot is a
    # thousands separator in that convention), so it parses only as a thousands grouping ("1.500")
    return (f"CASE WHEN NOT contains({x}, '.') THEN TRY_CAST(replace({x}, ',', '.') AS DOUBLE) "
            f"WHEN regexp_full_match({x}, {lit(THOUSANDS_DC)}) "
            f"THEN TRY_CAST(replace(replace({x}, '.', ''), ',', '.') AS DOUBLE) END")


def number(raw: str, decimal_comma: bool = False) -> str:
    """A number from text: exactly what the text means, or NULL (then quarantined as "not a number").

    Accepts thousands separators only where they group by three ("1,234,567.8"; "1,5" is no number
    in a file with a decimal point), full-width digits ("１２３"), and a trailing NUL byte. With
    ``decimal_comma`` (a file whose numbers are written "1,5", see
    :func:`citytwin.foundation.readers.detect_decimal_comma`) the comma is the decimal mark and the
    dot groups thousands.
    """
    fixed = f"translate(replace({raw}, chr(0), ''), {lit(FULLWIDTH)}, {lit(ASCII_FORMS)})"
    first = _plain_number(raw, decimal_comma)
    return f"COALESCE({first}, {_plain_number(fixed, decimal_comma)})"


def enum_list(values: Sequence[str | None]) -> str:
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


def timestamp(raw: str) -> str:
    """A timestamp from text: a plain cast, else the first of :data:`TIME_FORMATS` that parses."""
    fmts = "[" + ", ".join(lit(f) for f in TIME_FORMATS) + "]"
    return f"COALESCE(TRY_CAST({raw} AS TIMESTAMP), try_strptime({raw}, {fmts}))"


def typed(f: Field, raw: str, *, text: bool, factor: float = 1.0,
          decimal_comma: bool = False) -> tuple[str, list[str], str]:
    """(value expression, type checks, duck type) for field ``f`` from raw expression ``raw``.

    ``decimal_comma``: numbers are written with a decimal comma (see :func:`number`).
    """
    name = f.name
    checks: list[str] = []
    if f.type in ("float", "int"):
        base = number(raw, decimal_comma) if text else f"TRY_CAST({raw} AS DOUBLE)"
        val = base if factor == 1.0 else f"({base} * {factor!r})"
        if text and f.unit:
            # a value may carry its own unit ("12.13 m", "3 km"): converted to the field's unit
            num = f"regexp_extract({raw}, '^\\s*([-+]?[0-9][0-9.,]*(?:[eE][-+]?[0-9]+)?)\\s*(.*?)\\s*$', 1)"
            suffix = f"regexp_extract({raw}, '^\\s*([-+]?[0-9][0-9.,]*(?:[eE][-+]?[0-9]+)?)\\s*(.*?)\\s*$', 2)"
            plain = number(raw, decimal_comma)
            base = (f"CASE WHEN {suffix} = '' THEN {plain} "
                    f"ELSE {number(num, decimal_comma)} * unit_factor_to({suffix}, {lit(f.unit)}) END")
            val = base if factor == 1.0 else (f"CASE WHEN {suffix} = '' THEN {plain} * {factor!r} "
                                              f"ELSE {base} END")
        checks.append(f"CASE WHEN {raw} IS NOT NULL AND {base} IS NULL THEN "
                      f"{lit(name + ': not a number: ')} || left(CAST({raw} AS VARCHAR), 60) END")
        if f.type == "int":
            checks.append(f"CASE WHEN {val} IS NOT NULL AND {val} <> round({val}) THEN "
                          f"{lit(name + ': not a whole number: ')} || CAST({raw} AS VARCHAR) END")
            return f"CAST(round({val}) AS BIGINT)", checks, "BIGINT"
        return val, checks, "DOUBLE"
    if f.type == "timestamp":
        val = timestamp(f"CAST({raw} AS VARCHAR)") if text else f"TRY_CAST({raw} AS TIMESTAMP)"
        checks.append(f"CASE WHEN {raw} IS NOT NULL AND {val} IS NULL THEN "
                      f"{lit(name + ': not a date-time: ')} || left(CAST({raw} AS VARCHAR), 60) END")
        checks.append(f"CASE WHEN {val} > now()::TIMESTAMP + INTERVAL 1 DAY THEN "
                      f"{lit(name + ': in the future: ')} || CAST({val} AS VARCHAR) END")
        return val, checks, "TIMESTAMP"
    if f.type == "date":
        val = f"CAST({timestamp(f'CAST({raw} AS VARCHAR)')} AS DATE)" if text else f"TRY_CAST({raw} AS DATE)"
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


def rule_checks(f: Field, val: str) -> list[str]:
    """The checks of field ``f``'s rules (range, choices) on its typed value ``val``."""
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


def required_check(name: str, raw: str) -> str:
    """The check of a required value: its reason where ``raw`` is NULL."""
    return f"CASE WHEN {raw} IS NULL THEN {lit(name + ': required value missing')} END"


def key_check(name: str, raw: str) -> str:
    """The check of a key field that is not required: its reason ("missing key") where ``raw`` is NULL."""
    return f"CASE WHEN {raw} IS NULL THEN {lit(name + ': missing key')} END"


def first_reason(parts: list[str]) -> str:
    """SQL: the first non-null reason text, or NULL (cheaper than :func:`all_reasons`: no string built)."""
    if not parts:
        return "CAST(NULL AS VARCHAR)"
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


def all_reasons(parts: list[str]) -> str:
    """SQL: the non-null reason texts joined by '; ', or NULL when there are none."""
    if not parts:
        return "CAST(NULL AS VARCHAR)"
    return f"NULLIF(concat_ws('; ', {', '.join(parts)}), '')"
