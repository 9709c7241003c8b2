"""python -m bench.evaluate against the session's server: a folder of real speech through two clusters at once."""

import io
import json

import matplotlib.image
import numpy as np
import soundfile as sf

from bench.evaluate import main
from bench.report import END_TO_END_PLOT, FIRST_AUDIO_PLOT, STAGES_PLOT
from bench.speech import speak

CLUSTERS = ["CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION", "CLUSTER_Q_ETE_CONVERSATION"]
SPOKEN = {
    "capital.wav": "What is the capital city of France?",
    "ocean.wav": "Tell me something interesting about the ocean.",
}


def test_bench_compares_two_clusters_on_a_folder_of_speech(server, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for name, text in SPOKEN.items():
        (audio / name).write_bytes(speak(text))
        (audio / name).with_suffix(".txt").write_text(text)
    silence = io.BytesIO()
    sf.write(silence, np.zeros(16_000, np.float32), 16_000, format="WAV")
    (audio / "silence.wav").write_bytes(silence.getvalue())  # refused with 422: a failure to report, not a crash
    out = tmp_path / "results"

    main(
        [
            "--url",
            server.url,
            "--audio",
            str(audio),
            "--clusters",
            *CLUSTERS,
            "--rounds",
            "1",
            "--concurrency",
            "2",
            "--warmup",
            "0",
            "--out",
            str(out),
        ]
    )

    run = json.loads((out / "bench.json").read_text())
    assert list(run["clusters"]) == CLUSTERS
    assert [u["name"] for u in run["inputs"]] == ["capital.wav", "ocean.wav", "silence.wav"]
    for cluster in CLUSTERS:
        turns, summary = run["clusters"][cluster]["turns"], run["clusters"][cluster]["summary"]
        assert [(t["audio"], t["status"]) for t in turns] == [
            ("capital.wav", 200),
            ("ocean.wav", 200),
            ("silence.wav", 422),
        ]
        assert (summary["completed"], summary["failed"]) == (2, 1)
        assert summary["failures"] == [
            {"audio": "silence.wav", "round": 1, "status": 422, "detail": "no speech recognised in the audio"}
        ]
        assert "speech_to_text" in summary["stages"] and "text_to_speech" in summary["stages"]
        assert 0 < summary["time_to_first_audio_s"]["median"] < summary["end_to_end_s"]["median"]
        assert summary["wer"]["turns"] == 2 and summary["wer"]["wer"] < 0.5, turns

    report = (out / "report.md").read_text()
    for cluster in CLUSTERS:
        assert f"## `{cluster}`" in report and f"| `{cluster}` | 2/3 | 1 |" in report
    assert "| 422 | 1 | no speech recognised in the audio | silence.wav |" in report
    for name in (STAGES_PLOT, END_TO_END_PLOT, FIRST_AUDIO_PLOT):
        assert f"]({name})" in report
        assert matplotlib.image.imread(out / name).ndim == 3
