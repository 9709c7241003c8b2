"""What the console shows: a turn as it happens (transcript, emotion, the reply as it streams, a
per-stage latency table at its end), a track's tasks, the clusters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from omniwire.frames import (
    EmotionFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    LLMTextFrame,
    MetricsFrame,
    StartFrame,
    TextFrame,
    TranscriptionFrame,
)
from omniwire.profile import model_time, transfer_time, wait_time


def ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:,.0f}"


def latency_table(
    title: str, stages: list[dict[str, Any]], columns: dict[str, str], totals: Iterable[tuple[str, float | None]]
) -> Table:
    """One row per stage with the `columns` it has (key: heading), then the turn's totals."""
    shown = {key: heading for key, heading in columns.items() if any(s.get(key) is not None for s in stages)} or dict(
        [next(iter(columns.items()))]
    )
    table = Table(title=title, title_justify="left")
    table.add_column("stage")
    for heading in shown.values():
        table.add_column(f"{heading} ms", justify="right")
    for stage in stages:
        table.add_row(stage["stage"], *(ms(stage.get(key)) for key in shown))
    totals = [(name, value) for name, value in totals if value is not None]
    if totals:
        table.add_section()
        for name, value in totals:
            table.add_row(name, ms(value), *[""] * (len(shown) - 1))
    return table


def emotion_line(emotion: dict[str, Any]) -> Text:
    line = Text("emotion: ", style="bold")
    line.append(str(emotion.get("label", "?")), style="magenta")
    if emotion.get("summary"):
        line.append(f"  {emotion['summary']}", style="dim")
    return line


class TurnView:
    """Prints a streamed turn's frames as they come; one view serves the turns of a conversation."""

    def __init__(self, console: Console):
        self.console = console
        self.metrics: dict[str, dict[str, float]] = {}
        self.turn_metrics: dict[str, float] = {}
        self.replying = False  # a reply line is open, waiting for more of its text

    def show(self, frame: Frame) -> None:
        if isinstance(frame, StartFrame):
            self.metrics, self.turn_metrics = {}, {}
        elif isinstance(frame, TranscriptionFrame):
            self._line(Text.assemble(("you: ", "bold"), frame.text))
        elif isinstance(frame, EmotionFrame):
            self._line(emotion_line(frame.emotion))
        elif isinstance(frame, LLMTextFrame):
            if not self.replying:
                self.console.print(Text("agent: ", style="bold green"), end="")
                self.replying = True
            self.console.print(Text(frame.text), end="", soft_wrap=True)
        elif isinstance(frame, TextFrame):
            self._line(Text.assemble((f"{frame.stage}: ", "bold"), (frame.text, "dim")))
        elif isinstance(frame, MetricsFrame):
            if frame.stage is None:
                self.turn_metrics = frame.metrics
            else:
                self.metrics[frame.stage] = frame.metrics
        elif isinstance(frame, ErrorFrame):
            self.error(f"{frame.stage or 'turn'}: {frame.error}")
        elif isinstance(frame, EndFrame):
            self.end_reply()
            if frame.status != "completed":
                self.console.print(Text(f"turn {frame.turn} {frame.status.replace('_', ' ')}", style="yellow"))
            self.latency(f"turn {frame.turn}")

    def latency(self, title: str) -> None:
        """The turn's per-stage table from its MetricsFrames."""
        stages = [{"stage": name, **values} for name, values in self.metrics.items()]
        totals = [
            ("time to first audio", self.turn_metrics.get("time_to_first_audio_s")),
            ("total reply", self.turn_metrics.get("total_reply_s")),
        ]
        self.console.print(
            latency_table(title, stages, {"ttfb_s": "first output", "processing_s": "processing"}, totals)
        )

    def interrupted(self, played_s: float, received_s: float) -> None:
        self.end_reply()
        self.console.print(
            Text(f"interrupted: played {played_s:.2f} s of {received_s:.2f} s of reply audio", style="yellow")
        )
        self.latency("interrupted turn")

    def outcome(self, body: dict[str, Any], round_trip_s: float) -> None:
        """A whole turn's JSON answer (POST /v1/conversations), error answers included."""
        if body.get("transcript"):
            self._line(Text.assemble(("you: ", "bold"), body["transcript"]))
        if body.get("emotion"):
            self._line(emotion_line(body["emotion"]))
        if body.get("reply_text"):
            self._line(Text.assemble(("agent: ", "bold green"), body["reply_text"]))
        timings = body.get("timings") or {}
        stages = [{"stage": s["task_name"], **s} for s in timings.get("stages", [])]
        totals = [
            ("model", timings.get("model_s")),
            ("transfer", timings.get("transfer_s")),
            ("end to end (server)", timings.get("end_to_end_s")),
            ("overhead", timings.get("overhead_s")),
            ("round trip (client)", round_trip_s),
        ]
        self.console.print(
            latency_table(
                f"turn {body.get('turn')}",
                stages,
                {"model_s": "model", "transfer_s": "transfer", "ttfb_s": "first output"},
                totals,
            )
        )

    def end_reply(self) -> None:
        if self.replying:
            self.console.print()
            self.replying = False

    def error(self, message: str) -> None:
        self._line(Text(f"error: {message}", style="bold red"))

    def _line(self, text: Text) -> None:
        self.end_reply()
        self.console.print(text)


def track_tables(track: dict[str, Any]) -> list[Table]:
    """A track's tasks in order with their timings (ms; `start` counted from the turn's first task),
    then its per-turn summary."""
    tasks = Table(
        title=f"{track['track_id']}  ({track['cluster']}), times in ms",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    names = max((len(t["task_name"]) for t in track["tasks"]), default=4)
    waits = any(wait_time(t.get("latency_profile") or {}) for t in track["tasks"])
    tasks.add_column("turn", justify="right", no_wrap=True, min_width=4)
    tasks.add_column("task", no_wrap=True, min_width=names)
    tasks.add_column("status", no_wrap=True, min_width=9)
    for heading in ("start", "model", "transfer", *(["wait"] if waits else []), "ttfb"):
        tasks.add_column(heading, justify="right", no_wrap=True)
    tasks.add_column("note", overflow="fold", min_width=12)
    turn_start: dict[int, float] = {}
    for task in track["tasks"]:
        profile = task.get("latency_profile") or {}
        if "ts_start" in profile:
            turn_start[task["turn"]] = min(turn_start.get(task["turn"], profile["ts_start"]), profile["ts_start"])
    status_style = {"completed": "green", "failed": "red", "cancelled": "yellow"}
    for task in track["tasks"]:
        profile = task.get("latency_profile") or {}
        timed = "ts_start" in profile
        times = (
            [ms(profile["ts_start"] - turn_start[task["turn"]]), ms(model_time(profile)), ms(transfer_time(profile))]
            if timed
            else ["", "", ""]
        )
        if waits:
            times.append(ms(wait_time(profile) or None) if timed else "")
        tasks.add_row(
            str(task["turn"]),
            task["task_name"],
            Text(task["status"], style=status_style.get(task["status"], "")),
            *times,
            ms(profile.get("ttfb_s")),
            task.get("error") or "",
        )
    turns = Table(title="turns, times in ms", title_justify="left", box=box.SIMPLE_HEAD)
    for heading in ("turn", "status", "model", "transfer", "end to end", "overhead"):
        turns.add_column(heading, justify="left" if heading == "status" else "right")
    for turn in track.get("turns", []):
        ratio = turn.get("overhead_ratio")
        turns.add_row(
            str(turn["turn"]),
            turn["status"],
            ms(turn.get("model_s")),
            ms(turn.get("transfer_s")),
            ms(turn.get("end_to_end_s")),
            "" if ratio is None else f"{ratio:.1%}",
        )
    return [tasks, turns]


def clusters_table(clusters: list[dict[str, Any]]) -> Table:
    table = Table(title="clusters", title_justify="left")
    table.add_column("cluster", no_wrap=True, min_width=max((len(c["name"]) for c in clusters), default=7))
    table.add_column("enabled", no_wrap=True)
    table.add_column("stages")
    table.add_column("why not")
    for cluster in clusters:
        stages = " → ".join(s["name"] for s in cluster["stages"])
        table.add_row(
            cluster["name"],
            Text("yes", style="green") if cluster["enabled"] else Text("no", style="red"),
            stages,
            cluster.get("reason") or "",
        )
    return table
