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


@serve.deployment(max_ongoing_requests=100, ray_actor_options={"num_cpus": 0.1})
class ClusterGraph:
    def __init__(self, cluster: str, stages: list[dict[str, Any]], models: dict[str, Any], trace_store_url: str):
        self.cluster = cluster
        self.stages = [_Stage(**s) for s in stages]
        self.models = models
        self.store = TraceStore(trace_store_url)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trace-writer")

    def _write(self, fn, *args) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def run_turn(self, request: TurnRequest) -> TurnOutcome:
        t_turn = time.perf_counter()
        turn, task_ids = await self._write(
            self.store.begin_turn, request.track_id, self.cluster, [(s.name, s.params) for s in self.stages]
        )
        writes = [
            self._write(self.store.add_audio, request.track_id, turn, "user", request.audio_file,
                        request.audio_media_type, MODEL_RATE, round(len(request.audio) / MODEL_RATE, 3))
        ]
        state: dict[str, Any] = {"audio": request.audio, "images": request.images, "history": []}
        timings: list[dict[str, Any]] = []

        def outcome(status: str, error: str | None = None, reply_audio: dict | None = None) -> TurnOutcome:
            outputs = {k: v for k, v in state.items() if k not in ("audio", "images", "history", "reply_audio")}
            return TurnOutcome(status, request.track_id, self.cluster, turn, outputs, timings,
                               time.perf_counter() - t_turn, error, reply_audio)

        try:
            for stage, task_id in zip(self.stages, task_ids):
                ts_start = time.time()
                writes.append(self._write(self.store.start_task, task_id, ts_start))
                inputs = {k: v for k, v in state.items() if k in stage.reads}
                t0 = time.perf_counter()
                try:
                    result = await self.models[stage.model].run.remote(inputs, stage.params)
                except Exception as exc:
                    error = f"stage {stage.name!r} failed: {_error_text(exc)}"
                    elapsed = time.perf_counter() - t0
                    writes.append(self._write(self.store.fail_task, task_id, error,
                                              {"ts_start": ts_start, "ts_end": ts_start + elapsed}))
                    writes.append(self._write(self.store.close_turn, request.track_id, turn,
                                              f"cancelled: {error}"))
                    return outcome("failed", error)
                profile = stage_profile(ts_start, time.perf_counter() - t0, result.model_s, result.ts_model_start)
                profile.update(result.extra_latency)
                writes.append(self._write(self.store.complete_task, task_id, result.result_profile, profile))
                state.update(result.outputs)
                timings.append({"task_name": stage.name, "model": stage.model, **profile})
                if stage.kind == "speech_to_text" and not state["transcript"].strip():
                    writes.append(self._write(self.store.close_turn, request.track_id, turn,
                                              "cancelled: no speech recognised in the audio"))
                    return outcome("no_speech", "no speech recognised in the audio")

            reply_audio = None
            if "reply_audio" in state:
                samples, rate = state["reply_audio"]["samples"], state["reply_audio"]["sample_rate"]
                wav = encode_wav(samples, rate)
                duration = round(len(samples) / rate, 3)
                audio_id = await self._write(self.store.add_audio, request.track_id, turn, "reply", wav,
                                             "audio/wav", rate, duration)
                reply_audio = {"id": audio_id, "sample_rate": rate, "duration_s": duration,
                               "wav": wav if request.inline_audio else None}
            return outcome("completed", reply_audio=reply_audio)
        except asyncio.CancelledError:
            writes.append(self._write(self.store.close_turn, request.track_id, turn,
                                      "cancelled: the request was cancelled", TaskStatus.cancelled))
            raise
        except Exception as exc:
            writes.append(self._write(self.store.close_turn, request.track_id, turn,
                                      f"turn aborted: {_error_text(exc)}"))
            raise
        finally:
            await asyncio.gather(*writes)
