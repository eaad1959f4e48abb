"""Wide files (issue 12): a CSV thousands of columns wide is checked in column blocks
(``foundation.ingest.blocks``), with every value stored exactly, and the same records and
quarantine as one query over all columns gives."""

from __future__ import annotations

import glob
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from citytwin.foundation.ingest import blocks, ingest
from citytwin.foundation.workspace import Workspace


def _value(i: int, j: int) -> str:
    """Source text of row i, column j: decimals, whole numbers, grouped thousands, a missing token."""
    k = (i * 7919 + j * 104_729) % 10_007
    if j % 97 == 5 and i % 3 == 1:
        return "…"  # a yearbook's missing mark
    if j % 50 == 3:
        return f'"{k * 1000 + j:,}"'  # "1,234,567"
    return f"{k / 8:g}" if j % 2 else str(k - 5000)


def _expected(i: int, j: int) -> float | None:
    text = _value(i, j).strip('"')
    return None if text == "…" else float(text.replace(",", ""))


def _wide_csv(path: Path, rows: int, cols: int, bad: tuple[int, int] | None = None) -> Path:
    lines = ["city," + ",".join(f"indicator_{j}" for j in range(cols))]
    for i in range(rows):
        vals = [_value(i, j) for j in range(cols)]
        if bad is not None and bad[0] == i:
            vals[bad[1]] = "n.a.x"
        lines.append(f"city {i}," + ",".join(vals))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _stored(ws: Workspace, name: str) -> pd.DataFrame:
    files = sorted(glob.glob(ws.parquet_glob(name)))
    return duckdb.connect().sql(f"SELECT * FROM read_parquet({files!r})").df()


def test_5000_columns_every_value_exact(workspace: Workspace, tmp_path: Path) -> None:
    rows, cols = 12, 5000
    path = _wide_csv(tmp_path / "wide.csv", rows, cols)
    r = ingest(workspace, path, dataset="wide", schema="table", h3=False)
    assert (r.rows_read, r.rows_kept, r.rows_quarantined) == (rows, rows, 0)
    assert workspace.catalog.get("wide").current.params["pipeline"] == "streamed"
    df = _stored(workspace, "wide")
    assert list(df.columns) == ["city", *[f"indicator_{j}" for j in range(cols)]]
    assert df["city"].tolist() == [f"city {i}" for i in range(rows)]
    want = pd.DataFrame({f"indicator_{j}": [_expected(i, j) for i in range(rows)] for j in range(cols)}, dtype="float64")
    pd.testing.assert_frame_equal(df.drop(columns="city"), want)
    assert {c["name"]: c.get("type") for c in r.columns}["indicator_3"] == "DOUBLE"


@pytest.mark.parametrize("stream", [True, False])
def test_blocks_give_what_one_query_gives(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          stream: bool) -> None:
    # 300 columns in blocks of 64 against one query of all 300 (the plan without blocks), on a file
    # with one value that is not a number (row 4, column indicator_211): the streamed pass hands over
    # to the staged pipeline, which quarantines that record with its row, field and reason either way
    path = _wide_csv(tmp_path / "wide.csv", 9, 300, bad=(3, 211))
    monkeypatch.setattr(blocks, "COLUMN_BLOCK", 64)
    a = ingest(workspace, path, dataset="blocked", schema="table", h3=False, stream=stream)
    monkeypatch.setattr(blocks, "COLUMN_BLOCK", 10_000)
    b = ingest(workspace, path, dataset="whole", schema="table", h3=False, stream=stream)
    assert (a.rows_kept, a.rows_quarantined) == (b.rows_kept, b.rows_quarantined) == (8, 1)
    pd.testing.assert_frame_equal(_stored(workspace, "blocked"), _stored(workspace, "whole"))
    qa, qb = workspace.quarantine("blocked"), workspace.quarantine("whole")
    pd.testing.assert_frame_equal(qa, qb)
    assert qa[["row", "field"]].values.tolist() == [[4, "indicator_211"]]
    assert "not a number: n.a.x" in qa["reason"].iloc[0]
    assert a.columns == b.columns


def test_column_blocks_split_the_plan() -> None:
    from citytwin.foundation.ingest.plan import Column, Plan

    plan = Plan(columns=[Column(name=f"c{i}", expr=f'"r:s{i}"') for i in range(5)],
                raw={f"s{i}": f"x{i}" for i in range(5)}, reason_column="_cell_problem")
    parts = blocks.column_blocks(plan, 2)
    assert [[c.name for c in p.columns] for p in parts] == [["c0", "c1"], ["c2", "c3"], ["c4"]]
    assert [sorted(p.raw) for p in parts] == [["s0", "s1"], ["s2", "s3"], ["s4"]]
    assert [p.reason_column for p in parts] == ["_cell_problem", None, None]
    assert blocks.rows_per_group(5000) == 1024 and blocks.rows_per_group(3) == 122_880
