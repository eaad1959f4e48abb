"""Imported first by ``twin_throughput.py``: in the spawned ingest process (``__mp_main__``), glibc is limited
to one malloc arena before the bench's imports (numpy, pyarrow, DuckDB) start any thread, as ``citytwin twin
ingest|serve`` do before theirs (``citytwin.foundation.allocator.limit_malloc_arenas``; docs/twin.md,
"Session 14"). Nothing in the bench's own process: its raw subscriber and publishers keep glibc's defaults."""

import sys

if "__mp_main__" in sys.modules:  # runpy has put the spawned child's main module there
    from citytwin.foundation.allocator import limit_malloc_arenas

    limit_malloc_arenas()
