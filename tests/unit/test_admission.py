"""Fast refusal: the expected wait of a new turn, refusals over the budget, the learnt turn time."""

import pytest

from graphs.limits.admission import Admission, AdmissionSettings, Overloaded


def test_turns_beyond_those_served_side_by_side_wait_and_past_the_budget_are_refused():
    refused = []
    admission = Admission(
        AdmissionSettings(concurrent_turns=2, max_wait_s=3.0, initial_turn_s=2.0), on_refusal=refused.append
    )
    tickets = []
    for expected in (0.0, 0.0, 1.0, 2.0, 3.0):
        assert admission.expected_wait_s() == expected
        tickets.append(admission.admit("http"))
    assert [t.waited for t in tickets] == [False, False, True, True, True]
    with pytest.raises(Overloaded) as refusal:
        admission.admit("live")
    assert refusal.value.status_code == 503 and refusal.value.headers == {"Retry-After": "4"}
    assert refusal.value.retry_after_s == 4
    assert "wait 4.0 s" in refusal.value.detail and "admission.max_wait_s" in refusal.value.detail
    assert refused == ["live"] and admission.in_flight == 5
    admission.release(tickets[0])
    admission.release(tickets[0])  # twice, as a stream may: counted once
    assert admission.in_flight == 4 and admission.expected_wait_s() == 3.0
    admission.admit("stream")


def test_a_budget_of_zero_refuses_whatever_would_wait():
    admission = Admission(AdmissionSettings(concurrent_turns=1, max_wait_s=0))
    with admission.turn("http"):
        with pytest.raises(Overloaded):
            admission.admit("http")
    assert admission.in_flight == 0


def test_the_turn_time_is_learnt_from_finished_turns_that_did_not_wait(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("graphs.limits.admission.time.perf_counter", lambda: clock[0])
    admission = Admission(AdmissionSettings(concurrent_turns=1, initial_turn_s=2.0, max_wait_s=60))
    with admission.turn("http") as ticket:
        queued = admission.admit("http")  # waits behind the first
        clock[0] += 1.0
        ticket.finished = True
    assert admission.turn_s == pytest.approx(2.0 + 0.2 * (1.0 - 2.0))
    clock[0] += 5.0
    queued.finished = True
    admission.release(queued)  # it waited: its time says how long the queue was, not the turn
    with admission.turn("live"):
        clock[0] += 0.1  # dropped before its end (the user went on): not finished
    assert admission.turn_s == pytest.approx(1.8)

    fixed = Admission(AdmissionSettings(initial_turn_s=2.0, learn_turn_time=False))
    with fixed.turn("http") as ticket:
        ticket.finished = True
    assert fixed.turn_s == 2.0


def test_a_turn_that_would_be_refused_is_refused_before_its_upload_is_read():
    from fastapi import FastAPI, Request
    from fastapi.testclient import TestClient

    from graphs.limits.admission import RefuseWhenBusy

    app = FastAPI()
    reached = []

    @app.post("/v1/conversations")
    async def turn(request: Request):
        reached.append(len(await request.body()))
        return {"ok": True}

    app.add_middleware(RefuseWhenBusy)
    admission = Admission(AdmissionSettings(concurrent_turns=1, max_wait_s=1.0, initial_turn_s=2.0))
    RefuseWhenBusy.admission = admission
    try:
        with TestClient(app) as client:
            assert client.post("/v1/conversations", content=b"x" * 1000).status_code == 200
            admission.admit("http")  # a turn in flight: the next would wait 2 s
            refused = client.post("/v1/conversations", content=b"x" * 1000)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
            assert "admission.max_wait_s" in refused.json()["detail"]
            assert reached == [1000], "the refused upload never reached the route"
            assert client.post("/v1/other", content=b"x").status_code == 404, "other routes pass"
    finally:
        RefuseWhenBusy.admission = None
