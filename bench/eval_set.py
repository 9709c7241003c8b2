"""The evaluation set: questions with known answers, requests the assistant cannot honour and everyday
questions, validated, each spoken by every voice of the set (accents, fast and slow speech, noise, a
telephone line) as mono WAV.

    python -m bench.eval_set --out eval-speech/      # NAME.wav + NAME.txt per recording, for bench.evaluate --audio
    python -m bench.eval_set --out eval-speech/ --voices scotland phone-us --kinds fact

Synthesised audio is cached by a hash of the voice, its settings and the text: the set is built once,
and an edited question or voice is spoken again. Noise is drawn from a generator seeded by that hash,
so a recording is the same on every machine.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import soundfile as sf
import soxr
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

QUESTIONS = Path(__file__).with_name("questions.yaml")
CACHE = Path(__file__).resolve().parents[1] / "data" / "eval-speech"
RATE = 16_000
PHONE_RATE = 8_000
PIPER_ACCENTS = {"joe": "en-us"}  # the Piper voices bench/speech.py can speak, and their accents
KINDS = ("fact", "cannot", "everyday")

Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]


class EvalSetError(ValueError):
    """The question file is unreadable or breaks the schema; the message names the file and the bad keys."""


class EspeakMissing(RuntimeError):
    """espeak-ng is not installed: its voices cannot be spoken, and the set is incomplete without them."""


class Voice(BaseModel):
    """Who says the questions, and how their sound reaches the assistant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    voice: Annotated[str, StringConstraints(pattern=r"^(piper:[a-z]+|espeak:[a-z0-9-]+(\+[a-z0-9]+)?)$")]
    speed: Annotated[int, Field(ge=80, le=400)] | None = None
    pitch: Annotated[int, Field(ge=0, le=99)] | None = None
    channel: Literal["clean", "phone"] = "clean"
    noise: Literal["none", "babble", "hum"] = "none"
    snr_db: Annotated[float, Field(ge=-5, le=40)] | None = None

    @field_validator("voice")
    @classmethod
    def _known_piper_voice(cls, voice: str) -> str:
        engine, name = voice.split(":", 1)
        if engine == "piper" and name not in PIPER_ACCENTS:
            raise ValueError(f"unknown Piper voice {name!r}; known: {', '.join(PIPER_ACCENTS)}")
        return voice

    @model_validator(mode="after")
    def _consistent(self) -> Voice:
        if self.engine == "piper" and (self.speed is not None or self.pitch is not None):
            raise ValueError("speed and pitch apply to espeak voices only")
        if (self.noise == "none") != (self.snr_db is None):
            raise ValueError("noise and snr_db go together: a noise needs its snr_db, and snr_db a noise")
        return self

    @property
    def engine(self) -> str:
        return self.voice.split(":", 1)[0]

    @property
    def accent(self) -> str:
        """The voice's language and region: espeak's voice name without its variant, or the Piper voice's."""
        name = self.voice.split(":", 1)[1]
        return PIPER_ACCENTS[name] if self.engine == "piper" else name.split("+", 1)[0]

    @property
    def rate(self) -> int:
        """The sample rate its recordings are delivered at."""
        return PHONE_RATE if self.channel == "phone" else RATE


class Question(BaseModel):
    """One question and the hints bench/rubric.py scores a reply by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    kind: Literal["fact", "cannot", "everyday"]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    expect_any: list[Phrase] = []
    topic_words: list[Phrase] = []

    @field_validator("expect_any", "topic_words")
    @classmethod
    def _lowercase(cls, phrases: list[str]) -> list[str]:
        upper = [p for p in phrases if p != p.lower()]
        if upper:
            raise ValueError(f"phrases must be lowercase (the rubric compares lowercase text): {upper}")
        return phrases

    @model_validator(mode="after")
    def _answers_known(self) -> Question:
        if self.kind == "cannot" and self.expect_any:
            raise ValueError("a cannot request has no answer to expect: leave out expect_any")
        if self.kind != "cannot" and not self.expect_any:
            raise ValueError(f"a {self.kind} question needs expect_any, the phrases that show a reply answers")
        return self


class EvalSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    voices: Annotated[list[Voice], Field(min_length=1)]
    questions: Annotated[list[Question], Field(min_length=1)]

    @field_validator("voices", "questions")
    @classmethod
    def _unique_ids(cls, entries: list[Any]) -> list[Any]:
        repeated = sorted(id_ for id_, count in Counter(e.id for e in entries).items() if count > 1)
        if repeated:
            raise ValueError(f"repeated ids: {', '.join(repeated)}")
        return entries


@dataclass(frozen=True)
class Spoken:
    """One question in one voice: a recording of the set."""

    question: Question
    voice: Voice

    @property
    def id(self) -> str:
        return f"{self.question.id}.{self.voice.id}"

    @property
    def text(self) -> str:
        return self.question.text

    def cache_key(self) -> str:
        """What the audio depends on, hashed: a changed voice, setting or text is spoken again."""
        spoken = json.dumps([self.voice.model_dump(exclude={"id"}), self.question.text], sort_keys=True)
        return hashlib.sha256(spoken.encode()).hexdigest()[:20]


def load_eval_set(path: Path = QUESTIONS) -> EvalSet:
    """The set in `path`, validated; an error lists each bad key by its place (questions.3.kind)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return EvalSet.model_validate(raw)
    except OSError as error:
        raise EvalSetError(f"{path}: cannot read: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise EvalSetError(f"{path}: not valid YAML: {error}") from error
    except ValidationError as error:
        problems = "; ".join(f"{_place(e['loc'], raw)}: {e['msg']}" for e in error.errors())
        raise EvalSetError(f"{path}: {problems}") from error


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    return load_eval_set(path).questions


def _place(loc: tuple[Any, ...], raw: Any) -> str:
    """A dotted path to the bad key, with the entry's id beside its index so it can be found in the file."""
    place = ".".join(str(part) for part in loc) or "(top level)"
    if len(loc) >= 2 and loc[0] in ("questions", "voices") and isinstance(loc[1], int):
        entry = raw[loc[0]][loc[1]]
        if isinstance(entry, dict) and "id" in entry:
            place += f" (id {entry['id']})"
    return place


def recordings(
    eval_set: EvalSet,
    voices: list[str] | None = None,
    kinds: list[str] | None = None,
    questions: list[str] | None = None,
    voices_per_question: int | None = None,
) -> list[Spoken]:
    """Every question in every voice, question by question; narrowed to the voice ids, kinds and question
    ids given (an unknown one is an EvalSetError naming it). With `voices_per_question`, each question is
    said by that many of the voices, taken in turn, so that every voice says about as many questions."""
    known_voices = {v.id: v for v in eval_set.voices}
    known_questions = {q.id for q in eval_set.questions}
    for asked, known, what in ((voices, known_voices, "voice"), (questions, known_questions, "question")):
        unknown = sorted(set(asked or ()) - set(known))
        if unknown:
            raise EvalSetError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    unknown_kinds = sorted(set(kinds or ()) - set(KINDS))
    if unknown_kinds:
        raise EvalSetError(f"unknown kind {', '.join(unknown_kinds)}; known: {', '.join(KINDS)}")
    chosen_voices = [known_voices[v] for v in voices] if voices else eval_set.voices
    chosen = [q for q in eval_set.questions if (not kinds or q.kind in kinds) and (not questions or q.id in questions)]
    if not voices_per_question:
        return [Spoken(question, voice) for question in chosen for voice in chosen_voices]
    each = min(voices_per_question, len(chosen_voices))
    return [
        Spoken(question, chosen_voices[(i * each + j) % len(chosen_voices)])
        for i, question in enumerate(chosen)
        for j in range(each)
    ]


def synthesize(said: Spoken, cache: Path = CACHE) -> bytes:
    """The recording as mono 16-bit WAV (16 kHz, or 8 kHz for the telephone), from the cache when made before."""
    path = Path(cache) / f"{said.cache_key()}.wav"
    if path.exists():
        return path.read_bytes()
    voice = said.voice
    samples = (
        _piper(said.text) if voice.engine == "piper" else _espeak(said.text, voice.voice, voice.speed, voice.pitch)
    )
    rng = np.random.default_rng(int(said.cache_key(), 16))
    if voice.noise != "none":
        samples = add_noise(samples, voice.noise, voice.snr_db or 0.0, rng)
    if voice.channel == "phone":
        samples = telephone(samples)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1, 1), voice.rate, format="WAV", subtype="PCM_16")
    audio = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(audio)
    partial.replace(path)  # a killed run leaves no truncated WAV behind
    return audio


def add_noise(speech: np.ndarray, kind: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """`speech` (16 kHz) with a noise under it at `snr_db`, the speech's power measured where it is voiced."""
    noise = _babble(len(speech), rng) if kind == "babble" else _hum(len(speech), rng)
    voiced = speech[np.abs(speech) > 0.01]
    speech_power = float(np.mean(np.square(voiced))) if len(voiced) else 1e-6
    noise_power = float(np.mean(np.square(noise))) or 1e-12
    return speech + noise * np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))


def telephone(speech: np.ndarray) -> np.ndarray:
    """`speech` (16 kHz) as a telephone line delivers it: 8 kHz, 300-3400 Hz, through G.711 mu-law."""
    narrow = soxr.resample(speech, RATE, PHONE_RATE)
    spectrum = np.fft.rfft(narrow)
    freqs = np.fft.rfftfreq(len(narrow), 1 / PHONE_RATE)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    narrow = np.fft.irfft(spectrum, len(narrow))
    mu = 255.0
    coded = np.round(np.sign(narrow) * np.log1p(mu * np.minimum(np.abs(narrow), 1)) / np.log1p(mu) * 127) / 127
    return (np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu).astype(np.float32)


# Background talkers for babble: other people's sentences in other voices, none of them a question of the set.
_BABBLE = (
    ("en-us+m1", "and then we went down to the market to see if they had any fresh bread left for the weekend"),
    ("en-gb+f4", "she told me the meeting had moved to Thursday afternoon because half the team was away"),
    ("en-gb-x-rp+m4", "honestly the traffic this morning was terrible and the buses were all running late again"),
)


def _babble(length: int, rng: np.random.Generator) -> np.ndarray:
    """Three other talkers at once, each from a random point of their sentence, looped to `length`."""
    out = np.zeros(length, np.float32)
    for voice, text in _BABBLE:
        talk = _babble_talker(voice, text)
        start = int(rng.integers(len(talk)))
        out += np.resize(np.roll(talk, -start), length)
    return out


@functools.cache
def _babble_talker(voice: str, text: str) -> np.ndarray:
    return _espeak(text, f"espeak:{voice}", 165, None)


def _hum(length: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50 Hz and its harmonics) over a fan's low rumble (brown noise)."""
    t = np.arange(length) / RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3, 5))
    rumble = np.cumsum(rng.standard_normal(length)).astype(np.float32)
    rumble -= np.convolve(rumble, np.ones(801) / 801, mode="same")  # no drift: a fan, not a slope
    rumble /= np.max(np.abs(rumble)) or 1.0
    return (hum / 2 + rumble).astype(np.float32)


def _piper(text: str) -> np.ndarray:
    from bench.speech import speak  # loads Piper (GPL extra) only when a Piper recording is made

    samples, _ = sf.read(io.BytesIO(speak(text, rate=RATE)), dtype="float32")
    return samples


def _espeak(text: str, voice: str, speed: int | None, pitch: int | None) -> np.ndarray:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise EspeakMissing(
            f"espeak-ng not found on PATH, needed for voice {voice!r}; "
            "install the Debian package espeak-ng: apt-get install espeak-ng"
        )
    command = [binary, "-v", voice.split(":", 1)[1]]
    if speed is not None:
        command += ["-s", str(speed)]
    if pitch is not None:
        command += ["-p", str(pitch)]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.wav"
        done = subprocess.run([*command, "-w", str(out), text], check=False, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"espeak-ng failed for {voice} saying {text!r}: {done.stderr.strip() or done.returncode}"
            )
        samples, rate = sf.read(out, dtype="float32", always_2d=True)
    return soxr.resample(samples.mean(axis=1), rate, RATE).astype(np.float32)


def spoken_questions(
    path: Path = QUESTIONS,
    cache: Path = CACHE,
    voices: list[str] | None = None,
    kinds: list[str] | None = None,
    questions: list[str] | None = None,
    voices_per_question: int | None = None,
) -> list[tuple[Spoken, bytes]]:
    """The set's recordings (narrowed as `recordings` says) with their WAV audio."""
    chosen = recordings(load_eval_set(path), voices, kinds, questions, voices_per_question)
    return [(said, synthesize(said, cache)) for said in chosen]


def write_folder(out: Path, path: Path = QUESTIONS, cache: Path = CACHE, **narrow: Any) -> int:
    """ID.wav and its reference transcript ID.txt per recording: the folder layout bench.evaluate --audio reads."""
    out.mkdir(parents=True, exist_ok=True)
    spoken = spoken_questions(path, cache, **narrow)
    for said, audio in spoken:
        (out / f"{said.id}.wav").write_bytes(audio)
        (out / f"{said.id}.txt").write_text(said.text + "\n", encoding="utf-8")
    return len(spoken)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for ID.wav and ID.txt")
    parser.add_argument("--questions", type=Path, default=QUESTIONS, help="question file (default: %(default)s)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="synthesised audio cache (default: %(default)s)")
    parser.add_argument("--voices", nargs="+", metavar="VOICE", help="voice ids (default: every voice)")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, help="question kinds (default: every kind)")
    args = parser.parse_args(argv)
    try:
        count = write_folder(args.out, args.questions, args.cache, voices=args.voices, kinds=args.kinds)
    except (EvalSetError, EspeakMissing) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"{count} recordings spoken into {args.out}")


if __name__ == "__main__":
    main()
