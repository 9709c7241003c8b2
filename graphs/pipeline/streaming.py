"""One stage streaming into the next: the upstream's slot is cut into chunks as it is produced
(the downstream kind's chunker says where) and the downstream works on each chunk as soon as it
is cut, so an LLM's first sentence is spoken while the rest is still being written.

Which kinds pipe into which is their contracts' business (deployments.kinds.Contract): nothing
here knows about LLMs or speech.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from ray.exceptions import RayActorError

from deployments.kinds import StageOutput
from graphs.observability.latency import stage_profile
from graphs.pipeline.frames import output_frames
from graphs.pipeline.turn import Stage, Turn, TurnRecords, cancelled_by_serve, error_text, log_failover, with_failover
from omniwire.frames import MetricsFrame

_DONE = object()
_CANCELLED = object()  # Serve cancelled the upstream stage: the turn is being cancelled


@dataclass
class _Failure:
    stage: Stage
    error: str


@dataclass
class _Progress:
    produced: list[str] = field(default_factory=list)  # the upstream's pieces so far
    upstream_done: bool = False
    downstream_started: tuple[float, float] | None = None  # (time.time(), time.perf_counter())


async def piped(
    models: dict[str, Any],
    up: Stage,
    down: Stage,
    up_inputs: dict[str, Any],
    down_inputs: dict[str, Any],
    turn: Turn,
    records: TurnRecords,
):
    """The frames of both stages as they come; their records written as each ends or is cancelled."""
    slot = up.contract.streams
    incremental = down.contract.incremental
    out: asyncio.Queue = asyncio.Queue()
    chunks: asyncio.Queue = asyncio.Queue()
    progress = _Progress()

    async def produce() -> None:
        ts_start = time.time()
        records.started(up, ts_start)
        t0 = time.perf_counter()
        first = None
        final: StageOutput | None = None
        chunker = incremental.chunker()
        stream = models[up.model].options(stream=True).run_stream
        pieces = first_try = stream.remote(up_inputs, up.params)
        try:
            while True:
                try:
                    item = await anext(pieces)
                except StopAsyncIteration:
                    break
                except RayActorError as exc:
                    if progress.produced or final is not None or pieces is not first_try:
                        raise  # part of the reply is out: a second try would say it again
                    log_failover(up.name, exc)
                    pieces = stream.remote(up_inputs, up.params)
                    continue
                if isinstance(item, StageOutput):
                    final = item
                    continue
                first = first or time.perf_counter()
                progress.produced.append(item)
                for frame in output_frames(up.contract, up.name, {slot: item}):
                    out.put_nowait(frame)
                for chunk in chunker.push(item):
                    chunks.put_nowait(chunk)
        except Exception as exc:
            out.put_nowait(_CANCELLED if cancelled_by_serve(exc) else _Failure(up, error_text(exc)))
            return
        finally:
            pieces.cancel()
            if (rest := chunker.flush()) and final is not None:
                chunks.put_nowait(rest)
            chunks.put_nowait(None)
        elapsed = time.perf_counter() - t0
        profile = stage_profile(ts_start, elapsed, final.model_s, final.ts_model_start)
        profile.update(ttfb_s=(first or time.perf_counter()) - t0, processing_s=elapsed)
        progress.upstream_done = True
        records.completed(up, final.result_profile, profile)
        turn.state.update(final.outputs)
        out.put_nowait(MetricsFrame(stage=up.name, metrics={"ttfb_s": profile["ttfb_s"], "processing_s": elapsed}))

    async def consume() -> None:
        profile = {"model_inference": 0.0, "transfer_in": 0.0, "transfer_out": 0.0}
        index, t_first_output, handled = 0, None, []
        calls: dict[str, Any] = {}
        while (chunk := await chunks.get()) is not None:
            if progress.downstream_started is None:
                progress.downstream_started = (time.time(), time.perf_counter())
                records.started(down, progress.downstream_started[0])
            ts_call, t1 = time.time(), time.perf_counter()
            try:
                # A reply's first chunk goes ahead of other replies' later ones where calls wait.
                call = models[down.model].run
                result = await with_failover(
                    lambda: call.remote({**down_inputs, slot: chunk}, down.params, priority=index), down.name
                )
            except Exception as exc:
                out.put_nowait(_Failure(down, error_text(exc)))
                return
            call = stage_profile(ts_call, time.perf_counter() - t1, result.model_s, result.ts_model_start)
            for key in profile:
                profile[key] += call[key]
            for key, value in result.result_profile.items():
                summed = key in incremental.summed and value is not None
                calls[key] = calls.get(key, 0) + value if summed else calls.get(key, value)
            t_first_output = t_first_output or time.perf_counter()
            for frame in output_frames(down.contract, down.name, {slot: chunk, **result.outputs}, index):
                out.put_nowait(frame)
            handled.append(chunk)
            index += 1
        if progress.downstream_started is None:
            return  # nothing to work on: the upstream failed before its first chunk
        ts_start, t0 = progress.downstream_started
        span = time.perf_counter() - t0
        busy = sum(profile.values())
        profile.update(
            wait_upstream=max(span - busy, 0.0),
            ts_start=ts_start,
            ts_end=ts_start + span,
            ttfb_s=t_first_output - t0,
            processing_s=profile["model_inference"],
        )
        # Every chunk's output is queued for the caller by now; an interruption from here on leaves
        # this record completed and the turn's history keeps the whole reply.
        calls = {k: round(v, 3) if k in incremental.summed and isinstance(v, float) else v for k, v in calls.items()}
        result_profile = {**calls, incremental.pieces_key: index, incremental.text_key: " ".join(handled)}
        records.completed(down, result_profile, profile)
        out.put_nowait(
            MetricsFrame(
                stage=down.name, metrics={"ttfb_s": profile["ttfb_s"], "processing_s": profile["processing_s"]}
            )
        )

    async def worker(coro) -> None:
        try:
            await coro
        finally:
            out.put_nowait(_DONE)

    workers = [asyncio.create_task(worker(produce())), asyncio.create_task(worker(consume()))]
    finished = 0
    try:
        while finished < len(workers):
            item = await out.get()
            if item is _DONE:
                finished += 1
            elif item is _CANCELLED:
                raise asyncio.CancelledError  # the turn is being cancelled: record it as interrupted below
            elif isinstance(item, _Failure):
                for w in workers:
                    w.cancel()
                yield records.failed(item.stage, item.error, time.time(), 0.0)
                return
            else:
                yield item
    except (asyncio.CancelledError, GeneratorExit):
        if not progress.upstream_done:
            records.interrupted(up, {slot: "".join(progress.produced).strip()})
        records.interrupted(down, {incremental.text_key: " ".join(turn.spoken)})
        raise
    finally:
        for w in workers:
            w.cancel()
