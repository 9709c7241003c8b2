"""Speech-to-text: audio of one user turn in, transcript out."""

from __future__ import annotations

from typing import Any

import numpy as np

from deployments.component import Component

SAMPLE_RATE = 16_000


class SpeechToTextService(Component):
    kind = "speech_to_text"

    def transcribe(self, audio: np.ndarray, params: Any, context: str | None = None) -> tuple[str, dict[str, Any]]:
        """`context`: text said just before (the last reply, the cluster's vocabulary), for a backend that
        can be primed with it; `context` says what it is for a turn."""
        raise NotImplementedError

    def context(self, inputs: dict[str, Any], params: Any) -> str | None:
        """What a backend that takes a prompt is told was said just before this turn; None: nothing."""
        return None

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
        heard: list[tuple[str, dict[str, Any]] | None] = [None] * len(calls)
        for params, indexes in groups:
            done = self.transcribe_batch(
                [calls[i][0]["audio"] for i in indexes], params, [contexts[i] for i in indexes]
            )
            for i, result in zip(indexes, done, strict=True):
                heard[i] = result
        results = []
        for (inputs, _), context, (text, profile) in zip(calls, contexts, heard, strict=True):
            profile = {"audio_seconds": round(len(inputs["audio"]) / SAMPLE_RATE, 3), **profile}
            if context:
                profile["context"] = context
            results.append(({"transcript": text}, {"transcript": text, **profile}))
        return results
