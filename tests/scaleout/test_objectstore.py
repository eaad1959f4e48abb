"""Parquet inputs on object storage (issue 19): ``s3://`` URLs read by the Dask workers, checked against a
real S3 HTTP endpoint (moto's server, in this process; not AWS).

The test's Parquet parts are uploaded with s3fs; the same command then runs with the ``s3://`` URL and
with the local folder, and the outputs are compared: points per zone (also against arithmetic) and the
ingest of many Parquet files (records, quarantine, catalog facts, the sources' SHA-256). The client opens
no points object (its s3fs opens are recorded). Each error of the store is an ``InputError`` naming the
URL, exit 2 and valid JSON through the CLI: no such bucket, no Parquet under the prefix, no credentials,
an endpoint that does not answer, an object that is not Parquet.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.scaleout.conftest import BUCKET, N_POINTS
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest import ingest
from citytwin.foundation.workspace import Workspace

pytestmark = pytest.mark.integration

runner = CliRunner()


def _json(out: str) -> dict[str, Any]:
    return json.loads(out.split("\nwrote")[0] if "\nwrote" in out else out)


def test_zones_from_s3_on_local2_equal_the_local_folder_and_arithmetic(s3: dict[str, Any]) -> None:
    root = s3["root"]
    res = {}
    for name, pts, zones in (("s3", f"s3://{BUCKET}/pts/", f"s3://{BUCKET}/quadrants.parquet"),
                             ("local", str(root / "pts"), str(root / "quadrants.parquet"))):
        r = runner.invoke(app, ["spatial", "zones", pts, "--zones", zones, "--json", "--dask", "local:2"])
        assert r.exit_code == 0, r.output
        res[name] = _json(r.stdout)
    assert res["s3"]["counts"] == res["local"]["counts"]
    assert {c["zone"]: c["points"] for c in res["s3"]["counts"]} == s3["expected"]
    assert res["s3"]["points"] == N_POINTS and res["s3"]["options"]["parts"] == 4


@pytest.mark.parametrize("url", [f"s3://{BUCKET}/pts", f"s3://{BUCKET}/pts/*.parquet", f"s3://{BUCKET}/pts/part-2.parquet"])
def test_prefix_glob_and_one_object_are_listed_as_local_paths_are(s3: dict[str, Any], url: str) -> None:
    from citytwin.workflows.scaleout import parquet_files

    got = parquet_files(url, None, "points", objects=True)
    local = parquet_files(str(s3["root"] / "pts" / url.rsplit("/", 1)[-1]) if url.endswith("2.parquet") else
                          str(s3["root"] / "pts" / "*.parquet"), None, "points")
    assert got == [f"s3://{BUCKET}/pts/{Path(f).name}" for f in local]


def test_object_sizes_from_the_listing(s3: dict[str, Any]) -> None:
    from citytwin.foundation.objectstore import object_sizes

    local = sorted((s3["root"] / "pts").glob("*.parquet"))
    assert object_sizes([f"s3://{BUCKET}/pts/{f.name}" for f in local]) == [f.stat().st_size for f in local]
    with pytest.raises(InputError, match="no such object"):
        object_sizes([f"s3://{BUCKET}/pts/part-9.parquet"])
    with pytest.raises(InputError, match="no such bucket"):
        object_sizes(["s3://no-such-bucket/a.parquet"])


def test_workers_read_the_objects_the_client_opens_none(s3: dict[str, Any], address: str,
                                                        client_reads: list[str]) -> None:
    from citytwin.workflows.scaleout import points_per_zone

    opened = client_reads
    zones = str(s3["root"] / "quadrants.parquet")
    one = points_per_zone(str(s3["root"] / "pts"), zones)
    remote = points_per_zone(f"s3://{BUCKET}/pts/", zones, dask=address)
    pd.testing.assert_frame_equal(remote.counts, one.counts)
    assert opened == []  # listed on the client, read by the workers
    points_per_zone(f"s3://{BUCKET}/pts/", zones)  # one process: the client reads them (the patch sees it)
    assert sorted(set(opened)) == [f"{BUCKET}/pts/part-{i}.parquet" for i in range(4)]


def _same_ingest(ws: Workspace, a: str, b: str, urls: dict[str, str]) -> None:
    """Datasets ``a`` (from local files) and ``b`` (from their objects) hold the same version."""
    pd.testing.assert_frame_equal(ws.read(a), ws.read(b))
    qa, qb = ws.quarantine(a), ws.quarantine(b)
    assert len(qa) > 0
    assert qb["file"].tolist() == qa["file"].map(urls).tolist()  # the quarantine names the URLs
    pd.testing.assert_frame_equal(qa.drop(columns="file"), qb.drop(columns="file"))
    va, vb = ws.info(a).current, ws.info(b).current
    for fact in ("rows_read", "rows_kept", "rows_quarantined", "columns", "extent", "time_min", "time_max",
                 "source_sha256"):
        assert getattr(va, fact) == getattr(vb, fact), fact
    assert va.params["reasons"] == vb.params["reasons"]
    assert vb.source_path == ", ".join(urls[f] for f in va.source_path.split(", "))


def test_ingest_of_parquet_parts_from_s3_on_local2_equals_the_local_files(s3: dict[str, Any], tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    local = [str(f) for f in sorted((s3["root"] / "poi").glob("*.parquet"))]
    urls = {f: f"s3://{BUCKET}/poi/{Path(f).name}" for f in local}
    out = {}
    for name, inputs in (("poi_local", local), ("poi_s3", [f"s3://{BUCKET}/poi/"])):
        r = runner.invoke(app, ["ingest", *inputs, "-d", name, "-s", "poi", "-w", str(ws.root), "--json",
                                "--dask", "local:2"])
        assert r.exit_code == 0, r.output
        out[name] = json.loads(r.stdout)
    assert out["poi_s3"]["files"] == list(urls.values())
    assert out["poi_s3"]["rows_quarantined"] == out["poi_local"]["rows_quarantined"] == 3 * len(range(7, 1500, 331))
    _same_ingest(ws, "poi_local", "poi_s3", urls)
    assert not any((ws.root / "tmp").iterdir())  # the staging folder, copies included, is gone


def test_keys_repeated_across_objects_are_checked_in_one_process_on_the_copies(s3: dict[str, Any], address: str,
                                                                               tmp_path: Path,
                                                                               client_reads: list[str]) -> None:
    """The same part under two names: the staged pipeline runs on the client over the workers' copies."""
    src = s3["root"] / "poi" / "poi-0.parquet"
    (tmp_path / "twice").mkdir()
    copy = tmp_path / "twice" / "poi-0b.parquet"
    copy.write_bytes(src.read_bytes())
    s3["fs"].put_file(str(copy), f"{BUCKET}/twice/poi-0b.parquet")
    ws = Workspace.init(tmp_path / "ws")
    urls = {str(src): f"s3://{BUCKET}/poi/poi-0.parquet", str(copy): f"s3://{BUCKET}/twice/poi-0b.parquet"}
    ingest(ws, list(urls), dataset="dup_local", schema="poi", dask=address)
    two = ingest(ws, list(urls.values()), dataset="dup_s3", schema="poi", dask=address)
    assert any("repeat across files" in n for n in two.notes)
    assert two.rows_quarantined > 1500
    _same_ingest(ws, "dup_local", "dup_s3", urls)
    assert client_reads == []  # the objects were copied by the workers; the client read their copies


def test_real_csv_objects_ingested_on_dask_equal_the_local_files(s3: dict[str, Any], address: str, shared_data: Path,
                                                                 tmp_path: Path, client_reads: list[str]) -> None:
    """Real data, any format: the first 500 hours of three Beijing stations (wide sensor CSV; CO in µg/m³
    given without --unit, so part of it is quarantined) from s3:// and from the local files."""
    local = []
    (tmp_path / "air").mkdir()
    for f in sorted((shared_data / "air_beijing_multisite").glob("*.csv"))[:3]:
        with f.open(encoding="utf-8") as fh:
            (tmp_path / "air" / f.name).write_text("".join(next(fh) for _ in range(501)), encoding="utf-8")
        local.append(str(tmp_path / "air" / f.name))
        s3["fs"].put_file(local[-1], f"{BUCKET}/air/{f.name}")
    urls = {f: f"s3://{BUCKET}/air/{Path(f).name}" for f in local}
    ws = Workspace.init(tmp_path / "ws")
    one = ingest(ws, local, dataset="air_local", schema="sensor_observation", dask=address)
    two = ingest(ws, f"s3://{BUCKET}/air/*.csv", dataset="air_s3", schema="sensor_observation", dask=address)
    assert two.files == list(urls.values()) and two.rows_read == one.rows_read > 3 * 500
    _same_ingest(ws, "air_local", "air_s3", urls)
    assert client_reads == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ingest_cmd(url: str, ws: Path) -> list[str]:
    return ["ingest", url, "-d", "bad", "-s", "poi", "-w", str(ws), "--json", "--dask", "local:2"]


def _zones_cmd(url: str, root: Path) -> list[str]:
    return ["spatial", "zones", url, "--zones", str(root / "quadrants.parquet"), "--json", "--dask", "local:2"]


@pytest.mark.parametrize("case", ["no bucket", "no parquet", "no credentials", "no endpoint", "not s3"])
@pytest.mark.parametrize("command", ["zones", "ingest"])
def test_store_errors_are_input_errors_naming_the_url(s3: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     case: str, command: str) -> None:
    url = {"no bucket": "s3://no-such-bucket/pts/", "no parquet": f"s3://{BUCKET}/empty/",
           "not s3": "gs://city/pts/"}.get(case, f"s3://{BUCKET}/pts/")
    if case == "no credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    if case == "no endpoint":
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    if command == "ingest" and case == "no parquet":
        url = f"s3://{BUCKET}/nothing-here/"  # the ingest takes any object: a prefix with none
    args = _ingest_cmd(url, Workspace.init(tmp_path / "ws").root) if command == "ingest" else _zones_cmd(url, s3["root"])
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    rec = json.loads(r.stdout)
    assert url in rec["error"], rec
    want = {"no bucket": "no such bucket", "no parquet": "no Parquet objects" if command == "zones" else "no object",
            "no credentials": "no credentials", "no endpoint": "cannot reach the object store",
            "not s3": "only s3://"}[case]
    assert want in rec["error"], rec
    if command == "ingest":
        assert Workspace(tmp_path / "ws").datasets() == []  # nothing committed


def test_an_object_that_is_not_parquet_is_said_by_the_worker_naming_it(s3: dict[str, Any], address: str) -> None:
    r = runner.invoke(app, ["spatial", "zones", f"s3://{BUCKET}/broken/", "--zones", str(s3["root"] / "quadrants.parquet"),
                            "--json", "--dask", address])
    assert r.exit_code == 2, r.output
    rec = json.loads(r.stdout)
    assert f"s3://{BUCKET}/broken/part-0.parquet" in rec["error"], rec


def test_an_object_the_ingest_cannot_read_is_named_by_its_url(s3: dict[str, Any], address: str, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    url = f"s3://{BUCKET}/broken/part-0.parquet"
    with pytest.raises(InputError) as info:
        ingest(ws, url, dataset="broken", schema="poi", dask=address)
    assert url in str(info.value) and "sources" not in str(info.value), str(info.value)
    assert ws.datasets() == [] and not any((ws.root / "tmp").iterdir())  # nothing committed, staging removed


def test_a_panel_object_without_the_columns_is_said_from_its_schema(s3: dict[str, Any], tmp_path: Path) -> None:
    """Disparity reads s3:// panels on the workers (test_objectstore_workflows.py): the schema, read by a
    worker, lacks the columns asked for: an InputError naming them (exit 2, JSON)."""
    r = runner.invoke(app, ["economy", "disparity", f"s3://{BUCKET}/pts/", "--value", "v", "--group", "g", "--time", "t",
                            "--out", str(tmp_path / "o"), "--dask", "local:2", "--json"])
    assert r.exit_code == 2, r.output
    rec = json.loads(r.stdout)
    assert "not in the panel" in rec["error"] and "'t'" in rec["error"], rec


def test_ingest_of_a_url_without_dask_is_refused(s3: dict[str, Any], tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    with pytest.raises(InputError, match="--dask"):
        ingest(ws, f"s3://{BUCKET}/poi/", dataset="x", schema="poi")


def test_storage_options_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from citytwin.foundation.objectstore import ENV_OPTIONS, storage_options

    monkeypatch.setenv(ENV_OPTIONS, '{"anon": true}')
    assert storage_options() == {"anon": True}
    monkeypatch.setenv(ENV_OPTIONS, "{anon")
    with pytest.raises(InputError, match=ENV_OPTIONS):
        storage_options()
    monkeypatch.setenv(ENV_OPTIONS, "[1]")
    with pytest.raises(InputError, match="JSON object"):
        storage_options()
