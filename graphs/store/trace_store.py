"""Tracks, their task records and their audio, in any SQLAlchemy database.

SQLite (a file, WAL mode) is the embedded default; give a PostgreSQL URL when the graphs run on
several nodes. Only cluster graphs write task records and only the ingress reads them, so model
replicas never touch the database. The ingress also deletes tracks and recordings past retention.

The schema is Alembic's (graphs/store/migrations), brought to its newest revision whenever a store
opens. A new revision is written against a migrated database with
`alembic.command.revision(migration_config(connection), message=..., autogenerate=True)`.
"""

from __future__ import annotations

import enum
import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
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
    delete,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from graphs.config import resolve_path
from graphs.observability.latency import turn_summary

logger = logging.getLogger(__name__)


class TaskStatus(str, enum.Enum):
    pending = "pending"
    started = "started"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


def history_start(exchanges: int, turns: int) -> int:
    """Where a history of at most `turns` of these exchanges begins: it moves by half the window
    (rounded up) once the window is full, so it keeps between half and all of `turns`."""
    if exchanges <= turns:
        return 0
    step = (turns + 1) // 2
    return ((exchanges - turns - 1) // step + 1) * step


def _now() -> datetime:
    return datetime.now(UTC)


class _Base(DeclarativeBase):
    pass


class TrackRecord(_Base):
    __tablename__ = "tracks"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    cluster: Mapped[str] = mapped_column(String(120), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class AnnotationError(ValueError):
    pass


class TrackBusy(RuntimeError):
    """A turn of the track is running: deleting it now would leave that turn's later writes behind."""


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


def _migrate(engine) -> None:
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


def _jsonable(value: Any) -> Any:
    """Profiles come from model code (numpy scalars and the like); store plain JSON."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


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


OPEN = (TaskStatus.pending, TaskStatus.started)


class TraceStore:
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
        _migrate(self.engine)
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self.engine.execution_options(**{_READ: True}), expire_on_commit=False)

    # writes, in the order a turn makes them

    def begin_turn(
        self,
        track_id: str,
        cluster: str,
        stages: list[tuple[str, dict]],
        task_ids: list[str] | None = None,
        user_audio: dict[str, Any] | None = None,
    ) -> tuple[int, list[str]]:
        """Create the track if new, one pending task per stage and the user's audio; returns (turn, task ids).

        Callers may choose the task ids, so they can go on before this write is done. Turns of
        one track may start in several processes at once: the track row is locked while the next
        turn number is taken (PostgreSQL: SELECT ... FOR UPDATE, after which READ COMMITTED reads
        the other writers' turns; SQLite: the whole database, by BEGIN IMMEDIATE), and two processes
        creating the same new track race on its primary key, the loser retrying. The unique
        (track_id, turn, position) constraint backs the lock: two turns can never share a number.
        """
        task_ids = task_ids or [uuid.uuid4().hex for _ in stages]
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                return self._begin_turn(track_id, cluster, stages, task_ids, user_audio), task_ids
            except IntegrityError:
                if attempt == attempts:
                    raise

    def _begin_turn(self, track_id, cluster, stages, task_ids, user_audio) -> int:
        with self._write.begin() as s:
            track = s.get(TrackRecord, track_id, with_for_update=True)
            if track is None:
                s.add(TrackRecord(id=track_id, cluster=cluster))
                s.flush()
            else:
                track.updated_at = _now()
            last = s.scalar(select(func.max(TaskRecord.turn)).where(TaskRecord.track_id == track_id))
            turn = (last or 0) + 1
            s.add_all(
                TaskRecord(
                    id=task_id,
                    track_id=track_id,
                    cluster=cluster,
                    turn=turn,
                    position=i,
                    task_name=name,
                    status=TaskStatus.pending,
                    parameters=_jsonable(params),
                )
                for i, (task_id, (name, params)) in enumerate(zip(task_ids, stages))
            )
            if user_audio is not None:
                s.add(AudioRecord(track_id=track_id, turn=turn, role="user", **user_audio))
            return turn

    def start_task(self, task_id: str, ts_start: float) -> None:
        self._set(task_id, status=TaskStatus.started, latency_profile={"ts_start": ts_start})

    def complete_task(self, task_id: str, result_profile: dict, latency_profile: dict) -> None:
        self._set(
            task_id,
            status=TaskStatus.completed,
            result_profile=_jsonable(result_profile),
            latency_profile=_jsonable(latency_profile),
        )

    def fail_task(self, task_id: str, error: str, latency_profile: dict) -> None:
        self._set(task_id, status=TaskStatus.failed, error=error, latency_profile=_jsonable(latency_profile))

    def cancel_task(self, task_id: str, reason: str, result_profile: dict) -> None:
        """An interrupted task, with what it had done, unless it had already ended."""
        with self._write.begin() as s:
            s.execute(
                update(TaskRecord)
                .where(TaskRecord.id == task_id, TaskRecord.status.in_(OPEN))
                .values(
                    status=TaskStatus.cancelled,
                    error=reason,
                    result_profile=_jsonable(result_profile),
                    updated_at=_now(),
                )
            )

    def close_tasks(self, task_ids: list[str], reason: str, started_becomes: TaskStatus = TaskStatus.failed) -> int:
        """Pending tasks are cancelled and started ones become `started_becomes`, with `reason`.

        Called when a turn ends early, so no record is left pending or started; returns how many changed.
        """
        return self._close_open(TaskRecord.id.in_(task_ids), reason, started_becomes)

    def _close_open(self, which, reason: str, started_becomes: TaskStatus) -> int:
        """The open tasks `which` selects: pending ones cancelled, started ones `started_becomes`."""
        changed = 0
        with self._write.begin() as s:
            for old, new in ((TaskStatus.started, started_becomes), (TaskStatus.pending, TaskStatus.cancelled)):
                changed += s.execute(
                    update(TaskRecord)
                    .where(which, TaskRecord.status == old)
                    .values(status=new, error=reason, updated_at=_now())
                ).rowcount
        return changed

    def discard_turn(self, task_ids: list[str], reason: str, wait_s: float = 5.0) -> int:
        """A turn started on a pause that was not the end of the user's turn: every task of it is
        cancelled with `reason` and marked discarded, so nothing of it counts as said or answered.

        Waits (up to `wait_s`) for its graph to close the tasks first, so no later write undoes this.
        """
        self._wait_closed(task_ids, wait_s)
        with self._write.begin() as s:
            records = s.scalars(select(TaskRecord).where(TaskRecord.id.in_(task_ids))).all()
            for record in records:
                done = {
                    k: v
                    for k, v in (record.result_profile or {}).items()
                    if k not in ("spoken_text", "heard_text", "reply_text")
                }
                record.status, record.error = TaskStatus.cancelled, reason
                record.result_profile = {**done, "discarded": True}
                record.updated_at = _now()
            return len(records)

    def mark_heard(self, task_ids: list[str], heard_text: str, heard_s: float, wait_s: float = 5.0) -> bool:
        """The user spoke over the turn's reply: its speech record keeps what they heard of it
        (`heard_text`, `heard_s` of its audio), which the history then gives as the reply.

        A reply is made faster than it is played, so the record may have been completed seconds
        before; waits (up to `wait_s`) for an interrupted turn's graph to close its tasks first.
        """
        self._wait_closed(task_ids, wait_s)
        with self._write.begin() as s:
            for record in s.scalars(select(TaskRecord).where(TaskRecord.id.in_(task_ids))).all():
                profile = record.result_profile or {}
                if "spoken_text" in profile and not profile.get("discarded"):
                    record.result_profile = {
                        **profile,
                        "heard_text": heard_text,
                        "heard_s": heard_s,
                        "interrupted": True,
                    }
                    record.updated_at = _now()
                    return True
        return False

    def _wait_closed(self, task_ids: list[str], wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with self._read() as s:
                open_tasks = s.scalar(
                    select(func.count())
                    .select_from(TaskRecord)
                    .where(TaskRecord.id.in_(task_ids), TaskRecord.status.in_(OPEN))
                )
            if not open_tasks:
                return
            time.sleep(0.05)

    def add_audio(
        self,
        track_id: str,
        turn: int,
        role: str,
        data: bytes,
        media_type: str,
        sample_rate: int | None = None,
        duration_s: float | None = None,
    ) -> str:
        record = AudioRecord(
            track_id=track_id,
            turn=turn,
            role=role,
            data=data,
            media_type=media_type,
            sample_rate=sample_rate,
            duration_s=duration_s,
        )
        with self._write.begin() as s:
            s.add(record)
        return record.id

    def delete_track(self, track_id: str) -> bool:
        """Delete a track with its task records, audio and annotations; False if there is no such track.

        Raises TrackBusy while one of its tasks is pending or started. The check and the deletes
        are one transaction (SQLite: BEGIN IMMEDIATE), so no turn can begin in between.
        """
        with self._write.begin() as s:
            track = s.get(TrackRecord, track_id, with_for_update=True)
            if track is None:
                return False
            running = s.scalar(
                select(func.count())
                .select_from(TaskRecord)
                .where(TaskRecord.track_id == track_id, TaskRecord.status.in_(OPEN))
            )
            if running:
                raise TrackBusy(f"track {track_id!r} has a turn running; delete it once the turn has ended")
            for table in (AnnotationRecord, AudioRecord, TaskRecord):
                s.execute(delete(table).where(table.track_id == track_id))
            s.delete(track)
        return True

    def purge_audio(self, older_than_days: float, now: datetime | None = None) -> int:
        """Drop the recordings older than `older_than_days`, keeping their rows marked removed; returns how many."""
        cutoff = (now or _now()) - timedelta(days=older_than_days)
        with self._write.begin() as s:
            return s.execute(
                update(AudioRecord)
                .where(AudioRecord.created_at < cutoff, AudioRecord.removed.is_(None))
                .values(data=b"", removed=f"removed by retention: kept for {older_than_days:g} days")
            ).rowcount

    def close_abandoned(self, idle_s: float) -> int:
        """Tasks still pending or started with no write for `idle_s`: their turn's server stopped during
        the turn (a turn takes seconds), so no one else will close them. Returns how many were closed."""
        reason = f"abandoned: no progress for {idle_s:g} s (its server stopped during the turn)"
        return self._close_open(TaskRecord.updated_at < _now() - timedelta(seconds=idle_s), reason, TaskStatus.failed)

    def _set(self, task_id: str, **values: Any) -> None:
        with self._write.begin() as s:
            s.execute(update(TaskRecord).where(TaskRecord.id == task_id).values(updated_at=_now(), **values))

    # reads

    def audio(self, audio_id: str) -> tuple[bytes, str, str | None] | None:
        """(data, media type, why it was removed or None), or None for an unknown id."""
        with self._read() as s:
            record = s.get(AudioRecord, audio_id)
            return (record.data, record.media_type, record.removed) if record else None

    def history(self, track_id: str, turns: int) -> list[dict[str, str]]:
        """The track's latest exchanges, at most `turns` of them, as chat messages, oldest first.

        The oldest are dropped half a window at a time (`history_start`), not one a turn: a window
        that slides every turn changes the prompt's beginning every turn, so the LLM's cached prompt
        never matches and each turn reads its whole history again.
        The reply is what the user heard when they spoke over it (`heard_text`), else what was
        spoken (`spoken_text`), else the LLM's reply text; turns that failed before a reply are left out.
        """
        if turns <= 0:
            return []
        with self._read() as s:
            rows = s.execute(
                select(TaskRecord.turn, TaskRecord.status, TaskRecord.result_profile)
                .where(
                    TaskRecord.track_id == track_id, TaskRecord.status.in_([TaskStatus.completed, TaskStatus.cancelled])
                )
                .order_by(TaskRecord.turn, TaskRecord.position)
            ).all()
        exchanges: dict[int, dict[str, str]] = {}
        for turn, status, profile in rows:
            exchange = exchanges.setdefault(turn, {})
            if profile.get("discarded"):
                exchange["discarded"] = "yes"
            if status == TaskStatus.completed and profile.get("transcript"):
                exchange["user"] = profile["transcript"]
            if status == TaskStatus.completed and profile.get("reply_text"):
                exchange.setdefault("reply", profile["reply_text"])
            if "spoken_text" in profile:
                exchange["spoken"] = profile.get("heard_text", profile["spoken_text"])
        messages = []
        for e in exchanges.values():
            reply = e.get("spoken", e.get("reply"))
            if e.get("user") and reply and not e.get("discarded"):
                messages.append([{"role": "user", "content": e["user"]}, {"role": "assistant", "content": reply}])
        return [m for pair in messages[history_start(len(messages), turns) :] for m in pair]

    def annotate(self, track_id: str, turn: int, stage: str | None, score: int, note: str | None) -> dict[str, Any]:
        """Store a rating of a turn that exists, for one of its stages or overall."""
        if not 0 <= score <= 5:
            raise AnnotationError(f"score {score} is outside 0-5")
        with self._write.begin() as s:
            names = s.scalars(
                select(TaskRecord.task_name).where(TaskRecord.track_id == track_id, TaskRecord.turn == turn)
            ).all()
            if not names:
                raise AnnotationError(f"track {track_id!r} has no turn {turn}")
            if stage is not None and stage not in names:
                raise AnnotationError(f"turn {turn} has no stage {stage!r}; its stages: {names}")
            record = AnnotationRecord(track_id=track_id, turn=turn, stage=stage, score=score, note=note)
            s.add(record)
            s.flush()
            return _annotation_dict(record)

    def ratings(self, cluster: str) -> dict[str, dict[str, float]]:
        """Mean score and count per stage ("overall" for whole turns) over a cluster's tracks."""
        with self._read() as s:
            rows = s.execute(
                select(AnnotationRecord.stage, func.avg(AnnotationRecord.score), func.count())
                .join(TrackRecord, TrackRecord.id == AnnotationRecord.track_id)
                .where(TrackRecord.cluster == cluster)
                .group_by(AnnotationRecord.stage)
            ).all()
        return {stage or "overall": {"mean": float(mean), "count": count} for stage, mean, count in rows}

    def tracks(
        self,
        cluster: str | None = None,
        limit: int = 200,
        status: str | None = None,
        since: datetime | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """The newest tracks with a summary of their turns, skipping the first `offset` that match.

        A track's status is its last turn's, known only from its tasks, so with a `status` filter
        tracks are read in batches, newest first, until enough of them match.
        """
        query = select(TrackRecord).order_by(TrackRecord.created_at.desc(), TrackRecord.id)
        if cluster:
            query = query.where(TrackRecord.cluster == cluster)
        if since is not None:
            query = query.where(TrackRecord.created_at >= since)
        if status is None:
            return self._summaries(query.offset(offset).limit(limit))
        matching: list[dict[str, Any]] = []
        start, batch = 0, max(offset + limit, 50)
        while len(matching) < offset + limit:
            found = self._summaries(query.offset(start).limit(batch))
            matching += [t for t in found if t["status"] == status]
            if len(found) < batch:
                break
            start += batch
        return matching[offset : offset + limit]

    def _summaries(self, query) -> list[dict[str, Any]]:
        with self._read() as s:
            tracks = s.scalars(query).all()
            tasks = s.scalars(
                select(TaskRecord)
                .where(TaskRecord.track_id.in_([t.id for t in tracks]))
                .order_by(TaskRecord.turn, TaskRecord.position)
            ).all()
        by_track: dict[str, list[dict]] = {}
        for task in tasks:
            by_track.setdefault(task.track_id, []).append(_task_dict(task))
        return [_track_summary(track, by_track.get(track.id, [])) for track in tracks]

    def cluster_turns(self, cluster: str, limit: int = 500) -> list[list[dict[str, Any]]]:
        """The tasks of a cluster's newest turns, one list per turn, for its benchmark page."""
        with self._read() as s:
            keys = s.execute(
                select(TaskRecord.track_id, TaskRecord.turn)
                .where(TaskRecord.cluster == cluster)
                .group_by(TaskRecord.track_id, TaskRecord.turn)
                .order_by(func.max(TaskRecord.created_at).desc())
                .limit(limit)
            ).all()
            tracks = {k.track_id for k in keys}
            tasks = s.scalars(
                select(TaskRecord).where(TaskRecord.track_id.in_(tracks)).order_by(TaskRecord.position)
            ).all()
        wanted = {(k.track_id, k.turn) for k in keys}
        turns: dict[tuple[str, int], list[dict]] = {}
        for task in tasks:
            if (task.track_id, task.turn) in wanted:
                turns.setdefault((task.track_id, task.turn), []).append(_task_dict(task))
        return list(turns.values())

    def track_exists(self, track_id: str) -> bool:
        with self._read() as s:
            return s.get(TrackRecord, track_id) is not None

    def track(self, track_id: str) -> dict[str, Any] | None:
        with self._read() as s:
            track = s.get(TrackRecord, track_id)
            if track is None:
                return None
            tasks = s.scalars(
                select(TaskRecord).where(TaskRecord.track_id == track_id).order_by(TaskRecord.turn, TaskRecord.position)
            ).all()
            audio = s.execute(
                select(
                    AudioRecord.id,
                    AudioRecord.turn,
                    AudioRecord.role,
                    AudioRecord.media_type,
                    AudioRecord.sample_rate,
                    AudioRecord.duration_s,
                    AudioRecord.removed,
                )
                .where(AudioRecord.track_id == track_id)
                .order_by(AudioRecord.turn, AudioRecord.created_at)
            ).all()
            return {
                "track_id": track.id,
                "cluster": track.cluster,
                "created_at": track.created_at.isoformat(),
                "updated_at": track.updated_at.isoformat(),
                "tasks": [_task_dict(t) for t in tasks],
                "audio": [dict(row._mapping) for row in audio],
                "annotations": [
                    _annotation_dict(a)
                    for a in s.scalars(
                        select(AnnotationRecord)
                        .where(AnnotationRecord.track_id == track_id)
                        .order_by(AnnotationRecord.created_at)
                    ).all()
                ],
            }


def _task_dict(t: TaskRecord) -> dict[str, Any]:
    return {
        "id": t.id,
        "track_id": t.track_id,
        "cluster": t.cluster,
        "turn": t.turn,
        "position": t.position,
        "task_name": t.task_name,
        "status": t.status.value,
        "parameters": t.parameters,
        "result_profile": t.result_profile,
        "latency_profile": t.latency_profile,
        "error": t.error,
        "created_at": t.created_at.isoformat(),
        "updated_at": t.updated_at.isoformat(),
    }


def _track_summary(track: TrackRecord, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    turns = summarise_turns(tasks)
    return {
        "track_id": track.id,
        "cluster": track.cluster,
        "created_at": track.created_at.isoformat(),
        "turns": len(turns),
        "status": turns[-1]["status"] if turns else "empty",
        "end_to_end_s": turns[-1].get("end_to_end_s") if turns else None,
        "last_activity": max([track.updated_at.isoformat(), *(t["updated_at"] for t in tasks)]),
    }


def _annotation_dict(a: AnnotationRecord) -> dict[str, Any]:
    return {
        "id": a.id,
        "turn": a.turn,
        "stage": a.stage,
        "score": a.score,
        "note": a.note,
        "created_at": a.created_at.isoformat(),
    }


def turn_status(statuses: set[str]) -> str:
    for status in ("failed", "cancelled", "started", "pending"):
        if status in statuses:
            return "running" if status in ("started", "pending") else status
    return "completed"


def summarise_turns(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per turn: status and, from its completed tasks, model, transfer and end-to-end time."""
    turns: dict[int, list[dict]] = {}
    for task in tasks:
        turns.setdefault(task["turn"], []).append(task)
    return [
        {
            "turn": turn,
            "status": turn_status({t["status"] for t in group}),
            **turn_summary(t["latency_profile"] for t in group if t["status"] == TaskStatus.completed.value),
        }
        for turn, group in sorted(turns.items())
    ]
