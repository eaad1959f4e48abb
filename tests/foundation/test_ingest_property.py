"""Property: ingest never stores a value different from the source's meaning (issue 12).

Hypothesis writes tiny CSV files of generated numbers (integers, floats with up to 17 significant
digits, negatives, exponents, thousands separators; in ';'-separated files with decimal commas too),
missing-value tokens, unparseable text, and dates in the formats Chinese files use. Every kept value
must equal the generated one exactly; every unparseable one must be quarantined with its reason;
nothing else. Both pipelines (streamed and staged) are exercised.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citytwin.foundation.ingest import ingest
from citytwin.foundation.workspace import Workspace

SCHEMA = ("name: prop\nkey: [id]\nfields:\n  - {name: id, type: string, required: true}\n"
          "  - {name: v, type: float}\n  - {name: d, type: date}\n")

FINITE = st.one_of(
    st.integers(min_value=-10**15, max_value=10**15).map(float),
    st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False).filter(
        lambda x: x == 0 or abs(x) >= 1e-300),
)
STYLES = ("repr", "g17", "exp", "grouped")
MISSING = ("", "NA", "null", "…", "*", "暂无", "-", "—")
JUNK = ("abc", "1.2.3", "12abc", "n.a.", "1,2,3", "x")
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y%m%d")


def _render(x: float, style: str, decimal_comma: bool) -> str:
    if style == "repr":
        s = repr(x)
    elif style == "g17":
        s = f"{x:.17g}"
    elif style == "exp":
        s = f"{x:.16e}"
    else:
        s = format(x, ",")  # "1,234,567.5" (Python's shortest repr digits, grouped by three)
    if decimal_comma:  # swap the marks: "1.234.567,5"
        s = s.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return s


CELL = st.one_of(
    st.tuples(st.just("num"), FINITE, st.sampled_from(STYLES)),
    st.tuples(st.just("missing"), st.sampled_from(MISSING), st.just("")),
    st.tuples(st.just("junk"), st.sampled_from(JUNK), st.just("")),
)
DATES = st.tuples(st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2030, 12, 31)),
                  st.sampled_from(DATE_FORMATS))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=st.lists(st.tuples(CELL, DATES), min_size=1, max_size=6), decimal_comma=st.booleans(),
       stream=st.booleans())
def test_stored_values_equal_the_source(cells: list[tuple[tuple[str, object, str], tuple[dt.date, str]]],
                                        decimal_comma: bool, stream: bool) -> None:
    delim = ";" if decimal_comma else ","
    rows: list[list[str]] = [["id", "v", "d"]]
    want: dict[str, float | None] = {}
    want_date: dict[str, dt.date] = {}
    junk: set[str] = set()
    if decimal_comma:
        rows.append(["anchor", "0,5", "2020-01-01"])  # the file's convention shows in its values
        want["anchor"], want_date["anchor"] = 0.5, dt.date(2020, 1, 1)
    for i, ((kind, value, style), (day, fmt)) in enumerate(cells):
        rid = f"r{i}"
        if kind == "num":
            assert isinstance(value, float)
            text = _render(value, style, decimal_comma)
            want[rid] = value
        elif kind == "missing":
            text = str(value)
            want[rid] = None
        else:
            text = str(value)
            junk.add(rid)
        rows.append([rid, text, day.strftime(fmt)])
        want_date[rid] = day
    buf = io.StringIO()
    csv.writer(buf, delimiter=delim, lineterminator="\n").writerows(rows)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        ws = Workspace.init(root / "ws", owner="admin")
        ws.schemas_dir.mkdir(exist_ok=True)
        (ws.schemas_dir / "prop.yaml").write_text(SCHEMA, encoding="utf-8")
        p = root / "gen.csv"
        p.write_text(buf.getvalue(), encoding="utf-8")
        if not want:  # every value unparseable: nothing to store, a clear error instead
            try:
                ingest(ws, p, dataset="g", schema="prop", stream=stream)
            except Exception as exc:
                assert "quarantined" in str(exc), exc
                return
            raise AssertionError("all rows quarantined, yet stored")
        r = ingest(ws, p, dataset="g", schema="prop", stream=stream)
        assert r.rows_quarantined == len(junk), (r.reasons, buf.getvalue())
        assert all(k.startswith("v: not a number") for k in r.reasons), r.reasons
        if junk:
            q = ws.quarantine("g")
            assert {json.loads(rec)["id"] for rec in q["record"]} == junk  # raw records kept
        df = ws.read("g")
        got = dict(zip(df["id"], df["v"], strict=True))
        assert set(got) == set(want), (got, want)
        for k, v in want.items():
            g = got[k]
            if v is None:
                assert g is None or (isinstance(g, float) and math.isnan(g)), (k, g)
            else:
                assert g == v, (k, g, v, buf.getvalue())
        for k, day in zip(df["id"], df["d"], strict=True):
            assert day == want_date[k], (k, day, want_date[k])
