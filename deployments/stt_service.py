"""Speech-to-text: audio of one user turn in, transcript out."""

from __future__ import annotations

from typing import Any

import numpy as np

from deployments.base import Component

SAMPLE_RATE = 16_000


class SpeechToTextService(Component):
    kind = "speech_to_text"

    def transcribe(self, audio: np.ndarray, params: Any) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def process(self, inputs: dict[str, Any], params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        audio = inputs["audio"]
        text, profile = self.transcribe(audio, params)
        profile = {"audio_seconds": round(len(audio) / SAMPLE_RATE, 3), **profile}
        return {"transcript": text}, {"transcript": text, **profile}
