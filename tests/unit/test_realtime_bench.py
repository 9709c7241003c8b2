"""bench.realtime's own arithmetic: where speech ends in a recording, and a turn's critical path."""

import numpy as np
import pytest

from bench.realtime import first_audio_over_total, pause_after_speech_s, stage_breakdown
from bench.speech import speak, speech_end
from graphs.live.vad import VADSettings
from omniwire.audio import decode


def test_speech_ends_where_the_last_loud_10_ms_ends():
    audio = np.concatenate([np.zeros(1600), 0.3 * np.ones(16_000), 0.001 * np.ones(8000)]).astype(np.float32)
    assert speech_end(audio) == pytest.approx(1.1, abs=0.011)
    assert speech_end(np.zeros(3200, np.float32)) == pytest.approx(0.2)


def test_the_critical_path_follows_the_piped_stage():
    stt = {"ts_start": 100.0, "ts_end": 100.3}
    llm = {"ts_start": 100.31, "ts_end": 101.5, "ttfb_s": 0.5}
    tts = {"ts_start": 101.1, "ts_end": 102.0, "ttfb_s": 0.2, "wait_upstream": 0.4}
    tasks = [{"latency_profile": p} for p in (stt, llm, tts)]
    assert stage_breakdown(tasks) == pytest.approx(
        {"stt_s": 0.3, "llm_first_token_s": 0.5, "first_chunk_s": 0.79, "tts_first_audio_s": 0.2}
    )


def test_first_audio_over_the_whole_reply_counts_from_the_end_of_speech():
    streamed = {"time_to_first_audio_s": 0.6, "turn_started_after_s": 0.1, "total_reply_s": 1.9}
    assert first_audio_over_total(streamed) == pytest.approx(0.3)
    # Made while the end of the turn was still being decided: all of it goes out at the commit.
    held = {"time_to_first_audio_s": 1.0, "turn_started_after_s": 0.1, "total_reply_s": 0.7}
    assert first_audio_over_total(held) == 1.0


def test_the_floors_pause_is_the_vads_own_after_the_last_words():
    """The floor waits for the VAD as the server does: the pause after the true end of speech plus
    the time the VAD takes to hear silence, and only the last pause counts."""
    question = decode(speak("What is the capital city of France?")).samples
    pause_s = VADSettings().pause_ms / 1000
    after = pause_after_speech_s(question)
    assert pause_s <= after < pause_s + 0.2
    halting = np.concatenate([decode(speak("Well")).samples, np.zeros(12_000, np.float32), question])
    assert pause_after_speech_s(halting) == pytest.approx(after, abs=0.04), "the pause after 'Well' is not the end"
