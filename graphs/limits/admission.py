"""Fast refusal: a turn that would wait longer than the configured budget is refused at once (HTTP 503
with Retry-After, an ErrorFrame on the WebSocket) instead of joining a queue where every turn waits.

The expected wait of a new turn is how many turns are ahead of it beyond those served side by side,
times the time a turn takes, shared by those served side by side. A turn's time is learnt (a moving
average) from the turns that did not wait, so it is what the models take on this machine now.
Counted per ingress replica: with several, each admits its share.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

# How much one finished turn moves the learnt turn time.
_SMOOTHING = 0.2


class AdmissionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Turns the models serve side by side at full speed (per ingress replica). On 2 CPU cores one turn
    # keeps them 92 % busy, and two at once answer 1.1 times as many turns a second: one.
    concurrent_turns: int = Field(1, ge=1)
    # A turn expected to wait longer than this is refused; 0 refuses whatever would wait at all. One
    # second keeps the first audio of admitted turns within twice that of a turn alone (0.9 s here).
    max_wait_s: float = Field(1.0, ge=0)
    # What a turn takes until one has finished here (the reference machine: 1.8 s on 2 CPU cores).
    initial_turn_s: float = Field(2.0, gt=0)
    # Learn a turn's time from finished turns; off: initial_turn_s throughout.
    learn_turn_time: bool = True


class Overloaded(HTTPException):
    """503 with the seconds to wait before trying again, in the message and in Retry-After."""

    def __init__(self, expected_wait_s: float, settings: AdmissionSettings) -> None:
        self.retry_after_s = max(1, math.ceil(expected_wait_s))
        super().__init__(
            503,
            f"busy: this turn would wait {expected_wait_s:.1f} s for the models, over the budget of "
            f"{settings.max_wait_s:g} s (admission.max_wait_s); try again in {self.retry_after_s} s",
            headers={"Retry-After": str(self.retry_after_s)},
        )


@dataclass
class Ticket:
    """An admitted turn. The caller marks it finished when it ran to its end, so its time is learnt
    (a turn dropped or failed early says nothing about how long turns take)."""

    waited: bool
    started: float
    finished: bool = False
    released: bool = False


class Admission:
    def __init__(self, settings: AdmissionSettings, on_refusal: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.in_flight = 0
        self.turn_s = settings.initial_turn_s
        self._on_refusal = on_refusal

    def expected_wait_s(self) -> float:
        """What a turn arriving now would wait before the models start on it."""
        ahead = self.in_flight + 1 - self.settings.concurrent_turns
        return max(0, ahead) * self.turn_s / self.settings.concurrent_turns

    def summary(self) -> dict[str, float]:
        return {
            "turns_in_flight": self.in_flight,
            "expected_wait_s": round(self.expected_wait_s(), 3),
            "turn_s": round(self.turn_s, 3),
        }

    def check(self, route: str) -> float:
        """The expected wait of a turn arriving now, or Overloaded (counted) when it is over the budget."""
        wait = self.expected_wait_s()
        if wait > self.settings.max_wait_s:
            if self._on_refusal is not None:
                self._on_refusal(route)
            raise Overloaded(wait, self.settings)
        return wait

    def admit(self, route: str) -> Ticket:
        """A ticket to release when the turn ends, or Overloaded at once."""
        wait = self.check(route)
        self.in_flight += 1
        return Ticket(waited=wait > 0, started=time.perf_counter())

    def release(self, ticket: Ticket) -> None:
        """Idempotent: a streamed turn releases from wherever it ends first."""
        if ticket.released:
            return
        ticket.released = True
        self.in_flight -= 1
        if ticket.finished and not ticket.waited and self.settings.learn_turn_time:
            self.turn_s += _SMOOTHING * (time.perf_counter() - ticket.started - self.turn_s)

    @contextlib.contextmanager
    def turn(self, route: str) -> Iterator[Ticket]:
        """Admits the turn for as long as the block runs, or raises Overloaded at once."""
        ticket = self.admit(route)
        try:
            yield ticket
        finally:
            self.release(ticket)


class RefuseWhenBusy:
    """ASGI middleware: a new turn that would be refused anyway is refused before its upload is read.
    Reading and parsing a multipart upload takes longer under load than a refusal may."""

    admission: Admission | None = None  # the ingress sets its own at start
    turn_routes = ("/v1/conversations", "/v1/conversations/stream")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admission = RefuseWhenBusy.admission
        if admission is not None and scope["type"] == "http" and scope["method"] == "POST":
            route = scope["path"].rstrip("/")
            if route in self.turn_routes:
                try:
                    admission.check("stream" if route.endswith("stream") else "http")
                except Overloaded as exc:
                    answer = JSONResponse({"detail": exc.detail}, status_code=503, headers=exc.headers)
                    await answer(scope, receive, send)
                    return
        await self.app(scope, receive, send)
