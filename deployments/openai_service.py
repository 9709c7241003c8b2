"""What the OpenAI-backed components share: the client, its key, and the API's own timing.

The official `openai` client retries connection errors, 408, 409, 429 and 5xx answers with
exponential backoff (`max_retries`), and honours the server's retry-after headers. The time the
API reports in `openai-processing-ms` is the stage's model time; the rest of the call (network,
queueing at the API) counts as transfer.
"""

from __future__ import annotations

import os
from typing import Any

from deployments.component import StrictModel

KEY_ENV = "OPENAI_API_KEY"


class OpenAIOptions(StrictModel):
    model: str
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else the OpenAI API itself
    api_key_env: str = KEY_ENV
    timeout_s: float = 60.0
    max_retries: int = 3


def missing_key(env: str) -> str | None:
    """Why no client can be made with the key in `env`, or None."""
    if os.environ.get(env):
        return None
    return (
        f"{env} is not set; set it (and OPENAI_BASE_URL to use an OpenAI-compatible server "
        "such as this one's /v1) to enable this cluster"
    )


def openai_client(api_key_env: str, base_url: str | None, timeout_s: float, max_retries: int):
    from openai import OpenAI

    if reason := missing_key(api_key_env):
        raise RuntimeError(reason)
    return OpenAI(api_key=os.environ[api_key_env], base_url=base_url, timeout=timeout_s, max_retries=max_retries)


class OpenAIService:
    """Mixin for components whose Options derive from OpenAIOptions."""

    # Calls wait on the network, not the cores.
    concurrency = 16
    options: OpenAIOptions

    @classmethod
    def unavailable_reason(cls, options: dict[str, Any]) -> str | None:
        return missing_key(cls.Options.model_validate(options).api_key_env)

    def _connect(self) -> None:
        opts = self.options
        self.client = openai_client(opts.api_key_env, opts.base_url, opts.timeout_s, opts.max_retries)

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
