"""Disparity on Dask: the workers read their periods of the Parquet panel; the client its period column only.

Every file ``run_disparity`` writes (the per-period tables from the workers, the cross-period and spatial
statistics from the clean rows they send back) equals one process's byte for byte, on libpysal's Mexico
states panel (1940-2000) with its boundaries (Moran, LISA, Getis-Ord, spatial Markov). Bad input gives
the error one process gives, naming the same row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError

YEARS = [1940, 1950, 1960, 1970, 1980, 1990, 2000]


@pytest.fixture(scope="module")
def mexico(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The Mexico states' GDP per capita as a long panel: one Parquet file, a folder of 3 parts (rows
    shuffled, so a period's rows lie in every part), and the state boundaries."""
    import geopandas as gpd
    from libpysal.examples import get_path

    shp = Path(get_path("mexicojoin.shp"))
    g = gpd.read_file(shp)
    long = g.drop(columns="geometry").melt(id_vars=["NAME", "HANSON98"], value_vars=[f"PCGDP{y}" for y in YEARS],
                                           var_name="year", value_name="pcgdp")
    long["year"] = long["year"].str[5:].astype(int)
    long = long.sample(frac=1.0, random_state=4).reset_index(drop=True)
    d = tmp_path_factory.mktemp("mx")
    long.to_parquet(d / "panel.parquet")
    (d / "parts").mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(long)), 3)):
        long.iloc[rows].to_parquet(d / "parts" / f"part-{i}.parquet")
    return d / "panel.parquet", d / "parts", shp



def _spy_reads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``columns`` of every ``pd.read_parquet`` call in this process from now on (the workers read with
    pandas unwatched); ``monkeypatch.undo()`` stops it."""
    reads: list[Any] = []
    real = pd.read_parquet

    def spy(path: Any, *args: Any, **kwargs: Any) -> pd.DataFrame:
        reads.append(kwargs.get("columns"))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", spy)
    return reads

def test_workers_read_their_periods_and_every_file_equals_one_process(mexico, dask_address: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from citytwin.workflows.disparity import run_disparity

    panel, parts, shp = mexico
    kw: dict[str, Any] = {"value": "pcgdp", "group": "HANSON98", "time": "year", "boundaries": str(shp),
                          "id_col": "NAME", "permutations": 99}
    one = run_disparity(str(panel), out=tmp_path / "one", **kw)
    reads = _spy_reads(monkeypatch)
    two = run_disparity(str(parts), out=tmp_path / "two", dask=dask_address, **kw)
    monkeypatch.undo()
    assert reads == [["year"]] * 3, reads  # the client read the period column of each part, nothing else
    # (the parts' row groups hold every year: a file per year gives the periods from its statistics)
    assert one.files == two.files and {"beta.csv", "markov.csv", "moran.csv", "lisa.csv", "getis_ord.csv",
                                       "spatial_markov.csv", "dagum_pairs.csv"} <= set(one.files)
    for f in one.files[:-1]:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
    assert one.rows_dropped == two.rows_dropped == 0 and two.options["dask"]["cluster"] == dask_address


def bad_panels(long: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str]]:
    """Panels one process refuses (rows sorted by year: a row group of 32 is one year), each with what its
    error says: text values that are not numbers in two periods (the first at row 41 of the panel, 3 in
    all), a state twice in a year (its second row last), and a text value in a row without a year (which
    one process checks before dropping the row)."""
    long = long.sort_values("year", kind="stable").reset_index(drop=True)
    text = long.assign(pcgdp=long["pcgdp"].astype(str))  # a text column (as a spreadsheet may give it)
    text.loc[40, "pcgdp"] = "n.a"  # 1950
    text.loc[[45, 150], "pcgdp"] = "?"  # 1950, 1980
    twice = pd.concat([long, long.iloc[[50]]], ignore_index=True)
    nope = long.assign(pcgdp=long["pcgdp"].astype(str)).astype({"year": "float64"})
    nope.loc[100, ["year", "pcgdp"]] = [np.nan, "x1"]
    return {"text": (text, "(row 41) is not a number"), "twice": (twice, "duplicate unit-period rows"),
            "no period": (nope, "(row 101) is not a number")}


@pytest.mark.parametrize("case", ["text", "twice", "no period"])
def test_bad_rows_are_named_by_the_workers_as_one_process_names_them(mexico, dask_address: str, tmp_path: Path,
                                                                     case: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A text value, a state twice in a year, a text value without a year: the task that finds it runs the
    one-process checks on its period's rows and places them in the panel; the error is one process's
    (message, row, field, hint: the count of the whole panel) and the client reads nothing of the panel
    (a row group per year: the periods from its statistics; without a year, the period column only)."""
    from citytwin.workflows import scaleout
    from citytwin.workflows.disparity import run_disparity

    panel, _, _ = mexico
    frame, says = bad_panels(pd.read_parquet(panel))[case]
    kw: dict[str, Any] = {"value": "pcgdp", "group": "HANSON98", "time": "year", "id_col": "NAME"}
    folder = tmp_path / "p"
    folder.mkdir()
    frame.to_parquet(folder / "p.parquet", row_group_size=32)
    with pytest.raises(InputError) as want:
        run_disparity(str(folder / "p.parquet"), out=tmp_path / "one", **kw)
    assert says in str(want.value)
    reads = _spy_reads(monkeypatch)
    with pytest.raises(InputError) as got:
        run_disparity(str(folder), out=tmp_path / "two", dask=dask_address, **kw)
    monkeypatch.undo()
    assert str(got.value) == str(want.value)
    assert (got.value.row, got.value.field, got.value.file) == (want.value.row, want.value.field, want.value.file)
    assert all(r == ["year"] for r in reads), reads  # at most the period column (row groups that do not tell)
    assert reads == ([["year"]] if case == "no period" else [])
    with pytest.raises(InputError) as tables:  # the tables alone: the same error
        scaleout.disparity(str(folder), dask=dask_address, **kw)
    assert str(tables.value) == str(want.value)


def test_a_column_the_panel_lacks_is_said_from_the_schemas(mexico, dask_address: str, tmp_path: Path) -> None:
    from citytwin.workflows.disparity import run_disparity

    panel, _, _ = mexico
    kw: dict[str, Any] = {"value": "pcgdp", "group": "region", "time": "year", "id_col": "NAME"}
    with pytest.raises(InputError) as got:  # before any task runs
        run_disparity(str(panel), out=tmp_path / "x", dask=dask_address, **kw)
    assert got.value.field == "region" and "HANSON98" in str(got.value)


@pytest.mark.parametrize("kind", ["int", "text"])
def test_periods_from_statistics_equal_the_period_column(tmp_path: Path, kind: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A file per period: the periods come from the row groups' statistics (nothing read); mixed periods
    or a missing one: the column is read. Either way what pandas reads of the column gives."""
    from citytwin.workflows.scaleout_files import parquet_periods

    def year(y: int) -> Any:
        return y if kind == "int" else f"Y{y}"

    for y in (2003, 2001, 2002):
        pd.DataFrame({"t": [year(y)] * 5, "v": np.arange(5.0)}).to_parquet(tmp_path / f"{y}.parquet")
    files = sorted(str(f) for f in tmp_path.glob("*.parquet"))

    def column(fs: list[str]) -> pd.Series:
        return pd.concat([pd.read_parquet(f, columns=["t"]) for f in fs], ignore_index=True)["t"]

    want = sorted(column(files).dropna().unique().tolist())
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: pytest.fail("read"))
    assert parquet_periods(files, "t") == (want, [0, 5, 10], 0)
    monkeypatch.undo()
    mixed = tmp_path / "mixed.parquet"
    pd.DataFrame({"t": [year(2001), None, year(2004)], "v": [1.0, 2.0, 3.0]}).to_parquet(mixed)
    files.append(str(mixed))
    col = column(files)
    assert parquet_periods(files, "t") == (sorted(col.dropna().unique().tolist()), [0, 5, 10, 15], 1)


@pytest.mark.parametrize("case", ["constant year", "a zero"])
def test_kernel_densities_skipped_as_one_process_skips_them(dask_address: str, tmp_path: Path, case: str) -> None:
    """The kernel densities are tasks on Dask: a year of equal values (kernel_density's error, said as a step
    skipped) and a value of 0 (no log: not computed) give one process's files, options.json included."""
    import json

    from citytwin.workflows.disparity import run_disparity

    rng = np.random.default_rng(8)
    panel = pd.DataFrame({"unit": np.tile([f"u{i}" for i in range(20)], 3), "year": np.repeat([2001, 2002, 2003], 20),
                          "g": np.tile(list("ab") * 10, 3), "v": rng.lognormal(1, 0.5, 60)})
    if case == "constant year":
        panel.loc[panel["year"] == 2002, "v"] = 1.0  # ln 1 = 0: no spread at all
    else:
        panel.loc[7, "v"] = 0.0
    panel.to_parquet(tmp_path / "p.parquet", row_group_size=20)
    kw: dict[str, Any] = {"value": "v", "group": "g", "time": "year", "id_col": "unit"}
    one = run_disparity(str(tmp_path / "p.parquet"), out=tmp_path / "one", **kw)
    two = run_disparity(str(tmp_path / "p.parquet"), out=tmp_path / "two", dask=dask_address, **kw)
    assert one.files == two.files and "kde_summary.csv" not in one.files
    assert one.options["skipped"] == two.options["skipped"]
    assert ("kernel density" if case == "constant year" else "sigma, beta, kernel density (log)") in one.options["skipped"]
    for f in one.files[:-1]:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
    opts = [json.loads((tmp_path / d / "options.json").read_text()) for d in ("one", "two")]
    assert opts[0] == {k: v for k, v in opts[1].items() if k != "dask"}


@pytest.mark.parametrize("case", ["balanced", "a unit missing", "ties"])
def test_markov_chain_from_the_tasks_classes_equals_one_process(mexico, dask_address: str, tmp_path: Path,
                                                                case: str) -> None:
    """The tasks class their period's units and the client counts the transitions: the same transitions,
    probabilities, steady state, classes and bounds as ``dynamics.markov`` on the clean rows. A unit missing
    in a period or too many ties: no chain from the tasks (``None``), and run_disparity then says what one
    process says (the step skipped with the same message), every file the same."""
    from citytwin.economy import dynamics
    from citytwin.workflows.disparity import run_disparity
    from citytwin.workflows.scaleout_disparity import disparity_parts

    panel, _, _ = mexico
    long = pd.read_parquet(panel)
    if case == "a unit missing":
        long = long.drop(index=long.index[(long["NAME"] == long["NAME"].iloc[0]) & (long["year"] == 1970)])
    elif case == "ties":
        long.loc[long["year"] == 1960, "pcgdp"] = 7.0  # one class only
    f = tmp_path / "p.parquet"
    long.to_parquet(f, row_group_size=16)
    kw: dict[str, Any] = {"value": "pcgdp", "group": "HANSON98", "time": "year", "id_col": "NAME"}
    split = disparity_parts(str(f), dask=dask_address, markov_k=5, **kw)
    assert split.frame is not None
    try:
        want = dynamics.markov(split.frame, value="pcgdp", time="year", id="NAME", k=5)
    except InputError as exc:
        assert split.markov is None
        says = exc.message
    else:
        assert case == "balanced" and split.markov is not None
        got = split.markov
        for name in ("transitions", "p", "classes"):
            pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name), check_exact=True)
        pd.testing.assert_series_equal(got.steady_state, want.steady_state, check_exact=True)
        assert all(np.array_equal(a, b) for a, b in zip(got.bins, want.bins, strict=True))
        assert want.transitions.to_numpy().sum() == 32 * 6  # 32 states, 7 years: every unit's 6 moves
    one = run_disparity(str(f), out=tmp_path / "one", **kw)
    two = run_disparity(str(f), out=tmp_path / "two", dask=dask_address, **kw)
    assert one.files == two.files and ("markov.csv" in one.files) == (case == "balanced")
    if case != "balanced":
        assert one.options["skipped"]["markov"] == two.options["skipped"]["markov"] == says
    for name in one.files[:-1]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
