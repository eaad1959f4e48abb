"""Workflows: read inputs (files or catalog datasets), call domain functions, write outputs."""
