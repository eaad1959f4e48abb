"""HTTP API and web operations center."""
