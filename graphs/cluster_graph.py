"""One cluster as a deployment: runs a turn through its stages' model deployments, by handle.

The graph is the only writer of its task records. Writes go through one thread per replica, in
order, without holding up the next stage; a turn returns only once its records are written, so
the track endpoint agrees with every response.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray import serve

from deployments.base import KINDS
from graphs.audio import MODEL_RATE, encode_wav
from graphs.latency import stage_profile
from graphs.trace_store import TaskStatus, TraceStore


@dataclass
class TurnRequest:
    track_id: str
    task_ids: list[str]  # one per stage, chosen by the caller
    audio: np.ndarray  # mono float32 at MODEL_RATE
    audio_file: bytes  # the upload as sent, kept with the track
    audio_media_type: str
    images: list[bytes] = field(default_factory=list)
    inline_audio: bool = False


@dataclass
class TurnOutcome:
    status: str  # completed | no_speech | failed
    track_id: str
    cluster: str
    turn: int
    outputs: dict[str, Any]
    stages: list[dict[str, Any]]
    turn_s: float
    error: str | None = None
    reply_audio: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Stage:
    name: str
    model: str
    kind: str
    params: dict[str, Any]

    @property
    def reads(self) -> frozenset[str]:
        contract = KINDS[self.kind]
        return contract.consumes | contract.accepts


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc  # RayTaskError wraps the replica's exception
    return f"{type(cause).__name__}: {cause}"


@serve.deployment(max_ongoing_requests=100, ray_actor_options={"num_cpus": 0.02})
class ClusterGraph:
    def __init__(self, cluster: str, stages: list[dict[str, Any]], models: dict[str, Any], trace_store_url: str,
                 history_turns: int = 0):
        self.cluster = cluster
        self.stages = [_Stage(**s) for s in stages]
        self.history_turns = history_turns if any("history" in s.reads for s in self.stages) else 0
        self.models = models
        self.store = TraceStore(trace_store_url)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trace-writer")

    def _write(self, fn, *args) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def run_turn(self, request: TurnRequest) -> TurnOutcome:
        t_turn = time.perf_counter()
        task_ids = request.task_ids
        if len(task_ids) != len(self.stages):
            raise ValueError(f"{len(task_ids)} task ids for {len(self.stages)} stages")
        user_audio = {"data": request.audio_file, "media_type": request.audio_media_type,
                      "sample_rate": MODEL_RATE, "duration_s": round(len(request.audio) / MODEL_RATE, 3)}
        # The first stage starts while the turn's records are written; the writer keeps order.
        begun = self._write(self.store.begin_turn, request.track_id, self.cluster,
                            [(s.name, s.params) for s in self.stages], task_ids, user_audio)
        writes = [begun]
        history = asyncio.ensure_future(asyncio.to_thread(self.store.history, request.track_id, self.history_turns))
        state: dict[str, Any] = {"audio": request.audio, "images": request.images}
        timings: list[dict[str, Any]] = []
        try:
            status, error = await self._run_stages(state, task_ids, timings, writes, history)
            if error:
                writes.append(self._write(self.store.close_tasks, task_ids, f"cancelled: {error}"))
            turn, _ = await begun
            reply_audio = None
            if status == "completed" and "reply_audio" in state:
                reply_audio = await self._keep_reply_audio(request, turn, state["reply_audio"])
        except asyncio.CancelledError:
            writes.append(self._write(self.store.close_tasks, task_ids, "cancelled: the request was cancelled",
                                      TaskStatus.cancelled))
            raise
        except Exception as exc:
            writes.append(self._write(self.store.close_tasks, task_ids, f"turn aborted: {_error_text(exc)}"))
            raise
        finally:
            await asyncio.gather(*writes, history)
        outputs = {k: v for k, v in state.items() if k not in ("audio", "images", "history", "reply_audio")}
        return TurnOutcome(status, request.track_id, self.cluster, turn, outputs, timings,
                           time.perf_counter() - t_turn, error, reply_audio)

    async def _run_stages(self, state, task_ids, timings, writes, history) -> tuple[str, str | None]:
        """Each stage in order, by handle; returns (status, error)."""
        for stage, task_id in zip(self.stages, task_ids):
            if "history" in stage.reads and "history" not in state:
                state["history"] = await history
            ts_start = time.time()
            writes.append(self._write(self.store.start_task, task_id, ts_start))
            inputs = {k: v for k, v in state.items() if k in stage.reads}
            t0 = time.perf_counter()
            try:
                result = await self.models[stage.model].run.remote(inputs, stage.params)
            except Exception as exc:
                error = f"stage {stage.name!r} failed: {_error_text(exc)}"
                ended = {"ts_start": ts_start, "ts_end": ts_start + time.perf_counter() - t0}
                writes.append(self._write(self.store.fail_task, task_id, error, ended))
                return "failed", error
            profile = stage_profile(ts_start, time.perf_counter() - t0, result.model_s, result.ts_model_start)
            writes.append(self._write(self.store.complete_task, task_id, result.result_profile, profile))
            state.update(result.outputs)
            timings.append({"task_name": stage.name, "model": stage.model, **profile})
            if "transcript" in result.outputs and not result.outputs["transcript"].strip():
                return "no_speech", "no speech recognised in the audio"
        return "completed", None

    async def _keep_reply_audio(self, request: TurnRequest, turn: int, audio: dict[str, Any]) -> dict[str, Any]:
        samples, rate = audio["samples"], audio["sample_rate"]
        wav = encode_wav(samples, rate)
        duration = round(len(samples) / rate, 3)
        audio_id = await self._write(self.store.add_audio, request.track_id, turn, "reply", wav,
                                     "audio/wav", rate, duration)
        return {"id": audio_id, "sample_rate": rate, "duration_s": duration,
                "wav": wav if request.inline_audio else None}
