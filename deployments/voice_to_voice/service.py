"""Speech in, speech out, in one stage.

Two backends. `local` composes our own Whisper, Hugging Face LLM and Piper components inside one
replica, so a turn makes one handle hop instead of three. `openai` sends the user's audio to an
audio-capable chat model (gpt-4o-audio-preview, or any server with the same API) and gets the
spoken reply back in the same call; the user's transcript, which that call does not return,
comes from a transcription call made at the same time.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import Field, model_validator

from deployments.bundled import PIPER_JOE, SMOLLM2, WHISPER_TINY_EN
from deployments.component import Component, StrictModel, register
from deployments.llm.quantized import Quantization, QuantizedLLM
from deployments.llm.service import (
    DEFAULT_SYSTEM_PROMPT,
    LLMParams,
    chat_messages,
    context_note,
    template_errors,
)
from deployments.llm.transformers_llm import HuggingFaceLLM
from deployments.openai_service import OpenAIService, missing_key, openai_client
from deployments.stt.service import SAMPLE_RATE
from deployments.stt.whisper import WhisperSpeechToText
from deployments.tts.piper import PiperTextToSpeech
from omniwire.audio import decode, encode_wav

# Slots the text that accompanies the audio may name; the transcript is the audio itself.
ACCOMPANYING_FIELDS = ("image_text", "emotion")

LOCAL_OPTIONS = frozenset({"whisper_model", "llm_model", "quantization", "device"})
OPENAI_OPTIONS = frozenset({"model", "transcription_model", "base_url", "api_key_env", "timeout_s", "max_retries"})
OPENAI_VOICE = "alloy"


@register("voice2voice")
class VoiceToVoice(Component):
    kind = "voice_to_voice"

    class Options(StrictModel):
        backend: Literal["local", "openai"] = "local"
        # Piper voice (local, default joe-us) or OpenAI voice name (openai, default alloy).
        voice: str | None = None
        # local
        whisper_model: str = WHISPER_TINY_EN
        llm_model: str = SMOLLM2
        # None: the fp32 model (hf_llm); otherwise quantized as quantized_llm does it.
        quantization: Quantization | None = None
        device: Literal["auto", "cpu", "cuda"] = "auto"
        # openai
        model: str = "gpt-4o-audio-preview"
        transcription_model: str = "whisper-1"
        # None: the OPENAI_BASE_URL environment variable, else api.openai.com.
        base_url: str | None = None
        api_key_env: str = "OPENAI_API_KEY"
        timeout_s: float = Field(60.0, gt=0)
        max_retries: int = Field(3, ge=0)

        @model_validator(mode="after")
        def _options_of_one_backend(self):
            """An option of the other backend would be silently ignored; say so instead."""
            stray = sorted(self.model_fields_set & (OPENAI_OPTIONS if self.backend == "local" else LOCAL_OPTIONS))
            if stray:
                raise ValueError(f"{', '.join(stray)}: not an option of the {self.backend} backend")
            return self

    class Params(StrictModel):
        system_prompt: str = DEFAULT_SYSTEM_PROMPT
        # What earlier stages found, for the system message, e.g. "What the person shows you: {image_text}";
        # None: a sentence for each finding the turn has.
        context_template: str | None = None
        # None: the local LLM's own limit; no limit for openai, where it counts audio tokens too.
        max_new_tokens: int | None = Field(None, ge=1)

    @classmethod
    def check_params(cls, params: dict[str, Any], available: set[str]) -> list[tuple[str, str]]:
        """The audio is the question: only what accompanies it ({image_text}, {emotion}) may be named."""
        return template_errors("context_template", params.get("context_template"), ACCOMPANYING_FIELDS, available, "")

    @classmethod
    def unavailable_reason(cls, options: dict[str, Any]) -> str | None:
        if options.get("backend", "local") != "openai":
            return None
        return missing_key(options.get("api_key_env", cls.Options.model_fields["api_key_env"].default))

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        opts = self.options
        if opts.backend == "openai":
            self.voice = opts.voice or OPENAI_VOICE
            self.client = openai_client(opts.api_key_env, opts.base_url, opts.timeout_s, opts.max_retries)
            return
        self.voice = opts.voice or PIPER_JOE
        self.stt = WhisperSpeechToText(model=opts.whisper_model, device=opts.device)
        if opts.quantization is None:
            self.llm = HuggingFaceLLM(model=opts.llm_model, device=opts.device)
        else:
            self.llm = QuantizedLLM(model=opts.llm_model, device=opts.device, quantization=opts.quantization)
        self.tts = PiperTextToSpeech(voice=self.voice, device=opts.device)

    def process(self, inputs: dict[str, Any], params: Params) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.options.backend == "openai":
            return self._answer_with_openai(inputs, params)
        return self._answer_locally(inputs, params)

    def _answer_locally(self, inputs: dict[str, Any], params: Params) -> tuple[dict[str, Any], dict[str, Any]]:
        """Whisper, the LLM and Piper in turn, each through its own component's `process`."""
        audio = inputs["audio"]
        t0 = time.perf_counter()
        heard, stt_profile = self.stt.process({"audio": audio}, self.stt.Params())
        t1 = time.perf_counter()
        transcript = heard["transcript"]
        profile: dict[str, Any] = {
            "backend": "local",
            "transcript": transcript,
            "reply_text": "",
            "timings": {"stt_s": round(t1 - t0, 4)},
            "stt": _details(stt_profile),
        }
        if not transcript.strip():
            return {"transcript": transcript}, profile  # no speech: the graph ends the turn here

        llm_params = LLMParams(
            system_prompt=params.system_prompt,
            context_template=params.context_template,
            max_new_tokens=params.max_new_tokens,
        )
        context = {k: inputs[k] for k in (*ACCOMPANYING_FIELDS, "history") if k in inputs}
        answered, llm_profile = self.llm.process({**context, "transcript": transcript}, llm_params)
        t2 = time.perf_counter()
        spoken, tts_profile = self.tts.process(answered, self.tts.Params())
        t3 = time.perf_counter()

        profile.update(
            reply_text=answered["reply_text"],
            system=llm_profile["system"],
            context=llm_profile["context"],
            prompt=llm_profile["prompt"],
            history_messages=llm_profile["history_messages"],
            timings={**profile["timings"], "llm_s": round(t2 - t1, 4), "tts_s": round(t3 - t2, 4)},
            llm=_details(llm_profile),
            tts=_details(tts_profile),
        )
        return {"transcript": transcript, **answered, **spoken}, profile

    def _answer_with_openai(self, inputs: dict[str, Any], params: Params) -> tuple[dict[str, Any], dict[str, Any]]:
        """One chat completion with audio in and out, and the user's transcript fetched alongside."""
        audio = inputs["audio"]
        wav = encode_wav(audio, SAMPLE_RATE)
        content: list[dict[str, Any]] = [
            {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode("ascii"), "format": "wav"}}
        ]
        context = context_note(params.context_template, inputs, ACCOMPANYING_FIELDS)
        history = inputs.get("history") or []
        messages = chat_messages(params.system_prompt, context, history, content)
        request: dict[str, Any] = {
            "model": self.options.model,
            "modalities": ["text", "audio"],
            "audio": {"voice": self.voice, "format": "wav"},
            "messages": messages,
        }
        if params.max_new_tokens is not None:
            request["max_completion_tokens"] = params.max_new_tokens

        with ThreadPoolExecutor(max_workers=1) as pool:
            transcription = pool.submit(
                self._timed_call,
                self.client.audio.transcriptions,
                model=self.options.transcription_model,
                file=("turn.wav", wav, "audio/wav"),
            )
            completion, chat_call = self._timed_call(self.client.chat.completions, **request)
            transcribed, transcription_call = transcription.result()
        transcript = transcribed.text.strip()

        message = completion.choices[0].message
        if message.audio is None:
            raise RuntimeError(
                f"{self.options.model} answered without audio; it must support modalities ['text', 'audio']"
            )
        reply = decode(base64.b64decode(message.audio.data), target_rate=None)
        samples, rate = reply.samples, reply.rate
        reply_text = (message.audio.transcript or "").strip()
        usage = completion.usage
        profile = {
            "backend": "openai",
            "model": self.options.model,
            "transcription_model": self.options.transcription_model,
            "voice": self.voice,
            "transcript": transcript,
            "reply_text": reply_text,
            "system": params.system_prompt,
            "context": context or None,
            "history_messages": len(history),
            "audio_seconds": round(len(audio) / SAMPLE_RATE, 3),
            "reply_audio_seconds": round(len(samples) / rate, 3),
            "sample_rate": rate,
            "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
            if usage
            else None,
            "timings": {"chat_s": chat_call.pop("seconds"), "transcription_s": transcription_call.pop("seconds")},
            "calls": {"chat": chat_call, "transcription": transcription_call},
        }
        if not transcript:
            return {"transcript": transcript}, profile  # no speech: the graph ends the turn here
        return {
            "transcript": transcript,
            "reply_text": reply_text,
            "reply_audio": {"samples": samples, "sample_rate": rate},
        }, profile

    @staticmethod
    def _timed_call(endpoint, **kwargs) -> tuple[Any, dict[str, Any]]:
        """One API call, its wall time, and what the API says of it (its own processing time)."""
        t0 = time.perf_counter()
        answer, call = OpenAIService._call(endpoint, **kwargs)
        return answer, {"seconds": round(time.perf_counter() - t0, 4), **call}

    def model_seconds(self, profile: dict[str, Any], elapsed: float) -> float:
        """For openai, the servers' own processing time (the two calls overlap, so the longer one)."""
        calls = profile.get("calls", {}).values()
        reported = [c["api_processing_s"] for c in calls if c.get("api_processing_s") is not None]
        return min(max(reported), elapsed) if self.options.backend == "openai" and reported else elapsed


def _details(profile: dict[str, Any]) -> dict[str, Any]:
    """A part's own profile without what the stage's profile already says at the top."""
    return {
        k: v
        for k, v in profile.items()
        if k not in ("transcript", "reply_text", "system", "context", "prompt", "history_messages")
    }
