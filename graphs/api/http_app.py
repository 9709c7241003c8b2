"""The FastAPI app both the conversation API and the OpenAI-compatible API add their routes to."""

from fastapi import FastAPI

api = FastAPI(
    title="OmniServe",
    summary="Real-time multimodal conversational agents on Ray Serve",
    version="0.1.0",
)
