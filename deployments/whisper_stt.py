"""faster-whisper (CTranslate2) speech-to-text."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

from deployments.base import StrictModel, auto_device, register
from deployments.bundled import WHISPER_TINY_EN, whisper_model_dir
from deployments.silero_vad import RATE, voiced_span
from deployments.stt_service import SpeechToTextService


@register("whisper_stt")
class WhisperSpeechToText(SpeechToTextService):
    class Options(StrictModel):
        model: str = WHISPER_TINY_EN
        device: Literal["auto", "cpu", "cuda"] = "auto"
        compute_type: str = "auto"
        # 0: one per core, at most 4 (CTranslate2's own default is 4, which oversubscribes 2 cores).
        cpu_threads: int = 0

    class Params(StrictModel):
        language: str | None = "en"
        beam_size: int = 1
        # Silero VAD trims the silence around the speech (Whisper hallucinates words on silence) and
        # finds audio with no speech at all, which is then not transcribed.
        vad_filter: bool = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        import ctranslate2
        from faster_whisper import WhisperModel

        opts = self.options
        device = opts.device
        if device == "auto":
            device = auto_device(ctranslate2.get_cuda_device_count() > 0)
        compute_type = opts.compute_type
        if compute_type == "auto":
            compute_type = "float16" if device == "cuda" else "int8"
        self.device = device
        self.model = WhisperModel(
            whisper_model_dir(opts.model),
            device=device,
            compute_type=compute_type,
            cpu_threads=opts.cpu_threads or min(os.cpu_count() or 1, 4),
        )
        # The first call allocates and picks kernels: pay for it here, not on the first user's turn.
        list(self.model.transcribe(np.zeros(RATE, np.float32), language="en", without_timestamps=True)[0])

    def transcribe(self, audio: np.ndarray, params: Params) -> tuple[str, dict[str, Any]]:
        if params.vad_filter:
            span = voiced_span(audio)
            if span is None:
                silent = {"language": params.language, "segments": 0, "no_speech_prob": 1.0}
                return "", {"model": self.options.model, "device": self.device, **silent}
            audio = audio[span[0] : span[1]]
        segments, info = self.model.transcribe(
            audio,
            language=params.language,
            beam_size=params.beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        return text, {
            "model": self.options.model,
            "device": self.device,
            "language": info.language,
            "segments": len(segments),
            "no_speech_prob": round(max((s.no_speech_prob for s in segments), default=1.0), 3),
        }
