"""The kinds of stage and their contracts: which turn slots each kind needs, may use and fills, which
become frames, and how it streams. The graph plans a cluster from these alone, knowing no stage by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from deployments.sentences import SentenceAggregator, segmenter

FIRST_CHUNK_WORDS = 3  # a reply's first words are spoken before its first sentence ends


def render_slot(name: str, value: Any) -> str:
    """A slot as text: for prompts, and for the frames that show it."""
    if name == "emotion":
        return value.get("summary", "") if isinstance(value, dict) else str(value)
    if name == "context" and isinstance(value, list):
        return "\n".join(f"[{c.get('source', '?')}] {c.get('text', '')}" for c in value)
    return str(value)


@dataclass
class StageOutput:
    """What a stage hands back to the graph: its outputs plus its own measure of model time."""

    outputs: dict[str, Any]
    result_profile: dict[str, Any]
    model_s: float
    ts_model_start: float


class Chunker(Protocol):
    def push(self, piece: str) -> list[str]: ...

    def flush(self) -> str | None: ...


@dataclass(frozen=True)
class Incremental:
    """A slot a kind can take piece by piece, one call per piece, as its upstream produces it."""

    slot: str
    chunker: Callable[[], Chunker]  # cuts the upstream's pieces where a call can start
    pieces_key: str  # the record's count of calls
    text_key: str  # the record's text of the pieces handled (what was spoken, for the history)
    summed: tuple[str, ...] = ()  # profile values that add up over the calls; the rest are the same each time
    prepare: Callable[[], object] = lambda: None  # the chunker's one-off load, for a graph to do as it starts


@dataclass(frozen=True)
class Contract:
    """Which turn slots a kind of stage needs, may use, and fills; which of them become frames,
    in order; and how the kind streams: `streams` is a slot it hands out in pieces while it runs
    (`run_stream`), `incremental` a slot it can take in pieces. A kind that streams a slot into
    the next stage's incremental slot runs side by side with it (an LLM's sentences spoken as they
    are written), whatever the kinds are."""

    consumes: frozenset[str]
    produces: frozenset[str]
    accepts: frozenset[str] = frozenset()
    frames: tuple[str, ...] = ()
    streams: str | None = None
    incremental: Incremental | None = None
    # The slot that holds what the person said: when a stage fills it empty, the turn heard no speech.
    heard: str | None = None

    def feeds(self, downstream: Contract) -> bool:
        return (
            self.streams is not None
            and downstream.incremental is not None
            and downstream.incremental.slot == self.streams
        )


# Slots a request brings before any stage runs. `voiced`: its audio is already the voiced part (the
# live session's VAD found it), so speech-to-text need not look for the speech again.
REQUEST_SLOTS = frozenset({"audio", "voiced", "images", "history"})

KINDS: dict[str, Contract] = {
    # The history lets it hear the question in the light of the last reply (Whisper's prompt).
    "speech_to_text": Contract(
        frozenset({"audio"}),
        frozenset({"transcript"}),
        frozenset({"history"}),
        frames=("transcript",),
        heard="transcript",
    ),
    "emotion": Contract(
        frozenset({"transcript"}), frozenset({"emotion"}), frozenset({"audio", "images"}), frames=("emotion",)
    ),
    "retrieval": Contract(frozenset({"transcript"}), frozenset({"context"}), frames=("context",)),
    "image_to_text": Contract(frozenset({"images"}), frozenset({"image_text"}), frames=("image_text",)),
    "llm": Contract(
        frozenset({"transcript"}),
        frozenset({"reply_text"}),
        frozenset({"emotion", "context", "image_text", "images", "history"}),
        frames=("reply_text",),
        streams="reply_text",
    ),
    "text_to_speech": Contract(
        frozenset({"reply_text"}),
        frozenset({"reply_audio"}),
        frames=("reply_audio",),
        incremental=Incremental(
            "reply_text",
            partial(SentenceAggregator, first_words=FIRST_CHUNK_WORDS),
            prepare=segmenter,
            pieces_key="sentences",
            text_key="spoken_text",
            summed=("api_processing_s", "characters", "retries", "audio_seconds"),
        ),
    ),
    # Speech in, speech out, in one stage: an audio-capable chat model, or STT, LLM and TTS composed.
    "voice_to_voice": Contract(
        frozenset({"audio"}),
        frozenset({"transcript", "reply_text", "reply_audio"}),
        frozenset({"image_text", "emotion", "images", "history"}),
        frames=("transcript", "reply_text", "reply_audio"),
        heard="transcript",
    ),
}
