"""Emotion from the transcript with two lexicons: VADER for valence, NRC for emotion categories."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from deployments.base import StrictModel, register
from deployments.emotion_service import EmotionService

_WORD = re.compile(r"[a-z']+")
_NRC_EMOTIONS = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")


@register("text_emotion")
class TextEmotion(EmotionService):
    class Params(StrictModel):
        # VADER's own convention: |compound| below this is neutral.
        neutral_band: float = 0.05

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from nrclex import NRCLex
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._vader = SentimentIntensityAnalyzer()
        # word -> affects; NRCLex objects keep per-text state, so only its lexicon is shared.
        self._nrc: dict[str, list[str]] = NRCLex().__lexicon__

    def detect(self, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        text = inputs["transcript"]
        vader = self._vader.polarity_scores(text)
        compound = vader["compound"]
        if compound >= params.neutral_band:
            sentiment = "positive"
        elif compound <= -params.neutral_band:
            sentiment = "negative"
        else:
            sentiment = "neutral"

        affects = Counter(a for w in _WORD.findall(text.lower()) for a in self._nrc.get(w, ()))
        counts = {e: affects[e] for e in _NRC_EMOTIONS}
        total = sum(counts.values())
        emotions = {e: round(c / total, 3) for e, c in counts.items() if c} if total else {}
        top = max(emotions, key=emotions.get) if emotions else None

        label = top or sentiment
        summary = f"The user sounds {sentiment}" + (f", mostly {top}." if top else ".")
        return {
            "label": label,
            "sentiment": sentiment,
            "valence": compound,
            "vader": vader,
            "emotions": emotions,
            "summary": summary,
        }
