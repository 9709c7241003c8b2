"""Audio in and out of the API: decode what soundfile reads, resample with soxr, encode WAV."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr

MODEL_RATE = 16_000


class AudioError(ValueError):
    pass


def decode(data: bytes, target_rate: int = MODEL_RATE) -> tuple[np.ndarray, int]:
    """Mono float32 at `target_rate`, plus the file's own rate. Any channel count and rate."""
    if not data:
        raise AudioError("the audio file is empty")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"could not decode the audio (WAV, FLAC or OGG expected): {exc}") from None
    if samples.shape[0] == 0:
        raise AudioError("the audio file has no samples")
    mono = samples.mean(axis=1)
    if rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate)
    return np.ascontiguousarray(mono, dtype=np.float32), rate


def encode_wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
