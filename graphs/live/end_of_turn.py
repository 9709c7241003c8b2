"""Has the user finished their turn? Smart Turn v3.2, bundled in the `pipecat-ai` wheel (BSD-2-Clause).

Silence alone cannot tell "What is the weather like in Paris today?" from "I would like to know what the":
this model hears the words and the intonation of the last 8 s, so the live segmenter can end a finished
sentence after a short pause and wait longer for an unfinished one. pipecat-ai is installed with --no-deps
and never imported (its package imports loguru and more): only its model file and its numpy-only Whisper
feature code are loaded, by path.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

RATE = 16_000
WINDOW_S = 8  # the model hears the last 8 s of an utterance; shorter ones are padded with leading zeros
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
# The file in pipecat-ai 1.14: another file could score differently than the thresholds were measured on.
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
INSTALL = "pip install --no-deps 'pipecat-ai==1.14.*'"


def smart_turn_dir() -> Path:
    """pipecat's smart_turn folder, found without running pipecat's __init__ (its dependencies are not installed)."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"end-of-turn detection needs the pipecat-ai package for its Smart Turn model: {INSTALL}")
    return Path(spec.submodule_search_locations[0], "audio", "turn", "smart_turn")


def checked_model(folder: Path) -> Path:
    path = folder / "data" / MODEL_FILE
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: this pipecat-ai does not bundle {MODEL_FILE}; {INSTALL}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        raise RuntimeError(
            f"{path} has sha256 {digest}, not the pinned {MODEL_SHA256}: a different Smart Turn model; {INSTALL}"
        )
    return path


def _log_mel(folder: Path) -> Callable[..., np.ndarray]:
    """pipecat's Whisper log-mel features (numpy only), loaded from its file so that pipecat is not imported."""
    spec = importlib.util.spec_from_file_location("omniserve_smart_turn_features", folder / "_whisper_features.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"pipecat-ai has no {folder / '_whisper_features.py'}; {INSTALL}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_whisper_log_mel_features


def last_window(audio: np.ndarray) -> np.ndarray:
    """The last 8 s, left-padded with zeros as smart-turn was trained: the end of the utterance matters."""
    samples = WINDOW_S * RATE
    audio = np.asarray(audio, dtype=np.float32)[-samples:]
    return np.pad(audio, (samples - len(audio), 0))


class EndOfTurnModel:
    """Load once per process (0.2 s, with the sha256 check); a call costs tens of milliseconds of one core."""

    def __init__(self) -> None:
        folder = smart_turn_dir()
        model = checked_model(folder)
        self._log_mel = _log_mel(folder)
        options = ort.SessionOptions()
        # One thread: the segmenter runs beside Silero VAD and the other replicas on a few cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])

    def features(self, audio: np.ndarray) -> np.ndarray:
        """The model's input: Whisper log-mel features (80 x 800) of the last 8 s, waveform normalized."""
        if np.ndim(audio) != 1:
            raise ValueError(f"expected mono audio (one dimension), got shape {np.shape(audio)}")
        return self._log_mel(last_window(audio), do_normalize=True)

    def probability(self, audio: np.ndarray) -> float:
        """Probability that the user has finished their turn (float32, 16 kHz mono).

        Pass the utterance with the silence since it stopped, as pipecat does: the model counts that silence,
        and more of it raises the probability of finished and unfinished sentences alike.
        """
        features = self.features(audio)[np.newaxis]
        return float(self._session.run(None, {"input_features": features})[0].reshape(-1)[0])

    def complete(self, audio: np.ndarray, threshold: float = 0.5) -> bool:
        return self.probability(audio) >= threshold
