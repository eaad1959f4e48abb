"""Access control (A5): roles, classification, masking of personal data, audit of every read and write."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from citytwin.foundation.access import AccessDenied, mask_frame
from citytwin.foundation.ingest import ingest
from citytwin.foundation.workspace import Workspace

#: one suite, two backends: each test runs on SQLite (the embedded default) and PostgreSQL (tests/pg.py)
pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture()
def ws(workspace: Workspace, tmp_path: Path) -> Workspace:
    p = tmp_path / "complaints.csv"
    pd.DataFrame({
        "工单编号": ["C1", "C2", "C3"],
        "创建时间": ["2024-04-01 09:00", "2024-04-02 10:00", "2024-04-03 11:00"],
        "诉求类型": ["噪音", "垃圾", "路灯"],
        "姓名": ["张三丰", "李四", "王小明"],
        "电话": ["13812345678", "13987654321", "15000001111"],
        "身份证": ["110101199003071234", "110101198512125678", "11010119700101001X"],
        "地址": ["朝阳区建国路88号", "海淀区中关村大街1号", "东城区东直门内大街5号"],
        "承办部门": ["城管", "环卫", "市政"],
    }).to_csv(p, index=False)
    ingest(workspace, p, dataset="complaints", schema="complaint", classification="sensitive",
           department="city_management")
    q = tmp_path / "stats.csv"
    q.write_text("city,year,gdp\n北京市,2020,1\n", encoding="utf-8")
    ingest(workspace, q, dataset="stats", schema="city_panel", classification="internal", department="statistics")
    r = tmp_path / "open.csv"
    r.write_text("city,year,parks\n北京市,2020,5\n", encoding="utf-8")
    ingest(workspace, r, dataset="open_parks", schema="city_panel", classification="public", department="parks")
    workspace.add_user("resident", "public")
    workspace.add_user("ana", "analyst", "statistics")
    workspace.add_user("cm_analyst", "analyst", "city_management")
    workspace.add_user("vera", "viewer", "statistics")
    workspace.add_user("sam", "steward", "data_office")
    return workspace


def test_public_role_sees_only_public(ws: Workspace) -> None:
    pub = ws.as_user("resident")
    assert [d.name for d in pub.datasets()] == ["open_parks"]
    assert len(pub.read("open_parks")) == 1
    with pytest.raises(AccessDenied, match="may not read sensitive dataset 'complaints'"):
        pub.read("complaints")
    with pytest.raises(AccessDenied, match="internal dataset 'stats'"):
        pub.read("stats")


def test_analyst_without_clearance_denied_sensitive(ws: Workspace) -> None:
    ana = ws.as_user("ana")
    assert len(ana.read("stats")) == 1
    with pytest.raises(AccessDenied):
        ana.read("complaints")
    with pytest.raises(AccessDenied):
        ana.parquet_glob("complaints")  # no way round the check through file paths
    with pytest.raises(AccessDenied):
        ana.quarantine("complaints")


def test_owner_department_analyst_reads_sensitive_masked(ws: Workspace) -> None:
    df = ws.as_user("cm_analyst").read("complaints").set_index("complaint_id")
    assert df.loc["C1", "reporter_phone"] == "138****5678"
    assert df.loc["C1", "reporter_name"] == "张**"
    assert df.loc["C3", "身份证"] == "110101********001X"
    assert df.loc["C1", "address"] == "朝阳区建国路#号"
    assert df.loc["C1", "category"] == "噪音"  # not personal: in clear


def test_steward_sees_personal_data_in_clear(ws: Workspace) -> None:
    df = ws.as_user("sam").read("complaints").set_index("complaint_id")
    assert df.loc["C1", "reporter_phone"] == "13812345678"
    assert df.loc["C2", "reporter_name"] == "李四"


def test_viewer_and_public_cannot_write(ws: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("city,year\nA,2020\n", encoding="utf-8")
    for who in ("vera", "resident"):
        with pytest.raises(AccessDenied, match="may not write"):
            ingest(ws.as_user(who), p, dataset="x", schema="city_panel")
        with pytest.raises(AccessDenied):
            ws.as_user(who).write_derived("y", pd.DataFrame({"a": [1]}), inputs=[], parameters={})
    assert not ws.catalog.exists("x") and not ws.catalog.exists("y")
    with pytest.raises(AccessDenied, match="may not manage users"):
        ws.as_user("ana").add_user("mallory", "admin")


def test_unknown_user_rejected(ws: Workspace) -> None:
    with pytest.raises(AccessDenied, match="not registered"):
        ws.as_user("mallory")


def test_every_read_and_write_audited(ws: Workspace) -> None:
    ws.as_user("ana").read("stats")
    with pytest.raises(AccessDenied):
        ws.as_user("resident").read("complaints")
    ws.as_user("cm_analyst").read("complaints")
    log = pd.DataFrame(ws.catalog.audit_log(limit=1000))
    writes = log[(log.action == "write") & (log.outcome == "ok")]
    assert set(writes["dataset"]) >= {"complaints", "stats", "open_parks"}
    reads = log[log.action == "read"]
    assert ((reads.user == "ana") & (reads.dataset == "stats") & (reads.outcome == "ok")).any()
    denied = reads[(reads.user == "resident") & (reads.dataset == "complaints")]
    assert (denied.outcome == "denied").all() and len(denied) == 1
    masked = reads[(reads.user == "cm_analyst") & (reads.dataset == "complaints")]
    assert "reporter_phone" in masked["detail"].iloc[0]
    assert (log.action == "user.put").sum() >= 5


def test_mask_frame_keeps_missing_missing() -> None:
    df = pd.DataFrame({"phone": ["13812345678", None], "email": ["alice@example.org", float("nan")]})
    out = mask_frame(df, {"phone": "phone", "email": "email"})
    assert out["phone"].iloc[0] == "138****5678" and pd.isna(out["phone"].iloc[1])
    assert out["email"].iloc[0] == "a***@example.org" and pd.isna(out["email"].iloc[1])


def test_live_twin_rules_follow_the_python_api(ws: Workspace) -> None:
    """The twin's HTTP API reuses these rules: whoever may read an internal dataset here may read an internal
    twin there (``readers_of``), and only integrators, stewards and admins may write to the live twin."""
    from citytwin.foundation.access import LIVE_WRITERS, ROLES, can_read, can_write_live, readers_of

    for name in ("ana", "vera", "resident", "sam", "admin"):
        u = ws.as_user(name).user
        try:
            ws.as_user(name).read("stats")  # internal, department statistics
            reads = True
        except AccessDenied:
            reads = False
        assert (u.role in readers_of("internal")) == reads == can_read(u, "internal", None), name
    assert readers_of("sensitive") == ["admin", "steward"] and "public" in readers_of("public")
    # live writers can also write datasets; analysts write datasets but do not feed the live twin
    assert all(ROLES[r].can_write for r in LIVE_WRITERS)
    assert not can_write_live(ws.as_user("ana").user) and ROLES["analyst"].can_write
    from citytwin.foundation.access import require_live_write

    with pytest.raises(AccessDenied, match=r"role viewer\) may not write to the live twin \(needs role integrator"):
        require_live_write(ws.as_user("vera").user)
    with pytest.raises(AccessDenied, match="needs role admin or steward"):
        ws.as_user("ana").read("complaints")


def test_token_table_added_to_an_existing_workspace(workspace: Workspace, backend: str) -> None:
    """Workspaces made before API tokens existed get the table when opened; nothing else changes."""
    import sqlite3

    if backend != "sqlite":
        pytest.skip("an old workspace is a SQLite file (PostgreSQL records began with schema versions)")

    with sqlite3.connect(workspace.catalog.path) as con:
        con.execute("DROP TABLE api_tokens")
        con.execute("DROP TABLE schema_version")  # made before the records had schema versions
    n_audit = len(workspace.catalog.audit_log())
    again = Workspace.open(workspace.root, user="admin")
    assert again.catalog.tokens() == []
    tid, token = again.catalog.issue_token("admin", label="after upgrade")
    assert again.catalog.resolve_token(token) == {"name": "admin", "role": "admin", "department": None,
                                                  "token_id": tid}
    assert [u["name"] for u in again.catalog.users()] == ["admin"] and len(again.catalog.audit_log()) == n_audit
