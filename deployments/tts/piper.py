"""Piper (ONNX VITS) text-to-speech; the bundled voice is en_US joe, medium quality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deployments.bundled import PIPER_JOE, piper_voice_files
from deployments.component import StrictModel, auto_device, register
from deployments.tts.service import TextToSpeechService


@register("piper_tts")
class PiperTextToSpeech(TextToSpeechService):
    class Options(StrictModel):
        voice: str = PIPER_JOE
        device: Literal["auto", "cpu", "cuda"] = "auto"
        # Whether idle onnxruntime threads spin for the next op (onnxruntime's default). Off: the same
        # synthesis time on 2 cores and 17 % less CPU, left to the LLM decoding beside it.
        spin_wait: bool = False

    class Params(StrictModel):
        length_scale: float | None = None
        speaker_id: int | None = None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        import onnxruntime
        from piper import PiperConfig, PiperVoice

        device = self.options.device
        if device == "auto":
            device = auto_device("CUDAExecutionProvider" in onnxruntime.get_available_providers())
        self.device = device
        model, config = piper_voice_files(self.options.voice)
        session = onnxruntime.SessionOptions()
        session.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.options.spin_wait else "0")
        cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})
        providers = [cuda] if device == "cuda" else ["CPUExecutionProvider"]
        # PiperVoice.load, with session options of our own.
        self.voice = PiperVoice(
            config=PiperConfig.from_dict(json.loads(Path(config).read_text(encoding="utf-8"))),
            session=onnxruntime.InferenceSession(str(model), sess_options=session, providers=providers),
        )
        self.synthesize("Hello.")  # the first call is slow: pay for it at start, not on the first reply

    def synthesize(self, text: str, params: Params | None = None) -> tuple[np.ndarray, int]:
        return self.speak(text, params or self.Params())[:2]

    def speak(self, text: str, params: Params) -> tuple[np.ndarray, int, dict[str, Any]]:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=params.length_scale, speaker_id=params.speaker_id)
        chunks = list(self.voice.synthesize(text, syn_config=config))
        rate = self.voice.config.sample_rate
        if not chunks:
            return np.zeros(0, dtype=np.float32), rate, {}
        return np.concatenate([c.audio_float_array for c in chunks]), rate, {}
