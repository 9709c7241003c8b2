"""OpenAI speech-to-text (`audio.transcriptions`, whisper-1 by default)."""

from __future__ import annotations

from typing import Any

import numpy as np

from deployments.base import StrictModel, register
from deployments.openai_service import OpenAIOptions, OpenAIService
from deployments.stt_service import SAMPLE_RATE, SpeechToTextService


@register("openai_stt")
class OpenAISpeechToText(OpenAIService, SpeechToTextService):
    class Options(OpenAIOptions):
        model: str = "whisper-1"

    class Params(StrictModel):
        language: str | None = "en"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._connect()

    def transcribe(self, audio: np.ndarray, params: Params) -> tuple[str, dict[str, Any]]:
        from omniwire.audio import encode_wav

        kwargs = {"language": params.language} if params.language else {}
        transcription, call = self._call(
            self.client.audio.transcriptions,
            model=self.options.model,
            file=("turn.wav", encode_wav(audio, SAMPLE_RATE), "audio/wav"),
            **kwargs,
        )
        return transcription.text.strip(), {"model": self.options.model, **call}
