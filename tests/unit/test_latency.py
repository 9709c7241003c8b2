import time

import pytest

from graphs.observability.latency import FirstAudio, idle_time, overhead_s, spread, stage_profile, turn_summary
from omniwire.frames import MetricsFrame, TTSAudioFrame
from omniwire.profile import model_time, transfer_time


def test_model_plus_transfer_is_the_round_trip():
    p = stage_profile(ts_start=100.0, round_trip_s=0.5, model_s=0.4, ts_model_start=100.03)
    assert p["model_inference"] == pytest.approx(0.4)
    assert p["transfer_in"] == pytest.approx(0.03)
    assert p["transfer_out"] == pytest.approx(0.07)
    assert model_time(p) + transfer_time(p) == pytest.approx(p["ts_end"] - p["ts_start"], abs=1e-5)
    assert p["ts_start"] <= p["ts_model_start"] <= p["ts_model_end"] <= p["ts_end"]


def test_clock_skew_cannot_make_transfer_negative():
    ahead = stage_profile(ts_start=100.0, round_trip_s=0.5, model_s=0.4, ts_model_start=99.0)
    behind = stage_profile(ts_start=100.0, round_trip_s=0.5, model_s=0.4, ts_model_start=105.0)
    for p in (ahead, behind):
        assert p["transfer_in"] >= 0 and p["transfer_out"] >= 0
        assert model_time(p) + transfer_time(p) == pytest.approx(0.5)


def test_model_time_longer_than_round_trip_is_capped():
    p = stage_profile(ts_start=0.0, round_trip_s=0.2, model_s=0.25, ts_model_start=0.0)
    assert p["model_inference"] == pytest.approx(0.2) and transfer_time(p) == 0


def test_turn_summary_and_overhead():
    a = stage_profile(10.0, 1.0, 0.9, 10.05)
    b = stage_profile(11.5, 2.0, 1.6, 11.6)  # 0.5 s of orchestration between the stages
    s = turn_summary([a, b])
    assert s["model_s"] == pytest.approx(2.5)
    assert s["transfer_s"] == pytest.approx(0.5)
    assert s["end_to_end_s"] == pytest.approx(3.5)
    assert s["overhead_s"] == pytest.approx(1.0), "0.5 s of transfer and 0.5 s with no stage running"
    assert s["overhead_ratio"] == pytest.approx(1.0 / 3.5)
    assert turn_summary([]) == {}


def test_overlapping_stages_are_not_counted_twice():
    llm = stage_profile(0.0, 2.0, 1.9, 0.05)
    tts = {
        "model_inference": 0.6,
        "transfer_in": 0.1,
        "transfer_out": 0.0,
        "wait_upstream": 1.3,
        "ts_start": 1.0,
        "ts_end": 3.0,
    }  # speaks the first sentence while the LLM still writes
    assert idle_time([llm, tts], 0.0, 3.0) == pytest.approx(0.0)
    assert idle_time([llm, tts], -0.5, 3.5) == pytest.approx(1.0)
    assert overhead_s([llm, tts], 0.0, 3.0) == pytest.approx(0.1 + 0.1)


def test_spread_has_min_median_p95_max():
    assert spread([float(v) for v in range(1, 21)]) == {
        "min": 1.0,
        "median": 10.5,
        "p95": pytest.approx(19.05),
        "max": 20.0,
    }
    assert spread([0.3]) == {"min": 0.3, "median": 0.3, "p95": 0.3, "max": 0.3}
    assert spread([2.0, 1.0]) == {"min": 1.0, "median": 1.5, "p95": pytest.approx(1.95), "max": 2.0}
    assert spread([]) is None


def test_time_to_first_audio_runs_from_the_end_of_speech_to_the_first_audio_out():
    clock = FirstAudio(speech_ended_at=time.time() - 0.5)
    clock.stamp(MetricsFrame(stage="llm", metrics={}))
    clock.stamp(TTSAudioFrame(audio=b"\0\0", sample_rate=16000))
    first = clock.at
    clock.stamp(TTSAudioFrame(audio=b"\0\0", sample_rate=16000))
    assert clock.at == first, "only the first audio counts"
    closing = MetricsFrame(stage=None, metrics={"total_reply_s": 1.0})
    clock.stamp(closing)
    assert 0.5 <= closing.metrics["time_to_first_audio_s"] < 1.5
    silent = FirstAudio(time.time())
    closing = MetricsFrame(stage=None, metrics={})
    silent.stamp(closing)
    assert "time_to_first_audio_s" not in closing.metrics, "a turn with no audio has no figure"
