"""faster-whisper (CTranslate2) speech-to-text."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
from pydantic import Field

from deployments.bundled import WHISPER_TINY_EN, whisper_model_dir
from deployments.component import StrictModel, auto_device, register
from deployments.stt.service import SpeechToTextService
from deployments.stt.silero_vad import RATE

SHORT_CONTEXT_MAX_S = 28  # the short path covers what fits in one Whisper window
SHORT_CONTEXT_MIN_FRAMES = 1000  # 10 s of 10 ms feature frames
MAX_REPLY_WORDS = 40  # of the last reply, as Whisper's prompt
MAX_PROMPT_TOKENS = 223  # Whisper's own limit for the previous text: half its 448-token context, less one


@register("whisper_stt")
class WhisperSpeechToText(SpeechToTextService):
    class Options(StrictModel):
        model: str = WHISPER_TINY_EN
        device: Literal["auto", "cpu", "cuda"] = "auto"
        compute_type: str = "auto"
        # 0: one per core, at most 4 (CTranslate2's own default is 4, which oversubscribes 2 cores).
        cpu_threads: int = 0
        # Encode a 10 s window (longer audio: its length plus a second) instead of Whisper's fixed
        # 30 s: the encoder's cost follows its input, so a short question is heard ~2.4x faster, and
        # with beam search no less well on accented speech (bench.speech_to_text: WER 0.181 against
        # 0.194 for the whole window); shorter windows than 10 s made Whisper repeat itself.
        # Audio longer than one window, or False, takes faster-whisper's usual path.
        short_context: bool = True
        # Utterances that queued while the model was busy are transcribed in one batch (the short
        # path; a batch is as long as its longest utterance). On 2 cores (python -m bench.batching):
        # 4 utterances in 0.49 s against 0.71 s one after another. A lone one never waits for others.
        max_batch: int = Field(4, ge=1)

    class Params(StrictModel):
        language: str | None = "en"
        # Beam search costs little in the short window (the decoder is small beside the encoder) and hears
        # accents better: python -m bench.speech_to_text, accented voices, WER 0.227 -> 0.181 for
        # 0.17 -> 0.20 s a question on 2 cores.
        beam_size: int = Field(5, ge=1)
        # Words and names this cluster's users say, given to Whisper as text said just before, so it
        # leans to their spelling (a product name, a place); keep it short: its tokens are read every turn.
        prompt: str | None = None
        # The assistant's last reply goes before the prompt too, for a follow-up that reuses its words. Off
        # by default, by measurement: after a reply on another subject (the usual case) accented
        # questions were heard worse (bench.speech_to_text, WER 0.181 -> 0.201).
        last_reply_as_prompt: bool = False
        # Silence around the speech trimmed, and audio with no speech not transcribed (the base's `speech`).
        vad_filter: bool = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        import ctranslate2
        from faster_whisper import WhisperModel

        opts = self.options
        device = opts.device
        if device == "auto":
            device = auto_device(ctranslate2.get_cuda_device_count() > 0)
        compute_type = opts.compute_type
        if compute_type == "auto":
            compute_type = "float16" if device == "cuda" else "int8"
        self.device = device
        self.model = WhisperModel(
            whisper_model_dir(opts.model),
            device=device,
            compute_type=compute_type,
            cpu_threads=opts.cpu_threads or min(os.cpu_count() or 1, 4),
        )
        # The first call allocates and picks kernels: pay for it here, not on the first user's turn.
        list(self.model.transcribe(np.zeros(RATE, np.float32), language="en", without_timestamps=True)[0])

    def about(self) -> dict[str, Any]:
        return {"model": self.options.model, "device": self.device}

    def transcribe(self, audio: np.ndarray, params: Params, context: str | None = None) -> tuple[str, dict[str, Any]]:
        return self.transcribe_batch([audio], params, [context])[0]

    def context(self, inputs: dict[str, Any], params: Params) -> str | None:
        """The text Whisper is told came just before: the last reply (when asked), then the prompt."""
        said = []
        if params.last_reply_as_prompt:
            replies = [m["content"] for m in inputs.get("history") or () if m.get("role") == "assistant"]
            if replies and isinstance(replies[-1], str):
                said.append(" ".join(replies[-1].split()[-MAX_REPLY_WORDS:]))
        if params.prompt:
            said.append(params.prompt)
        return " ".join(said) or None

    def transcribe_batch(
        self, audios: list[np.ndarray], params: Params, contexts: list[str | None] | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Long utterances take the usual path, the rest go in one batch."""
        contexts = contexts or [None] * len(audios)
        results: list[tuple[str, dict[str, Any]] | None] = [None] * len(audios)
        short: dict[int, np.ndarray] = {}
        for i, audio in enumerate(audios):
            if self.options.short_context and len(audio) < SHORT_CONTEXT_MAX_S * RATE:
                short[i] = audio
            else:
                results[i] = self._transcribe_long(audio, params, contexts[i])
        if short:
            heard = self._transcribe_short(list(short.values()), params, [contexts[i] for i in short])
            for i, result in zip(short, heard, strict=True):
                results[i] = result
        return results

    def _transcribe_long(self, audio: np.ndarray, params: Params, context: str | None) -> tuple[str, dict[str, Any]]:
        segments, info = self.model.transcribe(
            audio,
            language=params.language,
            beam_size=params.beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
            initial_prompt=context,
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        return text, {
            "model": self.options.model,
            "device": self.device,
            "language": info.language,
            "segments": len(segments),
            "no_speech_prob": round(max((s.no_speech_prob for s in segments), default=1.0), 3),
        }

    def _transcribe_short(
        self, audios: list[np.ndarray], params: Params, contexts: list[str | None]
    ) -> list[tuple[str, dict[str, Any]]]:
        """One decode over a shortened encoder window, its length bounded by the longest audio's."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        seconds = max(len(audio) for audio in audios) / RATE
        frames = min(3000, max(SHORT_CONTEXT_MIN_FRAMES, int(np.ceil(seconds + 1.0) * 100)))
        features = [self.model.feature_extractor(audio, padding=RATE)[:, :frames] for audio in audios]
        padded = np.zeros((len(audios), features[0].shape[0], frames), dtype=np.float32)
        for i, one in enumerate(features):
            padded[i, :, : one.shape[1]] = one
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(padded), to_cpu=self.device == "cpu")
        multilingual = self.model.model.is_multilingual
        tokenizer = Tokenizer(
            self.model.hf_tokenizer,
            multilingual,
            task="transcribe",
            language=(params.language or "en") if multilingual else None,
        )
        prompts = []
        for context in contexts:
            before = tokenizer.encode(" " + context.strip())[-(MAX_PROMPT_TOKENS):] if context else []
            prompts.append(
                [tokenizer.sot_prev, *before] * bool(before) + [*tokenizer.sot_sequence, tokenizer.no_timestamps]
            )
        results = self.model.model.generate(
            encoded,
            prompts,
            beam_size=params.beam_size,
            # ~3x the words anyone says in that time, after the prompt (the length counts it too)
            max_length=min(448, max(map(len, prompts)) + min(224, int(seconds * 12) + 16)),
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1, *tokenizer.non_speech_tokens],
        )
        heard = []
        for result in results:
            text = tokenizer.decode(result.sequences_ids[0]).strip()
            profile = {
                "model": self.options.model,
                "device": self.device,
                "language": params.language,
                "segments": 1 if text else 0,
                "no_speech_prob": round(result.no_speech_prob, 3),
                "encoder_frames": frames,
            }
            heard.append((text, profile))
        return heard
