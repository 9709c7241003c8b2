"""A live conversation over a WebSocket: microphone audio in, frames out, barge-in.

The client streams raw audio; Silero VAD finds where each utterance ends and the turn starts
right then, streaming its frames back as they come. When the user starts speaking during a
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
import time
from collections.abc import Callable
from typing import Any

import soxr
from fastapi import WebSocket, WebSocketDisconnect
from ray.serve.exceptions import RequestCancelledError

from graphs.api.vad import RATE, SpeechSegmenter, SpeechStarted, Utterance, VADSettings
from graphs.observability.latency import FirstAudio
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
)

# Shorter "utterances" are clicks and breaths, not speech worth a turn.
MIN_UTTERANCE_S = 0.3


class LiveConversation:
    def __init__(
        self,
        ws: WebSocket,
        start: StartFrame,
        graph: Any,
        new_request: Callable[..., Any],
        vad: VADSettings,
        sample_rate: int,
        cluster_allows_interruptions: bool,
    ):
        self.ws = ws
        self.start = start
        self.graph = graph
        self.new_request = new_request
        self.sample_rate = sample_rate
        self.cluster_allows_interruptions = cluster_allows_interruptions
        self.segmenter = SpeechSegmenter(vad)
        self.queue = FrameQueue()
        self.images: list[bytes] = []
        self.turn: asyncio.Task | None = None
        self.stream = None
        self.interrupted = False
        self.first_audio: FirstAudio | None = None

    @property
    def allow_interruptions(self) -> bool:
        return self.cluster_allows_interruptions and self.start.allow_interruptions

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

    async def _receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await self._audio(message["bytes"])
                continue
            try:
                frame = from_wire(json.loads(message["text"]))
            except (ValueError, TypeError) as exc:
                self.queue.put(ErrorFrame(error=f"bad message: {exc}", status=400))
                continue
            if isinstance(frame, AudioRawFrame):
                await self._audio(frame.audio)
            elif isinstance(frame, ImageFrame):
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

    async def _audio(self, pcm: bytes) -> None:
        samples = from_pcm16(pcm)
        if self.sample_rate != RATE:
            samples = soxr.resample(samples, self.sample_rate, RATE)
        for event in self.segmenter.feed(samples, time.time()):
            if isinstance(event, SpeechStarted):
                if self.replying and self.allow_interruptions:
                    await self._interrupt()
            elif isinstance(event, Utterance):
                if self.interrupted:
                    self.queue.put(StopInterruptionFrame())
                    self.interrupted = False
                if len(event.audio) >= MIN_UTTERANCE_S * RATE:
                    await self._start_turn(event)

    @property
    def replying(self) -> bool:
        return self.turn is not None and not self.turn.done()

    async def _start_turn(self, utterance: Utterance) -> None:
        previous = self.turn
        request = self.new_request(utterance.audio, self.images, utterance.ended_at)
        self.images = []
        self.turn = asyncio.create_task(self._run_turn(request, previous))

    async def _run_turn(self, request: Any, previous: asyncio.Task | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)  # turns of one track take their turn
        self.first_audio = FirstAudio(request.speech_ended_at)
        self.stream = self.graph.options(stream=True).run_turn_stream.remote(request)
        try:
            async for frame in self.stream:
                if isinstance(frame, MetricsFrame) and not self.start.enable_metrics:
                    continue
                self.queue.put(frame)
        except RequestCancelledError:
            return  # interrupted: the StartInterruptionFrame says so
        except Exception as exc:
            self.queue.put(ErrorFrame(error=f"the turn failed: {type(exc).__name__}: {exc}", status=500))

    async def _interrupt(self) -> None:
        if not self.replying:
            return
        self.interrupted = True
        await self._cancel_turn()
        self.queue.drop(TTSAudioFrame)
        self.queue.put(StartInterruptionFrame())

    async def _cancel_turn(self) -> None:
        if self.stream is not None:
            self.stream.cancel()
        if self.turn is not None and not self.turn.done():
            self.turn.cancel()
            await asyncio.gather(self.turn, return_exceptions=True)

    async def _send(self) -> None:
        while True:
            frame = await self.queue.get()
            if self.first_audio is not None:
                self.first_audio.stamp(frame)  # as the audio leaves the server
            await self.ws.send_json(frame.to_wire())
