"""Pictures for clusters that read images: webcam frames sampled while talking, frames of a video file."""

from __future__ import annotations

import threading
import time
from pathlib import Path


class CameraError(RuntimeError):
    """A camera or video that cannot be opened or read."""


def _cv2():
    import cv2  # imported when pictures are asked for: it takes a while to load

    return cv2


def _open(source: str | int | Path):
    cv2 = _cv2()
    capture = cv2.VideoCapture(int(source) if str(source).isdigit() else str(source))
    if not capture.isOpened():
        raise CameraError(f"cannot open camera or video {source!r}")
    return cv2, capture


def _jpeg(cv2, frame) -> bytes:
    ok, encoded = cv2.imencode(".jpg", frame)
    if not ok:
        raise CameraError("could not encode a camera frame as JPEG")
    return encoded.tobytes()


def video_frames(path: str | Path, fps: float, max_frames: int) -> list[bytes]:
    """Frames of a video file, `fps` per second of video, evenly thinned to `max_frames`, as JPEG."""
    if not Path(path).is_file():
        raise CameraError(f"no such video file: {path}")
    cv2, capture = _open(path)
    frames, next_at = [], 0.0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            at = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
            if at + 1e-6 >= next_at:
                frames.append(_jpeg(cv2, frame))
                next_at += 1 / fps
    finally:
        capture.release()
    if not frames:
        raise CameraError(f"no frames could be read from {path}")
    if len(frames) > max_frames:
        step = len(frames) / max_frames
        frames = [frames[int(i * step)] for i in range(max_frames)]
    return frames


class Camera:
    """The latest frame of a webcam (a device number) or of a video file played at its own speed,
    sampled `fps` times a second in a background thread, kept as JPEG for the next utterance."""

    def __init__(self, source: str | int = 0, fps: float = 1.0):
        self.source = source
        self.fps = fps
        self._cv2, self._capture = _open(source)
        self._is_file = not str(source).isdigit()
        self._latest: bytes | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)

    def __enter__(self) -> Camera:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stopped.set()
        self._thread.join()
        self._capture.release()

    def latest(self) -> bytes | None:
        return self._latest

    def _run(self) -> None:
        # A video file is read at its own frame rate, as if it were being filmed now.
        frame_s = 1 / (self._capture.get(self._cv2.CAP_PROP_FPS) or 30) if self._is_file else 0.0
        started, frames, next_sample = time.perf_counter(), 0, 0.0
        while not self._stopped.is_set():
            ok, frame = self._capture.read()
            if not ok:
                if self._is_file:
                    return  # the last frame stays the latest
                self._stopped.wait(0.1)
                continue
            frames += 1
            now = time.perf_counter() - started
            if now >= next_sample or self._latest is None:
                self._latest = _jpeg(self._cv2, frame)
                next_sample = now + 1 / self.fps
            if frame_s:
                self._stopped.wait(max(0.0, frames * frame_s - (time.perf_counter() - started)))
