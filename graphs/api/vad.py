"""End of speech in a live audio stream: Silero VAD (bundled in the `silero-vad` package).

The WebSocket feeds microphone audio in as it arrives; the segmenter says when the user starts
speaking (a barge-in, if a reply is playing) and hands over each utterance once they have been
quiet for `min_silence_ms` (the stop time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

RATE = 16_000
WINDOW = 512  # samples per VAD decision at 16 kHz (32 ms), what Silero is trained on


class VADSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.5, gt=0, lt=1)
    min_silence_ms: int = Field(500, ge=50)  # the stop time: this much quiet ends an utterance
    speech_pad_ms: int = Field(100, ge=0)
    max_utterance_s: float = Field(30.0, gt=0)  # a longer utterance is cut and answered


@dataclass
class SpeechStarted:
    at: float  # epoch seconds


@dataclass
class Utterance:
    audio: np.ndarray  # float32 at 16 kHz
    ended_at: float  # epoch seconds when the last voiced sample arrived


class SpeechSegmenter:
    def __init__(self, settings: VADSettings | None = None) -> None:
        import torch
        from silero_vad import VADIterator, load_silero_vad

        self._torch = torch
        self.settings = settings or VADSettings()
        self._vad = VADIterator(
            load_silero_vad(onnx=True),
            threshold=self.settings.threshold,
            sampling_rate=RATE,
            min_silence_duration_ms=self.settings.min_silence_ms,
            speech_pad_ms=self.settings.speech_pad_ms,
        )
        self._pending = np.zeros(0, dtype=np.float32)
        self._stream = np.zeros(0, dtype=np.float32)  # audio since the start of the current utterance (plus pad)
        self._offset = 0  # stream sample index of _stream[0]
        self._arrivals: list[tuple[int, float]] = []  # (end sample of a fed chunk, when it arrived)
        self._start: int | None = None
        self._fed = 0

    def feed(self, audio: np.ndarray, arrived: float | None = None) -> list[SpeechStarted | Utterance]:
        """Audio as it arrives (float32, 16 kHz mono); returns what it completed."""
        arrived = arrived or time.time()
        self._fed += len(audio)
        self._arrivals.append((self._fed, arrived))
        self._pending = np.concatenate([self._pending, audio.astype(np.float32)])
        events: list[SpeechStarted | Utterance] = []
        while len(self._pending) >= WINDOW:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            self._stream = np.concatenate([self._stream, window])
            decision = self._vad(self._torch.from_numpy(window))
            if decision and "start" in decision:
                self._start = decision["start"]
                events.append(SpeechStarted(self._arrival(self._start)))
            elif decision and "end" in decision and self._start is not None:
                events.append(self._cut(decision["end"]))
            elif self._start is None:
                self._trim()
            elif self._vad.current_sample - self._start > self.settings.max_utterance_s * RATE:
                events.append(self._cut(self._vad.current_sample))
                self._vad.reset_states()
        return events

    def _cut(self, end: int) -> Utterance:
        start, self._start = self._start, None
        audio = self._stream[max(start - self._offset, 0) : end - self._offset].copy()
        utterance = Utterance(audio, self._arrival(end))
        self._trim()
        return utterance

    def _trim(self) -> None:
        """Keep only the speech pad's worth of audio while nobody speaks."""
        keep = int(self.settings.speech_pad_ms * RATE / 1000) + WINDOW
        if len(self._stream) > keep:
            self._offset += len(self._stream) - keep
            self._stream = self._stream[-keep:]
        self._arrivals = [a for a in self._arrivals if a[0] >= self._offset] or self._arrivals[-1:]

    def _arrival(self, sample: int) -> float:
        for end, arrived in self._arrivals:
            if end >= sample:
                return arrived
        return self._arrivals[-1][1]
