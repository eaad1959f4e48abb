"""citytwin.economy (see docs/architecture.md)."""
