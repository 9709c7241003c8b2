"""Two Ray nodes on this machine, deployed as on a real cluster (README, "Running on a Ray cluster").

A head and a worker node are started with `ray start`, each in its own process group and apart from
the session's in-process Ray; `serve deploy` sends a serve config to the head's dashboard. The worker
alone has the custom resource the models ask for, and the head alone the one given to the ingress and
the cluster graph, so a spoken question crosses both nodes: proxy and ingress on the head, every
model on the worker.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from ray.util.state import list_actors, list_nodes
from ray.util.state.exception import RayStateApiException

from bench.speech import speak
from graphs.api.ingress import OmniServeIngress
from graphs.config import DEFAULT_CLUSTERS_FILE, ROOT
from graphs.launch import read_config
from graphs.pipeline.cluster_graph import ClusterGraph
from tests.integration.conftest import API_KEY, AUTH
from tests.ports import free_ports

CLUSTER = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"
MODELS = {"whisper-tiny-en", "qwen2.5-coder-1.5b-int4", "piper-joe"}
APP = "omniserve"


@dataclass
class Node:
    process: subprocess.Popen
    log: Path


@dataclass
class TwoNodes:
    dashboard_url: str
    url: str


def command(name: str) -> str:
    """Ray's CLI from this interpreter's environment first, as scripts/setup.sh installs it."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert found, f"the {name!r} command is missing: it comes with ray[serve] (scripts/setup.sh installs it)"
    return found


def wait_for(condition: Callable[[], object], timeout_s: float, what: str, nodes: list[Node]):
    """Polls `condition` until it is true; fails naming `what`, or as soon as a node exits, with its output."""
    deadline = time.monotonic() + timeout_s
    while True:
        for node in nodes:
            assert node.process.poll() is None, f"a node exited before {what}:\n{node.log.read_text()[-3000:]}"
        try:
            result = condition()
        except (OSError, httpx.HTTPError, RayStateApiException):
            result = None  # not up yet: the dashboard refuses or answers that its data is not there
        if result:
            return result
        assert time.monotonic() < deadline, f"no {what} after {timeout_s:.0f} s"
        time.sleep(0.5)


def stop(process: subprocess.Popen, timeout_s: float = 5) -> None:
    """SIGTERM to the node's process group (ray start, its raylet, GCS and workers), SIGKILL to what stays.

    A worker node's group is gone within 1.5 s; the head's `ray start --block`, GCS server and monitor
    outlive SIGTERM (30 s seen, then killed), and the node is a throwaway of this test's alone."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        process.poll()  # reaps the leader, so an empty group reads as gone
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def node_ports(head: bool, ports: Iterator[int]) -> list[str]:
    """Every port a node would otherwise take from Ray's fixed defaults, from `ports`; worker ports from the OS."""
    names = ["node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port"]
    names += ["runtime-env-agent-port", "metrics-export-port"]
    names += ["ray-client-server-port"] if head else []
    return [f"--{name}={next(ports)}" for name in names] + ["--min-worker-port=0", "--max-worker-port=0"]


def serve_config(tmp: Path, port: int) -> Path:
    """serve_config.yaml with one cluster, its models asking for the worker's resource, the rest for the head's."""
    clusters = yaml.safe_load(DEFAULT_CLUSTERS_FILE.read_text())
    for model in clusters["models"].values():
        model.setdefault("ray_actor_options", {})["resources"] = {"models": 0.1}
    clusters_file = tmp / "clusters.yaml"
    clusters_file.write_text(yaml.safe_dump(clusters))
    config = read_config(
        "serve_config.yaml",
        port=port,
        clusters_file=str(clusters_file),
        enabled_clusters=[CLUSTER],
        trace_store_url=f"sqlite:///{tmp / 'omniserve.db'}",
        openai_api={},
    )
    (app,) = config["applications"]
    # Serve replaces a deployment's whole ray_actor_options, so each keeps its CPU share beside the resource.
    app["deployments"] = [
        {"name": name, "ray_actor_options": {**options, "resources": {"head": 0.1}}}
        for name, options in [
            ("OmniServeIngress", OmniServeIngress.ray_actor_options),
            (CLUSTER, ClusterGraph.ray_actor_options),
        ]
    ]
    path = tmp / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def app_running(dashboard_url: str) -> bool:
    app = httpx.get(f"{dashboard_url}/api/serve/applications/", timeout=10).json()["applications"].get(APP)
    if app and app["status"] == "DEPLOY_FAILED":
        pytest.fail(f"deploy failed: {app['message']}")
    return bool(app) and app["status"] == "RUNNING"


@pytest.fixture(scope="module")
def two_nodes():
    ray, serve = command("ray"), command("serve")
    # Short: Ray's socket paths under it must stay within the 107 bytes a Unix socket name allows.
    tmp = Path(tempfile.mkdtemp(prefix="omniserve-nodes-"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    # The key as a deployment sets it, in every node's environment; their workers inherit it.
    env |= {"RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT), "OMNISERVE_API_KEY": API_KEY}
    common = ["--block", "--node-ip-address=127.0.0.1", f"--temp-dir={tmp / 'ray'}", "--disable-usage-stats"]
    common += ["--object-store-memory=100000000"]
    # Every port either node or the proxy is given, distinct: two of them once drew the same one.
    ports = iter(free_ports(16))
    gcs_port, dashboard_port, port = next(ports), next(ports), next(ports)
    nodes: list[Node] = []

    def start(name: str, *args: str) -> None:
        log = tmp / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [ray, "start", *args, *common], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        nodes.append(Node(process, log))

    try:
        start(
            "head",
            "--head",
            f"--port={gcs_port}",
            "--num-cpus=1",
            '--resources={"head": 1}',
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            *node_ports(head=True, ports=ports),
        )
        dashboard_url = f"http://127.0.0.1:{dashboard_port}"
        wait_for(lambda: list_nodes(address=dashboard_url), 120, "head node", nodes)
        start(
            "worker",
            f"--address=127.0.0.1:{gcs_port}",
            "--num-cpus=2",
            '--resources={"models": 4}',
            *node_ports(head=False, ports=ports),
        )
        wait_for(
            lambda: len(list_nodes(address=dashboard_url, filters=[("state", "=", "ALIVE")])) == 2,
            120,
            "worker node",
            nodes,
        )

        deploy = subprocess.run(
            [serve, "deploy", str(serve_config(tmp, port)), f"--address={dashboard_url}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert deploy.returncode == 0, deploy.stderr
        wait_for(lambda: app_running(dashboard_url), 600, f"running {APP} application", nodes)
        yield TwoNodes(dashboard_url, f"http://127.0.0.1:{port}")
    finally:
        for node in reversed(nodes):
            stop(node.process)
        shutil.rmtree(tmp, ignore_errors=True)


def test_spoken_question_gets_a_spoken_answer_across_two_nodes(two_nodes):
    assert httpx.get(f"{two_nodes.url}/v1/tracks").status_code == 401, "the nodes' key is in force"
    with httpx.Client(base_url=two_nodes.url, headers=AUTH, timeout=120) as http:
        response = http.post(
            "/v1/conversations",
            data={"cluster": CLUSTER},
            files={"audio": ("turn.wav", speak("What is the capital city of France?"), "audio/wav")},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert "france" in body["transcript"].lower() and body["reply_text"].strip()
        audio = http.get(body["reply_audio"]["url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert body["reply_audio"]["duration_s"] > 0.5 and len(audio.content) > 16_000


def test_models_run_on_the_worker_and_the_ingress_on_the_head(two_nodes):
    nodes = list_nodes(address=two_nodes.dashboard_url, filters=[("state", "=", "ALIVE")])
    (head,) = [n.node_id for n in nodes if n.is_head_node]
    (worker,) = [n.node_id for n in nodes if "models" in n.resources_total]
    actors = list_actors(address=two_nodes.dashboard_url, filters=[("state", "=", "ALIVE")])
    where = {a.class_name.removeprefix(f"ServeReplica:{APP}:"): a.node_id for a in actors}
    assert {name: where.get(name) for name in MODELS} == dict.fromkeys(MODELS, worker)
    assert where["OmniServeIngress"] == head and where[CLUSTER] == head
