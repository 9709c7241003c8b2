"""What every model deployment shares: its base class, timing, scheduling and the component registry.

A component is a plain class; the app builder turns it into a Ray Serve deployment, so the same
class runs under `serve.run`, in `_local_testing_mode`, or directly in a test.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import time
from abc import ABC
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from deployments.kinds import KINDS, StageOutput
from deployments.scheduling import Batcher, PriorityGate


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Component(ABC):
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

    @classmethod
    def reads_ahead(cls, params: dict[str, Any], earlier: frozenset[str]) -> bool:
        """Whether this stage can read the next turn's prompt while the person still speaks (`prepare`),
        given its params and the slots earlier stages produce; a component that can says when."""
        return False

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
        if missing := sorted(getattr(cls, "__abstractmethods__", ())):
            raise TypeError(f"{cls.__name__} must implement {', '.join(missing)} (a {cls.kind} backend's own work)")
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

        for module in pkgutil.walk_packages(deployments.__path__, "deployments."):
            importlib.import_module(module.name)
        _discovered = True
    return _COMPONENTS
