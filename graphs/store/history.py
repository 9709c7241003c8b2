"""What the LLM sees of a track: its latest exchanges, from the graph's records and the turn events over them."""

from __future__ import annotations

from sqlalchemy import select

from graphs.store.events import apply_events
from graphs.store.schema import Database, TaskRecord, TaskStatus, TurnEventRecord

_SETTLED = (TaskStatus.completed.value, TaskStatus.cancelled.value)


def history_start(exchanges: int, turns: int) -> int:
    """Where a history of at most `turns` of these exchanges begins: it moves by half the window
    (rounded up) once the window is full, so it keeps between half and all of `turns`."""
    if exchanges <= turns:
        return 0
    step = (turns + 1) // 2
    return ((exchanges - turns - 1) // step + 1) * step


class History(Database):
    def history(self, track_id: str, turns: int) -> list[dict[str, str]]:
        """The track's latest exchanges, at most `turns` of them, as chat messages, oldest first.

        The oldest are dropped half a window at a time (`history_start`), not one a turn: a window
        that slides every turn changes the prompt's beginning every turn, so the LLM's cached prompt
        never matches and each turn reads its whole history again.
        The reply is what the user heard when they spoke over it (`heard_text`), else what was
        spoken (`spoken_text`), else the LLM's reply text; turns that failed before a reply, and
        discarded turns, are left out.
        """
        if turns <= 0:
            return []
        with self._read() as s:
            rows = s.execute(
                select(
                    TaskRecord.id, TaskRecord.turn, TaskRecord.position, TaskRecord.status, TaskRecord.result_profile
                )
                .where(TaskRecord.track_id == track_id)
                .order_by(TaskRecord.turn, TaskRecord.position)
            ).all()
            events = s.scalars(
                select(TurnEventRecord).where(TurnEventRecord.track_id == track_id).order_by(TurnEventRecord.id)
            ).all()
        tasks = [
            {
                "id": r.id,
                "turn": r.turn,
                "position": r.position,
                "status": r.status.value,
                "result_profile": r.result_profile,
            }
            for r in rows
        ]
        exchanges: dict[int, dict[str, str]] = {}
        for task in apply_events(tasks, events):
            status, profile = task["status"], task["result_profile"]
            if status not in _SETTLED:
                continue
            exchange = exchanges.setdefault(task["turn"], {})
            if profile.get("discarded"):
                exchange["discarded"] = "yes"
            if status == TaskStatus.completed.value and profile.get("transcript"):
                exchange["user"] = profile["transcript"]
            if status == TaskStatus.completed.value and profile.get("reply_text"):
                exchange.setdefault("reply", profile["reply_text"])
            if "spoken_text" in profile:
                exchange["spoken"] = profile.get("heard_text", profile["spoken_text"])
        messages = []
        for e in exchanges.values():
            reply = e.get("spoken", e.get("reply"))
            if e.get("user") and reply and not e.get("discarded"):
                messages.append([{"role": "user", "content": e["user"]}, {"role": "assistant", "content": reply}])
        return [m for pair in messages[history_start(len(messages), turns) :] for m in pair]
