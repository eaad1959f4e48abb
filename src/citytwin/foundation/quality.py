"""Quality report (A4): completeness, outliers, duplicates and the quarantine of a dataset version.

Validation rules (types, ranges, required fields, unique keys, geometry validity, CRS) are applied
at ingest, where failing records are quarantined with their reason. This report looks at what was
kept, and summarises what was not.

Outliers use Tukey's fences: a value is an outlier when it lies below Q1 − k·IQR or above
Q3 + k·IQR (k = 1.5 by default; 3 gives "far out" values). For sensor observations the fences are
computed per property, since a PM2.5 value and a pressure value do not share a scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citytwin.foundation import duck, readsql
from citytwin.foundation.sql import ident
from citytwin.foundation.workspace import Workspace

NUMERIC = ("DOUBLE", "FLOAT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "DECIMAL", "UBIGINT")


@dataclass
class QualityReport:
    """Quality of one dataset version."""

    dataset: str
    version: int
    schema: str
    rows: int
    rows_read: int | None
    rows_quarantined: int | None
    completeness: dict[str, float]
    missing: dict[str, int]
    outliers: list[dict[str, Any]]
    duplicate_keys: int
    duplicate_rows: int
    key: list[str]
    quarantine_reasons: dict[str, int]
    invalid_geometries: int | None
    crs: str | None
    k: float = 1.5
    notes: list[str] = field(default_factory=list)

    schema_fields: list[str] = field(default_factory=list)
    #: records placed at their administrative unit's representative point (``geometry_source =
    #: 'admin_point'``) instead of their own coordinates, where the dataset has coordinates for others
    admin_points: int = 0

    @property
    def score(self) -> float:
        """Share kept × mean completeness of the schema's fields (all columns for schema-less tables)
        × (1 − ½ × the share of records placed at an administrative point instead of their coordinates).

        A headline figure in [0, 1]; sparse optional columns (e.g. OSM tags) do not lower it. A
        record located only by its unit's representative point counts as half located.
        """
        read = self.rows_read or self.rows
        if read == 0:
            return 0.0
        cols = [c for c in self.schema_fields if c in self.completeness] or list(self.completeness)
        comp = sum(self.completeness[c] for c in cols) / max(len(cols), 1)
        located = 1 - 0.5 * self.admin_points / self.rows if self.rows else 1.0
        return round(self.rows / read * comp * located, 4)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["score"] = self.score
        return d


def quality_report(ws: Workspace, name: str, version: int | None = None, *, k: float = 1.5,
                   max_examples: int = 5) -> QualityReport:
    """Compute the quality report of a dataset version (reads are access-checked and audited)."""
    k, max_examples = float(k), int(max_examples)  # both go into SQL as numbers
    info = ws.info(name)
    v = version or info.current_version
    vi = next(x for x in info.versions if x.version == v)
    path, masked = ws.stats_glob(name, v)
    glob = path.replace("'", "''")  # a SQL string literal (a quote in the workspace path stays data)
    con = duck.connect()
    try:
        rel = con.sql(f"SELECT * FROM read_parquet('{glob}')")
        cols = list(zip(rel.columns, [str(t) for t in rel.types], strict=True))
        rows = int(con.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()[0])  # type: ignore[index]
        cover = readsql.covering(path, "geometry")  # a GeoParquet bbox covering is no data column
        cols = [(c, t) for c, t in cols if not cover or c not in {p[0] for p in cover.values()}]
        plain = [c for c, t in cols if c != "geometry" and not t.startswith(("GEOMETRY", "BLOB"))]
        completeness: dict[str, float] = {}
        missing: dict[str, int] = {}
        if rows and plain:
            exprs = ", ".join(f"count({ident(c)})" for c in plain)
            counts = con.sql(f"SELECT {exprs} FROM read_parquet('{glob}')").fetchone()
            assert counts is not None
            for c, n in zip(plain, counts, strict=True):
                completeness[c] = round(int(n) / rows, 6)
                missing[c] = rows - int(n)
        # outliers
        outliers: list[dict[str, Any]] = []
        numeric = [c for c, t in cols if t.startswith(NUMERIC) and c not in ("year", "_row")]
        by = "property" if "property" in dict(cols) and "value" in numeric else None
        for c in numeric:
            if by and c != "value":
                continue
            qc = ident(c)
            group = ident(by) if by else "'all'"
            stats = con.sql(f"""
                WITH q AS (SELECT {group} AS g, quantile_cont({qc}, 0.25) AS q1, quantile_cont({qc}, 0.75) AS q3
                           FROM read_parquet('{glob}') GROUP BY ALL)
                SELECT q.g, q.q1, q.q3, count(*) FILTER (WHERE {qc} < q1 - {k} * (q3 - q1)
                                                  OR {qc} > q3 + {k} * (q3 - q1)) AS n,
                       list({qc} ORDER BY abs({qc} - (q1 + q3) / 2) DESC)
                           FILTER (WHERE {qc} < q1 - {k} * (q3 - q1) OR {qc} > q3 + {k} * (q3 - q1))[1:{max_examples}]
                FROM read_parquet('{glob}') t JOIN q ON {('t.' + ident(by)) if by else "'all'"} = q.g
                GROUP BY ALL ORDER BY n DESC""").fetchall()
            for g, q1, q3, n, examples in stats:
                if q1 is None:
                    continue
                iqr = q3 - q1
                outliers.append({"column": c, "group": None if g == "all" else g, "q1": q1, "q3": q3,
                                 "low": q1 - k * iqr, "high": q3 + k * iqr, "count": int(n),
                                 "share": round(int(n) / rows, 6) if rows else 0.0,
                                 # values of a personal column stay hidden from a role that sees it masked
                                 "examples": [] if c in masked else (examples or [])})
        # duplicates
        key = [x for x in ws.schema(info.schema).key if x in dict(cols)]
        if "property" in dict(cols) and {"entity", "time"} <= set(dict(cols)):
            key = ["entity", "property", "time"]
        dup_keys = 0
        if key and rows:
            kc = ", ".join(ident(x) for x in key)
            dup_keys = int(con.sql(f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM read_parquet('{glob}')"
                                   f" GROUP BY {kc} HAVING n > 1)").fetchone()[0])  # type: ignore[index]
        allc = ", ".join(ident(c) for c, _ in cols)
        dup_rows = int(con.sql(f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM read_parquet('{glob}') "
                               f"GROUP BY {allc} HAVING n > 1)").fetchone()[0]) if rows else 0  # type: ignore[index]
        admin_pts = 0
        if "geometry_source" in dict(cols) and ("lon" in dict(cols) or ws.schema(info.schema).geometry is not None):
            admin_pts = int(con.sql(f"SELECT count(*) FILTER (WHERE geometry_source = 'admin_point') "
                                    f"FROM read_parquet('{glob}')").fetchone()[0])  # type: ignore[index]
        invalid = None
        if "geometry" in dict(cols):
            g = "geometry" if dict(cols)["geometry"].startswith("GEOMETRY") else "ST_GeomFromWKB(geometry)"
            invalid = int(con.sql(f"SELECT count(*) FILTER (WHERE NOT ST_IsValid({g})) FROM read_parquet('{glob}')"
                                  ).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()
    reasons = dict(vi.params.get("reasons", {})) if vi.params else {}
    notes = list(vi.params.get("notes", [])) if vi.params else []
    return QualityReport(
        dataset=name, version=v, schema=info.schema, rows=rows, rows_read=vi.rows_read,
        rows_quarantined=vi.rows_quarantined, completeness=completeness, missing=missing, outliers=outliers,
        duplicate_keys=dup_keys, duplicate_rows=dup_rows, key=key, quarantine_reasons=reasons,
        invalid_geometries=invalid, crs="EPSG:4326" if invalid is not None else None, k=k, notes=notes,
        schema_fields=[f.name for f in ws.schema(info.schema).fields if f.type != "geometry"], admin_points=admin_pts)
