"""The trace store's database for tests that run on each backend: SQLite, and a real PostgreSQL."""

import pytest

from tests.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session, started by the first test that needs it.

    A missing initdb or pg_ctl fails those tests by name: they are never skipped.
    """
    try:
        server = PostgresServer()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'traces.db'}"
    return request.getfixturevalue("postgres").new_database()
