"""Public participation."""
