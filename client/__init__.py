"""Talking to an OmniServe server: the Python client, and the omni-client command (client.cli)."""

from client.api import OmniServeClient, OmniServeError, ServerUnreachable

__all__ = ["OmniServeClient", "OmniServeError", "ServerUnreachable"]
