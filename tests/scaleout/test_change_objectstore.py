"""Land change from object storage (issue 19): ``citytwin plan change s3://… s3://… --dask local:2`` against
moto's S3 server (the ``s3`` fixture of ``test_objectstore``), the same as the local files in one process;
the workers read the snapshots (the client opens none); the store's errors are ``InputError`` naming the URL
(exit 2, valid JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pytest
from tests.scaleout.conftest import BUCKET
from typer.testing import CliRunner

from citytwin.cli.main import app

pytestmark = pytest.mark.integration

runner = CliRunner()


@pytest.fixture(scope="module")
def snapshots(s3: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The generated snapshots as local files and as objects under ``s3://city/change/``."""
    from tests.scaleout.conftest import _snapshots

    folder = tmp_path_factory.mktemp("change")
    fb, fa = _snapshots(folder, n=900)
    for f in (fb, fa):
        s3["fs"].put_file(str(f), f"{BUCKET}/change/{f.name}")
    return {"before": str(fb), "after": str(fa), "s3_before": f"s3://{BUCKET}/change/before.parquet",
            "s3_after": f"s3://{BUCKET}/change/after.parquet"}


def test_plan_change_from_s3_on_local2_equals_the_local_files(snapshots: dict[str, str], tmp_path: Path,
                                                              client_reads: list[str]) -> None:
    """The objects on Dask and the local files in one process: the same summary, matrix, rates and change
    pieces; the client lists the objects, the workers read them."""
    out = {}
    for name, args in (("local", [snapshots["before"], snapshots["after"]]),
                       ("s3", [snapshots["s3_before"], snapshots["s3_after"], "--dask", "local:2"])):
        r = runner.invoke(app, ["plan", "change", *args, "--years", "5", "--json", "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        out[name] = json.loads(r.stdout)
    assert client_reads == []
    one, two = ({k: v for k, v in o.items() if k not in ("out", "dask")} for o in (out["local"], out["s3"]))
    assert one == two and one["n_changes"] > 0
    a, b = (gpd.read_parquet(tmp_path / n / "changes.parquet") for n in ("local", "s3"))
    pd.testing.assert_frame_equal(pd.DataFrame(a.drop(columns="geometry")), pd.DataFrame(b.drop(columns="geometry")),
                                  check_exact=True)
    assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all()


def test_plan_change_from_s3_in_one_process(snapshots: dict[str, str], tmp_path: Path) -> None:
    """Without --dask the command reads the objects itself: the same result as the local files."""
    out = {}
    for name, args in (("local", [snapshots["before"], snapshots["after"]]),
                       ("s3", [snapshots["s3_before"], snapshots["s3_after"]])):
        r = runner.invoke(app, ["plan", "change", *args, "--json", "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        out[name] = {k: v for k, v in json.loads(r.stdout).items() if k != "out"}
    assert out["local"] == out["s3"]


@pytest.mark.parametrize("case", ["no bucket", "no object", "not parquet", "no credentials"])
def test_store_errors_name_the_url(snapshots: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   case: str) -> None:
    url = {"no bucket": "s3://no-such-bucket/change/before.parquet",
           "no object": f"s3://{BUCKET}/change/missing.parquet",
           "not parquet": f"s3://{BUCKET}/empty/readme.txt"}.get(case, snapshots["s3_before"])
    if case == "no credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    r = runner.invoke(app, ["plan", "change", url, snapshots["s3_after"], "--json", "--out", str(tmp_path / "o"),
                            "--dask", "local:2"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    rec = json.loads(r.stdout)
    assert url in rec["error"], rec
    want = {"no bucket": "no such bucket", "no object": "no such object", "not parquet": "one GeoParquet object",
            "no credentials": "no credentials"}[case]
    assert want in rec["error"], rec
