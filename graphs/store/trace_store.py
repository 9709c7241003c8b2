"""TraceStore: the trace store's parts on one database, for callers that use several of them.

Tracks, their task records, turn events and audio, in any SQLAlchemy database (graphs/store/schema.py).
Only cluster graphs write task records, the live session appends turn events, and the ingress reads
them all (its views apply the events over the records), so model replicas never touch the database.
The ingress also writes annotations and deletes tracks and recordings past retention.
"""

from __future__ import annotations

from graphs.store.history import History
from graphs.store.views import Views
from graphs.store.writes import GraphWrites, TurnFactWrites


class TraceStore(GraphWrites, TurnFactWrites, History, Views):
    """Every part of the store over one engine: the graph's writes, the session's turn facts, history and views."""
