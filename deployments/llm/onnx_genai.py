"""A local LLM on onnxruntime-genai with int4 weights: the fastest runtime found for a 0.5B model on a
few CPU cores. Qwen2.5-Coder 0.5B on 2 cores, 50-token prompts: 35-60 tokens/s and a first token in
0.3-0.8 s when the cores are idle; 27-31 tokens/s and 0.7-1 s when they are shared (torch int8
SmolLM2-135M in the same run: 15-17 tokens/s, 0.25 s).

One generation runs at a time per replica (a lock): on a CPU the intra-op threads already use the
cores, so a second concurrent generation would only slow both down. That one generator is kept between
requests with its KV cache: the next prompt rewinds it to the tokens both share (the system prompt, a
track's earlier turns) and reads only the rest. On 2 cores this took the first token of a 48-token
prompt from 0.23-0.60 s to 0.05-0.08 s, with the same replies. While a person speaks, `prefill` reads
their conversation's system message and history into it, a few tokens at a time, giving way to any
request: after a history drop or another conversation's turn, the turn reads only their words.

The generation runs in a process of its own: onnxruntime-genai holds the GIL through each token step,
so in the replica's process the event loop and Ray's streaming waited a token step at every hop.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
from pydantic import Field

from deployments.bundled import QWEN_05B, onnx_llm_model_dir
from deployments.component import StrictModel, auto_device, register
from deployments.kinds import FIRST_CHUNK_WORDS
from deployments.llm.service import DEFAULT_SYSTEM_PROMPT, GenerationSettings, LLMService, reusable_prefix
from deployments.sentences import SentenceAggregator

# Loading and warming the model takes 2-5 s; a first start on a busy machine can take much longer.
_START_TIMEOUT_S = 300.0
# How often a generation waiting for its next piece looks at its stop event.
_STOP_POLL_S = 0.02
# What the child says last of a request.
_ENDS = ("done", "error", "exited")
# Tokens a prefill reads between two looks for a request that should go first (~0.1 s on 2 cores).
_PREFILL_STEP = 32


class OnnxGenAIOptions(StrictModel):
    # A bundled name (built to int4 once, then cached) or a local onnxruntime-genai model directory.
    model: str = QWEN_05B
    # cuda needs the onnxruntime-genai-cuda package in place of onnxruntime-genai.
    provider: Literal["auto", "cpu", "cuda"] = "auto"
    max_new_tokens: int = Field(64, gt=0)
    # Intra-op threads of the CPU provider: 2 uses both cores of the reference machine.
    intra_op_threads: int = Field(2, gt=0)
    # Whether idle threads spin for the next op. On 2 shared cores spinning slows decoding (17-18
    # tokens/s against 27-31 without, same run); on idle cores it is a little faster (40 against 35).
    # Replicas here share cores (speech synthesis runs while the reply streams): off by default.
    spin_wait: bool = False
    # At 1.0 the 0.5B model repeats whole phrases in replies of 60 tokens or so.
    repetition_penalty: float = Field(1.1, gt=0)
    # Tokens (prompt and reply) the kept generator holds; a longer request gets a generator of its own.
    # Keeping it costs its KV cache: about 12 KB a token for the 0.5B model.
    context_tokens: int = Field(2048, gt=0)
    # Keep the generator between requests and read only the part of a prompt it has not seen.
    prefix_cache: bool = True
    # Generate in a child process (see the module's docstring); off: in the replica's own process.
    own_process: bool = True
    # Turns decoded together, their prompts padded into one batch (with own_process). On 2 CPU cores
    # it loses (python -m bench.batching): two turns asked at once made 37 tokens/s in a batch against
    # 50 one after the other, their first piece 0.46 against 0.18 s; four, 39 against 46 tokens/s. So
    # 1 there; a GPU, with cores to spare for each row, is where a batch pays.
    max_batch: int = Field(1, ge=1)
    # How long a request waits for others to share its batch.
    batch_wait_s: float = Field(0.01, ge=0)
    # The child's CPU priority below the other models' (Unix nice): while the LLM decodes the rest of a
    # reply, speech synthesis of its first words gets the cores first. Measured on 2 cores, one run each:
    # nice 10 against 0, TTS first audio 0.26 against 0.36 s, first audio 1.04 against 1.20 s.
    nice: int = Field(10, ge=0, le=19)
    # Once a reply's first words are out (as the TTS chunks them), generation steps aside this long so
    # that their speech is synthesised with the cores to itself; the later sentences are needed only
    # once those words have been heard. 0: no pause.
    first_words_pause_s: float = Field(0.1, ge=0, le=2)


class OnnxGeneration:
    """The model, its tokenizer and the kept generator; not thread-safe (its caller holds a lock)."""

    def __init__(self, model_dir: Path, provider: str, options: OnnxGenAIOptions) -> None:
        import onnxruntime_genai as og

        self.options = options
        config = og.Config(str(model_dir))
        config.clear_providers()
        if provider == "cuda":
            config.append_provider("cuda")
        else:
            session = {
                "intra_op_num_threads": options.intra_op_threads,
                "session.intra_op.allow_spinning": "1" if options.spin_wait else "0",
            }
            config.overlay(json.dumps({"model": {"decoder": {"session_options": session}}}))
        self._og = og
        self.model = og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)
        self._eos = set(self.tokenizer.eos_token_ids)
        self._pad = json.loads((model_dir / "genai_config.json").read_text())["model"].get("pad_token_id", 0)
        # The kept generator, the search settings it was made with, and the tokens its cache holds.
        self._kept: Any = None
        self._kept_search: dict[str, Any] = {}
        self._kept_ids: list[int] = []
        # The first run of each ONNX session is slow (allocations, kernel choice): pay it here, not
        # on the first user's turn; it also leaves the default system prompt in the cache.
        warm_up = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": "Hi"}]
        for _ in self.stream(warm_up, GenerationSettings(max_new_tokens=2), threading.Event()):
            pass

    def stream(
        self, messages: list[dict[str, str]], settings: GenerationSettings, stop: Any
    ) -> Iterator[str | dict[str, Any]]:
        """Token by token, then the profile; `stop.is_set()` is asked before each token, so a cancelled
        reply ends within one."""
        prompt_ids = self._encode(messages)
        max_new_tokens = settings.max_new_tokens or self.options.max_new_tokens
        search = self._search(settings)
        t0 = time.perf_counter()
        generator, cached = self._generator(prompt_ids, max_new_tokens, search)
        decoder = self.tokenizer.create_stream()
        first_words = SentenceAggregator(first_words=FIRST_CHUNK_WORDS) if self.options.first_words_pause_s else None
        completion = 0
        first_token_s = None
        try:
            generator.append_tokens(prompt_ids[cached:])
            while completion < max_new_tokens and not stop.is_set() and not generator.is_done():
                generator.generate_next_token()
                token = int(generator.get_next_tokens()[0])
                completion += 1
                first_token_s = first_token_s or time.perf_counter() - t0
                if token not in self._eos and (piece := decoder.decode(token)):
                    yield piece
                    if first_words is not None and first_words.push(piece):
                        first_words = None
                        _pause(self.options.first_words_pause_s, stop)
        except GeneratorExit:
            raise  # closed between two tokens: the sequence is whole and stays cached
        except BaseException:
            # A step that failed leaves a cache in an unknown state: never rewind into it.
            if generator is self._kept:
                self._forget()
            raise
        finally:
            if generator is self._kept:
                self._kept_ids = list(generator.get_sequence(0))
        elapsed = time.perf_counter() - t0
        del generator  # a generator of its own frees its KV cache before the next request
        decode_s = elapsed - (first_token_s or 0)
        yield {
            "prompt_tokens": len(prompt_ids),
            "cached_prompt_tokens": cached,
            "completion_tokens": completion,
            "max_new_tokens": max_new_tokens,
            "ttft_s": round(first_token_s, 3) if first_token_s is not None else None,
            # Decode speed after the first token, so a long prompt does not hide it.
            "tokens_per_s": round((completion - 1) / decode_s, 1) if completion > 1 and decode_s > 0 else None,
        }

    def stream_batch(
        self, chats: list[list[dict[str, str]]], settings: GenerationSettings, stopped: Callable[[int], bool]
    ) -> Iterator[tuple[int, str | dict[str, Any]]]:
        """Several chats decoded together, left-padded to one length: (index, piece) as each is made,
        then (index, profile) for each. `stopped(index)` is asked every step; a stopped or finished
        chat's further tokens are dropped, and the batch ends when all are."""
        prompts = [self._encode(chat) for chat in chats]
        longest = max(len(p) for p in prompts)
        max_new_tokens = settings.max_new_tokens or self.options.max_new_tokens
        params = self._og.GeneratorParams(self.model)
        params.set_search_options(
            batch_size=len(prompts), max_length=longest + max_new_tokens, **self._search(settings)
        )
        generator = self._og.Generator(self.model, params)
        t0 = time.perf_counter()
        padded = np.array([[self._pad] * (longest - len(p)) + p for p in prompts], dtype=np.int32)
        generator.append_tokens(padded)
        decoders = [self.tokenizer.create_stream() for _ in prompts]
        counts = [0] * len(prompts)
        finished = [False] * len(prompts)
        first_token_s = None
        while not all(finished) and not generator.is_done():
            generator.generate_next_token()
            first_token_s = first_token_s or time.perf_counter() - t0
            for i, token in enumerate(int(t) for t in generator.get_next_tokens()):
                if finished[i] or stopped(i):
                    finished[i] = True
                    continue
                counts[i] += 1
                finished[i] = token in self._eos or counts[i] >= max_new_tokens
                if token not in self._eos and (piece := decoders[i].decode(token)):
                    yield i, piece
        elapsed = time.perf_counter() - t0
        del generator
        for i, prompt in enumerate(prompts):
            yield (
                i,
                {
                    "prompt_tokens": len(prompt),
                    "cached_prompt_tokens": 0,
                    "completion_tokens": counts[i],
                    "max_new_tokens": max_new_tokens,
                    "batch_size": len(prompts),
                    "ttft_s": round(first_token_s, 3) if first_token_s is not None else None,
                    "tokens_per_s": round(counts[i] / elapsed, 1) if elapsed > 0 else None,
                },
            )

    def prefill(self, messages: list[dict[str, str]], interrupted: Callable[[], bool]) -> None:
        """Reads the start of a coming prompt (the system message and the history) into the kept
        generator, a few tokens at a time until `interrupted()`; the request that follows then reads only
        the rest."""
        ids = self._encode(messages, reply=False)
        if not self.options.prefix_cache or len(ids) + self.options.max_new_tokens > self.options.context_tokens:
            return
        generator, cached = self._generator(ids, 0, self._search(GenerationSettings()))
        try:
            for start in range(cached, len(ids), _PREFILL_STEP):
                if interrupted():
                    break
                generator.append_tokens(ids[start : start + _PREFILL_STEP])
        except BaseException:
            self._forget()
            raise
        self._kept_ids = list(generator.get_sequence(0))

    def _encode(self, messages: list[dict[str, str]], reply: bool = True) -> list[int]:
        prompt = self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=reply)
        return list(self.tokenizer.encode(prompt))

    def _search(self, settings: GenerationSettings) -> dict[str, Any]:
        search: dict[str, Any] = {"repetition_penalty": self.options.repetition_penalty}
        if settings.temperature > 0:
            search.update(do_sample=True, temperature=settings.temperature)
        else:
            search.update(do_sample=False)
        return search

    def _generator(self, prompt_ids: list[int], max_new_tokens: int, search: dict[str, Any]) -> tuple[Any, int]:
        """The kept generator rewound to the longest prefix it shares with this prompt, and that prefix's
        length; or a generator of this request's own size when the prompt does not fit or caching is off."""
        og = self._og
        if not self.options.prefix_cache or len(prompt_ids) + max_new_tokens > self.options.context_tokens:
            params = og.GeneratorParams(self.model)
            # max_length bounds the KV cache, which is allocated whole up front: keep it to this reply.
            params.set_search_options(max_length=len(prompt_ids) + max_new_tokens, **search)
            return og.Generator(self.model, params), 0
        if self._kept is None or search != self._kept_search:
            self._forget()
            params = og.GeneratorParams(self.model)
            params.set_search_options(max_length=self.options.context_tokens, **search)
            self._kept, self._kept_search = og.Generator(self.model, params), search
        shared = reusable_prefix(self._kept_ids, prompt_ids)
        self._kept.rewind_to(shared)
        return self._kept, shared

    def _forget(self) -> None:
        self._kept, self._kept_search, self._kept_ids = None, {}, []


def _pause(seconds: float, stop: Any) -> None:
    """Sleep, waking for a stop."""
    until = time.monotonic() + seconds
    while not stop.is_set() and (left := until - time.monotonic()) > 0:
        time.sleep(min(left, 0.01))


class _Inbox:
    """What the replica has asked, read between tokens: new generations wait for the next batch, a stop
    ends its own generation, the end of the connection means the replica is gone."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.waiting: list[tuple[int, list[dict[str, str]], dict[str, Any]]] = []
        self.stopped: set[int] = set()
        self.prefill: list[dict[str, str]] | None = None  # the latest asked; read when nothing else waits
        self.gone = False

    def read(self, timeout: float | None = 0.0) -> None:
        """Every message that has come, waiting up to `timeout` (None: for ever) for the first."""
        while not self.gone and self.conn.poll(timeout):
            timeout = 0.0
            try:
                message = self.conn.recv()
            except EOFError:
                self.gone = True
                return
            if message[0] == "generate":
                self.waiting.append(message[1:])
            elif message[0] == "prefill":
                self.prefill = message[1]
            elif any(r[0] == message[1] for r in self.waiting):
                # Stopped before its batch began: nothing to generate.
                self.waiting = [r for r in self.waiting if r[0] != message[1]]
                self.conn.send(("done", message[1], None))
            else:
                self.stopped.add(message[1])

    def next_batch(self, size: int, wait_s: float) -> list[tuple[int, list[dict[str, str]], dict[str, Any]]]:
        """Up to `size` waiting requests with the same settings, the oldest first, after waiting up to
        `wait_s` for others to join it."""
        deadline = time.monotonic() + wait_s
        while len(self.waiting) < size and (left := deadline - time.monotonic()) > 0 and not self.gone:
            self.read(left)
        if not self.waiting:
            return []  # the one waiting was stopped meanwhile
        settings = self.waiting[0][2]
        batch = [r for r in self.waiting if r[2] == settings][:size]
        self.waiting = [r for r in self.waiting if r not in batch]
        return batch


def _serve(conn: Connection, model_dir: str, provider: str, options_json: str) -> None:
    """The child process: load, say ready, then generate what is asked, in batches of up to max_batch,
    until the replica goes."""
    options = OnnxGenAIOptions.model_validate_json(options_json)
    os.nice(options.nice)
    generation = OnnxGeneration(Path(model_dir), provider, options)
    conn.send(("ready", None))
    inbox = _Inbox(conn)
    while True:
        if not inbox.waiting and inbox.prefill is None:
            inbox.read(None)
        if inbox.gone:
            return
        if not inbox.waiting and inbox.prefill is not None:
            chat, inbox.prefill = inbox.prefill, None
            try:
                generation.prefill(chat, lambda: inbox.read() or bool(inbox.waiting) or inbox.gone)
            except Exception:  # only ever a head start: the request that follows reads it all anyway
                logging.getLogger(__name__).exception("reading the start of a coming prompt failed")
            continue
        batch = inbox.next_batch(options.max_batch, options.batch_wait_s if options.max_batch > 1 else 0.0)
        if not batch:
            continue
        ids = [rid for rid, _, _ in batch]
        settings = GenerationSettings.model_validate(batch[0][2])

        def stopped(index: int) -> bool:
            inbox.read()
            return inbox.gone or ids[index] in inbox.stopped

        try:
            if len(batch) == 1:
                stop = SimpleNamespace(is_set=lambda: stopped(0))
                items = ((0, item) for item in generation.stream(batch[0][1], settings, stop))
            else:
                items = generation.stream_batch([chat for _, chat, _ in batch], settings, stopped)
            for index, item in items:
                conn.send(("piece" if isinstance(item, str) else "profile", ids[index], item))
        except Exception as exc:
            for rid in ids:
                conn.send(("error", rid, f"{type(exc).__name__}: {exc}"))
        else:
            for rid in ids:
                conn.send(("done", rid, None))
        inbox.stopped.clear()  # stops of this batch, or of requests already done


class GenerationProcess:
    """`OnnxGeneration` in a child process, streamed back over a socket pair; several requests at once
    (the child batches them). A child that died is started again by the next request; the requests it
    was serving fail with its exit code."""

    def __init__(self, model_dir: Path, provider: str, options: OnnxGenAIOptions) -> None:
        self._args = [str(model_dir), provider, options.model_dump_json()]
        self._lock = threading.Lock()  # sends, and (re)starting the child
        self._streams: dict[int, queue.SimpleQueue] = {}
        self._ids = itertools.count()
        self._start()

    @property
    def busy(self) -> bool:
        return bool(self._streams)

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "deployments.llm.onnx_genai", str(theirs.fileno()), *self._args],
            pass_fds=[theirs.fileno()],
            env=env,
        )
        theirs.close()
        conn = Connection(ours.detach())
        weakref.finalize(self, proc.kill)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not conn.poll(0.1):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the LLM's generation process did not start (exit code {proc.poll()})")
        conn.recv()  # ready
        self._proc, self._conn = proc, conn
        threading.Thread(target=self._route, args=(proc, conn), name="llm-child-reader", daemon=True).start()

    def _route(self, proc: subprocess.Popen, conn: Connection) -> None:
        """Hands each message from the child to its request's queue; when the child goes, tells them all."""
        while True:
            try:
                kind, rid, value = conn.recv()
            except (EOFError, OSError):
                code = proc.wait()
                for stream in list(self._streams.values()):
                    stream.put(("exited", code))
                return
            if (stream := self._streams.get(rid)) is not None:
                stream.put((kind, value))

    def _send(self, *message: Any) -> None:
        with self._lock:
            self._conn.send(message)

    def prefill(self, messages: list[dict[str, str]]) -> None:
        """Asks the child to read the start of a coming prompt when it has nothing else to do."""
        if self._proc.poll() is None:
            self._send("prefill", messages)

    def stream(
        self, messages: list[dict[str, str]], settings: GenerationSettings, stop: threading.Event
    ) -> Iterator[str | dict[str, Any]]:
        rid, replies = next(self._ids), queue.SimpleQueue()
        with self._lock:
            if self._proc.poll() is not None:
                self._start()
            self._streams[rid] = replies
            # LLMParams too are settings: send only what the generation reads.
            self._conn.send(
                ("generate", rid, messages, settings.model_dump(include=set(GenerationSettings.model_fields)))
            )
        finished = stop_sent = False
        try:
            while True:
                if stop.is_set() and not stop_sent:
                    self._send("stop", rid)
                    stop_sent = True
                try:
                    kind, value = replies.get(timeout=_STOP_POLL_S)
                except queue.Empty:
                    continue
                finished = kind in _ENDS
                if kind == "done":
                    return
                if kind == "error":
                    raise RuntimeError(value)
                if kind == "exited":
                    raise RuntimeError(f"the LLM's generation process exited (code {value})")
                if kind == "piece" and stop_sent:
                    continue  # generated before the stop reached the child: nobody wants it now
                yield value
        finally:
            if not finished:
                # Closed early (a consumer that stopped listening): stop it in the child and wait for its end.
                self._send("stop", rid)
                while replies.get()[0] not in _ENDS:
                    pass
            del self._streams[rid]


@register("onnx_llm")
class OnnxGenAILLM(LLMService):
    Options = OnnxGenAIOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        import onnxruntime_genai as og

        opts = self.options
        provider = opts.provider
        if provider == "auto":
            provider = auto_device(og.is_cuda_available())
        elif provider == "cuda" and not og.is_cuda_available():
            raise ValueError("provider cuda needs a GPU and onnxruntime-genai-cuda in place of onnxruntime-genai")
        self.provider = provider
        model_dir = onnx_llm_model_dir(opts.model, provider)
        if opts.own_process:
            self._generation: GenerationProcess | OnnxGeneration = GenerationProcess(model_dir, provider, opts)
            self.gate.resize(opts.max_batch)  # what the child can batch; it queues the rest itself
        else:
            self._generation = OnnxGeneration(model_dir, provider, opts)
        self._lock = threading.Lock()  # one generation at a time in this process

    @property
    def busy(self) -> bool:
        """Whether a generation is under way (tests check an abandoned one has ended)."""
        if isinstance(self._generation, GenerationProcess):
            return self._generation.busy
        return self._lock.locked()

    def describe(self) -> dict[str, Any]:
        """What every profile of this model says about it."""
        return {"model": self.options.model, "provider": self.provider}

    def prefill(self, messages: list[dict[str, str]]) -> None:
        if isinstance(self._generation, GenerationProcess):
            self._generation.prefill(messages)
        elif self._lock.acquire(blocking=False):  # a generation under way has the model: skip
            try:
                self._generation.prefill(messages, lambda: False)
            finally:
                self._lock.release()

    def generate(self, messages: list[dict[str, str]], settings: GenerationSettings) -> tuple[str, dict[str, Any]]:
        pieces = list(self.stream(messages, settings, threading.Event()))
        profile = pieces.pop() if pieces and isinstance(pieces[-1], dict) else {}
        return "".join(pieces), profile

    def stream(
        self, messages: list[dict[str, str]], settings: GenerationSettings, stop: threading.Event
    ) -> Iterator[str | dict[str, Any]]:
        """Token by token; `stop` is checked before each token, so a cancelled reply ends within one."""
        asked = time.perf_counter()
        own = isinstance(self._generation, GenerationProcess)
        with contextlib.nullcontext() if own else self._lock:
            waited = time.perf_counter() - asked
            for item in self._generation.stream(messages, settings, stop):
                if isinstance(item, dict):
                    # Time spent waiting for another request's generation to finish (in this process).
                    item = {**self.describe(), "model_wait_s": round(waited, 3), **item}
                yield item


if __name__ == "__main__":
    fd, *args = sys.argv[1:]
    _serve(Connection(int(fd)), *args)
