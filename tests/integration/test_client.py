"""omni-client against the default serve config: recordings sent over HTTP, live talk over the
WebSocket through the file-backed microphone and speaker, barge-in, traces and clear failures."""

import re

import cv2
import numpy as np
import pytest
import soundfile as sf

from bench.speech import speak
from client.cli import main
from tests.client_alone import run_client
from tests.integration.test_conversation import stages_of, voiced_seconds, words
from tests.pictures import sign
from tests.ports import free_port

CLUSTER = "CLUSTER_HF_ETE_CONVERSATION"
STAGES = ["speech_to_text", "emotion_detection", "hf_llm", "text_to_speech"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recordings")
    said = {
        "capital.wav": speak("What is the capital city of France?"),
        "weather.flac": speak("How is the weather today?", fmt="FLAC"),
        "story.wav": speak("Tell me a long story about a brave dragon who lived in the mountains."),
        "stop.wav": speak("Stop, tell me about the weather instead."),
        "sign.wav": speak("What does this sign say?"),
    }
    for name, data in said.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def sign_video(tmp_path_factory):
    """Three seconds of a camera pointed at a shop sign."""
    path = tmp_path_factory.mktemp("video") / "sign.avi"
    picture = cv2.imdecode(np.frombuffer(sign(), np.uint8), cv2.IMREAD_COLOR)
    height, width = picture.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    for _ in range(30):
        writer.write(picture)
    writer.release()
    return path


@pytest.fixture
def cli(server, capsys, monkeypatch):
    """Runs omni-client in this process against the test server; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps to this width when output is not a terminal

    def run(*args: str, url: str = server.url) -> tuple[int, str, str]:
        code = main(["--url", url, *map(str, args)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def track_id_in(out: str) -> str:
    return re.search(r"track (T-\S+)", out).group(1)


def tasks_of(server, track_id: str) -> list[dict]:
    return server.http.get(f"/v1/tracks/{track_id}").json()["tasks"]


def answered_turns(server, track_id: str) -> list[int]:
    """The track's turns in order, without those started on a pause and dropped when the user went on."""
    tasks = tasks_of(server, track_id)
    discarded = {t["turn"] for t in tasks if t["result_profile"].get("discarded")}
    return sorted({t["turn"] for t in tasks} - discarded)


def reply_durations(server, track_id: str) -> dict[int, float]:
    audio = server.http.get(f"/v1/tracks/{track_id}").json()["audio"]
    return {a["turn"]: a["duration_s"] for a in audio if a["role"] == "reply"}


def test_send_a_wav_and_a_flac_on_one_track(cli, server, recordings, tmp_path):
    code, out, err = cli(
        "send", recordings / "capital.wav", recordings / "weather.flac", "--track-cluster", CLUSTER, "--save", tmp_path
    )
    assert code == 0, err
    assert {"capital", "city", "france", "weather", "today"} <= words(out)
    assert "emotion:" in out and "agent:" in out
    assert all(stage in out for stage in STAGES) and "round trip (client)" in out, "the latency table"
    track_id = track_id_in(out)
    assert [t["status"] for t in tasks_of(server, track_id)] == ["completed"] * 8, "two turns on one track"
    saved = sorted(tmp_path.glob("*.wav"))
    assert [p.name for p in saved] == ["01-capital-reply.wav", "02-weather-reply.wav"]
    for path in saved:
        samples, rate = sf.read(path, dtype="float32")
        assert voiced_seconds(samples, rate) > 0.5


def test_send_streams_the_turn_as_it_happens(cli, recordings, tmp_path):
    code, out, err = cli("send", recordings / "capital.wav", "--stream", "--save", tmp_path)
    assert code == 0, err
    assert {"capital", "france"} <= words(out) and "agent:" in out
    assert "time to first audio" in out and "total reply" in out and "quantization_llm" in out
    assert track_id_in(out).startswith("T-CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION-"), "the default cluster"
    (saved,) = tmp_path.glob("*.wav")
    samples, rate = sf.read(saved, dtype="float32")
    assert voiced_seconds(samples, rate) > 0.5


def test_talk_takes_turns_on_one_track(cli, server, recordings, tmp_path):
    output = tmp_path / "played.wav"
    code, out, err = cli(
        "talk",
        "--track_cluster",
        CLUSTER,
        "--input",
        recordings / "capital.wav",
        recordings / "weather.flac",
        "--output",
        output,
    )
    assert code == 0, err
    assert {"capital", "france", "weather", "today"} <= words(out)
    assert out.count("time to first audio") == 2, "a latency table at each turn's end"
    track_id = track_id_in(out)
    turns = answered_turns(server, track_id)
    assert len(turns) == 2
    answered = [t for t in tasks_of(server, track_id) if t["turn"] in turns]
    assert [t["status"] for t in answered] == ["completed"] * 8
    played, rate = sf.read(output, dtype="float32")
    replies = reply_durations(server, track_id)
    assert len(played) / rate == pytest.approx(sum(replies[n] for n in turns), abs=0.05), "both replies played in full"
    assert voiced_seconds(played, rate) > 0.5

    code, out, err = cli("talk", "--track-id", track_id, "--input", recordings / "weather.flac", "--output", output)
    assert code == 0, err
    assert track_id_in(out) == track_id and {t["turn"] for t in tasks_of(server, track_id)} == {1, 2, 3}


def test_speaking_over_the_reply_stops_playback(cli, server, recordings, tmp_path):
    output = tmp_path / "played.wav"
    code, out, err = cli(
        "talk",
        "--track-cluster",
        CLUSTER,
        "--input",
        recordings / "story.wav",
        recordings / "stop.wav",
        "--barge-in",
        "0.5",
        "--output",
        output,
    )
    assert code == 0, err
    played_s, received_s = map(float, re.search(r"interrupted: played ([\d.]+) s of ([\d.]+) s", out).groups())
    assert played_s < received_s, "buffered reply audio was dropped"
    assert 0.3 < played_s < 3.0, "playback stopped soon after the user spoke"
    track_id = track_id_in(out)
    turns = answered_turns(server, track_id)
    # The story may be answered in two turns where Smart Turn heard its end at a pause; the one spoken over is cut.
    interrupted = [n for n in turns if stages_of(server, track_id, n)["text_to_speech"]["status"] == "cancelled"]
    assert len(interrupted) == 1 and interrupted[0] < turns[-1]
    second_turn = turns[-1]
    second = stages_of(server, track_id, second_turn)
    assert [t["status"] for t in second.values()] == ["completed"] * 4
    assert {"weather"} <= words(second["speech_to_text"]["result_profile"]["transcript"])
    played, rate = sf.read(output, dtype="float32")
    assert len(played) / rate == pytest.approx(played_s + reply_durations(server, track_id)[second_turn], abs=0.1)


def test_pictures_from_a_camera_and_a_video_reach_the_vision_cluster(cli, server, recordings, sign_video, tmp_path):
    vision = "CLUSTER_HF_VISION_ETE_CONVERSATION"
    code, out, err = cli(
        "talk",
        "--track-cluster",
        vision,
        "--input",
        recordings / "sign.wav",
        "--camera",
        sign_video,
        "--output",
        tmp_path / "played.wav",
    )
    assert code == 0, err
    code, sent, err = cli("send", recordings / "sign.wav", "--track-cluster", vision, "--video", sign_video)
    assert code == 0, err
    for track_id in (track_id_in(out), track_id_in(sent)):
        image2text = stages_of(server, track_id)["image2text"]
        assert {"open", "24", "hours"} <= words(image2text["result_profile"]["image_text"])


def test_trace_prints_the_tracks_tasks(cli, recordings):
    code, out, _ = cli("send", recordings / "capital.wav", "--track-cluster", CLUSTER)
    assert code == 0
    code, out, err = cli("trace", track_id_in(out))
    assert code == 0, err
    assert all(stage in out for stage in STAGES) and "completed" in out and "end to end" in out


def test_clusters_says_which_run(cli):
    code, out, _ = cli("clusters")
    assert code == 0
    line = next(line for line in out.splitlines() if "CLUSTER_VOICE_ETE_CONVERSATION" in line)
    assert " no " in line and "not listed in enabled_clusters" in line
    assert re.search(rf"{CLUSTER}\s*│\s*yes", out)


def test_a_disabled_cluster_is_named_with_the_servers_reason(cli, recordings, tmp_path):
    disabled = "CLUSTER_VOICE_ETE_CONVERSATION"
    for command in (
        ["send", recordings / "capital.wav"],
        ["talk", "--input", recordings / "capital.wav", "--output", tmp_path / "played.wav"],
    ):
        code, out, err = cli(*command, "--track-cluster", disabled)
        assert code == 1
        assert f"cluster {disabled} is not enabled in this deployment" in err and "HTTP 503" in err
        assert "Traceback" not in out + err


def test_an_unreachable_server_is_named(cli, recordings, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    for command in (
        ["clusters"],
        ["send", recordings / "capital.wav"],
        ["talk", "--input", recordings / "capital.wav", "--output", tmp_path / "played.wav"],
    ):
        code, out, err = cli(*command, url=url)
        assert code == 3
        assert f"cannot reach the OmniServe server at {url}: connection refused" in err
        assert "Traceback" not in out + err


def test_bad_input_is_explained(cli, recordings, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not audio")
    code, _, err = cli("send", text)
    assert code == 2 and "notes.txt is not audio soundfile can read" in err
    code, _, err = cli("send", recordings / "capital.wav", "--image", text)
    assert code == 1 and "is not a readable image" in err and "HTTP 415" in err
    code, _, err = cli("trace", "T-nope")
    assert code == 1 and "HTTP 400" in err
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(16_000, np.float32), 16_000)
    code, out, err = cli("send", silence)
    assert code == 1 and "HTTP 422" in out + err
    assert "Traceback" not in out + err


def test_the_client_alone_holds_a_conversation(server, recordings, sign_video, tmp_path):
    """No server package importable: a spoken turn and a live one, with a camera, end to end."""
    sent = run_client("--url", server.url, "send", recordings / "capital.wav", "--track-cluster", CLUSTER)
    assert sent.returncode == 0, sent.stderr
    assert {"capital", "france"} <= words(sent.stdout) and "agent:" in sent.stdout
    vision = "CLUSTER_HF_VISION_ETE_CONVERSATION"
    talked = run_client(
        "--url",
        server.url,
        "talk",
        "--track-cluster",
        vision,
        "--input",
        recordings / "sign.wav",
        "--camera",
        sign_video,
        "--output",
        tmp_path / "played.wav",
    )
    assert talked.returncode == 0, talked.stderr
    image2text = stages_of(server, track_id_in(talked.stdout))["image2text"]
    assert {"open", "24", "hours"} <= words(image2text["result_profile"]["image_text"]), "the camera's picture"
