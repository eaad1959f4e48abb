"""A workspace: one folder holding a city's governed data.

Layout::

    WORKSPACE/
      citytwin.json            marker and settings
      catalog.sqlite           datasets, versions, lineage, users, audit (SQLite)
      data/NAME/vN/*.parquet   each dataset version (GeoParquet where it has geometry)
      quarantine/NAME/vN.parquet  rejected records with file, row, field and reason
      schemas/*.yaml           user-registered schemas
      tmp/                     staging; a version appears only when complete

Examples
--------
>>> import tempfile, pandas as pd
>>> ws = Workspace.init(tempfile.mkdtemp() + "/ws")
>>> v = ws.write_derived("demo_table", pd.DataFrame({"a": [1, 2]}), inputs=[], parameters={"k": 1})
>>> ws.read("demo_table")["a"].tolist()
[1, 2]
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import duckdb
import geopandas as gpd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

import citytwin
from citytwin.foundation import access, duck
from citytwin.foundation.catalog import (
    Catalog,
    DatasetInfo,
    VersionInfo,
    check_classification,
    check_name,
    now,
)
from citytwin.foundation.errors import CitytwinError, InputError, NotFoundError
from citytwin.foundation.schemas import Schema, get_schema, list_schemas

MARKER = "citytwin.json"
ENV_WORKSPACE = "CITYTWIN_WORKSPACE"
ENV_USER = "CITYTWIN_USER"


def code_version() -> str:
    """citytwin's version, with the git commit when run from a checkout."""
    v = citytwin.__version__
    try:
        root = Path(__file__).resolve().parents[3]
        if (root / ".git").exists():
            sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, timeout=5).stdout.strip()
            if sha:
                v += f"+g{sha}"
    except (OSError, subprocess.SubprocessError):
        pass
    return v


class Workspace:
    """A citytwin workspace folder. Open with :meth:`open`, create with :meth:`init`."""

    def __init__(self, root: str | Path, user: str | None = None) -> None:
        self.root = Path(root).resolve()
        marker = self.root / MARKER
        if not marker.exists():
            raise NotFoundError(f"{self.root} is not a citytwin workspace (no {MARKER})",
                                hint=f"create one with `citytwin init {root}`")
        self.settings: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
        self.catalog = Catalog(self.root / "catalog.sqlite")
        self.user = self._resolve_user(user)

    # -- creation ----------------------------------------------------------
    @classmethod
    def init(cls, root: str | Path, owner: str | None = None, exist_ok: bool = False) -> Workspace:
        """Create a workspace folder (its owner becomes an ``admin`` user)."""
        r = Path(root).resolve()
        if (r / MARKER).exists():
            if exist_ok:
                return cls(r, user=owner)
            raise CitytwinError(f"{r} is already a citytwin workspace")
        if r.exists() and any(r.iterdir()):
            raise CitytwinError(f"{r} exists and is not empty", hint="choose a new or empty folder")
        for sub in ("data", "quarantine", "schemas", "tmp"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        owner = owner or os.environ.get(ENV_USER) or _os_user()
        (r / MARKER).write_text(json.dumps({"format": 1, "created": now(), "owner": owner,
                                            "h3_resolution": 9, "citytwin": citytwin.__version__},
                                           indent=2), encoding="utf-8")
        Catalog(r / "catalog.sqlite").put_user(owner, "admin")
        return cls(r, user=owner)

    @classmethod
    def open(cls, root: str | Path | None = None, user: str | None = None) -> Workspace:
        """Open a workspace: ``root``, else ``$CITYTWIN_WORKSPACE``."""
        root = root or os.environ.get(ENV_WORKSPACE)
        if not root:
            raise CitytwinError("no workspace given", hint="pass --workspace DIR or set CITYTWIN_WORKSPACE")
        return cls(root, user=user)

    def as_user(self, name: str) -> Workspace:
        """The same workspace seen by another user."""
        return Workspace(self.root, user=name)

    def _resolve_user(self, name: str | None) -> access.User:
        name = name or os.environ.get(ENV_USER) or self.settings.get("owner") or _os_user()
        rec = self.catalog.get_user(name)
        if rec is None:
            raise access.AccessDenied(f"user {name!r} is not registered in this workspace",
                                      hint="an admin adds users with `citytwin user add NAME --role ROLE`")
        return access.User(rec["name"], rec["role"], rec["department"])

    # -- paths -----------------------------------------------------------------
    @property
    def schemas_dir(self) -> Path:
        return self.root / "schemas"

    def staging_dir(self) -> Path:
        d = self.root / "tmp" / uuid.uuid4().hex
        d.mkdir(parents=True)
        return d

    def version_dir(self, name: str, version: int) -> Path:
        return self.root / "data" / name / f"v{version}"

    def quarantine_file(self, name: str, version: int) -> Path:
        return self.root / "quarantine" / name / f"v{version}.parquet"

    def schema(self, name: str) -> Schema:
        return get_schema(name, self.schemas_dir)

    def schemas(self) -> list[Schema]:
        return list_schemas(self.schemas_dir)

    # -- users ----------------------------------------------------------------
    def add_user(self, name: str, role: str, department: str | None = None) -> None:
        access.require_admin(self.user)
        access.check_role(role)
        self.catalog.put_user(name, role, department)
        self.catalog.audit(user=self.user.name, role=self.user.role, action="user.put", detail=f"{name}:{role}")

    # -- settings -------------------------------------------------------------
    def set_setting(self, key: str, value: Any) -> None:
        """Change a workspace setting in ``citytwin.json`` (admins only; audited).

        Examples
        --------
        >>> import tempfile
        >>> ws = Workspace.init(tempfile.mkdtemp() + "/ws", owner="admin")
        >>> ws.set_setting("twin_classification", "public")
        >>> Workspace.open(ws.root, user="admin").settings["twin_classification"]
        'public'
        """
        access.require_admin(self.user)
        if not isinstance(key, str) or not key or key in ("owner", "format"):
            raise InputError(f"setting {key!r} cannot be changed", field="key")
        json.dumps(value)  # settings must stay JSON
        marker = self.root / MARKER
        settings = json.loads(marker.read_text(encoding="utf-8"))
        settings[key] = value
        tmp = marker.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(settings, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, marker)
        self.settings = settings
        self.catalog.audit(user=self.user.name, role=self.user.role, action="setting", detail=f"{key}={value}")

    # -- catalog views (metadata is readable by anyone who may read the dataset) -----
    def info(self, name: str) -> DatasetInfo:
        info = self.catalog.get(name)
        access.require_read(self.user, name, info.classification, info.department)
        return info

    def datasets(self) -> list[DatasetInfo]:
        """Datasets this user may see."""
        return [d for d in self.catalog.all_datasets() if access.can_read(self.user, d.classification, d.department)]

    # -- reads ---------------------------------------------------------------
    def _version(self, name: str, version: int | None) -> tuple[DatasetInfo, VersionInfo]:
        info = self.catalog.get(name)
        try:
            access.require_read(self.user, name, info.classification, info.department)
        except access.AccessDenied as exc:
            self.catalog.audit(user=self.user.name, role=self.user.role, action="read", dataset=name,
                               version=version, outcome="denied", detail=str(exc))
            raise
        v = version or info.current_version
        vi = next((x for x in info.versions if x.version == v), None)
        if vi is None:
            raise NotFoundError(f"dataset {name!r} has no version {v}",
                                hint=f"versions: {[x.version for x in info.versions]}")
        return info, vi

    def parquet_glob(self, name: str, version: int | None = None) -> str:
        """Parquet glob of a dataset version, after the access check (audited as ``read.path``)."""
        _info, vi = self._version(name, version)
        self.catalog.audit(user=self.user.name, role=self.user.role, action="read.path", dataset=name,
                           version=vi.version, rows=vi.rows_kept)
        return str(self.root / vi.path / "*.parquet")

    def pii_columns(self, name: str, version: int | None = None) -> dict[str, str]:
        _info, vi = self._version(name, version)
        declared = {c["name"]: c["pii"] for c in vi.columns if c.get("pii")}
        return access.detect_pii([c["name"] for c in vi.columns], declared)

    def read(self, name: str, version: int | None = None, *, columns: list[str] | None = None,
             where: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Read a dataset version as a (Geo)DataFrame, checked, masked and audited.

        ``where`` is a DuckDB SQL predicate over the dataset's columns.
        """
        _info, vi = self._version(name, version)
        path = str(self.root / vi.path / "*.parquet")
        cols = "*" if not columns else ", ".join(f'"{c}"' for c in columns)
        sql = f"SELECT {cols} FROM read_parquet('{path}')"
        if where:
            sql += f" WHERE {where}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        con = duck.connect(spatial=False)
        try:
            table = con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            self.catalog.audit(user=self.user.name, role=self.user.role, action="read", dataset=name,
                               version=vi.version, outcome="error", detail=str(exc)[:500])
            raise InputError(f"cannot read dataset {name!r}: {exc}") from exc
        finally:
            con.close()
        df = _arrow_to_frame(table)
        pii = self.pii_columns(name, vi.version)
        masked = {} if self.user.r.sees_personal_data else pii
        df = access.mask_frame(df, masked)
        self.catalog.audit(user=self.user.name, role=self.user.role, action="read", dataset=name,
                           version=vi.version, rows=len(df),
                           detail=f"masked={sorted(masked)}" if masked else None)
        return df

    def quarantine(self, name: str, version: int | None = None) -> pd.DataFrame:
        """The quarantined records of a version (file, row, field, reason, raw record)."""
        _info, vi = self._version(name, version)
        if not vi.quarantine_path or not (self.root / vi.quarantine_path).exists():
            return pd.DataFrame(columns=["file", "row", "field", "reason", "record"])
        df = pd.read_parquet(self.root / vi.quarantine_path)
        self.catalog.audit(user=self.user.name, role=self.user.role, action="read.quarantine", dataset=name,
                           version=vi.version, rows=len(df))
        if not self.user.r.sees_personal_data:
            df["record"] = "(masked: raw records hold personal data for this role)" if self.pii_columns(
                name, vi.version) else df["record"]
        return df

    # -- writes ---------------------------------------------------------------
    def commit_version(self, *, name: str, schema: str, staging: Path, quarantine: Path | None,
                       kind: str, department: str | None, classification: str, description: str = "",
                       source: str | None = None, licence: str | None = None, source_path: str | None = None,
                       source_sha256: str | None = None, rows_read: int | None = None,
                       rows_kept: int | None = None, rows_quarantined: int | None = None,
                       columns: list[dict[str, Any]] | None = None, extent: list[float] | None = None,
                       time_min: str | None = None, time_max: str | None = None,
                       params: dict[str, Any] | None = None,
                       inputs: list[tuple[str, int | None]] | None = None) -> int:
        """Move a complete staging folder into place as the next version and record it.

        Nothing is visible until the catalog row is committed; on failure the staging is removed.
        """
        check_name(name)
        check_classification(classification)
        access.require_write(self.user, name)
        if self.catalog.exists(name):
            prev = self.catalog.get(name)
            if access.can_read(self.user, prev.classification, prev.department) is False:
                raise access.AccessDenied(f"user {self.user.name!r} may not write dataset {name!r}")
        version = self.catalog.next_version(name)
        target = self.version_dir(name, version)
        qtarget = self.quarantine_file(name, version) if quarantine is not None else None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, target)
            if quarantine is not None and qtarget is not None:
                qtarget.parent.mkdir(parents=True, exist_ok=True)
                os.replace(quarantine, qtarget)
            vi = VersionInfo(
                dataset=name, version=version, created=now(), created_by=self.user.name, source_path=source_path,
                source_sha256=source_sha256, rows_read=rows_read, rows_kept=rows_kept,
                rows_quarantined=rows_quarantined, columns=columns or [], extent=extent, time_min=time_min,
                time_max=time_max, path=str(target.relative_to(self.root)),
                quarantine_path=str(qtarget.relative_to(self.root)) if qtarget else None,
                params=params or {}, code_version=code_version(),
            )
            self.catalog.add_version(name=name, schema=schema, kind=kind, department=department,
                                     classification=classification, description=description, source=source,
                                     licence=licence, owner=self.user.name, version=vi, inputs=inputs or [])
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            if qtarget is not None:
                qtarget.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
            self.catalog.audit(user=self.user.name, role=self.user.role, action="write", dataset=name,
                               outcome="error")
            raise
        self.catalog.audit(user=self.user.name, role=self.user.role, action="write", dataset=name,
                           version=version, rows=rows_kept, detail=kind)
        return version

    def write_derived(self, name: str, frame: pd.DataFrame, *, inputs: list[str | tuple[str, int | None]],
                      parameters: dict[str, Any], schema: str = "table", department: str | None = None,
                      classification: str | None = None, description: str = "",
                      code: str | None = None) -> int:
        """Store a derived dataset (a result) as a new version, with its lineage.

        ``inputs`` are dataset names (their current version) or ``(name, version)`` pairs. The
        classification defaults to the strictest of the inputs'.
        """
        resolved: list[tuple[str, int | None]] = []
        levels = ["public"]
        for item in inputs:
            nm, ver = (item, None) if isinstance(item, str) else item
            if self.catalog.exists(nm):
                inf = self.catalog.get(nm)
                resolved.append((nm, ver or inf.current_version))
                levels.append(inf.classification)
            else:
                resolved.append((nm, ver))
        from citytwin.foundation.catalog import CLASSIFICATIONS
        cls = classification or max(levels, key=CLASSIFICATIONS.index)
        staging = self.staging_dir()
        table = frame_to_arrow(frame)
        pq.write_table(table, staging / "part-0.parquet")
        params = dict(parameters)
        if code:
            params["_code"] = code
        return self.commit_version(
            name=name, schema=schema, staging=staging, quarantine=None, kind="derived", department=department,
            classification=cls, description=description, rows_read=len(frame), rows_kept=len(frame),
            rows_quarantined=0, columns=[{"name": str(c), "type": str(t)} for c, t in frame.dtypes.items()],
            extent=_extent(frame), params=params, inputs=resolved,
        )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "owner"


def _extent(frame: pd.DataFrame) -> list[float] | None:
    if isinstance(frame, gpd.GeoDataFrame) and len(frame) and frame.geometry.notna().any():
        return [float(x) for x in frame.total_bounds]
    return None


def frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A (Geo)DataFrame as an Arrow table; geometry as WKB with GeoParquet metadata (CRS84)."""
    if isinstance(frame, gpd.GeoDataFrame):
        gcol = frame.geometry.name
        f = frame
        if f.crs is not None and not f.crs.equals("EPSG:4326") and not f.crs.equals("OGC:CRS84"):
            f = f.to_crs("EPSG:4326")
        plain = pd.DataFrame(f.drop(columns=[gcol]))
        plain[gcol] = shapely.to_wkb(f.geometry.values, flavor="iso")
        table = pa.Table.from_pandas(plain, preserve_index=False)
        return with_geo_metadata(table, gcol, list(f.geometry.geom_type.dropna().unique()))
    return pa.Table.from_pandas(frame, preserve_index=False)


def with_geo_metadata(table: pa.Table | pa.Schema, column: str, types: list[str] | None = None) -> Any:
    """Attach GeoParquet 1.0 metadata (WKB, CRS84 longitude/latitude) to a table or schema."""
    geo = {"version": "1.0.0", "primary_column": column,
           "columns": {column: {"encoding": "WKB", "geometry_types": sorted(set(types or []))}}}
    meta = dict(table.schema.metadata or {}) if isinstance(table, pa.Table) else dict(table.metadata or {})
    meta[b"geo"] = json.dumps(geo).encode()
    if isinstance(table, pa.Table):
        return table.replace_schema_metadata(meta)
    return table.with_metadata(meta)


def _arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    df = table.to_pandas()
    if "geometry" in df.columns:
        geom = shapely.from_wkb(df["geometry"].to_numpy())
        return gpd.GeoDataFrame(df.drop(columns=["geometry"]), geometry=geom, crs="EPSG:4326")
    return df
