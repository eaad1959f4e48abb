"""Planning and renewal decision support."""
