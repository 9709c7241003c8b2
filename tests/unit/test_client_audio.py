"""The client's file-backed microphone and speaker: chunking, real-time pacing, turn-taking cues,
playback buffering and interruption, with no audio hardware and no server."""

import time

import numpy as np
import pytest
import soundfile as sf

from client.audio import FileSink, FileSource, PlaybackBuffer
from client.talk import TurnTaking
from omniwire.audio import from_pcm16, to_pcm16

RATE = 16_000
CHUNK = 320  # 20 ms at 16 kHz


def tone(seconds: float, rate: int = RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture
def recording(tmp_path):
    def write(seconds: float, rate: int = RATE, name: str = "speech.wav", fmt: str = "WAV"):
        path = tmp_path / name
        sf.write(path, tone(seconds, rate), rate, format=fmt)
        return path

    return write


def read_chunks(source: FileSource, n: int) -> list[bytes]:
    return [source.read() for _ in range(n)]


def test_a_file_is_sent_in_equal_chunks_then_silence(recording):
    source = FileSource([recording(0.21)])  # not a whole number of chunks
    with source:
        chunks = read_chunks(source, 15)
    assert {len(c) for c in chunks} == {2 * CHUNK}
    sent = from_pcm16(b"".join(chunks))
    assert np.abs(sent[:3000]).max() > 0.4, "the recording comes first"
    assert np.allclose(sent[:3360], from_pcm16(to_pcm16(tone(0.21)))[:3360], atol=1e-4)
    assert not sent[11 * CHUNK :].any(), "the last chunk is padded, then only silence"
    assert source.finished_at is not None


def test_other_rates_and_formats_are_resampled_to_the_send_rate(recording):
    source = FileSource([recording(0.5, rate=44_100, name="speech.flac", fmt="FLAC")])
    assert len(source.utterances[0]) == pytest.approx(0.5 * RATE, abs=CHUNK)
    assert len(source.utterances[0]) % CHUNK == 0


def test_chunks_come_at_real_time_pace(recording):
    source = FileSource([recording(0.3)])
    with source:
        started = time.perf_counter()
        read_chunks(source, 25)  # 0.5 s of audio: the recording, then silence
        elapsed = time.perf_counter() - started
    # Never ahead of the clock; behind it only by what a busy machine's scheduler may hold a thread up.
    assert 0.48 <= elapsed < 1.5


def test_the_next_file_waits_for_its_cue(recording):
    cue = {"go": False}
    source = FileSource([recording(0.1, name="a.wav"), recording(0.1, name="b.wav")], may_start=lambda ended: cue["go"])
    with source:
        first = read_chunks(source, 5)
        waiting = read_chunks(source, 10)
        assert source.finished_at is None, "one file is still to say"
        cue["go"] = True
        second = read_chunks(source, 5)
    assert all(any(c) for c in first) and not any(any(c) for c in waiting)
    assert all(any(c) for c in second)
    assert source.finished_at is not None and source.finished_at <= time.monotonic()


def test_a_stopped_source_gives_nothing(recording):
    source = FileSource([recording(0.1)])
    source.start()
    source.stop()
    assert source.read() == b""


def test_the_playback_buffer_hands_out_in_order_and_drops_on_clear():
    buffer = PlaybackBuffer()
    buffer.push(np.arange(5, dtype=np.float32))
    buffer.push(np.arange(5, 10, dtype=np.float32))
    assert buffer.take(3).tolist() == [0, 1, 2]
    assert buffer.take(4).tolist() == [3, 4, 5, 6]
    assert buffer.pending == 3
    assert buffer.clear() == 3 and buffer.pending == 0 and len(buffer.take(4)) == 0


def test_the_file_sink_plays_at_real_time_pace_and_writes_what_it_played(tmp_path):
    path = tmp_path / "reply.wav"
    reply = tone(0.4, 22_050)
    with FileSink(path) as sink:
        started = time.perf_counter()
        sink.play(to_pcm16(reply), 22_050)
        assert sink.playing
        assert sink.drain(timeout=5)
        elapsed = time.perf_counter() - started
    assert 0.38 <= elapsed < 1.4  # never ahead of the clock, and not far behind it even on a busy machine
    written, rate = sf.read(path, dtype="float32")
    assert rate == 22_050 and len(written) == len(reply)
    assert np.allclose(written, from_pcm16(to_pcm16(reply)), atol=1e-4)


def test_an_interruption_stops_playback_at_once_and_drops_the_rest(tmp_path):
    path = tmp_path / "reply.wav"
    with FileSink(path) as sink:
        sink.play(to_pcm16(tone(2.0, 22_050)), 22_050)
        time.sleep(0.3)
        dropped = sink.interrupt()
        assert not sink.playing and sink.drain(timeout=0)
        played = sink.played
        time.sleep(0.1)
        assert sink.played == played, "nothing more is played"
        assert played + dropped == sink.received == 2 * 22_050
        assert 0.2 * 22_050 < played < 0.6 * 22_050
        sink.play(to_pcm16(tone(0.1, 22_050)), 22_050)  # the next reply plays as usual
        assert sink.drain(timeout=5)
    written, _ = sf.read(path, dtype="float32")
    assert len(written) == played + int(0.1 * 22_050)


def test_the_sink_keeps_the_first_rate_and_resamples_the_rest(tmp_path):
    with FileSink(tmp_path / "reply.wav") as sink:
        sink.play(to_pcm16(tone(0.1, 22_050)), 22_050)
        sink.play(to_pcm16(tone(0.1, 24_000)), 24_000)
        assert sink.rate == 22_050 and sink.received == pytest.approx(0.2 * 22_050, abs=2)
        assert sink.drain(timeout=5)


def test_turn_taking_waits_for_the_reply_to_play(tmp_path):
    with FileSink(tmp_path / "reply.wav") as sink:
        turns = TurnTaking(sink, settle_s=0.5)
        spoken = time.monotonic()
        assert not turns.may_speak(spoken), "the reply has not come yet"
        turns.turn_started()
        turns.reply_audio_started()
        sink.play(to_pcm16(tone(0.2, 22_050)), 22_050)
        turns.turn_ended()
        assert not turns.may_speak(spoken), "the reply is still playing"
        assert sink.drain(timeout=5)
        assert turns.may_speak(spoken) and turns.replied(spoken)


def test_turn_taking_moves_on_when_no_reply_comes(tmp_path):
    with FileSink(tmp_path / "reply.wav") as sink:
        turns = TurnTaking(sink, settle_s=0.2)
        spoken = time.monotonic()
        assert not turns.may_speak(spoken)
        time.sleep(0.25)
        assert turns.may_speak(spoken)


def test_barge_in_speaks_over_the_reply(tmp_path):
    with FileSink(tmp_path / "reply.wav") as sink:
        turns = TurnTaking(sink, settle_s=5, barge_in_s=0.2)
        spoken = time.monotonic()
        turns.turn_started()
        sink.play(to_pcm16(tone(2.0, 22_050)), 22_050)
        turns.reply_audio_started()
        assert not turns.may_speak(spoken)
        time.sleep(0.25)
        assert turns.may_speak(spoken) and not turns.replied(spoken), "mid-reply: only a barge-in may start"
        sink.interrupt()
