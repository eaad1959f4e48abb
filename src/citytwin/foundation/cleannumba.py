"""Which text values the ingest's cleaning would change, found with numba over Arrow buffers.

The ingest cleans every text value in SQL (``ingest.exprs.clean_text``): surrounding whitespace trimmed
(space, tab, no-break and ideographic space) and missing-value tokens ("NA", "null", "无" ...)
made NULL. On clean data that costs DuckDB ~35 ns per value even with cheap guards, and far more
for text that starts with a non-ASCII character (Chinese names), where the guard cannot tell
whitespace from a letter and ``trim`` runs on every value. This module answers the question
exactly, per value, for ~3–6 ns: :func:`dirty_mask` flags the values that start or end with one of
the given whitespace characters, or that are (ASCII case aside) one of the given tokens. The
ingest's Arrow path reads such columns uncleaned and cleans just the flagged values, with the same
SQL (see ``ingest.streamed.copy_arrow``). No library does this (DuckDB's own ``trim`` is what it
replaces); ``tests/foundation/test_cleannumba.py`` compares it with that SQL value by value.

Examples
--------
>>> import pyarrow as pa
>>> dirty_mask(pa.array(["Beijing", " padded", "NA", None, "北京\u3000", "nan-ish"]),
...            whitespace=" \t\u00a0\u3000", tokens=("", "na", "nan")).tolist()
[False, True, True, False, True, False]
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
from numba import njit

__all__ = ["TOKEN_BYTES", "dirty_mask", "may_hold_personal_data"]

#: the longest missing-value token, in UTF-8 bytes ("暂无" is 6; the SQL's guard assumes the same)
TOKEN_BYTES = 8


def _table(values: list[bytes], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings as a zero-padded (n, width) uint8 table and their lengths."""
    table = np.zeros((max(1, len(values)), width), dtype=np.uint8)
    lengths = np.full(max(1, len(values)), -1, dtype=np.int64)  # -1: an empty table's padding row
    for i, v in enumerate(values):
        if len(v) > width:
            raise ValueError(f"{v!r} is longer than {width} bytes")
        table[i, :len(v)] = np.frombuffer(v, dtype=np.uint8)
        lengths[i] = len(v)
    return table, lengths


@njit(nogil=True, cache=True)
def _mask(offsets: np.ndarray, data: np.ndarray, ws: np.ndarray, ws_len: np.ndarray, first: np.ndarray,  # pragma: no cover
          last: np.ndarray, tok: np.ndarray, tok_len: np.ndarray, tok_first: np.ndarray, max_tok: int) -> np.ndarray:
    n_values = offsets.size - 1
    out = np.zeros(n_values, dtype=np.bool_)
    for i in range(n_values):
        a = offsets[i]
        b = offsets[i + 1]
        n = b - a
        if n > max_tok and not first[data[a]] and not last[data[b - 1]]:
            continue  # the common case: one lookup of the first and of the last byte
        hit = False
        if n > 0 and (first[data[a]] or last[data[b - 1]]):
            for k in range(ws.shape[0]):
                m = ws_len[k]
                if m <= 0 or m > n:
                    continue
                head = True
                tail = True
                for j in range(m):
                    head = head and data[a + j] == ws[k, j]
                    tail = tail and data[b - m + j] == ws[k, j]
                if head or tail:
                    hit = True
                    break
        if not hit and n <= max_tok and (n == 0 or tok_first[data[a] + 32 if 65 <= data[a] <= 90 else data[a]]):
            for k in range(tok.shape[0]):
                if tok_len[k] != n:
                    continue
                same = True
                for j in range(n):
                    c = data[a + j]
                    if 65 <= c <= 90:  # ASCII upper case: DuckDB's lower() gives the token's letters
                        c += 32
                    if c != tok[k, j]:
                        same = False
                        break
                if same:
                    hit = True
                    break
        out[i] = hit
    return out


@lru_cache(maxsize=8)
def _tables(whitespace: str, tokens: tuple[str, ...]) -> tuple[Any, ...]:
    """The kernel's lookup tables for ``whitespace`` and ``tokens`` (built once per pair)."""
    if any(t != t.lower() for t in tokens):
        raise ValueError("tokens must be lower-case")
    ws, ws_len = _table([c.encode() for c in whitespace], 4)
    tok, tok_len = _table([t.encode() for t in tokens], TOKEN_BYTES)
    first = np.zeros(256, dtype=np.bool_)  # bytes a whitespace character can start / end with
    last = np.zeros(256, dtype=np.bool_)
    for c in whitespace:
        first[c.encode()[0]] = True
        last[c.encode()[-1]] = True
    tok_first = np.zeros(256, dtype=np.bool_)  # (lower-case) bytes a token starts with
    for t in tokens:
        if t:
            tok_first[t.encode()[0]] = True
    return ws, ws_len, first, last, tok, tok_len, tok_first, int(tok_len.max(initial=0))


def dirty_mask(values: pa.Array | pa.ChunkedArray, *, whitespace: str, tokens: tuple[str, ...]) -> np.ndarray:
    """A boolean numpy mask: True where a (non-null) text value starts or ends with a character of
    ``whitespace``, or equals one of ``tokens`` (lower-case; ASCII letters compared case-blind).

    Exact for tokens whose letters are ASCII (no other character lower-cases to an ASCII letter of
    these tokens: the Kelvin sign's ``k`` is in none of them) and non-ASCII tokens without case
    ("无", "—"). Tokens may be at most :data:`TOKEN_BYTES` (8) bytes long (the SQL's guard assumes so too).
    """
    ws, ws_len, first, last, tok, tok_len, tok_first, max_tok = _tables(whitespace, tuple(tokens))
    masks = []
    for arr in (values.chunks if isinstance(values, pa.ChunkedArray) else [values]):
        if pa.types.is_large_string(arr.type):
            offset_type = "int64"
        elif pa.types.is_string(arr.type):
            offset_type = "int32"
        else:
            raise TypeError(f"text values expected, got {arr.type}")
        _, off_buf, data_buf = arr.buffers()
        if off_buf is None:  # an empty array may come without buffers
            masks.append(np.zeros(len(arr), dtype=np.bool_))
            continue
        offsets = np.frombuffer(off_buf, dtype=offset_type)[arr.offset:arr.offset + len(arr) + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        if len(data) < 1:
            data = np.zeros(1, np.uint8)
        mask = _mask(offsets, data, ws, ws_len, first, last, tok, tok_len, tok_first, max_tok)
        if arr.null_count:
            mask &= arr.is_valid().to_numpy(zero_copy_only=False)
        masks.append(mask)
    if len(masks) == 1:
        return masks[0]
    return np.concatenate(masks) if masks else np.zeros(0, dtype=np.bool_)


@njit(nogil=True, cache=True)
def _any_candidate(offsets: np.ndarray, data: np.ndarray) -> bool:  # pragma: no cover
    for i in range(offsets.size - 1):
        digits = 0
        for j in range(offsets[i], offsets[i + 1]):
            c = data[j]
            if c == 64:  # '@'
                return True
            if 48 <= c <= 57:
                digits += 1
                if digits >= 11:
                    return True
    return False


def may_hold_personal_data(values: pa.Array | pa.ChunkedArray) -> bool:
    """Whether any text value holds an ``@`` or at least 11 ASCII digits: the values among which a
    Chinese mobile number (11 digits, separators allowed), a resident ID (18) or an e-mail address
    can hide (the patterns of :mod:`citytwin.foundation.access`). False means none of them is there,
    so the regular-expression scan of :func:`citytwin.foundation.workspace.detect_personal_columns`
    can skip the column; True only means that scan must look. ~1 ns per byte.

    Examples
    --------
    >>> import pyarrow as pa
    >>> may_hold_personal_data(pa.array(["store 12", None, "北京"])), may_hold_personal_data(pa.array(["138 1234 5678"]))
    (False, True)
    """
    for arr in (values.chunks if isinstance(values, pa.ChunkedArray) else [values]):
        if pa.types.is_large_string(arr.type):
            offset_type = "int64"
        elif pa.types.is_string(arr.type):
            offset_type = "int32"
        else:
            raise TypeError(f"text values expected, got {arr.type}")
        _, off_buf, data_buf = arr.buffers()
        if off_buf is None or data_buf is None or len(arr) == 0:
            continue
        offsets = np.frombuffer(off_buf, dtype=offset_type)[arr.offset:arr.offset + len(arr) + 1]
        if _any_candidate(offsets, np.frombuffer(data_buf, dtype=np.uint8)):
            return True
    return False
