"""cleannumba.dirty_mask flags exactly the values the ingest's SQL cleaning (``ingest.exprs.clean_text``) changes.

The peer is DuckDB itself: the same ``clean_text`` SQL the staged pipeline runs, compared value by
value on a corpus built from every whitespace character, every missing-value token in several
cases, CJK text and near misses.
"""

from __future__ import annotations

import doctest
import itertools
import random
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from citytwin.foundation import cleannumba
from citytwin.foundation.ingest.exprs import MISSING_TOKENS, WHITESPACE, clean_text


def _sql_changes(values: list[str | None]) -> list[bool]:
    """Whether DuckDB's cleaning changes each value (NULL stays NULL: unchanged)."""
    con = duckdb.connect()
    con.register("t", pa.table({"v": pa.array(values, pa.string())}))
    rows = con.sql(f"SELECT v IS DISTINCT FROM ({clean_text('v')}) FROM t").fetchall()
    return [bool(r[0]) for r in rows]


def _mask(values: pa.Array | pa.ChunkedArray) -> list[bool]:
    return cleannumba.dirty_mask(values, whitespace=WHITESPACE, tokens=MISSING_TOKENS).tolist()


def _corpus() -> list[str | None]:
    words = ["x", "Beijing", "北京", "北京市朝阳区", "nan-ish", "nano", "non", "nul", "n", "a", "no",
             "无人", "无", "—", "－", "-", "—-", "#", "K", "\u212a", "\u00a0", "\u3000", " ", "\t", "\x01x", "ab\n"]
    for t in MISSING_TOKENS:
        words += [t, t.upper(), t.title(), t[:-1], t + "x", "x" + t]
    out: list[str | None] = [None]
    for w in words:
        for pre, post in itertools.product(["", *WHITESPACE], repeat=2):
            out.append(pre + w + post)
    rng = random.Random(20261121)
    pieces = [*WHITESPACE, "a", "N", "A", "/", "#", "无", "北", "\u212a", "-", "—"]
    out += ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 5))) for _ in range(20_000)]
    return out


def test_same_values_as_the_sql_cleaning() -> None:
    values = _corpus()
    want = _sql_changes(values)
    assert sum(want) > 1000 and sum(not w for w in want) > 1000  # both kinds well represented
    got = _mask(pa.array(values, pa.string()))
    bad = [v for v, g, w in zip(values, got, want, strict=True) if g != w]
    assert not bad, f"{len(bad)} differ, e.g. {bad[:5]!r}"


def test_chunked_sliced_and_large_inputs() -> None:
    values = _corpus()[:3000]
    want = _sql_changes(values)
    chunks = pa.chunked_array([pa.array(values[:1000]), pa.array([], pa.string()), pa.array(values[1000:])])
    assert _mask(chunks) == want
    assert _mask(pa.array(values, pa.large_string())) == want
    assert _mask(pa.array(["pad", *values], pa.string()).slice(1)) == want
    assert _mask(pa.chunked_array([], pa.string())) == []
    assert _mask(pa.array([None, None], pa.string())) == [False, False]


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="text values expected"):
        cleannumba.dirty_mask(pa.array([1, 2]), whitespace=" ", tokens=("na",))
    with pytest.raises(ValueError, match="lower-case"):
        cleannumba.dirty_mask(pa.array(["x"]), whitespace=" ", tokens=("NA",))
    with pytest.raises(ValueError, match="longer than 8 bytes"):
        cleannumba.dirty_mask(pa.array(["x"]), whitespace=" ", tokens=("notavailable",))


def test_docstring_example() -> None:
    assert doctest.testmod(cleannumba, raise_on_error=True).attempted >= 1


def test_a_realistic_column() -> None:
    col = pa.array([f"POI {i}" for i in range(100_000)] + ["NA"])
    mask = cleannumba.dirty_mask(col, whitespace=WHITESPACE, tokens=MISSING_TOKENS)
    assert mask.dtype == np.bool_ and np.flatnonzero(mask).tolist() == [100_000]


def test_personal_data_screen_is_a_superset_of_the_detectors() -> None:
    """may_hold_personal_data never says False for a column in which access's detectors find a phone,
    a resident ID or an e-mail (it only lets detect_personal_columns skip columns that hold none)."""
    import random
    import re

    import pyarrow as pa

    from citytwin.foundation import access
    from citytwin.foundation.cleannumba import may_hold_personal_data

    pats = [re.compile(p) for p in (access.MOBILE_CN, access.RESIDENT_ID, access.EMAIL)]
    rnd = random.Random(0)
    alphabet = "0123456789 -+@.abcXx北京路号"
    seen_hits = 0
    for _ in range(3000):
        s = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30)))
        for extra in ("13812345678", "+86 138-1234-5678", "110101199003077777", "wang@example.cn"):
            if rnd.random() < 0.1:
                s = s[: len(s) // 2] + extra + s[len(s) // 2:]
        hit = any(p.search(s) for p in pats)
        seen_hits += hit
        if hit:
            assert may_hold_personal_data(pa.array(["plain", s, None])), s
    assert seen_hits > 100
    assert not may_hold_personal_data(pa.array(["POI 1234567890", "北京市朝阳区", None]))
    assert not may_hold_personal_data(pa.array([], type=pa.string()))


def test_python_screen_of_small_dictionaries_agrees_with_numba(tmp_path: Path) -> None:
    """The commit screens small Parquet dictionaries (stations, units) in Python to spare numba's load:
    the same answer as may_hold_personal_data on every value, and detect_personal_columns finds the
    same columns through either road."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    from citytwin.foundation import piiscan
    from citytwin.foundation import workspace as wsmod
    from citytwin.foundation.cleannumba import may_hold_personal_data

    rnd = random.Random(1)
    alphabet = "0123456789 -@.ab北京１"
    for _ in range(3000):
        vals = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 16))) for _ in range(rnd.randint(0, 3))]
        assert piiscan.may_hold_personal_py(vals) == may_hold_personal_data(pa.array(vals, pa.string())), vals
    n = 30_000  # "many": more distinct values than the Python screen takes (numba then)
    table = pa.table({"station": ["Dongsi", "Tiantan"] * (n // 2), "tel": ["窗口"] * (n - 1) + ["13812345678"],
                      "many": [f"v{i}" for i in range(n - 1)] + ["me@x.cn"], "ids": [f"P{i:09d}" for i in range(n)]})
    pq.write_table(table, tmp_path / "t.parquet")
    assert piiscan.screen_personal(str(tmp_path / "*.parquet"), ["station", "tel", "many", "ids"]) == ["tel", "many"]
    assert wsmod.detect_personal_columns(str(tmp_path / "*.parquet")) == {"tel": "text", "many": "text"}
