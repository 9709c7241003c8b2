"""The evaluation set: the question file is valid and varied, and its questions become real 16 kHz speech."""

import io
import shutil

import numpy as np
import pytest
import soundfile as sf

from bench import eval_set
from bench.eval_set import EspeakMissing, EvalSetError, load_questions, synthesize

ESPEAK = shutil.which("espeak-ng")


def test_the_set_loads_with_unique_ids_and_varied_accents():
    questions = load_questions()
    assert len(questions) >= 20
    assert len({q.id for q in questions}) == len(questions)
    assert len({q.accent for q in questions if q.engine == "espeak"}) >= 3
    engines = [q.engine for q in questions]
    assert 0.4 <= engines.count("piper") / len(engines) <= 0.6


def write(tmp_path, body):
    path = tmp_path / "questions.yaml"
    path.write_text(body, encoding="utf-8")
    return path


GOOD = "  - id: capital\n    text: What is the capital of France?\n    expect_any: [paris]\n    voice: piper:joe\n"


@pytest.mark.parametrize(
    "entry, named",
    [
        (GOOD + "    expect_anyy: [paris]\n", "questions.0.expect_anyy (id capital)"),
        (GOOD.replace("    voice: piper:joe\n", ""), "questions.0.voice (id capital)"),
        (
            GOOD.replace("[paris]", "[Paris]"),
            "questions.0.expect_any (id capital): Value error, phrases must be lowercase",
        ),
        (GOOD.replace("piper:joe", "piper:amy"), "unknown Piper voice 'amy'"),
        (GOOD + "    speed: 150\n", "speed and pitch apply to espeak voices only"),
        (GOOD + GOOD, "repeated ids: capital"),
    ],
)
def test_a_bad_key_or_value_is_named_in_the_error(tmp_path, entry, named):
    with pytest.raises(EvalSetError, match="questions") as error:
        load_questions(write(tmp_path, "questions:\n" + entry))
    assert named in str(error.value) and str(tmp_path) in str(error.value)


def test_a_bad_top_level_key_is_named(tmp_path):
    with pytest.raises(EvalSetError, match="questoins"):
        load_questions(write(tmp_path, "questoins:\n" + GOOD))


def test_a_missing_file_is_an_eval_set_error(tmp_path):
    with pytest.raises(EvalSetError, match="missing.yaml: cannot read"):
        load_questions(tmp_path / "missing.yaml")


def assert_speech(audio, text):
    samples, rate = sf.read(io.BytesIO(audio), dtype="float32")
    assert rate == 16_000 and samples.ndim == 1
    seconds = len(samples) / rate
    words = len(text.split())
    assert 0.2 * words <= seconds <= 0.8 * words + 1.5, seconds  # about 2 to 4 words a second, plus pauses
    assert np.sqrt(np.mean(samples**2)) > 0.01 and np.abs(samples).max() > 0.1


def pick(engine):
    return next(q for q in load_questions() if q.engine == engine)


def test_a_piper_question_becomes_16_khz_speech_and_is_cached(tmp_path):
    question = pick("piper")
    audio = synthesize(question, tmp_path)
    assert_speech(audio, question.text)
    assert [p.name for p in tmp_path.iterdir()] == [f"{question.cache_key()}.wav"]
    assert synthesize(question, tmp_path) == audio


def test_an_espeak_question_becomes_16_khz_speech(tmp_path):
    assert ESPEAK is not None, "the espeak-ng binary is missing: apt-get install espeak-ng (scripts/setup.sh does)"
    question = pick("espeak")
    assert_speech(synthesize(question, tmp_path), question.text)
    slower = question.model_copy(update={"speed": 120})
    assert slower.cache_key() != question.cache_key()
    assert len(synthesize(slower, tmp_path)) > len(synthesize(question, tmp_path))


def test_without_espeak_the_error_names_the_binary_and_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(eval_set.shutil, "which", lambda name: None)
    with pytest.raises(EspeakMissing, match=r"espeak-ng not found.*apt-get install espeak-ng"):
        synthesize(pick("espeak"), tmp_path)
    assert not list(tmp_path.iterdir())


def test_the_command_line_writes_wav_and_reference_per_question(tmp_path):
    questions = write(tmp_path, "questions:\n" + GOOD)
    eval_set.main(["--out", str(tmp_path / "out"), "--questions", str(questions), "--cache", str(tmp_path / "cache")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["capital.txt", "capital.wav"]
    assert (tmp_path / "out" / "capital.txt").read_text() == "What is the capital of France?\n"
    assert_speech((tmp_path / "out" / "capital.wav").read_bytes(), "What is the capital of France?")
