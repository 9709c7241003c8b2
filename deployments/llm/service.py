"""LLM stage: builds the chat from the cluster's prompt template and what earlier stages found."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import string
import threading
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from deployments.component import Component, StrictModel
from deployments.kinds import StageOutput, render_slot
from deployments.sentences import segmenter, trim_to_sentence

PIECE_INTERVAL_S = 0.04  # streamed text goes out in pieces at most this often (after the first)
# The voice prompt: short replies for the ear, and honesty about what a model with no tools cannot know or
# do. Without the second half, small models play along with requests for live data or actions (0 of 4
# answered honestly: made-up weather, a share price, an alarm "set"); as text with no prompt they refused.
# It is read once and kept in the model's prompt cache, so its length costs the first turn only.
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Answer in one or two short spoken sentences: plain words, no lists, "
    "markdown, emojis or links. Answer questions of general knowledge, arithmetic, advice and small talk "
    "directly. But you can only talk: you have no internet and no live information (weather, news, prices, "
    "scores, traffic, opening hours), and you cannot send messages, make calls, order, book, control devices "
    "or play music. When asked for one of those, say plainly that you can't, in one short friendly sentence, "
    "and never make up an answer or pretend it is done.\n"
    "Examples:\nQ: What is the capital of Spain? A: Madrid is the capital of Spain.\n"
    "Q: Will it rain this afternoon? A: Sorry, I can't check the weather: I have no live information.\n"
    "Q: Order me a taxi. A: Sorry, I can't order things for you; I can only talk."
)
# What earlier stages found goes into the system message, never into the person's own words.
CONTEXT_FIELDS = ("emotion", "context", "image_text")
# What each finding says when the stage gives no context_template.
DEFAULT_CONTEXT = {
    "emotion": "The person you are talking with seems {emotion}. Let that shape your tone; do not mention it.",
    "context": "Notes that may help (use them only if they answer the question):\n{context}",
    "image_text": "What the person is showing you: {image_text}",
}


def described_image(url: str) -> str:
    """What a task record keeps of an image sent inline: its type, size and hash, never its bytes
    (a few photos in base64 would make each record megabytes)."""
    header, _, payload = url.partition(",")
    if not header.startswith("data:"):
        return url  # a link is small and says where the image was
    kind = header[5:].split(";")[0].removeprefix("image/") or "image"
    try:
        data = base64.b64decode(payload) if header.endswith(";base64") else payload.encode()
    except (binascii.Error, ValueError):
        data = payload.encode()
    return f"<{kind}, {len(data) / 1024:.0f} KB, sha256 {hashlib.sha256(data).hexdigest()[:12]}>"


def recorded_prompt(content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A message's content as its task record keeps it: images as `{"image": "<jpeg, 34 KB, sha256 ...>"}`."""
    if isinstance(content, str):
        return content
    return [
        {"image": described_image((part.get("image_url") or {}).get("url", ""))}
        if part.get("type") == "image_url"
        else part
        for part in content
    ]


async def _until_done(worker: asyncio.Future) -> None:
    """Wait for the generation thread even through repeated cancellation (Serve may cancel a stage
    again while it stops), so the model is free before the stage ends; then re-raise the cancellation."""
    cancelled = False
    while not worker.done():
        try:
            await asyncio.shield(worker)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def reusable_prefix(held: list[int], prompt: list[int]) -> int:
    """How many of a prompt's tokens a kept KV cache of `held` already covers. At least one token is read
    anew, so the first step has logits to choose from."""
    shared = 0
    for old, new in zip(held, prompt, strict=False):
        if old != new:
            break
        shared += 1
    return min(shared, len(prompt) - 1)


class GenerationSettings(StrictModel):
    max_new_tokens: int | None = None  # None: the model's configured limit
    temperature: float = 0.0


class LLMParams(GenerationSettings):
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # The person's message; only {transcript} may appear in it.
    prompt_template: str = "{transcript}"
    # The turn's findings, with {emotion}, {context}, {image_text}; None: a sentence for each of them
    # the turn has (DEFAULT_CONTEXT).
    context_template: str | None = None
    # Where the findings go. in_system_prompt: after the system prompt. before_words: a system message
    # of their own just before the person's words, so that the prompt's beginning (system prompt,
    # history) is the same every turn whatever the emotion or the notes and the LLM's cached prompt
    # keeps it; in the system prompt, a new emotion label or new notes have the whole history read
    # again. Rubric total on the evaluation set, an emotion with each question: Qwen2.5-Coder-0.5B int4
    # 0.84 either way; SmolLM2-135M 0.73 in the system prompt, 0.65 before the words (its on-topic
    # share 0.75 -> 0.57), too small a model to heed a late system message.
    findings: Literal["in_system_prompt", "before_words"] = "in_system_prompt"


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def context_value(name: str, value: Any) -> str:
    """A finding as the system message says it: the emotion as its label, the rest as shown."""
    if name == "emotion" and isinstance(value, dict) and value.get("label"):
        return str(value["label"])
    return render_slot(name, value)


def context_note(context_template: str | None, inputs: dict[str, Any], fields: tuple[str, ...] = CONTEXT_FIELDS) -> str:
    """What earlier stages found (`fields` of `inputs`), as `context_template` says; "" when they found
    nothing (a template's header alone, "Answer from these notes:", only costs tokens)."""
    found = {name: context_value(name, inputs[name]) for name in fields if inputs.get(name)}
    if not found:
        return ""
    if context_template is not None:
        return context_template.format(**{name: found.get(name, "") for name in fields}).strip()
    return "\n".join(DEFAULT_CONTEXT[name].format(**found) for name in found)


def chat_messages(
    system_prompt: str,
    context: str,
    history: list[dict[str, Any]],
    content: str | list[dict[str, Any]],
    findings: str = "in_system_prompt",
) -> list[dict[str, Any]]:
    """The system prompt, the earlier exchanges as chat turns, then the person's words, alone; what this
    turn's stages found (`context`) goes where `findings` says (LLMParams.findings)."""
    if context and findings == "in_system_prompt":
        return [
            {"role": "system", "content": f"{system_prompt}\n\n{context}"},
            *history,
            {"role": "user", "content": content},
        ]
    noted = [{"role": "system", "content": context}] if context else []
    return [{"role": "system", "content": system_prompt}, *history, *noted, {"role": "user", "content": content}]


def template_errors(
    key: str, template: str | None, allowed: tuple[str, ...], available: set[str], elsewhere: str
) -> list[tuple[str, str]]:
    if not isinstance(template, str):
        return []
    try:
        fields = template_fields(template)
    except ValueError as exc:
        return [(key, f"is not a valid template: {exc}")]
    errors = []
    for name in sorted(fields):
        if name not in allowed:
            errors.append((key, f"placeholder {{{name}}} does not belong here; use {allowed}{elsewhere}"))
        elif name not in available:
            errors.append((key, f"placeholder {{{name}}} has no earlier stage that fills it"))
    return errors


class LLMService(Component):
    kind = "llm"
    Params = LLMParams

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        segmenter()  # replies are trimmed to their last sentence: load the segmenter now, not on the first turn

    @classmethod
    def check_params(cls, params: dict[str, Any], available: set[str]) -> list[tuple[str, str]]:
        return template_errors(
            "prompt_template",
            params.get("prompt_template"),
            ("transcript",),
            available,
            " (findings such as {emotion} go in context_template, into the system message)",
        ) + template_errors("context_template", params.get("context_template"), CONTEXT_FIELDS, available, "")

    @classmethod
    def reads_ahead(cls, params: dict[str, Any], earlier: frozenset[str]) -> bool:
        """Its prompt up to the person's words (system prompt, history) is known before the turn unless
        earlier stages' findings go into the system prompt (a read-ahead without them would leave the
        model's cache holding a prompt the turn does not have)."""
        return not (earlier & set(CONTEXT_FIELDS)) or params.get("findings") == "before_words"

    def messages(self, inputs: dict[str, Any], params: LLMParams) -> list[dict[str, str]]:
        return chat_messages(
            params.system_prompt,
            context_note(params.context_template, inputs),
            inputs.get("history") or [],
            params.prompt_template.format(transcript=inputs.get("transcript", "")),
            params.findings,
        )

    @staticmethod
    def recorded(inputs: dict[str, Any], params: LLMParams, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """What a task record keeps of the chat: the system prompt, the turn's findings, the person's words."""
        return {
            "system": params.system_prompt,
            "context": context_note(params.context_template, inputs) or None,
            "prompt": recorded_prompt(messages[-1]["content"]),
            "history_messages": len(inputs.get("history") or []),
        }

    @abstractmethod
    def generate(self, messages: list[dict[str, str]], settings: GenerationSettings) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def prefill(self, messages: list[dict[str, str]]) -> None:
        """Reads the start of a coming prompt ahead of it; a backend that keeps no prompt cache ignores it."""

    async def prepare(self, inputs: dict[str, Any], params: dict[str, Any]) -> None:
        """Called while the person is still speaking: the next turn's prompt up to their words (the system
        message and the history) is read now, so the turn itself reads only their words. A conversation's
        history moves on every few turns (graphs.store.history.history_start), and then has to be
        read again: 0.6-0.9 s before the first word for the three exchanges kept after a drop (Qwen 0.5B
        int4, 2 cores), after the person has stopped."""
        parsed = self.Params.model_validate(params)
        await asyncio.to_thread(self.prefill, self.messages(inputs, parsed)[:-1])

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
        async with self.gate.slot():
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
        # Closed here, not whenever it is collected: a consumer that stops listening stops the model now.
        async with contextlib.aclosing(self._pieces(messages, parsed, backend)) as stream:
            async for piece in stream:
                first_piece = first_piece or time.perf_counter()
                pieces.append(piece)
                yield piece
        elapsed = time.perf_counter() - t0
        text = trim_to_sentence("".join(pieces).strip())
        profile = {
            "reply_text": text,
            **self.recorded(inputs, parsed, messages),
            "pieces": len(pieces),
            "ttfb_s": (first_piece or time.perf_counter()) - t0,
            "processing_s": elapsed,
            **backend,
        }
        yield StageOutput({"reply_text": text}, profile, elapsed, ts_start)

    async def _pieces(
        self, messages: list[dict[str, Any]], settings: GenerationSettings, profile: dict[str, Any]
    ) -> AsyncIterator[str]:
        """`stream` without blocking the event loop; its closing profile goes into `profile`.

        The first piece goes out at once; later ones are joined and go out at most every
        PIECE_INTERVAL_S: each piece costs a hop through every process between the model and the
        client, CPU that the model itself needs on a small machine.
        """
        async with self.gate.slot() as waited:
            if waited:
                profile["queue_wait_s"] = round(waited, 3)
            async with contextlib.aclosing(self._generated(messages, settings, profile)) as pieces:
                async for piece in pieces:
                    yield piece

    async def _generated(
        self, messages: list[dict[str, Any]], settings: GenerationSettings, profile: dict[str, Any]
    ) -> AsyncIterator[str]:
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()

        def pump() -> None:
            pieces = self.stream(messages, settings, stop)
            try:
                for piece in pieces:
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
            except BaseException as exc:  # handed to the consumer, who would otherwise wait forever
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                pieces.close()
                loop.call_soon_threadsafe(queue.put_nowait, done)

        worker = asyncio.ensure_future(asyncio.to_thread(pump))
        sent_at = None
        try:
            while True:
                if sent_at is not None:
                    await asyncio.sleep(max(0.0, sent_at + PIECE_INTERVAL_S - time.perf_counter()))
                items = [await queue.get()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                text = ""
                for item in items:
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, dict):
                        profile.update(item)
                    elif item is not done and item:
                        text += item
                if text:
                    sent_at = time.perf_counter()
                    yield text
                if done in items:
                    return
        finally:
            stop.set()
            await _until_done(worker)

    def process(self, inputs: dict[str, Any], params: LLMParams) -> tuple[dict[str, Any], dict[str, Any]]:
        messages = self.messages(inputs, params)
        text, profile = self.generate(messages, params)
        text = trim_to_sentence(text.strip())
        profile = {
            "reply_text": text,
            **self.recorded(inputs, params, messages),
            **profile,
        }
        return {"reply_text": text}, profile
