"""citytwin.twin (see docs/architecture.md)."""
