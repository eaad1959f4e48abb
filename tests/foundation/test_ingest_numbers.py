"""Numbers as real files write them (issue 12): every stored value is the one the source meant.

Decimal commas, thousands separators, full-width digits, 17-digit floats, a NUL byte and yearbook
tokens ("…", "*", "暂无", "-", "—") neither turn a numeric column into text nor change a value; what
does not parse is quarantined with its reason and raw text. Both pipelines (the streamed pass and the
staged one) give the same records.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest import IngestOptions, ingest
from citytwin.foundation.readers import detect_decimal_comma
from citytwin.foundation.units import split_unit_suffix
from citytwin.foundation.workspace import Workspace


def _csv(tmp_path: Path, text: str, name: str = "f.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


def _values(ws: Workspace, name: str, col: str) -> list[float | None]:
    df = ws.read(name)
    return [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in df[col].tolist()]


def test_decimal_comma_in_a_semicolon_file_is_read_as_the_decimal_mark(workspace: Workspace, tmp_path: Path) -> None:
    # before: "1,5" became 15 (the comma dropped as a thousands separator)
    p = _csv(tmp_path, "城市;年份;GDP_亿元;share\n北京市;2020;1,5;0,25\n上海市;2020;2,75;1.234,5\n")
    r = ingest(workspace, p, dataset="dc", schema="city_panel")
    assert r.rows_quarantined == 0, r.reasons
    assert _values(workspace, "dc", "GDP") == [1.5e8, 2.75e8]  # 亿元 -> 元
    assert _values(workspace, "dc", "share") == [0.25, 1234.5]
    assert any("decimal comma" in n for n in r.notes), r.notes


@pytest.mark.parametrize("stream", [True, False])
def test_decimal_comma_same_in_both_pipelines(workspace: Workspace, tmp_path: Path, stream: bool) -> None:
    p = _csv(tmp_path, "poi_id;name;lon;lat\n1;a;116,40;39,90\n2;b;116,41;39,91\n")
    ingest(workspace, p, dataset="p", schema="poi", stream=stream, h3=False)
    assert _values(workspace, "p", "lon") == [116.40, 116.41]


def test_decimal_comma_detection_needs_the_values() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "a.csv"
        p.write_text("a;b\n1,5;2\n", encoding="utf-8")
        assert detect_decimal_comma(p, ";")
        assert not detect_decimal_comma(p, ",")  # a comma-separated file has no decimal comma
        p.write_text("a;b\n1,5;2.5\n", encoding="utf-8")
        assert not detect_decimal_comma(p, ";")  # a decimal point elsewhere: the file's convention is the dot


def test_a_comma_that_groups_nothing_is_not_dropped(workspace: Workspace, tmp_path: Path) -> None:
    # in a comma-decimal-point file, "1,5" (quoted) is no thousands grouping: quarantined, not 15
    p = _csv(tmp_path, 'city,year,v\n北京市,2020,"1,5"\n上海市,2020,"1,234,567.8"\n广州市,2020,3\n')
    r = ingest(workspace, p, dataset="t", schema="city_panel")
    assert r.rows_quarantined == 1
    assert _values(workspace, "t", "v") == [1234567.8, 3.0]
    q = workspace.quarantine("t")
    assert "v: not a number: 1,5" in " ".join(q["reason"])
    assert "1,5" in q["record"].iloc[0]  # the raw text is kept


def test_full_width_digits_nul_and_17_digit_floats(workspace: Workspace, tmp_path: Path) -> None:
    p = _csv(tmp_path, "city,year,a,b\nA,2020,１２３,0.12345678901234567\nB,2020,４５．５,1.2345678901234567e10\n"
             .encode() + b"C,2020,7\x00,-3.5E-7\n")
    r = ingest(workspace, p, dataset="t", schema="city_panel")
    assert r.rows_quarantined == 0
    assert _values(workspace, "t", "a") == [123.0, 45.5, 7.0]
    # 17 significant digits: a number, exactly the double the text names (before: the column was text)
    assert _values(workspace, "t", "b") == [float("0.12345678901234567"), float("1.2345678901234567e10"), -3.5e-7]


def test_yearbook_tokens_are_missing_not_text(workspace: Workspace, tmp_path: Path) -> None:
    # before: any of these made the whole column text
    p = _csv(tmp_path, "city,year,v\nA,2020,…\nB,2020,*\nC,2020,暂无\nD,2020,-\nE,2020,—\nF,2020,1.5\nG,2020,……\n")
    r = ingest(workspace, p, dataset="t", schema="city_panel")
    assert r.rows_quarantined == 0
    assert _values(workspace, "t", "v") == [None, None, None, None, None, 1.5, None]
    assert next(c for c in r.columns if c["name"] == "v")["type"] == "DOUBLE"


def test_schema_numeric_field_quarantines_what_does_not_parse(workspace: Workspace, tmp_path: Path) -> None:
    workspace.schemas_dir.mkdir(exist_ok=True)
    (workspace.schemas_dir / "m.yaml").write_text(
        "name: m\nfields:\n  - {name: id, type: string}\n  - {name: amount, type: float}\n", encoding="utf-8")
    p = _csv(tmp_path, "id,amount\n1,abc\n2,xyz\n3,1.5\n")  # 2 of 3 values text: the field is still numeric
    r = ingest(workspace, p, dataset="m", schema="m")
    assert (r.rows_kept, r.rows_quarantined) == (1, 2)
    assert r.reasons == {"amount: not a number: abc": 1, "amount: not a number: xyz": 1}
    assert _values(workspace, "m", "amount") == [1.5]


def test_extra_column_kept_as_text_is_reported(workspace: Workspace, tmp_path: Path) -> None:
    p = _csv(tmp_path, "city,year,note\nA,2020,1\nB,2020,n.a. (est.)\nC,2020,see text\n")
    r = ingest(workspace, p, dataset="t", schema="city_panel")
    note = next(n for n in r.notes if "kept as text" in n)
    assert "'note' (2 of 3 sampled values not numbers)" in note
    assert _values(workspace, "t", "note") == ["1", "n.a. (est.)", "see text"]  # the text as written


def test_unit_suffix_same_rule_for_prefixed_headers(workspace: Workspace, tmp_path: Path) -> None:
    assert split_unit_suffix("插值_常住人口（万人）") == ("插值_常住人口", "万人")
    assert split_unit_suffix("常住人口（万人）") == ("常住人口", "万人")
    assert split_unit_suffix("GDP_万元") == ("GDP", "万元")
    p = _csv(tmp_path, "城市,年份,常住人口（万人）,插值_常住人口（万人）\n北京市,2020,2000,2000\n")
    ingest(workspace, p, dataset="t", schema="city_panel")
    df = workspace.read("t")
    assert df["常住人口"].tolist() == [2.0e7] and df["插值_常住人口"].tolist() == [2.0e7]


def test_unbalanced_parenthesis_in_a_header_is_no_traceback(workspace: Workspace, tmp_path: Path) -> None:
    # before: tokenize.TokenError from pint
    assert split_unit_suffix("人均GDP_(元/人") == ("人均GDP_(元/人", None)
    p = _csv(tmp_path, "城市,年份,人均GDP_(元/人\n北京市,2020,1\n")
    r = ingest(workspace, p, dataset="t", schema="city_panel")
    assert r.rows_kept == 1


def test_missing_key_is_quarantined(workspace: Workspace, tmp_path: Path) -> None:
    p = _csv(tmp_path, "poi_id,name,category,lon,lat\n1,a,school,116.40,39.90\n,c,park,116.41,39.91\n")
    r = ingest(workspace, p, dataset="p", schema="poi", h3=False)
    assert (r.rows_kept, r.rows_quarantined) == (1, 1)
    assert r.reasons == {"poi_id: missing key": 1}


def test_map_names_a_column_the_aliases_do_not_know(workspace: Workspace, tmp_path: Path) -> None:
    p = _csv(tmp_path, "城市,年度标识,v\n北京市,2019,1\n北京市,2020,2\n")
    with pytest.raises(InputError) as ei:
        ingest(workspace, p, dataset="t", schema="city_panel")
    # the error suggests the column from its values (4-digit years)
    assert "likely: 年度标识 (values 2019…2020)" in str(ei.value) and "--map year=年度标识" in str(ei.value)
    r = ingest(workspace, p, dataset="t", schema="city_panel", options=IngestOptions(column_map={"year": "年度标识"}))
    assert r.rows_kept == 2 and workspace.read("t")["year"].tolist() == [2019, 2020]
    with pytest.raises(InputError, match="no column '年度'"):
        ingest(workspace, p, dataset="t2", schema="city_panel", column_map={"year": "年度"})
    with pytest.raises(InputError, match="does not have"):
        ingest(workspace, p, dataset="t2", schema="city_panel", column_map={"yaer": "年度标识"})


def test_map_in_schema_yaml(workspace: Workspace, tmp_path: Path) -> None:
    workspace.schemas_dir.mkdir(exist_ok=True)
    (workspace.schemas_dir / "msg.yaml").write_text(
        "name: msg\nkey: [message_id]\nmap: {message_id: 留言编号, time: 留言时间}\nfields:\n"
        "  - {name: message_id, type: string, required: true}\n  - {name: time, type: timestamp}\n"
        "  - {name: text, type: string}\n", encoding="utf-8")
    p = _csv(tmp_path, "留言编号,留言时间,text\nM1,2020-01-02 03:04:05,hello\n")
    r = ingest(workspace, p, dataset="msg", schema="msg")
    df = workspace.read("msg")
    assert r.rows_kept == 1 and df["message_id"].tolist() == ["M1"]
    assert str(df["time"].iloc[0]) == "2020-01-02 03:04:05"


def test_map_on_the_cli(workspace: Workspace, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from citytwin.cli.main import app

    p = _csv(tmp_path, "城市,time,v\n北京市,2020,1\n")
    res = CliRunner().invoke(app, ["ingest", str(p), "-d", "t", "-s", "city_panel", "-w", str(workspace.root),
                                   "--map", "year=time", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows_kept"] == 1
    res = CliRunner().invoke(app, ["ingest", str(p), "-d", "t", "-s", "city_panel", "-w", str(workspace.root),
                                   "--map", "year"])
    assert res.exit_code == 2 and "FIELD=COLUMN" in res.output
