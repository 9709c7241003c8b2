"""The trace store's database: its tables, how connections are opened, and the migrations runner.

SQLite (a file, WAL mode) is the embedded default; give a PostgreSQL URL when the graphs run on
several nodes. The schema is Alembic's (graphs/store/migrations), brought to its newest revision
whenever a store opens. A new revision is written against a migrated database with
`alembic.command.revision(migration_config(connection), message=..., autogenerate=True)`.

Each record has one writer: cluster graphs write tracks, task records and the reply audio; the live
session appends turn events (what it learns of a turn after its graph has run it), which readers
lay over the task records (graphs/store/events.py); the ingress writes annotations, and deletes
tracks and the recordings past retention.
"""

from __future__ import annotations

import enum
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from graphs.config import resolve_path

logger = logging.getLogger(__name__)


class TaskStatus(str, enum.Enum):
    pending = "pending"
    started = "started"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


OPEN = (TaskStatus.pending, TaskStatus.started)


class TurnEventKind(str, enum.Enum):
    """What the live session learns of a turn once its graph has run it."""

    discarded = "discarded"  # started on a pause that was not the end of the user's turn; payload: reason
    heard = "heard"  # the user spoke over its reply; payload: heard_text, heard_s


def now() -> datetime:
    return datetime.now(UTC)


class _Base(DeclarativeBase):
    pass


class TrackRecord(_Base):
    __tablename__ = "tracks"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    cluster: Mapped[str] = mapped_column(String(120), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, onupdate=now)


class TaskRecord(_Base):
    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("track_id", "turn", "position"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    track_id: Mapped[str] = mapped_column(ForeignKey("tracks.id"), index=True)
    cluster: Mapped[str] = mapped_column(String(120))
    turn: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    task_name: Mapped[str] = mapped_column(String(120))
    status: Mapped[TaskStatus] = mapped_column(Enum(TaskStatus, native_enum=False, length=16))
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    result_profile: Mapped[dict] = mapped_column(JSON, default=dict)
    latency_profile: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, onupdate=now)


class TurnEventRecord(_Base):
    """A fact about a turn learnt after its graph ran it, appended, never rewritten.

    It names the turn by its task ids, which the session chose before the graph wrote anything:
    an event may come before the graph has written (or closed) those tasks, even before it has
    made the track, so `track_id` is no foreign key. Readers apply the events, oldest first, over
    whatever the graph has written.
    """

    __tablename__ = "turn_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    track_id: Mapped[str] = mapped_column(String(160), index=True)
    task_ids: Mapped[list] = mapped_column(JSON)
    kind: Mapped[TurnEventKind] = mapped_column(Enum(TurnEventKind, native_enum=False, length=16))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class AudioRecord(_Base):
    __tablename__ = "audio"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    track_id: Mapped[str] = mapped_column(ForeignKey("tracks.id"), index=True)
    turn: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(64))
    sample_rate: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    # Why the recording is gone while its row stays (retention), so a fetch can say 410, not 404.
    removed: Mapped[str | None] = mapped_column(Text, nullable=True)


class AnnotationRecord(_Base):
    """A person's rating of one turn, per stage or overall (stage None), as the original annotators gave."""

    __tablename__ = "annotations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    track_id: Mapped[str] = mapped_column(ForeignKey("tracks.id"), index=True)
    turn: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str | None] = mapped_column(String(120), nullable=True)
    score: Mapped[int] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


metadata = _Base.metadata

MIGRATIONS = Path(__file__).parent / "migrations"
_INITIAL_REVISION = "0001"
# Any number, the same in every process: the PostgreSQL advisory lock that migrations are made under.
_MIGRATION_LOCK = 0x6F6D6E69


def migration_config(connection) -> Config:
    """Alembic's configuration, built in code so no alembic.ini has to ship; it migrates `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine) -> None:
    """Bring the schema to the newest revision, one process at a time.

    Check and upgrade are one transaction under a lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
    advisory lock held until commit), so stores opening together on a new database neither both
    create the tables nor see them half made. A database made before migrations (tables, no
    alembic_version) is adopted: it gets the column added since, then the initial revision's stamp.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config = migration_config(connection)
        tables = inspect(connection).get_table_names()
        if "tracks" in tables and "alembic_version" not in tables:
            if "removed" not in {c["name"] for c in inspect(connection).get_columns("audio")}:
                connection.execute(text("ALTER TABLE audio ADD COLUMN removed TEXT"))
            command.stamp(config, _INITIAL_REVISION)
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(config, "head")
        after = MigrationContext.configure(connection).get_current_revision()
        if after != before:
            logger.info("trace store %s: schema migrated from %s to %s", engine.url.render_as_string(), before, after)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # pysqlite's own BEGIN is deferred: two graphs could both read the last turn and both
    # write the next one. Writers take the write lock at BEGIN instead (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# The execution option that marks a read-only session's connections.
_READ = "omniserve_read_only"


def _sqlite_begin(connection) -> None:
    """Writers take the write lock at BEGIN; readers begin deferred and, in WAL mode, never wait for it."""
    connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get(_READ) else "BEGIN IMMEDIATE")


class Database:
    """An open store: its engine, its schema migrated, sessions that write (`_write`) and that only read (`_read`).

    The store's parts (writes, history, views) are built on it and share one engine in TraceStore.
    """

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                path = resolve_path(parsed.database)
                path.parent.mkdir(parents=True, exist_ok=True)
                parsed = parsed.set(database=str(path))
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine = create_engine(parsed, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        migrate(self.engine)
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self.engine.execution_options(**{_READ: True}), expire_on_commit=False)
