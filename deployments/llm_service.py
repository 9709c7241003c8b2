"""LLM stage: builds the chat from the cluster's prompt template and what earlier stages found."""

from __future__ import annotations

import asyncio
import string
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from deployments.base import Component, StageOutput, StrictModel, render_slot
from deployments.sentences import trim_to_sentence

DEFAULT_SYSTEM_PROMPT = (
    "You are OmniServe, a friendly voice assistant. Your answer is spoken aloud, so reply in "
    "one or two short, plain sentences."
)
# Placeholders a prompt template may use, each filled from the turn slot of the same name.
TEMPLATE_FIELDS = ("transcript", "emotion", "context", "image_text")


class GenerationSettings(StrictModel):
    max_new_tokens: int | None = None  # None: the model's configured limit
    temperature: float = 0.0


class LLMParams(GenerationSettings):
    prompt_template: str
    system_prompt: str = DEFAULT_SYSTEM_PROMPT


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


class LLMService(Component):
    kind = "llm"
    Params = LLMParams

    @classmethod
    def check_params(cls, params: dict[str, Any], available: set[str]) -> list[tuple[str, str]]:
        template = params.get("prompt_template")
        if not isinstance(template, str):
            return []
        try:
            fields = template_fields(template)
        except ValueError as exc:
            return [("prompt_template", f"is not a valid template: {exc}")]
        errors = []
        for name in sorted(fields):
            if name not in TEMPLATE_FIELDS:
                errors.append(("prompt_template", f"unknown placeholder {{{name}}}; use {TEMPLATE_FIELDS}"))
            elif name not in available:
                errors.append(("prompt_template", f"placeholder {{{name}}} has no earlier stage that fills it"))
        return errors

    def messages(self, inputs: dict[str, Any], params: LLMParams) -> list[dict[str, str]]:
        values = {name: render_slot(name, inputs.get(name, "")) for name in TEMPLATE_FIELDS}
        chat = [{"role": "system", "content": params.system_prompt}]
        chat.extend(inputs.get("history") or [])
        chat.append({"role": "user", "content": params.prompt_template.format(**values)})
        return chat

    def generate(self, messages: list[dict[str, str]], settings: GenerationSettings) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def stream(
        self, messages: list[dict[str, str]], settings: GenerationSettings, stop: threading.Event
    ) -> Iterator[str]:
        """Text pieces as they are generated, then optionally one dict: the call's profile.
        Generation ends early once `stop` is set.

        Backends that cannot stream give the whole reply as one piece.
        """
        text, profile = self.generate(messages, settings)
        yield text
        yield profile

    async def chat(
        self, messages: list[dict[str, str]], max_new_tokens: int | None = None, temperature: float = 0.0
    ) -> dict[str, Any]:
        """A chat completion for callers other than a cluster graph (the OpenAI-compatible API)."""
        settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature)
        t0 = time.perf_counter()
        text, profile = await asyncio.to_thread(self.generate, messages, settings)
        return {"text": text, "model_s": time.perf_counter() - t0, **profile}

    async def chat_stream(
        self, messages: list[dict[str, str]], max_new_tokens: int | None = None, temperature: float = 0.0
    ) -> AsyncIterator[str]:
        """`chat`, piece by piece; a consumer that stops listening stops the generation."""
        settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature)
        async for piece in self._pieces(messages, settings, {}):
            yield piece

    async def run_stream(self, inputs: dict[str, Any], params: dict[str, Any]) -> AsyncIterator[str | StageOutput]:
        """The stage, streamed: reply text pieces as generated, then the StageOutput of the whole."""
        parsed = self.Params.model_validate(params)
        messages = self.messages(inputs, parsed)
        ts_start = time.time()
        t0 = time.perf_counter()
        pieces: list[str] = []
        first_piece = None
        backend: dict[str, Any] = {}
        async for piece in self._pieces(messages, parsed, backend):
            first_piece = first_piece or time.perf_counter()
            pieces.append(piece)
            yield piece
        elapsed = time.perf_counter() - t0
        text = trim_to_sentence("".join(pieces).strip())
        profile = {
            "reply_text": text,
            "prompt": messages[-1]["content"],
            "history_messages": len(inputs.get("history") or []),
            "pieces": len(pieces),
            "ttfb_s": (first_piece or time.perf_counter()) - t0,
            "processing_s": elapsed,
            **backend,
        }
        yield StageOutput({"reply_text": text}, profile, elapsed, ts_start)

    async def _pieces(
        self, messages: list[dict[str, Any]], settings: GenerationSettings, profile: dict[str, Any]
    ) -> AsyncIterator[str]:
        """`stream` without blocking the event loop; its closing profile goes into `profile`."""
        stop = threading.Event()
        pieces = self.stream(messages, settings, stop)
        done = object()
        try:
            while (piece := await asyncio.to_thread(next, pieces, done)) is not done:
                if isinstance(piece, dict):
                    profile.update(piece)
                elif piece:
                    yield piece
        finally:
            stop.set()
            await asyncio.to_thread(pieces.close)

    def process(self, inputs: dict[str, Any], params: LLMParams) -> tuple[dict[str, Any], dict[str, Any]]:
        messages = self.messages(inputs, params)
        text, profile = self.generate(messages, params)
        text = trim_to_sentence(text.strip())
        profile = {
            "reply_text": text,
            "prompt": messages[-1]["content"],
            "history_messages": len(inputs.get("history") or []),
            **profile,
        }
        return {"reply_text": text}, profile
