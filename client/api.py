"""A small HTTP client for the OmniServe API."""

from __future__ import annotations

from typing import Any

import httpx


class OmniServeError(RuntimeError):
    """The server answered with an error; `detail` is its explanation."""

    def __init__(self, status: int, detail: str, body: dict[str, Any] | None = None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body or {}


class OmniServeClient:
    def __init__(self, url: str = "http://127.0.0.1:8000", timeout: float = 300.0):
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def __enter__(self) -> OmniServeClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.http.close()

    def converse(self, audio: bytes, *, cluster: str | None = None, track_id: str | None = None,
                 images: list[tuple[str, bytes]] = (), filename: str = "turn.wav",
                 response_audio: str = "url") -> dict[str, Any]:
        """One turn: speech (and images) in, transcript, reply text, reply audio and timings out."""
        form = {"response_audio": response_audio}
        if cluster:
            form["cluster"] = cluster
        if track_id:
            form["track_id"] = track_id
        files = [("audio", (filename, audio, "application/octet-stream"))]
        files += [("images", (name, data, "application/octet-stream")) for name, data in images]
        return self._json(self.http.post("/v1/conversations", data=form, files=files))

    def track(self, track_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/tracks/{track_id}"))

    def clusters(self) -> list[dict[str, Any]]:
        return self._json(self.http.get("/v1/clusters"))["clusters"]

    def audio(self, url: str) -> bytes:
        response = self.http.get(url)
        self._raise_for(response)
        return response.content

    def healthy(self) -> bool:
        try:
            return self.http.get("/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

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
        raise OmniServeError(response.status_code, str(detail), body)
