"""A live conversation over a WebSocket: microphone audio in, frames out, barge-in.

The client streams raw audio; Silero VAD finds where the user pauses (graphs.live.vad). At a pause
the turn starts at once, speculatively: its frames are held back while the end-of-turn model
judges whether the user has finished. If it says so, or the stop time passes in silence, the turn
is committed and its frames go out; if the user goes on speaking, the turn is cancelled and its
records say why. So the reply's work overlaps the wait for the end of the turn. When the user starts speaking during a
reply (or sends a StartInterruptionFrame), the reply's turn is cancelled in every deployment,
its queued audio is dropped, and a StartInterruptionFrame overtakes everything still queued.

Client messages: binary messages are PCM16 little-endian mono audio at `sample_rate` (16 kHz
unless the StartFrame says otherwise); text messages are JSON frames: ImageFrame (shown with the
next turn), StartInterruptionFrame, EndFrame (hang up), AudioRawFrame (base64 audio, for clients
that cannot send binary), StartFrame (new allow_interruptions / enable_metrics for later turns).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import soxr
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field
from ray.serve.exceptions import RequestCancelledError

from graphs.limits.admission import Admission, AdmissionSettings, Overloaded
from graphs.limits.requests import Limits, image_problem
from graphs.live.playout import Heard, Playout
from graphs.live.vad import RATE, Pause, SpeechSegmenter, SpeechStarted, Utterance, VADSettings
from graphs.observability.latency import FirstAudio
from graphs.pipeline.turn import TurnRequest
from omniwire.audio import from_pcm16
from omniwire.frames import (
    AudioRawFrame,
    EndFrame,
    ErrorFrame,
    FrameQueue,
    ImageFrame,
    MetricsFrame,
    StartFrame,
    StartInterruptionFrame,
    StopInterruptionFrame,
    TTSAudioFrame,
    from_wire,
    to_wire_binary,
)

logger = logging.getLogger("ray.serve")

# Shorter "utterances" are clicks and breaths, not speech worth a turn.
MIN_UTTERANCE_S = 0.3


@dataclass
class _LiveTurn:
    request: Any
    previous: _LiveTurn | None = None  # the turn before, which this one waits for
    task: asyncio.Task | None = None
    stream: Any = None
    committed: bool = False
    held: list = field(default_factory=list)  # frames made before the commit
    started: float = field(default_factory=time.time)
    committed_at: float | None = None
    end_of_turn_probability: float | None = None
    timers: list[asyncio.Task] = field(default_factory=list)  # what may commit it: the model, the stop time
    first_audio: FirstAudio = field(init=False)

    def __post_init__(self) -> None:
        self.first_audio = FirstAudio(self.request.speech_ended_at)


async def end_session(ws: WebSocket, frame: ErrorFrame, code: int, reason: str | None = None) -> None:
    """Ends a live session at once: the fatal ErrorFrame that says why, then the close."""
    await ws.send_json(frame.to_wire())
    await ws.close(code=code, reason=reason)


class LiveSettings(BaseModel):
    """What a WebSocket client's opening StartFrame may set."""

    model_config = ConfigDict(extra="forbid")

    cluster: str | None = None
    track_id: str | None = None
    allow_interruptions: bool = True
    enable_metrics: bool = True
    sample_rate: int = Field(16_000, ge=8_000, le=48_000)
    vad: VADSettings = VADSettings()
    # Reply audio as binary messages after their frame's header (omniwire.frames.to_wire_binary); false:
    # base64 inside the JSON, for a client that cannot take binary messages.
    binary_audio: bool = True


class TurnFacts(Protocol):
    """Where a session records what it learns of a turn after its graph has run it: appended beside
    the graph's records (graphs/store/writes.py, TurnFactWrites), never written into them, so it
    need not wait for the graph to close the turn. A turn is named by its track and task ids."""

    def record_discarded(self, track_id: str, task_ids: list[str], reason: str) -> Any: ...

    def record_heard(self, track_id: str, task_ids: list[str], text: str, seconds: float) -> Any: ...


@dataclass
class SessionServices:
    """What every live session of an ingress replica shares."""

    end_of_turn: Any = None  # the end-of-turn model (graphs.live.end_of_turn), loaded once
    facts: TurnFacts | None = None
    limits: Limits = field(default_factory=Limits)
    admission: Admission = field(default_factory=lambda: Admission(AdmissionSettings(max_wait_s=math.inf)))


class LiveConversation:
    def __init__(
        self,
        ws: WebSocket,
        start: StartFrame,
        graph: Any,
        new_turn: Callable[..., TurnRequest],
        settings: LiveSettings,
        cluster_allows_interruptions: bool,
        services: SessionServices | None = None,
    ):
        services = services or SessionServices()
        self.ws = ws
        self.start = start
        self.graph = graph
        self.new_turn = new_turn
        self.vad = settings.vad
        self.binary_audio = settings.binary_audio
        self.sample_rate = settings.sample_rate
        self.cluster_allows_interruptions = cluster_allows_interruptions
        self.end_of_turn = services.end_of_turn if self.vad.end_of_turn else None
        self.facts = services.facts
        self.limits = services.limits
        self.admission = services.admission
        self.segmenter = SpeechSegmenter(self.vad)
        self._segmenting = asyncio.Lock()  # the segmenter runs in a thread, one call at a time
        self.queue = FrameQueue()
        self.images: list[bytes] = []
        self.turn: _LiveTurn | None = None  # the turn replying, or about to
        self.interrupted = False
        self._preparing: asyncio.Task | None = None
        self._marking: set[asyncio.Task] = set()  # facts being recorded: dropped turns, replies cut short
        self.playout = Playout()  # the reply audio sent, as the client plays it
        self._audio_turns: dict[int, _LiveTurn] = {}  # queued reply audio (by frame seq) and its turn

    @property
    def allow_interruptions(self) -> bool:
        return self.cluster_allows_interruptions and self.start.allow_interruptions

    async def _refuse(self, code: int, status: int, why: str) -> None:
        await end_session(self.ws, ErrorFrame(error=why, status=status, fatal=True), code, why[:120])

    async def run(self) -> None:
        sender = asyncio.create_task(self._send())
        self.queue.put(self.start)
        try:
            await self._receive()
        except WebSocketDisconnect:
            pass
        finally:
            await self._cancel_turn()
            sender.cancel()
            if self._preparing is not None:
                self._preparing.cancel()
            await asyncio.gather(*self._marking, return_exceptions=True)

    async def _receive(self) -> None:
        limits = self.limits
        ends_at = time.monotonic() + limits.ws_max_session_s
        while True:
            left = ends_at - time.monotonic()
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=min(limits.ws_idle_timeout_s, left))
            except TimeoutError:
                if left <= limits.ws_idle_timeout_s:
                    why = f"the session reached its {limits.ws_max_session_s:g} s limit (limits.ws_max_session_s)"
                else:
                    why = f"no message for {limits.ws_idle_timeout_s:g} s (limits.ws_idle_timeout_s)"
                await self._refuse(1008, 408, why)
                return
            if message["type"] == "websocket.disconnect":
                return
            size = len(message.get("bytes") or message.get("text") or "")
            if size > limits.max_ws_message_bytes:
                why = f"a message of {size} bytes is over the {limits.max_ws_message_bytes} byte limit"
                await self._refuse(1009, 413, f"{why} (limits.max_ws_message_bytes)")
                return
            if message.get("bytes") is not None:
                await self._audio(message["bytes"], time.time())
                continue
            try:
                frame = from_wire(json.loads(message["text"]))
            except (ValueError, TypeError) as exc:
                self.queue.put(ErrorFrame(error=f"bad message: {exc}", status=400))
                continue
            if isinstance(frame, AudioRawFrame):
                await self._audio(frame.audio, time.time())
            elif isinstance(frame, ImageFrame):
                if len(self.images) >= limits.max_images:
                    why = f"{limits.max_images} pictures already wait for the next turn (limits.max_images)"
                    self.queue.put(ErrorFrame(error=f"image dropped: {why}", status=413))
                    continue
                if problem := await asyncio.to_thread(image_problem, frame.image, limits):
                    self.queue.put(ErrorFrame(error=f"image dropped: it {problem[1]}", status=problem[0]))
                    continue
                self.images.append(frame.image)
            elif isinstance(frame, StartInterruptionFrame):
                await self._interrupt()
            elif isinstance(frame, StartFrame):
                self.start.allow_interruptions = frame.allow_interruptions
                self.start.enable_metrics = frame.enable_metrics
            elif isinstance(frame, EndFrame):
                return
            else:
                self.queue.put(ErrorFrame(error=f"{type(frame).__name__} is not something a client sends", status=400))

    async def _audio(self, pcm: bytes, arrived: float) -> None:
        async with self._segmenting:
            events = await asyncio.to_thread(self._segment, pcm, arrived)
        for event in events:
            if isinstance(event, SpeechStarted):
                if event.resumed and self.turn is not None and not self.turn.committed:
                    await self._drop(self.turn, "cancelled: the user went on speaking after a pause")
                    continue
                answered = self.turn is None or self.turn.task.done()  # its records are all written
                if self.speaking and self.allow_interruptions:
                    await self._interrupt()
                if not event.resumed and answered:
                    self._prepare_next_turn()
            elif isinstance(event, Pause):
                if len(event.audio) >= MIN_UTTERANCE_S * RATE:
                    await self._speculate(event)
            elif isinstance(event, Utterance):
                if self.interrupted:
                    self.queue.put(StopInterruptionFrame())
                    self.interrupted = False
                pending = self.turn if self.turn is not None and not self.turn.committed else None
                if event.same_as_pause:
                    if pending is not None:
                        self._commit(pending)
                    # else the pause's turn was committed already (by the model or the clock), or too short
                elif len(event.audio) >= MIN_UTTERANCE_S * RATE:
                    if pending is not None:
                        await self._drop(pending, "cancelled: the utterance went on")
                    self._commit(await self._start_turn(event.audio, event.ended_at))

    def _prepare_next_turn(self) -> None:
        """The user has begun a turn: the models may read its prompt's start while they speak."""
        if self._preparing is None or self._preparing.done():
            self._preparing = asyncio.create_task(self._prepare())

    async def _prepare(self) -> None:
        if self._marking:
            await asyncio.wait(set(self._marking))  # the history it reads says what was heard
        try:
            await self.graph.prepare_turn.remote(self.start.track_id)
        except Exception:  # a head start only: the turn reads the whole prompt anyway
            logger.warning("preparing the next turn of %s failed", self.start.track_id, exc_info=True)

    def _segment(self, pcm: bytes, arrived: float) -> list:
        """Decoding, resampling and the VAD, in a worker thread: they would hold up every other session."""
        samples = from_pcm16(pcm)
        if self.sample_rate != RATE:
            samples = soxr.resample(samples, self.sample_rate, RATE)
        return self.segmenter.feed(samples, arrived)

    @property
    def replying(self) -> bool:
        return (
            self.turn is not None and self.turn.committed and self.turn.task is not None and not self.turn.task.done()
        )

    @property
    def speaking(self) -> bool:
        """Replying, or still heard: a reply is made faster than it is spoken, and the client plays the
        rest for seconds after its turn has ended here."""
        return self.replying or self.playout.playing(time.time())

    async def _speculate(self, pause: Pause) -> None:
        if self.turn is not None and not self.turn.committed:
            await self._drop(self.turn, "cancelled: the utterance went on")
        turn = await self._start_turn(pause.audio, pause.ended_at)
        turn.timers.append(asyncio.create_task(self._stop_time(turn)))
        if self.end_of_turn is not None:
            turn.timers.append(asyncio.create_task(self._judge(turn, pause.audio)))

    async def _judge(self, turn: _LiveTurn, audio) -> None:
        """The end-of-turn model's word on a pause: a finished turn is committed without waiting out the stop time."""
        turn.end_of_turn_probability = await asyncio.to_thread(self.end_of_turn.probability, audio)
        if turn.end_of_turn_probability >= self.vad.end_of_turn_threshold:
            await self._end_turn_at_pause(turn)

    async def _stop_time(self, turn: _LiveTurn) -> None:
        """The stop time by the clock: a client that sends nothing while its user is quiet still gets its answer."""
        await asyncio.sleep((self.vad.min_silence_ms - self.vad.pause_ms) / 1000)
        await self._end_turn_at_pause(turn)

    async def _end_turn_at_pause(self, turn: _LiveTurn) -> None:
        async with self._segmenting:
            if turn is not self.turn or turn.committed:
                return
            self.segmenter.end_turn()
        self._commit(turn)

    async def _start_turn(self, audio, ended_at: float) -> _LiveTurn:
        request = self.new_turn(audio, images=self.images, voiced=True, speech_ended_at=ended_at)
        turn = _LiveTurn(request, previous=self.turn)
        self.turn = turn
        turn.task = asyncio.create_task(self._run_turn(turn))
        return turn

    def _commit(self, turn: _LiveTurn) -> None:
        """The user has finished: the turn's frames go out, those held back first."""
        turn.committed, turn.committed_at = True, time.time()
        self.images = [image for image in self.images if image not in turn.request.images]
        for frame in turn.held:
            self._put(turn, frame)
        turn.held.clear()

    def _put(self, turn: _LiveTurn, frame) -> None:
        """A frame of a committed turn, handed to the connection (which sends at once)."""
        turn.first_audio.stamp(frame)
        if isinstance(frame, MetricsFrame) and frame.stage is None:
            frame.metrics.update(self._turn_taking(turn))
        if isinstance(frame, MetricsFrame) and not self.start.enable_metrics:
            return
        if isinstance(frame, TTSAudioFrame):
            self._audio_turns[frame.seq] = turn
        self.queue.put(frame)

    async def _run_turn(self, turn: _LiveTurn) -> None:
        if turn.previous is not None and turn.previous.task is not None:
            # Turns of one track take their turn. wait, not gather: dropping this turn must not cancel that one.
            await asyncio.wait({turn.previous.task})
        turn.previous = None  # done: nothing to wait for or go back to
        if self._marking:
            # Dropped turns and replies cut short are recorded before this one reads the history.
            await asyncio.wait(set(self._marking))
        try:
            ticket = self.admission.admit("live")
        except Overloaded as exc:
            # Said once the user has finished (a turn dropped because they went on says nothing).
            self._deliver(turn, ErrorFrame(error=exc.detail, status=503, retry_after_s=exc.retry_after_s))
            return
        turn.stream = self.graph.options(stream=True).run_turn_stream.remote(turn.request)
        try:
            async for frame in turn.stream:
                self._deliver(turn, frame)
            ticket.finished = True
        except RequestCancelledError:
            return  # interrupted or dropped: the StartInterruptionFrame or the records say so
        except Exception as exc:
            self.queue.put(ErrorFrame(error=f"the turn failed: {type(exc).__name__}: {exc}", status=500))
        finally:
            self.admission.release(ticket)

    def _deliver(self, turn: _LiveTurn, frame) -> None:
        if turn.committed:
            self._put(turn, frame)
        else:
            turn.held.append(frame)

    async def _drop(self, turn: _LiveTurn, reason: str) -> None:
        """A turn started on a pause that was not the end: cancelled, and its records say why."""
        await self._cancel(turn)
        if self.turn is turn:
            self.turn = turn.previous
        if self.facts is not None:
            self._mark(self.facts.record_discarded, turn.request.track_id, turn.request.task_ids, reason)

    def _mark(self, marker: Callable[..., Any], *args: Any) -> None:
        """A fact recorded beside the session, not in its way: the append may wait for the database
        (SQLite's write lock, a far PostgreSQL), and meanwhile the user's audio must still be heard
        as it comes. The next turn goes to the graph once it is recorded (its history reads it)."""
        marking = asyncio.create_task(asyncio.to_thread(marker, *args))
        self._marking.add(marking)
        marking.add_done_callback(self._marked)

    def _marked(self, marking: asyncio.Task) -> None:
        self._marking.discard(marking)
        if not marking.cancelled() and (exc := marking.exception()) is not None:
            logger.warning("recording what was learnt of a turn of %s failed", self.start.track_id, exc_info=exc)

    async def _interrupt(self) -> None:
        if not self.speaking:
            return
        self.interrupted = True
        cut = [self.playout.cut(time.time())]
        if self.replying:
            if cut[0] is None or cut[0].turn is not self.turn:
                cut.append(Heard(self.turn, "", 0.0))  # none of its audio had been sent
            await self._cancel_turn()
        self.queue.drop(TTSAudioFrame)
        self._audio_turns.clear()
        self.queue.put(StartInterruptionFrame())
        if self.facts is not None:
            for heard in cut:
                if heard is not None and heard.turn is not None:
                    request = heard.turn.request
                    self._mark(self.facts.record_heard, request.track_id, request.task_ids, heard.text, heard.seconds)

    async def _cancel_turn(self) -> None:
        if self.turn is not None:
            await self._cancel(self.turn)

    @staticmethod
    async def _cancel(turn: _LiveTurn) -> None:
        for timer in turn.timers:
            timer.cancel()
        if turn.stream is not None:
            turn.stream.cancel()
        if turn.task is not None and not turn.task.done():
            turn.task.cancel()
            await asyncio.gather(turn.task, return_exceptions=True)

    async def _send(self) -> None:
        while True:
            frame = await self.queue.get()
            header, audio = to_wire_binary(frame) if self.binary_audio else (frame.to_wire(), None)
            await self.ws.send_json(header)
            if audio is not None:
                await self.ws.send_bytes(audio)
            if isinstance(frame, TTSAudioFrame):
                self.playout.sent(self._audio_turns.pop(frame.seq, None), frame, time.time())

    @staticmethod
    def _turn_taking(turn: _LiveTurn) -> dict[str, float]:
        """How the end of the turn was found: when it was committed, and the end-of-turn model's word."""
        ended = turn.request.speech_ended_at
        figures = {"turn_started_after_s": turn.started - ended}
        if turn.committed_at is not None:
            figures["turn_committed_after_s"] = turn.committed_at - ended
        if turn.end_of_turn_probability is not None:
            figures["end_of_turn_probability"] = turn.end_of_turn_probability
        return figures
