"""Analyses as jobs (OGC API – Processes style): submit, progress, results as derived datasets with
lineage, cancel; only writer roles may start them; jobs never read files of the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.service.conftest import ServiceWorkspace

from citytwin.workflows import jobs as wjobs


def _wait(client: TestClient, headers: dict[str, str], job_id: str, timeout: float = 300) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        st = client.get(f"/jobs/{job_id}", headers=headers).json()
        assert 0 <= st["progress"] <= 100
        if st["status"] not in ("accepted", "running") or time.monotonic() > end:
            return st
        time.sleep(0.1)


def test_spatial_structure_job(client: TestClient, service_ws: ServiceWorkspace) -> None:
    from citytwin.spatial.mix import functional_mix

    h = service_ws.headers("integrator")
    r = client.post("/processes/spatial-structure/execution", headers=h,
                    json={"inputs": {"pois": "helsinki_pois", "resolution": 9, "name": "job_spatial"}})
    assert r.status_code == 201, r.text
    job_id = r.json()["jobID"]
    assert r.headers["location"] == f"/jobs/{job_id}"
    st = _wait(client, h, job_id)
    assert st["status"] == "successful", st
    assert st["progress"] == 100
    res = client.get(f"/jobs/{job_id}/results", headers=h).json()
    names = {d["dataset"] for d in res["datasets"]}
    assert {"job_spatial_centers", "job_spatial_centers_cells", "job_spatial_mix"} <= names
    ws = service_ws.ws
    # stored as derived datasets with lineage to the input, made by the ops user who started the job
    lin = ws.catalog.lineage("job_spatial_mix")
    assert [i["dataset"] for i in lin["inputs"]] == ["helsinki_pois"]
    assert ws.info("job_spatial_mix").kind == "derived"
    # the same numbers as the domain function on the same data (the service holds no analysis logic)
    direct = functional_mix(ws.read("helsinki_pois"), resolution=9)
    stored = ws.read("job_spatial_mix")
    cols = ["cell", "n_pois", "entropy_norm"]
    pd.testing.assert_frame_equal(stored[cols].sort_values("cell").reset_index(drop=True),
                                  pd.DataFrame(direct[cols]).sort_values("cell").reset_index(drop=True),
                                  check_dtype=False)
    assert any(r["action"] == "job" and r["outcome"] == "successful" and r["user"] == "ops"
               for r in ws.catalog.audit_log(limit=200))
    assert job_id in [j["jobID"] for j in client.get("/jobs", headers=h).json()["jobs"]]


def test_economy_index_job(client: TestClient, service_ws: ServiceWorkspace) -> None:
    import geopandas as gpd
    import libpysal

    from citytwin.economy.index import composite_index

    col = gpd.read_file(libpysal.examples.get_path("columbus.shp"))
    frame = pd.DataFrame(col[["POLYID", "INC", "HOVAL", "CRIME"]]).assign(POLYID=lambda d: d.POLYID.astype(str))
    if not service_ws.ws.catalog.exists("columbus"):
        service_ws.ws.write_derived("columbus", frame, inputs=[], parameters={}, classification="public")
    spec = {"id": "POLYID", "indicators": [{"column": "INC", "direction": "positive"},
                                           {"column": "HOVAL", "direction": "positive"},
                                           {"column": "CRIME", "direction": "negative"}]}
    h = service_ws.headers("admin")
    r = client.post("/processes/economy-index/execution", headers=h,
                    json={"inputs": {"panel": "columbus", "spec": spec, "name": "columbus_idx"}})
    assert r.status_code == 201, r.text
    st = _wait(client, h, r.json()["jobID"])
    assert st["status"] == "successful", st
    want = composite_index(service_ws.ws.read("columbus"), spec, "entropy").scores
    got = service_ws.ws.read("columbus_idx")
    assert got["score"].to_numpy() == pytest.approx(want["score"].to_numpy())
    assert [i["dataset"] for i in service_ws.ws.catalog.lineage("columbus_idx")["inputs"]] == ["columbus"]


@pytest.mark.parametrize("role", ["viewer", "analyst", "public"])
def test_jobs_need_a_writer_role(client: TestClient, service_ws: ServiceWorkspace, role: str) -> None:
    r = client.post("/processes/spatial-structure/execution", headers=service_ws.headers(role), json={"inputs": {}})
    assert r.status_code == 403 and "jobs" in r.json()["detail"]
    assert client.get("/processes", headers=service_ws.headers(role)).status_code == 200


@pytest.mark.parametrize(("inputs", "status"), [
    ({"resolution": "nine"}, 400), ({"bogus": 1}, 400), ({"pois": "/etc/passwd"}, 201),
    ({"pois": "secret_sites"}, 201), ({"pois": "no_such_dataset"}, 201)])
def test_bad_inputs(client: TestClient, service_ws: ServiceWorkspace, inputs: dict[str, Any], status: int) -> None:
    h = service_ws.headers("integrator")
    r = client.post("/processes/spatial-structure/execution", headers=h, json={"inputs": inputs})
    assert r.status_code == status, r.text
    if status == 201:  # checked in the job, as the user: it fails with the reason, nothing is read
        st = _wait(client, h, r.json()["jobID"])
        assert st["status"] == "failed" and st["message"]
        assert client.get(f"/jobs/{r.json()['jobID']}/results", headers=h).status_code == 404
    assert client.post("/processes/nope/execution", headers=h, json={}).status_code == 404


@pytest.fixture()
def slow_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """A process of our own that reports progress until released (a fake for the runner's logic)."""
    release = threading.Event()

    def run(ws: Any, inputs: dict[str, Any], progress: wjobs.Progress) -> dict[str, Any]:
        for i in range(2000):
            progress(i / 20, f"step {i}")
            if release.wait(0.01):
                break
        return {"datasets": []}

    monkeypatch.setitem(wjobs.PROCESSES, "slow", wjobs.Process("slow", "slow", "test", {}, run))
    yield release
    release.set()


def test_cancel(client: TestClient, service_ws: ServiceWorkspace, slow_process: threading.Event) -> None:
    h = service_ws.headers("integrator")
    job_id = client.post("/processes/slow/execution", headers=h, json={"inputs": {}}).json()["jobID"]
    end = time.monotonic() + 30
    while client.get(f"/jobs/{job_id}", headers=h).json()["progress"] < 1 and time.monotonic() < end:
        time.sleep(0.02)
    assert client.get(f"/jobs/{job_id}", headers=h).json()["status"] == "running"
    assert client.delete(f"/jobs/{job_id}", headers=service_ws.headers("viewer")).status_code == 403
    assert client.delete(f"/jobs/{job_id}", headers=h).status_code == 200
    st = _wait(client, h, job_id, timeout=30)
    assert st["status"] == "dismissed" and st["message"] == "cancelled"
    assert client.get("/jobs/nope", headers=h).status_code == 404


def test_economy_disparity_job(client: TestClient, service_ws: ServiceWorkspace) -> None:
    import libpysal

    from citytwin.economy.dagum import dagum_gini

    wide = pd.read_csv(libpysal.examples.get_path("mexico.csv"))
    long = wide.melt(id_vars=["State", "hanson98"], value_vars=[f"pcgdp{y}" for y in range(1940, 2001, 10)],
                     var_name="year", value_name="pcgdp")
    long["year"] = long["year"].str[5:].astype(int)
    long = long.rename(columns={"State": "state", "hanson98": "region"})
    if not service_ws.ws.catalog.exists("mexico_long"):
        service_ws.ws.write_derived("mexico_long", long, inputs=[], parameters={}, classification="public")
    h = service_ws.headers("steward")
    r = client.post("/processes/economy-disparity/execution", headers=h, json={"inputs": {
        "panel": "mexico_long", "value": "pcgdp", "group": "region", "time": "year", "id": "state",
        "permutations": 0, "name": "mexico_disp"}})
    assert r.status_code == 201, r.text
    st = _wait(client, h, r.json()["jobID"])
    assert st["status"] == "successful", st
    res = client.get(f"/jobs/{st['jobID']}/results", headers=h).json()
    assert res["datasets"] and all(d["dataset"].startswith("mexico_disp_") for d in res["datasets"])
    # the Dagum Gini of 1940 equals the domain function on the same data
    y1940 = long[long["year"] == 1940]
    want = dagum_gini(y1940["pcgdp"], y1940["region"]).g
    got = next(s for s in res["summary"] if int(s.get("year", s.get("period", 0))) == 1940)
    assert got["g"] == pytest.approx(want)
    lin = service_ws.ws.catalog.lineage(res["datasets"][0]["dataset"])
    assert [i["dataset"] for i in lin["inputs"]] == ["mexico_long"]


def test_jobs_are_seen_by_their_owner(client: TestClient, service_ws: ServiceWorkspace,
                                      slow_process: threading.Event) -> None:
    r = client.post("/processes/slow/execution", headers=service_ws.headers("integrator"), json={"inputs": {}})
    job_id = r.json()["jobID"]
    other = service_ws.headers("viewer")
    assert client.get(f"/jobs/{job_id}", headers=other).status_code == 404
    assert client.get(f"/jobs/{job_id}/results", headers=other).status_code == 404
    assert job_id not in [j["jobID"] for j in client.get("/jobs", headers=other).json()["jobs"]]
    assert client.get(f"/jobs/{job_id}", headers=service_ws.headers("steward")).json()["user"] == "ops"
    slow_process.set()
