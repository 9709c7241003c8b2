"""Fast refusal against the real server: beyond what the models can take within the wait budget, a
turn is refused at once with 503 and Retry-After (an ErrorFrame on the WebSocket), writes nothing,
is counted in the metrics, and the admitted turns complete."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.speech import speak
from omniwire.frames import EndFrame, ErrorFrame, Frame
from tests.integration.conftest import AUTH
from tests.integration.test_conversation import _task_count
from tests.integration.test_streaming import LiveClient, is_type

CLUSTER = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"
# The test server's admission (conftest): 2 turns side by side, a fixed 2 s a turn, a 3 s budget,
# so 5 turns are admitted (the fifth expects to wait 3 s) and the sixth would wait 4 s.
ADMITTED = 5


def timed_turn(server, audio: bytes) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    files = [("audio", ("turn.wav", audio, "audio/wav"))]
    response = httpx.post(
        f"{server.url}/v1/conversations", data={"cluster": CLUSTER}, files=files, headers=AUTH, timeout=300
    )
    return time.perf_counter() - t0, response


def refusals_counted(server) -> float:
    text = httpx.get(server.metrics_url, timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("ray_omniserve_refused_turns")
    )


def test_turns_beyond_the_wait_budget_are_refused_at_once_and_write_nothing(server):
    audio = speak("What is the capital city of France?")
    tasks_before = _task_count(server)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: timed_turn(server, audio), range(8)))
    admitted = [(s, r) for s, r in results if r.status_code == 200]
    refused = [(s, r) for s, r in results if r.status_code == 503]
    assert len(admitted) == ADMITTED and len(refused) == 8 - ADMITTED, [r.status_code for _, r in results]
    for _, response in refused:
        assert int(response.headers["retry-after"]) >= 1
        assert "admission.max_wait_s" in response.json()["detail"]
    # A refusal answers before any admitted turn does: nothing of it waited for a model.
    assert max(s for s, _ in refused) < min(s for s, _ in admitted)
    assert _task_count(server) == tasks_before + ADMITTED * 3, "refused turns wrote no task records"
    deadline = time.time() + 60
    while refusals_counted(server) < 8 - ADMITTED:
        assert time.time() < deadline, "the refusals never reached the metrics"
        time.sleep(1)


def test_a_live_turn_is_refused_with_an_error_frame_while_the_models_are_full(server):
    audio = speak("What is the capital city of France?")
    refused_live = threading.Event()

    def keep_full() -> list[int]:
        """Post turns one after another until the live turn is refused, so the models stay full
        however fast a turn is."""
        statuses = []
        while not refused_live.is_set():
            statuses.append(timed_turn(server, audio)[1].status_code)
            if statuses[-1] == 503:
                time.sleep(0.05)
        return statuses

    # One filler more than can be admitted, so a finished turn's place is taken at once.
    with ThreadPoolExecutor(ADMITTED + 1) as fillers, LiveClient(server, cluster=CLUSTER) as client:
        filled = [fillers.submit(keep_full) for _ in range(ADMITTED + 1)]
        # A busy machine can take its time to start the fillers' turns: what is waited for is that they are.
        deadline = time.time() + 120
        while server.http.get("/healthz").json()["admission"]["turns_in_flight"] < ADMITTED:
            assert time.time() < deadline, "the filling turns were never admitted"
            time.sleep(0.05)
        try:
            error = refused_question(client)
        finally:
            refused_live.set()
        assert error.status == 503 and error.retry_after_s >= 1 and not error.fatal
        assert "admission.max_wait_s" in error.error
        statuses = [status for future in filled for status in future.result()]
        assert set(statuses) <= {200, 503} and statuses.count(200) >= ADMITTED, statuses
        # The session goes on: the next question is answered.
        seen = len(client.frames)
        client.speak("What is two plus two?")
        end = client.wait_for(lambda frame: is_type(EndFrame)(frame) and frame_after(client, frame, seen), timeout=120)
        assert end.status == "completed"


def frame_after(client: LiveClient, frame: Frame, seen: int) -> bool:
    return any(f is frame for _, f in client.frames[seen:])


def refused_question(client: LiveClient, tries: int = 5) -> ErrorFrame:
    """The ErrorFrame a live question gets while the fillers keep the models full. Between one filler's
    turn and the next a place is free for a moment (longer on a busy machine), and a question whose
    turn is asked for then is rightly admitted: it is answered, and asked again, a few times at most."""
    answered = []
    for _ in range(tries):
        seen = len(client.frames)
        client.speak("What time is it?")
        outcome = client.wait_for(
            lambda frame: isinstance(frame, ErrorFrame | EndFrame) and frame_after(client, frame, seen), timeout=120
        )
        if isinstance(outcome, ErrorFrame):
            return outcome
        answered.append(outcome.status)
    raise AssertionError(f"{tries} live questions were all admitted while the models were full: {answered}")
