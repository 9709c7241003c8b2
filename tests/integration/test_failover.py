"""A model replica that dies before answering fails its call; with the graph's failover the call is
made again once and another replica answers. Real Serve replicas on the session's Ray, one killed for
real (the process exits mid-request)."""

import asyncio
import os
import time

import pytest
from ray import serve
from ray.exceptions import RayActorError

from graphs.pipeline.turn import with_failover


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0})
class DiesOnce:
    """The first replica to be called while `marker` is missing creates it and exits mid-request."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def run(self) -> int:
        if not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            os._exit(1)
        return os.getpid()


def both_replicas_running(timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while True:
        app = serve.status().applications.get("failover")
        deployment = app.deployments.get("DiesOnce") if app else None
        counts = deployment.replica_states if deployment else {}
        if counts.get("RUNNING", 0) == 2 and sum(counts.values()) == 2:
            return
        assert time.time() < deadline, f"replicas never came back: {counts}"
        time.sleep(0.2)


@pytest.fixture
def dies_once(server, tmp_path):
    marker = tmp_path / "died"
    handle = serve.run(DiesOnce.bind(str(marker)), name="failover", route_prefix=None)
    both_replicas_running()
    yield handle, marker
    serve.delete("failover")


def test_a_call_whose_replica_dies_is_made_again_on_another(dies_once):
    handle, marker = dies_once
    try:
        answered = handle.run.remote().result(timeout_s=60)
    except RayActorError:
        answered = None
    dead = int(marker.read_text())
    # Alone, the call fails with the replica; under load Serve sometimes hands it to the other replica
    # itself (seen in one full-suite run on 2 cores). Either way the dead replica did not answer.
    assert answered != dead

    both_replicas_running()
    marker.unlink()
    answered_by = asyncio.run(with_failover(lambda: handle.run.remote(), "test stage"))
    assert answered_by != int(marker.read_text()) != dead, "another replica answered the second try"
