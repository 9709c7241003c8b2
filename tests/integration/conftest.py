"""One real Ray instance and the default serve config deployed on it, shared by the session."""

import os
import shutil
from dataclasses import dataclass

import httpx
import pytest

# The shared server requires this key on every route; the client, the benchmarks and the OpenAI
# clusters (OPENAI_API_KEY) send it, as a deployment with a key would have them do.
API_KEY = "sk-omniserve-test"
os.environ["OMNISERVE_API_KEY"] = API_KEY
AUTH = {"Authorization": f"Bearer {API_KEY}"}

import ray  # noqa: E402

from graphs.launch import deploy, read_config, use_ray_environment  # noqa: E402
from tests.ports import free_ports  # noqa: E402

use_ray_environment()  # as scripts/serve.sh gives `serve run`


@dataclass
class Server:
    url: str
    trace_store_url: str
    http: httpx.Client
    metrics_url: str


CHROMIUM = shutil.which("chromium")


def chromium(playwright, *args: str):
    """Debian's headless chromium (never a downloaded one); a missing binary fails the test by name."""
    assert CHROMIUM, "the chromium binary is missing: scripts/setup.sh installs Debian's chromium"
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", *args])


def sign_in(page, server, then: str = "/tracks") -> None:
    """Through the login form, as a person would: the pages and their own requests then carry its cookie."""
    page.goto(f"{server.url}/login?next={then}")
    page.fill("input[name=key]", API_KEY)
    page.click("form button")
    page.wait_for_url(f"{server.url}{then}")


DOCUMENTS = {
    "library.md": "# Riverside library\n\nThe Riverside library opens at 10 am on Saturdays and closes at 4 pm. "
    "On weekdays it is open from 8 am to 8 pm. Library cards are free for residents.",
    "soup.txt": "Tomato soup: soften an onion in butter, add two tins of tomatoes and simmer for twenty minutes. "
    "Blend, season with salt and pepper, and serve with bread.",
    "trains.md": "The first train to the coast leaves the central station at 6:15 every morning, "
    "and the last one returns at 23:40.",
}


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The default serve config, with its trace store and document indexes in a temporary folder."""
    from deployments.retrieval.index import Embedder, index_dir, ingest

    tmp = tmp_path_factory.mktemp("serve")
    store_url = f"sqlite:///{tmp / 'omniserve.db'}"
    documents = tmp / "documents"
    documents.mkdir()
    for name, text in DOCUMENTS.items():
        (documents / name).write_text(text)
    ingest(documents, index_dir("default", tmp / "indexes"), Embedder())

    port, metrics_port = free_ports(2)
    # The shipped admission settings, with the turn time fixed so the refusal tests know where the line is.
    admission = {"concurrent_turns": 2, "max_wait_s": 3.0, "initial_turn_s": 2.0, "learn_turn_time": False}
    config = read_config("serve_config.yaml", port=port, trace_store_url=store_url, admission=admission)
    # The OpenAI clusters talk to this same server's OpenAI-compatible API, through the real client.
    config["applications"][0]["runtime_env"] = {
        "env_vars": {
            "OMNISERVE_INDEX_ROOT": str(tmp / "indexes"),
            "OMNISERVE_API_KEY": API_KEY,
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        }
    }
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _metrics_export_port=metrics_port
    )
    try:
        url = deploy(config)
        with httpx.Client(base_url=url, timeout=120, headers=AUTH) as http:
            yield Server(url, store_url, http, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        ray.shutdown()
