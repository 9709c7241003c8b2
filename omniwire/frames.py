"""Frames: what flows through a streaming turn and over the wire, as plain dataclasses.

Three families, as in pipecat-style pipelines. System frames (cancel, error, interruption,
metrics) are urgent and overtake data frames still queued for sending; control frames (start,
end, sync) mark a turn's shape; data frames carry audio, images and text.

On the wire every frame is one JSON object, `{"type": "<FrameClass>", ...fields}`. Audio is
16-bit little-endian PCM; in JSON it is base64 under "audio". Over the WebSocket a client may
also send its microphone audio as binary messages of raw PCM16 mono at 16 kHz, and the server sends
reply audio the same way: the frame's JSON without its audio, saying `"binary": "audio"`, then the
audio as the next (binary) message (`to_wire_binary`, `WireReader`); a third fewer bytes than base64,
and no decoding.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

_sequence = itertools.count()


@dataclass
class Frame:
    family: ClassVar[str] = "data"
    seq: int = field(default_factory=lambda: next(_sequence), kw_only=True)
    ts: float = field(default_factory=time.time, kw_only=True)

    def to_wire(self) -> dict[str, Any]:
        data = asdict(self)
        for name, value in data.items():
            if isinstance(value, bytes):
                data[name] = base64.b64encode(value).decode("ascii")
        return {"type": type(self).__name__, **data}


@dataclass
class SystemFrame(Frame):
    family: ClassVar[str] = "system"


@dataclass
class ControlFrame(Frame):
    family: ClassVar[str] = "control"


@dataclass
class DataFrame(Frame):
    family: ClassVar[str] = "data"


# system


@dataclass
class ErrorFrame(SystemFrame):
    error: str
    stage: str | None = None
    status: int = 500  # what the same failure answers over plain HTTP
    fatal: bool = False
    retry_after_s: float | None = None  # the server is busy (503): when to try again


@dataclass
class StartInterruptionFrame(SystemFrame):
    """The user barged in: drop whatever audio of the reply is still queued."""


@dataclass
class StopInterruptionFrame(SystemFrame):
    pass


@dataclass
class MetricsFrame(SystemFrame):
    """One stage's `ttfb_s` and `processing_s`, or the turn's `time_to_first_audio_s` and
    `total_reply_s` (stage None)."""

    stage: str | None
    metrics: dict[str, float]


# control


@dataclass
class StartFrame(ControlFrame):
    track_id: str
    cluster: str
    turn: int | None = None
    allow_interruptions: bool = True
    enable_metrics: bool = True


@dataclass
class EndFrame(ControlFrame):
    """The turn is over; `status` is completed, no_speech, failed or cancelled."""

    track_id: str
    turn: int | None
    status: str
    reply_audio_url: str | None = None


@dataclass
class SyncFrame(ControlFrame):
    """Parallel stages joined; the stages named ran side by side."""

    stages: list[str]


# data


@dataclass
class AudioRawFrame(DataFrame):
    audio: bytes  # PCM16 little-endian
    sample_rate: int
    num_channels: int = 1

    @property
    def seconds(self) -> float:
        """How long the audio plays."""
        return len(self.audio) / (2 * self.num_channels * self.sample_rate)


@dataclass
class ImageFrame(DataFrame):
    image: bytes  # an encoded image file
    format: str | None = None


@dataclass
class TextFrame(DataFrame):
    text: str
    stage: str | None = None


@dataclass
class TranscriptionFrame(TextFrame):
    pass


@dataclass
class LLMTextFrame(TextFrame):
    """A chunk of the reply as the LLM generates it."""


@dataclass
class TTSAudioFrame(AudioRawFrame):
    sentence: int = 0  # which sentence of the reply this audio speaks
    text: str = ""


@dataclass
class EmotionFrame(DataFrame):
    emotion: dict[str, Any]


FRAME_TYPES: dict[str, type[Frame]] = {
    cls.__name__: cls
    for cls in (
        ErrorFrame,
        StartInterruptionFrame,
        StopInterruptionFrame,
        MetricsFrame,
        StartFrame,
        EndFrame,
        SyncFrame,
        AudioRawFrame,
        ImageFrame,
        TextFrame,
        TranscriptionFrame,
        LLMTextFrame,
        TTSAudioFrame,
        EmotionFrame,
    )
}


def from_wire(data: dict[str, Any]) -> Frame:
    """The frame a wire object describes; ValueError naming what is wrong otherwise."""
    kind = data.get("type")
    cls = FRAME_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown frame type {kind!r}; known: {sorted(FRAME_TYPES)}")
    values = {}
    for f in fields(cls):
        if f.name in data:
            value = data[f.name]
            values[f.name] = base64.b64decode(value) if f.type == "bytes" and isinstance(value, str) else value
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"{kind}: {exc}") from None


def to_wire_binary(frame: Frame) -> tuple[dict[str, Any], bytes | None]:
    """A frame as the WebSocket sends it: the JSON header and, for audio, the binary message that follows."""
    audio = getattr(frame, "audio", None)
    if not isinstance(audio, bytes):
        return frame.to_wire(), None
    header = {"type": type(frame).__name__, **{k: v for k, v in asdict(frame).items() if k != "audio"}}
    return {**header, "binary": "audio"}, audio


class WireReader:
    """Frames from a WebSocket's messages, in order: a header that says `"binary"` waits for the binary
    message after it, which holds that field."""

    def __init__(self) -> None:
        self._header: dict[str, Any] | None = None

    def text(self, data: dict[str, Any]) -> Frame | None:
        """The frame of a JSON message; None while its binary part has yet to come."""
        if self._header is not None:
            raise ValueError(f"a {self._header.get('type')} header was not followed by its binary message")
        if "binary" in data:
            self._header = data
            return None
        return from_wire(data)

    def binary(self, payload: bytes) -> Frame:
        """The frame whose header came just before this binary message."""
        if self._header is None:
            raise ValueError("a binary message came with no frame header before it")
        header, self._header = self._header, None
        field_name = header.pop("binary")
        return from_wire({**header, field_name: payload})


class FrameQueue:
    """Frames waiting to be sent, in order, except that system frames jump the queue."""

    def __init__(self) -> None:
        self._queue: asyncio.PriorityQueue[tuple[int, int, Frame]] = asyncio.PriorityQueue()
        self._order = itertools.count()

    def put(self, frame: Frame) -> None:
        self._queue.put_nowait((0 if frame.family == "system" else 1, next(self._order), frame))

    async def get(self) -> Frame:
        return (await self._queue.get())[2]

    def drop(self, kind: type[Frame]) -> int:
        """Remove queued frames of `kind` (a barge-in drops the old reply's audio); returns how many."""
        kept, dropped = [], 0
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item[2], kind):
                dropped += 1
            else:
                kept.append(item)
        for item in kept:
            self._queue.put_nowait(item)
        return dropped

    def empty(self) -> bool:
        return self._queue.empty()
