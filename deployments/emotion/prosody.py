"""How an utterance was spoken: pitch, loudness and pace measured with Praat (parselmouth), and a
heuristic arousal score made from them.

There is no audio emotion model available offline, so arousal here is not learned: it is a
hand-set mapping of three cues that rise with arousal in the speech-emotion literature (faster
speech, a livelier pitch, a louder voice), each scaled linearly between the bounds below and
averaged with fixed weights. It tells a calm voice from an animated one; it cannot tell anger
from joy (that is valence, which prosody alone gives poorly), and loudness depends on the
recording level as much as on the speaker.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# cue: (value scored 0, value scored 1, weight). Conversational English runs at about 4 words per
# second of speech, pauses left out; pitch moves 2-3 semitones (SD) in neutral speech and
# more when aroused; Praat reads a sample of 1.0 as 1 Pa, so speech normalised near full scale
# measures about 70 dB.
AROUSAL_CUES: dict[str, tuple[float, float, float]] = {
    "speaking_rate_wps": (2.5, 6.0, 0.4),
    "pitch_sd_semitones": (1.5, 5.0, 0.4),
    "intensity_mean_db": (55.0, 75.0, 0.2),
}
# Frames within this many dB of the loudest count as speech (Praat's silence detection default).
_SILENCE_DB = 25.0
_MIN_SECONDS = 0.1
_PITCH_STEP = 0.01
_WORD = re.compile(r"\w+(?:'\w+)?")


def arousal_level(arousal: float) -> str:
    if arousal < 1 / 3:
        return "low"
    return "high" if arousal >= 2 / 3 else "medium"


def measure(audio: np.ndarray, transcript: str, sample_rate: int) -> dict[str, Any]:
    """Prosody of one utterance. Audio without a voiced frame is not speech: then every measure
    is None and so is `arousal`."""
    import parselmouth

    words = len(_WORD.findall(transcript))
    features: dict[str, Any] = {
        "pitch_mean_hz": None,
        "pitch_sd_hz": None,
        "pitch_sd_semitones": None,
        "intensity_mean_db": None,
        "intensity_sd_db": None,
        "voiced_s": 0.0,
        "speech_s": 0.0,
        "words": words,
        "speaking_rate_wps": None,
        "arousal": None,
        "arousal_level": None,
    }
    samples = np.asarray(audio, dtype=np.float64)
    if len(samples) < _MIN_SECONDS * sample_rate or np.abs(samples).max() < 1e-4:
        return features
    sound = parselmouth.Sound(samples, sampling_frequency=sample_rate)
    f0 = _pitch(sound)
    if not len(f0):
        return features
    features["pitch_mean_hz"] = round(float(f0.mean()), 1)
    features["pitch_sd_hz"] = round(float(f0.std()), 1)
    features["pitch_sd_semitones"] = round(float(np.std(12 * np.log2(f0 / np.median(f0)))), 2)
    features["voiced_s"] = round(len(f0) * _PITCH_STEP, 3)

    intensity = sound.to_intensity()
    db = intensity.values[0]
    speech = db[db > db.max() - _SILENCE_DB]
    features["intensity_mean_db"] = round(float(speech.mean()), 1)
    features["intensity_sd_db"] = round(float(speech.std()), 1)
    features["speech_s"] = round(len(speech) * intensity.time_step, 3)
    if words:
        features["speaking_rate_wps"] = round(words / features["speech_s"], 2)

    arousal = _arousal(features)
    return {**features, "arousal": arousal, "arousal_level": arousal_level(arousal)}


def _pitch(sound) -> np.ndarray:
    """F0 of the voiced frames, in two passes (Hirst's method): a wide first pass finds the
    speaker's range, and a second pass within it avoids octave jumps that inflate the SD."""
    first = sound.to_pitch(time_step=_PITCH_STEP, pitch_floor=60.0, pitch_ceiling=700.0)
    f0 = first.selected_array["frequency"]
    f0 = f0[f0 > 0]
    if len(f0) < 2:
        return f0
    q1, q3 = np.percentile(f0, [25, 75])
    second = sound.to_pitch(time_step=_PITCH_STEP, pitch_floor=max(0.75 * q1, 40.0), pitch_ceiling=1.5 * q3)
    f0 = second.selected_array["frequency"]
    return f0[f0 > 0]


def _arousal(features: dict[str, Any]) -> float:
    total = weights = 0.0
    for cue, (low, high, weight) in AROUSAL_CUES.items():
        value = features[cue]
        if value is None:
            continue
        total += weight * float(np.clip((value - low) / (high - low), 0.0, 1.0))
        weights += weight
    return round(total / weights, 3)
