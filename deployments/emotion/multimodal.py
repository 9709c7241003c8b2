"""Emotion from what was said, how it was said and the face shown: lexicons on the transcript,
prosody of the audio, expressions of the faces in the turn's images, fused late.

Late fusion on two axes. Each modality gives what it can measure: the words give valence
(VADER's compound), the voice gives arousal (the prosody heuristic), a face gives both (its
expression probabilities times a rough place of each expression on Russell's circumplex).
Valence is the weighted mean of text and face, arousal that of voice and face; the pair is
named by the table below. A modality that is missing is left out of the means, never guessed:
with only the transcript there is no arousal and the label is the text's sentiment.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
from pydantic import Field

from deployments.component import StrictModel, register
from deployments.emotion.prosody import arousal_level, measure
from deployments.emotion.service import EmotionService
from deployments.emotion.text import TextLexicons, dominant_emotion, sentiment_of
from deployments.stt.service import SAMPLE_RATE
from deployments.vision.faces import EXPRESSIONS, LOOKS, FaceExpressionClassifier

# expression: (valence -1..1, arousal 0..1)
EXPRESSION_AFFECT: dict[str, tuple[float, float]] = {
    "angry": (-0.6, 0.85),
    "disgust": (-0.7, 0.6),
    "fear": (-0.6, 0.85),
    "happy": (0.8, 0.65),
    "sad": (-0.7, 0.25),
    "surprise": (0.2, 0.85),
    "neutral": (0.0, 0.4),
}

# (sentiment of the fused valence, arousal level) -> label
FUSED_LABELS: dict[tuple[str, str], str] = {
    ("positive", "high"): "excited",
    ("positive", "medium"): "happy",
    ("positive", "low"): "content",
    ("neutral", "high"): "animated",
    ("neutral", "medium"): "neutral",
    ("neutral", "low"): "calm",
    ("negative", "high"): "upset",
    ("negative", "medium"): "unhappy",
    ("negative", "low"): "sad",
}


@register("multimodal_emotion")
class MultimodalEmotion(EmotionService):
    class Options(StrictModel):
        # Faces smaller than this (pixels a side, after scaling to 1024 px at most) are ignored.
        min_face_size: int = Field(48, ge=16)

    class Params(StrictModel):
        # |valence| below this is neutral; VADER's own convention for its compound score.
        neutral_band: float = 0.05
        text_weight: float = Field(1.0, gt=0)
        audio_weight: float = Field(1.0, gt=0)
        face_weight: float = Field(1.0, gt=0)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._lexicons = TextLexicons()
        self._faces = FaceExpressionClassifier(min_face_size=self.options.min_face_size)
        # Praat is GPL-licensed and comes with the optional 'voice' extra; without it the voice is skipped.
        self._prosody = importlib.util.find_spec("parselmouth") is not None

    def detect(self, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        transcript = inputs["transcript"]
        text = self._lexicons.analyze(transcript, params.neutral_band)
        modalities: dict[str, dict[str, Any]] = {
            "text": {"label": dominant_emotion(text["emotions"]) or text["sentiment"], **text}
        }
        skipped: dict[str, str] = {}

        audio = inputs.get("audio")
        if audio is None or not len(audio):
            skipped["audio"] = "no audio in this turn"
        elif not self._prosody:
            skipped["audio"] = "voice prosody needs praat-parselmouth: pip install 'omniserve[voice]'"
        else:
            prosody = measure(audio, transcript, SAMPLE_RATE)
            if prosody["arousal"] is None:
                skipped["audio"] = "no voiced speech in the audio"
            else:
                modalities["audio"] = {"label": f"{prosody['arousal_level']} arousal", **prosody}

        images = inputs.get("images") or []
        if not images:
            skipped["face"] = "no images in this turn"
        else:
            face = self._face(images)
            if face is None:
                where = "the image" if len(images) == 1 else f"any of the {len(images)} images"
                skipped["face"] = f"no face found in {where}"
            else:
                modalities["face"] = face

        return {**self._fuse(modalities, params), "modalities": modalities, "skipped": skipped}

    def _face(self, images: list[bytes]) -> dict[str, Any] | None:
        """The largest face of each image is taken as the user's; their scores are averaged.
        Images are numbered from 1, as in the image-to-text stage's "Image 1: ..."."""
        found = [(i, self._faces.detect(image)) for i, image in enumerate(images, start=1)]
        faces = [{"image": i, **face} for i, image_faces in found for face in image_faces]
        largest = [image_faces[0]["scores"] for _, image_faces in found if image_faces]
        if not largest:
            return None
        scores = {e: round(float(np.mean([s[e] for s in largest])), 4) for e in EXPRESSIONS}
        valence = sum(p * EXPRESSION_AFFECT[e][0] for e, p in scores.items())
        arousal = sum(p * EXPRESSION_AFFECT[e][1] for e, p in scores.items())
        return {
            "label": max(scores, key=scores.get),
            "valence": round(valence, 3),
            "arousal": round(arousal, 3),
            "scores": scores,
            "faces": faces,
        }

    @staticmethod
    def _fuse(modalities: dict[str, dict[str, Any]], params: Params) -> dict[str, Any]:
        text, audio, face = (modalities.get(m) for m in ("text", "audio", "face"))
        valences = [(text["valence"], params.text_weight)]
        arousals = []
        if audio:
            arousals.append((audio["arousal"], params.audio_weight))
        if face:
            valences.append((face["valence"], params.face_weight))
            arousals.append((face["arousal"], params.face_weight))
        valence = sum(v * w for v, w in valences) / sum(w for _, w in valences)
        arousal = sum(a * w for a, w in arousals) / sum(w for _, w in arousals) if arousals else None

        sentiment = sentiment_of(valence, params.neutral_band)
        level = arousal_level(arousal) if arousal is not None else None
        label = FUSED_LABELS[sentiment, level] if level else sentiment

        top = dominant_emotion(text["emotions"])
        evidence = [f"words {text['sentiment']}" + (f", mostly {top}" if top else "")]
        if audio:
            evidence.append(f"voice {audio['arousal_level']} energy")
        if face:
            evidence.append(f"face {LOOKS[face['label']]}")
        return {
            "label": label,
            "valence": round(valence, 3),
            "arousal": round(arousal, 3) if arousal is not None else None,
            "arousal_level": level,
            "summary": f"The user seems {label} ({'; '.join(evidence)}).",
        }
