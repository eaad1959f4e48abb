"""Foundation commands: ingest, catalog, quality, users, schemas, demo."""

from __future__ import annotations
