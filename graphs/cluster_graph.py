"""One cluster as a deployment: runs a turn through its stages' model deployments, by handle.

A turn is a stream of frames (graphs/frames.py). Stages run in order, a parallel step's stages
side by side; an LLM stage followed by a TTS stage is streamed: the reply is cut into sentences
as it is generated and each sentence is spoken as soon as it is complete, so the first audio
leaves while the LLM is still writing. `run_turn_stream` hands the frames out as they come;
`run_turn` is the same turn collected into one answer.

The graph is the only writer of its task records. Writes go through one thread per replica, in
order, without holding up the next stage; a turn ends only once its records are written, so the
track endpoint agrees with every answer. A turn whose caller goes away (a barge-in) stops its
LLM and TTS where they are and records them as cancelled, keeping what was already spoken.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray import serve

from deployments.base import KINDS, StageOutput
from deployments.llm_service import render_slot
from graphs.audio import MODEL_RATE, encode_wav, from_pcm16, to_pcm16
from graphs.frames import (
    EmotionFrame, EndFrame, ErrorFrame, Frame, LLMTextFrame, MetricsFrame, StartFrame, SyncFrame, TextFrame,
    TranscriptionFrame, TTSAudioFrame,
)
from graphs.latency import model_time, stage_profile, transfer_time
from graphs.otel import TrackTracer
from graphs.sentences import SentenceAggregator
from graphs.trace_store import TaskStatus, TraceStore

AUDIO_CHUNK_S = 0.5
# Profile values of per-sentence TTS calls that add up over a reply (the others are the same each time).
_SUMMED = ("api_processing_s", "characters", "retries")
NO_SPEECH = "no speech recognised in the audio"


@dataclass
class TurnRequest:
    track_id: str
    task_ids: list[str]  # one per stage, chosen by the caller
    audio: np.ndarray  # mono float32 at MODEL_RATE
    audio_file: bytes  # the upload as sent, kept with the track
    audio_media_type: str
    images: list[bytes] = field(default_factory=list)
    inline_audio: bool = False
    # When the user stopped speaking (epoch seconds): time to first audio counts from here.
    speech_ended_at: float | None = None


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
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Stage:
    name: str
    model: str
    kind: str
    params: dict[str, Any]
    position: int

    @property
    def reads(self) -> frozenset[str]:
        contract = KINDS[self.kind]
        return contract.consumes | contract.accepts


class _Failure:
    def __init__(self, stage: _Stage, error: str):
        self.stage, self.error = stage, error


_DONE = object()


@dataclass
class _Turn:
    """What one turn has produced so far."""

    request: TurnRequest
    started: float = field(default_factory=time.perf_counter)
    state: dict[str, Any] = field(default_factory=dict)
    timings: list[dict[str, Any]] = field(default_factory=list)
    status: str = "completed"
    error: str | None = None
    spoken: list[str] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    audio_rate: int | None = None
    first_audio_at: float | None = None
    reply_audio: dict[str, Any] | None = None  # the stored reply: id, sample_rate, duration_s, wav
    metrics: dict[str, float] = field(default_factory=dict)

    def sent(self, frame: Frame) -> None:
        """Bookkeeping for a frame that reaches the caller: what of the reply was really spoken."""
        if not isinstance(frame, TTSAudioFrame):
            return
        if self.first_audio_at is None:
            self.first_audio_at = time.time()
            since = self.request.speech_ended_at or (time.time() - (time.perf_counter() - self.started))
            self.metrics["time_to_first_audio_s"] = self.first_audio_at - since
        if frame.sentence >= len(self.spoken):
            self.spoken.append(frame.text)
        self.audio.append(from_pcm16(frame.audio))
        self.audio_rate = frame.sample_rate


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc  # RayTaskError wraps the replica's exception
    return f"{type(cause).__name__}: {cause}"


def _audio_frames(audio: dict[str, Any], sentence: int, text: str) -> list[TTSAudioFrame]:
    samples, rate = audio["samples"], audio["sample_rate"]
    step = int(rate * AUDIO_CHUNK_S)
    return [TTSAudioFrame(audio=to_pcm16(samples[i:i + step]), sample_rate=rate, sentence=sentence, text=text)
            for i in range(0, max(len(samples), 1), step)]


def _output_frames(stage: _Stage, outputs: dict[str, Any]) -> list[Frame]:
    frames: list[Frame] = []
    if "transcript" in outputs:
        frames.append(TranscriptionFrame(text=outputs["transcript"], stage=stage.name))
    if "emotion" in outputs:
        frames.append(EmotionFrame(emotion=outputs["emotion"]))
    for slot in ("context", "image_text"):
        if slot in outputs:
            frames.append(TextFrame(text=render_slot(slot, outputs[slot]), stage=stage.name))
    if "reply_text" in outputs:
        frames.append(LLMTextFrame(text=outputs["reply_text"], stage=stage.name))
    if "reply_audio" in outputs:
        frames.extend(_audio_frames(outputs["reply_audio"], 0, outputs.get("reply_text", "")))
    return frames


_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32]


class _Metrics:
    """Ray Serve metrics, exported with Ray's own on its metrics port (names get a `ray_` prefix)."""

    def __init__(self, cluster: str) -> None:
        from ray.serve import metrics

        self.cluster = cluster
        self.stage_seconds = metrics.Histogram(
            "omniserve_stage_seconds", description="Time of a stage, by part: model, transfer or total",
            boundaries=_SECONDS, tag_keys=("cluster", "stage", "part"))
        self.first_audio_seconds = metrics.Histogram(
            "omniserve_time_to_first_audio_seconds", description="End of the user's speech to the first reply audio",
            boundaries=_SECONDS, tag_keys=("cluster",))
        self.failures = metrics.Counter(
            "omniserve_task_failures", description="Stages that failed", tag_keys=("cluster", "stage"))
        self.active = metrics.Gauge(
            "omniserve_active_tracks", description="Tracks with a turn in progress in this replica",
            tag_keys=("cluster",))
        self._active = 0

    def stage(self, name: str, profile: dict[str, float]) -> None:
        tags = {"cluster": self.cluster, "stage": name}
        self.stage_seconds.observe(model_time(profile), tags={**tags, "part": "model"})
        self.stage_seconds.observe(transfer_time(profile), tags={**tags, "part": "transfer"})
        self.stage_seconds.observe(profile["ts_end"] - profile["ts_start"], tags={**tags, "part": "total"})

    def failed(self, stage: str) -> None:
        self.failures.inc(tags={"cluster": self.cluster, "stage": stage})

    def turn(self, delta: int) -> None:
        self._active += delta
        self.active.set(self._active, tags={"cluster": self.cluster})

    def first_audio(self, seconds: float) -> None:
        self.first_audio_seconds.observe(seconds, tags={"cluster": self.cluster})


@serve.deployment(max_ongoing_requests=100, ray_actor_options={"num_cpus": 0.02})
class ClusterGraph:
    def __init__(self, cluster: str, steps: list[list[dict[str, Any]]], models: dict[str, Any], trace_store_url: str,
                 history_turns: int = 0, otlp_endpoint: str | None = None):
        self.cluster = cluster
        positions = iter(range(sum(len(step) for step in steps)))
        self.steps = [[_Stage(**s, position=next(positions)) for s in step] for step in steps]
        self.stages = [stage for step in self.steps for stage in step]
        self.models = models
        self.history_turns = history_turns if any("history" in s.reads for s in self.stages) else 0
        self.store = TraceStore(trace_store_url)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trace-writer")
        self.metrics = _Metrics(cluster)
        self.tracer = TrackTracer(otlp_endpoint) if otlp_endpoint else None

    def _write(self, fn, *args) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def run_turn(self, request: TurnRequest) -> TurnOutcome:
        turn = _Turn(request)
        end = None
        async for frame in self._frames(turn):
            end = frame
        outputs = {k: v for k, v in turn.state.items() if k not in ("audio", "images", "history", "reply_audio")}
        reply_audio = None
        if turn.reply_audio and turn.status == "completed":
            reply_audio = {**turn.reply_audio, "wav": turn.reply_audio["wav"] if request.inline_audio else None}
        return TurnOutcome(turn.status, request.track_id, self.cluster, end.turn, outputs, turn.timings,
                           time.perf_counter() - turn.started, turn.error, reply_audio, turn.metrics)

    async def run_turn_stream(self, request: TurnRequest):
        async for frame in self._frames(_Turn(request)):
            yield frame

    async def _frames(self, turn: _Turn):
        request = turn.request
        if len(request.task_ids) != len(self.stages):
            raise ValueError(f"{len(request.task_ids)} task ids for {len(self.stages)} stages")
        user_audio = {"data": request.audio_file, "media_type": request.audio_media_type,
                      "sample_rate": MODEL_RATE, "duration_s": round(len(request.audio) / MODEL_RATE, 3)}
        # The first stage starts while the turn's records are written; the writer keeps order.
        begun = self._write(self.store.begin_turn, request.track_id, self.cluster,
                            [(s.name, s.params) for s in self.stages], request.task_ids, user_audio)
        writes = [begun]
        history = asyncio.ensure_future(asyncio.to_thread(self.store.history, request.track_id, self.history_turns))
        turn.state.update(audio=request.audio, images=request.images)
        yield StartFrame(track_id=request.track_id, cluster=self.cluster)
        self.metrics.turn(+1)
        try:
            i = 0
            while i < len(self.steps) and turn.status == "completed":
                step = self.steps[i]
                paired = (len(step) == 1 and step[0].kind == "llm" and i + 1 < len(self.steps)
                          and len(self.steps[i + 1]) == 1 and self.steps[i + 1][0].kind == "text_to_speech")
                if paired:
                    async with contextlib.aclosing(self._speak(step[0], self.steps[i + 1][0], turn, writes,
                                                               history)) as frames:
                        async for frame in frames:
                            turn.sent(frame)
                            yield frame
                    i += 2
                    continue
                results = await asyncio.gather(*(self._call(stage, turn, writes, history) for stage in step))
                for frames in results:
                    for frame in frames:
                        turn.sent(frame)
                        yield frame
                if len(step) > 1:
                    yield SyncFrame(stages=[s.name for s in step])
                i += 1
            if turn.status != "completed":
                writes.append(self._write(self.store.close_tasks, request.task_ids, f"cancelled: {turn.error}"))
            number, _ = await begun
            url = None
            if turn.audio:
                wav = encode_wav(np.concatenate(turn.audio), turn.audio_rate)
                duration = round(sum(map(len, turn.audio)) / turn.audio_rate, 3)
                audio_id = await self._write(self.store.add_audio, request.track_id, number, "reply", wav,
                                             "audio/wav", turn.audio_rate, duration)
                turn.reply_audio = {"id": audio_id, "sample_rate": turn.audio_rate, "duration_s": duration, "wav": wav}
                url = f"/v1/audio/{audio_id}"
            turn.metrics["total_reply_s"] = time.perf_counter() - turn.started
            if "time_to_first_audio_s" in turn.metrics:
                self.metrics.first_audio(turn.metrics["time_to_first_audio_s"])
            yield MetricsFrame(stage=None, metrics=dict(turn.metrics))
            yield EndFrame(track_id=request.track_id, turn=number, status=turn.status, reply_audio_url=url)
        except (asyncio.CancelledError, GeneratorExit):
            turn.status = "cancelled"
            writes.append(self._write(self.store.close_tasks, request.task_ids,
                                      "cancelled: the caller stopped listening", TaskStatus.cancelled))
            raise
        except Exception as exc:
            writes.append(self._write(self.store.close_tasks, request.task_ids, f"turn aborted: {_error_text(exc)}"))
            raise
        finally:
            self.metrics.turn(-1)
            await asyncio.gather(*writes, history, return_exceptions=turn.status == "cancelled")
            if self.tracer is not None:
                await asyncio.to_thread(self._export, request.track_id, turn.status)

    def _export(self, track_id: str, status: str) -> None:
        track = self.store.track(track_id)
        number = max(t["turn"] for t in track["tasks"])
        self.tracer.export_turn(track_id, self.cluster, number, status,
                                [t for t in track["tasks"] if t["turn"] == number])

    async def _inputs(self, stage: _Stage, turn: _Turn, history: asyncio.Future) -> dict[str, Any]:
        if "history" in stage.reads and "history" not in turn.state:
            turn.state["history"] = await history
        return {k: v for k, v in turn.state.items() if k in stage.reads}

    async def _call(self, stage: _Stage, turn: _Turn, writes: list, history: asyncio.Future) -> list[Frame]:
        """One stage, one request; its records, and the frames its outputs make."""
        task_id = turn.request.task_ids[stage.position]
        inputs = await self._inputs(stage, turn, history)
        ts_start = time.time()
        writes.append(self._write(self.store.start_task, task_id, ts_start))
        t0 = time.perf_counter()
        try:
            result = await self.models[stage.model].run.remote(inputs, stage.params)
        except Exception as exc:
            return [self._failed(stage, turn, writes, _error_text(exc), ts_start, time.perf_counter() - t0)]
        elapsed = time.perf_counter() - t0
        profile = stage_profile(ts_start, elapsed, result.model_s, result.ts_model_start)
        profile.update(ttfb_s=elapsed, processing_s=elapsed)
        writes.append(self._write(self.store.complete_task, task_id, result.result_profile, profile))
        self.metrics.stage(stage.name, profile)
        turn.state.update(result.outputs)
        turn.timings.append({"task_name": stage.name, "model": stage.model, **profile})
        if "transcript" in result.outputs and not result.outputs["transcript"].strip():
            turn.status, turn.error = "no_speech", NO_SPEECH
        return [*_output_frames(stage, result.outputs),
                MetricsFrame(stage=stage.name, metrics={"ttfb_s": elapsed, "processing_s": elapsed})]

    def _failed(self, stage: _Stage, turn: _Turn, writes: list, error: str, ts_start: float,
                elapsed: float) -> ErrorFrame:
        error = f"stage {stage.name!r} failed: {error}"
        self.metrics.failed(stage.name)
        writes.append(self._write(self.store.fail_task, turn.request.task_ids[stage.position], error,
                                  {"ts_start": ts_start, "ts_end": ts_start + elapsed}))
        if turn.status == "completed":
            turn.status, turn.error = "failed", error
        return ErrorFrame(error=error, stage=stage.name, status=502)

    async def _speak(self, llm: _Stage, tts: _Stage, turn: _Turn, writes: list, history: asyncio.Future):
        """The LLM's reply, streamed into sentences, each spoken as soon as it is complete."""
        out: asyncio.Queue = asyncio.Queue()
        sentences: asyncio.Queue = asyncio.Queue()
        inputs = await self._inputs(llm, turn, history)
        llm_task, tts_task = (turn.request.task_ids[s.position] for s in (llm, tts))
        progress = {"llm_text": [], "llm_done": False, "tts_started": None}

        async def generate() -> None:
            ts_start = time.time()
            writes.append(self._write(self.store.start_task, llm_task, ts_start))
            t0 = time.perf_counter()
            first = None
            final: StageOutput | None = None
            aggregator = SentenceAggregator()
            pieces = self.models[llm.model].options(stream=True).run_stream.remote(inputs, llm.params)
            try:
                async for item in pieces:
                    if isinstance(item, StageOutput):
                        final = item
                        continue
                    first = first or time.perf_counter()
                    progress["llm_text"].append(item)
                    out.put_nowait(LLMTextFrame(text=item, stage=llm.name))
                    for sentence in aggregator.push(item):
                        sentences.put_nowait(sentence)
            except Exception as exc:
                out.put_nowait(_Failure(llm, _error_text(exc)))
                return
            finally:
                pieces.cancel()
                if (rest := aggregator.flush()) and final is not None:
                    sentences.put_nowait(rest)
                sentences.put_nowait(None)
            elapsed = time.perf_counter() - t0
            profile = stage_profile(ts_start, elapsed, final.model_s, final.ts_model_start)
            profile.update(ttfb_s=(first or time.perf_counter()) - t0, processing_s=elapsed)
            progress["llm_done"] = True
            writes.append(self._write(self.store.complete_task, llm_task, final.result_profile, profile))
            self.metrics.stage(llm.name, profile)
            turn.state.update(final.outputs)
            turn.timings.append({"task_name": llm.name, "model": llm.model, **profile})
            out.put_nowait(MetricsFrame(stage=llm.name, metrics={"ttfb_s": profile["ttfb_s"], "processing_s": elapsed}))

        async def synthesize() -> None:
            profile = {"model_inference": 0.0, "transfer_in": 0.0, "transfer_out": 0.0}
            index, t_first_audio, spoken, samples = 0, None, [], 0
            calls: dict[str, Any] = {}
            while (sentence := await sentences.get()) is not None:
                if progress["tts_started"] is None:
                    progress["tts_started"] = (time.time(), time.perf_counter())
                    writes.append(self._write(self.store.start_task, tts_task, progress["tts_started"][0]))
                ts_call, t1 = time.time(), time.perf_counter()
                try:
                    result = await self.models[tts.model].run.remote({"reply_text": sentence}, tts.params)
                except Exception as exc:
                    out.put_nowait(_Failure(tts, _error_text(exc)))
                    return
                call = stage_profile(ts_call, time.perf_counter() - t1, result.model_s, result.ts_model_start)
                for key in profile:
                    profile[key] += call[key]
                for key, value in result.result_profile.items():
                    calls[key] = calls.get(key, 0) + value if key in _SUMMED and value is not None else calls.get(key, value)
                t_first_audio = t_first_audio or time.perf_counter()
                audio = result.outputs["reply_audio"]
                for frame in _audio_frames(audio, index, sentence):
                    out.put_nowait(frame)
                spoken.append(sentence)
                samples += len(audio["samples"]) / audio["sample_rate"]
                index += 1
            if progress["tts_started"] is None:
                return  # nothing to say: the LLM failed before its first sentence
            ts_start, t0 = progress["tts_started"]
            span = time.perf_counter() - t0
            busy = sum(profile.values())
            profile.update(wait_upstream=max(span - busy, 0.0), ts_start=ts_start, ts_end=ts_start + span,
                           ttfb_s=t_first_audio - t0, processing_s=profile["model_inference"])
            # Every sentence's audio is queued for the caller by now; an interruption from here on
            # leaves this record completed and the turn's history keeps the whole reply.
            result_profile = {**calls, "sentences": index, "spoken_text": " ".join(spoken),
                              "audio_seconds": round(samples, 3)}
            writes.append(self._write(self.store.complete_task, tts_task, result_profile, profile))
            self.metrics.stage(tts.name, profile)
            turn.timings.append({"task_name": tts.name, "model": tts.model, **profile})
            out.put_nowait(MetricsFrame(stage=tts.name, metrics={"ttfb_s": profile["ttfb_s"],
                                                                 "processing_s": profile["processing_s"]}))

        async def worker(coro) -> None:
            try:
                await coro
            finally:
                out.put_nowait(_DONE)

        workers = [asyncio.create_task(worker(generate())), asyncio.create_task(worker(synthesize()))]
        finished = 0
        try:
            while finished < len(workers):
                item = await out.get()
                if item is _DONE:
                    finished += 1
                elif isinstance(item, _Failure):
                    for w in workers:
                        w.cancel()
                    yield self._failed(item.stage, turn, writes, item.error, time.time(), 0.0)
                    return
                else:
                    yield item
        except (asyncio.CancelledError, GeneratorExit):
            partial = "".join(progress["llm_text"]).strip()
            if not progress["llm_done"]:
                writes.append(self._write(self.store.cancel_task, llm_task, "cancelled: interrupted",
                                          {"reply_text": partial, "interrupted": True}))
            writes.append(self._write(self.store.cancel_task, tts_task, "cancelled: interrupted",
                                      {"spoken_text": " ".join(turn.spoken), "interrupted": True}))
            raise
        finally:
            for w in workers:
                w.cancel()
