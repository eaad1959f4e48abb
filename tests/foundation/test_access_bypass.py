"""Access control that holds (issue 12): each test is a bypass that worked before and must not now.

- ``Workspace.read(where=..., columns=...)`` spliced SQL: a viewer read a sensitive dataset unmasked
  through a ``UNION`` while the audit named another dataset.
- ``catalog.put_user`` / ``catalog.set_classification`` were unchecked and unaudited from Python.
- Masking matched header substrings (``hotel_count`` masked for "tel") and missed personal data
  inside free text.
- Workspace files were world-readable.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from citytwin.foundation.access import (
    AccessDenied,
    find_personal,
    mask_text,
    pii_from_header,
    valid_resident_id,
)
from citytwin.foundation.errors import InputError
from citytwin.foundation.ingest import ingest
from citytwin.foundation.workspace import Workspace, detect_personal_columns

#: one suite, two backends: each test runs on SQLite (the embedded default) and PostgreSQL (tests/pg.py)
pytestmark = pytest.mark.usefixtures("backend")

# resident IDs with valid GB 11643 checksums (computed by hand from the standard's weights)
ID_OK = "11010519491231002X"
ID_OK2 = "440524188001010014"


@pytest.fixture()
def ws(workspace: Workspace, tmp_path: Path) -> Workspace:
    p = tmp_path / "complaints.csv"
    pd.DataFrame({
        "工单编号": ["C1", "C2", "C3"],
        "创建时间": ["2024-04-01 09:00", "2024-04-02 10:00", "2024-04-03 11:00"],
        "诉求类型": ["噪音", "垃圾", "路灯"],
        "诉求内容": [f"王先生(身份证{ID_OK})反映楼下噪音, 回电 13812345678",
                 "垃圾未清运, 联系 li.si@example.cn", "路灯不亮"],
        "姓名": ["张三丰", "李四", "王小明"],
        "电话": ["13812345678", "13987654321", "15000001111"],
        "地址": ["朝阳区建国路88号", "海淀区中关村大街1号", "东城区东直门内大街5号"],
    }).to_csv(p, index=False)
    ingest(workspace, p, dataset="complaints", schema="complaint", classification="sensitive",
           department="city_management")
    q = tmp_path / "open.csv"
    q.write_text("city,year,parks\n北京市,2020,5\n上海市,2020,7\n", encoding="utf-8")
    ingest(workspace, q, dataset="open_parks", schema="city_panel", classification="public", department="parks")
    workspace.add_user("vera", "viewer", "statistics")
    workspace.add_user("cm", "analyst", "city_management")
    workspace.add_user("sam", "steward", "data_office")
    return workspace


# ---------------------------------------------------------------------------
# 1. reads: no SQL splicing
# ---------------------------------------------------------------------------
def test_union_through_where_is_refused_and_audited_on_the_right_dataset(ws: Workspace) -> None:
    vera = ws.as_user("vera")
    secret = str(ws.root / "data" / "complaints" / "v1" / "*.parquet")
    attack = f"1=1 UNION ALL SELECT reporter_name, NULL, NULL FROM read_parquet('{secret}')"
    with pytest.raises(InputError, match="SQL text is not accepted"):
        vera.read("open_parks", columns=["city", "year", "parks"], where=attack)  # type: ignore[arg-type]
    log = pd.DataFrame(ws.catalog.audit_log(limit=50))
    last = log[log.user == "vera"].iloc[0]
    assert (last.action, last.dataset, last.outcome) == ("read", "open_parks", "error")
    assert not ((log.user == "vera") & (log.dataset == "open_parks") & (log.outcome == "ok")).any()


def test_sql_through_columns_is_refused(ws: Workspace) -> None:
    vera = ws.as_user("vera")
    secret = str(ws.root / "data" / "complaints" / "v1" / "*.parquet")
    for bad in (f"city\" FROM read_parquet('{secret}') --", "*", "reporter_name", "city, year"):
        with pytest.raises(InputError, match="unknown column"):
            vera.read("open_parks", columns=[bad])
    with pytest.raises(InputError, match="not a string"):
        vera.read("open_parks", columns="city")


def test_structured_filters_match_pandas(ws: Workspace) -> None:
    whole = ws.read("open_parks")
    got = ws.read("open_parks", where=[("parks", ">", 5)])
    assert got["city"].tolist() == whole[whole.parks > 5]["city"].tolist() == ["上海市"]
    got = ws.read("open_parks", columns=["city"], where=[("city", "in", ["北京市", "广州市"]), ("year", "=", 2020)])
    assert got.columns.tolist() == ["city"] and got["city"].tolist() == ["北京市"]
    assert len(ws.read("open_parks", where=[("city", "in", [])])) == 0
    assert len(ws.read("open_parks", where=[("city", "not in", [])])) == 2
    # a value that looks like SQL is only ever a value
    assert len(ws.read("open_parks", where=[("city", "=", "x' OR '1'='1")])) == 0
    with pytest.raises(InputError, match="operator 'union' is not allowed"):
        ws.read("open_parks", where=[("city", "union", "x")])
    with pytest.raises(InputError, match="needs one value"):
        ws.read("open_parks", where=[("city", "=", None)])


def test_no_filtering_on_a_column_the_role_sees_masked(ws: Workspace) -> None:
    """Filtering on a masked column would reveal it value by value (an oracle)."""
    with pytest.raises(AccessDenied, match="may not filter on column 'reporter_phone'"):
        ws.as_user("cm").read("complaints", where=[("reporter_phone", "=", "13812345678")])
    log = pd.DataFrame(ws.catalog.audit_log(limit=5))
    assert (log.iloc[0].user, log.iloc[0].outcome, log.iloc[0].dataset) == ("cm", "denied", "complaints")
    # a steward sees it in clear, so may filter on it
    got = ws.as_user("sam").read("complaints", where=[("reporter_phone", "=", "13812345678")])
    assert got["complaint_id"].tolist() == ["C1"]


# ---------------------------------------------------------------------------
# 2. users, roles and classification: checked and audited in the catalog itself
# ---------------------------------------------------------------------------
def test_viewer_cannot_promote_self_through_the_catalog(ws: Workspace) -> None:
    vera = ws.as_user("vera")
    with pytest.raises(AccessDenied, match="may not manage users"):
        vera.catalog.put_user("vera", "admin")  # no acting user named
    with pytest.raises(AccessDenied, match=r"'vera' \(role viewer\) may not manage users"):
        vera.catalog.put_user("vera", "admin", by="vera")
    with pytest.raises(AccessDenied):
        vera.add_user("vera", "admin")
    with pytest.raises(AccessDenied, match="unregistered"):
        vera.catalog.put_user("mallory", "admin", by="mallory")
    assert ws.catalog.get_user("vera")["role"] == "viewer" and ws.catalog.get_user("mallory") is None
    log = pd.DataFrame(ws.catalog.audit_log(limit=10))
    denied = log[(log.action == "user.put") & (log.outcome == "denied")]
    assert len(denied) == 4
    assert denied.detail.tolist().count("vera:admin") == 3
    ok = pd.DataFrame(ws.catalog.audit_log(limit=1000))
    added = ok[(ok.action == "user.put") & (ok.outcome == "ok") & (ok.detail == "vera:viewer:statistics")]
    assert added.user.tolist() == ["admin"] and added.role.tolist() == ["admin"]


def test_classification_change_is_checked_and_audited(ws: Workspace) -> None:
    for who in ("vera", "cm"):
        with pytest.raises(AccessDenied, match="may not classify"):
            ws.as_user(who).catalog.set_classification("complaints", "public", by=who)
        with pytest.raises(AccessDenied, match="may not classify"):
            ws.as_user(who).set_classification("complaints", "public")
    assert ws.catalog.get("complaints").classification == "sensitive"
    ws.as_user("sam").set_classification("open_parks", "internal")
    assert ws.catalog.get("open_parks").classification == "internal"
    log = pd.DataFrame(ws.catalog.audit_log(limit=10))
    cls = log[log.action == "classify"]
    assert cls.outcome.tolist() == ["ok", "denied", "denied", "denied", "denied"]
    assert cls.iloc[0].detail == "public -> internal" and cls.iloc[0].user == "sam"
    assert set(cls[cls.outcome == "denied"].dataset) == {"complaints"}


def test_cli_classify_goes_through_the_same_check(ws: Workspace) -> None:
    from typer.testing import CliRunner

    from citytwin.cli.main import app

    r = CliRunner().invoke(app, ["catalog", "classify", "complaints", "public", "-w", str(ws.root), "--user", "vera"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert ws.catalog.audit_log(limit=1)[0]["outcome"] == "denied"


# ---------------------------------------------------------------------------
# 3. masking: by field, by whole-word header, and detectors inside text
# ---------------------------------------------------------------------------
def test_header_hints_match_words_not_substrings() -> None:
    assert [pii_from_header(h) for h in ("hotel_count", "hostel_beds", "mailbox_count", "电话亭数量")] == [None] * 4
    assert [pii_from_header(h) for h in ("tel", "contact_phone", "MobileNumber", "E-mail", "投诉人电话", "身份证号")] == [
        "phone", "phone", "phone", "email", "phone", "id_number"]


def test_hotel_count_is_not_masked(workspace: Workspace) -> None:
    workspace.add_user("vera", "viewer")
    workspace.write_derived("hotels", pd.DataFrame({"district": ["东城区"], "hotel_count": [42], "telescope": [1]}),
                            inputs=[], parameters={})
    df = workspace.as_user("vera").read("hotels")
    assert df["hotel_count"].tolist() == [42] and df["telescope"].tolist() == [1]


def test_resident_id_checksum() -> None:
    assert valid_resident_id(ID_OK) and valid_resident_id(ID_OK2)
    assert not valid_resident_id(ID_OK[:-1] + "1") and not valid_resident_id("110101199003071234")
    # 18 digits that fail the checksum are not an ID; a 19-digit run is not one either
    assert find_personal("订单号 110101199003071234") == []
    assert find_personal(f"9{ID_OK2}") == []


def test_detectors_in_free_text() -> None:
    text = f"张先生来电(+86 139-8765-4321), 身份证{ID_OK2}; 邮箱 zhang@example.com.cn. 订单 1381234567890"
    kinds = [(k, text[a:b]) for k, a, b in find_personal(text)]
    assert kinds == [("phone", "+86 139-8765-4321"), ("id_number", ID_OK2), ("email", "zhang@example.com.cn")]
    assert mask_text(text) == ("张先生来电(139****4321), 身份证440524********0014; 邮箱 z***@example.com.cn. "
                               "订单 1381234567890")


def test_free_text_is_masked_and_marked_in_the_catalog(ws: Workspace) -> None:
    cols = {c["name"]: c for c in ws.catalog.get("complaints").current.columns}
    assert cols["description"]["pii"] == "text" and cols["description"]["pii_detected"] is True
    assert cols["category"].get("pii") is None
    df = ws.as_user("cm").read("complaints").set_index("complaint_id")
    assert df.loc["C1", "description"] == "王先生(身份证110105********002X)反映楼下噪音, 回电 138****5678"
    assert df.loc["C2", "description"] == "垃圾未清运, 联系 l***@example.cn"
    assert df.loc["C3", "description"] == "路灯不亮"
    assert df.loc["C1", "reporter_phone"] == "138****5678"
    clear = ws.as_user("sam").read("complaints").set_index("complaint_id")
    assert ID_OK in clear.loc["C1", "description"]
    log = pd.DataFrame(ws.catalog.audit_log(limit=3))
    assert "description" in log[(log.user == "cm")].detail.iloc[0]


def test_whole_value_columns_get_their_kind(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": ["13812345678", None, "+86 150 0000 1111"], "b": [ID_OK, ID_OK2, None],
                             "c": ["x@y.org", "z@w.cn", "q@r.com"], "d": ["h3 8a1fb46622dffff", "2024", "无"],
                             "e": ["110101199003071234", "0", "1"]}), tmp_path / "t.parquet")
    assert detect_personal_columns(str(tmp_path / "*.parquet")) == {"a": "phone", "b": "id_number", "c": "email"}


def test_real_311_text_has_no_false_positives(shared_data: Path) -> None:
    """NYC 311 records (addresses, descriptors, resolution text, ids, coordinates): nothing personal by value."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    src = shared_data / "complaints_311" / "nyc_311_service_requests_YangziXinJas.csv"
    t = pacsv.read_csv(src, convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in pacsv.read_csv(src).column_names}))
    assert t.num_rows > 500
    import pyarrow.parquet as pq

    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"ct311_{os.getpid()}.parquet"
    try:
        pq.write_table(t, out)
        assert detect_personal_columns(str(out)) == {}
    finally:
        out.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# 4. owner-only files
# ---------------------------------------------------------------------------
def test_workspace_files_are_owner_only(ws: Workspace) -> None:
    ws.write_derived("derived", pd.DataFrame({"a": [1]}), inputs=["open_parks"], parameters={})
    bad: list[tuple[str, str]] = []
    checked = 0
    for dirpath, dirnames, filenames in os.walk(ws.root):
        for d in dirnames:
            mode = stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode)
            checked += 1
            if mode & 0o077:
                bad.append((d, oct(mode)))
        for f in filenames:
            mode = stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode)
            checked += 1
            if mode & 0o077:
                bad.append((f, oct(mode)))
    assert stat.S_IMODE(ws.root.stat().st_mode) == 0o700
    assert checked > 10 and bad == []
    ws.set_setting("twin_classification", "public")
    assert stat.S_IMODE((ws.root / "citytwin.json").stat().st_mode) == 0o600


def test_no_unmasked_files_or_outlier_examples_for_masked_roles(workspace: Workspace) -> None:
    """``parquet_glob`` hands out files with personal data in clear; the quality report's outlier
    examples are values: neither may reach a role that sees those columns masked."""
    from citytwin.foundation.quality import quality_report

    workspace.add_user("vera", "viewer")
    phones = [13800000000 + i for i in range(9)] + [19999999999]
    workspace.write_derived("calls", pd.DataFrame({"mobile": phones, "minutes": [3] * 9 + [300]}), inputs=[],
                            parameters={})
    vera = workspace.as_user("vera")
    with pytest.raises(AccessDenied, match="personal data"):
        vera.parquet_glob("calls")
    rep = quality_report(vera, "calls")
    ex = {o["column"]: o["examples"] for o in rep.outliers}
    assert ex == {"mobile": [], "minutes": [300]}
    assert {o["column"]: o["examples"] for o in quality_report(workspace, "calls").outliers}["mobile"] == [
        19999999999]
    assert vera.read("calls")["mobile"].iloc[0] == "138****0000"


def test_no_declassification_through_a_write(ws: Workspace, tmp_path: Path) -> None:
    """Re-ingesting with another classification, or deriving below the inputs' classification, is a
    classification change: only admins and stewards may make it."""
    ws.add_user("ivan", "integrator", "city_management")
    ws.add_user("ana", "analyst", "city_management")
    q = tmp_path / "open2.csv"
    q.write_text("city,year,parks\n北京市,2021,6\n", encoding="utf-8")
    ingest(ws, q, dataset="open_parks", schema="city_panel", classification="internal")  # admin: allowed
    with pytest.raises(AccessDenied, match=r"may not change the classification of 'open_parks' \(internal -> public"):
        ingest(ws.as_user("ivan"), q, dataset="open_parks", schema="city_panel", classification="public")
    assert ws.catalog.get("open_parks").classification == "internal"
    ana = ws.as_user("ana")
    df = ana.read("complaints")  # own department's sensitive data, masked
    with pytest.raises(AccessDenied, match="sensitive inputs -> public"):
        ana.write_derived("leak", df, inputs=["complaints"], parameters={}, classification="public")
    assert not ws.catalog.exists("leak")
    ana.write_derived("counts", df.groupby("category").size().reset_index(name="n"), inputs=["complaints"],
                      parameters={})
    assert ws.catalog.get("counts").classification == "sensitive"
    log = pd.DataFrame(ws.catalog.audit_log(limit=20))
    assert ((log.action == "classify") & (log.outcome == "denied")).sum() == 2


def test_quarantined_raw_text_is_masked_for_masked_roles(workspace: Workspace, tmp_path: Path) -> None:
    """Quarantined records keep their raw text; personal data in it stays hidden from masked roles."""
    workspace.add_user("vera", "viewer")
    p = tmp_path / "p.csv"
    p.write_text("城市,年份,备注\n北京市,2020,ok\n上海市,联系13812345678,x\n", encoding="utf-8")
    ingest(workspace, p, dataset="panel", schema="city_panel")
    q = workspace.as_user("vera").quarantine("panel")
    assert len(q) == 1
    assert "13812345678" not in " ".join(q["record"].astype(str)) + " ".join(q["reason"].astype(str))
    assert "138****5678" in q["record"].iloc[0]
    assert "13812345678" in workspace.quarantine("panel")["record"].iloc[0]  # admin: in clear
