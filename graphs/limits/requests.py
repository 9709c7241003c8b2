"""What one request or session may ask of the server, checked before the work starts; each refusal
names the limit (its key under `limits:` in the serve config) and its value."""

from __future__ import annotations

import io
import json

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(25_000_000, gt=0)  # a request body, counted while it is read
    max_images: int = Field(8, ge=0)  # pictures in one turn (HTTP) or held for the next turn (WebSocket)
    max_image_bytes: int = Field(10_000_000, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    max_ws_message_bytes: int = Field(16_000_000, gt=0)  # one WebSocket message: audio, or a JSON frame (a picture)
    ws_idle_timeout_s: float = Field(300.0, gt=0)  # no message for this long ends a live session
    ws_max_session_s: float = Field(3600.0, gt=0)  # a live session ends after this long, whatever happens


class TooLarge(HTTPException):
    """Raised from inside the body's reading: an HTTPException, so FastAPI's body parsing passes it on
    as the 413 it is instead of its own 400 "error parsing the body"."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_message(limit))


class LimitBody:
    """ASGI middleware: a body larger than max_body_bytes gets 413 as soon as that is known, from its
    Content-Length before reading, or from the bytes counted while reading, never after."""

    max_body_bytes = Limits().max_body_bytes  # the ingress sets its configured value at start

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = LimitBody.max_body_bytes
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except TooLarge:
            if not started:
                await _too_large(send, limit)


def _too_large_message(limit: int) -> str:
    return f"the request body is over the {limit} byte limit (limits.max_body_bytes)"


async def _too_large(send: Send, limit: int) -> None:
    body = {"detail": _too_large_message(limit)}
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def image_problem(data: bytes, limits: Limits) -> tuple[int, str] | None:
    """Why a picture is refused (status, message), or None; reads only its header, off the event loop."""
    if len(data) > limits.max_image_bytes:
        return 413, f"is {len(data)} bytes, over the {limits.max_image_bytes} byte limit (limits.max_image_bytes)"
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = image.width * image.height
            if pixels > limits.max_image_pixels:
                return 413, f"has {pixels} pixels, over the {limits.max_image_pixels} limit (limits.max_image_pixels)"
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        return 415, "is not a readable image (PNG, JPEG, WebP, ...)"
    return None
