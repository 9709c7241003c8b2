"""Fast refusal: the expected wait of a new turn, refusals over the budget, the learnt turn time."""

import pytest

from graphs.api.admission import Admission, AdmissionSettings, Overloaded


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
    monkeypatch.setattr("graphs.api.admission.time.perf_counter", lambda: clock[0])
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
