"""The zones' ids the client of ``points_per_zone`` reads (only the id column of a GeoParquet file) equal what
reading the whole zones file gives (``_zones(...)[id].tolist()``), for every kind of id; errors as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError


def _zones_file(folder: Path, ids: pd.Series, name: str, index: pd.Index | None = None) -> Path:
    import geopandas as gpd
    from shapely.geometry import box

    n = len(ids)
    z = gpd.GeoDataFrame({"zone": ids, "other": np.arange(n)},
                         geometry=[box(i, 0, i + 1, 1) for i in range(n)], crs=4326)
    if index is not None:
        z.index = index
    path = folder / name
    z.to_parquet(path)
    return path


@pytest.mark.parametrize("ids", [
    pd.Series(["a", "b", "c", "a"]),
    pd.Series(["a", None, "c", "d"]),
    pd.Series([3, 1, 2, 7], dtype="int64"),
    pd.Series([3.0, np.nan, 2.5, 1.0]),
    pd.Series(pd.array([3, None, 2, 1], dtype="Int64")),
    pd.Series(["七", "八", "九", "十"], dtype=object),
], ids=["text", "text-null", "int", "float-nan", "nullable-int", "object"])
def test_zone_ids_from_the_id_column_equal_the_whole_read(tmp_path: Path, ids: pd.Series) -> None:
    from citytwin.workflows.scaleout import _zone_ids, _zones

    for k, index in enumerate([None, pd.Index(["w", "x", "y", "z"], name="key")]):
        f = str(_zones_file(tmp_path, ids, f"z{k}.parquet", index))
        whole = _zones(f, "zone")["zone"].tolist()
        got = _zone_ids(f, "zone")
        assert len(got) == len(whole)
        for a, b in zip(got, whole, strict=True):  # same values and Python types; missing where missing
            assert type(a) is type(b)
            assert bool(pd.isna(a)) == bool(pd.isna(b))
            assert pd.isna(a) or a == b


def test_zone_ids_read_only_the_id_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path does not read the polygons (``_zones`` is not called for a GeoParquet file with the column)."""
    from citytwin.workflows import scaleout

    f = str(_zones_file(tmp_path, pd.Series(["a", "b"]), "z.parquet"))

    def whole(*_: object) -> None:
        raise AssertionError("the whole zones file was read")

    monkeypatch.setattr(scaleout, "_zones", whole)
    assert scaleout._zone_ids(f, "zone") == ["a", "b"]


def test_zone_ids_errors_as_the_whole_read(tmp_path: Path) -> None:
    from citytwin.workflows.scaleout import _zone_ids

    f = str(_zones_file(tmp_path, pd.Series(["a", "b"]), "z.parquet"))
    with pytest.raises(InputError, match="no column 'zone_id'") as e:
        _zone_ids(f, "zone_id")
    assert e.value.field == "zone_id"
    plain = tmp_path / "plain.parquet"  # Parquet without GeoParquet metadata: GeoPandas' error, as before
    pd.DataFrame({"zone": ["a"]}).to_parquet(plain)
    with pytest.raises(InputError, match="cannot read the zones"):
        _zone_ids(str(plain), "zone")
    with pytest.raises(InputError, match="cannot read the zones"):
        _zone_ids(str(tmp_path / "missing.parquet"), "zone")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot read the zones"):
        _zone_ids(str(bad), "zone")
