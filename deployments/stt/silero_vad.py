"""Silero VAD (the model file bundled in the `silero-vad` package) on onnxruntime: one session per
process, shared by every stream, each stream keeping its own state. Tens of microseconds a window."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

RATE = 16_000
WINDOW = 512  # samples per decision at 16 kHz (32 ms), what Silero is trained on
_CONTEXT = 64  # samples of the previous window the model sees with each one


@functools.cache
def _session():
    import onnxruntime

    spec = importlib.util.find_spec("silero_vad")  # located, not imported: the package imports torch
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the silero-vad package is not installed: pip install 'omniserve[server]'")
    path = Path(spec.submodule_search_locations[0]) / "data" / "silero_vad.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class SileroStream:
    """Speech probability of each 32 ms window of one audio stream (float32, 16 kHz)."""

    def __init__(self) -> None:
        self._session = _session()
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._rate = np.array(RATE, dtype=np.int64)

    def __call__(self, window: np.ndarray) -> float:
        x = np.concatenate([self._context, window]).astype(np.float32)[None, :]
        out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._rate})
        self._context = x[0, -_CONTEXT:]
        return float(out[0, 0])


def voiced_span(audio: np.ndarray, threshold: float = 0.5, pad_s: float = 0.2) -> tuple[int, int] | None:
    """(start, end) samples from the first to the last voiced window, padded; None when nothing is speech."""
    stream = SileroStream()
    voiced = [i for i in range(0, len(audio) - WINDOW + 1, WINDOW) if stream(audio[i : i + WINDOW]) >= threshold]
    if not voiced:
        return None
    pad = int(pad_s * RATE)
    return max(voiced[0] - pad, 0), min(voiced[-1] + WINDOW + pad, len(audio))


def voiced_part(audio: np.ndarray) -> np.ndarray | None:
    """The audio trimmed to its speech (voiced_span), None when none of it is speech."""
    span = voiced_span(audio)
    return None if span is None else audio[span[0] : span[1]]
