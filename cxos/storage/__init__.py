"""PostgreSQL as the system of record: the event log, CDRs and their exports.

``StorageService`` is the component the application starts first and stops last; the other
modules are its parts (see docs/storage.md).
"""

from cxos.storage.cdr import CallDetailRecord, CallFold, Segment, fold_call, fold_calls
from cxos.storage.database import Database, open_database
from cxos.storage.events_store import EventWriter, WriterOptions, WriterStats
from cxos.storage.service import StorageOptions, StorageService

__all__ = [
    "CallDetailRecord",
    "CallFold",
    "Database",
    "EventWriter",
    "Segment",
    "StorageOptions",
    "StorageService",
    "WriterOptions",
    "WriterStats",
    "fold_call",
    "fold_calls",
    "open_database",
]
