"""Connections from :func:`citytwin.foundation.duck.connect` keep nothing of the files they read."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from citytwin.foundation import duck


def _read_files(con: duckdb.DuckDBPyConnection, folder: Path, n: int) -> int:
    for i in range(n):
        f = folder / f"f{i}.parquet"
        pq.write_table(pa.table({"a": list(range(1000))}), f)
        assert con.sql(f"SELECT sum(a) FROM read_parquet('{f}')").fetchone() == (499_500,)
        f.unlink()
    row = con.sql("SELECT count(*) FROM duckdb_external_file_cache()").fetchone()
    assert row is not None
    return int(row[0])


def test_no_external_file_cache(tmp_path: Path) -> None:
    # DuckDB's own default keeps blocks of every file read (the files are deleted, the blocks stay): the control
    # shows the mechanism exists in this DuckDB, so the assertion on ours can fail.
    assert _read_files(duckdb.connect(), tmp_path, 5) > 0
    assert _read_files(duck.connect(spatial=False), tmp_path, 5) == 0
