"""citytwin.spatial (see docs/architecture.md)."""
