import pytest

from graphs.latency import idle_time, model_time, overhead_s, stage_profile, transfer_time, turn_summary


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
    tts = {"model_inference": 0.6, "transfer_in": 0.1, "transfer_out": 0.0, "wait_upstream": 1.3,
           "ts_start": 1.0, "ts_end": 3.0}  # speaks the first sentence while the LLM still writes
    assert idle_time([llm, tts], 0.0, 3.0) == pytest.approx(0.0)
    assert idle_time([llm, tts], -0.5, 3.5) == pytest.approx(1.0)
    assert overhead_s([llm, tts], 0.0, 3.0) == pytest.approx(0.1 + 0.1)
