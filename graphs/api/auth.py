"""One API key on every route but /healthz, checked before any route runs.

The key comes from OMNISERVE_API_KEY in the server's environment, never from a config file, and is
compared in constant time. Each kind of client sends it the way it can:
- the API and the OpenAI-compatible routes: `Authorization: Bearer <key>`;
- the WebSocket: the same header, or (browsers cannot set headers there) the subprotocol
  `omniserve.bearer.<key>`, which the server then selects;
- pages in a browser: HTTP Basic with the key as the password, or the HttpOnly cookie /login sets.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

KEY_ENV = "OMNISERVE_API_KEY"
COOKIE = "omniserve_key"
SUBPROTOCOL_PREFIX = "omniserve.bearer."
OPEN_PATHS = {"/healthz", "/login"}
OPENAI_PATHS = {"/v1/models", "/v1/audio/transcriptions", "/v1/audio/speech", "/v1/chat/completions"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class ExposureError(ValueError):
    """A server that would listen beyond this machine with every route open."""


def api_key() -> str | None:
    return os.environ.get(KEY_ENV) or None


def check_exposure(host: str, allow_unauthenticated: bool) -> str | None:
    """Refuses to listen beyond localhost without a key; returns a warning to log when the routes are open."""
    if api_key():
        return None
    if host not in LOCAL_HOSTS and not allow_unauthenticated:
        raise ExposureError(
            f"http_options.host is {host!r}, beyond this machine, and {KEY_ENV} is not set: every route would be "
            f"open to anyone who reaches the port. Set {KEY_ENV}, listen on 127.0.0.1, or say "
            "allow_unauthenticated: true in the application's args."
        )
    return f"{KEY_ENV} is not set: every route is open to anyone who reaches {host}"


def websocket_subprotocol(offered: list[str]) -> str | None:
    """The key-carrying subprotocol a browser offered, which the accept must name back."""
    return next((p for p in offered if p.startswith(SUBPROTOCOL_PREFIX)), None)


def _same(given: str | None, key: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), key.encode())


def _presented(scope: Scope) -> str | None:
    """The key the request carries, however it carries it (None: none)."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    if scope["type"] == "websocket" and (chosen := websocket_subprotocol(scope.get("subprotocols", []))):
        return chosen.removeprefix(SUBPROTOCOL_PREFIX)
    cookie = SimpleCookie(headers.get("cookie", ""))
    return cookie[COOKIE].value if COOKIE in cookie else None


class RequireAPIKey:
    """ASGI middleware: a request without the key never reaches a route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = api_key()
        if scope["type"] not in ("http", "websocket") or key is None or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = _presented(scope)
        if _same(given, key):
            await self.app(scope, receive, send)
            return
        problem = "missing API key" if not given else "wrong API key"
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1008, "reason": f"{problem}: {_HOW['websocket']}"})
            return
        await _refuse(scope, send, problem)


_HOW = {
    "api": "send 'Authorization: Bearer <key>'",
    "websocket": f"send 'Authorization: Bearer <key>' or the subprotocol '{SUBPROTOCOL_PREFIX}<key>'",
    "page": "sign in at /login, or use HTTP Basic with the key as the password",
}


async def _refuse(scope: Scope, send: Send, problem: str) -> None:
    path = scope["path"]
    headers = [(b"content-type", b"application/json")]
    if path in OPENAI_PATHS:
        message = f"{problem}: {_HOW['api']}"
        body = {
            "error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
        }
    elif path.startswith("/v1/") or path in ("/openapi.json",):
        body = {"detail": f"{problem}: {_HOW['api']}"}
    else:
        body = {"detail": f"{problem}: {_HOW['page']}"}
        headers.append((b"www-authenticate", b'Basic realm="OmniServe", charset="UTF-8"'))
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def key_matches(given: str) -> bool:
    key = api_key()
    return key is not None and _same(given, key)
