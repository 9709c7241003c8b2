"""Turn events laid over the graph's task records, as every reader sees them.

The graph writes a turn's task records; what the live session learns later (the turn was
discarded, the user heard only part of its reply) is appended as a turn event and never written
into those records. Readers apply a track's events, oldest first, over whatever the graph has
written, so an event that came before the graph closed its tasks means the same as one after:

- discarded: every task of the turn is cancelled with the event's reason and marked
  `discarded: True`, its spoken_text, heard_text and reply_text dropped, so nothing of it counts
  as said or answered;
- heard: the turn's speech record (the first with `spoken_text`, unless discarded) gets
  `heard_text`, `heard_s` and `interrupted: True`, which the history then gives as the reply.
  A later heard event of the same turn replaces an earlier one.

A record an event changes is as new as the event (`updated_at`), as when the records were rewritten.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphs.store.schema import TaskStatus, TurnEventKind, TurnEventRecord

# What a discarded turn no longer says it said or answered.
SAID = ("spoken_text", "heard_text", "reply_text")


def apply_events(tasks: list[dict[str, Any]], events: Iterable[TurnEventRecord]) -> list[dict[str, Any]]:
    """`tasks` (dicts with id, status as its value, error, result_profile, and turn, position and
    updated_at where known) with `events` applied in order; changed in place, and returned."""
    by_id = {task["id"]: task for task in tasks}
    for e in events:
        targets = sorted(
            (by_id[i] for i in e.task_ids if i in by_id), key=lambda t: (t.get("turn", 0), t.get("position", 0))
        )
        if e.kind == TurnEventKind.discarded:
            for task in targets:
                done = {k: v for k, v in (task["result_profile"] or {}).items() if k not in SAID}
                task.update(
                    status=TaskStatus.cancelled.value,
                    error=e.payload["reason"],
                    result_profile={**done, "discarded": True},
                )
                _touched(task, e)
        elif e.kind == TurnEventKind.heard:
            for task in targets:
                profile = task["result_profile"] or {}
                if "spoken_text" in profile and not profile.get("discarded"):
                    heard = {
                        "heard_text": e.payload["heard_text"],
                        "heard_s": e.payload["heard_s"],
                        "interrupted": True,
                    }
                    task["result_profile"] = {**profile, **heard}
                    _touched(task, e)
                    break
    return tasks


def _touched(task: dict[str, Any], e: TurnEventRecord) -> None:
    if "updated_at" in task and e.created_at > task["updated_at"]:
        task["updated_at"] = e.created_at
