"""Routing (G2): trained and scored on the NYC 311 requests against the standard peer (TF-IDF +
LinearSVC on the same split, in the same test), a Chinese set written for the test end to end
through the CLI (CSV and XLSX), and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app
from citytwin.participation.router import baseline_pipeline, route, train_router
from citytwin.participation.text import join_text, tokenize

from .zh_messages import HELD_OUT, messages

runner = CliRunner()
NYC = "complaints_311/nyc_311_service_requests_YangziXinJas.csv"


def test_tokenize_mixed() -> None:
    assert tokenize("Street Light OUT: 工地噪音扰民") == ["street", "light", "out", "工地", "噪音", "扰民"]
    assert tokenize(float("nan")) == []


def test_nyc_router_beats_tfidf_linearsvc(shared_data: Path) -> None:
    """complaint_type + descriptor -> agency (11 agencies, 1,000 requests). Over three stratified 70/30
    splits the router's held-out macro-F1 is above the baseline's on average and never below it by more
    than 0.01; the baseline is refitted here on the same rows (its scores in RouterResult come from the
    same code, checked against this independent fit)."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    d = pd.read_csv(shared_data / NYC)
    texts = join_text([d["complaint_type"].tolist(), d["descriptor"].tolist()])
    ours, base = [], []
    for seed in (0, 1, 2):
        r = train_router(texts, d["agency"].tolist(), seed=seed)
        ours.append(r.macro_f1)
        base.append(r.baseline_macro_f1)
        assert r.accuracy > 0.95
        assert r.macro_f1 >= r.baseline_macro_f1 - 0.01
    # the same split done here, baseline fitted here: the reported baseline score is the peer's
    t, y = np.asarray(texts, dtype=object), d["agency"].to_numpy()
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y)
    peer = baseline_pipeline().fit(t[tr], y[tr]).predict(t[te])
    assert f1_score(y[te], peer, average="macro") == pytest.approx(base[0])
    assert np.mean(ours) > np.mean(base) + 0.02, (ours, base)


def test_chinese_small_set_end_to_end(tmp_path: Path) -> None:
    rows = messages(60)
    train = pd.DataFrame(rows, columns=["内容", "部门"])
    train.insert(0, "标题", "市民来信")
    f = tmp_path / "来信.csv"
    train.to_csv(f, index=False, encoding="utf-8")
    model = tmp_path / "router.joblib"
    res = runner.invoke(app, ["cases", "train-router", str(f), "--text", "标题", "--text", "内容", "--label", "部门",
                              "--out", str(model), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["n_train"] + s["n_test"] == 300 and sorted(s["labels"]) == sorted({d for _, d in rows})
    assert s["macro_f1"] > 0.9
    new = pd.DataFrame({"标题": "市民来信", "内容": [t for t, _ in HELD_OUT], "编号": range(len(HELD_OUT))})
    x = tmp_path / "new.xlsx"
    new.to_excel(x, index=False)
    out = tmp_path / "routed.csv"
    res = runner.invoke(app, ["cases", "route", str(x), "--model", str(model), "--text", "标题", "--text", "内容",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out)
    assert got["编号"].tolist() == list(range(len(HELD_OUT)))  # input rows, in order
    assert got["内容"].tolist() == new["内容"].tolist()
    right = sum(a == b for a, (_, b) in zip(got["label"], HELD_OUT, strict=True))
    assert right >= 8, list(zip(got["label"], HELD_OUT, strict=True))


def test_route_in_memory_matches_cli_model() -> None:
    rows = messages(40, seed=3)
    r = train_router([t for t, _ in rows], [d for _, d in rows], seed=1)
    assert route(r.model, ["水管爆裂漏水"]) == ["水务"]
    assert route(r.model, []) == []


@pytest.mark.parametrize("args,needle", [
    (["--text", "nope", "--label", "部门"], "no column 'nope'"),
    (["--text", "内容", "--label", "nope"], "no column 'nope'"),
])
def test_bad_columns_json(tmp_path: Path, args: list[str], needle: str) -> None:
    f = tmp_path / "a.csv"
    pd.DataFrame(messages(5), columns=["内容", "部门"]).to_csv(f, index=False)
    res = runner.invoke(app, ["cases", "train-router", str(f), *args, "--out", str(tmp_path / "m"), "--json"])
    assert res.exit_code == 2
    err = json.loads(res.output)
    assert needle in err["error"] and "Traceback" not in res.output


def test_bad_model_file(tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    pd.DataFrame({"t": ["x"]}).to_csv(f, index=False)
    m = tmp_path / "m.joblib"
    m.write_text("not a model")
    res = runner.invoke(app, ["cases", "route", str(f), "--model", str(m), "--text", "t", "--out", str(tmp_path / "o.csv")])
    assert res.exit_code == 2 and "not a routing model" in res.output and "Traceback" not in res.output
    one = tmp_path / "one.csv"
    pd.DataFrame({"t": ["a", "b", "c"], "y": ["p", "p", "p"]}).to_csv(one, index=False)
    res = runner.invoke(app, ["cases", "train-router", str(one), "--text", "t", "--label", "y", "--out", str(m), "--json"])
    assert res.exit_code == 2 and "two labels" in json.loads(res.output)["error"]
