"""The FastAPI app both the conversation API and the OpenAI-compatible API add their routes to."""

from fastapi import FastAPI
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graphs.api.auth import RequireAPIKey
from graphs.limits.admission import RefuseWhenBusy
from graphs.limits.requests import LimitBody

api = FastAPI(
    title="OmniServe",
    summary="Real-time multimodal conversational agents on Ray Serve",
    version="0.1.0",
)


def all_routes(routes: list | None = None) -> list:
    """Every route of the app, those inside included routers too (Serve's ingress includes the class's)."""
    flat = []
    for route in api.routes if routes is None else routes:
        inner = getattr(route, "original_router", None)
        flat += all_routes(inner.routes) if inner is not None else [route]
    return flat


class _HeadersMiddleware:
    """ASGI middleware that rewrites the headers of every HTTP answer as it starts (`headers` says how)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def headers(self, scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def patched(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = self.headers(scope, message["status"], list(message.get("headers", [])))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, patched)


class AllowEveryMethod(_HeadersMiddleware):
    """A 405's Allow header names every method the path has: Starlette names only the first route's, and
    GET and DELETE of a track are two routes."""

    def headers(self, scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        if status != 405:
            return headers
        routes = [
            r
            for r in all_routes()
            if getattr(r, "methods", None) and r.matches({**scope, "method": "GET"})[0] != Match.NONE
        ]
        # /v1/audio/transcriptions also fits /v1/audio/{audio_id}: the literal path is the resource.
        literal = [r for r in routes if "{" not in r.path]
        methods = set().union(*(r.methods for r in literal or routes))
        kept = [(k, v) for k, v in headers if k.lower() != b"allow"]
        return [*kept, (b"allow", ", ".join(sorted(methods)).encode())]


class SecurityHeaders(_HeadersMiddleware):
    """Headers every answer carries; pages get a CSP that allows only this server's own scripts."""

    PAGE_CSP = (
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
    )

    def headers(self, scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        headers += [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]
        if content_type.startswith(b"text/html") and not scope["path"].startswith("/docs"):
            headers.append((b"content-security-policy", self.PAGE_CSP))
        return headers


# The last added runs first: the key is checked before anything else happens.
api.add_middleware(RefuseWhenBusy)
api.add_middleware(LimitBody)
api.add_middleware(AllowEveryMethod)
api.add_middleware(SecurityHeaders)
api.add_middleware(RequireAPIKey)
