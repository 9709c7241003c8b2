"""The benchmark's pieces that need no server: statistics, WER, references, the report and its plots."""

import json

import matplotlib.image
import numpy as np
import pytest
import soundfile as sf

from bench.evaluate import Utterance, main, read_audio_folder, turn_record
from bench.report import (
    END_TO_END_PLOT,
    FIRST_AUDIO_PLOT,
    STAGES_PLOT,
    normalise,
    summarise,
    word_errors,
    write_report,
)
from graphs.observability.latency import spread
from tests.ports import free_port

HF = "CLUSTER_HF_ETE_CONVERSATION"
Q = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"


def test_wer_ignores_case_and_punctuation_but_counts_words():
    assert normalise("  What is the capital city of France?") == "what is the capital city of france"
    assert normalise("Hello,   World!") == "hello world"
    assert word_errors(["What is the capital city of France?"], ["what is the capital city of france"])["wer"] == 0
    one_wrong = word_errors(["The cat sat on the mat."], ["the cat sat on a mat"])
    assert one_wrong["wer"] == pytest.approx(1 / 6)
    assert (one_wrong["substitutions"], one_wrong["deletions"], one_wrong["insertions"]) == (1, 0, 0)
    # corpus WER: all errors over all reference words, not the mean of per-turn rates
    corpus = word_errors(["one two three four", "five six"], ["one two three four", "five"])
    assert corpus["wer"] == pytest.approx(1 / 6) and corpus["reference_words"] == 6 and corpus["deletions"] == 1
    assert word_errors(["How is the weather today?"], [""])["wer"] == 1


def write_tone(path, seconds=0.5, rate=16_000):
    t = np.arange(int(rate * seconds)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)


def test_audio_folder_with_references_beside_the_files(tmp_path):
    write_tone(tmp_path / "b.wav", seconds=1.0)
    write_tone(tmp_path / "a.flac")
    write_tone(tmp_path / "no-reference.ogg")
    (tmp_path / "a.txt").write_text("Turn the lights on.\n")
    (tmp_path / "b.txt").write_text("What time is it?")
    (tmp_path / "notes.md").write_text("not audio")
    found = read_audio_folder(tmp_path)
    assert [u.name for u in found] == ["a.flac", "b.wav", "no-reference.ogg"]
    assert [u.reference for u in found] == ["Turn the lights on.", "What time is it?", None]
    assert found[1].duration_s == pytest.approx(1.0)
    assert found[1].audio == (tmp_path / "b.wav").read_bytes()


def test_references_from_a_json_mapping(tmp_path):
    for name in ("one.wav", "two.wav", "three.wav"):
        write_tone(tmp_path / name)
    (tmp_path / "references.json").write_text(json.dumps({"one.wav": "First question.", "two": "Second, by stem."}))
    (tmp_path / "three.txt").write_text("  ")
    assert {u.name: u.reference for u in read_audio_folder(tmp_path)} == {
        "one.wav": "First question.",
        "two.wav": "Second, by stem.",
        "three.wav": None,
    }


def test_references_from_a_csv_mapping_and_txt_files_first(tmp_path):
    for name in ("one.wav", "two.wav"):
        write_tone(tmp_path / name)
    (tmp_path / "references.csv").write_text('file,text\none.wav,"Yes, please."\ntwo.wav,From the table.\n')
    (tmp_path / "two.txt").write_text("From the text file.")
    assert {u.name: u.reference for u in read_audio_folder(tmp_path)} == {
        "one.wav": "Yes, please.",
        "two.wav": "From the text file.",
    }


def server_body(cluster, transcript, stages, end_to_end_s, first_audio_s, detail=None):
    """A POST /v1/conversations body as graphs/api/ingress.py writes it."""
    model_s = sum(m for _, m, _ in stages)
    transfer_s = sum(t for _, _, t in stages)
    overhead = end_to_end_s - model_s
    body = {
        "track_id": f"T-{cluster}-{'0' * 32}",
        "cluster": cluster,
        "turn": 1,
        "status": "failed" if detail else "completed",
        "transcript": transcript,
        "reply_text": "Paris.",
        "timings": {
            "stages": [{"task_name": n, "model_s": m, "transfer_s": t, "ttfb_s": m / 2} for n, m, t in stages],
            "model_s": model_s,
            "transfer_s": transfer_s,
            "turn_s": end_to_end_s - 0.01,
            "end_to_end_s": end_to_end_s,
            "overhead_s": overhead,
            "overhead_ratio": overhead / end_to_end_s,
            "time_to_first_audio_s": first_audio_s,
        },
    }
    return body | ({"detail": detail} if detail else {})


CAPITAL = Utterance("capital.wav", b"", "What is the capital city of France?", 2.0)
WEATHER = Utterance("weather.wav", b"", "How is the weather today?", 1.6)


@pytest.fixture
def run():
    """Two clusters, two rounds: a misheard turn, a stage failure (502) and a refused turn with no timings (503)."""
    turns = {HF: [], Q: []}
    for r in (1, 2):
        turns[HF].append(
            turn_record(
                HF,
                CAPITAL,
                r,
                200,
                server_body(
                    HF,
                    "What is the capital city of France?",
                    [
                        ("speech_to_text", 0.39, 0.013),
                        ("emotion_detection", 0.09, 0.012),
                        ("hf_llm", 2.0 + r / 10, 0.011),
                        ("text_to_speech", 0.2, 0.011),
                    ],
                    2.8 + r / 10,
                    1.3,
                ),
                None,
                1000.0 + 10 * r,
                2.9 + r / 10,
            )
        )
        turns[HF].append(
            turn_record(
                HF,
                WEATHER,
                r,
                200,
                server_body(
                    HF,
                    "How is the weather to day?",
                    [
                        ("speech_to_text", 0.41, 0.014),
                        ("emotion_detection", 0.08, 0.012),
                        ("hf_llm", 1.5, 0.012),
                        ("text_to_speech", 0.3, 0.01),
                    ],
                    2.4,
                    1.1,
                ),
                None,
                1003.0 + 10 * r,
                2.5,
            )
        )
        turns[Q].append(
            turn_record(
                Q,
                CAPITAL,
                r,
                200,
                server_body(
                    Q,
                    "What is the capital city of France?",
                    [("speech_to_text", 0.4, 0.013), ("quantization_llm", 1.1, 0.014), ("text_to_speech", 0.4, 0.012)],
                    2.0,
                    0.9,
                ),
                None,
                2000.0 + 10 * r,
                2.1,
            )
        )
    stage_failed = server_body(
        Q,
        "How is the weather today?",
        [("speech_to_text", 0.4, 0.013)],
        0.5,
        None,
        detail="stage quantization_llm failed: RuntimeError: out of memory",
    )
    turns[Q].append(turn_record(Q, WEATHER, 1, 502, stage_failed, stage_failed["detail"], 2003.0, 0.6))
    turns[Q].append(turn_record(Q, WEATHER, 2, 503, {"detail": "not enabled"}, "not enabled", 2013.0, 0.01))
    return {
        "started_at": "2026-11-22T03:00:00+00:00",
        "url": "http://127.0.0.1:8000",
        "settings": {"audio": "recordings", "rounds": 2, "concurrency": 2, "warmup": 0, "images": []},
        "machine": {"platform": "Linux", "processor": "", "cpus": 2},
        "inputs": [{"name": u.name, "reference": u.reference, "duration_s": u.duration_s} for u in (CAPITAL, WEATHER)],
        "clusters": {c: {"summary": summarise(ts), "turns": ts} for c, ts in turns.items()},
    }


def test_summary_of_real_turn_records(run):
    hf, q = run["clusters"][HF]["summary"], run["clusters"][Q]["summary"]
    assert (hf["turns"], hf["completed"], hf["failed"]) == (4, 4, 0)
    assert list(hf["stages"]) == ["speech_to_text", "emotion_detection", "hf_llm", "text_to_speech"]
    assert hf["stages"]["hf_llm"]["model_s"]["median"] == pytest.approx(1.8)
    assert hf["end_to_end_s"] == spread([2.9, 2.4, 3.0, 2.4])
    assert hf["time_to_first_audio_s"]["max"] == 1.3
    assert hf["overhead_ratio"]["overall"] == pytest.approx((0.12 + 0.11 + 0.12 + 0.11) / (2.9 + 2.4 + 3.0 + 2.4))
    # "to day" for "today": one substitution and one insertion in each of two turns, over 24 reference words
    assert hf["wer"]["wer"] == pytest.approx(4 / 24) and hf["wer"]["turns"] == 4
    assert hf["wall_s"] == pytest.approx(1023.0 + 2.5 - 1010.0)  # first start to last answer
    assert hf["turns_per_min"] == pytest.approx(60 * 4 / 15.5)

    assert (q["turns"], q["completed"], q["failed"]) == (4, 2, 2)
    assert list(q["stages"]) == ["speech_to_text", "quantization_llm", "text_to_speech"]
    # the 502 turn had a transcript, so it is scored; the 503 turn never reached speech-to-text
    assert q["wer"]["turns"] == 3 and q["wer"]["wer"] == 0
    assert [(f["status"], f["detail"]) for f in q["failures"]] == [
        (502, "stage quantization_llm failed: RuntimeError: out of memory"),
        (503, "not enabled"),
    ]


def test_report_and_plots_are_written(run, tmp_path):
    written = write_report(run, tmp_path)
    assert [p.name for p in written] == ["report.md", STAGES_PLOT, END_TO_END_PLOT, FIRST_AUDIO_PLOT]
    for name in (STAGES_PLOT, END_TO_END_PLOT, FIRST_AUDIO_PLOT):
        pixels = matplotlib.image.imread(tmp_path / name)
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 500
        assert pixels.std() > 0.05, f"{name} is blank"
    report = (tmp_path / "report.md").read_text()
    for name in (STAGES_PLOT, END_TO_END_PLOT, FIRST_AUDIO_PLOT):
        assert f"]({name})" in report
    assert "## Clusters compared" in report and f"## `{HF}`" in report and f"## `{Q}`" in report
    assert f"| `{HF}` | 4/4 | 0 | 2650 | 2985 | 1200 | 1300 |" in report
    assert f"| `{Q}` | 2/4 | 2 | 2000 | 2000 | 900 | 900 |" in report
    assert "| `hf_llm` | model | 1500 | 1800 | 2185 | 2200 |" in report
    assert "|  | transfer | 11.0 | 11.5 | 12.0 | 12.0 |" in report
    assert "| time to first audio | 1100 | 1200 | 1300 | 1300 |" in report
    assert "word error rate: **16.7%** over 4 turns and 24 reference words" in report
    assert "| weather.wav | How is the weather today? | How is the weather to day? | 40% |" in report
    assert "| 502 | 1 | stage quantization_llm failed: RuntimeError: out of memory | weather.wav |" in report
    assert "| 503 | 1 | not enabled | weather.wav |" in report


def test_a_run_where_every_turn_failed_still_reports(tmp_path):
    turns = [turn_record(HF, CAPITAL, 1, None, {}, "ConnectError: connection refused", 5.0, 0.01)]
    run = {
        "started_at": "now",
        "url": "http://127.0.0.1:9",
        "machine": {"platform": "Linux", "cpus": 2},
        "settings": {"audio": "recordings", "rounds": 1, "concurrency": 1, "warmup": 0, "images": []},
        "inputs": [{"name": "capital.wav", "reference": CAPITAL.reference, "duration_s": 2.0}],
        "clusters": {HF: {"summary": summarise(turns), "turns": turns}},
    }
    assert [p.name for p in write_report(run, tmp_path)] == ["report.md"]
    report = (tmp_path / "report.md").read_text()
    assert f"| `{HF}` | 0/1 | 1 |" in report
    assert "| no answer | 1 | ConnectError: connection refused | capital.wav |" in report


def test_turns_nobody_answers_are_failures_in_the_results(tmp_path):
    """The whole command against a port where nothing listens: every turn fails, the run still writes its files."""
    port = free_port()
    audio = tmp_path / "audio"
    audio.mkdir()
    write_tone(audio / "tone.wav")
    (audio / "tone.txt").write_text("A tone.")
    out = tmp_path / "results"
    main(
        [
            "--url",
            f"http://127.0.0.1:{port}",
            "--audio",
            str(audio),
            "--clusters",
            f"{HF},{Q}",
            "--rounds",
            "2",
            "--concurrency",
            "2",
            "--warmup",
            "1",
            "--out",
            str(out),
        ]
    )
    run = json.loads((out / "bench.json").read_text())
    assert list(run["clusters"]) == [HF, Q]
    for result in run["clusters"].values():
        assert [(t["round"], t["status"], t["ok"]) for t in result["turns"]] == [(1, None, False), (2, None, False)]
        assert result["summary"]["failed"] == 2 and result["summary"]["wer"] is None
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "report.md"]
    assert f"| `{Q}` | 0/2 | 2 |" in (out / "report.md").read_text()
