"""A local LLM on onnxruntime-genai with int4 weights: the fastest runtime found for a 0.5B model on a
few CPU cores. Qwen2.5-Coder 0.5B on 2 cores, 50-token prompts: 35-60 tokens/s and a first token in
0.3-0.8 s when the cores are idle; 27-31 tokens/s and 0.7-1 s when they are shared (torch int8
SmolLM2-135M in the same run: 15-17 tokens/s, 0.25 s).

One generation runs at a time per replica (a lock): on a CPU the intra-op threads already use the
cores, so a second concurrent generation would only slow both down. That one generator is kept between
requests with its KV cache: the next prompt rewinds it to the tokens both share (the system prompt, a
track's earlier turns) and reads only the rest. On 2 cores this took the first token of a 48-token
prompt from 0.23-0.60 s to 0.05-0.08 s, with the same replies.

The generation runs in a process of its own: onnxruntime-genai holds the GIL through each token step,
so in the replica's process the event loop and Ray's streaming waited a token step at every hop.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from deployments.base import StrictModel, auto_device, register
from deployments.bundled import QWEN_05B, onnx_llm_model_dir
from deployments.llm_service import DEFAULT_SYSTEM_PROMPT, GenerationSettings, LLMService, reusable_prefix

# Loading and warming the model takes 2-5 s; a first start on a busy machine can take much longer.
_START_TIMEOUT_S = 300.0
# How often a generation waiting for its next piece looks at its stop event.
_STOP_POLL_S = 0.02


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
    # The child's CPU priority below the other models' (Unix nice): while the LLM decodes the rest of a
    # reply, speech synthesis of its first words gets the cores first. Measured on 2 cores, one run each:
    # nice 10 against 0, TTS first audio 0.26 against 0.36 s, first audio 1.04 against 1.20 s.
    nice: int = Field(10, ge=0, le=19)


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
        prompt = self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
        prompt_ids = self.tokenizer.encode(prompt)
        max_new_tokens = settings.max_new_tokens or self.options.max_new_tokens
        search: dict[str, Any] = {"repetition_penalty": self.options.repetition_penalty}
        if settings.temperature > 0:
            search.update(do_sample=True, temperature=settings.temperature)
        else:
            search.update(do_sample=False)
        t0 = time.perf_counter()
        generator, cached = self._generator(prompt_ids, max_new_tokens, search)
        decoder = self.tokenizer.create_stream()
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


class _AskedToStop:
    """The replica's stop, read between tokens: during a generation any message from it means stop."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.stopped = False
        self.replica_gone = False

    def is_set(self) -> bool:
        if not self.stopped and self._conn.poll():
            self.stopped = True
            try:
                self._conn.recv()
            except EOFError:
                self.replica_gone = True
        return self.stopped


def _serve(conn: Connection, model_dir: str, provider: str, options_json: str) -> None:
    """The child process: load, say ready, then one generation per request until the replica goes."""
    options = OnnxGenAIOptions.model_validate_json(options_json)
    os.nice(options.nice)
    generation = OnnxGeneration(Path(model_dir), provider, options)
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request[0] != "generate":
            continue  # a stop that came after its generation had finished
        _, messages, settings = request
        stop = _AskedToStop(conn)
        try:
            for item in generation.stream(messages, GenerationSettings.model_validate(settings), stop):
                conn.send(("piece", item) if isinstance(item, str) else ("profile", item))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        else:
            conn.send(("done", None))
        if stop.replica_gone:
            return


class _ChildFailed(RuntimeError):
    """The generation failed in the child, or the child exited: either way nothing more will come."""


class GenerationProcess:
    """`OnnxGeneration` in a child process, streamed back over a socket pair. A child that died is
    started again by the next request; the request it was serving fails with its exit code."""

    def __init__(self, model_dir: Path, provider: str, options: OnnxGenAIOptions) -> None:
        self._args = [str(model_dir), provider, options.model_dump_json()]
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "deployments.onnx_llm", str(theirs.fileno()), *self._args],
            pass_fds=[theirs.fileno()],
            env=env,
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        weakref.finalize(self, self._proc.kill)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._conn.poll(0.1):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._proc.kill()
                raise RuntimeError(f"the LLM's generation process did not start (exit code {self._proc.poll()})")
        self._receive()

    def _receive(self) -> tuple[str, Any]:
        try:
            kind, value = self._conn.recv()
        except (EOFError, OSError):
            code = self._proc.wait()
            raise _ChildFailed(f"the LLM's generation process exited (code {code})") from None
        if kind == "error":
            raise _ChildFailed(value)
        return kind, value

    def stream(
        self, messages: list[dict[str, str]], settings: GenerationSettings, stop: threading.Event
    ) -> Iterator[str | dict[str, Any]]:
        if self._proc.poll() is not None:
            self._start()
        # LLMParams too are settings: send only what the generation reads.
        self._conn.send(("generate", messages, settings.model_dump(include=set(GenerationSettings.model_fields))))
        finished = stop_sent = False
        try:
            while True:
                if stop.is_set() and not stop_sent:
                    self._conn.send(("stop",))
                    stop_sent = True
                if not self._conn.poll(_STOP_POLL_S):
                    continue
                kind, value = self._receive()
                if kind == "done":
                    finished = True
                    return
                if kind == "piece" and stop_sent:
                    continue  # generated before the stop reached the child: nobody wants it now
                yield value
        except _ChildFailed:
            finished = True
            raise
        finally:
            if not finished:
                # Closed early (a consumer that stopped listening): stop the child and wait for its end,
                # so the next request does not read this one's last pieces.
                self._conn.send(("stop",))
                while self._receive()[0] != "done":
                    pass


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
        runner = GenerationProcess if opts.own_process else OnnxGeneration
        self._generation = runner(model_dir, provider, opts)
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        """What every profile of this model says about it."""
        return {"model": self.options.model, "provider": self.provider}

    def generate(self, messages: list[dict[str, str]], settings: GenerationSettings) -> tuple[str, dict[str, Any]]:
        pieces = list(self.stream(messages, settings, threading.Event()))
        profile = pieces.pop() if pieces and isinstance(pieces[-1], dict) else {}
        return "".join(pieces), profile

    def stream(
        self, messages: list[dict[str, str]], settings: GenerationSettings, stop: threading.Event
    ) -> Iterator[str | dict[str, Any]]:
        """Token by token; `stop` is checked before each token, so a cancelled reply ends within one."""
        asked = time.perf_counter()
        with self._lock:
            waited = time.perf_counter() - asked
            for item in self._generation.stream(messages, settings, stop):
                if isinstance(item, dict):
                    # Time spent waiting for another request's generation to finish.
                    item = {**self.describe(), "model_wait_s": round(waited, 3), **item}
                yield item


if __name__ == "__main__":
    fd, *args = sys.argv[1:]
    _serve(Connection(int(fd)), *args)
