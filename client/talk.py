"""A live conversation: a source's audio out over the WebSocket, the frames back to the screen
and the reply audio to a sink, with the server's barge-in stopping playback at once."""

from __future__ import annotations

import threading
import time

import numpy as np
from websockets.exceptions import ConnectionClosed

from client.api import LiveSession
from client.audio import AudioSink, AudioSource
from client.camera import Camera
from client.show import TurnView
from omniwire.audio import from_pcm16
from omniwire.frames import EndFrame, Frame, ImageFrame, StartFrame, StartInterruptionFrame, TTSAudioFrame


class TurnTaking:
    """Whether a reply is under way or still playing, and since when, as the frames tell it.

    A file source asks it when its next utterance may start: once the reply to the previous one
    has played (or `settle_s` passed with none coming), or, with `barge_in_s`, that long into the
    reply's playback, to speak over it.
    """

    def __init__(self, sink: AudioSink, settle_s: float = 3.0, barge_in_s: float | None = None):
        self.sink = sink
        self.settle_s = settle_s
        self.barge_in_s = barge_in_s
        self.turn_open = False
        self.turn_ended_at = 0.0  # time.monotonic()
        self.reply_started_at = 0.0

    def turn_started(self) -> None:
        self.turn_open = True

    def reply_audio_started(self) -> None:
        self.reply_started_at = time.monotonic()

    def turn_ended(self) -> None:
        self.turn_open = False
        self.turn_ended_at = time.monotonic()

    def replied(self, spoken_at: float) -> bool:
        """Whether what was said until `spoken_at` (time.monotonic) has been answered and the answer played."""
        if self.turn_open or self.sink.playing:
            return False
        return self.turn_ended_at > spoken_at or time.monotonic() - spoken_at >= self.settle_s

    def may_speak(self, spoken_at: float) -> bool:
        if self.barge_in_s is not None and self.reply_started_at > spoken_at:
            return time.monotonic() - self.reply_started_at >= self.barge_in_s
        return self.replied(spoken_at)


class LiveTalk:
    """Runs one conversation until the source has said everything and been answered, or Ctrl-C."""

    def __init__(
        self,
        live: LiveSession,
        source: AudioSource,
        sink: AudioSink,
        view: TurnView,
        turns: TurnTaking,
        camera: Camera | None = None,
        timeout_s: float = 120.0,
    ):
        self.live = live
        self.source = source
        self.sink = sink
        self.view = view
        self.turns = turns
        self.camera = camera
        self.timeout_s = timeout_s
        self._onsets = SpeechOnsets(source.rate) if camera else None
        self._stopped = threading.Event()
        self._last_frame_at = time.monotonic()
        self._received_at_turn_start = 0
        self._reply_started = False

    def run(self) -> None:
        """Raises TimeoutError when the server stops answering."""
        sender = threading.Thread(target=self._send_audio, name="send-audio", daemon=True)
        self.source.start()
        sender.start()
        try:
            while not self._answered():
                if frame := self.live.receive(timeout=0.1):
                    self._handle(frame)
                self._check_stalled()
        finally:
            self._stopped.set()
            self.source.stop()
            sender.join()
        self.sink.drain()

    def _answered(self) -> bool:
        finished = self.source.finished_at
        return finished is not None and self.turns.replied(finished)

    def _check_stalled(self) -> None:
        now = time.monotonic()
        finished = self.source.finished_at
        if self.turns.turn_open and now - self._last_frame_at > self.timeout_s:
            raise TimeoutError(f"the reply stalled: nothing from the server for {self.timeout_s:g} s")
        if finished is not None and now - finished > self.timeout_s:
            raise TimeoutError(f"no reply within {self.timeout_s:g} s of the end of the input")

    def _handle(self, frame: Frame) -> None:
        self._last_frame_at = time.monotonic()
        if isinstance(frame, StartFrame):
            if self.sink.playing:
                # The user finished an utterance while an earlier reply was still playing: they spoke over it.
                self.sink.interrupt()
            self.turns.turn_started()
            self._received_at_turn_start, self._reply_started = self.sink.received, False
        elif isinstance(frame, TTSAudioFrame):
            if not self._reply_started:
                self.turns.reply_audio_started()
                self._reply_started = True
            self.sink.play(frame.audio, frame.sample_rate)
            return
        elif isinstance(frame, StartInterruptionFrame):
            received = self.sink.received - self._received_at_turn_start
            dropped = self.sink.interrupt()
            self.view.interrupted(self.sink.seconds(max(received - dropped, 0)), self.sink.seconds(received))
            self.turns.turn_ended()
            return
        self.view.show(frame)
        if isinstance(frame, EndFrame):
            self.turns.turn_ended()

    def _send_audio(self) -> None:
        try:
            while not self._stopped.is_set():
                chunk = self.source.read()
                if not chunk:
                    break
                if self._onsets is not None and self._onsets.started(chunk) and (image := self.camera.latest()):
                    # Shown with the utterance that is starting: the server attaches it to the next turn.
                    self.live.send_frame(ImageFrame(image=image, format="jpeg"))
                self.live.send_audio(chunk)
        except (ConnectionClosed, OSError):
            pass  # the receiving side reports the closed connection


class SpeechOnsets:
    """Where speech starts in outgoing audio: the moment to take a picture for the utterance.

    An energy gate against a running noise floor, not a speech model: the client installs without
    torch, and the server's VAD still decides where each utterance begins and ends.
    """

    def __init__(self, rate: int, ratio: float = 4.0, min_rms: float = 0.01, hold_s: float = 0.3):
        self.rate, self.ratio, self.min_rms = rate, ratio, min_rms
        self.hold = round(hold_s * rate)
        self.floor: float | None = None
        self.speaking = False
        self.quiet = 0  # samples since the last loud chunk

    def started(self, pcm16: bytes) -> bool:
        samples = from_pcm16(pcm16)
        rms = float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0
        self.floor = rms if self.floor is None else self.floor
        loud = rms > max(self.min_rms, self.ratio * self.floor)
        onset = loud and not self.speaking
        if loud:
            self.speaking, self.quiet = True, 0
        else:
            self.floor = 0.95 * self.floor + 0.05 * rms
            self.quiet += len(samples)
            self.speaking = self.speaking and self.quiet < self.hold
        return onset
