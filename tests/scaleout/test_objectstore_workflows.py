"""``s3://`` inputs of the economy index, disparity and life circles on Dask (issue 19), against moto's S3
server in this process (not AWS; the fixtures of ``test_objectstore``).

The same inputs are uploaded with s3fs and read from the local files: the results are equal (the index to
the last bit: the same tasks on the same bytes; disparity's CSVs byte for byte; life circles' homes and
coverage exactly). The client only lists the objects (its s3fs opens are recorded: none); the workers read
the Parquet metadata and rows. Errors name the URL (exit 2, JSON with ``--json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.scaleout.conftest import BUCKET, NEGATIVE, life_grid
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.errors import InputError

pytestmark = pytest.mark.integration

runner = CliRunner()


def _upload(s3: dict[str, Any], files: list[Path], prefix: str) -> list[str]:
    """``files`` put under ``s3://BUCKET/PREFIX/`` (by name); their URLs."""
    urls = []
    for f in files:
        s3["fs"].put_file(str(f), f"{BUCKET}/{prefix}/{f.name}")
        urls.append(f"s3://{BUCKET}/{prefix}/{f.name}")
    return urls


@pytest.mark.shared_data
@pytest.mark.parametrize(("method", "scope"), [("entropy", "pooled"), ("topsis", "pooled"), ("critic", "per_year")])
def test_index_from_s3_equals_the_local_files_and_the_client_opens_none(
        s3: dict[str, Any], address: str, client_reads: list[str], city_panel: Any,
        method: str, scope: str) -> None:
    """The real city panel (287 cities x 2004-2012) in 3 Parquet parts, from s3:// and from the folder."""
    from citytwin.workflows import scaleout

    _panel, folder, cols = city_panel
    spec = {"id": "城市", "time": "年份", "indicators": [
        {"column": c, "direction": "negative" if c in NEGATIVE else "positive"} for c in cols]}
    _upload(s3, sorted(folder.glob("*.parquet")), "panel")
    local = scaleout.index(str(folder), spec, method, scope=scope, dask=address)
    remote = scaleout.index(f"s3://{BUCKET}/panel/", spec, method, scope=scope, dask=address)
    assert client_reads == []  # listed here, read by the workers
    pd.testing.assert_frame_equal(local.scores, remote.scores, check_exact=True)
    pd.testing.assert_frame_equal(local.weights, remote.weights, check_exact=True)
    assert local.warnings == remote.warnings and local.options["n_rows"] == remote.options["n_rows"] == 1989


def test_index_cli_from_s3_writes_what_the_local_panel_gives(s3: dict[str, Any], tmp_path: Path) -> None:
    """``citytwin economy index s3://… --dask local:2`` (periods interleaved in row groups of 40)."""
    rng = np.random.default_rng(5)
    n = 120
    panel = pd.DataFrame({"city": np.tile([f"c{i:03d}" for i in range(n)], 3), "year": np.repeat([2019, 2020, 2021], n),
                          "gdp": rng.lognormal(2, 0.5, 3 * n), "so2": rng.lognormal(1, 0.3, 3 * n)})
    panel = panel.sample(frac=1.0, random_state=2).reset_index(drop=True)
    (tmp_path / "p").mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(panel)), 2)):
        panel.iloc[rows].to_parquet(tmp_path / "p" / f"part-{i}.parquet", row_group_size=40)
    _upload(s3, sorted((tmp_path / "p").glob("*.parquet")), "cli-panel")
    spec = tmp_path / "spec.yaml"
    spec.write_text("id: city\ntime: year\nindicators:\n  - {column: gdp}\n  - {column: so2, direction: negative}\n",
                    encoding="utf-8")
    outs = {}
    for name, src in (("local", str(tmp_path / "p")), ("s3", f"s3://{BUCKET}/cli-panel/*.parquet")):
        r = runner.invoke(app, ["economy", "index", src, "--spec", str(spec), "--out", str(tmp_path / name),
                                "--dask", "local:2"])
        assert r.exit_code == 0, r.output
        outs[name] = (tmp_path / name / "scores.csv").read_bytes(), (tmp_path / name / "weights.csv").read_bytes()
    assert outs["s3"] == outs["local"]
    assert len(pd.read_csv(tmp_path / "s3" / "scores.csv")) == 3 * n


def _mexico(folder: Path) -> list[Path]:
    """libpysal's Mexico states' GDP per capita (1940-2000) as a long panel in 3 shuffled Parquet parts."""
    import geopandas as gpd
    from libpysal.examples import get_path

    g = gpd.read_file(get_path("mexicojoin.shp"))
    years = [1940, 1950, 1960, 1970, 1980, 1990, 2000]
    long = g.drop(columns="geometry").melt(id_vars=["NAME", "HANSON98"], value_vars=[f"PCGDP{y}" for y in years],
                                           var_name="year", value_name="pcgdp")
    long["year"] = long["year"].str[5:].astype(int)
    long = long.sample(frac=1.0, random_state=4).reset_index(drop=True)
    files = []
    for i, rows in enumerate(np.array_split(np.arange(len(long)), 3)):
        files.append(folder / f"part-{i}.parquet")
        long.iloc[rows].to_parquet(files[-1])
    return files


def test_disparity_from_s3_writes_every_file_the_local_panel_gives(s3: dict[str, Any], address: str,
                                                                  client_reads: list[str], tmp_path: Path) -> None:
    from citytwin.workflows.disparity import run_disparity

    (tmp_path / "mx").mkdir()
    _upload(s3, _mexico(tmp_path / "mx"), "mx")
    kw: dict[str, Any] = {"value": "pcgdp", "group": "HANSON98", "time": "year", "id_col": "NAME"}
    one = run_disparity(str(tmp_path / "mx"), out=tmp_path / "one", dask=address, **kw)
    two = run_disparity(f"s3://{BUCKET}/mx/", out=tmp_path / "two", dask=address, **kw)
    assert client_reads == []
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    for f in (tmp_path / "one").glob("*.csv"):
        assert (tmp_path / "two" / f.name).read_bytes() == f.read_bytes(), f.name
    assert two.options["rows_used"] == one.options["rows_used"] == 32 * 7


@pytest.mark.parametrize("case", ["text", "twice", "no period"])
def test_disparity_bad_rows_from_s3_named_by_the_workers(s3: dict[str, Any], address: str, client_reads: list[str],
                                                        tmp_path: Path, case: str) -> None:
    """A value that is not a number, a unit twice, a text value without a period: the error one process gives
    for the local file (row, field, hint), and the client opens no object (the workers place the row)."""
    from tests.scaleout.test_scaleout_disparity import bad_panels

    from citytwin.workflows.disparity import run_disparity

    (tmp_path / "mx").mkdir()
    files = _mexico(tmp_path / "mx")
    frame, says = bad_panels(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True))[case]
    local = tmp_path / f"{case.replace(' ', '-')}.parquet"
    frame.to_parquet(local, row_group_size=32)
    url = _upload(s3, [local], f"bad-{local.stem}")[0]
    kw: dict[str, Any] = {"value": "pcgdp", "group": "HANSON98", "time": "year", "id_col": "NAME"}
    with pytest.raises(InputError) as want:
        run_disparity(str(local), out=tmp_path / "one", **kw)
    client_reads.clear()
    with pytest.raises(InputError) as got:
        run_disparity(url, out=tmp_path / "two", dask=address, **kw)
    assert client_reads == []
    assert says in str(want.value) and str(got.value) == str(want.value) and got.value.row == want.value.row


def test_disparity_cli_json_from_s3(s3: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "mx").mkdir()
    _upload(s3, _mexico(tmp_path / "mx"), "mx-cli")
    r = runner.invoke(app, ["economy", "disparity", f"s3://{BUCKET}/mx-cli/", "--value", "pcgdp", "--group", "HANSON98",
                            "--time", "year", "--out", str(tmp_path / "o"), "--dask", "local:2", "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["options"]["panel"] == f"s3://{BUCKET}/mx-cli/" and (tmp_path / "o" / "dagum.csv").exists()


def test_life_circles_from_s3_layers_equal_the_local_files(s3: dict[str, Any], address: str,
                                                           client_reads: list[str], tmp_path: Path) -> None:
    from citytwin.workflows import scaleout

    files, cats = life_grid(tmp_path)
    urls = dict(zip(files, _upload(s3, [Path(f) for f in files.values()], "life"), strict=True))
    local = scaleout.life_circles(dask=address, categories=cats, **files)
    for parts in ({}, {"max_distance": 1500.0, "partitions": True}):
        remote = scaleout.life_circles(dask=address, categories=cats, **urls, **parts)  # type: ignore[arg-type]
        whole = local if not parts else scaleout.life_circles(dask=address, categories=cats, **files, **parts)
        pd.testing.assert_frame_equal(whole.homes, remote.homes, check_exact=True)
        pd.testing.assert_frame_equal(whole.coverage, remote.coverage, check_exact=True)
        assert {k: v for k, v in remote.report.items() if k != "dask"} == {
            k: v for k, v in whole.report.items() if k != "dask"}
    assert client_reads == []
    assert remote.report["network"]["components"] == 2


def _life_cmd(s3url: str, other: dict[str, str]) -> list[str]:
    return ["spatial", "lifecircle", "--nodes", s3url, "--streets", other["streets"], "--pois", other["pois"],
            "--buildings", other["buildings"], "--json", "--dask", "local:2"]


@pytest.mark.parametrize("case", ["no bucket", "no object", "not parquet", "pbf url", "no dask"])
def test_object_errors_of_index_disparity_and_life_circles_name_the_url(
        s3: dict[str, Any], tmp_path: Path, case: str) -> None:
    """Each an InputError naming the URL, exit 2, valid JSON where the command has --json."""
    files, _ = life_grid(tmp_path)
    url = {"no bucket": "s3://no-such-bucket/p/nodes.parquet", "no object": f"s3://{BUCKET}/nothing-here/x.parquet",
           "not parquet": f"s3://{BUCKET}/empty/readme.txt", "pbf url": f"s3://{BUCKET}/osm/city.osm.pbf",
           "no dask": f"s3://{BUCKET}/pts/"}[case]
    spec = tmp_path / "spec.yaml"
    spec.write_text("id: city\ntime: year\nindicators:\n  - {column: gdp}\n", encoding="utf-8")
    dask = [] if case == "no dask" else ["--dask", "local:2"]
    disp = runner.invoke(app, ["economy", "disparity", url, "--value", "v", "--group", "g", "--time", "t",
                               "--out", str(tmp_path / "d"), "--json", *dask])
    index = runner.invoke(app, ["economy", "index", url, "--spec", str(spec), "--out", str(tmp_path / "i"), *dask])
    life = runner.invoke(app, (["spatial", "lifecircle", url, "--json", *dask] if case == "pbf url"
                               else _life_cmd(url, files)[:-2] + dask))
    for r in (disp, index, life):
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output and url in r.output, r.output
    for r in (disp, life):
        rec = json.loads(r.stdout)
        assert url in rec["error"], rec
    want = {"no bucket": "no such bucket", "no object": "no ", "not parquet": "Parquet",
            "pbf url": "pyrosm", "no dask": "--dask"}[case]
    assert want in json.loads(life.stdout)["error"]
    if case in ("no bucket", "no dask"):
        assert want in json.loads(disp.stdout)["error"] and want in index.output


def test_life_circle_objects_that_are_not_a_parquet_network_are_refused(s3: dict[str, Any], tmp_path: Path,
                                                                         address: str) -> None:
    """Streets as objects must be the edge list u, v, length (its schema read by a worker)."""
    from citytwin.workflows import scaleout

    files, cats = life_grid(tmp_path)
    wrong = _upload(s3, [Path(files["pois"])], "life-wrong")[0]  # points, not an edge list
    with pytest.raises(InputError, match="not a Parquet network") as info:
        scaleout.life_circles(dask=address, categories=cats, **dict(files, streets=wrong))
    assert wrong in str(info.value)
