"""One cluster as a deployment: runs a turn through its stages' model deployments, by handle.

A turn is a stream of frames (omniwire.frames). Stages run in order, a parallel step's stages side
by side. What each stage's outputs become on the wire, and whether it streams into the next one,
is its kind's contract (deployments.kinds.KINDS): a stage that streams a slot into a next stage
that takes that slot in pieces runs side by side with it (graphs.pipeline.streaming), so an LLM's
first sentence is spoken while it still writes. `run_turn_stream` hands the frames out as they
come; `run_turn` is the same turn collected into one answer.

The graph is the only writer of its task records. Writes go through one thread per replica, in
order, without holding up the next stage; a turn ends only once its records are written, so the
track endpoint agrees with every answer. A turn whose caller goes away (a barge-in) stops its
stages where they are and records them as cancelled, keeping what was already spoken.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from graphs.observability.latency import stage_profile
from graphs.observability.metrics import ClusterMetrics
from graphs.observability.otel import TrackTracer
from graphs.pipeline.frames import output_frames
from graphs.pipeline.streaming import piped
from graphs.pipeline.turn import (
    NO_SPEECH,
    Stage,
    Turn,
    TurnOutcome,
    TurnRecords,
    TurnRequest,
    cancelled_by_serve,
    error_text,
    with_failover,
)
from graphs.store import TaskStatus, TraceStore
from omniwire.audio import MODEL_RATE, encode_wav, pcm16_wav
from omniwire.frames import EndFrame, Frame, MetricsFrame, StartFrame, SyncFrame


@serve.deployment(max_ongoing_requests=100, ray_actor_options={"num_cpus": 0.02})
class ClusterGraph:
    def __init__(
        self,
        cluster: str,
        steps: list[list[dict[str, Any]]],
        models: dict[str, Any],
        trace_store_url: str,
        history_turns: int = 0,
        otlp_endpoint: str | None = None,
    ):
        self.cluster = cluster
        positions = iter(range(sum(len(step) for step in steps)))
        self.steps = [[Stage(**s, position=next(positions)) for s in step] for step in steps]
        self.stages = [stage for step in self.steps for stage in step]
        self.models = models
        self.history_turns = history_turns if any("history" in s.reads for s in self.stages) else 0
        self.read_ahead = [stage for stage in self.stages if stage.reads_ahead]
        self.store = TraceStore(trace_store_url)
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trace-writer")
        self.metrics = ClusterMetrics(cluster)
        self.tracer = TrackTracer(otlp_endpoint) if otlp_endpoint else None
        for stage in self.stages:  # what cuts a streamed slot loads now, not on the first turn
            if stage.contract.incremental is not None:
                stage.contract.incremental.prepare()

    async def run_turn(self, request: TurnRequest) -> TurnOutcome:
        turn = Turn(request)
        end = None
        async for frame in self._frames(turn):
            end = frame
        outputs = {
            k: v for k, v in turn.state.items() if k not in ("audio", "voiced", "images", "history", "reply_audio")
        }
        reply_audio = None
        if turn.reply_audio and turn.status == "completed":
            reply_audio = {**turn.reply_audio, "wav": turn.reply_audio["wav"] if request.inline_audio else None}
        return TurnOutcome(
            turn.status,
            request.track_id,
            self.cluster,
            end.turn,
            outputs,
            turn.timings,
            time.perf_counter() - turn.started,
            turn.error,
            reply_audio,
            turn.metrics,
        )

    async def run_turn_stream(self, request: TurnRequest):
        async for frame in self._frames(Turn(request)):
            yield frame

    async def prepare_turn(self, track_id: str) -> None:
        """The person has started speaking on this track: stages whose models can (`reads_ahead`) read the
        next turn's prompt up to the person's words (system prompt, history) while they speak."""
        if not self.read_ahead or not self.history_turns:
            return  # without history the prompt's start is the system prompt, which the model keeps anyway
        history = await asyncio.to_thread(self.store.history, track_id, self.history_turns)
        if history:
            await asyncio.gather(
                *(self.models[s.model].prepare.remote({"history": history}, s.params) for s in self.read_ahead)
            )

    def _runs(self) -> list[tuple[Stage, ...]]:
        """The steps as they run: a single stage, a parallel step, or a stage piped into the next."""
        runs, i = [], 0
        while i < len(self.steps):
            step = self.steps[i]
            following = self.steps[i + 1] if i + 1 < len(self.steps) else None
            if len(step) == 1 and following and len(following) == 1 and step[0].contract.feeds(following[0].contract):
                runs.append(("piped", step[0], following[0]))
                i += 2
            else:
                runs.append(("step", *step))
                i += 1
        return runs

    async def _frames(self, turn: Turn):
        request = turn.request
        if len(request.task_ids) != len(self.stages):
            raise ValueError(f"{len(request.task_ids)} task ids for {len(self.stages)} stages")
        records = TurnRecords(self.store, self.writer, self.metrics, turn)
        live = request.audio_file is None  # live speech is kept as WAV here, the one place it is encoded
        user_audio = {
            "data": encode_wav(request.audio, MODEL_RATE) if live else request.audio_file,
            "media_type": "audio/wav" if live else request.audio_media_type,
            "sample_rate": MODEL_RATE,
            "duration_s": round(len(request.audio) / MODEL_RATE, 3),
        }
        # The first stage starts while the turn's records are written; the writer keeps order.
        begun = records.write(
            self.store.begin_turn,
            request.track_id,
            self.cluster,
            [(s.name, s.params) for s in self.stages],
            request.task_ids,
            user_audio,
        )
        history = asyncio.ensure_future(asyncio.to_thread(self.store.history, request.track_id, self.history_turns))
        turn.state.update(audio=request.audio, voiced=request.voiced, images=request.images)
        yield StartFrame(track_id=request.track_id, cluster=self.cluster)
        self.metrics.turn(+1)
        try:
            for how, *stages in self._runs():
                if turn.status != "completed":
                    break
                if how == "piped":
                    inputs = [await self._inputs(stage, turn, history) for stage in stages]
                    async with contextlib.aclosing(piped(self.models, *stages, *inputs, turn, records)) as frames:
                        async for frame in frames:
                            turn.sent(frame)
                            yield frame
                    continue
                results = await asyncio.gather(*(self._call(stage, turn, records, history) for stage in stages))
                for frames in results:
                    for frame in frames:
                        turn.sent(frame)
                        yield frame
                if len(stages) > 1:
                    yield SyncFrame(stages=[s.name for s in stages])
            if turn.status != "completed":
                records.write(self.store.close_tasks, request.task_ids, f"cancelled: {turn.error}")
            number, _ = await begun
            url = None
            if turn.audio:
                pcm = b"".join(turn.audio)
                wav = pcm16_wav(pcm, turn.audio_rate)
                duration = round(len(pcm) / 2 / turn.audio_rate, 3)
                audio_id = await records.write(
                    self.store.add_audio, request.track_id, number, "reply", wav, "audio/wav", turn.audio_rate, duration
                )
                turn.reply_audio = {"id": audio_id, "sample_rate": turn.audio_rate, "duration_s": duration, "wav": wav}
                url = f"/v1/audio/{audio_id}"
            closing = MetricsFrame(stage=None, metrics={"total_reply_s": time.perf_counter() - turn.started})
            turn.sent(closing)
            turn.metrics = dict(closing.metrics)
            if "time_to_first_audio_s" in turn.metrics:
                self.metrics.first_audio(turn.metrics["time_to_first_audio_s"])
            yield closing
            yield EndFrame(track_id=request.track_id, turn=number, status=turn.status, reply_audio_url=url)
        except (asyncio.CancelledError, GeneratorExit):
            turn.status = "cancelled"
            records.write(
                self.store.close_tasks,
                request.task_ids,
                "cancelled: the caller stopped listening",
                TaskStatus.cancelled,
            )
            raise
        except Exception as exc:
            records.write(self.store.close_tasks, request.task_ids, f"turn aborted: {error_text(exc)}")
            raise
        finally:
            self.metrics.turn(-1)
            await asyncio.gather(*records.writes, history, return_exceptions=turn.status == "cancelled")
            if self.tracer is not None:
                await asyncio.to_thread(self._export, request.track_id, turn.status)

    def _export(self, track_id: str, status: str) -> None:
        track = self.store.track(track_id)
        number = max(t["turn"] for t in track["tasks"])
        self.tracer.export_turn(
            track_id, self.cluster, number, status, [t for t in track["tasks"] if t["turn"] == number]
        )

    async def _inputs(self, stage: Stage, turn: Turn, history: asyncio.Future) -> dict[str, Any]:
        if "history" in stage.reads and "history" not in turn.state:
            turn.state["history"] = await history
        return {k: v for k, v in turn.state.items() if k in stage.reads}

    async def _call(self, stage: Stage, turn: Turn, records: TurnRecords, history: asyncio.Future) -> list[Frame]:
        """One stage, one request; its records, and the frames its outputs make."""
        inputs = await self._inputs(stage, turn, history)
        ts_start = time.time()
        records.started(stage, ts_start)
        t0 = time.perf_counter()
        try:
            model = self.models[stage.model]
            result = await with_failover(lambda: model.run.remote(inputs, stage.params), stage.name)
        except Exception as exc:
            if cancelled_by_serve(exc):
                raise asyncio.CancelledError from None  # recorded as cancelled, with the whole turn
            return [records.failed(stage, error_text(exc), ts_start, time.perf_counter() - t0)]
        elapsed = time.perf_counter() - t0
        profile = stage_profile(ts_start, elapsed, result.model_s, result.ts_model_start)
        profile.update(ttfb_s=elapsed, processing_s=elapsed)
        records.completed(stage, result.result_profile, profile)
        turn.state.update(result.outputs)
        heard = stage.contract.heard
        if heard in result.outputs and not result.outputs[heard].strip():
            turn.status, turn.error = "no_speech", NO_SPEECH
        return [
            *output_frames(stage.contract, stage.name, result.outputs),
            MetricsFrame(stage=stage.name, metrics={"ttfb_s": elapsed, "processing_s": elapsed}),
        ]
