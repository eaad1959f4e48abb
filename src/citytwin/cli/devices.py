"""`citytwin twin devices ...`: MQTT accounts of the twin's devices and services, and the broker's files.

Also the MQTT client options (credentials and TLS) that `twin ingest`, `twin replay` and
`twin serve` share (:data:`MqttUsernameOpt` …, :func:`mqtt_auth`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from citytwin.cli.common import (
    JsonOpt,
    UserOpt,
    WorkspaceOpt,
    console,
    err_console,
    handle_errors,
    open_workspace,
    print_json,
)
from citytwin.foundation import access
from citytwin.foundation.errors import InputError, NotFoundError
from citytwin.foundation.mqtt import (
    ENV_PASSWORD,
    ENV_TLS_CA,
    ENV_TLS_CERT,
    ENV_TLS_KEY,
    ENV_USERNAME,
    MqttAuth,
)
from citytwin.foundation.mqtt_auth import DEFAULT_SERVICE_NAMES, MqttAccounts, entities_matching

if TYPE_CHECKING:
    from citytwin.foundation.workspace import Workspace

app = typer.Typer(help="MQTT accounts: per-device credentials, service accounts, the broker's password and ACL "
                       "files (docs/twin.md, \"MQTT security\").", no_args_is_help=True)

# -- client options shared by the MQTT commands of `citytwin twin` ------------------------------
MqttUsernameOpt = Annotated[str | None, typer.Option("--username", envvar=ENV_USERNAME,
                                                     help="MQTT account (or $CITYTWIN_MQTT_USERNAME).")]
MqttPasswordOpt = Annotated[str | None, typer.Option("--password", envvar=ENV_PASSWORD, show_default=False,
                                                     help="MQTT password (better: $CITYTWIN_MQTT_PASSWORD, "
                                                          "which other users cannot see in the process list).")]
TlsCaOpt = Annotated[str | None, typer.Option("--tls-ca", envvar=ENV_TLS_CA,
                                              help="CA certificate of the broker (PEM): connect with TLS.")]
TlsCertOpt = Annotated[str | None, typer.Option("--tls-cert", envvar=ENV_TLS_CERT, help="Client certificate (PEM).")]
TlsKeyOpt = Annotated[str | None, typer.Option("--tls-key", envvar=ENV_TLS_KEY, help="Client key (PEM).")]


def mqtt_auth(username: str | None, password: str | None, tls_ca: str | None, tls_cert: str | None,
              tls_key: str | None) -> MqttAuth:
    """The client options of a command as an :class:`MqttAuth` (typer already read the environment)."""
    return MqttAuth(username=username, password=password, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)


# -- accounts ------------------------------------------------------------------------------------
def _admin_accounts(workspace: Path | None, user: str | None) -> tuple[Workspace, MqttAccounts]:
    ws = open_workspace(workspace, user)
    access.require_admin(ws.user)
    return ws, MqttAccounts(ws.catalog, actor=ws.user.name, actor_role=ws.user.role)


def _registered_entities(ws: Workspace) -> list[str]:
    path = ws.root / "twin" / "state.sqlite"
    if not path.exists():
        return []
    from citytwin.foundation.timeseries.state import StateStore

    store = StateStore(path)
    try:
        return [e["id"] for e in store.query(limit=1_000_000)]
    finally:
        store.close()


def _write_files(accts: MqttAccounts, ws: Workspace, out: Path | None, prefix: str) -> None:
    if out is None:
        return
    from citytwin.service.auth import twin_classification

    pw, acl = accts.write_broker_files(out, prefix=prefix, twin_classification=twin_classification(ws.settings))
    err_console.print(f"wrote {pw} and {acl} (`scripts/mosquitto.sh reload DIR` applies them to a running broker)",
                      highlight=False)


OutOpt = Annotated[Path | None, typer.Option("--write", help="Also rewrite the broker's passwd and acl files in "
                                             "this folder.")]
PrefixOpt = Annotated[str, typer.Option(help="Topic prefix.")]


@app.command("add")
@handle_errors
def add(
    stations: Annotated[list[str] | None, typer.Argument(help="Entity URNs, or local ids (Dongsi or "
                                                         "Beijing-Dongsi) of registered entities.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Entity type of local ids (default: any).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="A device account for every registered entity.")] = False,
    unregistered: Annotated[bool, typer.Option(help="Accept an entity URN not (yet) registered in the twin.")]
    = False,
    service: Annotated[list[str] | None, typer.Option(help="Also a service account: ingest, alerts, publisher or "
                                                      "monitor (for `citytwin doctor`) "
                                                      "(default names " + ", ".join(DEFAULT_SERVICE_NAMES.values())
                                                      + ").")] = None,
    ws_user: Annotated[list[str] | None, typer.Option("--ws-user", help="Also an account for this workspace "
                                                      "user (reads follow the user's role).")] = None,
    write: OutOpt = None,
    prefix: PrefixOpt = "citytwin",
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create MQTT accounts (admins): one per device (entity), and service or user accounts.

    No password is set: `citytwin twin devices credentials NAME` issues one. Example:
    citytwin twin devices add Dongsi Tiantan --service ingest --service alerts -w ./ws
    """
    ws, accts = _admin_accounts(workspace, user)
    known = _registered_entities(ws)
    entities: list[str] = list(known) if all_ else []
    for s in stations or []:
        hits = entities_matching(s, known, type_=type_)
        if not hits and unregistered and s.startswith("urn:ngsi-ld:"):
            hits = [s]
        if not hits:
            raise NotFoundError(f"no registered entity {s!r} in the twin ({len(known)} registered)",
                                hint="register it first (POST /ngsi-ld/v1/entities, or a replay), give its URN "
                                     "with --unregistered, or see `citytwin twin devices add --help`")
        if len(hits) > 1:
            raise InputError(f"{s!r} names several entities: {', '.join(hits)}", field="station",
                             hint="give the full URN or --type")
        entities.append(hits[0])
    if not entities and not service and not ws_user:
        raise InputError("nothing to add", hint="name stations, or pass --all, --service or --ws-user")
    added = [accts.add_device(e) for e in dict.fromkeys(entities)]
    added += [accts.add_service(k) for k in service or []]
    added += [accts.add_user(u) for u in ws_user or []]
    _write_files(accts, ws, write, prefix)
    if as_json:
        print_json([a.to_dict() for a in added])
        return
    for a in added:
        console.print(f"{a.username}  {a.kind}  {a.entity or ''}", highlight=False)


@app.command("list")
@handle_errors
def list_(workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """List MQTT accounts (never passwords or hashes)."""
    _, accts = _admin_accounts(workspace, user)
    rows = [a.to_dict() for a in accts.list()]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    t = Table("username", "kind", "entity", "credentials", "issued")
    for r in rows:
        state = "revoked" if r["revoked"] else "issued" if r["has_password"] else "none"
        t.add_row(r["username"], r["kind"], r["entity"] or "", state, r["issued"] or "")
    console.print(t)


@app.command("credentials")
@handle_errors
def credentials(
    name: Annotated[str, typer.Argument(help="Station (entity URN or local id) or account name.")],
    write: OutOpt = None,
    prefix: PrefixOpt = "citytwin",
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue new credentials for an account (admins); the previous password stops working.

    The password is shown only now; the catalog keeps its PBKDF2-SHA512 hash. Rewrite the broker's
    files (--write DIR, or `broker-files`) and reload the broker for it to take effect.
    """
    ws, accts = _admin_accounts(workspace, user)
    username, password = accts.issue(accts.find(name).username)
    _write_files(accts, ws, write, prefix)
    if as_json:
        print_json({"username": username, "password": password})
        return
    err_console.print(f"credentials of {username}: store them now, the password is not shown again",
                      highlight=False)
    typer.echo(f"username: {username}\npassword: {password}")


@app.command("revoke")
@handle_errors
def revoke(
    name: Annotated[str, typer.Argument(help="Station (entity URN or local id) or account name.")],
    write: OutOpt = None,
    prefix: PrefixOpt = "citytwin",
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an account's credentials (admins); it leaves the broker's password file."""
    ws, accts = _admin_accounts(workspace, user)
    a = accts.revoke(accts.find(name).username)
    _write_files(accts, ws, write, prefix)
    if as_json:
        print_json(a.to_dict())
        return
    console.print(f"{a.username}: revoked ({a.revoked_at})", highlight=False)


@app.command("broker-files")
@handle_errors
def broker_files(
    out: Annotated[Path, typer.Option("--out", help="Folder for passwd and acl.")],
    prefix: PrefixOpt = "citytwin",
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the broker's password_file (passwd) and acl_file (acl) from the workspace's accounts (admins).

    Start a broker on them with `scripts/mosquitto.sh start DIR --auth OUT`.
    """
    ws, accts = _admin_accounts(workspace, user)
    from citytwin.service.auth import twin_classification

    pw, acl = accts.write_broker_files(out, prefix=prefix, twin_classification=twin_classification(ws.settings))
    n = sum(1 for a in accts.list() if a.has_password and not a.revoked)
    if as_json:
        print_json({"password_file": str(pw), "acl_file": str(acl), "accounts": n})
        return
    console.print(f"{n} account(s): {pw}, {acl}", highlight=False)
