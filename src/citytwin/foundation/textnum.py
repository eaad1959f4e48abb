"""Numbers written as text (A1): which sampled text columns hold numbers (:func:`infer_types`), the
number grammar ingest accepts (grouping by three, full-width digits, NUL, 17 significant digits) and
whether a file writes a decimal comma (:func:`detect_decimal_comma`). Shared by the CSV and Excel
readers.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from citytwin.foundation.sql import ident

ID_LIKE = ("id", "code", "编号", "代码", "编码", "zip", "zipcode", "postcode", "邮编", "phone", "电话", "手机", "身份证",
           "证件号", "号码", "idcard")


def infer_types(rel: duckdb.DuckDBPyRelation, columns: list[str], *, sample: int = 20_000,
                decimal_comma: bool = False, stats: dict[str, tuple[int, int]] | None = None,
                budget: int = 2_000_000) -> dict[str, str]:
    """Type of each text column from (a sample of) its values: ``DOUBLE`` or ``VARCHAR``.

    A column is numeric when most of its non-missing values are numbers (read as ingest reads them,
    :func:`citytwin.foundation.ingest.exprs.number`: thousands separators grouping by three,
    full-width digits, the file's decimal mark; yearbook tokens such as "…", "*" or "暂无" are
    missing values); the values that are not are then quarantined by validation as "not a number"
    (a typo does not turn a numeric column into text). Identifier-like columns stay text: names
    ending in id/code/编号/代码/zip, or whole numbers with leading zeros ("0123") or 16+ digits (ID
    numbers, which a double cannot hold exactly; a 17-digit decimal fraction is a number).

    The sample is the first ``sample`` rows, fewer for wide files (at most ``budget`` values in all,
    and at least 200 rows), counted in Python from one Arrow fetch per 256 columns: time and memory
    stay bounded for files thousands of columns wide (DuckDB plans one aggregate per column slowly).
    ``stats`` (if given) receives, per column, the number of non-missing values sampled and how
    many of them are numbers.
    """
    from citytwin.foundation.ingest.exprs import MISSING_TOKENS  # (ingest imports this module)

    cols = [c for c in columns if not any(c.lower().replace("_", "").endswith(k) for k in ID_LIKE)
            and "身份证" not in c]
    out = dict.fromkeys(columns, "VARCHAR")
    if not cols:
        return out
    rows = max(200, min(sample, budget // max(1, len(cols))))
    sampled = rel.limit(rows)
    tokens = frozenset(MISSING_TOKENS)
    for start in range(0, len(cols), 256):
        part = cols[start:start + 256]
        table = sampled.project(", ".join(f"CAST({ident(c)} AS VARCHAR) AS {ident(f'v{i}')}"
                                          for i, c in enumerate(part))).to_arrow_table()
        for i, c in enumerate(part):
            n = k = zeros = 0
            for v in table.column(i).to_pylist():
                if v is None:
                    continue
                t = v.strip(" \t\u00a0\u3000")
                if t.lower() in tokens:
                    continue
                n += 1
                if _parses(t, decimal_comma):
                    k += 1
                    if _ID_NUMBER.fullmatch(t):
                        zeros += 1
            out[c] = "DOUBLE" if n and k / n > 0.5 and not zeros else "VARCHAR"
            if stats is not None:
                stats[c] = (n, k)
    return out


_ID_NUMBER = re.compile(r"[+-]?0[0-9]+|[+-]?[0-9]{16,}")
_THOUSANDS = re.compile(r"[+-]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?([eE][+-]?[0-9]+)?")
_THOUSANDS_DC = re.compile(r"[+-]?[0-9]{1,3}(\.[0-9]{3})+(,[0-9]*)?([eE][+-]?[0-9]+)?")
_FULLWIDTH = str.maketrans("０１２３４５６７８９．，－＋ｅＥ", "0123456789.,-+eE", "\x00")


def _float_ok(t: str) -> bool:
    try:
        float(t)
    except ValueError:
        return False
    return "_" not in t  # Python reads "1_000"; DuckDB's cast does not count on it


def _parses(t: str, decimal_comma: bool) -> bool:
    """Whether text ``t`` is a number as ingest's SQL reads it (for type inference only)."""
    for x in (t, t.translate(_FULLWIDTH)) if not t.isascii() or "\x00" in t else (t,):
        if not decimal_comma:
            if _float_ok(x) or (_THOUSANDS.fullmatch(x) and _float_ok(x.replace(",", ""))):
                return True
        elif "." not in x:
            if _float_ok(x.replace(",", ".")):
                return True
        elif _THOUSANDS_DC.fullmatch(x) and _float_ok(x.replace(".", "").replace(",", ".")):
            return True
    return False


DECIMAL_COMMA = re.compile(r"^[+-]?[0-9]+,[0-9]+$")
DECIMAL_POINT = re.compile(r"^[+-]?[0-9]+\.[0-9]+$")
GROUPED_POINT = re.compile(r"^[+-]?[0-9]{1,3}(\.[0-9]{3})+$")  # "1.234": a grouping or a decimal? either


def detect_decimal_comma(path: Path, delimiter: str, *, limit: int = 1 << 18) -> bool:
    """Whether a CSV writes its numbers with a decimal comma ("1,5"): only in a file not separated by
    commas, when its first ``limit`` bytes hold values like "1,5" and none like "1.5" (a value such as
    "1.234" could be either and does not count)."""
    if delimiter == ",":
        return False
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        text = fh.read(limit)
    comma = point = 0
    for line in text.splitlines()[1:]:
        for v in line.split(delimiter):
            v = v.strip().strip('"').strip()
            if DECIMAL_COMMA.match(v):
                comma += 1
            elif DECIMAL_POINT.match(v) and not GROUPED_POINT.match(v):
                point += 1
    return comma > 0 and point == 0


