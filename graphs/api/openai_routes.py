"""OpenAI-compatible endpoints served by our own model deployments.

The official `openai` client works against them unchanged, so any tool that speaks the OpenAI
API can use the local models, and the OpenAI clusters can be run and tested offline by pointing
their base URL here. Request and response shapes follow the OpenAI API reference; errors use its
`{"error": {"message", "type", "param", "code"}}` body so the client raises them with their text.
"""

import asyncio
import base64
import binascii
import json
import time
import uuid
from typing import Any

from fastapi import File, Form, Request, UploadFile
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from graphs.api.errors import openai_errors
from graphs.api.http_app import api
from omniwire import audio

# OpenAI's own limit for /v1/audio/speech input.
MAX_SPEECH_CHARS = 4096
# A reply's tokens: the longest context of the models served here (OpenAI's own bound is the model's).
MAX_COMPLETION_TOKENS = 32_768


class OpenAIAPIArgs(BaseModel):
    """The `openai_api:` block of the app args."""

    model_config = ConfigDict(extra="forbid")

    # Extra names for our models, e.g. {"gpt-4o": "smollm2-135m"}, so OpenAI model names work here.
    aliases: dict[str, str] = {}
    # Models used inside a chat completion: audio parts in and out, images for text-only LLMs.
    speech_to_text: str | None = None
    text_to_speech: str | None = None
    image_to_text: str | None = None

    def model_names(self) -> set[str]:
        named = {self.speech_to_text, self.text_to_speech, self.image_to_text, *self.aliases.values()}
        return {name for name in named if name}


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind


@api.exception_handler(OpenAIError)
async def _openai_error(_request: Request, exc: OpenAIError) -> JSONResponse:
    body = {"error": {"message": exc.message, "type": exc.kind, "param": exc.param, "code": exc.code}}
    return JSONResponse(body, status_code=exc.status)


# OpenAI clients parse {"error": {...}}: FastAPI's own errors on these routes (a body that is not JSON,
# a missing field) are said that way too, as the OpenAI API does, with 400 for a malformed request.
OPENAI_PATHS = {"/v1/models", "/v1/audio/transcriptions", "/v1/audio/speech", "/v1/chat/completions"}


# A turn's upload without a field the schema requires is a malformed request (400) that names it, as the
# turn routes answered before their schema said which fields are required.
TURN_PATHS = {"/v1/conversations", "/v1/conversations/stream"}


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    if request.url.path in TURN_PATHS:
        missing = [p["loc"][1] for p in exc.errors() if p["type"] == "missing" and p["loc"][0] == "body"]
        if missing:
            return JSONResponse({"detail": f"multipart field {missing[0]!r} is required"}, status_code=400)
    if request.url.path not in OPENAI_PATHS:
        return await request_validation_exception_handler(request, exc)
    problem = exc.errors()[0]
    param = ".".join(str(part) for part in problem["loc"][1:]) or None
    return await _openai_error(request, OpenAIError(400, f"{param or 'body'}: {problem['msg']}", param=param))


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if request.url.path not in OPENAI_PATHS:
        return await http_exception_handler(request, exc)
    response = await _openai_error(request, OpenAIError(exc.status_code, str(exc.detail)))
    response.headers.update(exc.headers or {})
    return response


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=MAX_COMPLETION_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_COMPLETION_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str
    voice: str | dict[str, Any] = "alloy"
    response_format: str = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)


def _data_url(url: str, where: str) -> bytes:
    if not url.startswith("data:"):
        raise OpenAIError(
            400, f"{where}: only data: URLs can be read; this server does not fetch from the web", param=where
        )
    try:
        header, payload = url.split(",", 1)
        if not header.endswith(";base64"):
            raise ValueError("not base64")
        return base64.b64decode(payload, validate=True)
    except (ValueError, binascii.Error):
        raise OpenAIError(400, f"{where}: expected data:<type>;base64,<data>", param=where) from None


def _b64(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, TypeError):
        raise OpenAIError(400, f"{where}: not valid base64", param=where) from None


def _sse(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


class OpenAIEndpoints:
    """Mixed into the ingress, which sets `openai_args` and `openai_models` ({name: (kind, handle)})."""

    openai_args: OpenAIAPIArgs
    openai_models: dict[str, tuple[str, Any]]
    max_audio_seconds: float

    def _model(self, name: str, kinds: tuple[str, ...], param: str = "model") -> Any:
        target = self.openai_args.aliases.get(name, name)
        found = self.openai_models.get(target)
        if found is None:
            raise OpenAIError(
                404,
                f"The model '{name}' does not exist here; GET /v1/models lists the models",
                param=param,
                code="model_not_found",
            )
        kind, handle = found
        if kind not in kinds:
            raise OpenAIError(
                400, f"The model '{name}' is a {kind} model; this endpoint needs {' or '.join(kinds)}", param=param
            )
        return handle

    def _helper(self, role: str, what: str) -> Any:
        name = getattr(self.openai_args, role)
        if not name:
            raise OpenAIError(
                400,
                f"{what} needs a {role.replace('_', '-')} model, and none is configured "
                f"(openai_api.{role} in the serve config)",
            )
        return self._model(name, (role,))

    @api.get("/v1/models", responses=openai_errors(401))
    def list_models(self) -> dict[str, Any]:
        names = sorted(set(self.openai_models) | set(self.openai_args.aliases))
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "omniserve"} for n in names],
        }

    @api.post(
        "/v1/audio/transcriptions",
        responses={
            200: {"content": {"application/json": {}, "text/plain": {}}},
            **openai_errors(400, 401, 404, 413, 415),
        },
    )
    async def transcriptions(
        self,
        file: UploadFile = File(...),
        model: str = Form(...),
        language: str | None = Form(None),
        response_format: str = Form("json"),
    ) -> Response:
        handle = self._model(model, ("speech_to_text",))
        if response_format not in ("json", "text"):
            raise OpenAIError(
                400,
                f"response_format {response_format!r} is not supported here; use json or text",
                param="response_format",
            )
        samples = await self._decode_audio(await file.read(), "file")
        result = await handle.run.remote({"audio": samples}, {"language": language} if language else {})
        text = result.outputs["transcript"]
        headers = {"openai-processing-ms": str(round(result.model_s * 1000))}
        if response_format == "text":
            return PlainTextResponse(text, headers=headers)
        return JSONResponse({"text": text}, headers=headers)

    @api.post("/v1/audio/speech", responses={200: {"content": {"audio/wav": {}}}, **openai_errors(400, 401, 404)})
    async def speech(self, body: SpeechRequest) -> Response:
        handle = self._model(body.model, ("text_to_speech",))
        if not body.input.strip():
            raise OpenAIError(400, "input is empty", param="input")
        if len(body.input) > MAX_SPEECH_CHARS:
            raise OpenAIError(400, f"input is longer than {MAX_SPEECH_CHARS} characters", param="input")
        self._check_format(body.response_format, "response_format")
        result = await handle.run.remote({"reply_text": body.input}, {})
        spoken = result.outputs["reply_audio"]
        data, media_type = audio.encode(spoken["samples"], spoken["sample_rate"], body.response_format)
        return Response(
            data, media_type=media_type, headers={"openai-processing-ms": str(round(result.model_s * 1000))}
        )

    @api.post(
        "/v1/chat/completions",
        responses={
            200: {"content": {"application/json": {}, "text/event-stream": {}}},
            **openai_errors(400, 401, 404, 413),
        },
    )
    async def chat_completions(self, body: ChatRequest) -> Response:
        handle = self._model(body.model, ("llm",))
        speak = "audio" in (body.modalities or [])
        audio_format = (body.audio or {}).get("format", "wav")
        if speak:
            if body.stream:
                raise OpenAIError(
                    400, "streaming audio output is not supported here; ask without stream", param="stream"
                )
            self._check_format(audio_format, "audio.format")
        messages = [await self._flatten(i, m) for i, m in enumerate(body.messages)]
        if not messages:
            raise OpenAIError(400, "messages is empty", param="messages")
        max_tokens = body.max_completion_tokens or body.max_tokens
        temperature = body.temperature or 0.0
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        if body.stream:
            t0 = time.perf_counter()
            pieces = handle.options(stream=True).chat_stream.remote(messages, max_tokens, temperature)
            # Headers leave with the first token, so the processing time they report is time to first token.
            first = await anext(pieces, None)
            processing_ms = str(round((time.perf_counter() - t0) * 1000))

            def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
                return _sse(
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": body.model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                    }
                )

            async def events():
                try:
                    yield chunk({"role": "assistant", "content": ""})
                    if first is not None:
                        yield chunk({"content": first})
                    async for piece in pieces:
                        yield chunk({"content": piece})
                    yield chunk({}, "stop")
                    yield _sse("[DONE]")
                finally:
                    pieces.cancel()  # a client that hangs up stops the generation

            return StreamingResponse(
                events(), media_type="text/event-stream", headers={"openai-processing-ms": processing_ms}
            )

        result = await handle.chat.remote(messages, max_tokens, temperature)
        text = result["text"]
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if speak:
            wav, _ = await self._speak(text, audio_format)
            message = {
                "role": "assistant",
                "content": None,
                "audio": {
                    "id": f"audio_{uuid.uuid4().hex}",
                    "data": base64.b64encode(wav).decode("ascii"),
                    "transcript": text,
                    "expires_at": created + 3600,
                },
            }
        finish_reason = "length" if result["completion_tokens"] >= result["max_new_tokens"] else "stop"
        usage = {
            "prompt_tokens": result["prompt_tokens"],
            "completion_tokens": result["completion_tokens"],
            "total_tokens": result["prompt_tokens"] + result["completion_tokens"],
        }
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
                "usage": usage,
            },
            headers={"openai-processing-ms": str(round(result["model_s"] * 1000))},
        )

    async def _flatten(self, i: int, message: dict[str, Any]) -> dict[str, str]:
        """One chat message as plain text: images read by image-to-text, audio by speech-to-text."""
        role = message.get("role")
        role = "system" if role == "developer" else role
        if role not in ("system", "user", "assistant"):
            raise OpenAIError(400, f"messages[{i}].role {role!r} is not supported here", param=f"messages[{i}].role")
        content = message.get("content")
        if content is None or isinstance(content, str):
            return {"role": role, "content": content or ""}
        texts = [await self._part_text(f"messages[{i}].content[{j}]", part) for j, part in enumerate(content)]
        return {"role": role, "content": "\n".join(t for t in texts if t)}

    async def _part_text(self, where: str, part: dict[str, Any]) -> str:
        kind = part.get("type")
        if kind == "text":
            return part.get("text", "")
        if kind == "image_url":
            image = _data_url((part.get("image_url") or {}).get("url", ""), f"{where}.image_url.url")
            result = await self._helper("image_to_text", "an image part").run.remote({"images": [image]}, {})
            return f"[The user shows an image. {result.outputs['image_text']}]"
        if kind == "input_audio":
            data = _b64((part.get("input_audio") or {}).get("data", ""), f"{where}.input_audio.data")
            samples = await self._decode_audio(data, f"{where}.input_audio")
            result = await self._helper("speech_to_text", "an input_audio part").run.remote({"audio": samples}, {})
            return result.outputs["transcript"]
        raise OpenAIError(400, f"{where}: content part type {kind!r} is not supported here", param=f"{where}.type")

    async def _speak(self, text: str, fmt: str) -> tuple[bytes, str]:
        result = await self._helper("text_to_speech", "audio output").run.remote({"reply_text": text}, {})
        spoken = result.outputs["reply_audio"]
        return audio.encode(spoken["samples"], spoken["sample_rate"], fmt)

    @staticmethod
    def _check_format(fmt: str, param: str) -> None:
        if fmt not in audio.OUTPUT_FORMATS:
            raise OpenAIError(
                400, f"{param} {fmt!r} is not supported here; use one of {sorted(audio.OUTPUT_FORMATS)}", param=param
            )

    async def _decode_audio(self, data: bytes, param: str):
        """Off the event loop: a long upload's decoding would hold up every live session."""
        try:
            return (await asyncio.to_thread(audio.decode, data, max_seconds=self.max_audio_seconds)).samples
        except audio.AudioTooLong as exc:
            raise OpenAIError(413, f"{param}: {exc} (max_audio_seconds)", param=param) from None
        except audio.AudioError as exc:
            raise OpenAIError(400, f"{param}: {exc}", param=param) from None
