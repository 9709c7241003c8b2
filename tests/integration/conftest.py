"""One real Ray instance and the default serve config deployed on it, shared by the session."""

import os
import socket
from dataclasses import dataclass

import httpx
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402

from graphs.launch import deploy, read_config  # noqa: E402


@dataclass
class Server:
    url: str
    trace_store_url: str
    http: httpx.Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    store_url = f"sqlite:///{tmp_path_factory.mktemp('serve') / 'omniserve.db'}"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        url = deploy(read_config("serve_config.yaml", port=free_port(), trace_store_url=store_url))
        with httpx.Client(base_url=url, timeout=120) as http:
            yield Server(url, store_url, http)
    finally:
        ray.shutdown()
