"""Emotion from the transcript with two lexicons: VADER for valence, NRC for emotion categories."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from deployments.component import StrictModel, register
from deployments.emotion.service import EmotionService

_WORD = re.compile(r"[a-z']+")
_NRC_EMOTIONS = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")


class TextLexicons:
    """Both lexicons, loaded once; the text-only and the multimodal emotion stages share this."""

    def __init__(self) -> None:
        from nrclex import NRCLex
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._vader = SentimentIntensityAnalyzer()
        # word -> affects; NRCLex objects keep per-text state, so only its lexicon is shared.
        self._nrc: dict[str, list[str]] = NRCLex().__lexicon__

    def analyze(self, text: str, neutral_band: float) -> dict[str, Any]:
        """`sentiment` and `valence` (VADER's compound, -1 to 1), VADER's scores, and the share of
        each NRC emotion among the words that carry one (empty when none does)."""
        vader = self._vader.polarity_scores(text)
        affects = Counter(a for w in _WORD.findall(text.lower()) for a in self._nrc.get(w, ()))
        counts = {e: affects[e] for e in _NRC_EMOTIONS}
        total = sum(counts.values())
        emotions = {e: round(c / total, 3) for e, c in counts.items() if c} if total else {}
        return {
            "sentiment": sentiment_of(vader["compound"], neutral_band),
            "valence": vader["compound"],
            "vader": vader,
            "emotions": emotions,
        }


def sentiment_of(valence: float, neutral_band: float) -> str:
    if valence >= neutral_band:
        return "positive"
    return "negative" if valence <= -neutral_band else "neutral"


def dominant_emotion(emotions: dict[str, float]) -> str | None:
    return max(emotions, key=emotions.get) if emotions else None


@register("text_emotion")
class TextEmotion(EmotionService):
    class Params(StrictModel):
        # VADER's own convention: |compound| below this is neutral.
        neutral_band: float = 0.05

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._lexicons = TextLexicons()

    def detect(self, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        scores = self._lexicons.analyze(inputs["transcript"], params.neutral_band)
        sentiment = scores["sentiment"]
        top = dominant_emotion(scores["emotions"])
        summary = f"The user sounds {sentiment}" + (f", mostly {top}." if top else ".")
        return {"label": top or sentiment, **scores, "summary": summary}
