"""Time-series storage of the live twin: history (Parquet + DuckDB), live state and dead letters (SQLite).

See :mod:`.history`, :mod:`.state`, :mod:`.deadletter` and :mod:`.ingest`.
"""

from citytwin.foundation.timeseries.deadletter import DeadLetter, DeadLetterStore
from citytwin.foundation.timeseries.history import HistoryStore, Near
from citytwin.foundation.timeseries.ingest import Ingestor, IngestReport, StoreError, TwinStores
from citytwin.foundation.timeseries.state import StateStore

__all__ = ["DeadLetter", "DeadLetterStore", "HistoryStore", "IngestReport", "Ingestor", "Near", "StateStore",
           "StoreError", "TwinStores"]
