"""Alembic's entry point for the trace store: migrates the connection TraceStore hands over.

TraceStore opens the transaction (holding the migration lock) and passes its connection in
`config.attributes["connection"]`, so one code path serves SQLite files, in-memory SQLite and PostgreSQL.
"""

from alembic import context

from graphs.store.trace_store import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
