"""Emotion detection: what the user seems to feel, as labels, scores and a one-line summary.

The summary is what the LLM prompt receives; the scores go to the task's result_profile.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from deployments.component import Component


class EmotionService(Component):
    kind = "emotion"

    @abstractmethod
    def detect(self, inputs: dict[str, Any], params: Any) -> dict[str, Any]:
        """Return at least `label` and `summary`; any scores alongside."""
        raise NotImplementedError

    def process(self, inputs: dict[str, Any], params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        emotion = self.detect(inputs, params)
        return {"emotion": emotion}, emotion
