"""What an error answer looks like, so that every route's OpenAPI entry lists the status codes it can
return with their bodies (schemathesis checks the server against it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

REASONS = {
    400: "The request is malformed: the message says which field and why",
    401: "Missing or wrong API key (when the server has OMNISERVE_API_KEY)",
    404: "No such track, recording, cluster or model",
    409: "The track is busy: a turn of it is running",
    410: "The recording was removed by the retention setting",
    413: "Over a limit: the message names it and its value",
    415: "The audio or image format is not one this server reads",
    422: "A field is missing or out of range, or the audio holds no speech",
    500: "A model or the graph failed; the task records say which",
    502: "A stage failed; its task record holds the error",
    503: "The cluster is not enabled in this deployment, or is refusing work",
}


class ErrorBody(BaseModel):
    """FastAPI's error body: `detail` is a message (or, for a 422 from validation, a list of problems)."""

    detail: str | list[dict[str, Any]]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """The OpenAI API's error body, which its clients parse."""

    error: OpenAIErrorDetail


def errors(*codes: int, body: type[BaseModel] = ErrorBody) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=`: each status code it may answer with, its reason and its body."""
    return {code: {"model": body, "description": REASONS[code]} for code in codes}


def openai_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return errors(*codes, body=OpenAIErrorBody)
