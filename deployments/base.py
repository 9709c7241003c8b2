"""What every model deployment shares: the stage contract, timing, and the component registry.

A component is a plain class; the app builder turns it into a Ray Serve deployment, so the same
class runs under `serve.run`, in `_local_testing_mode`, or directly in a test.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from deployments.scheduling import Batcher, PriorityGate
from deployments.sentences import SentenceAggregator
from omniwire.audio import to_pcm16
from omniwire.frames import EmotionFrame, Frame, LLMTextFrame, TextFrame, TranscriptionFrame, TTSAudioFrame

AUDIO_CHUNK_S = 0.5  # reply audio goes out in frames of this length
FIRST_CHUNK_WORDS = 3  # a reply's first words are spoken before its first sentence ends


def render_slot(name: str, value: Any) -> str:
    """A slot as text: for prompts, and for the frames that show it."""
    if name == "emotion":
        return value.get("summary", "") if isinstance(value, dict) else str(value)
    if name == "context" and isinstance(value, list):
        return "\n".join(f"[{c.get('source', '?')}] {c.get('text', '')}" for c in value)
    return str(value)


def _audio_frames(stage: str, outputs: dict[str, Any], piece: int) -> list[Frame]:
    audio = outputs["reply_audio"]
    samples, rate = audio["samples"], audio["sample_rate"]
    step = int(rate * AUDIO_CHUNK_S)
    text = outputs.get("reply_text", "")
    return [
        TTSAudioFrame(audio=to_pcm16(samples[i : i + step]), sample_rate=rate, sentence=piece, text=text)
        for i in range(0, max(len(samples), 1), step)
    ]


# The frames a slot's value becomes, as (stage name, the stage's outputs, piece index) -> frames.
# A streamed slot's pieces go through the same function, one piece at a time.
SLOT_FRAMES: dict[str, Callable[[str, dict[str, Any], int], list[Frame]]] = {
    "transcript": lambda stage, out, _: [TranscriptionFrame(text=out["transcript"], stage=stage)],
    "emotion": lambda stage, out, _: [EmotionFrame(emotion=out["emotion"])],
    "context": lambda stage, out, _: [TextFrame(text=render_slot("context", out["context"]), stage=stage)],
    "image_text": lambda stage, out, _: [TextFrame(text=render_slot("image_text", out["image_text"]), stage=stage)],
    "reply_text": lambda stage, out, _: [LLMTextFrame(text=out["reply_text"], stage=stage)],
    "reply_audio": _audio_frames,
}


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

    def output_frames(self, stage: str, outputs: dict[str, Any], piece: int = 0) -> list[Frame]:
        return [frame for slot in self.frames if slot in outputs for frame in SLOT_FRAMES[slot](stage, outputs, piece)]

    def feeds(self, downstream: Contract) -> bool:
        return (
            self.streams is not None
            and downstream.incremental is not None
            and downstream.incremental.slot == self.streams
        )


# Slots a request brings before any stage runs.
REQUEST_SLOTS = frozenset({"audio", "images", "history"})

KINDS: dict[str, Contract] = {
    # The history lets it hear the question in the light of the last reply (Whisper's prompt).
    "speech_to_text": Contract(
        frozenset({"audio"}), frozenset({"transcript"}), frozenset({"history"}), frames=("transcript",)
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
    ),
}


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class StageOutput:
    """What a stage hands back to the graph: its outputs plus its own measure of model time."""

    outputs: dict[str, Any]
    result_profile: dict[str, Any]
    model_s: float
    ts_model_start: float


class Component:
    """Base of all model deployments.

    Subclasses set `kind`, `Options` (validated once, at config load and at replica start) and
    `Params` (per-stage settings from the cluster config), load their model in `__init__`
    and implement `process`, which runs in a worker thread so the replica's event loop stays
    free for health checks and other requests.
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    # Model calls a replica runs at once, the rest waiting by priority (deployments/scheduling.py). One
    # for a local model, whose intra-op threads already use the cores it has; a cluster's config may
    # change it per model (`concurrency`, handed to `reconfigure`).
    concurrency: ClassVar[int] = 1

    class Options(StrictModel):
        pass

    class Params(StrictModel):
        pass

    def __init__(self, **options: Any) -> None:
        self.options = self.Options.model_validate(options)
        self.gate = PriorityGate(self.concurrency)
        # Calls that wait for the model go in together where the component can batch them (it
        # implements `process_batch`) and its options allow more than one (`max_batch`).
        max_batch = getattr(self.options, "max_batch", 1)
        batches = type(self).process_batch is not Component.process_batch
        self._batcher = Batcher(self._run_batch, max_batch) if batches and max_batch > 1 else None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Serve's user_config: the scheduling settings of the model in the clusters file."""
        if "concurrency" in config:
            self.gate.resize(config["concurrency"])

    @classmethod
    def unavailable_reason(cls, options: dict[str, Any]) -> str | None:
        """Why this component cannot run in this environment (a missing API key, say), or None."""
        return None

    def model_seconds(self, profile: dict[str, Any], elapsed: float) -> float:
        """Model time of one call; remote APIs report their own, the rest of the call is transfer."""
        return elapsed

    def process(self, inputs: dict[str, Any], params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        raise NotImplementedError

    def process_batch(self, calls: list[tuple[dict[str, Any], Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(inputs, params) of several calls at once; a component that gains from batching implements it."""
        raise NotImplementedError

    async def run(self, inputs: dict[str, Any], params: dict[str, Any], priority: int = 0) -> StageOutput:
        """`priority`: lower goes first when calls wait for the model (a reply's first chunk is 0)."""
        parsed = self.Params.model_validate(params)
        if self._batcher is not None:
            return await self._batcher.submit((inputs, parsed, priority))
        async with self.gate.slot(priority) as waited:
            ts_start = time.time()
            t0 = time.perf_counter()
            outputs, profile = await asyncio.to_thread(self.process, inputs, parsed)
        if waited:
            profile = {**profile, "queue_wait_s": round(waited, 3)}
        return StageOutput(outputs, profile, self.model_seconds(profile, time.perf_counter() - t0), ts_start)

    async def _run_batch(self, calls: list[tuple[dict[str, Any], Any, int]]) -> list[StageOutput]:
        async with self.gate.slot(min(priority for _, _, priority in calls)) as waited:
            ts_start = time.time()
            t0 = time.perf_counter()
            results = await asyncio.to_thread(self.process_batch, [(inputs, params) for inputs, params, _ in calls])
        elapsed = time.perf_counter() - t0
        shared = {"batch_size": len(calls)} if len(calls) > 1 else {}
        if waited:
            shared["queue_wait_s"] = round(waited, 3)
        return [
            StageOutput(outputs, {**profile, **shared}, self.model_seconds(profile, elapsed), ts_start)
            for outputs, profile in results
        ]


def auto_device(cuda_available: bool) -> str:
    """CUDA only where this replica was given a GPU share (outside Ray: wherever there is one)."""
    import ray

    if ray.is_initialized():
        return "cuda" if cuda_available and ray.get_gpu_ids() else "cpu"
    return "cuda" if cuda_available else "cpu"


_COMPONENTS: dict[str, type[Component]] = {}


def register(name: str):
    """Class decorator: make a component available to cluster configs under `name`."""

    def wrap(cls: type[Component]) -> type[Component]:
        if cls.kind not in KINDS:
            raise TypeError(f"{cls.__name__}.kind {cls.kind!r} is not one of {sorted(KINDS)}")
        if KINDS[cls.kind].streams and not hasattr(cls, "run_stream"):
            raise TypeError(
                f"{cls.__name__}: kind {cls.kind!r} streams {KINDS[cls.kind].streams!r}, so it needs run_stream"
            )
        existing = _COMPONENTS.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"component name {name!r} is taken by {existing.__qualname__}")
        cls.name = name
        _COMPONENTS[name] = cls
        return cls

    return wrap


_discovered = False


def components() -> dict[str, type[Component]]:
    """All registered components; importing every module of this package registers them."""
    global _discovered
    if not _discovered:
        import deployments

        for module in pkgutil.iter_modules(deployments.__path__):
            importlib.import_module(f"deployments.{module.name}")
        _discovered = True
    return _COMPONENTS
