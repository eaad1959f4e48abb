"""The ``citytwin`` command-line tool (thin: it parses, calls the API, prints)."""
