"""Quoting for the SQL that foundation modules write for DuckDB: identifiers and literals.

The one place that turns a name or a value into SQL text; every foundation module uses it
(ingest, readers, quality) instead of a copy of its own.

Examples
--------
>>> ident('Na"me')
'"Na""me"'
>>> literal("it's"), literal(None), literal(True), literal(3), literal(0.5)
("'it''s'", 'NULL', 'TRUE', '3', '0.5')
"""

from __future__ import annotations

from typing import Any

__all__ = ["ident", "literal"]


def ident(name: str) -> str:
    """A DuckDB identifier: ``name`` in double quotes, inner double quotes doubled.

    Parameters
    ----------
    name
        A column or table name, as it is (not already quoted).

    Returns
    -------
    str
        The quoted identifier.
    """
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A SQL literal for ``value``: NULL, TRUE/FALSE, a number, or a quoted string.

    Parameters
    ----------
    value
        None, a bool, an int, a float, or anything else (written as its ``str`` in single quotes,
        inner single quotes doubled).

    Returns
    -------
    str
        The literal's SQL text. A float is written with ``repr`` (the shortest text that reads
        back as the same double).
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return "'" + str(value).replace("'", "''") + "'"
