"""citytwin.participation: public participation (G, not started; no public names yet)."""

__all__: list[str] = []
