"""Where a user's turn ends in a live audio stream: Silero VAD (deployments.stt.silero_vad) says where
speech is; the segmenter turns that into events as the microphone audio arrives.

A short pause (`pause_ms`) hands the utterance so far out at once, so its transcription and reply
can start while it is still unclear whether the user has finished (the end-of-turn model judges
that meanwhile, graphs.live.end_of_turn); speech that resumes within the utterance says so, and
the work started on the pause is dropped. A long silence (`min_silence_ms`, the stop time) ends
the utterance whatever the model thought.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from deployments.stt.silero_vad import RATE, WINDOW, SileroStream


class VADSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.5, gt=0, lt=1)
    # Quiet this long starts the reply speculatively and asks the end-of-turn model.
    pause_ms: int = Field(128, ge=32, le=2000)
    # The stop time: quiet this long ends the utterance, finished or not.
    min_silence_ms: int = Field(1000, ge=50, le=10_000)
    speech_pad_ms: int = Field(100, ge=0, le=1000)
    max_utterance_s: float = Field(30.0, gt=0, le=120)  # a longer utterance is cut and answered
    # Whether a pause the end-of-turn model judges finished ends the turn before the stop time.
    end_of_turn: bool = True
    end_of_turn_threshold: float = Field(0.5, gt=0, lt=1)


@dataclass
class SpeechStarted:
    at: float  # epoch seconds
    resumed: bool = False  # True: the user went on after a pause, within the same utterance


@dataclass
class Pause:
    """The user has paused: the utterance so far, which may or may not be the whole turn."""

    audio: np.ndarray  # float32 at 16 kHz
    ended_at: float  # epoch seconds when the last voiced audio arrived


@dataclass
class Utterance:
    """The turn is over (the stop time passed, or the utterance reached its length limit)."""

    audio: np.ndarray  # float32 at 16 kHz
    ended_at: float  # epoch seconds when the last voiced audio arrived
    same_as_pause: bool = False  # nothing was said since the last Pause: its audio is this audio


class SpeechSegmenter:
    def __init__(self, settings: VADSettings | None = None) -> None:
        self.settings = settings or VADSettings()
        self._vad = SileroStream()
        self._pending = np.zeros(0, dtype=np.float32)
        self._stream = np.zeros(0, dtype=np.float32)  # audio since the start of the current utterance (plus pad)
        self._offset = 0  # stream sample index of _stream[0]
        self._arrivals: list[tuple[int, float]] = []  # (end sample of a fed chunk, when it arrived)
        self._fed = 0
        self._at = 0  # samples judged so far
        self._start: int | None = None  # where the current utterance starts
        self._speaking = False
        self._silence_from: int | None = None  # where the current quiet began
        self._paused = False  # a Pause was handed out for the current quiet

    def feed(self, audio: np.ndarray, arrived: float | None = None) -> list[SpeechStarted | Pause | Utterance]:
        """Audio as it arrives (float32, 16 kHz mono); returns what it completed."""
        arrived = arrived or time.time()
        self._fed += len(audio)
        self._arrivals.append((self._fed, arrived))
        self._pending = np.concatenate([self._pending, audio.astype(np.float32)])
        events: list[SpeechStarted | Pause | Utterance] = []
        s = self.settings
        while len(self._pending) >= WINDOW:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            self._stream = np.concatenate([self._stream, window])
            begins, self._at = self._at, self._at + WINDOW
            probability = self._vad(window)
            if probability >= s.threshold:
                self._silence_from = None
                if not self._speaking:
                    self._speaking = True
                    if self._start is None:
                        self._start = max(begins - self._samples(s.speech_pad_ms), self._offset)
                        events.append(SpeechStarted(self._arrival(begins)))
                    elif self._paused:
                        events.append(SpeechStarted(self._arrival(begins), resumed=True))
                    self._paused = False
            elif probability < s.threshold - 0.15 and self._speaking and self._silence_from is None:
                self._silence_from = begins
            if self._start is None:
                self._trim()
                continue
            quiet = self._at - self._silence_from if self._silence_from is not None else 0
            if self._silence_from is not None and quiet >= self._samples(s.pause_ms) and not self._paused:
                self._speaking, self._paused = False, True
                events.append(Pause(self._audio(), self._arrival(self._silence_from)))
            if self._silence_from is not None and quiet >= self._samples(s.min_silence_ms):
                events.append(self._cut(same_as_pause=self._paused))
            elif self._at - self._start > s.max_utterance_s * RATE:
                events.append(self._cut(same_as_pause=False))
        return events

    def end_turn(self) -> None:
        """The turn was judged over at its pause: speech from here on starts a new utterance."""
        if self._paused:
            self._reset()

    def _samples(self, ms: float) -> int:
        return int(ms * RATE / 1000)

    def _audio(self) -> np.ndarray:
        end = (
            self._at if self._silence_from is None else self._silence_from + self._samples(self.settings.speech_pad_ms)
        )
        return self._stream[max(self._start - self._offset, 0) : min(end, self._at) - self._offset].copy()

    def _cut(self, same_as_pause: bool) -> Utterance:
        ended = self._silence_from if self._silence_from is not None else self._at
        utterance = Utterance(self._audio(), self._arrival(ended), same_as_pause)
        self._reset()
        return utterance

    def _reset(self) -> None:
        self._start, self._speaking, self._silence_from, self._paused = None, False, None, False
        self._trim()

    def _trim(self) -> None:
        """Keep only the speech pad's worth of audio while nobody speaks."""
        keep = self._samples(self.settings.speech_pad_ms) + WINDOW
        if len(self._stream) > keep:
            self._offset += len(self._stream) - keep
            self._stream = self._stream[-keep:]
        self._arrivals = [a for a in self._arrivals if a[0] >= self._offset] or self._arrivals[-1:]

    def _arrival(self, sample: int) -> float:
        for end, arrived in self._arrivals:
            if end >= sample:
                return arrived
        return self._arrivals[-1][1]
