import io

import numpy as np
import pytest
import soundfile as sf

from omniwire.audio import MODEL_RATE, AudioError, AudioTooLong, decode, encode, encode_wav


def tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono] * channels, axis=1).astype(np.float32)


@pytest.mark.parametrize(
    "fmt,rate,channels", [("WAV", 44_100, 2), ("FLAC", 22_050, 1), ("OGG", 48_000, 2), ("WAV", 8_000, 1)]
)
def test_any_rate_and_channel_count_becomes_16k_mono(fmt, rate, channels):
    buffer = io.BytesIO()
    sf.write(buffer, tone(rate, 1.5, channels), rate, format=fmt)
    decoded = decode(buffer.getvalue())
    samples = decoded.samples
    assert decoded.source_rate == rate
    assert decoded.media_type == f"audio/{fmt.lower()}"
    assert samples.ndim == 1 and samples.dtype == np.float32
    assert abs(len(samples) - 1.5 * MODEL_RATE) <= MODEL_RATE * 0.01
    # the 440 Hz tone survives resampling
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.fft.rfftfreq(len(samples), 1 / MODEL_RATE)[spectrum.argmax()] == pytest.approx(440, abs=2)


def test_length_is_checked_before_decoding():
    buffer = io.BytesIO()
    sf.write(buffer, tone(8000, 3.0, 1), 8000, format="WAV")
    with pytest.raises(AudioTooLong, match="3.0 s is longer than the 2 s limit"):
        decode(buffer.getvalue(), max_seconds=2)
    assert len(decode(buffer.getvalue(), max_seconds=3.5).samples) == 3 * MODEL_RATE


def test_empty_and_undecodable_input():
    with pytest.raises(AudioError, match="empty"):
        decode(b"")
    with pytest.raises(AudioError, match="could not decode the audio"):
        decode(b"this is a text file, not audio")


def test_encode_wav_round_trips():
    samples = tone(22_050, 0.5, 1)[:, 0]
    back, rate = sf.read(io.BytesIO(encode_wav(samples, 22_050)), dtype="float32")
    assert rate == 22_050 and len(back) == len(samples)
    assert np.max(np.abs(back - samples)) < 1e-3


@pytest.mark.parametrize("fmt,rate", [("wav", 22_050), ("flac", 22_050), ("mp3", 22_050), ("opus", 24_000)])
def test_every_speech_format_decodes_back(fmt, rate):
    samples = tone(22_050, 1.0, 1)[:, 0]
    data, media_type = encode(samples, 22_050, fmt)
    assert media_type.startswith("audio/")
    back, back_rate = sf.read(io.BytesIO(data), dtype="float32")
    assert back_rate == rate
    assert abs(len(back) / back_rate - 1.0) < 0.1
    spectrum = np.abs(np.fft.rfft(back))
    assert np.fft.rfftfreq(len(back), 1 / back_rate)[spectrum.argmax()] == pytest.approx(440, abs=3)


def test_raw_pcm_is_24khz_16bit():
    data, media_type = encode(tone(22_050, 1.0, 1)[:, 0], 22_050, "pcm")
    assert media_type == "audio/pcm" and len(data) == 2 * 24_000


def test_a_wav_cut_short_says_it_is_truncated():
    whole = encode_wav(np.zeros(16_000, dtype=np.float32), 16_000)
    with pytest.raises(
        AudioError, match=r"truncated audio: the WAV header says 32000 bytes of samples, the file holds 20000"
    ):
        decode(whole[: len(whole) - 12_000])
    with pytest.raises(AudioError, match="ends before its data chunk"):
        decode(whole[:30])
    assert len(decode(whole).samples) == 16_000
