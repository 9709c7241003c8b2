"""Moonshine tiny-en speech-to-text (ONNX Runtime, the model bundled in moonshine-voice 0.1.0)."""

from __future__ import annotations

from typing import Any

import numpy as np

from deployments.component import StrictModel, register
from deployments.stt.service import SpeechToTextService
from deployments.stt.silero_vad import RATE


@register("moonshine_stt")
class MoonshineSpeechToText(SpeechToTextService):
    """Encodes only as much audio as was said (no 30 s window): the fastest ear here, and the least
    accurate on accented speech (python -m bench.speech_to_text)."""

    class Options(StrictModel):
        model: str = "tiny-en"

    class Params(StrictModel):
        # Silence around the speech trimmed, and audio with no speech not transcribed (the base's `speech`).
        vad_filter: bool = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from moonshine_voice import ModelArch, Transcriber
        from moonshine_voice.utils import get_model_path

        arch = {"tiny-en": ModelArch.TINY, "base-en": ModelArch.BASE}.get(self.options.model)
        if arch is None:
            raise ValueError(f"moonshine model {self.options.model!r} is not one of tiny-en, base-en")
        self.model = Transcriber(model_path=str(get_model_path(self.options.model)), model_arch=arch)
        self.model.transcribe_without_streaming(np.zeros(RATE, np.float32).tolist(), RATE)

    def about(self) -> dict[str, Any]:
        return {"model": f"moonshine-{self.options.model}", "device": "cpu"}

    def transcribe(self, audio: np.ndarray, params: Params, context: str | None = None) -> tuple[str, dict[str, Any]]:
        """Moonshine takes no prompt: `context` is unused."""
        profile = self.about()
        transcript = self.model.transcribe_without_streaming(audio.astype(np.float32).tolist(), RATE)
        text = " ".join(line.text.strip() for line in transcript.lines if line.text.strip())
        return text, {**profile, "segments": len(transcript.lines)}
