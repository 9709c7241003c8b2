"""What the API and the pages read: a track, listings and their summaries, a cluster's turns, audio,
annotations and ratings. Task records are given as the graph wrote them with the turn events applied."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from graphs.observability.latency import turn_summary
from graphs.store.events import apply_events
from graphs.store.schema import (
    AnnotationRecord,
    AudioRecord,
    Database,
    TaskRecord,
    TaskStatus,
    TrackRecord,
    TurnEventRecord,
)


class AnnotationError(ValueError):
    pass


class Views(Database):
    def audio(self, audio_id: str) -> tuple[bytes, str, str | None] | None:
        """(data, media type, why it was removed or None), or None for an unknown id."""
        with self._read() as s:
            record = s.get(AudioRecord, audio_id)
            return (record.data, record.media_type, record.removed) if record else None

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
            ids = [t.id for t in tracks]
            tasks = _tasks(
                s,
                select(TaskRecord).where(TaskRecord.track_id.in_(ids)).order_by(TaskRecord.turn, TaskRecord.position),
                ids,
            )
        by_track: dict[str, list[dict]] = {}
        for task in tasks:
            by_track.setdefault(task["track_id"], []).append(task)
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
            tracks = list({k.track_id for k in keys})
            tasks = _tasks(
                s, select(TaskRecord).where(TaskRecord.track_id.in_(tracks)).order_by(TaskRecord.position), tracks
            )
        wanted = {(k.track_id, k.turn) for k in keys}
        turns: dict[tuple[str, int], list[dict]] = {}
        for task in tasks:
            if (task["track_id"], task["turn"]) in wanted:
                turns.setdefault((task["track_id"], task["turn"]), []).append(task)
        return list(turns.values())

    def track_exists(self, track_id: str) -> bool:
        with self._read() as s:
            return s.get(TrackRecord, track_id) is not None

    def track(self, track_id: str) -> dict[str, Any] | None:
        with self._read() as s:
            track = s.get(TrackRecord, track_id)
            if track is None:
                return None
            tasks = _tasks(
                s,
                select(TaskRecord)
                .where(TaskRecord.track_id == track_id)
                .order_by(TaskRecord.turn, TaskRecord.position),
                [track_id],
            )
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
                "tasks": tasks,
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


def _tasks(s, query, track_ids: list[str]) -> list[dict[str, Any]]:
    """The task records `query` selects, as dicts, with their tracks' turn events applied."""
    tasks = [_task_dict(t) for t in s.scalars(query).all()]
    events = s.scalars(
        select(TurnEventRecord).where(TurnEventRecord.track_id.in_(track_ids)).order_by(TurnEventRecord.id)
    ).all()
    for task in apply_events(tasks, events):
        task["created_at"], task["updated_at"] = task["created_at"].isoformat(), task["updated_at"].isoformat()
    return tasks


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
        "created_at": t.created_at,
        "updated_at": t.updated_at,
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
