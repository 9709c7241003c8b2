"""A turn as the graph runs it: the request, its stages, what it has produced, its records."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from ray.exceptions import RayActorError
from ray.serve.exceptions import RequestCancelledError

from deployments.kinds import KINDS, Contract
from graphs.observability.latency import FirstAudio
from graphs.observability.metrics import ClusterMetrics
from graphs.store import TraceStore
from omniwire.frames import ErrorFrame, Frame, TTSAudioFrame

NO_SPEECH = "no speech recognised in the audio"

logger = logging.getLogger("ray.serve")
T = TypeVar("T")


@dataclass
class TurnRequest:
    track_id: str
    task_ids: list[str]  # one per stage, chosen by the caller
    audio: np.ndarray  # mono float32 at MODEL_RATE
    # The upload as sent, kept with the track; None for live speech, which the graph keeps as WAV.
    audio_file: bytes | None
    audio_media_type: str | None
    images: list[bytes] = field(default_factory=list)
    inline_audio: bool = False
    voiced: bool = False  # the audio is already the voiced part: the live session's VAD found it
    # When the user stopped speaking (epoch seconds): time to first audio counts from here.
    speech_ended_at: float | None = None


@dataclass(frozen=True)
class TurnFactory:
    """The one place a turn is minted, for a track of a cluster with `stages` stages: its task ids are
    chosen here, before anything runs, so that should the graph itself die its records can be closed."""

    track_id: str
    stages: int

    def __call__(
        self,
        audio: np.ndarray,
        audio_file: bytes | None = None,
        media_type: str | None = None,
        images: Sequence[bytes] = (),
        *,
        inline_audio: bool = False,
        voiced: bool = False,
        speech_ended_at: float | None = None,
    ) -> TurnRequest:
        task_ids = [uuid.uuid4().hex for _ in range(self.stages)]
        return TurnRequest(
            self.track_id,
            task_ids,
            audio,
            audio_file,
            media_type,
            list(images),
            inline_audio=inline_audio,
            voiced=voiced,
            speech_ended_at=speech_ended_at,
        )


@dataclass
class TurnOutcome:
    status: str  # completed | no_speech | failed
    track_id: str
    cluster: str
    turn: int
    outputs: dict[str, Any]
    stages: list[dict[str, Any]]
    turn_s: float
    error: str | None = None
    reply_audio: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    model: str
    kind: str
    params: dict[str, Any]
    position: int
    # Its model reads the next turn's prompt ahead, while the person speaks (Component.reads_ahead).
    reads_ahead: bool = False

    @property
    def contract(self) -> Contract:
        return KINDS[self.kind]

    @property
    def reads(self) -> frozenset[str]:
        return self.contract.consumes | self.contract.accepts


@dataclass
class Turn:
    """What one turn has produced so far."""

    request: TurnRequest
    started: float = field(default_factory=time.perf_counter)
    state: dict[str, Any] = field(default_factory=dict)
    timings: list[dict[str, Any]] = field(default_factory=list)
    status: str = "completed"
    error: str | None = None
    spoken: list[str] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)  # the reply's PCM16 as it was sent
    audio_rate: int | None = None
    reply_audio: dict[str, Any] | None = None  # the stored reply: id, sample_rate, duration_s, wav
    metrics: dict[str, float] = field(default_factory=dict)
    first_audio: FirstAudio = field(init=False)

    def __post_init__(self) -> None:
        started_at = time.time()
        self.first_audio = FirstAudio(self.request.speech_ended_at or started_at)

    def sent(self, frame: Frame) -> None:
        """Bookkeeping for a frame that reaches the caller: what of the reply was really spoken."""
        self.first_audio.stamp(frame)
        if not isinstance(frame, TTSAudioFrame):
            return
        if frame.sentence >= len(self.spoken):
            self.spoken.append(frame.text)
        self.audio.append(frame.audio)
        self.audio_rate = frame.sample_rate


# What a model replica's async generator says when Serve closes it while it waits for its next
# piece (a barge-in mid-token): the stream was stopped, it did not fail.
_CLOSED_MID_PIECE = ("generator already executing", "generator is already running")


def cancelled_by_serve(exc: BaseException) -> bool:
    """Whether a stage's error is Serve cancelling it (this turn is being cancelled), not a failure."""
    if isinstance(exc, RequestCancelledError):
        return True
    cause = getattr(exc, "cause", None) or exc
    return isinstance(cause, (RuntimeError, ValueError)) and any(m in str(cause) for m in _CLOSED_MID_PIECE)


async def with_failover(call: Callable[[], Awaitable[T]], what: str) -> T:
    """A model call, made again once if its replica died before answering (killed, out of memory, its
    node gone): Serve drops a dead replica from its routing at once, so the second try goes to another
    replica, or waits for the replacement of the only one. A stateless stage loses nothing by it."""
    try:
        return await call()
    except RayActorError as exc:
        log_failover(what, exc)
        return await call()


def log_failover(what: str, exc: BaseException) -> None:
    logger.warning("%s: the model's replica died before answering (%s); trying another", what, type(exc).__name__)


def error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc  # RayTaskError wraps the replica's exception
    return f"{type(cause).__name__}: {cause}"


class TurnRecords:
    """A turn's task records and stage metrics, written in order by the graph's writer thread."""

    def __init__(self, store: TraceStore, writer: Executor, metrics: ClusterMetrics, turn: Turn) -> None:
        self.store, self.writer, self.metrics, self.turn = store, writer, metrics, turn
        self.writes: list[asyncio.Future] = []

    def write(self, fn, *args) -> asyncio.Future:
        """Queued on the writer thread, and shielded: cancelling an executor future that has not started
        drops its work, and a turn cancelled while its writes queue must still close its records."""
        future = asyncio.shield(asyncio.get_running_loop().run_in_executor(self.writer, fn, *args))
        self.writes.append(future)
        return future

    def task_id(self, stage: Stage) -> str:
        return self.turn.request.task_ids[stage.position]

    def started(self, stage: Stage, ts_start: float) -> None:
        self.write(self.store.start_task, self.task_id(stage), ts_start)

    def completed(self, stage: Stage, result_profile: dict[str, Any], profile: dict[str, Any]) -> None:
        self.write(self.store.complete_task, self.task_id(stage), result_profile, profile)
        self.metrics.stage(stage.name, profile)
        self.turn.timings.append({"task_name": stage.name, "model": stage.model, **profile})

    def failed(self, stage: Stage, error: str, ts_start: float, elapsed: float) -> ErrorFrame:
        error = f"stage {stage.name!r} failed: {error}"
        self.metrics.failed(stage.name)
        self.write(
            self.store.fail_task, self.task_id(stage), error, {"ts_start": ts_start, "ts_end": ts_start + elapsed}
        )
        if self.turn.status == "completed":
            self.turn.status, self.turn.error = "failed", error
        return ErrorFrame(error=error, stage=stage.name, status=502)

    def interrupted(self, stage: Stage, done: dict[str, Any]) -> None:
        self.write(self.store.cancel_task, self.task_id(stage), "cancelled: interrupted", {**done, "interrupted": True})
