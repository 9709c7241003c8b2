"""Audio as it travels: any file soundfile reads decoded to mono float32, PCM16 on the wire, WAV
and the OpenAI speech formats out."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

MODEL_RATE = 16_000


MEDIA_TYPES = {"WAV": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg"}


class AudioError(ValueError):
    pass


class AudioTooLong(AudioError):
    pass


class AudioTruncated(AudioError):
    """The file is of a known format but holds less than its header promises."""


@dataclass
class DecodedAudio:
    samples: np.ndarray  # mono float32 at `rate`
    rate: int  # the target rate, or the file's own where none was asked for
    source_rate: int
    media_type: str


def decode(
    data: bytes | str | Path, target_rate: int | None = MODEL_RATE, max_seconds: float | None = None
) -> DecodedAudio:
    """Any channel count and rate, from bytes or a file; the length is checked before anything is decoded."""
    if isinstance(data, bytes) and not data:
        raise AudioError("the audio file is empty")
    if isinstance(data, bytes):
        _check_wav_length(data)
    try:
        with sf.SoundFile(io.BytesIO(data) if isinstance(data, bytes) else data) as f:
            rate, fmt = f.samplerate, f.format
            seconds = f.frames / rate
            if max_seconds is not None and seconds > max_seconds:
                raise AudioTooLong(f"{seconds:.1f} s is longer than the {max_seconds:g} s limit")
            samples = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"could not decode the audio (WAV, FLAC or OGG expected): {exc}") from None
    if samples.shape[0] == 0:
        raise AudioError("the audio file has no samples")
    mono = samples.mean(axis=1)
    if target_rate and rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate)
    media_type = MEDIA_TYPES.get(fmt, "application/octet-stream")
    return DecodedAudio(np.ascontiguousarray(mono, dtype=np.float32), target_rate or rate, rate, media_type)


def _check_wav_length(data: bytes) -> None:
    """libsndfile reads a WAV cut short without a word: compare its data chunk's size with what is there."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    at = 12
    while at + 8 <= len(data):
        chunk, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        if chunk == b"data":
            held = len(data) - at - 8
            if size != 0xFFFFFFFF and size > held:  # 0xFFFFFFFF: a stream whose writer could not know the size
                raise AudioTruncated(
                    f"truncated audio: the WAV header says {size} bytes of samples, the file holds {held}"
                )
            return
        at += 8 + size + (size & 1)
    raise AudioTruncated("truncated audio: the WAV file ends before its data chunk")


def to_pcm16(samples: np.ndarray) -> bytes:
    """Float audio as the wire's raw audio: 16-bit little-endian PCM."""
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    """The wire's raw audio back to float32 (a trailing odd byte is ignored)."""
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32767


def encode_wav(samples: np.ndarray, rate: int) -> bytes:
    return encode(samples, rate, "wav")[0]


def pcm16_wav(pcm: bytes, rate: int) -> bytes:
    """Raw audio (PCM16, mono) as a WAV file, the samples as they are: no round trip through float."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm[: len(pcm) // 2 * 2])
    return buffer.getvalue()


# The OpenAI speech formats soundfile can write: (container, subtype, sample rate, media type).
# Opus and raw PCM take OpenAI's 24 kHz; the others keep the voice's own rate.
OUTPUT_FORMATS: dict[str, tuple[str | None, str | None, int | None, str]] = {
    "wav": ("WAV", "PCM_16", None, "audio/wav"),
    "flac": ("FLAC", "PCM_16", None, "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", None, "audio/mpeg"),
    "opus": ("OGG", "OPUS", 24_000, "audio/ogg"),
    "pcm": (None, None, 24_000, "audio/pcm"),
}


def encode(samples: np.ndarray, rate: int, fmt: str) -> tuple[bytes, str]:
    """Encode mono float32 audio as one of OUTPUT_FORMATS; returns (bytes, media type)."""
    container, subtype, out_rate, media_type = OUTPUT_FORMATS[fmt]
    if out_rate and out_rate != rate:
        samples, rate = soxr.resample(samples, rate, out_rate), out_rate
    if container is None:  # raw signed 16-bit little-endian
        return to_pcm16(samples), media_type
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=container, subtype=subtype)
    return buffer.getvalue(), media_type
