"""OpenAI chat models (GPT-4o with or without images, GPT-3.5) as the LLM stage."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from deployments.component import register
from deployments.llm.service import GenerationSettings, LLMParams, LLMService
from deployments.openai_service import OpenAIOptions, OpenAIService


def data_url(image: bytes) -> str:
    from PIL import Image

    kind = (Image.open(io.BytesIO(image)).format or "png").lower()
    return f"data:image/{kind};base64,{base64.b64encode(image).decode('ascii')}"


def _image_count(messages: list[dict[str, Any]]) -> int:
    return sum(len(m["content"]) - 1 for m in messages if isinstance(m["content"], list))


@register("openai_chat")
class OpenAIChat(OpenAIService, LLMService):
    class Options(OpenAIOptions):
        model: str = "gpt-4o"
        max_new_tokens: int = 256

    class Params(LLMParams):
        # Send the turn's images with the question (to a vision model such as gpt-4o); like the
        # original client's video frames, every n-th image, at most max_images of them.
        send_images: bool = False
        image_every: int = Field(1, ge=1)
        max_images: int = Field(4, ge=0)
        image_detail: Literal["auto", "low", "high"] = "low"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._connect()

    def messages(self, inputs: dict[str, Any], params: Params) -> list[dict[str, Any]]:
        chat = super().messages(inputs, params)
        images = (inputs.get("images") or [])[:: params.image_every][: params.max_images]
        if params.send_images and images:
            question = chat[-1]["content"]
            chat[-1] = {
                "role": "user",
                "content": [
                    {"type": "text", "text": question},
                    *(
                        {"type": "image_url", "image_url": {"url": data_url(i), "detail": params.image_detail}}
                        for i in images
                    ),
                ],
            }
        return chat

    def generate(self, messages: list[dict[str, Any]], settings: GenerationSettings) -> tuple[str, dict[str, Any]]:
        max_new = settings.max_new_tokens or self.options.max_new_tokens
        completion, call = self._call(
            self.client.chat.completions,
            model=self.options.model,
            messages=messages,
            max_tokens=max_new,
            temperature=settings.temperature,
        )
        usage = completion.usage
        return completion.choices[0].message.content or "", {
            "model": self.options.model,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "max_new_tokens": max_new,
            "images": _image_count(messages),
            **call,
        }

    def stream(
        self, messages: list[dict[str, Any]], settings: GenerationSettings, stop: threading.Event
    ) -> Iterator[str | dict[str, Any]]:
        chunks, call = self._call(
            self.client.chat.completions,
            model=self.options.model,
            messages=messages,
            max_tokens=settings.max_new_tokens or self.options.max_new_tokens,
            temperature=settings.temperature,
            stream=True,
        )
        try:
            for chunk in chunks:
                if stop.is_set():
                    break
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        finally:
            chunks.close()
        yield {"model": self.options.model, "images": _image_count(messages), **call}
