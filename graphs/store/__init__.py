"""Where tracks, task records, turn events, audio and annotations are kept.

schema.py: the tables and the migrations runner; writes.py: the graph's writes and the live
session's turn events; events.py: how readers lay the events over the records; history.py: what
the LLM sees; views.py: what the API and pages read; trace_store.py: TraceStore, all of them on one database.
"""

import logging

from graphs.store.history import history_start
from graphs.store.schema import (
    AudioRecord,
    TaskRecord,
    TaskStatus,
    TurnEventKind,
    TurnEventRecord,
    metadata,
    migration_config,
)
from graphs.store.trace_store import TraceStore
from graphs.store.views import AnnotationError, summarise_turns
from graphs.store.writes import TrackBusy

# Alembic says at INFO which plugins it set up when imported and which dialect it found each time a
# store opens (every replica, every test); the store says itself when a migration runs.
logging.getLogger("alembic").setLevel(logging.WARNING)

__all__ = [
    "AnnotationError",
    "AudioRecord",
    "TaskRecord",
    "TaskStatus",
    "TrackBusy",
    "TraceStore",
    "TurnEventKind",
    "TurnEventRecord",
    "history_start",
    "metadata",
    "migration_config",
    "summarise_turns",
]
