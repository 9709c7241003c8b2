"""What the OpenAI-backed components share: the client, its key, and the API's own timing.

The official `openai` client retries connection errors, 408, 409, 429 and 5xx answers with
exponential backoff (`max_retries`), and honours the server's retry-after headers. The time the
API reports in `openai-processing-ms` is the stage's model time; the rest of the call (network,
queueing at the API) counts as transfer.
"""

from __future__ import annotations

import os
from typing import Any

from deployments.base import StrictModel

KEY_ENV = "OPENAI_API_KEY"


class OpenAIOptions(StrictModel):
    model: str
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else the OpenAI API itself
    api_key_env: str = KEY_ENV
    timeout_s: float = 60.0
    max_retries: int = 3


class OpenAIService:
    """Mixin for components whose Options derive from OpenAIOptions."""

    options: OpenAIOptions

    @classmethod
    def unavailable_reason(cls, options: dict[str, Any]) -> str | None:
        env = cls.Options.model_validate(options).api_key_env
        if os.environ.get(env):
            return None
        return (f"{env} is not set; set it (and OPENAI_BASE_URL to use an OpenAI-compatible server "
                "such as this one's /v1) to enable this cluster")

    def _connect(self) -> None:
        from openai import OpenAI

        opts = self.options
        key = os.environ.get(opts.api_key_env)
        if not key:
            raise RuntimeError(self.unavailable_reason(opts.model_dump()))
        self.client = OpenAI(api_key=key, base_url=opts.base_url, timeout=opts.timeout_s, max_retries=opts.max_retries)

    @staticmethod
    def _call(endpoint, **kwargs) -> tuple[Any, dict[str, Any]]:
        """Call an API endpoint; returns its parsed answer and what the raw answer says of the call."""
        raw = endpoint.with_raw_response.create(**kwargs)
        processing = raw.headers.get("openai-processing-ms")
        return raw.parse(), {
            "api_processing_s": float(processing) / 1000 if processing else None,
            "retries": raw.retries_taken,
            "request_id": raw.headers.get("x-request-id"),
        }

    def model_seconds(self, profile: dict[str, Any], elapsed: float) -> float:
        api = profile.get("api_processing_s")
        return min(api, elapsed) if api is not None else elapsed
