"""The FastAPI app both the conversation API and the OpenAI-compatible API add their routes to."""

from fastapi import FastAPI
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

api = FastAPI(
    title="OmniServe",
    summary="Real-time multimodal conversational agents on Ray Serve",
    version="0.1.0",
)


class AllowEveryMethod:
    """A 405's Allow header names every method the path has: Starlette names only the first route's, and
    GET and DELETE of a track are two routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def patched(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                methods = set()
                for route in api.router.routes:
                    match, _ = route.matches({**scope, "method": "GET"})
                    if match != Match.NONE and getattr(route, "methods", None):
                        methods |= route.methods
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", ", ".join(sorted(methods)).encode())]}
            await send(message)

        await self.app(scope, receive, patched)


api.add_middleware(AllowEveryMethod)
