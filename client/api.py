"""A small client for the OmniServe API: plain and streamed turns over HTTP, live ones over the WebSocket."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from client.audio import CHUNK_S, RealTimePace
from omniwire.audio import to_pcm16
from omniwire.frames import EndFrame, ErrorFrame, Frame, StartFrame, StartInterruptionFrame, WireReader, from_wire


class OmniServeError(RuntimeError):
    """The server answered with an error; `detail` is its explanation."""

    def __init__(
        self, status: int, detail: str, body: dict[str, Any] | None = None, retry_after_s: float | None = None
    ):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body or {}
        # The server is busy (503) and says when to try again.
        self.retry_after_s = retry_after_s


class ServerUnreachable(ConnectionError):
    """Nothing answered at the server's URL (refused, timed out, no such host)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"cannot reach the OmniServe server at {url}: {reason}")
        self.url = url
        self.reason = reason


def auth_headers(api_key: str | None = None) -> dict[str, str]:
    """The header that carries the server's key: the one given, else OMNISERVE_API_KEY, else none."""
    key = api_key or os.environ.get("OMNISERVE_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


class OmniServeClient:
    def __init__(self, url: str = "http://127.0.0.1:8000", timeout: float = 300.0, api_key: str | None = None):
        self.url = url.rstrip("/")
        self.headers = auth_headers(api_key)
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers=self.headers)

    def __enter__(self) -> OmniServeClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.http.close()

    def converse(
        self,
        audio: bytes,
        *,
        cluster: str | None = None,
        track_id: str | None = None,
        images: list[tuple[str, bytes]] = (),
        filename: str = "turn.wav",
        response_audio: str = "url",
    ) -> dict[str, Any]:
        """One turn: speech (and images) in, transcript, reply text, reply audio and timings out."""
        form, files = self._turn_form(audio, cluster, track_id, images, filename)
        form["response_audio"] = response_audio
        return self._json(self._request("POST", "/v1/conversations", data=form, files=files))

    def converse_stream(
        self,
        audio: bytes,
        *,
        cluster: str | None = None,
        track_id: str | None = None,
        images: list[tuple[str, bytes]] = (),
        filename: str = "turn.wav",
    ) -> Iterator[Frame]:
        """The same turn as `converse`, as its frames arrive; a refused turn raises before the first."""
        form, files = self._turn_form(audio, cluster, track_id, images, filename)
        try:
            with self.http.stream(
                "POST", "/v1/conversations/stream", data=form, files=files, headers={"accept": "application/x-ndjson"}
            ) as response:
                if not response.is_success:
                    response.read()
                    self._raise_for(response)
                for line in response.iter_lines():
                    if frame := _parse_frame(line):
                        yield frame
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.url, _reason(exc)) from None

    def live(
        self,
        *,
        cluster: str | None = None,
        track_id: str | None = None,
        sample_rate: int = 16_000,
        allow_interruptions: bool = True,
        vad: dict[str, Any] | None = None,
    ) -> LiveSession:
        """Open a live conversation; its opening StartFrame (with the track id) is `.start`, and a
        fatal ErrorFrame in its place raises OmniServeError."""
        opening: dict[str, Any] = {
            "type": "StartFrame",
            "sample_rate": sample_rate,
            "allow_interruptions": allow_interruptions,
        }
        if cluster and not track_id:
            opening["cluster"] = cluster
        if track_id:
            opening["track_id"] = track_id
        if vad:
            opening["vad"] = vad
        ws_url = "ws" + self.url.removeprefix("http") + "/v1/conversations/ws"
        try:
            ws = connect(ws_url, additional_headers=self.headers, max_size=None, open_timeout=30)
        except InvalidStatus as exc:
            raise OmniServeError(exc.response.status_code, f"the WebSocket was refused: {exc}") from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise ServerUnreachable(self.url, _reason(exc)) from None
        return LiveSession(ws, opening)

    def track(self, track_id: str) -> dict[str, Any]:
        return self._json(self._request("GET", f"/v1/tracks/{track_id}"))

    def clusters(self) -> list[dict[str, Any]]:
        return self._json(self._request("GET", "/v1/clusters"))["clusters"]

    def audio(self, url: str) -> bytes:
        response = self._request("GET", url)
        self._raise_for(response)
        return response.content

    def healthy(self) -> bool:
        try:
            return self.http.get("/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    @staticmethod
    def _turn_form(
        audio: bytes, cluster: str | None, track_id: str | None, images: list[tuple[str, bytes]], filename: str
    ) -> tuple[dict[str, str], list]:
        form = {}
        if cluster:
            form["cluster"] = cluster
        if track_id:
            form["track_id"] = track_id
        files = [("audio", (filename, audio, "application/octet-stream"))]
        files += [("images", (name, data, "application/octet-stream")) for name, data in images]
        return form, files

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.url, _reason(exc)) from None

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        self._raise_for(response)
        return response.json()

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.is_success:
            return
        try:
            body = response.json()
            detail = body.get("detail", response.text)
        except ValueError:
            body, detail = None, response.text
        retry_after = response.headers.get("retry-after", "")
        retry_after_s = float(retry_after) if retry_after.isdigit() else None
        raise OmniServeError(response.status_code, str(detail), body, retry_after_s)


class LiveSession:
    """A live conversation's WebSocket: PCM16 audio out, frames in (see graphs/live/session.py for the protocol).

    Sending (from one thread) and receiving (from another) may happen at the same time.
    """

    def __init__(self, ws: ClientConnection, opening: dict[str, Any]):
        self._closing = contextlib.ExitStack()
        self.ws = self._closing.enter_context(ws)
        self.sample_rate: int = opening["sample_rate"]
        self._reader = WireReader()  # reply audio comes as a binary message after its frame's header
        try:
            ws.send(json.dumps(opening))
            first = self.receive(timeout=60)
        except BaseException:
            self._closing.close()
            raise
        if not isinstance(first, StartFrame):
            self._closing.close()
            raise ConnectionError(f"the server opened with {type(first).__name__}, not a StartFrame")
        self.start: StartFrame = first

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def send_audio(self, pcm16: bytes) -> None:
        self.ws.send(pcm16)

    def send_frame(self, frame: Frame) -> None:
        self.ws.send(json.dumps(frame.to_wire()))

    def speak(self, samples: np.ndarray, between: Callable[[], None] | None = None) -> float:
        """Speaks a recording (float32 mono at the session's sample rate) into the conversation at
        real-time pace: chunks of CHUNK_S, each sent as its span begins, `between()` called after
        each; returns when (time.time()) it began: what the recording holds at `s` seconds is said then + s."""
        step = round(self.sample_rate * CHUNK_S)
        pace = RealTimePace(step / self.sample_rate)
        pace.start()
        began = time.time()
        for start in range(0, len(samples), step):
            self.send_audio(to_pcm16(samples[start : start + step]))
            pace.wait()
            if between is not None:
                between()
        return began

    def interrupt(self) -> None:
        """Stop the reply now, as speaking over it would."""
        self.send_frame(StartInterruptionFrame())

    def receive(self, timeout: float | None = None) -> Frame | None:
        """The next frame, None if none came within `timeout`; a fatal ErrorFrame raises OmniServeError."""
        while True:
            try:
                message = self.ws.recv(timeout=timeout)
            except TimeoutError:
                return None
            except ConnectionClosed as exc:
                raise ConnectionError(f"the server closed the conversation ({exc})") from None
            if isinstance(message, bytes):
                frame = self._reader.binary(message)
                break
            if not message.strip():
                continue
            try:
                frame = self._reader.text(json.loads(message))
            except ValueError:  # a frame type this client does not know
                continue
            if frame is not None:  # None: its audio is the next message
                break
        if isinstance(frame, ErrorFrame) and frame.fatal:
            raise OmniServeError(frame.status, frame.error, retry_after_s=frame.retry_after_s)
        return frame

    def close(self) -> None:
        """Hang up: an EndFrame tells the server to stop any reply still running."""
        try:
            self.ws.send(json.dumps(EndFrame(track_id=self.start.track_id, turn=None, status="hung up").to_wire()))
        except (ConnectionClosed, OSError):
            pass
        self._closing.close()


def _parse_frame(message: str | bytes) -> Frame | None:
    """A frame from the server; None for blank keep-alive lines and frame types this client does not know."""
    if not message or not message.strip():
        return None
    try:
        return from_wire(json.loads(message))
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, (httpx.ConnectError, ConnectionRefusedError)) and "refused" in text.lower():
        return "connection refused (is the server running?)"
    return text
