"""Where a live conversation's audio comes from and where the reply goes.

An `AudioSource` hands out fixed-size PCM16 chunks as they are spoken; an `AudioSink` buffers
reply audio and plays it at real-time pace, and `interrupt` drops whatever is still buffered.
The microphone and the speaker are one pair; files are the other, going through the same
chunking, pacing and buffering, so a conversation can be held (and tested) with no audio
hardware. sounddevice is imported only by the hardware pair, so the rest works without PortAudio.
"""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from omniwire.audio import decode, from_pcm16, to_pcm16

SEND_RATE = 16_000  # what the server's VAD and Whisper work at
CHUNK_S = 0.02


class AudioDeviceError(RuntimeError):
    """No usable microphone or speaker (PortAudio missing, no such device)."""


def _sounddevice():
    try:
        import sounddevice
    except ImportError:  # a client installed without its dependencies, or with --no-deps
        raise AudioDeviceError(
            "no audio devices: the sounddevice package is not installed (pip install sounddevice); "
            "use files instead (--input / --output)"
        ) from None
    except OSError as exc:  # raised when the PortAudio library itself is missing
        raise AudioDeviceError(f"no audio devices: {exc}; use files instead (--input / --output)") from None
    return sounddevice


class RealTimePace:
    """Real-time pace for recorded audio, as a microphone or a sound card keeps it: the n-th `wait`
    after `start` returns n chunk lengths after it, however long the work between took."""

    def __init__(self, chunk_s: float):
        self.chunk_s = chunk_s
        self._started: float | None = None  # time.perf_counter()
        self._chunks = 0

    def start(self) -> None:
        self._started, self._chunks = time.perf_counter(), 0

    def wait(self) -> None:
        """Until one chunk length more has passed; the first call starts the clock if `start` was not called."""
        if self._started is None:
            self.start()
        self._chunks += 1
        time.sleep(max(0.0, self._started + self._chunks * self.chunk_s - time.perf_counter()))


class AudioSource(ABC):
    """Microphone audio: PCM16 mono chunks of `chunk_samples` at `rate`, each handed out once spoken."""

    def __init__(self, rate: int, chunk_s: float):
        self.rate = rate
        self.chunk_samples = round(rate * chunk_s)
        self.chunk_s = self.chunk_samples / rate

    def __enter__(self) -> AudioSource:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    @abstractmethod
    def read(self) -> bytes:
        """The next chunk, blocking until it has been spoken; empty once the source is stopped."""

    @property
    def finished_at(self) -> float | None:
        """When (time.monotonic) the last of what this source had to say was sent; None while it has more."""
        return None


class FileSource(AudioSource):
    """Recorded utterances spoken into the conversation as a microphone would: at real-time pace,
    one file after another, silence between them and after the last.

    `may_start(ended)` says whether the next file may start, given when (time.monotonic) the previous
    one ended; the conversation uses it for turn-taking (wait for the reply) or barge-in (speak over it).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        rate: int = SEND_RATE,
        chunk_s: float = CHUNK_S,
        may_start: Callable[[float], bool] | None = None,
    ):
        super().__init__(rate, chunk_s)
        self.utterances = [self._padded(decode(path, rate).samples) for path in paths]
        self.may_start = may_start or (lambda ended: True)
        self._next = 0  # index of the next utterance to start
        self._current: np.ndarray | None = None
        self._position = 0
        self._ended_at: float | None = None  # when the previous utterance ended
        self._pace = RealTimePace(self.chunk_s)
        self._silence = bytes(2 * self.chunk_samples)
        self._stopped = False

    def _padded(self, samples: np.ndarray) -> np.ndarray:
        """Zero-padded to whole chunks, so every chunk sent has the same size."""
        return np.concatenate([samples, np.zeros(-len(samples) % self.chunk_samples, np.float32)])

    def start(self) -> None:
        self._pace.start()
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    def read(self) -> bytes:
        if self._stopped:
            return b""
        # A chunk exists once it has been spoken: the n-th is ready n chunk lengths after the start.
        self._pace.wait()
        if self._current is None and self._next < len(self.utterances):
            if self._ended_at is None or self.may_start(self._ended_at):
                self._current, self._position = self.utterances[self._next], 0
                self._next += 1
        if self._current is None:
            return self._silence
        chunk = self._current[self._position : self._position + self.chunk_samples]
        self._position += self.chunk_samples
        if self._position >= len(self._current):
            self._current, self._ended_at = None, time.monotonic()
        return to_pcm16(chunk)

    @property
    def finished_at(self) -> float | None:
        if self._next < len(self.utterances) or self._current is not None:
            return None
        return self._ended_at or 0.0


class MicrophoneSource(AudioSource):
    """The default (or a named) input device, through sounddevice; 16 kHz where the device allows it."""

    def __init__(self, device: str | int | None = None, chunk_s: float = CHUNK_S):
        sd = self._sd = _sounddevice()
        try:
            info = sd.query_devices(device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            raise AudioDeviceError(f"no microphone: {exc}; use --input FILE instead") from None
        try:
            sd.check_input_settings(device, channels=1, dtype="int16", samplerate=SEND_RATE)
            rate = SEND_RATE
        except sd.PortAudioError:  # the server resamples whatever rate the StartFrame names
            rate = int(info["default_samplerate"])
        super().__init__(rate, chunk_s)
        self.device = device
        self._chunks: queue.Queue[bytes] = queue.Queue()
        self._stream = None

    def start(self) -> None:
        def recorded(data, _frames, _time, _status) -> None:
            self._chunks.put(bytes(data))

        try:
            self._stream = self._sd.RawInputStream(
                samplerate=self.rate,
                blocksize=self.chunk_samples,
                device=self.device,
                channels=1,
                dtype="int16",
                callback=recorded,
            )
            self._stream.start()
        except self._sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot record from the microphone: {exc}") from None

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._chunks.put(b"")  # wakes a reader waiting for audio that will not come

    def read(self) -> bytes:
        return self._chunks.get()


class PlaybackBuffer:
    """Reply audio received and not yet played, shared by the receiving thread and playback's clock."""

    def __init__(self) -> None:
        self._blocks: deque[np.ndarray] = deque()
        self._lock = threading.Lock()
        self.pending = 0  # samples
        self.taken = 0  # samples handed to playback so far

    def push(self, samples: np.ndarray) -> None:
        with self._lock:
            self._blocks.append(samples)
            self.pending += len(samples)

    def take(self, n: int) -> np.ndarray:
        """Up to `n` samples from the front; fewer when that is all there is."""
        taken, wanted = [], n
        with self._lock:
            while wanted and self._blocks:
                block = self._blocks[0]
                if len(block) <= wanted:
                    taken.append(self._blocks.popleft())
                else:
                    taken.append(block[:wanted])
                    self._blocks[0] = block[wanted:]
                wanted -= len(taken[-1])
            self.pending -= n - wanted
            self.taken += n - wanted
        return np.concatenate(taken) if taken else np.zeros(0, np.float32)

    def clear(self) -> int:
        """Drop everything; returns how many samples were dropped."""
        with self._lock:
            dropped, self.pending = self.pending, 0
            self._blocks.clear()
        return dropped


class AudioSink(ABC):
    """Plays reply audio as it arrives, at real-time pace, at the rate of the first audio it gets
    (later audio at another rate is resampled). `interrupt` stops it at once and drops the rest."""

    def __init__(self) -> None:
        self.buffer = PlaybackBuffer()
        self.rate: int | None = None
        self.received = 0  # samples, at self.rate
        self._drained = threading.Condition()

    def play(self, pcm16: bytes, rate: int) -> None:
        samples = from_pcm16(pcm16)
        if self.rate is None:
            self.rate = self._open(rate)
        if rate != self.rate:
            samples = soxr.resample(samples, rate, self.rate).astype(np.float32)
        self.received += len(samples)
        self.buffer.push(samples)
        self._wake()

    def interrupt(self) -> int:
        """Stop playing now; returns how many samples were dropped."""
        dropped = self.buffer.clear()
        with self._drained:
            self._drained.notify_all()
        return dropped

    @property
    def playing(self) -> bool:
        return self.buffer.pending > 0

    @property
    def played(self) -> int:
        """Samples played so far."""
        return self.buffer.taken

    def seconds(self, samples: int) -> float:
        return samples / self.rate if self.rate else 0.0

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything buffered has been played; False if `timeout` came first."""
        with self._drained:
            return self._drained.wait_for(lambda: not self.playing, timeout)

    def _next_block(self, n: int) -> np.ndarray:
        """What playback plays next: up to `n` samples, fewer (or none) when the buffer runs dry."""
        block = self.buffer.take(n)
        if len(block):
            self._played(block)
        if not self.playing:
            with self._drained:
                self._drained.notify_all()
        return block

    def _played(self, block: np.ndarray) -> None:
        """A block has just been played."""

    def _wake(self) -> None:
        """New audio is buffered."""

    @abstractmethod
    def _open(self, rate: int) -> int:
        """Get ready to play audio of `rate`; returns the rate it will play at."""

    def close(self) -> None:
        pass

    def __enter__(self) -> AudioSink:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class FileSink(AudioSink):
    """A speaker that writes what it plays to a WAV file: a clock thread takes `block_s` of audio
    from the buffer every `block_s`, as a sound card would, so an interruption cuts the file where
    playback was. Only reply audio is written, not the quiet between replies."""

    def __init__(self, path: str | Path, block_s: float = CHUNK_S):
        super().__init__()
        self.path = Path(path)
        self.block_s = block_s
        self.blocks: list[np.ndarray] = []
        self._closed = False
        self._buffered = threading.Condition()
        self._clock: threading.Thread | None = None

    def _open(self, rate: int) -> int:
        self._clock = threading.Thread(target=self._run, args=(rate,), name="file-sink", daemon=True)
        self._clock.start()
        return rate

    def _wake(self) -> None:
        with self._buffered:
            self._buffered.notify_all()

    def _played(self, block: np.ndarray) -> None:
        self.blocks.append(block)

    def _run(self, rate: int) -> None:
        block_samples = round(rate * self.block_s)
        block_s = block_samples / rate
        while True:
            with self._buffered:
                self._buffered.wait_for(lambda: self.playing or self._closed)
            if self._closed:
                return
            pace = RealTimePace(block_s)
            pace.start()
            while self.playing and not self._closed:
                self._next_block(block_samples)
                pace.wait()

    def close(self) -> None:
        self._closed = True
        self._wake()
        if self._clock is not None:
            self._clock.join()
        samples = np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(self.path, samples, self.rate or SEND_RATE, subtype="PCM_16")


class SpeakerSink(AudioSink):
    """The default (or a named) output device, through sounddevice; its callback pulls from the buffer."""

    def __init__(self, device: str | int | None = None):
        super().__init__()
        self._sd = _sounddevice()
        try:
            self._sd.check_output_settings(device, channels=1, dtype="float32")
        except (ValueError, self._sd.PortAudioError) as exc:
            raise AudioDeviceError(f"no speaker: {exc}; use --output FILE instead") from None
        self.device = device
        self._stream = None

    def _open(self, rate: int) -> int:
        def callback(out, frames, _time, _status) -> None:
            block = self._next_block(frames)
            out[: len(block), 0] = block
            out[len(block) :, 0] = 0

        sd = self._sd
        try:
            try:
                sd.check_output_settings(self.device, channels=1, dtype="float32", samplerate=rate)
            except sd.PortAudioError:  # play at the device's own rate; the sink resamples to it
                rate = int(sd.query_devices(self.device, "output")["default_samplerate"])
            self._stream = sd.OutputStream(
                samplerate=rate, device=self.device, channels=1, dtype="float32", latency="low", callback=callback
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot play on the speaker: {exc}") from None
        return rate

    def interrupt(self) -> int:
        dropped = super().interrupt()
        if self._stream is not None:
            self._stream.abort()  # also discards what the device itself still holds
            self._stream.start()
        return dropped

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()  # lets the device play out what it holds
            self._stream.close()
            self._stream = None
