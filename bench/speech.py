"""Real spoken utterances, by the bundled Piper voice: test and benchmark input that needs no files."""

from __future__ import annotations

import functools
import io

import numpy as np
import soundfile as sf
import soxr

from deployments.tts.piper import PiperTextToSpeech


@functools.cache
def _voice() -> PiperTextToSpeech:
    return PiperTextToSpeech()


def speak(text: str, fmt: str = "WAV", rate: int | None = None, channels: int = 1) -> bytes:
    """`text` spoken, encoded as `fmt`, optionally resampled and copied to several channels."""
    samples, voice_rate = _voice().synthesize(text)
    if rate and rate != voice_rate:
        samples = soxr.resample(samples, voice_rate, rate)
    out_rate = rate or voice_rate
    if channels > 1:
        samples = np.stack([samples] * channels, axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, samples, out_rate, format=fmt)
    return buffer.getvalue()


def speech_end(samples: np.ndarray, floor: float = 0.02, rate: int = 16_000) -> float:
    """Seconds into the recording where its speech ends: the last 10 ms louder than `floor`."""
    step = rate // 100
    loud = [i for i in range(0, len(samples), step) if np.abs(samples[i : i + step]).max(initial=0) > floor]
    return (loud[-1] + step) / rate if loud else len(samples) / rate
