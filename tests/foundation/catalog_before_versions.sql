-- A catalog written by citytwin before the records had schema versions (commit 3e4c162,
-- foundation/catalog.py), dumped with sqlite3's iterdump; times and the token hash fixed.
-- tests/foundation/test_records.py opens it and checks the migration.
BEGIN TRANSACTION;
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL UNIQUE,
    user TEXT NOT NULL,
    label TEXT,
    created TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    revoked_at TEXT
);
INSERT INTO "api_tokens" VALUES(1,'0000000000000000000000000000000000000000000000000000000000000000','vera','old','2026-01-02T03:04:05+00:00',0,NULL);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    user TEXT,
    role TEXT,
    action TEXT NOT NULL,
    dataset TEXT,
    version INTEGER,
    rows INTEGER,
    outcome TEXT NOT NULL,
    detail TEXT
);
INSERT INTO "audit" VALUES(1,'2026-01-02T03:04:05+00:00','admin','admin','user.put',NULL,NULL,NULL,'ok','admin:admin');
INSERT INTO "audit" VALUES(2,'2026-01-02T03:04:05+00:00','admin','admin','user.put',NULL,NULL,NULL,'ok','vera:viewer');
INSERT INTO "audit" VALUES(3,'2026-01-02T03:04:05+00:00','vera','viewer','read','pois',1,9,'ok',NULL);
CREATE TABLE datasets (
    name TEXT PRIMARY KEY,
    schema TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'ingested',
    department TEXT,
    classification TEXT NOT NULL DEFAULT 'internal',
    description TEXT DEFAULT '',
    source TEXT,
    licence TEXT,
    owner TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    current_version INTEGER NOT NULL DEFAULT 0
);
INSERT INTO "datasets" VALUES('pois','poi','ingested','planning','public','POIs','/data/pois.csv','ODbL','admin','2026-01-02T03:04:05+00:00','2026-01-02T03:04:05+00:00',1);
INSERT INTO "datasets" VALUES('pois_per_h3','derived','derived',NULL,'internal','per cell',NULL,NULL,'admin','2026-01-02T03:04:05+00:00','2026-01-02T03:04:05+00:00',1);
CREATE TABLE lineage (
    dataset TEXT NOT NULL,
    version INTEGER NOT NULL,
    input_dataset TEXT NOT NULL,
    input_version INTEGER,
    role TEXT DEFAULT 'input'
);
INSERT INTO "lineage" VALUES('pois_per_h3',1,'pois',1,'input');
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    department TEXT,
    created TEXT NOT NULL
);
INSERT INTO "users" VALUES('admin','admin',NULL,'2026-01-02T03:04:05+00:00');
INSERT INTO "users" VALUES('vera','viewer',NULL,'2026-01-02T03:04:05+00:00');
CREATE TABLE versions (
    dataset TEXT NOT NULL REFERENCES datasets(name),
    version INTEGER NOT NULL,
    created TEXT NOT NULL,
    created_by TEXT,
    source_path TEXT,
    source_sha256 TEXT,
    rows_read INTEGER,
    rows_kept INTEGER,
    rows_quarantined INTEGER,
    columns_json TEXT,
    extent_json TEXT,
    time_min TEXT,
    time_max TEXT,
    path TEXT NOT NULL,
    quarantine_path TEXT,
    params_json TEXT,
    code_version TEXT,
    PRIMARY KEY (dataset, version)
);
INSERT INTO "versions" VALUES('pois',1,'2026-01-02T03:04:05+00:00','admin','/data/pois.csv','abababababababababababababababababababababababababababababababab',10,9,1,'[{"name": "name", "type": "string"}]','[24.9, 60.1, 25.0, 60.2]',NULL,NULL,'data/pois/v1','quarantine/pois/v1.parquet','{"crs": "EPSG:4326"}','0.1.0');
INSERT INTO "versions" VALUES('pois_per_h3',1,'2026-01-02T03:04:05+00:00','admin',NULL,'abababababababababababababababababababababababababababababababab',10,9,1,'[{"name": "name", "type": "string"}]','[24.9, 60.1, 25.0, 60.2]',NULL,NULL,'data/pois_per_h3/v1',NULL,'{"crs": "EPSG:4326"}','0.1.0');
CREATE INDEX audit_dataset ON audit(dataset);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('audit',3);
INSERT INTO "sqlite_sequence" VALUES('api_tokens',1);
COMMIT;
