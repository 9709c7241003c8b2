"""The evaluation set: the file is valid and hard enough, and its questions become real speech in every voice."""

import io
import shutil

import numpy as np
import pytest
import soundfile as sf

from bench import eval_set
from bench.eval_set import EspeakMissing, EvalSetError, Spoken, load_eval_set, load_questions, recordings, synthesize

ESPEAK = shutil.which("espeak-ng")


def test_the_set_is_large_and_hard_enough():
    the_set = load_eval_set()
    kinds = [q.kind for q in the_set.questions]
    assert kinds.count("fact") >= 40 and kinds.count("cannot") >= 10 and kinds.count("everyday") >= 10
    voices = the_set.voices
    assert len(voices) >= 6
    assert len({v.accent for v in voices if v.engine == "espeak"}) >= 6
    assert any(v.engine == "piper" for v in voices)
    assert any(v.channel == "phone" for v in voices) and any(v.noise != "none" for v in voices)
    speeds = [v.speed for v in voices if v.speed]
    assert min(speeds) <= 120 and max(speeds) >= 200  # slow and fast speech
    assert len(recordings(the_set)) == len(the_set.questions) * len(voices)


def test_voices_per_question_takes_every_voice_in_turn():
    the_set = load_eval_set()
    said = recordings(the_set, kinds=["fact"], voices_per_question=2)
    assert len(said) == 2 * sum(q.kind == "fact" for q in the_set.questions)
    counts = {v.id: sum(s.voice.id == v.id for s in said) for v in the_set.voices}
    assert max(counts.values()) - min(counts.values()) <= 1
    assert all(a.voice != b.voice for a, b in zip(said[::2], said[1::2], strict=True))


def test_an_unknown_voice_kind_or_question_is_named():
    the_set = load_eval_set()
    with pytest.raises(EvalSetError, match="unknown voice nowhere"):
        recordings(the_set, voices=["nowhere"])
    with pytest.raises(EvalSetError, match="unknown kind riddle"):
        recordings(the_set, kinds=["riddle"])
    with pytest.raises(EvalSetError, match="unknown question no-such"):
        recordings(the_set, questions=["no-such"])


def write(tmp_path, body):
    path = tmp_path / "questions.yaml"
    path.write_text(body, encoding="utf-8")
    return path


VOICES = "voices:\n  - {id: joe, voice: 'piper:joe'}\n"
GOOD = "  - id: capital\n    kind: fact\n    text: What is the capital of France?\n    expect_any: [paris]\n"


@pytest.mark.parametrize(
    "body, named",
    [
        (VOICES + "questions:\n" + GOOD + "    expect_anyy: [paris]\n", "questions.0.expect_anyy (id capital)"),
        (VOICES + "questions:\n" + GOOD.replace("    kind: fact\n", ""), "questions.0.kind (id capital)"),
        (
            VOICES + "questions:\n" + GOOD.replace("[paris]", "[Paris]"),
            "questions.0.expect_any (id capital): Value error, phrases must be lowercase",
        ),
        (VOICES + "questions:\n" + GOOD.replace("fact", "cannot"), "a cannot request has no answer to expect"),
        (VOICES + "questions:\n" + GOOD.replace("    expect_any: [paris]\n", ""), "a fact question needs expect_any"),
        (VOICES.replace("piper:joe", "piper:amy") + "questions:\n" + GOOD, "unknown Piper voice 'amy'"),
        (VOICES.replace("}", ", speed: 150}") + "questions:\n" + GOOD, "speed and pitch apply to espeak voices only"),
        (VOICES.replace("}", ", noise: babble}") + "questions:\n" + GOOD, "voices.0 (id joe): Value error, noise and"),
        (VOICES + "questions:\n" + GOOD + GOOD, "repeated ids: capital"),
        ("questions:\n" + GOOD, "voices: Field required"),
    ],
)
def test_a_bad_key_or_value_is_named_in_the_error(tmp_path, body, named):
    with pytest.raises(EvalSetError) as error:
        load_questions(write(tmp_path, body))
    assert named in str(error.value) and str(tmp_path) in str(error.value)


def test_a_missing_file_is_an_eval_set_error(tmp_path):
    with pytest.raises(EvalSetError, match="missing.yaml: cannot read"):
        load_questions(tmp_path / "missing.yaml")


def read(audio):
    samples, rate = sf.read(io.BytesIO(audio), dtype="float32")
    assert samples.ndim == 1
    return samples, rate


def assert_speech(audio, text, rate=16_000):
    samples, got = read(audio)
    assert got == rate
    seconds = len(samples) / rate
    words = len(text.split())
    assert 0.2 * words <= seconds <= 0.8 * words + 1.5, seconds  # about 2 to 4 words a second, plus pauses
    assert np.sqrt(np.mean(samples**2)) > 0.01 and np.abs(samples).max() > 0.1


def said_by(voice_id, question_id="capital-france"):
    return recordings(load_eval_set(), voices=[voice_id], questions=[question_id])[0]


def test_a_piper_question_becomes_16_khz_speech_and_is_cached(tmp_path):
    said = said_by("piper-joe")
    audio = synthesize(said, tmp_path)
    assert_speech(audio, said.text)
    assert [p.name for p in tmp_path.iterdir()] == [f"{said.cache_key()}.wav"]
    assert synthesize(said, tmp_path) == audio


def test_an_espeak_question_becomes_16_khz_speech_and_its_settings_matter(tmp_path):
    assert ESPEAK is not None, "the espeak-ng binary is missing: apt-get install espeak-ng (scripts/setup.sh does)"
    said = said_by("scotland")
    assert_speech(synthesize(said, tmp_path), said.text)
    slower = Spoken(said.question, said.voice.model_copy(update={"speed": 100}))
    assert slower.cache_key() != said.cache_key()
    assert len(synthesize(slower, tmp_path)) > len(synthesize(said, tmp_path))


def test_a_telephone_voice_is_8_khz_with_nothing_above_the_band(tmp_path):
    said = said_by("phone-us")
    samples, rate = read(synthesize(said, tmp_path))
    assert rate == 8_000
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    assert spectrum[freqs > 3500].sum() < 0.01 * spectrum.sum()
    assert spectrum[freqs < 250].sum() < 0.01 * spectrum.sum()


def test_noise_sits_under_the_speech_at_about_its_snr(tmp_path):
    said = said_by("us-fast-noisy")
    clean = Spoken(said.question, said.voice.model_copy(update={"noise": "none", "snr_db": None}))
    noisy, _ = read(synthesize(said, tmp_path))
    speech, _ = read(synthesize(clean, tmp_path))
    noise = noisy - speech
    voiced = np.abs(speech) > 0.01
    snr = 10 * np.log10(np.mean(speech[voiced] ** 2) / np.mean(noise**2))
    assert abs(snr - said.voice.snr_db) < 1.5, snr
    assert synthesize(said, tmp_path) == synthesize(said, tmp_path / "again")  # seeded: the same everywhere


def test_without_espeak_the_error_names_the_binary_and_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(eval_set.shutil, "which", lambda name: None)
    with pytest.raises(EspeakMissing, match=r"espeak-ng not found.*apt-get install espeak-ng"):
        synthesize(said_by("scotland"), tmp_path)
    assert not list(tmp_path.iterdir())


def test_the_command_line_writes_wav_and_reference_per_recording(tmp_path):
    questions = write(tmp_path, VOICES + "questions:\n" + GOOD)
    eval_set.main(["--out", str(tmp_path / "out"), "--questions", str(questions), "--cache", str(tmp_path / "cache")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["capital.joe.txt", "capital.joe.wav"]
    assert (tmp_path / "out" / "capital.joe.txt").read_text() == "What is the capital of France?\n"
    assert_speech((tmp_path / "out" / "capital.joe.wav").read_bytes(), "What is the capital of France?")
