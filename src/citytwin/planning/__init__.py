"""citytwin.planning: planning and renewal decision support (E, not started; no public names yet)."""

__all__: list[str] = []
