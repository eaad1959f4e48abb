"""F4 predict and verify in the live twin: forecasts stored, scored when the actual arrives, shown.

Real data: Dongsi PM2.5 (UCI Beijing Multi-Site), January 2016, fed hour by hour through the runtime's
ingest pipeline. The learned model here is ridge (gradient boosting takes tens of seconds to fit on a
busy 2-core machine; it goes through the same code path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from citytwin.foundation.errors import InputError
from citytwin.foundation.timeseries.forecasts import ForecastStore
from citytwin.service.app import create_app, open_runtime
from citytwin.service.forecasting import ALL
from citytwin.twin import feeds as F

DONGSI = F.beijing_entity("Dongsi").id
MODELS = ("seasonal_naive", "persistence", "ridge")


@pytest.fixture(scope="module")
def dongsi(shared_data: Path) -> pd.DataFrame:
    w = pd.read_csv(shared_data / "air_beijing_multisite/PRSA_Data_Dongsi_20130301-20170228.csv")
    w = w[(w.year == 2016) & (w.month == 1)]
    long = F.beijing_long(w)
    return long[long["property"] == "pm25"].sort_values("time").reset_index(drop=True)


def feed(rt, rows: pd.DataFrame) -> None:
    msgs = [(t, p) for _, t, p in F.messages_from_long(rows)]
    rep = rt.ingestor.ingest(msgs, source="replay")
    assert rep.rejected == 0


def test_store_is_idempotent_and_validates(tmp_path):
    s = ForecastStore(tmp_path / "fc")
    rec = pd.DataFrame({"entity": ["e"] * 2, "property": "pm25",
                        "issued_at": pd.Timestamp("2016-01-01", tz="UTC"),
                        "target_time": [pd.Timestamp("2016-01-01 01:00", tz="UTC"),
                                        pd.Timestamp("2016-01-01 02:00", tz="UTC")],
                        "horizon": [pd.Timedelta("1h"), pd.Timedelta("2h")], "steps": [1, 2],
                        "model": "ridge", "value": [1.0, 2.0]})
    assert s.append(rec) == 2 and s.append(rec) == 2
    assert s.count() == 2
    # a forecast of the same key issued again replaces the earlier value (the later write wins)
    s.append(rec.iloc[:1].assign(value=5.0))
    assert s.query()["value"].tolist() == [5.0, 2.0]
    with pytest.raises(InputError, match="target_time"):
        s.append(rec.assign(horizon=pd.Timedelta("3h")))
    with pytest.raises(InputError, match="horizon"):
        s.append(rec.drop(columns=["horizon"]))
    assert ForecastStore(tmp_path / "fc").count() == 2  # durable: a new process sees them


def test_issue_feed_verify_mae_by_hand(twin_ws, dongsi):
    rt = open_runtime(twin_ws.root)
    rt.register([F.beijing_entity("Dongsi")])
    n0 = 21 * 24  # three weeks of history before the first forecast
    feed(rt, dongsi.iloc[:n0])
    issued = []
    try:
        for k in range(6):  # issue, then the next hour arrives (the live loop), six times
            rep = rt.issue_forecasts(property="pm25", models=MODELS)
            assert rep.models == list(MODELS) and rep.skipped == {}
            assert rep.issued_at == dongsi["time"].iloc[n0 + k - 1]
            issued.append(rep.issued_at)
            if k == 0:
                # nothing arrived yet: nothing scored, everything pending
                v0 = rt.verify_forecasts()
                assert v0.verified == 0 and v0.scores.empty and v0.pending == 18
                assert v0.next_due == issued[0] + pd.Timedelta("1h")
                assert rt.issue_forecasts(property="pm25", models=MODELS).stored == 18  # same key: counted once
                assert rt.forecasts.count() == 18
            feed(rt, dongsi.iloc[n0 + k: n0 + k + 1])
        last = dongsi["time"].iloc[n0 + 5]
        v = rt.verify_forecasts()
        stored = rt.forecasts.query()
        assert len(stored) == 6 * 3 * 6 and set(stored["issued_at"]) == set(issued)

        # by hand from the CSV rows: the actual of a target is the station's reading at that hour
        actual = dongsi.set_index("time")["value"]
        f = stored.assign(actual=stored["target_time"].map(actual))
        arrived = f["target_time"] <= last
        assert v.verified == int((arrived & f["actual"].notna()).sum())
        assert v.pending == int((~arrived).sum())
        f = f[arrived & f["actual"].notna()]
        # the seasonal-naive baseline is the reading 24 h before the target
        sn = f[f["model"] == "seasonal_naive"]
        assert np.allclose(sn["value"], sn["target_time"].map(lambda t: actual[t - pd.Timedelta("1D")]))
        # scores only for targets whose actual has arrived: horizon h has 6 - h + 1 issue times scored
        tot = v.scores[v.scores["entity"] == ALL]
        per = v.scores[v.scores["entity"] == DONGSI]
        assert set(tot["steps"]) == set(range(1, 7))
        for r in tot.itertuples():
            cases = f[(f["model"] == r.model) & (f["steps"] == r.steps)]
            # every model forecast every case here, so the common-case rule removes nothing
            assert r.n == len(cases) == 6 - r.steps + 1
            assert r.mae == pytest.approx(np.mean(np.abs(cases["value"] - cases["actual"])), rel=1e-12)
            base = f[(f["model"] == "seasonal_naive") & (f["steps"] == r.steps)]
            b_mae = np.mean(np.abs(base["value"] - base["actual"]))
            assert r.skill == pytest.approx(1 - r.mae / b_mae, rel=1e-12)
        # one station: its rows equal the totals
        pd.testing.assert_frame_equal(tot.drop(columns="entity").reset_index(drop=True),
                                      per.drop(columns="entity").reset_index(drop=True))
        # the stored score table is what verify returned; losses are the negative-skill rows
        saved = rt.forecasts.scores()
        assert len(saved) == len(v.scores)
        assert np.allclose(saved["mae"], v.scores["mae"])
        assert set(map(tuple, v.losses()[["model", "steps"]].values)) == set(
            map(tuple, tot[(tot["skill"] < 0) & (tot["model"] != "seasonal_naive")][["model", "steps"]].values))

        # automatic verification after an ingest batch that brings a due actual
        rt.enable_auto_verify()
        before = rt.last_verify.verified
        feed(rt, dongsi.iloc[n0 + 6: n0 + 8])
        assert rt.ingestor.hook_errors == []
        assert rt.last_verify.verified > before

        # HTTP: the latest forecasts with actual/error where known, the scores, a fresh verification
        with TestClient(create_app(runtime=rt), headers=twin_ws.headers("steward")) as c:
            got = c.get("/twin/v1/forecasts", params={"model": "ridge", "latest": "false"}).json()
            assert got["count"] == 36
            known = [x for x in got["forecasts"] if x["actual"] is not None]
            assert known and all(x["error"] == pytest.approx(x["value"] - x["actual"]) for x in known)
            sc = c.get("/twin/v1/forecasts/scores", params={"entity": ALL}).json()
            assert len(sc["scores"]) == 18 and {x["horizon"] for x in sc["scores"]} == {f"{h}h" for h in range(1, 7)}
            r = c.post("/twin/v1/forecasts/verify").json()
            assert r["verified"] == rt.last_verify.verified
            assert r["pending"] == int((stored["target_time"] > dongsi["time"].iloc[n0 + 7]).sum()) > 0
            r = c.post("/twin/v1/forecasts", params={"model": ["seasonal_naive", "nope"]})
            assert r.status_code == 400 and "nope" in r.text
    finally:
        rt.close()


def test_cli_forecast_store_and_verify(tmp_path, dongsi):
    from citytwin.cli.main import app

    runner = CliRunner()
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    rt = open_runtime(ws / "twin")
    rt.register([F.beijing_entity("Dongsi")])
    feed(rt, dongsi.iloc[: 21 * 24])
    rt.close()
    # the seasonal-naive baseline is issued even when only the learned model is asked for
    r = runner.invoke(app, ["twin", "forecast", "-w", str(ws), "--store", "-e", DONGSI, "--model", "ridge",
                            "--horizon", "3"])
    assert r.exit_code == 0, r.output
    assert "6 forecasts stored" in r.output
    r = runner.invoke(app, ["twin", "verify", "-w", str(ws)])
    assert r.exit_code == 0, r.output
    assert "nothing to score yet" in r.output
    rt = open_runtime(ws / "twin")
    feed(rt, dongsi.iloc[21 * 24: 21 * 24 + 3])
    rt.close()
    r = runner.invoke(app, ["twin", "verify", "-w", str(ws)])
    assert r.exit_code == 0, r.output
    assert "6 forecasts verified, 0 waiting" in r.output
    # the verdict printed matches the stored scores: one WORSE line per (model, horizon) with negative skill
    sc = ForecastStore(ws / "twin" / "forecasts").scores()
    lost = sc[(sc["entity"] == ALL) & (sc["model"] == "ridge") & (sc["skill"] < 0)]
    assert r.output.count("WORSE than the seasonal-naive baseline") == len(lost)
    assert ("every model beats or ties" in r.output) == lost.empty


def test_missing_actual_is_not_scored(tmp_path, dongsi):
    rt = open_runtime(tmp_path / "twin")
    rt.register([F.beijing_entity("Dongsi")])
    rows = dongsi.iloc[:4].copy()
    rows.loc[rows.index[2], "value"] = np.nan  # the reading of the 2-h target arrives, but missing
    t0 = rows["time"].iloc[0]
    rec = pd.DataFrame({"entity": DONGSI, "property": "pm25", "issued_at": t0,
                        "target_time": [t0 + pd.Timedelta(hours=h) for h in (1, 2, 3)],
                        "horizon": [pd.Timedelta(hours=h) for h in (1, 2, 3)], "steps": [1, 2, 3],
                        "model": "seasonal_naive", "value": 100.0})
    try:
        rt.forecasts.append(rec)
        feed(rt, rows)
        v = rt.verify_forecasts()
        assert (v.verified, v.pending) == (2, 1)  # a missing reading is never scored as 0
        tot = v.scores[v.scores["entity"] == ALL].set_index("steps")
        assert list(tot.index) == [1, 3]
        assert tot.loc[1, "mae"] == abs(100.0 - rows["value"].iloc[1])
        assert tot.loc[3, "mae"] == abs(100.0 - rows["value"].iloc[3])
        # automatic verification does not rerun on every batch for a target that will stay missing
        rt.enable_auto_verify()
        assert rt._next_due_us is None
        first = rt.last_verify
        feed(rt, dongsi.iloc[4:5])
        assert rt.last_verify is first  # nothing due: no verification ran
    finally:
        rt.close()
