"""`citytwin consult`: a consultation created from a JSON file, residents verified, comments on the map,
votes (one per resident), moderation, results exported; errors as JSON with exit code 2. Periods are
far from any wall clock (2000–2999 open, 2000–2001 closed) so that the tests do not depend on it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from citytwin.cli.main import app

runner = CliRunner()


def cli(ws, *args: str) -> tuple[int, object]:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, ["consult", *args, "-w", str(ws.root), "--json"])
    return res.exit_code, json.loads(res.output)


def test_consult_flow(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = {"title": "滨河公园改造", "starts": "2000-01-01T00:00:00+00:00", "ends": "2999-12-31T00:00:00+00:00",
            "plan": {"type": "Polygon", "coordinates": [[[116.4, 39.9], [116.41, 39.9], [116.41, 39.91], [116.4, 39.9]]]},
            "questions": [{"kind": "vote", "text": "同意方案吗", "options": ["同意", "反对"]},
                          {"kind": "multiple", "text": "需要的设施", "options": ["座椅", "厕所", "灯光"]}]}
    f = tmp_path / "c.json"
    f.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    code, out = cli(workspace, "create", str(f))
    assert code == 0
    cid = out["consultation"]  # type: ignore[index]
    for r in ("wang", "li"):
        assert cli(workspace, "verify", r)[0] == 0
    assert cli(workspace, "comment", str(cid), "--author", "wang", "--text", "公园需要更多座椅",
               "--lon", "116.405", "--lat", "39.905")[0] == 0
    code, out = cli(workspace, "comment", str(cid), "--author", "li", "--text", "<b>广告</b>")
    assert cli(workspace, "hide", str(out["comment"]), "--reason", "advertising")[0] == 0  # type: ignore[index]
    assert cli(workspace, "answer", "1", "--resident", "wang", "--value", "同意")[0] == 0
    assert cli(workspace, "answer", "2", "--resident", "wang", "--value", '["座椅", "灯光"]')[0] == 0
    code, err = cli(workspace, "answer", "1", "--resident", "wang", "--value", "反对")
    assert code == 2 and "already answered" in err["error"]  # type: ignore[index]
    code, err = cli(workspace, "answer", "1", "--resident", "nobody", "--value", "反对")
    assert code == 2 and "not a verified resident" in err["error"]  # type: ignore[index]
    code, res = cli(workspace, "results", str(cid), "--out", str(tmp_path / "r"))
    assert code == 0
    assert res["questions"][0]["counts"] == {"同意": 1, "反对": 0}  # type: ignore[index]
    assert res["questions"][1]["counts"] == {"座椅": 1, "厕所": 0, "灯光": 1}  # type: ignore[index]
    assert res["comments"] == 1 and res["hidden_comments"] == 1  # type: ignore[index]
    gj = json.loads((tmp_path / "r" / "comments.geojson").read_text(encoding="utf-8"))
    assert gj["features"][0]["geometry"]["coordinates"] == [116.405, 39.905]


def test_closed_period_and_bad_spec(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"title": "old", "starts": "2000-01-01T00:00:00+00:00", "ends": "2001-01-01T00:00:00+00:00",
                             "questions": [{"kind": "vote", "text": "q", "options": ["a", "b"]}]}))
    cid = cli(workspace, "create", str(f))[1]["consultation"]  # type: ignore[index]
    cli(workspace, "verify", "wang")
    code, err = cli(workspace, "answer", "1", "--resident", "wang", "--value", "a")
    assert code == 2 and "is open from 2000-01-01" in err["error"]  # type: ignore[index]
    code, err = cli(workspace, "comment", str(cid), "--author", "wang", "--text", "late")
    assert code == 2 and err["field"] == "period"  # type: ignore[index]
    f.write_text(json.dumps({"title": "x", "starts": "2000-01-01", "ends": "1999-01-01"}))
    code, err = cli(workspace, "create", str(f))
    assert code == 2 and "end after it starts" in err["error"]  # type: ignore[index]
    f.write_text("{not json")
    code, err = cli(workspace, "create", str(f))
    assert code == 2 and err["file"] == str(f)  # type: ignore[index]
