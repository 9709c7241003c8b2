"""Alembic's entry point for the trace store: migrates the connection the store hands over.

The store (graphs/store/schema.py, `migrate`) opens the transaction (holding the migration lock) and
passes its connection in `config.attributes["connection"]`, so one code path serves SQLite files, in-memory SQLite and PostgreSQL.
"""

from alembic import context

from graphs.store.schema import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
