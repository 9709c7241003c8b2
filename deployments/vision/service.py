"""Image to text: what the turn's images show, as one text the LLM prompt gets as {image_text}.

For LLMs that cannot see: each image becomes a line the prompt can carry ("Image 1: ..."); a
turn without images gives an empty text.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from deployments.component import Component


class ImageToTextService(Component):
    kind = "image_to_text"

    @abstractmethod
    def describe(self, image: bytes, params: Any) -> tuple[str, dict[str, Any]]:
        """One image (an encoded file) as a short phrase, and what was found in it."""
        raise NotImplementedError

    def process(self, inputs: dict[str, Any], params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        lines, found = [], []
        for number, image in enumerate(inputs["images"], start=1):
            phrase, profile = self.describe(image, params)
            lines.append(f"Image {number}: {phrase}")
            found.append({"image": number, "text": phrase, **profile})
        text = "\n".join(lines)
        return {"image_text": text}, {"image_text": text, "images": found}
