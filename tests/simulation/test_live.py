"""A simulation published into the twin while it runs (real SUMO grid run, real twin stores and HTTP API):
each interval appears under ``?scenario=NAME`` while SUMO is still running (observed from the publish hook,
called between SUMO's steps), the finished scenario equals the post-hoc publish of the same run folder, and
a failed run leaves its scenario marked ``failed``, not silently partial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.conftest import served
from tests.simulation import grid
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.timeseries import HistoryStore, StateStore
from citytwin.foundation.workspace import Workspace
from citytwin.service.app import create_app
from citytwin.simulation.demand import Trip
from citytwin.workflows import simulation_twin as st
from citytwin.workflows.simulation_live import run_live

runner = CliRunner()
START = "2025-03-01T08:00:00Z"


@pytest.fixture()
def ws(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws", owner="admin")


def _trips() -> list[Trip]:
    return [Trip(f"t{k}", k * 6.0, "left1A1", "C1right1") for k in range(60)]


def _history(ws: Workspace, name: str) -> pd.DataFrame:
    h = HistoryStore(st.scenario_root(ws.root / "twin", name) / "history").query()
    h["entity"] = h["entity"].str.replace(f":scenario:{name}:", ":scenario:X:", regex=False)
    return h.sort_values(["entity", "property", "time"]).reset_index(drop=True)


def test_live_run_publishes_each_interval_while_running(ws: Workspace, tmp_path: Path) -> None:
    import libsumo

    base = grid.build(tmp_path / "base", _trips())
    token = ws.catalog.issue_token("admin", label="test")[1]
    seen: list[dict[str, Any]] = []
    with served(create_app(ws.root / "twin", workspace=ws),
               headers={"Authorization": f"Bearer {token}"}) as c:

        def sim_time() -> float | None:  # SUMO's clock while it runs; None once it has closed
            try:
                return float(libsumo.simulation.getTime())
            except libsumo.FatalTraCIError:
                return None

        def hook(meta: dict[str, Any]) -> None:  # called between SUMO's steps: the run is not over
            listed = {s["scenario"]: s for s in c.get("/twin/v1/scenarios").json()}
            ent = c.get("/ngsi-ld/v1/entities", params={"scenario": "live", "limit": 1000,
                                                        "options": "keyValues"}).json()
            seen.append({"intervals": meta["intervals_published"], "status": listed["live"]["status"],
                         "sim_time": sim_time(),
                         "with_obs": sum(1 for e in ent if "intensity" in e), "entities": len(ent),
                         "summary": (tmp_path / "run" / "summary.json").exists()})

        s = run_live(base, tmp_path / "run", ws, "live", start=START, on_interval=hook, seeds=1, interval=60.0,
                     detectors=True)
        iv = pd.read_csv(tmp_path / "run" / "edges_intervals.csv")
        n_iv = iv["end"].nunique()
        # the edges' intervals were published in order (the detectors' may come later: SUMO buffers their file),
        # all before the run's summary existed, each seen through the API while the scenario said "running";
        # all but the last (written when SUMO closes) while SUMO was still running, within a step or so of the
        # interval's end
        first = {}
        for x in seen:
            first.setdefault(x["intervals"], x)
        assert sorted(first) == list(range(1, n_iv + 1)) and not any(x["summary"] for x in seen)
        assert all(x["status"] == "running" for x in seen)
        for k in range(1, n_iv):
            assert first[k]["sim_time"] is not None and 60.0 * k <= first[k]["sim_time"] < 60.0 * (k + 1)
        assert first[n_iv]["sim_time"] is None
        assert first[1]["entities"] == 48 + 36 and 48 <= first[1]["with_obs"] <= seen[-1]["with_obs"] == 48 + 36
        listed = c.get("/twin/v1/scenarios").json()
        assert [(x["scenario"], x["status"]) for x in listed] == [("live", "complete")]
        assert s["published"]["observations"] == 3 * (len(iv) + len(pd.read_csv(tmp_path / "run" /
                                                                                 "detectors_intervals.csv")))

    # the final state equals the post-hoc publish of the same run folder (same start)
    res = runner.invoke(app, ["sim", "publish", str(tmp_path / "run"), "--scenario", "after", "--start", START,
                              "-w", str(ws.root), "--json"])
    assert res.exit_code == 0, res.output
    live, after = _history(ws, "live"), _history(ws, "after")
    assert len(live) == len(after) == s["published"]["observations"]
    assert (live[["entity", "property", "time"]] == after[["entity", "property", "time"]]).all().all()
    # values equal, up to the last bit the run's CSV (read back by the post-hoc publish) may round
    assert live["value"].to_numpy() == pytest.approx(after["value"].to_numpy(), rel=1e-12, nan_ok=True)


def test_live_run_with_seeds_shows_every_seed_while_running(ws: Workspace, tmp_path: Path) -> None:
    """Two seeds (edges and detectors): the scenario shows data from the first seed's first interval on, with the seed that runs
    (k of N); what the first seed shows is that seed's own run, and the finished scenario holds the mean over
    both seeds, equal to the post-hoc publish of the run folder."""
    import libsumo

    base = grid.build(tmp_path / "base", _trips())
    token = ws.catalog.issue_token("admin", label="test")[1]
    seen: list[dict[str, Any]] = []
    with served(create_app(ws.root / "twin", workspace=ws),
               headers={"Authorization": f"Bearer {token}"}) as c:

        def hook(meta: dict[str, Any]) -> None:
            try:
                sim_t: float | None = float(libsumo.simulation.getTime())
            except libsumo.FatalTraCIError:
                sim_t = None
            listed = {x["scenario"]: x for x in c.get("/twin/v1/scenarios").json()}["many"]
            ent = c.get("/ngsi-ld/v1/entities", params={"scenario": "many", "limit": 1000,
                                                        "options": "keyValues"}).json()
            seen.append({"seed": listed["seed_running"], "done": listed["seeds_done"], "status": listed["status"],
                         "sim_time": sim_t, "simulated_s": listed["simulated_s"],
                         "intensity": {e["name"]: e["intensity"] for e in ent if ":edge:" in e["id"]
                                       and "intensity" in e}})

        s = run_live(base, tmp_path / "run", ws, "many", start=START, on_interval=hook, seeds=2, interval=60.0,
                     detectors=True)
    assert s["published"]["status"] == "complete" and s["published"]["seeds_done"] == 2
    first = [x for x in seen if x["seed"] == 1]
    second = [x for x in seen if x["seed"] == 2]
    assert first and second and all(x["status"] == "running" for x in seen)
    assert all(x["done"] == 0 for x in first) and all(x["done"] == 1 for x in second)
    # the first seed is on show while SUMO still runs it, from its first interval on
    assert first[0]["sim_time"] is not None and 60.0 <= first[0]["sim_time"] < 120.0
    assert first[0]["simulated_s"] == 60.0 and first[0]["intensity"]
    # ... with that seed's own values: a run of seed 1 alone
    from citytwin.workflows.simulation import run

    run(base, tmp_path / "one", seeds=1, interval=60.0)
    one = pd.read_csv(tmp_path / "one" / "edges_intervals.csv")
    one = one[(one["end"] == 60.0) & ~one["edge"].str.startswith(":")].set_index("edge")["entered"]
    assert first[0]["intensity"] == {e: float(v) for e, v in one.items()}
    # the finished scenario is the mean over both seeds, as the post-hoc publish of the run folder
    res = runner.invoke(app, ["sim", "publish", str(tmp_path / "run"), "--scenario", "many-after", "--start", START,
                              "-w", str(ws.root)])
    assert res.exit_code == 0, res.output
    live, after = _history(ws, "many"), _history(ws, "many-after")
    assert len(live) == len(after) == s["published"]["observations"]
    assert (live[["entity", "property", "time"]] == after[["entity", "property", "time"]]).all().all()
    assert live["value"].to_numpy() == pytest.approx(after["value"].to_numpy(), rel=1e-12, nan_ok=True)
    # the run's results per edge are on the entities as the post-hoc publish puts them
    def static(name: str) -> dict[str, Any]:
        got = StateStore(st.scenario_root(ws.root / "twin", name) / "state.sqlite").query(limit=1000)
        return {e["static"]["name"]: {k: e["static"].get(k) for k in ("runMeanSpeedKmh", "runCo2Kg")} for e in got}

    assert static("many") == static("many-after") and static("many")["B1C1"]["runCo2Kg"] > 0
    # ... which is not seed 1 alone (else the check above could not tell the seeds apart)
    a, b = (pd.read_csv(tmp_path / d / "edges_intervals.csv").set_index(["end", "edge"])["speed"] for d in ("one", "run"))
    assert not a.reindex(b.index).equals(b)


def test_live_run_cli_and_failure_marks_the_scenario(ws: Workspace, tmp_path: Path) -> None:
    base = grid.build(tmp_path / "base", _trips())
    res = runner.invoke(app, ["sim", "run", str(base), "--seeds", "2", "--interval", "120", "--out",
                              str(tmp_path / "r2"), "--publish", "two", "--live", "--start", START, "-w", str(ws.root),
                              "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["published"]["status"] == "complete" and out["published"]["seeds"] == [1, 2]
    assert out["published"]["intervals_published"] == pd.read_csv(tmp_path / "r2" / "edges_intervals.csv")["end"].nunique()

    # two seeds: each interval is the mean over both, as in the run folder (the seeds' last intervals differ)
    res = runner.invoke(app, ["sim", "publish", str(tmp_path / "r2"), "--scenario", "two-after", "--start",
                              out["published"]["start"], "-w", str(ws.root)])
    assert res.exit_code == 0, res.output
    live, after = _history(ws, "two"), _history(ws, "two-after")
    assert len(live) == len(after) == out["published"]["observations"]
    assert (live[["entity", "property", "time"]] == after[["entity", "property", "time"]]).all().all()
    assert live["value"].to_numpy() == pytest.approx(after["value"].to_numpy(), rel=1e-12, nan_ok=True)

    # max-pressure control (its own stepping loop) published live too, equal to the post-hoc publish
    res = runner.invoke(app, ["sim", "signals", str(base), "--control", "maxpressure", "--seeds", "1", "--interval",
                              "120", "--detectors", "--out", str(tmp_path / "mp"), "--publish", "mp", "--live",
                              "--start", START, "-w", str(ws.root), "--json"])
    assert res.exit_code == 0, res.output
    mp = json.loads(res.stdout)
    assert mp["control"] == "maxpressure" and mp["published"]["status"] == "complete"
    res = runner.invoke(app, ["sim", "publish", str(tmp_path / "mp"), "--scenario", "mp-after", "--start", START,
                              "-w", str(ws.root)])
    assert res.exit_code == 0, res.output
    live, after = _history(ws, "mp"), _history(ws, "mp-after")
    assert len(live) == len(after) == mp["published"]["observations"] > 0
    assert live["value"].to_numpy() == pytest.approx(after["value"].to_numpy(), rel=1e-12, nan_ok=True)

    res = runner.invoke(app, ["sim", "run", str(base), "--out", str(tmp_path / "r3"), "--live", "-w", str(ws.root),
                              "--json"])
    assert res.exit_code == 2 and "--live needs --publish" in json.loads(res.stdout)["error"]

    class Boom(RuntimeError):
        pass

    def hook(meta: dict[str, Any]) -> None:
        if meta["intervals_published"] == 2:
            raise Boom("disk full")

    with pytest.raises(Exception, match="disk full"):
        run_live(base, tmp_path / "r4", ws, "broken", start=START, on_interval=hook, seeds=1, interval=60.0)
    assert not (tmp_path / "r4").exists()  # the run folder: nothing half-written
    listed = {x["scenario"]: x for x in st.list_scenarios(ws.root / "twin")}
    assert listed["broken"]["status"] == "failed" and "disk full" in listed["broken"]["error"]
    assert listed["broken"]["intervals_published"] == 2  # what was published stays, marked failed
    assert listed["two"]["status"] == "complete" and listed["two-after"]["status"] == "complete"
    assert listed["mp"]["status"] == "complete"

    # a process that died while its scenario said "running" is reported failed
    meta = json.loads((st.scenario_root(ws.root / "twin", "two") / st.META).read_text())
    st.write_meta(st.scenario_root(ws.root / "twin", "two"), {**meta, "status": "running", "pid": 2**22 + 12345})
    listed = {x["scenario"]: x for x in st.list_scenarios(ws.root / "twin")}
    assert listed["two"]["status"] == "failed" and "ended without finishing" in listed["two"]["error"]
