"""Data foundation: storage, catalog, schemas, ingest, quality, access control, space linkage."""
