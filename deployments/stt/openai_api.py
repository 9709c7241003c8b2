"""OpenAI speech-to-text (`audio.transcriptions`, whisper-1 by default)."""

from __future__ import annotations

from typing import Any

import numpy as np

from deployments.component import StrictModel, register
from deployments.openai_service import OpenAIOptions, OpenAIService
from deployments.stt.service import SAMPLE_RATE, SpeechToTextService


@register("openai_stt")
class OpenAISpeechToText(OpenAIService, SpeechToTextService):
    class Options(OpenAIOptions):
        model: str = "whisper-1"

    class Params(StrictModel):
        language: str | None = "en"
        # Words and names this cluster's users say: the API's `prompt`, as Whisper's previous text.
        prompt: str | None = None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._connect()

    def context(self, inputs: dict[str, Any], params: Params) -> str | None:
        return params.prompt

    def transcribe(self, audio: np.ndarray, params: Params, context: str | None = None) -> tuple[str, dict[str, Any]]:
        from omniwire.audio import encode_wav

        kwargs: dict[str, Any] = {"language": params.language} if params.language else {}
        if context:
            kwargs["prompt"] = context
        transcription, call = self._call(
            self.client.audio.transcriptions,
            model=self.options.model,
            file=("turn.wav", encode_wav(audio, SAMPLE_RATE), "audio/wav"),
            **kwargs,
        )
        return transcription.text.strip(), {"model": self.options.model, **call}
