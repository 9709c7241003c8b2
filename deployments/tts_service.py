"""Text-to-speech: the reply text in, cleaned for speech, mono float32 audio out."""

from __future__ import annotations

from typing import Any

import numpy as np

from deployments.base import Component
from deployments.speech_text import clean_for_speech


class TextToSpeechService(Component):
    kind = "text_to_speech"

    def synthesize(self, text: str, params: Any) -> tuple[np.ndarray, int]:
        return self.speak(text, params)[:2]

    def speak(self, text: str, params: Any) -> tuple[np.ndarray, int, dict[str, Any]]:
        """Backends implement this or `synthesize`; this one also says what the call was like."""
        audio, rate = self.synthesize(text, params)
        return audio, rate, {}

    def process(self, inputs: dict[str, Any], params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        text = clean_for_speech(inputs["reply_text"])
        if not text:
            return {}, {"spoken": "", "characters": 0}  # nothing a voice could say
        audio, rate, profile = self.speak(text, params)
        audio = np.asarray(audio, dtype=np.float32)
        duration = round(len(audio) / rate, 3)
        return (
            {"reply_audio": {"samples": audio, "sample_rate": rate}},
            {"spoken": text, "sample_rate": rate, "audio_seconds": duration, "characters": len(text), **profile},
        )
