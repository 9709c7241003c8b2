"""What every model deployment shares: the stage contract, timing, and the component registry.

A component is a plain class; the app builder turns it into a Ray Serve deployment, so the same
class runs under `serve.run`, in `_local_testing_mode`, or directly in a test.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class Contract:
    """Which turn slots a kind of stage needs, may use, and fills."""

    consumes: frozenset[str]
    produces: frozenset[str]
    accepts: frozenset[str] = frozenset()


# Slots a request brings before any stage runs.
REQUEST_SLOTS = frozenset({"audio", "images", "history"})

KINDS: dict[str, Contract] = {
    "speech_to_text": Contract(frozenset({"audio"}), frozenset({"transcript"})),
    "emotion": Contract(
        frozenset({"transcript"}), frozenset({"emotion"}), frozenset({"audio", "images"})
    ),
    "retrieval": Contract(frozenset({"transcript"}), frozenset({"context"})),
    "image_to_text": Contract(frozenset({"images"}), frozenset({"image_text"})),
    "llm": Contract(
        frozenset({"transcript"}),
        frozenset({"reply_text"}),
        frozenset({"emotion", "context", "image_text", "images", "history"}),
    ),
    "text_to_speech": Contract(frozenset({"reply_text"}), frozenset({"reply_audio"})),
    # Speech in, speech out, in one stage: an audio-capable chat model, or STT, LLM and TTS composed.
    "voice_to_voice": Contract(
        frozenset({"audio"}),
        frozenset({"transcript", "reply_text", "reply_audio"}),
        frozenset({"image_text", "emotion", "images", "history"}),
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

    class Options(StrictModel):
        pass

    class Params(StrictModel):
        pass

    def __init__(self, **options: Any) -> None:
        self.options = self.Options.model_validate(options)

    @classmethod
    def unavailable_reason(cls, options: dict[str, Any]) -> str | None:
        """Why this component cannot run in this environment (a missing API key, say), or None."""
        return None

    def model_seconds(self, profile: dict[str, Any], elapsed: float) -> float:
        """Model time of one call; remote APIs report their own, the rest of the call is transfer."""
        return elapsed

    def process(self, inputs: dict[str, Any], params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        raise NotImplementedError

    async def run(self, inputs: dict[str, Any], params: dict[str, Any]) -> StageOutput:
        parsed = self.Params.model_validate(params)
        ts_start = time.time()
        t0 = time.perf_counter()
        outputs, profile = await asyncio.to_thread(self.process, inputs, parsed)
        return StageOutput(outputs, profile, self.model_seconds(profile, time.perf_counter() - t0), ts_start)


def auto_device(cuda_available: bool) -> str:
    """CUDA only where this replica was given a GPU share (outside Ray: wherever there is one)."""
    import ray

    if ray.is_initialized():
        return "cuda" if cuda_available and ray.get_gpu_ids() else "cpu"
    return "cuda" if cuda_available else "cpu"


_COMPONENTS: dict[str, type[Component]] = {}

# Components that clusters may name but that this build does not ship: their clusters load,
# are listed, and refuse to be enabled with this reason. Empty while every named one ships.
PLANNED: dict[str, tuple[str, str]] = {}


def register(name: str):
    """Class decorator: make a component available to cluster configs under `name`."""

    def wrap(cls: type[Component]) -> type[Component]:
        if cls.kind not in KINDS:
            raise TypeError(f"{cls.__name__}.kind {cls.kind!r} is not one of {sorted(KINDS)}")
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


def component_kind(name: str) -> str | None:
    if name in components():
        return _COMPONENTS[name].kind
    if name in PLANNED:
        return PLANNED[name][0]
    return None
