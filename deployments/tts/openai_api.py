"""OpenAI text-to-speech (`audio.speech`, tts-1 by default)."""

from __future__ import annotations

from typing import Any

import numpy as np

from deployments.component import StrictModel, register
from deployments.openai_service import OpenAIOptions, OpenAIService
from deployments.tts.service import TextToSpeechService
from omniwire.audio import decode


@register("openai_tts")
class OpenAITextToSpeech(OpenAIService, TextToSpeechService):
    class Options(OpenAIOptions):
        model: str = "tts-1"
        voice: str = "alloy"

    class Params(StrictModel):
        speed: float = 1.0

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._connect()

    def speak(self, text: str, params: Params) -> tuple[np.ndarray, int, dict[str, Any]]:
        speech, call = self._call(
            self.client.audio.speech,
            model=self.options.model,
            voice=self.options.voice,
            input=text,
            response_format="wav",
            speed=params.speed,
        )
        reply = decode(speech.content, target_rate=None)
        return reply.samples, reply.rate, {"model": self.options.model, "voice": self.options.voice, **call}
