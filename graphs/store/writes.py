"""What is written to the trace store, each record by one writer.

GraphWrites: the cluster graph's writes, in the order a turn makes them (the track, its task
records, the reply audio), and the ingress's upkeep (deleting a track, retention, closing tasks a
stopped server left open). TurnFactWrites: the live session's facts about a turn, appended as turn
events (graphs/store/events.py says what readers make of them), never written into the graph's records.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from graphs.store.schema import (
    OPEN,
    AnnotationRecord,
    AudioRecord,
    Database,
    TaskRecord,
    TaskStatus,
    TrackRecord,
    TurnEventKind,
    TurnEventRecord,
)
from graphs.store.schema import now as _now


class TrackBusy(RuntimeError):
    """A turn of the track is running: deleting it now would leave that turn's later writes behind."""


def jsonable(value: Any) -> Any:
    """Profiles come from model code (numpy scalars and the like); store plain JSON."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


class GraphWrites(Database):
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
                    parameters=jsonable(params),
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
            result_profile=jsonable(result_profile),
            latency_profile=jsonable(latency_profile),
        )

    def fail_task(self, task_id: str, error: str, latency_profile: dict) -> None:
        self._set(task_id, status=TaskStatus.failed, error=error, latency_profile=jsonable(latency_profile))

    def cancel_task(self, task_id: str, reason: str, result_profile: dict) -> None:
        """An interrupted task, with what it had done, unless it had already ended."""
        with self._write.begin() as s:
            s.execute(
                update(TaskRecord)
                .where(TaskRecord.id == task_id, TaskRecord.status.in_(OPEN))
                .values(
                    status=TaskStatus.cancelled,
                    error=reason,
                    result_profile=jsonable(result_profile),
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
        """Delete a track with its task records, turn events, audio and annotations; False if there is no such track.

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
            for table in (AnnotationRecord, AudioRecord, TurnEventRecord, TaskRecord):
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


class TurnFactWrites(Database):
    """The live session's facts about a turn: one INSERT each, whether or not the graph has closed its tasks."""

    def record_discarded(self, track_id: str, task_ids: list[str], reason: str) -> None:
        """A turn started on a pause that was not the end of the user's turn: nothing of it counts as said or answered."""
        self._append(track_id, task_ids, TurnEventKind.discarded, {"reason": reason})

    def record_heard(self, track_id: str, task_ids: list[str], heard_text: str, heard_s: float) -> None:
        """The user spoke over the turn's reply: they heard `heard_text`, `heard_s` of its audio,
        which the history then gives as the reply."""
        self._append(track_id, task_ids, TurnEventKind.heard, {"heard_text": heard_text, "heard_s": heard_s})

    def _append(self, track_id: str, task_ids: list[str], kind: TurnEventKind, payload: dict) -> None:
        with self._write.begin() as s:
            s.add(TurnEventRecord(track_id=track_id, task_ids=list(task_ids), kind=kind, payload=jsonable(payload)))
