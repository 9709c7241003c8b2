"""Speech-to-text: audio of one user turn in, transcript out.

Silence around the speech is trimmed here, once, with Silero VAD (Whisper hallucinates words on
silence), unless the request says its audio is already the voiced part (`voiced`: the live session's
VAD found it); audio with no speech at all is not transcribed."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from deployments.component import Component
from deployments.stt.silero_vad import voiced_part

SAMPLE_RATE = 16_000


class SpeechToTextService(Component):
    kind = "speech_to_text"

    @abstractmethod
    def transcribe(self, audio: np.ndarray, params: Any, context: str | None = None) -> tuple[str, dict[str, Any]]:
        """`context`: text said just before (the last reply, the cluster's vocabulary), for a backend that
        can be primed with it; `context` says what it is for a turn."""
        raise NotImplementedError

    def context(self, inputs: dict[str, Any], params: Any) -> str | None:
        """What a backend that takes a prompt is told was said just before this turn; None: nothing."""
        return None

    def about(self) -> dict[str, Any]:
        """What every record of this ear says of it (model, device)."""
        return {}

    @staticmethod
    def speech(audio: np.ndarray, params: Any, voiced: bool = False) -> np.ndarray | None:
        """The part of `audio` to transcribe: trimmed to its speech where the params ask (`vad_filter`)
        and nobody has yet; None when none of it is speech."""
        if voiced or not getattr(params, "vad_filter", False):
            return audio
        return voiced_part(audio)

    def transcribe_batch(
        self, audios: list[np.ndarray], params: Any, contexts: list[str | None] | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Several utterances with the same settings; a backend that gains from batching overrides it."""
        contexts = contexts or [None] * len(audios)
        return [self.transcribe(audio, params, context) for audio, context in zip(audios, contexts, strict=True)]

    def process(self, inputs: dict[str, Any], params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.process_batch([(inputs, params)])[0]

    def process_batch(self, calls: list[tuple[dict[str, Any], Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        groups: list[tuple[Any, list[int]]] = []  # calls with equal settings go together
        for i, (_, params) in enumerate(calls):
            group = next((indexes for settings, indexes in groups if settings == params), None)
            if group is None:
                groups.append((params, [i]))
            else:
                group.append(i)
        contexts = [self.context(inputs, params) for inputs, params in calls]
        speech = [self.speech(inputs["audio"], params, bool(inputs.get("voiced"))) for inputs, params in calls]
        silent = {**self.about(), "segments": 0, "no_speech_prob": 1.0}
        heard: list[tuple[str, dict[str, Any]]] = [("", silent)] * len(calls)
        for params, indexes in groups:
            spoken = [i for i in indexes if speech[i] is not None]
            if not spoken:
                continue
            done = self.transcribe_batch([speech[i] for i in spoken], params, [contexts[i] for i in spoken])
            for i, result in zip(spoken, done, strict=True):
                heard[i] = result
        results = []
        for (inputs, _), context, (text, profile) in zip(calls, contexts, heard, strict=True):
            profile = {"audio_seconds": round(len(inputs["audio"]) / SAMPLE_RATE, 3), **profile}
            if context:
                profile["context"] = context
            results.append(({"transcript": text}, {"transcript": text, **profile}))
        return results
