"""Talking to an OmniServe server."""

from client.api import OmniServeClient, OmniServeError

__all__ = ["OmniServeClient", "OmniServeError"]
