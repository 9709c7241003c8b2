"""The HTTP API: FastAPI on Ray Serve, in front of one ClusterGraph per enabled cluster."""

import asyncio
import base64
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import File, Form, HTTPException, Path, Query, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from ray import serve
from starlette.background import BackgroundTask

from deployments.stt.silero_vad import SileroStream
from graphs.api.auth import websocket_subprotocol
from graphs.api.errors import errors
from graphs.api.http_app import api
from graphs.api.openai_routes import OpenAIAPIArgs, OpenAIEndpoints
from graphs.api.pages import TracePages
from graphs.limits.admission import Admission, AdmissionSettings, Overloaded, RefuseWhenBusy
from graphs.limits.requests import LimitBody, Limits, image_problem
from graphs.live.end_of_turn import EndOfTurnModel
from graphs.live.session import LiveConversation, LiveSettings, SessionServices, end_session
from graphs.observability.latency import overhead_s
from graphs.observability.loop_lag import WINDOW_S, LoopLagProbe
from graphs.observability.metrics import AdmissionMetrics
from graphs.pipeline.turn import TurnFactory, TurnOutcome, TurnRequest
from graphs.store import AnnotationError, TraceStore, TrackBusy, summarise_turns
from omniwire import audio
from omniwire.frames import ErrorFrame, StartFrame
from omniwire.profile import model_time, transfer_time
from omniwire.tracks import TRACK_ID_PATTERN, TrackIdError, new_track_id, parse_track_id

logger = logging.getLogger("ray.serve")

# `since`: epoch seconds (up to 11 digits: year 5138) or an RFC 3339 date-time, as the schema says.
EPOCH_SECONDS = r"^\d{1,11}(\.\d+)?$"
SINCE_SCHEMA = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "pattern": EPOCH_SECONDS}]}
# Pydantic reads both; a number is seconds however large (not milliseconds past year 2603), a date-time
# needs its offset.
SINCE = TypeAdapter(AwareDatetime, config=ConfigDict(val_temporal_unit="seconds"))
EXAMPLE = "2026-11-23T12:00:00Z"


def parse_since(value: str) -> datetime:
    """`since` in UTC; anything else, a date off the calendar included, is a 422 like any bad parameter."""
    try:
        return SINCE.validate_python(value).astimezone(UTC)
    except ValidationError as exc:
        problems = [
            {
                **e,
                "loc": ("query", "since"),
                "msg": f"{e['msg']}; expected epoch seconds or a date-time such as {EXAMPLE}",
            }
            for e in exc.errors(include_url=False)
        ]
        raise RequestValidationError(problems) from None


TrackStatus = Literal["completed", "failed", "cancelled", "running", "empty"]
# Documented, not enforced by FastAPI: a malformed id gets our 400 naming what is wrong with it.
TrackIdPath = Annotated[
    str, Path(description="T-{cluster}-{32 hex digits}", json_schema_extra={"pattern": TRACK_ID_PATTERN})
]
# The stream's frames, as newline-delimited JSON or server-sent events; errors found before it starts.
STREAM_RESPONSES = {
    200: {"content": {"application/x-ndjson": {}, "text/event-stream": {}}},
    **errors(400, 404, 413, 415, 422, 503),
}
# Past any store's tracks, and within what every database takes as an OFFSET (a 64-bit integer).
MAX_OFFSET = 1_000_000_000
# Within what every database stores as a turn number (a 32-bit integer), and past any track's turns.
MAX_TURN = 1_000_000
# How often a replica drops recordings past the retention period (also once at start).
PURGE_INTERVAL_S = 300.0
# A task with no write for this long belongs to a turn whose server stopped (a turn takes seconds).
ABANDONED_AFTER_S = 600.0


class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid")

    turn: int = Field(ge=1, le=MAX_TURN)
    stage: str | None = None
    score: int = Field(ge=0, le=5)
    note: str | None = Field(None, max_length=2000)


@serve.deployment(name="OmniServeIngress", max_ongoing_requests=100, ray_actor_options={"num_cpus": 0.1})
@serve.ingress(api)
class OmniServeIngress(OpenAIEndpoints, TracePages):
    def __init__(
        self,
        graphs: dict[str, Any],
        catalog: list[dict[str, Any]],
        trace_store_url: str,
        max_audio_seconds: float,
        openai_models: dict[str, tuple[str, Any]],
        openai_args: dict[str, Any],
        audio_retention_days: float | None = None,
        limits: dict[str, Any] | None = None,
        admission: dict[str, Any] | None = None,
    ):
        self.limits = Limits.model_validate(limits or {})
        self.admission = Admission(AdmissionSettings.model_validate(admission or {}), AdmissionMetrics().refusal)
        RefuseWhenBusy.admission = self.admission
        LimitBody.max_body_bytes = self.limits.max_body_bytes
        self.graphs = graphs
        self.catalog = {c["name"]: c for c in catalog}
        self.store = TraceStore(trace_store_url)
        self.max_audio_seconds = max_audio_seconds
        self.openai_models = openai_models
        self.openai_args = OpenAIAPIArgs.model_validate(openai_args)
        # Loaded once per replica and shared by every live session, before the first one comes.
        self.live = SessionServices(EndOfTurnModel(), self.store, self.limits, self.admission)
        SileroStream()
        self.loop_lag = LoopLagProbe()
        threading.Thread(
            target=self._maintain, args=(audio_retention_days,), name="store-maintenance", daemon=True
        ).start()

    def _maintain(self, retention_days: float | None) -> None:
        """At start and every PURGE_INTERVAL_S; a thread, so slow maintenance never holds up a request:
        tasks a stopped server left open are closed, and recordings past retention removed."""
        while True:
            try:
                if closed := self.store.close_abandoned(ABANDONED_AFTER_S):
                    logger.warning("closed %d tasks left open by a server that stopped mid-turn", closed)
                if retention_days is not None and (removed := self.store.purge_audio(retention_days)):
                    logger.info("audio retention: removed %d recordings older than %g days", removed, retention_days)
            except Exception:
                logger.exception("store maintenance failed; trying again later")
            time.sleep(PURGE_INTERVAL_S)

    @api.get("/healthz")
    async def healthz(
        self, lag_window_s: float = Query(60.0, gt=0, le=WINDOW_S, description="seconds the loop lag covers")
    ) -> dict[str, Any]:
        """Liveness, the enabled clusters, how late this replica's event loop has been waking up, and the
        turns it has admitted."""
        self.loop_lag.ensure_running()
        return {
            "status": "ok",
            "enabled_clusters": sorted(self.graphs),
            "event_loop_lag": self.loop_lag.summary(lag_window_s),
            "admission": self.admission.summary(),
        }

    @api.get("/v1/clusters")
    def clusters(self) -> dict[str, Any]:
        return {"clusters": list(self.catalog.values())}

    @api.get("/v1/tracks", responses=errors(404))
    async def list_tracks(
        self,
        cluster: str | None = Query(None, description="only this cluster's tracks"),
        status: TrackStatus | None = Query(None, description="the last turn's status"),
        since: str | None = Query(
            None,
            json_schema_extra=SINCE_SCHEMA,
            description="created at or after: an RFC 3339 date-time or epoch seconds",
            examples=["2026-11-23T12:00:00Z", "1795400000"],
        ),
        limit: int = Query(50, ge=1, le=200),
        offset: int = Query(
            0, ge=0, le=MAX_OFFSET, description="how many matching tracks to skip; `next_offset` of the last page"
        ),
    ) -> dict[str, Any]:
        """Tracks, newest first, with their turns, status and last activity; `next` is the next page, if any."""
        if cluster is not None and cluster not in self.catalog:
            raise HTTPException(404, f"cluster: unknown cluster {cluster!r}; known clusters: {sorted(self.catalog)}")
        after = parse_since(since) if since is not None else None
        found = await asyncio.to_thread(self.store.tracks, cluster, limit + 1, status, after, offset)
        next_offset = offset + limit if len(found) > limit else None
        filters = {"cluster": cluster, "status": status, "since": after.isoformat() if after else None}
        filters = {k: v for k, v in filters.items() if v is not None}
        return {
            "tracks": found[:limit],
            "limit": limit,
            "offset": offset,
            "next_offset": next_offset,
            "next": None
            if next_offset is None
            else f"/v1/tracks?{urlencode({**filters, 'limit': limit, 'offset': next_offset})}",
        }

    @api.get("/v1/tracks/{track_id}", responses=errors(400, 404))
    async def track(self, track_id: TrackIdPath) -> dict[str, Any]:
        track = await self._track_or_error(track_id)
        track["turns"] = summarise_turns(track["tasks"])
        return track

    @api.post("/v1/tracks/{track_id}/annotations", status_code=201, responses=errors(400, 404))
    async def annotate(self, track_id: TrackIdPath, rating: Rating) -> dict[str, Any]:
        """A person's 0-5 rating of a turn, for one stage or overall (stage null), with a note."""
        if not await asyncio.to_thread(self.store.track_exists, track_id):
            raise HTTPException(404, f"unknown track {track_id!r}")
        try:
            return await asyncio.to_thread(
                self.store.annotate, track_id, rating.turn, rating.stage, rating.score, rating.note
            )
        except AnnotationError as exc:
            raise HTTPException(400, str(exc)) from None

    @api.delete("/v1/tracks/{track_id}", status_code=204, responses=errors(400, 404, 409))
    async def delete_track(self, track_id: TrackIdPath) -> Response:
        """The track with its task records, audio and annotations; 409 while one of its turns runs."""
        try:
            parse_track_id(track_id)
        except TrackIdError as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            deleted = await asyncio.to_thread(self.store.delete_track, track_id)
        except TrackBusy as exc:
            raise HTTPException(409, str(exc)) from None
        if not deleted:
            raise HTTPException(404, f"unknown track {track_id!r}")
        return Response(status_code=204)

    @api.get("/v1/audio/{audio_id}", responses={200: {"content": {"audio/wav": {}}}, **errors(404, 410)})
    async def audio_file(self, audio_id: str) -> Response:
        found = await asyncio.to_thread(self.store.audio, audio_id)
        if found is None:
            raise HTTPException(404, f"unknown audio {audio_id!r}")
        data, media_type, removed = found
        if removed:
            raise HTTPException(410, f"audio {audio_id!r} is gone: {removed}")
        return Response(content=data, media_type=media_type)

    @api.post("/v1/conversations", responses=errors(400, 404, 413, 415, 422, 500, 502, 503))
    async def converse(
        self,
        audio_file: UploadFile = File(alias="audio", description="WAV, FLAC or OGG; any rate and channels"),
        images: list[UploadFile] = File(default=[], description="optional images shown with the turn"),
        cluster: str | None = Form(None, description="cluster to start a conversation with"),
        track_id: str | None = Form(None, description="track to continue"),
        response_audio: Literal["url", "base64"] = Form("url", description="how the reply audio comes back"),
    ) -> Response:
        received = time.time()
        with self.admission.turn("http") as ticket:
            cluster, request = await self._prepare(audio_file, images, cluster, track_id, response_audio == "base64")
            try:
                outcome: TurnOutcome = await self.graphs[cluster].run_turn.remote(request)
            except Exception as exc:
                await asyncio.to_thread(
                    self.store.close_tasks, request.task_ids, f"turn aborted: {type(exc).__name__}: {exc}"
                )
                raise HTTPException(500, f"the {cluster} graph failed: {type(exc).__name__}") from None
            ticket.finished = True

        body = self._body(outcome, received, time.time())
        status = {"completed": 200, "no_speech": 422, "failed": 502}[outcome.status]
        return JSONResponse(body, status_code=status)

    @api.post("/v1/conversations/stream", responses=STREAM_RESPONSES)
    async def converse_streaming(
        self,
        request: Request,
        audio_file: UploadFile = File(alias="audio", description="WAV, FLAC or OGG; any rate and channels"),
        images: list[UploadFile] = File(default=[]),
        cluster: str | None = Form(None),
        track_id: str | None = Form(None),
    ) -> Response:
        """The same turn as POST /v1/conversations, as frames while they happen: newline-delimited
        JSON, or server-sent events when the client accepts text/event-stream."""
        ticket = self.admission.admit("stream")
        try:
            cluster, turn = await self._prepare(audio_file, images, cluster, track_id, speech_ended_at=time.time())
        except BaseException:
            self.admission.release(ticket)
            raise
        frames = self.graphs[cluster].options(stream=True).run_turn_stream.remote(turn)
        sse = "text/event-stream" in request.headers.get("accept", "")

        async def lines():
            try:
                async for frame in frames:
                    wire = json.dumps(frame.to_wire())
                    yield f"event: {type(frame).__name__}\ndata: {wire}\n\n" if sse else wire + "\n"
                ticket.finished = True
            finally:
                frames.cancel()  # a client that hangs up stops the turn
                self.admission.release(ticket)

        # Released by the stream's end, or here if the stream never started (a client gone before it).
        release = BackgroundTask(self.admission.release, ticket)
        return StreamingResponse(
            lines(), media_type="text/event-stream" if sse else "application/x-ndjson", background=release
        )

    @api.websocket("/v1/conversations/ws")
    async def converse_live(self, ws: WebSocket) -> None:
        """A live conversation: see graphs/live/session.py for the protocol."""
        self.loop_lag.ensure_running()
        # A browser that sent its key as a subprotocol only opens the socket if that one is selected.
        await ws.accept(subprotocol=websocket_subprotocol(ws.scope.get("subprotocols", [])))
        try:
            # A session opened while turns are being refused would only add its listening to the load.
            self.admission.check("live")
        except Overloaded as exc:
            frame = ErrorFrame(error=exc.detail, status=503, fatal=True, retry_after_s=exc.retry_after_s)
            await end_session(ws, frame, 1013, "busy: try again later")
            return
        try:
            opening = await ws.receive_json()
            if opening.get("type") != "StartFrame":
                raise HTTPException(400, "the first message must be a StartFrame")
            settings = LiveSettings.model_validate({k: v for k, v in opening.items() if k not in ("type", "seq", "ts")})
            cluster, track_id = await self._resolve_track(settings.cluster, settings.track_id)
        except (HTTPException, ValidationError, ValueError) as exc:
            status, detail = (exc.status_code, exc.detail) if isinstance(exc, HTTPException) else (400, str(exc))
            await end_session(ws, ErrorFrame(error=detail, status=status, fatal=True), 4000 + status)
            return

        start = StartFrame(
            track_id=track_id,
            cluster=cluster,
            allow_interruptions=settings.allow_interruptions,
            enable_metrics=settings.enable_metrics,
        )
        turns = TurnFactory(track_id, len(self.catalog[cluster]["stages"]))
        live = LiveConversation(
            ws, start, self.graphs[cluster], turns, settings, self.catalog[cluster]["allow_interruptions"], self.live
        )
        await live.run()

    async def _prepare(
        self,
        audio_file: UploadFile,
        images: list[UploadFile],
        cluster: str | None,
        track_id: str | None,
        inline_audio: bool = False,
        speech_ended_at: float | None = None,
    ) -> tuple[str, TurnRequest]:
        """Everything a turn needs, checked before anything is written: 4xx with a message otherwise."""
        cluster, track_id = await self._resolve_track(cluster, track_id)
        data = await audio_file.read()
        try:
            # Decoding and resampling a long upload takes long enough to hold up every live session.
            decoded = await asyncio.to_thread(audio.decode, data, max_seconds=self.max_audio_seconds)
        except audio.AudioTooLong as exc:
            raise HTTPException(413, f"audio: {exc} (max_audio_seconds)") from None
        except audio.AudioTruncated as exc:
            raise HTTPException(400, f"audio: {exc}") from None
        except audio.AudioError as exc:
            raise HTTPException(400 if not data else 415, f"audio: {exc}") from None
        if len(images) > self.limits.max_images:
            raise HTTPException(
                413, f"images: {len(images)} is over the limit of {self.limits.max_images} a turn (limits.max_images)"
            )
        image_bytes = [await self._read_image(i, upload) for i, upload in enumerate(images)]
        new_turn = TurnFactory(track_id, len(self.catalog[cluster]["stages"]))
        return cluster, new_turn(
            decoded.samples,
            data,
            decoded.media_type,
            image_bytes,
            inline_audio=inline_audio,
            speech_ended_at=speech_ended_at,
        )

    async def _resolve_track(self, cluster: str | None, track_id: str | None) -> tuple[str, str]:
        if track_id:
            try:
                track_cluster, _ = parse_track_id(track_id)
            except TrackIdError as exc:
                raise HTTPException(400, str(exc)) from None
            if cluster and cluster != track_cluster:
                raise HTTPException(400, f"track {track_id!r} belongs to {track_cluster}, not {cluster}")
            self._check_enabled(track_cluster, "track_id")
            if not await asyncio.to_thread(self.store.track_exists, track_id):
                raise HTTPException(404, f"unknown track {track_id!r}; omit track_id to start a new one")
            return track_cluster, track_id
        if not cluster:
            raise HTTPException(400, "give 'cluster' to start a conversation or 'track_id' to continue one")
        self._check_enabled(cluster, "cluster")
        return cluster, new_track_id(cluster)

    def _check_enabled(self, cluster: str, field: str) -> None:
        if cluster not in self.catalog:
            raise HTTPException(404, f"{field}: unknown cluster {cluster!r}; known clusters: {sorted(self.catalog)}")
        if cluster not in self.graphs:
            reason = self.catalog[cluster]["reason"]
            raise HTTPException(503, f"cluster {cluster} is not enabled in this deployment: {reason}")

    async def _read_image(self, index: int, upload: UploadFile) -> bytes:
        data = await upload.read()
        problem = await asyncio.to_thread(image_problem, data, self.limits)
        if problem:
            status, message = problem
            raise HTTPException(status, f"images[{index}] ({upload.filename!r}) {message}")
        return data

    @staticmethod
    def _body(outcome: TurnOutcome, received: float, answered: float) -> dict[str, Any]:
        model_s = sum(model_time(s) for s in outcome.stages)
        transfer_s = sum(transfer_time(s) for s in outcome.stages)
        overhead = overhead_s(outcome.stages, received, answered)
        body: dict[str, Any] = {
            "track_id": outcome.track_id,
            "cluster": outcome.cluster,
            "turn": outcome.turn,
            "status": outcome.status,
            "transcript": outcome.outputs.get("transcript"),
            "emotion": outcome.outputs.get("emotion"),
            "reply_text": outcome.outputs.get("reply_text"),
            "reply_audio": None,
            "timings": {
                "stages": [
                    {
                        "task_name": s["task_name"],
                        "model_s": model_time(s),
                        "transfer_s": transfer_time(s),
                        "ttfb_s": s.get("ttfb_s"),
                    }
                    for s in outcome.stages
                ],
                "model_s": model_s,
                "transfer_s": transfer_s,
                "turn_s": outcome.turn_s,
                "end_to_end_s": answered - received,
                "overhead_s": overhead,
                "overhead_ratio": overhead / (answered - received),
                "time_to_first_audio_s": outcome.metrics.get("time_to_first_audio_s"),
            },
        }
        if outcome.error:
            body["detail"] = outcome.error
        if outcome.reply_audio:
            reply = outcome.reply_audio
            body["reply_audio"] = {
                "url": f"/v1/audio/{reply['id']}",
                "media_type": "audio/wav",
                "sample_rate": reply["sample_rate"],
                "duration_s": reply["duration_s"],
            }
            if reply["wav"] is not None:
                body["reply_audio"]["base64"] = base64.b64encode(reply["wav"]).decode("ascii")
        return body
