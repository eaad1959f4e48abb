"""citytwin: a city's digital foundation and operations platform.

Layers (dependencies point down only)::

    service, cli
      ^
    economy, resilience, spatial, planning, twin, participation   (pure functions, no I/O)
      ^
    foundation   (storage, catalog, schemas, ingest, quality, access control)
"""

__version__ = "0.1.0"
