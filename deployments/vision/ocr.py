"""Image to text without a vision LLM: the words in the image (RapidOCR, PP-OCR ONNX models bundled
in the `rapidocr` package), the faces and their expressions, and optionally a caption from a
local transformers image-to-text model.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from deployments.component import StrictModel, register
from deployments.vision.faces import LOOKS, FaceExpressionClassifier, load_rgb
from deployments.vision.service import ImageToTextService


@register("ocr_image_to_text")
class OCRImageToText(ImageToTextService):
    class Options(StrictModel):
        # A local directory holding a transformers image-text-to-text model (BLIP, GIT, SmolVLM,
        # ...); None: no caption, only text and faces.
        caption_model: str | None = None
        # A prefix for plain captioners (BLIP), the instruction for chat models (SmolVLM).
        caption_prompt: str = "a picture of"
        caption_tokens: int = Field(30, ge=1)
        min_face_size: int = Field(48, ge=16)

    class Params(StrictModel):
        # Recognised lines scoring below this are dropped.
        min_text_score: float = Field(0.5, ge=0, le=1)
        # Long text (a page, a screenshot) is cut: the LLM prompt has to stay short.
        max_text_chars: int = Field(300, ge=1)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from rapidocr import RapidOCR

        # Scores are filtered per stage here, so RapidOCR keeps every line it recognises.
        self._ocr = RapidOCR(params={"Global.text_score": 0.0, "Global.log_level": "error"})
        # RapidOCR's detector keeps per-call state; its ONNX sessions use every core anyway.
        self._ocr_lock = threading.Lock()
        # RapidOCR creates its ONNX sessions on first use; one call on a printed word does it now.
        self._read(_printed_word())
        self._faces = FaceExpressionClassifier(min_face_size=self.options.min_face_size)
        self._captioner = None
        if self.options.caption_model:
            from transformers import pipeline

            if not Path(self.options.caption_model).is_dir():
                raise ValueError(f"caption_model {self.options.caption_model!r} is not a local model directory")
            self._captioner = pipeline("image-text-to-text", model=self.options.caption_model)

    def describe(self, image: bytes, params: Params) -> tuple[str, dict[str, Any]]:
        rgb = load_rgb(image)
        lines = [(text, score) for text, score in self._read(rgb) if score >= params.min_text_score]
        faces = self._faces.detect(rgb)
        caption = self._caption(rgb) if self._captioner else None

        parts = [caption] if caption else []
        text = " / ".join(t for t, _ in lines)
        if len(text) > params.max_text_chars:
            text = text[: params.max_text_chars].rstrip() + "…"
        if text:
            parts.append(f"the text reads '{text}'")
        if faces:
            parts.append(_faces_phrase(faces))
        phrase = "; ".join(parts) if parts else "no text or faces recognised"
        return phrase + ".", {
            "caption": caption,
            "lines": [{"text": t, "score": s} for t, s in lines],
            "faces": faces,
        }

    def _read(self, rgb: np.ndarray) -> list[tuple[str, float]]:
        """Recognised lines in reading order, each with its recognition score."""
        with self._ocr_lock:
            result = self._ocr(np.ascontiguousarray(rgb[:, :, ::-1]))  # RapidOCR's arrays are BGR
        if not result.txts:
            return []
        return [(text.strip(), round(float(score), 3)) for text, score in zip(result.txts, result.scores)]

    def _caption(self, rgb: np.ndarray) -> str:
        from PIL import Image

        image, prompt = Image.fromarray(rgb), self.options.caption_prompt
        generate = {"max_new_tokens": self.options.caption_tokens, "return_full_text": False}
        if getattr(self._captioner.processor, "chat_template", None):
            chat = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]
            result = self._captioner(text=chat, **generate)
        else:
            result = self._captioner(images=image, text=prompt, **generate)
        return result[0]["generated_text"].strip()


def _faces_phrase(faces: list[dict[str, Any]]) -> str:
    looks = [LOOKS[f["label"]] for f in faces]
    if len(looks) == 1:
        return f"one face, looks {looks[0]}"
    return f"{len(looks)} faces: " + ", ".join(f"{n} {look}" for look, n in Counter(looks).most_common())


def _printed_word() -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (160, 64), "white")
    ImageDraw.Draw(image).text((8, 8), "Ready", fill="black", font=ImageFont.load_default(size=40))
    return np.asarray(image)
