"""The evaluation set: everyday spoken questions, validated, and spoken in several accents as 16 kHz mono WAV.

    python -m bench.eval_set --out eval-speech/      # NAME.wav + NAME.txt per question, for python -m bench.evaluate --audio

Half the questions are spoken by the bundled Piper voice, the rest by espeak-ng voices with other accents,
so speech-to-text is measured on more than one speaker. Synthesised audio is cached by a hash of the voice
settings and text: the set is built once, and an edited question is spoken again.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import soundfile as sf
import soxr
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

QUESTIONS = Path(__file__).with_name("questions.yaml")
CACHE = Path(__file__).resolve().parents[1] / "data" / "eval-speech"
RATE = 16_000
PIPER_ACCENTS = {"joe": "en-us"}  # the Piper voices bench/speech.py can speak, and their accents

Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class EvalSetError(ValueError):
    """The question file is unreadable or breaks the schema; the message names the file and the bad keys."""


class EspeakMissing(RuntimeError):
    """espeak-ng is not installed: its voices cannot be spoken, and the set is incomplete without them."""


class Question(BaseModel):
    """One spoken question and the hints bench/rubric.py scores a reply by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    expect_any: Annotated[list[Phrase], Field(min_length=1)]
    topic_words: list[Phrase] = []
    voice: Annotated[str, StringConstraints(pattern=r"^(piper:[a-z]+|espeak:[a-z0-9-]+(\+[a-z0-9]+)?)$")]
    speed: Annotated[int, Field(ge=80, le=400)] | None = None
    pitch: Annotated[int, Field(ge=0, le=99)] | None = None

    @field_validator("expect_any", "topic_words")
    @classmethod
    def _lowercase(cls, phrases: list[str]) -> list[str]:
        upper = [p for p in phrases if p != p.lower()]
        if upper:
            raise ValueError(f"phrases must be lowercase (the rubric compares lowercase text): {upper}")
        return phrases

    @field_validator("voice")
    @classmethod
    def _known_piper_voice(cls, voice: str) -> str:
        engine, name = voice.split(":", 1)
        if engine == "piper" and name not in PIPER_ACCENTS:
            raise ValueError(f"unknown Piper voice {name!r}; known: {', '.join(PIPER_ACCENTS)}")
        return voice

    @model_validator(mode="after")
    def _espeak_only_settings(self) -> Question:
        if self.engine == "piper" and (self.speed is not None or self.pitch is not None):
            raise ValueError("speed and pitch apply to espeak voices only")
        return self

    @property
    def engine(self) -> str:
        return self.voice.split(":", 1)[0]

    @property
    def accent(self) -> str:
        """The voice's language and region: espeak's voice name without its variant, or the Piper voice's."""
        name = self.voice.split(":", 1)[1]
        return PIPER_ACCENTS[name] if self.engine == "piper" else name.split("+", 1)[0]

    def cache_key(self) -> str:
        """What the audio depends on, hashed: a changed voice, setting or text is spoken again."""
        spoken = json.dumps([self.voice, self.speed, self.pitch, self.text])
        return hashlib.sha256(spoken.encode()).hexdigest()[:20]


class EvalSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    questions: Annotated[list[Question], Field(min_length=1)]

    @field_validator("questions")
    @classmethod
    def _unique_ids(cls, questions: list[Question]) -> list[Question]:
        repeated = sorted(id_ for id_, count in Counter(q.id for q in questions).items() if count > 1)
        if repeated:
            raise ValueError(f"repeated ids: {', '.join(repeated)}")
        return questions


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    """The questions in `path`, validated; an error lists each bad key by its place (questions.3.voice)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return EvalSet.model_validate(raw).questions
    except OSError as error:
        raise EvalSetError(f"{path}: cannot read: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise EvalSetError(f"{path}: not valid YAML: {error}") from error
    except ValidationError as error:
        problems = "; ".join(f"{_place(e['loc'], raw)}: {e['msg']}" for e in error.errors())
        raise EvalSetError(f"{path}: {problems}") from error


def _place(loc: tuple[Any, ...], raw: Any) -> str:
    """A dotted path to the bad key, with the question's id beside its index so it can be found in the file."""
    place = ".".join(str(part) for part in loc) or "(top level)"
    if len(loc) >= 2 and loc[0] == "questions" and isinstance(loc[1], int):
        entry = raw["questions"][loc[1]]
        if isinstance(entry, dict) and "id" in entry:
            place += f" (id {entry['id']})"
    return place


def synthesize(question: Question, cache: Path = CACHE) -> bytes:
    """The question spoken in its voice as 16 kHz mono 16-bit WAV, from the cache when spoken before."""
    path = Path(cache) / f"{question.cache_key()}.wav"
    if path.exists():
        return path.read_bytes()
    audio = _piper(question) if question.engine == "piper" else _espeak(question)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(audio)
    partial.replace(path)  # a killed run leaves no truncated WAV behind
    return audio


def _piper(question: Question) -> bytes:
    from bench.speech import speak  # loads Piper (GPL extra) only when a Piper question is spoken

    return speak(question.text, rate=RATE)


def _espeak(question: Question) -> bytes:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise EspeakMissing(
            f"espeak-ng not found on PATH, needed for voice {question.voice!r} (question {question.id}); "
            "install the Debian package espeak-ng: apt-get install espeak-ng"
        )
    command = [binary, "-v", question.voice.split(":", 1)[1]]
    if question.speed is not None:
        command += ["-s", str(question.speed)]
    if question.pitch is not None:
        command += ["-p", str(question.pitch)]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.wav"
        done = subprocess.run([*command, "-w", str(out), question.text], check=False, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"espeak-ng failed for question {question.id} ({question.voice}): "
                f"{done.stderr.strip() or done.returncode}"
            )
        samples, rate = sf.read(out, dtype="float32", always_2d=True)
    samples = soxr.resample(samples.mean(axis=1), rate, RATE)
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def spoken_questions(path: Path = QUESTIONS, cache: Path = CACHE) -> list[tuple[Question, bytes]]:
    """Every question of the set with its WAV audio."""
    return [(question, synthesize(question, cache)) for question in load_questions(path)]


def write_folder(out: Path, path: Path = QUESTIONS, cache: Path = CACHE) -> int:
    """ID.wav and its reference transcript ID.txt per question: the folder layout bench.evaluate --audio reads."""
    out.mkdir(parents=True, exist_ok=True)
    spoken = spoken_questions(path, cache)
    for question, audio in spoken:
        (out / f"{question.id}.wav").write_bytes(audio)
        (out / f"{question.id}.txt").write_text(question.text + "\n", encoding="utf-8")
    return len(spoken)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for ID.wav and ID.txt")
    parser.add_argument("--questions", type=Path, default=QUESTIONS, help="question file (default: %(default)s)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="synthesised audio cache (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        count = write_folder(args.out, args.questions, args.cache)
    except (EvalSetError, EspeakMissing) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"{count} questions spoken into {args.out}")


if __name__ == "__main__":
    main()
