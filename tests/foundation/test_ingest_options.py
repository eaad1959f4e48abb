"""``ingest()``'s options: the :class:`IngestOptions` object and the keyword arguments are the same thing.

Also the administrative representative points' H3 cells (staged pipeline), which come from the one
H3 interface: compared with h3-py.
"""

from __future__ import annotations

import glob
import typing
from dataclasses import fields
from pathlib import Path

import duckdb
import h3
import pandas as pd
import pytest

from citytwin.foundation.ingest import IngestOptions, ingest
from citytwin.foundation.ingest.options import IngestKwargs
from citytwin.foundation.workspace import Workspace


def _stored(ws: Workspace, name: str) -> pd.DataFrame:
    files = sorted(glob.glob(ws.parquet_glob(name)))
    return duckdb.connect().sql(f"SELECT * FROM read_parquet({files!r})").df()


def _csv(tmp_path: Path) -> Path:
    p = tmp_path / "poi.csv"
    p.write_text("poi_id,name,category,lon,lat\nA,  one ,shop,116.41,39.91\nB,NA,bank,116.42,39.92\n",
                 encoding="utf-8")
    return p


def test_keyword_arguments_name_every_option() -> None:
    # the typed keyword arguments (IngestKwargs) and the dataclass list the same options
    hints = typing.get_type_hints(IngestKwargs)
    assert set(hints) == {f.name for f in fields(IngestOptions)}
    assert IngestOptions().classification == "internal" and IngestOptions().h3 and IngestOptions().stream


def test_options_object_equals_keyword_arguments(workspace: Workspace, tmp_path: Path) -> None:
    path = _csv(tmp_path)
    seen: list[str] = []
    a = ingest(workspace, path, dataset="a", schema="poi", h3=False, stream=False, description="d",
               classification="public", progress=seen.append)
    b = ingest(workspace, path, dataset="b", schema="poi",
               options=IngestOptions(h3=False, stream=False, description="d", classification="public"))
    assert (a.rows_read, a.rows_kept, a.columns) == (b.rows_read, b.rows_kept, b.columns)
    pd.testing.assert_frame_equal(_stored(workspace, "a"), _stored(workspace, "b"))
    assert "h3" not in _stored(workspace, "a").columns
    va, vb = workspace.catalog.get("a"), workspace.catalog.get("b")
    assert va.current.params["pipeline"] == vb.current.params["pipeline"] == "staged"
    assert va.classification == vb.classification == "public"
    assert seen and seen[-1] == "committing"
    # a keyword argument overrides the same field of options=
    c = ingest(workspace, path, dataset="c", schema="poi", options=IngestOptions(h3=False), h3=True)
    assert c.rows_kept == 2 and "h3" in _stored(workspace, "c").columns


def test_unknown_keyword_argument_is_a_type_error(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="h3_resolution"):
        ingest(workspace, _csv(tmp_path), dataset="a", schema="poi", h3_resolution=8)  # type: ignore[call-arg]
    assert not workspace.catalog.exists("a")


def test_admin_points_get_h3_cells_of_the_interface(workspace: Workspace, tmp_path: Path) -> None:
    # records with only an administrative code get the unit's representative point and its cell
    from citytwin.foundation.boundaries import admin_points

    p = tmp_path / "units.csv"
    p.write_text("adcode,name\n110000,北京市\n440300,深圳市\n999999,nowhere\n", encoding="utf-8")
    ingest(workspace, p, dataset="u", schema="admin_unit")
    df = _stored(workspace, "u")
    pts = admin_points().set_index("adcode")
    want = [h3.latlng_to_cell(pts.loc[c, "lat"], pts.loc[c, "lon"], 9) if c in pts.index else None
            for c in df["adcode"].astype(str)]
    assert df["h3"].tolist()[:2] == want[:2] and want[0] is not None
    assert pd.isna(df["h3"].iloc[2]) and want[2] is None
