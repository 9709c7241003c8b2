"""Text-to-speech: the reply text in, cleaned for speech, mono float32 audio out."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from deployments.component import Component
from deployments.sentences import ends_sentence
from deployments.tts.speech_text import clean_for_speech

# A reply's first words are spoken before their sentence ends (deployments.component.FIRST_CHUNK_WORDS);
# voices end every text with silence (Piper: ~0.2 s), a pause mid-sentence where the chunks join.
# Keep this much of it.
MID_SENTENCE_TAIL_S = 0.05
QUIET = 0.01  # peak amplitude under which a sample counts as silence


class TextToSpeechService(Component):
    kind = "text_to_speech"

    @abstractmethod
    def speak(self, text: str, params: Any) -> tuple[np.ndarray, int, dict[str, Any]]:
        """The one method a backend implements: the audio, its rate, and what the call was like."""
        raise NotImplementedError

    def synthesize(self, text: str, params: Any) -> tuple[np.ndarray, int]:
        """The audio and its rate alone, for callers that need no profile."""
        return self.speak(text, params)[:2]

    def process(self, inputs: dict[str, Any], params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        text = clean_for_speech(inputs["reply_text"])
        if not text:
            return {}, {"spoken": "", "characters": 0}  # nothing a voice could say
        audio, rate, profile = self.speak(text, params)
        audio = np.asarray(audio, dtype=np.float32)
        if not ends_sentence(text):
            audio = trim_tail(audio, rate, MID_SENTENCE_TAIL_S)
        duration = round(len(audio) / rate, 3)
        return (
            {"reply_audio": {"samples": audio, "sample_rate": rate}},
            {"spoken": text, "sample_rate": rate, "audio_seconds": duration, "characters": len(text), **profile},
        )


def trim_tail(audio: np.ndarray, rate: int, keep_s: float) -> np.ndarray:
    """The audio with its trailing silence cut to `keep_s`."""
    loud = np.flatnonzero(np.abs(audio) > QUIET)
    if not len(loud):
        return audio
    return audio[: min(len(audio), loud[-1] + 1 + int(keep_s * rate))]
