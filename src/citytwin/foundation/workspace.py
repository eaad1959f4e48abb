"""A workspace: one folder holding a city's governed data.

Layout::

    WORKSPACE/
      citytwin.json            marker and settings
      catalog.sqlite           datasets, versions, lineage, users, audit, jobs (or PostgreSQL: foundation.records)
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
import stat
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import geopandas as gpd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

import citytwin
from citytwin.foundation import access, duck, geoparquet, readsql, records
from citytwin.foundation.catalog import (
    Catalog,
    DatasetInfo,
    VersionInfo,
    check_classification,
    check_name,
    now,
)
from citytwin.foundation.errors import AccessDenied, CitytwinError, InputError, NotFoundError
from citytwin.foundation.piiscan import screen_personal
from citytwin.foundation.readsql import BBox, Filter, select_sql
from citytwin.foundation.roles import CLASSIFICATIONS, User
from citytwin.foundation.schemas import Schema, get_schema, list_schemas
from citytwin.foundation.sql import ident

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

    def __init__(self, root: str | Path, user: str | None = None, database: str | None = None) -> None:
        self.root = Path(root).resolve()
        marker = self.root / MARKER
        if not marker.exists():
            raise NotFoundError(f"{self.root} is not a citytwin workspace (no {MARKER})",
                                hint=f"create one with `citytwin init {root}`")
        self.settings: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
        self.catalog = Catalog(records.resolve_url(database, self.settings.get("database"), self.root / "catalog.sqlite"))
        self.user = self._resolve_user(user)

    # -- creation ----------------------------------------------------------
    @classmethod
    def init(cls, root: str | Path, owner: str | None = None, exist_ok: bool = False, database: str | None = None
             ) -> Workspace:
        """Create a workspace folder (its owner becomes an ``admin``; ``database``: see ``records.resolve_url``)."""
        r = Path(root).resolve()
        if (r / MARKER).exists():
            if exist_ok:
                return cls(r, user=owner, database=database)
            raise CitytwinError(f"{r} is already a citytwin workspace")
        if r.exists() and any(r.iterdir()):
            raise CitytwinError(f"{r} exists and is not empty", hint="choose a new or empty folder")
        url = records.resolve_url(database, None, r / "catalog.sqlite")
        server = Catalog(url) if records.is_postgres(url) else None  # unreachable: raises before any file is made
        with private_files():
            r.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(r, 0o700)  # an existing empty folder too
            for sub in ("data", "quarantine", "schemas", "tmp"):
                (r / sub).mkdir(mode=0o700, exist_ok=True)
            owner = owner or os.environ.get(ENV_USER) or _os_user()
            settings = {"format": 1, "created": now(), "owner": owner, "h3_resolution": 9, "citytwin": citytwin.__version__}
            (r / MARKER).write_text(json.dumps(settings | ({"database": database} if database else {}), indent=2))
            (server or Catalog(url)).put_user(owner, "admin")
            make_private(r)
        return cls(r, user=owner, database=database)

    @classmethod
    def open(cls, root: str | Path | None = None, user: str | None = None) -> Workspace:
        """Open a workspace: ``root``, else ``$CITYTWIN_WORKSPACE``."""
        root = root or os.environ.get(ENV_WORKSPACE)
        if not root:
            raise CitytwinError("no workspace given", hint="pass --workspace DIR or set CITYTWIN_WORKSPACE")
        return cls(root, user=user)

    def as_user(self, name: str) -> Workspace:
        """The same workspace seen by another user."""
        return Workspace(self.root, user=name, database=self.catalog.url)

    def _resolve_user(self, name: str | None) -> User:
        name = name or os.environ.get(ENV_USER) or self.settings.get("owner") or _os_user()
        rec = self.catalog.get_user(name)
        if rec is None:
            raise AccessDenied(f"user {name!r} is not registered in this workspace",
                                      hint="an admin adds users with `citytwin user add NAME --role ROLE`")
        return User(rec["name"], rec["role"], rec["department"])

    # -- paths -----------------------------------------------------------------
    @property
    def schemas_dir(self) -> Path:
        return self.root / "schemas"

    def staging_dir(self) -> Path:
        d = self.root / "tmp" / uuid.uuid4().hex
        d.mkdir(mode=0o700, parents=True)
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
        """Add a user or change a user's role (admins only; allowed or refused, audited)."""
        self.catalog.put_user(name, role, department, by=self.user.name)

    def set_classification(self, name: str, classification: str) -> None:
        """Change a dataset's classification (admins and stewards; allowed or refused, audited)."""
        self.catalog.set_classification(name, classification, by=self.user.name)

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
        with private_files():
            tmp.write_text(json.dumps(settings, indent=2, ensure_ascii=False), encoding="utf-8")
        os.chmod(tmp, stat.S_IMODE(marker.stat().st_mode))
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
        except AccessDenied as exc:
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
        """Parquet glob of a dataset version, after the access check (audited as ``read.path``).

        The files hold personal data in clear, so a role that sees it masked gets no path to a
        version with personal columns (:meth:`read` masks; :meth:`stats_glob` is for aggregates).
        """
        _info, vi = self._version(name, version)
        pii = self.pii_columns(name, vi.version)
        if pii and not self.user.r.sees_personal_data:
            msg = (f"user {self.user.name!r} (role {self.user.role}) may not read the files of {name!r} directly:"
                   f" they hold personal data ({', '.join(sorted(pii))}) that this role sees masked")
            self.catalog.audit(user=self.user.name, role=self.user.role, action="read.path", dataset=name,
                               version=vi.version, outcome="denied", detail=msg)
            raise AccessDenied(msg, hint="use Workspace.read, which masks them")
        self.catalog.audit(user=self.user.name, role=self.user.role, action="read.path", dataset=name,
                           version=vi.version, rows=vi.rows_kept)
        return str(self.root / vi.path / "*.parquet")

    def stats_glob(self, name: str, version: int | None = None) -> tuple[str, dict[str, str]]:
        """Parquet glob of a version for aggregate statistics, with the columns this role sees masked.

        The caller must not show values of the masked columns (only counts over them); audited as
        ``read.stats``.
        """
        _info, vi = self._version(name, version)
        pii = self.pii_columns(name, vi.version)
        masked = {} if self.user.r.sees_personal_data else pii
        self.catalog.audit(user=self.user.name, role=self.user.role, action="read.stats", dataset=name,
                           version=vi.version, rows=vi.rows_kept,
                           detail=f"masked={sorted(masked)}" if masked else None)
        return str(self.root / vi.path / "*.parquet"), masked

    def pii_columns(self, name: str, version: int | None = None) -> dict[str, str]:
        _info, vi = self._version(name, version)
        declared = {c["name"]: c["pii"] for c in vi.columns if c.get("pii")}
        return access.detect_pii([c["name"] for c in vi.columns], declared)

    def read(self, name: str, version: int | None = None, *, columns: Sequence[str] | None = None,
             where: Sequence[Filter] | None = None, limit: int | None = None, bbox: BBox | None = None,
             position: str | None = None) -> pd.DataFrame:
        """Read a dataset version as a (Geo)DataFrame, checked, masked and audited.

        Parameters
        ----------
        name, version
            The dataset and its version (default: the current one).
        columns
            Column names to read (each must be a column of the version; default: all).
        where
            Filters ``(column, op, value)``, all of which must hold; ``op`` is one of
            :data:`~citytwin.foundation.readsql.FILTER_OPS` (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``,
            ``is null``, ``is not null``). Values are bound as parameters, never spliced into SQL;
            a role that sees a personal-data column masked may not filter on it.
        limit
            At most this many records.
        bbox
            ``(min lon, min lat, max lon, max lat)`` (WGS84): only records whose geometry intersects
            it, filtered inside DuckDB (:mod:`~citytwin.foundation.readsql`; its GeoParquet bbox
            covering first where the files have one).
        position
            Name of a column to add first: each record's position in the version (0-based, the row
            a plain read would put it in), a stable id of the record within the version.

        Raises
        ------
        InputError
            An unknown column, an operator not allowed, or SQL text given as ``where``.
        AccessDenied
            The role may not read the dataset, or filters on a column it sees masked.

        Examples
        --------
        >>> import tempfile, pandas as pd
        >>> ws = Workspace.init(tempfile.mkdtemp() + "/ws")
        >>> _ = ws.write_derived("t", pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}), inputs=[], parameters={})
        >>> ws.read("t", columns=["b"], where=[("a", ">=", 2), ("b", "in", ["y", "q"])])["b"].tolist()
        ['y']
        """
        _info, vi = self._version(name, version)
        path = str(self.root / vi.path / "*.parquet")
        pii = self.pii_columns(name, vi.version)
        masked = {} if self.user.r.sees_personal_data else pii
        con = readsql.cursor()
        try:
            available = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()]
            try:
                geom = next((c["name"] for c in vi.columns if str(c.get("type", "")).upper().startswith("GEOMETRY")),
                            "geometry")
                # the covering column (GeoParquet 1.1) serves the bbox filter only: never read as data
                cover = readsql.covering(path, geom)
                hidden = sorted({p[0] for p in cover.values()}) if cover else []
                available = [c for c in available if c not in hidden]
                if position is not None and position in available:
                    raise InputError(f"position column {position!r} is a column of {name!r}", field="position")
                sql, params = select_sql(available, columns, where, limit, masked=masked, bbox=bbox, geometry=geom,
                                         cover=cover, position=position is not None, hidden=hidden)
            except CitytwinError as exc:
                self.catalog.audit(user=self.user.name, role=self.user.role, action="read", dataset=name,
                                   version=vi.version,
                                   outcome="denied" if isinstance(exc, AccessDenied) else "error",
                                   detail=str(exc)[:500])
                raise
            table = con.execute(sql, [path, *params]).to_arrow_table()
            if position is not None:
                pos = readsql.positions(con, path, table[readsql.POS_FILE].to_pylist(),
                                        table[readsql.POS_ROW].to_pylist())
                table = table.drop_columns([readsql.POS_FILE, readsql.POS_ROW]).add_column(0, position, pa.array(pos))
        except duckdb.Error as exc:
            self.catalog.audit(user=self.user.name, role=self.user.role, action="read", dataset=name,
                               version=vi.version, outcome="error", detail=str(exc)[:500])
            raise InputError(f"cannot read dataset {name!r}: {exc}") from exc
        finally:
            con.close()
        df = readsql.arrow_to_frame(table)
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
            if self.pii_columns(name, vi.version):
                df["record"] = "(masked: raw records hold personal data for this role)"
            # numbers and addresses found in the raw text are masked in any case (quarantined records
            # were not scanned at commit, and a reason may quote the value)
            for c in ("record", "reason"):
                if c in df.columns:
                    df[c] = df[c].map(lambda v: access.mask_text(v) if isinstance(v, str) else v)
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
                       inputs: list[tuple[str, int | None]] | None = None,
                       notes: list[str] | None = None,
                       personal_candidates: Sequence[str] | None = None) -> int:
        """Move a complete staging folder into place as the next version and record it.

        Nothing is visible until the catalog row is committed; on failure the staging is removed.
        Files and folders of the version are owner-only (0600/0700).

        - An ingest identical to the current version (same source SHA-256, schema, options and
          classification) stores nothing and returns the current version, with a note.
        - An ingest whose every record was quarantined is refused for a new dataset (the error
          counts the reasons) and, for an existing one, recorded but not made current.
        - Text columns are scanned for personal data (:func:`detect_personal_columns`); columns
          found are marked ``pii`` in the catalog (``pii_detected: true``) and masked on read.
          ``personal_candidates`` (from an ingest that screened every value as it wrote them) limits
          the scan to those columns; None scans every text column.

        ``notes`` (default: ``params["notes"]`` when it is a list) receives what was decided.
        """
        check_name(name)
        check_classification(classification)
        access.require_write(self.user, name)
        sink = notes if notes is not None else (params or {}).get("notes")
        say = sink.append if isinstance(sink, list) else (lambda _n: None)
        promote = True
        if self.catalog.exists(name):
            prev = self.catalog.get(name)
            if access.can_read(self.user, prev.classification, prev.department) is False:
                raise AccessDenied(f"user {self.user.name!r} may not write dataset {name!r}")
            if classification != prev.classification:
                self._require_classifier(name, f"{prev.classification} -> {classification}",
                                         hint=f"ingest with classification {prev.classification!r}, or ask a"
                                              " steward to change it")
            same = _identical_to_current(prev, kind=kind, schema=schema, classification=classification,
                                         department=department, source_sha256=source_sha256, params=params)
            if same is not None:
                shutil.rmtree(staging, ignore_errors=True)
                if quarantine is not None:
                    quarantine.unlink(missing_ok=True)
                note = (f"identical to version {same} (same source SHA-256, schema and options): "
                        "no new version stored")
                say(note)
                self.catalog.audit(user=self.user.name, role=self.user.role, action="write", dataset=name,
                                   version=same, rows=0, detail=f"no-op: {note}")
                return same
        if kind == "ingested" and rows_kept == 0 and (rows_quarantined or 0) > 0:
            why = _reason_counts(quarantine)
            if not self.catalog.exists(name):
                raise InputError(f"all {rows_quarantined:,} record(s) were quarantined, so nothing was stored"
                                 f" as dataset {name!r}" + (f"; reasons: {why}" if why else ""),
                                 file=source_path, hint="fix the file (or the schema mapping) and ingest again")
            promote = False
        version = self.catalog.next_version(name)
        target = self.version_dir(name, version)
        qtarget = self.quarantine_file(name, version) if quarantine is not None else None
        if not promote:
            cur = self.catalog.get(name).current_version
            say(f"all {rows_quarantined:,} record(s) quarantined: version {version} is recorded (see `citytwin "
                f"quarantine {name} --version {version}`) but not made current; the current version stays "
                f"{cur}")
        try:
            with private_files():
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.replace(staging, target)
                make_private(target)
                if quarantine is not None and qtarget is not None:
                    qtarget.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    os.replace(quarantine, qtarget)
                    os.chmod(qtarget, 0o600)
            cols = [dict(c) for c in (columns or [])]
            if promote and any(target.glob("*.parquet")):
                found = detect_personal_columns(str(target / "*.parquet"),
                                                skip={c["name"] for c in cols if c.get("pii") or c.get("type") in
                                                      ("GEOMETRY",) or "h3_resolution" in c},
                                                candidates=personal_candidates)
                for col, kind_found in found.items():
                    entry = next((c for c in cols if c.get("name") == col), None)
                    if entry is None:
                        entry = {"name": col}
                        cols.append(entry)
                    entry["pii"] = kind_found
                    entry["pii_detected"] = True
                if found:
                    say("personal data found in column(s) " + ", ".join(f"{c} ({k})" for c, k in found.items())
                        + ": marked personal in the catalog, masked for roles without clearance")
            vi = VersionInfo(
                dataset=name, version=version, created=now(), created_by=self.user.name, source_path=source_path,
                source_sha256=source_sha256, rows_read=rows_read, rows_kept=rows_kept,
                rows_quarantined=rows_quarantined, columns=cols, extent=extent, time_min=time_min,
                time_max=time_max, path=str(target.relative_to(self.root)),
                quarantine_path=str(qtarget.relative_to(self.root)) if qtarget else None,
                params=params or {}, code_version=code_version(),
            )
            self.catalog.add_version(name=name, schema=schema, kind=kind, department=department,
                                     classification=classification, description=description, source=source,
                                     licence=licence, owner=self.user.name, version=vi, inputs=inputs or [],
                                     promote=promote)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            if qtarget is not None:
                qtarget.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
            self.catalog.audit(user=self.user.name, role=self.user.role, action="write", dataset=name,
                               outcome="error")
            raise
        self.catalog.audit(user=self.user.name, role=self.user.role, action="write", dataset=name,
                           version=version, rows=rows_kept, detail=kind if promote else f"{kind} (not current)")
        if promote:  # where PostGIS serving is on, a spatial version goes there now (a failure is said, not raised)
            from citytwin.foundation import postgis

            postgis.publish_on_commit(self, name, version, say)
        return version

    def _require_classifier(self, name: str, change: str, hint: str) -> None:
        """Refuse (and audit) a classification change by a role that may not classify."""
        from citytwin.foundation.catalog import CLASSIFIERS

        if self.user.role in CLASSIFIERS:
            return
        msg = (f"user {self.user.name!r} (role {self.user.role}) may not change the classification of {name!r}"
               f" ({change}; needs role {' or '.join(CLASSIFIERS)})")
        self.catalog.audit(user=self.user.name, role=self.user.role, action="classify", dataset=name,
                           outcome="denied", detail=change)
        raise AccessDenied(msg, hint=hint)

    def stale(self, name: str) -> list[dict[str, Any]]:
        """Inputs of ``name``'s current version that have newer versions (empty: up to date).

        A derived dataset built on an old input version is stale: rebuilt now, it would differ.
        """
        return self.info(name).stale

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
        strictest = max(levels, key=CLASSIFICATIONS.index)
        cls = classification or strictest
        check_classification(cls)
        if CLASSIFICATIONS.index(cls) < CLASSIFICATIONS.index(strictest):
            self._require_classifier(name, f"{strictest} inputs -> {cls}",
                                     hint=f"derived data is {strictest} like its strictest input unless a"
                                          " steward or admin classifies it lower")
        staging = self.staging_dir()
        write_frame(frame, staging / "part-0.parquet")
        params = dict(parameters)
        if code:
            params["_code"] = code
        return self.commit_version(
            name=name, schema=schema, staging=staging, quarantine=None, kind="derived", department=department,
            classification=cls, description=description, rows_read=len(frame), rows_kept=len(frame),
            rows_quarantined=0, columns=[{"name": str(c), "type": str(t)} for c, t in frame.dtypes.items()],
            extent=_extent(frame), params=params, inputs=resolved,
        )


def detect_personal_columns(parquet_glob: str, skip: set[str] | None = None,
                            candidates: Sequence[str] | None = None) -> dict[str, str]:
    """Text columns of a Parquet version that hold personal data, found by value.

    A column whose every value is a Chinese mobile number, a resident ID (checksum verified) or an
    e-mail gets that kind; a column with such data inside longer text gets ``"text"`` (masked
    piecewise by :func:`~citytwin.foundation.access.mask_text`). DuckDB scans every value of the
    text columns that :func:`~citytwin.foundation.piiscan.screen_personal` lets through, or, with ``candidates`` (the columns a
    writer already screened value by value), of those alone.

    Returns
    -------
    dict
        ``{column: kind}`` of the columns found.
    """
    skip = skip or set()
    if candidates is not None and not set(candidates) - skip:
        return {}
    con = duck.connect(spatial=False)
    try:
        desc = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [parquet_glob]).fetchall()
        text_cols = [r[0] for r in desc if r[1] == "VARCHAR" and r[0] not in skip]
        found: dict[str, str] = {}
        text_cols = screen_personal(parquet_glob, text_cols) if candidates is None else \
            [c for c in text_cols if c in set(candidates)]
        if not text_cols:
            return found
        nb = "(^|[^0-9])"
        pats = {"phone": f"{nb}({access.MOBILE_CN})([^0-9]|$)", "id_number": f"{nb}({access.RESIDENT_ID})([^0-9Xx]|$)",
                "email": f"({access.EMAIL})"}
        # one pass with one pattern per column screens out columns with nothing personal (the
        # usual case: ~0.3 µs per value); only the columns with a hit get the per-kind counts
        screen = "|".join(f"({v})" for v in pats.values()).replace("'", "''")
        row0 = con.execute("SELECT " + ", ".join(
            # shorter than "a@b.cn" holds none of them: skip the pattern there (DuckDB evaluates AND lazily)
            f"bool_or(length({ident(c)}) >= 6 AND regexp_matches({ident(c)}, '{screen}'))"
            for c in text_cols)
            + " FROM read_parquet(?)", [parquet_glob]).fetchone()
        text_cols = [c for c, hit in zip(text_cols, row0 or [], strict=False) if hit]
        if not text_cols:
            return found
        aggs = []
        for i, c in enumerate(text_cols):
            q = ident(c)
            aggs.append(f"count({q}) AS n{i}")
            for k, pat in pats.items():
                sq = pat.replace("'", "''")
                aggs.append(f"count(*) FILTER (WHERE regexp_matches({q}, '{sq}')) AS {k}_any{i}")
                aggs.append(f"count(*) FILTER (WHERE regexp_full_match(trim({q}), '{sq}')) AS {k}_all{i}")
        row = con.execute(f"SELECT {', '.join(aggs)} FROM read_parquet(?)", [parquet_glob]).fetchone()
        res = dict(zip([d[0] for d in con.description or []], row or [], strict=False))
        for i, c in enumerate(text_cols):
            n = int(res.get(f"n{i}") or 0)
            hits = {k: int(res.get(f"{k}_any{i}") or 0) for k in pats}
            if n == 0 or not any(hits.values()):
                continue
            if hits["id_number"]:
                # resident IDs count only with a valid checksum (checked on up to 1,000 candidates)
                sq = pats["id_number"].replace("'", "''")
                cands = con.execute(f"SELECT regexp_extract({ident(c)}, '{sq}', 2) FROM read_parquet(?)"
                                    f" WHERE regexp_matches({ident(c)}, '{sq}') LIMIT 1000",
                                    [parquet_glob]).fetchall()
                if not any(access.valid_resident_id(str(v[0])) for v in cands):
                    hits["id_number"] = 0
            whole = [k for k in pats if hits[k] and int(res.get(f"{k}_all{i}") or 0) == n]
            if whole:
                found[c] = whole[0]
            elif any(hits.values()):
                found[c] = "text"
    finally:
        con.close()
    return found


def _identical_to_current(prev: DatasetInfo, *, kind: str, schema: str, classification: str,
                          department: str | None, source_sha256: str | None,
                          params: dict[str, Any] | None) -> int | None:
    """The current version of ``prev`` when an ingest would store the same again, else None."""
    if kind != "ingested" or not source_sha256 or prev.kind != "ingested" or not prev.current_version:
        return None
    cur = prev.current
    if cur.source_sha256 != source_sha256 or prev.schema != schema or prev.classification != classification:
        return None
    if department is not None and department != prev.department:
        return None
    ignore = ("notes", "reasons", "pipeline")
    a = {k: v for k, v in (cur.params or {}).items() if k not in ignore}
    b = json.loads(json.dumps({k: v for k, v in (params or {}).items() if k not in ignore}, default=str))
    return cur.version if a == b else None


def _reason_counts(quarantine: Path | None, top: int = 5) -> str:
    """The commonest quarantine reasons, as text (``field: reason (count)``)."""
    if quarantine is None or not Path(quarantine).exists():
        return ""
    try:
        q = pd.read_parquet(quarantine, columns=["field", "reason"])
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return ""
    counts = q.fillna("").groupby(["field", "reason"]).size().sort_values(ascending=False).head(top)
    parts = []
    for key, n in counts.items():
        f, r = (str(k) for k in key) if isinstance(key, tuple) else ("", str(key))
        parts.append(f"{f + ': ' if f else ''}{r} ({int(n):,})")
    return "; ".join(parts)


@contextmanager
def private_files() -> Iterator[None]:
    """Create files and folders owner-only (umask 077) inside the block.

    The umask is process-wide: other threads creating files meanwhile get it too (only stricter).
    """
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def make_private(path: Path) -> None:
    """Make ``path`` and everything under it owner-only: folders 0700, files 0600."""
    os.chmod(path, 0o700 if path.is_dir() else 0o600)
    if path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o700)
            for f in filenames:
                fp = os.path.join(dirpath, f)
                if not os.path.islink(fp):
                    os.chmod(fp, 0o600)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "owner"


def _extent(frame: pd.DataFrame) -> list[float] | None:
    if isinstance(frame, gpd.GeoDataFrame) and len(frame) and frame.geometry.notna().any():
        return [float(x) for x in frame.total_bounds]
    return None


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write a (Geo)DataFrame as one Parquet file of a version.

    A GeoDataFrame becomes GeoParquet 1.1 (WKB in CRS84, a bbox covering column, rows in Hilbert
    order when there is more than one row group: :func:`citytwin.foundation.geoparquet.write_spatial`);
    other frames plain Parquet.
    """
    if isinstance(frame, gpd.GeoDataFrame):
        gcol = frame.geometry.name
        f = frame
        if f.crs is not None and not f.crs.equals("EPSG:4326") and not f.crs.equals("OGC:CRS84"):
            f = f.to_crs("EPSG:4326")
        plain = pd.DataFrame(f.drop(columns=[gcol]))
        geoms = f.geometry.values
        plain[gcol] = shapely.to_wkb(geoms, flavor="iso")
        table = pa.Table.from_pandas(plain, preserve_index=False)
        geoparquet.write_spatial(table, path, gcol, shapely.bounds(geoms),
                                 [str(t) for t in f.geometry.geom_type.dropna().unique()])
        return
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


